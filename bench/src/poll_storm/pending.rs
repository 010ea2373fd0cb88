//! Phase 3a: while the issuing worker is paused, a set of tickets stays PENDING and is
//! polled without a wait in a closed loop, as fast as the server answers. Those
//! answers should cost the server no database read (source "memory").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;

use super::closed;
use super::tally::ratio;
use crate::client::Api;
use crate::load::{Phase, Pool, Request, drive};
use crate::metrics_scrape::{ResultReads, Scraper};
use crate::run::is_final;
use crate::stats::Percentiles;

/// Phase 3a's figures (JSON keys are a stable interface).
#[derive(Debug, Clone, Serialize)]
pub struct PendingFigures {
    pub tickets: u64,
    pub duration_s: f64,
    pub polls: u64,
    pub pending_answers: u64,
    /// Answers that were final although the worker was paused.
    pub final_answers: u64,
    pub refused: BTreeMap<String, u64>,
    pub pending_per_s: f64,
    /// PENDING polls/s ÷ health checks/s.
    pub ratio_to_health: f64,
    pub latency_ms: Percentiles,
    /// GetIssueResult answers by source during the phase (`/metrics` deltas).
    pub reads: Option<ResultReads>,
}

/// Polls `tickets` round-robin, `connections` at a time, for `duration`. `notes` gets
/// any reason the read counts are missing.
pub async fn hammer(
    pool: &Pool,
    tickets: Vec<String>,
    connections: usize,
    duration: Duration,
    scraper: &Scraper,
    health_per_s: f64,
    notes: &mut Vec<String>,
) -> PendingFigures {
    let count = tickets.len() as u64;
    let finals = Arc::new(AtomicU64::new(0));
    let before = scrape(scraper, notes).await;
    let request = poll_request(Arc::new(tickets), finals.clone());
    let phase = drive(pool, closed(connections, duration), request).await;
    let after = scrape(scraper, notes).await;
    let reads = before.zip(after).map(|(b, a)| a.since(&b));
    let final_answers = finals.load(Ordering::Relaxed);
    figures(&phase, count, final_answers, health_per_s, reads)
}

fn figures(
    phase: &Phase,
    tickets: u64,
    final_answers: u64,
    health_per_s: f64,
    reads: Option<ResultReads>,
) -> PendingFigures {
    let pending_answers = phase
        .ok
        .load(Ordering::Relaxed)
        .saturating_sub(final_answers);
    let elapsed = phase
        .elapsed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_secs_f64();
    let pending_per_s = per(pending_answers as f64, elapsed);
    PendingFigures {
        tickets,
        duration_s: elapsed,
        polls: phase.sent.load(Ordering::Relaxed),
        pending_answers,
        final_answers,
        refused: phase.refused.snapshot(),
        pending_per_s,
        ratio_to_health: per(pending_per_s, health_per_s),
        latency_ms: phase.latency.percentiles(),
        reads,
    }
}

/// `a / b`, 0 when `b` is not positive.
fn per(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The n-th request polls ticket n mod count; a final answer is counted apart.
fn poll_request(tickets: Arc<Vec<String>>, finals: Arc<AtomicU64>) -> Request {
    Arc::new(move |n, api: Api| {
        let (tickets, finals) = (tickets.clone(), finals.clone());
        async move {
            let ticket = &tickets[(n % tickets.len().max(1) as u64) as usize];
            let answer = api.result(ticket).await?;
            if is_final(&answer) {
                finals.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
        .boxed()
    })
}

/// Reads the counters; a failure becomes a note and no figure.
pub async fn scrape(scraper: &Scraper, notes: &mut Vec<String>) -> Option<ResultReads> {
    match scraper.scrape().await {
        Ok(reads) => Some(reads),
        Err(error) => {
            let note = format!("result reads not measured: {error}");
            if !notes.contains(&note) {
                notes.push(note);
            }
            None
        }
    }
}

/// Store reads per PENDING answer, for the table.
pub fn store_reads_per_poll(figures: &PendingFigures) -> Option<f64> {
    figures.reads.map(|r| ratio(r.store, figures.polls))
}
