//! IssueCoupon for the poll-storm users: one request per user, retried after a short
//! pause while the server refuses it as OVERLOADED (nothing was accepted then).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde::Serialize;

use crate::client::Refusal;
use crate::load::Pool;
use crate::run::parse_time;

/// A ticket the server accepted, as its user saw it (`answered`: where ticket-to-final
/// latency starts).
pub use crate::load::Accepted as AcceptedTicket;

/// One user's IssueCoupon: the ticket or the last refusal, and how often the server
/// said OVERLOADED before that.
#[derive(Debug)]
pub struct IssueAttempt {
    pub overloads: u64,
    pub result: Result<AcceptedTicket, Refusal>,
}

/// What a set of IssueCoupon attempts came to, besides the tickets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IssueCounts {
    pub accepted: u64,
    /// Final refusals by `code/REASON` (OVERLOADED here: gave up at the time limit).
    pub refused: BTreeMap<String, u64>,
    /// OVERLOADED answers that were retried.
    pub overloads: u64,
    /// Answers lost on the way: the server may or may not have accepted them.
    pub ambiguous: u64,
}

impl IssueCounts {
    pub fn add(&mut self, attempt: &IssueAttempt) {
        self.overloads += attempt.overloads;
        match &attempt.result {
            Ok(_) => self.accepted += 1,
            Err(refusal) => {
                if refusal.is_transport() {
                    self.ambiguous += 1;
                }
                *self.refused.entry(refusal.label()).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &IssueCounts) {
        self.accepted += other.accepted;
        self.overloads += other.overloads;
        self.ambiguous += other.ambiguous;
        for (label, n) in &other.refused {
            *self.refused.entry(label.clone()).or_default() += n;
        }
    }
}

/// How long a client waits before retrying an OVERLOADED answer: 50-100 ms, jittered
/// so that refused clients do not come back in step.
pub fn overload_pause() -> Duration {
    Duration::from_millis(50 + rand::rng().random_range(0..50))
}

/// One IssueCoupon for `user_id`, retrying OVERLOADED until `give_up`.
pub async fn issue_one(
    pool: &Pool,
    campaign_id: &str,
    user_id: String,
    give_up: Instant,
) -> IssueAttempt {
    let mut overloads = 0;
    loop {
        let result = match pool.pick().issue(campaign_id, &user_id).await {
            Err(refusal) if refusal.is_overload() && Instant::now() < give_up => {
                overloads += 1;
                tokio::time::sleep(overload_pause()).await;
                continue;
            }
            Err(refusal) => Err(refusal),
            Ok(ticket) if ticket.ticket_id.is_empty() => Err(Refusal {
                code: "unparsable".into(),
                reason: Some("IssueCoupon answer without a ticket id".into()),
            }),
            Ok(ticket) => Ok(AcceptedTicket {
                accepted_at: parse_time(ticket.accepted_at.as_deref()).unwrap_or_else(Utc::now),
                ticket_id: ticket.ticket_id,
                user_id,
                answered: Instant::now(),
            }),
        };
        return IssueAttempt { overloads, result };
    }
}

/// One IssueCoupon per user, `concurrency` in flight; each user retries OVERLOADED for
/// at most `patience`. Returns the accepted tickets and the counts.
pub async fn issue_many(
    pool: &Pool,
    campaign_id: &str,
    user_ids: Vec<String>,
    concurrency: usize,
    patience: Duration,
) -> (Vec<AcceptedTicket>, IssueCounts) {
    let attempts: Vec<IssueAttempt> = stream::iter(user_ids)
        .map(|user| issue_one(pool, campaign_id, user, Instant::now() + patience))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut counts = IssueCounts::default();
    let mut tickets = Vec::with_capacity(attempts.len());
    for attempt in attempts {
        counts.add(&attempt);
        if let Ok(ticket) = attempt.result {
            tickets.push(ticket);
        }
    }
    (tickets, counts)
}

/// The run's user ids: `<prefix>-<group>-<n>`, distinct across groups.
pub fn user_ids(prefix: &str, group: &str, count: u64) -> Vec<String> {
    (0..count)
        .map(|n| format!("{prefix}-{group}-{n}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str, reason: Option<&str>, overloads: u64) -> IssueAttempt {
        IssueAttempt {
            overloads,
            result: Err(Refusal {
                code: code.into(),
                reason: reason.map(str::to_owned),
            }),
        }
    }

    fn accepted(overloads: u64) -> IssueAttempt {
        IssueAttempt {
            overloads,
            result: Ok(AcceptedTicket {
                ticket_id: "t".into(),
                user_id: "u".into(),
                accepted_at: Utc::now(),
                answered: Instant::now(),
            }),
        }
    }

    #[test]
    fn attempts_are_counted_by_outcome() {
        let mut counts = IssueCounts::default();
        counts.add(&accepted(2));
        counts.add(&accepted(0));
        counts.add(&refused("transport", Some("TIMEOUT"), 1));
        counts.add(&refused("unavailable", Some("OVERLOADED"), 5));
        assert_eq!(counts.accepted, 2);
        assert_eq!(counts.overloads, 8);
        assert_eq!(counts.ambiguous, 1);
        assert_eq!(counts.refused.get("transport/TIMEOUT"), Some(&1));
        assert_eq!(counts.refused.get("unavailable/OVERLOADED"), Some(&1));
        let mut total = counts.clone();
        total.merge(&counts);
        assert_eq!(
            (total.accepted, total.overloads, total.ambiguous),
            (4, 16, 2)
        );
        assert_eq!(total.refused.get("transport/TIMEOUT"), Some(&2));
    }

    #[test]
    fn user_ids_are_distinct_per_group() {
        let storm = user_ids("p", "storm", 3);
        let waiting = user_ids("p", "waiter", 3);
        assert_eq!(storm, ["p-storm-0", "p-storm-1", "p-storm-2"]);
        assert!(storm.iter().all(|u| !waiting.contains(u)));
    }

    #[test]
    fn overload_pauses_are_short_and_jittered() {
        for _ in 0..100 {
            let pause = overload_pause();
            assert!((Duration::from_millis(50)..Duration::from_millis(100)).contains(&pause));
        }
    }
}
