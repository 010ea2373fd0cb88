//! Campaigns and the value types that can only be built valid.

use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use super::coupon_code::CodeAlphabet;
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
    #[error("must be at most {MAX_REQUEST_ID_BYTES} bytes of printable characters")]
    BadRequestId,
}

pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A client-chosen key that makes a campaign's creation idempotent: every creation
/// with the same key names the same campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// `None` for an empty key (no idempotency asked for).
    pub fn parse(raw: &str) -> Result<Option<Self>, CampaignFieldError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > MAX_REQUEST_ID_BYTES || raw.chars().any(char::is_control) {
            return Err(CampaignFieldError::BadRequestId);
        }
        Ok(Some(Self(raw.to_owned())))
    }
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

    /// The campaign a creation with this key makes: a name-based (v5) uuid, so retries
    /// on any node, and a rebuild from the log, agree on it without a lookup.
    pub fn for_request(key: &RequestId) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_0c3f_58b2_4d4e_9b7a_1f2c_3d4e_5f60);
        Self(Uuid::new_v5(&NAMESPACE, key.0.as_bytes()))
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
    /// The alphabet asked for; `placed_at` may fall back to the full one.
    pub alphabet: CodeAlphabet,
}

impl NewCampaign {
    /// Start instants are kept to the millisecond: Kafka's append clock has no finer grain,
    /// so "appended at or after the start" means the same thing on every log. A start
    /// between two milliseconds is rounded *up*: rounding down would make requests
    /// appended in that millisecond, before the requested instant, eligible.
    pub fn new(name: CampaignName, total_coupons: TotalCoupons, starts_at: DateTime<Utc>) -> Self {
        let now = Utc::now();
        Self {
            id: CampaignId::generate(),
            name,
            total_coupons,
            starts_at: ceil_to_millis(starts_at),
            created_at: truncate_to_millis(now),
            alphabet: CodeAlphabet::Readable,
        }
    }

    /// The same campaign with codes in `alphabet` (readable unless asked otherwise).
    pub fn with_alphabet(self, alphabet: CodeAlphabet) -> Self {
        Self { alphabet, ..self }
    }

    /// The same campaign under the id a creation key gives it.
    pub fn with_id(self, id: CampaignId) -> Self {
        Self { id, ..self }
    }

    /// Whether `other` asks for the same campaign (a retry with the same key).
    pub fn same_terms(&self, other: &Campaign) -> bool {
        self.name == other.name
            && self.total_coupons == other.total_coupons
            && self.starts_at == other.starts_at
            && (self.alphabet == other.alphabet || !self.alphabet.holds(other.origin))
    }

    /// The campaign as the log placed it: `origin` makes its coupon codes its own. A
    /// readable campaign placed beyond the readable code space (partition 256 or later,
    /// offset 2^40 or later) gets full codes: decided the same way on every replay.
    pub fn placed_at(self, origin: LogPosition) -> Campaign {
        let alphabet = if self.alphabet.holds(origin) {
            self.alphabet
        } else {
            CodeAlphabet::Full
        };
        Campaign {
            alphabet,
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
    /// The symbols of its codes.
    pub alphabet: CodeAlphabet,
}

/// A campaign as the admins' list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignListing {
    pub campaign: Campaign,
    /// When its last coupon was issued; `None` until it is sold out.
    pub sold_out_at: Option<DateTime<Utc>>,
}

/// A place in the newest-first list of campaigns: a page goes on after this campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListPosition {
    pub created_at: DateTime<Utc>,
    pub id: CampaignId,
}

impl ListPosition {
    pub fn of(campaign: &Campaign) -> Self {
        Self {
            created_at: campaign.created_at,
            id: campaign.id,
        }
    }
}

/// Where a campaign is in its life, on some clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignState {
    Scheduled,
    Live,
    SoldOut,
}

impl Campaign {
    pub fn is_sold_out(&self) -> bool {
        self.issued_coupons >= self.total_coupons.get()
    }

    pub fn has_started_at(&self, instant: DateTime<Utc>) -> bool {
        instant >= self.starts_at
    }

