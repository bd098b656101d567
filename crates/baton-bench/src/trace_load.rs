//! What `--forwarding-cost` and `--span-flood` share: a Pub/Sub round over
//! raw gRPC stubs (as in `--auth-cost`), optionally with traced messages, an
//! OTLP span generator, and the small statistics and `/proc` readers of the
//! reports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, ensure};
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest, Subscription, Topic,
};
use baton_trace_store::otlp_values::{string_attribute, unix_nanos};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const PROJECT: &str = "bench";
/// Concurrent callers per phase.
pub const CALLERS: usize = 8;
/// Messages per Publish call.
pub const BATCH: usize = 10;
/// Most messages per Pull call.
pub const PULL_MAX: i32 = 100;

/// Trace ids of traced messages: distinct across the whole run.
static NEXT_TRACE: AtomicU64 = AtomicU64::new(1);

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub async fn connect(addr: SocketAddr) -> Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?,
    )
}

/// A W3C traceparent of a sampled `create` span, as a tracing publisher
/// puts into `googclient_traceparent`.
/// The credential every call of a workload carries (none by default).
#[derive(Debug, Clone, Default)]
pub struct Credential(pub Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Credential {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

fn traceparent() -> String {
    let n = NEXT_TRACE.fetch_add(1, Ordering::Relaxed);
    format!("00-{:016x}{n:016x}-{n:016x}-01", 0xba70_u64)
}

/// The publish and pull+ack rates of the measured rounds of one server.
pub type Rates = (Vec<f64>, Vec<f64>);

/// Runs [`round`] number `round_no` against the server of `label` and logs
/// its rates; round 0 is the warm-up, the others go into `rates`.
#[allow(clippy::too_many_arguments)] // a round's settings, named at each call
pub async fn measured_round(
    label: &str,
    round_no: usize,
    channel: &Channel,
    credential: &Credential,
    prefix: &str,
    n: usize,
    size: usize,
    traced: bool,
    rates: &mut Rates,
) -> Result<()> {
    let (publish, receive) = round(channel, credential, prefix, n, size, traced)
        .await
        .with_context(|| format!("{label} round {round_no}"))?;
    eprintln!(
        "== {} {round_no} {label}: publish {publish:.0} msg/s, pull+ack {receive:.0} msg/s",
        if round_no == 0 { "warm-up" } else { "round" },
    );
    if round_no > 0 {
        rates.0.push(publish);
        rates.1.push(receive);
    }
    Ok(())
}

/// Publish then pull+ack `n` messages of `size` bytes on fresh resources;
/// messages per second of each phase. With `traced`, every message carries
/// a sampled trace context, so a server with broker spans records a
/// `receive` and a `deliver` span for it.
pub async fn round(
    channel: &Channel,
    credential: &Credential,
    prefix: &str,
    n: usize,
    size: usize,
    traced: bool,
) -> Result<(f64, f64)> {
    let topic = format!("projects/{PROJECT}/topics/{prefix}");
    let subscription = format!("projects/{PROJECT}/subscriptions/{prefix}");
    PublisherClient::new(InterceptedService::new(channel.clone(), credential.clone()))
        .create_topic(Topic {
            name: topic.clone(),
            ..Default::default()
        })
        .await?;
    SubscriberClient::new(InterceptedService::new(channel.clone(), credential.clone()))
        .create_subscription(Subscription {
            name: subscription.clone(),
            topic: topic.clone(),
            ack_deadline_seconds: 600,
            ..Default::default()
        })
        .await?;
    let data = vec![b'x'; size];
    let calls = n.div_ceil(BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let (mut publisher, next, topic, data) = (
            PublisherClient::new(InterceptedService::new(channel.clone(), credential.clone())),
            next.clone(),
            topic.clone(),
            data.clone(),
        );
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let messages = (0..BATCH)
                    .map(|_| PubsubMessage {
                        data: data.clone(),
                        attributes: if traced {
                            [(
                                baton_trace_context::TRACEPARENT_ATTRIBUTE.to_owned(),
                                traceparent(),
                            )]
                            .into()
                        } else {
                            Default::default()
                        },
                        ..Default::default()
                    })
                    .collect();
                publisher
                    .publish(PublishRequest {
                        topic: topic.clone(),
                        messages,
                    })
                    .await?;
            }
            Ok::<_, Status>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let published = calls * BATCH;
    let publish_rate = rate(published, started.elapsed());

    let received = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for _ in 0..CALLERS {
        let (mut subscriber, received, subscription) = (
            SubscriberClient::new(InterceptedService::new(channel.clone(), credential.clone())),
            received.clone(),
            subscription.clone(),
        );
        tasks.spawn(async move {
            while received.load(Ordering::Relaxed) < published {
                #[allow(deprecated)]
                let pulled = subscriber
                    .pull(PullRequest {
                        subscription: subscription.clone(),
                        return_immediately: true,
                        max_messages: PULL_MAX,
                    })
                    .await?
                    .into_inner()
                    .received_messages;
                if pulled.is_empty() {
                    continue;
                }
                received.fetch_add(pulled.len(), Ordering::Relaxed);
                subscriber
                    .acknowledge(AcknowledgeRequest {
                        subscription: subscription.clone(),
                        ack_ids: pulled.into_iter().map(|m| m.ack_id).collect(),
                    })
                    .await?;
            }
            Ok::<_, Status>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let got = received.load(Ordering::Relaxed);
    ensure!(got >= published, "received {got} of {published}");
    Ok((publish_rate, rate(published, started.elapsed())))
}

/// An OTLP export request of `traces` traces of `spans_per_trace` spans
/// each (a root and its children), with trace ids no other request of the
/// run uses: what a busy service's SDK sends.
pub fn span_request(traces: usize, spans_per_trace: usize) -> ExportTraceServiceRequest {
    let now = unix_nanos(SystemTime::now());
    let mut spans = Vec::with_capacity(traces * spans_per_trace);
    for _ in 0..traces {
        let n = NEXT_TRACE.fetch_add(1, Ordering::Relaxed);
        let mut trace_id = 0xf100_d000_u64.to_be_bytes().to_vec();
        trace_id.extend_from_slice(&n.to_be_bytes());
        for i in 0..spans_per_trace {
            let id = |i: usize| {
                let mut id = (n << 8).to_be_bytes();
                id[7] = u8::try_from(i % 255 + 1).unwrap_or(1);
                id.to_vec()
            };
            let offset = u64::try_from(i).unwrap_or(0) * 1_000;
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: id(i),
                parent_span_id: if i == 0 { Vec::new() } else { id(0) },
                name: if i == 0 {
                    "GET /orders/{id}".to_owned()
                } else {
                    format!("SELECT orders {i}")
                },
                kind: if i == 0 { 2 } else { 3 },
                start_time_unix_nano: now - 1_000_000 + offset,
                end_time_unix_nano: now - 500_000 + offset,
                attributes: vec![
                    string_attribute("http.route", "/orders/{id}"),
                    string_attribute("db.system", "postgresql"),
                    string_attribute("peer.service", "orders-db"),
                ],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string_attribute("service.name", "span-flood"),
                    string_attribute("host.name", "bench"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "baton-bench".to_owned(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[allow(clippy::cast_precision_loss)]
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `min-max` of a series, in thousands.
pub fn range_k(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.0}k-{:.0}k", min / 1e3, max / 1e3)
}

/// Percent change from `from` to `to`.
pub fn change(to: f64, from: f64) -> f64 {
    100.0 * (to / from - 1.0)
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    status_file_kib("/proc/self/status", field)
}

/// A field in KiB of a `/proc/<pid>/status` file.
pub fn status_file_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A `/proc/self/status` memory field in MiB, or `?`.
pub fn proc_mib(field: &str) -> String {
    proc_status_kib(field).map_or_else(|| "?".to_owned(), |kib| format!("{:.1}", mib(kib * 1024)))
}

#[allow(clippy::cast_precision_loss)]
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
