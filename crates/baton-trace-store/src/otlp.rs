//! The OTLP trace receiver: gRPC `TraceService/Export` on one port and HTTP
//! `POST /v1/traces` (protobuf or JSON) on another, both writing into a
//! [`TraceStore`].
//!
//! Input is never trusted: malformed protobuf or JSON gets HTTP 400 /
//! `INVALID_ARGUMENT`, bodies over [`MAX_BODY_BYTES`] and batches over
//! [`crate::MAX_SPANS_PER_REQUEST`] spans get HTTP 413 /
//! `RESOURCE_EXHAUSTED`, and spans with bad ids or absurd timestamps are
//! dropped and reported in `partialSuccess.rejectedSpans`. Each connection is
//! served on its own task, so one bad client does not hold up others.
//!
//! HTTP bodies may be gzip-compressed (`Content-Encoding: gzip`; at most
//! [`MAX_BODY_BYTES`] inflated); other encodings get 415. gRPC messages may
//! be gzip-compressed too (also at most [`MAX_BODY_BYTES`] inflated, else
//! `RESOURCE_EXHAUSTED`), and responses are gzipped for clients that ask.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tower::ServiceExt;

use crate::forward::{FORWARDED_HEADER, Forwarding};
use crate::ingest_limit::IngestLimit;
use crate::store::{IngestError, IngestSummary, TraceStore};

/// Largest request body (HTTP) or message (gRPC) accepted: 16 MiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The gRPC `opentelemetry.proto.collector.trace.v1.TraceService`.
#[derive(Debug, Clone)]
pub struct OtlpTraceService {
    store: TraceStore,
    forwarding: Forwarding,
    limit: Option<Arc<IngestLimit>>,
}

/// What became of an export.
enum Taken {
    /// It had passed through this server before: dropped.
    Looped,
    /// Over the spans-per-second budget: retry after this long.
    Throttled(Duration),
    /// Stored (and forwarded).
    Stored(Result<IngestSummary, IngestError>),
}

impl OtlpTraceService {
    /// A service writing into `store`.
    pub fn new(store: TraceStore) -> Self {
        Self::forwarding(store, Forwarding::off(""))
    }

    /// A service writing into `store` and handing what it receives to
    /// `forwarding` (which also refuses exports that loop back).
    pub fn forwarding(store: TraceStore, forwarding: Forwarding) -> Self {
        Self {
            store,
            forwarding,
            limit: None,
        }
    }

    /// Refuses exports beyond `limit` (none: take everything).
    pub fn with_limit(mut self, limit: Option<Arc<IngestLimit>>) -> Self {
        self.limit = limit;
        self
    }

    /// Forwards and stores `request`, unless it loops or is over budget.
    fn take(&self, request: ExportTraceServiceRequest, header: Option<&str>) -> Taken {
        if self.forwarding.is_loop(header) {
            return Taken::Looped;
        }
        if let Some(limit) = &self.limit {
            let spans = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            if let Err(wait) = limit.admit(spans) {
                return Taken::Throttled(wait);
            }
        }
        self.forwarding.traces(&request, header);
        Taken::Stored(self.store.ingest(request))
    }
}

/// The message of a refused export.
fn throttled_message(limit: Option<&Arc<IngestLimit>>) -> String {
    format!(
        "over the trace receiver's budget of {} spans per second; retry later",
        limit.map_or(0.0, |l| l.spans_per_second())
    )
}

fn response(summary: &IngestSummary) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (summary.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(summary.rejected).unwrap_or(i64::MAX),
            error_message: summary.first_error.clone().unwrap_or_default(),
        }),
    }
}

#[tonic::async_trait]
impl TraceService for OtlpTraceService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let header = request
            .metadata()
            .get(FORWARDED_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match self.take(request.into_inner(), header.as_deref()) {
            Taken::Looped => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Taken::Throttled(wait) => Err(crate::forward::status_with_retry_info(
                tonic::Code::ResourceExhausted,
                &throttled_message(self.limit.as_ref()),
                wait,
            )),
            Taken::Stored(Ok(summary)) => Ok(tonic::Response::new(response(&summary))),
            Taken::Stored(Err(error @ IngestError::TooLarge { .. })) => {
                Err(tonic::Status::resource_exhausted(error.to_string()))
            }
        }
    }
}

/// The gRPC receiver's routes.
pub fn grpc_router(store: TraceStore) -> Router {
    grpc_router_forwarding(store, Forwarding::off(""))
}

/// The gRPC receiver's routes, handing what it receives to `forwarding`.
pub fn grpc_router_forwarding(store: TraceStore, forwarding: Forwarding) -> Router {
    grpc_router_limited(store, forwarding, None)
}

/// [`grpc_router_forwarding`], refusing spans beyond `limit`.
pub fn grpc_router_limited(
    store: TraceStore,
    forwarding: Forwarding,
    limit: Option<Arc<IngestLimit>>,
) -> Router {
    let service =
        TraceServiceServer::new(OtlpTraceService::forwarding(store, forwarding).with_limit(limit))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_BODY_BYTES);
    grpc_route(Router::new(), service)
}

