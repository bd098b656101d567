//! Forwarding: every span Baton receives over OTLP (exactly as received,
//! resource and scope included) and every span it makes, plus OTLP logs and
//! metrics, sent on to an upstream OTLP endpoint (a collector, Jaeger,
//! Tempo...).
//!
//! Each signal has a bounded queue ([`ForwardConfig::queue_requests`]
//! requests, [`ForwardConfig::queue_items`] spans, records or points) and a
//! background task that takes what is queued, merges it into one export
//! request (up to [`ForwardConfig::max_batch_items`]) and sends it, retrying
//! with exponential backoff on the codes the OTLP specification calls
//! retryable (gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED` with retry info,
//! `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, `CANCELLED`,
//! `DEADLINE_EXCEEDED`; HTTP 429, 502, 503, 504 and transport errors),
//! honouring the server's retry delay (`RetryInfo`, `Retry-After`).
//! Enqueueing never waits: when the queue is full the request is dropped
//! and counted, so neither Pub/Sub nor the OTLP receivers wait on the
//! upstream.
//!
//! Loops are refused: every forwarded export carries
//! [`FORWARDED_HEADER`], the ids of the Batons it passed through, and a
//! receiver that finds its own id there answers success and drops it.

pub mod config;
mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{ConfigError, ForwardConfig, Protocol, Signal, Target};
pub(crate) use transport::status_with_retry_info;
use transport::{Payload, SendError, Transport};
pub use transport::{log_records, metric_points};

/// The header (gRPC metadata) naming the Batons an export passed through,
/// comma-separated server ids.
pub const FORWARDED_HEADER: &str = "x-baton-forwarded";

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC channel could not be made (bad URL or TLS settings).
    #[error("OTLP/gRPC upstream {endpoint}: {message}")]
    Grpc {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The HTTP client could not be made (bad TLS settings).
    #[error("OTLP/HTTP upstream {endpoint}: {message}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
}

/// How the upstream of a signal is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamState {
    /// Nothing sent yet.
    Unknown,
    /// The last export succeeded.
    Up,
    /// The last attempt failed with a retryable error; retrying.
    BackingOff,
    /// The last batch was refused (a non-retryable error) or given up on.
    Down,
}

/// Counters and state of one signal's forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneStatus {
    /// Where it goes.
    pub endpoint: String,
    /// Over what.
    pub protocol: Protocol,
    /// How the upstream is doing.
    pub state: UpstreamState,
    /// Items (spans, log records, metric points) the upstream accepted.
    pub forwarded: u64,
    /// Items dropped: the queue was full, the upstream refused them, or
    /// retrying them took too long.
    pub dropped: u64,
    /// Export attempts that failed.
    pub failed_attempts: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Items queued or being sent.
    pub queued: usize,
}

/// Forwarding's status, as `GET /api/forwarding` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingStatus {
    /// This server's id, as it appears in [`FORWARDED_HEADER`].
    pub server_id: String,
    /// Span forwarding; `None` when off.
    pub traces: Option<LaneStatus>,
    /// Log forwarding; `None` when off.
    pub logs: Option<LaneStatus>,
    /// Metric forwarding; `None` when off.
    pub metrics: Option<LaneStatus>,
    /// Exports refused because they had passed through this server before.
    pub loops_refused: u64,
}

/// A queued export request.
struct Item<P> {
    payload: P,
    items: usize,
    /// The [`FORWARDED_HEADER`] value to send it with.
    chain: Arc<str>,
}

/// The counters and state a lane's queue and task share.
#[derive(Debug)]
struct Shared {
    signal: Signal,
    endpoint: String,
    protocol: Protocol,
    max_items: usize,
    /// Items enqueued and not yet forwarded or dropped.
    outstanding: AtomicUsize,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    failed_attempts: AtomicU64,
    /// Whether a full queue has been reported since the last success.
    overflow_reported: AtomicBool,
    state: Mutex<(UpstreamState, Option<String>)>,
    /// Bumped whenever a batch ends, for waiters.
    progress: watch::Sender<u64>,
}

impl Shared {
    fn status(&self) -> LaneStatus {
        let (state, last_error) = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        LaneStatus {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            state,
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            last_error,
            queued: self.outstanding.load(Ordering::Relaxed),
        }
    }

