//! Reads and the API node's campaign insert.

use uuid::Uuid;

use super::issuance::Job;
use super::{SqliteStore, from_millis, to_millis};
use crate::domain::ports::{CampaignRepository, FoundTicket, StoreError, TicketRepository};
use crate::domain::{
    Campaign, CampaignId, CampaignListing, CampaignName, Coupon, CouponCode, ListPosition,
    LogPosition, TicketId, TotalCoupons, UserId,
};
use rusqlite::{OptionalExtension, params};

use crate::infra::sql_error::{corrupt, sqlite_error};
use crate::infra::sql_values::{
    TicketColumns, parse_alphabet, to_i64, to_partition, to_ticket_position, to_ticket_result,
    to_u64,
};

/// The columns of `CampaignRow`, in its order.
macro_rules! campaign_columns {
    () => {
        "id, name, total_coupons, issued_coupons, starts_at_ms, created_at_ms, origin_partition, origin_offset, code_alphabet"
    };
}
pub(super) use campaign_columns;

pub(super) type CampaignRow = (String, String, i64, i64, i64, i64, i64, i64, String);
pub(super) type CouponRow = (
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

/// One campaign's row by id, through the connection's statement cache (API reads and the
/// issuing worker's batches both look campaigns up this way).
pub(super) fn select_campaign(
    conn: &rusqlite::Connection,
    id: CampaignId,
) -> rusqlite::Result<Option<CampaignRow>> {
    const SQL: &str = concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE id = ?"
    );
    conn.prepare_cached(SQL)?
        .query_row(params![id.to_string()], |r| r.try_into())
        .optional()
}

pub(super) fn campaign_from_row(row: CampaignRow) -> Result<Campaign, StoreError> {
    let (id, name, total, issued, starts_at, created_at, partition, offset, alphabet) = row;
    Ok(Campaign {
        id: parse_campaign_id(&id)?,
        name: CampaignName::parse(&name).map_err(corrupt)?,
        total_coupons: TotalCoupons::parse(total).map_err(corrupt)?,
        issued_coupons: to_u64(issued)?,
        starts_at: from_millis(starts_at)?,
        created_at: from_millis(created_at)?,
        origin: LogPosition {
            partition: to_partition(partition)?,
            offset: to_u64(offset)?,
        },
        alphabet: parse_alphabet(&alphabet)?,
    })
}

pub(super) fn coupon_from_row(row: CouponRow) -> Result<Coupon, StoreError> {
    let (code, campaign_id, ordinal, user_id, ticket_id, issued_at, partition, offset) = row;
    Ok(Coupon {
        code: CouponCode::parse(&code).map_err(corrupt)?,
        campaign_id: parse_campaign_id(&campaign_id)?,
        user_id: UserId::from_stored(&user_id).map_err(corrupt)?,
        ticket_id: TicketId::from_uuid(parse_uuid(&ticket_id)?),
        issued_at: from_millis(issued_at)?,
        ordinal: to_u64(ordinal)?,
        ticket_position: to_ticket_position(partition, offset)?,
    })
}

/// A ticket's row of `find_tickets` and, when it won, its coupon's (the other half of the
/// LEFT JOIN, whose columns are all set or all NULL).
struct TicketRow {
    campaign_id: String,
    user_id: String,
    status: i64,
    coupon_code: Option<String>,
    log_partition: i64,
    log_offset: i64,
    coupon: Option<CouponRow>,
}

impl TicketRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let coupon = match r.get::<_, Option<String>>(6)? {
            Some(code) => Some((
                code,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
            )),
            None => None,
        };
        Ok(Self {
            campaign_id: r.get(0)?,
            user_id: r.get(1)?,
            status: r.get(2)?,
            coupon_code: r.get(3)?,
            log_partition: r.get(4)?,
            log_offset: r.get(5)?,
            coupon,
        })
    }
}

pub(super) fn parse_campaign_id(raw: &str) -> Result<CampaignId, StoreError> {
    parse_uuid(raw).map(CampaignId::from_uuid)
}

