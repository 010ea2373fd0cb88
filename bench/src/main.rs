//! `coupon-bench`: load and verification tool for the coupon service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use coupon_bench::charts;
use coupon_bench::load::{Mode, Shape};
use coupon_bench::poll_storm::{self, PollMode, PollPlan, StormOptions};
use coupon_bench::run::{self, Options};
use serde::Serialize;

/// Load-tests a coupon service deployment over its public Connect API and verifies the
/// invariants of DESIGN §5 from what the API returns. It creates its own campaign and
/// measures the server's health check as a baseline. Exit status 0 when every invariant
/// holds, 1 when one is violated, 2 when the run could not be made.
///
/// Scenario `flood` (the default): floods IssueCoupon, polls every ticket to a final
/// status and lists the campaign.
///
/// Scenario `poll-storm`: many users each issue one ticket and wait for its result,
/// by long-polls or short polls (--poll); optionally, with the issuing worker paused by
/// --pause-cmd, PENDING tickets are polled hard (--pending-poll-secs) and many
/// long-polls wait at once (--waiters). Figures include the server's GetIssueResult
/// reads by source, from its /metrics. Flags under "Flood scenario" do not apply to it.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// What to run: `flood` (IssueCoupon as fast as asked) or `poll-storm` (users
    /// waiting for their result).
    #[arg(long, value_enum, default_value_t = Scenario::Flood)]
    scenario: Scenario,

    /// Base URL of an API node; repeat for several producers (requests are spread).
    #[arg(long = "target", default_value = "http://127.0.0.1:8080")]
    targets: Vec<String>,

    /// Admin bearer token for creating and reading the run's campaign.
    #[arg(long, env = "COUPON_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// open: a fixed arrival rate (--rate), latency counted from when each request was
    /// due; closed: --connections requests in flight, as fast as they go.
    #[arg(long, value_enum, default_value_t = Mode::Closed, help_heading = "Flood scenario")]
    mode: Mode,

    /// Requests per second in open mode.
    #[arg(long, default_value_t = 5_000, help_heading = "Flood scenario")]
    rate: u64,

    /// Seconds of IssueCoupon load (the health baseline is measured before, separately).
    #[arg(long, default_value_t = 10.0, help_heading = "Flood scenario")]
    duration: f64,

    /// Stop after this many IssueCoupon requests, even if time remains.
    #[arg(long, help_heading = "Flood scenario")]
    requests: Option<u64>,

    /// Distinct users at most; with fewer users than requests, users repeat (flood).
    /// poll-storm: users of the storm, each issuing one ticket.
    /// [default: 1000000 for flood, 100000 for poll-storm]
    #[arg(long)]
    users: Option<u64>,

    /// Share of requests (0..1) made by a user who already asked.
    #[arg(long, default_value_t = 0.0, help_heading = "Flood scenario")]
    repeat_ratio: f64,

    /// Coupons of the campaign the run creates.
    #[arg(long, default_value_t = 10_000)]
    coupons: u64,

    /// The campaign starts this many seconds after creation; the load begins at once,
    /// so requests before the start are sent and must get nothing.
    #[arg(long, default_value_t = 0.0, help_heading = "Flood scenario")]
    start_in: f64,

    /// Concurrent requests (closed loop) / HTTP connections. poll-storm: IssueCoupon
    /// requests in flight, h2c connections per target, and --pending-poll-secs workers.
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// Speak h2c (HTTP/2 without TLS) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,

    /// Seconds of health-check load measured as the baseline.
    #[arg(long, default_value_t = 3.0)]
    health_duration: f64,

    /// Seconds to wait for tickets to become final after the load. poll-storm: how long
    /// each user keeps trying (OVERLOADED retries, then polls from their ticket).
    #[arg(long, default_value_t = 60.0)]
    poll_timeout: f64,

    /// Follow every n-th accepted ticket live, for ticket-to-final latency (at most one
    /// every 5 ms, whatever the rate).
    #[arg(long, default_value_t = 10, help_heading = "Flood scenario")]
    final_sample_every: u64,

    /// Times the whole campaign is listed with GetCampaign at the end (latency figures).
    #[arg(long, default_value_t = 1, help_heading = "Flood scenario")]
    campaign_reads: u32,

    /// Draw charts of the run into this directory (created if missing), as SVG files:
    /// accepted.svg (accepted and refused IssueCoupon per second over the run),
    /// latency.svg (accept and ticket-to-final latency by percentile, HDR style),
    /// refusals.svg (refusals per second, one line per code).
    #[arg(long, value_name = "DIR", help_heading = "Flood scenario")]
    svg: Option<PathBuf>,

    /// Write every figure to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,

    /// No progress display (e.g. in CI logs).
    #[arg(long)]
    quiet: bool,

    // Last: its help heading would carry over to the flags after it.
    #[command(flatten)]
    storm: StormCli,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Flood,
    PollStorm,
}

