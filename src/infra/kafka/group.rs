//! The consumer side's group mechanics: a consumer group spreads partitions over
//! workers; this worker's [`GroupMember`] turns rebalances into events and gives each
//! partition it holds a queue and a [`PartitionFeed`] of its own, so that the loop in
//! `interfaces::log_worker::kafka` can decide every partition in its own task.
//!
//! Positions come from PostgreSQL, never from Kafka's committed offsets (nothing is
//! committed to Kafka): on assignment every partition starts at the offset stored with
//! the decisions, and the use case's compare-and-set of that offset fences a worker
//! that lost its partition but still holds a batch.
//!
//! Rebalancing is cooperative (`cooperative-sticky`): a rebalance revokes and assigns
//! only the partitions that change owner, and the others keep being decided meanwhile
//! (eager rebalancing revoked and re-seeded every partition of the group each time).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::partition::PartitionFeed;
use super::{TopicSettings, client_config};
use crate::domain::ports::IssuanceStore;

const RETRY_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub group: String,
    /// How soon the group notices a dead worker and hands its partitions over.
    pub session_timeout: Duration,
    /// This worker's key's; a campaign record stamped with another stops the worker.
    pub key_fingerprint: String,
}

pub(super) type GroupConsumer<S> = StreamConsumer<RebalanceContext<S>>;
pub(super) type PartitionQueue<S> = StreamPartitionQueue<RebalanceContext<S>>;

/// What the rebalance callback tells the worker loop, in order.
enum PartitionEvent<S: IssuanceStore> {
    /// From now on the partition's records arrive on this queue only.
    Split {
        partition: i32,
        queue: PartitionQueue<S>,
    },
    /// The partition is this worker's, fetched from `seeded` (the stored offset; `None`
    /// if storage could not say: then from the beginning, reading the offset first).
    Assigned {
        partition: i32,
        seeded: Option<u64>,
    },
    Revoked {
        partition: i32,
    },
}

pub(super) struct RebalanceContext<S: IssuanceStore> {
    store: S,
    topic: String,
    runtime: tokio::runtime::Handle,
    /// The consumer itself, to split partition queues off; set right after it exists.
    consumer: OnceLock<Weak<GroupConsumer<S>>>,
    /// Partitions already split. Once per partition: librdkafka keeps the partition's
    /// queue, and its records away from the consumer's queue, across assignments, while
    /// dropping a queue handle would silence the wake-ups of the one still in use.
    split: Mutex<HashSet<i32>>,
    events: mpsc::UnboundedSender<PartitionEvent<S>>,
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

