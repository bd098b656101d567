//! An SDK exporting all three OTLP signals to Baton logs no errors: the
//! Python OpenTelemetry SDK, configured only by
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, exports a span, a metric and a log record
//! over OTLP/HTTP; every flush succeeds, nothing is logged, and Baton counts
//! the metric points and log records it answered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baton_server::ServerConfig;
use baton_testkit::python::{ScriptEnv, python, run_script_with, unique_prefix};
use baton_testkit::server::{TestServer, loopback};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_exports_traces_metrics_and_logs_without_errors() {
    let python = tokio::task::spawn_blocking(|| python(TMP)).await.unwrap();
    let server = TestServer::start_with(
        ServerConfig::new(loopback())
            .with_otlp_grpc(loopback())
            .with_otlp_http(loopback()),
    )
    .await;
    let env = ScriptEnv::default()
        .set("PUBSUB_EMULATOR_HOST", server.host())
        .set("OTEL_EXPORTER_OTLP_ENDPOINT", server.otlp_http_endpoint())
        .set("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    let run = run_script_with(
        &python,
        "otlp_all_signals.py",
        &server.host(),
        &unique_prefix("all-signals"),
        Duration::from_secs(60),
        &[],
        &env,
    )
    .await
    .unwrap();
    let result = run.result;
    for signal in ["traces", "metrics", "logs"] {
        assert_eq!(
            result["flushed"][signal], true,
            "{signal}: {result}\n{}",
            run.stderr
        );
    }
    assert_eq!(
        result["problems"],
        serde_json::json!([]),
        "{result}\n{}",
        run.stderr
    );
    let counts = server.server().signal_stats();
    assert!(
        counts.metric_points >= 1 && counts.log_records >= 1,
        "{counts:?}"
    );
    let stored = server.server().trace_store().list(10);
    assert!(
        stored
            .iter()
            .any(|t| t.root_service == "python-all-signals"),
        "{stored:?}"
    );
    server.shutdown().await;
}
