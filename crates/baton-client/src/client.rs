//! Connecting to a Pub/Sub endpoint: the local server or emulator named by
//! `PUBSUB_EMULATOR_HOST` (plaintext, no credentials), Google Cloud (TLS and
//! Application Default Credentials), or a custom endpoint (TLS trusting
//! extra CA certificates, any [`Credentials`]).

use std::path::PathBuf;
use std::sync::Arc;

use baton_proto::iam::iam_policy_client::IamPolicyClient;
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::schema_service_client::SchemaServiceClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{PublishResponse, StreamingPullRequest};
use http::uri::PathAndQuery;
use tonic::GrpcMethod;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::auth::{Authorizer, Credentials};
use crate::encoded_publish::{EncodedPublish, EncodedPublishCodec, PUBLISH_PATH};
use crate::error::ConnectError;
use crate::pulled::PulledBatch;
use crate::retry::{CallFamily, RetrySettings, RetryTable};

/// The environment variable the official clients read for a local server.
pub const EMULATOR_HOST_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// The environment variable naming a PEM file of CA certificates that TLS
/// endpoints are trusted by too (as OpenSSL and rustls-native-certs read it).
pub const SSL_CERT_FILE_ENV: &str = "SSL_CERT_FILE";
/// Google Cloud Pub/Sub's endpoint.
pub const GOOGLE_CLOUD_ENDPOINT: &str = "https://pubsub.googleapis.com";
/// OAuth scope of Pub/Sub calls.
const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// The environment variable naming the project billed for quota, as
/// Google's client libraries read it.
pub const QUOTA_PROJECT_ENV: &str = "GOOGLE_CLOUD_QUOTA_PROJECT";
/// The tonic release the client is built on (the workspace pins 0.14), for
/// `x-goog-api-client`.
const TONIC_VERSION: &str = "0.14";
/// The user agent of every request.
const USER_AGENT: &str = concat!("baton-client/", env!("CARGO_PKG_VERSION"));
/// Largest message the client sends or accepts (a 10 MB publish request
/// plus framing; StreamingPull responses can reach 20 MiB).
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Where the client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A local server or emulator at `host:port`: plaintext, no credentials.
    Emulator(String),
    /// Google Cloud Pub/Sub with TLS and the configured [`Credentials`]
    /// (Application Default Credentials by default).
    GoogleCloud,
    /// Any other endpoint, e.g. a regional one (`https://europe-west1-pubsub.googleapis.com`),
    /// a server behind a proxy, or a Baton serving TLS and authentication
    /// (`https://localhost:8085`: its development certificate covers
    /// `localhost` and `127.0.0.1`; trust its CA with
    /// [`ClientConfig::with_ca_certificate_file`] or `SSL_CERT_FILE`).
    Custom {
        /// `http://host:port` or `https://host[:port]`.
        uri: String,
        /// Send access tokens of the configured [`Credentials`]
        /// (Application Default Credentials unless
        /// [`ClientConfig::with_credentials`] says otherwise).
        authenticate: bool,
    },
}

impl Endpoint {
    /// `PUBSUB_EMULATOR_HOST` when set, Google Cloud otherwise: what the
    /// official clients do.
    pub fn from_env() -> Self {
        match std::env::var(EMULATOR_HOST_ENV) {
            Ok(host) if !host.trim().is_empty() => Self::Emulator(host.trim().to_string()),
            _ => Self::GoogleCloud,
        }
    }

    /// Google Cloud's regional endpoint of `region`
    /// (`{region}-pubsub.googleapis.com:443`), which keeps messages in the
    /// region, authenticating with the configured [`Credentials`].
    ///
    /// ```
    /// use baton_client::Endpoint;
    /// assert_eq!(
    ///     Endpoint::regional("us-central1"),
    ///     Endpoint::Custom {
    ///         uri: "https://us-central1-pubsub.googleapis.com:443".into(),
    ///         authenticate: true,
    ///     }
    /// );
    /// ```
    pub fn regional(region: &str) -> Self {
        Self::Custom {
            uri: format!("https://{}-pubsub.googleapis.com:443", region.trim()),
            authenticate: true,
        }
    }
}

