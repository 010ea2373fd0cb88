//! What both issuing workers do when a batch does not commit. Fenced (another worker
//! decided the partition on): resume where the store says. Anything else (a database
//! that does not answer, a lock timeout): back off, doubling from 50 ms up to 5 s, and
//! decide the same records again; they decide the same way. Stopped: leave the batch
//! undecided; the next run or owner starts from storage.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::application::DecideIssueRequests;
use crate::application::decide_issue_requests::{Error, Input, Output};
use crate::domain::ports::IssuanceStore;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub(super) enum Outcome {
    Committed(Output),
    Fenced { resume_at: u64 },
    Stopped,
}

/// Pauses that double after each failure, up to a cap.
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_PAUSE }
    }
}

impl Backoff {
    /// Waits the next pause; false if `stop` came first.
    pub(super) async fn pause(&mut self, stop: &CancellationToken) -> bool {
        let pause = self.next_pause();
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }

    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_PAUSE);
        pause
    }
}

/// Decides `input` until it commits, is fenced, or `stop` is cancelled.
pub(super) async fn decide_until_committed<S: IssuanceStore>(
    decide: &DecideIssueRequests<S>,
    input: Input,
    stop: &CancellationToken,
) -> Outcome {
    let mut backoff = Backoff::default();
    loop {
        match decide.execute(input.clone()).await {
            Ok(output) => return Outcome::Committed(output),
            Err(Error::Fenced {
                partition,
                expected,
                resume_at,
            }) => {
                tracing::warn!(
                    partition,
                    expected,
                    resume_at,
                    "partition was decided on elsewhere; resuming there"
                );
                return Outcome::Fenced { resume_at };
            }
            Err(error) => {
                tracing::error!(%error, partition = input.partition, offset = input.resume_at,
                    "deciding a batch failed; retrying it");
                if !backoff.pause(stop).await {
                    return Outcome::Stopped;
                }
            }
        }
    }
}

/// Where `partition` resumes, asking the store until it answers; `None` if stopped.
pub(super) async fn resume_point<S: IssuanceStore>(
    decide: &DecideIssueRequests<S>,
    partition: u32,
    stop: &CancellationToken,
) -> Option<u64> {
    let mut backoff = Backoff::default();
    loop {
        match decide.resume_point(partition).await {
            Ok(offset) => return Some(offset),
            Err(error) => {
                tracing::error!(%error, partition, "cannot read where the partition resumes; retrying");
                if !backoff.pause(stop).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u128> = (0..10).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(
            pauses,
            [50, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]
        );
    }

    #[tokio::test]
    async fn a_stop_ends_the_pause() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut backoff = Backoff {
            next: Duration::from_secs(3_600),
        };
        assert!(!backoff.pause(&stop).await);
    }
}