/// Mounts an OTLP gRPC service under its `/package.Service/` prefix, with
/// tonic's decoding errors given OTLP's codes.
pub(crate) fn grpc_route<S>(router: Router, service: S) -> Router
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
        service
            .map_request(|r: http::Request<Body>| r.map(tonic::body::Body::new))
            .map_response(otlp_status_codes),
    )
}

/// tonic answers an oversized message with `OUT_OF_RANGE` and a malformed
/// one with `INTERNAL`; OTLP clients expect `RESOURCE_EXHAUSTED` and
/// `INVALID_ARGUMENT` (neither retryable as is). The export handler itself
/// never answers either code, so only tonic's decoding errors are rewritten.
fn otlp_status_codes(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let message = response
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace("%20", " ");
    let code = match response.headers().get("grpc-status") {
        Some(v) if v == "11" && message.contains("too large") => "8",
        Some(v) if v == "13" && message.contains("decode") => "3",
        _ => return response,
    };
    response
        .headers_mut()
        .insert("grpc-status", HeaderValue::from_static(code));
    response
}

/// The HTTP receiver's routes: `POST /v1/traces`.
pub fn http_router(store: TraceStore) -> Router {
    http_router_forwarding(store, Forwarding::off(""))
}

/// The HTTP receiver's routes, handing what it receives to `forwarding`.
pub fn http_router_forwarding(store: TraceStore, forwarding: Forwarding) -> Router {
    http_router_limited(store, forwarding, None)
}

/// [`http_router_forwarding`], refusing spans beyond `limit`.
pub fn http_router_limited(
    store: TraceStore,
    forwarding: Forwarding,
    limit: Option<Arc<IngestLimit>>,
) -> Router {
    Router::new()
        .route("/v1/traces", post(export_http))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "only POST /v1/traces, /v1/logs and /v1/metrics are served",
            )
        })
        .with_state(OtlpTraceService::forwarding(store, forwarding).with_limit(limit))
}

/// A JSON error body.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// The body encoding of an OTLP/HTTP request, answered in kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

async fn export_http(
    State(service): State<OtlpTraceService>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, encoding) =
        match decode_http::<ExportTraceServiceRequest>(&headers, body, "ExportTraceServiceRequest")
            .await
        {
            Ok(decoded) => decoded,
            Err(response) => return response,
        };
    let header = headers.get(FORWARDED_HEADER).and_then(|v| v.to_str().ok());
    let summary = match service.take(request, header) {
        Taken::Looped => IngestSummary::default(),
        Taken::Throttled(wait) => {
            let mut refused = error(
                StatusCode::TOO_MANY_REQUESTS,
                throttled_message(service.limit.as_ref()),
            );
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            refused
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.max(1).into());
            return refused;
        }
        Taken::Stored(Ok(summary)) => summary,
        Taken::Stored(Err(e @ IngestError::TooLarge { .. })) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
    };
    reply_http(encoding, &response(&summary))
}

/// The OTLP/HTTP reply `reply` in the request's encoding.
pub(crate) fn reply_http<R: Message + serde::Serialize>(encoding: Encoding, reply: &R) -> Response {
    match encoding {
        Encoding::Protobuf => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            reply.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => axum::Json(reply).into_response(),
    }
}

/// Reads an OTLP/HTTP request body (`what` names its message): protobuf or
/// JSON by content type, gzip or plain, at most [`MAX_BODY_BYTES`]; the
/// error response when it cannot.
pub(crate) async fn decode_http<T>(
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<(T, Encoding), Response>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type {other:?} is not supported; send application/x-protobuf or application/json"
                ),
            ));
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(coding) if coding.is_empty() || coding == "identity" => false,
        Some(coding) if coding == "gzip" => true,
        Some(coding) => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content encoding {coding:?} is not supported; send gzip or uncompressed bodies"
                ),
            ));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large_body());
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let inner = err.into_inner();
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large_body());
            }
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {inner}"),
            ));
        }
    };
    let bytes = if gzip {
        match gunzip(&bytes) {
            Ok(bytes) => bytes::Bytes::from(bytes),
            Err(None) => return Err(too_large_body()),
            Err(Some(message)) => return Err(error(StatusCode::BAD_REQUEST, message)),
        }
    } else {
        bytes
    };
    let request = match encoding {
        Encoding::Protobuf => {
            T::decode(bytes.as_ref()).map_err(|e| format!("malformed protobuf {what}: {e}"))
        }
        // serde also reads structs from arrays; OTLP/JSON is an object.
        Encoding::Json if bytes.trim_ascii_start().first() != Some(&b'{') => {
            Err(format!("malformed OTLP/JSON {what}: not a JSON object"))
        }
        Encoding::Json => serde_json::from_slice::<T>(&bytes)
            .map_err(|e| format!("malformed OTLP/JSON {what}: {e}")),
    };
    request
        .map(|request| (request, encoding))
        .map_err(|message| error(StatusCode::BAD_REQUEST, message))
}

/// Inflates a gzip body; `Err(None)` when it inflates past
/// [`MAX_BODY_BYTES`], `Err(Some(why))` when it is malformed.
fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, Option<String>> {
    use std::io::Read;
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Some(format!("malformed gzip body: {e}")))?;
    if out.len() > MAX_BODY_BYTES {
        return Err(None);
    }
    Ok(out)
}

fn too_large_body() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {MAX_BODY_BYTES} bytes"),
    )
}
