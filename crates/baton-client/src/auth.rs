//! Where an authenticating endpoint's access tokens come from: every kind of
//! credential Google's client libraries accept.
//!
//! Google's official `google-cloud-auth` crate does the work for the kinds
//! it knows (Application Default Credentials, service-account keys,
//! authorized users, external accounts, impersonation configs, the metadata
//! server); its tokens are cached and refreshed in the background 4 minutes
//! before they expire, on Tokio's clock. Two pieces are this crate's own:
//!
//! - [`TokenProvider`]: any source of tokens a user writes, cached here the
//!   same way (4 minutes early, on Tokio's clock, one refresh shared by
//!   concurrent callers);
//! - [`Impersonation`] from a source credential: `google-cloud-auth` always
//!   asks `iamcredentials.googleapis.com` for it (its endpoint override is
//!   crate-private), so the IAM Credentials call is made here, against any
//!   endpoint and trusting the client's CA certificates.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_auth::credentials as gca;
use tokio::time::Instant;

use crate::error::ConnectError;

/// The environment variable naming a credentials file (ADC).
pub const CREDENTIALS_FILE_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The environment variable naming the metadata server (`host[:port]`),
/// as Google's own client libraries read it.
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// How long before its expiry a cached token is replaced: the margin
/// `google-cloud-auth` keeps, so every kind refreshes alike.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(240);
/// The scope of the source credential's token in an impersonation (the IAM
/// Credentials API accepts it).
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The IAM Credentials API of Google Cloud.
pub const IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// How long one IAM Credentials request may take.
const IAM_CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(30);

/// An error with its cause, as token providers report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How an authenticating endpoint ([`crate::Endpoint::GoogleCloud`], or
/// [`crate::Endpoint::Custom`] with `authenticate`) gets its OAuth access
/// tokens. Endpoints that do not authenticate ignore it.
///
/// ```no_run
/// # async fn run() -> Result<(), baton_client::ConnectError> {
/// use baton_client::{Client, ClientConfig, Credentials, Endpoint, Impersonation};
/// // A Baton serving TLS with its development CA, and its metadata server.
/// let config = ClientConfig::new("my-project")
///     .with_endpoint(Endpoint::Custom {
///         uri: "https://localhost:8085".into(),
///         authenticate: true,
///     })
///     .with_ca_certificate_file("baton-data/tls/ca.pem");
/// let client = Client::connect(
///     config.clone().with_credentials(Credentials::MetadataServer("127.0.0.1:8086".into())),
/// )
/// .await?;
/// // Acting as another service account, with the key file's account as
/// // the source (it needs roles/iam.serviceAccountTokenCreator on it).
/// let as_worker = Client::connect(config.with_credentials(Credentials::Impersonated(
///     Impersonation::new(
///         Credentials::KeyFile("key.json".into()),
///         "worker@my-project.iam.gserviceaccount.com",
///     )
///     .with_lifetime(std::time::Duration::from_secs(1800)),
/// )))
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// Application Default Credentials, found the way Google's client
    /// libraries find them:
    ///
    /// 1. `GOOGLE_APPLICATION_CREDENTIALS`, a credentials file of any kind
    ///    [`Self::KeyFile`] reads;
    /// 2. else `GCE_METADATA_HOST`, a metadata server at `host[:port]`
    ///    (taken before gcloud's file: setting it is an explicit choice,
    ///    and a local server could not verify a Google user's token);
    /// 3. else gcloud's `application_default_credentials.json` (an
    ///    authorized user, or whatever `gcloud auth application-default`
    ///    wrote), then the metadata server at `metadata.google.internal`
    ///    (GCE, GKE Workload Identity, Cloud Run).
    #[default]
    ApplicationDefault,
    /// A credentials file in one of Google's JSON formats, told apart by its
    /// `type`: `service_account` (a key from the IAM API, `gcloud iam
    /// service-accounts keys create` or `baton iam service-accounts keys
    /// create`; it signs its own tokens, so its `token_uri` is never
    /// called), `authorized_user` (gcloud's user credentials, refreshed at
    /// their `token_uri`), `external_account` (Workload Identity
    /// Federation: a subject token exchanged at `token_url`, then
    /// optionally impersonated), `external_account_authorized_user` and
    /// `impersonated_service_account`.
    KeyFile(PathBuf),
    /// The same formats as [`Self::KeyFile`], already in memory.
    Json(serde_json::Value),
    /// The metadata server at `host[:port]` (what `GCE_METADATA_HOST`
    /// holds; an `http://` URL is accepted too), asked over plain HTTP as
    /// on GCE, GKE or Cloud Run.
    MetadataServer(String),
    /// Another service account's tokens, made by the IAM Credentials API
    /// for a source credential allowed to (see [`Impersonation`]).
    Impersonated(Impersonation),
    /// Any token source the application implements.
    Provider(Arc<dyn TokenProvider>),
    /// Credentials built with `google-cloud-auth` directly (its builders
    /// have options this enum does not repeat: retry policies, AWS or
    /// executable subject tokens, a universe domain...).
    Google(gca::Credentials),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ApplicationDefault => f.write_str("ApplicationDefault"),
            Self::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
            // The JSON may hold a private key or a refresh token.
            Self::Json(json) => f
                .debug_tuple("Json")
                .field(&json.get("type").and_then(|t| t.as_str()).unwrap_or("?"))
                .finish(),
            Self::MetadataServer(host) => f.debug_tuple("MetadataServer").field(host).finish(),
            Self::Impersonated(impersonation) => {
                f.debug_tuple("Impersonated").field(impersonation).finish()
            }
            Self::Provider(_) => f.write_str("Provider(..)"),
            Self::Google(credentials) => f.debug_tuple("Google").field(credentials).finish(),
        }
    }
}

