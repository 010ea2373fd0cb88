//! The documents stay true (issue 16): the READMEs' examples are run against a real
//! server, the ERDs are compared with the migrations, and the Korean README keeps its
//! outline.
//!
//! **Which examples run.** A fenced block whose info string is `sh test`
//! (` ```sh test `, rendered as plain `sh` by GitHub) in README.md or README.ko.md is
//! run by [`readme_examples_run_against_a_real_embedded_server`]. In such a block:
//! - assignment lines (`H=…; URL=…`) are kept and run before every command;
//! - a `curl` command is run by `bash` against an embedded server started by the test
//!   (`http://127.0.0.1:8080` becomes its address). In its `-d '…'` JSON body,
//!   `campaignId` becomes the campaign the block's last CreateCampaign made, `ticketId`
//!   the ticket of its last IssueCoupon, and `startsAt` the current instant (so the
//!   campaign has started when the next call asks for a coupon);
//! - the `# → …` line under a command is the documented answer: it must be HTTP 200
//!   with a JSON body holding every key shown, nested as shown, each of the type shown
//!   (`"…"` a string, a number, `{…}` an object, `[…]` an array, `…` anything), and
//!   every value written in capitals (`ISSUE_STATUS_ISSUED`, `SERVING`) exactly. When
//!   the documented answer is `ISSUE_STATUS_PENDING`, the test holds the issuing worker
//!   back (a write lock on the state database) and polls a fresh ticket behind another;
//! - `target/release/coupon-bench …` is run as written but shorter and slower
//!   (`--duration 1 --rate 500`), in a temp dir, and must exit 0; its `# → run.json …`
//!   line is checked against the JSON file it wrote;
//! - `cargo build --release --workspace --bins` and `target/release/coupon &` are the
//!   reader's setup, done by the test itself; any other line fails the test, so a new
//!   kind of example needs this test taught how to run it.
//!
//! Both READMEs must hold the same commands and documented answers in their tested
//! blocks, in any order (comments may differ).
//!
//! **ERD.** Every `erDiagram` block of docs/architecture.md and the READMEs names the
//! migrations it draws on its first line (`%% migrations/sqlite`, `…/sqlite-log`,
//! `…/postgres`) and must list exactly the tables and columns those migrations leave,
//! with their declared types and their PK / FK / UK markers. The SQLite schemas are
//! read from an in-memory database the migrations ran on; the PostgreSQL one from the
//! migration files by a small parser of the statements they use (an unknown statement
//! fails the test), which [`postgres_parser_agrees_with_a_migrated_database`] checks
//! against a real migrated PostgreSQL.
//!
//! **Outline.** README.ko.md's `##` and `###` headings are exactly [`KOREAN_OUTLINE`].

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::embedded::Server;
use serde_json::Value;

const READMES: [&str; 2] = ["README.md", "README.ko.md"];
const TESTED_INFO: &str = "sh test";
const DOCUMENTED_ADDRESS: &str = "http://127.0.0.1:8080";
const ARCHITECTURE: &str = "docs/architecture.md";
const MIGRATION_DIRS: [&str; 3] = ["sqlite", "sqlite-log", "postgres"];

/// The `##` and `###` headings of README.ko.md, in order (issue 16's outline).
const KOREAN_OUTLINE: [&str; 16] = [
    "## 1. 개요",
    "## 2. 기술 선택",
    "### 2.1 고려 사항",
    "## 3. 아키텍처",
    "### 3.1 파일트리",
    "### 3.2 시퀀스 다이어그램",
    "### 3.3 ERD",
    "## 4. 핵심 문제 해결 전략",
    "### 4.1 문제 해석",
    "### 4.2 동시성 제어",
    "### 4.3 기타 해결 전략",
    "## 5. 실행 및 테스트 방법",
    "### 5.1 시스템 실행",
    "### 5.2 부하 테스트 실행",
    "## 6. 테스트 결과 및 결론",
    "## 7. 향후 개선 과제",
];

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Fenced blocks

struct Fenced {
    /// Where the block starts, for messages (`README.md:512`).
    at: String,
    info: String,
    lines: Vec<String>,
}

