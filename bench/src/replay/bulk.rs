//! The limit a replay is compared with: the rows a drain wrote (campaigns, coupons,
//! tickets, counts), read back and inserted into an empty store of the same kind as
//! fast as plain SQL goes, one transaction per batch of tickets (as many as a worker of the mode decides at
//! most in one) with the coupons they won
//! and their campaigns' counts. Only the inserts are timed.

use std::path::Path;
use std::time::Instant;

use futures::TryStreamExt;
use rusqlite::types::Value;
use sqlx::{Connection, PgConnection};

/// A row and where its ticket sits in the log, to cut batches by.
struct Row<T> {
    position: (i64, i64),
    /// A coupon's campaign, to keep the counts.
    campaign: String,
    values: T,
}

/// Each campaign's issued count after the coupons so far.
#[derive(Default)]
struct Counts(std::collections::HashMap<String, i64>);

impl Counts {
    /// Counts `coupons` in; the campaigns they touched and their new counts.
    fn add<T>(&mut self, coupons: &[Row<T>]) -> Vec<(String, i64)> {
        let mut touched = std::collections::BTreeSet::new();
        for coupon in coupons {
            *self.0.entry(coupon.campaign.clone()).or_default() += 1;
            touched.insert(coupon.campaign.clone());
        }
        touched
            .into_iter()
            .map(|c| (self.0[&c], c))
            .map(|(n, c)| (c, n))
            .collect()
    }
}

/// Batches of tickets (by log position) with the coupons whose ticket is among them.
fn batches<T, C>(
    tickets: &[Row<T>],
    coupons: &[Row<C>],
    batch: usize,
) -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut c = 0;
    for start in (0..tickets.len()).step_by(batch) {
        let end = (start + batch).min(tickets.len());
        let last = tickets[end - 1].position;
        let first_coupon = c;
        while c < coupons.len() && coupons[c].position <= last {
            c += 1;
        }
        out.push((start, end, first_coupon, c));
    }
    out
}

const SQLITE_TICKETS: &str = "SELECT ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset \
     FROM ticket_results ORDER BY log_partition, log_offset";
const SQLITE_COUPONS: &str = "SELECT campaign_id, ordinal, code, user_id, ticket_id, issued_at_ms, ticket_partition, ticket_offset \
     FROM coupons ORDER BY ticket_partition, ticket_offset";
const SQLITE_CAMPAIGNS: &str = "SELECT id, name, total_coupons, 0, starts_at_ms, created_at_ms, origin_partition, origin_offset, code_alphabet FROM campaigns";

/// Seconds to insert `source`'s rows into a new state file at `target`.
pub async fn sqlite(source: &Path, target: &Path) -> f64 {
    drop(
        coupon::infra::sqlite::SqliteStore::open(target)
            .await
            .expect("a migrated state file"),
    );
    let (source, target) = (source.to_owned(), target.to_owned());
    tokio::task::spawn_blocking(move || sqlite_blocking(&source, &target))
        .await
        .expect("bulk insert")
}

fn sqlite_blocking(source: &Path, target: &Path) -> f64 {
    let from = rusqlite::Connection::open(source).expect("open the drained state");
    let tickets = sqlite_rows(&from, SQLITE_TICKETS, 5);
    let coupons = sqlite_rows(&from, SQLITE_COUPONS, 6);
    let campaigns = sqlite_rows(&from, SQLITE_CAMPAIGNS, 6);
    let mut counts = Counts::default();
    let mut to = rusqlite::Connection::open(target).expect("open the target");
    // The settings of the service's own writer connection.
    to.pragma_update(None, "journal_mode", "WAL").expect("wal");
    to.pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous");
    to.pragma_update(None, "foreign_keys", "ON")
        .expect("foreign keys");
    let started = Instant::now();
    let tx = to.transaction().expect("begin");
    insert_sqlite(&tx, "campaigns", 9, &campaigns);
    tx.commit().expect("commit campaigns");
    for (t0, t1, c0, c1) in batches(&tickets, &coupons, super::EMBEDDED_BATCH) {
        let tx = to.transaction().expect("begin");
        insert_sqlite(&tx, "coupons", 8, &coupons[c0..c1]);
        insert_sqlite(&tx, "ticket_results", 7, &tickets[t0..t1]);
        for (campaign, issued) in counts.add(&coupons[c0..c1]) {
            tx.prepare_cached("UPDATE campaigns SET issued_coupons = ?1 WHERE id = ?2")
                .and_then(|mut update| update.execute(rusqlite::params![issued, campaign]))
                .expect("counts");
        }
        tx.commit().expect("commit a batch");
    }
    started.elapsed().as_secs_f64()
}

fn sqlite_rows(conn: &rusqlite::Connection, sql: &str, position_at: usize) -> Vec<Row<Vec<Value>>> {
    let mut select = conn.prepare(sql).expect(sql);
    let columns = select.column_count();
    select
        .query_map([], |r| {
            let values: Vec<Value> = (0..columns).map(|i| r.get(i)).collect::<Result<_, _>>()?;
            let at = |i: usize| match values.get(i) {
                Some(Value::Integer(n)) => *n,
                _ => 0,
            };
            let campaign = match values.first() {
                Some(Value::Text(id)) => id.clone(),
                _ => String::new(),
            };
            Ok(Row {
                position: (at(position_at), at(position_at + 1)),
                campaign,
                values,
            })
        })
        .expect(sql)
        .collect::<Result<_, _>>()
        .expect(sql)
}

