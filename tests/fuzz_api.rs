//! Issue 6: fuzz the Connect endpoints of a real embedded server with random bodies
//! (Connect JSON, binary protobuf, gRPC frames, garbage), content types and headers.
//! Every answer must be a well-formed refusal or success in the caller's protocol (never
//! a 500, never a dropped connection), the server must stay up, and nothing may be half
//! written: every campaign in the database is one a call was told was created, and
//! every accepted ticket is decided.

mod common;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use chrono::TimeDelta;
use common::connect::{Client, rfc3339_in};
use coupon::modes::embedded;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const PROCEDURES: [&str; 6] = [
    "coupon.v1.CampaignService/CreateCampaign",
    "coupon.v1.CampaignService/GetCampaign",
    "coupon.v1.CouponService/IssueCoupon",
    "coupon.v1.CouponService/GetIssueResult",
    "grpc.health.v1.Health/Check",
    "coupon.v1.CouponService/NoSuchMethod",
];

const CONTENT_TYPES: [&str; 8] = [
    "application/json",
    "application/proto",
    "application/grpc",
    "application/grpc+json",
    "application/grpc-web+proto",
    "application/connect+json",
    "text/plain",
    "application/json; charset=utf-16",
];

const FIELDS: [&str; 10] = [
    "name",
    "totalCoupons",
    "startsAt",
    "campaignId",
    "userId",
    "ticketId",
    "pageSize",
    "pageToken",
    "total_coupons",
    "@type",
];

#[derive(Debug, Clone)]
struct Call {
    procedure: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// JSON values of every shape, including ones the schema does not expect.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from("2026-11-25T20:00:00Z")),
        Just(Value::from("9999999999999999999999")),
        Just(Value::from("x".repeat(5_000))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((prop::sample::select(FIELDS.to_vec()), inner), 0..6).prop_map(
                |pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}

/// Requests shaped like real ones, every field possibly out of range or mistyped.
fn near_valid_json() -> impl Strategy<Value = Value> {
    let starts_at = prop_oneof![
        Just(Value::from("2020-01-01T00:00:00Z")),
        Just(Value::from("2999-01-01T00:00:00.123456789+09:00")),
        Just(Value::from("yesterday")),
        any::<i64>().prop_map(Value::from),
    ];
    let total = prop_oneof![
        (0i64..20_000_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[-0-9a-z]{0,25}".prop_map(Value::from),
    ];
    let user = prop_oneof![3 => "[a-zA-Z0-9_.@-]{1,40}", 1 => ".{0,150}"];
    let name = prop_oneof![3 => "[a-zA-Z0-9 ]{1,30}", 1 => ".{0,250}"];
    (
        name,
        total,
        starts_at,
        user,
        any::<i32>(),
        ".{0,24}",
        ".{0,60}",
    )
        .prop_map(
            |(name, total, starts_at, user, page_size, page_token, ticket)| {
                json!({
                    "name": name, "totalCoupons": total, "startsAt": starts_at,
                    "userId": user, "pageSize": page_size, "pageToken": page_token,
                    "ticketId": ticket,
                })
            },
        )
}

/// Bodies: near-valid and random JSON, random bytes, and gRPC-style frames.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => near_valid_json().prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => (any::<u8>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(flags, length, payload)| {
                let mut frame = vec![flags];
                frame.extend_from_slice(&length.to_be_bytes());
                frame.extend(payload);
                frame
            }
        ),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let header = prop_oneof![
        "[0-9a-z]{0,6}".prop_map(|v| ("connect-protocol-version", v)),
        "[-0-9]{0,12}".prop_map(|v| ("connect-timeout-ms", v)),
        prop::sample::select(vec!["gzip", "br", "identity", "zstd", "x"])
            .prop_map(|v| ("content-encoding", v.to_owned())),
        "[ -~]{0,40}".prop_map(|v| ("authorization", v)),
        "[0-9a-zA-Z]{0,8}".prop_map(|v| ("grpc-timeout", v)),
    ];
    prop::collection::vec(header, 0..3)
}

fn call() -> impl Strategy<Value = Call> {
    (
        prop::sample::select(PROCEDURES.to_vec()),
        prop_oneof![
            3 => Just("application/json"),
            1 => prop::sample::select(CONTENT_TYPES.to_vec()),
        ],
        headers(),
        body(),
    )
        .prop_map(|(procedure, content_type, headers, body)| Call {
            procedure,
            content_type,
            headers,
            body,
        })
}

/// What the server said, reduced to what the checks need.
struct Answer {
    status: u16,
    grpc_status: Option<String>,
    body: Vec<u8>,
}

