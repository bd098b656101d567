//! Google's Python client (`google-cloud-pubsub`), run unchanged through
//! `PUBSUB_EMULATOR_HOST`, against Baton and against the official gcloud
//! emulator, with the same observable results.
//!
//! - [`python`] makes (once, under a file lock, via
//!   `tests/python/ensure_venv.py`) the virtualenv with the pinned packages of
//!   `tests/python/requirements.txt`, under the cargo target dir
//!   (`<target>/interop-venv`). No network means a loud failure.
//! - [`run_script`] runs one `tests/python/*.py` scenario with a hard timeout
//!   and parses the JSON object it prints last; [`run_script_with`] does it
//!   with an environment of the caller's ([`ScriptEnv`]: a TLS endpoint, a
//!   metadata server, no `PUBSUB_EMULATOR_HOST`); [`compare`] runs a
//!   scenario against a fresh Baton server and the shared [`Emulator`] at
//!   once, and [`assert_same`] checks they agree.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use crate::emulator::Emulator;
pub use crate::emulator::PROJECT;
use crate::error::Error;
use crate::server::TestServer;

/// How long after its own timeout a script is killed (it dumps its threads'
/// stacks and exits by itself at the timeout).
const KILL_GRACE: Duration = Duration::from_secs(30);

/// Where the Python scenarios live: `tests/python` of this repository (the
/// full tier's package, next to its tests; `scripts/test` and the
/// benchmarks use the same directory).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python")
}

/// The cargo target dir, from an integration test's `CARGO_TARGET_TMPDIR`
/// (`<target>/tmp`), which follows `CARGO_TARGET_DIR` when that is set.
pub fn target_dir(cargo_target_tmpdir: &str) -> PathBuf {
    let tmp = Path::new(cargo_target_tmpdir);
    tmp.parent()
        .map_or_else(|| tmp.to_path_buf(), Path::to_path_buf)
}

/// The interpreter to build the venv from: `BATON_INTEROP_PYTHON`, else `python3`.
fn base_python() -> String {
    std::env::var("BATON_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The venv's python, creating the venv first if needed (once per test
/// process). Panics with pip's output when it cannot be created: interop
/// tests never skip silently.
pub fn python(cargo_target_tmpdir: &str) -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PYTHON.get_or_init(|| {
        ensure_venv(&target_dir(cargo_target_tmpdir).join("interop-venv"))
            .map_err(|e| format!("{e:#}"))
    });
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!(
            "cannot create the Python virtualenv for the interop tests \
             (network to PyPI needed the first time; scripts/test makes it):\n{e}"
        ),
    }
}

fn ensure_venv(venv: &Path) -> anyhow::Result<PathBuf> {
    let script = scripts_dir().join("ensure_venv.py");
    let out = Command::new(base_python())
        .arg(&script)
        .arg(venv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", base_python(), script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} failed ({}):\n{stderr}", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| anyhow!("ensure_venv.py printed no path; stderr:\n{stderr}"))?;
    Ok(PathBuf::from(python))
}

/// A fresh resource-id prefix (ids must start with a letter and not with
/// `goog`): `name`, the
/// process id and the clock's nanoseconds.
pub fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{name}-{}-{nanos:x}", std::process::id())
}

/// One run of a scenario script.
#[derive(Debug)]
pub struct ScriptRun {
    /// The JSON object the script printed last.
    pub result: Value,
    /// Everything it wrote to stderr (its log).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `tests/python/<script>` with `python` against `host` with
/// `--project PROJECT --prefix <prefix> --timeout <timeout>` plus `extra`
/// args, `PUBSUB_EMULATOR_HOST=<host>` in its environment. The script exits
/// by itself at its timeout (dumping its threads' stacks); this side kills
/// it 30 s later. The error holds its output.
pub async fn run_script(
    python: &Path,
    script: &str,
    host: &str,
    prefix: &str,
    timeout: Duration,
    extra: &[&str],
) -> Result<ScriptRun, Error> {
    let env = ScriptEnv::default().set("PUBSUB_EMULATOR_HOST", host);
    run_script_with(python, script, host, prefix, timeout, extra, &env).await
}

/// What a script's environment holds beyond the harness's own variables
/// (`PYTHONUNBUFFERED`, `PYTHONDONTWRITEBYTECODE`; never
/// `GOOGLE_APPLICATION_CREDENTIALS` nor the test process's `OTEL_*`):
/// variables to set and variables of the test process to leave out.
#[derive(Debug, Clone, Default)]
pub struct ScriptEnv {
    set: Vec<(String, OsString)>,
    remove: Vec<String>,
}

impl ScriptEnv {
    /// Sets `name` to `value`.
    pub fn set(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.set.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Leaves `name` out (even when the test process has it).
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_owned());
        self
    }
}

/// [`run_script`] with the environment `env` (and no
/// `PUBSUB_EMULATOR_HOST` unless `env` sets it); `target` names what the
/// script runs against, for messages.
pub async fn run_script_with(
    python: &Path,
    script: &str,
    target: &str,
    prefix: &str,
    timeout: Duration,
    extra: &[&str],
    env: &ScriptEnv,
) -> Result<ScriptRun, Error> {
    run(python, script, target, prefix, timeout, extra, env)
        .await
        .map_err(|e| Error::Script(format!("{e:#}")))
}

