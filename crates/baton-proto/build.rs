//! Compiles Baton's own `.proto` files with the pure-Rust `protox` compiler so
//! no system `protoc` is needed, then generates prost messages, tonic services
//! and pbjson (proto3 JSON) serde impls from the same descriptor set.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "../../proto";
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

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
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
