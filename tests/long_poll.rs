//! GetIssueResult at flash-sale scale, embedded mode, through the real HTTP API:
//! long-polls answered the moment their ticket is decided, PENDING answered from
//! memory with the ticket's place in the log, first-format tickets still answered,
//! forged ones refused without a read. Decisions are held back by write-locking the
//! state database (`Server::hold_decisions`), as a slow disk or a busy worker would.
//!
//! The tests read the process-wide `/metrics` counters, so they run one at a time.

mod common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::connect::{Client, rfc3339_in};
use common::embedded::Server;
use coupon::domain::{TicketId, TicketSeal};
use coupon::modes::ServeArgs;
use serde_json::Value;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const STORE_READS: &str = r#"coupon_result_reads_total{source="store"}"#;
const MEMORY_READS: &str = r#"coupon_result_reads_total{source="memory"}"#;

/// A started campaign of `total` coupons whose creation the worker has decided (so
/// nothing but the test's own requests is undecided in the log afterwards).
async fn decided_campaign(client: &Client, total: i64) -> String {
    let campaign = client
        .create_campaign("long-poll", total, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();
    let (_, ticket, _) = client.issued_in_new_campaign("barrier", "barrier").await;
    assert!(!ticket.is_empty());
    id
}

async fn ticket(client: &Client, campaign: &str, user: &str) -> String {
    let accepted = client.issue(campaign, user).await.expect("accepted");
    accepted["ticketId"].as_str().expect("ticket").to_owned()
}

fn position(answer: &Value) -> Option<u64> {
    answer["position"].as_str().and_then(|p| p.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_is_answered_the_moment_its_ticket_is_decided() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start(Default::default()).await;
    let client = server.client.clone();
    let campaign = decided_campaign(&client, 10).await;
    let hold = server.hold_decisions();
    let ticket = ticket(&client, &campaign, "waiting-user").await;
    let poll = {
        let (client, ticket) = (client.clone(), ticket.clone());
        tokio::spawn(async move { client.long_poll(&ticket, 10_000, None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !poll.is_finished(),
        "answered while the ticket was undecided"
    );
    let released = Instant::now();
    hold.release();
    let answer = poll.await.expect("joined").expect("answered");
    let waited = released.elapsed();
    assert_eq!(answer["status"], "ISSUE_STATUS_ISSUED", "{answer}");
    // The coupon names the ticket exactly as the client holds it.
    assert_eq!(answer["coupon"]["ticketId"], ticket.as_str(), "{answer}");
    assert!(
        waited < Duration::from_secs(2),
        "answered {waited:?} after the decision could be made, with 10 s of wait left"
    );
    println!("long-poll answered {waited:?} after decisions resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_ends_pending_at_its_wait_and_before_the_clients_deadline() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The node's request timeout bounds work, not a long-poll's wait.
    let serve = ServeArgs {
        request_timeout_ms: 1_000,
        ..Default::default()
    };
    let server = Server::start(serve).await;
    let client = server.client.clone();
    let campaign = decided_campaign(&client, 10).await;
    let hold = server.hold_decisions();
    let ticket = ticket(&client, &campaign, "patient-user").await;
    let started = Instant::now();
    let answer = client
        .long_poll(&ticket, 1_500, None)
        .await
        .expect("not timed out");
    assert_eq!(answer["status"], "ISSUE_STATUS_PENDING", "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(1_500));

    let started = Instant::now();
    let answer = client.long_poll(&ticket, 300, None).await.expect("answer");
    let took = started.elapsed();
    assert_eq!(answer["status"], "ISSUE_STATUS_PENDING", "{answer}");
    assert_eq!(position(&answer), Some(0), "the next to decide: {answer}");
    assert!(answer["retryAfterMs"].as_u64().unwrap_or(0) > 0, "{answer}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // 10 s asked, 0.9 s of client deadline: PENDING comes before the client gives up.
    let started = Instant::now();
    let answer = client
        .long_poll(&ticket, 10_000, Some(900))
        .await
        .expect("PENDING, not deadline_exceeded");
    let took = started.elapsed();
    assert_eq!(answer["status"], "ISSUE_STATUS_PENDING", "{answer}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(900),
        "{took:?}"
    );

    let refused = client.long_poll(&ticket, 0, None).await.expect("no wait");
    assert_eq!(refused["status"], "ISSUE_STATUS_PENDING");
    let negative = client
        .call(
            "coupon.v1.CouponService/GetIssueResult",
            serde_json::json!({"ticketId": ticket, "waitMs": -1}),
        )
        .await
        .expect_err("a negative wait is refused");
    assert_eq!(negative.code, "invalid_argument");
    assert_eq!(negative.metadata["field"], "wait_ms", "{negative:?}");
    hold.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positions_count_the_backlog_ahead_and_only_go_down_as_it_drains() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start(Default::default()).await;
    let client = server.client.clone();
    let campaign = decided_campaign(&client, 100).await;
    let hold = server.hold_decisions();
    let tickets = issue_many(&client, &campaign, 5_000).await;
    let mut by_position = vec![None; tickets.len()];
    for ticket in &tickets {
        let answer = client.result(ticket).await.expect("poll");
        let at = position(&answer).expect("a PENDING ticket has a position") as usize;
        assert!(
            by_position[at].replace(ticket.clone()).is_none(),
            "two tickets at {at}"
        );
    }
    // Exactly 0..5000: each ticket counts the others ahead of it in the log.
    let by_position: Vec<String> = by_position
        .into_iter()
        .map(|t| t.expect("every place"))
        .collect();
    let last = by_position.last().expect("tickets").clone();
    let watcher = tokio::spawn(watch_positions(client.clone(), last));
    hold.release();
    let seen = watcher.await.expect("joined");
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[1] < w[0]),
        "positions went up: {seen:?}"
    );
    // First come, first served: the 100 tickets nearest the front won.
    let finals = client
        .await_final(&by_position, Duration::from_secs(60))
        .await;
    for (at, ticket) in by_position.iter().enumerate() {
        let expected = if at < 100 {
            "ISSUE_STATUS_ISSUED"
        } else {
            "ISSUE_STATUS_SOLD_OUT"
        };
        assert_eq!(finals[ticket]["status"], expected, "position {at}");
    }
    // The worker's backlog gauges are exported (set every few seconds after a commit).
    let log_end = client
        .metric(r#"coupon_log_end_offset{partition="0"}"#)
        .await;
    assert!(log_end >= 1.0, "no coupon_log_end_offset: {log_end}");
    println!("positions seen while 5,000 drained: {seen:?}");
}

/// `count` tickets of distinct users, 64 requests at a time.
async fn issue_many(client: &Client, campaign: &str, count: usize) -> Vec<String> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..count {
        let (client, campaign, gate) = (client.clone(), campaign.to_owned(), gate.clone());
        requests.spawn(async move {
            let _turn = gate.acquire().await.expect("gate");
            ticket(&client, &campaign, &format!("user-{n}")).await
        });
    }
    requests.join_all().await
}

/// The distinct positions `ticket` reports until it is final (the last entry: none).
async fn watch_positions(client: Client, ticket: String) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let answer = client.result(&ticket).await.expect("poll");
        if answer["status"] != "ISSUE_STATUS_PENDING" {
            return seen;
        }
        let at = position(&answer).expect("position");
        if seen.last() != Some(&at) {
            seen.push(at);
        }
    }
    panic!("{ticket} never decided; positions {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_long_polls_hold_no_work_slot_are_bounded_and_all_answered_at_shutdown() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let serve = ServeArgs {
        max_in_flight: 2,
        max_queued: 64,
        max_waiting_polls: 20,
        ..Default::default()
    };
    let server = Server::start(serve).await;
    let client = server.client.clone();
    let campaign = decided_campaign(&client, 10).await;
    let hold = server.hold_decisions();
    let mut tickets = Vec::new();
    for n in 0..21 {
        tickets.push(ticket(&client, &campaign, &format!("waiter-{n}")).await);
    }
    let mut waiters = tokio::task::JoinSet::new();
    for ticket in &tickets[..20] {
        let (client, ticket) = (client.clone(), ticket.clone());
        waiters.spawn(async move { client.long_poll(&ticket, 20_000, None).await });
    }
    client.await_waiting(20).await;
    // 20 waiting, 2 work slots: work still gets through, the 21st waiter does not.
    client.health().await.expect("a work slot is free");
    let shed = client
        .long_poll(&tickets[20], 20_000, None)
        .await
        .expect_err("bounded");
    assert_eq!(
        (shed.code.as_str(), shed.reason.as_deref()),
        ("unavailable", Some("OVERLOADED"))
    );

    let stopping = Instant::now();
    server.running.shutdown_token().cancel();
    let answers = waiters.join_all().await;
    let took = stopping.elapsed();
    for answer in answers {
        assert_eq!(answer.expect("answered")["status"], "ISSUE_STATUS_PENDING");
    }
    assert!(
        took < Duration::from_secs(2),
        "waiters answered {took:?} after SIGTERM"
    );
    hold.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_costs_no_read_first_format_tickets_still_answer_forgeries_cost_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start(Default::default()).await;
    let client = server.client.clone();
    let campaign = decided_campaign(&client, 10).await;
    let hold = server.hold_decisions();
    let ticket = ticket(&client, &campaign, "first-format-user").await;
    let (store, memory) = (
        client.metric(STORE_READS).await,
        client.metric(MEMORY_READS).await,
    );
    for _ in 0..100 {
        let answer = client.result(&ticket).await.expect("poll");
        assert_eq!(answer["status"], "ISSUE_STATUS_PENDING");
    }
    assert_eq!(
        client.metric(STORE_READS).await - store,
        0.0,
        "PENDING read the store"
    );
    assert_eq!(client.metric(MEMORY_READS).await - memory, 100.0);

    // The same ticket sealed the way tickets were before they carried a position.
    let uuid = ticket.split('.').next().expect("uuid");
    let id = TicketId::from_uuid(uuid.parse().expect("uuid"));
    let first_format = TicketSeal::new(&server.secret()).seal(id);
    let store = client.metric(STORE_READS).await;
    let answer = client.result(&first_format).await.expect("first format");
    assert_eq!(answer["status"], "ISSUE_STATUS_PENDING", "{answer}");
    assert!(
        answer.get("position").is_none(),
        "no position to tell: {answer}"
    );
    assert_eq!(
        client.metric(STORE_READS).await - store,
        1.0,
        "one lookup, as before"
    );
    hold.release();
    let decided = client
        .await_one(&first_format, Duration::from_secs(30))
        .await;
    assert_eq!(decided["status"], "ISSUE_STATUS_ISSUED", "{decided}");
    // The coupon names the ticket as IssueCoupon handed it out.
    assert_eq!(decided["coupon"]["ticketId"], ticket.as_str());

    let before = client.metric(STORE_READS).await + client.metric(MEMORY_READS).await;
    for forged in forgeries(&ticket) {
        let refused = client.result(&forged).await.expect_err("forged");
        assert_eq!(refused.code, "not_found", "{forged}");
    }
    let after = client.metric(STORE_READS).await + client.metric(MEMORY_READS).await;
    assert_eq!(after, before, "a forged ticket cost a read");
}

/// `ticket` with its offset, its partition or its tag altered.
fn forgeries(ticket: &str) -> Vec<String> {
    let parts: Vec<&str> = ticket.split('.').collect();
    let [uuid, partition, offset, tag] = parts[..] else {
        panic!("not a positioned ticket: {ticket}");
    };
    let offset: u64 = offset.parse().expect("offset");
    let flipped = if tag.ends_with('0') { "1" } else { "0" };
    vec![
        format!("{uuid}.{partition}.{}.{tag}", offset + 1_000_000),
        format!(
            "{uuid}.{}.{offset}.{tag}",
            partition.parse::<u32>().expect("p") + 1
        ),
        format!(
            "{uuid}.{partition}.{offset}.{}{flipped}",
            &tag[..tag.len() - 1]
        ),
    ]
}
