//! Running the `audit` command as an operator does, on traffic that gives every status,
//! and what the tests tamper with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::Value;

use super::connect::{Client, RpcError, rfc3339_in};
use super::flood::flood;

/// What an `audit` run answered.
#[derive(Debug)]
pub struct AuditRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl AuditRun {
    /// The differences it listed, one per line.
    pub fn listed(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("  "))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `binary` with `args` (a subcommand first) to its end.
pub async fn run<S: AsRef<std::ffi::OsStr>>(binary: &Path, args: &[S]) -> AuditRun {
    let output = tokio::process::Command::new(binary)
        .args(args)
        .output()
        .await
        .expect("run the command");
    AuditRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub async fn audit(binary: &Path, args: &[&str]) -> AuditRun {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    run(binary, &all).await
}

/// An audit that found the store identical to the log, having compared `drop`'s rows.
pub fn assert_identical(run: &AuditRun, drop: &AuditedDrop) {
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("identical"), "{run:?}");
    let compared = format!(
        "compared 2 campaigns, 20 coupons, {} tickets",
        drop.finals.len()
    );
    assert!(run.stdout.contains(&compared), "{run:?}");
}

/// A drop: 20 coupons, 60 users of whom 20 ask twice (issued, sold out, already
/// issued), and a request for a campaign that has not started (refused at once, or
/// decided NOT_STARTED where the API leaves it to the log's clock).
pub struct AuditedDrop {
    pub campaign_id: String,
    /// Final result of every accepted ticket, by ticket.
    pub finals: HashMap<String, Value>,
}

impl AuditedDrop {
    pub async fn run(clients: &[Client]) -> Self {
        let client = &clients[0];
        let campaign = client
            .create_campaign("audited", 20, &rfc3339_in(TimeDelta::zero()))
            .await
            .expect("create");
        let campaign_id = campaign["id"].as_str().expect("id").to_owned();
        let later = client
            .create_campaign("later", 5, &rfc3339_in(TimeDelta::hours(1)))
            .await
            .expect("create");
        let later_id = later["id"].as_str().expect("id").to_owned();
        let mut users: Vec<String> = (0..60).map(|n| format!("user-{n}")).collect();
        users.extend((0..20).map(|n| format!("user-{n}")));
        let progress = Arc::new(AtomicUsize::new(0));
        // All at once, so that most losers are accepted before the first decision: an
        // API node that has learned of the sell-out refuses the rest at once.
        let mut outcome = flood(clients, &campaign_id, users, 80, progress.clone()).await;
        let sold_out = |e: &RpcError| e.reason.as_deref() == Some("CAMPAIGN_SOLD_OUT");
        assert!(
            outcome.refused.iter().all(sold_out),
            "{:?}",
            outcome.refused
        );
        let early = flood(clients, &later_id, vec!["early".into()], 1, progress).await;
        outcome.accepted.extend(early.accepted);
        let tickets: Vec<String> = outcome.accepted.into_iter().map(|(t, _)| t).collect();
        let finals = client.await_final(&tickets, Duration::from_secs(60)).await;
        Self {
            campaign_id,
            finals,
        }
    }

    /// The stored id (the uuid before the seal) of a ticket that ended with `status`.
    pub fn ticket_with(&self, status: &str) -> String {
        let (ticket, _) = self
            .finals
            .iter()
            .find(|(_, result)| result["status"] == status)
            .unwrap_or_else(|| panic!("no ticket ended {status}"));
        ticket.split('.').next().expect("uuid").to_owned()
    }
}

/// Another well-formed code: the same symbols in reverse order.
pub fn other_code(code: &str) -> String {
    let reversed: String = code.chars().rev().collect();
    assert_ne!(reversed, code, "a palindromic code");
    reversed
}

/// The three differences the tests plant (see `tamper` in each test), as `audit` lists
/// them.
pub fn expected_differences(
    campaign_id: &str,
    code_5: &str,
    tampered_code: &str,
    ticket: &str,
) -> [(String, String); 3] {
    [
        (
            format!("coupon 5 of campaign {campaign_id}: code: "),
            format!("the log implies {code_5}, the store holds {tampered_code}"),
        ),
        (
            format!("coupon 7 of campaign {campaign_id}: row: "),
            "the store holds no row".to_owned(),
        ),
        (
            format!("ticket {ticket}: status: "),
            "the log implies sold_out, the store holds not_started".to_owned(),
        ),
    ]
}

/// Exactly the planted differences, and nothing else.
pub fn assert_exactly(run: &AuditRun, expected: &[(String, String)]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    let listed = run.listed();
    assert_eq!(listed.len(), expected.len(), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("{} differences", expected.len())),
        "{run:?}"
    );
    for (starts, contains) in expected {
        assert!(
            listed
                .iter()
                .any(|line| line.starts_with(starts.as_str()) && line.contains(contains.as_str())),
            "no difference {starts}…{contains} in {run:?}"
        );
    }
}

/// A flood in two parts on a campaign of 500 coupons, 16 requests at a time: its first
/// `FIRST_USERS` users to the end, then (`resume`) the rest of 2,000 in the background.
/// A test holds decisions back between the two, so that the second part is surely
/// accepted into the log and decided only later, however fast the machine.
pub struct BackgroundFlood {
    pub campaign_id: String,
    pub accepted: Arc<AtomicUsize>,
    clients: Vec<Client>,
    first: super::flood::Outcome,
    rest: Option<tokio::task::JoinHandle<super::flood::Outcome>>,
}

/// Fewer than the coupons, so that none of the first part is refused as sold out.
pub const FIRST_USERS: usize = 300;

impl BackgroundFlood {
    pub async fn start(clients: &[Client]) -> Self {
        let campaign = clients[0]
            .create_campaign("restored", 500, &rfc3339_in(TimeDelta::zero()))
            .await
            .expect("create");
        let campaign_id = campaign["id"].as_str().expect("id").to_owned();
        let accepted = Arc::new(AtomicUsize::new(0));
        let users = (0..FIRST_USERS).map(|n| format!("flood-{n}")).collect();
        let first = flood(clients, &campaign_id, users, 16, accepted.clone()).await;
        Self {
            campaign_id,
            accepted,
            clients: clients.to_vec(),
            first,
            rest: None,
        }
    }

    /// The rest of the users, in the background.
    pub fn resume(&mut self) {
        let users = (FIRST_USERS..2_000).map(|n| format!("flood-{n}")).collect();
        let (clients, id) = (self.clients.clone(), self.campaign_id.clone());
        let progress = self.accepted.clone();
        self.rest = Some(tokio::spawn(async move {
            flood(&clients, &id, users, 16, progress).await
        }));
    }

    /// Waits until `count` requests are accepted (the middle of the flood). Keep it
    /// below the 500 coupons unless decisions are held: once a node learns of the
    /// sell-out it refuses the rest.
    pub async fn until_accepted(&self, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.accepted.load(std::sync::atomic::Ordering::Relaxed) < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{count} requests never accepted"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The flood's end: every accepted ticket final.
    pub async fn finish(self, client: &Client) -> HashMap<String, Value> {
        let mut accepted = self.first.accepted;
        if let Some(rest) = self.rest {
            accepted.extend(rest.await.expect("flood task").accepted);
        }
        let tickets: Vec<String> = accepted.into_iter().map(|(t, _)| t).collect();
        client.await_final(&tickets, Duration::from_secs(120)).await
    }
}
