//! The server's own spans (tracing.md 4.3): a message published with a
//! `googclient_traceparent` gets `receive`, `deliver` (one per attempt, its
//! start at the moment the message became available), `redeliver` (nack or
//! expiry) and `dead-letter` spans, all children of the message's `create`
//! span; messages without a valid context get none, attributes never change,
//! and the off switch silences it all.
//!
//! The servers run on virtual time (`start_paused` and
//! `TestServer::start_virtual`), and the broker stamps its events with its
//! virtual wall clock, so every span's start and end is asserted exactly:
//! a message that waited 300 ms in the backlog has a deliver span of exactly
//! 300 ms, a 300 ms retry backoff is a redeliver span of exactly 300 ms, an
//! expiry is recorded at the very instant the lease ran out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::pubsub::{
    DeadLetterPolicy, PublishRequest, PubsubMessage, PullRequest, StreamingPullRequest,
    Subscription,
};
use baton_server::broker_spans::{BrokerSpans, SCOPE_NAME};
use baton_testkit::messages::{PROJECT, subscription_name, topic_name};
use baton_testkit::push::PushRecorder;
use baton_testkit::server::TestServer;
use baton_testkit::spans::{
    SpanCapture, event_names, int_attribute as int, named, string_attribute as string,
};
use baton_testkit::streaming::stream_request;
use baton_testkit::virtual_time::settled;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const SOON: Duration = Duration::from_secs(5);

/// A test server whose broker reports to an in-memory exporter.
struct Traced {
    t: TestServer,
    spans: BrokerSpans,
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

impl Traced {
    async fn start() -> Self {
        let t = TestServer::start_virtual().await;
        let capture = SpanCapture::for_service("baton");
        let spans = BrokerSpans::start(capture.provider.tracer(SCOPE_NAME));
        t.server().broker().set_observer(Arc::new(spans.clone()));
        Self {
            t,
            spans,
            exporter: capture.exporter,
            _provider: capture.provider,
        }
    }

    /// The broker's (virtual) wall-clock now, the clock of its spans.
    fn wall(&self) -> SystemTime {
        self.t.server().broker().clock().wall()
    }

    /// Every broker span so far of `trace`, in the order they were ended.
    async fn spans_of(&self, trace: TraceId) -> Vec<SpanData> {
        self.spans.flush().await;
        self.exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect()
    }
}

/// A fresh (trace id, create span id) and its `googclient_traceparent`.
fn create_context() -> (TraceId, SpanId, String) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let trace = (nanos << 16) ^ u128::from(n) | 1;
    let span = u64::from(std::process::id()) << 32 | n;
    let header = format!("00-{trace:032x}-{span:016x}-01");
    (TraceId::from(trace), SpanId::from(span), header)
}

fn traced_message(data: &str, traceparent: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        attributes: HashMap::from([
            (
                baton_trace_context::TRACEPARENT_ATTRIBUTE.to_string(),
                traceparent.to_string(),
            ),
            ("googclient_tracestate".to_string(), "k=v".to_string()),
            ("user".to_string(), "ü 😀 \u{0}".to_string()),
        ]),
        ..Default::default()
    }
}

/// Every span is a child of the create span, in its trace, from our scope.
fn assert_children_of_create(spans: &[SpanData], trace: TraceId, create: SpanId) {
    for span in spans {
        assert_eq!(span.span_context.trace_id(), trace, "{}", span.name);
        assert_eq!(span.parent_span_id, create, "{} parent", span.name);
        assert!(span.parent_span_is_remote, "{}", span.name);
        assert_eq!(span.instrumentation_scope.name(), SCOPE_NAME);
        assert!(span.end_time >= span.start_time, "{}", span.name);
    }
}

fn duration(span: &SpanData) -> Duration {
    span.end_time.duration_since(span.start_time).unwrap()
}

/// Asserts `span` starts at `start` and lasts `lasts`.
#[track_caller]
fn assert_times(span: &SpanData, start: SystemTime, lasts: Duration) {
    assert_eq!(
        (span.start_time, duration(span)),
        (start, lasts),
        "start and duration of {}",
        span.name
    );
}

