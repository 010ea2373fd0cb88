//! A short run of the built `coupon-bench` against the embedded server: it must finish,
//! exit 0 (all invariants hold) and write the JSON figures scripts rely on.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_the_embedded_server_verifies_and_reports() {
    let dir = tempfile::tempdir().expect("dir");
    let running = common::start_server(dir.path()).await;
    let target = format!("http://{}", running.addr);
    let json = dir.path().join("bench.json");
    let json_path = json.to_str().expect("utf8").to_owned();
    let charts = dir.path().join("charts");
    let charts_path = charts.to_str().expect("utf8").to_owned();
    let args: Vec<String> = [
        "--target",
        &target,
        "--mode",
        "open",
        "--rate",
        "500",
        "--duration",
        "2",
        "--health-duration",
        "0.5",
        "--coupons",
        "300",
        "--users",
        "800",
        "--repeat-ratio",
        "0.1",
        "--start-in",
        "0.5",
        "--connections",
        "16",
        "--quiet",
        "--json",
        &json_path,
        "--svg",
        &charts_path,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (stdout, report) = common::bench(args, &json).await;
    assert!(stdout.contains("invariants: all hold"), "{stdout}");

    for key in [
        "accepted_per_s",
        "health_per_s",
        "ratio_to_health",
        "issued",
        "expected_issued",
    ] {
        assert!(report[key].is_number(), "{key} missing: {report}");
    }
    for key in ["accept_latency_ms", "final_latency_ms"] {
        for p in ["p50", "p99", "p999", "max"] {
            assert!(report[key][p].is_number(), "{key}.{p} missing");
        }
    }
    assert_eq!(report["violations"], serde_json::json!([]));
    assert_eq!(report["issued"], report["expected_issued"]);
    assert!(report["health_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(report["accepted_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    // Load began before the start: some requests must have been turned away for it.
    assert!(
        report["refused"]["failed_precondition/CAMPAIGN_NOT_STARTED"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{report}"
    );
    // The per-second series adds up to the accepted count, and the charts are drawn.
    let per_second = report["accepted_per_second"]
        .as_array()
        .expect("accepted_per_second");
    let summed: u64 = per_second.iter().filter_map(|n| n.as_u64()).sum();
    assert_eq!(Some(summed), report["accepted"].as_u64(), "{report}");
    assert!(stdout.contains("charts: "), "{stdout}");
    for (file, label) in [
        ("accepted.svg", "accepted/s"),
        ("latency.svg", "IssueCoupon accept"),
        ("refusals.svg", "failed_precondition/CAMPAIGN_NOT_STARTED"),
    ] {
        let svg = std::fs::read_to_string(charts.join(file)).expect(file);
        assert!(
            svg.starts_with("<svg") && svg.contains(label),
            "{file}: {svg}"
        );
    }
    running.stop().await.expect("stop");
}
