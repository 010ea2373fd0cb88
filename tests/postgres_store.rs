//! `PgStore` against a real PostgreSQL (`DATABASE_URL`): the repositories, the issuing
//! transaction driven by the real `DecideIssueRequests` use case, the partition fence, and
//! deterministic replay. Each test works in a database of its own.

mod common;

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection};

use common::pg::{drop_database, fresh_database};
use coupon::application::DecideIssueRequests;
use coupon::application::decide_issue_requests;
use coupon::domain::coupon_code::is_well_formed;
use coupon::domain::ports::{
    BatchChanges, CampaignRepository, IssuanceBatch, IssuanceStore, StoreError, TicketRepository,
};
use coupon::domain::{
    Campaign, CampaignId, CampaignName, CodeAlphabet, CodeGenerator, Coupon, CouponCode,
    IssueStatus, LogEvent, LogPosition, LogRecord, NewCampaign, SecretKey, TicketId, TicketResult,
    TotalCoupons, UserId,
};
use coupon::infra::postgres::{HOLDERS_SQL, PgStore};

type TestResult = Result<(), Box<dyn Error>>;

const PARTITION: u32 = 3;
/// 2030-03-17T17:46:40Z, a millisecond instant like every time the domain keeps.
const START_MS: i64 = 1_900_000_000_000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("test instants are in range")
}

async fn connect(url: &str) -> Result<PgStore, StoreError> {
    PgStore::connect(url, 4).await
}

fn new_campaign(name: &str, total: i64, starts_at: DateTime<Utc>) -> NewCampaign {
    NewCampaign {
        id: CampaignId::generate(),
        name: CampaignName::parse(name).expect("valid name"),
        total_coupons: TotalCoupons::parse(total).expect("valid total"),
        starts_at,
        created_at: starts_at - TimeDelta::hours(1),
        alphabet: CodeAlphabet::Readable,
    }
}

fn created(offset: u64, campaign: &NewCampaign) -> LogRecord {
    LogRecord {
        position: LogPosition {
            partition: PARTITION,
            offset,
        },
        appended_at: campaign.created_at,
        event: LogEvent::CampaignCreated(campaign.clone()),
    }
}

fn requested(
    offset: u64,
    campaign_id: CampaignId,
    user: &str,
    appended_at: DateTime<Utc>,
) -> LogRecord {
    LogRecord {
        position: LogPosition {
            partition: PARTITION,
            offset,
        },
        appended_at,
        event: LogEvent::IssueRequested {
            ticket_id: TicketId::generate(),
            campaign_id,
            user_id: UserId::parse(user).expect("valid user"),
        },
    }
}

fn ticket_of(record: &LogRecord) -> Option<TicketId> {
    match &record.event {
        LogEvent::IssueRequested { ticket_id, .. } => Some(*ticket_id),
        LogEvent::CampaignCreated(_) => None,
    }
}

/// The campaign's creation, then `requests` requests 1 ms apart from `users` users taking
/// turns (`user-{i % users}`), at offsets 1, 2, ….
fn returning_users(
    campaign: &NewCampaign,
    requests: i64,
    users: i64,
) -> Result<Vec<LogRecord>, Box<dyn Error>> {
    let mut records = vec![created(0, campaign)];
    for i in 1..=requests {
        let user = format!("user-{}", i % users);
        records.push(requested(
            u64::try_from(i)?,
            campaign.id,
            &user,
            at(START_MS + i),
        ));
    }
    Ok(records)
}

/// Decides `records` the way a worker does: consecutive batches whose sizes cycle
/// through `sizes`, each expecting the offset the previous one committed.
async fn decide_in_batches(
    store: &PgStore,
    secret: &SecretKey,
    records: &[LogRecord],
    sizes: &[usize],
) -> Result<u64, decide_issue_requests::Error> {
    let use_case = DecideIssueRequests::new(store.clone(), CodeGenerator::new(secret));
    decide_with(&use_case, store, records, sizes).await
}

