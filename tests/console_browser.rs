//! The campaign managers' web console (/console/) in a real headless Chromium, against a
//! real embedded server: sign in, create a campaign, watch it start and sell out under a
//! flood, download its coupons as CSV, and issue one with "Try it".
//!
//! Needs Debian's chromium and chromedriver: scripts/install-browser.sh. Screenshots of
//! every step go to target/console-screenshots/.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use common::browser::{Browser, STEP, Screenshots, wait_until};
use common::connect::{Client, is_well_formed_code, rfc3339_in};
use common::listing::is_readable_code;
use coupon::modes::{AdminArgs, ServeArgs, embedded};
use serde_json::json;
use tokio::sync::Semaphore;

const TOKEN: &str = "console-test-admin-token";
const TOTAL: usize = 300;
const USERS: usize = 400;

/// User ids that a CSV must quote or defuse: a formula, a comma and quotes, leading
/// signs, Hangul. They ask first, so they are among the coupons' holders.
const TRICKY_USERS: [&str; 6] = [
    "=HYPERLINK(\"http://x\",\"y\")",
    "kim, \"the\" first",
    "-1+2",
    "+82 10",
    "@admin",
    "홍길동",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_manager_runs_a_campaign_from_the_console() {
    let (server, _data_dir) = start_server().await;
    let base = format!("http://{}", server.addr);
    let admin = Client::new(base.clone()).with_bearer(TOKEN);
    let browser = Browser::start().await;
    let mut shots = Screenshots::in_target();

    sign_in(&browser, &mut shots, &base).await;
    let id = create_campaign(&browser, &mut shots).await;
    watch_it_sell_out(&browser, &mut shots, &admin, &id).await;
    check_the_detail_page(&browser, &mut shots, &id).await;
    check_the_csv(&browser, &mut shots, &admin, &id).await;
    try_it_on_a_live_campaign(&browser, &mut shots, &admin).await;
    load_more_campaigns(&browser, &mut shots, &admin).await;

    browser.click("[data-testid=signout]").await;
    browser.wait_visible("[data-testid=signin-form]").await;
    shots.take(&browser, "signed-out").await;
    browser.close().await;
    server.stop().await.expect("server stops");
}

/// A wrong token is refused with a clear message; the right one opens the console.
async fn sign_in(browser: &Browser, shots: &mut Screenshots, base: &str) {
    browser.goto(&format!("{base}/console/")).await;
    browser.wait_visible("[data-testid=signin-form]").await;
    shots.take(browser, "sign-in").await;

    browser
        .type_into("[data-testid=signin-token]", "not-the-token")
        .await;
    browser.click("[data-testid=signin-submit]").await;
    browser
        .wait_text("[data-testid=signin-error]", "wrong token refused", |t| {
            t.contains("The server refused this admin token")
        })
        .await;
    shots.take(browser, "wrong-token").await;

    browser.type_into("[data-testid=signin-token]", TOKEN).await;
    browser.click("[data-testid=signin-submit]").await;
    browser.wait_visible("[data-testid=create-form]").await;
    browser.wait_visible("[data-testid=list-empty]").await;
    shots.take(browser, "signed-in").await;
}

/// A refused value is shown at its field; a valid campaign starting in 5 s is listed as
/// scheduled, counting down.
async fn create_campaign(browser: &Browser, shots: &mut Screenshots) -> String {
    browser
        .type_into("[data-testid=create-name]", "블랙프라이데이 선착순")
        .await;
    browser.type_into("[data-testid=create-total]", "0").await;
    browser.click("[data-testid=create-submit]").await;
    let message = browser
        .wait_text(
            "[data-field-error=total_coupons]",
            "the error at total_coupons",
            |t| !t.trim().is_empty(),
        )
        .await;
    println!("total 0 refused: {message}");
    shots.take(browser, "invalid-total").await;

    browser
        .type_into("[data-testid=create-total]", &TOTAL.to_string())
        .await;
    set_start_in(browser, Duration::from_secs(5)).await;
    browser
        .select("[data-testid=create-alphabet]", "readable")
        .await;
    browser.click("[data-testid=create-submit]").await;
    browser
        .wait_text("[data-testid=create-result]", "creation confirmed", |t| {
            t.contains("블랙프라이데이 선착순")
        })
        .await;
    assert!(
        !browser.visible("[data-field-error=total_coupons]").await,
        "the old error is gone"
    );

    let row = "[data-testid=campaign-row]";
    let id = browser
        .attr(row, "data-campaign-id")
        .await
        .expect("the new campaign is listed first");
    let row = format!("[data-campaign-id='{id}']");
    browser
        .wait_text(
            &format!("{row} [data-testid=campaign-state]"),
            "scheduled",
            |t| t == "Scheduled",
        )
        .await;
    browser
        .wait_text(
            &format!("{row} [data-testid=campaign-countdown]"),
            "a countdown",
            |t| is_countdown(t) && t != "00:00",
        )
        .await;
    assert_eq!(
        browser
            .text(&format!("{row} [data-testid=campaign-alphabet]"))
            .await
            .as_deref(),
        Some("Readable")
    );
    shots.take(browser, "scheduled-countdown").await;
    id
}

/// The list shows the campaign go live, fill while users flood it, and sell out.
async fn watch_it_sell_out(browser: &Browser, shots: &mut Screenshots, admin: &Client, id: &str) {
    let row = format!("[data-campaign-id='{id}']");
    browser
        .wait_text_within(
            &format!("{row} [data-testid=campaign-state]"),
            "live",
            Duration::from_secs(20),
            |t| t == "Live",
        )
        .await;
    shots.take(browser, "live").await;

    for user in TRICKY_USERS {
        admin
            .issue(id, user)
            .await
            .expect("an early user is accepted");
    }
    let flood = tokio::spawn(flood(admin.clone(), id.to_owned()));
    browser
        .wait_text(
            &format!("{row} [data-testid=campaign-progress-label]"),
            "coupons being issued",
            |t| issued_of(t) > TRICKY_USERS.len() as u64,
        )
        .await;
    shots.take(browser, "filling").await;

    browser
        .wait_text_within(
            &format!("{row} [data-testid=campaign-state]"),
            "sold out",
            Duration::from_secs(60),
            |t| t == "Sold out",
        )
        .await;
    let (accepted, refused) = flood.await.expect("flood task");
    println!("flood: {accepted} accepted, {refused} refused as sold out");
    let label = browser
        .wait_text(
            &format!("{row} [data-testid=campaign-progress-label]"),
            "all issued",
            |t| issued_of(t) == TOTAL as u64,
        )
        .await;
    assert_eq!(label, format!("{TOTAL} / {TOTAL}"));
    let sold_out_at = browser
        .text(&format!("{row} [data-testid=campaign-sold-out-at]"))
        .await
        .expect("the sold-out time is shown");
    assert!(sold_out_at.len() >= 19, "a time: {sold_out_at}");
    shots.take(browser, "sold-out").await;
}

/// The detail page counts every coupon and pages through them.
async fn check_the_detail_page(browser: &Browser, shots: &mut Screenshots, id: &str) {
    browser
        .click(&format!(
            "[data-campaign-id='{id}'] [data-testid=campaign-name]"
        ))
        .await;
    browser
        .wait_text("[data-testid=detail-issued]", "issued counter", |t| {
            t == TOTAL.to_string()
        })
        .await;
    assert_eq!(
        browser
            .attr("[data-testid=detail-state]", "data-state")
            .await
            .as_deref(),
        Some("sold-out")
    );
    browser
        .wait_text("[data-testid=coupons-page-info]", "first page", |t| {
            t == format!("1–100 of {TOTAL}")
        })
        .await;
    shots.take(browser, "detail").await;

    browser.click("[data-testid=coupons-next]").await;
    browser
        .wait_text("[data-testid=coupons-page-info]", "second page", |t| {
            t == format!("101–200 of {TOTAL}")
        })
        .await;
    browser.click("[data-testid=coupons-prev]").await;
    browser
        .wait_text(
            "[data-testid=coupons-page-info]",
            "back to the first",
            |t| t.starts_with("1–100"),
        )
        .await;
}

/// The downloaded CSV holds, row for row, what GetCampaign lists, in the readable
/// alphabet.
async fn check_the_csv(browser: &Browser, shots: &mut Screenshots, admin: &Client, id: &str) {
    browser.click("[data-testid=csv-download]").await;
    browser.wait_visible("[data-testid=csv-done]").await;
    shots.take(browser, "csv-downloaded").await;
    let path = browser
        .downloaded(&format!("coupons-{id}.csv"), Duration::from_secs(20))
        .await;
    let text = std::fs::read_to_string(&path).expect("the CSV is UTF-8");
    let text = text
        .strip_prefix('\u{FEFF}')
        .expect("a byte order mark, for spreadsheets");
    let mut rows = parse_csv(text).into_iter();
    assert_eq!(
        rows.next().expect("a header"),
        ["code", "user_id", "issued_at"]
    );
    let rows: Vec<Vec<String>> = rows.collect();

    let coupons = admin.all_coupons(id).await;
    assert_eq!(coupons.len(), TOTAL);
    assert_eq!(rows.len(), coupons.len(), "one row per coupon");
    for (n, (row, coupon)) in rows.iter().zip(&coupons).enumerate() {
        let expected = [
            coupon["code"].as_str().expect("code").to_owned(),
            defused(coupon["userId"].as_str().expect("user")),
            millis_utc(coupon["issuedAt"].as_str().expect("issued at")),
        ];
        assert_eq!(row, &expected, "row {}", n + 1);
    }
    let users: HashSet<&str> = coupons
        .iter()
        .filter_map(|c| c["userId"].as_str())
        .collect();
    for user in TRICKY_USERS {
        assert!(users.contains(user), "{user} holds a coupon");
    }
    for row in &rows {
        let code = &row[0];
        assert!(
            is_readable_code(code),
            "{code} uses only the readable alphabet"
        );
    }
    println!("CSV: {} rows match GetCampaign", rows.len());
}

/// "Try it" on a second, live campaign: a ticket, then ISSUED and a code.
async fn try_it_on_a_live_campaign(browser: &Browser, shots: &mut Screenshots, admin: &Client) {
    let campaign = admin
        .call(
            "coupon.v1.CampaignService/CreateCampaign",
            json!({
                "name": "Try-it demo (Full alphabet)",
                "totalCoupons": 10,
                "startsAt": rfc3339_in(TimeDelta::zero()),
                "codeAlphabet": "CODE_ALPHABET_FULL",
            }),
        )
        .await
        .expect("second campaign");
    let id = campaign["campaign"]["id"].as_str().expect("id").to_owned();

    browser.click("[data-testid=detail-back]").await;
    let row = format!("[data-campaign-id='{id}']");
    browser
        .wait_text(
            &format!("{row} [data-testid=campaign-state]"),
            "live",
            |t| t == "Live",
        )
        .await;
    shots.take(browser, "two-campaigns").await;
    browser
        .click(&format!("{row} [data-testid=campaign-name]"))
        .await;
    browser
        .wait_text("[data-testid=detail-state]", "live detail", |t| t == "Live")
        .await;

    browser
        .type_into("[data-testid=tryit-user]", "김철수")
        .await;
    browser.click("[data-testid=tryit-issue]").await;
    let ticket = browser
        .wait_text("[data-testid=tryit-ticket]", "a ticket", |t| !t.is_empty())
        .await;
    browser
        .wait_text("[data-testid=tryit-status]", "the ticket decided", |t| {
            t == "ISSUED"
        })
        .await;
    let code = browser
        .wait_text("[data-testid=tryit-code]", "the code", is_well_formed_code)
        .await;
    println!("try it: ticket {ticket} got {code}");
    browser
        .wait_text("[data-testid=detail-issued]", "the counter", |t| t == "1")
        .await;
    shots.take(browser, "try-it-issued").await;
}

/// With more campaigns than the list's first page (20), "Load more" shows the rest, each
/// once, newest first.
async fn load_more_campaigns(browser: &Browser, shots: &mut Screenshots, admin: &Client) {
    let mut newest = String::new();
    for n in 1..=20 {
        let created = admin
            .create_campaign(
                &format!("Later drop {n:02}"),
                1,
                &rfc3339_in(TimeDelta::days(1)),
            )
            .await
            .expect("a later campaign");
        newest = created["id"].as_str().expect("id").to_owned();
    }
    browser.click("[data-testid=detail-back]").await;
    let rows = "[data-testid=campaign-row]";
    let first = wait_until("the newest 20 campaigns", STEP, || async {
        let first = browser.attr(rows, "data-campaign-id").await;
        (browser.count(rows).await == 20 && first.as_deref() == Some(newest.as_str())).then_some(())
    })
    .await;
    assert!(
        first.is_some(),
        "the first page is the newest 20, newest on top"
    );
    assert!(browser.visible("[data-testid=list-load-more]").await);
    browser.click("[data-testid=list-load-more]").await;
    let distinct = "return new Set([...document.querySelectorAll(arguments[0])]\
         .map(e => e.getAttribute('data-campaign-id'))).size;";
    let all = wait_until("all 22 campaigns", STEP, || async {
        let shown = browser.count(rows).await;
        let ids = browser.run(distinct, vec![json!(rows)]).await;
        (shown == 22 && ids.as_u64() == Some(22)).then_some(())
    })
    .await;
    assert!(all.is_some(), "Load more shows the two older campaigns");
    assert!(!browser.visible("[data-testid=list-load-more]").await);
    shots.take(browser, "load-more").await;
}

/// Sets the form's start to `from_now` later, in the browser's local time (a
/// `datetime-local` value, to the second), as a manager would pick it.
async fn set_start_in(browser: &Browser, from_now: Duration) {
    let value = browser
        .run(
            "const input = document.querySelector('[data-testid=create-start]');
             const d = new Date(Date.now() + arguments[0]);
             const p = (n) => String(n).padStart(2, '0');
             input.value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
               `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
             input.dispatchEvent(new Event('input', { bubbles: true }));
             return input.value;",
            vec![json!(from_now.as_millis() as u64)],
        )
        .await;
    assert!(
        value.as_str().is_some_and(|v| v.len() == 19),
        "start set: {value}"
    );
}

/// The embedded server with an admin token, and its data dir (removed when dropped).
async fn start_server() -> (embedded::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let config = embedded::EmbeddedArgs {
        data_dir: dir.path().to_path_buf(),
        admin: AdminArgs {
            admin_token: Some(TOKEN.into()),
            ..Default::default()
        },
        serve: ServeArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        },
        telemetry: Default::default(),
    };
    let running = embedded::start(config).await.expect("server starts");
    (running, dir)
}

/// USERS distinct users ask at once (a few dozen at a time, spread over ~3 s so that the
/// console shows the campaign filling). Returns (accepted, refused as sold out).
async fn flood(client: Client, id: String) -> (usize, usize) {
    let gate = Arc::new(Semaphore::new(32));
    let users = USERS - TRICKY_USERS.len();
    let mut requests = Vec::new();
    for user in 0..users {
        let (client, id, gate) = (client.clone(), id.clone(), gate.clone());
        requests.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(user as u64 * 8)).await;
            let _permit = gate.acquire_owned().await.expect("semaphore");
            client.issue(&id, &format!("user-{user:03}")).await
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for request in requests {
        match request.await.expect("request task") {
            Ok(_) => accepted += 1,
            Err(e) if e.reason.as_deref() == Some("CAMPAIGN_SOLD_OUT") => refused += 1,
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    (accepted, refused)
}

/// RFC 4180: fields separated by commas, rows by CRLF, quoted fields with "" for ".
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(row.is_empty() && field.is_empty(), "the CSV ends with CRLF");
    rows
}

/// What the CSV must hold for a user id: a leading = + - @ defused with a quote.
fn defused(cell: &str) -> String {
    match cell.starts_with(['=', '+', '-', '@']) {
        true => format!("'{cell}"),
        false => cell.to_owned(),
    }
}

/// An RFC 3339 time as the CSV writes it: UTC, to the millisecond (truncated).
fn millis_utc(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// "04:59", "01:02:03" or "2d 01:02:03".
fn is_countdown(text: &str) -> bool {
    let clock = text.rsplit(' ').next().unwrap_or_default();
    clock.split(':').count() >= 2
        && clock
            .split(':')
            .all(|p| p.len() == 2 && p.parse::<u8>().is_ok())
}

/// 123 from "123 / 300".
fn issued_of(label: &str) -> u64 {
    let issued = label.split(" / ").next().unwrap_or_default();
    issued.replace(',', "").parse().unwrap_or(0)
}
