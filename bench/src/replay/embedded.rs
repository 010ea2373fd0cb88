//! The embedded mode's replay figures: the log file written with `EmbeddedLog`, the
//! built `coupon` binary draining, rebuilding and auditing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coupon::infra::embedded_log::EmbeddedLog;
use coupon::infra::{data_dir, secret_file};

use super::process::{self, Service};
use super::{Figures, Workload, timed, until_decided};

/// Appends waiting for their group commit at once.
const IN_FLIGHT: usize = 16_384;
const DRAIN_LIMIT: Duration = Duration::from_secs(1_800);

pub async fn run(dir: &Path, workload: Workload) -> Figures {
    let data = dir.join("data");
    data_dir::create(&data).expect("data dir");
    let secret = secret_file::load_for_data_dir(&data.join("secret.key"), false).expect("key");
    let log = EmbeddedLog::open(&data.join("log.sqlite"))
        .await
        .expect("log");
    log.record_key_fingerprint(&secret.fingerprint())
        .expect("fingerprint");
    let campaigns = super::create_campaigns(&log, workload).await;
    let mut figures = Figures {
        mode: "embedded",
        records: workload.requests,
        ..Figures::default()
    };
    // The campaigns decided first, as they would be before a drop.
    let coupon = process::binary("coupon");
    let service = start(&coupon, &data, dir);
    until_decided(u64::from(workload.campaigns), DRAIN_LIMIT, || {
        decided(&data)
    })
    .await;
    service.0.stop().await;

    eprintln!("appending {} requests to the log", workload.requests);
    ((), figures.append_s) = timed(super::append_requests(
        &log, workload, &campaigns, IN_FLIGHT,
    ))
    .await;
    drop(log);
    let end = u64::from(workload.campaigns) + workload.requests;

    eprintln!("draining the backlog with one worker");
    let (service, port) = start(&coupon, &data, dir);
    ((), figures.drain_s) = timed(until_decided(end, DRAIN_LIMIT, || decided(&data))).await;
    figures.drain_phases =
        process::decision_phases(&format!("http://127.0.0.1:{port}/metrics")).await;
    service.stop().await;

    eprintln!("auditing");
    let args = vec!["--data-dir".to_owned(), data.display().to_string()];
    let (identical, audit_s) = timed(process::audit(&coupon, &args)).await;
    assert!(identical, "audit found differences");
    figures.audit_s = audit_s;

    eprintln!("rebuilding into an empty state file");
    let drained = dir.join("drained.sqlite");
    std::fs::rename(data.join("coupon.sqlite"), &drained).expect("move the state aside");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("coupon.sqlite{suffix}")));
    }
    let (service, _) = start(&coupon, &data, dir);
    ((), figures.rebuild_s) = timed(until_decided(end, DRAIN_LIMIT, || decided(&data))).await;
    service.stop().await;

    eprintln!("bulk-inserting the same rows");
    figures.bulk_insert_s = super::bulk::sqlite(&drained, &dir.join("bulk.sqlite")).await;
    figures
}

fn start(coupon: &Path, data: &Path, dir: &Path) -> (Service, u16) {
    let port = process::free_port();
    let args = vec![
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    (Service::spawn(coupon, &args, &dir.join("coupon.log")), port)
}

async fn decided(data: &Path) -> u64 {
    let path: PathBuf = data.join("coupon.sqlite");
    tokio::task::spawn_blocking(move || {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(conn) = rusqlite::Connection::open_with_flags(&path, flags) else {
            return 0;
        };
        conn.query_row(
            "SELECT COALESCE(SUM(next_offset), 0) FROM partition_offsets",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_or(0, |n| n as u64)
    })
    .await
    .unwrap_or(0)
}
