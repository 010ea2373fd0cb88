//! Every write to the state database, run by one dedicated OS thread that owns a rusqlite
//! connection: the issuing worker's batches, the API's campaign rows, and the health
//! check's ping (so health reports the path writes take). `IssuanceStore::begin` hands
//! the thread a session; each batch call
//! is one message answered on a oneshot, and the statements themselves are plain function
//! calls on that thread (sqlx would hand every statement, and every row, to its own
//! connection thread and back). `BEGIN IMMEDIATE` takes the write lock up front, so the
//! offset check and the writes see one consistent state. A batch dropped without a commit
//! is rolled back.

use std::sync::mpsc as std_mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::repositories::{INSERT_CAMPAIGN, campaign_from_row, select_campaign};
use super::{SqliteStore, to_millis};
use crate::domain::ports::{BatchChanges, Holding, IssuanceBatch, IssuanceStore, StoreError};
use crate::domain::{Campaign, CampaignId, Coupon, CouponCode, TicketResult, UserId};
use crate::infra::sql_error::{corrupt, sqlite_error};
use crate::infra::sql_values::{from_ticket_position, to_i64, to_u64};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the writer thread is asked to do, in order.
pub(super) enum Job {
    /// One batch's transaction.
    Batch(Session),
    /// A campaign row stored by the API (CreateCampaign), in a transaction of its own.
    InsertCampaign(Box<Campaign>, Reply<()>),
    /// One statement on the writer's connection, for the health check.
    Ping(Reply<()>),
    /// Panics the thread, as a bug would (tests of what health reports then).
    #[cfg(test)]
    Crash,
}

/// One batch's transaction, as the writer thread receives it.
pub(super) struct Session {
    partition: u32,
    expected: u64,
    next: u64,
    ops: std_mpsc::Receiver<Op>,
    reply: Reply<()>,
}

enum Op {
    LoadCampaigns(Vec<CampaignId>, Reply<Vec<Campaign>>),
    LoadHolders(CampaignId, Vec<UserId>, Reply<Vec<(UserId, CouponCode)>>),
    LoadCouponsFrom(CampaignId, u64, Reply<Vec<Holding>>),
    Commit(BatchChanges, Reply<()>),
}

pub struct SqliteBatch {
    ops: std_mpsc::Sender<Op>,
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread stopped".into())
}

/// Starts the writer thread; it stops once every sender of jobs is dropped.
pub(super) fn spawn_writer(conn: Connection) -> Result<std_mpsc::Sender<Job>, StoreError> {
    // `rarray()`, for `load_holders`.
    rusqlite::vtab::array::load_module(&conn).map_err(sqlite_error)?;
    let (jobs, queue) = std_mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("coupon-sqlite-writer".into())
        .spawn(move || run_writer(&conn, &queue))
        .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
    Ok(jobs)
}

fn run_writer(conn: &Connection, queue: &std_mpsc::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Batch(session) => run_session(conn, session),
            Job::InsertCampaign(campaign, reply) => {
                let _ = reply.send(insert_campaigns(conn, std::slice::from_ref(&*campaign)));
            }
            Job::Ping(reply) => {
                let _ = reply.send(conn.execute_batch("SELECT 1").map_err(sqlite_error));
            }
            #[cfg(test)]
            Job::Crash => panic!("writer thread crashed on purpose"),
        }
    }
    tracing::debug!("SQLite writer stopped");
}

fn run_session(conn: &Connection, session: Session) {
    let begun = begin(conn, session.partition, session.expected, session.next);
    let ok = begun.is_ok();
    // A caller that went away drops its ops sender too: the loop below then ends.
    let _ = session.reply.send(begun);
    if ok {
        while let Ok(op) = session.ops.recv() {
            match op {
                Op::LoadCampaigns(ids, reply) => {
                    let _ = reply.send(load_campaigns(conn, &ids));
                }
                Op::LoadHolders(campaign, users, reply) => {
                    let _ = reply.send(load_holders(conn, campaign, &users));
                }
                Op::LoadCouponsFrom(campaign, from, reply) => {
                    let _ = reply.send(load_coupons_from(conn, campaign, from));
                }
                Op::Commit(changes, reply) => {
                    let _ = reply.send(commit(conn, &changes));
                    break;
                }
            }
        }
    }
    // Whatever did not commit (an error, a fenced or abandoned batch) leaves nothing.
    if !conn.is_autocommit()
        && let Err(error) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(%error, "rolling back an unfinished batch failed");
    }
}

