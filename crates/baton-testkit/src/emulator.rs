//! The official gcloud Pub/Sub emulator, the reference the interop tests
//! hold Baton to: `gcloud beta emulators pubsub start` on a free port, in a
//! process group of its own that never outlives the test process.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::error::Error;

/// How long the emulator (a JVM) may take to say "Server started".
const START_LIMIT: Duration = Duration::from_secs(120);
/// Starts tried before giving up (a port taken between choosing and
/// binding, a slow JVM).
const START_ATTEMPTS: usize = 3;
/// Lines of the emulator's log kept for error messages.
const LOG_LINES: usize = 200;

/// The project id every scenario uses.
pub const PROJECT: &str = "baton-interop";

/// `gcloud beta emulators pubsub start` for `project` on `127.0.0.1:port`
/// with its data in `data_dir`, under a small `sh` watchdog: the watchdog
/// prints gcloud's pid on its first line of stdout and, once its stdin
/// closes (the caller dropped it, or died in any way), kills gcloud's
/// process group (gcloud makes itself a group leader; java is its child)
/// and its own. Stdin, stdout and stderr are piped; the caller spawns it.
pub fn watched_emulator_command(project: &str, port: u16, data_dir: &Path) -> Command {
    let mut command = Command::new("sh");
    command
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
        .stderr(Stdio::piped());
    command
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
    /// Starts an emulator for `project` on a free port, keeping its data
    /// under `work_dir`, and waits for "Server started" (up to 120 s, three
    /// tries).
    pub fn start(project: &str, work_dir: &Path) -> Result<Self, Error> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(project, work_dir) {
                Ok(emulator) => return Ok(emulator),
                Err(e) => last = Some(e),
            }
        }
        let error = last.unwrap_or_else(|| anyhow!("emulator did not start"));
        Err(Error::Emulator(format!("{error:#}")))
    }

    fn try_start(project: &str, work_dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let data_dir = work_dir.join(format!("pubsub-emulator-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data_dir)?;
        let mut child = watched_emulator_command(project, port, &data_dir)
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
                    if log.len() >= LOG_LINES {
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
        match ready_rx.recv_timeout(START_LIMIT) {
            Ok(()) => Ok(emulator),
            Err(_) => bail!(
                "the gcloud Pub/Sub emulator did not print \"Server started\" within {START_LIMIT:?}; its log:\n{}",
                emulator.log_tail()
            ),
        }
    }

    /// The emulator shared by all tests of one test binary (they use
    /// distinct resource names), for the interop [`PROJECT`], keeping its
    /// data under the test's `CARGO_TARGET_TMPDIR`. It is killed when the
    /// test process exits; panics when it cannot start.
    pub fn shared(cargo_target_tmpdir: &str) -> &'static Self {
        static SHARED: OnceLock<Result<Emulator, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            Self::start(PROJECT, Path::new(cargo_target_tmpdir)).map_err(|e| e.to_string())
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

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