async fn send(http: &reqwest::Client, base: &str, call: &Call) -> Result<Answer, String> {
    let mut request = http
        .post(format!("{base}/{}", call.procedure))
        .header("content-type", call.content_type)
        .body(call.body.clone());
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_vec();
    Ok(Answer {
        status,
        grpc_status,
        body,
    })
}

/// A well-formed answer: no 5xx but `unimplemented` (an unknown method or compression,
/// as the Connect protocol says) and the two "try again" ones, and a Connect error body
/// (JSON with a code) whenever a Connect call fails.
fn check(call: &Call, answer: &Answer) -> Result<(), String> {
    if answer.status >= 500 && ![501, 503, 504].contains(&answer.status) {
        return Err(format!(
            "{call:?} -> HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    if let Some(code) = &answer.grpc_status
        && code == "13"
    {
        return Err(format!("{call:?} -> grpc-status INTERNAL"));
    }
    let is_grpc = call.content_type.starts_with("application/grpc");
    let is_unary_connect = !is_grpc && call.content_type != "application/connect+json";
    if is_unary_connect && answer.status != 200 && answer.status != 415 {
        let error: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("{call:?} -> error body is not JSON ({e})"))?;
        if !error["code"].is_string() {
            return Err(format!("{call:?} -> error without a code: {error}"));
        }
    }
    Ok(())
}

#[test]
fn random_requests_get_well_formed_answers_and_write_nothing_half_way() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let running = runtime
        .block_on(embedded::start(embedded::EmbeddedArgs {
            data_dir: dir.path().to_path_buf(),
            admin: Default::default(),
            serve: coupon::modes::ServeArgs {
                listen: "127.0.0.1:0".parse().expect("addr"),
                ..coupon::modes::ServeArgs::DEFAULT
            },
            telemetry: Default::default(),
        }))
        .expect("server starts");
    let base = format!("http://{}", running.addr);
    let client = Client::new(base.clone());
    let campaign = runtime
        .block_on(client.create_campaign("fuzz", 1_000, &rfc3339_in(TimeDelta::zero())))
        .expect("created");
    let campaign_id = campaign["id"].as_str().expect("id").to_owned();
    let http1 = reqwest::Client::new();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");

    // The runner takes a `Fn`; these tally what the server said it did.
    let created = Cell::new(1usize);
    let tickets = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(Config {
        cases: 3_000,
        failure_persistence: None,
        ..Config::default()
    });
    let calls = Cell::new(0usize);
    let result = runner.run(&(call(), any::<bool>()), |(mut call, use_h2)| {
        calls.set(calls.get() + 1);
        // Half the JSON calls aim at the real campaign, so deep paths get exercised.
        if call.procedure.ends_with("IssueCoupon")
            && let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&call.body)
        {
            body.insert("campaignId".into(), Value::from(campaign_id.clone()));
            call.body = Value::Object(body).to_string().into_bytes();
        }
        let http = if use_h2 { &http2 } else { &http1 };
        let answer = runtime
            .block_on(send(http, &base, &call))
            .map_err(|e| TestCaseError::fail(format!("{call:?}: {e}")))?;
        check(&call, &answer).map_err(TestCaseError::fail)?;
        if answer.status == 200 && answer.grpc_status.is_none() {
            let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            if call.procedure.ends_with("CreateCampaign") && json["campaign"]["id"].is_string() {
                created.set(created.get() + 1);
            }
            if let Some(ticket) = json["ticketId"].as_str() {
                tickets.borrow_mut().push(ticket.to_owned());
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }

    eprintln!(
        "fuzz: {} calls, {} tickets accepted, {} campaigns created",
        calls.get(),
        tickets.borrow().len(),
        created.get() - 1
    );
    // The generator must reach past parsing, or the checks below prove little.
    assert!(
        tickets.borrow().len() >= 20,
        "only {} random calls were accepted",
        tickets.borrow().len()
    );
    let tickets = tickets.into_inner();
    runtime.block_on(async {
        client.health().await.expect("still serving");
        // Every accepted ticket is decided; the campaign's counter matches its coupons.
        client.await_final(&tickets, Duration::from_secs(30)).await;
        let coupons = client.all_coupons(&campaign_id).await;
        let page = client
            .get_campaign(&campaign_id, 1, "")
            .await
            .expect("campaign");
        assert_eq!(
            page["campaign"]["issuedCoupons"]
                .as_str()
                .unwrap_or("0")
                .parse::<usize>()
                .expect("count"),
            coupons.len()
        );
        // Nothing half-written: exactly the campaigns callers were told about exist.
        let db = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}?mode=ro",
            dir.path().join("coupon.sqlite").display()
        ))
        .await
        .expect("open database");
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM campaigns")
            .fetch_one(&db)
            .await
            .expect("count");
        assert_eq!(stored as usize, created.get());
        running.stop().await.expect("clean stop");
    });
}
