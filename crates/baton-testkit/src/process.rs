//! The `baton` binary as a child process: `baton serve` started on a free
//! port (for tests of what only the real process shows: its first line,
//! its flags, a crash), and any other verb run with a clean environment.
//!
//! Integration tests of the `baton` crate get the binary's path from
//! `env!("CARGO_BIN_EXE_baton")`; this crate cannot know it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::grpc;

/// The beginning of `baton serve`'s first line, before the address.
const LISTENING: &str = "Baton Pub/Sub server listening on ";

/// The beginning of `baton serve`'s line naming its OTLP receivers.
const OTLP_LINE: &str = "OTLP traces: gRPC on ";

/// How long `baton serve` may take to print its address.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Environment variables `baton` reads that a developer's shell may set:
/// removed so a test sees the binary's defaults and its own arguments only.
/// Every `OTEL_*` variable goes too (see [`baton_command`]).
const INHERITED: &[&str] = &[
    "BATON_PORT",
    "BATON_HOST",
    "BATON_DATA_DIR",
    "BATON_IN_MEMORY",
    "BATON_SERVER",
    "BATON_OTLP_GRPC_PORT",
    "BATON_OTLP_HTTP_PORT",
    "BATON_FORWARD_OTLP",
    "BATON_FORWARD_OTLP_PROTOCOL",
    "BATON_FORWARD_QUEUE",
];

/// Whether `name` is one of the OpenTelemetry variables (`OTEL_*`): `baton
/// serve` forwards by `OTEL_EXPORTER_OTLP_*`, the CLI exports its own spans
/// by them, and an SDK reads `OTEL_SERVICE_NAME` and the like.
pub fn is_otel_var(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with("OTEL_"))
}

/// A command running the `baton` binary at `bin`, without the settings a
/// shell may pass down (every `OTEL_*` variable, `BATON_PORT`, `BATON_HOST`,
/// `BATON_DATA_DIR`, `BATON_IN_MEMORY`, `BATON_SERVER`, the OTLP port and
/// forwarding variables) and with short panic messages (`RUST_BACKTRACE=0`,
/// so expected failures print one clear line). A test sets what it means
/// to on the command afterwards.
pub fn baton_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for name in INHERITED {
        command.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if is_otel_var(&name) {
            command.env_remove(name);
        }
    }
    command.env("RUST_BACKTRACE", "0");
    command
}

/// Runs `command` to its end (stdin closed, stdout and stderr collected) and
/// answers its output; kills it (SIGKILL) and panics when it runs longer than
/// `limit`. It waits on the process itself (a thread blocks in `wait`), so
/// it returns the moment the process exits, and reads both pipes while
/// waiting, so a chatty process cannot block on a full pipe.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let pid = child.id();
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(limit) {
        Ok(output) => output.expect("waiting for the process"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} did not exit within {limit:?}; killed");
        }
    }
}

