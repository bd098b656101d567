//! Sending one export request upstream: over OTLP/gRPC with the generated
//! tonic clients, or OTLP/HTTP (protobuf or JSON) with reqwest; failures
//! classified retryable or not as the OTLP specification says.

use std::future::Future;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::config::{Protocol, Target};
use super::{FORWARDED_HEADER, ForwardError};

/// An export request of one signal.
pub(crate) trait Payload:
    Message + serde::Serialize + Default + Clone + Send + Sync + 'static
{
    /// Items it holds: spans, log records or metric data points.
    fn items(&self) -> usize;
    /// Adds `other`'s resources to this request.
    fn append(&mut self, other: Self);
    /// Sends it with the signal's generated gRPC client.
    fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
        gzip: bool,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

impl Payload for ExportTraceServiceRequest {
    fn items(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    fn append(&mut self, other: Self) {
        self.resource_spans.extend(other.resource_spans);
    }

    async fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
        gzip: bool,
    ) -> Result<(), tonic::Status> {
        let mut client = TraceServiceClient::new(channel);
        if gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client.export(request).await.map(|_| ())
    }
}

impl Payload for ExportLogsServiceRequest {
    fn items(&self) -> usize {
        log_records(self)
    }

    fn append(&mut self, other: Self) {
        self.resource_logs.extend(other.resource_logs);
    }

    async fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
        gzip: bool,
    ) -> Result<(), tonic::Status> {
        let mut client = LogsServiceClient::new(channel);
        if gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client.export(request).await.map(|_| ())
    }
}

impl Payload for ExportMetricsServiceRequest {
    fn items(&self) -> usize {
        metric_points(self)
    }

    fn append(&mut self, other: Self) {
        self.resource_metrics.extend(other.resource_metrics);
    }

    async fn grpc_export(
        channel: Channel,
        request: tonic::Request<Self>,
        gzip: bool,
    ) -> Result<(), tonic::Status> {
        let mut client = MetricsServiceClient::new(channel);
        if gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client.export(request).await.map(|_| ())
    }
}

/// Log records in a logs export request.
pub fn log_records(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Data points in a metrics export request (a metric without data counts
/// as one, so it is not mistaken for an empty request).
pub fn metric_points(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 1,
        })
        .sum()
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub(crate) struct SendError {
    pub message: String,
    pub retryable: bool,
    /// The delay the upstream asked for.
    pub retry_after: Option<Duration>,
}

/// Sends one export request.
pub(crate) trait Transport<P>: Send + Sync + 'static {
    /// Sends `payload` with `chain` as the [`FORWARDED_HEADER`] value.
    fn send(&self, payload: &P, chain: &str) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The real upstream of a [`Target`].
#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    Grpc {
        channel: Channel,
        headers: Vec<(String, String)>,
        gzip: bool,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: Vec<(String, String)>,
        gzip: bool,
        json: bool,
    },
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ForwardError> {
    std::fs::read(path).map_err(|source| ForwardError::File {
        path: path.display().to_string(),
        source,
    })
}

