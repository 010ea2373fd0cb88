//! What the issue log carries. The log's order is the order of issuance and its append
//! clock is the one clock that says whether a campaign had started.

use chrono::{DateTime, Utc};

use super::campaign::{CampaignId, NewCampaign};
use super::ticket::TicketId;
use super::user::UserId;

/// A record's place in the log: one partition per campaign, offsets grow within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogPosition {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// Appended before `CreateCampaign` answers, so the log alone can rebuild the state.
    CampaignCreated(NewCampaign),
    /// Appended before `IssueCoupon` answers; decided later by the issuing worker.
    IssueRequested {
        ticket_id: TicketId,
        campaign_id: CampaignId,
        user_id: UserId,
    },
}

impl LogEvent {
    /// The partition key: everything about one campaign lives in one partition.
    pub fn campaign_id(&self) -> CampaignId {
        match self {
            LogEvent::CampaignCreated(campaign) => campaign.id,
            LogEvent::IssueRequested { campaign_id, .. } => *campaign_id,
        }
    }
}

/// A log record as the issuing worker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub position: LogPosition,
    /// The log's own append time (Kafka `LogAppendTime`, or the embedded log's writer).
    pub appended_at: DateTime<Utc>,
    pub event: LogEvent,
}

/// What the log answers once a record is durably appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub position: LogPosition,
    pub appended_at: DateTime<Utc>,
}
