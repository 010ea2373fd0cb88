//! gRPC server reflection, through the tool users already have: `grpcurl` (installed by
//! scripts/install-build-deps.sh) lists, describes and calls the services of a real
//! embedded server without the proto files, as the READMEs show.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::embedded::Server;

/// `grpcurl` on the PATH, or where `go install` puts it.
fn grpcurl() -> PathBuf {
    if let Ok(path) = std::env::var("GRPCURL") {
        return PathBuf::from(path);
    }
    let on_path = Command::new("grpcurl").arg("-version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return PathBuf::from("grpcurl");
    }
    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .expect("grpcurl is not on the PATH and go is missing: run scripts/install-build-deps.sh");
    let path = PathBuf::from(String::from_utf8_lossy(&gopath.stdout).trim()).join("bin/grpcurl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-build-deps.sh",
        path.display()
    );
    path
}

/// `grpcurl -plaintext FLAGS ADDRESS COMMAND` against `server` (h2c).
fn grpcurl_at(server: &Server, flags: &[&str], command: &[&str]) -> std::process::Output {
    Command::new(grpcurl())
        .arg("-plaintext")
        .args(flags)
        .arg(server.running.addr.to_string())
        .args(command)
        .output()
        .expect("grpcurl runs")
}

/// Its stdout, or a panic with its stderr.
fn run(server: &Server, command: &[&str]) -> String {
    let output = grpcurl_at(server, &[], command);
    assert!(
        output.status.success(),
        "grpcurl {command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_the_services_through_reflection() {
    let server = Server::start(Default::default()).await;
    let (server, listed) = tokio::task::spawn_blocking(move || {
        let listed = run(&server, &["list"]);
        (server, listed)
    })
    .await
    .expect("list");
    for service in [
        "coupon.v1.CampaignService",
        "coupon.v1.CouponService",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} in:\n{listed}"
        );
    }

    let server = tokio::task::spawn_blocking(move || {
        let described = run(&server, &["describe", "coupon.v1.CouponService"]);
        assert!(described.contains("rpc IssueCoupon"), "{described}");
        assert!(described.contains("rpc GetIssueResult"), "{described}");
        let message = run(&server, &["describe", "coupon.v1.IssueCouponRequest"]);
        assert!(message.contains("campaign_id"), "{message}");
        // A call made from the schema reflection gave: validation names the field.
        let created = grpcurl_at(
            &server,
            &["-d", r#"{"name":"","totalCoupons":1}"#],
            &["coupon.v1.CampaignService/CreateCampaign"],
        );
        let said = String::from_utf8_lossy(&created.stderr);
        assert!(
            !created.status.success() && said.contains("InvalidArgument"),
            "{said}"
        );
        server
    })
    .await
    .expect("describe and call");
    drop(server);
}