/// As [`decide_in_batches`], by a worker that may have decided batches before.
async fn decide_with(
    use_case: &DecideIssueRequests<PgStore>,
    store: &PgStore,
    records: &[LogRecord],
    sizes: &[usize],
) -> Result<u64, decide_issue_requests::Error> {
    let mut expected = store.next_offset(PARTITION).await?;
    let mut rest = records;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let read_end = batch.last().map_or(expected, |r| r.position.offset + 1);
        let output = use_case
            .execute(decide_issue_requests::Input {
                partition: PARTITION,
                resume_at: expected,
                records: batch.to_vec(),
                read_end,
            })
            .await?;
        assert_eq!(output.resume_at, read_end);
        expected = output.resume_at;
    }
    Ok(expected)
}

/// Every ticket of `records` as stored, in log order.
async fn stored_tickets(
    store: &PgStore,
    records: &[LogRecord],
) -> Result<Vec<(TicketResult, Option<Coupon>)>, StoreError> {
    let mut out = Vec::new();
    for ticket in records.iter().filter_map(ticket_of) {
        let found = store.find_ticket(ticket).await?;
        out.push(found.unwrap_or_else(|| panic!("ticket {ticket} has no result")));
    }
    Ok(out)
}

#[tokio::test]
async fn campaigns_round_trip_and_coupons_page_in_issue_order() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;

    // Every field survives, including a partition and an offset beyond 32 bits signed.
    let campaign = Campaign {
        id: CampaignId::generate(),
        name: CampaignName::parse("봄 세일 drop #1")?,
        total_coupons: TotalCoupons::parse(10_000_000)?,
        issued_coupons: 0,
        starts_at: at(START_MS),
        created_at: at(START_MS - 86_400_000),
        origin: LogPosition {
            partition: u32::MAX,
            offset: 5_000_000_000,
        },
        alphabet: CodeAlphabet::Full,
    };
    store.insert_campaign(&campaign).await?;
    assert_eq!(
        store.find_campaign(campaign.id).await?,
        Some(campaign.clone())
    );

    // A second insert of the same id (the worker replaying the creation) changes nothing.
    let mut again = campaign.clone();
    again.name = CampaignName::parse("renamed")?;
    again.total_coupons = TotalCoupons::parse(1)?;
    store.insert_campaign(&again).await?;
    assert_eq!(
        store.find_campaign(campaign.id).await?,
        Some(campaign.clone())
    );
    assert_eq!(store.find_campaign(CampaignId::generate()).await?, None);

    // Coupons committed out of order come back by ordinal, page after page.
    let secret = SecretKey::generate();
    let codes = CodeGenerator::new(&secret);
    let paged = new_campaign("paged", 10, at(START_MS)).placed_at(LogPosition {
        partition: 0,
        offset: 0,
    });
    let mut coupons = Vec::new();
    for ordinal in [4, 1, 7, 2, 6, 3, 5] {
        coupons.push(Coupon {
            code: codes.code_for(paged.alphabet, paged.origin, ordinal)?,
            campaign_id: paged.id,
            // Characters JSON must escape survive the one-row page read.
            user_id: UserId::parse(&format!("user \"{ordinal}\\ 사용자"))?,
            ticket_id: TicketId::generate(),
            issued_at: at(START_MS + i64::try_from(ordinal)?),
            ordinal,
            ticket_position: Some(LogPosition {
                partition: 0,
                offset: ordinal,
            }),
        });
    }
    let batch = store.begin(0, 0, 1).await?;
    batch
        .commit(BatchChanges {
            new_campaigns: vec![paged.clone()],
            coupons: coupons.clone(),
            tickets: vec![],
            issued_counts: vec![(paged.id, 7)],
        })
        .await?;
    coupons.sort_by_key(|c| c.ordinal);
    assert_eq!(store.list_coupons(paged.id, 0, 3).await?, coupons[0..3]);
    assert_eq!(store.list_coupons(paged.id, 3, 3).await?, coupons[3..6]);
    assert_eq!(store.list_coupons(paged.id, 6, 3).await?, coupons[6..]);
    assert_eq!(store.list_coupons(paged.id, 7, 3).await?, vec![]);
    assert_eq!(store.list_coupons(paged.id, 0, 100).await?, coupons);
    assert_eq!(store.list_coupons(campaign.id, 0, 100).await?, vec![]);
    let stored = store.find_campaign(paged.id).await?.expect("stored");
    assert_eq!(stored.issued_coupons, 7);
    assert_eq!(store.next_offset(0).await?, 1);

    drop_database(&url).await;
    Ok(())
}