#[tokio::test(start_paused = true)]
async fn pull_attempts_are_children_of_the_create_span_and_show_the_backlog_wait() {
    let x = Traced::start().await;
    let topic = x.t.create_topic("orders").await;
    let sub = x.t.create_subscription("sub-a", &topic).await;
    let (trace, create, traceparent) = create_context();
    let published = traced_message("hello", &traceparent);
    let published_at = x.wall();
    let ids = x.t.publish_messages(&topic, vec![published.clone()]).await;

    // The message waits in the backlog before the first pull.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pulled_at = x.wall();
    let first = x.t.pull_now(&sub, 10).await;
    assert_eq!(first.len(), 1);
    let delivered = first[0].message.as_ref().unwrap();
    assert_eq!(
        delivered.attributes, published.attributes,
        "attributes unchanged"
    );
    assert_eq!(delivered.data, published.data);

    // Nack: a redeliver span, then attempt 2.
    x.t.modack(&sub, &[first[0].ack_id.clone()], 0)
        .await
        .unwrap();
    let second = x.t.pull_now(&sub, 10).await;
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].message.as_ref().unwrap().attributes,
        published.attributes
    );
    x.t.ack(&sub, &[second[0].ack_id.clone()]).await.unwrap();

    let spans = x.spans_of(trace).await;
    assert_children_of_create(&spans, trace, create);
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "orders receive",
            "sub-a deliver",
            "sub-a redeliver",
            "sub-a deliver"
        ],
    );

    let receive = &spans[0];
    assert_eq!(receive.span_kind, SpanKind::Server);
    // Received and stored at the publish (no virtual time passes in it).
    assert_times(receive, published_at, Duration::ZERO);
    assert_eq!(string(receive, "messaging.system"), "gcp_pubsub");
    assert_eq!(string(receive, "messaging.destination.name"), "orders");
    assert_eq!(string(receive, "gcp.project_id"), PROJECT);
    assert_eq!(string(receive, "messaging.message.id"), ids[0]);
    assert_eq!(int(receive, "messaging.message.body.size"), 5);

    let delivers = named(&spans, "sub-a deliver");
    let (one, two) = (delivers[0], delivers[1]);
    assert_eq!(one.span_kind, SpanKind::Internal);
    assert_eq!(string(one, "messaging.destination.name"), "sub-a");
    assert_eq!(string(one, "messaging.message.id"), ids[0]);
    assert_eq!(string(one, "baton.delivery"), "pull");
    assert_eq!(
        string(one, "messaging.gcp_pubsub.message.ack_id"),
        first[0].ack_id
    );
    assert_eq!(int(one, "messaging.gcp_pubsub.message.delivery_attempt"), 1);
    assert_eq!(int(two, "messaging.gcp_pubsub.message.delivery_attempt"), 2);
    // The first attempt's span covers exactly the 300 ms in the backlog,
    // from the publish to the pull.
    assert_eq!(pulled_at, published_at + Duration::from_millis(300));
    assert_times(one, published_at, Duration::from_millis(300));
    assert_eq!(int(one, "baton.backlog_wait_ms"), 300);
    // Nacked and pulled again at the same instant: no wait.
    assert_times(two, pulled_at, Duration::ZERO);
    assert_eq!(int(two, "baton.backlog_wait_ms"), 0);

    let redeliver = named(&spans, "sub-a redeliver")[0];
    assert_eq!(event_names(redeliver), ["nack"]);
    assert_eq!(string(redeliver, "baton.redelivery.reason"), "nack");
    assert_eq!(
        int(redeliver, "messaging.gcp_pubsub.message.delivery_attempt"),
        1
    );
    // The nack at the pull's instant, available again at once.
    assert_times(redeliver, pulled_at, Duration::ZERO);
    assert_eq!(redeliver.events.events[0].timestamp, pulled_at);
    assert_eq!(int(redeliver, "baton.backoff_ms"), 0);
    x.t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn streaming_pull_deliveries_are_recorded() {
    let x = Traced::start().await;
    let topic = x.t.create_topic("orders").await;
    let sub = x.t.create_subscription("sub-s", &topic).await;
    let mut stream = x.t.open_stream(stream_request(&sub)).await.unwrap();
    let (trace, create, traceparent) = create_context();
    let published = traced_message("hi", &traceparent);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let published_at = x.wall();
    x.t.publish_messages(&topic, vec![published.clone()]).await;
    let got = stream.collect(1, SOON).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message.as_ref().unwrap().attributes,
        published.attributes
    );
    // Nack on the stream: attempt 2 comes on the same stream.
    stream
        .send(StreamingPullRequest {
            modify_deadline_ack_ids: vec![got[0].ack_id.clone()],
            modify_deadline_seconds: vec![0],
            ..Default::default()
        })
        .await;
    let again = stream.collect(1, SOON).await;
    assert_eq!(again.len(), 1);
    stream
        .send(StreamingPullRequest {
            ack_ids: vec![again[0].ack_id.clone()],
            ..Default::default()
        })
        .await;

    let spans = x.spans_of(trace).await;
    assert_children_of_create(&spans, trace, create);
    let delivers = named(&spans, "sub-s deliver");
    assert_eq!(delivers.len(), 2);
    for (n, deliver) in delivers.iter().enumerate() {
        // The waiting stream took the message at its publish, and the
        // nacked one at the nack: no wait in the backlog either time.
        assert_times(deliver, published_at, Duration::ZERO);
        assert_eq!(string(deliver, "baton.delivery"), "streaming_pull");
        assert_eq!(
            int(deliver, "messaging.gcp_pubsub.message.delivery_attempt"),
            i64::try_from(n + 1).unwrap()
        );
    }
    assert_eq!(named(&spans, "orders receive").len(), 1);
    assert_eq!(named(&spans, "sub-s redeliver").len(), 1);
    drop(stream);
    x.t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn lease_expiry_is_recorded_as_an_expired_redelivery() {
    let x = Traced::start().await;
    let topic = x.t.create_topic("orders").await;
    let sub = x.t.create_subscription("sub-e", &topic).await;
    let (trace, create, traceparent) = create_context();
    x.t.publish_messages(&topic, vec![traced_message("x", &traceparent)])
        .await;
    let first = x.t.pull_now(&sub, 1).await;
    assert_eq!(first.len(), 1);
    // Shorten the lease to one second and let it run out, with a pull
    // waiting for it.
    let shortened_at = x.wall();
    x.t.modack(&sub, &[first[0].ack_id.clone()], 1)
        .await
        .unwrap();
    let second = x.t.pull_until(&sub, 1, SOON).await;
    assert_eq!(second.len(), 1);
    let expired_at = shortened_at + Duration::from_secs(1);
    assert_eq!(
        x.wall(),
        expired_at,
        "the waiting pull got it at the expiry"
    );

    let spans = x.spans_of(trace).await;
    assert_children_of_create(&spans, trace, create);
    let redeliver = named(&spans, "sub-e redeliver");
    assert_eq!(redeliver.len(), 1);
    assert_eq!(event_names(redeliver[0]), ["expired"]);
    assert_eq!(string(redeliver[0], "baton.redelivery.reason"), "expired");
    // Recorded at the very instant the lease ran out.
    assert_times(redeliver[0], expired_at, Duration::ZERO);
    assert_eq!(redeliver[0].events.events[0].timestamp, expired_at);
    let delivers = named(&spans, "sub-e deliver");
    assert_eq!(delivers.len(), 2);
    assert_eq!(
        int(delivers[1], "messaging.gcp_pubsub.message.delivery_attempt"),
        2
    );
    assert_times(delivers[1], expired_at, Duration::ZERO);
    x.t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dead_lettering_is_recorded_and_the_copy_stays_in_the_trace() {
    let x = Traced::start().await;
    let topic = x.t.create_topic("orders").await;
    let dead = x.t.create_topic("orders-dead").await;
    let dead_sub = x.t.create_subscription("dead-sub", &dead).await;
    let sub =
        x.t.create_subscription_with(Subscription {
            name: subscription_name("sub-d"),
            topic: topic.clone(),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: dead.clone(),
                max_delivery_attempts: 5,
            }),
            ..Default::default()
        })
        .await
        .name;
    let (trace, create, traceparent) = create_context();
    let published = traced_message("x", &traceparent);
    x.t.publish_messages(&topic, vec![published.clone()]).await;
    let mut fifth_nack_at = None;
    for attempt in 1..=5 {
        // A second between attempts, so each span's time is its own.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let got = x.t.pull_until(&sub, 1, SOON).await;
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].delivery_attempt, attempt);
        fifth_nack_at = Some(x.wall());
        x.t.modack(&sub, &[got[0].ack_id.clone()], 0).await.unwrap();
    }
    let fifth_nack_at = fifth_nack_at.unwrap();
    let copy = x.t.pull_until(&dead_sub, 1, SOON).await;
    assert_eq!(copy.len(), 1);
    let copy_attributes = &copy[0].message.as_ref().unwrap().attributes;
    for (key, value) in &published.attributes {
        assert_eq!(copy_attributes.get(key), Some(value), "{key}");
    }

    let spans = x.spans_of(trace).await;
    assert_children_of_create(&spans, trace, create);
    assert_eq!(named(&spans, "sub-d deliver").len(), 5);
    assert_eq!(named(&spans, "sub-d redeliver").len(), 4);
    let dead_letter = named(&spans, "sub-d dead-letter");
    assert_eq!(dead_letter.len(), 1);
    assert_eq!(
        string(dead_letter[0], "baton.dead_letter_topic"),
        "orders-dead"
    );
    assert_eq!(
        int(
            dead_letter[0],
            "messaging.gcp_pubsub.message.delivery_attempt"
        ),
        5
    );
    assert_eq!(event_names(dead_letter[0]), ["nack"]);
    assert_times(dead_letter[0], fifth_nack_at, Duration::ZERO);
    // Each attempt waited the second before its pull.
    for deliver in named(&spans, "sub-d deliver") {
        assert_eq!(duration(deliver), Duration::from_secs(1));
    }
    // The copy on the dead-letter topic is received and delivered in the
    // same trace.
    assert_eq!(named(&spans, "orders-dead receive").len(), 1);
    assert_times(
        named(&spans, "orders-dead receive")[0],
        fifth_nack_at,
        Duration::ZERO,
    );
    assert_eq!(named(&spans, "dead-sub deliver").len(), 1);
    x.t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn messages_without_a_valid_context_get_no_spans_and_are_delivered() {
    let x = Traced::start().await;
    let topic = x.t.create_topic("orders").await;
    let sub = x.t.create_subscription("sub-u", &topic).await;
    let plain = PubsubMessage {
        data: b"plain".to_vec(),
        attributes: HashMap::from([("k".to_string(), "v".to_string())]),
        ..Default::default()
    };
    let malformed = traced_message("malformed", "00-not-a-traceparent-01");
    let zero = traced_message(
        "zero",
        "00-00000000000000000000000000000000-0000000000000000-01",
    );
    let sent = vec![plain, malformed, zero];
    x.t.publish_messages(&topic, sent.clone()).await;
    let got = x.t.pull_until(&sub, 3, SOON).await;
    assert_eq!(got.len(), 3);
    for (received, original) in got.iter().zip(&sent) {
        let message = received.message.as_ref().unwrap();
        assert_eq!(message.data, original.data);
        assert_eq!(message.attributes, original.attributes);
    }
    let ack_ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
    x.t.modack(&sub, &ack_ids, 0).await.unwrap();
    x.spans.flush().await;
    assert!(x.exporter.get_finished_spans().unwrap().is_empty());
    x.t.shutdown().await;
}

