//! The embedded state file opened read-only for `audit`: never created, migrated or
//! locked. One read transaction (WAL mode: a snapshot the running writer does not
//! disturb) reads all of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use super::readers::Readers;
use super::repositories::{
    CampaignRow, CouponRow, campaign_columns, campaign_from_row, coupon_from_row, parse_campaign_id,
};
use crate::domain::ports::{DecidedState, DecidedStateReader, StoreError};
use crate::domain::{TicketId, TicketResult};
use crate::infra::sql_error::{corrupt, sqlite_error};
use crate::infra::sql_values::{TicketColumns, to_partition, to_ticket_result, to_u64};

/// A state file, read only.
pub struct StateFile {
    readers: Arc<Readers>,
}

impl StateFile {
    /// Refuses a missing file rather than creating an empty one.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            readers: Readers::of_existing(path)?,
        })
    }
}

impl DecidedStateReader for StateFile {
    async fn read_decided_state(&self) -> Result<DecidedState, StoreError> {
        self.readers
            .with_blocking(|conn| {
                conn.execute_batch("BEGIN").map_err(sqlite_error)?;
                let state = read_all(conn);
                // A read transaction: ending it can only release the snapshot.
                let _ = conn.execute_batch("ROLLBACK");
                state
            })
            .await
    }
}

fn read_all(conn: &Connection) -> Result<DecidedState, StoreError> {
    const OFFSETS: &str = "SELECT log_partition, next_offset FROM partition_offsets";
    const CAMPAIGNS: &str = concat!("SELECT ", campaign_columns!(), " FROM campaigns");
    const COUPONS: &str = "SELECT code, campaign_id, ordinal, user_id, ticket_id, issued_at_ms, ticket_partition, ticket_offset FROM coupons";
    const TICKETS: &str = "SELECT ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset FROM ticket_results";
    let offsets = rows(conn, OFFSETS, |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?
    .into_iter()
    .map(|(partition, next)| Ok((to_partition(partition)?, to_u64(next)?)))
    .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
    let campaigns = rows(conn, CAMPAIGNS, |r| CampaignRow::try_from(r))?
        .into_iter()
        .map(campaign_from_row)
        .collect::<Result<_, _>>()?;
    let coupons = rows(conn, COUPONS, |r| CouponRow::try_from(r))?
        .into_iter()
        .map(coupon_from_row)
        .collect::<Result<_, _>>()?;
    let tickets = rows(conn, TICKETS, TicketRow::read)?
        .into_iter()
        .map(TicketRow::into_result)
        .collect::<Result<_, _>>()?;
    Ok(DecidedState {
        offsets,
        campaigns,
        coupons,
        tickets,
    })
}

fn rows<T>(
    conn: &Connection,
    sql: &str,
    read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut select = conn.prepare(sql).map_err(sqlite_error)?;
    let rows = select.query_map([], read).map_err(sqlite_error)?;
    rows.collect::<rusqlite::Result<Vec<T>>>()
        .map_err(sqlite_error)
}

struct TicketRow {
    ticket_id: String,
    campaign_id: String,
    user_id: String,
    status: i64,
    coupon_code: Option<String>,
    log_partition: i64,
    log_offset: i64,
}

impl TicketRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            ticket_id: r.get(0)?,
            campaign_id: r.get(1)?,
            user_id: r.get(2)?,
            status: r.get(3)?,
            coupon_code: r.get(4)?,
            log_partition: r.get(5)?,
            log_offset: r.get(6)?,
        })
    }

    fn into_result(self) -> Result<TicketResult, StoreError> {
        let ticket_id = uuid::Uuid::try_parse(&self.ticket_id).map_err(corrupt)?;
        let columns = TicketColumns {
            user_id: &self.user_id,
            status: self.status,
            coupon_code: self.coupon_code.as_deref(),
            log_partition: self.log_partition,
            log_offset: self.log_offset,
        };
        to_ticket_result(
            TicketId::from_uuid(ticket_id),
            parse_campaign_id(&self.campaign_id)?,
            columns,
        )
    }
}
