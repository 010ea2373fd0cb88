//! Requirement: decide, in log order, every issue request of a partition, exactly once.
//!
//! A batch of consecutive log records is decided in one transaction that also moves the
//! partition's stored offset from where this worker believes it is to just past the
//! batch. A crash before the commit leaves nothing behind and the batch is decided again
//! (the same way: decisions are a function of the log); a worker that lost its partition
//! fails the offset check and cannot commit (DESIGN §5.4, §5.6).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeDelta, Utc};

use crate::domain::coupon_code::CodeError;
use crate::domain::ports::{BatchChanges, IssuanceBatch, IssuanceStore, StoreError};
use crate::domain::{
    CampaignId, CampaignLedger, CodeGenerator, Decision, IssueRequest, IssueStatus, LogEvent,
    LogRecord, UserId,
};

pub struct Input {
    pub partition: u32,
    /// The partition's next undecided offset, as this worker last committed or read it.
    pub expected_next_offset: u64,
    /// Records of this partition in offset order; those before the expected offset
    /// (redeliveries) are skipped.
    pub records: Vec<LogRecord>,
    /// One past the last offset read, counting records that could not be decoded
    /// (they are skipped, but the partition must still move past them).
    pub next_offset: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub next_offset: u64,
    pub decided: usize,
    pub issued: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Code(#[from] CodeError),
}

pub struct IssueCoupons<S> {
    store: S,
    codes: CodeGenerator,
}

impl<S: IssuanceStore> IssueCoupons<S> {
    pub fn new(store: S, codes: CodeGenerator) -> Self {
        Self { store, codes }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let expected = input.expected_next_offset;
        let records: Vec<LogRecord> = input
            .records
            .into_iter()
            .filter(|r| r.position.offset >= expected)
            .collect();
        let next_offset = records.last().map_or(input.next_offset, |last| {
            input.next_offset.max(last.position.offset + 1)
        });
        if next_offset <= expected {
            return Ok(Output {
                next_offset: expected,
                ..Output::default()
            });
        }
        let mut batch = self
            .store
            .begin(input.partition, expected, next_offset)
            .await?;

        let mut ledger = CampaignLedger::new(&self.codes);
        let campaign_ids: Vec<CampaignId> = records
            .iter()
            .map(|r| r.event.campaign_id())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for campaign in batch.load_campaigns(&campaign_ids).await? {
            ledger.add_campaign(campaign);
        }
        let mut changes = BatchChanges::default();
        let batch_records = records.len();
        let mut requests = Vec::with_capacity(records.len());
        let mut users: BTreeMap<CampaignId, BTreeSet<UserId>> = BTreeMap::new();
        for record in records {
            match record.event {
                LogEvent::CampaignCreated(new) => {
                    // The earliest creation in the log wins, whichever the API node
                    // stored (the stores apply the same rule).
                    let campaign = new.placed_at(record.position);
                    ledger.add_created(campaign.clone());
                    changes.new_campaigns.push(campaign);
                }
                LogEvent::IssueRequested {
                    ticket_id,
                    campaign_id,
                    user_id,
                } => {
                    users
                        .entry(campaign_id)
                        .or_default()
                        .insert(user_id.clone());
                    requests.push(IssueRequest {
                        ticket_id,
                        campaign_id,
                        user_id,
                        position: record.position,
                        appended_at: record.appended_at,
                    });
                }
            }
        }
        for (campaign_id, users) in users {
            let users: Vec<UserId> = users.into_iter().collect();
            for (user_id, code) in batch.load_holders(campaign_id, &users).await? {
                ledger.add_holder(campaign_id, user_id, code);
            }
        }

        let mut touched = BTreeSet::new();
        for request in &requests {
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

        let output = Output {
            next_offset,
            decided: changes.tickets.len(),
            issued: changes.coupons.len(),
        };
        let statuses = status_counts(&changes);
        let lag = requests.last().map(|r| Utc::now() - r.appended_at);
        batch.commit(changes).await?;
        record_metrics(input.partition, next_offset, batch_records, &statuses, lag);
        tracing::debug!(
            partition = input.partition,
            next_offset,
            decided = output.decided,
            issued = output.issued,
            "batch committed"
        );
        Ok(output)
    }
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
