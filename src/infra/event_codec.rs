//! The wire form of log events, shared by every log: versioned JSON, readable with any
//! Kafka tool. Decoding re-validates through the domain types.
//!
//! A campaign record may carry the fingerprint of the secret key its codes and ticket
//! ids are made with (`key_fp`; the Kafka log stamps it, records of earlier versions
//! have none), so that a worker rebuilding from the log with another key refuses
//! instead of deciding different codes.
//!
//! A campaign whose codes are not in the full alphabet names its alphabet and is a
//! version 2 record, which binaries from before alphabets refuse (and log) rather than
//! read as a full-alphabet campaign. A record without an alphabet is a full-alphabet
//! campaign: every campaign created before alphabets existed keeps its codes.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    CampaignId, CampaignName, CodeAlphabet, LogEvent, NewCampaign, TicketId, TotalCoupons, UserId,
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
        #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
        alphabet: Option<Cow<'a, str>>,
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
/// Campaign records that name their alphabet.
const VERSION_WITH_ALPHABET: u8 = 2;

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
            v: match c.alphabet {
                CodeAlphabet::Full => VERSION,
                CodeAlphabet::Readable => VERSION_WITH_ALPHABET,
            },
            campaign_id: c.id.as_uuid(),
            name: Cow::Borrowed(c.name.as_str()),
            total_coupons: c.total_coupons.get(),
            starts_at_ms: c.starts_at.timestamp_millis(),
            created_at_ms: c.created_at.timestamp_millis(),
            key_fp: key_fingerprint.map(Cow::Borrowed),
            alphabet: (c.alphabet != CodeAlphabet::Full)
                .then_some(Cow::Borrowed(c.alphabet.as_str())),
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
            alphabet,
        } => {
            let alphabet = campaign_alphabet(v, alphabet.as_deref())?;
            let total = i64::try_from(total_coupons).map_err(|e| field(&e))?;
            let campaign = NewCampaign {
                id: CampaignId::from_uuid(campaign_id),
                name: CampaignName::parse(&name).map_err(|e| field(&e))?,
                total_coupons: TotalCoupons::parse(total).map_err(|e| field(&e))?,
                starts_at: millis(starts_at_ms)?,
                created_at: millis(created_at_ms)?,
                alphabet,
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

/// A version 1 campaign record is a full-alphabet one; a version 2 one names its own.
fn campaign_alphabet(v: u8, alphabet: Option<&str>) -> Result<CodeAlphabet, DecodeError> {
    match (v, alphabet) {
        (VERSION, None) => Ok(CodeAlphabet::Full),
        (VERSION_WITH_ALPHABET, Some(name)) => CodeAlphabet::parse(name)
            .ok_or_else(|| DecodeError::Field(format!("unknown alphabet {name:?}"))),
        (VERSION | VERSION_WITH_ALPHABET, _) => Err(DecodeError::Field(format!(
            "a version {v} campaign record {} an alphabet",
            if v == VERSION { "names" } else { "lacks" }
        ))),
        _ => Err(DecodeError::Version(v)),
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
        let full = campaign.clone().with_alphabet(CodeAlphabet::Full);
        for event in [
            LogEvent::CampaignCreated(campaign),
            LogEvent::CampaignCreated(full),
            request,
        ] {
            assert_eq!(decode(&encode(&event)).unwrap(), event);
        }
    }

    /// Records written before alphabets existed are full-alphabet campaigns, and a
    /// full-alphabet campaign is still written exactly as they were.
    #[test]
    fn campaign_records_without_an_alphabet_are_full_ones() {
        let old = br#"{"type":"campaign_created","v":1,"campaign_id":"018f0000-0000-7000-8000-000000000000","name":"old","total_coupons":5,"starts_at_ms":1700000000000,"created_at_ms":1700000000000}"#;
        let Ok(LogEvent::CampaignCreated(campaign)) = decode(old) else {
            panic!("an old record decodes")
        };
        assert_eq!(campaign.alphabet, CodeAlphabet::Full);
        assert_eq!(encode(&LogEvent::CampaignCreated(campaign)), old.to_vec());
        let readable = NewCampaign::new(
            CampaignName::parse("new").unwrap(),
            TotalCoupons::parse(5).unwrap(),
            Utc::now(),
        );
        let wire = String::from_utf8(encode(&LogEvent::CampaignCreated(readable))).unwrap();
        assert!(wire.contains(r#""v":2"#) && wire.contains(r#""alphabet":"readable""#));
        for bad in [
            wire.replace(r#""v":2"#, r#""v":1"#),
            wire.replace("readable", "klingon"),
        ] {
            assert!(matches!(decode(bad.as_bytes()), Err(DecodeError::Field(_))));
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