/// The poll-storm scenario's own flags.
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Poll-storm scenario")]
struct StormCli {
    /// How storm users wait for their result: `long` (GetIssueResult with waitMs =
    /// --wait-ms, again while PENDING) or `short` (no wait; pause retryAfterMs, or
    /// --poll-interval-ms, between polls).
    #[arg(long, value_enum, default_value_t = PollMode::Long)]
    poll: PollMode,

    /// Long-polls' waitMs: how long the server may hold a PENDING answer (at most
    /// 30000, the server's cap). Also the wait of --waiters.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=30_000))]
    wait_ms: u64,

    /// Short polls: a fixed pause between polls, ignoring the server's retryAfterMs
    /// [default: retryAfterMs, 20 ms when the answer has none].
    #[arg(long)]
    poll_interval_ms: Option<u64>,

    /// Shell command (run with `sh -c`) that pauses the service's issuing worker so
    /// tickets stay PENDING, e.g. "kill -STOP 1234". Needs --resume-cmd.
    #[arg(long)]
    pause_cmd: Option<String>,

    /// Shell command that resumes the worker, e.g. "kill -CONT 1234". Run after the
    /// paused phases, also when they fail or on Ctrl-C.
    #[arg(long)]
    resume_cmd: Option<String>,

    /// Seconds of polling held PENDING tickets without a wait, closed loop with
    /// --connections workers (0 = skip; needs --pause-cmd).
    #[arg(long, default_value_t = 0.0)]
    pending_poll_secs: f64,

    /// Tickets issued and held PENDING for --pending-poll-secs.
    #[arg(long, default_value_t = 1_000)]
    pending_tickets: u64,

    /// Long-polls waiting at once on held tickets, over h2c on --connections
    /// connections per target; each must be answered final after the resume (0 = skip;
    /// needs --pause-cmd).
    #[arg(long, default_value_t = 0)]
    waiters: u64,

    /// The API server's process id: its resident memory (/proc/<pid>/status VmRSS) is
    /// sampled before and while --waiters wait. Without it, no RSS figure.
    #[arg(long)]
    server_pid: Option<u32>,

    /// Storm GetIssueResult requests in flight at most, across all users (the rest wait
    /// their turn; each HTTP/1.1 request in flight is a connection).
    #[arg(long, default_value_t = 8_192, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_polls_in_flight: u64,

    /// Prometheus page to read the server's result reads from; repeat for several
    /// nodes (counters are summed) [default: <target>/metrics for each --target].
    #[arg(long = "metrics-url")]
    metrics_urls: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Flood => flood(cli).await,
        Scenario::PollStorm => poll_storm(cli).await,
    }
}

