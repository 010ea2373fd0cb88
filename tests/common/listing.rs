//! ListCampaigns and code alphabets through the public API, the same checks for both
//! modes: newest first across pages, derived states, sold-out times, each campaign's
//! codes in its alphabet, and clear refusals.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::connect::{Client, rfc3339_in};

/// The 140 readable syllables and the digits (README, "Coupon codes").
pub fn is_readable_code(code: &str) -> bool {
    const INITIALS: [u32; 14] = [0, 2, 3, 5, 6, 7, 9, 11, 12, 14, 15, 16, 17, 18];
    const VOWELS: [u32; 10] = [0, 2, 4, 6, 8, 12, 13, 17, 18, 20];
    let readable = |c: char| {
        let Some(s) = (c as u32).checked_sub(0xAC00).filter(|s| *s < 11_172) else {
            return c.is_ascii_digit();
        };
        s % 28 == 0 && INITIALS.contains(&(s / 588)) && VOWELS.contains(&(s / 28 % 21))
    };
    code.chars().count() == 10 && code.chars().all(readable)
}

async fn create(
    client: &Client,
    name: &str,
    total: i64,
    start: TimeDelta,
    alphabet: &str,
) -> String {
    let body = json!({"name": name, "totalCoupons": total, "startsAt": rfc3339_in(start),
        "codeAlphabet": alphabet});
    let created = client
        .call("coupon.v1.CampaignService/CreateCampaign", body)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    created["campaign"]["id"].as_str().expect("id").to_owned()
}

/// Every campaign ListCampaigns gives, page by page (`page_size` each).
pub async fn list_all(client: &Client, page_size: i32) -> Vec<Value> {
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .call(
                "coupon.v1.CampaignService/ListCampaigns",
                json!({"pageSize": page_size, "pageToken": token}),
            )
            .await
            .expect("ListCampaigns");
        let campaigns = page["campaigns"].as_array().cloned().unwrap_or_default();
        assert!(campaigns.len() <= page_size as usize, "page over its size");
        listed.extend(campaigns);
        token = page["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if token.is_empty() {
            return listed;
        }
    }
}

/// Creates four campaigns (one of each alphabet sold out, one live, one scheduled) on
/// `client`, whose node must be deciding; checks the list, the states and the codes.
pub async fn check_listing_and_alphabets(client: &Client) {
    let readable = create(
        client,
        "readable drop",
        3,
        TimeDelta::zero(),
        "CODE_ALPHABET_READABLE",
    )
    .await;
    let full = create(
        client,
        "full drop",
        3,
        TimeDelta::zero(),
        "CODE_ALPHABET_FULL",
    )
    .await;
    let live = create(
        client,
        "live drop",
        50,
        TimeDelta::zero(),
        "CODE_ALPHABET_UNSPECIFIED",
    )
    .await;
    let later = create(
        client,
        "later drop",
        5,
        TimeDelta::hours(1),
        "CODE_ALPHABET_FULL",
    )
    .await;
    for (id, users) in [(&readable, 4), (&full, 4), (&live, 1)] {
        let tickets = issue(client, id, users).await;
        client.await_final(&tickets, Duration::from_secs(30)).await;
    }
    let ours = [later.clone(), live.clone(), full.clone(), readable.clone()];
    let listed: Vec<Value> = list_all(client, 2)
        .await
        .into_iter()
        .filter(|c| ours.iter().any(|id| c["id"] == id.as_str()))
        .collect();
    let order: Vec<&str> = listed.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(order, ours, "newest first, across pages of 2");
    let expect = [
        ("CAMPAIGN_STATE_SCHEDULED", "CODE_ALPHABET_FULL", 0),
        ("CAMPAIGN_STATE_LIVE", "CODE_ALPHABET_READABLE", 1),
        ("CAMPAIGN_STATE_SOLD_OUT", "CODE_ALPHABET_FULL", 3),
        ("CAMPAIGN_STATE_SOLD_OUT", "CODE_ALPHABET_READABLE", 3),
    ];
    for (campaign, (state, alphabet, issued)) in listed.iter().zip(expect) {
        assert_eq!(campaign["state"], state, "{campaign}");
        assert_eq!(campaign["codeAlphabet"], alphabet, "{campaign}");
        assert_eq!(
            campaign["issuedCoupons"].as_str().unwrap_or("0"),
            issued.to_string()
        );
        let sold_out = state == "CAMPAIGN_STATE_SOLD_OUT";
        assert_eq!(campaign["soldOutAt"].is_string(), sold_out, "{campaign}");
    }
    check_codes_and_sold_out_time(client, &readable, true).await;
    check_codes_and_sold_out_time(client, &full, false).await;
    check_refusals(client).await;
}

async fn issue(client: &Client, id: &str, users: usize) -> Vec<String> {
    let mut tickets = Vec::new();
    for n in 0..users {
        let answer = client
            .issue(id, &format!("{id}-user-{n}"))
            .await
            .expect("accepted");
        tickets.push(answer["ticketId"].as_str().expect("ticket").to_owned());
    }
    tickets
}

/// The campaign's codes are its alphabet's, and its sold-out time is its last coupon's,
/// in GetCampaign as in ListCampaigns.
async fn check_codes_and_sold_out_time(client: &Client, id: &str, readable: bool) {
    let coupons = client.all_coupons(id).await;
    assert_eq!(coupons.len(), 3);
    for coupon in &coupons {
        let code = coupon["code"].as_str().expect("code");
        assert_eq!(is_readable_code(code), readable, "{code}");
    }
    let page = client.get_campaign(id, 1, "").await.expect("GetCampaign");
    let last_issued = coupons[2]["issuedAt"].as_str().expect("issued at");
    let sold_out: DateTime<Utc> = page["campaign"]["soldOutAt"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("GetCampaign's soldOutAt, from a page without the last coupon");
    assert_eq!(Some(sold_out), last_issued.parse().ok());
}

async fn check_refusals(client: &Client) {
    let list = |body: Value| client.call("coupon.v1.CampaignService/ListCampaigns", body);
    for (body, field) in [
        (json!({"pageToken": "not-ours"}), "page_token"),
        (json!({"pageSize": -1}), "page_size"),
    ] {
        let refused = list(body).await.expect_err("refused");
        assert_eq!(refused.code, "invalid_argument");
        assert_eq!(refused.metadata["field"], field);
    }
    let body = json!({"name": "x", "totalCoupons": 1, "startsAt": rfc3339_in(TimeDelta::zero()),
        "codeAlphabet": 9});
    let refused = client
        .call("coupon.v1.CampaignService/CreateCampaign", body)
        .await
        .expect_err("unknown alphabet");
    assert_eq!(refused.metadata["field"], "code_alphabet");
}
