//! `consumer`: an issuing worker of the distributed mode. It joins the consumer group,
//! and decides its partitions' requests in log order, in PostgreSQL transactions.

use std::process::ExitCode;

use clap::Parser;
use coupon::infra::telemetry;
use coupon::modes::distributed::{self, ConsumerArgs};
use coupon::modes::shutdown;
use tokio_util::sync::CancellationToken;

/// Coupon issuing worker (distributed mode): decides issue requests from Kafka into
/// PostgreSQL. Run several; the group spreads partitions over them and moves them when
/// one dies. SIGTERM finishes the batch in flight and leaves the group.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: ConsumerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { args } = Cli::parse();
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