#[tokio::test]
async fn processes_starting_at_once_migrate_once() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    // Four processes' worth of pools racing to migrate one empty database.
    let stores = futures::future::try_join_all((0..4).map(|_| connect(&url))).await?;
    let mut conn = PgConnection::connect(&url).await?;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await?;
    let migrations = sqlx::migrate!("migrations/postgres").migrations.len();
    assert_eq!(usize::try_from(applied)?, migrations);
    conn.close().await?;
    let campaign = new_campaign("shared", 1, at(START_MS)).placed_at(LogPosition {
        partition: 0,
        offset: 0,
    });
    stores[0].insert_campaign(&campaign).await?;
    for store in &stores {
        assert_eq!(
            store.find_campaign(campaign.id).await?,
            Some(campaign.clone())
        );
    }

    drop_database(&url).await;
    Ok(())
}

#[tokio::test]
async fn uniqueness_backstops_reject_the_whole_batch_by_constraint_name() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;
    let codes = CodeGenerator::new(&SecretKey::generate());
    let campaign = new_campaign("backstops", 10, at(START_MS)).placed_at(LogPosition {
        partition: 0,
        offset: 0,
    });
    let coupon = |ordinal: u64, user: &str| -> Result<Coupon, Box<dyn Error>> {
        Ok(Coupon {
            code: codes.code_for(campaign.alphabet, campaign.origin, ordinal)?,
            campaign_id: campaign.id,
            user_id: UserId::parse(user)?,
            ticket_id: TicketId::generate(),
            issued_at: at(START_MS),
            ordinal,
            // As coupons stored before positions were kept.
            ticket_position: None,
        })
    };
    let first = coupon(1, "alice")?;
    store
        .begin(0, 0, 1)
        .await?
        .commit(BatchChanges {
            new_campaigns: vec![campaign.clone()],
            coupons: vec![first.clone()],
            tickets: vec![],
            issued_counts: vec![(campaign.id, 1)],
        })
        .await?;

    // The primary key is (campaign_id, ordinal); codes are unique by construction.
    let cases = vec![
        (coupon(2, "alice")?, "coupons_campaign_user_key"),
        (coupon(1, "bob")?, "coupons_pkey"),
    ];
    for (duplicate, constraint) in cases {
        let result = store
            .begin(0, 1, 2)
            .await?
            .commit(BatchChanges {
                coupons: vec![duplicate],
                issued_counts: vec![(campaign.id, 2)],
                ..BatchChanges::default()
            })
            .await;
        match result {
            Err(StoreError::Conflict(name)) => assert_eq!(name, constraint),
            other => panic!("expected a conflict on {constraint}, got {other:?}"),
        }
        // Nothing of the failed batch stuck, not even its offset.
        assert_eq!(store.next_offset(0).await?, 1);
        assert_eq!(
            store.list_coupons(campaign.id, 0, 10).await?,
            vec![first.clone()]
        );
        let stored = store.find_campaign(campaign.id).await?.expect("stored");
        assert_eq!(stored.issued_coupons, 1);
    }

    drop_database(&url).await;
    Ok(())
}

/// What each request of the issuance scenario must get: first come, first served among
/// requests appended at or after the start, one coupon per user, `total` in all.
fn reference_outcomes(requests: &[(String, bool)], total: usize) -> Vec<IssueStatus> {
    let mut holders = HashSet::new();
    requests
        .iter()
        .map(|(user, started)| {
            if !started {
                IssueStatus::NotStarted
            } else if holders.contains(user) {
                IssueStatus::AlreadyIssued
            } else if holders.len() == total {
                IssueStatus::SoldOut
            } else {
                holders.insert(user.clone());
                IssueStatus::Issued
            }
        })
        .collect()
}

