//! Baton's network face.
//!
//! One port serves gRPC (HTTP/2) and the REST mapping (HTTP/1.1 JSON) over
//! the same [`Broker`]. Both are thin transports over one request layer
//! ([`api`]): each RPC is one function there, and what applies to every
//! request (the durability wait) is written once. gRPC requests are routed
//! by their service path, all else goes to the REST route table. The trace
//! store's routers (query API, web view; the OTLP receivers on their own
//! ports) are mounted beside them. [`start`] binds, serves in the background
//! and hands back a [`RunningServer`] to learn the address and to shut down.

pub mod api;
pub mod broker_spans;
mod console;
mod grpc;
pub mod identity;
pub mod metrics;
mod push;
mod rest;
mod serve;
mod status;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_broker::{Broker, Clock};
use baton_proto::iam::iam_policy_server::IamPolicyServer;
use baton_proto::pubsub::publisher_server::PublisherServer;
use baton_proto::pubsub::schema_service_server::SchemaServiceServer;
use baton_proto::pubsub::subscriber_server::SubscriberServer;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tower::ServiceExt;

pub use api::{AccessControl, PubSubApi};
pub use grpc::{GrpcServices, parse_grpc_timeout};
pub use identity::Identity;
pub use identity::federation::WorkloadIdentityProviderSettings;
pub use push::{PushError, PushManager, PushSettings};
pub use status::{mapping as status_mapping, to_http, to_status};
pub use tls::{TlsError, TlsSettings};

pub use baton_trace_store::forward::{ForwardConfig, Forwarding, ForwardingStatus};
pub use baton_trace_store::signals::{SignalCounts, SignalStats};
pub use baton_trace_store::{self, TraceStore};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

/// Largest gRPC message accepted or sent: a full Publish request plus
/// framing, and StreamingPull responses up to what clients accept.
const MAX_GRPC_MESSAGE_BYTES: usize = 20 * 1024 * 1024;