fn fenced_blocks(file: &str) -> Vec<Fenced> {
    let text = read(file);
    let mut blocks = Vec::new();
    let mut open: Option<Fenced> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some(Fenced {
                        at: format!("{file}:{}", number + 1),
                        info: info.trim().to_owned(),
                        lines: Vec::new(),
                    });
                }
            }
            Some(block) => {
                if trimmed.starts_with("```") {
                    blocks.extend(open.take());
                } else {
                    block.lines.push(line.to_owned());
                }
            }
        }
    }
    assert!(open.is_none(), "{file}: a fenced block is never closed");
    blocks
}

// ---------------------------------------------------------------------------------------
// Tested shell examples

#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// `H=…; URL=…`: run before every command of the block.
    Assignment(String),
    /// Done by the test itself (building, starting the server).
    Setup(String),
    Curl(String),
    Bench(String),
    /// `# → …`: the documented answer of the command above.
    Answer(String),
}

const SETUP: [&str; 2] = [
    "cargo build --release --workspace --bins",
    "target/release/coupon &",
];

/// The block's logical lines (continuations joined), comments other than answers dropped.
fn parse_example(block: &Fenced) -> Vec<Line> {
    let mut joined: Vec<String> = Vec::new();
    let mut continuing = false;
    for raw in &block.lines {
        let line = raw.trim();
        let (text, continues) = match line.strip_suffix('\\') {
            Some(head) => (head.trim_end(), true),
            None => (line, false),
        };
        match (continuing, joined.last_mut()) {
            (true, Some(last)) => {
                last.push(' ');
                last.push_str(text.trim_start());
            }
            _ => joined.push(text.to_owned()),
        }
        continuing = continues;
    }
    let mut lines = Vec::new();
    for line in joined {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(answer) = line.strip_prefix("# →") {
            lines.push(Line::Answer(answer.trim().to_owned()));
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with("curl ") {
            lines.push(Line::Curl(line.to_owned()));
        } else if line.starts_with("target/release/coupon-bench ") {
            lines.push(Line::Bench(line.to_owned()));
        } else if is_assignment(line) {
            lines.push(Line::Assignment(line.to_owned()));
        } else {
            let command = without_comment(line);
            assert!(
                SETUP.contains(&command),
                "{}: the tested block has a line this test cannot run: {line:?} \
                 (teach tests/readme_examples.rs, or move it out of the `{TESTED_INFO}` block)",
                block.at
            );
            lines.push(Line::Setup(command.to_owned()));
        }
    }
    lines
}

/// `NAME=value` (several joined by `;` allowed), nothing else.
fn is_assignment(line: &str) -> bool {
    line.split(';').map(str::trim).all(|part| {
        part.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
    })
}

/// A command line without its trailing `  # comment` (the setup lines have no quotes).
fn without_comment(line: &str) -> &str {
    line.split(" #").next().unwrap_or(line).trim()
}

/// The tested blocks of one README.
fn tested_examples(file: &str) -> Vec<(String, Vec<Line>)> {
    fenced_blocks(file)
        .into_iter()
        .filter(|b| b.info == TESTED_INFO)
        .map(|b| {
            let lines = parse_example(&b);
            (b.at, lines)
        })
        .collect()
}

/// What the documented answer promises, parsed leniently (`…` stands for anything).
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Object(Vec<(String, Shape)>),
    Array,
    String(String),
    Number,
    Any,
}

struct ShapeParser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl ShapeParser<'_> {
    fn parse(text: &str) -> Shape {
        let mut parser = ShapeParser {
            chars: text.chars().peekable(),
        };
        let shape = parser.value();
        parser.skip_space();
        assert!(
            parser.chars.peek().is_none(),
            "documented answer {text:?}: trailing text"
        );
        shape
    }

    fn skip_space(&mut self) {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn value(&mut self) -> Shape {
        self.skip_space();
        match self.chars.peek().copied() {
            Some('{') => {
                self.chars.next();
                self.object()
            }
            Some('[') => {
                let mut depth = 0;
                for c in self.chars.by_ref() {
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                }
                Shape::Array
            }
            Some('"') => Shape::String(self.string()),
            Some('…') => {
                self.chars.next();
                Shape::Any
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                while self
                    .chars
                    .peek()
                    .is_some_and(|c| *c == '-' || *c == '.' || c.is_ascii_digit())
                {
                    self.chars.next();
                }
                Shape::Number
            }
            other => panic!("documented answer: unexpected {other:?}"),
        }
    }

    fn string(&mut self) -> String {
        assert_eq!(self.chars.next(), Some('"'));
        let mut text = String::new();
        for c in self.chars.by_ref() {
            if c == '"' {
                return text;
            }
            text.push(c);
        }
        panic!("documented answer: unterminated string")
    }

    fn object(&mut self) -> Shape {
        let mut fields = Vec::new();
        loop {
            self.skip_space();
            match self.chars.peek().copied() {
                Some('}') => {
                    self.chars.next();
                    return Shape::Object(fields);
                }
                Some(',') | Some('…') => {
                    self.chars.next();
                }
                Some('"') => {
                    let key = self.string();
                    self.skip_space();
                    assert_eq!(self.chars.next(), Some(':'), "documented answer: {key}:");
                    fields.push((key, self.value()));
                }
                other => panic!("documented answer: unexpected {other:?} in an object"),
            }
        }
    }
}

