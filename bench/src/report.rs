//! The figures of a run: a table for people, JSON (`--json`) for scripts. Key names
//! are a stable interface.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::charts::RunSeries;
use crate::load::{Mode, Phase};
use crate::run::Options;
use crate::stats::{Latency, Percentiles};
use crate::verify::Verdict;

/// Points of the latency charts per halving of the distance to 100 %.
const CURVE_TICKS: u32 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub targets: Vec<String>,
    pub http2: bool,
    pub connections: usize,
    pub rate: Option<u64>,
    pub duration_s: f64,
    pub coupons: u64,
    pub users: u64,
    pub repeat_ratio: f64,
    pub start_in_s: f64,
    pub health_per_s: f64,
    pub health_latency_ms: Percentiles,
    pub requests_sent: u64,
    pub accepted: u64,
    pub accepted_per_s: f64,
    pub ratio_to_health: f64,
    pub refused: BTreeMap<String, u64>,
    pub skipped_client_side: u64,
    /// Accepted IssueCoupon in each whole second since the issue phase started (the last
    /// one partial).
    pub accepted_per_second: Vec<u64>,
    pub accept_latency_ms: Percentiles,
    pub final_latency_ms: Percentiles,
    pub get_result_latency_ms: Percentiles,
    pub get_campaign_latency_ms: Percentiles,
    /// The first GetCampaign after the drop (its first page), which the others follow.
    pub get_campaign_first_ms: f64,
    pub resolved_after_last_request_ms: f64,
    pub issued: u64,
    pub expected_issued: u64,
    pub violations: Vec<String>,
    /// What the charts (`--svg`) are drawn from; not in the JSON.
    #[serde(skip)]
    pub charts: RunSeries,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        options: &Options,
        health: &Phase,
        issue: &Phase,
        final_latency: &Latency,
        get_result: &Latency,
        get_campaign: &Latency,
        get_campaign_first: &Latency,
        resolved_after: Duration,
        verdict: Verdict,
    ) -> Self {
        let health_per_s = health.ok_per_s();
        let accepted_per_s = issue.ok_per_s();
        let seconds = issue.timeline.seconds();
        let mut report = Self {
            mode: options.shape.mode,
            targets: options.targets.clone(),
            http2: options.http2,
            connections: options.shape.connections,
            rate: (options.shape.mode == Mode::Open).then_some(options.shape.rate),
            duration_s: issue
                .elapsed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_secs_f64(),
            coupons: options.coupons,
            users: options.users,
            repeat_ratio: options.repeat_ratio,
            start_in_s: options.start_in.as_secs_f64(),
            health_per_s,
            health_latency_ms: health.latency.percentiles(),
            requests_sent: issue.sent.load(Ordering::Relaxed),
            accepted: issue.ok.load(Ordering::Relaxed),
            accepted_per_s,
            ratio_to_health: if health_per_s > 0.0 {
                accepted_per_s / health_per_s
            } else {
                0.0
            },
            refused: issue.refused.snapshot(),
            skipped_client_side: issue.skipped.load(Ordering::Relaxed),
            accepted_per_second: seconds.iter().map(|s| s.accepted).collect(),
            accept_latency_ms: issue.latency.percentiles(),
            final_latency_ms: final_latency.percentiles(),
            get_result_latency_ms: get_result.percentiles(),
            get_campaign_latency_ms: get_campaign.percentiles(),
            get_campaign_first_ms: get_campaign_first.percentiles().max,
            resolved_after_last_request_ms: resolved_after.as_secs_f64() * 1000.0,
            issued: verdict.issued,
            expected_issued: verdict.expected_issued,
            violations: verdict.violations,
            charts: RunSeries::default(),
        };
        report.charts = RunSeries {
            subtitle: report.run_line(),
            elapsed_s: report.duration_s,
            seconds,
            accept_latency: issue.latency.curve(CURVE_TICKS),
            final_latency: final_latency.curve(CURVE_TICKS),
        };
        report
    }

    /// The run in one line: loop, connections, protocol, duration, campaign, users.
    fn run_line(&self) -> String {
        format!(
            "{:?} loop{}, {} connection(s){}, {:.1} s, {} coupons, {} users, repeat ratio {}",
            self.mode,
            self.rate.map(|r| format!(" at {r}/s")).unwrap_or_default(),
            self.connections,
            if self.http2 { " (h2c)" } else { " (HTTP/1.1)" },
            self.duration_s,
            self.coupons,
            self.users,
            self.repeat_ratio
        )
    }

    pub fn table(&self) -> String {
        let row = |name: &str, p: &Percentiles| {
            format!(
                "{name:<22} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                p.count, p.p50, p.p99, p.p999, p.max
            )
        };
        let mut out = String::new();
        out.push_str(&format!("coupon-bench: {}\n", self.run_line()));
        out.push_str(&format!("  targets: {}\n\n", self.targets.join(", ")));
        out.push_str(&format!(
            "{:<22} {:>12}\n",
            "health checks/s",
            format!("{:.0}", self.health_per_s)
        ));
        out.push_str(&format!(
            "{:<22} {:>12}   (ratio to health {:.2})\n",
            "accepted IssueCoupon/s",
            format!("{:.0}", self.accepted_per_s),
            self.ratio_to_health
        ));
        out.push_str(&format!(
            "{:<22} {:>12}   accepted {}, refused {}, not sent {}\n",
            "requests",
            self.requests_sent,
            self.accepted,
            self.refused.values().sum::<u64>(),
            self.skipped_client_side
        ));
        for (label, n) in &self.refused {
            out.push_str(&format!("  refused {label}: {n}\n"));
        }
        out.push_str(&format!(
            "\n{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "latency (ms)", "count", "p50", "p99", "p99.9", "max"
        ));
        out.push_str(&row("health check", &self.health_latency_ms));
        out.push_str(&row("IssueCoupon accept", &self.accept_latency_ms));
        out.push_str(&row("ticket to final", &self.final_latency_ms));
        out.push_str(&row("GetIssueResult", &self.get_result_latency_ms));
        out.push_str(&row("GetCampaign page", &self.get_campaign_latency_ms));
        out.push_str(&format!(
            "{:<22} {:>9.2} (the first page read after the drop)\n",
            "GetCampaign first", self.get_campaign_first_ms
        ));
        out.push_str(&format!(
            "\nlast tickets final {:.0} ms after the last request\n",
            self.resolved_after_last_request_ms
        ));
        out.push_str(&format!(
            "issued {} (expected {})\n",
            self.issued, self.expected_issued
        ));
        if self.violations.is_empty() {
            out.push_str("invariants: all hold (DESIGN §5)\n");
        } else {
            out.push_str(&format!(
                "INVARIANTS VIOLATED ({}):\n",
                self.violations.len()
            ));
            for v in self.violations.iter().take(50) {
                out.push_str(&format!("  - {v}\n"));
            }
        }
        out
    }
}
