//! A read-through cache of campaigns for the accept path, which must not cost a
//! database round trip per request. Only `issued_coupons` changes after creation; it
//! is refreshed at most once per `ttl` per campaign, never again once the campaign is
//! sold out. The refresh runs in its own task: the request that started it waits for
//! it a few milliseconds at most (so a sell-out is seen by the first request after it,
//! and a winner retrying gets their ticket back at once), and a slow or unreachable
//! database never stalls the requests of a campaign this node already knows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::ports::{CampaignRepository, StoreError};
use crate::domain::{Campaign, CampaignId};

/// How long a request waits for its campaign's refresh before using the value in hand.
const REFRESH_WAIT: Duration = Duration::from_millis(20);

struct Entry {
    campaign: Arc<Campaign>,
    fetched_at: Instant,
    refreshing: AtomicBool,
}

pub struct CampaignCache<R> {
    shared: Arc<Shared<R>>,
}

struct Shared<R> {
    campaigns: R,
    entries: RwLock<HashMap<CampaignId, Arc<Entry>>>,
    ttl: Duration,
}

impl<R: CampaignRepository> CampaignCache<R> {
    pub fn new(campaigns: R, ttl: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                campaigns,
                entries: RwLock::new(HashMap::new()),
                ttl,
            }),
        }
    }

    /// The repository behind the cache, for reads the cache does not hold.
    pub fn repository(&self) -> &R {
        &self.shared.campaigns
    }

    pub async fn get(&self, id: CampaignId) -> Result<Option<Arc<Campaign>>, StoreError> {
        let Some(entry) = self.shared.cached(id) else {
            // Boxed: the database read's state (sqlx's, several KiB) would otherwise be
            // reserved in every accept's future, and moved with it, for a rare miss.
            return Box::pin(self.shared.fetch(id)).await;
        };
        let in_hand = entry.campaign.clone();
        let stale = entry.fetched_at.elapsed() >= self.shared.ttl && !in_hand.is_sold_out();
        // One refresh at a time per campaign; the others answer from the value in hand.
        if !stale || entry.refreshing.swap(true, Ordering::AcqRel) {
            return Ok(Some(in_hand));
        }
        let shared = self.shared.clone();
        let refresh = tokio::spawn(async move {
            let fetched = shared.fetch(id).await;
            if let Err(error) = &fetched {
                entry.refreshing.store(false, Ordering::Release);
                tracing::warn!(%error, campaign_id = %id, "campaign refresh failed");
            }
            fetched
        });
        // A database that answers at once gives this request the fresh value; one that
        // does not costs it at most REFRESH_WAIT.
        match tokio::time::timeout(REFRESH_WAIT, refresh).await {
            Ok(Ok(Ok(Some(fresh)))) => Ok(Some(fresh)),
            _ => Ok(Some(in_hand)),
        }
    }
}

impl<R: CampaignRepository> Shared<R> {
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
