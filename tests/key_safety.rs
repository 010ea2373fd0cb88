//! The built `coupon` binary against an operator's mistakes with its data dir (issue 11,
//! defects 4 and 5): a lost or replaced secret key is refused instead of silently making
//! every earlier ticket unreadable; a second process on the same dir is refused; the dir
//! and its files are private; a key left empty on an empty dir is replaced; an unwritable
//! dir is named; a multi-line admin token file is refused; a state file beside another
//! log file is refused (issue 19).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;
use common::connect::{Client, rfc3339_in};
use common::process::{Proc, free_port, wait_healthy};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_coupon");

/// A temp dir holding a data dir (`data`, not created) and the servers' logs.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn log_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// Starts the binary on `data` and a free port; `name` names its log. Returns the
    /// process and its base URL.
    fn spawn_on(&self, data: &Path, name: &str, extra: &[&str]) -> (Proc, String) {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(BINARY, &args, &self.log(name));
        (proc, format!("http://{listen}"))
    }

    /// Starts the binary on the data dir and waits until it serves.
    async fn start(&self, name: &str, extra: &[&str]) -> (Proc, Client) {
        let (proc, base) = self.spawn_on(&self.data(), name, extra);
        let client = Client::new(base);
        wait_healthy(&client, Duration::from_secs(20)).await;
        (proc, client)
    }

    /// Starts the binary, which must refuse to start: exit non-zero at once. Returns
    /// its log.
    async fn refused(&self, data: &Path, name: &str, extra: &[&str]) -> String {
        let (proc, _) = self.spawn_on(data, name, extra);
        proc.refused(Duration::from_secs(20), &self.log(name)).await
    }
}

/// SIGTERM, and the clean exit that follows.
async fn stop(mut proc: Proc) {
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    let status = proc.exit_within(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "clean stop: {status:?}"
    );
}