#[tokio::test]
async fn issue_coupons_decides_two_hundred_requests_for_fifty_coupons() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;
    let secret = SecretKey::generate();

    let campaign = new_campaign("fifty", 50, at(START_MS));
    let mut records = vec![created(0, &campaign)];
    let mut requests = Vec::new();
    for i in 0..200_i64 {
        // Ten requests just before the start, then one per millisecond from the start on
        // (the first exactly at it). Every fourth user asks twice in a row, and the first
        // early user asks again once the campaign started.
        let user = match i {
            0..10 => format!("early-{i}"),
            20 => "early-0".to_owned(),
            _ if i % 4 == 3 => format!("user-{}", i - 1),
            _ => format!("user-{i}"),
        };
        let appended_at = if i < 10 {
            at(START_MS - 10 + i)
        } else {
            at(START_MS + i - 10)
        };
        records.push(requested(
            u64::try_from(i + 1)?,
            campaign.id,
            &user,
            appended_at,
        ));
        requests.push((user, i >= 10));
    }
    let expected = reference_outcomes(&requests, 50);

    let next = decide_in_batches(&store, &secret, &records, &[64]).await?;
    assert_eq!(next, 201);
    assert_eq!(store.next_offset(PARTITION).await?, 201);
    assert_eq!(store.next_offset(PARTITION + 1).await?, 0);

    let tickets = stored_tickets(&store, &records).await?;
    let statuses: Vec<IssueStatus> = tickets.iter().map(|(t, _)| t.status).collect();
    assert_eq!(statuses, expected);
    let count = |s: IssueStatus| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(count(IssueStatus::Issued), 50);
    assert_eq!(count(IssueStatus::NotStarted), 10);
    assert!(count(IssueStatus::AlreadyIssued) > 0);
    assert!(count(IssueStatus::SoldOut) > 0);

    let codes = CodeGenerator::new(&secret);
    let origin = LogPosition {
        partition: PARTITION,
        offset: 0,
    };
    let mut code_of_user: HashMap<UserId, CouponCode> = HashMap::new();
    let mut issued_in_order = Vec::new();
    for (record, (result, coupon)) in records[1..].iter().zip(&tickets) {
        assert_eq!(result.position, record.position);
        assert_eq!(result.campaign_id, campaign.id);
        match result.status {
            IssueStatus::Issued => {
                let coupon = coupon.clone().expect("an issued ticket shows its coupon");
                assert_eq!(result.coupon_code.as_ref(), Some(&coupon.code));
                assert_eq!(coupon.ticket_id, result.ticket_id);
                assert_eq!(coupon.user_id, result.user_id);
                assert_eq!(coupon.issued_at, record.appended_at);
                assert!(is_well_formed(coupon.code.as_str()), "{}", coupon.code);
                assert_eq!(codes.decode(&coupon.code)?, (origin, coupon.ordinal));
                code_of_user.insert(coupon.user_id.clone(), coupon.code.clone());
                issued_in_order.push(coupon);
            }
            IssueStatus::AlreadyIssued => {
                let held = code_of_user.get(&result.user_id).expect("issued earlier");
                assert_eq!(result.coupon_code.as_ref(), Some(held));
                let coupon = coupon.as_ref().expect("the coupon held is shown");
                assert_eq!(&coupon.code, held);
                assert_ne!(coupon.ticket_id, result.ticket_id);
            }
            IssueStatus::NotStarted | IssueStatus::SoldOut => {
                assert_eq!(result.coupon_code, None);
                assert!(coupon.is_none());
            }
        }
    }
    let unique: HashSet<&CouponCode> = issued_in_order.iter().map(|c| &c.code).collect();
    assert_eq!(unique.len(), 50);
    // Ordinals follow the log order, and GetCampaign's listing is exactly those coupons.
    let ordinals: Vec<u64> = issued_in_order.iter().map(|c| c.ordinal).collect();
    assert_eq!(ordinals, (1..=50).collect::<Vec<u64>>());
    assert_eq!(
        store.list_coupons(campaign.id, 0, 10_000).await?,
        issued_in_order
    );
    let stored = store.find_campaign(campaign.id).await?.expect("created");
    assert_eq!(stored.issued_coupons, 50);
    assert_eq!(stored.origin, origin);

    // One read of all 200 tickets and an unknown one: the same rows, the unknown left out.
    let mut ids: Vec<TicketId> = tickets.iter().map(|(t, _)| t.ticket_id).collect();
    ids.push(TicketId::generate());
    let mut together = store.find_tickets(&ids).await?;
    together.sort_by_key(|(t, _)| t.position.offset);
    assert_eq!(together, tickets);

    drop_database(&url).await;
    Ok(())
}

