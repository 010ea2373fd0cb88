//! The poll-storm scenario: how the service bears many users waiting for their result.
//! A health baseline and a campaign; optionally, with the issuing worker paused by the
//! operator's command, tickets held PENDING are polled hard (3a) and K long-polls wait
//! at once (3b); then the storm (4): every user issues one ticket and polls it to a
//! final status, by long-polls or by short polls paced by the server.

pub mod issue;
pub mod pending;
pub mod poller;
pub mod report;
pub mod storm;
pub mod tally;
mod verdict;
pub mod waiters;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use tokio::sync::Semaphore;

use self::issue::{AcceptedTicket, IssueCounts, issue_many, user_ids};
use self::pending::PendingFigures;
pub use self::poller::{PollMode, PollPlan};
use self::report::{Measured, StormReport};
use self::storm::{Storm, StormRun};
use self::waiters::{OpenWaiters, WaiterFigures};
use crate::control::{self, ControlError};
use crate::load::{Mode, Pool, Shape};
use crate::metrics_scrape::{ResultReads, Scraper};
use crate::run::{
    BenchError, check_health, connect_pool, create_campaign, health_baseline, progress_bar,
};

#[derive(Debug, Clone)]
pub struct StormOptions {
    pub targets: Vec<String>,
    pub admin_token: Option<String>,
    pub http2: bool,
    /// IssueCoupon in flight; HTTP/2 connections per target; 3a's closed-loop workers.
    pub connections: usize,
    pub coupons: u64,
    pub users: u64,
    pub health_duration: Duration,
    pub poll_timeout: Duration,
    pub plan: PollPlan,
    pub pause_cmd: Option<String>,
    pub resume_cmd: Option<String>,
    /// 3a's length; zero skips it.
    pub pending_poll: Duration,
    pub pending_tickets: u64,
    /// 3b's long-polls; zero skips it.
    pub waiters: u64,
    pub server_pid: Option<u32>,
    pub max_polls_in_flight: usize,
    /// Metrics pages to read; empty: `<target>/metrics` for each target.
    pub metrics_urls: Vec<String>,
    pub progress: bool,
}

