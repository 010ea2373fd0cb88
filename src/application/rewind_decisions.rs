//! Requirement: an operator makes the workers decide part of the log again.
//!
//! Rewinding moves a partition's stored decided offset back, through the same
//! compare-and-set the workers commit with, so a worker deciding the partition
//! meanwhile is fenced and resumes from the new offset. Nothing else is touched: the
//! records from there are decided again, and since every decision of them is already
//! stored (tickets keep their first decision, holders and counts make a repeated request
//! change nothing), a replay changes no stored row. It never moves an offset forward:
//! that would skip records nobody decided.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::ports::BatchChanges;
use crate::domain::ports::{IssuanceBatch, IssuanceStore, LogError, LogReplay, StoreError};

/// Where to rewind to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The first record.
    Earliest,
    /// This offset of each named partition.
    Offset(u64),
    /// The first record appended at or after this instant (the log's clock).
    Time(DateTime<Utc>),
}

pub struct Input {
    pub to: Target,
    /// The partitions to rewind; empty means every partition of the log.
    pub partitions: Vec<u32>,
}

/// One partition's offset as it was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub partition: u32,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug)]
pub struct Output {
    /// In partition order; `from == to` where there was nothing to move.
    pub moved: Vec<Moved>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("the log has no partition {partition} (it has {count})")]
    NoSuchPartition { partition: u32, count: usize },
    /// Refused before anything moved.
    #[error(
        "partition {partition} is decided up to offset {decided}; rewinding to {target} \
         would move it forward and skip undecided records: nothing was moved"
    )]
    Forward {
        partition: u32,
        decided: u64,
        target: u64,
    },
}

pub struct RewindDecisions<S, L> {
    store: S,
    log: L,
}

impl<S: IssuanceStore, L: LogReplay> RewindDecisions<S, L> {
    pub fn new(store: S, log: L) -> Self {
        Self { store, log }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let plan = self.plan(&input).await?;
        let mut moved = Vec::with_capacity(plan.len());
        for (partition, target) in plan {
            moved.push(self.rewind(partition, target).await?);
        }
        Ok(Output { moved })
    }

    /// Each partition's target, checked against its decided offset before any moves.
    async fn plan(&self, input: &Input) -> Result<BTreeMap<u32, u64>, Error> {
        let ends = self.log.partition_ends().await?;
        let partitions: Vec<u32> = if input.partitions.is_empty() {
            ends.keys().copied().collect()
        } else {
            input.partitions.clone()
        };
        let mut plan = BTreeMap::new();
        for partition in partitions {
            if !ends.contains_key(&partition) {
                return Err(Error::NoSuchPartition {
                    partition,
                    count: ends.len(),
                });
            }
            let target = match input.to {
                Target::Earliest => 0,
                Target::Offset(offset) => offset,
                Target::Time(at) => self.log.offset_at(partition, at).await?,
            };
            let decided = self.store.next_offset(partition).await?;
            if target > decided {
                return Err(Error::Forward {
                    partition,
                    decided,
                    target,
                });
            }
            plan.insert(partition, target);
        }
        Ok(plan)
    }

    /// Moves one partition back to `target`, retrying when a worker commits in between.
    async fn rewind(&self, partition: u32, target: u64) -> Result<Moved, Error> {
        loop {
            let decided = self.store.next_offset(partition).await?;
            if target >= decided {
                // Nothing to move back (a worker cannot have moved it below the target).
                return Ok(Moved {
                    partition,
                    from: decided,
                    to: decided,
                });
            }
            match self.store.begin(partition, decided, target).await {
                Ok(batch) => {
                    batch.commit(BatchChanges::default()).await?;
                    tracing::info!(
                        partition,
                        from = decided,
                        to = target,
                        "decided offset rewound"
                    );
                    return Ok(Moved {
                        partition,
                        from: decided,
                        to: target,
                    });
                }
                Err(StoreError::Fenced { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}
