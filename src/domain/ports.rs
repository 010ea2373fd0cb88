//! What the application needs from storage and from the log. Each has two
//! implementations: SQLite + the embedded log, PostgreSQL + Kafka.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use super::campaign::{Campaign, CampaignId, CampaignListing, ListPosition};
use super::coupon_code::CouponCode;
use super::issuance::Coupon;
use super::log::{Appended, LogEvent, LogRecord, Placement};
use super::ticket::{TicketId, TicketResult};
use super::user::UserId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out; retrying may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Another worker advanced this partition: the caller lost it or re-read old records.
    #[error("partition {partition} is at offset {stored}, not {expected}: fenced")]
    Fenced {
        partition: u32,
        expected: u64,
        stored: u64,
    },
    /// A uniqueness backstop fired (e.g. a code or a (campaign, user) pair twice).
    #[error("constraint {0} violated")]
    Conflict(String),
    /// Stored data that the domain cannot read back (a bug or manual tampering).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log refused the event or could not be reached: surely not appended.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// The event was handed to the log but its acknowledgement never came (a timeout,
    /// a lost connection): it may be appended, and then decided, later.
    #[error("log outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Too many appends are waiting already; shed instead of queueing without bound.
    #[error("log overloaded")]
    Overloaded,
}

/// Appends events durably; returns only once the log acknowledged them.
pub trait IssueLog: Send + Sync + 'static {
    fn append(
        &self,
        event: LogEvent,
        placement: Placement,
    ) -> impl Future<Output = Result<Appended, LogError>> + Send;
}

pub trait CampaignRepository: Send + Sync + 'static {
    /// Inserts the campaign unless it exists (the worker may have replayed it first).
    fn insert_campaign(
        &self,
        campaign: &Campaign,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn find_campaign(
        &self,
        id: CampaignId,
    ) -> impl Future<Output = Result<Option<Campaign>, StoreError>> + Send;

    /// The campaign and its issued coupons with ordinal > `after_ordinal` (in issue
    /// order, at most `limit`), read from one snapshot so the count and the page agree.
    fn find_campaign_page(
        &self,
        id: CampaignId,
        after_ordinal: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Option<(Campaign, Vec<Coupon>)>, StoreError>> + Send;

    /// The coupon `user` holds in the campaign, if any (one index probe).
    fn find_holder_coupon(
        &self,
        id: CampaignId,
        user: &UserId,
    ) -> impl Future<Output = Result<Option<Coupon>, StoreError>> + Send;

    /// Campaigns newest first (by creation time, then id), from just after `after` (from
    /// the newest when `None`), at most `limit`.
    fn list_campaigns(
        &self,
        after: Option<ListPosition>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<CampaignListing>, StoreError>> + Send;

    /// Issued coupons with ordinal > `after_ordinal`, in issue order, at most `limit`.
    fn list_coupons(
        &self,
        id: CampaignId,
        after_ordinal: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Coupon>, StoreError>> + Send;
}

/// A decided ticket and, for ISSUED/ALREADY_ISSUED, the coupon it points at.
pub type FoundTicket = (TicketResult, Option<Coupon>);

pub trait TicketRepository: Send + Sync + 'static {
    /// The decided tickets among `ids`, in no particular order; undecided ones are left
    /// out. One read for all of them: polls woken together are answered together.
    fn find_tickets(
        &self,
        ids: &[TicketId],
    ) -> impl Future<Output = Result<Vec<FoundTicket>, StoreError>> + Send;

    /// The decided ticket `id`, if it is decided.
    fn find_ticket(
        &self,
        id: TicketId,
    ) -> impl Future<Output = Result<Option<FoundTicket>, StoreError>> + Send {
        async move { Ok(self.find_tickets(&[id]).await?.pop()) }
    }
}

/// Who holds a campaign's coupon of one ordinal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub ordinal: u64,
    pub user_id: UserId,
    pub code: CouponCode,
}

/// Everything one batch of decisions writes, committed together with the partition's
/// new offset.
#[derive(Debug, Default)]
pub struct BatchChanges {
    pub new_campaigns: Vec<Campaign>,
    pub coupons: Vec<Coupon>,
    pub tickets: Vec<TicketResult>,
    pub issued_counts: Vec<(CampaignId, u64)>,
}

/// The unit of work of the issuing worker: one transaction per batch of log records.
pub trait IssuanceStore: Send + Sync + 'static {
    type Batch: IssuanceBatch;

    /// The next offset of `partition` that no committed batch covers.
    fn next_offset(&self, partition: u32) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Opens the batch's transaction and moves the partition's offset from `expected` to
    /// `next` in it: fails with `Fenced` unless the stored offset is still `expected`,
    /// so a worker that lost its partition can never commit.
    fn begin(
        &self,
        partition: u32,
        expected: u64,
        next: u64,
    ) -> impl Future<Output = Result<Self::Batch, StoreError>> + Send;
}

pub trait IssuanceBatch: Send {
    /// The campaigns among `ids` that exist, locked for this transaction.
    fn load_campaigns(
        &mut self,
        ids: &[CampaignId],
    ) -> impl Future<Output = Result<Vec<Campaign>, StoreError>> + Send;

    /// The codes already held by any of `users` in the campaign.
    fn load_holders(
        &mut self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> impl Future<Output = Result<Vec<(UserId, CouponCode)>, StoreError>> + Send;

    /// The campaign's coupons with ordinals from `from` on, in ordinal order.
    fn load_coupons_from(
        &mut self,
        campaign: CampaignId,
        from: u64,
    ) -> impl Future<Output = Result<Vec<Holding>, StoreError>> + Send;

    /// Writes the changes and commits.
    fn commit(self, changes: BatchChanges) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Everything the store holds about decisions, read from one snapshot: what `audit`
/// compares with a replay of the log.
#[derive(Debug, Default)]
pub struct DecidedState {
    /// Each partition's first undecided offset.
    pub offsets: BTreeMap<u32, u64>,
    pub campaigns: Vec<Campaign>,
    pub coupons: Vec<Coupon>,
    pub tickets: Vec<TicketResult>,
}

pub trait DecidedStateReader: Send + Sync + 'static {
    /// The whole decided state in one read-only transaction: safe while workers commit.
    fn read_decided_state(&self) -> impl Future<Output = Result<DecidedState, StoreError>> + Send;
}

/// Consecutive records read back from one partition of the log.
#[derive(Debug, Default)]
pub struct ReplayChunk {
    pub records: Vec<LogRecord>,
    /// One past the last offset read, undecodable records included.
    pub read_end: u64,
}

/// The log read back from any offset, outside the workers (audit, replay tools).
pub trait LogReplay: Send + Sync + 'static {
    /// The log's partitions and, for each, its end (one past its last record).
    fn partition_ends(&self) -> impl Future<Output = Result<BTreeMap<u32, u64>, LogError>> + Send;

    /// The first offset of `partition` appended at or after `at` (the log's clock); its
    /// end when none is.
    fn offset_at(
        &self,
        partition: u32,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// The next records of `partition` from `from` on, stopping before `until`; at least
    /// one when `from < until` and the log holds it.
    fn read(
        &self,
        partition: u32,
        from: u64,
        until: u64,
    ) -> impl Future<Output = Result<ReplayChunk, LogError>> + Send;
}