/// Waits until some session of the database waits on a lock, i.e. a transaction is
/// blocked behind another one.
async fn wait_for_lock_waiter(url: &str) -> TestResult {
    const SQL: &str = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let mut conn = PgConnection::connect(url).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(SQL).fetch_one(&mut conn).await?;
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no transaction ever waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.close().await?;
    Ok(())
}

#[tokio::test]
async fn concurrent_workers_of_one_partition_commit_once() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;

    // Twice: for a partition without a row yet (racing inserts), then with one (racing
    // updates of the same row).
    for (expected, winner_next, loser_next) in [(0, 10, 20), (10, 15, 16)] {
        let winner = store.begin(PARTITION, expected, winner_next).await?;
        let loser = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .begin(PARTITION, expected, loser_next)
                    .await
                    .map(|_batch| ())
            }
        });
        // The loser blocks behind the winner's open transaction...
        wait_for_lock_waiter(&url).await?;
        assert!(!loser.is_finished());
        winner.commit(BatchChanges::default()).await?;
        // ...and, once the winner committed, finds the offset moved.
        match loser.await? {
            Err(StoreError::Fenced {
                partition,
                expected: e,
                stored,
            }) => {
                assert_eq!((partition, e, stored), (PARTITION, expected, winner_next));
            }
            other => panic!("the second worker must be fenced, got {other:?}"),
        }
        assert_eq!(store.next_offset(PARTITION).await?, winner_next);
    }

    // A worker that gives up (rolls back) lets the next one through.
    let abandoned = store.begin(PARTITION, 15, 30).await?;
    drop(abandoned);
    let batch = store.begin(PARTITION, 15, 40).await?;
    batch.commit(BatchChanges::default()).await?;
    assert_eq!(store.next_offset(PARTITION).await?, 40);

    drop_database(&url).await;
    Ok(())
}

#[tokio::test]
async fn stale_workers_are_fenced_and_redeliveries_change_nothing() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;
    let secret = SecretKey::generate();
    let use_case = DecideIssueRequests::new(store.clone(), CodeGenerator::new(&secret));

    let campaign = new_campaign("fence", 5, at(START_MS));
    let mut records = vec![created(0, &campaign)];
    for i in 1..=24_i64 {
        let offset = u64::try_from(i)?;
        records.push(requested(
            offset,
            campaign.id,
            &format!("user-{i}"),
            at(START_MS + i),
        ));
    }
    let (old, new) = records.split_at(20);
    let input =
        |expected: u64, records: &[LogRecord], read_end: u64| decide_issue_requests::Input {
            partition: PARTITION,
            resume_at: expected,
            records: records.to_vec(),
            read_end,
        };

    let output = use_case.execute(input(0, old, 20)).await?;
    assert_eq!(
        (output.resume_at, output.decided, output.issued),
        (20, 19, 5)
    );
    let before = stored_tickets(&store, old).await?;

    // A zombie that still believes the partition is at 0 cannot commit anything.
    match use_case.execute(input(0, old, 20)).await {
        Err(decide_issue_requests::Error::Fenced {
            partition,
            expected,
            resume_at,
        }) => assert_eq!((partition, expected, resume_at), (PARTITION, 0, 20)),
        other => panic!("a stale worker must be fenced, got {other:?}"),
    }
    // Redelivered records below the stored offset are skipped without a transaction.
    let output = use_case.execute(input(20, old, 20)).await?;
    assert_eq!(
        (output.resume_at, output.decided, output.issued),
        (20, 0, 0)
    );
    assert_eq!(stored_tickets(&store, old).await?, before);
    assert_eq!(store.next_offset(PARTITION).await?, 20);

    // A redelivery overlapping new records decides only the new ones.
    let output = use_case.execute(input(20, &records, 25)).await?;
    assert_eq!(
        (output.resume_at, output.decided, output.issued),
        (25, 5, 0)
    );
    assert_eq!(stored_tickets(&store, old).await?, before);
    for (result, _) in stored_tickets(&store, new).await? {
        assert_eq!(result.status, IssueStatus::SoldOut);
    }
    let stored = store.find_campaign(campaign.id).await?.expect("created");
    assert_eq!(stored.issued_coupons, 5);
    assert_eq!(store.list_coupons(campaign.id, 0, 100).await?.len(), 5);

    drop_database(&url).await;
    Ok(())
}

