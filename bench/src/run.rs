//! One benchmark run: health baseline, a campaign, the flood, then every ticket polled
//! to its final status, the campaign listed, and DESIGN §5 verified on the answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::FutureExt;
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::client::{Api, CampaignPage, IssueResult, Refusal, decode};
use crate::load::{Accepted, AcceptedLog, Phase, Pool, Request, Shape, Users, drive};
use crate::report::Report;
use crate::stats::Latency;
use crate::verify::{CampaignRecord, PENDING, RunRecord, TicketRecord, verify};

#[derive(Debug, Clone)]
pub struct Options {
    pub targets: Vec<String>,
    /// Bearer token for CampaignService, when the server requires one.
    pub admin_token: Option<String>,
    pub shape: Shape,
    pub http2: bool,
    pub users: u64,
    pub repeat_ratio: f64,
    pub coupons: u64,
    pub start_in: Duration,
    pub health_duration: Duration,
    pub poll_timeout: Duration,
    /// Follow every n-th accepted ticket live to measure ticket-to-final latency.
    pub final_sample_every: u64,
    /// Times the whole campaign is listed at the end, for GetCampaign latency.
    pub campaign_reads: u32,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{what}: {refusal:?}")]
    Api {
        what: &'static str,
        refusal: Refusal,
    },
    #[error("unexpected answer: {0}")]
    Answer(String),
}

pub async fn run(options: Options) -> Result<Report, BenchError> {
    let pool = connect(&options)?;
    check_health(pool.first()).await?;
    let bar = progress_bar(options.progress);
    bar.set_message("health baseline");
    let health_shape = Shape {
        duration: options.health_duration,
        max_requests: None,
        ..options.shape
    };
    let health = health_baseline(&pool, health_shape).await;

    // The campaign starts `start_in` from now; the load starts at once, so requests
    // before the start are sent too, and must get nothing.
    let (campaign_id, starts_at) =
        create_campaign(pool.first(), options.coupons, options.start_in).await?;

    let accepted: AcceptedLog = Default::default();
    let final_latency = Arc::new(Latency::default());
    let (sample_tx, sample_rx) = mpsc::unbounded_channel();
    let sampler = tokio::spawn(follow_samples(
        pool.clone(),
        sample_rx,
        final_latency.clone(),
        options.poll_timeout,
    ));
    let users = Arc::new(Users::new(
        format!("bench-{:08x}", rand::random::<u32>()),
        options.users,
        options.repeat_ratio,
    ));
    let ambiguous = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let issue_request: Request = {
        let (campaign_id, accepted, users, ambiguous) = (
            campaign_id.clone(),
            accepted.clone(),
            users.clone(),
            ambiguous.clone(),
        );
        let every = options.final_sample_every.max(1);
        Arc::new(move |n, api: Api| {
            let (campaign_id, accepted, users, ambiguous, sample_tx) = (
                campaign_id.clone(),
                accepted.clone(),
                users.clone(),
                ambiguous.clone(),
                sample_tx.clone(),
            );
            async move {
                let user_id = users.next();
                let answer = api.issue(&campaign_id, &user_id).await;
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(refusal) => {
                        if refusal.code == "transport" {
                            ambiguous.fetch_add(1, Ordering::Relaxed);
                        }
                        return Err(refusal);
                    }
                };
                let answered = Instant::now();
                let ticket_id = answer.ticket_id;
                let accepted_at =
                    parse_time(answer.accepted_at.as_deref()).unwrap_or_else(Utc::now);
                if n % every == 0 {
                    let _ = sample_tx.send((ticket_id.clone(), answered));
                }
                accepted.lock().await.push(Accepted {
                    ticket_id,
                    user_id,
                    accepted_at,
                    answered,
                });
                Ok(())
            }
            .boxed()
        })
    };
    bar.set_message("IssueCoupon flood");
    let ticker = tick_progress(bar.clone(), accepted.clone());
    let issue = drive(&pool, options.shape, issue_request).await;
    ticker.abort();
    let load_ended = Instant::now();

    // Resolution: the last accepted tickets final means the log is drained behind them.
    bar.set_message("waiting for the last tickets");
    let mut accepted = std::mem::take(&mut *accepted.lock().await);
    accepted.sort_by_key(|a| a.answered);
    // After the sell-out a winner's repeat is answered with the winning ticket again:
    // one ticket, counted once.
    let mut seen = std::collections::HashSet::new();
    accepted.retain(|a| seen.insert(a.ticket_id.clone()));
    let tail: Vec<String> = accepted
        .iter()
        .rev()
        .take(50)
        .map(|a| a.ticket_id.clone())
        .collect();
    let get_result_latency = Latency::default();
    poll_all(
        &pool,
        &tail,
        &get_result_latency,
        options.poll_timeout,
        options.shape.connections,
    )
    .await;
    let resolved_after = load_ended.elapsed();

    bar.set_message(format!("polling {} tickets", accepted.len()));
    let ids: Vec<String> = accepted.iter().map(|a| a.ticket_id.clone()).collect();
    let finals = poll_all(
        &pool,
        &ids,
        &get_result_latency,
        options.poll_timeout,
        options.shape.connections,
    )
    .await;
    drop(sampler);

    bar.set_message("GetCampaign");
    let get_campaign_latency = Latency::default();
    // The first read after the drop apart too: it meets whatever the load left behind.
    let first_read = Latency::default();
    let (issued_coupons, listed_codes) = list_campaign(
        pool.first(),
        &campaign_id,
        &[&get_campaign_latency, &first_read],
    )
    .await?;
    for _ in 1..options.campaign_reads {
        list_campaign(pool.first(), &campaign_id, &[&get_campaign_latency]).await?;
    }
    bar.finish_and_clear();

    let record = RunRecord {
        campaigns: vec![CampaignRecord {
            id: campaign_id.clone(),
            total: options.coupons,
            starts_at,
            issued_coupons,
            listed_codes,
        }],
        tickets: accepted
            .iter()
            .map(|a| TicketRecord::answered(a, finals.get(&a.ticket_id), &campaign_id))
            .collect(),
        ambiguous_requests: ambiguous.load(Ordering::Relaxed),
    };
    let verdict = verify(&record);
    Ok(Report::new(
        &options,
        &health,
        &issue,
        &final_latency,
        &get_result_latency,
        &get_campaign_latency,
        &first_read,
        resolved_after,
        verdict,
    ))
}

