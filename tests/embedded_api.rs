//! The embedded service through its real HTTP API, with a plain Connect JSON client.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::connect::{Client, is_well_formed_code, rfc3339_in};
use common::embedded::Server;
use coupon::modes::embedded;
use serde_json::json;
use tokio::sync::Semaphore;

async fn start() -> Server {
    Server::start(Default::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_1000_users_gets_exactly_100_coupons() {
    let server = start().await;
    let client = server.client.clone();
    let campaign = client
        .create_campaign("flood", 100, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    let gate = Arc::new(Semaphore::new(200));
    let mut requests = Vec::new();
    for user in 0..1000 {
        let (client, id, gate) = (client.clone(), id.clone(), gate.clone());
        requests.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            client.issue(&id, &format!("user-{user}")).await
        }));
    }
    let mut tickets = Vec::new();
    let mut refused_sold_out = 0;
    for request in requests {
        match request.await.expect("task") {
            Ok(accepted) => tickets.push(accepted["ticketId"].as_str().expect("ticket").to_owned()),
            Err(e) if e.reason.as_deref() == Some("CAMPAIGN_SOLD_OUT") => refused_sold_out += 1,
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    let results = client.await_final(&tickets, Duration::from_secs(30)).await;
    let mut codes = HashSet::new();
    let mut sold_out = 0;
    for result in results.values() {
        match result["status"].as_str() {
            Some("ISSUE_STATUS_ISSUED") => {
                let code = result["coupon"]["code"].as_str().expect("code");
                assert!(is_well_formed_code(code), "bad code {code}");
                assert!(codes.insert(code.to_owned()), "duplicate code {code}");
            }
            Some("ISSUE_STATUS_SOLD_OUT") => sold_out += 1,
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!(
        codes.len(),
        100,
        "exactly the campaign's coupons are issued"
    );
    assert_eq!(sold_out + refused_sold_out, 900);

    let listed = client.all_coupons(&id).await;
    let listed_codes: HashSet<String> = listed
        .iter()
        .map(|c| c["code"].as_str().expect("code").to_owned())
        .collect();
    assert_eq!(
        listed_codes, codes,
        "GetCampaign lists exactly the issued codes"
    );
    let page = client.get_campaign(&id, 0, "").await.expect("get");
    assert_eq!(page["campaign"]["issuedCoupons"], "100");
    server.running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_issued_before_the_start_and_the_first_request_after_it_wins() {
    let server = start().await;
    let client = &server.client;
    let starts_at = rfc3339_in(TimeDelta::milliseconds(1500));
    let campaign = client
        .create_campaign("timed", 5, &starts_at)
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id");
    let start: DateTime<Utc> = starts_at.parse().expect("time");

    // One second early: refused at once, with the start time.
    let early = client.issue(id, "early-bird").await.expect_err("too early");
    assert_eq!(early.code, "failed_precondition");
    assert_eq!(early.reason.as_deref(), Some("CAMPAIGN_NOT_STARTED"));
    assert_eq!(
        early.metadata["starts_at"].as_str(),
        Some(starts_at.as_str())
    );

    // Hammer across the start instant: every refusal is before it, the first acceptance
    // is at or after it and wins a coupon.
    let ticket = loop {
        let now = Utc::now();
        match client.issue(id, "eager").await {
            Ok(accepted) => break accepted,
            Err(e) => {
                assert_eq!(e.reason.as_deref(), Some("CAMPAIGN_NOT_STARTED"), "{e:?}");
                assert!(
                    now < start,
                    "refused as not started after the start instant"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let accepted_at: DateTime<Utc> = ticket["acceptedAt"]
        .as_str()
        .expect("acceptedAt")
        .parse()
        .expect("time");
    assert!(
        accepted_at >= start,
        "accepted at {accepted_at}, before the start {start}"
    );
    assert!(
        accepted_at - start < TimeDelta::milliseconds(500),
        "the start is not missed"
    );
    let ticket_id = ticket["ticketId"].as_str().expect("ticket").to_owned();
    let result = client.await_one(&ticket_id, Duration::from_secs(10)).await;
    assert_eq!(result["status"], "ISSUE_STATUS_ISSUED");
    server.running.stop().await.expect("stop");
}

#[tokio::test]
async fn repeats_get_the_same_coupon_and_consume_nothing() {
    let server = start().await;
    let client = &server.client;
    let campaign = client
        .create_campaign("repeat", 2, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id");
    let mut tickets = Vec::new();
    for _ in 0..5 {
        tickets.push(
            client.issue(id, "same-user").await.expect("accept")["ticketId"]
                .as_str()
                .expect("t")
                .to_owned(),
        );
    }
    let results = client.await_final(&tickets, Duration::from_secs(10)).await;
    let first = &results[&tickets[0]];
    assert_eq!(first["status"], "ISSUE_STATUS_ISSUED");
    let code = first["coupon"]["code"].clone();
    for ticket in &tickets[1..] {
        assert_eq!(results[ticket]["status"], "ISSUE_STATUS_ALREADY_ISSUED");
        assert_eq!(
            results[ticket]["coupon"]["code"], code,
            "the user's existing coupon comes back"
        );
        assert_eq!(results[ticket]["coupon"]["ticketId"], tickets[0].as_str());
    }
    // The repeats consumed nothing: the second coupon is still there for another user.
    let other = client.issue(id, "other-user").await.expect("accept")["ticketId"]
        .as_str()
        .expect("t")
        .to_owned();
    let other_result = client.await_one(&other, Duration::from_secs(10)).await;
    assert_eq!(other_result["status"], "ISSUE_STATUS_ISSUED");
    let page = client.get_campaign(id, 0, "").await.expect("get");
    assert_eq!(page["campaign"]["issuedCoupons"], "2");
    server.running.stop().await.expect("stop");
}

#[tokio::test]
async fn get_campaign_pages_through_coupons_in_issue_order() {
    let server = start().await;
    let client = &server.client;
    let campaign = client
        .create_campaign("pages", 25, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id");
    let mut tickets = Vec::new();
    for user in 0..25 {
        // Sequential, so issue order is request order.
        tickets.push(
            client
                .issue(id, &format!("u{user:02}"))
                .await
                .expect("accept")["ticketId"]
                .as_str()
                .expect("t")
                .to_owned(),
        );
    }
    client.await_final(&tickets, Duration::from_secs(10)).await;
    let mut users = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client.get_campaign(id, 10, &token).await.expect("page");
        pages += 1;
        for coupon in page["coupons"].as_array().expect("coupons") {
            users.push(coupon["userId"].as_str().expect("user").to_owned());
        }
        token = page["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|u| format!("u{u:02}")).collect();
    assert_eq!(users, expected, "coupons come in issue order, each once");
    server.running.stop().await.expect("stop");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let server = start().await;
    let client = &server.client;
    let now = rfc3339_in(TimeDelta::zero());
    let long_name = "x".repeat(201);
    let cases = [
        (
            json!({"name": "", "totalCoupons": 10, "startsAt": now}),
            "name",
        ),
        (
            json!({"name": "  ", "totalCoupons": 10, "startsAt": now}),
            "name",
        ),
        (
            json!({"name": long_name, "totalCoupons": 10, "startsAt": now}),
            "name",
        ),
        (
            json!({"name": "a\u{7}b", "totalCoupons": 10, "startsAt": now}),
            "name",
        ),
        (
            json!({"name": "ok", "totalCoupons": 0, "startsAt": now}),
            "total_coupons",
        ),
        (
            json!({"name": "ok", "totalCoupons": -3, "startsAt": now}),
            "total_coupons",
        ),
        (
            json!({"name": "ok", "totalCoupons": 10_000_001, "startsAt": now}),
            "total_coupons",
        ),
        (json!({"name": "ok", "startsAt": now}), "total_coupons"),
        (json!({"name": "ok", "totalCoupons": 10}), "starts_at"),
    ];
    for (body, field) in cases {
        let e = client
            .call("coupon.v1.CampaignService/CreateCampaign", body.clone())
            .await
            .expect_err("refused");
        assert_eq!(e.code, "invalid_argument", "{body}");
        assert_eq!(e.metadata["field"], field, "{body}: {e:?}");
        assert!(
            e.message.starts_with(field),
            "message names the field: {}",
            e.message
        );
    }
    // Malformed JSON and wrong types are refused by the protocol layer, not with a 500.
    let e = client
        .call(
            "coupon.v1.CampaignService/CreateCampaign",
            json!({"name": 5, "totalCoupons": "many"}),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, "invalid_argument");

    let campaign = client
        .create_campaign("real", 1, &now)
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id");
    let unknown = "01a21111-1111-7111-8111-111111111111";

    let e = client
        .get_campaign("not-a-uuid", 0, "")
        .await
        .expect_err("malformed");
    assert_eq!(
        (e.code.as_str(), &e.metadata["field"]),
        ("invalid_argument", &json!("campaign_id"))
    );
    let e = client
        .get_campaign(unknown, 0, "")
        .await
        .expect_err("unknown");
    assert_eq!(
        (e.code.as_str(), e.reason.as_deref()),
        ("not_found", Some("CAMPAIGN_NOT_FOUND"))
    );
    let e = client
        .get_campaign(id, 0, "garbage!")
        .await
        .expect_err("token");
    assert_eq!(e.metadata["field"], "page_token");
    let e = client.get_campaign(id, -1, "").await.expect_err("size");
    assert_eq!(e.metadata["field"], "page_size");

    let e = client.issue("", "u").await.expect_err("missing id");
    assert_eq!(e.metadata["field"], "campaign_id");
    let e = client.issue(unknown, "u").await.expect_err("unknown");
    assert_eq!((e.code.as_str(), e.http_status), ("not_found", 404));
    let e = client.issue(id, "").await.expect_err("missing user");
    assert_eq!(e.metadata["field"], "user_id");
    let e = client
        .issue(id, &"u".repeat(129))
        .await
        .expect_err("long user");
    assert_eq!(e.metadata["field"], "user_id");

    let e = client.result("").await.expect_err("missing ticket");
    assert_eq!(e.metadata["field"], "ticket_id");
    let accepted = client.issue(id, "u").await.expect("accept");
    let ticket = accepted["ticketId"].as_str().expect("ticket");
    let forged = format!("{}0000000000000000", &ticket[..ticket.len() - 16]);
    let e = client.result(&forged).await.expect_err("forged");
    assert_eq!(
        (e.code.as_str(), e.reason.as_deref()),
        ("not_found", Some("TICKET_NOT_FOUND"))
    );
    assert!(client.result(ticket).await.is_ok());
    assert_eq!(client.health().await.expect("health")["status"], "SERVING");
    server.running.stop().await.expect("stop");
}

#[tokio::test]
async fn state_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let config = embedded::EmbeddedArgs {
        data_dir: dir.path().to_path_buf(),
        admin: Default::default(),
        serve: coupon::modes::ServeArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..coupon::modes::ServeArgs::DEFAULT
        },
        telemetry: Default::default(),
    };
    let running = embedded::start(config.clone()).await.expect("start");
    let client = Client::new(format!("http://{}", running.addr));
    let campaign = client
        .create_campaign("persist", 3, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();
    let ticket = client.issue(&id, "u1").await.expect("accept")["ticketId"]
        .as_str()
        .expect("t")
        .to_owned();
    let before = client.await_one(&ticket, Duration::from_secs(10)).await;
    running.stop().await.expect("stop");

    let running = embedded::start(config).await.expect("restart");
    let client = Client::new(format!("http://{}", running.addr));
    let after = client.result(&ticket).await.expect("result after restart");
    assert_eq!(after, before, "same outcome and code after a restart");
    let repeat = client.issue(&id, "u1").await.expect("accept")["ticketId"]
        .as_str()
        .expect("t")
        .to_owned();
    let repeat = client.await_one(&repeat, Duration::from_secs(10)).await;
    assert_eq!(repeat["status"], "ISSUE_STATUS_ALREADY_ISSUED");
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_are_listed_newest_first_with_their_state_and_alphabet() {
    let server = start().await;
    common::listing::check_listing_and_alphabets(&server.client).await;
}
