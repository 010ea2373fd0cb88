//! A read-through cache of campaigns for the accept path, which must not cost a
//! database round trip per request. Only `issued_coupons` changes after creation; it
//! is refreshed at most once per `ttl` per campaign (one caller refreshes, the others
//! use the value they have), and never again once the campaign is sold out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::ports::{CampaignRepository, StoreError};
use crate::domain::{Campaign, CampaignId};

struct Entry {
    campaign: Arc<Campaign>,
    fetched_at: Instant,
    refreshing: AtomicBool,
}

pub struct CampaignCache<R> {
    campaigns: R,
    entries: RwLock<HashMap<CampaignId, Arc<Entry>>>,
    ttl: Duration,
}

impl<R: CampaignRepository> CampaignCache<R> {
    pub fn new(campaigns: R, ttl: Duration) -> Self {
        Self {
            campaigns,
            entries: RwLock::new(HashMap::new()),
            ttl,
        }
    }

    pub async fn get(&self, id: CampaignId) -> Result<Option<Arc<Campaign>>, StoreError> {
        if let Some(entry) = self.cached(id) {
            let fresh = entry.fetched_at.elapsed() < self.ttl || entry.campaign.is_sold_out();
            if fresh || entry.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(Some(entry.campaign.clone()));
            }
            // This caller won the refresh; on failure the stale value still serves.
            return match self.fetch(id).await {
                Ok(found) => Ok(found.or(Some(entry.campaign.clone()))),
                Err(error) => {
                    entry.refreshing.store(false, Ordering::Release);
                    tracing::warn!(%error, campaign_id = %id, "campaign refresh failed");
                    Ok(Some(entry.campaign.clone()))
                }
            };
        }
        self.fetch(id).await
    }

    fn cached(&self, id: CampaignId) -> Option<Arc<Entry>> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&id).cloned()
    }

    async fn fetch(&self, id: CampaignId) -> Result<Option<Arc<Campaign>>, StoreError> {
        let Some(campaign) = self.campaigns.find_campaign(id).await? else {
            return Ok(None);
        };
        let campaign = Arc::new(campaign);
        let entry = Arc::new(Entry {
            campaign: campaign.clone(),
            fetched_at: Instant::now(),
            refreshing: AtomicBool::new(false),
        });
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.insert(id, entry);
        Ok(Some(campaign))
    }
}
