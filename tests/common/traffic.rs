//! Steady traffic on every partition of a cluster, and a watch on how each partition's
//! decisions progress (from `partition_offsets`, as often as every few milliseconds):
//! what the worker-availability tests measure pauses with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::connect::{Client, RpcError, rfc3339_in};

/// A started campaign and the log partition it lives in.
#[derive(Debug, Clone)]
pub struct PlacedCampaign {
    pub id: String,
    pub total: i64,
    pub partition: i64,
}

/// Creates campaigns of `total` coupons until every one of `partitions` holds one (a
/// campaign's partition is learnt from a first request's decided ticket).
pub async fn campaigns_on_every_partition(
    client: &Client,
    pool: &PgPool,
    partitions: i64,
    total: i64,
) -> Vec<PlacedCampaign> {
    let mut placed: Vec<PlacedCampaign> = Vec::new();
    for round in 0..8 {
        let mut probes = Vec::new();
        for n in 0..partitions * 2 {
            let campaign = client
                .create_campaign(
                    &format!("c{round}-{n}"),
                    total,
                    &rfc3339_in(TimeDelta::zero()),
                )
                .await
                .expect("create");
            let id = campaign["id"].as_str().expect("id").to_owned();
            let accepted = client.issue(&id, "probe").await.expect("probe");
            probes.push((id, accepted["ticketId"].as_str().expect("t").to_owned()));
        }
        let tickets: Vec<String> = probes.iter().map(|(_, t)| t.clone()).collect();
        client.await_final(&tickets, Duration::from_secs(60)).await;
        for (id, _) in probes {
            let partition: i64 = sqlx::query_scalar(
                "SELECT log_partition FROM ticket_results WHERE campaign_id = $1::uuid LIMIT 1",
            )
            .bind(&id)
            .fetch_one(pool)
            .await
            .expect("probe decided");
            placed.push(PlacedCampaign {
                id,
                total,
                partition,
            });
        }
        let covered: BTreeSet<i64> = placed.iter().map(|c| c.partition).collect();
        if covered.len() as i64 == partitions {
            return placed;
        }
    }
    panic!("campaigns never covered all {partitions} partitions");
}

/// What a traffic run was answered.
#[derive(Debug, Default)]
pub struct Answers {
    /// (ticket, campaign, user) of every accepted request.
    pub accepted: Vec<(String, String, String)>,
    pub refused: Vec<RpcError>,
    /// When the log appended each accepted request (its `acceptedAt`).
    pub appended_at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Answers {
    /// The longest time the log appended none of these requests, and when it ended:
    /// decisions cannot move faster than appends.
    pub fn longest_append_gap(&self) -> (Duration, Option<chrono::DateTime<chrono::Utc>>) {
        let mut times = self.appended_at.clone();
        times.sort();
        times
            .windows(2)
            .map(|w| ((w[1] - w[0]).to_std().unwrap_or_default(), Some(w[1])))
            .max()
            .unwrap_or_default()
    }
}

/// `senders` loops, each sending one IssueCoupon every `pause` (after its answer), over
/// every campaign in turn, users drawn from `users` (so some repeat), until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Answers>>,
}

impl Traffic {
    pub fn start(
        client: &Client,
        campaigns: &[PlacedCampaign],
        senders: usize,
        pause: Duration,
        users: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..senders)
            .map(|s| {
                let (client, stop) = (client.clone(), stop.clone());
                let ids: Vec<String> = campaigns.iter().map(|c| c.id.clone()).collect();
                tokio::spawn(async move {
                    let mut answers = Answers::default();
                    let mut n = s;
                    while !stop.load(Ordering::Relaxed) {
                        let id = &ids[n % ids.len()];
                        let user = format!("user-{}", (n * 7919) % users);
                        match client.issue(id, &user).await {
                            Ok(r) => {
                                answers.accepted.push((
                                    r["ticketId"].as_str().expect("ticket").to_owned(),
                                    id.clone(),
                                    user,
                                ));
                                if let Some(at) = r["acceptedAt"].as_str() {
                                    answers.appended_at.push(at.parse().expect("time"));
                                }
                            }
                            Err(e) => answers.refused.push(e),
                        }
                        n += senders;
                        tokio::time::sleep(pause).await;
                    }
                    answers
                })
            })
            .collect();
        Self { stop, tasks }
    }

    pub async fn stop(self) -> Answers {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Answers::default();
        for task in self.tasks {
            let answers = task.await.expect("traffic task");
            all.accepted.extend(answers.accepted);
            all.refused.extend(answers.refused);
            all.appended_at.extend(answers.appended_at);
        }
        all
    }
}

/// Every partition's stored next offset.
pub async fn offsets(pool: &PgPool) -> BTreeMap<i64, i64> {
    sqlx::query_as::<_, (i64, i64)>("SELECT log_partition, next_offset FROM partition_offsets")
        .fetch_all(pool)
        .await
        .expect("offsets")
        .into_iter()
        .collect()
}

/// When each partition's decisions last moved, sampled every `every`.
///
/// A pause counts from the first sample that saw an offset to the last sample that still
/// saw it: a lower bound, which a stall of the sampler itself (a busy machine) cannot
/// inflate, down to the sampling interval.
pub struct ProgressWatch {
    started: Instant,
    /// Per partition: (offset, first sample that saw it).
    last: HashMap<i64, (i64, Instant)>,
    /// Per partition: the longest time its offset was seen standing still.
    pub longest_gap: BTreeMap<i64, Duration>,
    /// Per partition: when (wall clock) that longest standstill was last seen.
    pub longest_gap_at: BTreeMap<i64, chrono::DateTime<chrono::Utc>>,
    /// Per partition: when its offset first moved past where it stood at the start.
    pub first_move: BTreeMap<i64, Duration>,
    /// The longest time between two samples (how coarse the figures above are).
    pub longest_sample_interval: Duration,
    previous_sample: Instant,
}

impl ProgressWatch {
    pub async fn start(pool: &PgPool) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: offsets(pool)
                .await
                .into_iter()
                .map(|(p, o)| (p, (o, now)))
                .collect(),
            longest_gap: BTreeMap::new(),
            longest_gap_at: BTreeMap::new(),
            first_move: BTreeMap::new(),
            longest_sample_interval: Duration::ZERO,
            previous_sample: now,
        }
    }

    /// Samples until `done` says so or `limit` passes.
    pub async fn run_until(
        &mut self,
        pool: &PgPool,
        every: Duration,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) {
        while !done(self) && self.started.elapsed() < limit {
            tokio::time::sleep(every).await;
            self.sample(pool).await;
        }
    }

    pub async fn sample(&mut self, pool: &PgPool) {
        let offsets = offsets(pool).await;
        let now = Instant::now();
        self.longest_sample_interval = self.longest_sample_interval.max(now - self.previous_sample);
        self.previous_sample = now;
        for (partition, offset) in offsets {
            let (seen, since) = self.last.entry(partition).or_insert((offset, now));
            if offset == *seen {
                let gap = self.longest_gap.entry(partition).or_default();
                if now - *since > *gap {
                    *gap = now - *since;
                    self.longest_gap_at.insert(partition, chrono::Utc::now());
                }
            } else {
                *seen = offset;
                *since = now;
                self.first_move
                    .entry(partition)
                    .or_insert(now - self.started);
            }
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
