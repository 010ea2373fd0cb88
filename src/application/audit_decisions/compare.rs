//! The replayed state against the stored one, row by row and field by field: each
//! difference names the row, the field, what the log implies and what the store holds.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::replay_store::ReplayedState;
use crate::domain::ports::DecidedState;
use crate::domain::{Campaign, CampaignId, Coupon, TicketId, TicketResult};

/// One way the store differs from what the log implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The row: `campaign <id>`, `coupon <ordinal> of campaign <id>`, `ticket <id>`.
    pub row: String,
    /// The column, or `row` when the whole row is missing on one side.
    pub field: &'static str,
    /// What the log implies (`no row` when it implies none).
    pub log: String,
    /// What the store holds (`no row` when it holds none).
    pub store: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: the log implies {}, the store holds {}",
            self.row, self.field, self.log, self.store
        )
    }
}

const NO_ROW: &str = "no row";

/// Rows compared, of each kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    pub campaigns: usize,
    pub coupons: usize,
    pub tickets: usize,
    /// Campaigns the store holds whose creation record is past the decided offset
    /// (stored by the API node, not decided yet): not compared.
    pub undecided_campaigns: usize,
}

/// Counts every difference, keeps the first `limit`.
pub struct Differences {
    limit: usize,
    pub listed: Vec<Difference>,
    pub count: u64,
}

