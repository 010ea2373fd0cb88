//! `producer`: an API node of the distributed mode. It validates requests, appends them
//! to Kafka and answers with a ticket once the broker acknowledged; PostgreSQL serves reads.

use std::process::ExitCode;

use clap::Parser;
use coupon::infra::telemetry;
use coupon::modes::distributed::{self, ProducerArgs};
use coupon::modes::shutdown;
use tokio_util::sync::CancellationToken;

/// Coupon service API node (distributed mode): the Connect API on Kafka + PostgreSQL.
/// Run as many as you like behind a load balancer; every node needs the same secret key.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: ProducerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { args } = Cli::parse();
    telemetry::init(args.common.telemetry.log_format);
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    let result = match distributed::start_producer(args, stop).await {
        Ok(running) => running.wait().await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "producer failed");
            ExitCode::FAILURE
        }
    }
}
