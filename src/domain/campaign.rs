//! Campaigns and the value types that can only be built valid.

use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use super::log::LogPosition;

/// Longest campaign name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest campaign; codes leave room for 2^32 ordinals, this keeps drops sane.
pub const MAX_TOTAL_COUPONS: u64 = 10_000_000;

/// Why a campaign field was refused; the interface layer names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignFieldError {
    #[error("must not be empty")]
    EmptyName,
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    NameTooLong,
    #[error("must not contain control characters")]
    NameHasControlChars,
    #[error("must be between 1 and {MAX_TOTAL_COUPONS}, got {0}")]
    TotalOutOfRange(i64),
    #[error("must be a UUID, got {0:?}")]
    MalformedId(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignId(Uuid);

impl CampaignId {
    /// A fresh, time-ordered id (UUIDv7 keeps index inserts local).
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, CampaignFieldError> {
        Uuid::try_parse(raw.trim())
            .map(Self)
            .map_err(|_| CampaignFieldError::MalformedId(truncate_for_error(raw)))
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignName(String);

impl CampaignName {
    pub fn parse(raw: &str) -> Result<Self, CampaignFieldError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(CampaignFieldError::EmptyName);
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(CampaignFieldError::NameTooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(CampaignFieldError::NameHasControlChars);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TotalCoupons(u64);

impl TotalCoupons {
    pub fn parse(raw: i64) -> Result<Self, CampaignFieldError> {
        match u64::try_from(raw) {
            Ok(n) if (1..=MAX_TOTAL_COUPONS).contains(&n) => Ok(Self(n)),
            _ => Err(CampaignFieldError::TotalOutOfRange(raw)),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// What an admin asks for; the log position is only known once it is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub id: CampaignId,
    pub name: CampaignName,
    pub total_coupons: TotalCoupons,
    pub starts_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl NewCampaign {
    /// Start instants are kept to the millisecond: Kafka's append clock has no finer grain,
    /// so "appended at or after the start" means the same thing on every log.
    pub fn new(name: CampaignName, total_coupons: TotalCoupons, starts_at: DateTime<Utc>) -> Self {
        let now = Utc::now();
        Self {
            id: CampaignId::generate(),
            name,
            total_coupons,
            starts_at: truncate_to_millis(starts_at),
            created_at: truncate_to_millis(now),
        }
    }

    /// The campaign as the log placed it: `origin` makes its coupon codes its own.
    pub fn placed_at(self, origin: LogPosition) -> Campaign {
        Campaign {
            id: self.id,
            name: self.name,
            total_coupons: self.total_coupons,
            issued_coupons: 0,
            starts_at: self.starts_at,
            created_at: self.created_at,
            origin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: CampaignName,
    pub total_coupons: TotalCoupons,
    pub issued_coupons: u64,
    pub starts_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Where the campaign's creation sits in the log: unique by construction, the same
    /// on every replay, so it is what the coupon codes are derived from.
    pub origin: LogPosition,
}

impl Campaign {
    pub fn is_sold_out(&self) -> bool {
        self.issued_coupons >= self.total_coupons.get()
    }

    pub fn has_started_at(&self, instant: DateTime<Utc>) -> bool {
        instant >= self.starts_at
    }
}

pub fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

fn truncate_for_error(raw: &str) -> String {
    raw.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            CampaignName::parse("  drop  ").map(|n| n.0),
            Ok("drop".into())
        );
        assert_eq!(
            CampaignName::parse("   "),
            Err(CampaignFieldError::EmptyName)
        );
        let long = "가".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(
            CampaignName::parse(&long),
            Err(CampaignFieldError::NameTooLong)
        );
        assert!(CampaignName::parse(&"가".repeat(MAX_NAME_CHARS)).is_ok());
        assert_eq!(
            CampaignName::parse("a\u{0}b"),
            Err(CampaignFieldError::NameHasControlChars)
        );
    }

    #[test]
    fn totals_must_be_positive_and_sane() {
        assert!(TotalCoupons::parse(0).is_err());
        assert!(TotalCoupons::parse(-5).is_err());
        assert!(TotalCoupons::parse(MAX_TOTAL_COUPONS as i64 + 1).is_err());
        assert_eq!(TotalCoupons::parse(1).map(TotalCoupons::get), Ok(1));
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(CampaignId::parse("nope").is_err());
        let id = CampaignId::generate();
        assert_eq!(CampaignId::parse(&id.to_string()), Ok(id));
    }
}