impl Differences {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            listed: Vec::new(),
            count: 0,
        }
    }

    fn push(&mut self, row: &str, field: &'static str, log: String, store: String) {
        self.count += 1;
        if self.listed.len() < self.limit {
            self.listed.push(Difference {
                row: row.to_owned(),
                field,
                log,
                store,
            });
        }
    }

    /// One difference per field of `fields` whose two sides differ.
    fn fields(&mut self, row: &str, fields: &[(&'static str, String, String)]) {
        for (field, log, store) in fields {
            if log != store {
                self.push(row, field, log.clone(), store.clone());
            }
        }
    }
}

pub fn compare(
    replayed: &ReplayedState,
    stored: DecidedState,
    found: &mut Differences,
) -> Compared {
    let mut compared = Compared::default();
    compare_campaigns(
        replayed,
        stored.campaigns,
        &stored.offsets,
        &mut compared,
        found,
    );
    compare_coupons(&replayed.coupons, stored.coupons, &mut compared, found);
    compare_tickets(&replayed.tickets, stored.tickets, &mut compared, found);
    compared
}

fn compare_campaigns(
    replayed: &ReplayedState,
    stored: Vec<Campaign>,
    offsets: &BTreeMap<u32, u64>,
    compared: &mut Compared,
    found: &mut Differences,
) {
    let mut stored: HashMap<CampaignId, Campaign> = stored.into_iter().map(|c| (c.id, c)).collect();
    let mut expected: Vec<&Campaign> = replayed.campaigns.values().collect();
    expected.sort_by_key(|c| c.origin);
    for campaign in expected {
        let row = format!("campaign {}", campaign.id);
        compared.campaigns += 1;
        match stored.remove(&campaign.id) {
            Some(held) => found.fields(&row, &campaign_fields(campaign, &held)),
            None => found.push(&row, "row", describe_campaign(campaign), NO_ROW.into()),
        }
    }
    let mut extra: Vec<Campaign> = stored.into_values().collect();
    extra.sort_by_key(|c| c.origin);
    for held in extra {
        let decided = offsets.get(&held.origin.partition).copied().unwrap_or(0);
        if held.origin.offset >= decided {
            compared.undecided_campaigns += 1;
        } else {
            let row = format!("campaign {}", held.id);
            found.push(&row, "row", NO_ROW.into(), describe_campaign(&held));
        }
    }
}

fn campaign_fields(log: &Campaign, store: &Campaign) -> [(&'static str, String, String); 6] {
    [
        ("name", log.name.as_str().into(), store.name.as_str().into()),
        (
            "total_coupons",
            log.total_coupons.get().to_string(),
            store.total_coupons.get().to_string(),
        ),
        (
            "issued_coupons",
            log.issued_coupons.to_string(),
            store.issued_coupons.to_string(),
        ),
        (
            "starts_at",
            log.starts_at.to_rfc3339(),
            store.starts_at.to_rfc3339(),
        ),
        (
            "created_at",
            log.created_at.to_rfc3339(),
            store.created_at.to_rfc3339(),
        ),
        ("origin", position(log.origin), position(store.origin)),
    ]
}

fn describe_campaign(c: &Campaign) -> String {
    format!(
        "{:?}, {} of {} issued, created at {}",
        c.name.as_str(),
        c.issued_coupons,
        c.total_coupons.get(),
        position(c.origin)
    )
}

fn compare_coupons(
    replayed: &BTreeMap<(CampaignId, u64), Coupon>,
    stored: Vec<Coupon>,
    compared: &mut Compared,
    found: &mut Differences,
) {
    let mut stored: BTreeMap<(CampaignId, u64), Coupon> = stored
        .into_iter()
        .map(|c| ((c.campaign_id, c.ordinal), c))
        .collect();
    for (key, coupon) in replayed {
        let row = coupon_row(coupon);
        compared.coupons += 1;
        match stored.remove(key) {
            Some(held) => found.fields(&row, &coupon_fields(coupon, &held)),
            None => found.push(&row, "row", describe_coupon(coupon), NO_ROW.into()),
        }
    }
    for held in stored.into_values() {
        found.push(
            &coupon_row(&held),
            "row",
            NO_ROW.into(),
            describe_coupon(&held),
        );
    }
}

fn coupon_row(c: &Coupon) -> String {
    format!("coupon {} of campaign {}", c.ordinal, c.campaign_id)
}

fn coupon_fields(log: &Coupon, store: &Coupon) -> [(&'static str, String, String); 5] {
    // Coupons stored before positions were kept have none: nothing to compare there.
    let stored_position = store.ticket_position.or(log.ticket_position);
    [
        ("code", log.code.to_string(), store.code.to_string()),
        (
            "user_id",
            log.user_id.to_string(),
            store.user_id.to_string(),
        ),
        (
            "ticket_id",
            log.ticket_id.to_string(),
            store.ticket_id.to_string(),
        ),
        (
            "issued_at",
            log.issued_at.to_rfc3339(),
            store.issued_at.to_rfc3339(),
        ),
        (
            "ticket_position",
            optional_position(log.ticket_position),
            optional_position(stored_position),
        ),
    ]
}

fn describe_coupon(c: &Coupon) -> String {
    format!(
        "code {} for user {:?}, ticket {}",
        c.code,
        c.user_id.to_string(),
        c.ticket_id
    )
}

fn compare_tickets(
    replayed: &HashMap<TicketId, TicketResult>,
    stored: Vec<TicketResult>,
    compared: &mut Compared,
    found: &mut Differences,
) {
    let mut stored: HashMap<TicketId, TicketResult> =
        stored.into_iter().map(|t| (t.ticket_id, t)).collect();
    let mut expected: Vec<&TicketResult> = replayed.values().collect();
    expected.sort_by_key(|t| t.position);
    for ticket in expected {
        let row = format!("ticket {}", ticket.ticket_id);
        compared.tickets += 1;
        match stored.remove(&ticket.ticket_id) {
            Some(held) => found.fields(&row, &ticket_fields(ticket, &held)),
            None => found.push(&row, "row", describe_ticket(ticket), NO_ROW.into()),
        }
    }
    let mut extra: Vec<TicketResult> = stored.into_values().collect();
    extra.sort_by_key(|t| t.position);
    for held in extra {
        found.push(
            &format!("ticket {}", held.ticket_id),
            "row",
            NO_ROW.into(),
            describe_ticket(&held),
        );
    }
}

fn ticket_fields(log: &TicketResult, store: &TicketResult) -> [(&'static str, String, String); 5] {
    let code = |t: &TicketResult| {
        t.coupon_code
            .as_ref()
            .map_or_else(|| "no code".into(), ToString::to_string)
    };
    [
        (
            "status",
            log.status.as_str().into(),
            store.status.as_str().into(),
        ),
        ("coupon_code", code(log), code(store)),
        (
            "campaign_id",
            log.campaign_id.to_string(),
            store.campaign_id.to_string(),
        ),
        (
            "user_id",
            log.user_id.to_string(),
            store.user_id.to_string(),
        ),
        ("position", position(log.position), position(store.position)),
    ]
}

fn describe_ticket(t: &TicketResult) -> String {
    let code = t
        .coupon_code
        .as_ref()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    format!(
        "{}{code} for user {:?} at {}",
        t.status.as_str(),
        t.user_id.to_string(),
        position(t.position)
    )
}

fn position(p: crate::domain::LogPosition) -> String {
    format!("partition {} offset {}", p.partition, p.offset)
}

fn optional_position(p: Option<crate::domain::LogPosition>) -> String {
    p.map_or_else(|| "none".into(), position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_difference_is_counted_and_the_first_ones_listed() {
        let mut found = Differences::new(2);
        found.fields(
            "ticket t",
            &[
                ("status", "issued".into(), "sold_out".into()),
                ("user_id", "a".into(), "a".into()),
                ("position", "1".into(), "2".into()),
            ],
        );
        found.push("coupon 3", "row", "code X".into(), NO_ROW.into());
        assert_eq!(found.count, 3);
        assert_eq!(found.listed.len(), 2);
        assert_eq!(
            found.listed[0].to_string(),
            "ticket t: status: the log implies issued, the store holds sold_out"
        );
        assert_eq!(found.listed[1].field, "position");
    }
}
