//! Authorized users: the refresh tokens behind `authorized_user`
//! credential files, what `gcloud auth application-default login` writes
//! for a person. Baton has no browser consent screen; the operator issues a
//! grant for `user:EMAIL` ([`UserGrants::issue`], `baton auth
//! application-default login`), and the file's refresh token buys access
//! tokens at Baton's token endpoint with the OAuth 2.0 refresh-token grant
//! (RFC 6749 section 6).
//!
//! Every grant has its own OAuth client (id and secret), and the refresh
//! token is only redeemed together with that client. Baton stores SHA-256
//! digests of the refresh token and of the client secret, never the
//! secrets, so the store leaks no usable credential. Revoking a grant
//! ([`UserGrants::revoke`]) refuses its refresh token from then on and stops
//! the access tokens it bought.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::{AuthError, TokenEndpointError, io_error};
use crate::fsutil::write_atomically;
use crate::keys::{UNIVERSE_DOMAIN, random_hex};

/// The file, inside the state directory, that holds the grants (digests
/// only), mode 0600.
pub const USER_GRANTS_FILE: &str = "authorized-users.json";

/// The `type` of an authorized-user credential file.
pub const AUTHORIZED_USER_TYPE: &str = "authorized_user";

/// The scopes a grant holds unless others are asked for: those of
/// `gcloud auth application-default login`.
pub const DEFAULT_USER_SCOPES: [&str; 3] = [
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/cloud-platform",
];

/// The scope that covers every Google Cloud API: a grant holding it may
/// refresh tokens for any narrower `https://www.googleapis.com/auth/` scope
/// (the Pub/Sub one that client libraries ask for, say).
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google's description of a refresh token it does not (or no longer)
/// honour.
pub const REVOKED_DESCRIPTION: &str = "Token has been expired or revoked.";

/// One authorized user's grant, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGrant {
    /// A random id (32 hex digits), carried by the access tokens the grant
    /// buys, so revoking the grant stops them.
    pub id: String,
    /// The user's email, lowercase: the IAM member `user:EMAIL`.
    pub account: String,
    /// The OAuth client the refresh token is bound to.
    pub client_id: String,
    /// SHA-256 of the client secret, hex.
    client_secret_sha256: String,
    /// SHA-256 of the refresh token, hex.
    refresh_token_sha256: String,
    /// The scopes the grant holds.
    pub scopes: Vec<String>,
    /// When it was issued, Unix seconds.
    pub created: u64,
}

impl UserGrant {
    /// Whether the grant covers every scope of `asked`: each is one of its
    /// scopes, or the grant holds `cloud-platform` and the scope is another
    /// Google API scope.
    pub fn covers(&self, asked: &[String]) -> bool {
        let cloud = self.scopes.iter().any(|s| s == CLOUD_PLATFORM_SCOPE);
        asked.iter().all(|scope| {
            self.scopes.contains(scope)
                || (cloud && scope.starts_with("https://www.googleapis.com/auth/"))
        })
    }
}

/// An authorized-user credential file, the fields gcloud's
/// `application_default_credentials.json` has, plus the `token_uri` that
/// sends its refresh grant to Baton. Google's client libraries load it
/// unchanged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedUserFile {
    /// Always `"authorized_user"`.
    #[serde(rename = "type")]
    pub credential_type: String,
    /// The OAuth client id the refresh token is bound to.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Where the refresh grant is sent: Baton's token endpoint.
    pub token_uri: String,
    /// The user's email (informational, as gcloud writes it).
    pub account: String,
    /// The project billed for quota, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_project_id: Option<String>,
    /// Always `"googleapis.com"`.
    pub universe_domain: String,
}

/// Never prints the secret or the refresh token.
impl std::fmt::Debug for AuthorizedUserFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedUserFile")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .field("account", &self.account)
            .field("quota_project_id", &self.quota_project_id)
            .finish_non_exhaustive()
    }
}

