//! Requirement: an admin creates a campaign that starts by itself at its start instant.

use chrono::{DateTime, Utc};

use crate::domain::ports::{CampaignRepository, IssueLog, LogError, StoreError};
use crate::domain::{Campaign, CampaignName, LogEvent, NewCampaign, TotalCoupons};

pub struct Input {
    pub name: CampaignName,
    pub total_coupons: TotalCoupons,
    pub starts_at: DateTime<Utc>,
}

pub struct Output {
    pub campaign: Campaign,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct CreateCampaign<R, L> {
    campaigns: R,
    log: L,
}

impl<R: CampaignRepository, L: IssueLog> CreateCampaign<R, L> {
    pub fn new(campaigns: R, log: L) -> Self {
        Self { campaigns, log }
    }

    /// Appends the campaign to the log first (the log is the source of truth and gives
    /// the campaign its origin), then records it for readers. If this process dies in
    /// between, the issuing worker records it from the log.
    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let new = NewCampaign::new(input.name, input.total_coupons, input.starts_at);
        let appended = self
            .log
            .append(LogEvent::CampaignCreated(new.clone()))
            .await?;
        let campaign = new.placed_at(appended.position);
        self.campaigns.insert_campaign(&campaign).await?;
        tracing::info!(campaign_id = %campaign.id, total = campaign.total_coupons.get(),
            starts_at = %campaign.starts_at, "campaign created");
        Ok(Output { campaign })
    }
}
