//! PostgreSQL storage of the distributed mode: campaigns, coupons, ticket results and the
//! decided offset of every log partition, shared by any number of API nodes and workers.

mod issuance;
mod meta;
mod repositories;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use issuance::{HOLDERS_SQL, PgBatch};

use super::sql_error::store_error;
use crate::domain::ports::StoreError;

/// How long a caller waits for a pooled connection before the database counts as
/// unavailable (the worker retries; the API answers `Unavailable`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle to the state database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// One round trip, for the health check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Connects with at most `max_connections` (at least 1) and migrates the schema.
    ///
    /// Safe when several processes start at once: sqlx's migrator (sqlx-core 0.9
    /// `Migrator::run_direct`) takes `pg_advisory_lock` on a key derived from the database
    /// name (sqlx-postgres 0.9 `migrate.rs`, `lock`) before it even creates its
    /// `_sqlx_migrations` table, so the others wait and then find the migrations applied.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(database_url)
            .await
            .map_err(store_error)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating the state database: {e}")))?;
        Ok(Self { pool })
    }
}
