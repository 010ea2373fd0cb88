//! The shared Kafka and PostgreSQL restarted, killed and frozen under load (DESIGN §5.6,
//! issue 20): the service refuses or retries while a part is down, recovers by itself,
//! loses or doubles no accepted ticket, and tells clients the truth about what it
//! accepted. These tests disrupt the shared services, so they live in their own test
//! binary (cargo runs test binaries one after another) and take turns (`SERVICES`).

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use common::cluster::Cluster;
use common::connect::{Client, RpcError, is_well_formed_code, rfc3339_in};
use serde_json::Value;

/// One disruption of the shared services at a time.
static SERVICES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn services(action: &str) {
    let status = Command::new("scripts/services.sh")
        .arg(action)
        .status()
        .expect("services.sh");
    assert!(status.success(), "scripts/services.sh {action} failed");
}

/// Waits until the node reports `status` for the node as a whole.
async fn await_health(client: &Client, status: &str) {
    await_service_health(client, "", status).await;
}

/// Waits until the node reports `status` for `service` (`""`: the node as a whole).
async fn await_service_health(client: &Client, service: &str, status: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    client.await_health(service, status, deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_and_postgres_restarts_under_load_lose_no_accepted_ticket() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let _turn = SERVICES.lock().await;
    let producer = cluster
        .producer("producer", &["--ack-timeout-ms", "3000"])
        .await;
    let _consumer = cluster.consumer("consumer");
    let client = producer.client.clone();
    let campaign = client
        .create_campaign("faults", 10_000_000, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    // 16 clients keep asking, each with fresh users, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for worker in 0..16 {
        let (client, id, stop, accepted, refused) = (
            client.clone(),
            id.clone(),
            stop.clone(),
            accepted.clone(),
            refused.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("w{worker}-{n}");
                n += 1;
                match client.issue(&id, &user).await {
                    Ok(r) => accepted
                        .lock()
                        .expect("lock")
                        .push((r["ticketId"].as_str().expect("t").to_owned(), user)),
                    Err(e) => {
                        refused.lock().expect("lock").push(format!(
                            "{}/{}",
                            e.code,
                            e.reason.unwrap_or_default()
                        ));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    let count = |v: &Arc<Mutex<Vec<(String, String)>>>| v.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kafka = count(&accepted);
    tokio::task::spawn_blocking(|| services("restart-kafka"))
        .await
        .expect("restart kafka");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before_pg = count(&accepted);
    assert!(
        before_pg > before_kafka,
        "no request accepted after Kafka came back\n{}",
        cluster.logs()
    );
    // PostgreSQL crashes (SIGKILL): the node says so on its health check, then recovers.
    tokio::task::spawn_blocking(|| services("kill-pg"))
        .await
        .expect("kill pg");
    await_health(&client, "NOT_SERVING").await;
    tokio::task::spawn_blocking(|| services("restart-pg"))
        .await
        .expect("restart pg");
    await_health(&client, "SERVING").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_pg = count(&accepted);
    assert!(
        after_pg > before_pg,
        "no request accepted after PostgreSQL came back\n{}",
        cluster.logs()
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }

    let accepted = accepted.lock().expect("lock").clone();
    let refused = refused.lock().expect("lock").clone();
    for r in &refused {
        assert!(
            r.starts_with("unavailable/") || r.starts_with("transport"),
            "unexpected refusal {r}"
        );
    }
    let tickets: Vec<String> = accepted.iter().map(|(t, _)| t.clone()).collect();
    let results = client.await_final(&tickets, Duration::from_secs(120)).await;
    let mut codes = HashSet::new();
    for (ticket, user) in &accepted {
        let result = &results[ticket];
        assert_eq!(
            result["status"],
            "ISSUE_STATUS_ISSUED",
            "{ticket}: {result}\n{}",
            cluster.logs()
        );
        assert_eq!(result["coupon"]["userId"], user.as_str());
        let code = result["coupon"]["code"].as_str().expect("code");
        assert!(
            is_well_formed_code(code) && codes.insert(code.to_owned()),
            "bad or doubled code {code}"
        );
    }
    let listed = client.all_coupons(&id).await;
    let listed_codes: HashSet<&str> = listed
        .iter()
        .map(|c| c["code"].as_str().expect("code"))
        .collect();
    assert_eq!(listed_codes.len(), listed.len(), "a code listed twice");
    assert!(codes.iter().all(|c| listed_codes.contains(c.as_str())));
    eprintln!(
        "accepted {} requests, refused {} while a service was down, {} coupons issued",
        accepted.len(),
        refused.len(),
        listed.len()
    );
}

/// Issue 20: while PostgreSQL is down every read waited the pool's 5 s acquire timeout
/// (polls, GetCampaign, IssueCoupon of a campaign the node has not cached). Once the node
/// knows the database is down it answers at once, and notices by itself when it is back.
/// A result the node has already read stays answered from its cache (issue 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_fail_fast_while_postgres_is_down_and_recover_when_it_returns() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let _turn = SERVICES.lock().await;
    let producer = cluster.producer("producer", &[]).await;
    let _consumer = cluster.consumer("consumer");
    let client = producer.client.clone();
    let (id, cached, decided) = client.issued_in_new_campaign("fail fast", "alice").await;
    // Decided, but never read through this node: its poll needs the database.
    let ticket = client.issue(&id, "bob").await.expect("issue")["ticketId"]
        .as_str()
        .expect("ticket")
        .to_owned();
    await_stored(&cluster.database_url, &ticket).await;

    tokio::task::spawn_blocking(|| services("kill-pg"))
        .await
        .expect("kill pg");
    await_service_health(&client, "coupon.v1.CampaignService", "NOT_SERVING").await;
    let from_cache = client.result(&cached).await.expect("a cached final result");
    assert_eq!(from_cache, decided, "answered from the node's cache");
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        for name in ["GetIssueResult", "GetCampaign", "IssueCoupon"] {
            let started = std::time::Instant::now();
            let answer = match name {
                "GetIssueResult" => client.result(&ticket).await,
                "GetCampaign" => client.get_campaign(&id, 10, "").await,
                _ => client.issue(&unknown, &format!("u{round}")).await,
            };
            slowest = slowest.max(started.elapsed());
            let error = answer.expect_err("the database is down");
            assert_eq!(error.code, "unavailable", "{name}: {error:?}");
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a read waited {slowest:?} on a database known to be down"
    );

    tokio::task::spawn_blocking(|| services("restart-pg"))
        .await
        .expect("restart pg");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let back = loop {
        match client.result(&ticket).await {
            Ok(answer) => break answer,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "polls still refused 30 s after PostgreSQL returned: {e:?}\n{}",
                cluster.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(back["status"], "ISSUE_STATUS_ISSUED", "{back}");
    eprintln!("slowest read while PostgreSQL was down: {slowest:?}");
}

/// Waits until the ticket's result is in the database, asking PostgreSQL directly.
async fn await_stored(database_url: &str, ticket: &str) {
    let uuid: uuid::Uuid = ticket
        .split('.')
        .next()
        .expect("uuid")
        .parse()
        .expect("uuid");
    let pool = sqlx::PgPool::connect(database_url).await.expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (stored,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM ticket_results WHERE ticket_id = $1")
                .bind(uuid)
                .fetch_one(&pool)
                .await
                .expect("count");
        if stored == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ticket} never decided"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
}

type Answers = Arc<Mutex<HashMap<String, Result<Value, RpcError>>>>;

/// 16 clients ask with fresh users, one request each, until `stop` is set.
fn flood(
    client: &Client,
    id: &str,
    answers: &Answers,
    stop: &Arc<Mutex<bool>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..16)
        .map(|worker| {
            let (client, id, answers, stop) =
                (client.clone(), id.to_owned(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !*stop.lock().expect("lock") {
                    n += 1;
                    let user = format!("w{worker}-{n}");
                    let answer = client.issue(&id, &user).await;
                    answers.lock().expect("lock").insert(user, answer);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_never_makes_an_accepted_request_look_refused() {
    let Some(cluster) = Cluster::new(1).await else {
        return;
    };
    let _turn = SERVICES.lock().await;
    let producer = cluster
        .producer("producer", &["--ack-timeout-ms", "2000"])
        .await;
    let _consumer = cluster.consumer("consumer");
    let client = producer.client.clone();
    let campaign = client
        .create_campaign("freeze", 200, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    let answers: Answers = Arc::default();
    let stop = Arc::new(Mutex::new(false));
    let tasks = flood(&client, &id, &answers, &stop);
    // Freeze the broker with the campaign a quarter sold, requests in flight.
    let accepted = || {
        answers
            .lock()
            .expect("lock")
            .values()
            .filter(|a| a.is_ok())
            .count()
    };
    while accepted() < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    services("pause-kafka");
    tokio::time::sleep(Duration::from_secs(5)).await;
    services("resume-kafka");
    // Keep asking until the campaign sells out, then a little longer.
    tokio::time::sleep(Duration::from_secs(6)).await;
    *stop.lock().expect("lock") = true;
    for task in tasks {
        task.await.expect("flood task");
    }
    let answers = std::mem::take(&mut *answers.lock().expect("lock"));

    let tickets: Vec<String> = answers
        .values()
        .filter_map(|a| a.as_ref().ok())
        .map(|a| a["ticketId"].as_str().expect("ticket").to_owned())
        .collect();
    client.await_final(&tickets, Duration::from_secs(60)).await;
    let holders: HashMap<String, String> = client
        .all_coupons(&id)
        .await
        .iter()
        .map(|c| {
            (
                c["userId"].as_str().expect("user").to_owned(),
                c["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(holders.len(), 200, "sold out\n{}", cluster.logs());

    let unknown: HashSet<&String> = answers
        .iter()
        .filter(|(_, a)| matches!(a, Err(e) if e.reason.as_deref() == Some("OUTCOME_UNKNOWN")))
        .map(|(user, _)| user)
        .collect();
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for answer in answers.values() {
        let key = match answer {
            Ok(_) => "ticket".to_owned(),
            Err(e) => format!("{}/{}", e.code, e.reason.clone().unwrap_or_default()),
        };
        *by_reason.entry(key).or_default() += 1;
    }
    eprintln!("answers during the freeze test: {by_reason:?}");
    assert!(
        !unknown.is_empty(),
        "the freeze left requests unconfirmed: {by_reason:?}\n{}",
        cluster.logs()
    );
    for (user, answer) in &answers {
        if let Err(error) = answer
            && holders.contains_key(user)
        {
            assert_eq!(
                error.reason.as_deref(),
                Some("OUTCOME_UNKNOWN"),
                "{user} holds a coupon but was told {error:?}"
            );
        }
    }
    // A retry finds the user's outcome: the coupon if they hold one, even though the
    // campaign is sold out by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for user in unknown {
        match client.issue(&id, user).await {
            Ok(answer) => {
                let ticket = answer["ticketId"].as_str().expect("ticket");
                let result = client.await_one(ticket, Duration::from_secs(10)).await;
                assert_eq!(
                    result["coupon"]["code"].as_str(),
                    holders.get(user).map(String::as_str),
                    "{user}: {result}"
                );
            }
            Err(error) => {
                assert_eq!(error.reason.as_deref(), Some("CAMPAIGN_SOLD_OUT"), "{user}");
                assert!(
                    !holders.contains_key(user),
                    "{user} holds a coupon, was told sold out"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_created_while_postgres_is_down_exists_once_and_retries_are_idempotent() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let _turn = SERVICES.lock().await;
    let producer = cluster.producer("producer", &[]).await;
    let _consumer = cluster.consumer("consumer");
    // Started before the outage: a worker that cannot reach PostgreSQL at start (its
    // key and topic checks) exits, and the test is about a running one.
    cluster
        .await_log(
            "consumer",
            "issuing worker subscribed",
            Duration::from_secs(60),
        )
        .await;
    let client = producer.client.clone();
    let starts_at = rfc3339_in(TimeDelta::zero());
    let create = |name: &str, total: i64, key: &str| {
        let body = serde_json::json!({"name": name, "totalCoupons": total,
            "startsAt": starts_at, "requestId": key});
        let client = client.clone();
        async move {
            client
                .call("coupon.v1.CampaignService/CreateCampaign", body)
                .await
                .map(|r| r["campaign"].clone())
        }
    };
    tokio::task::spawn_blocking(|| services("kill-pg"))
        .await
        .expect("kill pg");
    // Load balancers see which half still serves: issuing (the log is up), not admin.
    await_service_health(&client, "coupon.v1.CampaignService", "NOT_SERVING").await;
    await_service_health(&client, "coupon.v1.CouponService", "SERVING").await;
    // In the log, so it exists: the answer says so, and the row follows.
    let during = create("during the outage", 10, "").await;
    // With a key the node must look first; it cannot, so nothing is created.
    let keyed = create("keyed", 10, "key-1")
        .await
        .expect_err("cannot check the key");
    tokio::task::spawn_blocking(|| services("restart-pg"))
        .await
        .expect("restart pg");
    let during = during.unwrap_or_else(|e| panic!("the appended campaign was refused: {e:?}"));
    assert_eq!(
        keyed.reason.as_deref(),
        Some("STORE_UNAVAILABLE"),
        "{keyed:?}"
    );
    let during_id = during["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.get_campaign(&during_id, 1, "").await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "never stored\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = create("keyed", 10, "key-1").await.expect("created");
    let retry = create("keyed", 10, "key-1")
        .await
        .expect("the same campaign");
    assert_eq!(first["id"], retry["id"]);
    let other = create("keyed", 11, "key-1").await.expect_err("other terms");
    assert_eq!(
        other.reason.as_deref(),
        Some("REQUEST_ID_REUSED"),
        "{other:?}"
    );
    let pool = sqlx::PgPool::connect(&cluster.database_url)
        .await
        .expect("connect");
    let (campaigns,): (i64,) = sqlx::query_as("SELECT count(*) FROM campaigns")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        campaigns, 2,
        "one campaign per creation that was answered as created"
    );
}