/// Multi-row INSERTs of up to 512 rows each.
fn insert_sqlite(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    columns: usize,
    rows: &[Row<Vec<Value>>],
) {
    for chunk in rows.chunks(512) {
        let one = format!("({})", vec!["?"; columns].join(","));
        let sql = format!(
            "INSERT INTO {table} VALUES {}",
            vec![one; chunk.len()].join(",")
        );
        let params: Vec<&Value> = chunk.iter().flat_map(|r| r.values.iter()).collect();
        tx.prepare_cached(&sql)
            .and_then(|mut insert| insert.execute(rusqlite::params_from_iter(params)))
            .unwrap_or_else(|e| panic!("inserting into {table}: {e}"));
    }
}

/// Seconds to COPY `source`'s rows into the empty database `target` (migrated first).
pub async fn postgres(source: &str, target: &str) -> f64 {
    drop(
        coupon::infra::postgres::PgStore::connect(target, 1)
            .await
            .expect("a migrated database"),
    );
    let mut from = PgConnection::connect(source)
        .await
        .expect("connect to the source");
    let campaigns = copy_out(&mut from, "SELECT id, name, total_coupons, 0, starts_at, created_at, origin_partition, origin_offset, code_alphabet FROM campaigns", None).await;
    let coupons = copy_out(&mut from, "SELECT code, campaign_id, ordinal, user_id, ticket_id, issued_at, ticket_partition, ticket_offset FROM coupons ORDER BY ticket_partition, ticket_offset", Some(6)).await;
    let tickets = copy_out(&mut from, "SELECT ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset FROM ticket_results ORDER BY log_partition, log_offset", Some(5)).await;
    // One connection per partition, as the workers have: each campaign lives in one.
    let partitions = by_partition(tickets, coupons);
    let mut conns = Vec::with_capacity(partitions.len() + 1);
    for _ in 0..=partitions.len() {
        conns.push(
            PgConnection::connect(target)
                .await
                .expect("connect to the target"),
        );
    }
    let mut first = conns.pop().expect("one connection");
    let started = Instant::now();
    copy_in(&mut first, "campaigns", &campaigns).await;
    let tasks: Vec<_> = partitions
        .into_iter()
        .zip(conns)
        .map(|((tickets, coupons), conn)| tokio::spawn(copy_partition(conn, tickets, coupons)))
        .collect();
    for task in tasks {
        task.await.expect("a partition's copy");
    }
    started.elapsed().as_secs_f64()
}

/// One partition's tickets and the coupons they won, as COPY lines.
type PartitionRows = (Vec<Row<String>>, Vec<Row<String>>);

/// Tickets and coupons split by the partition their ticket was in.
fn by_partition(tickets: Vec<Row<String>>, coupons: Vec<Row<String>>) -> Vec<PartitionRows> {
    let mut split: std::collections::BTreeMap<i64, (Vec<_>, Vec<_>)> = Default::default();
    for ticket in tickets {
        split.entry(ticket.position.0).or_default().0.push(ticket);
    }
    for coupon in coupons {
        split.entry(coupon.position.0).or_default().1.push(coupon);
    }
    split.into_values().collect()
}

async fn copy_partition(
    mut to: PgConnection,
    tickets: Vec<Row<String>>,
    coupons: Vec<Row<String>>,
) {
    let mut counts = Counts::default();
    for (t0, t1, c0, c1) in batches(&tickets, &coupons, super::DISTRIBUTED_BATCH) {
        let mut tx = to.begin().await.expect("begin");
        copy_in(&mut tx, "coupons", &coupons[c0..c1]).await;
        copy_in(&mut tx, "ticket_results", &tickets[t0..t1]).await;
        for (campaign, issued) in counts.add(&coupons[c0..c1]) {
            sqlx::query("UPDATE campaigns SET issued_coupons = $1 WHERE id = $2::uuid")
                .bind(issued)
                .bind(campaign)
                .execute(&mut *tx)
                .await
                .expect("counts");
        }
        tx.commit().await.expect("commit a batch");
    }
}

/// The query's rows in COPY text format, one line each.
async fn copy_out(
    conn: &mut PgConnection,
    query: &str,
    position_at: Option<usize>,
) -> Vec<Row<String>> {
    let chunks: Vec<bytes::Bytes> = conn
        .copy_out_raw(&format!("COPY ({query}) TO STDOUT"))
        .await
        .expect(query)
        .try_collect()
        .await
        .expect(query);
    let text = String::from_utf8(chunks.concat()).expect("utf-8");
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let at = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
            let position = position_at.map_or((0, 0), |i| (at(i), at(i + 1)));
            Row {
                position,
                campaign: fields.get(1).map_or_else(String::new, |c| (*c).to_owned()),
                values: format!("{line}\n"),
            }
        })
        .collect()
}

async fn copy_in(conn: &mut PgConnection, table: &str, rows: &[Row<String>]) {
    if rows.is_empty() {
        return;
    }
    let data: String = rows.iter().map(|r| r.values.as_str()).collect();
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} FROM STDIN"))
        .await
        .expect("copy in");
    copy.send(data.into_bytes()).await.expect("send rows");
    copy.finish().await.expect("finish copy");
}
