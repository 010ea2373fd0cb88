//! The embedded mode's log: an append-only SQLite table in its own file, written by one
//! dedicated OS thread with group commit. Requests that arrive while a commit is in flight
//! wait in a bounded queue and are written together by the next one, so one fsync serves
//! hundreds of requests and every caller is answered only after its record is durable.
//! The thread owns a rusqlite connection: an append costs one channel send and one
//! wake-up, not several round trips through sqlx's connection worker. The issuing
//! worker that follows it is `interfaces::log_worker::embedded`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot, watch};

use super::event_codec;
use super::log_binding;
use super::sql_error::{corrupt, sqlite_error, store_error};
use super::sql_values::{to_i64, to_u64};
use super::sqlite::{Durability, Readers, create_owner_only, meta, open_writer};
use crate::domain::log::Appended;
use crate::domain::ports::{IssueLog, LogError, LogReplay, ReplayChunk, StoreError};
use crate::domain::{LogEvent, LogPosition, LogRecord, Placement};

/// The only partition of the embedded log.
pub const PARTITION: u32 = 0;
/// Appends waiting beyond this are refused with `Overloaded` instead of queued.
const QUEUE_CAPACITY: usize = 65_536;
/// Most records written by one commit.
const MAX_GROUP: usize = 4_096;
/// Most records a replay reads at once.
const REPLAY_BATCH: u32 = 2_048;

struct AppendJob {
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// Cheap to clone; all clones feed the same writer thread.
#[derive(Clone)]
pub struct EmbeddedLog {
    jobs: mpsc::Sender<AppendJob>,
    readers: Arc<Readers>,
    end: watch::Receiver<u64>,
    path: PathBuf,
}

/// A record as stored, before decoding.
pub struct RawRecord {
    pub offset: u64,
    pub appended_at: DateTime<Utc>,
    pub payload: String,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log at `path` and starts its writer thread, which
    /// stops once every clone of the returned log is dropped.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(store_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An accepted ticket must survive a power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        sqlx::migrate!("migrations/sqlite-log")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {}: {e}", path.display())))?;
        // sqlx only creates and migrates the file; rusqlite reads and writes it.
        pool.close().await;
        let conn = open_writer(path, Durability::Full)?;
        let (next_offset, last_time) = tail(&conn)?;
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let (end_tx, end) = watch::channel(next_offset);
        let writer = Writer {
            conn,
            next_offset,
            last_time,
            end: end_tx,
        };
        std::thread::Builder::new()
            .name("coupon-log-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the log writer: {e}")))?;
        Ok(Self {
            jobs,
            readers: Readers::new(path),
            end,
            path: path.to_owned(),
        })
    }

    /// Whether the log holds a record (or a recorded key fingerprint). Blocking, like
    /// the next two: they run once, at start.
    pub fn holds_data(&self) -> Result<bool, StoreError> {
        if *self.end.borrow() > 0 {
            return Ok(true);
        }
        meta::holds_data(&self.path, "SELECT EXISTS (SELECT 1 FROM log_records)")
    }

    /// The fingerprint of the key the log's requests were accepted with.
    pub fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        meta::key_fingerprint(&self.path)
    }

    /// Records the key's fingerprint unless one is; true when it was recorded now.
    pub fn record_key_fingerprint(&self, fingerprint: &str) -> Result<bool, StoreError> {
        meta::record_key_fingerprint(&self.path, fingerprint)
    }

    /// This log file's identity (`infra::log_binding`): made once, on its first open by
    /// a version that knows it, and kept in its `meta` table.
    pub fn identity(&self) -> Result<String, StoreError> {
        let made = log_binding::embedded_log(uuid::Uuid::new_v4());
        meta::record_log_identity(&self.path, &made)?;
        meta::log_identity(&self.path)?
            .ok_or_else(|| StoreError::Corrupt("the log's identity was not kept".into()))
    }

    /// Up to `limit` records from `offset` on, in order.
    pub async fn read(&self, offset: u64, limit: u32) -> Result<Vec<RawRecord>, StoreError> {
        read_records(&self.readers, offset, limit).await
    }

    /// Up to `limit` records from `offset` on, decoded (undecodable ones skipped);
    /// `read_end` is `offset` when there were none.
    pub async fn read_decoded(&self, offset: u64, limit: u32) -> Result<ReplayChunk, StoreError> {
        read_decoded(&self.readers, offset, limit).await
    }

    /// Watches the offset one past the last durable record.
    pub fn end(&self) -> watch::Receiver<u64> {
        self.end.clone()
    }
}