/// A campaign and one decided ticket on a fresh data dir, then a clean stop.
/// Returns the ticket and its result.
async fn seed(setup: &Setup) -> (String, Value) {
    let (server, client) = setup.start("seed", &[]).await;
    let campaign = client
        .create_campaign("keys", 10, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let id = campaign["id"].as_str().expect("id");
    let accepted = client.issue(id, "alice").await.expect("issue");
    let ticket = accepted["ticketId"].as_str().expect("ticket").to_owned();
    let result = client.await_one(&ticket, Duration::from_secs(10)).await;
    assert_eq!(result["status"], "ISSUE_STATUS_ISSUED", "{result}");
    stop(server).await;
    (ticket, result)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_deleted_key_on_a_data_dir_with_data_is_refused_not_recreated() {
    let setup = Setup::new();
    let (ticket, before) = seed(&setup).await;
    let key = setup.data().join("secret.key");
    let original = std::fs::read(&key).expect("key");
    std::fs::remove_file(&key).expect("delete the key");

    let log = setup.refused(&setup.data(), "no-key", &[]).await;
    assert!(
        log.contains("secret key file") && log.contains("missing") && log.contains("restore"),
        "the refusal names the missing key and what to do:\n{log}"
    );
    assert!(!key.exists(), "no new key was made");

    std::fs::write(&key, original).expect("restore the key");
    let (server, client) = setup.start("restored", &[]).await;
    assert_eq!(client.result(&ticket).await.expect("result"), before);
    stop(server).await;
}

#[tokio::test]
async fn a_replaced_key_is_refused_until_the_original_is_restored() {
    let setup = Setup::new();
    let (ticket, before) = seed(&setup).await;
    let key = setup.data().join("secret.key");
    let original = std::fs::read(&key).expect("key");
    let other = format!("{}\n", hex::encode(rand::random::<[u8; 32]>()));
    std::fs::write(&key, other).expect("replace the key");

    let log = setup.refused(&setup.data(), "other-key", &[]).await;
    assert!(
        log.contains("does not match")
            && log.contains("fingerprint")
            && log.contains("coupon.sqlite")
            && log.contains("restore"),
        "the refusal says the key is not the data's and what to do:\n{log}"
    );

    std::fs::write(&key, original).expect("restore the key");
    let (server, client) = setup.start("restored", &[]).await;
    let after = client
        .result(&ticket)
        .await
        .expect("the old ticket resolves");
    assert_eq!(after, before, "same outcome and code with the original key");
    stop(server).await;
}

/// The log file moved away (a partial restore, a mistaken cleanup) while the state
/// stays: a new log would reuse offsets the state already decided, so the start is
/// refused, naming the state file and what to do, until the log is put back.
#[tokio::test]
async fn a_state_file_beside_another_log_is_refused_until_its_own_is_back() {
    let setup = Setup::new();
    let (ticket, before) = seed(&setup).await;
    let saved = setup.dir.path().join("saved-log");
    std::fs::create_dir(&saved).expect("dir");
    for file in ["log.sqlite", "log.sqlite-wal", "log.sqlite-shm"] {
        let from = setup.data().join(file);
        if from.exists() {
            std::fs::rename(&from, saved.join(file)).expect("move the log away");
        }
    }

    let log = setup.refused(&setup.data(), "new-log", &[]).await;
    assert!(
        log.contains("coupon.sqlite")
            && log.contains("holds the decisions of embedded log")
            && log.contains("put back the log.sqlite"),
        "the refusal names the state, both logs and what to do:\n{log}"
    );

    for file in ["log.sqlite", "log.sqlite-wal", "log.sqlite-shm"] {
        let _ = std::fs::remove_file(setup.data().join(file));
        if saved.join(file).exists() {
            std::fs::rename(saved.join(file), setup.data().join(file)).expect("put it back");
        }
    }
    let (server, client) = setup.start("log-back", &[]).await;
    assert_eq!(client.result(&ticket).await.expect("result"), before);
    stop(server).await;
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_exits_naming_the_holder() {
    let setup = Setup::new();
    let (first, client) = setup.start("first", &[]).await;

    let log = setup.refused(&setup.data(), "second", &[]).await;
    let holder = format!("pid {}", first.pid());
    assert!(
        log.contains("in use") && log.contains(&holder),
        "the refusal names the holder ({holder}):\n{log}"
    );

    // The first one never noticed.
    let campaign = client
        .create_campaign("still", 1, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("the first still serves");
    let id = campaign["id"].as_str().expect("id");
    let ticket = client.issue(id, "bob").await.expect("issue")["ticketId"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let result = client.await_one(&ticket, Duration::from_secs(10)).await;
    assert_eq!(result["status"], "ISSUE_STATUS_ISSUED", "{result}");
    stop(first).await;

    // Released on exit: the next process takes the dir.
    let (next, _) = setup.start("next", &[]).await;
    stop(next).await;
}

#[tokio::test]
async fn the_data_dir_and_its_files_are_private_and_an_open_key_is_warned_about() {
    let setup = Setup::new();
    let (server, client) = setup.start("first", &[]).await;
    // A decision, so that both databases have written their WAL.
    let campaign = client
        .create_campaign("private", 1, &rfc3339_in(TimeDelta::zero()))
        .await
        .expect("create");
    let ticket = client
        .issue(campaign["id"].as_str().expect("id"), "carol")
        .await
        .expect("issue")["ticketId"]
        .as_str()
        .expect("ticket")
        .to_owned();
    client.await_one(&ticket, Duration::from_secs(10)).await;

    let data = setup.data();
    assert_eq!(mode(&data), 0o700, "the data dir");
    for file in ["secret.key", "coupon.lock", "coupon.sqlite", "log.sqlite"] {
        assert_eq!(mode(&data.join(file)) & 0o077, 0, "{file}");
    }
    for file in [
        "coupon.sqlite-wal",
        "coupon.sqlite-shm",
        "log.sqlite-wal",
        "log.sqlite-shm",
    ] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path) & 0o077, 0, "{file}");
        }
    }
    assert!(
        setup.log_text("first").matches("readable by group").count() == 0,
        "no warning for a private key"
    );
    stop(server).await;

    let key = data.join("secret.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (server, _) = setup.start("open-key", &[]).await;
    let log = setup.log_text("open-key");
    assert!(
        log.contains("WARN") && log.contains("readable by group or others"),
        "a key others can read is warned about:\n{log}"
    );
    stop(server).await;
}

#[tokio::test]
async fn an_empty_key_file_on_an_empty_data_dir_is_replaced() {
    let setup = Setup::new();
    let data = setup.data();
    std::fs::create_dir(&data).expect("data dir");
    // What a full disk left behind before keys were written to a temp file first.
    std::fs::write(data.join("secret.key"), "").expect("empty key");

    let (server, _) = setup.start("first", &[]).await;
    let key = std::fs::read_to_string(data.join("secret.key")).expect("key");
    assert_eq!(key.trim().len(), 64, "a whole new key: {key:?}");
    assert!(hex::decode(key.trim()).is_ok());
    let log = setup.log_text("first");
    assert!(log.contains("empty"), "replacing it is said:\n{log}");
    assert!(!data.join("secret.key.tmp").exists(), "no temp file left");
    stop(server).await;
}

#[tokio::test]
async fn an_unwritable_data_dir_is_named_in_the_error() {
    let setup = Setup::new();
    // Root may write anywhere chmod forbids; not in /proc, nor under a regular file.
    let log = setup.refused(Path::new("/proc"), "proc", &[]).await;
    assert!(
        log.contains("data dir /proc is not writable"),
        "the error names the data dir:\n{log}"
    );

    let file = setup.dir.path().join("a-file");
    std::fs::write(&file, "").expect("file");
    let under_a_file = file.join("data");
    let log = setup.refused(&under_a_file, "under-a-file", &[]).await;
    assert!(
        log.contains(&format!("data dir {}", under_a_file.display())),
        "the error names the data dir:\n{log}"
    );
}

#[tokio::test]
async fn a_multi_line_admin_token_file_is_refused() {
    let setup = Setup::new();
    let token = setup.dir.path().join("admin.token");
    std::fs::write(&token, "first-token\nsecond-token\n").expect("token file");
    let token_arg = token.to_str().expect("utf8");
    let log = setup
        .refused(
            &setup.data(),
            "two-lines",
            &["--admin-token-file", token_arg],
        )
        .await;
    assert!(
        log.contains("more than one line") && log.contains(token_arg),
        "the refusal names the file and why:\n{log}"
    );

    // One line and its newline is the usual file, and the token is that line.
    std::fs::write(&token, "the-token\n").expect("token file");
    let (server, base) = setup.spawn_on(
        &setup.data(),
        "one-line",
        &["--admin-token-file", token_arg],
    );
    wait_healthy(&Client::new(base.clone()), Duration::from_secs(20)).await;
    let created = reqwest::Client::new()
        .post(format!("{base}/coupon.v1.CampaignService/CreateCampaign"))
        .bearer_auth("the-token")
        .json(&serde_json::json!({"name": "t", "totalCoupons": 1, "startsAt": rfc3339_in(TimeDelta::zero())}))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 200);
    stop(server).await;
}
