//! Runs the project's built binaries as child processes, as an operator would.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::connect::Client;

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(binary: &str, args: &[&str], log: &Path) -> Self {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn binary");
        Self { child }
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for it to exit by itself; `None` if it is still running at `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Asserts that it refuses to run: exits by itself, non-zero, within `limit`.
    /// Returns its log (written to `log`), to check what it said.
    pub async fn refused(mut self, limit: Duration, log: &Path) -> String {
        let status = self.exit_within(limit).await;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let name = log.display();
        let status = status.unwrap_or_else(|| panic!("{name}: still running:\n{text}"));
        assert!(!status.success(), "{name}: exited {status}:\n{text}");
        text
    }

    /// SIGSTOP freezes it, SIGCONT resumes it, SIGTERM asks it to stop.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until the server answers its health check.
pub async fn wait_healthy(client: &Client, limit: Duration) {
    let deadline = Instant::now() + limit;
    while client.health().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not become healthy in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
