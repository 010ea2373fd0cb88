//! The poll-storm figures: a table for people, JSON (`--json`) for scripts. Key names
//! are a stable interface.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::StormOptions;
use super::pending::{PendingFigures, store_reads_per_poll};
use super::poller::PollMode;
use super::tally::StormFigures;
use super::waiters::WaiterFigures;
use crate::load::Phase;
use crate::metrics_scrape::ResultReads;
use crate::stats::Percentiles;
use crate::verify::Verdict;

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub scenario: &'static str,
    pub targets: Vec<String>,
    pub http2: bool,
    pub connections: usize,
    pub coupons: u64,
    pub poll: PollMode,
    pub wait_ms: u64,
    pub poll_interval_ms: Option<u64>,
    pub max_polls_in_flight: usize,
    pub health_per_s: f64,
    pub health_latency_ms: Percentiles,
    pub pending: Option<PendingFigures>,
    pub waiters: Option<WaiterFigures>,
    pub storm: StormFigures,
    pub issued: u64,
    pub expected_issued: u64,
    pub violations: Vec<String>,
    pub notes: Vec<String>,
}

/// What the phases measured, for [`StormReport::new`].
pub struct Measured<'a> {
    pub health: &'a Phase,
    pub pending: Option<PendingFigures>,
    pub waiters: Option<WaiterFigures>,
    pub storm: StormFigures,
}

impl StormReport {
    pub fn new(
        options: &StormOptions,
        measured: Measured<'_>,
        verdict: Verdict,
        notes: Vec<String>,
    ) -> Self {
        Self {
            scenario: "poll-storm",
            targets: options.targets.clone(),
            http2: options.http2,
            connections: options.connections,
            coupons: options.coupons,
            poll: options.plan.mode,
            wait_ms: options.plan.wait.as_millis() as u64,
            poll_interval_ms: options.plan.interval.map(|d| d.as_millis() as u64),
            max_polls_in_flight: options.max_polls_in_flight,
            health_per_s: measured.health.ok_per_s(),
            health_latency_ms: measured.health.latency.percentiles(),
            pending: measured.pending,
            waiters: measured.waiters,
            storm: measured.storm,
            issued: verdict.issued,
            expected_issued: verdict.expected_issued,
            violations: verdict.violations,
            notes,
        }
    }

    pub fn table(&self) -> String {
        let mut out = self.heading();
        if let Some(pending) = &self.pending {
            out += &pending_section(pending);
        }
        if let Some(waiters) = &self.waiters {
            out += &waiters_section(waiters);
        }
        out += &storm_section(&self.storm);
        out += &self.latencies();
        out += &self.verdict();
        out
    }

    fn heading(&self) -> String {
        let poll = match self.poll {
            PollMode::Long => format!("long polls (waitMs {})", self.wait_ms),
            PollMode::Short => match self.poll_interval_ms {
                Some(ms) => format!("short polls every {ms} ms"),
                None => "short polls paced by retryAfterMs".to_owned(),
            },
        };
        let mut out = format!(
            "coupon-bench: poll-storm, {poll}, {} connection(s){}, {} coupons, {} users\n",
            self.connections,
            if self.http2 { " (h2c)" } else { " (HTTP/1.1)" },
            self.coupons,
            self.storm.users,
        );
        let _ = writeln!(out, "  targets: {}\n", self.targets.join(", "));
        let _ = writeln!(out, "{:<26} {:>12.0}", "health checks/s", self.health_per_s);
        out
    }

    fn latencies(&self) -> String {
        let mut out = format!(
            "\n{:<26} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "latency (ms)", "count", "p50", "p99", "p99.9", "max"
        );
        out += &row("health check", &self.health_latency_ms);
        if let Some(pending) = &self.pending {
            out += &row("GetIssueResult (held)", &pending.latency_ms);
        }
        if let Some(waiters) = &self.waiters {
            out += &row("resume to waiter answer", &waiters.resume_to_answer_ms);
        }
        out += &row("ticket to final (storm)", &self.storm.final_latency_ms);
        out
    }