/// Acting as `target_principal`: a source credential asks the IAM
/// Credentials API (`generateAccessToken`) for the target's tokens, as
/// `gcloud --impersonate-service-account` does. The source's account needs
/// `roles/iam.serviceAccountTokenCreator` on the target (or on the first of
/// the `delegates`, each on the next).
///
/// A credentials file of type `impersonated_service_account` is the same
/// thing written down; use [`Credentials::KeyFile`] for those.
#[derive(Clone, Debug)]
pub struct Impersonation {
    source: Box<Credentials>,
    target_principal: String,
    delegates: Vec<String>,
    scopes: Vec<String>,
    lifetime: Duration,
    iam_endpoint: String,
}

impl Impersonation {
    /// `source`'s tokens buy tokens of `target_principal` (an email), for
    /// the client's Pub/Sub scope, valid for an hour, from Google Cloud's
    /// IAM Credentials API.
    pub fn new(source: Credentials, target_principal: impl Into<String>) -> Self {
        Self {
            source: Box::new(source),
            target_principal: target_principal.into(),
            delegates: Vec::new(),
            scopes: Vec::new(),
            lifetime: Duration::from_secs(3600),
            iam_endpoint: IAM_CREDENTIALS_ENDPOINT.to_string(),
        }
    }

    /// The chain of accounts (emails) between the source and the target,
    /// each allowed to impersonate the next.
    pub fn with_delegates<I, S>(mut self, delegates: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.delegates = delegates.into_iter().map(Into::into).collect();
        self
    }

    /// The scopes of the target's tokens (by default the client's:
    /// `https://www.googleapis.com/auth/pubsub`).
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How long each of the target's tokens lives (at most an hour unless
    /// the organisation allows 12).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Where the IAM Credentials API is (`https://host[:port]`): Baton, or a
    /// private endpoint. Its certificate is checked against the client's
    /// roots and CA certificates.
    pub fn with_iam_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.iam_endpoint = endpoint.into().trim_end_matches('/').to_string();
        self
    }
}

/// An OAuth access token from a [`TokenProvider`], with how long it stays
/// valid.
#[derive(Clone)]
#[non_exhaustive]
pub struct AccessToken {
    token: String,
    expires_in: Option<Duration>,
}

