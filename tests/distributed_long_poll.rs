//! GetIssueResult in the distributed mode, on real producer and consumer processes:
//! a producer answers PENDING from the decided offsets the consumers NOTIFY, wakes its
//! long-polls when they commit, still answers every waiter after its LISTEN connection
//! is cut (`pg_terminate_backend`), and answers every waiter on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, Producer};
use common::connect::Client;
use coupon::infra::postgres::LISTENER_APPLICATION_NAME;
use nix::sys::signal::Signal;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

const STORE_READS: &str = r#"coupon_result_reads_total{source="store"}"#;

/// A producer and a consumer, and a campaign whose creation is decided already.
async fn cluster_with_campaign() -> Option<(Cluster, Producer, common::process::Proc, String)> {
    let cluster = Cluster::new(2).await?;
    let producer = cluster.producer("producer", &[]).await;
    let consumer = cluster.consumer("consumer");
    let (campaign, _, _) = producer
        .client
        .issued_in_new_campaign("long-poll", "first")
        .await;
    Some((cluster, producer, consumer, campaign))
}

async fn tickets(client: &Client, campaign: &str, count: usize) -> Vec<String> {
    let mut tickets = Vec::new();
    for n in 0..count {
        let accepted = client
            .issue(campaign, &format!("user-{n}"))
            .await
            .expect("accepted");
        tickets.push(accepted["ticketId"].as_str().expect("ticket").to_owned());
    }
    tickets
}

fn long_polls(client: &Client, tickets: &[String], wait_ms: u64) -> tokio::task::JoinSet<Value> {
    let mut polls = tokio::task::JoinSet::new();
    for ticket in tickets {
        let (client, ticket) = (client.clone(), ticket.clone());
        polls.spawn(async move {
            client
                .long_poll(&ticket, wait_ms, None)
                .await
                .expect("answer")
        });
    }
    polls
}

/// Ends the producers' LISTEN sessions; how many there were.
async fn cut_listeners(database_url: &str) -> i64 {
    let mut conn = PgConnection::connect(database_url).await.expect("connect");
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&mut conn)
    .await
    .expect("terminate");
    let _ = conn.close().await;
    cut
}

/// Before any worker has decided anything (no stored offset at all), a producer still
/// places new tickets in the log: PENDING from memory, with their position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_anything_is_decided_pending_polls_read_no_store() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster.producer("producer", &[]).await;
    let client = producer.client.clone();
    let campaign = client
        .create_campaign(
            "undecided",
            10,
            &common::connect::rfc3339_in(chrono::TimeDelta::zero()),
        )
        .await
        .expect("create");
    let campaign = campaign["id"].as_str().expect("id");
    let tickets = tickets(&client, campaign, 5).await;
    let store = client.metric(STORE_READS).await;
    let mut positions = Vec::new();
    for ticket in &tickets {
        let answer = client.result(ticket).await.expect("poll");
        assert_eq!(answer["status"], "ISSUE_STATUS_PENDING", "{answer}");
        positions.push(
            answer["position"]
                .as_str()
                .unwrap_or_else(|| panic!("no position: {answer}\n{}", cluster.logs()))
                .parse::<u64>(),
        );
    }
    assert_eq!(
        client.metric(STORE_READS).await,
        store,
        "PENDING read the store"
    );
    // Log order: each ticket has the previous one (and the campaign's creation) ahead.
    let positions: Vec<u64> = positions
        .into_iter()
        .map(|p| p.expect("a number"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[1] == w[0] + 1),
        "{positions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_polls_wake_on_the_consumers_commit_even_after_the_listener_is_cut() {
    let Some((cluster, producer, consumer, campaign)) = cluster_with_campaign().await else {
        return;
    };
    let client = producer.client.clone();
    consumer.signal(Signal::SIGSTOP);
    let tickets = tickets(&client, &campaign, 20).await;
    // PENDING by arithmetic, with the place in the log: no store read.
    let store = client.metric(STORE_READS).await;
    for ticket in &tickets {
        let answer = client.result(ticket).await.expect("poll");
        assert_eq!(answer["status"], "ISSUE_STATUS_PENDING", "{answer}");
        assert!(answer["position"].as_str().is_some(), "{answer}");
    }
    assert_eq!(
        client.metric(STORE_READS).await,
        store,
        "PENDING read the store"
    );

    let mut polls = long_polls(&client, &tickets, 20_000);
    client.await_waiting(20).await;
    assert!(
        cut_listeners(&cluster.database_url).await >= 1,
        "no listener to cut"
    );
    let resumed = Instant::now();
    consumer.signal(Signal::SIGCONT);
    while let Some(answer) = polls.join_next().await {
        let answer = answer.expect("joined");
        let status = answer["status"].as_str().unwrap_or_default();
        assert!(
            ["ISSUE_STATUS_ISSUED", "ISSUE_STATUS_SOLD_OUT"].contains(&status),
            "{answer}\n{}",
            cluster.logs()
        );
    }
    let took = resumed.elapsed();
    // Well within the 20 s waits, and sooner than the listener's 5 s safety re-read.
    assert!(
        took < Duration::from_millis(4_500),
        "answered {took:?} after the consumer resumed"
    );
    assert!(
        client
            .metric("coupon_decided_listener_reconnects_total")
            .await
            >= 1.0
    );
    println!("20 long-polls answered {took:?} after the consumer resumed (listener cut)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_answers_every_waiter_pending_on_sigterm() {
    let Some((cluster, producer, consumer, campaign)) = cluster_with_campaign().await else {
        return;
    };
    let client = producer.client.clone();
    consumer.signal(Signal::SIGSTOP);
    let tickets = tickets(&client, &campaign, 10).await;
    let polls = long_polls(&client, &tickets, 20_000);
    client.await_waiting(10).await;
    let stopping = Instant::now();
    producer.proc.signal(Signal::SIGTERM);
    for answer in polls.join_all().await {
        assert_eq!(
            answer["status"],
            "ISSUE_STATUS_PENDING",
            "{answer}\n{}",
            cluster.logs()
        );
    }
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "waiters answered {took:?} after SIGTERM"
    );
    consumer.signal(Signal::SIGCONT);
}
