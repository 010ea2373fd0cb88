//! Phase 3b: K long-polls wait at once on tickets held PENDING (worker paused), over
//! h2c with many streams per connection. The server's resident memory is sampled
//! before and while they wait; after the resume, each must be answered final.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::issue::AcceptedTicket;
use crate::client::{IssueResult, Refusal};
use crate::load::Pool;
use crate::rss::read_rss_kib;
use crate::run::is_final;
use crate::stats::{Latency, Percentiles};

/// How long after the last long-poll was sent they are taken to be all waiting.
pub const SETTLE: Duration = Duration::from_secs(3);

type Answer = (Result<IssueResult, Refusal>, Instant);

/// Long-polls in flight, waiting for the resume.
pub struct OpenWaiters {
    polls: Vec<JoinHandle<Answer>>,
    connections: usize,
    rss_before_kib: Option<u64>,
    rss_waiting_kib: Option<u64>,
    answered_before_resume: u64,
}

/// Phase 3b's figures (JSON keys are a stable interface).
#[derive(Debug, Clone, Serialize)]
pub struct WaiterFigures {
    /// Long-polls opened (one per accepted ticket).
    pub waiters: u64,
    pub connections: usize,
    pub waiters_per_connection: f64,
    pub answered_before_resume: u64,
    pub answered_final: u64,
    pub answered_pending: u64,
    pub errors: BTreeMap<String, u64>,
    /// From the resume command's end to each final answer that came after it.
    pub resume_to_answer_ms: Percentiles,
    pub rss_before_mib: Option<f64>,
    pub rss_waiting_mib: Option<f64>,
    pub rss_growth_mib: Option<f64>,
    pub rss_per_waiter_kib: Option<f64>,
}

impl WaiterFigures {
    pub fn unanswered(&self) -> u64 {
        self.waiters - self.answered_final
    }
}

/// The server's RSS, when a pid was given; a failed read becomes a note.
pub fn sample_rss(pid: Option<u32>, notes: &mut Vec<String>) -> Option<u64> {
    match read_rss_kib(pid?) {
        Ok(kib) => Some(kib),
        Err(error) => {
            notes.push(format!("server RSS not measured: {error}"));
            None
        }
    }
}

/// Opens one long-poll per ticket on `h2` (round-robin over its connections), waits
/// [`SETTLE`] and samples the RSS. `rss_before_kib` was taken before the tickets.
pub async fn open(
    h2: &Pool,
    connections: usize,
    tickets: &[AcceptedTicket],
    wait: Duration,
    pid: Option<u32>,
    rss_before_kib: Option<u64>,
    notes: &mut Vec<String>,
) -> OpenWaiters {
    let polls: Vec<JoinHandle<Answer>> = tickets
        .iter()
        .map(|ticket| {
            let (api, id) = (h2.pick().clone(), ticket.ticket_id.clone());
            tokio::spawn(async move { (api.result_wait(&id, wait).await, Instant::now()) })
        })
        .collect();
    tokio::time::sleep(SETTLE).await;
    let answered_before_resume = polls.iter().filter(|p| p.is_finished()).count() as u64;
    let rss_waiting_kib = rss_before_kib.and_then(|_| sample_rss(pid, notes));
    OpenWaiters {
        polls,
        connections,
        rss_before_kib,
        rss_waiting_kib,
        answered_before_resume,
    }
}

/// Collects every long-poll's answer after the resume at `resumed_at`.
pub async fn collect(open: OpenWaiters, resumed_at: Instant) -> WaiterFigures {
    let (mut finals, mut pending) = (0, 0);
    let mut errors = BTreeMap::new();
    let latency = Latency::default();
    let waiters = open.polls.len() as u64;
    for poll in open.polls {
        match poll.await {
            Ok((Ok(answer), at)) if is_final(&answer) => {
                finals += 1;
                if at > resumed_at {
                    latency.record(at - resumed_at);
                }
            }
            Ok((Ok(_), _)) => pending += 1,
            Ok((Err(refusal), _)) => *errors.entry(refusal.label()).or_default() += 1,
            Err(_) => *errors.entry("task failed".to_owned()).or_default() += 1,
        }
    }
    let rss = rss_figures(open.rss_before_kib, open.rss_waiting_kib, waiters);
    WaiterFigures {
        waiters,
        connections: open.connections,
        waiters_per_connection: waiters as f64 / open.connections.max(1) as f64,
        answered_before_resume: open.answered_before_resume,
        answered_final: finals,
        answered_pending: pending,
        errors,
        resume_to_answer_ms: latency.percentiles(),
        rss_before_mib: rss.0,
        rss_waiting_mib: rss.1,
        rss_growth_mib: rss.2,
        rss_per_waiter_kib: rss.3,
    }
}

/// (before MiB, waiting MiB, growth MiB, growth KiB per waiter) from KiB samples.
pub fn rss_figures(
    before_kib: Option<u64>,
    waiting_kib: Option<u64>,
    waiters: u64,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let growth_kib = before_kib
        .zip(waiting_kib)
        .map(|(b, w)| w as f64 - b as f64);
    (
        before_kib.map(mib),
        waiting_kib.map(mib),
        growth_kib.map(|g| g / 1024.0),
        growth_kib
            .filter(|_| waiters > 0)
            .map(|g| g / waiters as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_growth_is_in_mib_and_per_waiter_in_kib() {
        let (before, waiting, growth, per) = rss_figures(Some(102_400), Some(143_360), 10_000);
        assert_eq!(
            (before, waiting, growth),
            (Some(100.0), Some(140.0), Some(40.0))
        );
        assert!((per.unwrap_or_default() - 4.096).abs() < 1e-9);
    }

    #[test]
    fn no_samples_no_figures() {
        assert_eq!(rss_figures(None, None, 10), (None, None, None, None));
        assert_eq!(
            rss_figures(Some(1), None, 10),
            (Some(1.0 / 1024.0), None, None, None)
        );
        assert_eq!(rss_figures(Some(1024), Some(2048), 0).3, None);
    }
}