/// Publishes and pulls one traced message on a server started with its own
/// in-memory provider and `broker_spans`; returns the spans of the message's
/// trace once the server flushed its events into spans.
async fn round_trip(broker_spans: bool) -> Vec<SpanData> {
    let capture = SpanCapture::for_service("baton");
    let exporter = capture.exporter.clone();
    let config = baton_testkit::server::virtual_config()
        .with_tracer_provider(capture.provider.clone())
        .with_broker_spans(broker_spans);
    let server = TestServer::start_with(config).await;
    let mut publisher = server.publisher();
    let mut subscriber = server.subscriber();
    let topic = topic_name("switch");
    let sub = subscription_name("switch-sub");
    publisher
        .create_topic(baton_proto::pubsub::Topic {
            name: topic.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    subscriber
        .create_subscription(Subscription {
            name: sub.clone(),
            topic: topic.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (trace, _, traceparent) = create_context();
    publisher
        .publish(PublishRequest {
            topic,
            messages: vec![traced_message("x", &traceparent)],
        })
        .await
        .unwrap();
    let pulled = subscriber
        .pull(PullRequest {
            subscription: sub,
            max_messages: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.received_messages.len(), 1);
    // Queued broker events become spans; the in-memory exporter has them
    // as soon as they end.
    server.server().flush_traces().await;
    let spans = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect::<Vec<_>>();
    server.shutdown().await;
    spans
}

#[tokio::test(start_paused = true)]
async fn the_server_records_with_its_provider_and_the_off_switch_silences_it() {
    let on = round_trip(true).await;
    let names: Vec<_> = on.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["switch receive", "switch-sub deliver"]);
    assert_eq!(on[0].instrumentation_scope.name(), SCOPE_NAME);

    let off = round_trip(false).await;
    assert!(off.is_empty(), "{off:?}");
}

#[tokio::test(start_paused = true)]
async fn push_deliveries_are_recorded_and_a_failed_push_is_a_nack() {
    let x = Traced::start().await;
    // An endpoint that fails the first push and accepts the rest.
    let pushes = PushRecorder::start().await;
    pushes.script(&[500]);
    pushes.set_status(204);
    let endpoint = pushes.url("/push");

    let topic = x.t.create_topic("orders").await;
    let sub =
        x.t.create_subscription_with(Subscription {
            name: subscription_name("sub-p"),
            topic: topic.clone(),
            push_config: Some(baton_proto::pubsub::PushConfig {
                push_endpoint: endpoint,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .name;
    let (trace, create, traceparent) = create_context();
    let published = traced_message("pushed", &traceparent);
    x.t.publish_messages(&topic, vec![published.clone()]).await;
    let mut arrivals = Vec::new();
    for _ in 0..2 {
        let push = pushes
            .next(Duration::from_secs(10))
            .await
            .expect("a push within 10 s");
        arrivals.push(push.at);
        let body = push.json();
        assert_eq!(
            body["message"]["attributes"][baton_trace_context::TRACEPARENT_ATTRIBUTE],
            traceparent.as_str()
        );
    }
    // The retry waited out the push backoff (100 ms after one failure).
    assert_eq!(arrivals[1] - arrivals[0], Duration::from_millis(100));
    settled("the accepted push is acked", || x.t.backlog(&sub) == 0).await;
    let spans = x.spans_of(trace).await;
    assert_children_of_create(&spans, trace, create);
    let delivers = named(&spans, "sub-p deliver");
    assert_eq!(delivers.len(), 2);
    for deliver in &delivers {
        assert_eq!(string(deliver, "baton.delivery"), "push");
    }
    let redeliver = named(&spans, "sub-p redeliver");
    assert_eq!(redeliver.len(), 1);
    assert_eq!(event_names(redeliver[0]), ["nack"]);
    // The failed push is a nack at its answer, the message available again
    // at once; the second attempt's span is the 100 ms of push backoff it
    // waited in the backlog.
    assert_eq!(duration(redeliver[0]), Duration::ZERO);
    assert_times(
        delivers[1],
        redeliver[0].end_time,
        Duration::from_millis(100),
    );
    assert_eq!(int(delivers[1], "baton.backlog_wait_ms"), 100);
    x.t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn by_default_broker_spans_land_in_the_trace_store_as_service_baton() {
    // The server's own provider, exporting into its store.
    let t = TestServer::start_virtual().await;
    let topic = t.create_topic("orders").await;
    let sub = t.create_subscription("sub-store", &topic).await;
    let (trace, create, traceparent) = create_context();
    t.publish_messages(&topic, vec![traced_message("x", &traceparent)])
        .await;
    assert_eq!(t.pull_until(&sub, 1, SOON).await.len(), 1);
    t.server().flush_traces().await;
    let detail = t
        .server()
        .trace_store()
        .trace(&format!("{trace:032x}"))
        .expect("trace in the store");
    let mut names: Vec<_> = detail.spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["orders receive", "sub-store deliver"]);
    for span in &detail.spans {
        assert_eq!(span.service, "baton");
        assert_eq!(span.parent_span_id, format!("{create:016x}"));
    }
    t.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_backoff_is_the_redeliver_span_and_the_next_wait_starts_after_it() {
    let x = Traced::start().await;
    let topic = x.t.create_topic("orders").await;
    let sub =
        x.t.create_subscription_with(Subscription {
            name: subscription_name("sub-b"),
            topic: topic.clone(),
            retry_policy: Some(baton_proto::pubsub::RetryPolicy {
                minimum_backoff: Some(baton_proto::wkt::Duration {
                    seconds: 0,
                    nanos: 300_000_000,
                }),
                maximum_backoff: Some(baton_proto::wkt::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        })
        .await
        .name;
    let (trace, create, traceparent) = create_context();
    x.t.publish_messages(&topic, vec![traced_message("x", &traceparent)])
        .await;
    let first = x.t.pull_until(&sub, 1, SOON).await;
    let nacked_at = x.wall();
    x.t.modack(&sub, &[first[0].ack_id.clone()], 0)
        .await
        .unwrap();
    // Wait well past the backoff before pulling again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = x.t.pull_until(&sub, 1, SOON).await;
    assert_eq!(second.len(), 1);

    let spans = x.spans_of(trace).await;
    assert_children_of_create(&spans, trace, create);
    let redeliver = named(&spans, "sub-b redeliver")[0];
    // The redeliver span is the 300 ms backoff from the nack.
    assert_eq!(int(redeliver, "baton.backoff_ms"), 300);
    assert_times(redeliver, nacked_at, Duration::from_millis(300));
    let again = named(&spans, "sub-b deliver")[1];
    // Available again when the backoff ended: the second wait is the time
    // after the backoff (300 ms), not the whole 600 ms since the nack.
    assert_times(
        again,
        nacked_at + Duration::from_millis(300),
        Duration::from_millis(300),
    );
    assert_eq!(int(again, "baton.backlog_wait_ms"), 300);
    x.t.shutdown().await;
}
