//! `CampaignService` is for admins. With a token configured its calls need
//! `Authorization: Bearer <token>`; the comparison is of SHA-256 digests, in constant
//! time, so neither the token's content nor its length leaks through timing. Without a
//! token (allowed on a loopback address only) its calls must also *name* a loopback
//! host: a web page whose DNS name was rebound to 127.0.0.1 sends its own name in
//! `Host`, and is refused. Failed attempts are counted and logged (at most once a
//! second).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::{Either, Ready, ready};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use sha2::{Digest, Sha256};

use super::errors;

const ADMIN_PREFIX: &str = "/coupon.v1.CampaignService/";
/// Procedure names used as metric labels: a client cannot invent label values.
const ADMIN_METHODS: [&str; 3] = ["CreateCampaign", "GetCampaign", "ListCampaigns"];

#[derive(Clone)]
pub struct AdminToken(Arc<[u8; 32]>);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.trim().as_bytes()).into()))
    }

    fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

/// Who may call `CampaignService`.
#[derive(Clone)]
pub enum AdminGuard {
    /// Callers presenting this bearer token.
    Token(AdminToken),
    /// Callers that reached a loopback address by a loopback name.
    LoopbackOnly,
    /// Anyone (the operator insisted: `--insecure-no-admin-token`).
    Open,
}

/// The layer that refuses admin calls the guard does not let through. A plain tower
/// layer rather than an async middleware: the check is synchronous, so a request that
/// passes runs the inner future as is, with no state of this layer kept alongside it
/// (a waiting long-poll holds every layer's future for its whole wait).
#[derive(Clone)]
pub struct RequireAdminLayer(pub AdminGuard);

impl<S> tower::Layer<S> for RequireAdminLayer {
    type Service = RequireAdmin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAdmin {
            guard: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct RequireAdmin<S> {
    guard: AdminGuard,
    inner: S,
}

impl<S> tower::Service<Request> for RequireAdmin<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match refusal(&self.guard, &request) {
            Some(refused) => Either::Left(ready(Ok(refused))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

/// The answer to an admin call the guard does not let through; `None` lets it through.
fn refusal(guard: &AdminGuard, request: &Request) -> Option<Response> {
    let method = request.uri().path().strip_prefix(ADMIN_PREFIX)?;
    let refusal = match guard {
        AdminGuard::Token(token) if !presents(token, request) => errors::unauthenticated(),
        AdminGuard::LoopbackOnly if !names_loopback(request) => errors::not_a_loopback_host(),
        _ => return None,
    };
    record_failure(method, request, guard);
    Some(errors::response(
        request.headers().get(CONTENT_TYPE),
        &refusal,
    ))
}

fn presents(token: &AdminToken, request: &Request) -> bool {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| token.matches(presented))
}

/// Whether the host the client asked for (`Host`, or the HTTP/2 `:authority`) is a
/// loopback name or address.
fn names_loopback(request: &Request) -> bool {
    let host = request
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let value = request.headers().get(HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = value.parse().ok()?;
            Some(authority.host().to_owned())
        });
    host.is_some_and(|host| is_loopback_name(&host))
}

fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Counts a refused admin call and logs it, at most once a second (a guessing client
/// must not be able to flood the log).
fn record_failure(method: &str, request: &Request, guard: &AdminGuard) {
    static LAST_LOGGED_SECOND: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let procedure = ADMIN_METHODS
        .iter()
        .find(|known| **known == method)
        .map_or("unknown", |known| known);
    let protocol = protocol(request);
    let reason = match guard {
        AdminGuard::Token(_) => "bad_token",
        AdminGuard::LoopbackOnly | AdminGuard::Open => "not_loopback_host",
    };
    metrics::counter!("coupon_admin_auth_failures_total",
        "procedure" => procedure, "protocol" => protocol, "reason" => reason)
    .increment(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_LOGGED_SECOND.swap(now, Ordering::Relaxed) == now {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        procedure,
        protocol,
        reason,
        suppressed,
        "refused an admin call (suppressed: refusals not logged in the previous second)"
    );
}

fn protocol(request: &Request) -> &'static str {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/grpc-web") {
        "grpc-web"
    } else if content_type.starts_with("application/grpc") {
        "grpc"
    } else {
        "connect"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = AdminToken::new("s3cret\n");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches(""));
    }

    #[test]
    fn loopback_names() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.8.9.1",
            "[::1]",
        ] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "0.0.0.0",
            "[::]",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }
}