/// Errors starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The serving task panicked or was cancelled.
    #[error("server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Push delivery could not start.
    #[error("push delivery: {0}")]
    Push(#[from] PushError),
    /// The disk store could not be opened.
    #[error(transparent)]
    Store(#[from] baton_broker::StoreError),
    /// The trace store's file could not be opened.
    #[error(transparent)]
    TraceStore(#[from] baton_trace_store::TraceFileError),
    /// The TLS certificate could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The identity state (signing key, service accounts, operator token)
    /// could not be loaded or made.
    #[error("authentication: {0}")]
    Auth(#[from] baton_auth::AuthError),
    /// Forwarding could not start (certificate files, endpoint URLs).
    #[error("forwarding: {0}")]
    Forward(#[from] baton_trace_store::forward::ForwardError),
    /// The metadata server was asked for without a service account.
    #[error("the metadata server needs a service account (--metadata-service-account)")]
    MetadataAccount,
    /// A workload identity pool provider could not be set up (its
    /// audience, or its issuer's keys).
    #[error(transparent)]
    WorkloadIdentity(#[from] identity::federation::FederationError),
}

/// Authentication and IAM, off by default ([`ServerConfig::with_auth`]).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The bootstrap admin's bearer token, which may do everything (create
    /// service accounts, set project policies); `None` makes a random one.
    pub operator_token: Option<String>,
    /// Where to write the operator token (mode 0600) for the CLI to read;
    /// `None` writes `<data dir>/auth/operator-token` with a disk store and
    /// nothing in memory.
    pub operator_token_file: Option<PathBuf>,
}

/// The metadata server ([`identity::metadata`]), off by default.
#[derive(Debug, Clone)]
pub struct MetadataSettings {
    /// Where to serve it (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The instance's service account (its email), whose tokens it hands
    /// out.
    pub service_account: String,
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Record the server's own spans (receive, deliver, redeliver,
    /// dead-letter) as children of each traced message's `create` span; see
    /// [`broker_spans`]. On by default; `baton serve --no-broker-spans` or
    /// `BATON_BROKER_SPANS=false` switch it off.
    pub broker_spans: bool,
    /// Where to receive OTLP/gRPC traces (`baton serve` uses port 4317);
    /// `None` (the default of [`ServerConfig::new`]) receives none.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Where to receive OTLP/HTTP traces, `POST /v1/traces` (`baton serve`
    /// uses port 4318); `None` (the default) receives none.
    pub otlp_http_addr: Option<SocketAddr>,
    /// Bound of the trace store, in spans; oldest traces are evicted first.
    pub trace_store_spans: usize,
    /// Bound of the trace store's memory, in bytes (an estimate, see
    /// [`TraceStore::with_limits`]); with a data directory it bounds the
    /// trace file too, which mirrors memory.
    pub trace_store_bytes: usize,
    /// Traces not updated for this long are evicted (checked on Tokio's
    /// clock, every tenth of it); `None` (the default) keeps them until the
    /// bounds push them out. `baton serve` defaults to 24 h.
    pub trace_retention: Option<Duration>,
    /// The provider recording the server's own spans; `None` (the default)
    /// builds one exporting into the trace store and, when spans are
    /// forwarded ([`ServerConfig::forward`]), into the forwarding queue.
    /// Tests may pass their own (for example an in-memory one).
    pub tracer_provider: Option<SdkTracerProvider>,
    /// Directory of the disk store; `None` (the default of
    /// [`ServerConfig::new`]) keeps everything in memory. With a store,
    /// whatever was acknowledged survives a restart or a crash, and the
    /// trace store keeps its spans in `traces.redb` there ([`TRACE_FILE`]).
    pub data_dir: Option<PathBuf>,
    /// The broker's clock: the system's by default; tests that pause Tokio's
    /// time give [`Clock::virtual_time`] so publish times move with it.
    pub clock: Clock,
    /// Serve every port (gRPC, REST, web view, OTLP) over TLS with this
    /// certificate; `None` (the default) serves plain text.
    pub tls: Option<TlsSettings>,
    /// Most spans per second the OTLP trace receivers take (a token bucket
    /// with half a second of burst); beyond it exports are refused with
    /// `RESOURCE_EXHAUSTED` + `RetryInfo` (gRPC) or 429 + `Retry-After`
    /// (HTTP), which OTLP exporters retry, so a flood of spans cannot take
    /// the CPU Pub/Sub needs. `None` (the default of [`ServerConfig::new`])
    /// takes everything; `baton serve` sets 10,000.
    pub otlp_max_spans_per_second: Option<u32>,
    /// Authentication and IAM enforcement; `None` (the default) lets every
    /// caller do everything, as a local emulator does.
    pub auth: Option<AuthSettings>,
    /// The metadata server's token endpoints on a port of their own.
    pub metadata: Option<MetadataSettings>,
    /// The workload identity pool providers whose OIDC subject tokens the
    /// Security Token Service exchanges for federated access tokens (none
    /// by default).
    pub workload_identity_providers: Vec<WorkloadIdentityProviderSettings>,
    /// Baton's URL as clients reach it (the issuer of its tokens, the base
    /// of the `token_uri` in key files); `None` derives it from the bound
    /// address.
    pub public_url: Option<String>,
    /// Where to forward the OTLP received and the server's own spans
    /// ([`baton_trace_store::forward`]); `None` (the default) forwards
    /// nothing. `baton serve` builds it from `--forward-otlp` and the
    /// standard `OTEL_EXPORTER_OTLP_*` variables. A signal whose endpoint is
    /// one of this server's own ports is not forwarded.
    pub forward: Option<ForwardConfig>,
    /// How often the broker's metrics ([`metrics`]) are sent upstream when
    /// metrics are forwarded ([`ForwardConfig::metrics`]); 60 s by default,
    /// Cloud Monitoring's sampling period.
    pub metrics_export_interval: Duration,
}

impl ServerConfig {
    /// Serves on `addr` with the in-memory store.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            broker_spans: true,
            otlp_grpc_addr: None,
            otlp_http_addr: None,
            trace_store_spans: baton_trace_store::DEFAULT_MAX_SPANS,
            trace_store_bytes: baton_trace_store::DEFAULT_MAX_BYTES,
            trace_retention: None,
            tracer_provider: None,
            data_dir: None,
            clock: Clock::system(),
            tls: None,
            otlp_max_spans_per_second: None,
            auth: None,
            metadata: None,
            workload_identity_providers: Vec::new(),
            public_url: None,
            forward: None,
            metrics_export_interval: DEFAULT_METRICS_EXPORT_INTERVAL,
        }
    }

    /// Sends the broker's metrics upstream every `interval` when metrics are
    /// forwarded (see [`ServerConfig::metrics_export_interval`]).
    pub fn with_metrics_export_interval(mut self, interval: Duration) -> Self {
        self.metrics_export_interval = interval;
        self
    }

    /// Forwards received OTLP and the server's own spans as `forward` says.
    pub fn with_forwarding(mut self, forward: ForwardConfig) -> Self {
        self.forward = Some(forward);
        self
    }

    /// Serves every port over TLS with the certificate `tls` names.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Limits the OTLP trace receivers to `spans` per second (see
    /// [`ServerConfig::otlp_max_spans_per_second`]).
    pub fn with_otlp_span_budget(mut self, spans: u32) -> Self {
        self.otlp_max_spans_per_second = Some(spans);
        self
    }

    /// Turns authentication and IAM enforcement on.
    pub fn with_auth(mut self, auth: AuthSettings) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Serves the metadata server's token endpoints.
    pub fn with_metadata(mut self, metadata: MetadataSettings) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Trusts a workload identity pool provider in the token exchange.
    pub fn with_workload_identity_provider(
        mut self,
        provider: WorkloadIdentityProviderSettings,
    ) -> Self {
        self.workload_identity_providers.push(provider);
        self
    }

    /// Sets the URL clients reach Baton at.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Runs the broker on `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the server's state in the disk store in `dir` (created if
    /// missing; recovered if it holds a store already).
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Receives OTLP/gRPC traces on `addr` (port 0 picks a free port).
    pub fn with_otlp_grpc(mut self, addr: SocketAddr) -> Self {
        self.otlp_grpc_addr = Some(addr);
        self
    }

    /// Receives OTLP/HTTP traces on `addr` (port 0 picks a free port).
    pub fn with_otlp_http(mut self, addr: SocketAddr) -> Self {
        self.otlp_http_addr = Some(addr);
        self
    }

    /// Bounds the trace store to `spans` spans.
    pub fn with_trace_store_spans(mut self, spans: usize) -> Self {
        self.trace_store_spans = spans;
        self
    }

    /// Bounds the trace store (and its file) to about `bytes` bytes.
    pub fn with_trace_store_bytes(mut self, bytes: usize) -> Self {
        self.trace_store_bytes = bytes;
        self
    }

    /// Evicts traces not updated for `retention` (`None` or zero: never).
    pub fn with_trace_retention(mut self, retention: Option<Duration>) -> Self {
        self.trace_retention = retention.filter(|r| !r.is_zero());
        self
    }

    /// Switches the server's own spans (broker spans) on or off.
    pub fn with_broker_spans(mut self, on: bool) -> Self {
        self.broker_spans = on;
        self
    }

    /// Records the server's own spans with `provider` instead of the one
    /// built by [`start`] (which exports into the trace store).
    pub fn with_tracer_provider(mut self, provider: SdkTracerProvider) -> Self {
        self.tracer_provider = Some(provider);
        self
    }
}

/// Service name of the server's own spans.
pub const SERVICE_NAME: &str = "baton";

/// The default of [`ServerConfig::metrics_export_interval`].
pub const DEFAULT_METRICS_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The server's tracer provider: spans into `store` (batched, flushed every
/// 100 ms), and into `forwarding`'s span queue when it forwards spans (the
/// same path as the spans received over OTLP).
fn build_tracer_provider(store: &TraceStore, forwarding: &Forwarding) -> SdkTracerProvider {
    let batch = || {
        BatchConfigBuilder::default()
            .with_scheduled_delay(std::time::Duration::from_millis(100))
            .build()
    };
    let to_store =
        BatchSpanProcessor::builder(baton_trace_store::StoreExporter::new(store.clone()))
            .with_batch_config(batch())
            .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(SERVICE_NAME)
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(to_store)
        .with_resource(resource);
    if forwarding.forwards_traces() {
        let forward = BatchSpanProcessor::builder(
            baton_trace_store::forward::ForwardExporter::new(forwarding.clone()),
        )
        .with_batch_config(batch())
        .build();
        builder = builder.with_span_processor(forward);
    }
    builder.build()
}

/// `forward` without the signals whose endpoint is one of `own` (this
/// server's ports on a local address): those would only come back here.
fn without_own_ports(mut forward: ForwardConfig, own: &[SocketAddr]) -> ForwardConfig {
    for target in [&mut forward.traces, &mut forward.logs, &mut forward.metrics] {
        let to_self = target
            .as_ref()
            .and_then(|t| t.authority())
            .is_some_and(|(host, port)| {
                let local = host.eq_ignore_ascii_case("localhost")
                    || host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                        ip.is_loopback() || ip.is_unspecified() || own.iter().any(|a| a.ip() == ip)
                    });
                local && own.iter().any(|a| a.port() == port)
            });
        if to_self && let Some(t) = target.take() {
            tracing::info!(endpoint = %t.endpoint, "not forwarding to this server's own port (its spans are in the store already)");
        }
    }
    forward
}

