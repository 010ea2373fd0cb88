//! The built `coupon` binary killed with SIGKILL in the middle of a flood, then
//! restarted on the same data dir: every ticket accepted before the kill resolves,
//! nothing is issued twice (DESIGN §5.4, §5.6). Also: SIGTERM stops it cleanly.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use common::connect::{Client, is_well_formed_code, rfc3339_in};
use common::process::{Proc, free_port, wait_healthy};

const BINARY: &str = env!("CARGO_BIN_EXE_coupon");

fn start(dir: &std::path::Path, port: u16) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let data = dir.join("data");
    Proc::spawn(
        BINARY,
        &[
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().expect("utf8"),
        ],
        &dir.join("server.log"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_flood_loses_no_accepted_ticket_and_issues_nothing_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    let mut server = start(dir.path(), port);
    wait_healthy(&client, Duration::from_secs(20)).await;

    // More coupons than users: every accepted ticket must end ISSUED.
    let campaign = client
        .create_campaign("crash", 5_000, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    // 32 clients flood with distinct users until the server dies under them.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for worker in 0..32 {
        let (client, id, accepted, count) =
            (client.clone(), id.clone(), accepted.clone(), count.clone());
        clients.push(tokio::spawn(async move {
            for n in 0..200 {
                let user = format!("w{worker}-u{n}");
                match client.issue(&id, &user).await {
                    Ok(r) => {
                        let ticket = r["ticketId"].as_str().expect("ticket").to_owned();
                        accepted.lock().expect("lock").push((ticket, user));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    while count.load(Ordering::Relaxed) < 1_500 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    for c in clients {
        c.await.expect("client task");
    }
    let accepted = accepted.lock().expect("lock").clone();
    assert!(accepted.len() >= 1_500);

    let _server = start(dir.path(), port);
    wait_healthy(&client, Duration::from_secs(20)).await;
    let tickets: Vec<String> = accepted.iter().map(|(t, _)| t.clone()).collect();
    let results = client.await_final(&tickets, Duration::from_secs(60)).await;

    let mut codes_by_user = HashMap::new();
    for (ticket, user) in &accepted {
        let result = &results[ticket];
        assert_eq!(
            result["status"], "ISSUE_STATUS_ISSUED",
            "accepted ticket {ticket}: {result}"
        );
        let code = result["coupon"]["code"].as_str().expect("code").to_owned();
        assert!(is_well_formed_code(&code));
        assert_eq!(result["coupon"]["userId"], user.as_str());
        assert!(
            codes_by_user.insert(user.clone(), code).is_none(),
            "one coupon per user"
        );
    }
    // Requests in flight at the kill may or may not have been accepted; whatever was,
    // is listed once, and every accepted ticket's coupon is among them.
    let listed = client.all_coupons(&id).await;
    let listed_codes: HashSet<&str> = listed
        .iter()
        .map(|c| c["code"].as_str().expect("code"))
        .collect();
    assert_eq!(listed_codes.len(), listed.len(), "no code listed twice");
    let listed_users: HashSet<&str> = listed
        .iter()
        .map(|c| c["userId"].as_str().expect("user"))
        .collect();
    assert_eq!(
        listed_users.len(),
        listed.len(),
        "no user holds two coupons"
    );
    for code in codes_by_user.values() {
        assert!(
            listed_codes.contains(code.as_str()),
            "issued code {code} missing from GetCampaign"
        );
    }
    let page = client.get_campaign(&id, 1, "").await.expect("get");
    assert_eq!(page["campaign"]["issuedCoupons"], listed.len().to_string());
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    let mut server = start(dir.path(), port);
    wait_healthy(&client, Duration::from_secs(20)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}