fn parse_uuid(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(raw).map_err(corrupt)
}

/// Inserts a campaign; for one already stored, the earliest creation record in the log
/// wins (`Campaign::defines_instead_of`), so retried creations replay identically.
pub(super) const INSERT_CAMPAIGN: &str = "INSERT INTO campaigns (id, name, total_coupons, issued_coupons, starts_at_ms, created_at_ms, origin_partition, origin_offset, code_alphabet) \
     VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, total_coupons = excluded.total_coupons, \
     starts_at_ms = excluded.starts_at_ms, created_at_ms = excluded.created_at_ms, origin_offset = excluded.origin_offset, \
     code_alphabet = excluded.code_alphabet \
     WHERE campaigns.origin_partition = excluded.origin_partition \
     AND excluded.origin_offset < campaigns.origin_offset AND campaigns.issued_coupons = 0";

impl CampaignRepository for SqliteStore {
    async fn insert_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        let campaign = Box::new(campaign.clone());
        self.ask(|reply| Job::InsertCampaign(campaign, reply)).await
    }

    async fn find_campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        let row = self
            .readers
            .with(|conn| select_campaign(conn, id).map_err(sqlite_error))?;
        row.map(campaign_from_row).transpose()
    }

    async fn find_campaign_page(
        &self,
        id: CampaignId,
        after_ordinal: u64,
        limit: u32,
    ) -> Result<Option<(Campaign, Vec<Coupon>)>, StoreError> {
        let after = to_i64(after_ordinal)?;
        self.readers
            .with_blocking(move |conn| {
                // One read transaction: one WAL snapshot for the count and the page.
                let snapshot = conn.unchecked_transaction().map_err(sqlite_error)?;
                let Some(row) = select_campaign(&snapshot, id).map_err(sqlite_error)? else {
                    return Ok(None);
                };
                let campaign = campaign_from_row(row)?;
                let coupons = select_coupons(&snapshot, id, after, limit)?;
                Ok(Some((campaign, coupons)))
            })
            .await
    }

    async fn find_holder_coupon(
        &self,
        id: CampaignId,
        user: &UserId,
    ) -> Result<Option<Coupon>, StoreError> {
        const SQL: &str = "SELECT code, campaign_id, ordinal, user_id, ticket_id, issued_at_ms, ticket_partition, ticket_offset \
             FROM coupons WHERE campaign_id = ? AND user_id = ?";
        let row: Option<CouponRow> = self.readers.with(|conn| {
            conn.prepare_cached(SQL)
                .and_then(|mut select| {
                    select
                        .query_row(params![id.to_string(), user.as_str()], |r| r.try_into())
                        .optional()
                })
                .map_err(sqlite_error)
        })?;
        row.map(coupon_from_row).transpose()
    }

    async fn list_campaigns(
        &self,
        after: Option<ListPosition>,
        limit: u32,
    ) -> Result<Vec<CampaignListing>, StoreError> {
        // The sold-out time is the last coupon's: one probe of the coupons' primary key.
        const SQL: &str = concat!(
            "SELECT ",
            campaign_columns!(),
            ", (SELECT k.issued_at_ms FROM coupons k WHERE k.campaign_id = c.id AND k.ordinal = c.total_coupons) \
             FROM campaigns c WHERE ?1 IS NULL OR (c.created_at_ms, c.id) < (?1, ?2) \
             ORDER BY c.created_at_ms DESC, c.id DESC LIMIT ?3"
        );
        let (at, id) = after.map_or((None, None), |p| {
            (Some(to_millis(p.created_at)), Some(p.id.to_string()))
        });
        let rows = self.readers.with(|conn| {
            let mut select = conn.prepare_cached(SQL).map_err(sqlite_error)?;
            let rows = select
                .query_map(params![at, id, i64::from(limit)], |r| {
                    Ok((CampaignRow::try_from(r)?, r.get::<_, Option<i64>>(9)?))
                })
                .map_err(sqlite_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)
        })?;
        rows.into_iter()
            .map(|(row, sold_out_at)| {
                Ok(CampaignListing {
                    campaign: campaign_from_row(row)?,
                    sold_out_at: sold_out_at.map(from_millis).transpose()?,
                })
            })
            .collect()
    }

    async fn list_coupons(
        &self,
        id: CampaignId,
        after_ordinal: u64,
        limit: u32,
    ) -> Result<Vec<Coupon>, StoreError> {
        let after = to_i64(after_ordinal)?;
        self.readers
            .with_blocking(move |conn| select_coupons(conn, id, after, limit))
            .await
    }
}