    fn drop_items(&self, items: usize) {
        self.dropped.fetch_add(items as u64, Ordering::Relaxed);
        if !self.overflow_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                signal = self.signal.name(),
                endpoint = %self.endpoint,
                "forwarding queue full: dropping {} until the upstream catches up (counted in /api/forwarding)",
                self.signal.name()
            );
        }
    }

    /// Moves to `state`, logging a transition between up and not up.
    fn set_state(&self, state: UpstreamState, error: Option<String>) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let before = guard.0;
        guard.0 = state;
        if error.is_some() {
            guard.1 = error.clone();
        }
        drop(guard);
        let was_up = matches!(before, UpstreamState::Up | UpstreamState::Unknown);
        match state {
            UpstreamState::Up if !was_up => tracing::info!(
                signal = self.signal.name(),
                endpoint = %self.endpoint,
                "forwarding upstream is back"
            ),
            UpstreamState::BackingOff | UpstreamState::Down if was_up => tracing::warn!(
                signal = self.signal.name(),
                endpoint = %self.endpoint,
                error = error.as_deref().unwrap_or(""),
                "forwarding upstream is down; retrying with backoff (queued {} are dropped when the queue is full)",
                self.signal.name()
            ),
            UpstreamState::Down if before == UpstreamState::BackingOff => tracing::warn!(
                signal = self.signal.name(),
                endpoint = %self.endpoint,
                error = error.as_deref().unwrap_or(""),
                "forwarding gave up on a batch"
            ),
            _ => {}
        }
    }
}

/// One signal's queue.
struct Lane<P> {
    tx: mpsc::Sender<Item<P>>,
    shared: Arc<Shared>,
}

impl<P> Clone for Lane<P> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<P: Payload> Lane<P> {
    /// Whether `items` more would fit in the queue now; when not, they are
    /// counted as dropped. Lets a producer skip building a request that
    /// would only be dropped (an upstream that is down must not cost the
    /// server the conversion of every span it makes).
    fn admit(&self, items: usize) -> bool {
        let shared = &self.shared;
        let room = shared.outstanding.load(Ordering::Relaxed) + items <= shared.max_items
            && self.tx.capacity() > 0;
        if !room {
            shared.drop_items(items);
        }
        room
    }

    fn enqueue(&self, payload: P, chain: Arc<str>) {
        let items = payload.items();
        if items == 0 {
            return;
        }
        let shared = &self.shared;
        let before = shared.outstanding.fetch_add(items, Ordering::Relaxed);
        if before + items > shared.max_items {
            shared.outstanding.fetch_sub(items, Ordering::Relaxed);
            shared.drop_items(items);
            return;
        }
        if self
            .tx
            .try_send(Item {
                payload,
                items,
                chain,
            })
            .is_err()
        {
            shared.outstanding.fetch_sub(items, Ordering::Relaxed);
            shared.drop_items(items);
        }
    }
}

/// Retry settings of a lane's task.
#[derive(Debug, Clone, Copy)]
struct Retry {
    initial: Duration,
    max: Duration,
    max_elapsed: Duration,
    max_batch_items: usize,
}

impl Retry {
    /// The delay before retry number `attempt` (0-based): doubling from
    /// `initial` up to `max`, jittered down by up to 20%.
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        base.mul_f64(1.0 - rand::random::<f64>() * 0.2)
    }
}

/// The task sending one lane's queue.
async fn run_lane<P: Payload, T: Transport<P>>(
    mut rx: mpsc::Receiver<Item<P>>,
    shared: Arc<Shared>,
    transport: T,
    retry: Retry,
) {
    let mut held: Option<Item<P>> = None;
    loop {
        let first = match held.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        let Item {
            payload: mut batch,
            items: mut count,
            chain,
        } = first;
        while count < retry.max_batch_items {
            match rx.try_recv() {
                Ok(item) if item.chain == chain => {
                    batch.append(item.payload);
                    count += item.items;
                }
                Ok(item) => {
                    held = Some(item);
                    break;
                }
                Err(_) => break,
            }
        }
        send_with_retry(&transport, &shared, &batch, count, &chain, retry).await;
        shared.outstanding.fetch_sub(count, Ordering::Relaxed);
        shared.progress.send_modify(|n| *n = n.wrapping_add(1));
    }
}

