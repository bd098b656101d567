//! The `baton` client verbs against a real server: admin, publish, pull and
//! subscribe, in table and JSON formats, and their error exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use baton_testkit::process::baton_command;
use baton_testkit::server::TestServer;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// The `baton` binary under test.
fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_baton"))
}

/// The `baton` binary talking to the server at `host`.
fn command(host: &str) -> Command {
    let mut command = baton_command(bin());
    command.env("PUBSUB_EMULATOR_HOST", host);
    command
}

fn baton(host: &str, args: &[&str]) -> Output {
    command(host)
        .args(args)
        .output()
        .expect("the baton binary runs")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "baton failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_publish_and_pull() {
    let server = TestServer::start().await;
    let host = server.host();
    let h = host.as_str();
    let created = json(&baton(
        h,
        &[
            "topics", "create", "orders", "--labels", "env=test", "--format", "json",
        ],
    ));
    assert_eq!(created["name"], "projects/baton/topics/orders");
    assert_eq!(created["labels"]["env"], "test");
    let sub = json(&baton(
        h,
        &[
            "subscriptions",
            "create",
            "worker",
            "--topic",
            "orders",
            "--ack-deadline",
            "30",
            "--enable-message-ordering",
            "--format",
            "json",
        ],
    ));
    assert_eq!(sub["ackDeadlineSeconds"], 30);
    assert_eq!(sub["enableMessageOrdering"], true);

    let table = ok(&baton(h, &["topics", "list"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("projects/baton/topics/orders"));
    let listed = json(&baton(h, &["subscriptions", "list", "--format", "json"]));
    assert_eq!(listed[0]["name"], "projects/baton/subscriptions/worker");

    let published = json(&baton(
        h,
        &[
            "topics",
            "publish",
            "orders",
            "--message",
            "hello",
            "--attribute",
            "kind=greeting",
            "--ordering-key",
            "k1",
            "--format",
            "json",
        ],
    ));
    let id = published["messageIds"][0].as_str().unwrap().to_string();
    let pulled = json(&baton(
        h,
        &[
            "subscriptions",
            "pull",
            "worker",
            "--auto-ack",
            "--limit",
            "5",
            "--format",
            "json",
        ],
    ));
    assert_eq!(pulled.as_array().unwrap().len(), 1);
    assert_eq!(pulled[0]["message"]["data"], "hello");
    assert_eq!(pulled[0]["message"]["messageId"], id.as_str());
    assert_eq!(pulled[0]["message"]["orderingKey"], "k1");
    assert_eq!(pulled[0]["message"]["attributes"]["kind"], "greeting");
    // Acked: nothing left. (Checked on the server: an empty `baton
    // subscriptions pull` waits 2 s for messages, like gcloud's.)
    assert_eq!(
        server.backlog("projects/baton/subscriptions/worker"),
        0,
        "--auto-ack acked it"
    );

    // Without --auto-ack the message stays leased (not nacked).
    ok(&baton(
        h,
        &["topics", "publish", "orders", "--message", "kept"],
    ));
    let leased = json(&baton(
        h,
        &["subscriptions", "pull", "worker", "--format", "json"],
    ));
    assert_eq!(leased[0]["message"]["data"], "kept");
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 1);
    // A later pull gets only what was published since: the message the
    // first pull left behind is still leased, not nacked.
    ok(&baton(
        h,
        &["topics", "publish", "orders", "--message", "next"],
    ));
    let later = json(&baton(
        h,
        &[
            "subscriptions",
            "pull",
            "worker",
            "--limit",
            "5",
            "--format",
            "json",
        ],
    ));
    let later: Vec<&Value> = later.as_array().unwrap().iter().collect();
    assert_eq!(
        later
            .iter()
            .map(|m| m["message"]["data"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["next"],
        "a released message is not nacked"
    );
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 2);

    let missing = baton(h, &["topics", "describe", "nope"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));
    // Too short a name.
    let bad = baton(h, &["subscriptions", "create", "x", "--topic", "orders"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_ARGUMENT"));

    ok(&baton(h, &["subscriptions", "delete", "worker"]));
    ok(&baton(h, &["topics", "delete", "orders"]));
    let empty = json(&baton(h, &["topics", "list", "--format", "json"]));
    assert_eq!(empty.as_array().unwrap().len(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_until_stopped() {
    let server = TestServer::start().await;
    let host = server.host();
    ok(&baton(&host, &["topics", "create", "events"]));
    ok(&baton(
        &host,
        &["subscriptions", "create", "tail", "--topic", "events"],
    ));
    let mut child = tokio::process::Command::from(command(&host))
        .args(["subscribe", "tail", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    ok(&baton(
        &host,
        &["topics", "publish", "events", "--message", "streamed"],
    ));
    // Its first line, read as soon as it prints it.
    let line = tokio::time::timeout(Duration::from_secs(15), stdout.next_line())
        .await
        .expect("baton subscribe printed the message within 15 s")
        .unwrap()
        .expect("a line on stdout");
    let received: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(received["data"], "streamed");
    // It acks: the backlog empties while the stream runs (the child acks
    // after printing; the server signals nothing, so a short bounded poll).
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.backlog("projects/baton/subscriptions/tail") > 0 {
        assert!(
            Instant::now() < deadline,
            "the streamed message was not acked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGTERM stops it gracefully, with a zero exit status.
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("baton subscribe stops within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    server.shutdown().await;
}

/// stderr of a failed run: exactly one line, `error: ...`, with the exit
/// status `code`.
fn fails_with(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status of a run that printed:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    lines[0].to_owned()
}

#[test]
fn no_server_is_one_line_with_the_endpoint_a_hint_and_exit_5() {
    // A port nothing listens on; a backtrace would show if errors went
    // through anyhow's Debug with RUST_BACKTRACE set.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let output = command(&host)
        .env("RUST_BACKTRACE", "1")
        .args(["topics", "list"])
        .output()
        .unwrap();
    let line = fails_with(&output, 5);
    assert_eq!(
        line,
        format!(
            "error: `baton topics list` failed at http://{host}: the server is unreachable (connection refused). Is the server running? Start one with `baton serve`, or point --endpoint or PUBSUB_EMULATOR_HOST at it."
        )
    );
}

#[test]
fn no_credentials_for_google_cloud_is_one_line_on_how_to_authenticate() {
    let home = tempfile::tempdir().unwrap();
    let output = baton_command(bin())
        .env_remove("PUBSUB_EMULATOR_HOST")
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            home.path().join("missing.json"),
        )
        .env("HOME", home.path())
        .env("RUST_BACKTRACE", "1")
        .args(["topics", "list", "--project", "p"])
        .output()
        .unwrap();
    let line = fails_with(&output, 4);
    assert!(
        line.starts_with("error: `baton topics list` failed at https://pubsub.googleapis.com: cannot use Application Default credentials: could not find or open the credentials file"),
        "{line}"
    );
    assert!(
        line.ends_with("For a local server set PUBSUB_EMULATOR_HOST; for Google Cloud run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS."),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_name_the_command_and_have_their_exit_status() {
    let server = TestServer::start().await;
    let host = server.host();
    // Publishing to a missing topic: the error once, no log line before it.
    let line = fails_with(
        &baton(&host, &["topics", "publish", "nope", "--message", "hi"]),
        3,
    );
    assert_eq!(
        line,
        format!(
            "error: `baton topics publish nope` failed at http://{host}: NOT_FOUND: Topic not found. Check the name (`baton topics list`, `baton subscriptions list`) or create it first."
        )
    );
    let line = fails_with(&baton(&host, &["subscriptions", "describe", "nope"]), 3);
    assert!(line.contains("NOT_FOUND"), "{line}");
    // Refused as invalid: the usage status.
    let line = fails_with(
        &baton(
            &host,
            &[
                "topics",
                "create",
                "x",
                "--message-retention-duration",
                "1s",
            ],
        ),
        2,
    );
    assert!(line.contains("INVALID_ARGUMENT"), "{line}");
    // clap's own usage errors keep clap's status 2.
    let usage = baton(&host, &["topics", "frob"]);
    assert_eq!(usage.status.code(), Some(2));
    server.shutdown().await;
}

/// The subcommands `baton <path> --help` lists (`help` left out): the first
/// word of each entry of its `Commands:` section.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line[2..].starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Walks the command tree as the binary shows it (each `--help` lists the
/// subcommands below it): every leaf verb's `--help` has an example, and
/// the example runs that very verb.
#[test]
fn every_verb_shows_an_example_of_itself_in_its_help() {
    let mut pending = vec![Vec::<String>::new()];
    let mut leaves = Vec::new();
    while let Some(path) = pending.pop() {
        let output = baton_command(bin())
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "baton {path:?} --help: {help}");
        let subcommands = listed_subcommands(&help);
        if subcommands.is_empty() {
            let verb = format!("baton {}", path.join(" "));
            assert!(
                help.contains("\nExample:\n") || help.contains("\nExamples:\n"),
                "`{verb} --help` shows no example:\n{help}"
            );
            assert!(
                help.lines()
                    .any(|line| line == format!("  {verb}")
                        || line.starts_with(&format!("  {verb} "))),
                "`{verb} --help` has no example of `{verb}`:\n{help}"
            );
            leaves.push(verb);
        }
        for sub in subcommands {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
    }
    // The walk reached the whole tree, the new verbs included.
    for verb in [
        "baton serve",
        "baton subscribe",
        "baton topics create",
        "baton topics publish",
        "baton topics list-subscriptions",
        "baton topics detach-subscription",
        "baton topics test-iam-permissions",
        "baton subscriptions pull",
        "baton snapshots update",
        "baton schemas test-iam-permissions",
        "baton trace search",
        "baton iam service-accounts keys create",
    ] {
        assert!(
            leaves.iter().any(|l| l == verb),
            "{verb} not found in {leaves:?}"
        );
    }
    assert!(leaves.len() > 60, "{} verbs: {leaves:?}", leaves.len());
}

/// Bad flags and arguments are usage errors (exit 2) found before anything
/// is sent: with no server listening they still exit 2, not 5
/// (unavailable).
#[test]
fn usage_errors_exit_2_before_connecting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    for (args, says) in [
        (
            &["topics", "update", "orders"][..],
            "error: nothing to update: pass at least one setting to change",
        ),
        (
            &["subscriptions", "update", "worker"][..],
            "error: nothing to update: pass at least one setting to change",
        ),
        (
            &["snapshots", "update", "before-deploy"][..],
            "error: nothing to update: pass at least one setting to change",
        ),
        (
            &["subscriptions", "seek", "worker", "--time", "yesterday"][..],
            "error: invalid value 'yesterday' for '--time <TIME>'",
        ),
        (
            &["snapshots", "update", "s", "--expire-time", "soon"][..],
            "error: invalid value 'soon' for '--expire-time <EXPIRE_TIME>'",
        ),
        (
            &["topics", "test-iam-permissions", "orders"][..],
            "error: the following required arguments were not provided:",
        ),
        (
            &["schemas", "delete-revision", "order"][..],
            "error: invalid value 'order' for '<SCHEMA@REVISION>'",
        ),
        (
            &["topics", "frob"][..],
            "error: unrecognized subcommand 'frob'",
        ),
    ] {
        let output = baton(&host, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(says), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // The same verb with something to change does try the server: exit 5.
    let output = baton(&host, &["topics", "update", "orders", "--clear-labels"]);
    assert_eq!(output.status.code(), Some(5));
    // Google's endpoint with no project anywhere: a usage error too.
    let output = baton_command(bin())
        .args(["topics", "list", "--endpoint", &format!("https://{host}")])
        .env_remove("PUBSUB_EMULATOR_HOST")
        .env_remove("BATON_PROJECT")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("CLOUDSDK_CORE_PROJECT")
        .output()
        .expect("the baton binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no project: pass --project"), "{stderr}");
}

/// With no server, schema verbs (their own retry family) fail as the
/// other verbs do: unavailable, naming the unreachable server. (That they
/// give up within the command's retry budget is a unit test of
/// `with_command_retries`, so no test here times a process.)
#[test]
fn schema_verbs_without_a_server_fail_as_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = baton(&format!("127.0.0.1:{port}"), &["schemas", "list"]);
    let line = fails_with(&output, 5);
    assert!(line.contains("the server is unreachable"), "{line}");
}
