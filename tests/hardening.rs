//! Issue 6: what one node lets a client hold. Slow clients time out, requests over the
//! in-flight cap are refused at once (in the caller's protocol) with nothing accepted,
//! connections over the cap wait, and `/metrics` counts what happened.

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::connect::rfc3339_in;
use common::embedded::Server;
use coupon::modes::ServeArgs;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.running.addr)
        .await
        .expect("connect")
}

/// Writes an IssueCoupon request head announcing `length` body bytes, and `sent` of them.
async fn send_partial_request(stream: &mut TcpStream, content_type: &str, length: usize) {
    let head = format!(
        "POST /coupon.v1.CouponService/IssueCoupon HTTP/1.1\r\nHost: test\r\n\
         Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n{{\"campaignId\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
}

/// Reads until the server closes the connection (or `limit` passes); returns the bytes.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut bytes)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = Server::start(ServeArgs {
        header_read_timeout_ms: 300,
        ..ServeArgs::DEFAULT
    })
    .await;
    let mut idle = connect(&server).await;
    let mut slow = connect(&server).await;
    slow.write_all(b"POST /coupon.v1.CouponService/IssueCoupon HTTP/1.1\r\nHost: te")
        .await
        .expect("write");
    for stream in [&mut idle, &mut slow] {
        assert!(
            read_until_closed(stream, Duration::from_secs(5))
                .await
                .is_some(),
            "the server must close a connection that sends no complete request head"
        );
    }
    server.client.health().await.expect("still serving");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_deadline_exceeded() {
    let server = Server::start(ServeArgs {
        request_timeout_ms: 300,
        ..ServeArgs::DEFAULT
    })
    .await;
    let mut stream = connect(&server).await;
    send_partial_request(&mut stream, "application/json", 200).await;
    let mut response = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("answered before the client gave up")
        .expect("read");
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    assert!(response.contains("\"deadline_exceeded\""), "{response}");
}

