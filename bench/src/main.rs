//! `coupon-bench`: load and verification tool for the coupon service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use coupon_bench::load::{Mode, Shape};
use coupon_bench::run::{self, Options};

/// Load-tests a coupon service deployment over its public Connect API and verifies the
/// invariants of DESIGN §5 from what the API returns. It creates its own campaign,
/// measures the server's health check as a baseline, floods IssueCoupon, polls every
/// ticket to a final status and lists the campaign. Exit status 0 when every invariant
/// holds, 1 when one is violated, 2 when the run could not be made.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Base URL of an API node; repeat for several producers (requests are spread).
    #[arg(long = "target", default_value = "http://127.0.0.1:8080")]
    targets: Vec<String>,

    /// Admin bearer token for creating and reading the run's campaign.
    #[arg(long, env = "COUPON_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// open: a fixed arrival rate (--rate), latency counted from when each request was
    /// due; closed: --connections requests in flight, as fast as they go.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    mode: Mode,

    /// Requests per second in open mode.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,

    /// Seconds of IssueCoupon load (the health baseline is measured before, separately).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Stop after this many IssueCoupon requests, even if time remains.
    #[arg(long)]
    requests: Option<u64>,

    /// Distinct users at most; with fewer users than requests, users repeat.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,

    /// Share of requests (0..1) made by a user who already asked.
    #[arg(long, default_value_t = 0.0)]
    repeat_ratio: f64,

    /// Coupons of the campaign the run creates.
    #[arg(long, default_value_t = 10_000)]
    coupons: u64,

    /// The campaign starts this many seconds after creation; the load begins at once,
    /// so requests before the start are sent and must get nothing.
    #[arg(long, default_value_t = 0.0)]
    start_in: f64,

    /// Concurrent requests (closed loop) / HTTP connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// Speak h2c (HTTP/2 without TLS) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,

    /// Seconds of health-check load measured as the baseline.
    #[arg(long, default_value_t = 3.0)]
    health_duration: f64,

    /// Seconds to wait for tickets to become final after the load.
    #[arg(long, default_value_t = 60.0)]
    poll_timeout: f64,

    /// Follow every n-th accepted ticket live, for ticket-to-final latency (at most one
    /// every 5 ms, whatever the rate).
    #[arg(long, default_value_t = 10)]
    final_sample_every: u64,

    /// Times the whole campaign is listed with GetCampaign at the end (latency figures).
    #[arg(long, default_value_t = 1)]
    campaign_reads: u32,

    /// Write every figure to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,

    /// No progress display (e.g. in CI logs).
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
        users: cli.users,
        repeat_ratio: cli.repeat_ratio,
        coupons: cli.coupons,
        start_in: Duration::from_secs_f64(cli.start_in.max(0.0)),
        health_duration: Duration::from_secs_f64(cli.health_duration.max(0.1)),
        poll_timeout: Duration::from_secs_f64(cli.poll_timeout.max(1.0)),
        final_sample_every: cli.final_sample_every,
        campaign_reads: cli.campaign_reads.max(1),
        progress: !cli.quiet,
    };
    let report = match run::run(options).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("coupon-bench: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    if let Some(path) = cli.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&path, json));
        if let Err(error) = written {
            eprintln!("coupon-bench: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
