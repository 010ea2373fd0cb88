//! The secret key's fingerprint recorded with the data (both SQLite files of a data dir;
//! the PostgreSQL database of a distributed deployment), so that a start with a lost or
//! replaced key is refused instead of silently making every earlier ticket id unreadable
//! and every code irreproducible from the log. Each store keeps it in its `meta` table.

/// The row of each store's `meta` table that holds the fingerprint.
pub const META_NAME: &str = "secret_key_fingerprint";

#[derive(Debug, thiserror::Error)]
#[error(
    "the secret key does not match the one {holder} was written with (recorded key \
     fingerprint {recorded}, this key's {current}): {remedy}"
)]
pub struct KeyMismatch {
    pub holder: String,
    pub recorded: String,
    pub current: String,
    pub remedy: &'static str,
}

/// Refuses the key whose fingerprint is `current` when `holder` (a file path, a database
/// name: whatever tells the operator where) recorded another one. Nothing recorded
/// passes: the caller records it.
pub fn check(
    recorded: Option<&str>,
    current: &str,
    holder: &str,
    remedy: &'static str,
) -> Result<(), KeyMismatch> {
    match recorded {
        Some(recorded) if recorded != current => Err(KeyMismatch {
            holder: holder.to_owned(),
            recorded: recorded.to_owned(),
            current: current.to_owned(),
            remedy,
        }),
        _ => Ok(()),
    }
}

/// Says that `holder` now records `fingerprint`; on data made by an earlier version
/// (`holds_data`), that it adopted the key it was started with.
pub fn log_recorded(holder: &str, fingerprint: &str, holds_data: bool) {
    if holds_data {
        tracing::info!(%holder, %fingerprint,
            "no key fingerprint was recorded (data of an earlier version): adopted this key's");
    } else {
        tracing::info!(%holder, %fingerprint, "recorded the secret key's fingerprint");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_recorded_key_is_refused() {
        assert!(check(None, "aa", "db", "restore it").is_ok());
        assert!(check(Some("aa"), "aa", "db", "restore it").is_ok());
        let message = check(Some("bb"), "aa", "db", "restore it")
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        for part in ["db", "bb", "aa", "restore it"] {
            assert!(message.contains(part), "{message}");
        }
    }
}
