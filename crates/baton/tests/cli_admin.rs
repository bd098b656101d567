//! The `baton` admin verbs against a real server, one test per verb family:
//! snapshots (and their update) and seek, schemas and their revisions, topic
//! and subscription updates (the issue's revision pinning end to end),
//! modify-push-config, a topic's subscriptions and detaching them, and the
//! IAM policy verbs (test-iam-permissions also against a server enforcing
//! IAM); JSON outputs and exit statuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use baton_testkit::process::baton_command;
use baton_testkit::server::TestServer;
use serde_json::Value;

const AVRO_V1: &str =
    r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
const AVRO_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0}]}"#;

fn baton(host: &str, args: &[&str]) -> Output {
    baton_command(Path::new(env!("CARGO_BIN_EXE_baton")))
        .env("PUBSUB_EMULATOR_HOST", host)
        .args(args)
        .output()
        .expect("the baton binary runs")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "baton failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The one stderr line of a failed run, with exit status `code`.
fn fails_with(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// The first stderr line of a run refused as a usage error: exit status 2,
/// clap's `error: ...` and the verb's usage line (`usage` starts it),
/// nothing on stdout.
fn usage_error(output: &Output, usage: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty(), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.lines().any(|line| line.starts_with(usage)),
        "no `{usage}` line in:\n{stderr}"
    );
    stderr.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_seek() {
    let server = TestServer::start().await;
    let h = &server.host();
    json(&baton(
        h,
        &["topics", "create", "orders", "--format", "json"],
    ));
    json(&baton(
        h,
        &[
            "subscriptions",
            "create",
            "worker",
            "--topic",
            "orders",
            "--format",
            "json",
        ],
    ));
    server.publish("projects/baton/topics/orders", &["a"]).await;
    let created = json(&baton(
        h,
        &[
            "snapshots",
            "create",
            "before",
            "--subscription",
            "worker",
            "--labels",
            "env=test",
            "--format",
            "json",
        ],
    ));
    assert_eq!(created["name"], "projects/baton/snapshots/before");
    assert_eq!(created["topic"], "projects/baton/topics/orders");
    assert_eq!(created["labels"]["env"], "test");
    let described = json(&baton(
        h,
        &["snapshots", "describe", "before", "--format", "json"],
    ));
    assert_eq!(described["name"], created["name"]);
    let listed = json(&baton(h, &["snapshots", "list", "--format", "json"]));
    assert_eq!(listed[0]["name"], created["name"]);
    let of_topic = json(&baton(
        h,
        &["topics", "list-snapshots", "orders", "--format", "json"],
    ));
    assert_eq!(
        of_topic,
        serde_json::json!(["projects/baton/snapshots/before"])
    );

    server
        .pull_acking_all(
            "projects/baton/subscriptions/worker",
            1,
            std::time::Duration::from_secs(5),
        )
        .await;
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 0);
    let sought = json(&baton(
        h,
        &[
            "subscriptions",
            "seek",
            "worker",
            "--snapshot",
            "before",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        sought["subscriptionId"],
        "projects/baton/subscriptions/worker"
    );
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 1);
    json(&baton(
        h,
        &[
            "subscriptions",
            "seek",
            "worker",
            "--time",
            "2100-01-01T00:00:00Z",
            "--format",
            "json",
        ],
    ));
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 0);
    // A bad time is a usage error (2), a missing snapshot NOT_FOUND (3),
    // neither flag a usage error too.
    let line = usage_error(
        &baton(
            h,
            &["subscriptions", "seek", "worker", "--time", "yesterday"],
        ),
        "For more information, try '--help'.",
    );
    assert!(line.contains("expected an RFC 3339 time"), "{line}");
    fails_with(
        &baton(
            h,
            &["subscriptions", "seek", "worker", "--snapshot", "nope"],
        ),
        3,
    );
    assert_eq!(
        baton(h, &["subscriptions", "seek", "worker"]).status.code(),
        Some(2)
    );

    assert!(
        baton(h, &["snapshots", "delete", "before"])
            .status
            .success()
    );
    let line = fails_with(&baton(h, &["snapshots", "describe", "before"]), 3);
    assert!(
        line.contains("`baton snapshots describe before` failed"),
        "{line}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_revisions_and_validation() {
    let server = TestServer::start().await;
    let h = &server.host();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order-v2.avsc");
    std::fs::write(&file, AVRO_V2).unwrap();
    let file = file.to_str().unwrap();

    let created = json(&baton(
        h,
        &[
            "schemas",
            "create",
            "order",
            "--type",
            "avro",
            "--definition",
            AVRO_V1,
            "--format",
            "json",
        ],
    ));
    assert_eq!(created["name"], "projects/baton/schemas/order");
    assert_eq!(created["type"], "AVRO");
    let first = created["revisionId"].as_str().unwrap().to_string();
    let described = json(&baton(
        h,
        &["schemas", "describe", "order", "--format", "json"],
    ));
    assert_eq!(described["definition"], AVRO_V1);
    let committed = json(&baton(
        h,
        &[
            "schemas",
            "commit",
            "order",
            "--type",
            "avro",
            "--definition-file",
            file,
            "--format",
            "json",
        ],
    ));
    let second = committed["revisionId"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let revisions = json(&baton(
        h,
        &["schemas", "list-revisions", "order", "--format", "json"],
    ));
    assert_eq!(revisions.as_array().unwrap().len(), 2);
    let listed = json(&baton(h, &["schemas", "list", "--format", "json"]));
    assert_eq!(listed[0]["name"], "projects/baton/schemas/order");
    let rolled = json(&baton(
        h,
        &[
            "schemas",
            "rollback",
            "order",
            "--revision-id",
            &first,
            "--format",
            "json",
        ],
    ));
    assert_eq!(rolled["definition"], AVRO_V1);
    let deleted = json(&baton(
        h,
        &[
            "schemas",
            "delete-revision",
            &format!("order@{second}"),
            "--format",
            "json",
        ],
    ));
    assert_eq!(deleted["revisionId"], second.as_str());

    json(&baton(
        h,
        &[
            "schemas",
            "validate-schema",
            "--type",
            "avro",
            "--definition-file",
            file,
            "--format",
            "json",
        ],
    ));
    let line = fails_with(
        &baton(
            h,
            &[
                "schemas",
                "validate-schema",
                "--type",
                "avro",
                "--definition",
                "{bad",
            ],
        ),
        2,
    );
    assert!(line.contains("INVALID_ARGUMENT"), "{line}");
    json(&baton(
        h,
        &[
            "schemas",
            "validate-message",
            "--schema-name",
            "order",
            "--message",
            r#"{"id":"1"}"#,
            "--message-encoding",
            "json",
            "--format",
            "json",
        ],
    ));
    json(&baton(
        h,
        &[
            "schemas",
            "validate-message",
            "--type",
            "avro",
            "--definition",
            AVRO_V1,
            "--message",
            r#"{"id":"1"}"#,
            "--message-encoding",
            "json",
            "--format",
            "json",
        ],
    ));
    fails_with(
        &baton(
            h,
            &[
                "schemas",
                "validate-message",
                "--schema-name",
                "order",
                "--message",
                "{}",
                "--message-encoding",
                "json",
            ],
        ),
        2,
    );
    // Neither --definition nor --definition-file: clap's usage error.
    assert_eq!(
        baton(h, &["schemas", "create", "x-schema", "--type", "avro"])
            .status
            .code(),
        Some(2)
    );
    // Neither --schema-name nor --type, and a revision without `@`: usage
    // errors too, refused before any call.
    let line = usage_error(
        &baton(
            h,
            &[
                "schemas",
                "validate-message",
                "--message",
                "{}",
                "--message-encoding",
                "json",
            ],
        ),
        "Usage: baton schemas validate-message",
    );
    assert!(line.contains("required arguments"), "{line}");
    let line = usage_error(
        &baton(h, &["schemas", "delete-revision", "order"]),
        "For more information, try '--help'.",
    );
    assert!(line.contains("SCHEMA@REVISION"), "{line}");
    assert_eq!(
        json(&baton(
            h,
            &["schemas", "list-revisions", "order", "--format", "json"]
        ))
        .as_array()
        .unwrap()
        .len(),
        2,
        "nothing was deleted"
    );
    assert!(baton(h, &["schemas", "delete", "order"]).status.success());
    fails_with(&baton(h, &["schemas", "describe", "order"]), 3);
    server.shutdown().await;
}

/// The issue's example: `baton topics update T --first-revision-id A
/// --last-revision-id B` pins the revisions while schema and encoding stay.
/// `topics create` takes gcloud's schema flags and comma-separated labels,
/// and the server validates publishes against the schema from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_with_a_schema() {
    let server = TestServer::start().await;
    let h = &server.host();
    let created = json(&baton(
        h,
        &[
            "schemas",
            "create",
            "order",
            "--type",
            "avro",
            "--definition",
            AVRO_V1,
            "--format",
            "json",
        ],
    ));
    let revision = created["revisionId"].as_str().unwrap().to_string();
    let topic = json(&baton(
        h,
        &[
            "topics",
            "create",
            "orders",
            "--labels",
            "env=prod,team=shop",
            "--schema",
            "order",
            "--message-encoding",
            "json",
            "--first-revision-id",
            &revision,
            "--format",
            "json",
        ],
    ));
    assert_eq!(topic["labels"]["env"], "prod");
    assert_eq!(topic["labels"]["team"], "shop");
    let settings = &topic["schemaSettings"];
    assert_eq!(settings["schema"], "projects/baton/schemas/order");
    assert_eq!(settings["encoding"], "JSON");
    assert_eq!(settings["firstRevisionId"], revision.as_str());
    // A publish the schema refuses fails as the server says.
    let refused = baton(h, &["topics", "publish", "orders", "--message", "not json"]);
    let line = fails_with(&refused, 2);
    assert!(line.contains("INVALID_ARGUMENT"), "{line}");
    // An encoding without a schema is a usage error.
    let output = baton(
        h,
        &["topics", "create", "other", "--message-encoding", "json"],
    );
    usage_error(&output, "Usage: baton topics create");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_subscription_updates() {
    let server = TestServer::start().await;
    let h = &server.host();
    let first = json(&baton(
        h,
        &[
            "schemas",
            "create",
            "order",
            "--type",
            "avro",
            "--definition",
            AVRO_V1,
            "--format",
            "json",
        ],
    ))["revisionId"]
        .as_str()
        .unwrap()
        .to_string();
    let last = json(&baton(
        h,
        &[
            "schemas",
            "commit",
            "order",
            "--type",
            "avro",
            "--definition",
            AVRO_V2,
            "--format",
            "json",
        ],
    ))["revisionId"]
        .as_str()
        .unwrap()
        .to_string();
    json(&baton(
        h,
        &[
            "topics", "create", "orders", "--labels", "env=test", "--format", "json",
        ],
    ));
    let with_schema = json(&baton(
        h,
        &[
            "topics",
            "update",
            "orders",
            "--schema",
            "order",
            "--message-encoding",
            "json",
            "--update-labels",
            "team=core",
            "--remove-labels",
            "env",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        with_schema["schemaSettings"]["schema"],
        "projects/baton/schemas/order"
    );
    assert_eq!(with_schema["schemaSettings"]["encoding"], "JSON");
    assert_eq!(with_schema["labels"], serde_json::json!({"team": "core"}));
    let pinned = json(&baton(
        h,
        &[
            "topics",
            "update",
            "orders",
            "--first-revision-id",
            &first,
            "--last-revision-id",
            &last,
            "--format",
            "json",
        ],
    ));
    let settings = &pinned["schemaSettings"];
    assert_eq!(
        settings["schema"], "projects/baton/schemas/order",
        "schema stays"
    );
    assert_eq!(settings["encoding"], "JSON", "encoding stays");
    assert_eq!(settings["firstRevisionId"], first.as_str());
    assert_eq!(settings["lastRevisionId"], last.as_str());
    assert_eq!(pinned["labels"]["team"], "core");
    let described = json(&baton(
        h,
        &["topics", "describe", "orders", "--format", "json"],
    ));
    assert_eq!(described["schemaSettings"], pinned["schemaSettings"]);
    let cleared = json(&baton(
        h,
        &[
            "topics",
            "update",
            "orders",
            "--clear-schema-settings",
            "--clear-labels",
            "--format",
            "json",
        ],
    ));
    assert!(
        cleared.get("schemaSettings").is_none_or(Value::is_null),
        "{cleared}"
    );
    // Nothing to change: a usage error (2), said before anything is sent;
    // a bad value: INVALID_ARGUMENT (2).
    let line = usage_error(
        &baton(h, &["topics", "update", "orders"]),
        "Usage: baton topics update [OPTIONS] <TOPIC>",
    );
    assert_eq!(
        line,
        "error: nothing to update: pass at least one setting to change"
    );
    usage_error(
        &baton(h, &["subscriptions", "update", "worker"]),
        "Usage: baton subscriptions update [OPTIONS] <SUBSCRIPTION>",
    );
    // `--max-delivery-attempts` alone qualifies nothing: still a usage error.
    usage_error(
        &baton(
            h,
            &[
                "subscriptions",
                "update",
                "worker",
                "--max-delivery-attempts",
                "7",
            ],
        ),
        "Usage: baton subscriptions update",
    );
    fails_with(
        &baton(
            h,
            &[
                "topics",
                "update",
                "orders",
                "--message-retention-duration",
                "1s",
            ],
        ),
        2,
    );
    fails_with(
        &baton(h, &["topics", "update", "missing", "--clear-labels"]),
        3,
    );

    json(&baton(
        h,
        &[
            "subscriptions",
            "create",
            "worker",
            "--topic",
            "orders",
            "--format",
            "json",
        ],
    ));
    let updated = json(&baton(
        h,
        &[
            "subscriptions",
            "update",
            "worker",
            "--ack-deadline",
            "60",
            "--push-endpoint",
            "http://127.0.0.1:9/push",
            "--update-labels",
            "a=1",
            "--format",
            "json",
        ],
    ));
    assert_eq!(updated["ackDeadlineSeconds"], 60);
    assert_eq!(
        updated["pushConfig"]["pushEndpoint"],
        "http://127.0.0.1:9/push"
    );
    assert_eq!(updated["labels"]["a"], "1");
    let pulled = json(&baton(
        h,
        &[
            "subscriptions",
            "modify-push-config",
            "worker",
            "--push-endpoint",
            "",
            "--format",
            "json",
        ],
    ));
    assert!(
        pulled["pushConfig"]["pushEndpoint"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{pulled}"
    );
    let pushed = json(&baton(
        h,
        &[
            "subscriptions",
            "modify-push-config",
            "worker",
            "--push-endpoint",
            "http://127.0.0.1:9/other",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        pushed["pushConfig"]["pushEndpoint"],
        "http://127.0.0.1:9/other"
    );
    fails_with(
        &baton(
            h,
            &["subscriptions", "update", "worker", "--ack-deadline", "601"],
        ),
        2,
    );
    fails_with(
        &baton(
            h,
            &[
                "subscriptions",
                "modify-push-config",
                "missing",
                "--push-endpoint",
                "",
            ],
        ),
        3,
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_verbs_on_every_resource_kind() {
    let server = TestServer::start().await;
    let h = &server.host();
    json(&baton(
        h,
        &["topics", "create", "orders", "--format", "json"],
    ));
    json(&baton(
        h,
        &[
            "subscriptions",
            "create",
            "worker",
            "--topic",
            "orders",
            "--format",
            "json",
        ],
    ));
    json(&baton(
        h,
        &[
            "snapshots",
            "create",
            "snap",
            "--subscription",
            "worker",
            "--format",
            "json",
        ],
    ));
    json(&baton(
        h,
        &[
            "schemas",
            "create",
            "order",
            "--type",
            "avro",
            "--definition",
            AVRO_V1,
            "--format",
            "json",
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    for (family, name) in [
        ("topics", "orders"),
        ("subscriptions", "worker"),
        ("snapshots", "snap"),
        ("schemas", "order"),
    ] {
        let added = json(&baton(
            h,
            &[
                family,
                "add-iam-policy-binding",
                name,
                "--member",
                "user:ana@example.com",
                "--role",
                "roles/pubsub.viewer",
                "--format",
                "json",
            ],
        ));
        assert_eq!(
            added["bindings"][0]["role"], "roles/pubsub.viewer",
            "{family}"
        );
        assert_eq!(added["bindings"][0]["members"][0], "user:ana@example.com");
        let got = json(&baton(
            h,
            &[family, "get-iam-policy", name, "--format", "json"],
        ));
        assert_eq!(got["bindings"], added["bindings"]);
        // Round trip through a file, as gcloud's set-iam-policy takes it.
        let mut policy = got.clone();
        policy["bindings"][0]["members"] = serde_json::json!(["user:bo@example.com"]);
        let file = dir.path().join(format!("{family}.json"));
        std::fs::write(&file, policy.to_string()).unwrap();
        let set = json(&baton(
            h,
            &[
                family,
                "set-iam-policy",
                name,
                file.to_str().unwrap(),
                "--format",
                "json",
            ],
        ));
        assert_eq!(set["bindings"][0]["members"][0], "user:bo@example.com");
        let removed = json(&baton(
            h,
            &[
                family,
                "remove-iam-policy-binding",
                name,
                "--member",
                "user:bo@example.com",
                "--role",
                "roles/pubsub.viewer",
                "--format",
                "json",
            ],
        ));
        assert!(
            removed
                .get("bindings")
                .is_none_or(|b| b.as_array().is_none_or(Vec::is_empty)),
            "{removed}"
        );
        // Removing it again: nothing to remove (exit 1).
        fails_with(
            &baton(
                h,
                &[
                    family,
                    "remove-iam-policy-binding",
                    name,
                    "--member",
                    "user:bo@example.com",
                    "--role",
                    "roles/pubsub.viewer",
                ],
            ),
            1,
        );
    }
    fails_with(&baton(h, &["topics", "get-iam-policy", "missing"]), 3);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    fails_with(
        &baton(
            h,
            &["topics", "set-iam-policy", "orders", bad.to_str().unwrap()],
        ),
        1,
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_update_changes_labels_and_expiry() {
    let server = TestServer::start().await;
    let h = &server.host();
    json(&baton(
        h,
        &["topics", "create", "orders", "--format", "json"],
    ));
    json(&baton(
        h,
        &[
            "subscriptions",
            "create",
            "worker",
            "--topic",
            "orders",
            "--format",
            "json",
        ],
    ));
    json(&baton(
        h,
        &[
            "snapshots",
            "create",
            "before",
            "--subscription",
            "worker",
            "--labels",
            "env=test,tmp=1",
            "--format",
            "json",
        ],
    ));
    // Labels merge into the current ones, as gcloud's label flags do.
    let relabelled = json(&baton(
        h,
        &[
            "snapshots",
            "update",
            "before",
            "--update-labels",
            "env=prod,keep=yes",
            "--remove-labels",
            "tmp",
            "--format",
            "json",
        ],
    ));
    assert_eq!(relabelled["name"], "projects/baton/snapshots/before");
    assert_eq!(
        relabelled["labels"],
        serde_json::json!({"env": "prod", "keep": "yes"})
    );
    // The expiry alone leaves the labels.
    // An hour from now, whole seconds, as proto3 JSON writes a timestamp.
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let expire = baton_proto::wkt::Timestamp {
        seconds: i64::try_from(seconds).unwrap(),
        nanos: 0,
    };
    let rfc3339 = serde_json::to_value(expire)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let expiring = json(&baton(
        h,
        &[
            "snapshots",
            "update",
            "before",
            "--expire-time",
            &rfc3339,
            "--format",
            "json",
        ],
    ));
    assert_eq!(expiring["expireTime"], rfc3339.as_str(), "{expiring}");
    assert_eq!(expiring["labels"], relabelled["labels"]);
    let described = json(&baton(
        h,
        &["snapshots", "describe", "before", "--format", "json"],
    ));
    assert_eq!(described["expireTime"], rfc3339.as_str());
    // A duration from now works too.
    let before = std::time::SystemTime::now();
    let in_two_days = json(&baton(
        h,
        &[
            "snapshots",
            "update",
            "before",
            "--expire-time",
            "2d",
            "--format",
            "json",
        ],
    ));
    let at: baton_proto::wkt::Timestamp =
        serde_json::from_value(in_two_days["expireTime"].clone()).unwrap();
    let from = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2 * 86_400;
    let at = u64::try_from(at.seconds).unwrap();
    assert!(
        (from..from + 60).contains(&at),
        "{in_two_days}: {at} not 2 days after {from}"
    );
    // The table: `key: value` lines.
    let table = baton(h, &["snapshots", "update", "before", "--clear-labels"]);
    let text = String::from_utf8(json_ok(&table)).unwrap();
    assert!(
        text.lines()
            .any(|line| line == "name: projects/baton/snapshots/before"),
        "{text}"
    );
    let cleared = json(&baton(
        h,
        &["snapshots", "describe", "before", "--format", "json"],
    ));
    assert!(
        cleared
            .get("labels")
            .is_none_or(|l| l.as_object().is_none_or(serde_json::Map::is_empty)),
        "{cleared}"
    );

    usage_error(
        &baton(h, &["snapshots", "update", "before"]),
        "Usage: baton snapshots update [OPTIONS] <SNAPSHOT>",
    );
    usage_error(
        &baton(
            h,
            &["snapshots", "update", "before", "--expire-time", "tomorrow"],
        ),
        "For more information, try '--help'.",
    );
    fails_with(
        &baton(h, &["snapshots", "update", "missing", "--clear-labels"]),
        3,
    );
    server.shutdown().await;
}

/// The stdout of a successful run.
fn json_ok(output: &Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "baton failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_subscriptions_and_detaching_one() {
    let server = TestServer::start().await;
    let h = &server.host();
    json(&baton(
        h,
        &["topics", "create", "orders", "--format", "json"],
    ));
    for sub in ["worker", "auditor"] {
        json(&baton(
            h,
            &[
                "subscriptions",
                "create",
                sub,
                "--topic",
                "orders",
                "--format",
                "json",
            ],
        ));
    }
    let mut listed: Vec<String> = serde_json::from_value(json(&baton(
        h,
        &["topics", "list-subscriptions", "orders", "--format", "json"],
    )))
    .unwrap();
    listed.sort();
    assert_eq!(
        listed,
        [
            "projects/baton/subscriptions/auditor",
            "projects/baton/subscriptions/worker"
        ]
    );
    let table = String::from_utf8(json_ok(&baton(
        h,
        &["topics", "list-subscriptions", "orders"],
    )))
    .unwrap();
    let mut lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.remove(0), "NAME", "{table}");
    lines.sort_unstable();
    assert_eq!(lines, listed, "{table}");

    server.publish("projects/baton/topics/orders", &["a"]).await;
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 1);
    let detach = baton(
        h,
        &[
            "topics",
            "detach-subscription",
            "worker",
            "--format",
            "json",
        ],
    );
    let detached = json(&detach);
    assert_eq!(detached["name"], "projects/baton/subscriptions/worker");
    assert_eq!(detached["detached"], true, "{detached}");
    assert_eq!(
        String::from_utf8_lossy(&detach.stderr),
        "Detached subscription [projects/baton/subscriptions/worker].\n"
    );
    assert_eq!(server.backlog("projects/baton/subscriptions/worker"), 0);
    assert_eq!(
        json(&baton(
            h,
            &["topics", "list-subscriptions", "orders", "--format", "json"],
        )),
        serde_json::json!(["projects/baton/subscriptions/auditor"])
    );
    let described = json(&baton(
        h,
        &["subscriptions", "describe", "worker", "--format", "json"],
    ));
    assert_eq!(described["detached"], true);
    // Pulling from it: FAILED_PRECONDITION, the usage status.
    let line = fails_with(&baton(h, &["subscriptions", "pull", "worker"]), 2);
    assert!(line.contains("FAILED_PRECONDITION"), "{line}");
    // The table form prints the subscription's fields.
    let again = String::from_utf8(json_ok(&baton(
        h,
        &["topics", "detach-subscription", "auditor"],
    )))
    .unwrap();
    assert!(again.lines().any(|l| l == "detached: true"), "{again}");
    assert_eq!(
        json(&baton(
            h,
            &["topics", "list-subscriptions", "orders", "--format", "json"],
        )),
        serde_json::json!([])
    );

    let line = fails_with(&baton(h, &["topics", "detach-subscription", "missing"]), 3);
    assert!(
        line.contains("`baton topics detach-subscription missing` failed"),
        "{line}"
    );
    // A missing topic lists nothing, as the emulator answers.
    assert_eq!(
        json(&baton(
            h,
            &[
                "topics",
                "list-subscriptions",
                "missing",
                "--format",
                "json"
            ],
        )),
        serde_json::json!([])
    );
    usage_error(
        &baton(h, &["topics", "detach-subscription"]),
        "Usage: baton topics detach-subscription",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_iam_permissions_on_every_resource_kind() {
    let server = TestServer::start().await;
    let h = &server.host();
    json(&baton(
        h,
        &["topics", "create", "orders", "--format", "json"],
    ));
    json(&baton(
        h,
        &[
            "subscriptions",
            "create",
            "worker",
            "--topic",
            "orders",
            "--format",
            "json",
        ],
    ));
    json(&baton(
        h,
        &[
            "snapshots",
            "create",
            "snap",
            "--subscription",
            "worker",
            "--format",
            "json",
        ],
    ));
    json(&baton(
        h,
        &[
            "schemas",
            "create",
            "order",
            "--type",
            "avro",
            "--definition",
            AVRO_V1,
            "--format",
            "json",
        ],
    ));
    for (family, name, permissions) in [
        (
            "topics",
            "orders",
            ["pubsub.topics.publish", "pubsub.topics.get"],
        ),
        (
            "subscriptions",
            "worker",
            ["pubsub.subscriptions.consume", "pubsub.subscriptions.get"],
        ),
        (
            "snapshots",
            "snap",
            ["pubsub.snapshots.seek", "pubsub.snapshots.get"],
        ),
        (
            "schemas",
            "order",
            ["pubsub.schemas.get", "pubsub.schemas.validate"],
        ),
    ] {
        // Without authentication every permission asked for is granted;
        // a comma-separated list and a repeated flag are the same.
        let joined = permissions.join(",");
        let granted = json(&baton(
            h,
            &[
                family,
                "test-iam-permissions",
                name,
                "--permissions",
                &joined,
                "--format",
                "json",
            ],
        ));
        assert_eq!(
            granted,
            serde_json::json!({ "permissions": permissions }),
            "{family}"
        );
        let repeated = json(&baton(
            h,
            &[
                family,
                "test-iam-permissions",
                name,
                "--permissions",
                permissions[0],
                "--permissions",
                permissions[1],
                "--format",
                "json",
            ],
        ));
        assert_eq!(repeated, granted, "{family}");
        let table = String::from_utf8(json_ok(&baton(
            h,
            &[
                family,
                "test-iam-permissions",
                name,
                "--permissions",
                &joined,
            ],
        )))
        .unwrap();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["PERMISSION", "GRANTED"],
                vec![permissions[0], "yes"],
                vec![permissions[1], "yes"],
            ],
            "{family}: {table}"
        );
        fails_with(
            &baton(
                h,
                &[
                    family,
                    "test-iam-permissions",
                    "missing",
                    "--permissions",
                    &joined,
                ],
            ),
            3,
        );
        usage_error(
            &baton(h, &[family, "test-iam-permissions", name]),
            &format!("Usage: baton {family} test-iam-permissions"),
        );
    }
    server.shutdown().await;
}

/// Against a server enforcing IAM (TLS, a service account's key file), the
/// answer is what the caller's roles grant: a viewer of the topic may get
/// it but not publish to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_iam_permissions_answers_what_the_callers_roles_grant() {
    use baton_testkit::auth::operator_auth;
    use reqwest::Method;

    let server = TestServer::start_tls_with(
        baton_server::ServerConfig::new(baton_testkit::server::loopback())
            .with_auth(operator_auth()),
    )
    .await;
    let email = server.create_service_account("shop", "viewer").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, server.create_key(&email).await.to_string()).unwrap();
    server
        .as_operator(
            Method::PUT,
            "/v1/projects/shop/topics/orders",
            serde_json::json!({}),
        )
        .await;
    server
        .grant(
            "projects/shop/topics/orders",
            "roles/pubsub.viewer",
            &format!("serviceAccount:{email}"),
        )
        .await;
    let ca = server.tls_root().unwrap().to_str().unwrap().to_string();
    let endpoint = format!("https://localhost:{}", server.addr.port());
    let as_viewer = |args: &[&str]| {
        baton_command(Path::new(env!("CARGO_BIN_EXE_baton")))
            .env_remove("PUBSUB_EMULATOR_HOST")
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file)
            .args(args)
            .args([
                "--project",
                "shop",
                "--endpoint",
                &endpoint,
                "--ca-file",
                &ca,
            ])
            .output()
            .expect("the baton binary runs")
    };
    let granted = json(&as_viewer(&[
        "topics",
        "test-iam-permissions",
        "orders",
        "--permissions",
        "pubsub.topics.publish,pubsub.topics.get",
        "--format",
        "json",
    ]));
    assert_eq!(
        granted,
        serde_json::json!({"permissions": ["pubsub.topics.get"]})
    );
    let table = String::from_utf8(json_ok(&as_viewer(&[
        "topics",
        "test-iam-permissions",
        "orders",
        "--permissions",
        "pubsub.topics.publish,pubsub.topics.get",
    ])))
    .unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["PERMISSION", "GRANTED"],
            vec!["pubsub.topics.publish", "no"],
            vec!["pubsub.topics.get", "yes"],
        ],
        "{table}"
    );
    // Nothing granted: an empty answer, not an error.
    let none = json(&as_viewer(&[
        "topics",
        "test-iam-permissions",
        "orders",
        "--permissions",
        "pubsub.topics.delete",
        "--format",
        "json",
    ]));
    assert!(
        none.get("permissions")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)),
        "{none}"
    );
    // And the permission it lacks is refused where it matters (exit 4).
    fails_with(
        &as_viewer(&["topics", "publish", "orders", "--message", "hi"]),
        4,
    );
    server.shutdown().await;
}
