//! Conversions between domain numbers and SQL integers; shared by the SQLite and
//! PostgreSQL adapters. Both databases only have signed 64-bit integers.

use crate::domain::ports::StoreError;
use crate::domain::{
    CampaignId, CodeAlphabet, CouponCode, IssueStatus, LogPosition, TicketId, TicketResult, UserId,
};
use crate::infra::sql_error::corrupt;

pub fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| corrupt(format!("{n} does not fit a SQL integer")))
}

pub fn to_u64(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(format!("negative count {n}")))
}

pub fn parse_alphabet(name: &str) -> Result<CodeAlphabet, StoreError> {
    CodeAlphabet::parse(name).ok_or_else(|| corrupt(format!("code alphabet {name:?}")))
}

pub fn to_partition(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(format!("log partition {n}")))
}

/// A coupon's ticket position: both columns set, or both NULL (stored before it was kept).
pub fn to_ticket_position(
    partition: Option<i64>,
    offset: Option<i64>,
) -> Result<Option<LogPosition>, StoreError> {
    match (partition, offset) {
        (Some(partition), Some(offset)) => Ok(Some(LogPosition {
            partition: to_partition(partition)?,
            offset: to_u64(offset)?,
        })),
        (None, None) => Ok(None),
        _ => Err(corrupt("a coupon's ticket position is half set")),
    }
}

/// The columns of a coupon's ticket position.
pub fn from_ticket_position(
    position: Option<LogPosition>,
) -> Result<(Option<i64>, Option<i64>), StoreError> {
    Ok(match position {
        Some(at) => (Some(i64::from(at.partition)), Some(to_i64(at.offset)?)),
        None => (None, None),
    })
}

/// A ticket status as both stores keep it (`IssueStatus::code`).
pub fn to_status(code: i64) -> Result<IssueStatus, StoreError> {
    i16::try_from(code)
        .ok()
        .and_then(IssueStatus::from_code)
        .ok_or_else(|| corrupt(format!("ticket status {code}")))
}

/// A `ticket_results` row's columns (as both stores keep them), read back.
pub struct TicketColumns<'a> {
    pub user_id: &'a str,
    pub status: i64,
    pub coupon_code: Option<&'a str>,
    pub log_partition: i64,
    pub log_offset: i64,
}

pub fn to_ticket_result(
    ticket_id: TicketId,
    campaign_id: CampaignId,
    columns: TicketColumns<'_>,
) -> Result<TicketResult, StoreError> {
    Ok(TicketResult {
        ticket_id,
        campaign_id,
        user_id: UserId::from_stored(columns.user_id).map_err(corrupt)?,
        status: to_status(columns.status)?,
        coupon_code: columns
            .coupon_code
            .map(CouponCode::parse)
            .transpose()
            .map_err(corrupt)?,
        position: LogPosition {
            partition: to_partition(columns.log_partition)?,
            offset: to_u64(columns.log_offset)?,
        },
    })
}
