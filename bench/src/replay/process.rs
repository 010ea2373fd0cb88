//! The service's binaries as processes: started with flags, stopped with SIGTERM, their
//! `/metrics` read for the decision phases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A built binary of the workspace (`target/release/…`), next to this one or, from a
/// test, next to its `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this binary's path");
    let found = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|path| path.exists());
    found.unwrap_or_else(|| panic!("{name} is not built: cargo build --release --workspace --bins"))
}

pub struct Service {
    child: Child,
}

impl Service {
    pub fn spawn(binary: &Path, args: &[String], log: &Path) -> Self {
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the binary");
        Self { child }
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..400 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds spent per phase of the decision batches (`coupon_decision_phase_seconds_sum`).
pub async fn decision_phases(metrics_url: &str) -> Vec<(String, f64)> {
    let Ok(response) = reqwest::get(metrics_url).await else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("coupon_decision_phase_seconds_sum{phase=\"")?;
            let (phase, value) = rest.split_once("\"} ")?;
            Some((phase.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Runs `binary audit …` and returns whether it found the store identical.
pub async fn audit(binary: &Path, args: &[String]) -> bool {
    let output = tokio::process::Command::new(binary)
        .arg("audit")
        .args(args)
        .output()
        .await
        .expect("run audit");
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    output.status.success()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
