//! OTLP logs and metrics: Baton keeps neither, but an SDK exporting all
//! three signals to it should see success, not errors. The gRPC
//! `LogsService/Export` and `MetricsService/Export` and HTTP `POST /v1/logs`
//! and `/v1/metrics` (protobuf or JSON, gzip bodies, the same limits as
//! `/v1/traces`) answer success, count what they got ([`SignalStats`]) and
//! drop it, or hand it to [`Forwarding`] when it forwards that signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use serde::Serialize;
use tonic::codec::CompressionEncoding;

use crate::forward::{FORWARDED_HEADER, Forwarding, log_records, metric_points};
use crate::otlp::{MAX_BODY_BYTES, decode_http, grpc_route, reply_http};

/// Counts of the logs and metrics received. Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct SignalStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    log_requests: AtomicU64,
    log_records: AtomicU64,
    metric_requests: AtomicU64,
    metric_points: AtomicU64,
}

/// A snapshot of [`SignalStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalCounts {
    /// Logs export requests answered.
    pub log_requests: u64,
    /// Log records in them.
    pub log_records: u64,
    /// Metrics export requests answered.
    pub metric_requests: u64,
    /// Metric data points in them.
    pub metric_points: u64,
}

impl SignalStats {
    /// The counts so far.
    pub fn counts(&self) -> SignalCounts {
        let c = &self.inner;
        SignalCounts {
            log_requests: c.log_requests.load(Ordering::Relaxed),
            log_records: c.log_records.load(Ordering::Relaxed),
            metric_requests: c.metric_requests.load(Ordering::Relaxed),
            metric_points: c.metric_points.load(Ordering::Relaxed),
        }
    }

    fn logs(&self, request: &ExportLogsServiceRequest) {
        let records = log_records(request);
        self.inner.log_requests.fetch_add(1, Ordering::Relaxed);
        self.inner
            .log_records
            .fetch_add(records as u64, Ordering::Relaxed);
        tracing::debug!(records, "OTLP logs received");
    }

    fn metrics(&self, request: &ExportMetricsServiceRequest) {
        let points = metric_points(request);
        self.inner.metric_requests.fetch_add(1, Ordering::Relaxed);
        self.inner
            .metric_points
            .fetch_add(points as u64, Ordering::Relaxed);
        tracing::debug!(points, "OTLP metrics received");
    }
}

/// What the logs and metrics receivers share.
#[derive(Debug, Clone)]
struct Receiver {
    stats: SignalStats,
    forwarding: Forwarding,
}

impl Receiver {
    fn take_logs(&self, request: &ExportLogsServiceRequest, header: Option<&str>) {
        if self.forwarding.is_loop(header) {
            return;
        }
        self.stats.logs(request);
        self.forwarding.logs(request, header);
    }

    fn take_metrics(&self, request: &ExportMetricsServiceRequest, header: Option<&str>) {
        if self.forwarding.is_loop(header) {
            return;
        }
        self.stats.metrics(request);
        self.forwarding.metrics(request, header);
    }
}

fn grpc_header<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(FORWARDED_HEADER)
        .and_then(|v| v.to_str().ok())
}

fn http_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(FORWARDED_HEADER).and_then(|v| v.to_str().ok())
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.take_logs(request.get_ref(), grpc_header(&request));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.take_metrics(request.get_ref(), grpc_header(&request));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The gRPC `LogsService` and `MetricsService`, counting into `stats`.
pub fn grpc_router(stats: SignalStats, forwarding: Forwarding) -> Router {
    let receiver = Receiver { stats, forwarding };
    let logs = LogsServiceServer::new(receiver.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY_BYTES);
    let metrics = MetricsServiceServer::new(receiver)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY_BYTES);
    grpc_route(grpc_route(Router::new(), logs), metrics)
}

/// `POST /v1/logs` and `POST /v1/metrics`, counting into `stats`; no
/// fallback, for merging beside [`crate::otlp::http_router`].
pub fn http_router(stats: SignalStats, forwarding: Forwarding) -> Router {
    Router::new()
        .route("/v1/logs", post(export_logs))
        .route("/v1/metrics", post(export_metrics))
        .with_state(Receiver { stats, forwarding })
}

async fn export_logs(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    let (request, encoding) =
        match decode_http::<ExportLogsServiceRequest>(&headers, body, "ExportLogsServiceRequest")
            .await
        {
            Ok(decoded) => decoded,
            Err(response) => return response,
        };
    receiver.take_logs(&request, http_header(&headers));
    reply_http(encoding, &ExportLogsServiceResponse::default())
}

async fn export_metrics(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, encoding) = match decode_http::<ExportMetricsServiceRequest>(
        &headers,
        body,
        "ExportMetricsServiceRequest",
    )
    .await
    {
        Ok(decoded) => decoded,
        Err(response) => return response,
    };
    receiver.take_metrics(&request, http_header(&headers));
    reply_http(encoding, &ExportMetricsServiceResponse::default())
}

/// `GET /api/forwarding`: [`Forwarding::status`] (the upstream's state and
/// counters) plus the OTLP logs and
/// metrics received, as JSON. Carries its own state, so it fits any router.
pub fn status_routes<S>(forwarding: Forwarding, received: SignalStats) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::Router::new().route(
        "/api/forwarding",
        axum::routing::get(move || {
            let status = forwarding.status();
            let received = received.counts();
            async move {
                let mut body = serde_json::to_value(status).unwrap_or_default();
                if let Some(object) = body.as_object_mut() {
                    object.insert(
                        "received".to_string(),
                        serde_json::to_value(received).unwrap_or_default(),
                    );
                }
                axum::Json(body)
            }
        }),
    )
}
