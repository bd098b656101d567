//! Harness for Baton's interop tests: Google's own client libraries, run
//! unchanged through `PUBSUB_EMULATOR_HOST`, against Baton and against the
//! official gcloud Pub/Sub emulator, with the same observable results.
//!
//! - [`python`] makes (once, under a file lock) the virtualenv with the pinned
//!   `google-cloud-pubsub` from `python/requirements.txt`, under the cargo
//!   target dir (`<target>/interop-venv`). No network means a loud failure.
//! - [`Emulator`] runs `gcloud beta emulators pubsub start` on a free port in a
//!   process group of its own, which dies with the test process (and on drop).
//! - [`Baton`] starts our server in-process on `127.0.0.1:0`.
//! - [`run_script`] runs one `python/*.py` scenario with a hard timeout and
//!   parses the JSON object it prints last; [`compare`] does it against both
//!   servers at once and [`assert_same`] checks they agree.

// A test harness: failing loudly (panicking) is its job.
#![allow(clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The project id every scenario uses.
pub const PROJECT: &str = "baton-interop";

/// Where the Python scenarios live.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
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

/// The venv's python, creating the venv first if needed. Panics with pip's
/// output when it cannot be created: interop tests never skip silently.
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
             (network to PyPI needed the first time):\n{e}"
        ),
    }
}

fn ensure_venv(venv: &Path) -> Result<PathBuf> {
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

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh resource-id prefix (ids must start with a letter).
pub fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{name}-{}-{nanos:x}", std::process::id())
}

/// The official gcloud Pub/Sub emulator, in a process group of its own.
///
/// It runs under a small `sh` watchdog that kills gcloud's process group
/// (gcloud's Python and the Java server it spawns) as soon as its stdin
/// closes, so the emulator never outlives the test process, even one that is
/// killed; drop kills the groups at once.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    gcloud_pid: u32,
    stdin: Option<ChildStdin>,
    host: String,
    log: Arc<Mutex<VecDeque<String>>>,
    _data_dir: PathBuf,
}

impl Emulator {
    /// Starts an emulator on a free port and waits for "Server started".
    pub fn start(project: &str, work_dir: &Path) -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(project, work_dir) {
                Ok(emulator) => return Ok(emulator),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("emulator did not start")))
    }

    fn try_start(project: &str, work_dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let data_dir = work_dir.join(format!("pubsub-emulator-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data_dir)?;
        // gcloud makes itself a process-group leader (java is its child), so
        // the watchdog prints gcloud's pid and, once its stdin closes (drop,
        // or the test process dying in any way), kills that group and its own.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(concat!(
                r#"gcloud "$@" </dev/null & echo "$!"; cat >/dev/null; "#,
                r#"kill -KILL "-$!" 2>/dev/null; kill -KILL 0"#
            ))
            .arg("sh")
            .args(["beta", "emulators", "pubsub", "start"])
            .arg(format!("--host-port=127.0.0.1:{port}"))
            .arg(format!("--project={project}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context(
                "spawning `gcloud beta emulators pubsub start` (is the gcloud CLI installed?)",
            )?;
        let stdin = child.stdin.take().context("emulator stdin")?;
        let stderr = child.stderr.take().context("emulator stderr")?;
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().context("emulator stdout")?)
            .read_line(&mut first_line)
            .context("reading the emulator's pid")?;
        let gcloud_pid: u32 = first_line
            .trim()
            .parse()
            .with_context(|| format!("watchdog printed {first_line:?}, not a pid"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server started")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                if let Ok(mut log) = thread_log.lock() {
                    if log.len() >= 200 {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        });
        let emulator = Self {
            child,
            gcloud_pid,
            stdin: Some(stdin),
            host: format!("127.0.0.1:{port}"),
            log,
            _data_dir: data_dir,
        };
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(()) => Ok(emulator),
            Err(_) => bail!(
                "the gcloud Pub/Sub emulator did not print \"Server started\" within 120 s; its log:\n{}",
                emulator.log_tail()
            ),
        }
    }

    /// The emulator shared by all tests of this test binary (they use distinct
    /// resource names). It is killed when the test process exits.
    pub fn shared(cargo_target_tmpdir: &str) -> &'static Self {
        static SHARED: OnceLock<Result<Emulator, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            Self::start(PROJECT, Path::new(cargo_target_tmpdir)).map_err(|e| format!("{e:#}"))
        });
        match result {
            Ok(emulator) => emulator,
            Err(e) => panic!("cannot start the gcloud Pub/Sub emulator: {e}"),
        }
    }

    /// `host:port`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The last lines the emulator printed.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|log| log.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Kill gcloud's group (gcloud, java) and the watchdog's.
        drop(self.stdin.take());
        let _ = Command::new("kill")
            .args(["-KILL", "--"])
            .arg(format!("-{}", self.gcloud_pid))
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our server, in-process on `127.0.0.1:0`.
#[derive(Debug)]
pub struct Baton {
    host: String,
    stop: tokio::sync::oneshot::Sender<()>,
    stopped: tokio::task::JoinHandle<()>,
}

impl Baton {
    pub async fn start() -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let server = baton_server::start(baton_server::ServerConfig::new(addr))
            .await
            .unwrap_or_else(|e| panic!("starting the Baton server failed: {e:?}"));
        let host = server.local_addr().to_string();
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        // The server lives in this task until asked (or dropped) to stop.
        let stopped = tokio::spawn(async move {
            let _ = stop_rx.await;
            let _ = server.shutdown().await;
        });
        Self {
            host,
            stop,
            stopped,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Graceful shutdown; panics if it takes longer than 10 s.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.stopped)
            .await
            .expect("Baton server shutdown took longer than 10 s")
            .expect("Baton server shutdown panicked");
    }
}

/// One run of a scenario script.
#[derive(Debug)]
pub struct ScriptRun {
    /// The JSON object the script printed last.
    pub result: Value,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `python/<script>` against `host` with `--project PROJECT --prefix
/// <prefix> --timeout <timeout>` plus `extra` args. The script exits by itself
/// at its timeout (dumping its threads' stacks); this side kills it 30 s later.
pub async fn run_script(
    python: &Path,
    script: &str,
    host: &str,
    prefix: &str,
    timeout: Duration,
    extra: &[&str],
) -> Result<ScriptRun> {
    let path = scripts_dir().join(script);
    let started = Instant::now();
    let child = tokio::process::Command::new(python)
        .arg(&path)
        .args(["--project", PROJECT, "--prefix", prefix])
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .args(extra)
        .env("PUBSUB_EMULATOR_HOST", host)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .current_dir(scripts_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {} {}", python.display(), path.display()))?;
    let out = tokio::time::timeout(timeout + Duration::from_secs(30), child.wait_with_output())
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A scenario's results from both servers.
#[derive(Debug)]
pub struct Pair {
    pub script: String,
    pub baton: ScriptRun,
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
    let baton = Baton::start().await;
    let prefix = unique_prefix(script.trim_end_matches(".py").replace('_', "-").as_str());
    let (ours, theirs) = tokio::join!(
        run_script(&python, script, baton.host(), &prefix, timeout, extra),
        run_script(&python, script, emulator.host(), &prefix, timeout, extra),
    );
    baton.shutdown().await;
    let ours = ours.unwrap_or_else(|e| panic!("against Baton: {e:#}"));
    let theirs = theirs.unwrap_or_else(|e| {
        panic!(
            "against the gcloud emulator (the reference!): {e:#}\n--- emulator log\n{}",
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

/// The JSON paths where `a` and `b` differ, with both values.
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
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
}
