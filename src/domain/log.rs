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

/// Which partition of the log an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Chosen by the log from the campaign's id over the partitions it has now: a new
    /// campaign's creation, so that campaigns spread over every partition, added ones too.
    Spread,
    /// The campaign's home, the partition its creation was appended to. Every request of
    /// a campaign goes there, however many partitions were added since: one worker
    /// decides the whole campaign, in one order, by one leader's append clock.
    Home(u32),
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
