//! Cross-language traces: Google's Python client and our Rust client, with
//! OpenTelemetry tracing on in both, form one trace across the Pub/Sub hop
//! through the `googclient_traceparent` attribute (`tracing.md` sections 1-3),
//! against Baton and against the gcloud emulator.
//!
//! - Python publishes, Rust subscribes: the Rust `{sub} subscribe` span is a
//!   child of the Python `{topic} create` span, and `{sub} process` (the span
//!   the handler runs in) is the subscribe span's child, linked to create.
//! - Rust publishes, Python subscribes: the Python subscribe span is a child
//!   of the Rust create span.
//! - Malformed, empty, missing and legacy trace attributes never stop a
//!   delivery, to the Rust or the Python subscriber; the Rust subscribe span
//!   starts a new trace, or joins the one named by the legacy Node.js JSON.
//!
//! Each scenario runs against a fresh in-process Baton server and the shared
//! emulator at the same time; the Python side is `python/trace_publish.py`
//! and `python/trace_subscribe.py`, each with a hard timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use baton_client::{
    Client, ClientConfig, Endpoint, Message, PublisherConfig, ReceivedMessage, SubscriberConfig,
    TracingConfig,
};
use baton_testkit::interop::{InteropServer, on_both};
use baton_testkit::python::PROJECT;
use baton_testkit::spans::{SpanCapture, span_names as names};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::trace::SpanData;
use serde_json::Value;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
/// Longest the Rust subscriber waits for the messages it expects.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
const TRACEPARENT: &str = "googclient_traceparent";
const LEGACY: &str = "googclient_OpenTelemetrySpanContext";

/// A Rust client of the scenario's server.
async fn client(server: &InteropServer) -> Result<Client> {
    let config = ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(server.host.clone()));
    Ok(Client::connect(config).await?)
}

/// Tracing on, recording into `capture`.
fn tracing_into(capture: &SpanCapture) -> TracingConfig {
    TracingConfig::enabled().with_tracer_provider(Arc::new(capture.provider.clone()))
}

/// Every span `capture` holds, flushed first.
fn captured(capture: &SpanCapture) -> Result<Vec<SpanData>> {
    capture.provider.force_flush()?;
    Ok(capture.exporter.get_finished_spans()?)
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The one span called `name` about message `message_id`.
fn span_of<'a>(spans: &'a [SpanData], name: &str, message_id: &str) -> Result<&'a SpanData> {
    let found: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| attribute(s, "messaging.message.id").as_deref() == Some(message_id))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(anyhow!(
            "{} spans {name:?} of message {message_id}; spans: {:?}",
            found.len(),
            names(spans)
        )),
    }
}

/// `value[pointer]` as a string.
fn text<'a>(value: &'a Value, pointer: &str) -> Result<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .with_context(|| format!("no string at {pointer} in {value}"))
}

fn trace_id(hex: &str) -> Result<TraceId> {
    TraceId::from_hex(hex).map_err(|e| anyhow!("trace id {hex:?}: {e}"))
}

fn span_id(hex: &str) -> Result<SpanId> {
    SpanId::from_hex(hex).map_err(|e| anyhow!("span id {hex:?}: {e}"))
}

/// What the Rust handler saw of one message.
#[derive(Debug, Clone)]
struct Received {
    data: Vec<u8>,
    attributes: HashMap<String, String>,
    /// The current OpenTelemetry span while the handler ran.
    handler_span: SpanContext,
}

/// Subscribes to `subscription` with a handler that acks, until `expect`
/// distinct messages came; then shuts down (flushing the acks). By message id.
async fn receive(
    client: &Client,
    subscription: &str,
    tracing: TracingConfig,
    expect: usize,
) -> Result<HashMap<String, Received>> {
    let subscriber = client.subscriber_with(
        subscription,
        SubscriberConfig::default().with_tracing(tracing),
    );
    let got: Arc<Mutex<HashMap<String, Received>>> = Arc::default();
    let arrived = Arc::new(tokio::sync::Notify::new());
    let handle = subscriber.subscribe({
        let got = got.clone();
        let arrived = arrived.clone();
        move |message: ReceivedMessage| {
            let got = got.clone();
            let arrived = arrived.clone();
            async move {
                let handler_span = opentelemetry::Context::current()
                    .span()
                    .span_context()
                    .clone();
                got.lock()
                    .expect("lock")
                    .entry(message.message_id().to_owned())
                    .or_insert_with(|| Received {
                        data: message.data().to_vec(),
                        attributes: message.attributes().clone(),
                        handler_span,
                    });
                message.ack();
                arrived.notify_one();
            }
        }
    });
    let all_in = tokio::time::timeout(RECEIVE_TIMEOUT, async {
        while got.lock().expect("lock").len() < expect {
            arrived.notified().await;
        }
    })
    .await;
    let shutdown = tokio::time::timeout(Duration::from_secs(20), handle.shutdown()).await;
    let got = got.lock().expect("lock").clone();
    all_in.map_err(|_| {
        anyhow!(
            "the Rust subscriber got {} of {expect} messages in {RECEIVE_TIMEOUT:?}: {:?}",
            got.len(),
            got.keys()
        )
    })?;
    shutdown
        .map_err(|_| anyhow!("subscriber shutdown took longer than 20 s"))?
        .context("subscriber shutdown")?;
    Ok(got)
}

