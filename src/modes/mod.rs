//! Composition roots: each mode wires the same use cases to its own adapters.

pub mod distributed;
pub mod embedded;
pub mod shutdown;

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::application::{CreateCampaign, GetCampaign, GetIssueResult, IssueCoupon, issue_coupon};
use crate::domain::TicketSeal;
use crate::domain::ports::{CampaignRepository, IssueLog, TicketRepository};
use crate::interfaces::rpc::{CampaignApi, CouponApi, server};

/// The API both modes serve: every use case wired to one store and one log.
pub fn api<S, L>(store: S, log: L, seal: TicketSeal, accept: issue_coupon::Settings) -> axum::Router
where
    S: CampaignRepository + TicketRepository + Clone,
    L: IssueLog + Clone,
{
    let campaigns = CampaignApi {
        create_campaign: CreateCampaign::new(store.clone(), log.clone()),
        get_campaign: GetCampaign::new(store.clone()),
        seal: seal.clone(),
    };
    let coupons = CouponApi {
        issue_coupon: IssueCoupon::new(store.clone(), log, seal.clone(), accept),
        get_issue_result: GetIssueResult::new(store, seal.clone()),
        seal,
    };
    server::app(campaigns, coupons).0
}

/// Binds the API's listener; returns it with the address it actually got (port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