/// Settings of a [`Client`]: made with [`ClientConfig::new`] and the
/// `with_*` builders.
///
/// TLS endpoints (Google Cloud, `https://` custom ones) are trusted when
/// their certificate chains to the Mozilla roots (webpki-roots), to a
/// certificate of the PEM file named by `SSL_CERT_FILE` when set, or to one
/// added with [`Self::with_ca_certificate`] or
/// [`Self::with_ca_certificate_file`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The project resources belong to when given by short id.
    project_id: String,
    /// Where to connect.
    endpoint: Endpoint,
    /// Where an authenticating endpoint's tokens come from.
    credentials: Credentials,
    /// Extra trusted CA certificates of TLS endpoints.
    ca_certificates: Vec<CaCertificates>,
    /// The client certificate and key (PEM) of mutual TLS.
    client_identity: Option<ClientIdentity>,
    /// The project billed for quota (`x-goog-user-project`).
    quota_project: Option<String>,
    /// Retry settings per call family.
    retry: RetryTable,
}

/// A client certificate chain and its private key, PEM.
#[derive(Clone)]
struct ClientIdentity {
    certificate: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(..)")
    }
}

/// Trusted CA certificates, as given.
#[derive(Debug, Clone)]
enum CaCertificates {
    Pem(Vec<u8>),
    File(PathBuf),
}

impl ClientConfig {
    /// A client for `project_id` at the endpoint chosen by the environment
    /// (see [`Endpoint::from_env`]).
    pub fn new(project_id: impl Into<String>) -> Self {
        Self {
            project_id: project_id.into(),
            endpoint: Endpoint::from_env(),
            credentials: Credentials::default(),
            ca_certificates: Vec::new(),
            client_identity: None,
            quota_project: None,
            retry: RetryTable::default(),
        }
    }

    /// The project of short ids.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Where the client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Presents this client certificate chain and key (PEM) on TLS
    /// endpoints that ask for one (mutual TLS).
    ///
    /// ```no_run
    /// # fn f() -> std::io::Result<()> {
    /// use baton_client::{ClientConfig, Endpoint};
    /// let config = ClientConfig::new("my-project")
    ///     .with_endpoint(Endpoint::Custom { uri: "https://pubsub.internal:8443".into(), authenticate: false })
    ///     .with_client_identity(std::fs::read("client.pem")?, std::fs::read("client.key")?);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_client_identity(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_identity = Some(ClientIdentity {
            certificate: certificate_pem.into(),
            key: key_pem.into(),
        });
        self
    }

    /// Bills quota to `project` (sent as `x-goog-user-project`). Without
    /// it, `GOOGLE_CLOUD_QUOTA_PROJECT` when set, else the
    /// `quota_project_id` of the credentials' key file.
    ///
    /// ```
    /// let config = baton_client::ClientConfig::new("my-project").with_quota_project("billing");
    /// assert_eq!(config.quota_project(), Some("billing"));
    /// ```
    #[must_use]
    pub fn with_quota_project(mut self, project: impl Into<String>) -> Self {
        self.quota_project = Some(project.into());
        self
    }

    /// The project given to [`Self::with_quota_project`].
    pub fn quota_project(&self) -> Option<&str> {
        self.quota_project.as_deref()
    }

    /// Retries the calls of `family` with `settings` instead of the
    /// official defaults ([`RetrySettings::default_for`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use baton_client::{CallFamily, ClientConfig, RetrySettings};
    /// let config = ClientConfig::new("my-project").with_retry(
    ///     CallFamily::AdminRead,
    ///     RetrySettings::default_for(CallFamily::AdminRead).with_attempt_timeout(Duration::from_secs(5)),
    /// );
    /// assert_eq!(config.retry(CallFamily::AdminRead).attempt_timeout(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_retry(mut self, family: CallFamily, settings: RetrySettings) -> Self {
        self.retry.set(family, settings);
        self
    }

    /// The retry settings of `family`.
    pub fn retry(&self, family: CallFamily) -> &RetrySettings {
        self.retry.get(family)
    }

    /// Overrides the endpoint.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Where an authenticating endpoint's access tokens come from; by
    /// default [`Credentials::ApplicationDefault`]. Endpoints that do not
    /// authenticate ignore it.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The credentials of [`Self::with_credentials`].
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Also trusts the CA certificate(s) in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) on TLS endpoints, e.g. the `ca.pem` of a Baton
    /// serving TLS with its development certificate. Repeatable.
    pub fn with_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates.push(CaCertificates::Pem(pem.into()));
        self
    }

    /// Also trusts the CA certificate(s) of the PEM file at `path` on TLS
    /// endpoints; the file is read by [`Client::connect`], which fails with
    /// [`ConnectError::CaCertificates`](crate::ConnectError::CaCertificates) when it cannot. Repeatable.
    pub fn with_ca_certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_certificates.push(CaCertificates::File(path.into()));
        self
    }

    /// The extra trusted roots of TLS endpoints as PEM: `SSL_CERT_FILE`'s
    /// when set, then those given to the builders.
    fn trusted_pems(&self) -> Result<Vec<Vec<u8>>, ConnectError> {
        let from_env = std::env::var_os(SSL_CERT_FILE_ENV)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ConnectError::CaCertificates {
                path: path.clone(),
                source,
            })
        };
        let mut pems = Vec::new();
        if let Some(path) = &from_env {
            pems.push(read(path)?);
        }
        for certificates in &self.ca_certificates {
            pems.push(match certificates {
                CaCertificates::Pem(pem) => pem.clone(),
                CaCertificates::File(path) => read(path)?,
            });
        }
        Ok(pems)
    }
}