/// The trace store's file in the data directory.
pub const TRACE_FILE: &str = "traces.redb";

/// The trace store `config` asks for, with its file when durable.
fn trace_store_builder(config: &ServerConfig) -> baton_trace_store::TraceStoreBuilder {
    let clock = config.clock;
    let builder = TraceStore::builder()
        .max_spans(config.trace_store_spans)
        .max_bytes(config.trace_store_bytes)
        .retention(config.trace_retention)
        .clock(Arc::new(move || clock.wall()));
    match &config.data_dir {
        Some(dir) => builder.file(dir.join(TRACE_FILE)),
        None => builder,
    }
}

/// A server serving in the background.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
    trace_store: TraceStore,
    /// Evicts expired traces (with a retention).
    trace_expiry: Option<JoinHandle<()>>,
    tracer_provider: SdkTracerProvider,
    /// The broker-span recorder, to flush its queue before the provider.
    span_recorder: Option<broker_spans::BrokerSpans>,
    otlp_grpc: Option<serve::Listener>,
    otlp_http: Option<serve::Listener>,
    metadata: Option<serve::Listener>,
    otlp_stop: watch::Sender<bool>,
    tls_root: Option<PathBuf>,
    identity: Identity,
    operator_token: Option<String>,
    forwarding: Forwarding,
    signal_stats: SignalStats,
    /// Sends the broker's metrics upstream, when metrics are forwarded.
    metrics_export: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The identity state: service accounts, the signing key, the verifier.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The operator's bearer token, when authentication is on.
    pub fn operator_token(&self) -> Option<&str> {
        self.operator_token.as_deref()
    }

    /// The bound metadata-server address, when serving one.
    pub fn metadata_addr(&self) -> Option<SocketAddr> {
        self.metadata.as_ref().map(|l| l.addr)
    }

    /// Baton's URL as clients reach it.
    pub fn public_url(&self) -> &str {
        self.identity.public_url()
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The certificate file clients should trust when serving TLS: the
    /// development CA (`ca.pem`) or the given certificate file; `None` in
    /// plain text.
    pub fn tls_root(&self) -> Option<&Path> {
        self.tls_root.as_deref()
    }

    /// `"https"` when serving TLS, else `"http"`: the scheme of URLs to
    /// every port of this server.
    pub fn scheme(&self) -> &'static str {
        if self.tls_root.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The broker behind the server, for embedding and tests.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The trace store (OTLP input and the server's own spans).
    pub fn trace_store(&self) -> &TraceStore {
        &self.trace_store
    }

    /// The provider recording the server's own spans.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// A tracer of the server's provider with the `baton-server` scope, for
    /// code recording server spans (its spans land in the trace store).
    pub fn server_tracer(&self) -> SdkTracer {
        self.tracer_provider
            .tracer_with_scope(broker_spans::scope())
    }

    /// Exports the server's finished spans now (into the store and any OTLP
    /// endpoint) instead of within the next 100 ms.
    pub async fn flush_traces(&self) {
        // Broker events still queued become spans first.
        if let Some(recorder) = &self.span_recorder {
            recorder.flush().await;
        }
        let provider = self.tracer_provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    /// Forwarding: its status ([`Forwarding::status`], also served as `GET
    /// /api/forwarding`) and [`Forwarding::flush`].
    pub fn forwarding(&self) -> &Forwarding {
        &self.forwarding
    }

    /// Counts of the OTLP logs and metrics received.
    pub fn signal_stats(&self) -> SignalCounts {
        self.signal_stats.counts()
    }

    /// The bound OTLP/gRPC address, when receiving.
    pub fn otlp_grpc_addr(&self) -> Option<SocketAddr> {
        self.otlp_grpc.as_ref().map(|l| l.addr)
    }

    /// The bound OTLP/HTTP address, when receiving.
    pub fn otlp_http_addr(&self) -> Option<SocketAddr> {
        self.otlp_http.as_ref().map(|l| l.addr)
    }

    /// Stops accepting, ends open streams with UNAVAILABLE so clients
    /// reconnect elsewhere, and waits for connections to finish.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.broker.begin_shutdown();
        let _ = self.otlp_stop.send(true);
        // The last sample of the metrics joins the forwarding queue before
        // it drains.
        if let Some(export) = self.metrics_export.take()
            && tokio::time::timeout(std::time::Duration::from_secs(5), export)
                .await
                .is_err()
        {
            tracing::warn!("the last metrics export did not finish within 5 s");
        }
        for listener in [
            self.otlp_grpc.take(),
            self.otlp_http.take(),
            self.metadata.take(),
        ]
        .into_iter()
        .flatten()
        {
            if tokio::time::timeout(std::time::Duration::from_secs(5), listener.task)
                .await
                .is_err()
            {
                tracing::warn!(addr = %listener.addr, "OTLP connections did not close within 5 s");
            }
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        match tokio::time::timeout(std::time::Duration::from_secs(10), task).await {
            Ok(result) => result??,
            Err(_) => {
                tracing::warn!("connections did not close within 10 s; closing them");
                self.task.abort();
            }
        }
        // Flush the server's spans (blocking: the batch processor's thread).
        if let Some(recorder) = &self.span_recorder {
            recorder.flush().await;
        }
        let provider = self.tracer_provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        self.forwarding
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        // The spans so far (the server's own included) into the trace file.
        if let Some(expiry) = self.trace_expiry.take() {
            expiry.abort();
        }
        let traces = self.trace_store.clone();
        let _ = tokio::task::spawn_blocking(move || traces.close()).await;
        // Everything acknowledged is on disk already; this writes the rest
        // (lease-free bookkeeping) and lets go of the file.
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.close_storage()).await;
        Ok(())
    }

    /// Waits until the server stops on its own (it only does on error).
    pub async fn wait(self) -> Result<(), ServerError> {
        let RunningServer {
            task,
            stop,
            otlp_stop,
            ..
        } = self;
        let _keep_open = (stop, otlp_stop);
        task.await??;
        Ok(())
    }
}

/// Mounts a tonic service under its `/package.Service/` path prefix.
fn with_grpc<S>(router: axum::Router<PubSubApi>, service: S) -> axum::Router<PubSubApi>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    router.route_service(
        &format!("/{}/{{*method}}", S::NAME),
        service.map_request(|r: http::Request<axum::body::Body>| r.map(tonic::body::Body::new)),
    )
}

