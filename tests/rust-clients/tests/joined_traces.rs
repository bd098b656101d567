//! Services on the other Rust Pub/Sub crates join the trace through
//! `baton_trace_context::adapter`: Google's `google-cloud-pubsub` and the
//! community `gcloud-pubsub` publish with the adapter's `create` span in
//! `googclient_traceparent`, and receive with its `subscribe` and `process`
//! spans, against Baton and against the gcloud emulator at once.
//!
//! - Python publishes (OpenTelemetry on), each Rust crate subscribes: its
//!   `{sub} subscribe` span is a child of the Python `{topic} create` span.
//! - Each Rust crate publishes, Python subscribes: the Python subscribe span
//!   is a child of the adapter's create span.
//! - Google's Node client (OpenTelemetry on) publishes and each Rust crate
//!   subscribes, and the reverse: the subscribe span is the create span's
//!   child either way.
//! - One Rust crate publishes and another subscribes, Baton's own client
//!   (`baton-client`, tracing on) included: one trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use baton_testkit::interop::{InteropServer, on_both};
use baton_testkit::python::PROJECT;
use baton_trace_context::PropagationOptions;
use baton_trace_context::adapter::{PublishTracing, ReceiveTracing, Received};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::Value;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
/// Longest a Rust subscriber waits for the messages it expects.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages per scenario.
const COUNT: usize = 3;

/// The clients' TLS stacks need a process-wide rustls provider: ring, which
/// the workspace uses (Google's crate's default, aws-lc, is switched off).
fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A provider recording into memory, and its exporter.
fn recording() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

/// The Rust clients under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RustClient {
    /// Google's `google-cloud-pubsub`.
    Google,
    /// The community `gcloud-pubsub`.
    Community,
    /// Baton's own `baton-client`, with its built-in tracing (no adapter).
    Baton,
}

/// A `baton-client` of `server`, tracing into `provider`.
async fn baton_client(
    server: &InteropServer,
    provider: &SdkTracerProvider,
) -> Result<(baton_client::Client, baton_client::TracingConfig)> {
    let client = baton_client::Client::connect(
        baton_client::ClientConfig::new(PROJECT)
            .with_endpoint(baton_client::Endpoint::Emulator(server.host.clone())),
    )
    .await?;
    let tracing = baton_client::TracingConfig::enabled()
        .with_tracer_provider(std::sync::Arc::new(provider.clone()));
    Ok((client, tracing))
}

impl RustClient {
    /// Publishes `COUNT` messages to the scenario's topic with the adapter
    /// tracing into `provider`; the ids, in order.
    async fn publish(
        self,
        server: &InteropServer,
        provider: &SdkTracerProvider,
    ) -> Result<Vec<String>> {
        let tracing = PublishTracing::with_options(
            PROJECT,
            &server.topic("topic"),
            Some(provider),
            PropagationOptions::default(),
        );
        let mut ids = Vec::new();
        match self {
            Self::Google => {
                let publisher =
                    google_cloud_pubsub::client::Publisher::builder(server.topic("topic"))
                        .with_endpoint(server.url())
                        .with_credentials(
                            google_cloud_auth::credentials::anonymous::Builder::new().build(),
                        )
                        .build()
                        .await
                        .context("building google-cloud-pubsub's publisher")?;
                for i in 0..COUNT {
                    let data = format!("from google-cloud-pubsub {i}");
                    let mut attributes = HashMap::from([("i".to_owned(), i.to_string())]);
                    let span = tracing.start(&mut attributes, data.len(), "");
                    let message = google_cloud_pubsub::model::Message::new()
                        .set_data(bytes::Bytes::from(data))
                        .set_attributes(attributes);
                    ids.push(span.record(publisher.publish(message)).await?);
                }
            }
            Self::Community => {
                let client = community_client(server).await?;
                let publisher = client.topic(&server.id("topic")).new_publisher(None);
                for i in 0..COUNT {
                    let data = format!("from gcloud-pubsub {i}");
                    let mut attributes = HashMap::from([("i".to_owned(), i.to_string())]);
                    let span = tracing.start(&mut attributes, data.len(), "");
                    let message = gcloud_googleapis::pubsub::v1::PubsubMessage {
                        data: data.into_bytes(),
                        attributes,
                        ..Default::default()
                    };
                    let awaiter = publisher.publish(message).await;
                    ids.push(span.record(awaiter.get()).await?);
                }
                let mut publisher = publisher;
                publisher.shutdown().await;
            }
            Self::Baton => {
                let (client, tracing) = baton_client(server, provider).await?;
                let publisher = client.publisher_with(
                    &server.id("topic"),
                    baton_client::PublisherConfig::default().with_tracing(tracing),
                );
                for i in 0..COUNT {
                    let message = baton_client::Message::new(format!("from baton-client {i}"))
                        .with_attribute("i", i.to_string());
                    ids.push(publisher.publish(message).await?);
                }
                publisher.shutdown().await;
            }
        }
        Ok(ids)
    }

