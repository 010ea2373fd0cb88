//! The distributed issuing worker: a member of the consumer group that decides each
//! partition it holds in a task of its own, so that one partition blocked on a lock or a
//! failing batch never stops the others. A revoked partition's task finishes its batch in
//! flight (or is fenced); the new owner resumes from storage.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::progress::BacklogProgress;
use super::retry::{self, Outcome};
use crate::application::DecideIssueRequests;
use crate::application::decide_issue_requests::Input;
use crate::domain::ports::IssuanceStore;
use crate::infra::kafka::{GroupEvent, GroupMember, PartitionFeed, TopicSettings, WorkerSettings};
use crate::infra::key_fingerprint::KeyMismatch;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The log was written with another key: deciding it would make other codes.
    #[error(transparent)]
    Key(#[from] KeyMismatch),
}

/// Consumes and decides until `shutdown` is cancelled; the batches in flight finish,
/// then the worker leaves the group so its partitions move at once. Stops with an error
/// at a campaign record written with another key.
pub async fn run<S: IssuanceStore + Clone>(
    topic: TopicSettings,
    settings: WorkerSettings,
    store: S,
    decide: Arc<DecideIssueRequests<S>>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut member = GroupMember::join(&topic, &settings, store)?;
    let mut partitions = Partitions {
        decide,
        shutdown: shutdown.clone(),
        running: HashMap::new(),
        tasks: JoinSet::new(),
        refused: None,
    };
    while partitions.refused.is_none() {
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = member.next_event() => partitions.handle(event),
            Some(joined) = partitions.tasks.join_next() => partitions.reap(joined),
        }
    }
    partitions.finish().await;
    member.leave();
    match partitions.refused {
        Some(mismatch) => Err(mismatch.into()),
        None => Ok(()),
    }
}

/// The partitions this worker holds, each decided by its own task.
struct Partitions<S: IssuanceStore> {
    decide: Arc<DecideIssueRequests<S>>,
    shutdown: CancellationToken,
    /// The stop signal of each assigned partition's task.
    running: HashMap<i32, CancellationToken>,
    tasks: JoinSet<Result<(), KeyMismatch>>,
    /// Set when a partition's log was written with another key: the worker stops.
    refused: Option<KeyMismatch>,
}

impl<S: IssuanceStore> Partitions<S> {
    fn handle(&mut self, event: GroupEvent<S>) {
        match event {
            GroupEvent::Assigned(feed) => {
                let stop = self.shutdown.child_token();
                if let Some(previous) = self.running.insert(feed.partition(), stop.clone()) {
                    previous.cancel();
                }
                let task = PartitionTask {
                    resume_at: feed.seeded(),
                    feed,
                    decide: self.decide.clone(),
                    stop,
                };
                self.tasks.spawn(task.run());
            }
            GroupEvent::Revoked { partition } => {
                if let Some(stop) = self.running.remove(&partition) {
                    stop.cancel();
                }
            }
        }
    }

    fn reap(&mut self, joined: Result<Result<(), KeyMismatch>, tokio::task::JoinError>) {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(mismatch)) => {
                tracing::error!(error = %mismatch, "refusing to decide a log written with another key");
                self.refused.get_or_insert(mismatch);
            }
            Err(error) => tracing::error!(%error, "a partition's task failed"),
        }
    }

    /// Every task stops taking records and finishes its batch in flight.
    async fn finish(&mut self) {
        for stop in self.running.values() {
            stop.cancel();
        }
        while let Some(joined) = self.tasks.join_next().await {
            self.reap(joined);
        }
        self.running.clear();
    }
}

/// Decides one assigned partition, batch by batch, until revoked or stopped.
struct PartitionTask<S: IssuanceStore> {
    feed: PartitionFeed<S>,
    decide: Arc<DecideIssueRequests<S>>,
    /// Where the partition resumes, as this task last committed or read it; `None`
    /// until read from storage.
    resume_at: Option<u64>,
    stop: CancellationToken,
}

impl<S: IssuanceStore> PartitionTask<S> {
    async fn run(mut self) -> Result<(), KeyMismatch> {
        let partition = self.feed.log_partition();
        let mut progress = BacklogProgress::new(partition);
        while let Some(fetched) = self.feed.next_fetch(&self.stop).await {
            let resume_at = match self.resume_at {
                Some(offset) => offset,
                None => {
                    // Storage could not say at assignment: fetching started at the
                    // beginning; move to where the partition resumes.
                    let Some(offset) =
                        retry::resume_point(&self.decide, partition, &self.stop).await
                    else {
                        break;
                    };
                    self.resume_at = Some(offset);
                    self.feed.seek(offset);
                    continue;
                }
            };
            let Some(batch) = self.feed.batch(&fetched, resume_at)? else {
                continue;
            };
            let input = Input {
                partition,
                resume_at,
                records: batch.records,
                read_end: batch.read_end,
            };
            match retry::decide_until_committed(&self.decide, input, &self.stop).await {
                Outcome::Committed(output) => {
                    progress.committed(output.resume_at, || self.feed.log_end(), output.lag);
                    self.resume_at = Some(output.resume_at);
                }
                Outcome::Fenced { resume_at } => {
                    self.resume_at = Some(resume_at);
                    self.feed.seek(resume_at);
                }
                Outcome::Stopped => break,
            }
        }
        tracing::debug!(partition, "partition task stopped");
        Ok(())
    }
}