#[tokio::test]
async fn replaying_the_log_in_other_batches_rebuilds_the_same_state() -> TestResult {
    let (Some(url_a), Some(url_b)) = (fresh_database().await, fresh_database().await) else {
        return Ok(());
    };
    let secret = SecretKey::generate();

    // Two campaigns in one partition, the second created midway, requests interleaved,
    // users asking more than once, some requests before each start.
    let first = new_campaign("first", 30, at(START_MS));
    let second = new_campaign("second", 20, at(START_MS + 60));
    let mut records = vec![created(0, &first)];
    for offset in 1..=250_u64 {
        let j = i64::try_from(offset)?;
        let record = if offset == 50 {
            created(offset, &second)
        } else {
            let campaign = if offset > 50 && offset % 3 == 0 {
                second.id
            } else {
                first.id
            };
            requested(
                offset,
                campaign,
                &format!("user-{}", offset % 90),
                at(START_MS - 5 + j),
            )
        };
        records.push(record);
    }

    let store_a = connect(&url_a).await?;
    let store_b = connect(&url_b).await?;
    assert_eq!(
        decide_in_batches(&store_a, &secret, &records, &[1, 7, 64]).await?,
        251
    );
    assert_eq!(
        decide_in_batches(&store_b, &secret, &records, &[64]).await?,
        251
    );

    let tickets_a = stored_tickets(&store_a, &records).await?;
    assert_eq!(tickets_a, stored_tickets(&store_b, &records).await?);
    let mut all_codes = HashSet::new();
    for campaign in [&first, &second] {
        let coupons_a = store_a.list_coupons(campaign.id, 0, 1000).await?;
        assert_eq!(coupons_a, store_b.list_coupons(campaign.id, 0, 1000).await?);
        assert_eq!(
            store_a.find_campaign(campaign.id).await?,
            store_b.find_campaign(campaign.id).await?
        );
        for coupon in &coupons_a {
            assert!(is_well_formed(coupon.code.as_str()));
            assert!(all_codes.insert(coupon.code.clone()), "duplicate code");
        }
    }
    let issued = |id: CampaignId| {
        tickets_a
            .iter()
            .filter(|(t, _)| t.campaign_id == id && t.status == IssueStatus::Issued)
            .count()
    };
    assert_eq!(issued(first.id), 30);
    assert_eq!(issued(second.id), 20);
    assert!(
        tickets_a
            .iter()
            .any(|(t, _)| t.status == IssueStatus::NotStarted)
    );

    drop_database(&url_a).await;
    drop_database(&url_b).await;
    Ok(())
}