/// A documented literal that must come back exactly: an enum value or a status.
fn is_exact_literal(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_uppercase())
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn check_shape(shape: &Shape, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (shape, actual) {
        (Shape::Any, _) | (Shape::Array, Value::Array(_)) | (Shape::Number, Value::Number(_)) => {}
        (Shape::String(documented), Value::String(got)) => {
            if is_exact_literal(documented) && documented != got {
                problems.push(format!("{path}: documented {documented:?}, got {got:?}"));
            }
        }
        (Shape::Object(fields), Value::Object(map)) => {
            for (key, shape) in fields {
                let path = format!("{path}.{key}");
                match map.get(key) {
                    Some(value) => check_shape(shape, value, &path, problems),
                    None => problems.push(format!("{path}: documented, missing from the answer")),
                }
            }
        }
        (shape, actual) => problems.push(format!("{path}: documented {shape:?}, got {actual}")),
    }
}

/// The `-d '…'` body of a curl command: (start, end) of the JSON between the quotes.
fn body_span(command: &str) -> Option<(usize, usize)> {
    let start = command.find("-d '")? + 4;
    let len = command[start..].find('\'')?;
    Some((start, start + len))
}

/// What earlier answers of a block made, for later commands.
#[derive(Default)]
struct Made {
    campaign: Option<String>,
    ticket: Option<String>,
}

struct Run<'a> {
    server: &'a Server,
    base: String,
    at: String,
}

impl Run<'_> {
    fn prelude(&self, assignments: &[String]) -> String {
        assignments
            .iter()
            .map(|a| a.replace(DOCUMENTED_ADDRESS, &self.base))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The command with the ids the server handed out, and the server's address.
    fn substitute(&self, command: &str, made: &Made, pending: Option<&str>) -> String {
        let command = command.replace(DOCUMENTED_ADDRESS, &self.base);
        let Some((start, end)) = body_span(&command) else {
            return command;
        };
        let at = &self.at;
        let mut body: Value = serde_json::from_str(&command[start..end])
            .unwrap_or_else(|e| panic!("{at}: the body of {command:?} is not JSON: {e}"));
        let fields = body.as_object_mut().expect("a JSON object body");
        if fields.contains_key("campaignId") {
            let id = made.campaign.as_deref().unwrap_or_else(|| {
                panic!("{at}: {command:?} names a campaign before any CreateCampaign")
            });
            fields.insert("campaignId".into(), id.into());
        }
        if fields.contains_key("ticketId") {
            let ticket = pending.or(made.ticket.as_deref()).unwrap_or_else(|| {
                panic!("{at}: {command:?} names a ticket before any IssueCoupon")
            });
            fields.insert("ticketId".into(), ticket.into());
        }
        if fields.contains_key("startsAt") {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            fields.insert("startsAt".into(), now.into());
        }
        let body = serde_json::to_string(&body).expect("JSON");
        assert!(!body.contains('\''), "{at}: a body with a quote");
        format!("{}{body}{}", &command[..start], &command[end..])
    }

    async fn curl(&self, script: String) -> (u16, Value, String) {
        let script = format!("{script} -w '\\n%{{http_code}}'");
        let out = run_bash(script.clone(), None).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = &self.at;
        assert!(
            out.status.success(),
            "{at}: {script}\nexited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, code) = stdout
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("{at}: {script}: no status line in {stdout:?}"));
        let code: u16 = code.trim().parse().expect("HTTP status");
        let json = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{at}: {script}\nanswered {body:?}: not JSON: {e}"));
        (code, json, script)
    }

    /// A ticket that stays PENDING while `hold` lasts, with one more ahead of it.
    async fn pending_ticket(&self, campaign: &str) -> String {
        let client = &self.server.client;
        client
            .issue(campaign, "readme-pending-1")
            .await
            .expect("issue");
        let behind = client
            .issue(campaign, "readme-pending-2")
            .await
            .expect("issue");
        behind["ticketId"].as_str().expect("ticketId").to_owned()
    }
}

