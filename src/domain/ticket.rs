//! Tickets: the receipt a client polls with, and the final status each one reaches.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::campaign::CampaignId;
use super::coupon_code::CouponCode;
use super::log::LogPosition;
use super::secret::SecretKey;
use super::user::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(Uuid);

impl TicketId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ticket_id is not a ticket this service issued")]
pub struct ForeignTicket;

/// Seals ticket ids with a MAC, so the service knows a ticket it handed out from a
/// made-up one without remembering every accepted request: a sealed ticket with no
/// decision yet is PENDING, anything else is NOT_FOUND, and neither costs a lookup
/// of the log.
#[derive(Clone)]
pub struct TicketSeal {
    /// Keyed once: each MAC then costs two SHA-256 blocks instead of four (a
    /// GetCampaign page seals 10,000 ticket ids).
    keyed: Hmac<Sha256>,
}

const SEAL_HEX_CHARS: usize = 16;

impl TicketSeal {
    pub fn new(secret: &SecretKey) -> Self {
        let key = secret.derive("coupon.v1 ticket seal");
        Self {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        }
    }

    fn mac(&self, id: TicketId) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(id.0.as_bytes());
        mac
    }

    /// The wire form: `<uuid>.<16 hex digits of MAC>`.
    pub fn seal(&self, id: TicketId) -> String {
        let tag = self.mac(id).finalize().into_bytes();
        let mut sealed = String::with_capacity(uuid::fmt::Hyphenated::LENGTH + 1 + SEAL_HEX_CHARS);
        sealed.push_str(id.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        sealed.push('.');
        let mut hex_tag = [0_u8; SEAL_HEX_CHARS];
        hex::encode_to_slice(&tag[..SEAL_HEX_CHARS / 2], &mut hex_tag)
            .unwrap_or_else(|_| unreachable!("the buffer holds exactly the tag's hex digits"));
        // hex digits are ASCII.
        sealed.extend(hex_tag.iter().map(|&b| char::from(b)));
        sealed
    }

    /// Only the exact form [`seal`](Self::seal) writes is a ticket: a lower-case
    /// hyphenated uuid, a dot, 16 lower-case hex digits. Other spellings of the same
    /// uuid (braces, `urn:uuid:`, no hyphens, upper case, surrounding spaces) are not.
    pub fn open(&self, sealed: &str) -> Result<TicketId, ForeignTicket> {
        let (uuid, tag) = sealed.split_once('.').ok_or(ForeignTicket)?;
        let canonical = |text: &str, len: usize| {
            text.len() == len
                && text
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
        };
        if !canonical(uuid, uuid::fmt::Hyphenated::LENGTH) || !canonical(tag, SEAL_HEX_CHARS) {
            return Err(ForeignTicket);
        }
        let id = Uuid::try_parse(uuid)
            .map(TicketId)
            .map_err(|_| ForeignTicket)?;
        let tag = hex::decode(tag).map_err(|_| ForeignTicket)?;
        // Constant-time comparison of the truncated tag.
        self.mac(id)
            .verify_truncated_left(&tag)
            .map_err(|_| ForeignTicket)?;
        Ok(id)
    }
}

/// The final statuses a ticket can reach (PENDING is the absence of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueStatus {
    Issued,
    SoldOut,
    NotStarted,
    AlreadyIssued,
}

impl IssueStatus {
    pub const ALL: [IssueStatus; 4] = [
        IssueStatus::Issued,
        IssueStatus::SoldOut,
        IssueStatus::NotStarted,
        IssueStatus::AlreadyIssued,
    ];

    /// A stable lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Issued => "issued",
            IssueStatus::SoldOut => "sold_out",
            IssueStatus::NotStarted => "not_started",
            IssueStatus::AlreadyIssued => "already_issued",
        }
    }

    /// Stable numbers for storage; never renumber.
    pub fn code(self) -> i16 {
        match self {
            IssueStatus::Issued => 1,
            IssueStatus::SoldOut => 2,
            IssueStatus::NotStarted => 3,
            IssueStatus::AlreadyIssued => 4,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            1 => IssueStatus::Issued,
            2 => IssueStatus::SoldOut,
            3 => IssueStatus::NotStarted,
            4 => IssueStatus::AlreadyIssued,
            _ => return None,
        })
    }
}

/// How one ticket was decided; `coupon_code` is set for ISSUED and ALREADY_ISSUED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketResult {
    pub ticket_id: TicketId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub status: IssueStatus,
    pub coupon_code: Option<CouponCode>,
    pub position: LogPosition,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tickets_open_and_forgeries_do_not() {
        let seal = TicketSeal::new(&SecretKey::generate());
        let id = TicketId::generate();
        let sealed = seal.seal(id);
        // The wire form is unchanged: `<uuid>.<first 8 bytes of the MAC in hex>`.
        let tag = seal.mac(id).finalize().into_bytes();
        assert_eq!(sealed, format!("{id}.{}", hex::encode(&tag[..8])));
        assert_eq!(seal.open(&sealed), Ok(id));
        assert_eq!(seal.open(&id.to_string()), Err(ForeignTicket));
        let mut forged = sealed.clone();
        let last = if forged.ends_with('0') { '1' } else { '0' };
        forged.pop();
        forged.push(last);
        assert_eq!(seal.open(&forged), Err(ForeignTicket));
        let other = TicketSeal::new(&SecretKey::generate());
        assert_eq!(other.open(&sealed), Err(ForeignTicket));
        assert_eq!(seal.open(""), Err(ForeignTicket));
    }

    #[test]
    fn only_the_canonical_spelling_opens() {
        let seal = TicketSeal::new(&SecretKey::generate());
        let id = TicketId::generate();
        let sealed = seal.seal(id);
        let (uuid, tag) = sealed.split_once('.').expect("sealed");
        for variant in [
            format!("{{{uuid}}}.{tag}"),
            format!("urn:uuid:{uuid}.{tag}"),
            format!("{}.{tag}", uuid.replace('-', "")),
            format!("{}.{tag}", uuid.to_uppercase()),
            format!("{uuid}.{}", tag.to_uppercase()),
            format!(" {sealed}"),
            format!("{sealed}\n"),
            format!("{uuid}.-{}", &tag[1..]),
        ] {
            assert_eq!(seal.open(&variant), Err(ForeignTicket), "{variant:?}");
        }
        assert_eq!(seal.open(&sealed), Ok(id));
    }

    #[test]
    fn status_codes_round_trip() {
        for s in [
            IssueStatus::Issued,
            IssueStatus::SoldOut,
            IssueStatus::NotStarted,
            IssueStatus::AlreadyIssued,
        ] {
            assert_eq!(IssueStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(IssueStatus::from_code(0), None);
    }
}