impl AccessToken {
    /// A token to send as `authorization: Bearer <token>`, asked for again
    /// on every call until [`Self::with_expires_in`] says how long it lasts.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            expires_in: None,
        }
    }

    /// How long from now the token is valid: it is then cached and replaced
    /// [`REFRESH_MARGIN`] before that.
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in);
        self
    }

    /// The token itself.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How long it was valid when made, if known.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A source of access tokens the application implements (a vault, a
/// sidecar, a fixed token in tests). The client caches what it returns
/// until [`REFRESH_MARGIN`] before its expiry, and calls it once for all
/// callers waiting on a refresh.
#[async_trait]
pub trait TokenProvider: Send + Sync + 'static {
    /// A fresh token; an error fails the calls waiting for it with
    /// `UNAUTHENTICATED` (and a [`CredentialsError`] as the status' source).
    async fn token(&self) -> Result<AccessToken, BoxError>;
}

/// No access token could be had for a call: it fails with
/// `UNAUTHENTICATED`, and this error is the status' source
/// (`status.source()`), carrying the cause.
#[derive(Debug, thiserror::Error)]
#[error("no access token from {credentials}: {source}")]
pub struct CredentialsError {
    /// Which credentials failed (`a token provider`, `google-cloud-auth`...).
    credentials: &'static str,
    #[source]
    source: BoxError,
}

impl CredentialsError {
    fn new(credentials: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            credentials,
            source: source.into(),
        }
    }
}

/// The `authorization` header values of one client's credentials.
pub(crate) struct Authorizer {
    source: TokenSource,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorizer(..)")
    }
}

enum TokenSource {
    /// `google-cloud-auth` caches and refreshes its own tokens.
    Google(gca::Credentials),
    /// Tokens of a provider, cached here.
    Cached(CachedTokens),
}

impl Authorizer {
    /// `Bearer <token>`, fetched or refreshed when needed.
    pub(crate) async fn authorization(&self) -> Result<String, CredentialsError> {
        match &self.source {
            TokenSource::Google(credentials) => google_authorization(credentials).await,
            TokenSource::Cached(cached) => cached.authorization().await,
        }
    }
}

async fn google_authorization(credentials: &gca::Credentials) -> Result<String, CredentialsError> {
    let failed = |e: BoxError| CredentialsError::new("google-cloud-auth", e);
    let headers = match credentials
        .headers(http::Extensions::new())
        .await
        .map_err(|e| failed(Box::new(e)))?
    {
        gca::CacheableResource::New { data, .. } => data,
        gca::CacheableResource::NotModified => {
            return Err(failed("no headers without an entity tag".into()));
        }
    };
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| failed("the credentials gave no authorization header".into()))
}

/// A provider's tokens, kept until [`REFRESH_MARGIN`] before they expire
/// on Tokio's clock (so paused test time moves them too). The lock is held
/// across a fetch: concurrent callers wait for the one refresh.
struct CachedTokens {
    provider: Arc<dyn TokenProvider>,
    what: &'static str,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl CachedTokens {
    fn new(provider: Arc<dyn TokenProvider>, what: &'static str) -> Self {
        Self {
            provider,
            what,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn authorization(&self) -> Result<String, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some((header, refresh_at)) = cached.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(header.clone());
        }
        let fetched_at = Instant::now();
        let token = self
            .provider
            .token()
            .await
            .map_err(|e| CredentialsError::new(self.what, e))?;
        let header = format!("Bearer {}", token.token);
        *cached = token.expires_in.map(|lifetime| {
            (
                header.clone(),
                fetched_at + lifetime.saturating_sub(REFRESH_MARGIN),
            )
        });
        Ok(header)
    }
}

impl Credentials {
    /// The `quota_project_id` of the credentials file these credentials use
    /// (a [`Self::KeyFile`] or [`Self::Json`], or the file of
    /// `GOOGLE_APPLICATION_CREDENTIALS` under Application Default
    /// Credentials), when it has one.
    pub(crate) fn quota_project(&self) -> Option<String> {
        let json: serde_json::Value = match self {
            Self::Json(json) => json.clone(),
            Self::KeyFile(path) => read_json(path).ok()?,
            Self::ApplicationDefault => {
                read_json(&PathBuf::from(env_value(CREDENTIALS_FILE_ENV)?)).ok()?
            }
            _ => return None,
        };
        json.get("quota_project_id")?
            .as_str()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    }

