//! The producer side: appends events, answers once the broker acknowledged them
//! (acks=all, idempotent producer: retries never duplicate or reorder a record).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Timestamp;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::recent_appends::RecentAppends;
use super::statistics::{ExportStatistics, STATISTICS_INTERVAL_MS};
use super::{TopicSettings, client_config};
use crate::domain::log::Appended;
use crate::domain::ports::{IssueLog, LogError};
use crate::domain::{LogEvent, LogPosition, Placement};
use crate::infra::event_codec;

/// Cheap to clone; clones share one producer (and its batching).
#[derive(Clone)]
pub struct KafkaLog {
    producer: FutureProducer<ExportStatistics>,
    topic: String,
    replicas_needed: usize,
    ack_timeout: Duration,
    recent: std::sync::Arc<RecentAppends>,
    /// Stamped on campaign records (see `event_codec`).
    key_fingerprint: std::sync::Arc<str>,
}

/// How appends are sent.
#[derive(Debug, Clone, Copy)]
pub struct AppendSettings {
    /// How long a request waits for the broker before the caller is told `unavailable`.
    pub ack_timeout: Duration,
    /// How long a record may wait for others to share its produce request.
    pub linger: Duration,
    /// The topic's `min.insync.replicas` ([`super::min_insync_replicas`]): a partition
    /// with fewer in-sync replicas refuses records, and the health check says so.
    pub replicas_needed: usize,
}

impl KafkaLog {
    /// `key_fingerprint` is the node's key's.
    pub fn new(
        settings: &TopicSettings,
        append: AppendSettings,
        key_fingerprint: &str,
    ) -> Result<Self, KafkaError> {
        let producer = client_config(&settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", append.linger.as_millis().to_string())
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                append.ack_timeout.as_millis().to_string(),
            )
            // A bounded queue: beyond it the API sheds load instead of queueing.
            .set("queue.buffering.max.messages", "200000")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .create_with_context(ExportStatistics)?;
        Ok(Self {
            producer,
            topic: settings.topic.clone(),
            replicas_needed: append.replicas_needed,
            ack_timeout: append.ack_timeout,
            recent: std::sync::Arc::default(),
            key_fingerprint: key_fingerprint.into(),
        })
    }
}

impl KafkaLog {
    /// Whether every partition of the topic can take a record now, for the health check:
    /// the cluster answers, each partition has a leader and enough in-sync replicas (on
    /// a replicated cluster with one broker left, appends would be refused), and the
    /// latest append did not fail (a cluster without its quorum answers from stale
    /// metadata).
    pub async fn ping(&self) -> bool {
        if self.recent.failing(FAILURE_MEMORY) {
            return false;
        }
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let needed = self.replicas_needed;
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .is_ok_and(|m| {
                    m.topics().iter().any(|t| {
                        t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions().iter().all(|p| {
                                p.error().is_none() && p.leader() >= 0 && p.isr().len() >= needed
                            })
                    })
                })
        })
        .await
        .unwrap_or(false)
    }
}

/// How long a failed append keeps the health check failing, if nothing is written.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

impl IssueLog for KafkaLog {
    async fn append(&self, event: LogEvent, placement: Placement) -> Result<Appended, LogError> {
        let result = self.send(event, placement).await;
        match &result {
            Ok(_) => self.recent.written(),
            Err(LogError::Overloaded) => {}
            Err(_) => self.recent.failed(),
        }
        result
    }
}

impl KafkaLog {
    async fn send(&self, event: LogEvent, placement: Placement) -> Result<Appended, LogError> {
        let key = event.campaign_id().as_uuid();
        let payload = event_codec::encode_stamped(&event, Some(&self.key_fingerprint));
        let mut record = FutureRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(&payload);
        // Spread: librdkafka's partitioner hashes the key over the partitions it knows.
        if let Placement::Home(partition) = placement {
            let partition = i32::try_from(partition)
                .map_err(|_| LogError::Unavailable(format!("no partition {partition}")))?;
            record = record.partition(partition);
        }
        let delivery = match self.producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(LogError::Overloaded);
            }
            Err((error, _)) => return Err(LogError::Unavailable(error.to_string())),
        };
        // librdkafka enforces `message.timeout.ms` only on its periodic scan, and an
        // idempotent producer recovering from timed-out requests holds the records queued
        // behind them: measured 9.9 s for a 5 s timeout with the cluster's quorum lost.
        // The caller was promised an answer within the ack timeout.
        let delivered = tokio::time::timeout(self.ack_timeout, delivery)
            .await
            .map_err(|_| {
                LogError::OutcomeUnknown("no acknowledgement within the ack timeout".into())
            })?
            .map_err(|_| LogError::OutcomeUnknown("producer shut down".into()))?
            .map_err(|(error, _)| delivery_error(&error))?;
        let position = LogPosition {
            partition: u32::try_from(delivered.partition)
                .map_err(|_| LogError::Unavailable("negative partition".into()))?,
            offset: u64::try_from(delivered.offset)
                .map_err(|_| LogError::Unavailable("negative offset".into()))?,
        };
        Ok(Appended {
            position,
            appended_at: append_time(delivered.timestamp),
        })
    }
}

/// What a failed delivery says about the record. Once a record is handed to the
/// producer it may reach the broker whatever happens next: only a broker's explicit
/// refusal of the record proves it was not appended. A timeout (the broker frozen, a
/// leader change) is the common case of an unknown outcome.
fn delivery_error(error: &KafkaError) -> LogError {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        Some(
            MessageSizeTooLarge
            | InvalidMessage
            | InvalidMessageSize
            | UnknownTopicOrPartition
            | UnknownPartition
            | UnknownTopic
            | TopicAuthorizationFailed
            | NotEnoughReplicas
            | InvalidRecord
            | MessageBatchTooLarge
            | InvalidRequiredAcks,
        ) => LogError::Unavailable(error.to_string()),
        _ => LogError::OutcomeUnknown(error.to_string()),
    }
}

/// The broker's append time; a topic without `LogAppendTime` is a misconfiguration
/// the worker reports, and the caller then sees this node's clock.
pub(super) fn append_time(timestamp: Timestamp) -> DateTime<Utc> {
    match timestamp {
        Timestamp::LogAppendTime(ms) | Timestamp::CreateTime(ms) => {
            DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
        }
        Timestamp::NotAvailable => Utc::now(),
    }
}
