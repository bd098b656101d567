//! Records the compiler's version for the `x-goog-api-client` header
//! (`gl-rust/<version>`), as Google's libraries report their language's.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    // `rustc 1.88.0 (6b00bc388 2025-06-23)` -> `1.88.0`; unknown when it
    // cannot be run (the header then says `gl-rust/unknown`).
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_string));
    if let Some(version) = version {
        println!("cargo:rustc-env=BATON_RUSTC_VERSION={version}");
    }
}
