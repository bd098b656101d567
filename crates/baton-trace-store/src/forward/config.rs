//! Where forwarding sends each signal: from `baton serve`'s flags and the
//! standard OTLP exporter variables (read as a map, so parsing is a pure
//! function of the variables).
//!
//! Follows the OTLP exporter specification: the signal-specific endpoint
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is used as is; the generic one
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`) gets `/v1/traces` (`/v1/logs`,
//! `/v1/metrics`) appended for the HTTP protocols. Protocol, headers,
//! compression, timeout and certificates have a generic variable and a
//! signal-specific one that wins over it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default bound of each signal's queue, in export requests.
pub const DEFAULT_QUEUE_REQUESTS: usize = 2048;
/// Default bound of each signal's queue, in items (spans, log records,
/// metric data points).
pub const DEFAULT_QUEUE_ITEMS: usize = 65_536;
/// Default export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// OTLP/gRPC.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    #[serde(rename = "http/json")]
    HttpJson,
}

impl std::str::FromStr for Protocol {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            other => Err(ConfigError::Protocol(other.to_string())),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
        })
    }
}

/// One of the three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
}

impl Signal {
    /// The OTLP/HTTP path: `/v1/traces`, `/v1/logs`, `/v1/metrics`.
    pub fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Logs => "/v1/logs",
            Self::Metrics => "/v1/metrics",
        }
    }

    /// The signal's part of variable names: `TRACES`, `LOGS`, `METRICS`.
    fn env_name(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Logs => "LOGS",
            Self::Metrics => "METRICS",
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
            Self::Metrics => "metrics",
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not `grpc`, `http/protobuf` or `http/json`.
    #[error("unknown OTLP protocol {0:?}: use grpc, http/protobuf or http/json")]
    Protocol(String),
    /// Not `gzip` or `none`.
    #[error("unknown OTLP compression {0:?}: use gzip or none")]
    Compression(String),
    /// A timeout that is not a number of milliseconds.
    #[error("OTLP timeout {0:?} is not a number of milliseconds")]
    Timeout(String),
    /// A header list entry without `=`, or a name or value HTTP refuses.
    #[error("OTLP header {0:?} is not a valid key=value pair")]
    Header(String),
    /// An endpoint that is not an http(s) URL.
    #[error("OTLP endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
}

/// Where and how one signal is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL: `scheme://host:port` for gRPC, the full URL (with
    /// `/v1/traces` or the like) for HTTP.
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Headers (gRPC metadata) sent with every export.
    pub headers: Vec<(String, String)>,
    /// Compress requests with gzip.
    pub gzip: bool,
    /// Time limit of one export attempt.
    pub timeout: Duration,
    /// PEM file of the CA certificates to trust (instead of the web PKI
    /// roots) for an https endpoint.
    pub certificate: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key`).
    pub client_certificate: Option<PathBuf>,
    /// PEM private key of `client_certificate`.
    pub client_key: Option<PathBuf>,
}

impl Target {
    /// A target for `signal` at the generic endpoint `endpoint` (for HTTP,
    /// the signal's path is appended) with defaults otherwise.
    pub fn generic(
        signal: Signal,
        endpoint: &str,
        protocol: Protocol,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint: endpoint_url(signal, endpoint, protocol, true)?,
            protocol,
            headers: Vec::new(),
            gzip: false,
            timeout: DEFAULT_TIMEOUT,
            certificate: None,
            client_certificate: None,
            client_key: None,
        })
    }

    /// `host:port` of the endpoint, for the own-port check.
    pub fn authority(&self) -> Option<(String, u16)> {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next()?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse().ok()?)
            }
            _ => (
                authority,
                if self.endpoint.starts_with("https") {
                    443
                } else {
                    80
                },
            ),
        };
        Some((host.trim_matches(['[', ']']).to_string(), port))
    }
}

/// What to forward where, and how much to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Where spans go; `None` forwards none.
    pub traces: Option<Target>,
    /// Where log records go; `None` drops them.
    pub logs: Option<Target>,
    /// Where metrics go; `None` drops them.
    pub metrics: Option<Target>,
    /// Bound of each signal's queue in export requests.
    pub queue_requests: usize,
    /// Bound of each signal's queue in items (spans, records, points).
    pub queue_items: usize,
    /// Most items sent in one export.
    pub max_batch_items: usize,
    /// First retry delay; doubled per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long one batch is retried before it is dropped.
    pub max_elapsed: Duration,
}

impl ForwardConfig {
    /// Forwards every signal to the generic endpoint `endpoint` over
    /// `protocol`, with the default queue and retry settings.
    pub fn to(endpoint: &str, protocol: Protocol) -> Result<Self, ConfigError> {
        Ok(Self::with_targets(
            Some(Target::generic(Signal::Traces, endpoint, protocol)?),
            Some(Target::generic(Signal::Logs, endpoint, protocol)?),
            Some(Target::generic(Signal::Metrics, endpoint, protocol)?),
        ))
    }

    fn with_targets(traces: Option<Target>, logs: Option<Target>, metrics: Option<Target>) -> Self {
        Self {
            traces,
            logs,
            metrics,
            queue_requests: DEFAULT_QUEUE_REQUESTS,
            queue_items: DEFAULT_QUEUE_ITEMS,
            max_batch_items: 8192,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        }
    }

    /// Applies `f` to every target (to set headers or compression, say).
    pub fn map_targets(mut self, f: impl Fn(&mut Target)) -> Self {
        for target in [&mut self.traces, &mut self.logs, &mut self.metrics]
            .into_iter()
            .flatten()
        {
            f(target);
        }
        self
    }

    /// The target of `signal`.
    pub fn target(&self, signal: Signal) -> Option<&Target> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Logs => self.logs.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
        }
    }

    /// The configuration the OTLP exporter variables in `vars` describe,
    /// with `endpoint` (`baton serve --forward-otlp`) replacing every
    /// endpoint variable and `protocol` (`--forward-otlp-protocol`) every
    /// protocol variable when given. `None` when no signal has an endpoint.
    ///
    /// Without a protocol anywhere, an endpoint on port 4317 is taken as
    /// gRPC and any other as `http/protobuf` (the specification's default).
    pub fn from_vars(
        vars: &HashMap<String, String>,
        endpoint: Option<&str>,
        protocol: Option<Protocol>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |key: &str| {
            vars.get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let mut targets = Vec::new();
        for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
            let specific = |what: &str| format!("OTEL_EXPORTER_OTLP_{}_{what}", signal.env_name());
            let either = |what: &str| {
                get(&specific(what)).or_else(|| get(&format!("OTEL_EXPORTER_OTLP_{what}")))
            };
            let (raw, generic) = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
                Some(flag) => (flag.to_string(), true),
                None => match get(&specific("ENDPOINT")) {
                    Some(e) => (e, false),
                    None => match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
                        Some(e) => (e, true),
                        None => {
                            targets.push(None);
                            continue;
                        }
                    },
                },
            };
            let protocol = match protocol {
                Some(p) => p,
                None => match either("PROTOCOL") {
                    Some(p) => p.parse()?,
                    None if with_scheme(&raw)
                        .split('/')
                        .nth(2)
                        .is_some_and(|a| a.ends_with(":4317")) =>
                    {
                        Protocol::Grpc
                    }
                    None => Protocol::HttpProtobuf,
                },
            };
            let mut headers = parse_headers(get("OTEL_EXPORTER_OTLP_HEADERS").as_deref())?;
            for (key, value) in parse_headers(get(&specific("HEADERS")).as_deref())? {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                headers.push((key, value));
            }
            let gzip = match either("COMPRESSION").as_deref() {
                None | Some("none") => false,
                Some("gzip") => true,
                Some(other) => return Err(ConfigError::Compression(other.to_string())),
            };
            let timeout = match either("TIMEOUT") {
                None => DEFAULT_TIMEOUT,
                Some(ms) => Duration::from_millis(
                    ms.parse::<u64>()
                        .map_err(|_| ConfigError::Timeout(ms.clone()))?,
                ),
            };
            targets.push(Some(Target {
                endpoint: endpoint_url(signal, &raw, protocol, generic)?,
                protocol,
                headers,
                gzip,
                timeout,
                certificate: either("CERTIFICATE").map(PathBuf::from),
                client_certificate: either("CLIENT_CERTIFICATE").map(PathBuf::from),
                client_key: either("CLIENT_KEY").map(PathBuf::from),
            }));
        }
        let mut targets = targets.into_iter();
        let (traces, logs, metrics) = (
            targets.next().flatten(),
            targets.next().flatten(),
            targets.next().flatten(),
        );
        if traces.is_none() && logs.is_none() && metrics.is_none() {
            return Ok(None);
        }
        Ok(Some(Self::with_targets(traces, logs, metrics)))
    }
}

/// `http://` in front of an endpoint given without a scheme.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// The URL exports of `signal` go to.
fn endpoint_url(
    signal: Signal,
    endpoint: &str,
    protocol: Protocol,
    generic: bool,
) -> Result<String, ConfigError> {
    let url = with_scheme(endpoint.trim());
    let lower = url.to_ascii_lowercase();
    let host_part = url.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if !(lower.starts_with("http://") || lower.starts_with("https://"))
        || host_part.is_empty()
        || host_part.starts_with('/')
    {
        return Err(ConfigError::Endpoint(endpoint.to_string()));
    }
    Ok(match protocol {
        // gRPC dials the authority; a path means nothing to it.
        Protocol::Grpc => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", &url));
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        }
        Protocol::HttpProtobuf | Protocol::HttpJson if generic => {
            format!("{}{}", url.trim_end_matches('/'), signal.http_path())
        }
        Protocol::HttpProtobuf | Protocol::HttpJson => url,
    })
}

