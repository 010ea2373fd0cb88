//! The whole decided state read for `audit`, in one REPEATABLE READ, READ ONLY
//! transaction: every query sees the same snapshot, and nothing is written or locked
//! that a worker would wait for.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use uuid::Uuid;

use super::PgStore;
use super::repositories::{
    CampaignRow, CouponRow, campaign_columns, campaign_from_row, coupon_from_row,
};
use crate::domain::ports::{DecidedState, DecidedStateReader, StoreError};
use crate::domain::{CampaignId, TicketId, TicketResult};
use crate::infra::sql_error::store_error;
use crate::infra::sql_values::{TicketColumns, to_partition, to_ticket_result, to_u64};

type TicketRow = (Uuid, Uuid, String, i16, Option<String>, i64, i64);

impl DecidedStateReader for PgStore {
    async fn read_decided_state(&self) -> Result<DecidedState, StoreError> {
        const SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";
        const OFFSETS: &str = "SELECT log_partition, next_offset FROM partition_offsets";
        const CAMPAIGNS: &str = concat!("SELECT ", campaign_columns!(), " FROM campaigns");
        const COUPONS: &str = "SELECT code, campaign_id, ordinal, user_id, ticket_id, issued_at, ticket_partition, ticket_offset FROM coupons";
        const TICKETS: &str = "SELECT ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset FROM ticket_results";
        let mut tx = self.begin().await?;
        sqlx::query(SNAPSHOT)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let offsets = sqlx::query_as::<_, (i64, i64)>(OFFSETS)
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(partition, next)| Ok((to_partition(partition)?, to_u64(next)?)))
            .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
        let campaigns = sqlx::query_as::<_, CampaignRow>(CAMPAIGNS)
            .fetch(&mut *tx)
            .map_err(store_error)
            .and_then(|row| async move { campaign_from_row(row) })
            .try_collect()
            .await?;
        let coupons = sqlx::query_as::<_, CouponRow>(COUPONS)
            .fetch(&mut *tx)
            .map_err(store_error)
            .and_then(|row| async move { coupon_from_row(row) })
            .try_collect()
            .await?;
        let tickets = sqlx::query_as::<_, TicketRow>(TICKETS)
            .fetch(&mut *tx)
            .map_err(store_error)
            .and_then(|row| async move { ticket_from_row(row) })
            .try_collect()
            .await?;
        tx.rollback().await.map_err(store_error)?;
        Ok(DecidedState {
            offsets,
            campaigns,
            coupons,
            tickets,
        })
    }
}

fn ticket_from_row(row: TicketRow) -> Result<TicketResult, StoreError> {
    let (ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset) = row;
    let columns = TicketColumns {
        user_id: &user_id,
        status: status.into(),
        coupon_code: coupon_code.as_deref(),
        log_partition,
        log_offset,
    };
    to_ticket_result(
        TicketId::from_uuid(ticket_id),
        CampaignId::from_uuid(campaign_id),
        columns,
    )
}