    /// What makes this client's `authorization` headers, for `scopes`;
    /// `trusted_pems` are the client's extra CA certificates (for the IAM
    /// Credentials calls made here).
    pub(crate) fn authorizer(
        &self,
        scopes: &[&str],
        trusted_pems: &[Vec<u8>],
    ) -> Result<Authorizer, ConnectError> {
        install_crypto_provider();
        let source = match self {
            Self::ApplicationDefault => {
                let built = if env_value(CREDENTIALS_FILE_ENV).is_none()
                    && env_value(METADATA_HOST_ENV).is_some()
                {
                    // google-cloud-auth reads GCE_METADATA_HOST itself.
                    gca::mds::Builder::default()
                        .with_scopes(scopes.iter().copied())
                        .build()
                } else {
                    gca::Builder::default()
                        .with_scopes(scopes.iter().copied())
                        .build()
                };
                TokenSource::Google(built.map_err(|e| ConnectError::Credentials {
                    credentials: "Application Default".into(),
                    source: Box::new(e),
                })?)
            }
            Self::KeyFile(path) => {
                let json = read_json(path).map_err(|source| ConnectError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                TokenSource::Google(from_json(json, scopes).map_err(|source| {
                    ConnectError::KeyFile {
                        path: path.clone(),
                        source,
                    }
                })?)
            }
            Self::Json(json) => {
                TokenSource::Google(from_json(json.clone(), scopes).map_err(|source| {
                    ConnectError::Credentials {
                        credentials: "JSON".into(),
                        source,
                    }
                })?)
            }
            Self::MetadataServer(host) => {
                let host = host.trim().trim_end_matches('/');
                let root = if host.contains("://") {
                    host.to_string()
                } else {
                    format!("http://{host}")
                };
                let built = gca::mds::Builder::default()
                    .with_endpoint(root.clone())
                    .with_scopes(scopes.iter().copied())
                    .build()
                    .map_err(|e| ConnectError::Credentials {
                        credentials: format!("metadata server {root}"),
                        source: Box::new(e),
                    })?;
                TokenSource::Google(built)
            }
            Self::Impersonated(impersonation) => {
                let provider = ImpersonatedTokens::new(impersonation, scopes, trusted_pems)?;
                TokenSource::Cached(CachedTokens::new(
                    Arc::new(provider),
                    "service account impersonation",
                ))
            }
            Self::Provider(provider) => {
                TokenSource::Cached(CachedTokens::new(provider.clone(), "a token provider"))
            }
            Self::Google(credentials) => TokenSource::Google(credentials.clone()),
        };
        Ok(Authorizer { source })
    }
}

/// `google-cloud-auth` signs service-account tokens and makes its HTTPS
/// calls with the process' default rustls provider, and is built here
/// without its own (aws-lc): install ring's, the one the rest of the client
/// uses, unless the application installed one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read_json(path: &std::path::Path) -> Result<serde_json::Value, BoxError> {
    let text = std::fs::read(path)?;
    Ok(serde_json::from_slice(&text)?)
}

/// `google-cloud-auth`'s credentials for a JSON credentials file, by its
/// `type` (what its Application Default Credentials do with a file).
fn from_json(json: serde_json::Value, scopes: &[&str]) -> Result<gca::Credentials, BoxError> {
    let kind = json
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or("the JSON has no `type`")?
        .to_string();
    let scopes = scopes.iter().copied();
    let built = match kind.as_str() {
        "service_account" => gca::service_account::Builder::new(json)
            .with_access_specifier(gca::service_account::AccessSpecifier::from_scopes(scopes))
            .build(),
        "authorized_user" => gca::user_account::Builder::new(json)
            .with_scopes(scopes)
            .build(),
        "external_account" => gca::external_account::Builder::new(json)
            .with_scopes(scopes)
            .build(),
        "external_account_authorized_user" => {
            gca::external_account_authorized_user::Builder::new(json).build()
        }
        "impersonated_service_account" => gca::impersonated::Builder::new(json)
            .with_scopes(scopes)
            .build(),
        other => return Err(format!("unsupported credentials type `{other}`").into()),
    };
    Ok(built?)
}

