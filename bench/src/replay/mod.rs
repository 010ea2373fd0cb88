//! Replay speed (issue 14): a backlog of issue requests written into the log with the
//! service's own code, then the real binaries timed as an operator would meet them —
//! one worker draining the backlog, a full rebuild into an empty store, `audit` — next
//! to the limit measured in the same run: the same rows bulk-inserted into an empty
//! store of the same kind by the plainest fast method (multi-row INSERT / COPY, one
//! transaction per batch a worker decides at most).

pub mod bulk;
pub mod distributed;
pub mod embedded;
mod process;

use std::time::{Duration, Instant};

use coupon::domain::ports::IssueLog;
use coupon::domain::{
    CampaignId, CampaignName, CodeAlphabet, LogEvent, NewCampaign, Placement, TicketId,
    TotalCoupons, UserId,
};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Tickets per bulk-insert transaction: the most a worker of the mode decides in one.
pub const EMBEDDED_BATCH: usize = 8_192;
pub const DISTRIBUTED_BATCH: usize = 8_192;

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub campaigns: u32,
    pub coupons: i64,
    /// Distinct users per campaign; requests pick among them, so some repeat.
    pub users: u32,
    pub requests: u64,
    pub alphabet: CodeAlphabet,
}

impl Workload {
    /// The campaigns' creation records, started an hour ago.
    pub fn campaigns(&self) -> Vec<NewCampaign> {
        let starts_at = chrono::Utc::now() - chrono::TimeDelta::hours(1);
        (0..self.campaigns)
            .map(|n| {
                let name = CampaignName::parse(&format!("replay {n}")).expect("a valid name");
                let total = TotalCoupons::parse(self.coupons).expect("a valid total");
                NewCampaign::new(name, total, starts_at).with_alphabet(self.alphabet)
            })
            .collect()
    }

    /// The `n`-th request: a random campaign, a random one of its users (seeded, so runs
    /// build the same backlog).
    pub fn request(&self, campaigns: &[CampaignId], rng: &mut StdRng) -> LogEvent {
        let campaign = campaigns[rng.random_range(0..campaigns.len())];
        let user = rng.random_range(0..self.users);
        LogEvent::IssueRequested {
            ticket_id: TicketId::generate(),
            campaign_id: campaign,
            user_id: UserId::parse(&format!("user-{user}")).expect("a valid user id"),
        }
    }

    pub fn rng() -> StdRng {
        StdRng::seed_from_u64(14)
    }
}

/// What one mode's run measured.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Figures {
    pub mode: &'static str,
    pub records: u64,
    pub append_s: f64,
    pub drain_s: f64,
    pub rebuild_s: f64,
    pub audit_s: f64,
    pub bulk_insert_s: f64,
    /// Seconds the drain's batches spent reading the ledger, deciding, committing.
    pub drain_phases: Vec<(String, f64)>,
}

impl Figures {
    pub fn rate(&self, seconds: f64) -> f64 {
        self.records as f64 / seconds
    }

    pub fn report(&self) -> String {
        let bulk = self.rate(self.bulk_insert_s);
        let line = |what: &str, s: f64| {
            format!(
                "{what:<28} {s:>8.2} s  {:>9.0} records/s  ratio to bulk insert {:.2}\n",
                self.rate(s),
                self.rate(s) / bulk
            )
        };
        let mut text = format!("replay-bench {}: {} records\n", self.mode, self.records);
        text += &line("append (building the log)", self.append_s);
        text += &line("drain (one worker)", self.drain_s);
        text += &line("rebuild (empty store)", self.rebuild_s);
        text += &line("audit", self.audit_s);
        text += &line("bulk insert (the limit)", self.bulk_insert_s);
        let phases: Vec<String> = self
            .drain_phases
            .iter()
            .map(|(phase, s)| format!("{phase} {s:.2} s"))
            .collect();
        text += &format!("drain's batches: {}\n", phases.join(", "));
        text
    }
}

/// Runs `step` and returns its result and how long it took.
pub async fn timed<T>(step: impl Future<Output = T>) -> (T, f64) {
    let started = Instant::now();
    let result = step.await;
    (result, started.elapsed().as_secs_f64())
}

/// Polls `decided` until it reaches `target`; panics after `limit`.
pub async fn until_decided<F, Fut>(target: u64, limit: Duration, mut decided: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = u64>,
{
    let deadline = Instant::now() + limit;
    loop {
        let now = decided().await;
        if now >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "decided {now} of {target} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Appends the workload's campaigns; their ids.
pub async fn create_campaigns<L: IssueLog>(log: &L, workload: Workload) -> Vec<CampaignId> {
    let mut ids = Vec::new();
    for campaign in workload.campaigns() {
        ids.push(campaign.id);
        log.append(LogEvent::CampaignCreated(campaign), Placement::Spread)
            .await
            .expect("append a campaign");
    }
    ids
}

/// Appends the workload's requests, `in_flight` at a time (each waits for its ack).
pub async fn append_requests<L: IssueLog>(
    log: &L,
    workload: Workload,
    campaigns: &[CampaignId],
    in_flight: usize,
) {
    let mut rng = Workload::rng();
    let events: Vec<LogEvent> = (0..workload.requests)
        .map(|_| workload.request(campaigns, &mut rng))
        .collect();
    futures::stream::iter(events)
        // By the campaign's key, as its creation: the topic's partitions do not change here.
        .map(|event| async move {
            log.append(event, Placement::Spread)
                .await
                .expect("append a request")
        })
        .buffer_unordered(in_flight)
        .for_each(|_| async {})
        .await;
}
