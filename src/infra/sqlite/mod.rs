//! SQLite storage of the embedded mode: campaigns, coupons, ticket results and the
//! decided offset, in one WAL-mode file. sqlx only creates and migrates the file;
//! rusqlite does everything at run time (reads in `readers`, writes on one thread in
//! `issuance`).

mod issuance;
pub(crate) mod meta;
mod readers;
mod repositories;
mod snapshot;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use issuance::SqliteBatch;
pub(crate) use readers::Readers;
pub use snapshot::StateFile;

use super::sql_error::{corrupt, store_error};
use crate::domain::ports::StoreError;

/// Handle to the state database; cheap to clone. Reads use rusqlite connections (see
/// `readers`), writes one writer thread (see `issuance`).
#[derive(Clone)]
pub struct SqliteStore {
    readers: std::sync::Arc<readers::Readers>,
    writer: std::sync::mpsc::Sender<issuance::Job>,
    path: PathBuf,
}

impl SqliteStore {
    /// One statement on the writer thread, for the health check: a writer that stopped
    /// (every write would fail) reports the store down.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.ask(issuance::Job::Ping).await
    }

    /// Opens (creating if needed) and migrates the state database at `path`.
    ///
    /// `synchronous=NORMAL` is enough here: a commit survives a crash of the process, and
    /// a power loss can only roll back the latest decisions *together with* the offset
    /// that covers them, so they are decided again, identically, from the durable log.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(store_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {}: {e}", path.display())))?;
        pool.close().await;
        let writer = issuance::spawn_writer(open_writer(path, Durability::Normal)?)?;
        Ok(Self {
            readers: readers::Readers::new(path),
            writer,
            path: path.to_owned(),
        })
    }

    /// Whether the state holds anything decided (or a recorded key fingerprint).
    /// Blocking, like the next two: they run once, at start.
    pub fn holds_data(&self) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT EXISTS (SELECT 1 FROM campaigns) \
             OR EXISTS (SELECT 1 FROM partition_offsets WHERE next_offset > 0)";
        meta::holds_data(&self.path, SQL)
    }

    /// The fingerprint of the key the state was decided with (`infra::key_fingerprint`).
    pub fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        meta::key_fingerprint(&self.path)
    }

    /// Records the key's fingerprint unless one is; true when it was recorded now.
    pub fn record_key_fingerprint(&self, fingerprint: &str) -> Result<bool, StoreError> {
        meta::record_key_fingerprint(&self.path, fingerprint)
    }

    /// The log the state was decided from (`infra::log_binding`), if recorded.
    pub fn log_identity(&self) -> Result<Option<String>, StoreError> {
        meta::log_identity(&self.path)
    }

    /// Records the log unless one is; true when it was recorded now.
    pub fn record_log_identity(&self, log: &str) -> Result<bool, StoreError> {
        meta::record_log_identity(&self.path, log)
    }
}

/// Creates the SQLite file at `path` (if missing) readable by its owner only, and takes
/// group/other access from an existing one and its `-wal`/`-shm` files (made by an earlier
/// version). SQLite creates a database with mode 0644 less the umask, but gives a new
/// `-wal` and `-shm` file the mode of its database file (os_unix.c, `findCreateFileMode`
/// and `unixOpenSharedMemory`): so a database created here with 0600 keeps all three
/// private, whatever the umask, and no process-wide umask change is needed. An empty
/// file is a valid empty database.
pub(crate) fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| {
        StoreError::Unavailable(format!("cannot create or open {}: {e}", path.display()))
    })?;
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::Unavailable(format!(
                    "cannot make {} owner-only: {e}",
                    Path::new(&file).display()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format!("timestamp {ms}")))
}

/// Durability of a writer thread's connection (see `SqliteStore::open` and the log).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Durability {
    Normal,
    Full,
}

