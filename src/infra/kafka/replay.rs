//! The topic read back from any offset, outside the consumer group (`audit`): the
//! reader assigns itself one partition at a time, commits nothing and joins no group, so
//! the workers never see it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::client_config;
use super::partition::{Fetched, RecordSource, copy};
use crate::domain::ports::{LogError, LogReplay, ReplayChunk};

/// Records handed out per read at most.
const MAX_CHUNK: usize = 2_048;
/// How long a read waits for the broker before the log counts as unavailable.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaReplay {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// The key campaign records must have been written with (`None`: not checked).
    key_fingerprint: Option<String>,
    /// The partition and offset the consumer fetches next, if assigned.
    position: Mutex<Option<(u32, u64)>>,
    warned_clock: AtomicBool,
}

impl KafkaReplay {
    /// A reader that checks campaign records against `key_fingerprint`, when given
    /// (those that decide what they read must).
    pub fn new(
        brokers: &str,
        topic: &str,
        key_fingerprint: Option<&str>,
    ) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = client_config(brokers)
            // Required by the client; never joined: partitions are assigned, not subscribed.
            .set("group.id", "coupon-replay")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // A record that is gone (retention) is an error, not a silent jump.
            .set("auto.offset.reset", "error")
            .create()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            key_fingerprint: key_fingerprint.map(str::to_owned),
            position: Mutex::new(None),
            warned_clock: AtomicBool::new(false),
        })
    }

    fn seek_to(&self, partition: u32, from: u64) -> Result<(), LogError> {
        let mut position = self.position.lock().unwrap_or_else(PoisonError::into_inner);
        if *position == Some((partition, from)) {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        let offset = Offset::Offset(i64::try_from(from).map_err(unavailable)?);
        assignment
            .add_partition_offset(&self.topic, kafka_partition(partition)?, offset)
            .map_err(unavailable)?;
        self.consumer.assign(&assignment).map_err(unavailable)?;
        *position = Some((partition, from));
        Ok(())
    }

    /// Messages of `partition` from the assigned position: at least one (or the
    /// partition's end), then whatever is buffered, up to `until` and `MAX_CHUNK`. What
    /// is left of an earlier assignment (its records, its end-of-partition events) is
    /// skipped.
    async fn fetch(&self, partition: i32, from: u64, until: u64) -> Result<Vec<Fetched>, LogError> {
        let mut fetched: Vec<Fetched> = Vec::new();
        let mut next = from;
        while next < until && fetched.len() < MAX_CHUNK {
            let wait = if fetched.is_empty() {
                READ_TIMEOUT
            } else {
                Duration::ZERO
            };
            let message = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) if fetched.is_empty() => {
                    return Err(LogError::Unavailable(format!(
                        "no record of topic {} within {READ_TIMEOUT:?}",
                        self.topic
                    )));
                }
                Ok(Err(KafkaError::PartitionEOF(other))) if other != partition => continue,
                Err(_) | Ok(Err(KafkaError::PartitionEOF(_))) => break,
                Ok(Err(error)) => return Err(unavailable(error)),
                Ok(Ok(message)) if message.partition() != partition => continue,
                Ok(Ok(message)) => message,
            };
            let record = copy(&message);
            next = u64::try_from(record.offset).map_err(unavailable)? + 1;
            fetched.push(record);
        }
        Ok(fetched)
    }
}

impl LogReplay for KafkaReplay {
    async fn partition_ends(&self) -> Result<BTreeMap<u32, u64>, LogError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || partition_ends(&consumer, &topic))
            .await
            .map_err(unavailable)?
    }

    async fn offset_at(&self, partition: u32, at: DateTime<Utc>) -> Result<u64, LogError> {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(
                &self.topic,
                kafka_partition(partition)?,
                Offset::Offset(at.timestamp_millis()),
            )
            .map_err(unavailable)?;
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let found = consumer
                .offsets_for_times(query, READ_TIMEOUT)
                .map_err(unavailable)?;
            match found.elements().first().map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => u64::try_from(offset).map_err(unavailable),
                // No record at or after `at`: the end.
                _ => partition_ends(&consumer, &topic)?
                    .get(&partition)
                    .copied()
                    .ok_or_else(|| {
                        LogError::Unavailable(format!("topic {topic} has no partition {partition}"))
                    }),
            }
        })
        .await
        .map_err(unavailable)?
    }

    async fn read(&self, partition: u32, from: u64, until: u64) -> Result<ReplayChunk, LogError> {
        if from >= until {
            return Ok(ReplayChunk {
                records: Vec::new(),
                read_end: from,
            });
        }
        self.seek_to(partition, from)?;
        let fetched = self.fetch(kafka_partition(partition)?, from, until).await;
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                // Assign again on the next read: where the consumer stands is unknown.
                *self.position.lock().unwrap_or_else(PoisonError::into_inner) = None;
                return Err(error);
            }
        };
        self.decode(partition, from, &fetched)
    }
}

impl KafkaReplay {
    fn decode(
        &self,
        partition: u32,
        from: u64,
        fetched: &[Fetched],
    ) -> Result<ReplayChunk, LogError> {
        if let Some(first) = fetched.first()
            && u64::try_from(first.offset).is_ok_and(|first| first > from)
        {
            return Err(LogError::Unavailable(format!(
                "partition {partition} of topic {} has no record at offset {from} (the next \
                 is at {}): records are gone",
                self.topic, first.offset
            )));
        }
        let source = RecordSource {
            topic: &self.topic,
            partition: kafka_partition(partition)?,
            log_partition: partition,
            key_fingerprint: self.key_fingerprint.as_deref(),
            warned_clock: &self.warned_clock,
        };
        let mut records = Vec::with_capacity(fetched.len());
        for record in fetched {
            records.extend(source.decode(record).map_err(unavailable)?);
        }
        let read_end = fetched
            .last()
            .and_then(|last| u64::try_from(last.offset).ok())
            .map_or(from, |last| last + 1);
        *self.position.lock().unwrap_or_else(PoisonError::into_inner) = Some((partition, read_end));
        Ok(ReplayChunk { records, read_end })
    }
}

/// Every partition of `topic` and its high watermark.
fn partition_ends(consumer: &StreamConsumer, topic: &str) -> Result<BTreeMap<u32, u64>, LogError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), READ_TIMEOUT)
        .map_err(unavailable)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(LogError::Unavailable(format!(
            "topic {topic} does not exist"
        )));
    };
    if found.partitions().is_empty() {
        return Err(LogError::Unavailable(format!(
            "topic {topic} does not exist"
        )));
    }
    let mut ends = BTreeMap::new();
    for partition in found.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), READ_TIMEOUT)
            .map_err(unavailable)?;
        let id = u32::try_from(partition.id()).map_err(unavailable)?;
        ends.insert(id, u64::try_from(high).map_err(unavailable)?);
    }
    Ok(ends)
}

fn kafka_partition(partition: u32) -> Result<i32, LogError> {
    i32::try_from(partition).map_err(unavailable)
}

fn unavailable(error: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(error.to_string())
}
