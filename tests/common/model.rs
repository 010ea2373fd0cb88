//! A sequential reference model of the whole service, for the model-based tests: given
//! the log's records in the order the log assigned (every acknowledged append among
//! them), it says what each ticket's final status must be and who holds which coupon of
//! each campaign. It is
//! written from DESIGN §5 alone and shares no code with the real decision
//! (`domain::issuance`), so the two can disagree.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use coupon::domain::log::Appended;
use coupon::domain::{CampaignId, CodeAlphabet, LogEvent, LogPosition, TicketId, UserId};

/// What a ticket must end as. `ordinal` is the rank of the coupon in its campaign's
/// issue order (1-based): the one won, or the one already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Issued { ordinal: u64 },
    AlreadyIssued { ordinal: u64 },
    SoldOut,
    NotStarted,
}

#[derive(Debug, Clone)]
pub struct ModelCampaign {
    pub total: u64,
    pub starts_at: DateTime<Utc>,
    pub origin: LogPosition,
    /// The alphabet asked for (test logs stay far below where it falls back to full).
    pub alphabet: CodeAlphabet,
    /// `winners[k - 1]` won the coupon of ordinal k.
    pub winners: Vec<(TicketId, UserId)>,
    holders: HashMap<UserId, u64>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub tickets: HashMap<TicketId, Expected>,
    pub campaigns: HashMap<CampaignId, ModelCampaign>,
}

/// The log as the model knows it: records by offset.
#[derive(Debug, Default)]
pub struct Model {
    log: BTreeMap<u64, (LogEvent, Appended)>,
}

impl Model {
    /// Fails when two records share a position, or one is outside the only partition.
    pub fn new(records: &[(LogEvent, Appended)]) -> Result<Self, String> {
        let mut log = BTreeMap::new();
        for (event, appended) in records {
            if appended.position.partition != 0 {
                return Err(format!("a record at {:?}", appended.position));
            }
            if let Some((earlier, _)) =
                log.insert(appended.position.offset, (event.clone(), *appended))
            {
                return Err(format!(
                    "offset {} holds both {earlier:?} and {event:?}",
                    appended.position.offset
                ));
            }
        }
        Ok(Self { log })
    }

    /// The outcome of deciding the records before `end` (all of them for `u64::MAX`),
    /// one at a time in log order.
    pub fn resolve(&self, end: u64) -> Outcome {
        let mut outcome = Outcome::default();
        for (event, appended) in self.log.range(..end).map(|(_, v)| v) {
            match event {
                LogEvent::CampaignCreated(new) => {
                    outcome
                        .campaigns
                        .entry(new.id)
                        .or_insert_with(|| ModelCampaign {
                            total: new.total_coupons.get(),
                            starts_at: new.starts_at,
                            origin: appended.position,
                            alphabet: new.alphabet,
                            winners: Vec::new(),
                            holders: HashMap::new(),
                        });
                }
                LogEvent::IssueRequested {
                    ticket_id,
                    campaign_id,
                    user_id,
                } => {
                    let expected = match outcome.campaigns.get_mut(campaign_id) {
                        // Requests are only accepted for created campaigns; the real
                        // service answers SOLD_OUT for the damaged log where one is not.
                        None => Expected::SoldOut,
                        Some(c) if appended.appended_at < c.starts_at => Expected::NotStarted,
                        Some(c) => match c.holders.get(user_id) {
                            Some(&ordinal) => Expected::AlreadyIssued { ordinal },
                            None if c.winners.len() as u64 >= c.total => Expected::SoldOut,
                            None => {
                                c.winners.push((*ticket_id, user_id.clone()));
                                let ordinal = c.winners.len() as u64;
                                c.holders.insert(user_id.clone(), ordinal);
                                Expected::Issued { ordinal }
                            }
                        },
                    };
                    outcome.tickets.insert(*ticket_id, expected);
                }
            }
        }
        outcome
    }
}
