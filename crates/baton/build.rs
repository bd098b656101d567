//! Lays out the code `baton serve` runs at start-up in one place.
//!
//! The kernel maps a binary's code 64 KiB at a time around each page a
//! process touches. Start-up runs a few thousand functions spread over the
//! whole binary, so an idle server kept about 11 MB of code resident; packed
//! together (the order in `startup.order`, made by `scripts/startup-order`)
//! they take about 2 MB. Names the linker does not find are skipped, so a
//! list older than the code only costs memory.

fn main() {
    println!("cargo:rerun-if-changed=startup.order");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if !uses_rust_lld() {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("startup.order");
    // lld refuses a missing list; without one the layout is the default.
    if !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the binary is linked by the Rust toolchain's own `lld`, which
/// knows `--symbol-ordering-file`: the default for x86_64 Linux (GNU) since
/// Rust 1.90, unless the build picks another linker. Elsewhere the layout is
/// left as it is.
fn uses_rust_lld() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let default_lld = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|flag| flags.contains(flag));
    let rustc_supports_default = rustc_minor().is_some_and(|minor| minor >= 90);
    default_lld && !other_linker && rustc_supports_default
}

/// The minor version of the compiler building this crate (`1.N`).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").ok()?;
    let output = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
