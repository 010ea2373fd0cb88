//! The issuing worker's transaction on PostgreSQL (READ COMMITTED). The compare-and-set
//! of the partition's offset is the first write, so its row lock orders concurrent
//! workers of one partition; the batch's rows then go in one statement per table.

use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::PgStore;
use super::decided_listener::{DECIDED_CHANNEL, decided_notice};
use super::repositories::{CampaignRow, campaign_columns, campaign_from_row, insert_campaign};
use crate::domain::ports::{BatchChanges, Holding, IssuanceBatch, IssuanceStore, StoreError};
use crate::domain::{Campaign, CampaignId, Coupon, CouponCode, TicketResult, UserId};
use crate::infra::sql_error::{corrupt, store_error};
use crate::infra::sql_values::{from_ticket_position, to_i64, to_u64};

/// Which of a batch's users already hold a coupon of the campaign (public for the
/// plan test in tests/postgres_store.rs).
///
/// One probe of the (campaign_id, user_id) index per user, whatever the table's
/// statistics. With `user_id = ANY($2)` a generic prepared plan scanned the
/// campaign's coupons and compared each with the whole array (1.2 s for 2,048
/// users against 50,000 coupons). Without the `LIMIT 1`, the subquery is pulled up
/// into a join, and a plan made while the table is new and small (a consumer
/// caches it for its connection's life) hashes all of the campaign's coupons per
/// batch: ~450 rows read per probe on average in a 50,000-coupon run. The `LIMIT`
/// keeps the subquery a per-user lookup, for which the unique index always wins.
pub const HOLDERS_SQL: &str = "SELECT u.user_id, c.code FROM UNNEST($2::text[]) AS u (user_id) \
     CROSS JOIN LATERAL (SELECT code FROM coupons WHERE campaign_id = $1 AND user_id = u.user_id LIMIT 1) AS c";

pub struct PgBatch {
    tx: Transaction<'static, Postgres>,
    partition: u32,
    next: u64,
}

impl IssuanceStore for PgStore {
    type Batch = PgBatch;

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT next_offset FROM partition_offsets WHERE log_partition = $1";
        let mut conn = self.conn().await?;
        let stored: Option<i64> = sqlx::query_scalar(SQL)
            .bind(i64::from(partition))
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_error)?;
        stored.map_or(Ok(0), to_u64)
    }

    /// The fence against zombie workers. Under READ COMMITTED, the second of two
    /// concurrent `ADVANCE`s of one partition blocks on the row lock the first one took;
    /// once the first commits, PostgreSQL re-evaluates the second's WHERE against the new
    /// row version, `next_offset = expected` no longer holds, and it updates 0 rows: only
    /// one worker can move a partition from a given offset. (If the first rolls back, the
    /// second proceeds on the unchanged row.) `ENSURE` behaves alike for a partition's
    /// very first batch: a concurrent insert of the same key waits for the other one.
    async fn begin(&self, partition: u32, expected: u64, next: u64) -> Result<PgBatch, StoreError> {
        const ENSURE: &str = "INSERT INTO partition_offsets (log_partition, next_offset) VALUES ($1, 0) \
             ON CONFLICT (log_partition) DO NOTHING";
        const ADVANCE: &str = "UPDATE partition_offsets SET next_offset = $1 \
             WHERE log_partition = $2 AND next_offset = $3";
        const STORED: &str = "SELECT next_offset FROM partition_offsets WHERE log_partition = $1";
        let mut tx = PgStore::begin(self).await?;
        sqlx::query(ENSURE)
            .bind(i64::from(partition))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let advanced = sqlx::query(ADVANCE)
            .bind(to_i64(next)?)
            .bind(i64::from(partition))
            .bind(to_i64(expected)?)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        if advanced.rows_affected() != 1 {
            // A fresh statement, so a fresh snapshot: it sees the winner's commit.
            let stored: i64 = sqlx::query_scalar(STORED)
                .bind(i64::from(partition))
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;
            return Err(StoreError::Fenced {
                partition,
                expected,
                stored: to_u64(stored)?,
            });
        }
        Ok(PgBatch {
            tx,
            partition,
            next,
        })
    }
}