/// `k=v,k2=v2` with URL-encoded keys and values (the W3C Baggage format
/// the specification names), whitespace around entries ignored.
pub fn parse_headers(value: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError::Header(entry.to_string()))?;
        let decode = |s: &str| {
            percent_decode(s.trim()).ok_or_else(|| ConfigError::Header(entry.to_string()))
        };
        let (key, value) = (decode(key)?.to_ascii_lowercase(), decode(value)?);
        if key.is_empty()
            || http::HeaderName::from_bytes(key.as_bytes()).is_err()
            || http::HeaderValue::from_str(&value).is_err()
        {
            return Err(ConfigError::Header(entry.to_string()));
        }
        headers.push((key, value));
    }
    Ok(headers)
}

/// Decodes `%XX` escapes (UTF-8); `None` on a broken escape.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_set_forwards_nothing() {
        assert_eq!(ForwardConfig::from_vars(&vars(&[]), None, None), Ok(None));
        let blank = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]);
        assert_eq!(ForwardConfig::from_vars(&blank, None, None), Ok(None));
    }

    #[test]
    fn generic_http_endpoint_gets_the_signal_path() {
        let config = ForwardConfig::from_vars(
            &vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            config.traces.unwrap().endpoint,
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            config.logs.unwrap().endpoint,
            "http://collector:4318/v1/logs"
        );
        assert_eq!(
            config.metrics.unwrap().endpoint,
            "http://collector:4318/v1/metrics"
        );
    }

    #[test]
    fn signal_endpoint_is_used_as_is_and_wins() {
        let config = ForwardConfig::from_vars(
            &vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://traces.example/custom",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ]),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        let traces = config.traces.unwrap();
        assert_eq!(traces.endpoint, "https://traces.example/custom");
        assert_eq!(traces.protocol, Protocol::HttpJson);
        let logs = config.logs.unwrap();
        assert_eq!(logs.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(logs.protocol, Protocol::HttpProtobuf);
    }

    #[test]
    fn only_a_traces_endpoint_forwards_only_traces() {
        let config = ForwardConfig::from_vars(
            &vars(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://jaeger:4317")]),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        let traces = config.traces.unwrap();
        assert_eq!(
            traces.protocol,
            Protocol::Grpc,
            "port 4317 without a protocol is gRPC"
        );
        assert_eq!(traces.endpoint, "http://jaeger:4317");
        assert!(config.logs.is_none() && config.metrics.is_none());
    }

    #[test]
    fn grpc_drops_the_path_and_flags_win() {
        let config = ForwardConfig::from_vars(
            &vars(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://elsewhere:9999",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ]),
            Some("upstream:4317/ignored"),
            Some(Protocol::Grpc),
        )
        .unwrap()
        .unwrap();
        for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
            let target = config.target(signal).unwrap();
            assert_eq!(target.endpoint, "http://upstream:4317");
            assert_eq!(target.protocol, Protocol::Grpc);
            assert_eq!(target.authority(), Some(("upstream".to_string(), 4317)));
        }
    }

    #[test]
    fn headers_compression_timeout_and_certificates() {
        let config = ForwardConfig::from_vars(
            &vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.example:443"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "api-key=secret%20one, X-Team = a%2Cb",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
                ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "/client.pem"),
                ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/client.key"),
            ]),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        let traces = config.traces.unwrap();
        assert_eq!(
            traces.headers,
            vec![
                ("x-team".to_string(), "a,b".to_string()),
                ("api-key".to_string(), "traces".to_string()),
            ]
        );
        assert!(traces.gzip);
        assert_eq!(traces.timeout, Duration::from_millis(2500));
        assert_eq!(traces.certificate, Some(PathBuf::from("/ca.pem")));
        assert_eq!(traces.client_certificate, None);
        let logs = config.logs.unwrap();
        assert_eq!(
            logs.headers[0],
            ("api-key".to_string(), "secret one".to_string())
        );
        assert_eq!(logs.client_certificate, Some(PathBuf::from("/client.pem")));
        assert_eq!(logs.client_key, Some(PathBuf::from("/client.key")));
        assert!(!config.metrics.unwrap().gzip);
    }

    #[test]
    fn bad_values_are_errors() {
        let with = |k: &str, v: &str| {
            ForwardConfig::from_vars(
                &vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), (k, v)]),
                None,
                None,
            )
        };
        assert!(matches!(
            with("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
            Err(ConfigError::Protocol(_))
        ));
        assert!(matches!(
            with("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            Err(ConfigError::Compression(_))
        ));
        assert!(matches!(
            with("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            Err(ConfigError::Timeout(_))
        ));
        assert!(matches!(
            with("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            Err(ConfigError::Header(_))
        ));
        assert!(matches!(
            with("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz"),
            Err(ConfigError::Header(_))
        ));
        assert!(matches!(
            ForwardConfig::from_vars(
                &vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")]),
                None,
                None
            ),
            Err(ConfigError::Endpoint(_))
        ));
    }
}
