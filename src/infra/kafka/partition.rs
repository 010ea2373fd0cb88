//! One partition this worker holds, as a feed of decoded batches: records from the
//! partition's own queue, in offset order, gathered for one transaction each. The loop
//! that decides them is `interfaces::log_worker::kafka`; while it waits (on a lock, on a
//! failing database), librdkafka stops fetching this partition once its queue is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, Timestamp};
use tokio_util::sync::CancellationToken;

use super::group::{GroupConsumer, PartitionQueue};
use super::log::append_time;
use crate::domain::ports::IssuanceStore;
use crate::domain::{LogPosition, LogRecord};
use crate::infra::event_codec;
use crate::infra::key_fingerprint::{self, KeyMismatch};

/// Records decided per transaction at most.
const MAX_BATCH: usize = 8_192;
/// How long a batch waits for more records once it has one.
const BATCH_WINDOW: Duration = Duration::from_millis(2);
const ERROR_PAUSE: Duration = Duration::from_millis(200);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);
const KEY_REMEDY: &str = "every node must run with the deployment's original key \
    (--secret-key-file or COUPON_SECRET_KEY): restore it on this worker; a database that \
    recorded this key while it was empty must be recreated before it is used again";

/// A record copied out of the consumer's buffer.
pub struct Fetched {
    pub(super) offset: i64,
    timestamp: Timestamp,
    payload: Vec<u8>,
}

/// Consecutive records read from a feed, ready for one decision batch.
pub struct FeedBatch {
    pub records: Vec<LogRecord>,
    /// One past the last offset read, undecodable records included.
    pub read_end: u64,
}

/// One assignment of one partition; a new assignment gets a new one.
pub struct PartitionFeed<S: IssuanceStore> {
    pub(super) partition: i32,
    pub(super) log_partition: u32,
    pub(super) queue: Arc<PartitionQueue<S>>,
    pub(super) consumer: Arc<GroupConsumer<S>>,
    pub(super) topic: String,
    /// The offset the fetch position was set to on assignment (the stored one), if
    /// storage could say.
    pub(super) seeded: Option<u64>,
    pub(super) warned_clock: Arc<AtomicBool>,
    /// This worker's key's (see `event_codec`).
    pub(super) key_fingerprint: Arc<str>,
}

impl<S: IssuanceStore> PartitionFeed<S> {
    /// The partition as Kafka names it.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The partition as the log's positions name it.
    pub fn log_partition(&self) -> u32 {
        self.log_partition
    }

    /// The partition's end (high watermark), asked of its leader: a network round trip,
    /// for progress reports every few seconds, not for every batch.
    pub fn log_end(&self) -> Option<u64> {
        let watermarks = tokio::task::block_in_place(|| {
            self.consumer
                .fetch_watermarks(&self.topic, self.partition, WATERMARK_TIMEOUT)
        });
        let (_, high) = watermarks.ok()?;
        u64::try_from(high).ok()
    }

    /// Where fetching started: the stored offset at assignment, if known.
    pub fn seeded(&self) -> Option<u64> {
        self.seeded
    }