fn begin(conn: &Connection, partition: u32, expected: u64, next: u64) -> Result<(), StoreError> {
    const ENSURE: &str = "INSERT INTO partition_offsets (log_partition, next_offset) VALUES (?, 0) ON CONFLICT DO NOTHING";
    const ADVANCE: &str =
        "UPDATE partition_offsets SET next_offset = ? WHERE log_partition = ? AND next_offset = ?";
    const STORED: &str = "SELECT next_offset FROM partition_offsets WHERE log_partition = ?";
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(sqlite_error)?;
    conn.prepare_cached(ENSURE)
        .and_then(|mut s| s.execute(params![i64::from(partition)]))
        .map_err(sqlite_error)?;
    let (to, from) = (to_i64(next)?, to_i64(expected)?);
    let advanced = conn
        .prepare_cached(ADVANCE)
        .and_then(|mut s| s.execute(params![to, i64::from(partition), from]))
        .map_err(sqlite_error)?;
    if advanced != 1 {
        let stored: i64 = conn
            .prepare_cached(STORED)
            .and_then(|mut s| s.query_row(params![i64::from(partition)], |row| row.get(0)))
            .map_err(sqlite_error)?;
        return Err(StoreError::Fenced {
            partition,
            expected,
            stored: to_u64(stored)?,
        });
    }
    Ok(())
}

fn load_campaigns(conn: &Connection, ids: &[CampaignId]) -> Result<Vec<Campaign>, StoreError> {
    let mut campaigns = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = select_campaign(conn, *id).map_err(sqlite_error)? {
            campaigns.push(campaign_from_row(row)?);
        }
    }
    Ok(campaigns)
}

/// One statement for the batch's users of a campaign: the users are handed over as an
/// array (`rarray`), and each is one probe of the (campaign, user) unique index. One
/// `query_row` per user cost as much again in binding and resetting (a backlog's drain
/// spent ~45 % of the writer thread here).
fn load_holders(
    conn: &Connection,
    campaign: CampaignId,
    users: &[UserId],
) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
    const SQL: &str = "SELECT c.user_id, c.code FROM rarray(?2) AS u \
         CROSS JOIN coupons AS c ON c.campaign_id = ?1 AND c.user_id = u.value";
    let mut select = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    let users: rusqlite::vtab::array::Array = std::rc::Rc::new(
        users
            .iter()
            .map(|u| rusqlite::types::Value::Text(u.as_str().to_owned()))
            .collect(),
    );
    let mut rows = select
        .query(params![campaign.to_string(), users])
        .map_err(sqlite_error)?;
    let mut holders = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let user: String = row.get(0).map_err(sqlite_error)?;
        let code: String = row.get(1).map_err(sqlite_error)?;
        holders.push((
            UserId::from_stored(&user).map_err(corrupt)?,
            CouponCode::parse(&code).map_err(corrupt)?,
        ));
    }
    Ok(holders)
}

/// A range of the coupons' primary key, (campaign_id, ordinal).
fn load_coupons_from(
    conn: &Connection,
    campaign: CampaignId,
    from: u64,
) -> Result<Vec<Holding>, StoreError> {
    const SQL: &str = "SELECT ordinal, user_id, code FROM coupons \
         WHERE campaign_id = ?1 AND ordinal >= ?2 ORDER BY ordinal";
    let mut select = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    let mut rows = select
        .query(params![campaign.to_string(), to_i64(from)?])
        .map_err(sqlite_error)?;
    let mut coupons = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let ordinal: i64 = row.get(0).map_err(sqlite_error)?;
        let user: String = row.get(1).map_err(sqlite_error)?;
        let code: String = row.get(2).map_err(sqlite_error)?;
        coupons.push(Holding {
            ordinal: to_u64(ordinal)?,
            user_id: UserId::from_stored(&user).map_err(corrupt)?,
            code: CouponCode::parse(&code).map_err(corrupt)?,
        });
    }
    Ok(coupons)
}

/// One prepared statement per table, executed per row, and one COMMIT.
fn commit(conn: &Connection, changes: &BatchChanges) -> Result<(), StoreError> {
    // First: the coupons below may belong to a campaign created in this batch.
    insert_campaigns(conn, &changes.new_campaigns)?;
    insert_coupons(conn, &changes.coupons)?;
    insert_tickets(conn, &changes.tickets)?;
    update_issued_counts(conn, &changes.issued_counts)?;
    conn.execute_batch("COMMIT").map_err(sqlite_error)
}

