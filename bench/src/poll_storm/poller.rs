//! One user polling their ticket to a final status, the way a client would: long-polls
//! (the server holds the answer) or short polls paced by the server's `retryAfterMs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use super::issue::overload_pause;
use crate::client::{IssueResult, Refusal};
use crate::load::Pool;
use crate::run::is_final;

/// How users wait for their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// GetIssueResult with `waitMs`, again at once while PENDING.
    Long,
    /// GetIssueResult without a wait, pausing between polls.
    Short,
}

/// Short polls' pause when the answer suggests none and no interval was given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(20);
/// A long-poll answered PENDING sooner than this was not held by the server.
pub const EARLY: Duration = Duration::from_millis(250);
/// Pause after an answer that was neither a result nor OVERLOADED (e.g. a timeout).
pub const ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct PollPlan {
    pub mode: PollMode,
    /// Long-polls' `waitMs`.
    pub wait: Duration,
    /// Short polls: a fixed pause that overrides the answer's `retryAfterMs`.
    pub interval: Option<Duration>,
}

impl PollPlan {
    /// The `waitMs` of the next poll, or `None` when the deadline leaves no time.
    pub fn wait_within(&self, now: Instant, deadline: Instant) -> Option<Duration> {
        let left = deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())?;
        match self.mode {
            PollMode::Short => Some(Duration::ZERO),
            PollMode::Long => Some(self.wait.min(left)),
        }
    }

    /// The pause after a PENDING answer that took `took`, and whether it was a long-poll
    /// the server did not hold (then the client paces itself like a short poller, so a
    /// server without long-polls is not hammered).
    pub fn pause_after_pending(&self, answer: &IssueResult, took: Duration) -> (Duration, bool) {
        let suggested = answer
            .retry_after_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        match self.mode {
            PollMode::Short => (
                self.interval.or(suggested).unwrap_or(DEFAULT_INTERVAL),
                false,
            ),
            PollMode::Long if took >= EARLY.min(self.wait / 2) => (Duration::ZERO, false),
            PollMode::Long => (
                suggested.or(self.interval).unwrap_or(DEFAULT_INTERVAL),
                true,
            ),
        }
    }
}

/// What polling one ticket took.
#[derive(Debug, Default)]
pub struct PollTrace {
    /// GetIssueResult requests sent.
    pub polls: u64,
    pub overloads: u64,
    /// Long-polls answered PENDING without being held.
    pub early_pending: u64,
    /// Other failed polls by `code/REASON`.
    pub errors: BTreeMap<String, u64>,
    /// The first final answer and when it arrived.
    pub final_answer: Option<(IssueResult, Instant)>,
}

impl PollTrace {
    /// Takes in one answer; `Some(pause)` before polling again, `None` when final.
    fn absorb(
        &mut self,
        plan: &PollPlan,
        answer: Result<IssueResult, Refusal>,
        took: Duration,
    ) -> Option<Duration> {
        self.polls += 1;
        match answer {
            Ok(result) if is_final(&result) => {
                self.final_answer = Some((result, Instant::now()));
                None
            }
            Ok(pending) => {
                let (pause, early) = plan.pause_after_pending(&pending, took);
                self.early_pending += u64::from(early);
                Some(pause)
            }
            Err(refusal) if refusal.is_overload() => {
                self.overloads += 1;
                Some(overload_pause())
            }
            Err(refusal) => {
                *self.errors.entry(refusal.label()).or_default() += 1;
                Some(ERROR_PAUSE)
            }
        }
    }
}

/// Polls `ticket` until a final answer or `deadline`. At most `gate`'s permits of polls
/// are in flight across all users; `polls` counts requests for the progress display.
pub async fn poll_to_final(
    pool: &Pool,
    gate: &Semaphore,
    ticket: &str,
    plan: &PollPlan,
    deadline: Instant,
    polls: &AtomicU64,
) -> PollTrace {
    let mut trace = PollTrace::default();
    while let Some(wait) = plan.wait_within(Instant::now(), deadline) {
        let Ok(permit) = gate.acquire().await else {
            break;
        };
        let sent = Instant::now();
        let answer = pool.pick().result_wait(ticket, wait).await;
        drop(permit);
        polls.fetch_add(1, Ordering::Relaxed);
        let Some(pause) = trace.absorb(plan, answer, sent.elapsed()) else {
            break;
        };
        if Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(retry_after_ms: Option<i64>) -> IssueResult {
        IssueResult {
            status: Some("ISSUE_STATUS_PENDING".into()),
            retry_after_ms,
            ..Default::default()
        }
    }

    const SHORT: PollPlan = PollPlan {
        mode: PollMode::Short,
        wait: Duration::from_secs(20),
        interval: None,
    };
    const LONG: PollPlan = PollPlan {
        mode: PollMode::Long,
        ..SHORT
    };
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn short_polls_honour_retry_after_unless_an_interval_is_given() {
        assert_eq!(
            SHORT.pause_after_pending(&pending(Some(40)), MS(2)),
            (MS(40), false)
        );
        assert_eq!(
            SHORT.pause_after_pending(&pending(None), MS(2)),
            (DEFAULT_INTERVAL, false)
        );
        let fixed = PollPlan {
            interval: Some(MS(500)),
            ..SHORT
        };
        assert_eq!(
            fixed.pause_after_pending(&pending(Some(40)), MS(2)),
            (MS(500), false)
        );
    }

    #[test]
    fn a_held_long_poll_is_repeated_at_once_and_an_unheld_one_is_paced() {
        assert_eq!(
            LONG.pause_after_pending(&pending(Some(40)), MS(15_000)),
            (MS(0), false)
        );
        assert_eq!(
            LONG.pause_after_pending(&pending(Some(40)), MS(3)),
            (MS(40), true)
        );
        assert_eq!(
            LONG.pause_after_pending(&pending(None), MS(3)),
            (DEFAULT_INTERVAL, true)
        );
    }

    #[test]
    fn waits_shrink_to_the_deadline_and_stop_at_it() {
        let now = Instant::now();
        assert_eq!(LONG.wait_within(now, now + MS(60_000)), Some(MS(20_000)));
        assert_eq!(LONG.wait_within(now, now + MS(700)), Some(MS(700)));
        assert_eq!(SHORT.wait_within(now, now + MS(700)), Some(MS(0)));
        assert_eq!(LONG.wait_within(now, now), None);
        assert_eq!(SHORT.wait_within(now + MS(1), now), None);
    }

    #[test]
    fn a_trace_counts_every_kind_of_answer() {
        let mut trace = PollTrace::default();
        let overloaded = Refusal {
            code: "unavailable".into(),
            reason: Some("OVERLOADED".into()),
        };
        let timeout = Refusal {
            code: "transport".into(),
            reason: Some("TIMEOUT".into()),
        };
        assert!(trace.absorb(&LONG, Ok(pending(None)), MS(1)).is_some());
        assert!(trace.absorb(&LONG, Err(overloaded), MS(1)).is_some());
        assert_eq!(trace.absorb(&LONG, Err(timeout), MS(1)), Some(ERROR_PAUSE));
        let issued = IssueResult {
            status: Some("ISSUE_STATUS_ISSUED".into()),
            ..Default::default()
        };
        assert_eq!(trace.absorb(&LONG, Ok(issued), MS(1)), None);
        assert_eq!(
            (trace.polls, trace.overloads, trace.early_pending),
            (4, 1, 1)
        );
        assert_eq!(trace.errors.get("transport/TIMEOUT"), Some(&1));
        assert!(trace.final_answer.is_some());
    }
}