    fn verdict(&self) -> String {
        let mut out = format!(
            "\nissued {} (expected {})\n",
            self.issued, self.expected_issued
        );
        if self.violations.is_empty() {
            out += "invariants: all hold (DESIGN §5)\n";
        } else {
            let _ = writeln!(out, "INVARIANTS VIOLATED ({}):", self.violations.len());
            for v in self.violations.iter().take(50) {
                let _ = writeln!(out, "  - {v}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

fn row(name: &str, p: &Percentiles) -> String {
    format!(
        "{name:<26} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
        p.count, p.p50, p.p99, p.p999, p.max
    )
}

fn pending_section(p: &PendingFigures) -> String {
    let mut out = format!(
        "\nheld PENDING (3a): {} tickets polled without a wait for {:.1} s\n",
        p.tickets, p.duration_s
    );
    let _ = writeln!(
        out,
        "{:<26} {:>12.0}   (ratio to health {:.2})",
        "PENDING polls/s", p.pending_per_s, p.ratio_to_health
    );
    let _ = writeln!(
        out,
        "{:<26} {:>12}   PENDING {}, final {}, refused {}",
        "polls",
        p.polls,
        p.pending_answers,
        p.final_answers,
        p.refused.values().sum::<u64>()
    );
    out += &refusals("refused", &p.refused);
    out += &reads_line(p.reads, store_reads_per_poll(p), " (target 0)");
    out
}

fn waiters_section(w: &WaiterFigures) -> String {
    let mut out = format!(
        "\nlong-poll waiters (3b): {} on {} h2c connection(s), {:.1} per connection\n",
        w.waiters, w.connections, w.waiters_per_connection
    );
    let _ = writeln!(
        out,
        "{:<26} {:>12}   PENDING {}, errors {}, answered before the resume {}",
        "answered final",
        w.answered_final,
        w.answered_pending,
        w.errors.values().sum::<u64>(),
        w.answered_before_resume
    );
    out += &refusals("error", &w.errors);
    match (w.rss_before_mib, w.rss_waiting_mib, w.rss_growth_mib) {
        (Some(before), Some(waiting), Some(growth)) => {
            let _ = writeln!(
                out,
                "{:<26} {:>12}   {before:.1} MiB before, {waiting:.1} MiB waiting ({:.2} KiB per waiter)",
                "server RSS growth",
                format!("{growth:+.1} MiB"),
                w.rss_per_waiter_kib.unwrap_or(0.0)
            );
        }
        _ => out += "server RSS growth          not measured (see notes)\n",
    }
    out
}

fn storm_section(s: &StormFigures) -> String {
    let mut out = format!(
        "\nstorm (4): {} users, {} accepted, {} refused, {} OVERLOADED retried, {} ambiguous, {:.1} s\n",
        s.users,
        s.accepted,
        s.issue_refused.values().sum::<u64>(),
        s.issue_overloads,
        s.ambiguous_requests,
        s.elapsed_s
    );
    out += &refusals("IssueCoupon refused", &s.issue_refused);
    let _ = writeln!(
        out,
        "{:<26} {:>12}   {:.0}/s, {:.2} per ticket, OVERLOADED {}, errors {}, unheld long-polls {}",
        "GetIssueResult polls",
        s.polls,
        s.polls_per_s,
        s.requests_per_ticket,
        s.poll_overloads,
        s.poll_errors.values().sum::<u64>(),
        s.early_pending
    );
    out += &refusals("poll error", &s.poll_errors);
    out += &reads_line(s.reads, s.store_reads_per_poll, "");
    let statuses: Vec<String> = s
        .statuses
        .iter()
        .map(|(status, n)| format!("{} {n}", status.trim_start_matches("ISSUE_STATUS_")))
        .collect();
    let _ = writeln!(out, "{:<26} {}", "final statuses", statuses.join(", "));
    out
}

fn refusals(what: &str, counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(label, n)| format!("  {what} {label}: {n}\n"))
        .collect()
}

fn reads_line(reads: Option<ResultReads>, per_poll: Option<f64>, target: &str) -> String {
    match (reads, per_poll) {
        (Some(r), Some(per_poll)) => format!(
            "{:<26} memory {}, cache {}, store {}   (store reads per poll {per_poll:.4}{target})\n",
            "result reads (/metrics)", r.memory, r.cache, r.store
        ),
        _ => format!(
            "{:<26} not measured (see notes)\n",
            "result reads (/metrics)"
        ),
    }
}
