//! The issuance decision: given the campaigns' state and issue requests in log order,
//! decide each request. Every rule of DESIGN §5 about *what* is issued lives here:
//! at most `total_coupons` (§5.1), judged by the log's append time (§5.3), one coupon per
//! user (§5.5), first come first served in log order (§5.7), codes from `CodeGenerator` (§5.2).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::campaign::{Campaign, CampaignId};
use super::coupon_code::{CodeError, CodeGenerator, CouponCode};
use super::log::LogPosition;
use super::ticket::{IssueStatus, TicketId, TicketResult};
use super::user::UserId;

/// An issued coupon. `ordinal` is its rank in the campaign's issue order (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub code: CouponCode,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub ticket_id: TicketId,
    /// The log append time of the request that won it: deterministic under replay.
    pub issued_at: DateTime<Utc>,
    pub ordinal: u64,
    /// Where the winning request sits in the log; `None` for coupons stored before it
    /// was kept (their tickets were sealed without it).
    pub ticket_position: Option<LogPosition>,
}

/// One issue request as read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    pub ticket_id: TicketId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub position: LogPosition,
    pub appended_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Issued(Coupon),
    AlreadyIssued(CouponCode),
    SoldOut,
    NotStarted,
    /// No such campaign in the log before the request. Producers only append requests
    /// for campaigns they found, so this means a damaged log; nothing is issued.
    UnknownCampaign,
}

impl Decision {
    pub fn status(&self) -> IssueStatus {
        match self {
            Decision::Issued(_) => IssueStatus::Issued,
            Decision::AlreadyIssued(_) => IssueStatus::AlreadyIssued,
            Decision::SoldOut | Decision::UnknownCampaign => IssueStatus::SoldOut,
            Decision::NotStarted => IssueStatus::NotStarted,
        }
    }

    pub fn coupon_code(&self) -> Option<&CouponCode> {
        match self {
            Decision::Issued(coupon) => Some(&coupon.code),
            Decision::AlreadyIssued(code) => Some(code),
            _ => None,
        }
    }

    /// The ticket's final record.
    pub fn ticket_result(&self, request: &IssueRequest) -> TicketResult {
        TicketResult {
            ticket_id: request.ticket_id,
            campaign_id: request.campaign_id,
            user_id: request.user_id.clone(),
            status: self.status(),
            coupon_code: self.coupon_code().cloned(),
            position: request.position,
        }
    }
}

/// The part of the campaigns' state a batch of requests needs: the campaigns it touches
/// and the coupons already held by the users it names. It is loaded and saved by the
/// issuance store inside one transaction; deciding is pure.
pub struct CampaignLedger<'g> {
    codes: &'g CodeGenerator,
    campaigns: HashMap<CampaignId, Campaign>,
    holders: HashMap<(CampaignId, UserId), CouponCode>,
}

