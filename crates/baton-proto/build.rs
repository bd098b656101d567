//! Compiles Baton's own `.proto` files (in this crate's `proto/` folder, so the
//! crate can be packaged) with the pure-Rust `protox` compiler so no system
//! `protoc` is needed, then generates prost messages, pbjson (proto3 JSON)
//! serde impls and, when the `client` or `server` feature asks for them, tonic
//! stubs, all from the same descriptor set.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "google/pubsub/v1/pubsub.proto",
    "google/pubsub/v1/schema.proto",
    "google/iam/v1/iam_policy.proto",
    "google/iam/v1/options.proto",
    "google/iam/v1/policy.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/type/expr.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("baton_descriptor.bin");

    let files: Vec<String> = PROTO_FILES
        .iter()
        .map(|f| format!("{PROTO_ROOT}/{f}"))
        .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let encoded = descriptors.encode_to_vec();
    std::fs::write(&descriptor_path, &encoded)?;

    // Cargo tells a build script which features are on through the environment.
    let client = std::env::var_os("CARGO_FEATURE_CLIENT").is_some();
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_client(client)
        .build_server(server)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(PROTO_FILES, &[PROTO_ROOT])?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .build(&[
            ".google.pubsub",
            ".google.iam",
            ".google.rpc",
            ".google.type",
        ])?;
    Ok(())
}