async fn send_with_retry<P: Payload, T: Transport<P>>(
    transport: &T,
    shared: &Shared,
    batch: &P,
    count: usize,
    chain: &str,
    retry: Retry,
) {
    let start = tokio::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match transport.send(batch, chain).await {
            Ok(()) => {
                shared.forwarded.fetch_add(count as u64, Ordering::Relaxed);
                shared.overflow_reported.store(false, Ordering::Relaxed);
                shared.set_state(UpstreamState::Up, None);
                return;
            }
            Err(SendError {
                message,
                retryable,
                retry_after,
            }) => {
                shared.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(signal = shared.signal.name(), error = %message, retryable, "forwarding attempt failed");
                let delay = retry_after.unwrap_or_else(|| retry.delay(attempt));
                attempt = attempt.saturating_add(1);
                if !retryable || start.elapsed() + delay > retry.max_elapsed {
                    shared.dropped.fetch_add(count as u64, Ordering::Relaxed);
                    shared.set_state(UpstreamState::Down, Some(message));
                    return;
                }
                shared.set_state(UpstreamState::BackingOff, Some(message));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The forwarding side of a server: cheap to clone, shared by the OTLP
/// receivers (which hand it what they receive) and the server's own span
/// exporter ([`ForwardExporter`]). With forwarding off it only knows the
/// server's id, for refusing loops.
#[derive(Clone)]
pub struct Forwarding {
    server_id: Arc<str>,
    traces: Option<Lane<ExportTraceServiceRequest>>,
    logs: Option<Lane<ExportLogsServiceRequest>>,
    metrics: Option<Lane<ExportMetricsServiceRequest>>,
    loops_refused: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("server_id", &self.server_id)
            .field("traces", &self.traces.as_ref().map(|l| &l.shared.endpoint))
            .field("logs", &self.logs.as_ref().map(|l| &l.shared.endpoint))
            .field(
                "metrics",
                &self.metrics.as_ref().map(|l| &l.shared.endpoint),
            )
            .finish()
    }
}

impl Forwarding {
    /// No forwarding; exports naming `server_id` in [`FORWARDED_HEADER`]
    /// are still refused.
    pub fn off(server_id: impl Into<Arc<str>>) -> Self {
        Self {
            server_id: server_id.into(),
            traces: None,
            logs: None,
            metrics: None,
            loops_refused: Arc::default(),
            tasks: Arc::default(),
        }
    }

    /// Starts a background task per configured signal (on the current
    /// Tokio runtime). Nothing is dialled yet: an upstream that is down
    /// only shows in the status.
    pub fn start(
        config: &ForwardConfig,
        server_id: impl Into<Arc<str>>,
    ) -> Result<Self, ForwardError> {
        let mut forwarding = Self::off(server_id);
        let retry = Retry {
            initial: config.initial_backoff,
            max: config.max_backoff,
            max_elapsed: config.max_elapsed,
            max_batch_items: config.max_batch_items.max(1),
        };
        if let Some(target) = &config.traces {
            forwarding.traces = Some(forwarding.lane(Signal::Traces, target, config, retry)?);
        }
        if let Some(target) = &config.logs {
            forwarding.logs = Some(forwarding.lane(Signal::Logs, target, config, retry)?);
        }
        if let Some(target) = &config.metrics {
            forwarding.metrics = Some(forwarding.lane(Signal::Metrics, target, config, retry)?);
        }
        Ok(forwarding)
    }

    fn lane<P: Payload>(
        &self,
        signal: Signal,
        target: &Target,
        config: &ForwardConfig,
        retry: Retry,
    ) -> Result<Lane<P>, ForwardError> {
        let transport = transport::Upstream::new(target)?;
        Ok(self.lane_over(signal, target, config, retry, transport))
    }

    fn lane_over<P: Payload, T: Transport<P>>(
        &self,
        signal: Signal,
        target: &Target,
        config: &ForwardConfig,
        retry: Retry,
        transport: T,
    ) -> Lane<P> {
        let (tx, rx) = mpsc::channel(config.queue_requests.max(1));
        let shared = Arc::new(Shared {
            signal,
            endpoint: target.endpoint.clone(),
            protocol: target.protocol,
            max_items: config.queue_items.max(1),
            outstanding: AtomicUsize::new(0),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            overflow_reported: AtomicBool::new(false),
            state: Mutex::new((UpstreamState::Unknown, None)),
            progress: watch::Sender::new(0),
        });
        let task = tokio::spawn(run_lane(rx, shared.clone(), transport, retry));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Lane { tx, shared }
    }

    /// This server's id.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Whether any signal is forwarded.
    pub fn is_on(&self) -> bool {
        self.traces.is_some() || self.logs.is_some() || self.metrics.is_some()
    }

    /// Whether spans are forwarded.
    pub fn forwards_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Whether metrics are forwarded.
    pub fn forwards_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// Whether an export carrying `header` (the [`FORWARDED_HEADER`] value)
    /// passed through this server already: a forwarding loop. Counted, and
    /// logged the first time.
    pub fn is_loop(&self, header: Option<&str>) -> bool {
        let looped = !self.server_id.is_empty()
            && header.is_some_and(|chain| chain.split(',').any(|id| id.trim() == &*self.server_id));
        if looped && self.loops_refused.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                server_id = %self.server_id,
                "an export forwarded by this server came back to it (a forwarding loop): dropped, not stored again"
            );
        }
        looped
    }

    fn chain(&self, received: Option<&str>) -> Arc<str> {
        match received.map(str::trim).filter(|c| !c.is_empty()) {
            Some(chain) => format!("{chain},{}", self.server_id).into(),
            None => self.server_id.clone(),
        }
    }

    /// Queues a copy of `request` (received with `header`, the
    /// [`FORWARDED_HEADER`] value) when spans are forwarded.
    pub fn traces(&self, request: &ExportTraceServiceRequest, header: Option<&str>) {
        if let Some(lane) = &self.traces {
            lane.enqueue(request.clone(), self.chain(header));
        }
    }

    /// Queues a copy of `request` when logs are forwarded.
    pub fn logs(&self, request: &ExportLogsServiceRequest, header: Option<&str>) {
        if let Some(lane) = &self.logs {
            lane.enqueue(request.clone(), self.chain(header));
        }
    }

    /// Queues a copy of `request` when metrics are forwarded.
    pub fn metrics(&self, request: &ExportMetricsServiceRequest, header: Option<&str>) {
        if let Some(lane) = &self.metrics {
            lane.enqueue(request.clone(), self.chain(header));
        }
    }

    /// Counters and state of every signal.
    pub fn status(&self) -> ForwardingStatus {
        ForwardingStatus {
            server_id: self.server_id.to_string(),
            traces: self.traces.as_ref().map(|l| l.shared.status()),
            logs: self.logs.as_ref().map(|l| l.shared.status()),
            metrics: self.metrics.as_ref().map(|l| l.shared.status()),
            loops_refused: self.loops_refused.load(Ordering::Relaxed),
        }
    }

    fn shared(&self) -> Vec<Arc<Shared>> {
        [
            self.traces.as_ref().map(|l| l.shared.clone()),
            self.logs.as_ref().map(|l| l.shared.clone()),
            self.metrics.as_ref().map(|l| l.shared.clone()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Waits until `done` holds for the status, re-checking whenever a
    /// batch ends; `false` when `limit` passes first.
    pub async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&ForwardingStatus) -> bool,
    ) -> bool {
        let mut watchers: Vec<_> = self
            .shared()
            .iter()
            .map(|s| s.progress.subscribe())
            .collect();
        let wait = async {
            loop {
                if done(&self.status()) {
                    return;
                }
                if watchers.is_empty() {
                    std::future::pending::<()>().await;
                }
                let changes = watchers.iter_mut().map(|w| Box::pin(w.changed()));
                let _ = futures_select_all(changes).await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Waits until everything queued so far has been sent (or dropped);
    /// `false` when `limit` passes first.
    pub async fn flush(&self, limit: Duration) -> bool {
        self.wait_until(limit, |status| {
            [&status.traces, &status.logs, &status.metrics]
                .into_iter()
                .flatten()
                .all(|lane| lane.queued == 0)
        })
        .await
    }

    /// Sends what is queued (for at most `limit`), then stops the tasks.
    pub async fn shutdown(&self, limit: Duration) {
        if !self.flush(limit).await {
            tracing::warn!(
                "forwarding: the upstream did not take everything queued before shutdown"
            );
        }
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The first of `futures` to finish.
async fn futures_select_all<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for future in &mut futures {
            if std::pin::Pin::new(future).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}

/// An OpenTelemetry [`SpanExporter`] queueing the server's own spans for
/// forwarding (with the provider's resource), beside [`crate::StoreExporter`].
#[derive(Debug, Clone)]
pub struct ForwardExporter {
    forwarding: Forwarding,
    resource: Resource,
}

impl ForwardExporter {
    /// An exporter into `forwarding`'s span queue.
    pub fn new(forwarding: Forwarding) -> Self {
        Self {
            forwarding,
            resource: Resource::builder_empty().build(),
        }
    }
}

impl SpanExporter for ForwardExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let Some(lane) = &self.forwarding.traces else {
            return Ok(());
        };
        // A full queue drops the batch before it is converted.
        if batch.is_empty() || !lane.admit(batch.len()) {
            return Ok(());
        }
        let attributes = ResourceAttributesWithSchema::from(&self.resource);
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &attributes),
        };
        lane.enqueue(request, self.forwarding.server_id.clone());
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

#[cfg(test)]
mod tests;
