//! The distributed mode as an operator runs it: the built `producer` and `consumer`
//! binaries as processes, on the real Kafka and PostgreSQL that `scripts/services.sh up`
//! started (`KAFKA_BROKERS`, `DATABASE_URL`). Each test gets its own database, topic and
//! consumer group, so tests run in parallel without seeing each other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::connect::Client;
use super::pg;
use super::process::{Proc, free_port, wait_healthy};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub brokers: String,
    pub database_url: String,
    pub topic: String,
    pub group: String,
    pub secret_hex: String,
    pub partitions: u32,
}

/// A built binary of the workspace, next to this test's own directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --release --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

pub struct Producer {
    pub proc: Proc,
    pub client: Client,
    pub port: u16,
}

impl Cluster {
    /// `None` when the distributed tests are skipped (see `pg::SKIP_VAR`).
    pub async fn new(partitions: u32) -> Option<Self> {
        let brokers = std::env::var("KAFKA_BROKERS").expect(
            "KAFKA_BROKERS is unset: start Kafka with `eval \"$(scripts/services.sh up)\"`",
        );
        Self::on_brokers(partitions, brokers).await
    }

    /// As [`Cluster::new`], on the Kafka cluster at `brokers`.
    pub async fn on_brokers(partitions: u32, brokers: String) -> Option<Self> {
        let database_url = pg::fresh_database().await?;
        let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let cluster = Self {
            dir: tempfile::tempdir().expect("dir"),
            brokers,
            database_url,
            topic: format!("coupon-test-{id}"),
            group: format!("coupon-test-{id}"),
            secret_hex: hex::encode(rand::random::<[u8; 32]>()),
            partitions,
        };
        Some(cluster)
    }

    pub fn common_args(&self, database_url: &str) -> Vec<String> {
        let partitions = self.partitions.to_string();
        [
            "--kafka-brokers",
            &self.brokers,
            "--database-url",
            database_url,
            "--topic",
            &self.topic,
            "--partitions",
            &partitions,
            "--secret-key",
            &self.secret_hex,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Where the process started under `name` writes its log.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts an API node on a free port and waits until it answers.
    pub async fn producer(&self, name: &str, extra: &[&str]) -> Producer {
        let port = free_port();
        let mut args = vec!["--listen".to_owned(), format!("127.0.0.1:{port}")];
        args.extend(self.common_args(&self.database_url));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.log_path(name);
        let proc = Proc::spawn(binary("producer").to_str().expect("utf8"), &args, &log);
        let client = Client::new(format!("http://127.0.0.1:{port}"));
        wait_healthy(&client, Duration::from_secs(60)).await;
        Producer { proc, client, port }
    }

    /// Starts an issuing worker of this cluster's group on its database.
    pub fn consumer(&self, name: &str) -> Proc {
        self.consumer_on(name, &self.database_url, &self.group)
    }

    /// A worker on another database and group (e.g. rebuilding from the log).
    pub fn consumer_on(&self, name: &str, database_url: &str, group: &str) -> Proc {
        self.consumer_with(name, database_url, group, &[])
    }

    /// A worker with extra flags.
    pub fn consumer_with(
        &self,
        name: &str,
        database_url: &str,
        group: &str,
        extra: &[&str],
    ) -> Proc {
        let mut args = vec![
            "--group".to_owned(),
            group.to_owned(),
            "--session-timeout-ms".into(),
            "6000".into(),
        ];
        args.extend(self.common_args(database_url));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.log_path(name);
        Proc::spawn(binary("consumer").to_str().expect("utf8"), &args, &log)
    }

    /// Waits until the process log `name` contains `needle`.
    pub async fn await_log(&self, name: &str, needle: &str, limit: Duration) {
        let path = self.log_path(name);
        let deadline = std::time::Instant::now() + limit;
        while !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains(needle)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never logged {needle:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every process log of this test, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {} ---\n", entry.path().display()));
                    for line in tail.into_iter().rev() {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}