    /// Gives the partition a queue of its own before it is assigned, so that none of
    /// its records lands on the consumer's shared queue.
    fn split_queue(&self, partition: i32) {
        let mut split = self.split.lock().unwrap_or_else(|p| p.into_inner());
        if split.contains(&partition) {
            return;
        }
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return; // closing: nothing is assigned any more
        };
        match consumer.split_partition_queue(&self.topic, partition) {
            Some(queue) => {
                split.insert(partition);
                self.send(PartitionEvent::Split { partition, queue });
            }
            None => tracing::error!(partition, "cannot split the partition's queue"),
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList, eager: bool) {
        let mut seeds = Vec::new();
        for partition in partitions(tpl) {
            let seeded = self.stored_offset(partition);
            let start = seeded
                .and_then(|o| i64::try_from(o).ok())
                .map_or(Offset::Beginning, Offset::Offset);
            if let Err(error) = tpl.set_partition_offset(&self.topic, partition, start) {
                tracing::error!(%error, partition, "cannot set the start offset");
            }
            self.split_queue(partition);
            seeds.push((partition, seeded));
        }
        let assigned = if eager {
            consumer.assign(tpl)
        } else {
            consumer.incremental_assign(tpl)
        };
        if let Err(error) = assigned {
            tracing::error!(%error, "assign failed");
            return;
        }
        tracing::info!(partitions = ?partitions(tpl), eager, "partitions assigned");
        for (partition, seeded) in seeds {
            self.send(PartitionEvent::Assigned { partition, seeded });
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList, eager: bool) {
        let revoked = partitions(tpl);
        tracing::info!(partitions = ?revoked, lost = consumer.assignment_lost(), "partitions revoked");
        for &partition in &revoked {
            self.send(PartitionEvent::Revoked { partition });
        }
        let unassigned = if eager {
            consumer.unassign()
        } else {
            consumer.incremental_unassign(tpl)
        };
        if let Err(error) = unassigned {
            tracing::error!(%error, "unassign failed");
        }
    }

    fn send(&self, event: PartitionEvent<S>) {
        // Fails only once the worker loop is gone, i.e. while the consumer closes.
        let _ = self.events.send(event);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl<S: IssuanceStore> ClientContext for RebalanceContext<S> {}

impl<S: IssuanceStore> ConsumerContext for RebalanceContext<S> {
    /// With cooperative rebalancing `tpl` holds only the partitions added or removed;
    /// a group that fell back to the eager protocol gets the whole assignment.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let eager = !matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign(consumer, tpl, eager);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl, eager);
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }
}

/// What the group asks of this worker, in order.
pub enum GroupEvent<S: IssuanceStore> {
    /// A partition is this worker's now: decide what its feed delivers.
    Assigned(PartitionFeed<S>),
    /// The partition is no longer this worker's; its batch in flight may finish (or be
    /// fenced), the new owner starts from storage.
    Revoked { partition: i32 },
}

/// This worker's membership of the consumer group: rebalances in, partition feeds out.
pub struct GroupMember<S: IssuanceStore> {
    consumer: Arc<GroupConsumer<S>>,
    events: mpsc::UnboundedReceiver<PartitionEvent<S>>,
    topic: String,
    queues: HashMap<i32, Arc<PartitionQueue<S>>>,
    warned_clock: Arc<AtomicBool>,
    key_fingerprint: Arc<str>,
}

impl<S: IssuanceStore + Clone> GroupMember<S> {
    /// Joins `settings.group` on the topic; partitions start at the offsets `store`
    /// holds, never at Kafka's committed ones (nothing is committed to Kafka).
    pub fn join(
        topic: &TopicSettings,
        settings: &WorkerSettings,
        store: S,
    ) -> Result<Self, KafkaError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let context = RebalanceContext {
            store,
            topic: topic.topic.clone(),
            runtime: tokio::runtime::Handle::current(),
            consumer: OnceLock::new(),
            split: Mutex::new(HashSet::new()),
            events: events_tx,
        };
        let consumer: Arc<GroupConsumer<S>> =
            Arc::new(consumer_config(topic, settings).create_with_context(context)?);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        consumer.subscribe(&[&topic.topic])?;
        tracing::info!(topic = %topic.topic, group = %settings.group, "issuing worker subscribed");
        Ok(Self {
            consumer,
            events,
            topic: topic.topic.clone(),
            queues: HashMap::new(),
            warned_clock: Arc::new(AtomicBool::new(false)),
            key_fingerprint: settings.key_fingerprint.as_str().into(),
        })
    }

    /// The group's next request; serves rebalances meanwhile (records come through the
    /// partitions' own queues).
    pub async fn next_event(&mut self) -> GroupEvent<S> {
        loop {
            let event = tokio::select! {
                Some(event) = self.events.recv() => event,
                message = self.consumer.recv() => {
                    match message {
                        Ok(m) => tracing::error!(partition = m.partition(), offset = m.offset(),
                            "record outside its partition's queue; left undecided"),
                        Err(error) => tracing::warn!(%error, "consumer error"),
                    }
                    continue;
                }
            };
            match event {
                PartitionEvent::Split { partition, queue } => {
                    self.queues.insert(partition, Arc::new(queue));
                }
                PartitionEvent::Assigned { partition, seeded } => {
                    if let Some(feed) = self.feed(partition, seeded) {
                        return GroupEvent::Assigned(feed);
                    }
                }
                PartitionEvent::Revoked { partition } => {
                    return GroupEvent::Revoked { partition };
                }
            }
        }
    }

    fn feed(&self, partition: i32, seeded: Option<u64>) -> Option<PartitionFeed<S>> {
        let (Some(queue), Ok(log_partition)) =
            (self.queues.get(&partition), u32::try_from(partition))
        else {
            tracing::error!(
                partition,
                "assigned without a queue of its own; not deciding it"
            );
            return None;
        };
        Some(PartitionFeed {
            partition,
            log_partition,
            queue: queue.clone(),
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
            seeded,
            warned_clock: self.warned_clock.clone(),
            key_fingerprint: self.key_fingerprint.clone(),
        })
    }

    /// Leaves the group so the partitions move at once (call after the feeds' batches
    /// in flight finished).
    pub fn leave(self) {
        self.consumer.unsubscribe();
        tracing::info!("issuing worker left the group");
    }
}

fn consumer_config(topic: &TopicSettings, settings: &WorkerSettings) -> rdkafka::ClientConfig {
    let mut config = client_config(&topic.brokers);
    config
        .set("group.id", &settings.group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        // A member learns from a heartbeat that a rebalance started, and each
        // cooperative rebalance takes two rounds of joins: at a quarter of the 6 s
        // session timeout, moving partitions paused 1.6–2.0 s; at 500 ms, 1.0–1.2 s.
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout.as_millis() / 4)
                .min(500)
                .to_string(),
        )
        .set("fetch.wait.max.ms", "50");
    config
}