/// A page of the campaign's coupons. Rows are stepped and validated on the calling
/// (blocking) thread, straight into domain values: no per-row hand-off between
/// threads, no JSON in between.
fn select_coupons(
    conn: &rusqlite::Connection,
    id: CampaignId,
    after: i64,
    limit: u32,
) -> Result<Vec<Coupon>, StoreError> {
    const SQL: &str = "SELECT code, ordinal, user_id, ticket_id, issued_at_ms, ticket_partition, ticket_offset FROM coupons \
         WHERE campaign_id = ? AND ordinal > ? ORDER BY ordinal LIMIT ?";
    let mut select = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    let mut rows = select
        .query(params![id.to_string(), after, i64::from(limit)])
        .map_err(sqlite_error)?;
    let mut coupons = Vec::with_capacity(limit.min(10_001) as usize);
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let text = |i: usize| row.get_ref(i).and_then(|v| Ok(v.as_str()?));
        coupons.push(Coupon {
            code: CouponCode::parse(text(0).map_err(sqlite_error)?).map_err(corrupt)?,
            campaign_id: id,
            ordinal: to_u64(row.get(1).map_err(sqlite_error)?)?,
            user_id: UserId::from_stored(text(2).map_err(sqlite_error)?).map_err(corrupt)?,
            ticket_id: TicketId::from_uuid(parse_uuid(text(3).map_err(sqlite_error)?)?),
            issued_at: from_millis(row.get(4).map_err(sqlite_error)?)?,
            ticket_position: to_ticket_position(
                row.get(5).map_err(sqlite_error)?,
                row.get(6).map_err(sqlite_error)?,
            )?,
        });
    }
    Ok(coupons)
}

impl TicketRepository for SqliteStore {
    async fn find_tickets(&self, ids: &[TicketId]) -> Result<Vec<FoundTicket>, StoreError> {
        const SQL: &str = "SELECT t.campaign_id, t.user_id, t.status, t.coupon_code, t.log_partition, t.log_offset, \
             c.code, c.campaign_id, c.ordinal, c.user_id, c.ticket_id, c.issued_at_ms, c.ticket_partition, c.ticket_offset \
             FROM ticket_results t LEFT JOIN coupons c \
             ON t.coupon_code IS NOT NULL AND c.campaign_id = t.campaign_id AND c.user_id = t.user_id \
             WHERE t.ticket_id = ?";
        // One reader for all of them; a point lookup per id (in process, no round trip).
        let rows = self.readers.with(|conn| {
            let mut select = conn.prepare_cached(SQL).map_err(sqlite_error)?;
            let mut rows = Vec::new();
            for &id in ids {
                let row = select
                    .query_row(params![id.to_string()], TicketRow::read)
                    .optional()
                    .map_err(sqlite_error)?;
                rows.extend(row.map(|row| (id, row)));
            }
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(id, row)| found_ticket(id, row))
            .collect()
    }
}

fn found_ticket(id: TicketId, row: TicketRow) -> Result<FoundTicket, StoreError> {
    let columns = TicketColumns {
        user_id: &row.user_id,
        status: row.status,
        coupon_code: row.coupon_code.as_deref(),
        log_partition: row.log_partition,
        log_offset: row.log_offset,
    };
    let result = to_ticket_result(id, parse_campaign_id(&row.campaign_id)?, columns)?;
    let coupon = row.coupon.map(coupon_from_row).transpose()?;
    Ok((result, coupon))
}
