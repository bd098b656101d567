//! Authentication and IAM with Google's own client libraries, against a
//! Baton serving TLS (its development CA) with authentication on:
//!
//! - Google's Python client with every credential flow Google's libraries
//!   use: a key file Baton made used as is (self-signed JWTs), the same key
//!   file through the JWT-bearer exchange at the key file's `token_uri`,
//!   Application Default Credentials from Baton's metadata server, and no
//!   credential at all. Publish and pull work where a policy grants the
//!   role, a topic without a grant is `PermissionDenied`, no credential is
//!   `Unauthenticated` (`tests/python/auth_flows.py`);
//! - a Python push receiver verifying the ID token of a push subscription's
//!   `oidc_token` with google-auth against Baton's certificates
//!   (`tests/python/verify_id_token.py`);
//! - Google's Node client (`@google-cloud/pubsub` 5.x) with a key file
//!   (`tests/node/auth_publish.js`).
//!
//! Every server runs on the system clock: google-auth checks `iat` and
//! `exp` against the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use baton_server::{MetadataSettings, ServerConfig};
use baton_testkit::auth::operator_auth;
use baton_testkit::process::succeed_within;
use baton_testkit::push::PushRecorder;
use baton_testkit::python::{PROJECT, ScriptEnv, python, run_script_with, unique_prefix};
use baton_testkit::server::{TestServer, loopback};
use reqwest::Method;
use serde_json::{Value, json};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn auth_config() -> ServerConfig {
    ServerConfig::new(loopback()).with_auth(operator_auth())
}

/// The service account `id` with a key and the [`resources`] (named with
/// `prefix`) granted to it: the key file Baton answers, written to `dir`,
/// its contents and the resources.
async fn granted_key_file(
    server: &TestServer,
    id: &str,
    prefix: &str,
    dir: &Path,
) -> (PathBuf, Value, Resources) {
    let email = server.create_service_account(PROJECT, id).await;
    let contents = server.create_key(&email).await;
    let path = dir.join("key.json");
    std::fs::write(&path, contents.to_string()).unwrap();
    let r = resources(server, prefix, &format!("serviceAccount:{email}")).await;
    (path, contents, r)
}

/// The topic with a grant, the topic without one and the subscription
/// with a grant.
#[derive(Debug)]
struct Resources {
    topic: String,
    denied_topic: String,
    subscription: String,
}

/// Creates the resources (as the operator) and grants `member`
/// `roles/pubsub.publisher` on the topic and `roles/pubsub.subscriber` on
/// the subscription, nothing on the denied topic.
async fn resources(server: &TestServer, prefix: &str, member: &str) -> Resources {
    let r = Resources {
        topic: format!("projects/{PROJECT}/topics/{prefix}-granted"),
        denied_topic: format!("projects/{PROJECT}/topics/{prefix}-denied"),
        subscription: format!("projects/{PROJECT}/subscriptions/{prefix}-sub"),
    };
    for topic in [&r.topic, &r.denied_topic] {
        server
            .as_operator(Method::PUT, &format!("/v1/{topic}"), json!({}))
            .await;
    }
    server
        .as_operator(
            Method::PUT,
            &format!("/v1/{}", r.subscription),
            json!({"topic": r.topic}),
        )
        .await;
    server
        .grant(&r.topic, "roles/pubsub.publisher", member)
        .await;
    server
        .grant(&r.subscription, "roles/pubsub.subscriber", member)
        .await;
    r
}

/// The environment of a Python client reaching Baton as a real endpoint:
/// no emulator host, gRPC and `requests` trusting Baton's CA, no gcloud
/// configuration or metadata server of this machine to fall back on.
fn tls_env(server: &TestServer, gcloud_config: &Path) -> ScriptEnv {
    let ca = server.tls_root().expect("the server serves TLS");
    ScriptEnv::default()
        .remove("PUBSUB_EMULATOR_HOST")
        .remove("GCE_METADATA_HOST")
        .remove("GCE_METADATA_IP")
        .remove("NO_GCE_CHECK")
        .remove("GOOGLE_CLOUD_PROJECT")
        .remove("CLOUDSDK_CORE_PROJECT")
        .set("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", ca)
        .set("REQUESTS_CA_BUNDLE", ca)
        .set("CLOUDSDK_CONFIG", gcloud_config)
}

/// `localhost:PORT`: the name the development certificate is for.
fn endpoint(server: &TestServer) -> String {
    format!("localhost:{}", server.addr.port())
}