async fn flood(cli: Cli) -> ExitCode {
    if !(0.0..=1.0).contains(&cli.repeat_ratio) {
        eprintln!("--repeat-ratio must be between 0 and 1");
        return ExitCode::from(2);
    }
    let options = Options {
        targets: cli.targets,
        admin_token: cli.admin_token,
        shape: Shape {
            mode: cli.mode,
            rate: cli.rate,
            connections: cli.connections.max(1),
            duration: Duration::from_secs_f64(cli.duration.max(0.0)),
            max_requests: cli.requests,
        },
        http2: cli.http2,
        users: cli.users.unwrap_or(1_000_000),
        repeat_ratio: cli.repeat_ratio,
        coupons: cli.coupons,
        start_in: Duration::from_secs_f64(cli.start_in.max(0.0)),
        health_duration: Duration::from_secs_f64(cli.health_duration.max(0.1)),
        poll_timeout: Duration::from_secs_f64(cli.poll_timeout.max(1.0)),
        final_sample_every: cli.final_sample_every,
        campaign_reads: cli.campaign_reads.max(1),
        progress: !cli.quiet,
    };
    // A chart directory that cannot be made fails the run before the load, not after.
    if let Some(dir) = &cli.svg
        && let Err(error) = charts::prepare(dir)
    {
        eprintln!("coupon-bench: {error}");
        return ExitCode::from(2);
    }
    let run = run::run(options).await;
    let drawn = match (&run, &cli.svg) {
        (Ok(report), Some(dir)) => Some(charts::write_all(dir, &report.charts)),
        _ => None,
    };
    let status = finish(run, cli.json.as_deref());
    match drawn {
        Some(Ok(files)) => {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            println!("charts: {}", files.join(" "));
            status
        }
        Some(Err(error)) => {
            eprintln!("coupon-bench: {error}");
            ExitCode::from(2)
        }
        None => status,
    }
}

async fn poll_storm(cli: Cli) -> ExitCode {
    let options = storm_options(&cli);
    if let Err(message) = options.check() {
        eprintln!("coupon-bench: {message}");
        return ExitCode::from(2);
    }
    finish(poll_storm::run(options).await, cli.json.as_deref())
}

fn storm_options(cli: &Cli) -> StormOptions {
    let s = &cli.storm;
    StormOptions {
        targets: cli.targets.clone(),
        admin_token: cli.admin_token.clone(),
        http2: cli.http2,
        connections: cli.connections.max(1),
        coupons: cli.coupons,
        users: cli.users.unwrap_or(100_000),
        health_duration: Duration::from_secs_f64(cli.health_duration.max(0.1)),
        poll_timeout: Duration::from_secs_f64(cli.poll_timeout.max(1.0)),
        plan: PollPlan {
            mode: s.poll,
            wait: Duration::from_millis(s.wait_ms),
            interval: s.poll_interval_ms.map(Duration::from_millis),
        },
        pause_cmd: s.pause_cmd.clone(),
        resume_cmd: s.resume_cmd.clone(),
        pending_poll: Duration::from_secs_f64(s.pending_poll_secs.max(0.0)),
        pending_tickets: s.pending_tickets,
        waiters: s.waiters,
        server_pid: s.server_pid,
        max_polls_in_flight: usize::try_from(s.max_polls_in_flight).unwrap_or(usize::MAX),
        metrics_urls: s.metrics_urls.clone(),
        progress: !cli.quiet,
    }
}

/// Prints the table, writes the JSON when asked; the exit status from the violations.
/// What a scenario reports: a table for people, JSON for tools, its violations.
trait Outcome: Serialize {
    fn table(&self) -> String;
    fn violations(&self) -> &[String];
}

impl Outcome for coupon_bench::report::Report {
    fn table(&self) -> String {
        self.table()
    }
    fn violations(&self) -> &[String] {
        &self.violations
    }
}

impl Outcome for poll_storm::report::StormReport {
    fn table(&self) -> String {
        self.table()
    }
    fn violations(&self) -> &[String] {
        &self.violations
    }
}

/// Prints the report (and writes its JSON); the exit status: 0 when every invariant
/// holds, 1 when one is violated, 2 when the run could not be made.
fn finish<R: Outcome, E: std::fmt::Display>(run: Result<R, E>, json: Option<&Path>) -> ExitCode {
    let report = match run {
        Ok(report) => report,
        Err(error) => {
            eprintln!("coupon-bench: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    if let Some(path) = json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json));
        if let Err(error) = written {
            eprintln!("coupon-bench: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.violations().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
