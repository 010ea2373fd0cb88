//! Latency histograms (HDR, microseconds) and counters shared by the load tasks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        // 1 µs .. 5 min at 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, 300_000_000, 3)
            .unwrap_or_else(|_| unreachable!("valid bounds"));
        Self(Mutex::new(histogram))
    }
}

/// Percentiles in milliseconds, as the JSON report shows them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(micros);
    }

    pub fn percentiles(&self) -> Percentiles {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One point of a latency distribution: `quantile` of the samples took at most `ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantilePoint {
    pub quantile: f64,
    pub ms: f64,
}

/// A latency distribution as an HDR percentile curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub samples: u64,
    /// Rising quantiles, the last one 1 (the maximum); empty without samples.
    pub points: Vec<QuantilePoint>,
}

impl Latency {
    /// The histogram's quantiles, `ticks` of them per halving of the distance to 100 %
    /// (so as many between 99 % and 99.5 % as between 0 % and 50 %), up to the maximum.
    pub fn curve(&self, ticks: u32) -> Curve {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let points = h
            .iter_quantiles(ticks.max(1))
            .map(|step| QuantilePoint {
                quantile: step.quantile_iterated_to(),
                ms: step.value_iterated_to() as f64 / 1000.0,
            })
            .collect();
        Curve {
            samples: h.len(),
            points,
        }
    }
}

/// Counts by label (e.g. refusals by Connect code and reason).
#[derive(Default)]
pub struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    pub fn add(&self, label: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}
