//! The identity of a person asking for a coupon, as the caller's system names it.
//!
//! Two requests are the same user when their ids are equal after Unicode NFC
//! normalisation: "홍길동" typed on a phone (often NFD, jamo by jamo) and on a PC
//! (NFC) is one person. Ids that would look the same but differ invisibly are refused
//! rather than guessed at: whitespace at either end, and format or invisible characters
//! (zero-width spaces and joiners, bidi controls, Hangul fillers).

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

pub const MAX_USER_ID_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("is required")]
    Missing,
    #[error("must be at most {MAX_USER_ID_BYTES} bytes (UTF-8, after NFC normalisation)")]
    TooLong,
    #[error("must not contain control characters")]
    ControlChars,
    #[error("must not start or end with whitespace")]
    OuterWhitespace,
    #[error(
        "must not contain invisible or format characters (U+{0:04X}: zero-width, bidi or filler)"
    )]
    Invisible(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// A user id from a client: normalised to NFC, then checked.
    pub fn parse(raw: &str) -> Result<Self, UserIdError> {
        let normalized: String = if raw.is_ascii() {
            raw.to_owned()
        } else {
            raw.nfc().collect()
        };
        check_basics(&normalized)?;
        if normalized.starts_with(char::is_whitespace) || normalized.ends_with(char::is_whitespace)
        {
            return Err(UserIdError::OuterWhitespace);
        }
        if let Some(c) = normalized.chars().find(|&c| is_invisible(c)) {
            return Err(UserIdError::Invisible(u32::from(c)));
        }
        Ok(Self(normalized))
    }

    /// A user id read back from the log or the database, kept exactly as stored: ids
    /// accepted before normalisation existed must still replay to the same holders.
    pub fn from_stored(raw: &str) -> Result<Self, UserIdError> {
        check_basics(raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn check_basics(id: &str) -> Result<(), UserIdError> {
    if id.is_empty() {
        return Err(UserIdError::Missing);
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Err(UserIdError::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(UserIdError::ControlChars);
    }
    Ok(())
}

/// Characters that render as nothing: format characters (Cf), line and paragraph
/// separators, and the Hangul fillers, which are letters that draw no glyph.
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
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

    #[test]
    fn the_same_name_in_nfd_and_nfc_is_one_user() {
        let nfc = "홍길동";
        let nfd: String = nfc.nfd().collect();
        assert_ne!(nfc, nfd);
        assert_eq!(UserId::parse(&nfd), UserId::parse(nfc));
        assert_eq!(UserId::parse(&nfd).map(UserId::into_string), Ok(nfc.into()));
        // Inner spaces are part of the name.
        assert!(UserId::parse("홍 길동").is_ok());
    }

    #[test]
    fn invisible_differences_are_refused() {
        assert_eq!(UserId::parse("kim "), Err(UserIdError::OuterWhitespace));
        assert_eq!(UserId::parse(" kim"), Err(UserIdError::OuterWhitespace));
        assert_eq!(
            UserId::parse("ki\u{200B}m"),
            Err(UserIdError::Invisible(0x200B))
        );
        assert_eq!(
            UserId::parse("kim\u{FEFF}x"),
            Err(UserIdError::Invisible(0xFEFF))
        );
        assert_eq!(
            UserId::parse("a\u{202E}b"),
            Err(UserIdError::Invisible(0x202E))
        );
        assert_eq!(
            UserId::parse("홍\u{3164}"),
            Err(UserIdError::Invisible(0x3164))
        );
    }

    #[test]
    fn stored_ids_are_read_back_verbatim() {
        let nfd: String = "홍길동".nfd().collect();
        let stored = UserId::from_stored(&nfd).map(UserId::into_string);
        assert_eq!(stored, Ok(nfd));
        assert!(UserId::from_stored("a ").is_ok());
        assert_eq!(UserId::from_stored(""), Err(UserIdError::Missing));
    }
}