async fn run_bash(script: String, dir: Option<PathBuf>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new("bash");
        // The examples talk to a loopback server: never through a proxy.
        command
            .arg("-c")
            .arg(&script)
            .env("no_proxy", "127.0.0.1,localhost")
            .env("NO_PROXY", "127.0.0.1,localhost");
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command.output()
    })
    .await
    .expect("join")
    .expect("run bash")
}

/// Runs one tested block against `server`.
async fn run_example(server: &Server, at: &str, lines: &[Line]) {
    let run = Run {
        server,
        base: format!("http://{}", server.running.addr),
        at: at.to_owned(),
    };
    let mut assignments = Vec::new();
    let mut made = Made::default();
    let mut ran = 0;
    for (i, line) in lines.iter().enumerate() {
        let answer = match lines.get(i + 1) {
            Some(Line::Answer(answer)) => Some(answer.as_str()),
            _ => None,
        };
        match line {
            Line::Assignment(a) => assignments.push(a.clone()),
            Line::Setup(_) => {}
            Line::Answer(answer) => assert!(
                matches!(
                    i.checked_sub(1).map(|j| &lines[j]),
                    Some(Line::Curl(_) | Line::Bench(_))
                ),
                "{at}: the documented answer {answer:?} follows no command"
            ),
            Line::Curl(command) => {
                ran += 1;
                let shape = answer.map(ShapeParser::parse);
                let wants_pending = answer.is_some_and(|a| a.contains("ISSUE_STATUS_PENDING"));
                let hold = wants_pending.then(|| server.hold_decisions());
                let pending = match (&hold, made.campaign.as_deref()) {
                    (Some(_), Some(campaign)) => Some(run.pending_ticket(campaign).await),
                    _ => None,
                };
                let command = run.substitute(command, &made, pending.as_deref());
                let script = format!("{}\n{command}", run.prelude(&assignments));
                let (code, json, script) = run.curl(script).await;
                if let Some(hold) = hold {
                    hold.release();
                }
                assert_eq!(code, 200, "{at}: {script}\nanswered {code}: {json}");
                if let Some(shape) = shape {
                    let mut problems = Vec::new();
                    check_shape(&shape, &json, "answer", &mut problems);
                    assert!(
                        problems.is_empty(),
                        "{at}: {script}\nanswered {json}\nwhich is not the documented shape:\n  {}",
                        problems.join("\n  ")
                    );
                }
                if let Some(id) = json.pointer("/campaign/id").and_then(Value::as_str)
                    && command.contains("/CreateCampaign")
                {
                    made.campaign = Some(id.to_owned());
                }
                if let Some(ticket) = json["ticketId"].as_str()
                    && command.contains("/IssueCoupon")
                {
                    made.ticket = Some(ticket.to_owned());
                }
            }
            Line::Bench(command) => {
                ran += 1;
                run_bench(&run, command, answer).await;
            }
        }
    }
    assert!(ran > 0, "{at}: a tested block with nothing to run");
}

