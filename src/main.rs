//! `coupon`: the whole service in one process (the embedded mode).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coupon::infra::telemetry;
use coupon::modes::embedded::{self, EmbeddedArgs, EmbeddedAuditArgs, EmbeddedRewindArgs};
use coupon::modes::shutdown;

/// First-come-first-served coupon issuance service, embedded mode: the Connect API and
/// the issuing worker in one process, state and a durable log in SQLite files under
/// the data dir. Nothing else to install. Without a command it serves.
#[derive(Parser, Debug)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    args: EmbeddedArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decide the data dir's log again in memory and compare every campaign, coupon and
    /// ticket with its state file. Read-only: safe while the service runs. Exit 0 when
    /// identical, 1 listing the first differences, 2 when it could not run.
    Audit(EmbeddedAuditArgs),
    /// Move the decided offset back so the next start decides the log again from there
    /// (`--to earliest`, an offset, or an RFC 3339 instant). Never forward. The service
    /// must be stopped. A replay changes no stored row.
    Rewind(EmbeddedRewindArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command, args } = Cli::parse();
    match command {
        Some(Command::Audit(args)) => {
            telemetry::init(args.telemetry.log_format);
            embedded::audit(args).await
        }
        Some(Command::Rewind(args)) => {
            telemetry::init(args.telemetry.log_format);
            embedded::rewind(args).await
        }
        None => serve(args).await,
    }
}

async fn serve(args: EmbeddedArgs) -> ExitCode {
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
