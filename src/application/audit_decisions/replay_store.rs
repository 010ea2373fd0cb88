//! An issuance store in memory, for deciding the log again without touching the real
//! one. It keeps the same rules as the SQL stores: the offset is compared and set, a
//! campaign is inserted unless it exists (an earlier creation of the same id replaces
//! one nothing was issued from), a ticket decided twice keeps its first decision, and a
//! coupon whose key or code is taken is a conflict.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::domain::ports::{BatchChanges, Holding, IssuanceBatch, IssuanceStore, StoreError};
use crate::domain::{Campaign, CampaignId, Coupon, CouponCode, TicketId, TicketResult, UserId};

/// What a replay decided.
#[derive(Debug, Default)]
pub struct ReplayedState {
    pub offsets: BTreeMap<u32, u64>,
    pub campaigns: HashMap<CampaignId, Campaign>,
    /// By (campaign, ordinal).
    pub coupons: BTreeMap<(CampaignId, u64), Coupon>,
    pub tickets: HashMap<TicketId, TicketResult>,
    holders: HashMap<(CampaignId, UserId), CouponCode>,
}

#[derive(Clone, Default)]
pub struct ReplayStore {
    state: Arc<Mutex<ReplayedState>>,
}

impl ReplayStore {
    /// The decided state; the store is left empty.
    pub fn take(&self) -> ReplayedState {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, ReplayedState> {
        // Every change is applied whole under the lock: a panic cannot leave half of one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct ReplayBatch {
    store: ReplayStore,
    partition: u32,
    next: u64,
}

impl IssuanceStore for ReplayStore {
    type Batch = ReplayBatch;

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        Ok(self.lock().offsets.get(&partition).copied().unwrap_or(0))
    }

    async fn begin(
        &self,
        partition: u32,
        expected: u64,
        next: u64,
    ) -> Result<ReplayBatch, StoreError> {
        let stored = self.next_offset(partition).await?;
        if stored != expected {
            return Err(StoreError::Fenced {
                partition,
                expected,
                stored,
            });
        }
        Ok(ReplayBatch {
            store: self.clone(),
            partition,
            next,
        })
    }
}

impl IssuanceBatch for ReplayBatch {
    async fn load_campaigns(&mut self, ids: &[CampaignId]) -> Result<Vec<Campaign>, StoreError> {
        let state = self.store.lock();
        Ok(ids
            .iter()
            .filter_map(|id| state.campaigns.get(id).cloned())
            .collect())
    }

    async fn load_holders(
        &mut self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
        let state = self.store.lock();
        Ok(users
            .iter()
            .filter_map(|user| {
                let code = state.holders.get(&(campaign, user.clone()))?;
                Some((user.clone(), code.clone()))
            })
            .collect())
    }

    async fn load_coupons_from(
        &mut self,
        campaign: CampaignId,
        from: u64,
    ) -> Result<Vec<Holding>, StoreError> {
        let state = self.store.lock();
        Ok(state
            .coupons
            .range((campaign, from)..=(campaign, u64::MAX))
            .map(|(_, coupon)| Holding {
                ordinal: coupon.ordinal,
                user_id: coupon.user_id.clone(),
                code: coupon.code.clone(),
            })
            .collect())
    }

    async fn commit(self, changes: BatchChanges) -> Result<(), StoreError> {
        let mut state = self.store.lock();
        check_coupons(&state, &changes.coupons)?;
        for campaign in changes.new_campaigns {
            insert_campaign(&mut state, campaign);
        }
        for coupon in changes.coupons {
            state.holders.insert(
                (coupon.campaign_id, coupon.user_id.clone()),
                coupon.code.clone(),
            );
            state
                .coupons
                .insert((coupon.campaign_id, coupon.ordinal), coupon);
        }
        for ticket in changes.tickets {
            state.tickets.entry(ticket.ticket_id).or_insert(ticket);
        }
        for (id, issued) in changes.issued_counts {
            if let Some(campaign) = state.campaigns.get_mut(&id) {
                campaign.issued_coupons = issued;
            }
        }
        state.offsets.insert(self.partition, self.next);
        Ok(())
    }
}

/// The stores' unique keys: (campaign, ordinal) and (campaign, user).
fn check_coupons(state: &ReplayedState, coupons: &[Coupon]) -> Result<(), StoreError> {
    for coupon in coupons {
        if state
            .coupons
            .contains_key(&(coupon.campaign_id, coupon.ordinal))
        {
            return Err(StoreError::Conflict("coupons_pkey".into()));
        }
        if state
            .holders
            .contains_key(&(coupon.campaign_id, coupon.user_id.clone()))
        {
            return Err(StoreError::Conflict("coupons_campaign_user_key".into()));
        }
    }
    Ok(())
}

/// As the SQL stores insert a campaign: unless it exists, or the earliest creation in
/// the log defines it (`Campaign::defines_instead_of`).
fn insert_campaign(state: &mut ReplayedState, campaign: Campaign) {
    match state.campaigns.get(&campaign.id) {
        Some(known) if !campaign.defines_instead_of(known) => {}
        _ => {
            state.campaigns.insert(campaign.id, campaign);
        }
    }
}