// ---------------------------------------------------------------------------
// 1. Python publishes, Rust subscribes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_create_span_parents_rust_subscribe_span() {
    on_both(TMP, "py-to-rust", python_to_rust).await;
}

async fn python_to_rust(server: InteropServer) -> Result<()> {
    const COUNT: usize = 3;
    let client = client(&server).await?;
    server.topic_and_subscriptions(&["sub"]).await?;
    let sub = server.id("sub");
    let published = server
        .script("trace_publish.py", &["--count", &COUNT.to_string()])
        .await?;
    ensure!(
        published["create_spans"] == COUNT && published["publish_rpc_spans"].as_u64() >= Some(1),
        "the Python publisher did not record its spans: {published}"
    );

    let capture = SpanCapture::new();
    let received = receive(&client, &sub, tracing_into(&capture), COUNT).await?;
    let spans = captured(&capture)?;
    let python_messages = published["messages"]
        .as_array()
        .context("no messages in trace_publish.py's result")?;
    ensure!(python_messages.len() == COUNT, "{published}");
    for m in python_messages {
        let id = text(m, "/message_id")?;
        let (trace_hex, span_hex) = (text(m, "/create/trace_id")?, text(m, "/create/span_id")?);
        let (create_trace, create_span) = (trace_id(trace_hex)?, span_id(span_hex)?);
        let got = received
            .get(id)
            .with_context(|| format!("Python's message {id} did not reach the Rust handler"))?;
        ensure!(
            got.data == format!("from python {}", text(m, "/i")?).as_bytes(),
            "message {id}: data {:?}",
            String::from_utf8_lossy(&got.data)
        );
        let traceparent = got.attributes.get(TRACEPARENT).map(String::as_str);
        ensure!(
            traceparent.is_some_and(|tp| tp.starts_with(&format!("00-{trace_hex}-{span_hex}-"))),
            "message {id}: {TRACEPARENT} = {traceparent:?}, Python's create span is {trace_hex}/{span_hex}"
        );

        let subscribe = span_of(&spans, &format!("{sub} subscribe"), id)?;
        let sc = &subscribe.span_context;
        ensure!(
            sc.trace_id() == create_trace,
            "message {id}: Rust subscribe span is in trace {}, Python's create span in {trace_hex}",
            sc.trace_id()
        );
        ensure!(
            subscribe.parent_span_id == create_span && subscribe.parent_span_is_remote,
            "message {id}: Rust subscribe span's parent is {} (remote: {}), not Python's create span {span_hex}",
            subscribe.parent_span_id,
            subscribe.parent_span_is_remote
        );
        ensure!(
            subscribe.span_kind == SpanKind::Consumer,
            "subscribe kind {:?}",
            subscribe.span_kind
        );
        ensure!(
            attribute(subscribe, "messaging.gcp_pubsub.result").as_deref() == Some("acked"),
            "message {id}: subscribe span attributes {:?}",
            subscribe.attributes
        );

        let process_name = format!("{sub} process");
        let process: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == process_name && s.parent_span_id == sc.span_id())
            .collect();
        let [process] = process.as_slice() else {
            return Err(anyhow!(
                "message {id}: {} {process_name:?} spans under subscribe span {}; spans: {:?}",
                process.len(),
                sc.span_id(),
                names(&spans)
            ));
        };
        ensure!(
            process.span_context.trace_id() == create_trace,
            "message {id}: process span in trace {}",
            process.span_context.trace_id()
        );
        ensure!(
            process
                .links
                .iter()
                .any(|l| l.span_context.span_id() == create_span
                    && l.span_context.trace_id() == create_trace),
            "message {id}: process span does not link Python's create span: {:?}",
            process.links.links
        );
        ensure!(
            got.handler_span.span_id() == process.span_context.span_id()
                && got.handler_span.trace_id() == create_trace,
            "message {id}: the current span in the handler is {:?}, not the process span {}",
            got.handler_span,
            process.span_context.span_id()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Rust publishes, Python subscribes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_create_span_parents_python_subscribe_span() {
    on_both(TMP, "rust-to-py", rust_to_python).await;
}

async fn rust_to_python(server: InteropServer) -> Result<()> {
    const COUNT: usize = 3;
    let client = client(&server).await?;
    server.topic_and_subscriptions(&["sub"]).await?;
    let topic = server.id("topic");

    let capture = SpanCapture::new();
    let publisher = client.publisher_with(
        &topic,
        PublisherConfig::default().with_tracing(tracing_into(&capture)),
    );
    let mut handles = Vec::new();
    for i in 0..COUNT {
        let message = Message::new(format!("from rust {i}")).with_attribute("i", i.to_string());
        handles.push(publisher.publish(message));
    }
    let mut ids = Vec::new();
    for handle in handles {
        ids.push(handle.await?);
    }
    publisher.shutdown().await;
    let spans = captured(&capture)?;
    let mut creates = HashMap::new();
    for id in &ids {
        let create = span_of(&spans, &format!("{topic} create"), id)?;
        ensure!(
            create.span_kind == SpanKind::Producer && create.parent_span_id == SpanId::INVALID,
            "Rust create span of {id}: kind {:?}, parent {}",
            create.span_kind,
            create.parent_span_id
        );
        creates.insert(id.clone(), create.span_context.clone());
    }

    let result = server
        .script(
            "trace_subscribe.py",
            &["--subscription", "sub", "--expect", &COUNT.to_string()],
        )
        .await?;
    ensure!(
        result["complete"] == true && result["spans_complete"] == true,
        "the Python subscriber did not receive and ack everything: {result}"
    );
    let messages = result["messages"].as_array().context("no messages")?;
    ensure!(messages.len() == COUNT, "{result}");
    for m in messages {
        let id = text(m, "/message_id")?;
        let create = creates
            .get(id)
            .with_context(|| format!("Python received {id}, which Rust did not publish"))?;
        let want_traceparent =
            format!("00-{:032x}-{:016x}-01", create.trace_id(), create.span_id());
        let traceparent = m.pointer("/attributes/googclient_traceparent");
        ensure!(
            traceparent.and_then(Value::as_str) == Some(want_traceparent.as_str()),
            "message {id}: {TRACEPARENT} = {traceparent:?}, want {want_traceparent}"
        );
        ensure!(
            text(m, "/subscribe/trace_id")? == format!("{:032x}", create.trace_id()),
            "message {id}: Python subscribe span {} is not in the Rust create span's trace {}",
            m["subscribe"],
            create.trace_id()
        );
        ensure!(
            text(m, "/subscribe/parent_span_id")? == format!("{:016x}", create.span_id())
                && m["subscribe"]["parent_is_remote"] == true,
            "message {id}: Python subscribe span {} is not a child of the Rust create span {}",
            m["subscribe"],
            create.span_id()
        );
        ensure!(
            m["subscribe"]["kind"] == "CONSUMER",
            "kind: {}",
            m["subscribe"]
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Malformed, empty, missing and legacy trace attributes.

const LEGACY_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const LEGACY_SPAN: &str = "00f067aa0ba902b7";
const VALID_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const VALID_SPAN: &str = "b7ad6b7169203331";

/// A message with an unusual trace attribute.
struct Case {
    name: &'static str,
    /// The trace attribute it carries (key, value), if any.
    attribute: Option<(&'static str, String)>,
    /// The (trace id, span id) the Rust subscribe span must be parented on;
    /// `None`: it starts a new trace.
    joins: Option<(&'static str, &'static str)>,
}

fn case(name: &'static str, attribute: Option<(&'static str, String)>) -> Case {
    Case {
        name,
        attribute,
        joins: None,
    }
}

fn trace_attribute_cases() -> Vec<Case> {
    vec![
        case("garbage", Some((TRACEPARENT, "garbage".to_owned()))),
        case("short", Some((TRACEPARENT, "00-xyz".to_owned()))),
        case("empty", Some((TRACEPARENT, String::new()))),
        case(
            "bad-hex",
            Some((
                TRACEPARENT,
                format!("00-{}-{VALID_SPAN}-01", "z".repeat(32)),
            )),
        ),
        case("missing", None),
        Case {
            joins: Some((LEGACY_TRACE, LEGACY_SPAN)),
            ..case(
                "legacy",
                Some((
                    LEGACY,
                    format!(
                        r#"{{"traceId":"{LEGACY_TRACE}","spanId":"{LEGACY_SPAN}","traceFlags":1}}"#
                    ),
                )),
            )
        },
        // Control: a well-formed context (flags 03, as Python sends) is joined.
        Case {
            joins: Some((VALID_TRACE, VALID_SPAN)),
            ..case(
                "valid",
                Some((TRACEPARENT, format!("00-{VALID_TRACE}-{VALID_SPAN}-03"))),
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trace_attributes_never_stop_delivery() {
    on_both(TMP, "bad-trace", bad_trace_attributes).await;
}

async fn bad_trace_attributes(server: InteropServer) -> Result<()> {
    let cases = trace_attribute_cases();
    let client = client(&server).await?;
    server
        .topic_and_subscriptions(&["rust-sub", "py-sub"])
        .await?;
    // Tracing off, so the publisher leaves the attributes as they are.
    let publisher = client.publisher(&server.id("topic"));
    let mut published: HashMap<String, (&str, HashMap<String, String>)> = HashMap::new();
    for Case {
        name, attribute, ..
    } in &cases
    {
        let mut message = Message::new(format!("case {name}")).with_attribute("case", *name);
        if let Some((key, value)) = attribute {
            message = message.with_attribute(*key, value.clone());
        }
        let attributes = message.attributes().clone();
        let id = publisher.publish(message).await?;
        published.insert(id, (name, attributes));
    }
    publisher.shutdown().await;

    let capture = SpanCapture::new();
    let rust_sub = server.id("rust-sub");
    let expect = cases.len().to_string();
    let python_args = ["--subscription", "py-sub", "--expect", &expect];
    let (rust, python) = tokio::join!(
        receive(&client, &rust_sub, tracing_into(&capture), cases.len()),
        server.script("trace_subscribe.py", &python_args),
    );
    let (rust, python) = (rust?, python?);

    // The Rust subscriber got every message, attributes untouched.
    let spans = captured(&capture)?;
    let mut new_traces = HashSet::new();
    for (id, (case, attributes)) in &published {
        let got = rust
            .get(id)
            .with_context(|| format!("case {case}: message {id} never reached the Rust handler"))?;
        ensure!(
            &got.attributes == attributes,
            "case {case}: Rust got attributes {:?}, published {attributes:?}",
            got.attributes
        );
        let subscribe = span_of(&spans, &format!("{rust_sub} subscribe"), id)
            .with_context(|| format!("case {case}"))?;
        let sc = &subscribe.span_context;
        ensure!(sc.is_valid(), "case {case}: invalid subscribe span {sc:?}");
        let joins = cases.iter().find(|c| c.name == *case).and_then(|c| c.joins);
        match joins {
            None => {
                ensure!(
                    subscribe.parent_span_id == SpanId::INVALID,
                    "case {case}: the subscribe span should start a new trace, its parent is {}",
                    subscribe.parent_span_id
                );
                ensure!(
                    new_traces.insert(sc.trace_id()),
                    "case {case}: trace id {} reused",
                    sc.trace_id()
                );
            }
            Some((trace_hex, span_hex)) => ensure!(
                sc.trace_id() == trace_id(trace_hex)?
                    && subscribe.parent_span_id == span_id(span_hex)?
                    && subscribe.parent_span_is_remote,
                "case {case}: subscribe span {}/{} (parent {}) did not join {trace_hex}/{span_hex}",
                sc.trace_id(),
                sc.span_id(),
                subscribe.parent_span_id
            ),
        }
        ensure!(
            attribute(subscribe, "messaging.gcp_pubsub.result").as_deref() == Some("acked"),
            "case {case}: subscribe span attributes {:?}",
            subscribe.attributes
        );
    }
    for trace in &new_traces {
        ensure!(
            *trace != trace_id(LEGACY_TRACE)? && *trace != trace_id(VALID_TRACE)?,
            "a new trace reused a carried trace id"
        );
    }

    // The Python subscriber got every message too, attributes untouched. It
    // only reads googclient_traceparent (not the legacy JSON), so only the
    // valid case joins a trace there (google-cloud-pubsub 2.44.0).
    ensure!(
        python["complete"] == true && python["spans_complete"] == true,
        "the Python subscriber did not receive and ack everything: {python}"
    );
    let python_messages = python["messages"].as_array().context("no messages")?;
    ensure!(python_messages.len() == cases.len(), "{python}");
    for m in python_messages {
        let id = text(m, "/message_id")?;
        let (case, attributes) = published
            .get(id)
            .with_context(|| format!("Python received unknown message {id}"))?;
        let got: BTreeMap<String, String> = serde_json::from_value(m["attributes"].clone())?;
        let want: BTreeMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ensure!(
            got == want,
            "case {case}: Python got {got:?}, published {want:?}"
        );
        let parent = m["subscribe"]["parent_span_id"].as_str();
        let joined = *case == "valid";
        ensure!(
            parent.is_some() == joined
                && (!joined
                    || (text(m, "/subscribe/trace_id")? == VALID_TRACE
                        && parent == Some(VALID_SPAN))),
            "case {case}: Python subscribe span {}",
            m["subscribe"]
        );
    }
    Ok(())
}
