//! The servers under test as child processes: `baton serve` (in memory or
//! on a data directory) and the gcloud Pub/Sub emulator, each on a free
//! loopback port; the first-RPC probe that times their start; and the
//! resident memory of a process or a process tree, from `/proc`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::pubsub::ListTopicsRequest;
use baton_proto::pubsub::publisher_client::PublisherClient;

use super::plan::PROJECT;

/// Lines of a server's output kept for error messages.
const LOG_LINES: usize = 40;

/// Environment variables `baton serve` reads that a developer's shell may
/// set; removed so the server runs with the flags given here only.
const BATON_VARS: &[&str] = &[
    "BATON_PORT",
    "BATON_HOST",
    "BATON_DATA_DIR",
    "BATON_IN_MEMORY",
    "BATON_FORWARD_OTLP",
    "BATON_FORWARD_OTLP_PROTOCOL",
    "BATON_TRACE_STORE_SPANS",
    "BATON_TRACE_STORE_BYTES",
    "BATON_AUTH",
    "BATON_TLS",
];

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `baton` binary next to this one (the same target directory).
pub fn baton_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating baton-bench")?;
    let dir = exe
        .parent()
        .context("baton-bench's path has no directory")?;
    let baton = dir.join("baton");
    if !baton.is_file() {
        bail!(
            "{} is missing: `--server` runs the `baton` binary of the same target directory; \
             build it first with `cargo build --release -p baton`",
            baton.display()
        );
    }
    Ok(baton)
}

/// Where a Baton server keeps its store.
#[derive(Debug, Clone)]
pub enum Store {
    /// `--in-memory`.
    Memory,
    /// `--data-dir DIR`.
    Disk(PathBuf),
}

/// The last lines a process printed, kept by reader threads.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    /// Reads `pipe` line by line on a thread of its own until it closes,
    /// keeping the last [`LOG_LINES`].
    fn drain(&self, pipe: impl Read + Send + 'static) {
        let log = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = log.lock() {
                    if log.len() >= LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        });
    }

    fn tail(&self) -> String {
        self.0
            .lock()
            .map(|log| log.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// Whose memory a server's RSS is: one process, or a process tree (the
/// emulator: gcloud's Python launcher and the JVM it starts).
#[derive(Debug, Clone, Copy)]
pub struct RssProbe {
    pid: u32,
    tree: bool,
}

impl RssProbe {
    /// Resident memory now, in KiB (summed over the tree).
    pub fn kib(self) -> Option<u64> {
        if self.tree {
            let pids = tree_pids(self.pid);
            let total: u64 = pids
                .iter()
                .filter_map(|pid| status_kib(*pid, "VmRSS"))
                .sum();
            (total > 0).then_some(total)
        } else {
            status_kib(self.pid, "VmRSS")
        }
    }

    /// The RSS of each process of the tree: (command name, KiB).
    pub fn breakdown(self) -> Vec<(String, u64)> {
        tree_pids(self.pid)
            .into_iter()
            .filter_map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                Some((comm.trim().to_owned(), status_kib(pid, "VmRSS")?))
            })
            .collect()
    }
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    crate::trace_load::status_file_kib(&format!("/proc/{pid}/status"), field)
}

/// `root` and all its descendants, from the parent pids in `/proc/*/stat`.
fn tree_pids(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // After the parenthesised command name: state, then the ppid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(pid) = tree.get(next).copied() {
        next += 1;
        if let Some(kids) = children.get(&pid) {
            tree.extend(kids);
        }
    }
    tree
}

