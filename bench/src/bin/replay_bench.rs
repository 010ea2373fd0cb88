//! `replay-bench`: how fast a backlog drains, a store is rebuilt and `audit` runs, in
//! each mode, against a bulk insert of the same rows measured in the same run.
//!   target/release/replay-bench embedded
//!   target/release/replay-bench distributed   # KAFKA_BROKERS, DATABASE_URL

use clap::{Parser, ValueEnum};
use coupon::domain::CodeAlphabet;
use coupon_bench::replay::{self, Workload};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Embedded,
    Distributed,
}

/// The campaigns' code alphabet (README, "Coupon codes").
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Alphabet {
    Readable,
    Full,
}

/// Builds a backlog of issue requests in the log (the service's own code, no worker
/// running), then times the built binaries: one worker draining it, a rebuild into an
/// empty store, `audit`; and, as the limit, the same rows bulk-inserted into an empty
/// store. Prints each as records/s and as a ratio to the bulk insert.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    mode: Mode,
    /// Issue requests in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Campaigns the requests are spread over.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    campaigns: u32,
    /// Coupons per campaign.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(i64).range(1..))]
    coupons: i64,
    /// Distinct users per campaign (requests pick among them, so some repeat).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// The code alphabet of the campaigns: the decision's code generation differs.
    #[arg(long, value_enum, default_value_t = Alphabet::Readable)]
    code_alphabet: Alphabet,
    /// Where the data goes (a temp dir when absent); large: ~0.5 KiB per request.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:59092")]
    kafka_brokers: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://coupon:coupon@127.0.0.1:55432/coupon"
    )]
    database_url: String,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let workload = Workload {
        campaigns: cli.campaigns,
        coupons: cli.coupons,
        users: cli.users,
        requests: cli.requests,
        alphabet: match cli.code_alphabet {
            Alphabet::Readable => CodeAlphabet::Readable,
            Alphabet::Full => CodeAlphabet::Full,
        },
    };
    let temp = tempfile::tempdir_in(cli.dir.as_deref().unwrap_or(&std::env::temp_dir()))
        .expect("a work dir");
    let figures = match cli.mode {
        Mode::Embedded => replay::embedded::run(temp.path(), workload).await,
        Mode::Distributed => {
            let services = replay::distributed::Services {
                brokers: cli.kafka_brokers,
                database_url: cli.database_url,
            };
            replay::distributed::run(temp.path(), &services, workload).await
        }
    };
    print!("{}", figures.report());
    if let Some(path) = cli.json {
        let json = serde_json::to_string_pretty(&figures).expect("figures as JSON");
        std::fs::write(&path, json).expect("write the JSON");
    }
}