/// The bench example, shorter and slower; exit 0 and the documented report keys.
async fn run_bench(run: &Run<'_>, command: &str, answer: Option<&str>) {
    let at = &run.at;
    let binary = common::cluster::binary("coupon-bench");
    let mut tokens: Vec<String> = command
        .replace(DOCUMENTED_ADDRESS, &run.base)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    tokens[0] = binary.display().to_string();
    for (flag, value) in [("--duration", "1"), ("--rate", "500")] {
        if let Some(i) = tokens.iter().position(|t| t == flag) {
            tokens[i + 1] = value.to_owned();
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let script = tokens.join(" ");
    let out = run_bash(script.clone(), Some(dir.path().to_owned())).await;
    assert!(
        out.status.success(),
        "{at}: {script}\nexited {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("invariants: all hold"),
        "{at}: {script}\n{stdout}"
    );
    let Some(answer) = answer else {
        return;
    };
    let (file, shape) = answer
        .split_once(' ')
        .unwrap_or_else(|| panic!("{at}: the bench's answer line names its file first"));
    let file = file.trim_end_matches(':');
    let written = std::fs::read(dir.path().join(file))
        .unwrap_or_else(|e| panic!("{at}: {script} wrote no {file}: {e}"));
    let json: Value = serde_json::from_slice(&written).expect("the bench's JSON");
    let mut problems = Vec::new();
    check_shape(&ShapeParser::parse(shape), &json, file, &mut problems);
    assert!(
        problems.is_empty(),
        "{at}: {file} is not the documented shape:\n  {}",
        problems.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readme_examples_run_against_a_real_embedded_server() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "curl is needed to run the READMEs' examples (Debian: apt-get install curl)"
    );
    for file in READMES {
        let examples = tested_examples(file);
        assert!(
            examples
                .iter()
                .any(|(_, l)| l.iter().any(|l| matches!(l, Line::Curl(_)))),
            "{file}: no `{TESTED_INFO}` block with a curl call"
        );
        for (at, lines) in examples {
            // A fresh server per block: ids and positions start from nothing.
            let server = Server::start(Default::default()).await;
            run_example(&server, &at, &lines).await;
            println!("{at}: ran");
            server.running.shutdown_token().cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), server.running.wait()).await;
        }
    }
}

#[test]
fn both_readmes_hold_the_same_tested_commands() {
    // Blocks in any order (the sections differ between the two languages), each block's
    // lines in order.
    let blocks = |file| -> Vec<Vec<Line>> {
        let mut blocks: Vec<Vec<Line>> = tested_examples(file)
            .into_iter()
            .map(|(_, lines)| lines)
            .collect();
        blocks.sort_by_key(|lines| format!("{lines:?}"));
        blocks
    };
    let (english, korean) = (blocks(READMES[0]), blocks(READMES[1]));
    let only_in = |these: &[Vec<Line>], those: &[Vec<Line>]| -> Vec<String> {
        let those: Vec<&Line> = those.iter().flatten().collect();
        these
            .iter()
            .flatten()
            .filter(|line| !those.contains(line))
            .map(|line| format!("{line:?}"))
            .collect()
    };
    assert!(
        english == korean,
        "the `{TESTED_INFO}` blocks of README.md and README.ko.md differ (change both):\n\
         only in README.md:\n  {}\nonly in README.ko.md:\n  {}\n(blocks: {} and {})",
        only_in(&english, &korean).join("\n  "),
        only_in(&korean, &english).join("\n  "),
        english.len(),
        korean.len()
    );
}

#[test]
fn the_korean_readme_has_exactly_the_outline() {
    let text = read("README.ko.md");
    let mut in_fence = false;
    let mut headings = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence && (line.starts_with("## ") || line.starts_with("### ")) {
            headings.push(line.trim_end().to_owned());
        }
    }
    assert_eq!(
        headings, KOREAN_OUTLINE,
        "README.ko.md's ## and ### headings must be exactly issue 16's outline"
    );
}

// ---------------------------------------------------------------------------------------
// Schemas and the ERD

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    ty: String,
    keys: BTreeSet<String>,
}

/// Table → column → type and key markers.
type Schema = BTreeMap<String, BTreeMap<String, Column>>;

fn migration_files(dir: &str) -> Vec<(String, String)> {
    let path = repo_file(&format!("migrations/{dir}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", path.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("migration");
            (p.display().to_string(), text)
        })
        .collect()
}

/// The schema SQLite's migrations leave, read back from a database they ran on.
fn sqlite_schema(dir: &str) -> Schema {
    let conn = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
    for (file, sql) in migration_files(dir) {
        conn.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let strings = |sql: &str| -> Vec<String> {
        let mut select = conn.prepare(sql).expect("prepare");
        select
            .query_map([], |row| row.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let mut schema = Schema::new();
    for table in strings(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    ) {
        let mut columns = BTreeMap::new();
        let mut info = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .expect("table_info");
        let rows = info
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>("name")?,
                    row.get::<_, String>("type")?,
                    row.get::<_, i64>("pk")?,
                ))
            })
            .expect("table_info rows");
        for row in rows {
            let (name, ty, pk) = row.expect("column");
            let mut keys = BTreeSet::new();
            if pk > 0 {
                keys.insert("PK".to_owned());
            }
            columns.insert(
                name,
                Column {
                    ty: ty.to_lowercase(),
                    keys,
                },
            );
        }
        for column in strings(&format!(
            "SELECT \"from\" FROM pragma_foreign_key_list('{table}')"
        )) {
            mark(&mut columns, &column, "FK");
        }
        for index in strings(&format!(
            "SELECT name FROM pragma_index_list('{table}') WHERE \"unique\" = 1 AND origin = 'u'"
        )) {
            for column in strings(&format!("SELECT name FROM pragma_index_info('{index}')")) {
                mark(&mut columns, &column, "UK");
            }
        }
        schema.insert(table, columns);
    }
    schema
}

