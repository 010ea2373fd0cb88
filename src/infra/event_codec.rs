//! The wire form of log events, shared by every log: versioned JSON, readable with any
//! Kafka tool. Decoding re-validates through the domain types.

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

pub fn encode(event: &LogEvent) -> Vec<u8> {
    let wire = match event {
        LogEvent::CampaignCreated(c) => WireEvent::CampaignCreated {
            v: VERSION,
            campaign_id: c.id.as_uuid(),
            name: Cow::Borrowed(c.name.as_str()),
            total_coupons: c.total_coupons.get(),
            starts_at_ms: c.starts_at.timestamp_millis(),
            created_at_ms: c.created_at.timestamp_millis(),
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
    // Serializing plain fields into a Vec cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<LogEvent, DecodeError> {
    let field = |e: &dyn std::fmt::Display| DecodeError::Field(e.to_string());
    match serde_json::from_slice::<WireEvent>(bytes)? {
        WireEvent::CampaignCreated {
            v,
            campaign_id,
            name,
            total_coupons,
            starts_at_ms,
            created_at_ms,
        } => {
            check_version(v)?;
            let total = i64::try_from(total_coupons).map_err(|e| field(&e))?;
            Ok(LogEvent::CampaignCreated(NewCampaign {
                id: CampaignId::from_uuid(campaign_id),
                name: CampaignName::parse(&name).map_err(|e| field(&e))?,
                total_coupons: TotalCoupons::parse(total).map_err(|e| field(&e))?,
                starts_at: millis(starts_at_ms)?,
                created_at: millis(created_at_ms)?,
            }))
        }
        WireEvent::IssueRequested {
            v,
            ticket_id,
            campaign_id,
            user_id,
        } => {
            check_version(v)?;
            Ok(LogEvent::IssueRequested {
                ticket_id: TicketId::from_uuid(ticket_id),
                campaign_id: CampaignId::from_uuid(campaign_id),
                user_id: UserId::from_stored(&user_id).map_err(|e| field(&e))?,
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
    fn garbage_and_future_versions_are_refused() {
        assert!(decode(b"not json").is_err());
        let future = br#"{"type":"issue_requested","v":2,"ticket_id":"018f0000-0000-7000-8000-000000000000","campaign_id":"018f0000-0000-7000-8000-000000000000","user_id":"u"}"#;
        assert!(matches!(decode(future), Err(DecodeError::Version(2))));
    }
}
