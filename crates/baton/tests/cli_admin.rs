//! The `baton` admin verbs against a real server, one test per verb family:
//! snapshots and seek, schemas and their revisions, topic and subscription
//! updates (the issue's revision pinning end to end), modify-push-config,
//! and the IAM policy verbs; JSON outputs and exit statuses.

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
    // A bad time is a usage error of the CLI's own (exit 1), a missing
    // snapshot NOT_FOUND (3), neither flag clap's usage error (2).
    fails_with(
        &baton(
            h,
            &["subscriptions", "seek", "worker", "--time", "yesterday"],
        ),
        1,
    );
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
    assert!(baton(h, &["schemas", "delete", "order"]).status.success());
    fails_with(&baton(h, &["schemas", "describe", "order"]), 3);
    server.shutdown().await;
}

/// The issue's example: `baton topics update T --first-revision-id A
/// --last-revision-id B` pins the revisions while schema and encoding stay.
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
    // Nothing to change: the CLI says so (exit 1); a bad value: INVALID_ARGUMENT (2).
    fails_with(&baton(h, &["topics", "update", "orders"]), 1);
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
