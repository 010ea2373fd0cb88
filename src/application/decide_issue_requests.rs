//! Requirement: decide, in log order, every issue request of a partition, exactly once.
//!
//! A batch of consecutive log records is decided in one transaction that also moves the
//! partition's stored offset from where this worker believes it is to just past the
//! batch. A crash before the commit leaves nothing behind and the batch is decided again
//! (the same way: decisions are a function of the log); a worker that lost its partition
//! fails the offset check and cannot commit (DESIGN §5.4, §5.6).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{TimeDelta, Utc};

use super::holder_cache::{CACHED_COUPONS, HolderCache};
use crate::domain::coupon_code::CodeError;
use crate::domain::ports::{BatchChanges, IssuanceBatch, IssuanceStore, StoreError};
use crate::domain::{
    Campaign, CampaignId, CampaignLedger, CodeGenerator, Decision, IssueRequest, IssueStatus,
    LogEvent, LogRecord, UserId,
};

#[derive(Clone)]
pub struct Input {
    pub partition: u32,
    /// Where this worker resumes: the partition's first undecided offset, as it last
    /// committed it or read it with [`DecideIssueRequests::resume_point`].
    pub resume_at: u64,
    /// Records of this partition in offset order; those before `resume_at`
    /// (redeliveries) are skipped.
    pub records: Vec<LogRecord>,
    /// How far the worker read: one past the last offset, counting records that could
    /// not be decoded (skipped, but the partition must still move past them).
    pub read_end: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Where the partition resumes now: one past the batch.
    pub resume_at: u64,
    pub decided: usize,
    pub issued: usize,
    /// How long ago the batch's last request was appended, as of reading the batch.
    pub lag: Option<TimeDelta>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another worker decided this partition on (or this one re-read old records):
    /// the batch meant to resume at `expected`; nothing was written; resume at
    /// `resume_at`.
    #[error("partition {partition} is decided up to {resume_at}, not {expected}: fenced")]
    Fenced {
        partition: u32,
        expected: u64,
        resume_at: u64,
    },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Code(#[from] CodeError),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Fenced {
                partition,
                expected,
                stored,
            } => Error::Fenced {
                partition,
                expected,
                resume_at: stored,
            },
            other => Error::Store(other),
        }
    }
}

pub struct DecideIssueRequests<S> {
    store: S,
    codes: CodeGenerator,
    holders: HolderCache,
}

/// A batch's records sorted into what the ledger needs.
#[derive(Default)]
struct Sorted {
    created: Vec<Campaign>,
    requests: Vec<IssueRequest>,
    /// The distinct users the batch names, per campaign, in order.
    users: BTreeMap<CampaignId, Vec<UserId>>,
}

impl<S: IssuanceStore> DecideIssueRequests<S> {
    pub fn new(store: S, codes: CodeGenerator) -> Self {
        Self {
            store,
            codes,
            holders: HolderCache::new(CACHED_COUPONS),
        }
    }

    /// Where `partition` resumes: its first offset no committed batch covers.
    pub async fn resume_point(&self, partition: u32) -> Result<u64, Error> {
        Ok(self.store.next_offset(partition).await?)
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let resume_at = input.resume_at;
        let records: Vec<LogRecord> = input
            .records
            .into_iter()
            .filter(|r| r.position.offset >= resume_at)
            .collect();
        let read_end = records.last().map_or(input.read_end, |last| {
            input.read_end.max(last.position.offset + 1)
        });
        if read_end <= resume_at {
            return Ok(Output {
                resume_at,
                ..Output::default()
            });
        }
        let batch_records = records.len();
        let oldest = records.first().map(|r| r.appended_at);
        let mut phases = PhaseClock::start();
        let mut batch = self
            .store
            .begin(input.partition, resume_at, read_end)
            .await?;
        phases.lap("begin");
        let sorted = sort(records);
        let lag = sorted.requests.last().map(|r| Utc::now() - r.appended_at);
        let mut ledger = self.load_ledger(&mut batch, &sorted).await?;
        phases.lap("read");
        let changes = decide(&mut ledger, sorted)?;
        phases.lap("decide");
        let output = Output {
            resume_at: read_end,
            decided: changes.tickets.len(),
            issued: changes.coupons.len(),
            lag,
        };
        let statuses = status_counts(&changes);
        batch.commit(changes).await?;
        phases.lap("commit");
        record_metrics(input.partition, read_end, batch_records, &statuses, lag);
        if let Some(oldest) = oldest {
            // From the batch's first append (the broker's clock) to its commit: the
            // longest any ticket of the batch waited to be final, past the poll.
            metrics::histogram!("coupon_decision_latency_seconds")
                .record((Utc::now() - oldest).as_seconds_f64().max(0.0));
        }
        tracing::debug!(
            partition = input.partition,
            resume_at = read_end,
            decided = output.decided,
            issued = output.issued,
            "batch committed"
        );
        Ok(output)
    }

