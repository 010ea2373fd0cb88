//! The replayed state against the stored one, row by row and field by field: each
//! difference names the row, the field, what the log implies and what the store holds.

use std::collections::HashMap;
use std::fmt;

use super::replay_store::ReplayedState;
use crate::domain::ports::DecidedState;
use crate::domain::{Campaign, CampaignId, Coupon, LogPosition, TicketId, TicketResult};

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
    let extra = compare_rows(
        replayed.campaigns.values(),
        stored.campaigns,
        &mut compared.campaigns,
        found,
    );
    for held in extra {
        // Stored by the API node, its creation record not decided yet: nothing to say.
        let decided = stored
            .offsets
            .get(&held.origin.partition)
            .copied()
            .unwrap_or(0);
        if held.origin.offset >= decided {
            compared.undecided_campaigns += 1;
        } else {
            report_extra([held], found);
        }
    }
    let coupons = replayed.coupons.values();
    let extra = compare_rows(coupons, stored.coupons, &mut compared.coupons, found);
    report_extra(extra, found);
    let tickets = replayed.tickets.values();
    let extra = compare_rows(tickets, stored.tickets, &mut compared.tickets, found);
    report_extra(extra, found);
    compared
}

/// A kind of stored row the audit compares: how it is keyed, ordered and told.
trait AuditedRow: Sized {
    type Key: Eq + std::hash::Hash;
    type Order: Ord;
    fn key(&self) -> Self::Key;
    /// Log order, for listing differences in it.
    fn order(&self) -> Self::Order;
    /// `campaign <id>`, `coupon <ordinal> of campaign <id>`, `ticket <id>`.
    fn row(&self) -> String;
    /// Each compared column: its name, the replayed value, the stored value.
    fn fields(&self, stored: &Self) -> Vec<(&'static str, String, String)>;
    fn describe(&self) -> String;
}

/// Every replayed row against the stored row of its key, in log order; the stored rows
/// the replay has no key for are returned, in log order, for the caller to judge.
fn compare_rows<'a, T: AuditedRow + 'a>(
    replayed: impl Iterator<Item = &'a T>,
    stored: Vec<T>,
    counted: &mut usize,
    found: &mut Differences,
) -> Vec<T> {
    let mut stored: HashMap<T::Key, T> = stored.into_iter().map(|t| (t.key(), t)).collect();
    let mut expected: Vec<&T> = replayed.collect();
    expected.sort_by_key(|t| t.order());
    for row in expected {
        *counted += 1;
        match stored.remove(&row.key()) {
            Some(held) => found.fields(&row.row(), &row.fields(&held)),
            None => found.push(&row.row(), "row", row.describe(), NO_ROW.into()),
        }
    }
    let mut extra: Vec<T> = stored.into_values().collect();
    extra.sort_by_key(|t| t.order());
    extra
}

/// Stored rows the log implies none of.
fn report_extra<T: AuditedRow>(extra: impl IntoIterator<Item = T>, found: &mut Differences) {
    for held in extra {
        found.push(&held.row(), "row", NO_ROW.into(), held.describe());
    }
}

impl AuditedRow for Campaign {
    type Key = CampaignId;
    type Order = LogPosition;
    fn key(&self) -> CampaignId {
        self.id
    }
    fn order(&self) -> LogPosition {
        self.origin
    }
    fn row(&self) -> String {
        format!("campaign {}", self.id)
    }
    fn fields(&self, stored: &Self) -> Vec<(&'static str, String, String)> {
        campaign_fields(self, stored).into()
    }
    fn describe(&self) -> String {
        describe_campaign(self)
    }
}

impl AuditedRow for Coupon {
    type Key = (CampaignId, u64);
    type Order = (CampaignId, u64);
    fn key(&self) -> (CampaignId, u64) {
        (self.campaign_id, self.ordinal)
    }
    fn order(&self) -> (CampaignId, u64) {
        self.key()
    }
    fn row(&self) -> String {
        format!("coupon {} of campaign {}", self.ordinal, self.campaign_id)
    }
    fn fields(&self, stored: &Self) -> Vec<(&'static str, String, String)> {
        coupon_fields(self, stored).into()
    }
    fn describe(&self) -> String {
        describe_coupon(self)
    }
}

impl AuditedRow for TicketResult {
    type Key = TicketId;
    type Order = LogPosition;
    fn key(&self) -> TicketId {
        self.ticket_id
    }
    fn order(&self) -> LogPosition {
        self.position
    }
    fn row(&self) -> String {
        format!("ticket {}", self.ticket_id)
    }
    fn fields(&self, stored: &Self) -> Vec<(&'static str, String, String)> {
        ticket_fields(self, stored).into()
    }
    fn describe(&self) -> String {
        describe_ticket(self)
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

fn position(p: LogPosition) -> String {
    format!("partition {} offset {}", p.partition, p.offset)
}

fn optional_position(p: Option<LogPosition>) -> String {
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