impl IssuanceBatch for PgBatch {
    /// Locked (`FOR UPDATE`) so that no other transaction moves their counts meanwhile.
    async fn load_campaigns(&mut self, ids: &[CampaignId]) -> Result<Vec<Campaign>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            campaign_columns!(),
            " FROM campaigns WHERE id = ANY($1) FOR UPDATE"
        );
        let ids: Vec<Uuid> = ids.iter().map(CampaignId::as_uuid).collect();
        sqlx::query_as::<_, CampaignRow>(SQL)
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(campaign_from_row)
            .collect()
    }

    async fn load_holders(
        &mut self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
        sqlx::query_as::<_, (String, String)>(HOLDERS_SQL)
            .bind(campaign.as_uuid())
            .bind(users)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(user, code)| {
                Ok((
                    UserId::from_stored(&user).map_err(corrupt)?,
                    CouponCode::parse(&code).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// A range of the coupons' primary key, (campaign_id, ordinal).
    async fn load_coupons_from(
        &mut self,
        campaign: CampaignId,
        from: u64,
    ) -> Result<Vec<Holding>, StoreError> {
        const SQL: &str = "SELECT ordinal, user_id, code FROM coupons \
             WHERE campaign_id = $1 AND ordinal >= $2 ORDER BY ordinal";
        sqlx::query_as::<_, (i64, String, String)>(SQL)
            .bind(campaign.as_uuid())
            .bind(to_i64(from)?)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(ordinal, user, code)| {
                Ok(Holding {
                    ordinal: to_u64(ordinal)?,
                    user_id: UserId::from_stored(&user).map_err(corrupt)?,
                    code: CouponCode::parse(&code).map_err(corrupt)?,
                })
            })
            .collect()
    }

    /// One statement per table for the whole batch: rows travel as parallel arrays.
    async fn commit(mut self, changes: BatchChanges) -> Result<(), StoreError> {
        // First: the coupons below may belong to a campaign created in this batch.
        for campaign in &changes.new_campaigns {
            insert_campaign(&mut *self.tx, campaign).await?;
        }
        if !changes.coupons.is_empty() {
            insert_coupons(&mut self.tx, &changes.coupons).await?;
        }
        if !changes.tickets.is_empty() {
            store_tickets(&mut self.tx, &changes.tickets).await?;
        }
        if !changes.issued_counts.is_empty() {
            update_issued_counts(&mut self.tx, &changes.issued_counts).await?;
        }
        notify_decided(&mut self.tx, self.partition, self.next).await?;
        self.tx.commit().await.map_err(store_error)
    }
}

/// Tells every listening API node how far the partition is decided. Sent in the
/// batch's transaction: PostgreSQL delivers it only if, and once, the batch commits.
async fn notify_decided(
    tx: &mut PgConnection,
    partition: u32,
    next: u64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(DECIDED_CHANNEL)
        .bind(decided_notice(partition, next))
        .execute(tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// One column of `rows`, for an `UNNEST` parameter.
fn column<'a, T, C>(rows: &'a [T], field: impl Fn(&'a T) -> C) -> Vec<C> {
    rows.iter().map(field).collect()
}

/// One column of `rows` whose values may not fit the database's type.
fn checked_column<T>(
    rows: &[T],
    field: impl Fn(&T) -> Result<i64, StoreError>,
) -> Result<Vec<i64>, StoreError> {
    rows.iter().map(field).collect()
}

async fn insert_coupons(tx: &mut PgConnection, coupons: &[Coupon]) -> Result<(), StoreError> {
    const SQL: &str = "INSERT INTO coupons (code, campaign_id, ordinal, user_id, ticket_id, issued_at, ticket_partition, ticket_offset) \
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::uuid[], $6::timestamptz[], $7::bigint[], $8::bigint[])";
    let positions = coupons
        .iter()
        .map(|c| from_ticket_position(c.ticket_position))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(SQL)
        .bind(column(coupons, |c| c.code.as_str()))
        .bind(column(coupons, |c| c.campaign_id.as_uuid()))
        .bind(checked_column(coupons, |c| to_i64(c.ordinal))?)
        .bind(column(coupons, |c| c.user_id.as_str()))
        .bind(column(coupons, |c| c.ticket_id.as_uuid()))
        .bind(column(coupons, |c| c.issued_at))
        .bind(column(&positions, |p| p.0))
        .bind(column(&positions, |p| p.1))
        .execute(tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The tickets' insert, followed by `$tail`.
macro_rules! insert_tickets_sql {
    ($tail:literal) => {
        concat!(
            "INSERT INTO ticket_results (ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::smallint[], $5::text[], $6::bigint[], $7::bigint[])",
            $tail
        )
    };
}

/// A batch's tickets. No stored ticket shares an id with one of a batch whose offset
/// compare-and-set took, unless the log holds one request twice: so they go in with a
/// plain insert, which costs ~40 % less than one with `ON CONFLICT` (that checks the
/// index before each row, measured on 200,000 rows). Should the log hold a repeat, the
/// plain insert fails on the primary key and the careful one, which keeps the first
/// decision of a ticket, runs in its place; the savepoint undoes only the failed one.
async fn store_tickets(tx: &mut PgConnection, tickets: &[TicketResult]) -> Result<(), StoreError> {
    const PLAIN: &str = insert_tickets_sql!("");
    const KEEP_FIRST: &str = insert_tickets_sql!(" ON CONFLICT (ticket_id) DO NOTHING");
    execute(tx, "SAVEPOINT tickets").await?;
    match insert_tickets(tx, tickets, PLAIN).await {
        Err(StoreError::Conflict(constraint)) if constraint == "ticket_results_pkey" => {
            execute(tx, "ROLLBACK TO SAVEPOINT tickets").await?;
            insert_tickets(tx, tickets, KEEP_FIRST).await
        }
        stored => stored,
    }
}

async fn execute(tx: &mut PgConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(tx).await.map_err(store_error)?;
    Ok(())
}

async fn insert_tickets(
    tx: &mut PgConnection,
    tickets: &[TicketResult],
    sql: &'static str,
) -> Result<(), StoreError> {
    sqlx::query(sql)
        .bind(column(tickets, |t| t.ticket_id.as_uuid()))
        .bind(column(tickets, |t| t.campaign_id.as_uuid()))
        .bind(column(tickets, |t| t.user_id.as_str()))
        .bind(column(tickets, |t| t.status.code()))
        .bind(column(tickets, |t| {
            t.coupon_code.as_ref().map(CouponCode::as_str)
        }))
        .bind(column(tickets, |t| i64::from(t.position.partition)))
        .bind(checked_column(tickets, |t| to_i64(t.position.offset))?)
        .execute(tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

async fn update_issued_counts(
    tx: &mut PgConnection,
    counts: &[(CampaignId, u64)],
) -> Result<(), StoreError> {
    const SQL: &str = "UPDATE campaigns AS c SET issued_coupons = v.n \
         FROM UNNEST($1::uuid[], $2::bigint[]) AS v (id, n) WHERE c.id = v.id";
    sqlx::query(SQL)
        .bind(column(counts, |(id, _)| id.as_uuid()))
        .bind(checked_column(counts, |(_, issued)| to_i64(*issued))?)
        .execute(tx)
        .await
        .map_err(store_error)?;
    Ok(())
}
