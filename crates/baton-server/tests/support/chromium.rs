//! Headless Chromium for the browser tests of the web view: finds the
//! binary (failing loudly when it is missing), runs it on a URL and reads
//! the rendered waterfall rows out of a `--dump-dom`.
//!
//! Shared by `crates/baton-server/tests/web_ui.rs` and
//! `crates/baton/tests/demo_web_ui.rs` (included with `#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The Chromium binary, or a loud failure saying how to install it.
pub fn chromium() -> String {
    if let Ok(bin) = std::env::var("CHROMIUM") {
        return bin;
    }
    for bin in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return bin.to_string();
        }
    }
    panic!(
        "headless Chromium is required for the web view test: \
         apt-get install -y --no-install-recommends chromium (or set CHROMIUM)"
    );
}

/// Runs headless Chromium on `url` with `extra` arguments and returns stdout.
pub fn run_chromium(url: &str, extra: &[String]) -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "baton-ui-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let stderr = child.stderr.take().unwrap();
    let err_reader =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "chromium failed ({status}) on {url}: {err}"
    );
    out
}

/// The rendered waterfall rows: (span id, the row's HTML).
pub fn rows(dom: &str) -> Vec<(String, String)> {
    dom.split("<div class=\"row span-row")
        .skip(1)
        .map(|chunk| {
            let id = chunk
                .split("data-span-id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_string();
            (id, chunk.to_string())
        })
        .collect()
}