fn mark(columns: &mut BTreeMap<String, Column>, column: &str, key: &str) {
    columns
        .get_mut(column)
        .unwrap_or_else(|| panic!("a key on unknown column {column}"))
        .keys
        .insert(key.to_owned());
}

/// A table as the PostgreSQL migrations build it: columns and named constraints.
#[derive(Default)]
struct PgTable {
    columns: BTreeMap<String, String>,
    /// Constraint name → (kind: PK / UK / FK / CHECK, columns).
    constraints: BTreeMap<String, (&'static str, Vec<String>)>,
}

/// The schema PostgreSQL's migrations leave, from their statements. Knows the forms
/// they use; anything else fails, so a new form teaches this parser first.
fn postgres_schema() -> Schema {
    let mut tables: BTreeMap<String, PgTable> = BTreeMap::new();
    for (file, sql) in migration_files("postgres") {
        let code: String = sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in code.split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let statement = words.join(" ");
            if statement.is_empty() {
                continue;
            }
            let upper = statement.to_uppercase();
            if let Some(rest) = upper.strip_prefix("CREATE TABLE ") {
                let name = rest.split_whitespace().next().expect("name").to_lowercase();
                let open = statement.find('(').expect("(");
                let close = statement.rfind(')').expect(")");
                let mut table = PgTable::default();
                for item in split_top_level(&statement[open + 1..close]) {
                    pg_table_item(&mut table, &item, &file);
                }
                tables.insert(name, table);
            } else if let Some(rest) = upper.strip_prefix("ALTER TABLE ") {
                let name = rest.split_whitespace().next().expect("name").to_lowercase();
                let actions = &statement["ALTER TABLE ".len() + name.len()..];
                let table = tables
                    .get_mut(&name)
                    .unwrap_or_else(|| panic!("{file}: ALTER TABLE of unknown {name}"));
                for action in split_top_level(actions) {
                    pg_alter(table, &action, &file);
                }
            } else if upper.starts_with("CREATE INDEX ") {
                // A plain (non-unique) index is no key: the ERD does not show it.
            } else {
                panic!("{file}: a statement tests/readme_examples.rs cannot read: {statement}");
            }
        }
    }
    tables
        .into_iter()
        .map(|(name, table)| {
            let mut columns: BTreeMap<String, Column> = table
                .columns
                .into_iter()
                .map(|(c, ty)| {
                    let keys = BTreeSet::new();
                    (c, Column { ty, keys })
                })
                .collect();
            for (kind, cols) in table.constraints.values() {
                if *kind != "CHECK" {
                    for column in cols {
                        mark(&mut columns, column, kind);
                    }
                }
            }
            (name, columns)
        })
        .collect()
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().expect("item").push(c);
    }
    items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

/// The columns in the first `( … )` of `text`.
fn paren_columns(text: &str) -> Vec<String> {
    let open = text.find('(').expect("(");
    let close = open + text[open..].find(')').expect(")");
    text[open + 1..close]
        .split(',')
        .map(|c| c.trim().to_lowercase())
        .collect()
}

/// (kind, columns) of a table constraint's body (after `CONSTRAINT name`).
fn pg_constraint(body: &str, file: &str) -> (&'static str, Vec<String>) {
    let upper = body.to_uppercase();
    if upper.starts_with("PRIMARY KEY") {
        ("PK", paren_columns(body))
    } else if upper.starts_with("UNIQUE") {
        ("UK", paren_columns(body))
    } else if upper.starts_with("FOREIGN KEY") {
        ("FK", paren_columns(body))
    } else if upper.starts_with("CHECK") {
        ("CHECK", Vec::new())
    } else {
        panic!("{file}: a constraint tests/readme_examples.rs cannot read: {body}")
    }
}

