//! Who holds a coupon of each campaign, kept by a worker between its batches.
//!
//! Telling ALREADY_ISSUED from a new winner needs, for every user a batch names, whether
//! that user holds a coupon of the campaign. Asking the store costs one index probe per
//! distinct user and batch: in a backlog's drain, a quarter of the distributed batches'
//! time and ~40 % of the embedded writer's. Coupons are never updated or deleted and a
//! campaign's ordinals run 1..=issued without gaps, so a copy of its coupons is brought
//! up to date by reading only the ordinals issued since the last batch (an index range
//! of the primary key), under the campaign's lock, whoever issued them.
//!
//! The copy is checked at every batch: it must end with the coupon the store holds at
//! its last ordinal, and the store's rows must run on from there to the campaign's
//! issued count. Anything else (a store restored from an older backup, another database
//! behind the same worker) drops the copy and the batch asks the store per user.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::domain::ports::{Holding, IssuanceBatch, StoreError};
use crate::domain::{CampaignId, CouponCode, UserId};

/// Coupons kept over all campaigns (~130 bytes each: ~65 MB). A campaign that does not
/// fit, even after forgetting the least recently used ones, is asked per user.
pub const CACHED_COUPONS: usize = 500_000;

pub struct HolderCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    campaigns: HashMap<CampaignId, Holders>,
    /// Incremented per use, to find the least recently used campaign.
    clock: u64,
}

/// One campaign's coupons with ordinals 1..=`issued`.
#[derive(Default)]
struct Holders {
    by_user: HashMap<UserId, CouponCode>,
    /// The holder of ordinal `issued`, checked against the store's row.
    last: Option<UserId>,
    issued: u64,
    used_at: u64,
}

impl HolderCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The codes `users` hold in `campaign`, whose locked row says `issued` coupons.
    pub async fn holders<B: IssuanceBatch>(
        &self,
        batch: &mut B,
        campaign: CampaignId,
        issued: u64,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
        if issued == 0 {
            return Ok(Vec::new());
        }
        let Some(holders) = self.caught_up(batch, campaign, issued).await? else {
            return batch.load_holders(campaign, users).await;
        };
        let found = users
            .iter()
            .filter_map(|user| Some((user.clone(), holders.by_user.get(user)?.clone())))
            .collect();
        self.put_back(campaign, holders);
        Ok(found)
    }

    /// The campaign's copy, brought up to `issued`; `None` when it does not fit or the
    /// store's rows do not continue it.
    async fn caught_up<B: IssuanceBatch>(
        &self,
        batch: &mut B,
        campaign: CampaignId,
        issued: u64,
    ) -> Result<Option<Holders>, StoreError> {
        let kept = self.lock().campaigns.remove(&campaign);
        let mut holders = match kept {
            Some(kept) if kept.issued <= issued => kept,
            _ if self.make_room(issued) => Holders::default(),
            _ => return Ok(None),
        };
        // From the last known ordinal, to check that the store still holds it.
        let rows = batch
            .load_coupons_from(campaign, holders.issued.max(1))
            .await?;
        Ok(holders.extend(rows, issued).then_some(holders))
    }

    fn put_back(&self, campaign: CampaignId, mut holders: Holders) {
        let mut inner = self.lock();
        inner.clock += 1;
        holders.used_at = inner.clock;
        inner.campaigns.insert(campaign, holders);
    }

    /// Forgets the least recently used campaigns until `coupons` more fit.
    fn make_room(&self, coupons: u64) -> bool {
        let Ok(coupons) = usize::try_from(coupons) else {
            return false;
        };
        if coupons > self.capacity {
            return false;
        }
        let mut inner = self.lock();
        while inner.size() + coupons > self.capacity {
            let Some(oldest) = inner.least_recently_used() else {
                break;
            };
            inner.campaigns.remove(&oldest);
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is one insert or remove: a panic cannot leave half of one.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn size(&self) -> usize {
        self.campaigns.values().map(|h| h.by_user.len()).sum()
    }

    fn least_recently_used(&self) -> Option<CampaignId> {
        self.campaigns
            .iter()
            .min_by_key(|(_, holders)| holders.used_at)
            .map(|(id, _)| *id)
    }
}

impl Holders {
    /// Adds the store's `rows` (ordinals from `self.issued`, or 1 when empty); false
    /// unless they continue this copy exactly up to `issued`.
    fn extend(&mut self, rows: Vec<Holding>, issued: u64) -> bool {
        let mut rows = rows.into_iter().peekable();
        if self.issued > 0 {
            match rows.next() {
                Some(row)
                    if row.ordinal == self.issued && Some(&row.user_id) == self.last.as_ref() => {}
                _ => return false,
            }
        }
        for row in rows {
            if row.ordinal != self.issued + 1 {
                return false;
            }
            self.issued = row.ordinal;
            self.last = Some(row.user_id.clone());
            self.by_user.insert(row.user_id, row.code);
        }
        self.issued == issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(ordinal: u64, user: &str) -> Holding {
        Holding {
            ordinal,
            user_id: UserId::parse(user).expect("a valid user"),
            code: CouponCode::parse("가가가가가가가가가가").expect("a valid code"),
        }
    }

    #[test]
    fn a_copy_continues_only_from_its_own_last_coupon() {
        let mut holders = Holders::default();
        assert!(holders.extend(vec![holding(1, "a"), holding(2, "b")], 2));
        // The store read from ordinal 2 again: it must still be b's.
        assert!(holders.extend(vec![holding(2, "b"), holding(3, "c")], 3));
        assert_eq!(holders.by_user.len(), 3);

        let mut replaced = Holders::default();
        assert!(replaced.extend(vec![holding(1, "a"), holding(2, "b")], 2));
        assert!(!replaced.extend(vec![holding(2, "x"), holding(3, "c")], 3));
    }

    #[test]
    fn gaps_and_short_reads_are_refused() {
        let mut gap = Holders::default();
        assert!(!gap.extend(vec![holding(1, "a"), holding(3, "c")], 3));
        let mut short = Holders::default();
        assert!(!short.extend(vec![holding(1, "a")], 2));
    }

    #[test]
    fn the_least_recently_used_campaign_makes_room() {
        let cache = HolderCache::new(3);
        let (first, second) = (CampaignId::generate(), CampaignId::generate());
        for (id, users) in [(first, ["a", "b"]), (second, ["c", "d"])] {
            assert!(cache.make_room(2));
            let mut holders = Holders::default();
            let rows = users.iter().zip(1..).map(|(u, n)| holding(n, u)).collect();
            assert!(holders.extend(rows, 2));
            cache.put_back(id, holders);
        }
        let kept: Vec<CampaignId> = cache.lock().campaigns.keys().copied().collect();
        assert_eq!(kept, [second]);
        assert!(!cache.make_room(4), "larger than the whole cache");
    }
}
