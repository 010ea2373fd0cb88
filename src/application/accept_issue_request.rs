//! Requirement: a user asks for a coupon. The request is accepted (durably appended to
//! the log, a ticket returned) or refused at once when it surely cannot win. Whether it
//! wins is decided later, in log order, by `decide_issue_requests`.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::campaign_cache::CampaignCache;
use crate::domain::ports::{CampaignRepository, IssueLog, LogError, StoreError};
use crate::domain::{Campaign, CampaignId, LogEvent, Placement, TicketId, TicketSeal, UserId};

pub struct Input {
    pub campaign_id: CampaignId,
    pub user_id: UserId,
}

pub struct Output {
    /// The sealed ticket id the client polls with.
    pub ticket: String,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("campaign {0} not found")]
    NotFound(CampaignId),
    #[error("campaign has not started; it starts at {starts_at}")]
    NotStarted { starts_at: DateTime<Utc> },
    #[error("campaign is sold out")]
    SoldOut,
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Settings {
    /// How long a cached campaign (its issued count) is trusted.
    pub campaign_ttl: Duration,
    /// Requests earlier than `starts_at - clock_skew_allowance` by this node's clock are
    /// refused at once; later ones go to the log, whose append clock decides. Zero when
    /// this node's clock is the log's clock (the embedded mode).
    pub clock_skew_allowance: TimeDelta,
}

pub struct AcceptIssueRequest<R, L> {
    campaigns: CampaignCache<R>,
    log: L,
    seal: TicketSeal,
    clock_skew_allowance: TimeDelta,
}

impl<R: CampaignRepository, L: IssueLog> AcceptIssueRequest<R, L> {
    pub fn new(campaigns: R, log: L, seal: TicketSeal, settings: Settings) -> Self {
        Self {
            campaigns: CampaignCache::new(campaigns, settings.campaign_ttl),
            log,
            seal,
            clock_skew_allowance: settings.clock_skew_allowance,
        }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let campaign = self
            .campaigns
            .get(input.campaign_id)
            .await?
            .ok_or(Error::NotFound(input.campaign_id))?;
        // Checked: an absurd allowance must refuse nothing rather than panic.
        let latest_clock = Utc::now()
            .checked_add_signed(self.clock_skew_allowance)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if latest_clock < campaign.starts_at {
            return Err(Error::NotStarted {
                starts_at: campaign.starts_at,
            });
        }
        // A stale "not sold out" only costs an append the worker will decide SOLD_OUT.
        if campaign.is_sold_out() {
            // Boxed for the same reason as the cache's miss: only this refusal reads.
            return Box::pin(self.holder_ticket(&campaign, &input.user_id)).await;
        }
        let ticket_id = TicketId::generate();
        let appending = Instant::now();
        let appended = self
            .log
            .append(
                LogEvent::IssueRequested {
                    ticket_id,
                    campaign_id: input.campaign_id,
                    user_id: input.user_id,
                },
                Placement::Home(campaign.origin.partition),
            )
            .await?;
        // The durable append's share of the accept latency (the broker's acks=all, or
        // the embedded log's group commit).
        metrics::histogram!("coupon_log_append_seconds").record(appending.elapsed().as_secs_f64());
        metrics::counter!("coupon_tickets_accepted_total").increment(1);
        Ok(Output {
            ticket: self.seal.seal_at(ticket_id, appended.position),
            accepted_at: appended.appended_at,
        })
    }

    /// After a sell-out, a user who won one of the coupons (often one whose first
    /// answer was lost, retrying) gets their winning ticket back, whose result carries
    /// the coupon; everyone else is refused. Sold out is final, so one index probe
    /// decides it, and only on this refusal path.
    async fn holder_ticket(&self, campaign: &Campaign, user: &UserId) -> Result<Output, Error> {
        match self
            .campaigns
            .repository()
            .find_holder_coupon(campaign.id, user)
            .await?
        {
            Some(coupon) => Ok(Output {
                ticket: self
                    .seal
                    .seal_as_handed_out(coupon.ticket_id, coupon.ticket_position),
                accepted_at: coupon.issued_at,
            }),
            None => Err(Error::SoldOut),
        }
    }
}
