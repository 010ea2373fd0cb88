//! The embedded issuing worker: follows the log from the decided offset and hands
//! batches to the `IssueCoupons` use case.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{EmbeddedLog, PARTITION, decode};
use crate::application::IssueCoupons;
use crate::application::issue_coupons::{self, Error, Input};
use crate::domain::ports::{IssuanceStore, StoreError};

/// Records decided per transaction at most.
const BATCH: u32 = 2_048;
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Runs until `shutdown` is cancelled; a batch in flight is finished first.
pub async fn run_worker<S: IssuanceStore>(
    log: EmbeddedLog,
    store: S,
    issue: Arc<IssueCoupons<S>>,
    shutdown: CancellationToken,
) {
    let mut end = log.end();
    let mut next = loop {
        match store.next_offset(PARTITION).await {
            Ok(next) => break next,
            Err(error) => {
                tracing::error!(%error, "cannot read the decided offset; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY_DELAY) => {}
                }
            }
        }
    };
    tracing::info!(next_offset = next, "issuing worker started");
    while !shutdown.is_cancelled() {
        let raw = match log.read(next, BATCH).await {
            Ok(raw) => raw,
            Err(error) => {
                tracing::error!(%error, "cannot read the log; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        let Some(last) = raw.last() else {
            // Caught up: sleep until the writer publishes a new end.
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = end.wait_for(|end| *end > next) => if changed.is_err() { break },
            }
            continue;
        };
        let input = Input {
            partition: PARTITION,
            expected_next_offset: next,
            next_offset: last.offset + 1,
            records: raw.iter().filter_map(decode).collect(),
        };
        match issue.execute(input).await {
            Ok(issue_coupons::Output { next_offset, .. }) => next = next_offset,
            Err(Error::Store(StoreError::Fenced { stored, .. })) => {
                tracing::warn!(
                    expected = next,
                    stored,
                    "decided offset moved under us; resuming there"
                );
                next = stored;
            }
            Err(error) => {
                tracing::error!(%error, offset = next, "deciding a batch failed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
    tracing::info!(next_offset = next, "issuing worker stopped");
}
