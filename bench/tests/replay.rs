//! `replay-bench`'s embedded run, small: the built `coupon` drains, rebuilds and audits
//! a backlog (the run itself asserts that `audit` finds the store identical), and every
//! figure is a real measurement.

use coupon::domain::CodeAlphabet;
use coupon_bench::replay::{Workload, embedded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_backlog_drains_rebuilds_and_audits_identical() {
    let dir = tempfile::tempdir().expect("dir");
    let workload = Workload {
        campaigns: 2,
        coupons: 300,
        users: 2_000,
        requests: 5_000,
        alphabet: CodeAlphabet::Full,
    };
    let figures = embedded::run(dir.path(), workload).await;
    assert_eq!(figures.records, 5_000);
    for (what, seconds) in [
        ("append", figures.append_s),
        ("drain", figures.drain_s),
        ("rebuild", figures.rebuild_s),
        ("audit", figures.audit_s),
        ("bulk insert", figures.bulk_insert_s),
    ] {
        assert!(seconds > 0.0 && seconds < 60.0, "{what}: {seconds} s");
    }
    let phases: Vec<&str> = figures
        .drain_phases
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    for phase in ["read", "decide", "commit"] {
        assert!(phases.contains(&phase), "{phases:?}");
    }
    assert!(figures.report().contains("ratio to bulk insert"));
}
