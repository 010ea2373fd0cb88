//! CampaignService is for admins (issue 6): with a token configured, calls without it are
//! refused and with it succeed; without a token the server only serves on loopback.

mod common;

use chrono::TimeDelta;
use common::connect::rfc3339_in;
use coupon::modes::{AdminArgs, embedded};
use serde_json::json;

async fn start(
    listen: &str,
    admin: AdminArgs,
) -> (
    Result<embedded::Running, embedded::StartError>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("dir");
    let config = embedded::EmbeddedArgs {
        data_dir: dir.path().to_path_buf(),
        admin,
        serve: coupon::modes::ServeArgs {
            listen: listen.parse().expect("addr"),
            ..coupon::modes::ServeArgs::DEFAULT
        },
        telemetry: Default::default(),
    };
    (embedded::start(config).await, dir)
}

async fn create(base: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/coupon.v1.CampaignService/CreateCampaign"))
        .json(
            &json!({"name": "admin", "totalCoupons": 5, "startsAt": rfc3339_in(TimeDelta::zero())}),
        );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("send")
}

#[tokio::test]
async fn admin_calls_need_the_configured_token() {
    let admin = AdminArgs {
        admin_token: Some("let-me-in".into()),
        ..Default::default()
    };
    let (running, _dir) = start("127.0.0.1:0", admin).await;
    let running = running.expect("start");
    let base = format!("http://{}", running.addr);

    for token in [None, Some("wrong"), Some("let-me-i"), Some("let-me-in-too")] {
        let response = create(&base, token).await;
        assert_eq!(response.status(), 401, "token {token:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["code"], "unauthenticated");
        assert!(
            !body.to_string().contains("let-me-in"),
            "no hint of the token"
        );
    }
    let response = create(&base, Some("let-me-in")).await;
    assert_eq!(response.status(), 200);
    let campaign: serde_json::Value = response.json().await.expect("json");
    let id = campaign["campaign"]["id"].as_str().expect("id");

    // The public service needs no token.
    let issued = reqwest::Client::new()
        .post(format!("{base}/coupon.v1.CouponService/IssueCoupon"))
        .json(&json!({"campaignId": id, "userId": "u"}))
        .send()
        .await
        .expect("send");
    assert_eq!(issued.status(), 200);
    running.stop().await.expect("stop");
}

#[tokio::test]
async fn a_non_loopback_bind_without_a_token_is_refused_unless_insisted() {
    let (refused, _dir) = start("0.0.0.0:0", AdminArgs::default()).await;
    let error = refused.err().expect("must refuse to start").to_string();
    assert!(error.contains("admin token"), "{error}");

    let insisted = AdminArgs {
        insecure_no_admin_token: true,
        ..Default::default()
    };
    let (running, _dir) = start("0.0.0.0:0", insisted).await;
    running
        .expect("starts when insisted")
        .stop()
        .await
        .expect("stop");

    let token = AdminArgs {
        admin_token: Some("t".into()),
        ..Default::default()
    };
    let (running, _dir) = start("0.0.0.0:0", token).await;
    running
        .expect("starts with a token")
        .stop()
        .await
        .expect("stop");
}
