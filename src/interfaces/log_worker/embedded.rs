//! The embedded issuing worker: follows the embedded log from where its one partition
//! resumes and hands each batch to `DecideIssueRequests`. It publishes how far the log
//! is decided to the API in the same process (`DecidedOffsets`), which answers PENDING
//! polls from that and wakes long-polls with it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::progress::BacklogProgress;
use super::retry::{self, Backoff, Outcome};
use crate::application::decide_issue_requests::Input;
use crate::application::{DecideIssueRequests, DecidedOffsets};
use crate::domain::ports::{IssuanceStore, ReplayChunk, StoreError};
use crate::infra::embedded_log::{EmbeddedLog, PARTITION};

/// Records decided per transaction at most.
const BATCH: u32 = 8_192;

/// Runs until `shutdown` is cancelled; a batch in flight is finished first.
pub async fn run<S: IssuanceStore>(
    log: EmbeddedLog,
    decide: Arc<DecideIssueRequests<S>>,
    decided: DecidedOffsets,
    shutdown: CancellationToken,
) {
    let Some(mut resume_at) = retry::resume_point(&decide, PARTITION, &shutdown).await else {
        return;
    };
    decided.publish(PARTITION, resume_at);
    tracing::info!(resume_at, "issuing worker started");
    let mut end = log.end();
    let mut progress = BacklogProgress::new(PARTITION);
    let mut read_failures = Backoff::default();
    // The next batch, read while the previous one commits (a backlog drains faster).
    let mut ahead: Option<(u64, Result<ReplayChunk, StoreError>)> = None;
    while !shutdown.is_cancelled() {
        let read = match ahead.take() {
            Some((from, read)) if from == resume_at => read,
            _ => log.read_decoded(resume_at, BATCH).await,
        };
        let chunk = match read {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::error!(%error, "cannot read the log; retrying");
                read_failures.pause(&shutdown).await;
                continue;
            }
        };
        read_failures = Backoff::default();
        let read_end = chunk.read_end;
        if read_end <= resume_at {
            // Caught up: sleep until the writer publishes a new end.
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = end.wait_for(|end| *end > resume_at) => if changed.is_err() { break },
            }
            continue;
        }
        let input = Input {
            partition: PARTITION,
            resume_at,
            read_end,
            records: chunk.records,
        };
        let read_next = async {
            let more = *end.borrow() > read_end;
            if more {
                Some((read_end, log.read_decoded(read_end, BATCH).await))
            } else {
                None
            }
        };
        let (outcome, next) = tokio::join!(
            retry::decide_until_committed(&decide, input, &shutdown),
            read_next
        );
        ahead = next;
        resume_at = match outcome {
            Outcome::Committed(output) => {
                progress.committed(output.resume_at, || Some(*end.borrow()), output.lag);
                output.resume_at
            }
            Outcome::Fenced { resume_at } => resume_at,
            Outcome::Stopped => break,
        };
        decided.publish(PARTITION, resume_at);
    }
    tracing::info!(resume_at, "issuing worker stopped");
}