#[tokio::test]
async fn a_request_over_the_in_flight_cap_is_refused_at_once_in_its_protocol() {
    let server = Server::start(ServeArgs {
        max_in_flight: 1,
        max_queued: 0,
        ..ServeArgs::DEFAULT
    })
    .await;
    let campaign = server
        .client
        .create_campaign("cap", 10, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("created");
    let campaign_id = campaign["id"].as_str().expect("id").to_owned();
    // A request stalled on the log holds the only slot. (A client stalled mid-body
    // no longer can: bodies are read before a slot is taken, tests/attacks.rs.)
    let holder = server.hold_a_slot().await;

    let refused = server
        .client
        .issue(&campaign_id, "user-1")
        .await
        .expect_err("over the cap");
    assert_eq!(refused.code, "unavailable", "{refused:?}");
    assert_eq!(refused.reason.as_deref(), Some("OVERLOADED"), "{refused:?}");

    // A gRPC caller gets the refusal as a gRPC status, not an HTTP error page.
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
        .post(format!(
            "http://{}/coupon.v1.CouponService/IssueCoupon",
            server.running.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("grpc response");
    assert_eq!(grpc.status(), 200);
    assert_eq!(grpc.headers()["grpc-status"], "14", "UNAVAILABLE");

    // The slot frees when the stalled request ends: the same user is then accepted,
    // which proves the refused call accepted nothing.
    holder.release().await;
    let accepted = server
        .client
        .issue(&campaign_id, "user-1")
        .await
        .expect("accepted");
    let ticket = accepted["ticketId"].as_str().expect("ticket");
    let result = server
        .client
        .await_one(ticket, Duration::from_secs(5))
        .await;
    assert_eq!(result["status"], "ISSUE_STATUS_ISSUED");
    let page = server
        .client
        .get_campaign(&campaign_id, 100, "")
        .await
        .expect("campaign");
    assert_eq!(page["campaign"]["issuedCoupons"], "1");
}

#[tokio::test]
async fn a_request_waits_its_turn_for_at_most_the_queue_timeout() {
    let server = Server::start(ServeArgs {
        max_in_flight: 1,
        queue_timeout_ms: 300,
        ..ServeArgs::DEFAULT
    })
    .await;
    let holder = server.hold_a_slot().await;
    let started = std::time::Instant::now();
    let refused = server.client.health().await.expect_err("no turn in time");
    assert_eq!(refused.reason.as_deref(), Some("OVERLOADED"), "{refused:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A slot freed within the wait: the waiting request is served.
    let waiting = tokio::spawn({
        let client = server.client.clone();
        async move { client.health().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release().await;
    waiting
        .await
        .expect("task")
        .expect("served once the slot freed");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let server = Server::start(ServeArgs {
        max_connections: 1,
        ..ServeArgs::DEFAULT
    })
    .await;
    let first = connect(&server).await;
    let mut second = connect(&server).await;
    second
        .write_all(b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        .await
        .expect("write");
    let mut buffer = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buffer)).await;
    assert!(early.is_err(), "served beyond the connection cap");
    drop(first);
    let answer = read_until_closed(&mut second, Duration::from_secs(5))
        .await
        .expect("served once the first connection closed");
    assert!(answer.contains("SERVING"), "{answer}");
}

#[tokio::test]
async fn metrics_count_requests_by_procedure_and_code_and_decisions_by_status() {
    let server = Server::start(ServeArgs::DEFAULT).await;
    let campaign = server
        .client
        .create_campaign("metrics", 1, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("created");
    let campaign_id = campaign["id"].as_str().expect("id").to_owned();
    let mut tickets = Vec::new();
    for user in ["a", "b"] {
        let ticket: Value = server
            .client
            .issue(&campaign_id, user)
            .await
            .expect("accepted");
        tickets.push(ticket["ticketId"].as_str().expect("ticket").to_owned());
    }
    server
        .client
        .call(
            "coupon.v1.CouponService/IssueCoupon",
            json!({"campaignId": "nope", "userId": "a"}),
        )
        .await
        .expect_err("bad id");
    server
        .client
        .await_final(&tickets, Duration::from_secs(10))
        .await;

    let text = reqwest::get(format!("http://{}/metrics", server.running.addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    // The recorder is process-wide (other tests in this binary add to it), so check
    // that the series exist and are at least what this test caused.
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    };
    let issue = "procedure=\"/coupon.v1.CouponService/IssueCoupon\"";
    assert!(value(&format!("coupon_rpc_requests_total{{{issue},code=\"ok\"}}")) >= 2.0);
    assert!(
        value(&format!(
            "coupon_rpc_requests_total{{{issue},code=\"invalid_argument\"}}"
        )) >= 1.0
    );
    assert!(value("coupon_tickets_accepted_total") >= 2.0);
    assert!(value("coupon_tickets_decided_total{status=\"issued\"}") >= 1.0);
    assert!(value("coupon_tickets_decided_total{status=\"sold_out\"}") >= 1.0);
    assert!(value(&format!("coupon_rpc_duration_seconds_count{{{issue}}}")) >= 3.0);
    assert!(value("coupon_decision_batch_records_count") >= 1.0);
    assert!(value("coupon_decided_offset{partition=\"0\"}") >= 3.0);
    assert!(text.contains("coupon_decision_lag_seconds{partition=\"0\"}"));
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_a_clear_error_and_the_server_stays_up() {
    let server = Server::start(ServeArgs::DEFAULT).await;
    let huge = format!(
        "{{\"campaignId\":\"x\",\"userId\":\"{}\"}}",
        "u".repeat(5 << 20)
    );
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/coupon.v1.CouponService/IssueCoupon",
            server.running.addr
        ))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let error: Value = response.json().await.expect("a Connect error body");
    assert_eq!(
        error["code"], "resource_exhausted",
        "HTTP {status}: {error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("size"),
        "{error}"
    );
    server.client.health().await.expect("still serving");
}
