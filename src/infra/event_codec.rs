//! The wire form of log events, shared by every log: versioned JSON, readable with any
//! Kafka tool. Decoding re-validates through the domain types.
//!
//! A campaign record may carry the fingerprint of the secret key its codes and ticket
//! ids are made with (`key_fp`; the Kafka log stamps it, records of earlier versions
//! have none), so that a worker rebuilding from the log with another key refuses
//! instead of deciding different codes.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    CampaignId, CampaignName, LogEvent, NewCampaign, TicketId, TotalCoupons, UserId,
};

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent<'a> {
    CampaignCreated {
        v: u8,
        campaign_id: Uuid,
        #[serde(borrow)]
        name: Cow<'a, str>,
        total_coupons: u64,
        starts_at_ms: i64,
        created_at_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
        key_fp: Option<Cow<'a, str>>,
    },
    IssueRequested {
        v: u8,
        ticket_id: Uuid,
        campaign_id: Uuid,
        #[serde(borrow)]
        user_id: Cow<'a, str>,
    },
}

const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a log event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported event version {0}")]
    Version(u8),
    #[error("invalid field: {0}")]
    Field(String),
}

/// A decoded record: the event and, for a stamped campaign record, the fingerprint of
/// the key it was written with.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub event: LogEvent,
    pub key_fingerprint: Option<String>,
}

pub fn encode(event: &LogEvent) -> Vec<u8> {
    encode_stamped(event, None)
}

/// `encode`, with campaign records stamped with the fingerprint of the writer's key.
pub fn encode_stamped(event: &LogEvent, key_fingerprint: Option<&str>) -> Vec<u8> {
    let wire = match event {
        LogEvent::CampaignCreated(c) => WireEvent::CampaignCreated {
            v: VERSION,
            campaign_id: c.id.as_uuid(),
            name: Cow::Borrowed(c.name.as_str()),
            total_coupons: c.total_coupons.get(),
            starts_at_ms: c.starts_at.timestamp_millis(),
            created_at_ms: c.created_at.timestamp_millis(),
            key_fp: key_fingerprint.map(Cow::Borrowed),
        },
        LogEvent::IssueRequested {
            ticket_id,
            campaign_id,
            user_id,
        } => WireEvent::IssueRequested {
            v: VERSION,
            ticket_id: ticket_id.as_uuid(),
            campaign_id: campaign_id.as_uuid(),
            user_id: Cow::Borrowed(user_id.as_str()),
        },
    };
    serde_json::to_vec(&wire)
        .unwrap_or_else(|e| unreachable!("plain fields always serialize into a Vec: {e}"))
}

pub fn decode(bytes: &[u8]) -> Result<LogEvent, DecodeError> {
    decode_stamped(bytes).map(|decoded| decoded.event)
}

/// `decode`, keeping a campaign record's key fingerprint.
pub fn decode_stamped(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let field = |e: &dyn std::fmt::Display| DecodeError::Field(e.to_string());
    match serde_json::from_slice::<WireEvent>(bytes)? {
        WireEvent::CampaignCreated {
            v,
            campaign_id,
            name,
            total_coupons,
            starts_at_ms,
            created_at_ms,
            key_fp,
        } => {
            check_version(v)?;
            let total = i64::try_from(total_coupons).map_err(|e| field(&e))?;
            let campaign = NewCampaign {
                id: CampaignId::from_uuid(campaign_id),
                name: CampaignName::parse(&name).map_err(|e| field(&e))?,
                total_coupons: TotalCoupons::parse(total).map_err(|e| field(&e))?,
                starts_at: millis(starts_at_ms)?,
                created_at: millis(created_at_ms)?,
            };
            Ok(Decoded {
                event: LogEvent::CampaignCreated(campaign),
                key_fingerprint: key_fp.map(Cow::into_owned),
            })
        }
        WireEvent::IssueRequested {
            v,
            ticket_id,
            campaign_id,
            user_id,
        } => {
            check_version(v)?;
            let event = LogEvent::IssueRequested {
                ticket_id: TicketId::from_uuid(ticket_id),
                campaign_id: CampaignId::from_uuid(campaign_id),
                user_id: UserId::from_stored(&user_id).map_err(|e| field(&e))?,
            };
            Ok(Decoded {
                event,
                key_fingerprint: None,
            })
        }
    }
}

fn check_version(v: u8) -> Result<(), DecodeError> {
    if v == VERSION {
        Ok(())
    } else {
        Err(DecodeError::Version(v))
    }
}

fn millis(ms: i64) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| DecodeError::Field(format!("time {ms}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let campaign = NewCampaign::new(
            CampaignName::parse("봄 세일 \"quoted\"").unwrap(),
            TotalCoupons::parse(100).unwrap(),
            Utc::now(),
        );
        let request = LogEvent::IssueRequested {
            ticket_id: TicketId::generate(),
            campaign_id: campaign.id,
            user_id: UserId::parse("user \u{1F600}").unwrap(),
        };
        for event in [LogEvent::CampaignCreated(campaign), request] {
            assert_eq!(decode(&encode(&event)).unwrap(), event);
        }
    }

    #[test]
    fn campaign_records_carry_the_writers_key_fingerprint() {
        let campaign = LogEvent::CampaignCreated(NewCampaign::new(
            CampaignName::parse("stamped").unwrap(),
            TotalCoupons::parse(1).unwrap(),
            Utc::now(),
        ));
        let stamped = decode_stamped(&encode_stamped(&campaign, Some("00aa"))).unwrap();
        assert_eq!(stamped.key_fingerprint.as_deref(), Some("00aa"));
        assert_eq!(stamped.event, campaign);
        // Records of earlier versions have no stamp and still decode.
        let unstamped = decode_stamped(&encode(&campaign)).unwrap();
        assert_eq!(unstamped.key_fingerprint, None);
        assert!(!String::from_utf8_lossy(&encode(&campaign)).contains("key_fp"));
    }

    #[test]
    fn garbage_and_future_versions_are_refused() {
        assert!(decode(b"not json").is_err());
        let future = br#"{"type":"issue_requested","v":2,"ticket_id":"018f0000-0000-7000-8000-000000000000","campaign_id":"018f0000-0000-7000-8000-000000000000","user_id":"u"}"#;
        assert!(matches!(decode(future), Err(DecodeError::Version(2))));
    }
}
