//! Issue 11: attacks on the built `coupon` binary from outside, each of which once
//! shut other clients out, broke a promise or slipped past a check.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::attack::{H2Client, h1_bodyless_request, raw_exchange, read_response};
use common::connect::{Client, rfc3339_in};
use common::process::{Proc, free_port, wait_healthy};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use unicode_normalization::UnicodeNormalization;

/// The binary under attack: this build's, or `COUPON_ATTACK_BINARY` (e.g. an older
/// build, to see an attack succeed).
fn binary() -> String {
    std::env::var("COUPON_ATTACK_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_coupon").into())
}

struct Node {
    addr: SocketAddr,
    client: Client,
    process: Proc,
    _dir: tempfile::TempDir,
}

/// The binary on a fresh data dir, with default flags plus `extra`.
async fn start(extra: &[&str]) -> Node {
    let dir = tempfile::tempdir().expect("dir");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let data = dir.path().join("data");
    let listen = addr.to_string();
    let mut args = vec!["--listen", &listen, "--data-dir", path(&data)];
    args.extend_from_slice(extra);
    let process = Proc::spawn(&binary(), &args, &dir.path().join("server.log"));
    let client = Client::new(format!("http://{addr}"));
    wait_healthy(&client, Duration::from_secs(20)).await;
    Node {
        addr,
        client,
        process,
        _dir: dir,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

async fn campaign(node: &Node, total: i64) -> String {
    let created = node
        .client
        .create_campaign("attack", total, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("created");
    created["id"].as_str().expect("id").to_owned()
}

fn ticket(answer: &Value) -> String {
    answer["ticketId"].as_str().expect("ticket").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_without_bodies_do_not_shut_other_clients_out() {
    let node = start(&[]).await;
    let id = campaign(&node, 1_000).await;
    // With default flags (512 in flight): 2 h2c connections × 256 streams and 600
    // HTTP/1.1 connections announce a body and never send it.
    let mut h2 = Vec::new();
    for _ in 0..2 {
        let mut client = H2Client::connect(node.addr).await;
        client.open_bodyless_streams(node.addr, 256).await;
        h2.push(client);
    }
    let mut h1 = Vec::new();
    for _ in 0..600 {
        h1.push(h1_bodyless_request(node.addr, 100).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile a normal client is served, every call.
    let started = Instant::now();
    for n in 0..50 {
        let answer = node.client.issue(&id, &format!("user-{n}")).await;
        let answer = answer.unwrap_or_else(|e| panic!("call {n} during the attack: {e:?}"));
        let result = node
            .client
            .await_one(&ticket(&answer), Duration::from_secs(5))
            .await;
        assert_eq!(result["status"], "ISSUE_STATUS_ISSUED");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "served promptly"
    );
    // The stalled requests end by themselves, refused without having run.
    let mut stalled = h1.pop().expect("a stalled connection");
    let answer = read_response(&mut stalled, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("BODY_TIMEOUT"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_http2_connections_are_closed_and_free_their_slots() {
    let node = start(&["--max-connections", "20", "--idle-timeout-ms", "1000"]).await;
    // Every connection slot is taken by an HTTP/2 client that opens no stream (it
    // answers PINGs, so keep-alive alone never closes it).
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(H2Client::connect(node.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new client (its own connection; the shared client's pooled one would skip
    // the queue).
    let newcomer = Client::new(format!("http://{}", node.addr));
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), newcomer.health())
        .await
        .expect("a new client is served within the idle timeout (and a margin)")
        .expect("health");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it had to wait"
    );
    for client in &mut idle {
        assert!(
            client.closed_within(Duration::from_secs(3)).await,
            "an idle HTTP/2 connection is closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_is_prompt_with_idle_connections_of_both_protocols() {
    let mut node = start(&[]).await;
    let mut h2 = Vec::new();
    for _ in 0..5 {
        h2.push(H2Client::connect(node.addr).await);
    }
    // And clients that never answer anything, not even the server's GOAWAY.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(common::attack::h2_silent_connection(node.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // HTTP/1.1 connections kept alive after a request.
    let mut h1 = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(node.addr)
            .await
            .expect("connect");
        let request = "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_response(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        h1.push(stream);
    }
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.process.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || node.process.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_winner_retrying_after_the_sell_out_gets_their_coupon() {
    let node = start(&[]).await;
    let id = campaign(&node, 3).await;
    let mut tickets = Vec::new();
    for n in 0..5 {
        let answer = node.client.issue(&id, &format!("user-{n}")).await;
        tickets.push(ticket(&answer.expect("accepted")));
    }
    let results = node
        .client
        .await_final(&tickets, Duration::from_secs(10))
        .await;
    let first = &results[&tickets[0]];
    assert_eq!(first["status"], "ISSUE_STATUS_ISSUED");
    // Let every node's view of the campaign catch up: it is known to be sold out.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // user-0's first answer was "lost": the retry hands back the winning ticket.
    let retry = node.client.issue(&id, "user-0").await.expect("answered");
    let again = node.client.result(&ticket(&retry)).await.expect("result");
    assert_eq!(again["coupon"]["code"], first["coupon"]["code"]);
    assert_eq!(again["coupon"]["userId"], "user-0");
    // A loser, and a newcomer, are refused.
    for user in ["user-4", "user-new"] {
        let refused = node.client.issue(&id, user).await.expect_err("sold out");
        assert_eq!(
            refused.reason.as_deref(),
            Some("CAMPAIGN_SOLD_OUT"),
            "{user}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_between_two_milliseconds_is_never_early() {
    let node = start(&[]).await;
    // Requests race the start instant, which lies 0.999 ms into a millisecond.
    for attempt in 0..3 {
        let start = (Utc::now() + TimeDelta::milliseconds(700)).duration_trunc_ms()
            + TimeDelta::microseconds(999);
        let requested = start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let created = node
            .client
            .create_campaign("boundary", 100_000, &requested)
            .await
            .expect("created");
        let stored: DateTime<Utc> = created["startsAt"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("startsAt");
        assert!(stored >= start, "stored {stored} before requested {start}");
        let id = created["id"].as_str().expect("id").to_owned();
        let accepted = flood_around(&node, &id, start).await;
        // Accept times are to the millisecond: a request accepted in the millisecond
        // that holds the requested instant may have come before it.
        let floor = start.duration_trunc_ms();
        let early = accepted.iter().filter(|t| **t < start).count();
        assert_eq!(
            early, 0,
            "accepted before the start instant (attempt {attempt})"
        );
        if accepted
            .iter()
            .any(|t| *t == floor + TimeDelta::milliseconds(1))
        {
            return; // the boundary was exercised
        }
    }
    panic!("no request landed right at the start instant in 3 attempts");
}

/// 8 clients call IssueCoupon as fast as they can from 30 ms before `start` to 30 ms
/// after; the accept times of every accepted request.
async fn flood_around(node: &Node, id: &str, start: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let begin = start - TimeDelta::milliseconds(30);
    let end = start + TimeDelta::milliseconds(30);
    let wait = (begin - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, id) = (node.client.clone(), id.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut accepted: Vec<DateTime<Utc>> = Vec::new();
            let mut n = 0;
            while Utc::now() < end {
                n += 1;
                if let Ok(answer) = client.issue(&id, &format!("w{worker}-{n}")).await {
                    let at = answer["acceptedAt"].as_str().and_then(|t| t.parse().ok());
                    accepted.push(at.expect("acceptedAt"));
                }
            }
            accepted
        }));
    }
    let mut accepted = Vec::new();
    for task in tasks {
        accepted.extend(task.await.expect("join"));
    }
    accepted
}

trait TruncMs {
    fn duration_trunc_ms(self) -> Self;
}

impl TruncMs for DateTime<Utc> {
    fn duration_trunc_ms(self) -> Self {
        chrono::DurationRound::duration_trunc(self, TimeDelta::milliseconds(1)).expect("trunc")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_or_malformed_body_is_refused_at_once() {
    let node = start(&[]).await;
    let started = Instant::now();
    let huge = "POST /coupon.v1.CouponService/IssueCoupon HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{";
    let answer = raw_exchange(node.addr, huge.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("resource_exhausted"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "at once");

    let chunked = "POST /coupon.v1.CouponService/IssueCoupon HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let answer = raw_exchange(node.addr, chunked.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_argument"), "{answer}");
    node.client.health().await.expect("still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_calls_without_a_token_need_a_loopback_host() {
    let node = start(&[]).await;
    let create = json!({"name": "x", "totalCoupons": 1, "startsAt": rfc3339_in(TimeDelta::zero())});
    let call = |host: &'static str| {
        reqwest::Client::new()
            .post(format!(
                "http://{}/coupon.v1.CampaignService/CreateCampaign",
                node.addr
            ))
            .header("host", host)
            .json(&create)
            .send()
    };
    // A page on evil.example rebound to 127.0.0.1 still says evil.example.
    let rebound = call("evil.example:8080").await.expect("answered");
    assert_eq!(rebound.status(), 403);
    let body: Value = rebound.json().await.expect("json");
    assert_eq!(body["code"], "permission_denied", "{body}");
    for host in ["localhost:8080", "127.0.0.1", "[::1]:1"] {
        let answer = call(host).await.expect("answered");
        assert_eq!(answer.status(), 200, "{host}");
    }
    let metrics = reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("coupon_admin_auth_failures_total")
                && l.contains("procedure=\"CreateCampaign\"")
                && l.contains("protocol=\"connect\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_ids_are_compared_after_nfc_and_invisible_characters_are_refused() {
    let node = start(&[]).await;
    let id = campaign(&node, 10).await;
    let nfc = "홍길동";
    let nfd: String = nfc.nfd().collect();
    let first = node.client.issue(&id, nfc).await.expect("accepted");
    let first = node
        .client
        .await_one(&ticket(&first), Duration::from_secs(5))
        .await;
    assert_eq!(first["status"], "ISSUE_STATUS_ISSUED");
    let second = node.client.issue(&id, &nfd).await.expect("accepted");
    let second = node
        .client
        .await_one(&ticket(&second), Duration::from_secs(5))
        .await;
    assert_eq!(second["status"], "ISSUE_STATUS_ALREADY_ISSUED");
    assert_eq!(second["coupon"]["code"], first["coupon"]["code"]);
    assert_eq!(second["coupon"]["userId"], nfc);
    for bad in ["홍길동 ", "홍\u{200B}길동", "\u{202E}kim"] {
        let refused = node.client.issue(&id, bad).await.expect_err("refused");
        assert_eq!(refused.code, "invalid_argument", "{bad:?}");
        assert_eq!(refused.metadata["field"], "user_id", "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_canonical_ticket_id_is_a_ticket() {
    let node = start(&[]).await;
    let id = campaign(&node, 10).await;
    let sealed = ticket(&node.client.issue(&id, "u").await.expect("accepted"));
    node.client
        .result(&sealed)
        .await
        .expect("the ticket as issued");
    let (uuid, tag) = sealed.split_once('.').expect("sealed");
    for variant in [
        format!("{{{uuid}}}.{tag}"),
        format!("urn:uuid:{uuid}.{tag}"),
        format!("{}.{tag}", uuid.replace('-', "")),
        format!("  {sealed}  "),
    ] {
        let refused = node
            .client
            .result(&variant)
            .await
            .expect_err("not a ticket");
        assert_eq!(
            refused.reason.as_deref(),
            Some("TICKET_NOT_FOUND"),
            "{variant}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_campaign_lists_exactly_the_coupons_it_counts_during_issuance() {
    let node = start(&[]).await;
    let id = campaign(&node, 3_000).await;
    let users = (0..3_000).map(|n| format!("user-{n}")).collect();
    let clients = [node.client.clone()];
    let progress = std::sync::Arc::default();
    let flood = common::flood::flood(&clients, &id, users, 32, progress);
    let reads = async {
        let mut checked = 0;
        for _ in 0..200 {
            let page = node.client.get_campaign(&id, 0, "").await.expect("page");
            let issued: usize = page["campaign"]["issuedCoupons"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .expect("count");
            let listed = page["coupons"].as_array().map_or(0, Vec::len);
            assert_eq!(listed, issued, "one snapshot: the count and the page agree");
            checked += usize::from(issued > 0 && issued < 3_000);
        }
        checked
    };
    let (_, checked) = tokio::join!(flood, reads);
    assert!(checked > 0, "some reads happened mid-issuance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_user_token_secret_the_user_id_comes_from_the_verified_token() {
    let secret_dir = tempfile::tempdir().expect("dir");
    let secret_file = secret_dir.path().join("user-token.secret");
    let secret = "0123456789abcdef0123456789abcdef-test";
    std::fs::write(&secret_file, format!("{secret}\n")).expect("write secret");
    let node = start(&["--user-token-secret-file", path(&secret_file)]).await;
    let id = campaign(&node, 10).await;
    let token = |sub: &str, exp_in_s: i64| {
        let claims = json!({"sub": sub, "exp": Utc::now().timestamp() + exp_in_s});
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("key");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token")
    };
    let issue = |bearer: Option<String>, user: &'static str| {
        let mut request = reqwest::Client::new()
            .post(format!(
                "http://{}/coupon.v1.CouponService/IssueCoupon",
                node.addr
            ))
            .json(&json!({"campaignId": id, "userId": user}));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    // Knowing alice's id is no longer enough to ask (and read her coupon) as her.
    let (status, body) = issue(None, "alice").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{body}"
    );
    let (status, body) = issue(Some(token("alice", -60)), "").await;
    assert_eq!(status, 401, "an expired token: {body}");
    let forged = token("alice", 60).replace('.', ".x");
    assert_eq!(issue(Some(forged), "").await.0, 401, "a forged token");
    let (status, body) = issue(Some(token("mallory", 60)), "alice").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission_denied")),
        "{body}"
    );

    let (status, accepted) = issue(Some(token("alice", 60)), "").await;
    assert_eq!(status, 200, "{accepted}");
    let result = node
        .client
        .await_one(&ticket(&accepted), Duration::from_secs(5))
        .await;
    assert_eq!(result["coupon"]["userId"], "alice");
    let (status, again) = issue(Some(token("alice", 60)), "alice").await;
    assert_eq!(status, 200, "the body may repeat the token's user: {again}");
    let again = node
        .client
        .await_one(&ticket(&again), Duration::from_secs(5))
        .await;
    assert_eq!(again["status"], "ISSUE_STATUS_ALREADY_ISSUED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_creation_with_a_request_id_makes_one_campaign() {
    let node = start(&[]).await;
    let starts_at = rfc3339_in(TimeDelta::zero());
    let create = |total: i64, key: &str| {
        let body = json!({"name": "drop", "totalCoupons": total, "startsAt": starts_at,
            "requestId": key});
        let client = node.client.clone();
        async move {
            client
                .call("coupon.v1.CampaignService/CreateCampaign", body)
                .await
                .map(|r| r["campaign"].clone())
        }
    };
    let first = create(10, "admin-retry-1").await.expect("created");
    let retry = create(10, "admin-retry-1").await.expect("answered");
    assert_eq!(first, retry, "the same campaign, not a second one");
    let reused = create(20, "admin-retry-1").await.expect_err("other terms");
    assert_eq!(reused.code, "already_exists", "{reused:?}");
    assert_eq!(reused.reason.as_deref(), Some("REQUEST_ID_REUSED"));
    let other = create(10, "admin-retry-2").await.expect("another key");
    assert_ne!(other["id"], first["id"]);
    let bad = create(10, "bad\nkey")
        .await
        .expect_err("control characters");
    assert_eq!(bad.metadata["field"], "request_id");
}

#[test]
fn out_of_range_flags_are_refused_at_start_naming_the_flag() {
    let producer = common::cluster::binary("producer");
    let cases: [(&str, &str); 5] = [
        (&binary(), "--request-timeout-ms=99999999999999"),
        (&binary(), "--queue-timeout-ms=-1"),
        (
            path_of(&producer),
            "--clock-skew-allowance-ms=9223372036854775807",
        ),
        (path_of(&producer), "--clock-skew-allowance-ms=-500"),
        (path_of(&producer), "--ack-timeout-ms=0"),
    ];
    for (program, arg) in cases {
        let output = std::process::Command::new(program)
            .arg(arg)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{arg} accepted");
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(stderr.contains(flag), "{arg}: {stderr}");
    }
}

fn path_of(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}
