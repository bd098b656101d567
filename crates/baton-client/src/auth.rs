//! Where an authenticating endpoint's access tokens come from: Application
//! Default Credentials, a service-account key file, a metadata server, or
//! any [`gcp_auth::TokenProvider`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gcp_auth::{Token, TokenProvider};

use crate::error::ConnectError as Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The environment variable naming a service-account key file (ADC).
pub const CREDENTIALS_FILE_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The environment variable naming the metadata server (`host[:port]`),
/// as Google's own client libraries read it.
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// How long one metadata-server request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How an authenticating endpoint ([`crate::Endpoint::GoogleCloud`], or
/// [`crate::Endpoint::Custom`] with `authenticate`) gets its OAuth access
/// tokens. Endpoints that do not authenticate ignore it.
///
/// ```no_run
/// # async fn run() -> Result<(), baton_client::ConnectError> {
/// use baton_client::{Client, ClientConfig, Credentials, Endpoint};
/// // A Baton serving TLS with its development CA, and its metadata server.
/// let config = ClientConfig::new("my-project")
///     .with_endpoint(Endpoint::Custom {
///         uri: "https://localhost:8085".into(),
///         authenticate: true,
///     })
///     .with_ca_certificate_file("baton-data/tls/ca.pem")
///     .with_credentials(Credentials::MetadataServer("127.0.0.1:8086".into()));
/// let client = Client::connect(config).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// Application Default Credentials, found the way Google's client
    /// libraries find them:
    ///
    /// 1. `GOOGLE_APPLICATION_CREDENTIALS`, a service-account key file;
    /// 2. else `GCE_METADATA_HOST`, a metadata server at `host[:port]`
    ///    (taken before gcloud's user credentials file: setting it is an
    ///    explicit choice, and a local server could not verify a Google
    ///    user's token anyway);
    /// 3. else gcloud's `application_default_credentials.json`, the metadata
    ///    server at `metadata.google.internal`, then the `gcloud` CLI.
    #[default]
    ApplicationDefault,
    /// A service-account key file in Google's JSON format (from the IAM API,
    /// `gcloud iam service-accounts keys create`, or Baton's
    /// `POST /v1/projects/{p}/serviceAccounts/{email}/keys`). Its signed
    /// assertion is exchanged for an access token at the file's `token_uri`,
    /// whose certificate is checked against the system's roots, or those of
    /// `SSL_CERT_FILE` when set (not the client's own
    /// [`crate::ClientConfig::with_ca_certificate`] roots).
    KeyFile(PathBuf),
    /// The metadata server at `host[:port]` (what `GCE_METADATA_HOST`
    /// holds), asked over plain HTTP as on GCE, GKE or Cloud Run.
    MetadataServer(String),
    /// Any token provider.
    Provider(Arc<dyn TokenProvider>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ApplicationDefault => f.write_str("ApplicationDefault"),
            Self::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
            Self::MetadataServer(host) => f.debug_tuple("MetadataServer").field(host).finish(),
            Self::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

impl Credentials {
    /// The `quota_project_id` of the key file these credentials use (a
    /// [`Self::KeyFile`], or the file of `GOOGLE_APPLICATION_CREDENTIALS`
    /// under Application Default Credentials), when it has one.
    pub(crate) fn quota_project(&self) -> Option<String> {
        let path = match self {
            Self::KeyFile(path) => path.clone(),
            Self::ApplicationDefault => PathBuf::from(env_value(CREDENTIALS_FILE_ENV)?),
            _ => return None,
        };
        let text = std::fs::read(path).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
        json.get("quota_project_id")?
            .as_str()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    }

    /// The token provider these credentials name.
    pub(crate) async fn provider(&self) -> Result<Arc<dyn TokenProvider>> {
        match self {
            Self::ApplicationDefault => {
                if env_value(CREDENTIALS_FILE_ENV).is_none()
                    && let Some(host) = env_value(METADATA_HOST_ENV)
                {
                    return Ok(Arc::new(MetadataServerTokens::new(&host)?));
                }
                // The key file of GOOGLE_APPLICATION_CREDENTIALS, or
                // gcp_auth's search of the other sources.
                Ok(gcp_auth::provider().await?)
            }
            Self::KeyFile(path) => match gcp_auth::CustomServiceAccount::from_file(path) {
                Ok(account) => Ok(Arc::new(account)),
                Err(source) => Err(Error::KeyFile {
                    path: path.clone(),
                    source,
                }),
            },
            Self::MetadataServer(host) => Ok(Arc::new(MetadataServerTokens::new(host)?)),
            Self::Provider(provider) => Ok(provider.clone()),
        }
    }
}

/// A set, non-blank environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Access tokens from a metadata server named by host, as on GCE and GKE.
///
/// gcp_auth's own metadata provider always asks
/// `http://metadata.google.internal` and ignores `GCE_METADATA_HOST`, while
/// Google's client libraries (Go, Python, Java, Node) honour it; with this
/// provider the Rust client reaches a metadata server elsewhere (Baton's,
/// `baton serve --metadata-port`, or the GKE metadata emulator) as they do.
#[derive(Debug)]
pub(crate) struct MetadataServerTokens {
    http: reqwest::Client,
    /// `http://host[:port]/computeMetadata/v1`.
    base: String,
    /// Tokens by their space-joined scopes, each used until shortly before
    /// it expires ([`Token::has_expired`] keeps a 20 s margin). A fetch holds
    /// the lock, so concurrent callers wait for one request.
    tokens: tokio::sync::Mutex<HashMap<String, Arc<Token>>>,
}

impl MetadataServerTokens {
    /// A provider asking the metadata server at `host[:port]` (an
    /// `http://` prefix is accepted too).
    pub(crate) fn new(host: &str) -> Result<Self> {
        let host = host.trim().trim_end_matches('/');
        let root = if host.contains("://") {
            host.to_string()
        } else {
            format!("http://{host}")
        };
        let http = reqwest::Client::builder()
            .timeout(METADATA_TIMEOUT)
            .build()
            .map_err(|e| Error::MetadataServer {
                url: root.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            base: format!("{root}/computeMetadata/v1"),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// `GET {base}/{path}` with `Metadata-Flavor: Google`; the body of a
    /// successful answer.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<u8>> {
        let url = format!("{}/{path}", self.base);
        let failed = |reason: String| Error::MetadataServer {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&url)
            .query(query)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| failed(format!("request failed: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(format!("reading the answer failed: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(failed(format!("answered {status}: {}", text.trim())));
        }
        Ok(body.to_vec())
    }

    async fn fetch_token(&self, scopes: &str) -> Result<Token> {
        let path = "instance/service-accounts/default/token";
        let query: &[(&str, &str)] = if scopes.is_empty() {
            &[]
        } else {
            &[("scopes", scopes)]
        };
        let body = self.get(path, query).await?;
        // `{"access_token": "...", "expires_in": 3599, "token_type": "Bearer"}`;
        // gcp_auth's Token reads the first two, turning `expires_in` into an
        // expiry instant.
        serde_json::from_slice(&body).map_err(|e| Error::MetadataServer {
            url: format!("{}/{path}", self.base),
            reason: format!("the answer is not an access token: {e}"),
        })
    }
}

/// Wraps a client error for the [`TokenProvider`] interface; it surfaces as
/// [`Error::Auth`](crate::ConnectError::Auth) with this error as its source.
fn to_gcp(error: Error) -> gcp_auth::Error {
    gcp_auth::Error::Other("no access token", Box::new(error))
}

#[async_trait]
impl TokenProvider for MetadataServerTokens {
    async fn token(&self, scopes: &[&str]) -> Result<Arc<Token>, gcp_auth::Error> {
        // The metadata server takes the scopes comma-separated.
        let key = scopes.join(",");
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(&key)
            && !token.has_expired()
        {
            return Ok(token.clone());
        }
        let token = Arc::new(self.fetch_token(&key).await.map_err(to_gcp)?);
        tokens.insert(key, token.clone());
        Ok(token)
    }

    async fn project_id(&self) -> Result<Arc<str>, gcp_auth::Error> {
        let body = self.get("project/project-id", &[]).await.map_err(to_gcp)?;
        let id = String::from_utf8_lossy(&body).trim().to_string();
        if id.is_empty() {
            return Err(gcp_auth::Error::Str(
                "the metadata server answered an empty project id",
            ));
        }
        Ok(Arc::from(id))
    }
}
