//! Conversions between domain numbers and SQL integers; shared by the SQLite and
//! PostgreSQL adapters. Both databases only have signed 64-bit integers.

use crate::domain::IssueStatus;
use crate::domain::ports::StoreError;
use crate::infra::sql_error::corrupt;

pub fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| corrupt(format!("{n} does not fit a SQL integer")))
}

pub fn to_u64(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(format!("negative count {n}")))
}

pub fn to_partition(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(format!("log partition {n}")))
}

/// A ticket status as both stores keep it (`IssueStatus::code`).
pub fn to_status(code: i64) -> Result<IssueStatus, StoreError> {
    i16::try_from(code)
        .ok()
        .and_then(IssueStatus::from_code)
        .ok_or_else(|| corrupt(format!("ticket status {code}")))
}