async fn run(
    python: &Path,
    script: &str,
    host: &str,
    prefix: &str,
    timeout: Duration,
    extra: &[&str],
    env: &ScriptEnv,
) -> anyhow::Result<ScriptRun> {
    let path = scripts_dir().join(script);
    let started = Instant::now();
    let mut command = tokio::process::Command::new(python);
    command
        .arg(&path)
        .args(["--project", PROJECT, "--prefix", prefix])
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .args(extra)
        .env_remove("PUBSUB_EMULATOR_HOST")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // The OpenTelemetry SDK reads OTEL_* (resource, exporter headers,
    // compression): a script gets only those its test sets.
    for (name, _) in std::env::vars_os() {
        if crate::process::is_otel_var(&name) {
            command.env_remove(name);
        }
    }
    for name in &env.remove {
        command.env_remove(name);
    }
    for (name, value) in &env.set {
        command.env(name, value);
    }
    let child = command
        .current_dir(scripts_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {} {}", python.display(), path.display()))?;
    let out = tokio::time::timeout(timeout + KILL_GRACE, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!("{script} against {host} still running after {timeout:?} + 30 s; killed")
        })??;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!(
            "{script} against {host} failed ({}) after {elapsed:.1?}\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            tail(&stderr, 150)
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let result = serde_json::from_str(last).with_context(|| {
        format!(
            "{script} against {host}: last stdout line is not JSON: {last:?}\n--- stderr\n{}",
            tail(&stderr, 60)
        )
    })?;
    Ok(ScriptRun {
        result,
        stderr,
        elapsed,
    })
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A scenario's results from both servers.
#[derive(Debug)]
pub struct Pair {
    /// The script that ran.
    pub script: String,
    /// Its run against Baton.
    pub baton: ScriptRun,
    /// Its run against the gcloud emulator.
    pub emulator: ScriptRun,
}

/// Runs `script` against a fresh Baton server and the shared emulator at the
/// same time, with the same resource names. Panics (with the script's
/// output) if either run fails.
pub async fn compare(
    cargo_target_tmpdir: &'static str,
    script: &str,
    timeout: Duration,
    extra: &[&str],
) -> Pair {
    let python = tokio::task::spawn_blocking(move || python(cargo_target_tmpdir))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let emulator = tokio::task::spawn_blocking(move || Emulator::shared(cargo_target_tmpdir))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let baton = TestServer::start().await;
    let baton_host = baton.host();
    let prefix = unique_prefix(script.trim_end_matches(".py").replace('_', "-").as_str());
    let (ours, theirs) = tokio::join!(
        run_script(&python, script, &baton_host, &prefix, timeout, extra),
        run_script(&python, script, emulator.host(), &prefix, timeout, extra),
    );
    baton.shutdown().await;
    let ours = ours.unwrap_or_else(|e| panic!("against Baton: {e}"));
    let theirs = theirs.unwrap_or_else(|e| {
        panic!(
            "against the gcloud emulator (the reference!): {e}\n--- emulator log\n{}",
            emulator.log_tail()
        )
    });
    eprintln!(
        "{script}: Baton {:.1?}, emulator {:.1?}\n  Baton:    {}\n  emulator: {}",
        ours.elapsed, theirs.elapsed, ours.result, theirs.result
    );
    Pair {
        script: script.to_owned(),
        baton: ours,
        emulator: theirs,
    }
}

/// `value` without the diagnostic keys (those starting with `_`), recursively.
pub fn comparable(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), comparable(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

/// The JSON paths where `a` (Baton's) and `b` (the emulator's) differ, with
/// both values.
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", a, b, &mut out);
    out
}

fn diff_into(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_into(&p, u, v, out),
                    (u, v) => out.push(format!("{p}: Baton {} / emulator {}", show(u), show(v))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_into(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(format!("{path}: Baton {a} / emulator {b}")),
        _ => {}
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_owned(), Value::to_string)
}

/// Panics, listing every difference, unless Baton's and the emulator's
/// results agree (diagnostic `_` keys aside).
pub fn assert_same(pair: &Pair) {
    let diffs = differences(
        &comparable(&pair.baton.result),
        &comparable(&pair.emulator.result),
    );
    assert!(
        diffs.is_empty(),
        "{}: Baton and the gcloud emulator disagree:\n  {}\n--- Baton stderr (tail)\n{}",
        pair.script,
        diffs.join("\n  "),
        tail(&pair.baton.stderr, 40)
    );
}

/// `result[pointer]`, panicking with the whole result when absent.
pub fn at<'a>(result: &'a Value, pointer: &str) -> &'a Value {
    result
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {result}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparable_drops_underscore_keys() {
        let v = json!({"a": 1, "_t": 2, "b": [{"_x": 1, "y": 2}]});
        assert_eq!(comparable(&v), json!({"a": 1, "b": [{"y": 2}]}));
    }

    #[test]
    fn differences_name_paths() {
        let a = json!({"a": 1, "b": {"c": [1, 2]}, "d": true});
        let b = json!({"a": 1, "b": {"c": [1, 3]}, "e": true});
        assert_eq!(
            differences(&a, &b),
            vec![
                ".b.c[1]: Baton 2 / emulator 3",
                ".d: Baton true / emulator (absent)",
                ".e: Baton (absent) / emulator true",
            ]
        );
    }

    #[test]
    fn target_dir_is_parent_of_tmpdir() {
        assert_eq!(target_dir("/x/target/tmp"), PathBuf::from("/x/target"));
    }

    #[test]
    fn scripts_dir_holds_the_scenarios() {
        assert!(scripts_dir().join("ensure_venv.py").is_file());
    }
}
