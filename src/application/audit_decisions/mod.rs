//! Requirement: an operator proves that the store holds exactly what the log implies.
//!
//! Decisions are a function of the log. The audit reads the store's decided state in one
//! snapshot, decides the log again, from its first record up to the offsets that
//! snapshot records, into a store in memory with the same use case the workers run
//! (`DecideIssueRequests`), and compares the two row by row. Read-only on both sides, so
//! it is safe while the service runs.

mod compare;
mod replay_store;

use std::collections::BTreeMap;

use compare::Differences;
pub use compare::{Compared, Difference};
use replay_store::ReplayStore;

use super::DecideIssueRequests;
use super::decide_issue_requests::{self, Input as Batch};
use crate::domain::CodeGenerator;
use crate::domain::ports::{DecidedStateReader, LogError, LogReplay, StoreError};

pub struct Input {
    /// Differences listed at most (all are counted).
    pub max_listed: usize,
    /// Told, after each batch, how many records are replayed of how many.
    pub on_progress: Box<dyn Fn(u64, u64) + Send + Sync>,
}

#[derive(Debug)]
pub struct Output {
    /// Each partition's decided offset in the snapshot: how far the log was replayed.
    pub offsets: BTreeMap<u32, u64>,
    /// Log records replayed (undecodable ones included).
    pub records: u64,
    pub compared: Compared,
    /// The first differences, in log order within each kind of row.
    pub differences: Vec<Difference>,
    pub difference_count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("reading the log: {0}")]
    Log(#[from] LogError),
    /// The store says more is decided than the log holds: another topic or log file,
    /// or a log that lost records.
    #[error(
        "partition {partition} is decided up to offset {decided} but the log ends at {end}: \
         the store belongs to another log, or the log lost records"
    )]
    AheadOfLog {
        partition: u32,
        decided: u64,
        end: u64,
    },
    #[error("the log's partition {partition} returned nothing at offset {offset}, before its end")]
    Stalled { partition: u32, offset: u64 },
    #[error("deciding the log again: {0}")]
    Replay(#[from] decide_issue_requests::Error),
}

pub struct AuditDecisions<S, L> {
    stored: S,
    log: L,
    replay: ReplayStore,
    decide: DecideIssueRequests<ReplayStore>,
}

impl<S: DecidedStateReader, L: LogReplay> AuditDecisions<S, L> {
    pub fn new(stored: S, log: L, codes: CodeGenerator) -> Self {
        let replay = ReplayStore::default();
        Self {
            stored,
            log,
            decide: DecideIssueRequests::new(replay.clone(), codes),
            replay,
        }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        // Whatever an earlier run that failed half-way left in the replay goes first.
        self.replay.take();
        // The snapshot first: the log only grows, so it holds everything it decided.
        let stored = self.stored.read_decided_state().await?;
        let ends = self.log.partition_ends().await?;
        for (&partition, &decided) in &stored.offsets {
            let end = ends.get(&partition).copied().unwrap_or(0);
            if decided > end {
                return Err(Error::AheadOfLog {
                    partition,
                    decided,
                    end,
                });
            }
        }
        let total: u64 = stored.offsets.values().sum();
        let mut replayed = 0;
        for (&partition, &decided) in &stored.offsets {
            self.replay_partition(partition, decided, |n| {
                replayed += n;
                (input.on_progress)(replayed, total);
            })
            .await?;
        }
        let offsets = stored.offsets.clone();
        let mut found = Differences::new(input.max_listed);
        let compared = compare::compare(&self.replay.take(), stored, &mut found);
        Ok(Output {
            offsets,
            records: replayed,
            compared,
            differences: found.listed,
            difference_count: found.count,
        })
    }

    /// Decides `partition` from its first record up to `until`, batch by batch as the
    /// log hands them out.
    async fn replay_partition(
        &self,
        partition: u32,
        until: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), Error> {
        let mut at = 0;
        while at < until {
            let chunk = self.log.read(partition, at, until).await?;
            let read_end = chunk.read_end.min(until);
            if read_end <= at {
                return Err(Error::Stalled {
                    partition,
                    offset: at,
                });
            }
            let batch = Batch {
                partition,
                resume_at: at,
                records: chunk
                    .records
                    .into_iter()
                    .filter(|r| r.position.offset < until)
                    .collect(),
                read_end,
            };
            let output = self.decide.execute(batch).await?;
            progress(output.resume_at - at);
            at = output.resume_at;
        }
        Ok(())
    }
}
