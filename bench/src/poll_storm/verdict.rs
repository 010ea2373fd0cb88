//! The run's invariants (DESIGN §5) on every ticket it took (held ones and the
//! storm's), plus the long-poll check: every waiter answered final after the resume.

use std::collections::BTreeMap;

use super::storm::StormRun;
use super::waiters::WaiterFigures;
use super::{Held, Session, StormError};
use crate::client::IssueResult;
use crate::run::{list_campaign, poll_all};
use crate::stats::Latency;
use crate::verify::{CampaignRecord, RunRecord, TicketRecord, Verdict, verify};

impl Session {
    /// Polls the held tickets to final (they are not part of the storm's figures),
    /// lists the campaign and checks the invariants.
    pub(super) async fn verify(
        &mut self,
        held: &Held,
        storm: &StormRun,
    ) -> Result<Verdict, StormError> {
        let o = &self.options;
        self.bar
            .set_message(format!("settling {} held tickets", held.tickets.len()));
        let ids: Vec<String> = held.tickets.iter().map(|t| t.ticket_id.clone()).collect();
        let finals = poll_all(
            &self.pool,
            &ids,
            &Latency::default(),
            o.poll_timeout,
            o.connections,
        )
        .await;
        self.bar.set_message("GetCampaign");
        let (issued_coupons, listed_codes) =
            list_campaign(self.pool.first(), &self.campaign_id, &[&Latency::default()]).await?;
        let campaign = CampaignRecord {
            id: self.campaign_id.clone(),
            total: o.coupons,
            starts_at: self.starts_at,
            issued_coupons,
            listed_codes,
        };
        let mut verdict = verify(&run_record(campaign, held, &finals, storm));
        verdict
            .violations
            .extend(held.waiters.as_ref().and_then(waiter_violation));
        Ok(verdict)
    }
}

/// Every ticket of the run, the held ones with their settled answers.
fn run_record(
    campaign: CampaignRecord,
    held: &Held,
    finals: &BTreeMap<String, IssueResult>,
    storm: &StormRun,
) -> RunRecord {
    let id = campaign.id.clone();
    let mut tickets: Vec<TicketRecord> = storm.tickets.iter().map(|t| t.record(&id)).collect();
    tickets.extend(
        held.tickets
            .iter()
            .map(|t| TicketRecord::answered(t, finals.get(&t.ticket_id), &id)),
    );
    RunRecord {
        campaigns: vec![campaign],
        tickets,
        ambiguous_requests: storm.issue.ambiguous + held.issue.ambiguous,
    }
}

/// A long-poll waiter not answered with a final status after the resume.
pub fn waiter_violation(waiters: &WaiterFigures) -> Option<String> {
    (waiters.unanswered() > 0).then(|| {
        format!(
            "long-poll: {} of {} waiters were not answered with a final status after the resume ({} PENDING, {} errors)",
            waiters.unanswered(),
            waiters.waiters,
            waiters.answered_pending,
            waiters.errors.values().sum::<u64>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;

    fn figures(answered_final: u64, answered_pending: u64) -> WaiterFigures {
        WaiterFigures {
            waiters: 10,
            connections: 2,
            waiters_per_connection: 5.0,
            answered_before_resume: 0,
            answered_final,
            answered_pending,
            errors: BTreeMap::from([(
                "transport/TIMEOUT".to_owned(),
                10 - answered_final - answered_pending,
            )]),
            resume_to_answer_ms: Percentiles::default(),
            rss_before_mib: None,
            rss_waiting_mib: None,
            rss_growth_mib: None,
            rss_per_waiter_kib: None,
        }
    }

    #[test]
    fn every_waiter_final_is_no_violation() {
        assert_eq!(waiter_violation(&figures(10, 0)), None);
    }

    #[test]
    fn a_pending_or_failed_waiter_is_a_violation() {
        let violation = waiter_violation(&figures(7, 2)).expect("violation");
        assert!(violation.contains("3 of 10"), "{violation}");
        assert!(violation.contains("2 PENDING, 1 errors"), "{violation}");
    }
}
