//! The consumer side: a consumer group spreads partitions over workers; each worker
//! decides its partitions' records in offset order through the `IssueCoupons` use case.
//!
//! Positions come from PostgreSQL, never from Kafka's committed offsets (nothing is
//! committed to Kafka): on assignment every partition starts at the offset stored with
//! the decisions, and the use case's compare-and-set of that offset fences a worker
//! that lost its partition but still holds a batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::log::append_time;
use super::{TopicSettings, client_config};
use crate::application::IssueCoupons;
use crate::application::issue_coupons::{Error, Input};
use crate::domain::ports::{IssuanceStore, StoreError};
use crate::domain::{LogPosition, LogRecord};
use crate::infra::event_codec;

/// Records decided per transaction at most.
const MAX_BATCH: usize = 2_048;
/// How long a batch waits for more records once it has one.
const BATCH_WINDOW: Duration = Duration::from_millis(2);
const RETRY_DELAY: Duration = Duration::from_millis(200);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub group: String,
    /// How soon the group notices a dead worker and hands its partitions over.
    pub session_timeout: Duration,
}

/// One assignment of a partition to this worker; a new one restarts from storage.
#[derive(Debug, Clone, Copy)]
struct Assignment {
    generation: u64,
    /// The stored offset it was seeded with; `None` if storage could not say (then
    /// the partition starts from the beginning and the offset is read before deciding).
    seeded: Option<u64>,
}

struct RebalanceContext<S> {
    store: S,
    topic: String,
    runtime: tokio::runtime::Handle,
    generations: AtomicU64,
    assigned: Mutex<HashMap<i32, Assignment>>,
}

impl<S: IssuanceStore> RebalanceContext<S> {
    fn stored_offset(&self, partition: i32) -> Option<u64> {
        let partition = u32::try_from(partition).ok()?;
        for attempt in 1..=3 {
            // Rebalance callbacks are synchronous; they run inside `recv` on a worker
            // thread of the multi-threaded runtime, which may block in place.
            let result = tokio::task::block_in_place(|| {
                self.runtime.block_on(self.store.next_offset(partition))
            });
            match result {
                Ok(offset) => return Some(offset),
                Err(error) => {
                    tracing::warn!(%error, partition, attempt, "cannot read the stored offset");
                    std::thread::sleep(RETRY_DELAY);
                }
            }
        }
        None
    }

    fn assignment(&self, partition: i32) -> Option<Assignment> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&partition)
            .copied()
    }
}

impl<S: IssuanceStore> ClientContext for RebalanceContext<S> {}

impl<S: IssuanceStore> ConsumerContext for RebalanceContext<S> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let mut assigned = HashMap::new();
                for partition in partitions {
                    let seeded = self.stored_offset(partition);
                    let start = seeded
                        .and_then(|o| i64::try_from(o).ok())
                        .map_or(Offset::Beginning, Offset::Offset);
                    if let Err(error) = tpl.set_partition_offset(&self.topic, partition, start) {
                        tracing::error!(%error, partition, "cannot set the start offset");
                    }
                    assigned.insert(partition, Assignment { generation, seeded });
                }
                tracing::info!(partitions = ?assigned.keys().collect::<Vec<_>>(), "partitions assigned");
                *self.assigned.lock().unwrap_or_else(|p| p.into_inner()) = assigned;
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!("partitions revoked");
                self.assigned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassign failed");
                }
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }
}

/// A record copied out of the consumer's buffer.
struct Fetched {
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    payload: Vec<u8>,
}

/// This worker's view of a partition it is deciding.
struct Cursor {
    generation: u64,
    next_offset: Option<u64>,
}

/// Consumes and decides until `shutdown` is cancelled; the batch in flight finishes,
/// then the worker leaves the group so its partitions move at once.
pub async fn run_worker<S: IssuanceStore + Clone>(
    topic: TopicSettings,
    settings: WorkerSettings,
    store: S,
    issue: Arc<IssueCoupons<S>>,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let context = RebalanceContext {
        store: store.clone(),
        topic: topic.topic.clone(),
        runtime: tokio::runtime::Handle::current(),
        generations: AtomicU64::new(0),
        assigned: Mutex::new(HashMap::new()),
    };
    let consumer: StreamConsumer<RebalanceContext<S>> = client_config(&topic.brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout.as_millis() / 4).to_string(),
        )
        .set("fetch.wait.max.ms", "50")
        .create_with_context(context)?;
    consumer.subscribe(&[&topic.topic])?;
    tracing::info!(topic = %topic.topic, group = %settings.group, "issuing worker subscribed");

    let mut worker = Worker {
        consumer: &consumer,
        store,
        issue,
        topic: topic.topic.clone(),
        cursors: HashMap::new(),
        warned_clock: AtomicBool::new(false),
    };
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        let mut fetched = Vec::new();
        match first {
            Ok(m) => fetched.push(copy(&m)),
            Err(error) => {
                tracing::warn!(%error, "consumer error");
                continue;
            }
        }
        // Gather a batch: what is buffered, and what arrives within a moment. One
        // transaction per batch is what lets the database keep up with the flood.
        let gather_until = tokio::time::Instant::now() + BATCH_WINDOW;
        while fetched.len() < MAX_BATCH {
            match tokio::time::timeout_at(gather_until, consumer.recv()).await {
                Ok(Ok(m)) => fetched.push(copy(&m)),
                _ => break,
            }
        }
        let mut by_partition: BTreeMap<i32, Vec<Fetched>> = BTreeMap::new();
        for record in fetched {
            by_partition
                .entry(record.partition)
                .or_default()
                .push(record);
        }
        for (partition, records) in by_partition {
            worker.decide(partition, records, &shutdown).await;
        }
    }
    consumer.unsubscribe();
    tracing::info!("issuing worker stopped");
    Ok(())
}

