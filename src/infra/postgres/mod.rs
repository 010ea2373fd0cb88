//! PostgreSQL storage of the distributed mode: campaigns, coupons, ticket results and the
//! decided offset of every log partition, shared by any number of API nodes and workers.

mod breaker;
mod decided_listener;
mod issuance;
mod meta;
mod repositories;
mod snapshot;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

pub use decided_listener::{LISTENER_APPLICATION_NAME, Publish, follow_decided_offsets};
pub use issuance::{HOLDERS_SQL, PgBatch};

use super::sql_error::store_error;
use crate::domain::ports::StoreError;
use breaker::Breaker;

/// How long a caller waits for a pooled connection before the database counts as
/// unavailable (the worker retries; the API answers `Unavailable`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds on an issuing worker's sessions. A worker frozen inside its decision
/// transaction (GC or VM pause, SIGSTOP, a network partition that keeps the socket
/// open) holds its partition's row lock, and the partition's next owner waits on it:
/// the server ends such a transaction, and with it the lock, after these limits.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `statement_timeout`: one statement, lock waits included.
    pub statement: Duration,
    /// `lock_timeout`: waiting for a row lock (another worker's batch of the partition).
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout`: the session of a worker that stopped
    /// talking in the middle of a transaction is terminated, its transaction rolled back.
    pub idle_in_transaction: Duration,
    /// The server's `tcp_keepalives_idle`: a peer that vanished without closing the
    /// socket (a dead host) is noticed after this, plus 3 probes 1 s apart.
    pub keepalive_idle: Duration,
}

impl SessionLimits {
    /// Startup parameters: applied by the server when a session starts, no round trip.
    fn startup_options(&self) -> [(&'static str, String); 6] {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("statement_timeout", ms(self.statement)),
            ("lock_timeout", ms(self.lock)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction),
            ),
            (
                "tcp_keepalives_idle",
                self.keepalive_idle.as_secs().max(1).to_string(),
            ),
            ("tcp_keepalives_interval", "1".to_owned()),
            ("tcp_keepalives_count", "3".to_owned()),
        ]
    }
}

/// Handle to the state database; cheap to clone (clones share the pool and breaker).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    breaker: Arc<Breaker>,
}

impl PgStore {
    /// One round trip, for the health check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// A pooled connection, or at once `Unavailable` while the database is known to
    /// be down (see `breaker`).
    async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.breaker.call(self.pool.acquire()).await
    }

    /// A transaction on a pooled connection, failing fast like [`PgStore::conn`].
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.breaker.call(self.pool.begin()).await
    }

    /// Connects with at most `max_connections` (at least 1) and migrates the schema.
    ///
    /// Safe when several processes start at once: sqlx's migrator (sqlx-core 0.9
    /// `Migrator::run_direct`) takes `pg_advisory_lock` on a key derived from the database
    /// name (sqlx-postgres 0.9 `migrate.rs`, `lock`) before it even creates its
    /// `_sqlx_migrations` table, so the others wait and then find the migrations applied.
    ///
    /// API nodes use it with the server's default session settings: their statements are
    /// single reads and inserts outside any open transaction, each bounded by the request
    /// timeout, and what could block them (a worker's locks) is bounded at the worker.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(database_url).map_err(store_error)?;
        Self::open(options, max_connections).await
    }

    /// As [`PgStore::connect`], for an issuing worker: its sessions carry `limits` and
    /// `application_name` (so an operator can tell the workers apart in `pg_stat_activity`).
    pub async fn connect_worker(
        database_url: &str,
        max_connections: u32,
        application_name: &str,
        limits: &SessionLimits,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(database_url)
            .map_err(store_error)?
            .application_name(application_name)
            .options(limits.startup_options());
        Self::open(options, max_connections).await
    }

    /// Connects without migrating, for tools that only read (`audit`): a database of
    /// another schema version fails their queries instead of being changed.
    pub async fn connect_read_only(database_url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(database_url)
            .map_err(store_error)?
            .application_name("coupon-audit");
        Self::pool(options, 2).await
    }

    async fn open(options: PgConnectOptions, max_connections: u32) -> Result<Self, StoreError> {
        migrate(&options).await?;
        Self::pool(options, max_connections).await
    }

    async fn pool(options: PgConnectOptions, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(store_error)?;
        Ok(Self {
            breaker: Arc::new(Breaker::new(pool.clone())),
            pool,
        })
    }
}

/// On a connection of its own without the session limits: the migrator waits for
/// another node's migration (an advisory lock), which may take longer than a lock
/// timeout made for row locks.
async fn migrate(options: &PgConnectOptions) -> Result<(), StoreError> {
    let plain = options
        .clone()
        .options([("lock_timeout", "0"), ("statement_timeout", "0")]);
    let mut conn = PgConnection::connect_with(&plain)
        .await
        .map_err(store_error)?;
    let migrated = sqlx::migrate!("migrations/postgres").run(&mut conn).await;
    let _ = conn.close().await;
    migrated.map_err(|e| StoreError::Unavailable(format!("migrating the state database: {e}")))
}
