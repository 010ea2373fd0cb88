//! The `meta` table both of the embedded mode's SQLite files hold (state and log): facts
//! about the data itself, the fingerprint of the key it was written with and the log the
//! state was decided from (the log file's own id). Read and
//! written once at start, on a short-lived connection of its own.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::domain::ports::StoreError;
use crate::infra::sql_error::sqlite_error;
use crate::infra::{key_fingerprint, log_binding};

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sqlite_error)?;
    Ok(conn)
}

/// The recorded fingerprint, if any.
pub(crate) fn key_fingerprint(path: &Path) -> Result<Option<String>, StoreError> {
    value(path, key_fingerprint::META_NAME)
}

/// Records `fingerprint` unless one is recorded; true when it was recorded now.
pub(crate) fn record_key_fingerprint(path: &Path, fingerprint: &str) -> Result<bool, StoreError> {
    record(path, key_fingerprint::META_NAME, fingerprint)
}

/// The log the file belongs to or is (`infra::log_binding`), if recorded.
pub(crate) fn log_identity(path: &Path) -> Result<Option<String>, StoreError> {
    value(path, log_binding::META_NAME)
}

/// Records `log` unless one is recorded; true when it was recorded now.
pub(crate) fn record_log_identity(path: &Path, log: &str) -> Result<bool, StoreError> {
    record(path, log_binding::META_NAME, log)
}

fn value(path: &Path, name: &str) -> Result<Option<String>, StoreError> {
    open(path)?
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .optional()
        .map_err(sqlite_error)
}

fn record(path: &Path, name: &str, value: &str) -> Result<bool, StoreError> {
    let inserted = open(path)?
        .execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            rusqlite::params![name, value],
        )
        .map_err(sqlite_error)?;
    Ok(inserted == 1)
}

/// Whether `sql` (a `SELECT EXISTS …` of the caller's tables) finds anything, or a
/// fingerprint is recorded: either way the file holds data written with some key.
pub(crate) fn holds_data(path: &Path, sql: &str) -> Result<bool, StoreError> {
    let conn = open(path)?;
    let recorded: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM meta)", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    if recorded {
        return Ok(true);
    }
    conn.query_row(sql, [], |row| row.get(0))
        .map_err(sqlite_error)
}
