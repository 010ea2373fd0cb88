//! The identity of a person asking for a coupon, as the caller's system names it.

use std::fmt;

pub const MAX_USER_ID_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("is required")]
    Missing,
    #[error("must be at most {MAX_USER_ID_BYTES} bytes")]
    TooLong,
    #[error("must not contain control characters")]
    ControlChars,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Kept verbatim (no trimming): it is the caller's key, "a" and "a " are two users.
    pub fn parse(raw: &str) -> Result<Self, UserIdError> {
        if raw.is_empty() {
            return Err(UserIdError::Missing);
        }
        if raw.len() > MAX_USER_ID_BYTES {
            return Err(UserIdError::TooLong);
        }
        if raw.chars().any(char::is_control) {
            return Err(UserIdError::ControlChars);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded() {
        assert_eq!(UserId::parse(""), Err(UserIdError::Missing));
        assert_eq!(UserId::parse(&"x".repeat(129)), Err(UserIdError::TooLong));
        assert_eq!(UserId::parse("a\nb"), Err(UserIdError::ControlChars));
        assert_eq!(
            UserId::parse("user-1").map(UserId::into_string),
            Ok("user-1".into())
        );
    }
}
