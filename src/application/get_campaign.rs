//! Requirement: an admin reads a campaign and the coupons it issued, in issue order.

use chrono::{DateTime, Utc};

use crate::domain::ports::{CampaignRepository, StoreError};
use crate::domain::{Campaign, CampaignId, Coupon};

/// The default and largest page: a 10,000-coupon campaign fits in one.
pub const MAX_PAGE_SIZE: u32 = 10_000;

pub struct Input {
    pub campaign_id: CampaignId,
    /// Coupons after this ordinal (0 for the first page).
    pub after_ordinal: u64,
    /// 0 means the default; larger than `MAX_PAGE_SIZE` is capped.
    pub page_size: u32,
}

pub struct Output {
    pub campaign: Campaign,
    pub coupons: Vec<Coupon>,
    /// The ordinal to continue after, when more coupons follow.
    pub next_after_ordinal: Option<u64>,
    /// When the last coupon was issued, once the campaign is sold out.
    pub sold_out_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("campaign {0} not found")]
    NotFound(CampaignId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct GetCampaign<R> {
    campaigns: R,
}

impl<R: CampaignRepository> GetCampaign<R> {
    pub fn new(campaigns: R) -> Self {
        Self { campaigns }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let page_size = match input.page_size {
            0 => MAX_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // One extra row tells whether another page follows.
        let (campaign, mut coupons) = self
            .campaigns
            .find_campaign_page(input.campaign_id, input.after_ordinal, page_size + 1)
            .await?
            .ok_or(Error::NotFound(input.campaign_id))?;
        let next_after_ordinal = if coupons.len() > page_size as usize {
            coupons.truncate(page_size as usize);
            coupons.last().map(|c| c.ordinal)
        } else {
            None
        };
        let sold_out_at = self.sold_out_at(&campaign, &coupons).await?;
        Ok(Output {
            campaign,
            coupons,
            next_after_ordinal,
            sold_out_at,
        })
    }

    /// The last coupon's issue time: from the page when it holds it, else one probe. The
    /// last coupon never changes once written, so any read of it agrees with the page.
    async fn sold_out_at(
        &self,
        campaign: &Campaign,
        page: &[Coupon],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        if !campaign.is_sold_out() {
            return Ok(None);
        }
        let last = campaign.total_coupons.get();
        if let Some(coupon) = page.iter().rev().find(|c| c.ordinal == last) {
            return Ok(Some(coupon.issued_at));
        }
        let found = self
            .campaigns
            .list_coupons(campaign.id, last - 1, 1)
            .await?;
        Ok(found.first().map(|c| c.issued_at))
    }
}