fn pg_table_item(table: &mut PgTable, item: &str, file: &str) {
    let upper = item.to_uppercase();
    if upper.starts_with("CONSTRAINT ") {
        let mut words = item.splitn(3, ' ');
        let name = words.nth(1).expect("constraint name").to_lowercase();
        let body = words.next().expect("constraint body");
        table.constraints.insert(name, pg_constraint(body, file));
        return;
    }
    let known = ["PRIMARY KEY", "UNIQUE", "FOREIGN KEY", "CHECK", "EXCLUDE"];
    assert!(
        !known.iter().any(|k| upper.starts_with(k)),
        "{file}: an unnamed table constraint (the migrations name theirs): {item}"
    );
    let mut words = item.split_whitespace();
    let column = words.next().expect("column").to_lowercase();
    let ty = words.next().expect("type").to_lowercase();
    let inline = ["PRIMARY KEY", "UNIQUE", "REFERENCES"];
    assert!(
        !inline.iter().any(|k| upper.contains(k)),
        "{file}: an inline key constraint (the migrations name theirs): {item}"
    );
    table.columns.insert(column, ty);
}

fn pg_alter(table: &mut PgTable, action: &str, file: &str) {
    let upper = action.to_uppercase();
    let words: Vec<&str> = action.split_whitespace().collect();
    if upper.starts_with("DROP CONSTRAINT ") {
        let name = words[2].to_lowercase();
        assert!(
            table.constraints.remove(&name).is_some(),
            "{file}: drops unknown constraint {name}"
        );
    } else if upper.starts_with("ADD CONSTRAINT ") {
        let name = words[2].to_lowercase();
        let body = words[3..].join(" ");
        table.constraints.insert(name, pg_constraint(&body, file));
    } else if upper.starts_with("ADD COLUMN ") {
        table
            .columns
            .insert(words[2].to_lowercase(), words[3].to_lowercase());
    } else {
        panic!("{file}: an ALTER TABLE action tests/readme_examples.rs cannot read: {action}");
    }
}

/// Every `erDiagram` block of `file`, by the migrations dir its first line names.
fn erds(file: &str) -> Vec<(String, String, Schema)> {
    fenced_blocks(file)
        .into_iter()
        .filter(|b| b.info == "mermaid" && b.lines.first().map(|l| l.trim()) == Some("erDiagram"))
        .map(|block| {
            let marker = block.lines.get(1).map(|l| l.trim()).unwrap_or_default();
            let dir = marker
                .strip_prefix("%% migrations/")
                .unwrap_or_else(|| {
                    panic!(
                        "{}: an erDiagram must name its migrations on its first line \
                         (`%% migrations/sqlite`)",
                        block.at
                    )
                })
                .to_owned();
            let schema = parse_erd(&block);
            (block.at, dir, schema)
        })
        .collect()
}

fn parse_erd(block: &Fenced) -> Schema {
    let mut schema = Schema::new();
    let mut entity: Option<String> = None;
    for line in &block.lines[1..] {
        let line = line.trim();
        if line.is_empty() || line.starts_with("%%") {
            continue;
        }
        match &entity {
            None => {
                if let Some(name) = line.strip_suffix('{') {
                    let name = name.trim().to_owned();
                    schema.entry(name.clone()).or_default();
                    entity = Some(name);
                }
                // Otherwise a relationship line: not part of the check.
            }
            Some(name) => {
                if line == "}" {
                    entity = None;
                    continue;
                }
                let definition = line.split('"').next().unwrap_or(line);
                let mut words = definition.split_whitespace();
                let ty = words.next().expect("type").to_lowercase();
                let column = words.next().expect("column").to_owned();
                let keys: BTreeSet<String> = words
                    .collect::<Vec<_>>()
                    .join(" ")
                    .split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect();
                let columns = schema.get_mut(name).expect("entity");
                assert!(
                    columns
                        .insert(column.clone(), Column { ty, keys })
                        .is_none(),
                    "{}: {name}.{column} drawn twice",
                    block.at
                );
            }
        }
    }
    schema
}

