//! Generates the Connect service traits and buffa messages from `proto/`, and the
//! descriptor set that gRPC server reflection serves.
//! protoc comes from the `protoc-bin-vendored` crate, so a fresh machine needs none.

/// In `OUT_DIR`; embedded by `interfaces::rpc::server`.
const DESCRIPTOR_SET: &str = "coupon.fds.bin";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; connectrpc-build reads PROTOC from the env.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let well_known = protoc_bin_vendored::include_path()?;
    connectrpc_build::Config::new()
        .files(&[
            "proto/coupon/v1/coupon.proto",
            "proto/google/rpc/error_details.proto",
        ])
        .includes(&["proto/".into(), well_known])
        .include_file("_connectrpc.rs")
        // What the gRPC server reflection serves (interfaces::rpc::server).
        .emit_descriptor_set(DESCRIPTOR_SET)
        .compile()?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