impl StormOptions {
    /// Flags that make no sense together, as a message for the user.
    pub fn check(&self) -> Result<(), String> {
        let paused = self.pause_cmd.is_some();
        if paused != self.resume_cmd.is_some() {
            return Err("--pause-cmd and --resume-cmd go together".into());
        }
        if !paused && !self.pending_poll.is_zero() {
            return Err("--pending-poll-secs needs --pause-cmd (tickets must stay PENDING)".into());
        }
        if !paused && self.waiters > 0 {
            return Err("--waiters needs --pause-cmd (tickets must stay PENDING)".into());
        }
        if !self.pending_poll.is_zero() && self.pending_tickets == 0 {
            return Err("--pending-tickets must be at least 1 with --pending-poll-secs".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StormError {
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("interrupted (the resume command was run)")]
    Interrupted,
}

/// Tickets taken while the worker was paused, and what the paused phases measured.
#[derive(Default)]
struct Held {
    tickets: Vec<AcceptedTicket>,
    issue: IssueCounts,
    pending: Option<PendingFigures>,
    waiters: Option<WaiterFigures>,
}

struct Session {
    options: StormOptions,
    pool: Pool,
    /// h2c clients for 3b when the run itself speaks HTTP/1.1.
    h2: Option<Pool>,
    scraper: Scraper,
    bar: ProgressBar,
    prefix: String,
    campaign_id: String,
    starts_at: DateTime<Utc>,
    notes: Vec<String>,
}

pub async fn run(options: StormOptions) -> Result<StormReport, StormError> {
    let pool = connect_pool(
        &options.targets,
        options.http2,
        options.connections,
        options.admin_token.as_deref(),
    )?;
    check_health(pool.first()).await?;
    let bar = progress_bar(options.progress);
    let report = measure(options, pool, bar.clone()).await;
    bar.finish_and_clear();
    report
}

/// Every phase after the first health check.
async fn measure(
    options: StormOptions,
    pool: Pool,
    bar: ProgressBar,
) -> Result<StormReport, StormError> {
    bar.set_message("health baseline");
    let health = health_baseline(&pool, closed(options.connections, options.health_duration)).await;
    let (campaign_id, starts_at) =
        create_campaign(pool.first(), options.coupons, Duration::ZERO).await?;
    let mut session = Session::new(options, pool, bar, campaign_id, starts_at)?;
    let held = if session.options.pause_cmd.is_some() {
        let held = session.paused(health.ok_per_s()).await;
        exit_on_ctrl_c();
        held?
    } else {
        Held::default()
    };
    let (storm, reads) = session.storm().await;
    let verdict = session.verify(&held, &storm).await?;
    let measured = Measured {
        health: &health,
        pending: held.pending,
        waiters: held.waiters,
        storm: tally_storm(&storm, session.options.users, reads),
    };
    Ok(StormReport::new(
        &session.options,
        measured,
        verdict,
        session.notes,
    ))
}

/// A closed-loop shape: `connections` requests in flight for `duration`.
fn closed(connections: usize, duration: Duration) -> Shape {
    Shape {
        mode: Mode::Closed,
        rate: 0,
        connections,
        duration,
        max_requests: None,
    }
}

/// Listening for Ctrl-C (while paused) replaced its default; put "end the process" back.
fn exit_on_ctrl_c() {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

fn tally_storm(storm: &StormRun, users: u64, reads: Option<ResultReads>) -> tally::StormFigures {
    let mut tally = tally::Tally::default();
    for ticket in &storm.tickets {
        tally.add(ticket);
    }
    tally.figures(&storm.issue, users, storm.elapsed, reads)
}

impl Session {
    fn new(
        options: StormOptions,
        pool: Pool,
        bar: ProgressBar,
        campaign_id: String,
        starts_at: DateTime<Utc>,
    ) -> Result<Self, BenchError> {
        let h2 = (options.waiters > 0 && !options.http2)
            .then(|| connect_pool(&options.targets, true, options.connections, None))
            .transpose()?;
        let scraper = if options.metrics_urls.is_empty() {
            Scraper::for_targets(&options.targets)?
        } else {
            Scraper::new(options.metrics_urls.clone())?
        };
        Ok(Self {
            options,
            pool,
            h2,
            scraper,
            bar,
            prefix: format!("bench-{:08x}", rand::random::<u32>()),
            campaign_id,
            starts_at,
            notes: Vec::new(),
        })
    }

    /// Pauses the worker, runs 3a and opens 3b's waiters, resumes (whatever happened,
    /// Ctrl-C included), then collects the waiters' answers.
    async fn paused(&mut self, health_per_s: f64) -> Result<Held, StormError> {
        let pause = self.options.pause_cmd.clone().unwrap_or_default();
        let resume = self.options.resume_cmd.clone().unwrap_or_default();
        self.bar.set_message("pausing the worker");
        if let Err(error) = control::run_shell("pause", &pause).await {
            // It may have paused something before failing: resume, best effort.
            if let Err(resume_error) = control::run_shell("resume", &resume).await {
                eprintln!("coupon-bench: {resume_error}");
            }
            return Err(error.into());
        }
        let phases = tokio::select! {
            held = self.while_paused(health_per_s) => Ok(held),
            _ = tokio::signal::ctrl_c() => Err(StormError::Interrupted),
        };
        self.bar.set_message("resuming the worker");
        let resumed = control::run_shell("resume", &resume).await;
        let resumed_at = Instant::now();
        if let (Err(_), Err(error)) = (&phases, &resumed) {
            eprintln!("coupon-bench: {error}");
        }
        let (mut held, open) = phases?;
        resumed?;
        if let Some(open) = open {
            self.bar
                .set_message("waiters: collecting answers after the resume");
            held.waiters = Some(waiters::collect(open, resumed_at).await);
        }
        Ok(held)
    }

    async fn while_paused(&mut self, health_per_s: f64) -> (Held, Option<OpenWaiters>) {
        let mut held = Held::default();
        if !self.options.pending_poll.is_zero() {
            self.hold_and_poll(health_per_s, &mut held).await;
        }
        let open = if self.options.waiters > 0 {
            Some(self.open_waiters(&mut held).await)
        } else {
            None
        };
        (held, open)
    }

    /// 3a: tickets held PENDING, polled without a wait for `pending_poll`.
    async fn hold_and_poll(&mut self, health_per_s: f64, held: &mut Held) {
        let o = &self.options;
        self.bar.set_message(format!(
            "3a: issuing {} tickets to hold PENDING",
            o.pending_tickets
        ));
        let tickets = self.issue_held("held", o.pending_tickets, held).await;
        let o = &self.options;
        if tickets.is_empty() {
            self.notes
                .push("3a skipped: IssueCoupon accepted no ticket".into());
            return;
        }
        self.bar.set_message(format!(
            "3a: polling {} PENDING tickets for {:.1} s",
            tickets.len(),
            o.pending_poll.as_secs_f64()
        ));
        let ids = tickets.iter().map(|t| t.ticket_id.clone()).collect();
        let figures = pending::hammer(
            &self.pool,
            ids,
            o.connections,
            o.pending_poll,
            &self.scraper,
            health_per_s,
            &mut self.notes,
        )
        .await;
        note_pending(&figures, &mut self.notes);
        held.pending = Some(figures);
        held.tickets.extend(tickets);
    }

    /// 3b: RSS before, K tickets, K long-polls, RSS while they wait.
    async fn open_waiters(&mut self, held: &mut Held) -> OpenWaiters {
        let o = &self.options;
        if o.server_pid.is_none() {
            self.notes
                .push("server RSS not measured: no --server-pid".into());
        }
        let rss_before = waiters::sample_rss(o.server_pid, &mut self.notes);
        self.bar.set_message(format!(
            "3b: issuing {} tickets for long-poll waiters",
            o.waiters
        ));
        let tickets = self.issue_held("waiter", o.waiters, held).await;
        let o = &self.options;
        note_waiters(o, tickets.len(), &mut self.notes);
        self.bar
            .set_message(format!("3b: {} long-polls waiting", tickets.len()));
        let h2 = self.h2.as_ref().unwrap_or(&self.pool);
        let connections = o.connections * o.targets.len();
        let open = waiters::open(
            h2,
            connections,
            &tickets,
            o.plan.wait,
            o.server_pid,
            rss_before,
            &mut self.notes,
        )
        .await;
        held.tickets.extend(tickets);
        open
    }

    /// `count` tickets for users of `group`, issued while the worker is paused.
    async fn issue_held(&self, group: &str, count: u64, held: &mut Held) -> Vec<AcceptedTicket> {
        let o = &self.options;
        let users = user_ids(&self.prefix, group, count);
        let (tickets, counts) = issue_many(
            &self.pool,
            &self.campaign_id,
            users,
            o.connections,
            o.poll_timeout,
        )
        .await;
        held.issue.merge(&counts);
        tickets
    }

    /// 4: the storm, between two reads of the server's counters.
    async fn storm(&mut self) -> (StormRun, Option<ResultReads>) {
        let before = pending::scrape(&self.scraper, &mut self.notes).await;
        let o = &self.options;
        let storm = Arc::new(Storm {
            pool: self.pool.clone(),
            campaign_id: self.campaign_id.clone(),
            plan: o.plan,
            gate: Semaphore::new(o.max_polls_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
            poll_timeout: o.poll_timeout,
            live: Default::default(),
        });
        let users = user_ids(&self.prefix, "storm", o.users);
        let run = storm::run(storm, users, o.connections, &self.bar).await;
        let after = pending::scrape(&self.scraper, &mut self.notes).await;
        (run, before.zip(after).map(|(b, a)| a.since(&b)))
    }
}

/// What 3b's setup may explain about its figures.
fn note_waiters(o: &StormOptions, accepted: usize, notes: &mut Vec<String>) {
    if (accepted as u64) < o.waiters {
        notes.push(format!(
            "3b: {} waiters asked, {accepted} tickets accepted",
            o.waiters
        ));
    }
    if o.plan.wait <= waiters::SETTLE + Duration::from_secs(1) {
        notes.push(
            "3b: --wait-ms is not much longer than the settling time (3 s): \
             waiters may end PENDING before the resume"
                .into(),
        );
    }
}

/// What 3a's figures say about the setup, beyond the numbers.
fn note_pending(figures: &PendingFigures, notes: &mut Vec<String>) {
    if figures.final_answers > 0 {
        notes.push(format!(
            "3a: {} answers were final while the worker was paused: is --pause-cmd pausing the issuing worker?",
            figures.final_answers
        ));
    }
    if let Some(reads) = figures.reads.filter(|r| r.store > 0) {
        notes.push(format!(
            "3a: {} store reads while polling held tickets (target 0 for PENDING answers)",
            reads.store
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> StormOptions {
        StormOptions {
            targets: vec!["http://127.0.0.1:8080".into()],
            admin_token: None,
            http2: false,
            connections: 4,
            coupons: 10,
            users: 100,
            health_duration: Duration::from_secs(1),
            poll_timeout: Duration::from_secs(10),
            plan: PollPlan {
                mode: PollMode::Long,
                wait: Duration::from_secs(20),
                interval: None,
            },
            pause_cmd: None,
            resume_cmd: None,
            pending_poll: Duration::ZERO,
            pending_tickets: 1_000,
            waiters: 0,
            server_pid: None,
            max_polls_in_flight: 100,
            metrics_urls: Vec::new(),
            progress: false,
        }
    }

    fn paused() -> StormOptions {
        StormOptions {
            pause_cmd: Some("kill -STOP 1".into()),
            resume_cmd: Some("kill -CONT 1".into()),
            ..options()
        }
    }

    #[test]
    fn the_storm_alone_and_the_held_phases_with_hooks_are_fine() {
        assert_eq!(options().check(), Ok(()));
        let all = StormOptions {
            pending_poll: Duration::from_secs(5),
            waiters: 10,
            ..paused()
        };
        assert_eq!(all.check(), Ok(()));
    }

    #[test]
    fn held_phases_need_the_hooks_and_the_hooks_go_together() {
        let waiters = StormOptions {
            waiters: 10,
            ..options()
        };
        assert!(waiters.check().is_err());
        let pending = StormOptions {
            pending_poll: Duration::from_secs(1),
            ..options()
        };
        assert!(pending.check().is_err());
        let half = StormOptions {
            resume_cmd: None,
            ..paused()
        };
        assert!(half.check().is_err());
        let no_tickets = StormOptions {
            pending_poll: Duration::from_secs(1),
            pending_tickets: 0,
            ..paused()
        };
        assert!(no_tickets.check().is_err());
    }
}