/// The target's tokens from the IAM Credentials API's
/// `generateAccessToken`, paid for with the source's.
struct ImpersonatedTokens {
    source: Authorizer,
    http: reqwest::Client,
    url: String,
    body: serde_json::Value,
    lifetime: Duration,
}

impl ImpersonatedTokens {
    fn new(
        impersonation: &Impersonation,
        scopes: &[&str],
        trusted_pems: &[Vec<u8>],
    ) -> Result<Self, ConnectError> {
        let failed = |source: BoxError| ConnectError::Credentials {
            credentials: format!("impersonation of {}", impersonation.target_principal),
            source,
        };
        let source = impersonation
            .source
            .authorizer(&[CLOUD_PLATFORM_SCOPE], trusted_pems)?;
        let mut http = reqwest::Client::builder().timeout(IAM_CREDENTIALS_TIMEOUT);
        for pem in trusted_pems {
            for certificate in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| failed(Box::new(e)))?
            {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().map_err(|e| failed(Box::new(e)))?;
        let scopes: Vec<String> = if impersonation.scopes.is_empty() {
            scopes.iter().map(|s| s.to_string()).collect()
        } else {
            impersonation.scopes.clone()
        };
        let delegates: Vec<String> = impersonation
            .delegates
            .iter()
            .map(|email| format!("projects/-/serviceAccounts/{email}"))
            .collect();
        Ok(Self {
            source,
            http,
            url: format!(
                "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
                impersonation.iam_endpoint, impersonation.target_principal
            ),
            body: serde_json::json!({
                "delegates": delegates,
                "scope": scopes,
                "lifetime": format!("{}s", impersonation.lifetime.as_secs()),
            }),
            lifetime: impersonation.lifetime,
        })
    }
}

#[async_trait]
impl TokenProvider for ImpersonatedTokens {
    async fn token(&self) -> Result<AccessToken, BoxError> {
        let authorization = self.source.authorization().await?;
        let response = self
            .http
            .post(&self.url)
            .header(http::header::AUTHORIZATION, authorization)
            .json(&self.body)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(format!(
                "{} answered {status}: {}",
                self.url,
                String::from_utf8_lossy(&body).trim()
            )
            .into());
        }
        // `{"accessToken": "...", "expireTime": "2025-01-01T00:00:00Z"}`;
        // the token lives the lifetime asked for (expireTime is that much
        // after the call), counted here from the answer on.
        let answer: HashMap<String, serde_json::Value> = serde_json::from_slice(&body)?;
        let token = answer
            .get("accessToken")
            .and_then(|t| t.as_str())
            .ok_or("the answer has no accessToken")?;
        Ok(AccessToken::new(token).with_expires_in(self.lifetime))
    }
}

/// A set, non-blank environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its fetches; each token lives an hour.
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl TokenProvider for Counting {
        async fn token(&self) -> Result<AccessToken, BoxError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(AccessToken::new(format!("t{n}")).with_expires_in(Duration::from_secs(3600)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn provider_tokens_are_cached_shared_and_refreshed_before_expiry() {
        let provider = Arc::new(Counting(0.into()));
        let cached = Arc::new(CachedTokens::new(provider.clone(), "test"));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let cached = cached.clone();
                tokio::spawn(async move { cached.authorization().await.unwrap() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), "Bearer t1");
        }
        assert_eq!(provider.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(3600) - REFRESH_MARGIN - Duration::from_secs(1))
            .await;
        assert_eq!(cached.authorization().await.unwrap(), "Bearer t1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cached.authorization().await.unwrap(), "Bearer t2");
    }
}