/// Up to `limit` records from `offset` on, in order. Rows are stepped on the blocking
/// pool straight into records: one hand-off per batch, no JSON in between.
async fn read_records(
    readers: &Arc<Readers>,
    offset: u64,
    limit: u32,
) -> Result<Vec<RawRecord>, StoreError> {
    let from = to_i64(offset)?;
    readers
        .with_blocking(move |conn| step_records(conn, from, limit))
        .await
}

/// As [`read_records`], decoded on the blocking pool too (the worker's task stays free
/// to decide the previous batch meanwhile).
async fn read_decoded(
    readers: &Arc<Readers>,
    offset: u64,
    limit: u32,
) -> Result<ReplayChunk, StoreError> {
    let from = to_i64(offset)?;
    readers
        .with_blocking(move |conn| {
            let raw = step_records(conn, from, limit)?;
            Ok(ReplayChunk {
                read_end: raw.last().map_or(offset, |last| last.offset + 1),
                records: raw.iter().filter_map(decode).collect(),
            })
        })
        .await
}

fn step_records(conn: &Connection, from: i64, limit: u32) -> Result<Vec<RawRecord>, StoreError> {
    const SQL: &str = "SELECT log_offset, appended_at_ms, payload FROM log_records \
         WHERE log_offset >= ? ORDER BY log_offset LIMIT ?";
    let mut select = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    let mut rows = select
        .query(rusqlite::params![from, i64::from(limit)])
        .map_err(sqlite_error)?;
    let mut records = Vec::with_capacity(limit.min(4_096) as usize);
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let offset: i64 = row.get(0).map_err(sqlite_error)?;
        let at: i64 = row.get(1).map_err(sqlite_error)?;
        records.push(RawRecord {
            offset: u64::try_from(offset).map_err(corrupt)?,
            appended_at: DateTime::from_timestamp_millis(at)
                .ok_or_else(|| corrupt(format!("time {at}")))?,
            payload: row.get(2).map_err(sqlite_error)?,
        });
    }
    Ok(records)
}

/// The log file opened read-only, for replays outside the service (`audit`): never
/// created, migrated or written, so it is safe while the service runs.
pub struct LogFile {
    readers: Arc<Readers>,
}

impl LogFile {
    /// Refuses a missing file rather than creating an empty one.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            readers: Readers::of_existing(path)?,
        })
    }
}

impl LogReplay for LogFile {
    async fn partition_ends(&self) -> Result<BTreeMap<u32, u64>, LogError> {
        const SQL: &str = "SELECT COALESCE(MAX(log_offset) + 1, 0) FROM log_records";
        let end = self
            .readers
            .with_blocking(|conn| {
                let end: i64 = conn
                    .query_row(SQL, [], |r| r.get(0))
                    .map_err(sqlite_error)?;
                to_u64(end)
            })
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(BTreeMap::from([(PARTITION, end)]))
    }

    async fn offset_at(&self, partition: u32, at: DateTime<Utc>) -> Result<u64, LogError> {
        const SQL: &str = "SELECT COALESCE(MIN(log_offset), (SELECT COALESCE(MAX(log_offset) + 1, 0) FROM log_records)) \
             FROM log_records WHERE appended_at_ms >= ?";
        if partition != PARTITION {
            return Ok(0);
        }
        let at = at.timestamp_millis();
        self.readers
            .with_blocking(move |conn| {
                let offset: i64 = conn
                    .query_row(SQL, [at], |r| r.get(0))
                    .map_err(sqlite_error)?;
                to_u64(offset)
            })
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))
    }

    async fn read(&self, partition: u32, from: u64, until: u64) -> Result<ReplayChunk, LogError> {
        let limit = u32::try_from(until.saturating_sub(from))
            .unwrap_or(u32::MAX)
            .min(REPLAY_BATCH);
        if partition != PARTITION || limit == 0 {
            return Ok(ReplayChunk {
                records: Vec::new(),
                read_end: from,
            });
        }
        read_decoded(&self.readers, from, limit)
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))
    }
}