fn copy(message: &rdkafka::message::BorrowedMessage<'_>) -> Fetched {
    Fetched {
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

struct Worker<'c, S: IssuanceStore> {
    consumer: &'c StreamConsumer<RebalanceContext<S>>,
    store: S,
    issue: Arc<IssueCoupons<S>>,
    topic: String,
    cursors: HashMap<i32, Cursor>,
    warned_clock: AtomicBool,
}

impl<S: IssuanceStore> Worker<'_, S> {
    async fn decide(
        &mut self,
        partition: i32,
        fetched: Vec<Fetched>,
        shutdown: &CancellationToken,
    ) {
        let Some(assignment) = self.consumer.context().assignment(partition) else {
            return; // revoked meanwhile: its new owner decides these
        };
        let Ok(log_partition) = u32::try_from(partition) else {
            return;
        };
        let cursor = self.cursors.entry(partition).or_insert(Cursor {
            generation: 0,
            next_offset: None,
        });
        if cursor.generation != assignment.generation {
            *cursor = Cursor {
                generation: assignment.generation,
                next_offset: assignment.seeded,
            };
        }
        let expected = match cursor.next_offset {
            Some(offset) => offset,
            None => match self.store.next_offset(log_partition).await {
                Ok(offset) => *cursor.next_offset.insert(offset),
                Err(error) => {
                    tracing::error!(%error, partition, "cannot read the stored offset; will re-read");
                    return self.seek(partition, None);
                }
            },
        };
        let (Some(first), Some(last)) = (fetched.first(), fetched.last()) else {
            return;
        };
        let first_offset = u64::try_from(first.offset).unwrap_or(0);
        if first_offset > expected {
            // Records between the stored offset and this one never reached us.
            tracing::warn!(
                partition,
                expected,
                first_offset,
                "gap before the fetched records; seeking back"
            );
            return self.seek(partition, Some(expected));
        }
        let next_offset = u64::try_from(last.offset).map_or(expected, |o| o + 1);
        let records: Vec<LogRecord> = fetched
            .iter()
            .filter_map(|f| self.decode(log_partition, f))
            .collect();
        loop {
            let input = Input {
                partition: log_partition,
                expected_next_offset: expected,
                records: records.clone(),
                next_offset,
            };
            match self.issue.execute(input).await {
                Ok(output) => {
                    if let Some(cursor) = self.cursors.get_mut(&partition) {
                        cursor.next_offset = Some(output.next_offset);
                    }
                    return;
                }
                Err(Error::Store(StoreError::Fenced { stored, .. })) => {
                    tracing::warn!(
                        partition,
                        expected,
                        stored,
                        "partition moved on elsewhere; following it"
                    );
                    if let Some(cursor) = self.cursors.get_mut(&partition) {
                        cursor.next_offset = Some(stored);
                    }
                    return self.seek(partition, Some(stored));
                }
                Err(error) => {
                    tracing::error!(%error, partition, offset = expected, "deciding a batch failed; retrying it");
                    let still_ours = self
                        .consumer
                        .context()
                        .assignment(partition)
                        .map(|a| a.generation)
                        == Some(assignment.generation);
                    if shutdown.is_cancelled() || !still_ours {
                        // Undecided: the next owner (or run) starts again from storage.
                        self.cursors.remove(&partition);
                        return;
                    }
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }

    fn decode(&self, partition: u32, fetched: &Fetched) -> Option<LogRecord> {
        if matches!(fetched.timestamp, Timestamp::CreateTime(_))
            && !self.warned_clock.swap(true, Ordering::Relaxed)
        {
            tracing::error!(topic = %self.topic,
                "topic does not use LogAppendTime: start instants are judged by producer clocks");
        }
        let offset = u64::try_from(fetched.offset).ok()?;
        match event_codec::decode(&fetched.payload) {
            Ok(event) => Some(LogRecord {
                position: LogPosition { partition, offset },
                appended_at: append_time(fetched.timestamp),
                event,
            }),
            Err(error) => {
                tracing::error!(partition, offset, %error, "undecodable record skipped");
                None
            }
        }
    }

    /// Moves the fetch position; `None` forgets the cursor so it is re-read first.
    fn seek(&mut self, partition: i32, offset: Option<u64>) {
        let target = offset
            .and_then(|o| i64::try_from(o).ok())
            .map_or(Offset::Beginning, Offset::Offset);
        if offset.is_none() {
            self.cursors.remove(&partition);
        }
        let result = tokio::task::block_in_place(|| {
            self.consumer
                .seek(&self.topic, partition, target, SEEK_TIMEOUT)
        });
        if let Err(error) = result {
            tracing::error!(%error, partition, "seek failed");
        }
    }
}