/// Opens a rusqlite connection for a dedicated writer thread, on a file sqlx has already
/// created and migrated. The thread owns it: one statement costs a function call, not a
/// hand-off to sqlx's per-connection worker thread and back.
pub(crate) fn open_writer(
    path: &Path,
    durability: Durability,
) -> Result<rusqlite::Connection, StoreError> {
    use crate::infra::sql_error::sqlite_error;
    let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sqlite_error)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{} is in journal mode {mode}, not WAL",
            path.display()
        )));
    }
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(sqlite_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_error)?;
    // 8 MiB of page cache (default 2): hot index pages stay in memory. 64 MiB measured
    // ~8 % more writer CPU: SQLite scans the cache's hash at the end of every commit.
    conn.pragma_update(None, "cache_size", -8_192)
        .map_err(sqlite_error)?;
    // Checkpoint every ~16 MiB of WAL instead of 4 MiB: hot index pages rewritten by many
    // commits are copied back once per checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", 4_096)
        .map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use uuid::Uuid;

    use super::*;
    use crate::domain::ports::{CampaignRepository, TicketRepository};
    use crate::domain::{CampaignId, IssueStatus, TicketId};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A database made by the first schema keeps its coupons and ticket results when a
    /// newer binary opens it: migration 0002 rebuilds both tables.
    #[tokio::test]
    async fn opening_a_first_schema_database_keeps_its_coupons_and_tickets() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.sqlite");
        let campaign = Uuid::now_v7();
        let (issued, repeat, sold_out) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let code = Some("가나다라마바사아자1");
        let tickets = [
            (issued, "alice", IssueStatus::Issued, code, 1),
            (repeat, "alice", IssueStatus::AlreadyIssued, code, 2),
            (sold_out, "bob", IssueStatus::SoldOut, None, 3),
        ];
        write_first_schema(&path, campaign, &tickets).await?;

        let store = SqliteStore::open(&path).await?;
        let coupons = store
            .list_coupons(CampaignId::from_uuid(campaign), 0, 10)
            .await?;
        assert_eq!(coupons.len(), 1);
        assert_eq!(coupons[0].code.as_str(), "가나다라마바사아자1");
        // Stored before positions were kept: listed with its first-form ticket.
        assert_eq!(coupons[0].ticket_position, None);
        for (ticket, status, has_coupon) in [
            (issued, IssueStatus::Issued, true),
            (repeat, IssueStatus::AlreadyIssued, true),
            (sold_out, IssueStatus::SoldOut, false),
        ] {
            let Some((result, coupon)) = store.find_ticket(TicketId::from_uuid(ticket)).await?
            else {
                panic!("ticket {ticket} lost by the migration");
            };
            assert_eq!(result.status, status);
            assert_eq!(
                coupon.map(|c| c.code),
                has_coupon.then(|| coupons[0].code.clone())
            );
        }
        // Read together, with an unknown ticket that is left out.
        let ids = [issued, repeat, sold_out, Uuid::now_v7()].map(TicketId::from_uuid);
        let together = store.find_tickets(&ids).await?;
        let found: Vec<TicketId> = together.iter().map(|(t, _)| t.ticket_id).collect();
        assert_eq!(found, ids[..3]);
        Ok(())
    }

    type OldTicket<'a> = (Uuid, &'a str, IssueStatus, Option<&'a str>, i64);

    /// A database as the first schema wrote it: one campaign, alice's coupon and the
    /// tickets.
    async fn write_first_schema(
        path: &Path,
        campaign: Uuid,
        tickets: &[OldTicket<'_>],
    ) -> TestResult {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new().connect_with(options).await?;
        let mut first_only = sqlx::migrate!("migrations/sqlite");
        first_only.migrations = Cow::Owned(first_only.migrations[..1].to_vec());
        first_only.run(&pool).await?;
        sqlx::query(
            "INSERT INTO campaigns (id, name, total_coupons, issued_coupons, starts_at_ms, created_at_ms, origin_partition, origin_offset) \
             VALUES (?, 'old', 1, 1, 0, 0, 0, 0)",
        )
        .bind(campaign.to_string())
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO coupons (code, campaign_id, ordinal, user_id, ticket_id, issued_at_ms) \
             VALUES ('가나다라마바사아자1', ?, 1, 'alice', ?, 1000)",
        )
        .bind(campaign.to_string())
        .bind(tickets[0].0.to_string())
        .execute(&pool)
        .await?;
        for (ticket, user, status, code, offset) in tickets {
            sqlx::query(
                "INSERT INTO ticket_results (ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset) \
                 VALUES (?, ?, ?, ?, ?, 0, ?)",
            )
            .bind(ticket.to_string())
            .bind(campaign.to_string())
            .bind(*user)
            .bind(status.code())
            .bind(*code)
            .bind(*offset)
            .execute(&pool)
            .await?;
        }
        pool.close().await;
        Ok(())
    }
}
