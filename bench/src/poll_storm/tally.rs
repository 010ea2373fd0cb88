//! Per-ticket accounting of the storm, and the figures it adds up to. Pure: outcomes
//! in, numbers out.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::issue::{AcceptedTicket, IssueCounts};
use super::poller::PollTrace;
use crate::metrics_scrape::ResultReads;
use crate::stats::{Latency, Percentiles};
use crate::verify::TicketRecord;

/// Status name for tickets still PENDING when their user gave up.
pub const NOT_FINAL: &str = "NOT_FINAL";

/// One accepted ticket: what its user ended with and what it cost.
#[derive(Debug, Clone)]
pub struct TicketOutcome {
    pub ticket_id: String,
    pub user_id: String,
    pub accepted_at: DateTime<Utc>,
    /// The final status, `None` if the user gave up while PENDING.
    pub status: Option<String>,
    pub code: Option<String>,
    /// From the IssueCoupon answer to the first final answer.
    pub to_final: Option<Duration>,
    pub polls: u64,
    pub overloads: u64,
    pub early_pending: u64,
    pub errors: BTreeMap<String, u64>,
}

impl TicketOutcome {
    pub fn new(ticket: AcceptedTicket, trace: PollTrace) -> Self {
        let (status, code, to_final) = match trace.final_answer {
            Some((answer, at)) => (
                answer.status,
                answer.coupon.map(|c| c.code),
                Some(at.saturating_duration_since(ticket.answered)),
            ),
            None => (None, None, None),
        };
        Self {
            ticket_id: ticket.ticket_id,
            user_id: ticket.user_id,
            accepted_at: ticket.accepted_at,
            status,
            code,
            to_final,
            polls: trace.polls,
            overloads: trace.overloads,
            early_pending: trace.early_pending,
            errors: trace.errors,
        }
    }

    pub fn record(&self, campaign_id: &str) -> TicketRecord {
        TicketRecord {
            ticket_id: self.ticket_id.clone(),
            campaign_id: campaign_id.to_owned(),
            user_id: self.user_id.clone(),
            accepted_at: self.accepted_at,
            status: self.status.clone(),
            code: self.code.clone(),
        }
    }
}

/// The storm's figures (JSON keys are a stable interface).
#[derive(Debug, Clone, Serialize)]
pub struct StormFigures {
    pub users: u64,
    pub accepted: u64,
    pub issue_refused: BTreeMap<String, u64>,
    pub issue_overloads: u64,
    pub ambiguous_requests: u64,
    pub polls: u64,
    pub polls_per_s: f64,
    /// GetIssueResult requests per accepted ticket.
    pub requests_per_ticket: f64,
    pub poll_overloads: u64,
    pub poll_errors: BTreeMap<String, u64>,
    /// Long-polls the server answered PENDING at once instead of holding them.
    pub early_pending: u64,
    pub final_latency_ms: Percentiles,
    /// Final status counts; NOT_FINAL for tickets still PENDING at --poll-timeout.
    pub statuses: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    /// GetIssueResult answers by source during the storm (`/metrics` deltas).
    pub reads: Option<ResultReads>,
    pub store_reads_per_poll: Option<f64>,
}

/// Adds up ticket outcomes.
#[derive(Default)]
pub struct Tally {
    tickets: u64,
    polls: u64,
    overloads: u64,
    early_pending: u64,
    errors: BTreeMap<String, u64>,
    statuses: BTreeMap<String, u64>,
    latency: Latency,
}

impl Tally {
    pub fn add(&mut self, ticket: &TicketOutcome) {
        self.tickets += 1;
        self.polls += ticket.polls;
        self.overloads += ticket.overloads;
        self.early_pending += ticket.early_pending;
        for (label, n) in &ticket.errors {
            *self.errors.entry(label.clone()).or_default() += n;
        }
        let status = ticket.status.as_deref().unwrap_or(NOT_FINAL);
        *self.statuses.entry(status.to_owned()).or_default() += 1;
        if let Some(to_final) = ticket.to_final {
            self.latency.record(to_final);
        }
    }

    pub fn requests_per_ticket(&self) -> f64 {
        ratio(self.polls, self.tickets)
    }

