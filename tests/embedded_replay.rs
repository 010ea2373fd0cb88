//! Replaying the embedded log as an operator's tool: `coupon audit` while the service
//! runs, and on a tampered state file.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::audit::{
    AuditedDrop, assert_exactly, assert_identical, audit, expected_differences, other_code,
};
use common::connect::Client;
use common::process::{Proc, free_port, wait_healthy};
use coupon::domain::IssueStatus;

const BINARY: &str = env!("CARGO_BIN_EXE_coupon");

/// The built binary serving a data dir in a temp dir, restartable on the same port.
struct Service {
    dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    client: Client,
    proc: Proc,
}

impl Service {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let port = free_port();
        let client = Client::new(format!("http://127.0.0.1:{port}"));
        let proc = spawn(&dir, &data, port);
        wait_healthy(&client, Duration::from_secs(20)).await;
        Self {
            dir,
            data,
            port,
            client,
            proc,
        }
    }

    /// SIGTERM, and waits for the exit.
    async fn stop(&mut self) {
        self.proc.signal(nix::sys::signal::Signal::SIGTERM);
        self.proc
            .exit_within(Duration::from_secs(20))
            .await
            .expect("stops");
    }

    async fn restart(&mut self) {
        self.proc = spawn(&self.dir, &self.data, self.port);
        wait_healthy(&self.client, Duration::from_secs(20)).await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).expect("server log")
    }
}

fn spawn(dir: &tempfile::TempDir, data: &Path, port: u16) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let data = data.to_str().expect("utf8");
    let log = dir.path().join("server.log");
    Proc::spawn(BINARY, &["--listen", &listen, "--data-dir", data], &log)
}

async fn audit_dir(data: &Path) -> common::audit::AuditRun {
    audit(
        &PathBuf::from(BINARY),
        &["--data-dir", data.to_str().expect("utf8")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_finds_a_running_service_identical_and_exactly_the_tampered_rows() {
    let service = Service::start().await;
    let data = &service.data;
    let drop = AuditedDrop::run(std::slice::from_ref(&service.client)).await;

    assert_identical(&audit_dir(data).await, &drop);

    // Tamper with the state file under the running service: one code edited, one coupon
    // deleted, one ticket's status flipped.
    let sold_out = drop.ticket_with("ISSUE_STATUS_SOLD_OUT");
    let state = rusqlite::Connection::open(data.join("coupon.sqlite")).expect("open state");
    state
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let code_5: String = state
        .query_row(
            "SELECT code FROM coupons WHERE campaign_id = ?1 AND ordinal = 5",
            [&drop.campaign_id],
            |r| r.get(0),
        )
        .expect("coupon 5");
    let tampered = other_code(&code_5);
    let changed = state
        .execute(
            "UPDATE coupons SET code = ?1 WHERE campaign_id = ?2 AND ordinal = 5",
            (&tampered, &drop.campaign_id),
        )
        .expect("edit a code")
        + state
            .execute(
                "DELETE FROM coupons WHERE campaign_id = ?1 AND ordinal = 7",
                [&drop.campaign_id],
            )
            .expect("delete a coupon")
        + state
            .execute(
                "UPDATE ticket_results SET status = ?1 WHERE ticket_id = ?2",
                (IssueStatus::NotStarted.code(), &sold_out),
            )
            .expect("flip a status");
    assert_eq!(changed, 3);

    let tampered_run = audit_dir(data).await;
    let expected = expected_differences(&drop.campaign_id, &code_5, &tampered, &sold_out);
    assert_exactly(&tampered_run, &expected);
}

#[tokio::test]
async fn audit_of_a_missing_data_dir_could_not_run() {
    let dir = tempfile::tempdir().expect("dir");
    let run = audit_dir(&dir.path().join("nothing here")).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("audit could not run"), "{run:?}");
}

/// Every row of the state file's decision tables, in key order.
fn dump_state(data: &Path) -> Vec<String> {
    const TABLES: [&str; 4] = [
        "SELECT * FROM campaigns ORDER BY id",
        "SELECT * FROM coupons ORDER BY campaign_id, ordinal",
        "SELECT * FROM ticket_results ORDER BY ticket_id",
        "SELECT * FROM partition_offsets ORDER BY log_partition",
    ];
    let state = rusqlite::Connection::open(data.join("coupon.sqlite")).expect("open state");
    let mut rows = Vec::new();
    for sql in TABLES {
        let mut select = state.prepare(sql).expect(sql);
        let columns = select.column_count();
        let mut found = select.query([]).expect(sql);
        while let Some(row) = found.next().expect(sql) {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).expect("column")))
                .collect();
            rows.push(values.join("|"));
        }
    }
    rows
}

