//! TLS and gzip with clients in other languages: Google's Python client
//! over gzip-compressed channels and over TLS (trusting Baton's development
//! CA the way gRPC C-core and `requests` do), the Python OpenTelemetry
//! OTLP/gRPC exporter with gzip, and Node's https trusting the CA through
//! NODE_EXTRA_CA_CERTS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baton_server::ServerConfig;
use baton_testkit::process::succeed_within;
use baton_testkit::python::{PROJECT, python, run_script, unique_prefix};
use baton_testkit::server::{TestServer, loopback};
use baton_testkit::trace_api::wait_for_trace;
use serde_json::{Value, json};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
/// How long a Python script or Node may run.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `tests/python/<script>` against `server` with `extra` args; answers
/// its JSON result.
async fn run_python(server: &TestServer, script: &str, prefix: &str, extra: &[&str]) -> Value {
    let python = tokio::task::spawn_blocking(|| python(TMP)).await.unwrap();
    run_script(&python, script, &server.host(), prefix, LIMIT, extra)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_and_otlp_exporter_over_gzip() {
    let server =
        TestServer::start_with(ServerConfig::new(loopback()).with_otlp_grpc(loopback())).await;
    let prefix = unique_prefix("gzip");
    let otlp = server.otlp_grpc_endpoint();
    let result = run_python(&server, "gzip_publish.py", &prefix, &["--otlp", &otlp]).await;
    let message_id = result["message_id"].as_str().unwrap();
    assert_eq!(
        result["pulled"],
        json!([{"message_id": message_id, "data_ok": true, "attributes": {"via": "gzip"}}]),
        "{result}"
    );
    assert_eq!(result["otlp"]["flushed"], true, "{result}");
    let trace = result["otlp"]["trace_id"].as_str().unwrap();
    let detail = wait_for_trace(server.addr, trace).await;
    assert_eq!(detail["spans"][0]["name"], "gzip span", "{detail}");
    assert_eq!(detail["spans"][0]["service"], "python-gzip", "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_tls() {
    let server = TestServer::start_tls().await;
    let ca = server.tls_root().unwrap().to_str().unwrap().to_owned();
    let endpoint = format!("localhost:{}", server.addr.port());
    let prefix = unique_prefix("tls");
    let extra = ["--endpoint", &endpoint, "--ca", &ca];
    let result = run_python(&server, "tls_publish.py", &prefix, &extra).await;
    let message_id = result["message_id"].as_str().unwrap();
    assert_eq!(
        result["pulled"],
        json!([{"message_id": message_id, "data": "over tls"}]),
        "{result}"
    );
    assert_eq!(result["rest_status"], 200, "{result}");
    assert_eq!(
        result["rest_topics"],
        json!([format!("projects/{PROJECT}/topics/{prefix}-topic")]),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_https_trusts_the_development_ca() {
    let server = TestServer::start_tls().await;
    let topic = server.create_topic("node-tls").await;
    let url = format!("https://localhost:{}/v1/{topic}", server.addr.port());
    let script = "require('https').get(process.argv[1], (res) => { let body = ''; \
                  const authorized = res.socket.authorized; \
                  res.on('data', (c) => body += c); \
                  res.on('end', () => console.log(JSON.stringify({status: res.statusCode, \
                  authorized, body: JSON.parse(body)}))); }) \
                  .on('error', (e) => { console.error(e); process.exit(1); });";
    let printed = succeed_within(
        tokio::process::Command::new("node")
            .args(["-e", script, &url])
            .env("NODE_EXTRA_CA_CERTS", server.tls_root().unwrap()),
        LIMIT,
    )
    .await;
    let answer: Value = serde_json::from_str(printed.stdout.trim()).unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["authorized"], true, "{answer}");
    assert_eq!(answer["body"]["name"], topic, "{answer}");
}