fn schema_differences(drawn: &Schema, migrated: &Schema) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, columns) in migrated {
        let Some(drawn_columns) = drawn.get(table) else {
            problems.push(format!("table {table} is missing"));
            continue;
        };
        for (column, spec) in columns {
            match drawn_columns.get(column) {
                None => problems.push(format!("{table}.{column} is missing")),
                Some(got) if got != spec => problems.push(format!(
                    "{table}.{column}: the migrations say {} {:?}, the ERD {} {:?}",
                    spec.ty, spec.keys, got.ty, got.keys
                )),
                Some(_) => {}
            }
        }
        for column in drawn_columns.keys() {
            if !columns.contains_key(column) {
                problems.push(format!(
                    "{table}.{column} is drawn but no migration makes it"
                ));
            }
        }
    }
    for table in drawn.keys() {
        if !migrated.contains_key(table) {
            problems.push(format!("table {table} is drawn but no migration makes it"));
        }
    }
    problems
}

fn migrated_schema(dir: &str) -> Schema {
    match dir {
        "postgres" => postgres_schema(),
        "sqlite" | "sqlite-log" => sqlite_schema(dir),
        other => panic!("no migrations dir {other}"),
    }
}

#[test]
fn every_migrated_table_and_column_is_in_the_erd() {
    let documented = erds(ARCHITECTURE);
    for dir in MIGRATION_DIRS {
        assert_eq!(
            documented.iter().filter(|(_, d, _)| d == dir).count(),
            1,
            "{ARCHITECTURE} must hold one erDiagram of migrations/{dir}"
        );
    }
    let mut all = documented;
    for file in READMES {
        all.extend(erds(file));
    }
    for (at, dir, drawn) in all {
        let problems = schema_differences(&drawn, &migrated_schema(&dir));
        assert!(
            problems.is_empty(),
            "{at}: the ERD of migrations/{dir} is not what the migrations leave:\n  {}",
            problems.join("\n  ")
        );
    }
}

#[test]
fn the_erd_check_sees_a_change() {
    let mut schema = sqlite_schema("sqlite");
    let original = schema.clone();
    schema.get_mut("coupons").expect("coupons").insert(
        "new_column".into(),
        Column {
            ty: "text".into(),
            keys: BTreeSet::new(),
        },
    );
    assert_eq!(schema_differences(&original, &schema).len(), 1);
    let mut keys = original.clone();
    keys.get_mut("coupons")
        .and_then(|c| c.get_mut("code"))
        .expect("coupons.code")
        .keys
        .insert("PK".into());
    assert_eq!(schema_differences(&original, &keys).len(), 1);
    // The migrations' history: coupons are keyed by (campaign_id, ordinal), not the code.
    for schema in [original, postgres_schema()] {
        let coupons = &schema["coupons"];
        let pk: Vec<&str> = coupons
            .iter()
            .filter(|(_, c)| c.keys.contains("PK"))
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(pk, ["campaign_id", "ordinal"]);
        assert!(coupons.contains_key("ticket_partition"));
    }
}

/// The parser's reading of the PostgreSQL migrations is what PostgreSQL makes of them.
#[tokio::test]
async fn postgres_parser_agrees_with_a_migrated_database() {
    let Some(url) = common::pg::fresh_database().await else {
        return;
    };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await
        .expect("migrate");
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, udt_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tc.table_name::text, k.column_name::text, tc.constraint_type::text \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name \
           AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name \
         WHERE tc.table_schema = 'public' AND tc.table_name <> '_sqlx_migrations' \
           AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("keys");
    let _ = sqlx::Connection::close(conn).await;
    common::pg::drop_database(&url).await;

    let mut real = Schema::new();
    for (table, column, udt) in columns {
        let ty = match udt.as_str() {
            "int8" => "bigint",
            "int4" => "integer",
            "int2" => "smallint",
            other => other,
        };
        real.entry(table).or_default().insert(
            column,
            Column {
                ty: ty.to_owned(),
                keys: BTreeSet::new(),
            },
        );
    }
    for (table, column, kind) in keys {
        let key = match kind.as_str() {
            "PRIMARY KEY" => "PK",
            "UNIQUE" => "UK",
            _ => "FK",
        };
        mark(real.get_mut(&table).expect("table"), &column, key);
    }
    let problems = schema_differences(&postgres_schema(), &real);
    assert!(
        problems.is_empty(),
        "the parsed PostgreSQL schema (as if drawn) differs from the migrated database:\n  {}",
        problems.join("\n  ")
    );
}