    /// The ledger of every campaign the batch names, as stored (locked for the batch)
    /// plus those it creates, with the coupons its users already hold.
    async fn load_ledger(
        &self,
        batch: &mut S::Batch,
        sorted: &Sorted,
    ) -> Result<CampaignLedger<'_>, Error> {
        let mut ledger = CampaignLedger::new(&self.codes);
        let named: BTreeSet<CampaignId> = sorted
            .created
            .iter()
            .map(|c| c.id)
            .chain(sorted.requests.iter().map(|r| r.campaign_id))
            .collect();
        let named: Vec<CampaignId> = named.into_iter().collect();
        for campaign in batch.load_campaigns(&named).await? {
            ledger.add_campaign(campaign);
        }
        // The earliest creation in the log wins, whichever the API node stored (the
        // stores apply the same rule).
        for campaign in &sorted.created {
            ledger.add_created(campaign.clone());
        }
        for (campaign_id, users) in &sorted.users {
            // A campaign the store does not know yet has no holders.
            let issued = ledger.campaign(campaign_id).map_or(0, |c| c.issued_coupons);
            let holders = self.holders.holders(batch, *campaign_id, issued, users);
            for (user_id, code) in holders.await? {
                ledger.add_holder(*campaign_id, user_id, code);
            }
        }
        Ok(ledger)
    }
}

fn sort(records: Vec<LogRecord>) -> Sorted {
    let mut sorted = Sorted::default();
    let mut users: BTreeMap<CampaignId, BTreeSet<UserId>> = BTreeMap::new();
    for record in records {
        match record.event {
            LogEvent::CampaignCreated(new) => sorted.created.push(new.placed_at(record.position)),
            LogEvent::IssueRequested {
                ticket_id,
                campaign_id,
                user_id,
            } => {
                users
                    .entry(campaign_id)
                    .or_default()
                    .insert(user_id.clone());
                sorted.requests.push(IssueRequest {
                    ticket_id,
                    campaign_id,
                    user_id,
                    position: record.position,
                    appended_at: record.appended_at,
                });
            }
        }
    }
    sorted.users = users
        .into_iter()
        .map(|(campaign, users)| (campaign, users.into_iter().collect()))
        .collect();
    sorted
}

/// Every request decided in log order, as the rows the batch writes.
fn decide(ledger: &mut CampaignLedger<'_>, sorted: Sorted) -> Result<BatchChanges, Error> {
    let mut changes = BatchChanges {
        new_campaigns: sorted.created,
        ..BatchChanges::default()
    };
    let mut touched = BTreeSet::new();
    for request in &sorted.requests {
        let decision = ledger.decide(request)?;
        if matches!(decision, Decision::UnknownCampaign) {
            tracing::error!(ticket_id = %request.ticket_id, campaign_id = %request.campaign_id,
                "issue request for a campaign the log never created; decided SOLD_OUT");
        }
        changes.tickets.push(decision.ticket_result(request));
        if let Decision::Issued(coupon) = decision {
            touched.insert(coupon.campaign_id);
            changes.coupons.push(coupon);
        }
    }
    changes.issued_counts = touched
        .into_iter()
        .filter_map(|id| ledger.campaign(&id).map(|c| (id, c.issued_coupons)))
        .collect();
    Ok(changes)
}

/// Decided tickets of a batch, by final status (in `IssueStatus::ALL` order).
fn status_counts(changes: &BatchChanges) -> [u64; 4] {
    let mut counts = [0; 4];
    for ticket in &changes.tickets {
        if let Some(i) = IssueStatus::ALL.iter().position(|s| *s == ticket.status) {
            counts[i] += 1;
        }
    }
    counts
}

/// Where one attempt at a batch spends its time, for
/// `coupon_decision_phase_seconds{phase}`: opening the transaction (the offset's
/// compare-and-set, waiting for a connection or the partition's lock), reading the
/// campaigns and holders, deciding, committing.
struct PhaseClock {
    last: Instant,
}

impl PhaseClock {
    fn start() -> Self {
        Self {
            last: Instant::now(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        metrics::histogram!("coupon_decision_phase_seconds", "phase" => phase)
            .record((now - self.last).as_secs_f64());
        self.last = now;
    }
}

/// After a commit (so a retried batch is not counted twice): decisions by status, the
/// batch size, and how far behind the log this partition's decisions run.
fn record_metrics(
    partition: u32,
    next_offset: u64,
    batch_records: usize,
    statuses: &[u64; 4],
    lag: Option<TimeDelta>,
) {
    for (status, count) in IssueStatus::ALL.iter().zip(statuses) {
        if *count > 0 {
            metrics::counter!("coupon_tickets_decided_total", "status" => status.as_str())
                .increment(*count);
        }
    }
    metrics::histogram!("coupon_decision_batch_records").record(batch_records as f64);
    let partition = partition.to_string();
    metrics::gauge!("coupon_decided_offset", "partition" => partition.clone())
        .set(next_offset as f64);
    if let Some(lag) = lag {
        metrics::gauge!("coupon_decision_lag_seconds", "partition" => partition)
            .set(lag.as_seconds_f64().max(0.0));
    }
}