/// The router serving both transports for `broker`: gRPC services by their
/// path prefix, everything else REST.
pub fn router(broker: Arc<Broker>) -> axum::Router {
    router_with_traces(broker, TraceStore::new(1))
}

/// [`router`], with the trace store's query API and web view over `traces`.
pub fn router_with_traces(broker: Arc<Broker>, traces: TraceStore) -> axum::Router {
    let clock = *broker.clock();
    let api = PubSubApi::new(broker);
    match Identity::open(
        None,
        "http://127.0.0.1".to_string(),
        None,
        clock,
        Vec::new(),
    ) {
        Ok(identity) => app(api, identity, traces),
        Err(error) => {
            tracing::warn!(%error, "identity endpoints left out");
            app_without_identity(api, traces)
        }
    }
}

/// Everything the main port serves: the Pub/Sub API over `api` (gRPC and
/// REST), the identity endpoints of `identity`, and the trace store's query
/// API and web view over `traces`.
pub fn app(api: PubSubApi, identity: Identity, traces: TraceStore) -> axum::Router {
    app_without_identity(api.clone(), traces).merge(identity::router(identity, api))
}

fn app_without_identity(api: PubSubApi, traces: TraceStore) -> axum::Router {
    let grpc = GrpcServices::new(api.clone());
    let publisher = PublisherServer::new(grpc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let subscriber = SubscriberServer::new(grpc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let schemas = SchemaServiceServer::new(grpc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let iam = IamPolicyServer::new(grpc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    // StreamingPull has a route of its own, which writes deliveries from
    // the broker's shared messages (see `grpc::streaming_pull`), and so
    // has Publish, which decodes messages with their trace contexts held
    // apart (see `grpc::publish`).
    let router = axum::Router::new()
        .route_service(
            <grpc::streaming_pull::StreamingPull as grpc::OwnRoute>::PATH,
            grpc::MethodRoute::<grpc::streaming_pull::StreamingPull>::new(
                grpc.clone(),
                MAX_GRPC_MESSAGE_BYTES,
            ),
        )
        .route_service(
            <grpc::publish::Publish as grpc::OwnRoute>::PATH,
            grpc::MethodRoute::<grpc::publish::Publish>::new(grpc, MAX_GRPC_MESSAGE_BYTES),
        );
    let router = with_grpc(router, publisher);
    let router = with_grpc(router, subscriber);
    let router = with_grpc(router, schemas);
    let router = with_grpc(router, iam);
    let router = router.merge(baton_trace_store::router(traces));
    let router = router.merge(metrics::routes());
    let router = router.merge(console::routes());
    router.fallback(rest::handle).with_state(api)
}

/// Binds `config.addr` and serves until [`RunningServer::shutdown`].
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    // Loading the trace file is blocking work: off the runtime, while the
    // rest starts.
    let trace_loading = tokio::task::spawn_blocking({
        let builder = trace_store_builder(&config);
        move || builder.build()
    });
    let tls = match &config.tls {
        Some(settings) => Some(tls::prepare(settings, config.addr)?),
        None => None,
    };
    let acceptor = tls.as_ref().map(|tls| tls.acceptor.clone());
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let local_addr = listener.local_addr()?;
    let trace_store = trace_loading.await??;
    let (otlp_stop, otlp_stopped) = watch::channel(false);
    let otlp_grpc_listener = match config.otlp_grpc_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let otlp_http_listener = match config.otlp_http_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let mut own_addrs = vec![local_addr];
    for listener in [&otlp_grpc_listener, &otlp_http_listener]
        .into_iter()
        .flatten()
    {
        own_addrs.push(listener.local_addr()?);
    }
    let server_id = format!("{:016x}", rand::random::<u64>());
    let forwarding = match &config.forward {
        Some(forward) => {
            let forward = without_own_ports(forward.clone(), &own_addrs);
            let forwarding = Forwarding::start(&forward, server_id)?;
            for (signal, lane) in [
                ("traces", forward.traces),
                ("logs", forward.logs),
                ("metrics", forward.metrics),
            ] {
                if let Some(lane) = lane {
                    tracing::info!(signal, endpoint = %lane.endpoint, protocol = %lane.protocol, "forwarding OTLP upstream");
                }
            }
            forwarding
        }
        None => Forwarding::off(server_id),
    };
    let signal_stats = SignalStats::default();
    let span_budget = config
        .otlp_max_spans_per_second
        .map(|spans| Arc::new(baton_trace_store::IngestLimit::new(spans)));
    let otlp_grpc = match otlp_grpc_listener {
        Some(listener) => Some(serve::spawn(
            listener,
            baton_trace_store::otlp::grpc_router_limited(
                trace_store.clone(),
                forwarding.clone(),
                span_budget.clone(),
            )
            .merge(baton_trace_store::signals::grpc_router(
                signal_stats.clone(),
                forwarding.clone(),
            )),
            acceptor.clone(),
            otlp_stopped.clone(),
        )?),
        None => None,
    };
    let otlp_http = match otlp_http_listener {
        Some(listener) => Some(serve::spawn(
            listener,
            baton_trace_store::otlp::http_router_limited(
                trace_store.clone(),
                forwarding.clone(),
                span_budget,
            )
            .merge(baton_trace_store::signals::http_router(
                signal_stats.clone(),
                forwarding.clone(),
            )),
            acceptor.clone(),
            otlp_stopped,
        )?),
        None => None,
    };
    let tracer_provider = config
        .tracer_provider
        .clone()
        .unwrap_or_else(|| build_tracer_provider(&trace_store, &forwarding));
    let mut broker = Broker::builder().clock(config.clock);
    if let Some(dir) = &config.data_dir {
        broker = broker.data_dir(dir);
    }
    let broker = broker.start()?;
    let span_recorder = config.broker_spans.then(|| {
        let tracer = tracer_provider.tracer_with_scope(broker_spans::scope());
        let recorder = broker_spans::BrokerSpans::start(tracer);
        broker.set_observer(Arc::new(recorder.clone()));
        recorder
    });
    let public_url = config.public_url.clone().unwrap_or_else(|| {
        default_public_url(local_addr, if tls.is_some() { "https" } else { "http" })
    });
    let operator_token = config.auth.as_ref().map(|auth| {
        auth.operator_token
            .clone()
            .unwrap_or_else(identity::random_token)
    });
    let auth_dir = config.data_dir.as_ref().map(|dir| dir.join("auth"));
    let mut providers = Vec::new();
    for settings in &config.workload_identity_providers {
        let provider = identity::federation::provider(settings)
            .await
            .inspect_err(|error| tracing::error!(%error, "workload identity provider refused"))?;
        tracing::info!(
            audience = %provider.audience(),
            issuer = %provider.issuer(),
            "workload identity provider trusted by the token exchange (/v1/token)"
        );
        providers.push(provider);
    }
    let identity = Identity::open(
        auth_dir.clone(),
        public_url.clone(),
        operator_token.clone(),
        config.clock,
        providers,
    )?;
    let mut api = PubSubApi::new(broker.clone());
    if let (Some(auth), Some(token)) = (&config.auth, &operator_token) {
        let authenticator = identity.authenticator_async().await?;
        api = api.with_access_control(AccessControl::new(authenticator));
        let token_file = auth
            .operator_token_file
            .clone()
            .or_else(|| auth_dir.as_ref().map(|dir| dir.join("operator-token")));
        match token_file {
            Some(file) => {
                identity::write_secret(&file, token)?;
                tracing::info!(file = %file.display(), "authentication on: the operator token (every permission) is in this file; `baton iam` reads it");
            }
            None => tracing::info!(
                operator_token = %token,
                "authentication on: the operator token (every permission)"
            ),
        }
    }
    let metadata = match &config.metadata {
        Some(settings) => {
            if settings.service_account.is_empty() {
                return Err(ServerError::MetadataAccount);
            }
            let listener = serve::spawn(
                bind(settings.addr).await?,
                identity::metadata::router(identity.clone(), settings.service_account.clone()),
                // Plain HTTP, as the real metadata server speaks.
                None,
                otlp_stop.subscribe(),
            )?;
            tracing::info!(
                addr = %listener.addr,
                account = %settings.service_account,
                "metadata server listening: set GCE_METADATA_HOST={0} (and GCE_METADATA_IP={0} for Python)",
                listener.addr
            );
            Some(listener)
        }
        None => None,
    };
    // Push subscriptions are served for as long as the broker lives.
    PushManager::start(
        &broker,
        PushSettings {
            id_tokens: Some(identity.clone()),
            ..PushSettings::default()
        },
    )?;
    let app = app(api, identity.clone(), trace_store.clone()).merge(
        baton_trace_store::signals::status_routes(forwarding.clone(), signal_stats.clone()),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve::serve(listener, app, acceptor, async move {
            let _ = stopped.await;
        })
        .await
    });
    let trace_expiry = trace_store
        .retention()
        .map(|_| tokio::spawn(trace_store.clone().expire_periodically()));
    let metrics_export = forwarding.forwards_metrics().then(|| {
        tokio::spawn(metrics::otlp::export_periodically(
            broker.clone(),
            SERVICE_NAME,
            forwarding.clone(),
            config.metrics_export_interval,
            otlp_stop.subscribe(),
        ))
    });
    let tls_root = tls.map(|tls| tls.root);
    serve::announce(local_addr, tls_root.as_deref());
    Ok(RunningServer {
        local_addr,
        broker,
        stop: Some(stop),
        task,
        trace_store,
        trace_expiry,
        tracer_provider,
        span_recorder,
        otlp_grpc,
        otlp_http,
        metadata,
        otlp_stop,
        tls_root,
        identity,
        operator_token,
        forwarding,
        signal_stats,
        metrics_export,
    })
}

/// `scheme://host:port` of a bound address, with loopback for an
/// unspecified one (what a client on this machine dials).
fn default_public_url(addr: SocketAddr, scheme: &str) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}
