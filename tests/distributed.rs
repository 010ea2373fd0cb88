//! The distributed mode end to end: `producer` and `consumer` processes on the real
//! Kafka and PostgreSQL, checked through the public API and the database (DESIGN §5).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::cluster::Cluster;
use common::connect::{Client, is_well_formed_code, rfc3339_in};
use common::flood::flood;
use common::process::free_port;
use sqlx::PgPool;

/// Every ticket's final status and code, and every coupon, as stored.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    tickets: BTreeMap<String, (i64, Option<String>)>,
    coupons: BTreeMap<String, (String, String, i64)>,
    issued_counts: BTreeMap<String, i64>,
}

async fn snapshot(database_url: &str) -> Snapshot {
    let pool = PgPool::connect(database_url).await.expect("connect");
    let tickets: Vec<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT ticket_id::text, status::bigint, coupon_code FROM ticket_results")
            .fetch_all(&pool)
            .await
            .expect("tickets");
    let coupons: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT code, campaign_id::text, user_id, ordinal FROM coupons")
            .fetch_all(&pool)
            .await
            .expect("coupons");
    let campaigns: Vec<(String, i64)> =
        sqlx::query_as("SELECT id::text, issued_coupons FROM campaigns")
            .fetch_all(&pool)
            .await
            .expect("campaigns");
    pool.close().await;
    Snapshot {
        tickets: tickets.into_iter().map(|(t, s, c)| (t, (s, c))).collect(),
        coupons: coupons
            .into_iter()
            .map(|(code, c, u, o)| (code, (c, u, o)))
            .collect(),
        issued_counts: campaigns.into_iter().collect(),
    }
}

