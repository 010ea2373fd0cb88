//! Requirement: an admin lists the campaigns, newest first, a page at a time, each with
//! its progress and state.

use crate::domain::ports::{CampaignRepository, StoreError};
use crate::domain::{CampaignListing, ListPosition};

/// The default page.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page: one page's sold-out probes stay cheap.
pub const MAX_PAGE_SIZE: u32 = 100;

pub struct Input {
    /// Campaigns after this one (`None` for the first page).
    pub after: Option<ListPosition>,
    /// 0 means the default; larger than `MAX_PAGE_SIZE` is capped.
    pub page_size: u32,
}

pub struct Output {
    pub campaigns: Vec<CampaignListing>,
    /// Where the next page starts, when more campaigns follow.
    pub next_after: Option<ListPosition>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct ListCampaigns<R> {
    campaigns: R,
}

impl<R: CampaignRepository> ListCampaigns<R> {
    pub fn new(campaigns: R) -> Self {
        Self { campaigns }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let page_size = match input.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // One extra row tells whether another page follows.
        let mut campaigns = self
            .campaigns
            .list_campaigns(input.after, page_size + 1)
            .await?;
        let next_after = if campaigns.len() > page_size as usize {
            campaigns.truncate(page_size as usize);
            campaigns.last().map(|c| ListPosition::of(&c.campaign))
        } else {
            None
        };
        Ok(Output {
            campaigns,
            next_after,
        })
    }
}
