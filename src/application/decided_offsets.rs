//! How far each log partition is decided, as this node knows it, and the long-polls
//! waiting for a partition to get past their ticket.
//!
//! The issuing worker publishes here (embedded: in process after each commit;
//! distributed: the producer's PostgreSQL listener, from the consumers' NOTIFY). A
//! ticket at or past a partition's decided offset is PENDING by arithmetic alone: no
//! database read. What this node knows may lag what is committed (a notice in flight),
//! never run ahead of it, so a PENDING answered from here is at worst a moment stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::domain::LogPosition;

/// Suggested pauses between short polls stay within these bounds.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(20);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// The suggestion when the partition's pace is unknown (nothing decided lately), or
/// the ticket cannot be placed.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(500);
/// A pace measured longer ago than this says nothing about the next records.
const PACE_MEMORY: Duration = Duration::from_secs(2);

/// What this node can say about a ticket without reading the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing published for the partition yet (just started, or never decided).
    Unknown,
    /// The partition is decided past the ticket: its result is in the store.
    Decided,
    /// Undecided: `ahead` records of the partition come before it.
    Pending { ahead: u64, retry_after: Duration },
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Decided; `learned` is when this node learned it (the publish that woke it).
    Decided {
        learned: Instant,
    },
    TimedOut,
    /// The node is shutting down: every waiter is answered now.
    Closing,
}

#[derive(Clone, Default)]
pub struct DecidedOffsets {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    partitions: Mutex<HashMap<u32, Partition>>,
    closing: CancellationToken,
    next_waiter: AtomicU64,
    /// Every partition that has decided anything was published at least once.
    all_published: AtomicBool,
}

#[derive(Default)]
struct Partition {
    /// The first undecided offset, once known.
    next: Option<u64>,
    /// Records decided per second, smoothed, and when it was last measured.
    pace: Option<(f64, Instant)>,
    /// Waiting long-polls by (offset, waiter number); each is sent the publish instant.
    waiters: BTreeMap<(u64, u64), oneshot::Sender<Instant>>,
}

impl Partition {
    /// Moves to `next` (never back) and returns the waiters it decided.
    fn advance(&mut self, next: u64, now: Instant) -> Vec<oneshot::Sender<Instant>> {
        let previous = self.next.unwrap_or(next);
        if self.next.is_some_and(|known| known >= next) {
            return Vec::new();
        }
        self.next = Some(next);
        self.measure_pace(next - previous, now);
        let undecided = self.waiters.split_off(&(next, 0));
        std::mem::replace(&mut self.waiters, undecided)
            .into_values()
            .collect()
    }

    fn measure_pace(&mut self, decided: u64, now: Instant) {
        let Some((rate, at)) = self.pace else {
            self.pace = Some((0.0, now));
            return;
        };
        let elapsed = now.duration_since(at).as_secs_f64().max(1e-3);
        let sample = decided as f64 / elapsed;
        // A stale pace is forgotten rather than averaged in.
        let rate = if now.duration_since(at) > PACE_MEMORY || rate == 0.0 {
            sample
        } else {
            0.7 * rate + 0.3 * sample
        };
        self.pace = Some((rate, now));
    }

    fn retry_after(&self, ahead: u64, now: Instant) -> Duration {
        match self.pace {
            Some((rate, at)) if rate > 0.0 && now.duration_since(at) <= PACE_MEMORY => {
                Duration::from_secs_f64((ahead + 1) as f64 / rate)
                    .clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
            }
            _ => DEFAULT_RETRY_AFTER,
        }
    }
}

impl DecidedOffsets {
    fn partitions(&self) -> MutexGuard<'_, HashMap<u32, Partition>> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.shared
            .partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `partition` is decided up to `next` (exclusive); wakes the waiters it decided.
    pub fn publish(&self, partition: u32, next: u64) {
        let now = Instant::now();
        let woken = self
            .partitions()
            .entry(partition)
            .or_default()
            .advance(next, now);
        for waiter in woken {
            let _ = waiter.send(now);
        }
    }

    /// The first undecided offset of `partition`, if known.
    pub fn next_offset(&self, partition: u32) -> Option<u64> {
        self.partitions().get(&partition).and_then(|p| p.next)
    }

    /// Says that every partition that has decided anything has now been published
    /// (the publisher read them all): one not heard of has decided nothing, so its
    /// tickets are PENDING from offset 0 rather than unknown.
    pub fn all_partitions_published(&self) {
        self.shared.all_published.store(true, Ordering::Relaxed);
    }

    pub fn progress(&self, at: LogPosition) -> Progress {
        let partitions = self.partitions();
        let partition = partitions.get(&at.partition);
        let nothing_decided = || {
            self.shared
                .all_published
                .load(Ordering::Relaxed)
                .then_some(0)
        };
        match partition.and_then(|p| p.next).or_else(nothing_decided) {
            None => Progress::Unknown,
            Some(next) if at.offset < next => Progress::Decided,
            Some(next) => {
                let ahead = at.offset - next;
                let retry_after = partition.map_or(DEFAULT_RETRY_AFTER, |p| {
                    p.retry_after(ahead, Instant::now())
                });
                Progress::Pending { ahead, retry_after }
            }
        }
    }

