//! What the latest appends said, for the health check. A cluster that lost its
//! controller quorum, or the replicas a partition needs, still answers metadata requests
//! from its last known state: only the appends themselves show that records are not
//! being written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Times of the latest written and failed append, in milliseconds since `started`
/// plus one (0: none yet).
#[derive(Debug)]
pub struct RecentAppends {
    started: Instant,
    last_written: AtomicU64,
    last_failed: AtomicU64,
}

impl Default for RecentAppends {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_written: AtomicU64::new(0),
            last_failed: AtomicU64::new(0),
        }
    }
}

impl RecentAppends {
    pub fn written(&self) {
        self.last_written.fetch_max(self.now(), Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.last_failed.fetch_max(self.now(), Ordering::Relaxed);
    }

    /// Whether the latest append failed less than `memory` ago and none was written
    /// since. After `memory` without news the log is given the benefit of the doubt, so
    /// that a node taken out of service for it gets traffic again to find out.
    pub fn failing(&self, memory: Duration) -> bool {
        let failed = self.last_failed.load(Ordering::Relaxed);
        let written = self.last_written.load(Ordering::Relaxed);
        let memory = u64::try_from(memory.as_millis()).unwrap_or(u64::MAX);
        failed > written && self.now().saturating_sub(failed) < memory
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMORY: Duration = Duration::from_secs(10);

    #[test]
    fn a_failure_counts_until_an_append_is_written() {
        let recent = RecentAppends::default();
        assert!(!recent.failing(MEMORY), "no news is good news");
        recent.failed();
        assert!(recent.failing(MEMORY));
        std::thread::sleep(Duration::from_millis(2));
        recent.written();
        assert!(!recent.failing(MEMORY));
    }

    #[test]
    fn a_failure_is_forgotten_after_the_memory() {
        let recent = RecentAppends::default();
        recent.failed();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!recent.failing(Duration::from_millis(2)));
    }
}