    /// Receives `COUNT` distinct messages from the scenario's subscription
    /// `sub`, each handled inside the adapter's process span and acked; the
    /// message ids seen.
    async fn receive(
        self,
        server: &InteropServer,
        sub: &str,
        provider: &SdkTracerProvider,
    ) -> Result<Vec<String>> {
        let tracing = ReceiveTracing::with_options(
            PROJECT,
            &server.subscription(sub),
            Some(provider),
            PropagationOptions::default(),
            false,
        );
        let mut seen: Vec<String> = Vec::new();
        let receiving = async {
            match self {
                Self::Google => {
                    let client = google_cloud_pubsub::client::Subscriber::builder()
                        .with_endpoint(server.url())
                        .with_credentials(
                            google_cloud_auth::credentials::anonymous::Builder::new().build(),
                        )
                        .build()
                        .await
                        .context("building google-cloud-pubsub's subscriber")?;
                    let mut stream = client.subscribe(server.subscription(sub)).build();
                    while seen.len() < COUNT {
                        let Some(next) = stream.next().await else {
                            return Err(anyhow!("the stream ended"));
                        };
                        let (message, handler) = next?;
                        let span = tracing.start(Received {
                            attributes: &message.attributes,
                            message_id: &message.message_id,
                            ack_id: "",
                            body_size: message.data.len(),
                            ordering_key: &message.ordering_key,
                            delivery_attempt: handler.delivery_attempt().unwrap_or(0),
                        });
                        span.process(async { handle(&message.message_id) }).await;
                        handler.ack();
                        span.acked();
                        if !seen.contains(&message.message_id) {
                            seen.push(message.message_id.clone());
                        }
                    }
                    Ok::<_, anyhow::Error>(())
                }
                Self::Community => {
                    use gcloud_gax::grpc::codegen::tokio_stream::StreamExt as _;
                    let client = community_client(server).await?;
                    let subscription = client.subscription(&server.id(sub));
                    let mut stream = subscription.subscribe(None).await?;
                    while seen.len() < COUNT {
                        let Some(received) = stream.next().await else {
                            return Err(anyhow!("the stream ended"));
                        };
                        let message = &received.message;
                        let span = tracing.start(Received {
                            attributes: &message.attributes,
                            message_id: &message.message_id,
                            ack_id: received.ack_id(),
                            body_size: message.data.len(),
                            ordering_key: &message.ordering_key,
                            delivery_attempt: received
                                .delivery_attempt()
                                .and_then(|n| i32::try_from(n).ok())
                                .unwrap_or(0),
                        });
                        span.process(async { handle(&message.message_id) }).await;
                        received.ack().await?;
                        span.acked();
                        if !seen.contains(&message.message_id) {
                            seen.push(message.message_id.clone());
                        }
                    }
                    stream.dispose().await;
                    Ok(())
                }
                Self::Baton => {
                    let (client, tracing) = baton_client(server, provider).await?;
                    let subscriber = client.subscriber_with(
                        &server.id(sub),
                        baton_client::SubscriberConfig::default().with_tracing(tracing),
                    );
                    let mut stream = subscriber.stream();
                    while seen.len() < COUNT {
                        let Some(next) = futures::StreamExt::next(&mut stream).await else {
                            return Err(anyhow!("the stream ended"));
                        };
                        let message = next?;
                        let id = message.message_id().to_owned();
                        handle(&id);
                        message.ack();
                        if !seen.contains(&id) {
                            seen.push(id);
                        }
                    }
                    stream.shutdown().await?;
                    Ok(())
                }
            }
        };
        tokio::time::timeout(RECEIVE_TIMEOUT, receiving)
            .await
            .map_err(|_| {
                anyhow!(
                    "received {} of {COUNT} messages within {RECEIVE_TIMEOUT:?}",
                    seen.len()
                )
            })??;
        Ok(seen)
    }
}

