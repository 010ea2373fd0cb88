//! Checks DESIGN §5 on what the API returned during a run. Pure: it sees only the
//! records, so deliberately broken record sets prove that it catches violations.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

/// One accepted ticket and what polling it ended with.
#[derive(Debug, Clone)]
pub struct TicketRecord {
    pub ticket_id: String,
    pub campaign_id: String,
    pub user_id: String,
    pub accepted_at: DateTime<Utc>,
    /// `None` if it never left PENDING.
    pub status: Option<String>,
    pub code: Option<String>,
}

impl TicketRecord {
    /// An accepted ticket of `campaign_id` and the final answer polling it got, if any.
    pub fn answered(
        ticket: &crate::load::Accepted,
        result: Option<&crate::client::IssueResult>,
        campaign_id: &str,
    ) -> Self {
        TicketRecord {
            ticket_id: ticket.ticket_id.clone(),
            campaign_id: campaign_id.to_owned(),
            user_id: ticket.user_id.clone(),
            accepted_at: ticket.accepted_at,
            status: result.and_then(|r| r.status.clone()),
            code: result
                .and_then(|r| r.coupon.as_ref())
                .map(|c| c.code.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub id: String,
    pub total: u64,
    pub starts_at: DateTime<Utc>,
    /// `issuedCoupons` as GetCampaign reported it at the end.
    pub issued_coupons: u64,
    /// Every code GetCampaign listed, all pages.
    pub listed_codes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub campaigns: Vec<CampaignRecord>,
    pub tickets: Vec<TicketRecord>,
    /// Requests whose answer was lost (transport errors): the server may or may not
    /// have accepted them, so counts can only be checked as bounds.
    pub ambiguous_requests: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub issued: u64,
    pub expected_issued: u64,
    pub violations: Vec<String>,
}

pub const ISSUED: &str = "ISSUE_STATUS_ISSUED";
pub const SOLD_OUT: &str = "ISSUE_STATUS_SOLD_OUT";
pub const NOT_STARTED: &str = "ISSUE_STATUS_NOT_STARTED";
pub const ALREADY_ISSUED: &str = "ISSUE_STATUS_ALREADY_ISSUED";
pub const PENDING: &str = "ISSUE_STATUS_PENDING";

/// §5.2: 10 symbols, each a Hangul syllable (U+AC00..=U+D7A3) or an ASCII digit.
pub fn is_well_formed_code(code: &str) -> bool {
    code.chars().count() == 10
        && code
            .chars()
            .all(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c) || c.is_ascii_digit())
}

pub fn verify(run: &RunRecord) -> Verdict {
    let mut verdict = Verdict::default();
    let mut v = |msg: String| verdict.violations.push(msg);
    let mut all_codes: HashMap<&str, &str> = HashMap::new();
    let mut issued_total = 0;
    let mut expected_total = 0;

    for campaign in &run.campaigns {
        let tickets: Vec<&TicketRecord> = run
            .tickets
            .iter()
            .filter(|t| t.campaign_id == campaign.id)
            .collect();
        let id = &campaign.id;

        let pending = tickets
            .iter()
            .filter(|t| t.status.as_deref().is_none_or(|s| s == PENDING))
            .count();
        if pending > 0 {
            v(format!(
                "§5.4 campaign {id}: {pending} accepted tickets never reached a final status"
            ));
        }

        let mut holder_code: HashMap<&str, &str> = HashMap::new();
        let mut issued = 0u64;
        for t in tickets
            .iter()
            .filter(|t| t.status.as_deref() == Some(ISSUED))
        {
            issued += 1;
            let Some(code) = t.code.as_deref() else {
                v(format!("ticket {}: ISSUED without a coupon", t.ticket_id));
                continue;
            };
            if !is_well_formed_code(code) {
                v(format!(
                    "§5.2 ticket {}: malformed code {code:?}",
                    t.ticket_id
                ));
            }
            if let Some(other) = all_codes.insert(code, &t.ticket_id) {
                v(format!(
                    "§5.2 code {code} issued twice (tickets {other} and {})",
                    t.ticket_id
                ));
            }
            if holder_code.insert(&t.user_id, code).is_some() {
                v(format!(
                    "§5.5 campaign {id}: user {} got two coupons",
                    t.user_id
                ));
            }
            if t.accepted_at < campaign.starts_at {
                v(format!(
                    "§5.3 ticket {} accepted at {} before the start {} yet ISSUED",
                    t.ticket_id, t.accepted_at, campaign.starts_at
                ));
            }
        }
        for t in &tickets {
            match t.status.as_deref() {
                Some(ALREADY_ISSUED) => {
                    if let (Some(code), Some(held)) =
                        (t.code.as_deref(), holder_code.get(t.user_id.as_str()))
                        && code != *held
                    {
                        v(format!(
                            "§5.5 ticket {}: ALREADY_ISSUED with {code}, but the user holds {held}",
                            t.ticket_id
                        ));
                    }
                }
                Some(NOT_STARTED) if t.accepted_at >= campaign.starts_at => v(format!(
                    "§5.3 ticket {} accepted at {} (start {}) but NOT_STARTED",
                    t.ticket_id, t.accepted_at, campaign.starts_at
                )),
                _ => {}
            }
        }

        // §5.1: exactly min(total, eligible distinct users), never more than total.
        let eligible: HashSet<&str> = tickets
            .iter()
            .filter(|t| t.accepted_at >= campaign.starts_at)
            .map(|t| t.user_id.as_str())
            .collect();
        let expected = campaign.total.min(eligible.len() as u64);
        if issued > campaign.total || campaign.issued_coupons > campaign.total {
            v(format!(
                "§5.1 campaign {id}: {} issued of {} coupons",
                issued.max(campaign.issued_coupons),
                campaign.total
            ));
        }
        if run.ambiguous_requests == 0 {
            if issued != expected {
                v(format!(
                    "§5.1 campaign {id}: {issued} issued, expected min({}, {} eligible users) = {expected}",
                    campaign.total,
                    eligible.len()
                ));
            }
        } else if issued > campaign.total || campaign.issued_coupons < issued {
            v(format!(
                "§5.1 campaign {id}: {issued} issued tickets, campaign reports {}",
                campaign.issued_coupons
            ));
        }

        // §5.7: nobody sold out was ahead in the log of somebody served.
        let last_issued = tickets
            .iter()
            .filter(|t| t.status.as_deref() == Some(ISSUED))
            .map(|t| t.accepted_at)
            .max();
        let first_sold_out = tickets
            .iter()
            .filter(|t| t.status.as_deref() == Some(SOLD_OUT))
            .map(|t| t.accepted_at)
            .min();
        if let (Some(last_issued), Some(first_sold_out)) = (last_issued, first_sold_out)
            && first_sold_out < last_issued
        {
            v(format!(
                "§5.7 campaign {id}: a request accepted at {first_sold_out} was SOLD_OUT while one at {last_issued} was ISSUED"
            ));
        }

        // GetCampaign lists every issued coupon once, and only those.
        let listed: HashSet<&str> = campaign.listed_codes.iter().map(String::as_str).collect();
        if listed.len() != campaign.listed_codes.len() {
            v(format!("GetCampaign {id}: a code is listed twice"));
        }
        if listed.len() as u64 != campaign.issued_coupons {
            v(format!(
                "GetCampaign {id}: lists {} coupons but reports issuedCoupons={}",
                listed.len(),
                campaign.issued_coupons
            ));
        }
        for code in holder_code.values() {
            if !listed.contains(code) {
                v(format!(
                    "GetCampaign {id}: issued code {code} is not listed"
                ));
            }
        }
        if run.ambiguous_requests == 0 && listed.len() as u64 != issued {
            v(format!(
                "GetCampaign {id}: lists {} coupons, the tickets show {issued}",
                listed.len()
            ));
        }
        issued_total += issued;
        expected_total += expected;
    }
    verdict.issued = issued_total;
    verdict.expected_issued = expected_total;
    verdict
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    const CODES: [&str; 4] = [
        "가나다라마바사아자0",
        "가나다라마바사아자1",
        "가나다라마바사아자2",
        "가나다라마바사아자3",
    ];

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn ticket(n: usize, user: &str, ms: i64, status: &str, code: Option<&str>) -> TicketRecord {
        TicketRecord {
            ticket_id: format!("t{n}"),
            campaign_id: "c".into(),
            user_id: user.into(),
            accepted_at: start() + TimeDelta::milliseconds(ms),
            status: Some(status.into()),
            code: code.map(str::to_owned),
        }
    }

    /// Two coupons, four users and a repeat: all correct.
    fn good_run() -> RunRecord {
        RunRecord {
            campaigns: vec![CampaignRecord {
                id: "c".into(),
                total: 2,
                starts_at: start(),
                issued_coupons: 2,
                listed_codes: vec![CODES[0].into(), CODES[1].into()],
            }],
            tickets: vec![
                ticket(0, "early", -5, NOT_STARTED, None),
                ticket(1, "a", 1, ISSUED, Some(CODES[0])),
                ticket(2, "b", 2, ISSUED, Some(CODES[1])),
                ticket(3, "a", 3, ALREADY_ISSUED, Some(CODES[0])),
                ticket(4, "c", 4, SOLD_OUT, None),
            ],
            ambiguous_requests: 0,
        }
    }

    fn violations(run: &RunRecord) -> Vec<String> {
        verify(run).violations
    }

    #[test]
    fn a_correct_run_passes() {
        let verdict = verify(&good_run());
        assert_eq!(verdict.violations, Vec::<String>::new());
        assert_eq!((verdict.issued, verdict.expected_issued), (2, 2));
    }

    #[test]
    fn a_duplicate_code_is_caught() {
        let mut run = good_run();
        run.tickets[2].code = Some(CODES[0].into());
        assert!(
            violations(&run).iter().any(|v| v.contains("issued twice")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn one_too_many_issued_is_caught() {
        let mut run = good_run();
        run.tickets[4] = ticket(4, "c", 4, ISSUED, Some(CODES[2]));
        run.campaigns[0].issued_coupons = 3;
        run.campaigns[0].listed_codes.push(CODES[2].into());
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.1")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn too_few_issued_is_caught() {
        let mut run = good_run();
        run.tickets[2] = ticket(2, "b", 2, SOLD_OUT, None);
        run.campaigns[0].issued_coupons = 1;
        run.campaigns[0].listed_codes.pop();
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.1")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn an_issue_before_the_start_is_caught() {
        let mut run = good_run();
        run.tickets[0] = ticket(0, "early", -5, ISSUED, Some(CODES[3]));
        run.campaigns[0].issued_coupons = 3;
        run.campaigns[0].listed_codes.push(CODES[3].into());
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.3")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn a_missed_start_is_caught() {
        let mut run = good_run();
        run.tickets[4] = ticket(4, "c", 4, NOT_STARTED, None);
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.3")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn a_pending_ticket_is_caught() {
        let mut run = good_run();
        run.tickets[4].status = None;
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.4")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn a_repeat_that_consumed_a_coupon_is_caught() {
        let mut run = good_run();
        run.tickets[3] = ticket(3, "a", 3, ISSUED, Some(CODES[2]));
        run.campaigns[0].listed_codes.push(CODES[2].into());
        run.campaigns[0].issued_coupons = 3;
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.5")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn serving_out_of_order_is_caught() {
        let mut run = good_run();
        run.tickets[4].accepted_at = start();
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.7")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn a_listing_that_differs_is_caught() {
        let mut run = good_run();
        run.campaigns[0].listed_codes[1] = CODES[3].into();
        assert!(
            violations(&run)
                .iter()
                .any(|v| v.starts_with("GetCampaign")),
            "{:?}",
            violations(&run)
        );
    }

    #[test]
    fn malformed_codes_are_caught() {
        assert!(!is_well_formed_code("ABCDEFGHIJ"));
        assert!(!is_well_formed_code("가나다"));
        let mut run = good_run();
        run.tickets[1].code = Some("ABCDEFGHIJ".into());
        run.tickets[3].code = Some("ABCDEFGHIJ".into());
        run.campaigns[0].listed_codes[0] = "ABCDEFGHIJ".into();
        assert!(
            violations(&run).iter().any(|v| v.starts_with("§5.2")),
            "{:?}",
            violations(&run)
        );
    }
}
