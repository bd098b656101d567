//! Google's Python client as the benchmark's reference peer: the pinned
//! virtualenv of `tests/python/requirements.txt` (made once by
//! `tests/python/ensure_venv.py`, the same script the interop tests use) and
//! one run of `tests/python/bench_e2e.py`, whose last stdout line is its
//! figures as JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The project id the Python rounds use.
pub const PROJECT: &str = "baton-bench";

/// `tests/python` of this repository: the scenario scripts and the venv's
/// requirements.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python")
}

/// The venv's python, made under `target_tmp/..` (`<target>/interop-venv`,
/// shared with the interop tests) when it does not exist yet. Blocks.
pub fn venv(target_tmp: &Path) -> Result<PathBuf> {
    let venv = target_tmp
        .parent()
        .unwrap_or(target_tmp)
        .join("interop-venv");
    let script = scripts_dir().join("ensure_venv.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&venv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running python3 {}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} failed ({}):\n{stderr}", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("ensure_venv.py printed no path; stderr:\n{stderr}"))
}

/// Runs `bench_e2e.py` against `host` with resource ids under `prefix` and
/// the benchmark's own arguments; its figures as JSON.
pub async fn bench_e2e(
    python: &Path,
    host: &str,
    prefix: &str,
    timeout: Duration,
    args: &[&str],
) -> Result<Value> {
    let child = tokio::process::Command::new(python)
        .arg(scripts_dir().join("bench_e2e.py"))
        .args(["--project", PROJECT, "--prefix", prefix])
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .args(args)
        .env("PUBSUB_EMULATOR_HOST", host)
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .current_dir(scripts_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning bench_e2e.py")?;
    let out = tokio::time::timeout(timeout + Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| anyhow!("bench_e2e.py against {host} still running after {timeout:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "bench_e2e.py against {host} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last)
        .with_context(|| format!("bench_e2e.py's last line is not JSON: {last:?}"))
}