impl<'g> CampaignLedger<'g> {
    pub fn new(codes: &'g CodeGenerator) -> Self {
        Self {
            codes,
            campaigns: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    /// Adds a campaign; one already known is kept (its count is the newer one).
    pub fn add_campaign(&mut self, campaign: Campaign) {
        self.campaigns.entry(campaign.id).or_insert(campaign);
    }

    /// A creation record from the log: the earliest one defines the campaign.
    pub fn add_created(&mut self, campaign: Campaign) {
        match self.campaigns.get(&campaign.id) {
            Some(known) if !campaign.defines_instead_of(known) => {}
            _ => {
                self.campaigns.insert(campaign.id, campaign);
            }
        }
    }

    pub fn add_holder(&mut self, campaign_id: CampaignId, user_id: UserId, code: CouponCode) {
        self.holders.insert((campaign_id, user_id), code);
    }

    pub fn campaign(&self, id: &CampaignId) -> Option<&Campaign> {
        self.campaigns.get(id)
    }

    /// Decides one request; call in log order.
    pub fn decide(&mut self, request: &IssueRequest) -> Result<Decision, CodeError> {
        let Some(campaign) = self.campaigns.get_mut(&request.campaign_id) else {
            return Ok(Decision::UnknownCampaign);
        };
        if !campaign.has_started_at(request.appended_at) {
            return Ok(Decision::NotStarted);
        }
        let holder_key = (request.campaign_id, request.user_id.clone());
        if let Some(code) = self.holders.get(&holder_key) {
            return Ok(Decision::AlreadyIssued(code.clone()));
        }
        if campaign.is_sold_out() {
            return Ok(Decision::SoldOut);
        }
        let ordinal = campaign.issued_coupons + 1;
        let code = self
            .codes
            .code_for(campaign.alphabet, campaign.origin, ordinal)?;
        campaign.issued_coupons = ordinal;
        self.holders.insert(holder_key, code.clone());
        Ok(Decision::Issued(Coupon {
            code,
            campaign_id: request.campaign_id,
            user_id: request.user_id.clone(),
            ticket_id: request.ticket_id,
            issued_at: request.appended_at,
            ordinal,
            ticket_position: Some(request.position),
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::campaign::{CampaignName, NewCampaign, TotalCoupons};
    use crate::domain::secret::SecretKey;

    /// Now, to the millisecond: the log's clock has no finer grain, and a start
    /// between two milliseconds is rounded up.
    fn now_ms() -> DateTime<Utc> {
        crate::domain::campaign::truncate_to_millis(Utc::now())
    }

    fn campaign(total: i64, starts_at: DateTime<Utc>, offset: u64) -> Campaign {
        NewCampaign::new(
            CampaignName::parse("drop").unwrap(),
            TotalCoupons::parse(total).unwrap(),
            starts_at,
        )
        .placed_at(LogPosition {
            partition: 0,
            offset,
        })
    }

    fn request(campaign: &Campaign, user: &str, offset: u64, at: DateTime<Utc>) -> IssueRequest {
        IssueRequest {
            ticket_id: TicketId::generate(),
            campaign_id: campaign.id,
            user_id: UserId::parse(user).unwrap(),
            position: LogPosition {
                partition: 0,
                offset,
            },
            appended_at: at,
        }
    }

    #[test]
    fn first_come_first_served_up_to_the_total() {
        let codes = CodeGenerator::new(&SecretKey::generate());
        let start = now_ms();
        let c = campaign(3, start, 0);
        let mut ledger = CampaignLedger::new(&codes);
        ledger.add_campaign(c.clone());
        let statuses: Vec<_> = (1..=5)
            .map(|i| {
                let r = request(&c, &format!("u{i}"), i, start);
                ledger.decide(&r).unwrap()
            })
            .collect();
        let issued: Vec<u64> = statuses
            .iter()
            .filter_map(|d| match d {
                Decision::Issued(coupon) => Some(coupon.ordinal),
                _ => None,
            })
            .collect();
        assert_eq!(issued, vec![1, 2, 3], "the first three in log order win");
        assert_eq!(statuses[3], Decision::SoldOut);
        assert_eq!(statuses[4], Decision::SoldOut);
        assert_eq!(ledger.campaign(&c.id).map(|c| c.issued_coupons), Some(3));
    }

    #[test]
    fn start_instant_is_judged_by_append_time() {
        let codes = CodeGenerator::new(&SecretKey::generate());
        let start = now_ms();
        let c = campaign(10, start, 0);
        let mut ledger = CampaignLedger::new(&codes);
        ledger.add_campaign(c.clone());
        let early = request(&c, "a", 1, start - TimeDelta::milliseconds(1));
        let exact = request(&c, "b", 2, start);
        assert_eq!(ledger.decide(&early).unwrap(), Decision::NotStarted);
        assert!(matches!(
            ledger.decide(&exact).unwrap(),
            Decision::Issued(_)
        ));
        // The early user can still win once the campaign has started.
        let later = request(&c, "a", 3, start + TimeDelta::seconds(1));
        assert!(matches!(
            ledger.decide(&later).unwrap(),
            Decision::Issued(_)
        ));
    }

    #[test]
    fn repeats_get_the_same_coupon_and_consume_nothing() {
        let codes = CodeGenerator::new(&SecretKey::generate());
        let start = now_ms();
        let c = campaign(2, start, 0);
        let mut ledger = CampaignLedger::new(&codes);
        ledger.add_campaign(c.clone());
        let Decision::Issued(first) = ledger.decide(&request(&c, "a", 1, start)).unwrap() else {
            panic!("first request must win");
        };
        let repeat = ledger.decide(&request(&c, "a", 2, start)).unwrap();
        assert_eq!(repeat, Decision::AlreadyIssued(first.code.clone()));
        assert!(matches!(
            ledger.decide(&request(&c, "b", 3, start)).unwrap(),
            Decision::Issued(_)
        ));
        // Sold out now, but a holder still hears ALREADY_ISSUED with their code.
        assert_eq!(
            ledger.decide(&request(&c, "a", 4, start)).unwrap(),
            Decision::AlreadyIssued(first.code)
        );
        assert_eq!(
            ledger.decide(&request(&c, "c", 5, start)).unwrap(),
            Decision::SoldOut
        );
    }

    #[test]
    fn the_earliest_creation_in_the_log_defines_a_campaign_whatever_was_stored_first() {
        // A retried creation appended one campaign twice (offsets 3 and 7), and an API
        // node stored the later record first: deciding the earlier one must give the
        // codes a replay of the log from scratch gives.
        let codes = CodeGenerator::new(&SecretKey::generate());
        let start = now_ms();
        let earliest = campaign(2, start, 3);
        let later = Campaign {
            origin: LogPosition {
                partition: 0,
                offset: 7,
            },
            ..earliest.clone()
        };
        let mut stored_later_first = CampaignLedger::new(&codes);
        stored_later_first.add_campaign(later.clone());
        stored_later_first.add_created(earliest.clone());
        stored_later_first.add_created(later.clone());
        let mut replayed = CampaignLedger::new(&codes);
        replayed.add_created(earliest.clone());
        replayed.add_created(later);
        let r = request(&earliest, "u", 8, start);
        assert_eq!(
            stored_later_first.decide(&r).unwrap(),
            replayed.decide(&r).unwrap()
        );
        // Once a coupon is out, the campaign is settled.
        let mut issued = earliest.clone();
        issued.issued_coupons = 1;
        let mut settled = CampaignLedger::new(&codes);
        settled.add_campaign(issued.clone());
        settled.add_created(Campaign {
            issued_coupons: 0,
            origin: LogPosition {
                partition: 0,
                offset: 1,
            },
            ..issued.clone()
        });
        assert_eq!(settled.campaign(&issued.id), Some(&issued));
    }

    #[test]
    fn holders_loaded_from_storage_count_as_already_issued() {
        let codes = CodeGenerator::new(&SecretKey::generate());
        let start = now_ms();
        let mut c = campaign(5, start, 0);
        c.issued_coupons = 1;
        let code = codes.code_for(c.alphabet, c.origin, 1).unwrap();
        let mut ledger = CampaignLedger::new(&codes);
        ledger.add_campaign(c.clone());
        ledger.add_holder(c.id, UserId::parse("a").unwrap(), code.clone());
        assert_eq!(
            ledger.decide(&request(&c, "a", 9, start)).unwrap(),
            Decision::AlreadyIssued(code)
        );
        let Decision::Issued(next) = ledger.decide(&request(&c, "b", 10, start)).unwrap() else {
            panic!("b must win");
        };
        assert_eq!(next.ordinal, 2, "ordinals continue from the stored count");
    }

    #[test]
    fn unknown_campaigns_issue_nothing() {
        let codes = CodeGenerator::new(&SecretKey::generate());
        let c = campaign(5, now_ms(), 0);
        let mut ledger = CampaignLedger::new(&codes);
        let d = ledger.decide(&request(&c, "a", 1, now_ms())).unwrap();
        assert_eq!(d, Decision::UnknownCampaign);
        assert_eq!(d.status(), IssueStatus::SoldOut);
    }

    mod properties {
        use std::collections::{HashMap, HashSet};

        use proptest::prelude::*;

        use super::*;

        /// (campaign index, user index, append time in ms relative to the starts).
        fn requests() -> impl Strategy<Value = Vec<(usize, u8, i64)>> {
            prop::collection::vec((0usize..3, 0u8..12, -50i64..50), 0..120)
        }

        /// A ledger as a batch's transaction loads it from `counts` and `holders`.
        fn loaded_ledger<'g>(
            codes: &'g CodeGenerator,
            campaigns: &[Campaign],
            counts: &HashMap<CampaignId, u64>,
            holders: &[(CampaignId, UserId, CouponCode)],
        ) -> CampaignLedger<'g> {
            let mut ledger = CampaignLedger::new(codes);
            for c in campaigns {
                let mut c = c.clone();
                c.issued_coupons = counts.get(&c.id).copied().unwrap_or(0);
                ledger.add_campaign(c);
            }
            for (campaign_id, user, code) in holders {
                ledger.add_holder(*campaign_id, user.clone(), code.clone());
            }
            ledger
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Any history, cut into any batches with holders reloaded between them as a
            /// store would: never a panic, and exactly what a sequential reference allows —
            /// the first `total` distinct started users of a campaign in log order win,
            /// a winner's repeats get their own code, codes are unique.
            #[test]
            fn decisions_match_a_sequential_reference(
                totals in prop::collection::vec(1i64..6, 3),
                history in requests(),
                batch in 1usize..20,
            ) {
                let codes = CodeGenerator::new(&SecretKey::generate());
                let start = now_ms();
                let campaigns: Vec<Campaign> = totals
                    .iter()
                    .enumerate()
                    .map(|(i, total)| campaign(*total, start, i as u64))
                    .collect();
                let mut reference_winners: HashSet<(usize, u8)> = HashSet::new();
                let mut reference_issued = [0i64; 3];
                let mut store_holders: Vec<(CampaignId, UserId, CouponCode)> = Vec::new();
                let mut store_counts: HashMap<CampaignId, u64> = HashMap::new();
                let mut seen_codes = HashSet::new();
                for (chunk_index, chunk) in history.chunks(batch).enumerate() {
                    // A new ledger per batch, loaded from the "store" like a transaction.
                    let mut ledger = loaded_ledger(&codes, &campaigns, &store_counts, &store_holders);
                    for (i, (c, user, at_ms)) in chunk.iter().enumerate() {
                        let offset = (chunk_index * batch + i + 10) as u64;
                        let at = start + TimeDelta::milliseconds(*at_ms);
                        let r = request(&campaigns[*c], &format!("u{user}"), offset, at);
                        let decision = ledger.decide(&r).unwrap();
                        let expected = if *at_ms < 0 {
                            IssueStatus::NotStarted
                        } else if reference_winners.contains(&(*c, *user)) {
                            IssueStatus::AlreadyIssued
                        } else if reference_issued[*c] >= totals[*c] {
                            IssueStatus::SoldOut
                        } else {
                            reference_issued[*c] += 1;
                            reference_winners.insert((*c, *user));
                            IssueStatus::Issued
                        };
                        prop_assert_eq!(decision.status(), expected);
                        if let Decision::Issued(coupon) = &decision {
                            prop_assert!(seen_codes.insert(coupon.code.clone()), "code issued twice");
                            prop_assert_eq!(coupon.ordinal as i64, reference_issued[*c]);
                            store_holders.push((coupon.campaign_id, coupon.user_id.clone(), coupon.code.clone()));
                            store_counts.insert(coupon.campaign_id, coupon.ordinal);
                        }
                        if let Decision::AlreadyIssued(code) = &decision {
                            prop_assert!(seen_codes.contains(code), "repeat got a code never issued");
                        }
                    }
                }
                for (c, total) in totals.iter().enumerate() {
                    prop_assert!(reference_issued[c] <= *total);
                }
            }
        }
    }
}