    /// The figures, with the IssueCoupon side (`issue`), the storm's users and wall
    /// time, and the `/metrics` read deltas when they could be scraped.
    pub fn figures(
        &self,
        issue: &IssueCounts,
        users: u64,
        elapsed: Duration,
        reads: Option<ResultReads>,
    ) -> StormFigures {
        let secs = elapsed.as_secs_f64();
        StormFigures {
            users,
            accepted: issue.accepted,
            issue_refused: issue.refused.clone(),
            issue_overloads: issue.overloads,
            ambiguous_requests: issue.ambiguous,
            polls: self.polls,
            polls_per_s: if secs > 0.0 {
                self.polls as f64 / secs
            } else {
                0.0
            },
            requests_per_ticket: self.requests_per_ticket(),
            poll_overloads: self.overloads,
            poll_errors: self.errors.clone(),
            early_pending: self.early_pending,
            final_latency_ms: self.latency.percentiles(),
            statuses: self.statuses.clone(),
            elapsed_s: secs,
            reads,
            store_reads_per_poll: reads.map(|r| ratio(r.store, self.polls)),
        }
    }
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::client::{IssueResult, IssuedCoupon};

    fn outcome(
        n: u64,
        status: Option<&str>,
        polls: u64,
        to_final_ms: Option<u64>,
    ) -> TicketOutcome {
        TicketOutcome {
            ticket_id: format!("t{n}"),
            user_id: format!("u{n}"),
            accepted_at: Utc::now(),
            status: status.map(str::to_owned),
            code: None,
            to_final: to_final_ms.map(Duration::from_millis),
            polls,
            overloads: n % 2,
            early_pending: 0,
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn statuses_polls_and_latencies_add_up() {
        let mut tally = Tally::default();
        for n in 0..98 {
            tally.add(&outcome(n, Some("ISSUE_STATUS_ISSUED"), 2, Some(10)));
        }
        tally.add(&outcome(98, Some("ISSUE_STATUS_SOLD_OUT"), 3, Some(1_000)));
        tally.add(&outcome(99, None, 7, None));
        let issue = IssueCounts {
            accepted: 100,
            ..Default::default()
        };
        let f = tally.figures(&issue, 120, Duration::from_secs(2), None);
        assert_eq!(f.polls, 98 * 2 + 3 + 7);
        assert!((f.requests_per_ticket - 2.06).abs() < 1e-9);
        assert!((f.polls_per_s - 103.0).abs() < 1e-9);
        assert_eq!(f.poll_overloads, 50);
        assert_eq!(f.statuses["ISSUE_STATUS_ISSUED"], 98);
        assert_eq!(f.statuses["ISSUE_STATUS_SOLD_OUT"], 1);
        assert_eq!(f.statuses[NOT_FINAL], 1);
        assert_eq!(f.final_latency_ms.count, 99);
        assert!(
            (f.final_latency_ms.p50 - 10.0).abs() < 0.1,
            "{:?}",
            f.final_latency_ms
        );
        assert!(
            (f.final_latency_ms.max - 1_000.0).abs() < 1.0,
            "{:?}",
            f.final_latency_ms
        );
        assert_eq!(f.store_reads_per_poll, None);
    }

    #[test]
    fn store_reads_per_poll_come_from_the_metrics_delta() {
        let mut tally = Tally::default();
        tally.add(&outcome(0, Some("ISSUE_STATUS_ISSUED"), 4, Some(5)));
        let reads = ResultReads {
            memory: 3,
            cache: 0,
            store: 1,
        };
        let f = tally.figures(&IssueCounts::default(), 1, Duration::ZERO, Some(reads));
        assert_eq!(f.store_reads_per_poll, Some(0.25));
        assert_eq!(f.polls_per_s, 0.0);
    }

    #[test]
    fn an_outcome_takes_the_final_answer_and_its_latency() {
        let answered = Instant::now();
        let ticket = AcceptedTicket {
            ticket_id: "t".into(),
            user_id: "u".into(),
            accepted_at: Utc::now(),
            answered,
        };
        let answer = IssueResult {
            status: Some("ISSUE_STATUS_ISSUED".into()),
            coupon: Some(IssuedCoupon {
                code: "가나다라마바사아자0".into(),
            }),
            ..Default::default()
        };
        let trace = PollTrace {
            polls: 3,
            final_answer: Some((answer, answered + Duration::from_millis(80))),
            ..Default::default()
        };
        let outcome = TicketOutcome::new(ticket, trace);
        assert_eq!(outcome.to_final, Some(Duration::from_millis(80)));
        assert_eq!(outcome.code.as_deref(), Some("가나다라마바사아자0"));
        let record = outcome.record("c");
        assert_eq!(
            (record.campaign_id.as_str(), record.status.as_deref()),
            ("c", Some("ISSUE_STATUS_ISSUED"))
        );
    }

    #[test]
    fn no_tickets_is_no_division_by_zero() {
        assert_eq!(Tally::default().requests_per_ticket(), 0.0);
        assert_eq!(ratio(5, 0), 0.0);
    }
}