impl Upstream {
    /// A lazily connecting client for `target` (no I/O but reading its
    /// certificate files).
    pub fn new(target: &Target) -> Result<Self, ForwardError> {
        let ca = target.certificate.as_deref().map(read).transpose()?;
        let identity = match (&target.client_certificate, &target.client_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        let https = target.endpoint.to_ascii_lowercase().starts_with("https://");
        match target.protocol {
            Protocol::Grpc => {
                let fail = |message: String| ForwardError::Grpc {
                    endpoint: target.endpoint.clone(),
                    message,
                };
                let mut endpoint = Endpoint::from_shared(target.endpoint.clone())
                    .map_err(|e| fail(e.to_string()))?
                    .timeout(target.timeout)
                    .connect_timeout(target.timeout);
                if https {
                    let mut tls = ClientTlsConfig::new();
                    tls = match &ca {
                        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                        None => tls.with_webpki_roots(),
                    };
                    if let Some((cert, key)) = &identity {
                        tls = tls.identity(Identity::from_pem(cert, key));
                    }
                    endpoint = endpoint.tls_config(tls).map_err(|e| fail(e.to_string()))?;
                }
                Ok(Self::Grpc {
                    channel: endpoint.connect_lazy(),
                    headers: target.headers.clone(),
                    gzip: target.gzip,
                })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let fail = |message: String| ForwardError::Http {
                    endpoint: target.endpoint.clone(),
                    message,
                };
                let mut builder = reqwest::Client::builder().timeout(target.timeout);
                if let Some(pem) = &ca {
                    let certificates = reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| fail(e.to_string()))?;
                    builder = builder.tls_built_in_root_certs(false);
                    for certificate in certificates {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                if let Some((cert, key)) = &identity {
                    let mut pem = cert.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(key);
                    builder = builder.identity(
                        reqwest::Identity::from_pem(&pem).map_err(|e| fail(e.to_string()))?,
                    );
                }
                Ok(Self::Http {
                    client: builder.build().map_err(|e| fail(e.to_string()))?,
                    url: target.endpoint.clone(),
                    headers: target.headers.clone(),
                    gzip: target.gzip,
                    json: target.protocol == Protocol::HttpJson,
                })
            }
        }
    }
}

impl<P: Payload> Transport<P> for Upstream {
    fn send(&self, payload: &P, chain: &str) -> impl Future<Output = Result<(), SendError>> + Send {
        let this = self.clone();
        let payload = payload.clone();
        let chain = chain.to_string();
        async move {
            match this {
                Upstream::Grpc {
                    channel,
                    headers,
                    gzip,
                } => {
                    let mut request = tonic::Request::new(payload);
                    let metadata = request.metadata_mut();
                    for (key, value) in headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .chain([(FORWARDED_HEADER, chain.as_str())])
                    {
                        if let (Ok(key), Ok(value)) = (
                            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
                            value.parse(),
                        ) {
                            metadata.insert(key, value);
                        }
                    }
                    P::grpc_export(channel, request, gzip)
                        .await
                        .map_err(grpc_error)
                }
                Upstream::Http {
                    client,
                    url,
                    headers,
                    gzip,
                    json,
                } => {
                    let body = if json {
                        serde_json::to_vec(&payload).map_err(|e| SendError {
                            message: format!("encoding OTLP/JSON: {e}"),
                            retryable: false,
                            retry_after: None,
                        })?
                    } else {
                        payload.encode_to_vec()
                    };
                    let body = if gzip { gzip_bytes(&body) } else { body };
                    let mut request = client
                        .post(&url)
                        .header(
                            http::header::CONTENT_TYPE,
                            if json {
                                "application/json"
                            } else {
                                "application/x-protobuf"
                            },
                        )
                        .header(FORWARDED_HEADER, chain);
                    if gzip {
                        request = request.header(http::header::CONTENT_ENCODING, "gzip");
                    }
                    for (key, value) in &headers {
                        request = request.header(key, value);
                    }
                    let response = request.body(body).send().await.map_err(|e| SendError {
                        message: format!("{url}: {e}"),
                        retryable: true,
                        retry_after: None,
                    })?;
                    let status = response.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    Err(SendError {
                        message: format!("{url}: HTTP {status}: {}", truncate(&text, 200)),
                        retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
                        retry_after,
                    })
                }
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// `google.rpc.Status`, the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

/// The delay a status's `RetryInfo` detail asks for.
fn retry_info(status: &tonic::Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .filter(|any| any.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|any| RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay)
        .map(|d| {
            Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
        })
}

/// The OTLP specification's retryable gRPC codes (`RESOURCE_EXHAUSTED`
/// only when the server says when to retry).
pub(crate) fn grpc_error(status: tonic::Status) -> SendError {
    use tonic::Code;
    let retry_after = retry_info(&status);
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_after.is_some(),
        _ => false,
    };
    SendError {
        message: format!("gRPC {:?}: {}", status.code(), status.message()),
        retryable,
        retry_after,
    }
}

/// A status with a `RetryInfo` detail asking to retry after `delay`, as the
/// OTLP receivers answer an export over their budget.
pub(crate) fn status_with_retry_info(
    code: tonic::Code,
    message: &str,
    delay: Duration,
) -> tonic::Status {
    let info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(0),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.into(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, message, details.encode_to_vec().into())
}
