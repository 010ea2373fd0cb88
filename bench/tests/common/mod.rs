//! What the bench's tests share: an embedded server in a temp dir, and a run of the
//! built `coupon-bench` that must succeed.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use coupon::modes::{ServeArgs, embedded};
use serde_json::Value;

/// An embedded server with its data dir at `dir/data`, on a free loopback port.
pub async fn start_server(dir: &Path) -> embedded::Running {
    embedded::start(embedded::EmbeddedArgs {
        data_dir: dir.join("data"),
        admin: Default::default(),
        serve: ServeArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..ServeArgs::DEFAULT
        },
        telemetry: Default::default(),
    })
    .await
    .expect("server")
}

/// Runs `coupon-bench` with `args`; it must exit 0. Its stdout and the JSON it wrote
/// to `json`.
pub async fn bench(args: Vec<String>, json: &Path) -> (String, Value) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_coupon-bench"))
            .args(args)
            .output()
    })
    .await
    .expect("join")
    .expect("run coupon-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "coupon-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let report = serde_json::from_slice(&std::fs::read(json).expect("json")).expect("parse");
    (stdout, report)
}