/// Samples a server's RSS every 50 ms on a thread of its own and keeps the
/// highest value, until dropped.
#[derive(Debug)]
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start(probe: RssProbe) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(kib) = probe.kib() {
                        peak.fetch_max(kib, Ordering::AcqRel);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in KiB (`None` when no sample was read).
    pub fn finish(mut self) -> Option<u64> {
        self.stop_thread();
        let peak = self.peak.load(Ordering::Acquire);
        (peak > 0).then_some(peak)
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A server under test, running as a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// `baton`, or the `sh` watchdog the emulator runs under.
    child: Child,
    /// Baton's pid, or gcloud's (the root of the emulator's tree).
    pid: u32,
    /// The emulator's: gcloud's process group (it leads one; java is in it)
    /// and the watchdog's stdin, whose closing kills both groups.
    emulator_group: Option<u32>,
    watchdog_stdin: Option<ChildStdin>,
    host: String,
    spawned: Instant,
    log: Log,
}

impl ServerProcess {
    /// Starts `baton serve` on a free loopback port, with neither OTLP
    /// receivers nor forwarding (no other ports, nothing upstream).
    pub fn baton(bin: &Path, store: &Store) -> Result<Self> {
        Self::baton_with(bin, store, &[])
    }

    /// [`Self::baton`] with more `serve` arguments.
    pub fn baton_with(bin: &Path, store: &Store, more: &[&str]) -> Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(bin);
        for name in BATON_VARS {
            command.env_remove(name);
        }
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("OTEL_")) {
                command.env_remove(name);
            }
        }
        command.args(["serve", "--host", "127.0.0.1", "--port"]);
        command.arg(port.to_string());
        command.args(["--no-otlp", "--no-forward"]);
        command.args(more);
        match store {
            Store::Memory => {
                command.arg("--in-memory");
            }
            Store::Disk(dir) => {
                command.arg("--data-dir").arg(dir);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let log = Log::default();
        if let Some(stdout) = child.stdout.take() {
            log.drain(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            log.drain(stderr);
        }
        Ok(Self {
            pid: child.id(),
            child,
            emulator_group: None,
            watchdog_stdin: None,
            host: format!("127.0.0.1:{port}"),
            spawned,
            log,
        })
    }

    /// Starts `gcloud beta emulators pubsub start` on a free loopback port,
    /// keeping its data under `data_dir`. It runs under a small `sh`
    /// watchdog that kills gcloud's process group (gcloud's Python and the
    /// Java server it spawns) as soon as its stdin closes, so the emulator
    /// never outlives this process, even one that is killed.
    pub fn emulator(data_dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let spawned = Instant::now();
        let mut child = baton_testkit::emulator::watched_emulator_command(PROJECT, port, data_dir)
            .spawn()
            .context(
                "spawning `gcloud beta emulators pubsub start` (is the gcloud CLI installed, \
                 with its pubsub-emulator component?)",
            )?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the emulator's stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut first_line = String::new();
        stdout
            .read_line(&mut first_line)
            .context("reading gcloud's pid from the watchdog")?;
        let gcloud: u32 = first_line
            .trim()
            .parse()
            .with_context(|| format!("the watchdog printed {first_line:?}, not a pid"))?;
        let log = Log::default();
        log.drain(stdout);
        if let Some(stderr) = child.stderr.take() {
            log.drain(stderr);
        }
        Ok(Self {
            child,
            pid: gcloud,
            emulator_group: Some(gcloud),
            watchdog_stdin: stdin,
            host: format!("127.0.0.1:{port}"),
            spawned,
            log,
        })
    }

    /// The server's pid (gcloud's for the emulator).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `host:port` of its gRPC endpoint.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// When it was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Reads its resident memory (the emulator's: the whole tree).
    pub fn rss_probe(&self) -> RssProbe {
        RssProbe {
            pid: self.pid,
            tree: self.emulator_group.is_some(),
        }
    }

    /// The last lines it printed.
    pub fn log_tail(&self) -> String {
        self.log.tail()
    }

    /// Waits until a ListTopics call is answered (polling every 5 ms with a
    /// fresh connection); the time from spawn to that answer.
    pub async fn wait_answering(&mut self, limit: Duration) -> Result<Duration> {
        let deadline = self.spawned + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before answering; its last output:\n{}",
                    self.log_tail()
                );
            }
            let error = match probe(&self.host).await {
                Ok(()) => return Ok(self.spawned.elapsed()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "no answer from {} within {limit:?} (last error: {error:#}); its last output:\n{}",
                    self.host,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit; the time that took. Kills it
    /// (SIGKILL) and fails when it takes longer than `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        if self.child.try_wait()?.is_none() {
            let status = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .context("running kill -TERM")?;
            if !status.success() {
                bail!("kill -TERM {} failed ({status})", self.pid);
            }
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!(
                        "   (the server exited with {status} after SIGTERM; last output:\n{})",
                        self.log_tail()
                    );
                }
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                self.kill();
                bail!("the server did not stop within {limit:?} of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(group) = self.emulator_group {
            drop(self.watchdog_stdin.take());
            let _ = Command::new("kill")
                .args(["-KILL", "--"])
                .arg(format!("-{group}"))
                .arg(format!("-{}", self.child.id()))
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One ListTopics call on a fresh connection.
async fn probe(host: &str) -> Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    PublisherClient::new(channel)
        .list_topics(ListTopicsRequest {
            project: format!("projects/{PROJECT}"),
            page_size: 1,
            page_token: String::new(),
        })
        .await?;
    Ok(())
}
