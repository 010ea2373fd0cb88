//! librdkafka's own latency windows, on `/metrics`: where an append's time goes between
//! our `send` and the broker's acknowledgement. Every `statistics.interval.ms`
//! librdkafka reports, per broker, the last interval's `queue` (waiting in the
//! producer's queue for a batch to go out), `outbuf` (a request waiting to be written
//! to the socket) and `rtt` (a request sent until its response: the broker's handling,
//! replication included, plus the network).

use rdkafka::ClientContext;
use rdkafka::statistics::{Statistics, Window};

/// How often librdkafka reports; each report covers this interval.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

/// A client context that exports each report as
/// `coupon_kafka_latency_seconds{broker, stage, quantile}` gauges.
pub struct ExportStatistics;

impl ClientContext for ExportStatistics {
    fn stats(&self, statistics: Statistics) {
        // Bootstrap entries (node id -1) carry no produce traffic.
        for broker in statistics.brokers.values().filter(|b| b.nodeid >= 0) {
            let node = broker.nodeid.to_string();
            let stages = [
                ("queue", &broker.int_latency),
                ("outbuf", &broker.outbuf_latency),
                ("rtt", &broker.rtt),
            ];
            for (stage, window) in stages {
                if let Some(window) = window.as_ref().filter(|w| w.cnt > 0) {
                    export(&node, stage, window);
                }
            }
        }
    }
}

fn export(node: &str, stage: &'static str, window: &Window) {
    for (quantile, micros) in [("0.5", window.p50), ("0.99", window.p99), ("1", window.max)] {
        metrics::gauge!("coupon_kafka_latency_seconds",
            "broker" => node.to_owned(), "stage" => stage, "quantile" => quantile)
        .set(micros as f64 / 1e6);
    }
    tracing::debug!(
        broker = node,
        stage,
        count = window.cnt,
        p50_us = window.p50,
        p99_us = window.p99,
        max_us = window.max,
        "librdkafka latency window"
    );
}
