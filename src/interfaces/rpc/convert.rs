//! Domain values to and from their wire form.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::Timestamp;
use chrono::{DateTime, Utc};

use super::proto::coupon::v1 as pb;
use crate::domain::{
    Campaign, CampaignId, CampaignState, CodeAlphabet, Coupon, ListPosition, TicketSeal,
};

pub fn timestamp(t: DateTime<Utc>) -> MessageField<Timestamp, buffa::Inline<Timestamp>> {
    MessageField::some(Timestamp::from(t))
}

/// A campaign as answered now: its state is derived on this node's clock.
pub fn campaign(c: &Campaign, sold_out_at: Option<DateTime<Utc>>) -> pb::Campaign {
    pb::Campaign {
        id: c.id.to_string(),
        name: c.name.as_str().to_owned(),
        total_coupons: c.total_coupons.get() as i64,
        issued_coupons: c.issued_coupons as i64,
        starts_at: timestamp(c.starts_at),
        created_at: timestamp(c.created_at),
        code_alphabet: EnumValue::from(alphabet(c.alphabet)),
        state: EnumValue::from(state(c.state_at(Utc::now()))),
        sold_out_at: sold_out_at.map(timestamp).unwrap_or_default(),
        ..Default::default()
    }
}

fn alphabet(a: CodeAlphabet) -> pb::CodeAlphabet {
    match a {
        CodeAlphabet::Readable => pb::CodeAlphabet::CODE_ALPHABET_READABLE,
        CodeAlphabet::Full => pb::CodeAlphabet::CODE_ALPHABET_FULL,
    }
}

/// The alphabet a creation asks for: unspecified is the readable one. `None` for a
/// value this server does not know.
pub fn parse_alphabet(value: EnumValue<pb::CodeAlphabet>) -> Option<CodeAlphabet> {
    match value.as_known()? {
        pb::CodeAlphabet::CODE_ALPHABET_UNSPECIFIED | pb::CodeAlphabet::CODE_ALPHABET_READABLE => {
            Some(CodeAlphabet::Readable)
        }
        pb::CodeAlphabet::CODE_ALPHABET_FULL => Some(CodeAlphabet::Full),
    }
}

fn state(s: CampaignState) -> pb::CampaignState {
    match s {
        CampaignState::Scheduled => pb::CampaignState::CAMPAIGN_STATE_SCHEDULED,
        CampaignState::Live => pb::CampaignState::CAMPAIGN_STATE_LIVE,
        CampaignState::SoldOut => pb::CampaignState::CAMPAIGN_STATE_SOLD_OUT,
    }
}

/// Coupons carry the sealed ticket id, the same string the user polled with.
pub fn coupon(c: &Coupon, seal: &TicketSeal) -> pb::Coupon {
    pb::Coupon {
        code: c.code.as_str().to_owned(),
        campaign_id: c.campaign_id.to_string(),
        user_id: c.user_id.as_str().to_owned(),
        ticket_id: seal.seal_as_handed_out(c.ticket_id, c.ticket_position),
        issued_at: timestamp(c.issued_at),
        ..Default::default()
    }
}

/// A page of one campaign's coupons: the campaign id is formatted once, not per coupon.
pub fn coupons(page: &[Coupon], seal: &TicketSeal) -> Vec<pb::Coupon> {
    let mut campaign: Option<(crate::domain::CampaignId, String)> = None;
    page.iter()
        .map(|c| {
            let campaign_id = match &campaign {
                Some((id, text)) if *id == c.campaign_id => text.clone(),
                _ => campaign
                    .insert((c.campaign_id, c.campaign_id.to_string()))
                    .1
                    .clone(),
            };
            pb::Coupon {
                code: c.code.as_str().to_owned(),
                campaign_id,
                user_id: c.user_id.as_str().to_owned(),
                ticket_id: seal.seal_as_handed_out(c.ticket_id, c.ticket_position),
                issued_at: timestamp(c.issued_at),
                ..Default::default()
            }
        })
        .collect()
}

const PAGE_TOKEN_PREFIX: &str = "after:";

/// Page tokens are opaque to clients; inside, the last ordinal of the previous page.
pub fn page_token(after_ordinal: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PAGE_TOKEN_PREFIX}{after_ordinal}"))
}

pub fn parse_page_token(token: &str) -> Option<u64> {
    if token.is_empty() {
        return Some(0);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix(PAGE_TOKEN_PREFIX)?
        .parse()
        .ok()
}

const LIST_TOKEN_PREFIX: &str = "before:";

/// ListCampaigns' page tokens: opaque to clients; inside, the creation time (ms) and id
/// of the previous page's last campaign.
pub fn list_token(after: ListPosition) -> String {
    let ms = after.created_at.timestamp_millis();
    URL_SAFE_NO_PAD.encode(format!("{LIST_TOKEN_PREFIX}{ms}:{}", after.id))
}

/// `Some(None)` for the first page, `None` for a token this server did not make.
pub fn parse_list_token(token: &str) -> Option<Option<ListPosition>> {
    if token.is_empty() {
        return Some(None);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (ms, id) = text.strip_prefix(LIST_TOKEN_PREFIX)?.split_once(':')?;
    Some(Some(ListPosition {
        created_at: DateTime::from_timestamp_millis(ms.parse().ok()?)?,
        id: CampaignId::parse(id).ok()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tokens_round_trip_and_reject_garbage() {
        let after = ListPosition {
            created_at: DateTime::from_timestamp_millis(1_764_583_200_123).unwrap(),
            id: CampaignId::generate(),
        };
        assert_eq!(parse_list_token(&list_token(after)), Some(Some(after)));
        assert_eq!(parse_list_token(""), Some(None));
        assert_eq!(parse_list_token(&page_token(42)), None);
        assert_eq!(parse_list_token("!!"), None);
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_page_token(&page_token(42)), Some(42));
        assert_eq!(parse_page_token(""), Some(0));
        assert_eq!(parse_page_token("bm9wZQ"), None);
        assert_eq!(parse_page_token("!!"), None);
    }
}
