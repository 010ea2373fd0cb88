//! The issuing worker's transaction on SQLite. `BEGIN IMMEDIATE` takes the write lock up
//! front, so the offset check and the writes see one consistent state.

use serde_json::json;
use sqlx::{Sqlite, Transaction};

use super::repositories::{CampaignRow, campaign_from_row, insert_campaign};
use super::{SqliteStore, to_millis};
use crate::domain::ports::{BatchChanges, IssuanceBatch, IssuanceStore, StoreError};
use crate::domain::{Campaign, CampaignId, CouponCode, UserId};
use crate::infra::sql_error::{corrupt, store_error};
use crate::infra::sql_values::{to_i64, to_u64};

pub struct SqliteBatch {
    tx: Transaction<'static, Sqlite>,
}

impl IssuanceStore for SqliteStore {
    type Batch = SqliteBatch;

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT next_offset FROM partition_offsets WHERE log_partition = ?";
        let stored: Option<i64> = sqlx::query_scalar(SQL)
            .bind(i64::from(partition))
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        stored.map_or(Ok(0), to_u64)
    }

    async fn begin(
        &self,
        partition: u32,
        expected: u64,
        next: u64,
    ) -> Result<SqliteBatch, StoreError> {
        const ENSURE: &str = "INSERT INTO partition_offsets (log_partition, next_offset) VALUES (?, 0) ON CONFLICT DO NOTHING";
        const ADVANCE: &str = "UPDATE partition_offsets SET next_offset = ? WHERE log_partition = ? AND next_offset = ?";
        const STORED: &str = "SELECT next_offset FROM partition_offsets WHERE log_partition = ?";
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        sqlx::query(ENSURE)
            .bind(i64::from(partition))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let advanced = sqlx::query(ADVANCE)
            .bind(to_i64(next)?)
            .bind(i64::from(partition))
            .bind(to_i64(expected)?)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        if advanced.rows_affected() != 1 {
            let stored: i64 = sqlx::query_scalar(STORED)
                .bind(i64::from(partition))
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;
            return Err(StoreError::Fenced {
                partition,
                expected,
                stored: to_u64(stored)?,
            });
        }
        Ok(SqliteBatch { tx })
    }
}

impl IssuanceBatch for SqliteBatch {
    async fn load_campaigns(&mut self, ids: &[CampaignId]) -> Result<Vec<Campaign>, StoreError> {
        const SQL: &str = "SELECT id, name, total_coupons, issued_coupons, starts_at_ms, created_at_ms, origin_partition, origin_offset \
             FROM campaigns WHERE id IN (SELECT value FROM json_each(?))";
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sqlx::query_as::<_, CampaignRow>(SQL)
            .bind(json!(ids).to_string())
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(campaign_from_row)
            .collect()
    }

    async fn load_holders(
        &mut self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
        const SQL: &str = "SELECT user_id, code FROM coupons \
             WHERE campaign_id = ? AND user_id IN (SELECT value FROM json_each(?))";
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
        sqlx::query_as::<_, (String, String)>(SQL)
            .bind(campaign.to_string())
            .bind(json!(users).to_string())
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(user, code)| {
                Ok((
                    UserId::parse(&user).map_err(corrupt)?,
                    CouponCode::parse(&code).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// One statement per table for the whole batch: rows travel as one JSON array.
    async fn commit(mut self, changes: BatchChanges) -> Result<(), StoreError> {
        const COUPONS: &str = "INSERT INTO coupons (code, campaign_id, ordinal, user_id, ticket_id, issued_at_ms) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?)";
        const TICKETS: &str = "INSERT INTO ticket_results (ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 FROM json_each(?) \
             WHERE true ON CONFLICT (ticket_id) DO NOTHING";
        const COUNT: &str = "UPDATE campaigns SET issued_coupons = ? WHERE id = ?";

        for campaign in &changes.new_campaigns {
            insert_campaign(&mut *self.tx, campaign).await?;
        }
        if !changes.coupons.is_empty() {
            let rows: Vec<_> = changes
                .coupons
                .iter()
                .map(|c| {
                    json!([
                        c.code.as_str(),
                        c.campaign_id.to_string(),
                        c.ordinal,
                        c.user_id.as_str(),
                        c.ticket_id.to_string(),
                        to_millis(c.issued_at)
                    ])
                })
                .collect();
            sqlx::query(COUPONS)
                .bind(json!(rows).to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(store_error)?;
        }
        if !changes.tickets.is_empty() {
            let rows: Vec<_> = changes
                .tickets
                .iter()
                .map(|t| {
                    json!([
                        t.ticket_id.to_string(),
                        t.campaign_id.to_string(),
                        t.user_id.as_str(),
                        t.status.code(),
                        t.coupon_code.as_ref().map(CouponCode::as_str),
                        t.position.partition,
                        t.position.offset
                    ])
                })
                .collect();
            sqlx::query(TICKETS)
                .bind(json!(rows).to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(store_error)?;
        }
        for (campaign_id, issued) in &changes.issued_counts {
            sqlx::query(COUNT)
                .bind(to_i64(*issued)?)
                .bind(campaign_id.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(store_error)?;
        }
        self.tx.commit().await.map_err(store_error)
    }
}