fn insert_campaigns(conn: &Connection, campaigns: &[Campaign]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(INSERT_CAMPAIGN).map_err(sqlite_error)?;
    for c in campaigns {
        insert
            .execute(params![
                c.id.to_string(),
                c.name.as_str(),
                to_i64(c.total_coupons.get())?,
                to_millis(c.starts_at),
                to_millis(c.created_at),
                i64::from(c.origin.partition),
                to_i64(c.origin.offset)?,
                c.alphabet.as_str()
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn insert_coupons(conn: &Connection, coupons: &[Coupon]) -> Result<(), StoreError> {
    const SQL: &str = "INSERT INTO coupons (code, campaign_id, ordinal, user_id, ticket_id, issued_at_ms, ticket_partition, ticket_offset) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    let mut insert = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    let mut campaign_ids = IdText::default();
    for c in coupons {
        let (ticket_partition, ticket_offset) = from_ticket_position(c.ticket_position)?;
        insert
            .execute(params![
                c.code.as_str(),
                campaign_ids.of(c.campaign_id),
                to_i64(c.ordinal)?,
                c.user_id.as_str(),
                c.ticket_id.to_string(),
                to_millis(c.issued_at),
                ticket_partition,
                ticket_offset
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn insert_tickets(conn: &Connection, tickets: &[TicketResult]) -> Result<(), StoreError> {
    const SQL: &str = "INSERT INTO ticket_results (ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ticket_id) DO NOTHING";
    let mut insert = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    let mut campaign_ids = IdText::default();
    for t in tickets {
        insert
            .execute(params![
                t.ticket_id.to_string(),
                campaign_ids.of(t.campaign_id),
                t.user_id.as_str(),
                t.status.code(),
                t.coupon_code.as_ref().map(CouponCode::as_str),
                i64::from(t.position.partition),
                to_i64(t.position.offset)?
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn update_issued_counts(conn: &Connection, counts: &[(CampaignId, u64)]) -> Result<(), StoreError> {
    const SQL: &str = "UPDATE campaigns SET issued_coupons = ? WHERE id = ?";
    let mut update = conn.prepare_cached(SQL).map_err(sqlite_error)?;
    for (campaign_id, issued) in counts {
        update
            .execute(params![to_i64(*issued)?, campaign_id.to_string()])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

/// A campaign id's text, formatted once per run of rows of the same campaign: a batch is
/// mostly one campaign.
#[derive(Default)]
struct IdText(Option<(CampaignId, String)>);

impl IdText {
    fn of(&mut self, id: CampaignId) -> &str {
        match self.0 {
            Some((last, _)) if last == id => {}
            _ => self.0 = Some((id, id.to_string())),
        }
        self.0.as_ref().map_or("", |(_, text)| text.as_str())
    }
}

impl IssuanceStore for SqliteStore {
    type Batch = SqliteBatch;

    async fn next_offset(&self, partition: u32) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT next_offset FROM partition_offsets WHERE log_partition = ?";
        let stored: Option<i64> = self.readers.with(|conn| {
            conn.prepare_cached(SQL)
                .and_then(|mut select| {
                    select
                        .query_row(params![i64::from(partition)], |r| r.get(0))
                        .optional()
                })
                .map_err(sqlite_error)
        })?;
        stored.map_or(Ok(0), to_u64)
    }

    async fn begin(
        &self,
        partition: u32,
        expected: u64,
        next: u64,
    ) -> Result<SqliteBatch, StoreError> {
        // Checked here so that the thread never meets an offset SQLite cannot hold.
        to_i64(expected)?;
        to_i64(next)?;
        let (ops, ops_queue) = std_mpsc::channel();
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job::Batch(Session {
                partition,
                expected,
                next,
                ops: ops_queue,
                reply,
            }))
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())??;
        Ok(SqliteBatch { ops })
    }
}

impl SqliteStore {
    /// Runs `job` on the writer thread and waits for its answer.
    pub(super) async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(job(reply)).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

impl SqliteBatch {
    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(op(reply)).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

impl IssuanceBatch for SqliteBatch {
    async fn load_campaigns(&mut self, ids: &[CampaignId]) -> Result<Vec<Campaign>, StoreError> {
        let ids = ids.to_vec();
        self.call(|reply| Op::LoadCampaigns(ids, reply)).await
    }

    async fn load_holders(
        &mut self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CouponCode)>, StoreError> {
        let users = users.to_vec();
        self.call(|reply| Op::LoadHolders(campaign, users, reply))
            .await
    }

    async fn load_coupons_from(
        &mut self,
        campaign: CampaignId,
        from: u64,
    ) -> Result<Vec<Holding>, StoreError> {
        self.call(|reply| Op::LoadCouponsFrom(campaign, from, reply))
            .await
    }

    async fn commit(self, changes: BatchChanges) -> Result<(), StoreError> {
        self.call(|reply| Op::Commit(changes, reply)).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::ports::CampaignRepository;
    use crate::domain::{CampaignName, Coupon, LogPosition, NewCampaign, TicketId, TotalCoupons};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn health_follows_the_writer_thread() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("state.sqlite")).await?;
        store.ping().await?;
        // A bug that kills the thread: every write fails from now on, and so does the
        // ping the health check makes (it used to go through a separate sqlx pool).
        let _ = store.writer.send(Job::Crash);
        let refused = store.ping().await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("writer thread stopped")),
            "{refused:?}"
        );
        Ok(())
    }

    /// A campaign of 10 coupons, started, created at `offset` of partition 0.
    fn campaign_at(offset: u64) -> Result<Campaign, Box<dyn std::error::Error>> {
        let new = NewCampaign::new(
            CampaignName::parse("t")?,
            TotalCoupons::parse(10)?,
            Utc::now(),
        );
        Ok(new.placed_at(LogPosition {
            partition: 0,
            offset,
        }))
    }

    fn first_coupon_of(campaign: &Campaign) -> Result<Coupon, Box<dyn std::error::Error>> {
        Ok(Coupon {
            code: CouponCode::parse("가나다라마바사아자1")?,
            campaign_id: campaign.id,
            // Characters JSON escapes, on the way through the one-row page read too.
            user_id: UserId::parse("u\"1\\ 사용자")?,
            ticket_id: TicketId::generate(),
            issued_at: crate::domain::campaign::truncate_to_millis(Utc::now()),
            ordinal: 1,
            ticket_position: Some(LogPosition {
                partition: 0,
                offset: campaign.origin.offset + 1,
            }),
        })
    }

    #[tokio::test]
    async fn the_offset_is_compare_and_set_and_an_abandoned_batch_leaves_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("state.sqlite")).await?;
        store
            .begin(0, 0, 5)
            .await?
            .commit(BatchChanges::default())
            .await?;
        assert_eq!(store.next_offset(0).await?, 5);

        // A stale worker is fenced, and told where the partition is.
        match store.begin(0, 0, 7).await {
            Err(StoreError::Fenced { stored: 5, .. }) => {}
            other => panic!("expected Fenced at 5, got {:?}", other.map(|_| ())),
        }

        // A batch dropped before its commit rolls back, and the writer takes the next one.
        let campaign = campaign_at(5)?;
        let mut batch = store.begin(0, 5, 6).await?;
        assert!(batch.load_campaigns(&[campaign.id]).await?.is_empty());
        drop(batch);
        assert_eq!(store.next_offset(0).await?, 5);

        let coupon = first_coupon_of(&campaign)?;
        let changes = BatchChanges {
            new_campaigns: vec![campaign.clone()],
            coupons: vec![coupon.clone()],
            issued_counts: vec![(campaign.id, 1)],
            ..BatchChanges::default()
        };
        store.begin(0, 5, 6).await?.commit(changes).await?;
        assert_eq!(store.next_offset(0).await?, 6);
        let mut batch = store.begin(0, 6, 7).await?;
        let holders = batch
            .load_holders(campaign.id, &[coupon.user_id.clone(), UserId::parse("u2")?])
            .await?;
        assert_eq!(holders, vec![(coupon.user_id.clone(), coupon.code.clone())]);

        // A uniqueness backstop fails the whole batch, offset included.
        assert_eq!(
            store.list_coupons(campaign.id, 0, 10).await?,
            vec![coupon.clone()]
        );
        let again = BatchChanges {
            coupons: vec![coupon],
            ..BatchChanges::default()
        };
        assert!(matches!(
            batch.commit(again).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.next_offset(0).await?, 6);
        let stored = store.find_campaign(campaign.id).await?;
        assert_eq!(stored.map(|c| c.issued_coupons), Some(1));
        Ok(())
    }

    #[tokio::test]
    async fn a_stored_campaign_moves_to_its_earliest_creation_record() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("state.sqlite")).await?;
        let new = NewCampaign::new(
            CampaignName::parse("t")?,
            TotalCoupons::parse(5)?,
            Utc::now(),
        );
        let at = |offset| {
            new.clone().placed_at(LogPosition {
                partition: 0,
                offset,
            })
        };
        // An API node stored a retried creation's later record (offset 7) first.
        store.insert_campaign(&at(7)).await?;
        // A batch from offset `from` to `next` that decides the creation at `offset`.
        let decide = |from, offset, next| {
            let changes = BatchChanges {
                new_campaigns: vec![at(offset)],
                ..BatchChanges::default()
            };
            let store = store.clone();
            async move { store.begin(0, from, next).await?.commit(changes).await }
        };
        decide(0, 3, 4).await?;
        let origin = |c: Option<Campaign>| c.map(|c| c.origin.offset);
        assert_eq!(origin(store.find_campaign(new.id).await?), Some(3));
        // A later record of the same campaign changes nothing.
        decide(4, 7, 8).await?;
        store.insert_campaign(&at(9)).await?;
        assert_eq!(origin(store.find_campaign(new.id).await?), Some(3));
        Ok(())
    }
}
