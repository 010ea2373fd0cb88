//! Backlog progress while a worker drains a partition: after each commit the gauges
//! `coupon_log_end_offset` and `coupon_decision_lag_records` and, every few seconds
//! while records wait, a log line with where the partition stands and how fast it moves.
//! The log's end is asked for only every few seconds (on Kafka it is a round trip to the
//! leader); in between, the lag is counted against the end last asked.

use std::time::{Duration, Instant};

use chrono::TimeDelta;

/// How often a busy partition says where it stands.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// One partition's progress as its worker last reported it.
pub struct BacklogProgress {
    partition: u32,
    reported_at: Instant,
    decided_then: Option<u64>,
    /// The log's end as last asked; the gauges follow each commit against it, so they
    /// reach zero lag as soon as the worker catches up with it.
    log_end: Option<u64>,
}

/// What a report says: the partition is `behind` records behind the log's end and
/// decides `per_second` records a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub behind: u64,
    pub per_second: f64,
}

impl BacklogProgress {
    pub fn new(partition: u32) -> Self {
        Self {
            partition,
            reported_at: Instant::now(),
            decided_then: None,
            log_end: None,
        }
    }

    /// After a commit up to `decided` (the next undecided offset), with the age of the
    /// last decided request; `log_end` is called only when a report is due.
    pub fn committed(
        &mut self,
        decided: u64,
        log_end: impl FnOnce() -> Option<u64>,
        lag: Option<TimeDelta>,
    ) {
        let now = Instant::now();
        let due =
            self.decided_then.is_none() || now.duration_since(self.reported_at) >= REPORT_EVERY;
        if due {
            self.log_end = log_end().or(self.log_end);
        }
        let Some(known_end) = self.log_end else {
            return;
        };
        let log_end = known_end.max(decided);
        self.export(decided, log_end);
        if let Some(report) = due.then(|| self.report(decided, log_end, now)).flatten() {
            self.log(decided, log_end, report, lag);
        }
    }

    fn export(&self, decided: u64, log_end: u64) {
        let partition = self.partition.to_string();
        metrics::gauge!("coupon_log_end_offset", "partition" => partition.clone())
            .set(log_end as f64);
        metrics::gauge!("coupon_decision_lag_records", "partition" => partition)
            .set(log_end.saturating_sub(decided) as f64);
    }

    fn log(&self, decided: u64, log_end: u64, report: Report, lag: Option<TimeDelta>) {
        let lag_seconds = lag.map_or(0.0, |lag| lag.as_seconds_f64().max(0.0));
        let eta_seconds = report.behind as f64 / report.per_second.max(1.0);
        tracing::info!(
            partition = self.partition,
            decided,
            log_end,
            lag_records = report.behind,
            lag_seconds = (lag_seconds * 10.0).round() / 10.0,
            records_per_second = report.per_second.round(),
            eta_seconds = eta_seconds.round(),
            "draining a backlog"
        );
    }

    /// A report when one is due (every `REPORT_EVERY`) and records wait.
    fn report(&mut self, decided: u64, log_end: u64, now: Instant) -> Option<Report> {
        let elapsed = now.duration_since(self.reported_at);
        let Some(decided_then) = self.decided_then else {
            self.decided_then = Some(decided);
            self.reported_at = now;
            return None;
        };
        if elapsed < REPORT_EVERY {
            return None;
        }
        self.reported_at = now;
        self.decided_then = Some(decided);
        let behind = log_end.saturating_sub(decided);
        (behind > 0).then(|| Report {
            behind,
            per_second: decided.saturating_sub(decided_then) as f64 / elapsed.as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_partition_reports_every_few_seconds_with_its_pace() {
        let mut progress = BacklogProgress::new(0);
        let start = Instant::now();
        assert_eq!(
            progress.report(100, 10_000, start),
            None,
            "the first commit sets the pace's origin"
        );
        assert_eq!(
            progress.report(1_000, 10_000, start + Duration::from_secs(1)),
            None,
            "not yet due"
        );
        let due = start + REPORT_EVERY;
        assert_eq!(
            progress.report(5_100, 10_000, due),
            Some(Report {
                behind: 4_900,
                per_second: 1_000.0
            })
        );
        // Caught up: nothing to say, even when due.
        assert_eq!(progress.report(10_000, 10_000, due + REPORT_EVERY), None);
    }
}
