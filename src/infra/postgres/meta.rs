//! The `meta` table of the deployment's database: facts about its data, the fingerprint
//! of the key every node must share and the log its decisions belong to. The first node
//! to start records them; every node, producer or consumer, compares them at start.

use super::PgStore;
use crate::domain::ports::StoreError;
use crate::infra::sql_error::store_error;
use crate::infra::{key_fingerprint, log_binding};

impl PgStore {
    /// The fingerprint of the deployment's key (`infra::key_fingerprint`), if recorded.
    pub async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.meta_value(key_fingerprint::META_NAME).await
    }

    /// Records the key's fingerprint unless one is; true when it was recorded now. With
    /// many nodes starting at once one insert wins; every node then reads what won.
    pub async fn record_key_fingerprint(&self, fingerprint: &str) -> Result<bool, StoreError> {
        self.record_meta(key_fingerprint::META_NAME, fingerprint)
            .await
    }

    /// The log the database's decisions belong to (`infra::log_binding`), if recorded.
    pub async fn log_identity(&self) -> Result<Option<String>, StoreError> {
        self.meta_value(log_binding::META_NAME).await
    }

    /// Records the log unless one is; true when it was recorded now (one of many nodes
    /// starting at once wins, as for the key).
    pub async fn record_log_identity(&self, log: &str) -> Result<bool, StoreError> {
        self.record_meta(log_binding::META_NAME, log).await
    }

    async fn meta_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_error)
    }

    async fn record_meta(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let inserted = sqlx::query(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *conn)
        .await
        .map_err(store_error)?
        .rows_affected();
        Ok(inserted == 1)
    }
    /// Whether any campaign is stored: a database of an earlier version that adopts
    /// the key of the first node to start is logged as such.
    pub async fn holds_data(&self) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM campaigns)")
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)
    }

    /// The database's name, to name it in errors without the URL's password.
    pub async fn database_name(&self) -> Result<String, StoreError> {
        let mut conn = self.conn().await?;
        sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)
    }
}