/// The handler: nothing to do but be inside the process span.
fn handle(message_id: &str) -> usize {
    message_id.len()
}

/// A `gcloud-pubsub` client of `server` (no credentials, as an emulator
/// takes).
async fn community_client(server: &InteropServer) -> Result<gcloud_pubsub::client::Client> {
    let config = gcloud_pubsub::client::ClientConfig {
        project_id: Some(PROJECT.to_owned()),
        environment: gcloud_gax::conn::Environment::Emulator(server.host.clone()),
        ..Default::default()
    };
    Ok(gcloud_pubsub::client::Client::new(config).await?)
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The finished span `name` of message `message_id`.
fn span_of<'a>(spans: &'a [SpanData], name: &str, message_id: &str) -> Result<&'a SpanData> {
    spans
        .iter()
        .find(|s| {
            s.name == name && attribute(s, "messaging.message.id").as_deref() == Some(message_id)
        })
        .ok_or_else(|| {
            anyhow!(
                "no {name} span of message {message_id} among {:?}",
                spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
            )
        })
}

fn text<'a>(value: &'a Value, pointer: &str) -> Result<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no {pointer} in {value}"))
}

/// The process span of `subscribe`: its child.
fn process_of<'a>(spans: &'a [SpanData], subscribe: &SpanData) -> Result<&'a SpanData> {
    spans
        .iter()
        .find(|s| s.parent_span_id == subscribe.span_context.span_id())
        .ok_or_else(|| anyhow!("no child of {}", subscribe.name))
}

/// Python publishes with tracing on; `client` receives through the
/// adapter: each subscribe span is a child of the Python create span.
async fn python_to_rust(client: RustClient, server: InteropServer) -> Result<()> {
    install_crypto();
    server.topic_and_subscriptions(&["sub"]).await?;
    let published = server.script("trace_publish.py", &["--count", "3"]).await?;
    let (provider, exporter) = recording();
    let ids = client.receive(&server, "sub", &provider).await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let messages = published["messages"]
        .as_array()
        .ok_or_else(|| anyhow!("no messages in {published}"))?;
    ensure!(messages.len() == COUNT, "published {published}");
    for message in messages {
        let id = text(message, "/message_id")?;
        ensure!(
            ids.iter().any(|seen| seen == id),
            "{id} not received: {ids:?}"
        );
        let subscribe = span_of(&spans, &format!("{} subscribe", server.id("sub")), id)?;
        ensure!(subscribe.span_kind == SpanKind::Consumer);
        ensure!(
            subscribe.span_context.trace_id().to_string() == text(message, "/create/trace_id")?,
            "{client:?}: subscribe span of {id} is not in the Python trace"
        );
        ensure!(
            subscribe.parent_span_id.to_string() == text(message, "/create/span_id")?,
            "{client:?}: subscribe span of {id} is not a child of the Python create span"
        );
        let process = process_of(&spans, subscribe)?;
        ensure!(process.name == format!("{} process", server.id("sub")).as_str());
    }
    Ok(())
}