/// One health check: the server is there and serving.
pub(crate) async fn check_health(api: &Api) -> Result<(), BenchError> {
    api.health().await.map_err(|refusal| BenchError::Api {
        what: "health check",
        refusal,
    })
}

/// Health checks in `shape`: the baseline every other rate is compared with.
pub(crate) async fn health_baseline(pool: &Pool, shape: Shape) -> Arc<Phase> {
    let health_request: Request = Arc::new(|_, api: Api| async move { api.health().await }.boxed());
    drive(pool, shape, health_request).await
}

/// Creates the run's campaign of `coupons`, starting `start_in` from now; returns its id
/// and its start as the server recorded it.
pub(crate) async fn create_campaign(
    api: &Api,
    coupons: u64,
    start_in: Duration,
) -> Result<(String, DateTime<Utc>), BenchError> {
    let starts_at = Utc::now() + TimeDelta::from_std(start_in).unwrap_or_default();
    let starts_at_text = starts_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let name = format!("coupon-bench {}", Utc::now().format("%Y-%m-%d %H:%M:%S"));
    let created = api
        .create_campaign(&name, coupons, &starts_at_text)
        .await
        .map_err(|refusal| BenchError::Api {
            what: "CreateCampaign",
            refusal,
        })?;
    let campaign_id = created.campaign.id;
    if campaign_id.is_empty() {
        return Err(BenchError::Answer("CreateCampaign: no campaign id".into()));
    }
    let starts_at = parse_time(created.campaign.starts_at.as_deref()).unwrap_or(starts_at);
    Ok((campaign_id, starts_at))
}

fn connect(options: &Options) -> Result<Pool, BenchError> {
    connect_pool(
        &options.targets,
        options.http2,
        options.shape.connections,
        options.admin_token.as_deref(),
    )
}

