//! The deployment's secret: every consumer must share it so that a replay of the log
//! yields the same codes, and every producer so that tickets can be authenticated.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    #[error("secret key must be 64 hex characters (32 bytes), got {0} characters")]
    WrongLength(usize),
    #[error("secret key must be hexadecimal")]
    NotHex,
}

#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn from_hex(text: &str) -> Result<Self, SecretKeyError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(SecretKeyError::WrongLength(text.len()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| SecretKeyError::NotHex)?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// An independent key for one purpose, so no two mechanisms share key material.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Names the key without revealing it: a MAC of a fixed string, recorded with the
    /// data so that a start with another key is refused. 64 bits tell keys apart; the
    /// key cannot be recovered from them.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.derive("coupon.v1 key fingerprint")[..8])
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let key = SecretKey::generate();
        let back = SecretKey::from_hex(&key.to_hex()).map(|k| k.0);
        assert_eq!(back, Ok(key.0));
        assert_eq!(
            SecretKey::from_hex("abc").map(|_| ()),
            Err(SecretKeyError::WrongLength(3))
        );
        assert_eq!(
            SecretKey::from_hex(&"zz".repeat(32)).map(|_| ()),
            Err(SecretKeyError::NotHex)
        );
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let key = SecretKey::generate();
        assert_ne!(key.derive("a"), key.derive("b"));
        assert_eq!(key.derive("a"), key.derive("a"));
    }

    #[test]
    fn fingerprints_name_a_key() {
        let key = SecretKey::generate();
        let again = SecretKey::from_hex(&key.to_hex()).map(|k| k.fingerprint());
        assert_eq!(again, Ok(key.fingerprint()));
        assert_eq!(key.fingerprint().len(), 16);
        assert_ne!(key.fingerprint(), SecretKey::generate().fingerprint());
    }
}
