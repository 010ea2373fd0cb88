//! Load generation. Open loop: requests leave at a fixed rate whatever the answers,
//! and latency counts from the instant a request was *due*, so a stalled server cannot
//! hide its latency (no coordinated omission). Closed loop: each connection sends its
//! next request when the previous one is answered, as fast as it goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rand::Rng;
use tokio::sync::Mutex;

use crate::client::{Api, Refusal};
use crate::stats::{Counts, Latency};
use crate::timeline::Timeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub mode: Mode,
    /// Requests per second (open loop).
    pub rate: u64,
    /// Concurrent requests (closed loop); in-flight cap (open loop) is 64× this.
    pub connections: usize,
    pub duration: Duration,
    /// Stop after this many requests, if set.
    pub max_requests: Option<u64>,
}

/// Round-robin over the API clients (targets × connections).
#[derive(Clone)]
pub struct Pool {
    apis: Arc<Vec<Api>>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    pub fn new(apis: Vec<Api>) -> Self {
        Self {
            apis: Arc::new(apis),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn pick(&self) -> &Api {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.apis[i % self.apis.len()]
    }

    pub fn first(&self) -> &Api {
        &self.apis[0]
    }
}

/// What one load phase measured.
#[derive(Default)]
pub struct Phase {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub refused: Counts,
    pub latency: Latency,
    /// Accepted and refused per second since the phase started, by when answered.
    pub timeline: Timeline,
    pub elapsed: std::sync::Mutex<Duration>,
    /// Open loop: requests not sent because too many were already in flight.
    pub skipped: AtomicU64,
}

impl Phase {
    pub fn ok_per_s(&self) -> f64 {
        let elapsed = self
            .elapsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_secs_f64();
        if elapsed > 0.0 {
            self.ok.load(Ordering::Relaxed) as f64 / elapsed
        } else {
            0.0
        }
    }
}

/// One request of a phase; `Ok(())` counts as success.
pub type Request = Arc<dyn Fn(u64, Api) -> BoxFuture<'static, Result<(), Refusal>> + Send + Sync>;

/// Runs `request` in the given shape and returns what it measured.
pub async fn drive(pool: &Pool, shape: Shape, request: Request) -> Arc<Phase> {
    let phase = Arc::new(Phase::default());
    let started = Instant::now();
    let deadline = started + shape.duration;
    let limit = shape.max_requests.unwrap_or(u64::MAX);
    let counter = Arc::new(AtomicU64::new(0));
    match shape.mode {
        Mode::Closed => {
            let mut workers = Vec::new();
            for _ in 0..shape.connections {
                let (pool, phase, request, counter) = (
                    pool.clone(),
                    phase.clone(),
                    request.clone(),
                    counter.clone(),
                );
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        if n >= limit {
                            break;
                        }
                        let sent = Instant::now();
                        let result = request(n, pool.pick().clone()).await;
                        record(&phase, started, sent, result);
                    }
                }));
            }
            for w in workers {
                let _ = w.await;
            }
        }
        Mode::Open => {
            let interval = Duration::from_secs_f64(1.0 / shape.rate.max(1) as f64);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let cap = shape.connections * 64;
            let mut tasks = Vec::new();
            for n in 0..limit {
                let due = started + interval.mul_f64(n as f64);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                if in_flight.load(Ordering::Relaxed) >= cap {
                    phase.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (pool, phase, request, in_flight) = (
                    pool.clone(),
                    phase.clone(),
                    request.clone(),
                    in_flight.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    // Latency from when the request was due, not from when it left.
                    let result = request(n, pool.pick().clone()).await;
                    record(&phase, started, due, result);
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    *phase.elapsed.lock().unwrap_or_else(|p| p.into_inner()) = started.elapsed();
    phase
}

/// Counts one answer of the phase that `started`; its latency runs from `since`.
fn record(phase: &Phase, started: Instant, since: Instant, result: Result<(), Refusal>) {
    let answered = Instant::now();
    phase.sent.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(()) => {
            phase.latency.record(answered - since);
            phase.ok.fetch_add(1, Ordering::Relaxed);
            phase.timeline.accepted(answered - started);
        }
        Err(refusal) => {
            let label = refusal.label();
            phase.timeline.refused(answered - started, &label);
            phase.refused.add(label);
        }
    }
}

/// Which user the n-th request speaks for: a new user, or (with `repeat_ratio`
/// probability) one that already asked. At most `users` distinct users.
pub struct Users {
    pub prefix: String,
    pub users: u64,
    pub repeat_ratio: f64,
    issued: AtomicU64,
}

impl Users {
    pub fn new(prefix: String, users: u64, repeat_ratio: f64) -> Self {
        Self {
            prefix,
            users: users.max(1),
            repeat_ratio,
            issued: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        let known = self.issued.load(Ordering::Relaxed);
        let mut rng = rand::rng();
        let n = if known > 0
            && (known >= self.users || rng.random_bool(self.repeat_ratio.clamp(0.0, 1.0)))
        {
            rng.random_range(0..known.min(self.users))
        } else {
            self.issued.fetch_add(1, Ordering::Relaxed) % self.users
        };
        format!("{}-{n}", self.prefix)
    }
}

/// An accepted ticket as the load phase saw it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub ticket_id: String,
    pub user_id: String,
    pub accepted_at: DateTime<Utc>,
    pub answered: Instant,
}

pub type AcceptedLog = Arc<Mutex<Vec<Accepted>>>;