/// Decodes a stored record; `None` (logged) for one that no longer parses.
pub fn decode(raw: &RawRecord) -> Option<LogRecord> {
    match event_codec::decode(raw.payload.as_bytes()) {
        Ok(event) => Some(LogRecord {
            position: LogPosition {
                partition: PARTITION,
                offset: raw.offset,
            },
            appended_at: raw.appended_at,
            event,
        }),
        Err(error) => {
            tracing::error!(offset = raw.offset, %error, "undecodable log record skipped");
            None
        }
    }
}

impl IssueLog for EmbeddedLog {
    /// One partition: every placement is partition 0.
    async fn append(&self, event: LogEvent, _placement: Placement) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        let job = AppendJob {
            payload: event_codec::encode(&event),
            reply,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LogError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                LogError::Unavailable("log writer stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| LogError::Unavailable("log writer stopped".into()))?
    }
}

fn tail(conn: &Connection) -> Result<(u64, i64), StoreError> {
    const SQL: &str = "SELECT COALESCE(MAX(log_offset) + 1, 0), COALESCE(MAX(appended_at_ms), 0) FROM log_records";
    let (next, last): (i64, i64) = conn
        .query_row(SQL, [], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sqlite_error)?;
    Ok((to_u64(next)?, last))
}

struct Writer {
    conn: Connection,
    next_offset: u64,
    /// Append times never go backwards, even if the wall clock does.
    last_time: i64,
    end: watch::Sender<u64>,
}

impl Writer {
    /// Runs on its own thread until every sender is gone.
    fn run(mut self, mut queue: mpsc::Receiver<AppendJob>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        // Block for the first job, then take whatever queued meanwhile: the group.
        while let Some(first) = queue.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            match self.write(&group) {
                Ok(appended_at) => {
                    let first = self.next_offset;
                    self.next_offset += group.len() as u64;
                    // Publish the new end before answering: whoever holds an answer can
                    // count on `end()` covering its record.
                    self.end.send_replace(self.next_offset);
                    for (i, job) in group.drain(..).enumerate() {
                        let position = LogPosition {
                            partition: PARTITION,
                            offset: first + i as u64,
                        };
                        // The caller may have gone away; its record is durable all the same.
                        let _ = job.reply.send(Ok(Appended {
                            position,
                            appended_at,
                        }));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "log append failed; refusing this group");
                    for job in group.drain(..) {
                        let _ = job
                            .reply
                            .send(Err(LogError::Unavailable(error.to_string())));
                    }
                    // The outcome of a failed commit is read back, not assumed.
                    match tail(&self.conn) {
                        Ok((next, last)) => {
                            self.next_offset = next;
                            self.last_time = self.last_time.max(last);
                            self.end.send_replace(next);
                        }
                        Err(error) => tracing::error!(%error, "cannot read the log's tail"),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        tracing::debug!("log writer stopped");
    }

    /// Writes the group in one transaction (synchronous=FULL: fsync at commit); returns
    /// its append time.
    fn write(&mut self, group: &[AppendJob]) -> Result<DateTime<Utc>, StoreError> {
        const SQL: &str =
            "INSERT INTO log_records (log_offset, appended_at_ms, payload) VALUES (?, ?, ?)";
        let now = Utc::now().timestamp_millis().max(self.last_time);
        let first = i64::try_from(self.next_offset).map_err(corrupt)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        {
            let mut insert = tx.prepare_cached(SQL).map_err(sqlite_error)?;
            for (i, job) in (0_i64..).zip(group) {
                let payload = std::str::from_utf8(&job.payload).map_err(corrupt)?;
                insert
                    .execute(rusqlite::params![first + i, now, payload])
                    .map_err(sqlite_error)?;
            }
        }
        // Dropping an uncommitted transaction rolls it back.
        tx.commit().map_err(sqlite_error)?;
        self.last_time = now;
        DateTime::from_timestamp_millis(now).ok_or_else(|| corrupt(format!("append time {now} ms")))
    }
}
