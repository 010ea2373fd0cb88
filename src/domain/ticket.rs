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

/// A ticket id as a client holds it, once its seal checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedTicket {
    pub id: TicketId,
    /// Where its request sits in the log; `None` for tickets sealed in the first
    /// format (`<uuid>.<tag>`), which did not carry it.
    pub position: Option<LogPosition>,
}

/// Seals ticket ids with a MAC, so the service knows a ticket it handed out from a
/// made-up one without remembering every accepted request. Tickets handed out since
/// version 2 also carry their request's log position under the MAC, so a node can tell
/// a PENDING ticket, and how far back it waits, without any lookup.
#[derive(Clone)]
pub struct TicketSeal {
    /// Keyed once: each MAC then costs two SHA-256 blocks instead of four (a
    /// GetCampaign page seals 10,000 ticket ids).
    keyed: Hmac<Sha256>,
    /// A second key for the positioned form, so that no tag of one form can ever be
    /// taken for a tag of the other.
    keyed_positioned: Hmac<Sha256>,
}

const SEAL_HEX_CHARS: usize = 16;

fn keyed_mac(secret: &SecretKey, purpose: &str) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(&secret.derive(purpose))
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// 16 lower-case hex digits of the MAC's first 8 bytes.
fn push_tag(sealed: &mut String, mac: Hmac<Sha256>) {
    let tag = mac.finalize().into_bytes();
    let mut hex_tag = [0_u8; SEAL_HEX_CHARS];
    hex::encode_to_slice(&tag[..SEAL_HEX_CHARS / 2], &mut hex_tag)
        .unwrap_or_else(|_| unreachable!("the buffer holds exactly the tag's hex digits"));
    // hex digits are ASCII.
    sealed.extend(hex_tag.iter().map(|&b| char::from(b)));
}

/// `text` is exactly `len` characters of lower-case hex digits and hyphens.
fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

/// A decimal number written the one way `seal_at` writes it: digits only, no sign, no
/// leading zero.
fn canonical_number<T: std::str::FromStr>(text: &str) -> Result<T, ForeignTicket> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return Err(ForeignTicket);
    }
    text.parse().map_err(|_| ForeignTicket)
}

impl TicketSeal {
    pub fn new(secret: &SecretKey) -> Self {
        Self {
            keyed: keyed_mac(secret, "coupon.v1 ticket seal"),
            keyed_positioned: keyed_mac(secret, "coupon.v1 ticket seal with log position"),
        }
    }

    fn mac(&self, id: TicketId) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(id.0.as_bytes());
        mac
    }

    fn mac_positioned(&self, id: TicketId, position: LogPosition) -> Hmac<Sha256> {
        let mut mac = self.keyed_positioned.clone();
        mac.update(id.0.as_bytes());
        mac.update(&position.partition.to_be_bytes());
        mac.update(&position.offset.to_be_bytes());
        mac
    }

    /// The first wire form, `<uuid>.<16 hex digits of MAC>`: what tickets handed out
    /// before version 2 look like (coupons stored then are still listed so), still opened.
    pub fn seal(&self, id: TicketId) -> String {
        let mut sealed = String::with_capacity(uuid::fmt::Hyphenated::LENGTH + 1 + SEAL_HEX_CHARS);
        sealed.push_str(id.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        sealed.push('.');
        push_tag(&mut sealed, self.mac(id));
        sealed
    }

    /// The form IssueCoupon hands out: `<uuid>.<partition>.<offset>.<16 hex digits of
    /// MAC>`, the position in decimal and under the MAC.
    pub fn seal_at(&self, id: TicketId, position: LogPosition) -> String {
        let mut sealed = String::with_capacity(uuid::fmt::Hyphenated::LENGTH + 48);
        sealed.push_str(id.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        sealed.push_str(&format!(".{}.{}.", position.partition, position.offset));
        push_tag(&mut sealed, self.mac_positioned(id, position));
        sealed
    }

    /// The form a ticket was handed out in: with its position when known.
    pub fn seal_as_handed_out(&self, id: TicketId, position: Option<LogPosition>) -> String {
        match position {
            Some(position) => self.seal_at(id, position),
            None => self.seal(id),
        }
    }

    /// Only the exact forms [`seal`](Self::seal) and [`seal_at`](Self::seal_at) write
    /// are tickets: a lower-case hyphenated uuid, the position in plain decimal (second
    /// form), 16 lower-case hex digits. Other spellings of the same uuid or numbers
    /// (braces, `urn:uuid:`, no hyphens, upper case, leading zeros, spaces) are not.
    pub fn open(&self, sealed: &str) -> Result<OpenedTicket, ForeignTicket> {
        let parts: Vec<&str> = sealed.split('.').collect();
        let (uuid, position, tag) = match parts.as_slice() {
            [uuid, tag] => (*uuid, None, *tag),
            [uuid, partition, offset, tag] => {
                let position = LogPosition {
                    partition: canonical_number(partition)?,
                    offset: canonical_number(offset)?,
                };
                (*uuid, Some(position), *tag)
            }
            _ => return Err(ForeignTicket),
        };
        if !is_lower_hex(uuid, uuid::fmt::Hyphenated::LENGTH) || !is_lower_hex(tag, SEAL_HEX_CHARS)
        {
            return Err(ForeignTicket);
        }
        let id = Uuid::try_parse(uuid)
            .map(TicketId)
            .map_err(|_| ForeignTicket)?;
        let tag = hex::decode(tag).map_err(|_| ForeignTicket)?;
        let mac = match position {
            None => self.mac(id),
            Some(position) => self.mac_positioned(id, position),
        };
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag).map_err(|_| ForeignTicket)?;
        Ok(OpenedTicket { id, position })
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
        assert_eq!(seal.open(&sealed).map(|t| t.id), Ok(id));
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
        assert_eq!(seal.open(&sealed).map(|t| t.id), Ok(id));
    }

    #[test]
    fn positioned_tickets_carry_their_position_under_the_mac() {
        let seal = TicketSeal::new(&SecretKey::generate());
        let id = TicketId::generate();
        let position = LogPosition {
            partition: 3,
            offset: 1_234_567,
        };
        let sealed = seal.seal_at(id, position);
        assert!(sealed.starts_with(&format!("{id}.3.1234567.")), "{sealed}");
        let opened = seal.open(&sealed).expect("opens");
        assert_eq!((opened.id, opened.position), (id, Some(position)));
        // The first form of the same ticket still opens, without a position.
        assert_eq!(seal.open(&seal.seal(id)).map(|t| t.position), Ok(None));
        let tag = sealed.rsplit('.').next().expect("tag");
        for altered in [
            format!("{id}.3.1234568.{tag}"),
            format!("{id}.4.1234567.{tag}"),
            format!("{id}.03.1234567.{tag}"),
            format!("{id}.3.+1234567.{tag}"),
            format!("{id}.3..{tag}"),
            format!("{id}.{tag}"),
            format!("{id}.3.1234567.0.{tag}"),
            format!("{id}.4294967296.1234567.{tag}"),
        ] {
            assert_eq!(seal.open(&altered), Err(ForeignTicket), "{altered:?}");
        }
        let other = TicketSeal::new(&SecretKey::generate());
        assert_eq!(other.open(&sealed), Err(ForeignTicket));
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