async fn rewind_dir(data: &Path, to: &str) -> common::audit::AuditRun {
    let data = data.to_str().expect("utf8");
    let args = ["rewind", "--data-dir", data, "--to", to];
    common::audit::run(&PathBuf::from(BINARY), &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewound_log_is_decided_again_without_changing_a_row() {
    let mut service = Service::start().await;
    let data = service.data.clone();
    let drop = AuditedDrop::run(std::slice::from_ref(&service.client)).await;

    // The data dir is locked while the service runs: rewinding is refused.
    let refused = rewind_dir(&data, "earliest").await;
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("rewind could not run"),
        "{refused:?}"
    );

    service.stop().await;
    let before = dump_state(&data);
    let decided = before.last().expect("an offset row").clone();
    let rewound = rewind_dir(&data, "earliest").await;
    assert_eq!(rewound.code, Some(0), "{rewound:?}");
    let records = drop.finals.len() + 2; // and the two campaign records
    let moved = format!("decided offset {records} -> 0 ({records} records");
    assert!(rewound.stdout.contains(&moved), "{rewound:?}");
    // Never forward: from 0, offset 5 would skip undecided records.
    let forward = rewind_dir(&data, "5").await;
    assert_eq!(forward.code, Some(2), "{forward:?}");
    assert!(
        forward.stderr.contains("would move it forward"),
        "{forward:?}"
    );

    service.restart().await;
    await_decided(&data, &decided).await;
    assert_eq!(dump_state(&data), before, "a replay changed a stored row");
    let clean = audit_dir(&data).await;
    assert_eq!(clean.code, Some(0), "{clean:?}");
}

/// Waits until the state's decided offset row reads `decided`.
async fn await_decided(data: &Path, decided: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dump_state(data).last().map(String::as_str) != Some(decided) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn remove_state(data: &Path) {
    for file in ["coupon.sqlite", "coupon.sqlite-wal", "coupon.sqlite-shm"] {
        match std::fs::remove_file(data.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("removing {file}: {e}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restored_after_the_flood_and_a_deleted_state_file_replay_to_the_same_rows() {
    let mut service = Service::start().await;
    let data = service.data.clone();

    // An online backup of the state file in the middle of a flood (SQLite's VACUUM INTO
    // reads one snapshot while the service keeps writing).
    let mut flood =
        common::audit::BackgroundFlood::start(std::slice::from_ref(&service.client)).await;
    // Decisions held back (the write lock taken) while the flood goes on into the log
    // and the backup is read, so that the flood's rest is surely decided after it.
    let backup = service.dir.path().join("backup.sqlite");
    let hold = rusqlite::Connection::open(data.join("coupon.sqlite")).expect("open state");
    hold.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    hold.execute_batch("BEGIN IMMEDIATE")
        .expect("hold the writer");
    flood.resume();
    flood.until_accepted(common::audit::FIRST_USERS + 50).await;
    let state = rusqlite::Connection::open(data.join("coupon.sqlite")).expect("open state");
    state
        .execute("VACUUM INTO ?1", [backup.to_str().expect("utf8")])
        .expect("online backup");
    hold.execute_batch("ROLLBACK").expect("release the writer");
    drop((state, hold));
    let finals = flood.finish(&service.client).await;
    service.stop().await;
    let original = dump_state(&data);
    let decided = original.last().expect("an offset row").clone();

    // Restore: the backup decided less; the next start replays the log's tail from its
    // offset and reaches exactly the original rows.
    remove_state(&data);
    std::fs::copy(&backup, data.join("coupon.sqlite")).expect("restore");
    assert_ne!(
        dump_state(&data),
        original,
        "the backup was taken mid-flood"
    );
    service.restart().await;
    await_decided(&data, &decided).await;
    assert_eq!(
        dump_state(&data),
        original,
        "the restored store replayed to other rows"
    );
    let audited = audit_dir(&data).await;
    assert_eq!(audited.code, Some(0), "{audited:?}");
    let tickets: Vec<String> = finals.keys().cloned().collect();
    let again = service
        .client
        .await_final(&tickets, Duration::from_secs(10))
        .await;
    assert_eq!(again, finals);

    // The state file deleted, the log kept: the next start rebuilds it, and says so.
    service.stop().await;
    remove_state(&data);
    service.restart().await;
    await_decided(&data, &decided).await;
    assert_eq!(dump_state(&data), original, "the rebuilt store differs");
    let said = service.log();
    assert!(said.contains("rebuilding the state from the log"), "{said}");
}

/// A log written before code alphabets existed (version 1 campaign records, which name
/// none) is decided into the codes it was decided into then: the full alphabet's. The
/// expected code was made by the `fpe` crate's FF1, which the service used first, for
/// this key and this campaign position (domain::coupon_code's pinned vectors).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_from_before_alphabets_replays_to_its_old_full_alphabet_codes() {
    const CAMPAIGN: &str = "018f0000-0000-7000-8000-0000000000c1";
    const OLD_CODE: &str = "쯥뗵읅벷퍃훨릥헡뽉쪧";
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    write_old_data_dir(&data, CAMPAIGN).await;

    let port = free_port();
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    let _proc = spawn(&dir, &data, port);
    wait_healthy(&client, Duration::from_secs(20)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = client.get_campaign(CAMPAIGN, 0, "").await;
        if let Ok(page) = page.as_ref()
            && page["coupons"].as_array().is_some_and(|c| !c.is_empty())
        {
            break page.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old log was not decided: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page["campaign"]["codeAlphabet"], "CODE_ALPHABET_FULL");
    assert_eq!(page["coupons"][0]["userId"], "old-user");
    assert_eq!(page["coupons"][0]["code"], OLD_CODE);
}

/// A data dir as a version without alphabets left it, before its state was decided:
/// the key of the pinned vectors, and a log of a campaign at offset 0 and one request.
async fn write_old_data_dir(data: &Path, campaign: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data).expect("data dir");
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let key = data.join("secret.key");
    std::fs::write(&key, format!("{}\n", "07".repeat(32))).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let log_path = data.join("log.sqlite");
    drop(
        coupon::infra::embedded_log::EmbeddedLog::open(&log_path)
            .await
            .expect("log"),
    );
    let start_ms: i64 = 1_700_000_000_000;
    let records = [
        format!(
            r#"{{"type":"campaign_created","v":1,"campaign_id":"{campaign}","name":"old drop","total_coupons":5,"starts_at_ms":{start_ms},"created_at_ms":{start_ms}}}"#
        ),
        format!(
            r#"{{"type":"issue_requested","v":1,"ticket_id":"018f0000-0000-7000-8000-0000000000d1","campaign_id":"{campaign}","user_id":"old-user"}}"#
        ),
    ];
    let log = rusqlite::Connection::open(&log_path).expect("open log");
    for (offset, payload) in records.iter().enumerate() {
        log.execute(
            "INSERT INTO log_records (log_offset, appended_at_ms, payload) VALUES (?, ?, ?)",
            rusqlite::params![offset as i64, start_ms + 1_000, payload],
        )
        .expect("old record");
    }
}