/// One client per target over HTTP/1.1 (it opens connections as needed); with h2c,
/// `connections` clients per target, each one multiplexed connection.
pub(crate) fn connect_pool(
    targets: &[String],
    http2: bool,
    connections: usize,
    admin_token: Option<&str>,
) -> Result<Pool, BenchError> {
    let mut apis = Vec::new();
    for target in targets {
        // h2c multiplexes on one connection per client: open as many as asked.
        let per_target = if http2 { connections.max(1) } else { 1 };
        for _ in 0..per_target {
            apis.push(Api::new(target, http2, admin_token.map(str::to_owned))?);
        }
    }
    Ok(Pool::new(apis))
}

pub(crate) fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text?.parse().ok()
}

pub(crate) fn is_final(result: &IssueResult) -> bool {
    result.status.as_deref() != Some(PENDING)
}

/// Follows sampled tickets from their acceptance to their final status. Tickets of a
/// campaign are decided in log order, so only the oldest few pending samples are polled
/// each round: polling them all would load the server in proportion to its backlog.
/// Samples are kept at least `SPACING` apart, so that at any rate the follower keeps up
/// (a backlog of its own would be counted as ticket-to-final latency) and its polls stay
/// a small, bounded share of the load.
async fn follow_samples(
    pool: Pool,
    mut samples: mpsc::UnboundedReceiver<(String, Instant)>,
    latency: Arc<Latency>,
    limit: Duration,
) {
    const WATCHED: usize = 8;
    const SPACING: Duration = Duration::from_millis(5);
    let mut pending: std::collections::VecDeque<(String, Instant)> = Default::default();
    let mut last_kept: Option<Instant> = None;
    let mut open = true;
    while open || !pending.is_empty() {
        loop {
            match samples.try_recv() {
                Ok((ticket, answered)) => {
                    if last_kept.is_none_or(|kept| answered >= kept + SPACING) {
                        last_kept = Some(answered);
                        pending.push_back((ticket, answered));
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let watched: Vec<(String, Instant)> = pending.iter().take(WATCHED).cloned().collect();
        let results =
            futures::future::join_all(watched.iter().map(|(t, _)| pool.pick().result(t))).await;
        let now = Instant::now();
        let mut done = std::collections::HashSet::new();
        for ((ticket, since), result) in watched.into_iter().zip(results) {
            match result {
                Ok(r) if is_final(&r) => {
                    latency.record(now - since);
                    done.insert(ticket);
                }
                _ if now - since > limit => {
                    done.insert(ticket);
                }
                _ => {}
            }
        }
        pending.retain(|(t, _)| !done.contains(t));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls every ticket until final (or `limit`); returns the final answers.
pub(crate) async fn poll_all(
    pool: &Pool,
    tickets: &[String],
    latency: &Latency,
    limit: Duration,
    concurrency: usize,
) -> BTreeMap<String, IssueResult> {
    let deadline = Instant::now() + limit;
    stream::iter(tickets.iter().cloned())
        .map(|ticket| async move {
            loop {
                let sent = Instant::now();
                let answer = pool.pick().result(&ticket).await;
                latency.record(sent.elapsed());
                match answer {
                    Ok(r) if is_final(&r) => return Some((ticket, r)),
                    _ if Instant::now() > deadline => return None,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Lists the campaign page by page. Each page's latency runs from the request to the
/// last byte of its answer, like any HTTP client's timing; decoding it is the bench's
/// own work and comes after.
/// Every page of the campaign; each page's latency goes into each of `latencies`.
pub(crate) async fn list_campaign(
    api: &Api,
    id: &str,
    latencies: &[&Latency],
) -> Result<(u64, Vec<String>), BenchError> {
    let refused = |refusal| BenchError::Api {
        what: "GetCampaign",
        refusal,
    };
    let mut codes = Vec::new();
    let mut token = String::new();
    loop {
        let sent = Instant::now();
        let bytes = api.get_campaign(id, &token).await.map_err(refused)?;
        for latency in latencies {
            latency.record(sent.elapsed());
        }
        let page: CampaignPage = decode(&bytes).map_err(refused)?;
        codes.extend(page.coupons.into_iter().map(|coupon| coupon.code));
        if page.next_page_token.is_empty() {
            let issued = page
                .campaign
                .issued_coupons
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok((issued, codes));
        }
        token = page.next_page_token;
    }
}

pub(crate) fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn tick_progress(bar: ProgressBar, accepted: AcceptedLog) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n = accepted.lock().await.len();
            let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("IssueCoupon flood: {n} accepted ({rate:.0}/s)"));
        }
    })
}
