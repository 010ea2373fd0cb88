//! Short poll-storm runs of the built `coupon-bench` against the embedded server. The
//! held phases hold the server's worker back with `scripts/hold-decisions.sh` (a write
//! lock on the state database), as `scripts/bench.sh MODE poll` does; the storm itself
//! runs by long and by short polls.

mod common;

use std::process::Command;

use common::{bench, start_server};
use serde_json::Value;

fn args(target: &str, json: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let common = [
        "--scenario",
        "poll-storm",
        "--target",
        target,
        "--health-duration",
        "0.3",
        "--coupons",
        "100",
        "--users",
        "400",
        "--connections",
        "8",
        "--poll-timeout",
        "30",
        "--quiet",
        "--json",
        json.to_str().expect("utf8"),
    ];
    common.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// `held` users asked before the storm, in the same campaign of 100 coupons.
fn assert_storm(report: &Value, held: u64) {
    let storm = &report["storm"];
    let accepted = storm["accepted"].as_u64().unwrap_or(0);
    // Once sold out, the server may turn IssueCoupon away at once.
    let turned_away = storm["issue_refused"]["resource_exhausted/CAMPAIGN_SOLD_OUT"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(storm["users"], 400, "{report}");
    assert_eq!(accepted + turned_away, 400, "{report}");
    assert!(storm["polls"].as_u64().unwrap_or(0) >= accepted, "{report}");
    assert!(storm["requests_per_ticket"].as_f64().unwrap_or(0.0) >= 1.0);
    assert_eq!(storm["final_latency_ms"]["count"], accepted, "{report}");
    assert!(storm["statuses"].get("NOT_FINAL").is_none(), "{report}");
    assert_eq!(
        storm["statuses"]["ISSUE_STATUS_ISSUED"],
        100 - held,
        "{report}"
    );
    let sold_out = storm["statuses"]["ISSUE_STATUS_SOLD_OUT"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(sold_out, accepted - (100 - held), "{report}");
    assert!(storm["reads"].is_object(), "{report}");
    assert_eq!(report["violations"], serde_json::json!([]));
    assert_eq!(report["issued"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_storm_runs_every_phase_and_verifies() {
    let dir = tempfile::tempdir().expect("dir");
    let running = start_server(dir.path()).await;
    let target = format!("http://{}", running.addr);
    let json = dir.path().join("long.json");
    let pid = std::process::id().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/hold-decisions.sh");
    let data = dir.path().join("data");
    let pause = format!("{script} hold embedded {}", data.display());
    let resume = format!("{script} release embedded {}", data.display());
    #[rustfmt::skip]
    let held = [
        "--pause-cmd", &pause, "--resume-cmd", &resume, "--pending-poll-secs", "0.5",
        "--pending-tickets", "20", "--waiters", "30", "--wait-ms", "5000", "--server-pid", &pid,
    ];
    let (stdout, report) = bench(args(&target, &json, &held), &json).await;
    assert!(stdout.contains("invariants: all hold"), "{stdout}");
    assert_eq!(report["scenario"], "poll-storm");
    assert_eq!(report["pending"]["tickets"], 20, "{report}");
    let polls = report["pending"]["polls"].as_u64().unwrap_or(0);
    assert!(polls > 0, "{report}");
    // Held: every one of those polls was PENDING, answered without a database read.
    assert_eq!(report["pending"]["pending_answers"], polls, "{report}");
    assert_eq!(report["pending"]["reads"]["store"], 0, "{report}");
    assert_eq!(report["waiters"]["waiters"], 30, "{report}");
    assert_eq!(report["waiters"]["answered_final"], 30, "{report}");
    assert!(report["waiters"]["rss_growth_mib"].is_number(), "{report}");
    // The 50 held users asked first: they take 50 of the 100 coupons.
    assert_storm(&report, 50);

    let json = dir.path().join("short.json");
    let (_, report) = bench(args(&target, &json, &["--poll", "short"]), &json).await;
    assert_eq!(report["poll"], "short");
    assert_storm(&report, 0);
    running.stop().await.expect("stop");
}

fn exit_code(args: &[&str]) -> (Option<i32>, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_coupon-bench"))
        .args(args)
        .output()
        .expect("run coupon-bench");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_or_a_bad_combination_cannot_run() {
    let (code, stderr) = exit_code(&["--scenario", "poll-storm", "--waiters", "5"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--pause-cmd"), "{stderr}");

    let dir = tempfile::tempdir().expect("dir");
    let running = start_server(dir.path()).await;
    let target = format!("http://{}", running.addr);
    let marker = dir.path().join("resumed");
    let resume = format!("touch {}", marker.display());
    #[rustfmt::skip]
    let args = [
        "--scenario", "poll-storm", "--target", &target, "--health-duration", "0.1",
        "--users", "10", "--quiet", "--pause-cmd", "true", "--resume-cmd", "exit 7",
    ];
    let (code, stderr) = run_blocking(&args).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("resume command"), "{stderr}");

    #[rustfmt::skip]
    let args = [
        "--scenario", "poll-storm", "--target", &target, "--health-duration", "0.1",
        "--users", "10", "--quiet", "--pause-cmd", "false", "--resume-cmd", &resume,
    ];
    let (code, stderr) = run_blocking(&args).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("pause command"), "{stderr}");
    assert!(
        marker.exists(),
        "the resume command runs after a failed pause"
    );
    running.stop().await.expect("stop");
}

async fn run_blocking(args: &[&str]) -> (Option<i32>, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        exit_code(&args)
    })
    .await
    .expect("join")
}
