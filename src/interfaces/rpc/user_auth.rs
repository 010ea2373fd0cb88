//! Who is asking for a coupon. By default IssueCoupon trusts the request's `user_id`:
//! the service then must sit behind a front end that authenticates users, since anyone
//! who knows a user id could otherwise ask in that user's name and read their coupon
//! in the ALREADY_ISSUED answer. With a user-token secret configured, IssueCoupon needs
//! `Authorization: Bearer <JWT>` instead: HS256 with that secret, `exp` required, and
//! the token's subject (`sub`) is the user id; a body `user_id` must then be empty or
//! the same user.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use connectrpc::ConnectError;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::errors::{self, invalid_field};
use crate::domain::UserId;

/// Seconds an `exp` may lie in the past and still be accepted.
const TOKEN_CLOCK_LEEWAY_S: u64 = 5;
/// Shortest secret accepted: HS256 keys shorter than its output weaken it.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub enum UserAuth {
    /// The request's `user_id`, as a trusted front end sent it.
    TrustedBody,
    /// The subject of a verified bearer token.
    Token(Arc<TokenVerifier>),
}

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum UserAuthError {
    #[error("cannot read user token secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("user token secret in {path} must be at least {MIN_SECRET_BYTES} bytes")]
    TooShort { path: PathBuf },
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

impl UserAuth {
    /// From the `--user-token-secret-file` flag: none means the body is trusted.
    pub fn from_secret_file(path: Option<&Path>) -> Result<Self, UserAuthError> {
        let Some(path) = path else {
            return Ok(Self::TrustedBody);
        };
        let bytes = std::fs::read(path).map_err(|source| UserAuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        let secret = bytes.trim_ascii_end();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(UserAuthError::TooShort {
                path: path.to_owned(),
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Clocks of the token issuer and this node may differ a little; a minute
        // (the crate's default) would keep expired tokens working too long.
        validation.leeway = TOKEN_CLOCK_LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self::Token(Arc::new(TokenVerifier {
            key: DecodingKey::from_secret(secret).map_err(|_| UserAuthError::TooShort {
                path: path.to_owned(),
            })?,
            validation,
        })))
    }

    /// The user a request speaks for.
    pub fn user_id(&self, headers: &HeaderMap, body_user_id: &str) -> Result<UserId, ConnectError> {
        let parse = |raw: &str| UserId::parse(raw).map_err(|e| invalid_field("user_id", e));
        let Self::Token(verifier) = self else {
            return parse(body_user_id);
        };
        let subject = verifier.subject(headers)?;
        let user =
            UserId::parse(&subject).map_err(|e| errors::user_token_invalid(&format!("sub {e}")))?;
        if !body_user_id.is_empty() && parse(body_user_id)? != user {
            return Err(errors::user_id_mismatch());
        }
        Ok(user)
    }
}

impl TokenVerifier {
    fn subject(&self, headers: &HeaderMap) -> Result<String, ConnectError> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| errors::user_token_invalid("missing Authorization: Bearer <token>"))?;
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims.sub)
            .map_err(|e| errors::user_token_invalid(&e.to_string()))
    }
}