    /// Waits until the partition is decided past `at`, `until` passes, or the node
    /// begins to shut down.
    pub async fn wait(&self, at: LogPosition, until: Instant) -> WaitEnd {
        let key = (
            at.offset,
            self.shared.next_waiter.fetch_add(1, Ordering::Relaxed),
        );
        let (decided, woken) = oneshot::channel();
        {
            let mut partitions = self.partitions();
            let partition = partitions.entry(at.partition).or_default();
            if partition.next.is_some_and(|next| at.offset < next) {
                return WaitEnd::Decided {
                    learned: Instant::now(),
                };
            }
            partition.waiters.insert(key, decided);
        }
        let registered = Registered {
            offsets: self,
            partition: at.partition,
            key,
        };
        let end = tokio::select! {
            learned = woken => match learned {
                Ok(learned) => WaitEnd::Decided { learned },
                // Unreachable while registered (only `publish` removes a sender and it
                // sends first); treat as decided: the caller reads the store.
                Err(_) => WaitEnd::Decided { learned: Instant::now() },
            },
            () = tokio::time::sleep_until(until.into()) => WaitEnd::TimedOut,
            () = self.shared.closing.cancelled() => WaitEnd::Closing,
        };
        drop(registered);
        end
    }

    /// Answers every waiter now and makes later waits return at once (shutdown).
    pub fn close(&self) {
        self.shared.closing.cancel();
    }

    /// Long-polls waiting right now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.partitions().values().map(|p| p.waiters.len()).sum()
    }
}

/// A waiter's entry, removed when its wait ends however it ends (a dropped request).
struct Registered<'a> {
    offsets: &'a DecidedOffsets,
    partition: u32,
    key: (u64, u64),
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(partition) = self.offsets.partitions().get_mut(&self.partition) {
            partition.waiters.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> LogPosition {
        LogPosition {
            partition: 0,
            offset,
        }
    }

    #[test]
    fn a_ticket_past_the_decided_offset_is_pending_with_what_is_ahead() {
        let offsets = DecidedOffsets::default();
        assert_eq!(offsets.progress(at(5)), Progress::Unknown);
        offsets.publish(0, 3);
        assert!(matches!(
            offsets.progress(at(5)),
            Progress::Pending { ahead: 2, .. }
        ));
        assert_eq!(offsets.progress(at(2)), Progress::Decided);
        // Never moves back (a late notice).
        offsets.publish(0, 1);
        assert_eq!(offsets.next_offset(0), Some(3));
    }

    #[test]
    fn once_all_are_published_a_partition_not_heard_of_has_decided_nothing() {
        let offsets = DecidedOffsets::default();
        offsets.publish(1, 7);
        assert_eq!(offsets.progress(at(5)), Progress::Unknown);
        offsets.all_partitions_published();
        assert_eq!(
            offsets.progress(at(5)),
            Progress::Pending {
                ahead: 5,
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
    }

    #[test]
    fn the_suggested_pause_follows_the_pace() {
        let mut partition = Partition::default();
        let start = Instant::now();
        partition.advance(0, start);
        partition.advance(1_000, start + Duration::from_millis(100));
        // 10,000 records/s: 5,000 ahead is half a second.
        let pause = partition.retry_after(4_999, start + Duration::from_millis(100));
        assert_eq!(pause, Duration::from_millis(500));
        assert_eq!(
            partition.retry_after(0, start + Duration::from_millis(100)),
            MIN_RETRY_AFTER
        );
        assert_eq!(
            partition.retry_after(0, start + Duration::from_secs(10)),
            DEFAULT_RETRY_AFTER
        );
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_its_offset_is_decided_and_not_before() {
        let offsets = DecidedOffsets::default();
        offsets.publish(0, 0);
        let waiting = {
            let offsets = offsets.clone();
            tokio::spawn(async move {
                offsets
                    .wait(at(10), Instant::now() + Duration::from_secs(30))
                    .await
            })
        };
        while offsets.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        offsets.publish(0, 10);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "offset 10 is not decided at 10");
        offsets.publish(0, 11);
        assert!(matches!(
            waiting.await.expect("joined"),
            WaitEnd::Decided { .. }
        ));
        assert_eq!(offsets.waiting(), 0);
    }

    #[tokio::test]
    async fn waits_end_at_their_deadline_or_at_close_and_leave_nothing_behind() {
        let offsets = DecidedOffsets::default();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(offsets.wait(at(1), soon).await, WaitEnd::TimedOut);
        assert_eq!(offsets.waiting(), 0);
        offsets.close();
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(offsets.wait(at(1), later).await, WaitEnd::Closing);
        assert_eq!(offsets.waiting(), 0);
    }
}