/// Runs `auth_flows.py` with `flow`; answers its JSON result.
async fn run_flow(
    server: &TestServer,
    flow: &str,
    key_file: Option<&Path>,
    resources: &Resources,
    env: &ScriptEnv,
) -> Value {
    let python = tokio::task::spawn_blocking(|| python(TMP)).await.unwrap();
    let prefix = unique_prefix(flow);
    let endpoint = endpoint(server);
    let mut args = vec![
        "--endpoint",
        &endpoint,
        "--flow",
        flow,
        "--topic",
        &resources.topic,
        "--denied-topic",
        &resources.denied_topic,
        "--subscription",
        &resources.subscription,
    ];
    if let Some(key) = key_file {
        args.extend(["--key-file", key.to_str().unwrap()]);
    }
    let run = run_script_with(
        &python,
        "auth_flows.py",
        &endpoint,
        &prefix,
        SCRIPT_TIMEOUT,
        &args,
        env,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "auth_flows.py --flow {flow}: {:.1?}\n  {}\n--- stderr\n{}",
        run.elapsed, run.result, run.stderr
    );
    run.result
}

/// Asserts what a flow with a granted credential shows: publish and pull
/// work, the denied topic is `PermissionDenied`, and the one message pulled
/// is the one published.
fn assert_granted(result: &Value, credentials: &str) {
    assert_eq!(result["credentials"], credentials, "{result}");
    assert_eq!(
        result["steps"],
        json!({"publish": "ok", "publish_denied_topic": "PermissionDenied", "pull": "ok"}),
        "{result}"
    );
    let published = &result["published"];
    assert!(published["message_id"].is_string(), "{result}");
    assert_eq!(result["received"], json!([published]), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_a_key_file_sends_self_signed_jwts_that_policies_authorize() {
    // The token endpoint named in the key file is unreachable, so only
    // self-signed JWTs (no token exchange) can authenticate.
    let server =
        TestServer::start_tls_with(auth_config().with_public_url("https://127.0.0.1:1")).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, contents, r) =
        granted_key_file(&server, "python-self-signed", "selfsigned", dir.path()).await;
    assert_eq!(contents["token_uri"], "https://127.0.0.1:1/token");
    let env = tls_env(&server, dir.path());
    let result = run_flow(&server, "self_signed", Some(&key), &r, &env).await;
    assert_granted(&result, "google.oauth2.service_account.Credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_exchanges_a_key_file_at_batons_token_endpoint_for_an_access_token() {
    let server = TestServer::start_tls_with(auth_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, contents, r) = granted_key_file(&server, "python-token", "token", dir.path()).await;
    assert_eq!(contents["token_uri"], server.url("/token"));
    assert!(server.url("/token").starts_with("https://"));
    let env = tls_env(&server, dir.path());
    let result = run_flow(&server, "token", Some(&key), &r, &env).await;
    // The client holds nothing but the access token the endpoint answered.
    assert_granted(&result, "google.oauth2.credentials.Credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_application_default_credentials_come_from_batons_metadata_server() {
    let data = tempfile::tempdir().unwrap();
    let gcloud_config = tempfile::tempdir().unwrap();
    let config = auth_config().with_data_dir(data.path());
    // The account must exist before the metadata server speaks for it: it
    // is made on a first run and kept in the data directory.
    let first = TestServer::start_tls_with(config.clone()).await;
    let email = first.create_service_account(PROJECT, "python-gke").await;
    first.shutdown().await;
    let server = TestServer::start_tls_with(config.with_metadata(MetadataSettings {
        addr: loopback(),
        service_account: email.clone(),
    }))
    .await;
    let r = resources(&server, "metadata", &format!("serviceAccount:{email}")).await;
    let metadata = server.server().metadata_addr().unwrap().to_string();
    let env = tls_env(&server, gcloud_config.path())
        .set("GCE_METADATA_HOST", &metadata)
        .set("GCE_METADATA_IP", &metadata);
    let result = run_flow(&server, "metadata", None, &r, &env).await;
    assert_granted(
        &result,
        "google.auth.compute_engine.credentials.Credentials",
    );
    // The project came from the metadata server too.
    assert_eq!(result["adc_project"], PROJECT, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_without_a_credential_is_unauthenticated() {
    let server = TestServer::start_tls_with(auth_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let email = server.create_service_account(PROJECT, "python-none").await;
    let r = resources(&server, "none", &format!("serviceAccount:{email}")).await;
    // Something to pull, so a pull that got through would show it.
    server
        .as_operator(
            Method::POST,
            &format!("/v1/{}:publish", r.topic),
            json!({"messages": [{"data": "d2FpdGluZw=="}]}),
        )
        .await;
    let env = tls_env(&server, dir.path());
    let result = run_flow(&server, "none", None, &r, &env).await;
    assert_eq!(
        result["credentials"], "google.auth.credentials.AnonymousCredentials",
        "{result}"
    );
    assert_eq!(
        result["steps"],
        json!({
            "publish": "Unauthenticated",
            "publish_denied_topic": "Unauthenticated",
            "pull": "Unauthenticated",
        }),
        "{result}"
    );
    assert_eq!(result["received"], json!([]), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_push_receiver_verifies_the_oidc_token_with_batons_certs() {
    const AUDIENCE: &str = "https://push.example/handler";
    let server = TestServer::start_tls_with(auth_config()).await;
    let recorder = PushRecorder::start().await;
    let email = server.create_service_account(PROJECT, "push-invoker").await;
    let topic = format!("projects/{PROJECT}/topics/pushed");
    server
        .as_operator(Method::PUT, &format!("/v1/{topic}"), json!({}))
        .await;
    server
        .as_operator(
            Method::PUT,
            &format!("/v1/projects/{PROJECT}/subscriptions/pushed"),
            json!({
                "topic": topic,
                "pushConfig": {
                    "pushEndpoint": recorder.url("/handler"),
                    "oidcToken": {"serviceAccountEmail": email, "audience": AUDIENCE},
                },
            }),
        )
        .await;
    server
        .as_operator(
            Method::POST,
            &format!("/v1/{topic}:publish"),
            json!({"messages": [{"data": "cHVzaGVk"}]}),
        )
        .await;
    let push = recorder.expect().await;
    assert_eq!(push.json()["message"]["data"], "cHVzaGVk");
    let token = push
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token.txt");
    std::fs::write(&token_file, &token).unwrap();

    let python = tokio::task::spawn_blocking(|| python(TMP)).await.unwrap();
    let base = server.url("");
    let env = tls_env(&server, dir.path());
    let run = run_script_with(
        &python,
        "verify_id_token.py",
        &base,
        &unique_prefix("verify"),
        SCRIPT_TIMEOUT,
        &[
            "--base",
            &base,
            "--token-file",
            token_file.to_str().unwrap(),
            "--audience",
            AUDIENCE,
        ],
        &env,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("verify_id_token.py: {:.1?}\n  {}", run.elapsed, run.result);
    let result = run.result;
    let claims = &result["verified"]["claims"];
    assert_eq!(result["verified"]["ok"], true, "{result}");
    assert_eq!(claims["email"], email, "{result}");
    assert_eq!(claims["email_verified"], true, "{result}");
    assert_eq!(claims["aud"], AUDIENCE, "{result}");
    assert_eq!(claims["iss"], base, "{result}");
    // The JWKS publishes the key of the certificate that verified it.
    assert_eq!(result["jwks_matches_certificate"], true, "{result}");
    // The same check refuses the token for another audience.
    assert_eq!(result["other_audience"]["ok"], false, "{result}");
}

/// `tests/node`, where `npm ci` (scripts/test) installed the Node client.
fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_with_a_key_file_publishes_where_granted_and_is_refused_elsewhere() {
    assert!(
        node_dir()
            .join("node_modules/@google-cloud/pubsub")
            .is_dir(),
        "the Node client is not installed: run `npm ci` in {} (scripts/test does)",
        node_dir().display()
    );
    let server = TestServer::start_tls_with(auth_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, _, r) = granted_key_file(&server, "node-publisher", "node", dir.path()).await;
    let ca = server.tls_root().unwrap();
    let started = Instant::now();
    let printed = succeed_within(
        tokio::process::Command::new("node")
            .arg("auth_publish.js")
            .args(["--endpoint", &endpoint(&server)])
            .arg("--ca")
            .arg(ca)
            .arg("--key-file")
            .arg(&key)
            .args(["--topic", &r.topic, "--denied-topic", &r.denied_topic])
            .args(["--timeout", "60"])
            // grpc-js reads its roots from this file when it is set (this
            // machine sets it to the system bundle), else from Node's store
            // (with NODE_EXTRA_CA_CERTS); `https` (a token exchange) reads
            // Node's store.
            .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", ca)
            .env("NODE_EXTRA_CA_CERTS", ca)
            .env_remove("PUBSUB_EMULATOR_HOST")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .current_dir(node_dir()),
        SCRIPT_TIMEOUT,
    )
    .await;
    eprintln!(
        "auth_publish.js: {:.1?}\n  {}--- stderr\n{}",
        started.elapsed(),
        printed.stdout,
        printed.stderr
    );
    let result: Value =
        serde_json::from_str(printed.stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(result["publish"]["outcome"], "ok", "{result}");
    let message_id = result["publish"]["value"].as_str().unwrap();
    // PERMISSION_DENIED and UNAUTHENTICATED.
    assert_eq!(result["publish_denied_topic"]["code"], 7, "{result}");
    assert_eq!(result["publish_without_credential"]["code"], 16, "{result}");
    // The message Node published is on the subscription, once.
    let pulled = server
        .as_operator(
            Method::POST,
            &format!("/v1/{}:pull", r.subscription),
            json!({"maxMessages": 10, "returnImmediately": true}),
        )
        .await;
    let received = pulled["receivedMessages"].as_array().unwrap();
    assert_eq!(received.len(), 1, "{pulled}");
    assert_eq!(received[0]["message"]["messageId"], message_id);
    let data = base64::engine::general_purpose::STANDARD
        .decode(received[0]["message"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, b"from node");
}
