//! One partition this worker holds, decided by a task of its own: records from the
//! partition's own queue, in offset order, a batch per `IssueCoupons` transaction.
//! While this task waits (on a lock, on a failing database), the worker's other
//! partitions go on, and librdkafka stops fetching this one once its queue is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, Timestamp};
use tokio_util::sync::CancellationToken;

use super::log::append_time;
use super::worker::{GroupConsumer, PartitionQueue};
use crate::application::IssueCoupons;
use crate::application::issue_coupons::{Error, Input};
use crate::domain::ports::{IssuanceStore, StoreError};
use crate::domain::{LogPosition, LogRecord};
use crate::infra::event_codec;
use crate::infra::key_fingerprint::{self, KeyMismatch};

const KEY_REMEDY: &str = "every node must run with the deployment's original key \
    (--secret-key-file or COUPON_SECRET_KEY): restore it on this worker; a database that \
    recorded this key while it was empty must be recreated before it is used again";

/// Records decided per transaction at most.
const MAX_BATCH: usize = 2_048;
/// How long a batch waits for more records once it has one.
const BATCH_WINDOW: Duration = Duration::from_millis(2);
const RETRY_DELAY: Duration = Duration::from_millis(200);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// A record copied out of the consumer's buffer.
struct Fetched {
    offset: i64,
    timestamp: Timestamp,
    payload: Vec<u8>,
}

/// One assignment of one partition; a new assignment gets a new one.
pub(super) struct PartitionWorker<S: IssuanceStore> {
    pub partition: i32,
    pub log_partition: u32,
    pub queue: Arc<PartitionQueue<S>>,
    pub consumer: Arc<GroupConsumer<S>>,
    pub store: S,
    pub issue: Arc<IssueCoupons<S>>,
    pub topic: String,
    /// The partition's next undecided offset as this task last committed or read it;
    /// `None` until read from storage.
    pub next_offset: Option<u64>,
    /// Cancelled when the partition is revoked or the worker shuts down.
    pub stop: CancellationToken,
    pub warned_clock: Arc<AtomicBool>,
    /// This worker's key's (see `event_codec`).
    pub key_fingerprint: Arc<str>,
}

impl<S: IssuanceStore> PartitionWorker<S> {
    /// Decides batches until stopped; the batch in flight finishes first. Stops with
    /// the mismatch, nothing of its batch decided, at a campaign record written with
    /// another key.
    pub async fn run(mut self) -> Result<(), KeyMismatch> {
        while let Some(fetched) = self.next_batch().await {
            self.decide(fetched).await?;
        }
        tracing::debug!(partition = self.partition, "partition task stopped");
        Ok(())
    }

    /// What is buffered, and what arrives within a moment: one transaction per batch is
    /// what lets the database keep up with the flood. `None` once stopped.
    async fn next_batch(&self) -> Option<Vec<Fetched>> {
        let first = tokio::select! {
            biased;
            () = self.stop.cancelled() => return None,
            message = self.queue.recv() => message,
        };
        let mut fetched = match first {
            Ok(m) => vec![copy(&m)],
            Err(error) => {
                tracing::warn!(%error, partition = self.partition, "consumer error");
                tokio::time::sleep(RETRY_DELAY).await;
                return Some(Vec::new());
            }
        };
        let gather_until = tokio::time::Instant::now() + BATCH_WINDOW;
        while fetched.len() < MAX_BATCH && !self.stop.is_cancelled() {
            match tokio::time::timeout_at(gather_until, self.queue.recv()).await {
                Ok(Ok(m)) => fetched.push(copy(&m)),
                _ => break,
            }
        }
        Some(fetched)
    }

