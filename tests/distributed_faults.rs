//! Kafka and PostgreSQL restarted under load (DESIGN §5.6): the service refuses or
//! retries while a part is down, recovers by itself, and no accepted ticket is lost
//! or doubled, and the health check reports NOT_SERVING while PostgreSQL is down. This restarts the shared services, so it lives in its own test binary
//! (cargo runs test binaries one after another) and runs its steps in one test.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use common::cluster::Cluster;
use common::connect::{is_well_formed_code, rfc3339_in};

fn services(action: &str) {
    let status = Command::new("scripts/services.sh")
        .arg(action)
        .status()
        .expect("services.sh");
    assert!(status.success(), "scripts/services.sh {action} failed");
}

async fn await_health(client: &common::connect::Client, status: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .health()
            .await
            .map(|h| h["status"].clone())
            .unwrap_or_default();
        if answer == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health never became {status} (last {answer})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_and_postgres_restarts_under_load_lose_no_accepted_ticket() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster
        .producer("producer", &["--ack-timeout-ms", "3000"])
        .await;
    let _consumer = cluster.consumer("consumer");
    let client = producer.client.clone();
    let campaign = client
        .create_campaign("faults", 10_000_000, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id").to_owned();

    // 16 clients keep asking, each with fresh users, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for worker in 0..16 {
        let (client, id, stop, accepted, refused) = (
            client.clone(),
            id.clone(),
            stop.clone(),
            accepted.clone(),
            refused.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("w{worker}-{n}");
                n += 1;
                match client.issue(&id, &user).await {
                    Ok(r) => accepted
                        .lock()
                        .expect("lock")
                        .push((r["ticketId"].as_str().expect("t").to_owned(), user)),
                    Err(e) => {
                        refused.lock().expect("lock").push(format!(
                            "{}/{}",
                            e.code,
                            e.reason.unwrap_or_default()
                        ));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    let count = |v: &Arc<Mutex<Vec<(String, String)>>>| v.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kafka = count(&accepted);
    tokio::task::spawn_blocking(|| services("restart-kafka"))
        .await
        .expect("restart kafka");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before_pg = count(&accepted);
    assert!(
        before_pg > before_kafka,
        "no request accepted after Kafka came back\n{}",
        cluster.logs()
    );
    // PostgreSQL crashes (SIGKILL): the node says so on its health check, then recovers.
    tokio::task::spawn_blocking(|| services("kill-pg"))
        .await
        .expect("kill pg");
    await_health(&client, "NOT_SERVING").await;
    tokio::task::spawn_blocking(|| services("restart-pg"))
        .await
        .expect("restart pg");
    await_health(&client, "SERVING").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_pg = count(&accepted);
    assert!(
        after_pg > before_pg,
        "no request accepted after PostgreSQL came back\n{}",
        cluster.logs()
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }

    let accepted = accepted.lock().expect("lock").clone();
    let refused = refused.lock().expect("lock").clone();
    for r in &refused {
        assert!(
            r.starts_with("unavailable/") || r.starts_with("transport"),
            "unexpected refusal {r}"
        );
    }
    let tickets: Vec<String> = accepted.iter().map(|(t, _)| t.clone()).collect();
    let results = client.await_final(&tickets, Duration::from_secs(120)).await;
    let mut codes = HashSet::new();
    for (ticket, user) in &accepted {
        let result = &results[ticket];
        assert_eq!(
            result["status"],
            "ISSUE_STATUS_ISSUED",
            "{ticket}: {result}\n{}",
            cluster.logs()
        );
        assert_eq!(result["coupon"]["userId"], user.as_str());
        let code = result["coupon"]["code"].as_str().expect("code");
        assert!(
            is_well_formed_code(code) && codes.insert(code.to_owned()),
            "bad or doubled code {code}"
        );
    }
    let listed = client.all_coupons(&id).await;
    let listed_codes: HashSet<&str> = listed
        .iter()
        .map(|c| c["code"].as_str().expect("code"))
        .collect();
    assert_eq!(listed_codes.len(), listed.len(), "a code listed twice");
    assert!(codes.iter().all(|c| listed_codes.contains(c.as_str())));
    eprintln!(
        "accepted {} requests, refused {} while a service was down, {} coupons issued",
        accepted.len(),
        refused.len(),
        listed.len()
    );
}