/// A database made by the first schema keeps its coupons and ticket results when a newer
/// producer or consumer connects: migration 0002 re-keys the coupons in place.
#[tokio::test]
async fn a_first_schema_database_keeps_its_coupons_and_tickets() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let campaign = CampaignId::generate();
    let (issued, repeat, sold_out) = (
        TicketId::generate(),
        TicketId::generate(),
        TicketId::generate(),
    );
    let code = "가나다라마바사아자1";
    {
        let mut conn = PgConnection::connect(&url).await?;
        let mut first_only = sqlx::migrate!("migrations/postgres");
        first_only.migrations = std::borrow::Cow::Owned(first_only.migrations[..1].to_vec());
        first_only.run(&mut conn).await?;
        sqlx::query(
            "INSERT INTO campaigns (id, name, total_coupons, issued_coupons, starts_at, created_at, origin_partition, origin_offset) \
             VALUES ($1, 'old', 1, 1, now(), now(), 0, 0)",
        )
        .bind(campaign.as_uuid())
        .execute(&mut conn)
        .await?;
        sqlx::query(
            "INSERT INTO coupons (code, campaign_id, ordinal, user_id, ticket_id, issued_at) \
             VALUES ($1, $2, 1, 'alice', $3, now())",
        )
        .bind(code)
        .bind(campaign.as_uuid())
        .bind(issued.as_uuid())
        .execute(&mut conn)
        .await?;
        for (ticket, user, status, coupon, offset) in [
            (issued, "alice", IssueStatus::Issued, Some(code), 1_i64),
            (repeat, "alice", IssueStatus::AlreadyIssued, Some(code), 2),
            (sold_out, "bob", IssueStatus::SoldOut, None, 3),
        ] {
            sqlx::query(
                "INSERT INTO ticket_results (ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6)",
            )
            .bind(ticket.as_uuid())
            .bind(campaign.as_uuid())
            .bind(user)
            .bind(status.code())
            .bind(coupon)
            .bind(offset)
            .execute(&mut conn)
            .await?;
        }
        conn.close().await?;
    }

    let store = connect(&url).await?;
    let coupons = store.list_coupons(campaign, 0, 10).await?;
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0].code.as_str(), code);
    for (ticket, status, has_coupon) in [
        (issued, IssueStatus::Issued, true),
        (repeat, IssueStatus::AlreadyIssued, true),
        (sold_out, IssueStatus::SoldOut, false),
    ] {
        let (result, coupon) = store
            .find_ticket(ticket)
            .await?
            .ok_or("ticket lost by the migration")?;
        assert_eq!(result.status, status);
        assert_eq!(
            coupon.map(|c| c.code),
            has_coupon.then(|| coupons[0].code.clone())
        );
    }

    drop_database(&url).await;
    Ok(())
}

/// The holders lookup stays one index probe per user even when its plan is made on a new,
/// empty table and cached (a generic plan, as a consumer's connection keeps it): it must
/// never read the campaign's coupons wholesale.
#[tokio::test]
async fn the_holders_lookup_probes_the_user_index_even_on_a_new_table() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    drop(connect(&url).await?); // migrates
    let mut conn = PgConnection::connect(&url).await?;
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut conn)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PREPARE holders (uuid, text[]) AS {HOLDERS_SQL}"
    )))
    .execute(&mut conn)
    .await?;
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE holders ('01a21438-f28c-7455-b390-170183f62f09', ARRAY['a', 'b'])",
    )
    .fetch_all(&mut conn)
    .await?;
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using coupons_campaign_user_key") && !plan.contains("Hash"),
        "holders plan:\n{plan}"
    );
    conn.close().await?;
    drop_database(&url).await;
    Ok(())
}

/// A record the log holds twice (the same ticket at two offsets) keeps its first
/// decision, whether the repeat comes in a later batch or in the same one: the plain
/// insert of the batch's tickets fails on the primary key and the careful one runs.
#[tokio::test]
async fn a_request_the_log_holds_twice_keeps_its_first_decision() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;
    let secret = SecretKey::generate();

    let campaign = new_campaign("twice", 1, at(START_MS));
    let mut records = vec![created(0, &campaign)];
    for (offset, user) in [(1, "alice"), (2, "bob")] {
        records.push(requested(offset, campaign.id, user, at(START_MS + 1)));
    }
    let repeat = |of: &LogRecord, offset: u64| LogRecord {
        position: LogPosition {
            partition: PARTITION,
            offset,
        },
        ..of.clone()
    };
    // Bob's request again in the next batch, then Alice's and Bob's again in one batch.
    records.push(repeat(&records[2], 3));
    records.push(repeat(&records[1], 4));
    records.push(repeat(&records[2], 5));

    let resume_at = decide_in_batches(&store, &secret, &records, &[3, 1, 2]).await?;
    assert_eq!(resume_at, 6);
    let stored = stored_tickets(&store, &records[1..3]).await?;
    let statuses: Vec<IssueStatus> = stored.iter().map(|(t, _)| t.status).collect();
    assert_eq!(statuses, [IssueStatus::Issued, IssueStatus::SoldOut]);
    let (alice, coupon) = &stored[0];
    assert_eq!(alice.position.offset, 1, "the first decision is kept");
    assert_eq!(coupon.as_ref().map(|c| c.ordinal), Some(1));
    let (bob, _) = &stored[1];
    assert_eq!(bob.position.offset, 2, "the first decision is kept");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_results")
        .fetch_one(&mut PgConnection::connect(&url).await?)
        .await?;
    assert_eq!(count, 2);

    drop_database(&url).await;
    Ok(())
}