/// The authorized users' grants: in memory, and in
/// `<dir>/authorized-users.json` when there is a directory. Cheap to clone
/// (clones share the grants).
#[derive(Debug, Clone)]
pub struct UserGrants {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: Option<PathBuf>,
    grants: RwLock<Vec<UserGrant>>,
    generation: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    grants: Vec<UserGrant>,
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_secret(bytes: usize) -> String {
    let random: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(random)
}

/// Checks that `account` is a person's email: `local@domain.tld`, no
/// spaces, not a service account's (those have key files, not users'
/// credentials).
pub fn validate_user_email(account: &str) -> Result<(), AuthError> {
    let invalid =
        |why: &str| AuthError::InvalidAccountId(format!("Invalid account {account:?}: {why}"));
    let Some((local, domain)) = account.split_once('@') else {
        return Err(invalid("not an email address"));
    };
    if local.is_empty()
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || account.len() > 254
        || account.chars().any(|c| c.is_whitespace() || c.is_control())
        || domain.contains('@')
    {
        return Err(invalid("not an email address"));
    }
    if domain
        .to_ascii_lowercase()
        .ends_with(".gserviceaccount.com")
    {
        return Err(invalid(
            "a service account is not a user; make it a key file instead",
        ));
    }
    Ok(())
}

impl UserGrants {
    /// An empty store in memory.
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(Inner {
                path: None,
                grants: RwLock::new(Vec::new()),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Opens the grants kept in `dir` (none yet if the file is missing), or
    /// an empty in-memory store without a directory.
    pub fn open(dir: Option<&Path>) -> Result<Self, AuthError> {
        let path = dir.map(|dir| dir.join(USER_GRANTS_FILE));
        let grants = match &path {
            None => Vec::new(),
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    serde_json::from_slice::<Stored>(&bytes)
                        .map_err(|e| AuthError::Corrupt {
                            path: path.display().to_string(),
                            message: e.to_string(),
                        })?
                        .grants
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io_error(format!("reading {}", path.display()), e)),
            },
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                grants: RwLock::new(grants),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Issues a grant for the user `account` holding `scopes` (the
    /// defaults of `gcloud auth application-default login` when empty), with
    /// its own OAuth client; answers the grant and the credential file
    /// (whose refresh token and client secret exist nowhere else).
    pub fn issue(
        &self,
        account: &str,
        scopes: &[String],
        token_uri: &str,
        quota_project_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(UserGrant, AuthorizedUserFile), AuthError> {
        validate_user_email(account)?;
        let account = account.to_ascii_lowercase();
        let scopes: Vec<String> = if scopes.is_empty() {
            DEFAULT_USER_SCOPES.iter().map(|s| s.to_string()).collect()
        } else {
            scopes.to_vec()
        };
        let client_id = format!("{}.apps.baton.local", random_hex(12));
        let client_secret = format!("BATON-{}", random_secret(24));
        let refresh_token = format!("1//{}", random_secret(48));
        let grant = UserGrant {
            id: random_hex(16),
            account: account.clone(),
            client_id: client_id.clone(),
            client_secret_sha256: sha256_hex(&client_secret),
            refresh_token_sha256: sha256_hex(&refresh_token),
            scopes,
            created: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        self.update(|grants| {
            grants.push(grant.clone());
            Ok(())
        })?;
        let file = AuthorizedUserFile {
            credential_type: AUTHORIZED_USER_TYPE.to_string(),
            client_id,
            client_secret,
            refresh_token,
            token_uri: token_uri.to_string(),
            account,
            quota_project_id: quota_project_id
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            universe_domain: UNIVERSE_DOMAIN.to_string(),
        };
        Ok((grant, file))
    }

    /// The grant of `refresh_token`, if it is redeemed with the client it
    /// was issued to: `invalid_grant` (400) for an unknown or revoked
    /// token, `invalid_client` (401) for another client or a wrong secret.
    pub fn redeem(
        &self,
        refresh_token: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<UserGrant, TokenEndpointError> {
        let digest = sha256_hex(refresh_token);
        let grant = self
            .read()
            .iter()
            .find(|g| bool::from(g.refresh_token_sha256.as_bytes().ct_eq(digest.as_bytes())))
            .cloned()
            .ok_or_else(|| TokenEndpointError::invalid_grant(REVOKED_DESCRIPTION))?;
        if grant.client_id != client_id {
            return Err(TokenEndpointError::new(
                "invalid_client",
                "The OAuth client was not found.",
            ));
        }
        let secret = sha256_hex(client_secret);
        if !bool::from(
            grant
                .client_secret_sha256
                .as_bytes()
                .ct_eq(secret.as_bytes()),
        ) {
            return Err(TokenEndpointError::new("invalid_client", "Unauthorized"));
        }
        Ok(grant)
    }

    /// Revokes the grant of `refresh_token`; whether there was one.
    pub fn revoke(&self, refresh_token: &str) -> Result<bool, AuthError> {
        let digest = sha256_hex(refresh_token);
        self.update(|grants| {
            let before = grants.len();
            grants.retain(|g| g.refresh_token_sha256 != digest);
            Ok(grants.len() != before)
        })
    }

    /// Whether the grant `id` exists (was not revoked).
    pub fn is_active(&self, id: &str) -> bool {
        self.read().iter().any(|g| g.id == id)
    }

    /// Every grant.
    pub fn list(&self) -> Vec<UserGrant> {
        self.read().clone()
    }

    /// A counter that changes on every change of the grants (caches of
    /// verified tokens drop what they hold).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<UserGrant>> {
        self.inner
            .grants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change to a copy, persists it, then makes it current.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<UserGrant>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let mut current = self
            .inner
            .grants
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut grants = current.clone();
        let out = change(&mut grants)?;
        if let Some(path) = &self.inner.path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
            }
            let json = serde_json::to_vec_pretty(&Stored {
                grants: grants.clone(),
            })
            .map_err(|e| AuthError::Crypto(format!("encoding the grants: {e}")))?;
            write_atomically(path, &json, true)?;
        }
        *current = grants;
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TOKEN_URI: &str = "https://127.0.0.1:8085/token";

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn a_grant_is_redeemed_with_its_client_only() {
        let grants = UserGrants::open(None).unwrap();
        let (grant, file) = grants
            .issue("Alice@Example.com", &[], TOKEN_URI, Some("proj"), now())
            .unwrap();
        assert_eq!(grant.account, "alice@example.com");
        assert_eq!(file.credential_type, "authorized_user");
        assert_eq!(file.token_uri, TOKEN_URI);
        assert_eq!(file.quota_project_id.as_deref(), Some("proj"));
        assert!(file.refresh_token.starts_with("1//"));
        let redeemed = grants
            .redeem(&file.refresh_token, &file.client_id, &file.client_secret)
            .unwrap();
        assert_eq!(redeemed, grant);
        let wrong_secret = grants
            .redeem(&file.refresh_token, &file.client_id, "guess")
            .unwrap_err();
        assert_eq!(
            (wrong_secret.error.as_str(), wrong_secret.http_status()),
            ("invalid_client", 401)
        );
        let wrong_client = grants
            .redeem(&file.refresh_token, "other", &file.client_secret)
            .unwrap_err();
        assert_eq!(wrong_client.error, "invalid_client");
        let unknown = grants
            .redeem("1//nope", &file.client_id, &file.client_secret)
            .unwrap_err();
        assert_eq!(
            (unknown.error.as_str(), unknown.error_description.as_str()),
            ("invalid_grant", REVOKED_DESCRIPTION)
        );
        assert_eq!(unknown.http_status(), 400);
        let generation = grants.generation();
        assert!(grants.is_active(&grant.id));
        assert!(grants.revoke(&file.refresh_token).unwrap());
        assert!(grants.generation() > generation);
        assert!(!grants.is_active(&grant.id));
        assert!(!grants.revoke(&file.refresh_token).unwrap());
        assert_eq!(
            grants
                .redeem(&file.refresh_token, &file.client_id, &file.client_secret)
                .unwrap_err()
                .error,
            "invalid_grant"
        );
        assert!(!format!("{file:?}").contains(&file.refresh_token));
    }

    #[test]
    fn cloud_platform_covers_narrower_api_scopes() {
        let grants = UserGrants::open(None).unwrap();
        let (grant, _) = grants
            .issue("bob@example.com", &[], TOKEN_URI, None, now())
            .unwrap();
        assert!(grant.covers(&["https://www.googleapis.com/auth/pubsub".to_string()]));
        assert!(!grant.covers(&["https://example.com/other".to_string()]));
        let (narrow, _) = grants
            .issue(
                "bob@example.com",
                &["https://www.googleapis.com/auth/pubsub".to_string()],
                TOKEN_URI,
                None,
                now(),
            )
            .unwrap();
        assert!(!narrow.covers(&[CLOUD_PLATFORM_SCOPE.to_string()]));
    }

    #[test]
    fn only_users_emails_are_accepted() {
        let grants = UserGrants::open(None).unwrap();
        for bad in [
            "alice",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
            "robot@p.iam.gserviceaccount.com",
        ] {
            assert!(
                matches!(
                    grants.issue(bad, &[], TOKEN_URI, None, now()),
                    Err(AuthError::InvalidAccountId(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn grants_persist_as_digests_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = {
            let grants = UserGrants::open(Some(dir.path())).unwrap();
            grants
                .issue("carol@example.com", &[], TOKEN_URI, None, now())
                .unwrap()
                .1
        };
        let text = std::fs::read_to_string(dir.path().join(USER_GRANTS_FILE)).unwrap();
        assert!(!text.contains(&file.refresh_token));
        assert!(!text.contains(&file.client_secret));
        let reopened = UserGrants::open(Some(dir.path())).unwrap();
        assert!(
            reopened
                .redeem(&file.refresh_token, &file.client_id, &file.client_secret)
                .is_ok()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(USER_GRANTS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
