//! `coupon`: the whole service in one process (the embedded mode).

use std::process::ExitCode;

use clap::Parser;
use coupon::infra::telemetry;
use coupon::modes::embedded::{self, EmbeddedArgs};
use coupon::modes::shutdown;

/// First-come-first-served coupon issuance service, embedded mode: the Connect API and
/// the issuing worker in one process, state and a durable log in SQLite files under
/// the data dir. Nothing else to install.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: EmbeddedArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { args } = Cli::parse();
    telemetry::init(args.telemetry.log_format);
    let running = match embedded::start(args).await {
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
