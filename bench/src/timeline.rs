//! What a load phase answered, second by second: accepted requests and refusals by
//! label, in buckets of one whole second since the phase started. Kept for the charts of
//! a run (`--svg`) and the report's `accepted_per_second`.
//!
//! One short lock per answer (the phase's latency histogram takes one too): at tens of
//! thousands of answers a second that is noise next to the HTTP work.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The answers of one second of a phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Second {
    pub accepted: u64,
    /// Refusals by label (`code` or `code/REASON`, as in the report's `refused`).
    pub refused: BTreeMap<String, u64>,
}

impl Second {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Per-second buckets, index = whole seconds since the phase started.
#[derive(Debug, Default)]
pub struct Timeline(Mutex<Vec<Second>>);

impl Timeline {
    /// An accepted request answered `at` after the phase started.
    pub fn accepted(&self, at: Duration) {
        self.with_second(at, |second| second.accepted += 1);
    }

    /// A refusal labelled `label`, answered `at` after the phase started.
    pub fn refused(&self, at: Duration, label: &str) {
        self.with_second(at, |second| match second.refused.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                second.refused.insert(label.to_owned(), 1);
            }
        });
    }

    /// Every second from the phase's start to its last answer (quiet seconds included).
    pub fn seconds(&self) -> Vec<Second> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn with_second(&self, at: Duration, update: impl FnOnce(&mut Second)) {
        let index = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        let mut seconds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if index >= seconds.len() {
            // A run of days would be a bench misuse; an absurd instant is not worth memory.
            if index > MAX_SECONDS {
                return;
            }
            seconds.resize_with(index + 1, Second::default);
        }
        update(&mut seconds[index]);
    }
}

/// Longest phase the timeline follows: one week.
const MAX_SECONDS: usize = 7 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn answers_fall_in_the_whole_second_since_the_start() {
        let timeline = Timeline::default();
        timeline.accepted(ms(0));
        timeline.accepted(ms(999));
        timeline.accepted(ms(1_000));
        timeline.refused(ms(1_500), "resource_exhausted/SOLD_OUT");
        timeline.refused(ms(1_999), "resource_exhausted/SOLD_OUT");
        timeline.refused(ms(1_999), "transport/timeout");
        // Nothing in second 2; second 3 has one acceptance.
        timeline.accepted(ms(3_001));

        let seconds = timeline.seconds();
        assert_eq!(seconds.len(), 4);
        assert_eq!(seconds[0].accepted, 2);
        assert!(seconds[0].refused.is_empty());
        assert_eq!(seconds[1].accepted, 1);
        assert_eq!(seconds[1].refused["resource_exhausted/SOLD_OUT"], 2);
        assert_eq!(seconds[1].refused["transport/timeout"], 1);
        assert_eq!(seconds[1].refused_total(), 3);
        assert_eq!(seconds[2], Second::default());
        assert_eq!(seconds[3].accepted, 1);
    }

    #[test]
    fn an_empty_phase_has_no_seconds_and_an_absurd_instant_is_dropped() {
        let timeline = Timeline::default();
        assert!(timeline.seconds().is_empty());
        timeline.accepted(Duration::from_secs(u64::MAX));
        assert!(timeline.seconds().is_empty());
    }
}
