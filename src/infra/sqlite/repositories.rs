//! Reads and the API node's campaign insert.

use std::borrow::Cow;

use uuid::Uuid;

use super::{SqliteStore, from_millis, to_millis};
use crate::domain::ports::{CampaignRepository, StoreError, TicketRepository};
use crate::domain::{
    Campaign, CampaignId, CampaignName, Coupon, CouponCode, IssueStatus, LogPosition, TicketId,
    TicketResult, TotalCoupons, UserId,
};
use crate::infra::sql_error::{corrupt, store_error};
use crate::infra::sql_values::{to_i64, to_u64};

pub(super) type CampaignRow = (String, String, i64, i64, i64, i64, i64, i64);
pub(super) type CouponRow = (String, String, i64, String, String, i64);

pub(super) fn campaign_from_row(row: CampaignRow) -> Result<Campaign, StoreError> {
    let (id, name, total, issued, starts_at, created_at, partition, offset) = row;
    Ok(Campaign {
        id: parse_campaign_id(&id)?,
        name: CampaignName::parse(&name).map_err(corrupt)?,
        total_coupons: TotalCoupons::parse(total).map_err(corrupt)?,
        issued_coupons: to_u64(issued)?,
        starts_at: from_millis(starts_at)?,
        created_at: from_millis(created_at)?,
        origin: LogPosition {
            partition: u32::try_from(partition).map_err(corrupt)?,
            offset: to_u64(offset)?,
        },
    })
}

pub(super) fn coupon_from_row(row: CouponRow) -> Result<Coupon, StoreError> {
    let (code, campaign_id, ordinal, user_id, ticket_id, issued_at) = row;
    Ok(Coupon {
        code: CouponCode::parse(&code).map_err(corrupt)?,
        campaign_id: parse_campaign_id(&campaign_id)?,
        user_id: UserId::parse(&user_id).map_err(corrupt)?,
        ticket_id: TicketId::from_uuid(parse_uuid(&ticket_id)?),
        issued_at: from_millis(issued_at)?,
        ordinal: to_u64(ordinal)?,
    })
}

pub(super) fn parse_campaign_id(raw: &str) -> Result<CampaignId, StoreError> {
    parse_uuid(raw).map(CampaignId::from_uuid)
}

fn parse_uuid(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(raw).map_err(corrupt)
}

pub(super) const INSERT_CAMPAIGN: &str = "INSERT INTO campaigns (id, name, total_coupons, issued_coupons, starts_at_ms, created_at_ms, origin_partition, origin_offset) VALUES (?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING";

pub(super) async fn insert_campaign<'c, E>(executor: E, c: &Campaign) -> Result<(), StoreError>
where
    E: sqlx::SqliteExecutor<'c>,
{
    sqlx::query(INSERT_CAMPAIGN)
        .bind(c.id.to_string())
        .bind(c.name.as_str())
        .bind(to_i64(c.total_coupons.get())?)
        .bind(to_millis(c.starts_at))
        .bind(to_millis(c.created_at))
        .bind(i64::from(c.origin.partition))
        .bind(to_i64(c.origin.offset)?)
        .execute(executor)
        .await
        .map_err(store_error)?;
    Ok(())
}

impl CampaignRepository for SqliteStore {
    async fn insert_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        insert_campaign(&self.pool, campaign).await
    }

    async fn find_campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        const SQL: &str = "SELECT id, name, total_coupons, issued_coupons, starts_at_ms, created_at_ms, origin_partition, origin_offset FROM campaigns WHERE id = ?";
        sqlx::query_as::<_, CampaignRow>(SQL)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .map(campaign_from_row)
            .transpose()
    }

    async fn list_coupons(
        &self,
        id: CampaignId,
        after_ordinal: u64,
        limit: u32,
    ) -> Result<Vec<Coupon>, StoreError> {
        // The page comes back as ONE row holding a JSON array: sqlx hands every SQLite
        // row from its worker thread to the runtime separately, and at 10,000 rows those
        // hand-offs, not SQLite, were the cost.
        const SQL: &str = "SELECT json_group_array(json_array(code, ordinal, user_id, ticket_id, issued_at_ms)) \
             FROM (SELECT code, ordinal, user_id, ticket_id, issued_at_ms FROM coupons \
                   WHERE campaign_id = ? AND ordinal > ? ORDER BY ordinal LIMIT ?)";
        let page: String = sqlx::query_scalar(SQL)
            .bind(id.to_string())
            .bind(to_i64(after_ordinal)?)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        // Strings borrowed from the page where they need no unescaping: each field is
        // validated into its domain type and copied once.
        #[derive(serde::Deserialize)]
        struct Row<'a>(
            #[serde(borrow)] Cow<'a, str>,
            i64,
            #[serde(borrow)] Cow<'a, str>,
            #[serde(borrow)] Cow<'a, str>,
            i64,
        );
        let rows: Vec<Row<'_>> = serde_json::from_str(&page).map_err(corrupt)?;
        let mut coupons = rows
            .into_iter()
            .map(|Row(code, ordinal, user, ticket, at)| {
                Ok(Coupon {
                    code: CouponCode::parse(&code).map_err(corrupt)?,
                    campaign_id: id,
                    user_id: UserId::parse(&user).map_err(corrupt)?,
                    ticket_id: TicketId::from_uuid(parse_uuid(&ticket)?),
                    issued_at: from_millis(at)?,
                    ordinal: to_u64(ordinal)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // json_group_array keeps the subquery's order in practice; issue order is the contract.
        coupons.sort_by_key(|c| c.ordinal);
        Ok(coupons)
    }
}

impl TicketRepository for SqliteStore {
    async fn find_ticket(
        &self,
        id: TicketId,
    ) -> Result<Option<(TicketResult, Option<Coupon>)>, StoreError> {
        const SQL: &str = "SELECT t.campaign_id, t.user_id, t.status, t.coupon_code, t.log_partition, t.log_offset, \
             c.code, c.campaign_id, c.ordinal, c.user_id, c.ticket_id, c.issued_at_ms \
             FROM ticket_results t LEFT JOIN coupons c ON c.code = t.coupon_code WHERE t.ticket_id = ?";
        type Row = (
            String,
            String,
            i64,
            Option<String>,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let Some(row) = sqlx::query_as::<_, Row>(SQL)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let (campaign_id, user_id, status, code, partition, offset, c0, c1, c2, c3, c4, c5) = row;
        let status = i16::try_from(status)
            .ok()
            .and_then(IssueStatus::from_code)
            .ok_or_else(|| corrupt(format!("ticket status {status}")))?;
        let result = TicketResult {
            ticket_id: id,
            campaign_id: parse_campaign_id(&campaign_id)?,
            user_id: UserId::parse(&user_id).map_err(corrupt)?,
            status,
            coupon_code: code
                .as_deref()
                .map(CouponCode::parse)
                .transpose()
                .map_err(corrupt)?,
            position: LogPosition {
                partition: u32::try_from(partition).map_err(corrupt)?,
                offset: to_u64(offset)?,
            },
        };
        let coupon = match (c0, c1, c2, c3, c4, c5) {
            (Some(c0), Some(c1), Some(c2), Some(c3), Some(c4), Some(c5)) => {
                Some(coupon_from_row((c0, c1, c2, c3, c4, c5))?)
            }
            _ => None,
        };
        Ok(Some((result, coupon)))
    }
}
