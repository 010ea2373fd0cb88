//! The storm (phase 4): every user sends one IssueCoupon (`connections` in flight) and
//! then polls their own ticket to a final status, all users at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::issue::{AcceptedTicket, IssueCounts, issue_one};
use super::poller::{PollPlan, poll_to_final};
use super::tally::TicketOutcome;
use crate::load::Pool;

/// What every user of the storm shares.
pub struct Storm {
    pub pool: Pool,
    pub campaign_id: String,
    pub plan: PollPlan,
    /// Polls in flight at most, across all users.
    pub gate: Semaphore,
    /// How long a user keeps trying (OVERLOADED retries, then polls from the ticket).
    pub poll_timeout: Duration,
    pub live: Live,
}

/// Running counts for the progress display.
#[derive(Default)]
pub struct Live {
    pub accepted: AtomicU64,
    pub finals: AtomicU64,
    pub polls: AtomicU64,
}

/// The storm's outcome: every accepted ticket, the IssueCoupon counts, its wall time.
pub struct StormRun {
    pub tickets: Vec<TicketOutcome>,
    pub issue: IssueCounts,
    pub elapsed: Duration,
}

/// Runs the storm for `users` (their ids) with `connections` IssueCoupon in flight.
pub async fn run(
    storm: Arc<Storm>,
    users: Vec<String>,
    connections: usize,
    bar: &ProgressBar,
) -> StormRun {
    let started = Instant::now();
    let total = users.len();
    let ticker = tick(storm.clone(), bar.clone(), total, started);
    let mut issue = IssueCounts::default();
    let followers: Vec<JoinHandle<TicketOutcome>> = stream::iter(users)
        .map(|user| {
            let give_up = Instant::now() + storm.poll_timeout;
            issue_one(&storm.pool, &storm.campaign_id, user, give_up)
        })
        .buffer_unordered(connections.max(1))
        .filter_map(|attempt| {
            issue.add(&attempt);
            futures::future::ready(attempt.result.ok())
        })
        .map(|ticket| {
            storm.live.accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(follow(storm.clone(), ticket))
        })
        .collect()
        .await;
    let tickets = futures::future::join_all(followers)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    ticker.abort();
    StormRun {
        tickets,
        issue,
        elapsed: started.elapsed(),
    }
}

/// One user after their ticket: polls it to final within `poll_timeout`.
async fn follow(storm: Arc<Storm>, ticket: AcceptedTicket) -> TicketOutcome {
    let deadline = ticket.answered + storm.poll_timeout;
    let trace = poll_to_final(
        &storm.pool,
        &storm.gate,
        &ticket.ticket_id,
        &storm.plan,
        deadline,
        &storm.live.polls,
    )
    .await;
    if trace.final_answer.is_some() {
        storm.live.finals.fetch_add(1, Ordering::Relaxed);
    }
    TicketOutcome::new(ticket, trace)
}

fn tick(storm: Arc<Storm>, bar: ProgressBar, users: usize, started: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let polls = storm.live.polls.load(Ordering::Relaxed);
            let rate = polls as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "storm: {} of {users} users accepted, {} final, {polls} polls ({rate:.0}/s)",
                storm.live.accepted.load(Ordering::Relaxed),
                storm.live.finals.load(Ordering::Relaxed),
            ));
        }
    })
}
