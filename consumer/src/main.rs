//! `consumer`: an issuing worker of the distributed mode. It joins the consumer group,
//! and decides its partitions' requests in log order, in PostgreSQL transactions.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coupon::infra::telemetry;
use coupon::modes::distributed::{self, ConsumerArgs, ConsumerAuditArgs, ConsumerRewindArgs};
use coupon::modes::shutdown;
use tokio_util::sync::CancellationToken;

/// Coupon issuing worker (distributed mode): decides issue requests from Kafka into
/// PostgreSQL. Run several; the group spreads partitions over them and moves them when
/// one dies. SIGTERM finishes the batch in flight and leaves the group. Without a
/// command it runs the worker.
#[derive(Parser, Debug)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    args: ConsumerArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decide the topic again in memory, from its first record up to the offsets
    /// PostgreSQL has decided, and compare every campaign, coupon and ticket with the
    /// database. Read-only (one snapshot, no group): safe while the service runs. Exit 0
    /// when identical, 1 listing the first differences, 2 when it could not run.
    Audit(ConsumerAuditArgs),
    /// Move decided offsets back in PostgreSQL so the workers decide the topic again from
    /// there (`--to earliest`, an offset, or an RFC 3339 instant; `--partition N` to pick
    /// partitions). Never forward. A replay changes no stored row.
    Rewind(ConsumerRewindArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command, args } = Cli::parse();
    match command {
        Some(Command::Audit(args)) => {
            telemetry::init(args.common.telemetry.log_format);
            distributed::audit(args).await
        }
        Some(Command::Rewind(args)) => {
            telemetry::init(args.common.telemetry.log_format);
            distributed::rewind(args).await
        }
        None => work(args).await,
    }
}

async fn work(args: ConsumerArgs) -> ExitCode {
    telemetry::init(args.common.telemetry.log_format);
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    match distributed::run_consumer(args, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "consumer failed");
            ExitCode::FAILURE
        }
    }
}