/// `client` publishes through the adapter; Python receives with tracing on:
/// each Python subscribe span is a child of the adapter's create span.
async fn rust_to_python(client: RustClient, server: InteropServer) -> Result<()> {
    install_crypto();
    server.topic_and_subscriptions(&["sub"]).await?;
    let (provider, exporter) = recording();
    let ids = client.publish(&server, &provider).await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let received = server
        .script("trace_subscribe.py", &["--expect", "3"])
        .await?;
    let messages = received["messages"]
        .as_array()
        .ok_or_else(|| anyhow!("no messages in {received}"))?;
    ensure!(messages.len() == COUNT, "python received {received}");
    for id in &ids {
        let create = span_of(&spans, &format!("{} create", server.id("topic")), id)?;
        ensure!(create.span_kind == SpanKind::Producer);
        let message = messages
            .iter()
            .find(|m| m["message_id"] == id.as_str())
            .ok_or_else(|| anyhow!("python did not receive {id}: {received}"))?;
        ensure!(
            text(message, "/subscribe/trace_id")? == create.span_context.trace_id().to_string(),
            "{client:?}: the Python subscribe span of {id} is not in the adapter's trace: {message}"
        );
        ensure!(
            text(message, "/subscribe/parent_span_id")?
                == create.span_context.span_id().to_string(),
            "{client:?}: the Python subscribe span of {id} is not a child of the create span: {message}"
        );
    }
    Ok(())
}