/// A worker keeps each campaign's holders between batches. The store restored to an
/// empty one under a running worker (its copy now ahead of the store) and decided
/// again gives the same rows: the copy is dropped, not trusted.
#[tokio::test]
async fn a_worker_decides_a_restored_store_as_it_decided_the_original() -> TestResult {
    let Some(url) = fresh_database().await else {
        return Ok(());
    };
    let store = connect(&url).await?;
    let secret = SecretKey::generate();
    let use_case = DecideIssueRequests::new(store.clone(), CodeGenerator::new(&secret));

    let campaign = new_campaign("restored", 30, at(START_MS));
    // Users come back: every user asks three times over the flood.
    let records = returning_users(&campaign, 120, 40)?;
    decide_with(&use_case, &store, &records, &[7, 13]).await?;
    let first = stored_tickets(&store, &records).await?;
    let issued = first
        .iter()
        .filter(|(t, _)| t.status == IssueStatus::Issued)
        .count();
    let repeats = first
        .iter()
        .filter(|(t, _)| t.status == IssueStatus::AlreadyIssued)
        .count();
    assert_eq!((issued, repeats), (30, 60));

    let mut conn = PgConnection::connect(&url).await?;
    sqlx::query("TRUNCATE coupons, ticket_results, partition_offsets, campaigns")
        .execute(&mut conn)
        .await?;
    decide_with(&use_case, &store, &records, &[11, 5]).await?;
    assert_eq!(stored_tickets(&store, &records).await?, first);

    drop_database(&url).await;
    Ok(())
}

/// Two workers, each with its own copy of the campaign's holders, take turns on one
/// partition (as across rebalances): each must catch up with the coupons the other
/// issued, so a user who won from one worker is ALREADY_ISSUED at the other, and the
/// outcomes are those of one worker deciding everything.
#[tokio::test]
async fn workers_taking_turns_see_each_others_coupons() -> TestResult {
    let (Some(url_a), Some(url_b)) = (fresh_database().await, fresh_database().await) else {
        return Ok(());
    };
    let (turns, alone) = (connect(&url_a).await?, connect(&url_b).await?);
    let secret = SecretKey::generate();
    let workers = [
        DecideIssueRequests::new(turns.clone(), CodeGenerator::new(&secret)),
        DecideIssueRequests::new(turns.clone(), CodeGenerator::new(&secret)),
    ];
    let campaign = new_campaign("turns", 25, at(START_MS));
    // Every user asks three times, a third of the log apart.
    let records = returning_users(&campaign, 90, 30)?;
    for (turn, batch) in records.chunks(7).enumerate() {
        decide_with(&workers[turn % 2], &turns, batch, &[7]).await?;
    }
    decide_in_batches(&alone, &secret, &records, &[7]).await?;

    let taken_turns = stored_tickets(&turns, &records).await?;
    assert_eq!(taken_turns, stored_tickets(&alone, &records).await?);
    let repeats = taken_turns
        .iter()
        .filter(|(t, _)| t.status == IssueStatus::AlreadyIssued)
        .count();
    assert_eq!(repeats, 2 * 25, "each winner asked twice more");

    drop_database(&url_a).await;
    drop_database(&url_b).await;
    Ok(())
}
