//! One server's identity state: the service-account registry, authorized
//! users' grants, the trusted workload identity pool providers, the signing
//! key (made on first use) and the verifier over them, and the push ID
//! tokens it signed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use baton_auth::{AuthError, Authenticator, ServiceAccounts, SigningKey, UserGrants};
use baton_broker::Clock;

/// How long before its expiry a cached push ID token is replaced.
const ID_TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime of the ID tokens Baton signs (as Google's).
const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// One server's identity state: its service accounts, its signing key and
/// the verifier over both. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Identity {
    inner: Arc<IdentityInner>,
}

#[derive(Debug)]
struct IdentityInner {
    /// Where the signing key and the accounts are kept (`<data>/auth`);
    /// `None` keeps them in memory for this run.
    dir: Option<PathBuf>,
    accounts: ServiceAccounts,
    /// Authorized users' refresh-token grants.
    grants: UserGrants,
    /// The pool providers the token exchange trusts; handed to the
    /// authenticator when it is made.
    providers: Mutex<Vec<baton_auth::WorkloadIdentityProvider>>,
    /// Baton's URL as clients reach it: the issuer of its tokens, and the
    /// base of the token endpoint that key files name.
    public_url: String,
    operator_token: Option<String>,
    /// Made on first use when authentication is off: generating a key
    /// costs a fraction of a second that most servers never need to spend.
    authenticator: OnceLock<Arc<Authenticator>>,
    init: Mutex<()>,
    clock: Clock,
    /// Push ID tokens by (service account, audience), reused until shortly
    /// before they expire: signing one costs a millisecond.
    id_tokens: Mutex<HashMap<(String, String), (String, SystemTime)>>,
}

impl Identity {
    /// Opens the identity state kept in `dir` (or in memory), for a server
    /// reached at `public_url`. `operator_token` is the bootstrap admin's
    /// credential when authentication is on.
    /// `providers` are the workload identity pool providers whose subject
    /// tokens the Security Token Service exchanges.
    pub fn open(
        dir: Option<PathBuf>,
        public_url: String,
        operator_token: Option<String>,
        clock: Clock,
        providers: Vec<baton_auth::WorkloadIdentityProvider>,
    ) -> Result<Self, AuthError> {
        let accounts = ServiceAccounts::open(dir.as_deref())?;
        let grants = UserGrants::open(dir.as_deref())?;
        Ok(Self {
            inner: Arc::new(IdentityInner {
                dir,
                accounts,
                grants,
                providers: Mutex::new(providers),
                public_url,
                operator_token,
                authenticator: OnceLock::new(),
                init: Mutex::new(()),
                clock,
                id_tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The service-account registry.
    pub fn accounts(&self) -> &ServiceAccounts {
        &self.inner.accounts
    }

    /// Authorized users' grants.
    pub fn user_grants(&self) -> &UserGrants {
        &self.inner.grants
    }

    /// Baton's URL as clients reach it.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The token endpoint key files name as their `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.inner.public_url)
    }

    /// Now, on the broker's clock.
    pub fn now(&self) -> SystemTime {
        self.inner.clock.wall()
    }

    /// The verifier (and token minter), its signing key loaded or made on
    /// first use.
    pub fn authenticator(&self) -> Result<Arc<Authenticator>, AuthError> {
        if let Some(authenticator) = self.inner.authenticator.get() {
            return Ok(authenticator.clone());
        }
        let _init = self
            .inner
            .init
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(authenticator) = self.inner.authenticator.get() {
            return Ok(authenticator.clone());
        }
        let signing = Arc::new(SigningKey::load_or_create(self.inner.dir.as_deref())?);
        let providers = std::mem::take(
            &mut *self
                .inner
                .providers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let authenticator = Arc::new(
            Authenticator::new(
                signing,
                self.inner.accounts.clone(),
                self.inner.public_url.clone(),
                self.inner.operator_token.clone(),
            )
            .with_user_grants(self.inner.grants.clone())
            .with_workload_identity_providers(providers),
        );
        Ok(self
            .inner
            .authenticator
            .get_or_init(|| authenticator)
            .clone())
    }

    /// [`Self::authenticator`] off the async workers (making a key takes a
    /// while).
    pub async fn authenticator_async(&self) -> Result<Arc<Authenticator>, AuthError> {
        if let Some(authenticator) = self.inner.authenticator.get() {
            return Ok(authenticator.clone());
        }
        let identity = self.clone();
        tokio::task::spawn_blocking(move || identity.authenticator())
            .await
            .unwrap_or_else(|error| Err(AuthError::Crypto(error.to_string())))
    }

    /// An ID token for `email` with `audience`, as a push subscription's
    /// `oidc_token` asks for: reused while it has more than a few minutes
    /// left.
    pub async fn push_id_token(&self, email: &str, audience: &str) -> Result<String, AuthError> {
        let now = self.now();
        let key = (email.to_string(), audience.to_string());
        if let Some((token, expires)) = self.cached_id_token(&key)
            && expires > now + ID_TOKEN_REFRESH_MARGIN
        {
            return Ok(token);
        }
        let authenticator = self.authenticator_async().await?;
        let token = authenticator.mint_id_token(email, audience, now)?;
        self.inner
            .id_tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, (token.clone(), now + ID_TOKEN_LIFETIME));
        Ok(token)
    }

    fn cached_id_token(&self, key: &(String, String)) -> Option<(String, SystemTime)> {
        self.inner
            .id_tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .cloned()
    }
}

/// A fresh operator token: 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a secret to `path`, readable by its owner only (0600 on Unix),
/// replacing any earlier file in one step.
pub fn write_secret(path: &std::path::Path, secret: &str) -> Result<(), AuthError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    baton_auth::write_atomically(path, secret.as_bytes(), true)
}