/// The variables that choose Google credentials or trusted roots: a child
/// scenario starts without them and gets only what its test sets.
const CREDENTIAL_VARS: &[&str] = &[
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_HOST",
    "PUBSUB_EMULATOR_HOST",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Runs the test `test` of the current test binary alone in a child
/// process, with `spec_var` holding `spec` (what the child is to do) and
/// `env` set on it, the credential and trust variables cleared otherwise;
/// panics unless the child passed, showing its output and `label`.
///
/// Environment variables are process-wide (and setting them is `unsafe`),
/// so a scenario that needs some (`SSL_CERT_FILE` trusting a test CA,
/// `GOOGLE_APPLICATION_CREDENTIALS`...) runs this way.
pub async fn run_test_in_child(
    test: &str,
    spec_var: &str,
    spec: &str,
    env: &[(&str, &std::ffi::OsStr)],
    label: &str,
) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no test binary: {e}"));
    let mut command = Command::new(exe);
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(spec_var, spec);
    for name in CREDENTIAL_VARS {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap_or_else(|e| panic!("the child of {label} did not finish: {e}"))
        .unwrap_or_else(|e| panic!("cannot run the child of {label}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child scenario {label} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
}

/// What a program run by [`succeed_within`] printed.
#[derive(Debug)]
pub struct Printed {
    /// Its stdout, as text.
    pub stdout: String,
    /// Its stderr, as text.
    pub stderr: String,
}

/// Runs `command` (any program: `node`, a script) to its end on the async
/// runtime, stdin closed, and answers what it printed; panics, with its
/// output in the message, when it cannot start, when it runs longer than
/// `limit` (it is killed) or when it exits unsuccessfully.
pub async fn succeed_within(command: &mut tokio::process::Command, limit: Duration) -> Printed {
    let program = command.as_std().get_program().to_owned();
    let output = tokio::time::timeout(
        limit,
        command.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program:?} did not exit within {limit:?}; killed"))
    .unwrap_or_else(|e| panic!("cannot run {program:?} (the full tier needs it): {e}"));
    let printed = Printed {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        output.status.success(),
        "{program:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        printed.stdout,
        printed.stderr
    );
    printed
}

/// A `baton serve` child process; killed (SIGKILL) when dropped, so no test
/// leaves a server behind.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    addr: SocketAddr,
    first_line: String,
    /// Every line it printed after the first, as it prints them.
    stdout: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl ServeProcess {
    /// Starts `bin serve --port 0 --no-otlp` plus `args` in `cwd` and waits
    /// (up to 30 s) for the first line, which names its address. Its log
    /// (stderr, `BATON_LOG=info`) goes to the file `log`.
    ///
    /// `--no-otlp`: the default OTLP ports are fixed (4317, 4318), so test
    /// servers running side by side would fight over them.
    pub fn spawn(bin: &Path, cwd: &Path, args: &[&str], log: &Path) -> Self {
        let args: Vec<&str> = ["--no-otlp"].iter().chain(args).copied().collect();
        Self::spawn_with(bin, cwd, &args, &[], log)
    }

    /// Starts `bin serve --port 0` plus `args` in `cwd`, with `env` set in
    /// its environment (on top of [`baton_command`]'s clean one), and waits
    /// (up to 30 s) for the first line. OTLP is as `args` say: pass
    /// `--otlp-grpc-port 0 --otlp-http-port 0` for receivers on free ports
    /// (read them with [`ServeProcess::otlp_addrs`]) or `--no-otlp`. Its log
    /// (stderr, `BATON_LOG=info`) goes to the file `log`.
    pub fn spawn_with(
        bin: &Path,
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Self {
        let log = std::fs::File::create(log).expect("server log file");
        let mut command = baton_command(bin);
        command
            .args(["serve", "--port", "0"])
            .args(args)
            .current_dir(cwd)
            .env("BATON_LOG", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the baton binary runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, first) = mpsc::channel();
        let rest: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        // Reads the first line, then keeps reading stdout until it closes
        // (a full pipe would block the server), keeping the lines.
        std::thread::spawn({
            let rest = rest.clone();
            move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let _ = lines.send(line);
                let mut next = String::new();
                while matches!(reader.read_line(&mut next), Ok(n) if n > 0) {
                    let (kept, arrived) = &*rest;
                    kept.lock()
                        .expect("stdout lines")
                        .push(std::mem::take(&mut next));
                    arrived.notify_all();
                }
            }
        });
        let first_line = match first.recv_timeout(START_LIMIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("baton serve printed no address within {START_LIMIT:?}");
            }
        };
        let addr = parse_listening_line(&first_line).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("unexpected first line {first_line:?}")
        });
        Self {
            child,
            addr,
            first_line,
            stdout: rest,
        }
    }

    /// The first line after the first that starts with `prefix`, waiting up
    /// to `limit` for it to be printed; `None` if it is not printed by then
    /// (or stdout closed).
    pub fn line_starting_with(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let (kept, arrived) = &*self.stdout;
        let mut lines = kept.lock().expect("stdout lines");
        loop {
            if let Some(line) = lines.iter().find(|l| l.starts_with(prefix)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = arrived.wait_timeout(lines, left).expect("stdout lines").0;
        }
    }

    /// The OTLP receivers' addresses (gRPC, HTTP), from the line `OTLP
    /// traces: gRPC on ADDR, HTTP on ADDR ...` printed at start (waiting up
    /// to 10 s for it); panics if it says the receivers are off.
    pub fn otlp_addrs(&self) -> (SocketAddr, SocketAddr) {
        let line = self
            .line_starting_with(OTLP_LINE, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "baton serve printed no {OTLP_LINE:?} line (OTLP off?); it printed {:?}",
                    self.stdout.0.lock().expect("stdout lines")
                )
            });
        parse_otlp_line(&line).unwrap_or_else(|| panic!("unexpected OTLP line {line:?}"))
    }

    /// The address it listens on (gRPC and REST).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first line it printed (address and store).
    pub fn first_line(&self) -> &str {
        &self.first_line
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// A new connection to it, retrying for up to 10 s.
    pub async fn channel(&self) -> Channel {
        grpc::connect_retrying(self.addr, Duration::from_secs(10)).await
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in `baton serve`'s first line
/// (`Baton Pub/Sub server listening on 127.0.0.1:PORT (...)`).
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.strip_prefix(LISTENING)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The receivers in the line `OTLP traces: gRPC on ADDR, HTTP on ADDR (...)`.
fn parse_otlp_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (grpc, rest) = line.strip_prefix(OTLP_LINE)?.split_once(", HTTP on ")?;
    let http = rest.split_whitespace().next()?;
    Some((grpc.parse().ok()?, http.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_within_answers_the_exit_status_and_both_outputs() {
        let output = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(30),
        );
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
    }

    #[test]
    #[should_panic(expected = "did not exit within")]
    fn output_within_kills_a_process_that_runs_too_long() {
        output_within(Command::new("sleep").arg("30"), Duration::from_millis(200));
    }

    #[test]
    fn the_address_comes_from_the_first_line() {
        assert_eq!(
            parse_listening_line(
                "Baton Pub/Sub server listening on 127.0.0.1:4711 (gRPC and REST, in-memory store)\n"
            ),
            Some(SocketAddr::from(([127, 0, 0, 1], 4711)))
        );
        assert_eq!(parse_listening_line("something else"), None);
    }

    #[test]
    fn the_otlp_receivers_come_from_their_line() {
        assert_eq!(
            parse_otlp_line(
                "OTLP traces: gRPC on 127.0.0.1:4317, HTTP on 127.0.0.1:4318 (POST /v1/traces)\n"
            ),
            Some((
                SocketAddr::from(([127, 0, 0, 1], 4317)),
                SocketAddr::from(([127, 0, 0, 1], 4318))
            ))
        );
        assert_eq!(parse_otlp_line("OTLP receiver off (--no-otlp)"), None);
    }
}