/// Waits until the database has decided `count` tickets.
async fn await_decided(database_url: &str, count: usize, limit: Duration) {
    let pool = PgPool::connect(database_url).await.expect("connect");
    let deadline = Instant::now() + limit;
    loop {
        let decided: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_results")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        if decided as usize >= count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {decided} of {count} tickets decided after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
}

fn ticket_uuid(ticket: &str) -> String {
    ticket.split('.').next().expect("sealed ticket").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_producers_two_consumers_issue_exactly_500_of_2000_through_consumer_kills() {
    let Some(cluster) = Cluster::new(4).await else {
        return;
    };
    let p1 = cluster.producer("producer-1", &[]).await;
    let p2 = cluster.producer("producer-2", &[]).await;
    let mut c1 = cluster.consumer("consumer-1");
    let mut c2 = cluster.consumer("consumer-2");
    // Both workers hold partitions before the flood, so the kills below hit an owner.
    for name in ["consumer-1", "consumer-2"] {
        cluster
            .await_log(name, "partitions assigned", Duration::from_secs(30))
            .await;
    }
    let campaign = p1
        .client
        .create_campaign("distributed flood", 500, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    let users: Vec<String> = (0..2000).map(|u| format!("user-{u}")).collect();
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = vec![p1.client.clone(), p2.client.clone()];
    let flood_task = {
        let (clients, id, progress) = (clients.clone(), id.clone(), progress.clone());
        tokio::spawn(async move { flood(&clients, &id, users, 64, progress).await })
    };
    // Kill each consumer once, early in the flood (long before the campaign sells
    // out), so whichever owns the campaign's partition
    // dies with work in flight; each comes back and the group rebalances both ways.
    let mut restarted = Vec::new();
    for (at, victim, name) in [(100, &mut c1, "consumer-1b"), (250, &mut c2, "consumer-2b")] {
        while progress.load(Ordering::Relaxed) < at && !flood_task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        victim.kill9();
        eprintln!(
            "killed a consumer at {} accepted, {} decided",
            progress.load(Ordering::Relaxed),
            snapshot(&cluster.database_url).await.tickets.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        restarted.push(cluster.consumer(name));
    }
    let outcome = flood_task.await.expect("flood");
    for refusal in &outcome.refused {
        assert_eq!(
            refusal.reason.as_deref(),
            Some("CAMPAIGN_SOLD_OUT"),
            "unexpected refusal {refusal:?}\n{}",
            cluster.logs()
        );
    }
    let tickets: Vec<String> = outcome.accepted.iter().map(|(t, _)| t.clone()).collect();
    let results = p2
        .client
        .await_final(&tickets, Duration::from_secs(90))
        .await;

    let mut codes = HashSet::new();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for (ticket, user) in &outcome.accepted {
        let result = &results[ticket];
        let status = result["status"].as_str().expect("status").to_owned();
        if status == "ISSUE_STATUS_ISSUED" {
            let code = result["coupon"]["code"].as_str().expect("code");
            assert!(is_well_formed_code(code));
            assert_eq!(result["coupon"]["userId"], user.as_str());
            assert!(codes.insert(code.to_owned()), "code {code} issued twice");
        }
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(
        codes.len(),
        500,
        "statuses {statuses:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        statuses.get("ISSUE_STATUS_SOLD_OUT").copied().unwrap_or(0) + outcome.refused.len(),
        1500
    );
    let listed: HashSet<String> = p1
        .client
        .all_coupons(&id)
        .await
        .iter()
        .map(|c| c["code"].as_str().expect("code").to_owned())
        .collect();
    assert_eq!(listed, codes, "GetCampaign lists exactly the issued codes");
    let stored = snapshot(&cluster.database_url).await;
    assert_eq!(stored.coupons.len(), 500);
    assert_eq!(stored.issued_counts.get(&id), Some(&500));
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_drains_by_the_logs_clock_and_in_log_order() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    // A generous allowance lets requests made shortly before the start into the log,
    // where the append time (not the processing time) must judge them.
    let producer = cluster
        .producer("producer", &["--clock-skew-allowance-ms", "10000"])
        .await;
    let client = &producer.client;
    let starts_at = rfc3339_in(TimeDelta::milliseconds(2500));
    let start: DateTime<Utc> = starts_at.parse().expect("time");
    let campaign = client
        .create_campaign("backlog", 10, &starts_at)
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    let mut early = Vec::new();
    for u in 0..5 {
        let accepted = client
            .issue(&id, &format!("early-{u}"))
            .await
            .expect("accepted into the backlog");
        let at: DateTime<Utc> = accepted["acceptedAt"]
            .as_str()
            .expect("at")
            .parse()
            .expect("time");
        assert!(
            at < start,
            "early request appended at {at}, after the start"
        );
        early.push(accepted["ticketId"].as_str().expect("t").to_owned());
    }
    while Utc::now() < start + TimeDelta::milliseconds(100) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut late = Vec::new();
    for u in 0..20 {
        // Sequential: log order is this order.
        let accepted = client
            .issue(&id, &format!("late-{u}"))
            .await
            .expect("accepted");
        late.push(accepted["ticketId"].as_str().expect("t").to_owned());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ticket in early.iter().chain(&late) {
        assert_eq!(
            client.result(ticket).await.expect("result")["status"],
            "ISSUE_STATUS_PENDING"
        );
    }

    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _consumer = cluster.consumer_with(
        "consumer",
        &cluster.database_url,
        &cluster.group,
        &["--metrics-listen", &metrics_addr],
    );
    let all: Vec<String> = early.iter().chain(&late).cloned().collect();
    let results = client.await_final(&all, Duration::from_secs(60)).await;
    // The worker's /metrics counted exactly these decisions (a fresh process; counters
    // move just after the commit the API already sees, hence the short retry).
    let expected: Vec<String> = [("not_started", 5), ("issued", 10), ("sold_out", 10)]
        .iter()
        .map(|(status, count)| {
            format!("coupon_tickets_decided_total{{status=\"{status}\"}} {count}")
        })
        .collect();
    let mut scrape = String::new();
    // Up to 10 s: on a loaded 2-core machine (five of these tests at once) 2 s was
    // seen to pass before the worker's first counter moved.
    for _ in 0..100 {
        scrape = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .expect("consumer metrics")
            .text()
            .await
            .expect("body");
        if expected.iter().all(|series| scrape.contains(series)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for series in &expected {
        assert!(scrape.contains(series), "no `{series}` in:\n{scrape}");
    }
    for ticket in &early {
        assert_eq!(
            results[ticket]["status"],
            "ISSUE_STATUS_NOT_STARTED",
            "{}",
            cluster.logs()
        );
    }
    for (i, ticket) in late.iter().enumerate() {
        let expected = if i < 10 {
            "ISSUE_STATUS_ISSUED"
        } else {
            "ISSUE_STATUS_SOLD_OUT"
        };
        assert_eq!(results[ticket]["status"], expected, "late request #{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivery_changes_nothing_and_an_empty_database_rebuilds_the_same_outcomes() {
    let Some(cluster) = Cluster::new(4).await else {
        return;
    };
    let producer = cluster
        .producer("producer", &["--clock-skew-allowance-ms", "10000"])
        .await;
    let mut consumer = cluster.consumer("consumer");
    let client = &producer.client;

    // Three campaigns (one not started yet), repeats, more users than coupons.
    let mut ids = Vec::new();
    for (name, total, start) in [("a", 30, 0), ("b", 50, 0), ("c", 20, 8_000)] {
        let c = client
            .create_campaign(name, total, &rfc3339_in(TimeDelta::milliseconds(start)))
            .await
            .expect("create");
        ids.push(c["id"].as_str().expect("id").to_owned());
    }
    let mut tickets = Vec::new();
    for n in 0..300 {
        let id = &ids[n % 3];
        let user = format!("user-{}", (n * 7) % 120);
        match client.issue(id, &user).await {
            Ok(accepted) => tickets.push(accepted["ticketId"].as_str().expect("t").to_owned()),
            // Known sold out: refused at once, nothing in the log.
            Err(e) => assert_eq!(e.reason.as_deref(), Some("CAMPAIGN_SOLD_OUT"), "{e:?}"),
        }
    }
    // After a sell-out a holder's repeat is answered with the winning ticket again.
    tickets.sort();
    tickets.dedup();
    let results = client.await_final(&tickets, Duration::from_secs(60)).await;
    assert!(
        results
            .values()
            .any(|r| r["status"] == "ISSUE_STATUS_NOT_STARTED")
    );
    assert!(
        results
            .values()
            .any(|r| r["status"] == "ISSUE_STATUS_ALREADY_ISSUED")
    );
    let original = snapshot(&cluster.database_url).await;
    assert_eq!(original.tickets.len(), tickets.len());
    for ticket in &tickets {
        assert!(original.tickets.contains_key(&ticket_uuid(ticket)));
    }

    // Redelivery: rewind every partition to the start and let the worker read it all again.
    consumer.kill9();
    let pool = PgPool::connect(&cluster.database_url)
        .await
        .expect("connect");
    const DECIDED_UP_TO: &str =
        "SELECT COALESCE(sum(next_offset), 0)::bigint FROM partition_offsets";
    let end: i64 = sqlx::query_scalar(DECIDED_UP_TO)
        .fetch_one(&pool)
        .await
        .expect("offsets");
    sqlx::query("UPDATE partition_offsets SET next_offset = 0")
        .execute(&pool)
        .await
        .expect("rewind");
    let _consumer = cluster.consumer("consumer-replay");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: i64 = sqlx::query_scalar(DECIDED_UP_TO)
            .fetch_one(&pool)
            .await
            .expect("offsets");
        if now >= end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay did not catch up\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        snapshot(&cluster.database_url).await,
        original,
        "a replay changed stored outcomes"
    );

    // Rebuild: a worker of a new group on an empty database replays the topic.
    let Some(empty) = common::pg::fresh_database().await else {
        return;
    };
    let _rebuilder =
        cluster.consumer_on("rebuilder", &empty, &format!("{}-rebuild", cluster.group));
    await_decided(&empty, tickets.len(), Duration::from_secs(60)).await;
    let rebuilt = snapshot(&empty).await;
    assert_eq!(
        rebuilt, original,
        "the log alone must rebuild every outcome and code"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_bad_requests_are_refused_by_a_producer() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster.producer("producer", &[]).await;
    let client: &Client = &producer.client;
    let e = client
        .issue("01a21111-1111-7111-8111-111111111111", "u")
        .await
        .expect_err("unknown");
    assert_eq!(e.code, "not_found");
    let e = client
        .create_campaign("", 5, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect_err("bad");
    assert_eq!(e.metadata["field"], "name");
    let c = client
        .create_campaign("later", 5, &rfc3339_in(TimeDelta::hours(1)))
        .await
        .expect("create");
    let e = client
        .issue(c["id"].as_str().expect("id"), "u")
        .await
        .expect_err("early");
    assert_eq!(e.reason.as_deref(), Some("CAMPAIGN_NOT_STARTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_winner_retrying_after_the_sell_out_gets_their_coupon_from_any_producer() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let first = cluster.producer("producer-1", &[]).await;
    let second = cluster.producer("producer-2", &[]).await;
    let _consumer = cluster.consumer("consumer");
    let created = first
        .client
        .create_campaign("retry", 3, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = created["id"].as_str().expect("id").to_owned();
    let mut tickets = Vec::new();
    for n in 0..5 {
        let answer = first.client.issue(&id, &format!("user-{n}")).await;
        let answer = answer.expect("accepted");
        tickets.push(answer["ticketId"].as_str().expect("ticket").to_owned());
    }
    let results = first
        .client
        .await_final(&tickets, Duration::from_secs(30))
        .await;
    let won = &results[&tickets[0]];
    assert_eq!(won["status"], "ISSUE_STATUS_ISSUED", "{}", cluster.logs());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The winner's first answer was lost; the retry goes to another producer, which
    // knows the campaign is sold out and hands back the winning ticket.
    let retry = second.client.issue(&id, "user-0").await.expect("answered");
    let again = second
        .client
        .result(retry["ticketId"].as_str().expect("ticket"))
        .await
        .expect("result");
    assert_eq!(again["coupon"]["code"], won["coupon"]["code"]);
    let refused = second
        .client
        .issue(&id, "user-4")
        .await
        .expect_err("sold out");
    assert_eq!(refused.reason.as_deref(), Some("CAMPAIGN_SOLD_OUT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_are_listed_newest_first_with_their_state_and_alphabet() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster.producer("producer", &[]).await;
    let _consumer = cluster.consumer("consumer");
    common::listing::check_listing_and_alphabets(&producer.client).await;
}
