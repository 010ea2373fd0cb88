//! Domain values to and from their wire form.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use buffa::MessageField;
use buffa_types::google::protobuf::Timestamp;
use chrono::{DateTime, Utc};

use super::proto::coupon::v1 as pb;
use crate::domain::{Campaign, Coupon, TicketSeal};

pub fn timestamp(t: DateTime<Utc>) -> MessageField<Timestamp, buffa::Inline<Timestamp>> {
    MessageField::some(Timestamp::from(t))
}

pub fn campaign(c: &Campaign) -> pb::Campaign {
    pb::Campaign {
        id: c.id.to_string(),
        name: c.name.as_str().to_owned(),
        total_coupons: c.total_coupons.get() as i64,
        issued_coupons: c.issued_coupons as i64,
        starts_at: timestamp(c.starts_at),
        created_at: timestamp(c.created_at),
        ..Default::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_page_token(&page_token(42)), Some(42));
        assert_eq!(parse_page_token(""), Some(0));
        assert_eq!(parse_page_token("bm9wZQ"), None);
        assert_eq!(parse_page_token("!!"), None);
    }
}
