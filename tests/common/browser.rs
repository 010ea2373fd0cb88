//! A headless Chromium driven over WebDriver: Debian's `chromedriver` on a free loopback
//! port, killed (with the browser it started) when dropped. Helpers read the page with
//! small scripts and wait with deadlines, never with bare sleeps.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::process::free_port;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a step may take before the test fails, unless it says otherwise.
pub const STEP: Duration = Duration::from_secs(15);

/// chromedriver and everything it started (its own process group), killed on drop.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group: chromedriver's browsers too, which would outlive it otherwise.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub struct Browser {
    pub client: Client,
    /// Where the browser saves downloads.
    pub downloads: tempfile::TempDir,
    // Last: dropped after the session it serves.
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails, naming the script to
    /// run, when they are not installed: the test must not pass by skipping.
    pub async fn start() -> Self {
        for (path, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{what} is not installed at {path}: run scripts/install-browser.sh"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let driver = Driver { child };
        let url = format!("http://127.0.0.1:{port}");
        await_ready(&url).await;

        let downloads = tempfile::tempdir().expect("downloads dir");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"],
                "prefs": {
                    "download.default_directory": downloads.path().to_str().expect("utf-8 path"),
                    "download.prompt_for_download": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a WebDriver session with headless Chromium");
        Self {
            client,
            downloads,
            _driver: driver,
        }
    }

    /// Ends the session (the browser quits); the driver goes when `self` is dropped.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs a script in the page; `arguments[0..]` are `args`.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The text of the first element matching `css` (None: no such element).
    pub async fn text(&self, css: &str) -> Option<String> {
        let found = self
            .run(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await;
        found.as_str().map(str::to_owned)
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let found = self
            .run(
                "const e = document.querySelector(arguments[0]); \
                 return e ? e.getAttribute(arguments[1]) : null;",
                vec![json!(css), json!(name)],
            )
            .await;
        found.as_str().map(str::to_owned)
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> u64 {
        self.run(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .await
        .as_u64()
        .unwrap_or(0)
    }

    /// Whether an element matching `css` exists and is shown.
    pub async fn visible(&self, css: &str) -> bool {
        self.run(
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getClientRects().length > 0;",
            vec![json!(css)],
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    /// Waits until a visible element matching `css` has text `matches` accepts; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, matches: impl Fn(&str) -> bool) -> String {
        self.wait_text_within(css, what, STEP, matches).await
    }

    /// `wait_text` with its own time limit.
    pub async fn wait_text_within(
        &self,
        css: &str,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            let text = match self.visible(css).await {
                true => self.text(css).await,
                false => None,
            };
            if let Some(text) = text.as_deref().filter(|t| matches(t)) {
                return text.to_owned();
            }
            assert!(
                started.elapsed() < limit,
                "{what}: `{css}` never matched (last text {text:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matching `css` is shown.
    pub async fn wait_visible(&self, css: &str) {
        let shown = wait_until(&format!("`{css}` shown"), STEP, || async {
            self.visible(css).await.then_some(())
        })
        .await;
        shown.unwrap_or_else(|| panic!("`{css}` was never shown"));
    }

    /// Waits for the element and clicks it, as a user would.
    pub async fn click(&self, css: &str) {
        self.wait_visible(css).await;
        // In the middle of the window: never under a sticky header.
        self.run(
            "document.querySelector(arguments[0]).scrollIntoView({ block: 'center' });",
            vec![json!(css)],
        )
        .await;
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Replaces the value of an input by typing `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_visible(css).await;
        let input = self.element(css).await;
        input.clear().await.expect("clear the input");
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.element(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in `{css}`: {e}"));
    }

    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find `{css}`: {e}"))
    }

    /// Waits for a finished download named `name` (Chromium writes `.crdownload` first).
    pub async fn downloaded(&self, name: &str, limit: Duration) -> PathBuf {
        let path = self.downloads.path().join(name);
        let partial = self.downloads.path().join(format!("{name}.crdownload"));
        let done = wait_until(&format!("download {name}"), limit, || async {
            (path.exists() && !partial.exists()).then_some(())
        })
        .await;
        done.unwrap_or_else(|| {
            let listing: Vec<_> = std::fs::read_dir(self.downloads.path())
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            panic!("{name} was never downloaded (the downloads dir holds {listing:?})")
        });
        path
    }
}

/// PNG screenshots of the steps, numbered, in `target/console-screenshots/`.
pub struct Screenshots {
    dir: PathBuf,
    next: u32,
}

impl Screenshots {
    pub fn in_target() -> Self {
        // CARGO_TARGET_TMPDIR is <target>/tmp: the screenshots go beside it.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir");
        let dir = target.join("console-screenshots");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        Self { dir, next: 1 }
    }

    pub async fn take(&mut self, browser: &Browser, step: &str) {
        let png = browser.client.screenshot().await.expect("screenshot");
        let path = self.dir.join(format!("{:02}-{step}.png", self.next));
        std::fs::write(&path, png).expect("write the screenshot");
        println!("screenshot: {}", path.display());
        self.next += 1;
    }
}

/// Polls `check` every 100 ms until it gives a value, at most for `limit`; None if it
/// never did. `what` names the wait in the log when it is slow.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            if started.elapsed() > Duration::from_secs(3) {
                println!("waited {:.1?} for {what}", started.elapsed());
            }
            return Some(value);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until chromedriver answers its status endpoint.
async fn await_ready(url: &str) {
    let http = reqwest::Client::new();
    let status = format!("{url}/status");
    let ready = wait_until("chromedriver", Duration::from_secs(20), || async {
        let answer = http.get(&status).send().await.ok()?;
        let body: Value = answer.json().await.ok()?;
        body["value"]["ready"].as_bool().filter(|&ready| ready)
    })
    .await;
    assert!(ready.is_some(), "chromedriver did not answer on {url}");
}
