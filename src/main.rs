//! `coupon`: the whole service in one process (the embedded mode).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coupon::infra::telemetry::{self, LogFormat};
use coupon::modes::{AdminArgs, ServeArgs, embedded, shutdown};

// mimalloc: the request path allocates and frees many small buffers across threads, and
// large response bodies (a page of 10,000 coupons); glibc malloc showed ~10 % of the
// server's samples and page faults from mmap/munmap of every large buffer.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// First-come-first-served coupon issuance service, embedded mode: the Connect API and
/// the issuing worker in one process, state and a durable log in SQLite files under
/// the data dir. Nothing else to install.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Address to serve the API on (Connect, gRPC, gRPC-Web; HTTP/1.1 and h2c).
    #[arg(long, env = "COUPON_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Directory for the database, the log and the secret key (created if missing).
    /// Back it up as a whole: the key is what makes codes reproducible.
    #[arg(long, env = "COUPON_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    #[command(flatten)]
    admin: AdminArgs,

    #[command(flatten)]
    serve: ServeArgs,

    /// Log format on stderr; RUST_LOG sets the level (default info).
    #[arg(long, env = "COUPON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let config = embedded::Config {
        listen: args.listen,
        data_dir: args.data_dir,
        admin: args.admin,
        serve: args.serve,
    };
    let running = match embedded::start(config).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    shutdown::cancel_on_signal(running.shutdown_token());
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
