//! A commit fault injector: an `IssuanceStore` wrapped around a real one that, batch by
//! batch, follows a plan of faults. A commit can fail before it reaches the database,
//! reach it and then report an error (the caller cannot know it committed), or hang past
//! the caller's deadline and then commit or roll back in the background while the caller
//! already retries. Only the ports are involved, so the real store and the real use case
//! run unchanged underneath.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coupon::domain::ports::{BatchChanges, Holding, IssuanceBatch, IssuanceStore, StoreError};
use coupon::domain::{Campaign, CampaignId, CouponCode, UserId};

/// How long a caller waits for a commit before it gives up on it.
pub const COMMIT_DEADLINE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// This batch commits normally.
    None,
    /// `begin` fails: the database did not answer.
    BeginUnavailable,
    /// The commit never reaches the database; the caller gets an error.
    FailBeforeCommit,
    /// The database commits; the caller gets an error instead of the answer.
    FailAfterCommit,
    /// The commit stalls for `late_ms` (past `COMMIT_DEADLINE`): the caller gets a timeout,
    /// and afterwards the database commits (`commits`) or rolls the batch back.
    Hang { commits: bool, late_ms: u16 },
}

impl Fault {
    pub fn kind(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::BeginUnavailable => "begin unavailable",
            Fault::FailBeforeCommit => "fail before commit",
            Fault::FailAfterCommit => "fail after commit",
            Fault::Hang { commits: true, .. } => "hang, then commit",
            Fault::Hang { commits: false, .. } => "hang, then roll back",
        }
    }
}

/// The faults of the next batches, in order; once it runs out every batch commits.
#[derive(Default)]
pub struct FaultPlan {
    next: Mutex<VecDeque<Fault>>,
    injected: Mutex<HashMap<&'static str, usize>>,
}

impl FaultPlan {
    pub fn new(faults: impl IntoIterator<Item = Fault>) -> Arc<Self> {
        Arc::new(Self {
            next: Mutex::new(faults.into_iter().collect()),
            injected: Mutex::default(),
        })
    }

    /// How many faults of each kind were injected so far.
    pub fn injected(&self) -> HashMap<&'static str, usize> {
        lock(&self.injected).clone()
    }

    fn draw(&self) -> Fault {
        let fault = lock(&self.next).pop_front().unwrap_or(Fault::None);
        if fault != Fault::None {
            *lock(&self.injected).entry(fault.kind()).or_default() += 1;
        }
        fault
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<FaultPlan>,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

pub struct FaultyBatch<B> {
    inner: B,
    fault: Fault,
}

fn unavailable(what: &str) -> StoreError {
    StoreError::Unavailable(format!("injected fault: {what}"))
}

impl<S> IssuanceStore for FaultyStore<S>
where
    S: IssuanceStore,
    S::Batch: 'static,
{
    type Batch = FaultyBatch<S::Batch>;

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        self.inner.next_offset(partition).await
    }

    async fn begin(
        &self,
        partition: u32,
        expected: u64,
        next: u64,
    ) -> Result<Self::Batch, StoreError> {
        let fault = self.plan.draw();
        if fault == Fault::BeginUnavailable {
            return Err(unavailable("the database did not answer BEGIN"));
        }
        let inner = self.inner.begin(partition, expected, next).await?;
        Ok(FaultyBatch { inner, fault })
    }
}

impl<B: IssuanceBatch + 'static> IssuanceBatch for FaultyBatch<B> {
    async fn load_campaigns(&mut self, ids: &[CampaignId]) -> Result<Vec<Campaign>, StoreError> {
        self.inner.load_campaigns(ids).await
    }

    async fn load_holders(
        &mut self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
        self.inner.load_holders(campaign, users).await
    }

    async fn load_coupons_from(
        &mut self,
        campaign: CampaignId,
        from: u64,
    ) -> Result<Vec<Holding>, StoreError> {
        self.inner.load_coupons_from(campaign, from).await
    }

    async fn commit(self, changes: BatchChanges) -> Result<(), StoreError> {
        match self.fault {
            Fault::None | Fault::BeginUnavailable => self.inner.commit(changes).await,
            // Dropping the transaction rolls it back, as a lost connection would.
            Fault::FailBeforeCommit => Err(unavailable("connection lost before COMMIT")),
            Fault::FailAfterCommit => {
                self.inner.commit(changes).await?;
                Err(unavailable("connection lost after COMMIT; outcome unknown"))
            }
            Fault::Hang { commits, late_ms } => {
                let inner = self.inner;
                // The database goes on with the transaction whether or not anyone waits.
                let late = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(u64::from(late_ms))).await;
                    if commits {
                        inner.commit(changes).await
                    } else {
                        drop(inner);
                        Err(unavailable("rolled back after the deadline"))
                    }
                });
                match tokio::time::timeout(COMMIT_DEADLINE, late).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(join)) => Err(unavailable(&format!("commit task failed: {join}"))),
                    Err(_) => Err(unavailable("COMMIT timed out; outcome unknown")),
                }
            }
        }
    }
}