/// A connection to a Pub/Sub endpoint, shared by publishers, subscribers and
/// admin calls. Cloning is cheap; all clones share one HTTP/2 channel.
///
/// ```no_run
/// # async fn run() -> Result<(), baton_client::ConnectError> {
/// use baton_client::{Client, ClientConfig};
/// // Uses PUBSUB_EMULATOR_HOST when set, Google Cloud otherwise.
/// let client = Client::connect(ClientConfig::new("my-project")).await?;
/// let topic = client.topic_name("orders");
/// assert_eq!(topic, "projects/my-project/topics/orders");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    project_id: String,
    channel: Channel,
    endpoint: Endpoint,
    auth: Option<Authorizer>,
    /// `x-goog-user-project`, when a quota project is configured.
    quota_project: Option<MetadataValue<tonic::metadata::Ascii>>,
    retry: RetryTable,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("project_id", &self.inner.project_id)
            .field("endpoint", &self.inner.endpoint)
            .field("authenticated", &self.inner.auth.is_some())
            .finish()
    }
}

impl Client {
    /// Sets up the channel (connecting lazily, so a server that starts later
    /// is fine) and, for an authenticating endpoint, its [`Credentials`]
    /// (a key file is read now; a metadata server is first asked by the
    /// first call).
    pub async fn connect(config: ClientConfig) -> Result<Self, ConnectError> {
        let (uri, tls, authenticate) = match &config.endpoint {
            Endpoint::Emulator(host) => (format!("http://{host}"), false, false),
            Endpoint::GoogleCloud => (GOOGLE_CLOUD_ENDPOINT.to_string(), true, true),
            Endpoint::Custom { uri, authenticate } => {
                (uri.clone(), uri.starts_with("https://"), *authenticate)
            }
        };
        let invalid = |reason: String| ConnectError::InvalidEndpoint {
            endpoint: uri.clone(),
            reason,
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
            .map_err(|e| invalid(e.to_string()))?;
        endpoint = endpoint
            .user_agent(USER_AGENT)
            .map_err(|e| invalid(e.to_string()))?
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if tls {
            // The certificate is checked for the URI's host (`localhost`,
            // `127.0.0.1` and `[::1]` alike).
            let certificates = config
                .trusted_pems()?
                .into_iter()
                .map(Certificate::from_pem);
            let mut tls_config = ClientTlsConfig::new()
                .with_webpki_roots()
                .ca_certificates(certificates);
            if let Some(identity) = &config.client_identity {
                tls_config = tls_config.identity(Identity::from_pem(
                    identity.certificate.clone(),
                    identity.key.clone(),
                ));
            }
            endpoint = endpoint.tls_config(tls_config)?;
        }
        let channel = endpoint.connect_lazy();
        let auth = if authenticate {
            // The IAM Credentials calls made here trust what the channel does.
            let trusted = config.trusted_pems()?;
            Some(config.credentials.authorizer(&[PUBSUB_SCOPE], &trusted)?)
        } else {
            None
        };
        let quota_project = config
            .quota_project
            .clone()
            .or_else(|| env_value(QUOTA_PROJECT_ENV))
            .or_else(|| {
                authenticate
                    .then(|| config.credentials.quota_project())
                    .flatten()
            })
            .map(|project| {
                MetadataValue::try_from(project.as_str())
                    .map_err(|_| invalid(format!("unusable quota project `{project}`")))
            })
            .transpose()?;
        Ok(Self {
            inner: Arc::new(ClientInner {
                project_id: config.project_id,
                channel,
                endpoint: config.endpoint,
                auth,
                quota_project,
                retry: config.retry,
            }),
        })
    }

    /// The project of short ids.
    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// `projects/{project}/topics/{id}`, or `id` itself when it is already
    /// a full name.
    pub fn topic_name(&self, id: &str) -> String {
        self.full_name("topics", id)
    }

    /// `projects/{project}/subscriptions/{id}`, or `id` when already full.
    pub fn subscription_name(&self, id: &str) -> String {
        self.full_name("subscriptions", id)
    }

    /// `projects/{project}/snapshots/{id}`, or `id` when already full.
    pub fn snapshot_name(&self, id: &str) -> String {
        self.full_name("snapshots", id)
    }

    /// `projects/{project}/schemas/{id}`, or `id` when already full.
    pub fn schema_name(&self, id: &str) -> String {
        self.full_name("schemas", id)
    }

    fn full_name(&self, collection: &str, id: &str) -> String {
        if id.starts_with("projects/") {
            id.to_string()
        } else {
            format!("projects/{}/{collection}/{id}", self.inner.project_id)
        }
    }

    /// `projects/{project}`.
    pub fn project_name(&self) -> String {
        format!("projects/{}", self.inner.project_id)
    }

    pub(crate) fn publisher_stub(&self) -> PublisherClient<Channel> {
        PublisherClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A gRPC client on the channel, with the message size limits of the
    /// generated stubs, ready for the call of `method` that `request` is
    /// (named in its extensions, as the generated stubs name it).
    async fn ready_call<T>(
        &self,
        request: &mut tonic::Request<T>,
        method: GrpcMethod<'static>,
    ) -> Result<tonic::client::Grpc<Channel>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
        request.extensions_mut().insert(method);
        Ok(grpc)
    }

    /// Sends a Publish request encoded once ([`EncodedPublish`]), gzipped
    /// when `compress`: what the generated stub's `publish` does, with a
    /// codec that writes the bytes as they are.
    pub(crate) async fn publish_encoded(
        &self,
        mut request: tonic::Request<EncodedPublish>,
        compress: bool,
    ) -> Result<tonic::Response<PublishResponse>, tonic::Status> {
        let method = GrpcMethod::new("google.pubsub.v1.Publisher", "Publish");
        let mut grpc = self.ready_call(&mut request, method).await?;
        if compress {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        grpc.unary(
            request,
            PathAndQuery::from_static(PUBLISH_PATH),
            EncodedPublishCodec,
        )
        .await
    }

    /// Opens a StreamingPull stream: what the generated stub's
    /// `streaming_pull` does, with the answers decoded as [`PulledBatch`]es,
    /// their messages' trace contexts held apart.
    pub(crate) async fn streaming_pull<S>(
        &self,
        mut request: tonic::Request<S>,
    ) -> Result<tonic::Response<tonic::Streaming<PulledBatch>>, tonic::Status>
    where
        S: futures::Stream<Item = StreamingPullRequest> + Send + 'static,
    {
        let method = GrpcMethod::new("google.pubsub.v1.Subscriber", "StreamingPull");
        let mut grpc = self.ready_call(&mut request, method).await?;
        grpc.streaming(
            request,
            PathAndQuery::from_static("/google.pubsub.v1.Subscriber/StreamingPull"),
            tonic_prost::ProstCodec::<StreamingPullRequest, PulledBatch>::default(),
        )
        .await
    }

    pub(crate) fn subscriber_stub(&self) -> SubscriberClient<Channel> {
        SubscriberClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn schema_stub(&self) -> SchemaServiceClient<Channel> {
        SchemaServiceClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn iam_stub(&self) -> IamPolicyClient<Channel> {
        IamPolicyClient::new(self.inner.channel.clone())
    }

    /// The retry settings of `family`.
    pub(crate) fn retry_settings(&self, family: CallFamily) -> &RetrySettings {
        self.inner.retry.get(family)
    }

    /// Wraps `message` in a request carrying credentials (when the endpoint
    /// needs them), the routing header Google's front ends expect, the
    /// client's identification (`x-goog-api-client`) and the quota project;
    /// an access token that cannot be had fails it as UNAUTHENTICATED.
    pub(crate) async fn request<T>(
        &self,
        message: T,
        resource: &str,
    ) -> Result<tonic::Request<T>, tonic::Status> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(auth) = &self.inner.auth {
            let authorization = auth.authorization().await.map_err(|e| {
                let mut status = tonic::Status::unauthenticated(e.to_string());
                status.set_source(Arc::new(e));
                status
            })?;
            let value = MetadataValue::try_from(authorization).map_err(|e| {
                tonic::Status::unauthenticated(format!("unusable access token: {e}"))
            })?;
            metadata.insert("authorization", value);
        }
        if let Some(params) = routing_params(resource)
            && let Ok(value) = MetadataValue::try_from(params)
        {
            metadata.insert("x-goog-request-params", value);
        }
        metadata.insert("x-goog-api-client", api_client_header());
        if let Some(project) = &self.inner.quota_project {
            metadata.insert("x-goog-user-project", project.clone());
        }
        Ok(request)
    }
}

/// `x-goog-api-client`: the language, client and transport versions, as
/// Google's libraries send them (`gl-rust/1.88.0 gccl/0.1.0 grpc/0.14`).
fn api_client_header() -> MetadataValue<tonic::metadata::Ascii> {
    static VALUE: std::sync::LazyLock<MetadataValue<tonic::metadata::Ascii>> =
        std::sync::LazyLock::new(|| {
            let rustc = option_env!("BATON_RUSTC_VERSION").unwrap_or("unknown");
            let value = format!(
                "gl-rust/{rustc} gccl/{} grpc/{TONIC_VERSION}",
                env!("CARGO_PKG_VERSION")
            );
            MetadataValue::try_from(value)
                .unwrap_or_else(|_| MetadataValue::from_static("gl-rust/unknown"))
        });
    VALUE.clone()
}

/// A set, non-blank environment variable.
pub(crate) fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// The `x-goog-request-params` routing header for a call on `resource`:
/// `topic=`, `subscription=`, `snapshot=` or `project=` with the name
/// URL-encoded, as Google's front ends expect.
fn routing_params(resource: &str) -> Option<String> {
    let key = match resource.split('/').nth(2) {
        Some("topics") => "topic",
        Some("subscriptions") => "subscription",
        Some("snapshots") => "snapshot",
        Some("schemas") => "name",
        None if resource.starts_with("projects/") => "project",
        _ => return None,
    };
    let encoded: String = resource
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    Some(format!("{key}={encoded}"))
}

/// The project of a full resource name (`projects/p/topics/t` -> `p`), or
/// `default` for a name without one.
pub(crate) fn project_of<'a>(name: &'a str, default: &'a str) -> &'a str {
    name.strip_prefix("projects/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_endpoints() {
        let client = Client::connect(
            ClientConfig::new("p").with_endpoint(Endpoint::Emulator("127.0.0.1:1".into())),
        )
        .await
        .unwrap();
        assert_eq!(client.topic_name("t1"), "projects/p/topics/t1");
        assert_eq!(
            client.subscription_name("projects/q/subscriptions/s"),
            "projects/q/subscriptions/s"
        );
        assert_eq!(
            routing_params("projects/p/topics/t1").unwrap(),
            "topic=projects%2Fp%2Ftopics%2Ft1"
        );
        assert_eq!(
            routing_params("projects/p").unwrap(),
            "project=projects%2Fp"
        );
        assert_eq!(routing_params(""), None);
        let bad = Client::connect(ClientConfig::new("p").with_endpoint(Endpoint::Custom {
            uri: "not a uri".into(),
            authenticate: false,
        }))
        .await;
        assert!(matches!(bad, Err(ConnectError::InvalidEndpoint { .. })));
    }
}
