//! The HTTP server: Connect (JSON and binary), gRPC and gRPC-Web on one port, plus
//! `grpc.health.v1.Health/Check`, the benchmarks' no-op baseline.

use std::sync::Arc;

use connectrpc_health::StaticChecker;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::proto::coupon::v1::{CampaignServiceExt, CouponServiceExt};
use super::{CampaignApi, CouponApi};
use crate::domain::ports::{CampaignRepository, IssueLog, TicketRepository};

pub const SERVICE_NAMES: [&str; 2] = ["coupon.v1.CampaignService", "coupon.v1.CouponService"];

/// The axum app with every service mounted, and the health checker's handle.
pub fn app<R, L, T>(
    campaigns: CampaignApi<R, L>,
    coupons: CouponApi<R, L, T>,
) -> (axum::Router, Arc<StaticChecker>)
where
    R: CampaignRepository,
    L: IssueLog,
    T: TicketRepository,
{
    let router = Arc::new(coupons).register(connectrpc::Router::new());
    let router = Arc::new(campaigns).register(router);
    let (router, health) = connectrpc_health::install_static(router, SERVICE_NAMES);
    let app = axum::Router::new().fallback_service(router.into_axum_service());
    (app, health)
}

/// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