    /// What is buffered, and what arrives within a moment: one transaction per batch is
    /// what lets the database keep up with the flood. Empty after a consumer error;
    /// `None` once stopped.
    pub async fn next_fetch(&self, stop: &CancellationToken) -> Option<Vec<Fetched>> {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            message = self.queue.recv() => message,
        };
        let mut fetched = match first {
            Ok(m) => vec![copy(&m)],
            Err(error) => {
                tracing::warn!(%error, partition = self.partition, "consumer error");
                tokio::time::sleep(ERROR_PAUSE).await;
                return Some(Vec::new());
            }
        };
        let gather_until = tokio::time::Instant::now() + BATCH_WINDOW;
        while fetched.len() < MAX_BATCH && !stop.is_cancelled() {
            match tokio::time::timeout_at(gather_until, self.queue.recv()).await {
                Ok(Ok(m)) => fetched.push(copy(&m)),
                _ => break,
            }
        }
        Some(fetched)
    }

    /// The fetched records as a batch that resumes the partition at `resume_at`; `None`
    /// (after seeking back) when records between the two never reached us, or nothing
    /// was fetched. A campaign record stamped with another key stops the partition.
    pub fn batch(
        &self,
        fetched: &[Fetched],
        resume_at: u64,
    ) -> Result<Option<FeedBatch>, KeyMismatch> {
        let (Some(first), Some(last)) = (fetched.first(), fetched.last()) else {
            return Ok(None);
        };
        if u64::try_from(first.offset).is_ok_and(|first| first > resume_at) {
            tracing::warn!(
                partition = self.partition,
                resume_at,
                first_offset = first.offset,
                "gap before the fetched records; seeking back"
            );
            self.seek(resume_at);
            return Ok(None);
        }
        let Ok(last_offset) = u64::try_from(last.offset) else {
            unreachable!("librdkafka hands out records at offsets ≥ 0 only")
        };
        let mut records = Vec::with_capacity(fetched.len());
        for f in fetched {
            records.extend(self.decode(f)?);
        }
        Ok(Some(FeedBatch {
            records,
            read_end: last_offset + 1,
        }))
    }

    /// The record, `None` if undecodable (skipped), or the mismatch of a campaign
    /// record stamped with another key than this worker's.
    fn decode(&self, fetched: &Fetched) -> Result<Option<LogRecord>, KeyMismatch> {
        let source = RecordSource {
            topic: &self.topic,
            partition: self.partition,
            log_partition: self.log_partition,
            key_fingerprint: Some(&self.key_fingerprint),
            warned_clock: &self.warned_clock,
        };
        source.decode(fetched)
    }

    /// Moves the fetch position to `offset`.
    pub fn seek(&self, offset: u64) {
        let Ok(target) = i64::try_from(offset) else {
            unreachable!("offsets come from the log or the store, both below 2^63")
        };
        let result = tokio::task::block_in_place(|| {
            self.consumer.seek(
                &self.topic,
                self.partition,
                Offset::Offset(target),
                SEEK_TIMEOUT,
            )
        });
        if let Err(error) = result {
            tracing::error!(%error, partition = self.partition, "seek failed");
        }
    }
}

/// Where fetched records come from: what decoding them needs to know.
pub(super) struct RecordSource<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) log_partition: u32,
    /// The reader's key's fingerprint, that campaign records must carry; `None` for a
    /// reader that decides nothing (it only looks at offsets and times).
    pub(super) key_fingerprint: Option<&'a str>,
    /// Set once the topic was reported for not stamping append times.
    pub(super) warned_clock: &'a AtomicBool,
}

impl RecordSource<'_> {
    /// The record, `None` if undecodable (skipped), or the mismatch of a campaign
    /// record stamped with another key than the reader's.
    pub(super) fn decode(&self, fetched: &Fetched) -> Result<Option<LogRecord>, KeyMismatch> {
        if matches!(fetched.timestamp, Timestamp::CreateTime(_))
            && !self.warned_clock.swap(true, Ordering::Relaxed)
        {
            tracing::error!(topic = %self.topic,
                "topic does not use LogAppendTime: start instants are judged by producer clocks");
        }
        let Ok(offset) = u64::try_from(fetched.offset) else {
            unreachable!("librdkafka hands out records at offsets ≥ 0 only")
        };
        let decoded = match event_codec::decode_stamped(&fetched.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::error!(partition = self.partition, offset, %error, "undecodable record skipped");
                return Ok(None);
            }
        };
        if let (Some(recorded), Some(current)) = (&decoded.key_fingerprint, self.key_fingerprint) {
            // Campaign records only: rare enough to name the place eagerly.
            let holder = format!(
                "the campaign record at offset {offset} of partition {} of topic {}",
                self.partition, self.topic
            );
            key_fingerprint::check(Some(recorded), current, &holder, KEY_REMEDY)?;
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
}

pub(super) fn copy(message: &rdkafka::message::BorrowedMessage<'_>) -> Fetched {
    Fetched {
        offset: message.offset(),
        timestamp: message.timestamp(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}
