//! An embedded server in a temp dir, with a Connect client pointed at it.

use std::time::Duration;

use chrono::TimeDelta;
use tokio::task::JoinHandle;

use coupon::modes::{ServeArgs, embedded};

use super::connect::Client;

pub struct Server {
    pub client: Client,
    pub running: embedded::Running,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts on a free loopback port with these client limits.
    pub async fn start(serve: ServeArgs) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = embedded::EmbeddedArgs {
            data_dir: dir.path().to_path_buf(),
            admin: Default::default(),
            serve: coupon::modes::ServeArgs {
                listen: "127.0.0.1:0".parse().expect("addr"),
                ..serve
            },
            telemetry: Default::default(),
        };
        let running = embedded::start(config).await.expect("server starts");
        let client = Client::new(format!("http://{}", running.addr));
        Self {
            client,
            running,
            _dir: dir,
        }
    }
}

/// A request that holds one of the server's in-flight slots until dropped: an
/// IssueCoupon whose append waits for the log, which the test keeps write-locked.
pub struct SlotHolder {
    log_lock: rusqlite::Connection,
    request: JoinHandle<()>,
}

impl Server {
    pub async fn hold_a_slot(&self) -> SlotHolder {
        let campaign = self
            .client
            .create_campaign(
                "slot holder",
                1,
                &super::connect::rfc3339_in(TimeDelta::zero()),
            )
            .await
            .expect("holder campaign");
        let id = campaign["id"].as_str().expect("id").to_owned();
        // Appends wait for a locked log (up to its 10 s busy timeout).
        let log_lock =
            rusqlite::Connection::open(self._dir.path().join("log.sqlite")).expect("open the log");
        log_lock
            .execute_batch("BEGIN IMMEDIATE")
            .expect("lock the log");
        let client = self.client.clone();
        let request = tokio::spawn(async move {
            let _ = client.issue(&id, "slot-holder").await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        SlotHolder { log_lock, request }
    }
}

impl SlotHolder {
    /// Unlocks the log; the held request then completes and frees its slot.
    pub async fn release(self) {
        drop(self.log_lock);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.request).await;
    }
}

/// Holds the issuing worker back: the test keeps the state database write-locked, so
/// every accepted ticket stays PENDING (the API still accepts: the log is another file)
/// until the hold is released.
pub struct DecisionHold {
    state_lock: rusqlite::Connection,
}

impl Server {
    pub fn hold_decisions(&self) -> DecisionHold {
        let state_lock = rusqlite::Connection::open(self._dir.path().join("coupon.sqlite"))
            .expect("open the state database");
        state_lock
            .execute_batch("BEGIN IMMEDIATE")
            .expect("lock the state database");
        DecisionHold { state_lock }
    }

    /// The data dir's secret key, as an operator could read it from `secret.key`.
    pub fn secret(&self) -> coupon::domain::SecretKey {
        coupon::infra::secret_file::load(&self._dir.path().join("secret.key")).expect("key")
    }
}

impl DecisionHold {
    /// Unlocks: the worker decides what waited (within its busy handler's ~100 ms).
    pub fn release(self) {
        drop(self.state_lock);
    }
}