/// Runs `tests/node/<script>` (Google's Node client, which `scripts/test`
/// installs with `npm ci`) against `server` with `args`; the JSON it prints.
async fn node(server: &InteropServer, script: &str, args: &[&str]) -> Result<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(script)
            .args(["--project", PROJECT, "--timeout", "60"])
            .args(args)
            .current_dir(&dir)
            .env("PUBSUB_EMULATOR_HOST", &server.host)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow!("{script} did not finish within 90 s"))?
    .with_context(|| format!("running node {script} (is Node on PATH?)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value: Value = serde_json::from_str(line).with_context(|| {
        format!(
            "{script} printed no JSON: {stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    ensure!(
        output.status.success() && value.get("error").is_none(),
        "{script} failed: {value}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("[{}] node {script}: {value}", server.name);
    Ok(value)
}

/// `(trace_id, span_id)` of the spans a Node script described under `key`,
/// with `id` naming the id to take (`span_id`, or `parent_span_id`).
fn node_spans(value: &Value, key: &str, id: &str) -> Result<Vec<(String, String)>> {
    value[key]
        .as_array()
        .ok_or_else(|| anyhow!("no {key} in {value}"))?
        .iter()
        .map(|span| {
            Ok((
                text(span, "/trace_id")?.to_owned(),
                text(span, &format!("/{id}"))?.to_owned(),
            ))
        })
        .collect()
}

/// Node publishes with tracing on and `client` receives through the adapter,
/// then `client` publishes and Node receives: the subscribe span is the
/// create span's child both ways.
async fn node_both_ways(client: RustClient, server: InteropServer) -> Result<()> {
    install_crypto();
    server.topic_and_subscriptions(&["sub"]).await?;
    let topic = server.id("topic");
    let published = node(
        &server,
        "trace_publish.js",
        &["--topic", &topic, "--count", "3"],
    )
    .await?;
    let creates = node_spans(&published, "creates", "span_id")?;
    ensure!(creates.len() == COUNT, "{published}");
    let (provider, exporter) = recording();
    let ids = client.receive(&server, "sub", &provider).await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    for id in &ids {
        let subscribe = span_of(&spans, &format!("{} subscribe", server.id("sub")), id)?;
        let parent = (
            subscribe.span_context.trace_id().to_string(),
            subscribe.parent_span_id.to_string(),
        );
        ensure!(
            creates.contains(&parent),
            "{client:?}: the subscribe span of Node's message {id} is not a child of a Node create span: {parent:?} not in {creates:?}"
        );
    }

    // Back the other way on resources of their own, so nothing of the
    // first half (a subscriber still winding down) competes for them.
    let server = InteropServer {
        prefix: format!("{}-back", server.prefix),
        ..server
    };
    server.topic_and_subscriptions(&["sub"]).await?;
    let topic = server.id("topic");
    let (provider, exporter) = recording();
    let ids = client.publish(&server, &provider).await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let received = node(
        &server,
        "trace_subscribe.js",
        &["--subscription", &server.id("sub"), "--expect", "3"],
    )
    .await?;
    let parents = node_spans(&received, "subscribes", "parent_span_id")?;
    for id in &ids {
        let create = span_of(&spans, &format!("{topic} create"), id)?;
        let create = (
            create.span_context.trace_id().to_string(),
            create.span_context.span_id().to_string(),
        );
        ensure!(
            parents.contains(&create),
            "{client:?}: no Node subscribe span is a child of the create span of {id}: {create:?} not in {parents:?}"
        );
    }
    Ok(())
}

/// `publisher` publishes and `subscriber` receives, both through the
/// adapter: one trace per message, subscribe a child of create.
async fn rust_to_rust(
    publisher: RustClient,
    subscriber: RustClient,
    server: InteropServer,
) -> Result<()> {
    install_crypto();
    server.topic_and_subscriptions(&["sub"]).await?;
    let (provider, exporter) = recording();
    let ids = publisher.publish(&server, &provider).await?;
    let seen = subscriber.receive(&server, "sub", &provider).await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    for id in &ids {
        ensure!(seen.contains(id), "{id} not received: {seen:?}");
        let create = span_of(&spans, &format!("{} create", server.id("topic")), id)?;
        let subscribe = span_of(&spans, &format!("{} subscribe", server.id("sub")), id)?;
        ensure!(
            subscribe.parent_span_id == create.span_context.span_id()
                && subscribe.span_context.trace_id() == create.span_context.trace_id(),
            "{publisher:?} -> {subscriber:?}: message {id} is not one trace"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publishes_google_cloud_pubsub_receives() {
    on_both(TMP, "py-to-official", |s| {
        python_to_rust(RustClient::Google, s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publishes_gcloud_pubsub_receives() {
    on_both(TMP, "py-to-community", |s| {
        python_to_rust(RustClient::Community, s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_cloud_pubsub_publishes_python_receives() {
    on_both(TMP, "official-to-py", |s| {
        rust_to_python(RustClient::Google, s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_pubsub_publishes_python_receives() {
    on_both(TMP, "community-to-py", |s| {
        rust_to_python(RustClient::Community, s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_cloud_pubsub_publishes_gcloud_pubsub_receives_and_back() {
    on_both(TMP, "official-community", |s| async move {
        rust_to_rust(RustClient::Google, RustClient::Community, s.clone()).await?;
        let back = InteropServer {
            prefix: format!("{}-back", s.prefix),
            ..s
        };
        rust_to_rust(RustClient::Community, RustClient::Google, back).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_cloud_pubsub_and_baton_client_join_each_others_traces() {
    on_both(TMP, "official-baton", |s| async move {
        rust_to_rust(RustClient::Google, RustClient::Baton, s.clone()).await?;
        let back = InteropServer {
            prefix: format!("{}-back", s.prefix),
            ..s
        };
        rust_to_rust(RustClient::Baton, RustClient::Google, back).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_pubsub_and_baton_client_join_each_others_traces() {
    on_both(TMP, "community-baton", |s| async move {
        rust_to_rust(RustClient::Community, RustClient::Baton, s.clone()).await?;
        let back = InteropServer {
            prefix: format!("{}-back", s.prefix),
            ..s
        };
        rust_to_rust(RustClient::Baton, RustClient::Community, back).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_google_cloud_pubsub_join_each_others_traces() {
    on_both(TMP, "node-official", |s| {
        node_both_ways(RustClient::Google, s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_gcloud_pubsub_join_each_others_traces() {
    on_both(TMP, "node-community", |s| {
        node_both_ways(RustClient::Community, s)
    })
    .await;
}