    /// Its state at `now`: what admins see (issuing judges the start by the log's clock).
    pub fn state_at(&self, now: DateTime<Utc>) -> CampaignState {
        if self.is_sold_out() {
            CampaignState::SoldOut
        } else if self.has_started_at(now) {
            CampaignState::Live
        } else {
            CampaignState::Scheduled
        }
    }

    /// Whether this creation record, rather than `known`'s, defines the campaign: the
    /// earliest creation in the log does (a retried creation can append one campaign
    /// twice, and which record an API node stored first must not matter). Both are in
    /// the campaign's partition; nothing can be issued before the earliest is decided.
    pub fn defines_instead_of(&self, known: &Campaign) -> bool {
        self.id == known.id
            && self.origin.partition == known.origin.partition
            && self.origin.offset < known.origin.offset
            && known.issued_coupons == 0
    }
}

pub fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// The first whole millisecond at or after `t` (`t` itself when already whole).
pub fn ceil_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    let down = truncate_to_millis(t);
    if down == t {
        return t;
    }
    down.checked_add_signed(TimeDelta::milliseconds(1))
        .unwrap_or(down)
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
    fn a_start_between_milliseconds_is_rounded_up() {
        let whole = DateTime::parse_from_rfc3339("2026-12-01T11:00:51.648Z")
            .map(|t| t.to_utc())
            .expect("time");
        let between = whole + TimeDelta::nanoseconds(999_000);
        assert_eq!(ceil_to_millis(whole), whole);
        let rounded = ceil_to_millis(between);
        assert_eq!(rounded, whole + TimeDelta::milliseconds(1));
        let name = CampaignName::parse("boundary").expect("name");
        let total = TotalCoupons::parse(1).expect("total");
        let campaign = NewCampaign::new(name, total, between).placed_at(LogPosition {
            partition: 0,
            offset: 0,
        });
        // A request appended in the millisecond that holds the requested start came
        // before it: not eligible. The next millisecond is.
        assert!(!campaign.has_started_at(whole));
        assert!(campaign.has_started_at(rounded));
    }

    fn at(partition: u32, offset: u64) -> LogPosition {
        LogPosition { partition, offset }
    }

    fn new_campaign(starts_at: DateTime<Utc>) -> NewCampaign {
        let name = CampaignName::parse("drop").expect("name");
        NewCampaign::new(name, TotalCoupons::parse(2).expect("total"), starts_at)
    }

    #[test]
    fn the_alphabet_is_a_term_and_falls_back_to_full_beyond_the_readable_layout() {
        let asked = new_campaign(Utc::now());
        assert_eq!(asked.alphabet, CodeAlphabet::Readable);
        let placed = asked.clone().placed_at(at(3, 7));
        assert_eq!(placed.alphabet, CodeAlphabet::Readable);
        assert!(asked.same_terms(&placed));
        let full = asked.clone().with_alphabet(CodeAlphabet::Full);
        assert!(!full.same_terms(&placed), "a retry asking for other codes");
        // Beyond partition 255 a readable campaign gets full codes, and a retry of it
        // still has the same terms.
        let far = asked.clone().placed_at(at(256, 0));
        assert_eq!(far.alphabet, CodeAlphabet::Full);
        assert!(asked.same_terms(&far));
    }

    #[test]
    fn states_follow_the_clock_and_the_count() {
        let start = truncate_to_millis(Utc::now());
        let mut campaign = new_campaign(start).placed_at(at(0, 0));
        let before = start - TimeDelta::milliseconds(1);
        assert_eq!(campaign.state_at(before), CampaignState::Scheduled);
        assert_eq!(campaign.state_at(start), CampaignState::Live);
        campaign.issued_coupons = 2;
        assert_eq!(campaign.state_at(before), CampaignState::SoldOut);
        assert_eq!(campaign.state_at(start), CampaignState::SoldOut);
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(CampaignId::parse("nope").is_err());
        let id = CampaignId::generate();
        assert_eq!(CampaignId::parse(&id.to_string()), Ok(id));
    }
}
