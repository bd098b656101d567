//! Headless Chromium for the browser tests of the web view: finds the
//! binary (failing loudly when it is missing: these tests never skip), runs
//! it on a URL, and reads the rendered waterfall rows out of a `--dump-dom`.
//!
//! `CHROMIUM` names another binary; otherwise `chromium`,
//! `chromium-browser` or `google-chrome` from `PATH`. `scripts/test`
//! installs Debian's `chromium`.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::output_within;

/// How long one Chromium run may take.
const RUN_LIMIT: Duration = Duration::from_secs(90);

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
         apt-get install -y --no-install-recommends chromium (or set CHROMIUM; \
         scripts/test installs it)"
    );
}

/// The flags every headless Chromium of the tests runs with: no sandbox (a
/// container), no GPU, nothing fetched from the network on its own, no
/// first-run screens, no scrollbars in screenshots.
pub const HEADLESS_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
];

/// Runs headless Chromium on `url` with `extra` arguments (such as
/// `--dump-dom` or `--screenshot=...`) in a profile of its own; answers its
/// stdout. Panics when it fails or takes longer than 90 s.
pub fn run_chromium(url: &str, extra: &[String]) -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "baton-ui-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let mut command = Command::new(chromium());
    command
        .args(HEADLESS_FLAGS)
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url);
    let output = output_within(&mut command, RUN_LIMIT);
    let status = output.status;
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "chromium failed ({status}) on {url}: {err}"
    );
    out
}

/// The rendered waterfall rows of a dumped DOM: (span id, the row's HTML
/// from inside its class attribute on).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_in_order_with_their_span_ids() {
        let dom = concat!(
            r#"<div class="legend"></div>"#,
            r#"<div class="row span-row error" data-span-id="a1">A</div>"#,
            r#"<div class="row span-row" data-span-id="b2">B</div>"#,
        );
        let rows = rows(dom);
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a1", "b2"]);
        assert!(rows[0].1.starts_with(" error\""));
    }
}