    async fn decide(&mut self, fetched: Vec<Fetched>) -> Result<(), KeyMismatch> {
        let (Some(first), Some(last)) = (fetched.first(), fetched.last()) else {
            return Ok(());
        };
        let expected = match self.next_offset {
            Some(offset) => offset,
            None => match self.store.next_offset(self.log_partition).await {
                Ok(offset) => *self.next_offset.insert(offset),
                Err(error) => {
                    tracing::error!(%error, partition = self.partition,
                        "cannot read the stored offset; will re-read");
                    self.seek(None);
                    return Ok(());
                }
            },
        };
        let first_offset = u64::try_from(first.offset).unwrap_or(0);
        if first_offset > expected {
            // Records between the stored offset and this one never reached us.
            tracing::warn!(
                partition = self.partition,
                expected,
                first_offset,
                "gap before the fetched records; seeking back"
            );
            self.seek(Some(expected));
            return Ok(());
        }
        let next_offset = u64::try_from(last.offset).map_or(expected, |o| o + 1);
        let records = fetched
            .iter()
            .filter_map(|f| self.decode(f).transpose())
            .collect::<Result<Vec<LogRecord>, _>>()?;
        self.commit(expected, records, next_offset).await;
        Ok(())
    }

    /// Retries until the batch commits, is fenced, or this task is stopped.
    async fn commit(&mut self, expected: u64, records: Vec<LogRecord>, next_offset: u64) {
        let partition = self.partition;
        loop {
            let input = Input {
                partition: self.log_partition,
                expected_next_offset: expected,
                records: records.clone(),
                next_offset,
            };
            match self.issue.execute(input).await {
                Ok(output) => {
                    self.next_offset = Some(output.next_offset);
                    return;
                }
                Err(Error::Store(StoreError::Fenced { stored, .. })) => {
                    tracing::warn!(
                        partition,
                        expected,
                        stored,
                        "partition moved on elsewhere; following it"
                    );
                    self.next_offset = Some(stored);
                    return self.seek(Some(stored));
                }
                Err(error) => {
                    tracing::error!(%error, partition, offset = expected, "deciding a batch failed; retrying it");
                    if self.stop.is_cancelled() {
                        // Undecided: the next owner (or run) starts again from storage.
                        return;
                    }
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }

    /// The record, `None` if undecodable (skipped), or the mismatch of a campaign
    /// record stamped with another key than this worker's.
    fn decode(&self, fetched: &Fetched) -> Result<Option<LogRecord>, KeyMismatch> {
        if matches!(fetched.timestamp, Timestamp::CreateTime(_))
            && !self.warned_clock.swap(true, Ordering::Relaxed)
        {
            tracing::error!(topic = %self.topic,
                "topic does not use LogAppendTime: start instants are judged by producer clocks");
        }
        let Ok(offset) = u64::try_from(fetched.offset) else {
            return Ok(None);
        };
        match event_codec::decode_stamped(&fetched.payload) {
            Ok(decoded) => {
                if let Some(recorded) = &decoded.key_fingerprint {
                    // Campaign records only: rare enough to name the place eagerly.
                    let holder = format!(
                        "the campaign record at offset {offset} of partition {} of topic {}",
                        self.partition, self.topic
                    );
                    key_fingerprint::check(
                        Some(recorded),
                        &self.key_fingerprint,
                        &holder,
                        KEY_REMEDY,
                    )?;
                }
                Ok(Some(LogRecord {
                    position: LogPosition {
                        partition: self.log_partition,
                        offset,
                    },
                    appended_at: append_time(fetched.timestamp),
                    event: decoded.event,
                }))
            }
            Err(error) => {
                tracing::error!(partition = self.partition, offset, %error, "undecodable record skipped");
                Ok(None)
            }
        }
    }

    /// Moves the fetch position; `None` forgets the offset so it is re-read first.
    fn seek(&mut self, offset: Option<u64>) {
        let target = offset
            .and_then(|o| i64::try_from(o).ok())
            .map_or(Offset::Beginning, Offset::Offset);
        if offset.is_none() {
            self.next_offset = None;
        }
        let result = tokio::task::block_in_place(|| {
            self.consumer
                .seek(&self.topic, self.partition, target, SEEK_TIMEOUT)
        });
        if let Err(error) = result {
            tracing::error!(%error, partition = self.partition, "seek failed");
        }
    }
}

fn copy(message: &rdkafka::message::BorrowedMessage<'_>) -> Fetched {
    Fetched {
        offset: message.offset(),
        timestamp: message.timestamp(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}
