//! The Prometheus exporter: one process-wide recorder behind the `metrics` facade, and
//! the `GET /metrics` route that renders it in the text format.
//!
//! Metric names (all prefixed `coupon_`) are listed in the README.

use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 100 µs to 10 s, finer where the latency targets are
/// (20, 50 and 100 ms).
const LATENCY_BUCKETS: [f64; 22] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.025, 0.035,
    0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Records per decided batch.
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
/// Histogram samples are buffered until upkeep folds them into buckets: run it often
/// enough that the buffer stays small whether or not anyone scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(2);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (later calls reuse it). `None` when another
/// recorder was installed first; the metrics route then says so.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_records".into()), &BATCH_BUCKETS)
                });
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => handle,
                Ok(Err(error)) | Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    return None;
                }
            };
            let upkeep = handle.clone();
            // A plain thread: it must outlive whichever tokio runtime called first.
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start metrics upkeep; histograms grow until scraped");
            }
            Some(handle)
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub fn router() -> axum::Router {
    let handle = install();
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = handle.as_ref().map_or_else(
                || "# metrics recorder not installed\n".to_owned(),
                |h| h.render(),
            );
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    body,
                )
            }
        }),
    )
}
