//! The service-account registry. Baton keeps only the public half of every
//! key: the private half leaves in the key file [`ServiceAccounts::create_key`]
//! returns, once, and is never stored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, io_error};
use crate::fsutil::write_atomically;
use crate::keys::{ServiceAccountKeyFile, generate_rsa_key};

/// The file, inside the state directory, that holds the registry (public
/// keys only).
pub const ACCOUNTS_FILE: &str = "service-accounts.json";

/// The domain of service-account emails: `ID@PROJECT.iam.gserviceaccount.com`.
pub const SERVICE_ACCOUNT_DOMAIN: &str = "iam.gserviceaccount.com";

/// A service account, as Baton stores and lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// `ACCOUNT_ID@PROJECT.iam.gserviceaccount.com`.
    pub email: String,
    /// The project the account belongs to.
    pub project_id: String,
    /// A stable 21-digit id, like Google's (the `sub` of its ID tokens).
    pub unique_id: String,
    /// A human-readable name.
    pub display_name: String,
    /// A free-form description.
    pub description: String,
    /// A disabled account cannot authenticate.
    pub disabled: bool,
    /// The account's keys (public halves only).
    pub keys: Vec<ServiceAccountKey>,
}

/// The public half of a service-account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKey {
    /// The key id (40 hex digits), the key file's `private_key_id` and the
    /// `kid` of what the key signs.
    pub key_id: String,
    /// The public key, SPKI PEM.
    pub public_key_pem: String,
    /// When the key was created; stored as Unix seconds.
    #[serde(with = "unix_seconds")]
    pub valid_after: SystemTime,
    /// A disabled key cannot authenticate.
    pub disabled: bool,
}

/// `SystemTime` as whole Unix seconds (times before 1970 are stored as 0).
mod unix_seconds {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let seconds = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        s.serialize_u64(seconds)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let seconds = u64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_secs(seconds))
    }
}

/// The persisted form of the registry.
#[derive(Serialize, Deserialize)]
struct Stored {
    accounts: Vec<ServiceAccount>,
}

/// The service-account registry: thread-safe, and cheap to clone (clones
/// share one registry). With a state directory, every change is written to
/// `service-accounts.json` (temporary file, fsync, rename) before it is
/// visible.
#[derive(Debug, Clone)]
pub struct ServiceAccounts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: Option<PathBuf>,
    state: RwLock<State>,
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// By email.
    accounts: BTreeMap<String, ServiceAccount>,
    /// Enabled keys of enabled accounts, by key id: the owner's email and
    /// the parsed public key.
    keys: HashMap<String, (String, DecodingKey)>,
}

impl ServiceAccounts {
    /// Opens the registry: with a directory, loads `dir/service-accounts.json`
    /// if it exists (creating the directory if needed) and persists every
    /// change there; without one, it lives in memory only.
    pub fn open(dir: Option<&Path>) -> Result<Self, AuthError> {
        let mut accounts = BTreeMap::new();
        let path = match dir {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
                let path = dir.join(ACCOUNTS_FILE);
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let stored: Stored =
                            serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt {
                                path: path.display().to_string(),
                                message: e.to_string(),
                            })?;
                        for account in stored.accounts {
                            accounts.insert(account.email.clone(), account);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(format!("reading {}", path.display()), e)),
                }
                Some(path)
            }
        };
        let keys = index(&accounts, &HashMap::new()).map_err(|message| AuthError::Corrupt {
            path: path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            message,
        })?;
        Ok(ServiceAccounts {
            inner: Arc::new(Inner {
                path,
                state: RwLock::new(State { accounts, keys }),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Creates `account_id@project.iam.gserviceaccount.com`. The id must be
    /// what Google accepts: 6–30 characters, `[a-z]([-a-z0-9]*[a-z0-9])`.
    pub fn create(
        &self,
        project: &str,
        account_id: &str,
        display_name: &str,
        description: &str,
    ) -> Result<ServiceAccount, AuthError> {
        validate_account_id(account_id)?;
        if project.is_empty() {
            return Err(AuthError::InvalidAccountId(
                "A project is required.".to_string(),
            ));
        }
        let email = format!("{account_id}@{project}.{SERVICE_ACCOUNT_DOMAIN}").to_lowercase();
        self.update(|accounts| {
            if accounts.contains_key(&email) {
                return Err(AuthError::AlreadyExists(email.clone()));
            }
            let unique_id = loop {
                let candidate = unique_id();
                if accounts.values().all(|a| a.unique_id != candidate) {
                    break candidate;
                }
            };
            let account = ServiceAccount {
                email: email.clone(),
                project_id: project.to_string(),
                unique_id,
                display_name: display_name.to_string(),
                description: description.to_string(),
                disabled: false,
                keys: Vec::new(),
            };
            accounts.insert(email.clone(), account.clone());
            Ok(account)
        })
    }

    /// Generates a key for the account named by `email` (or unique id),
    /// stores its public half (valid after `now`), and returns it with the
    /// key file whose clients fetch tokens from `token_uri`. The private key
    /// appears only in that key file.
    pub fn create_key(
        &self,
        email: &str,
        token_uri: &str,
        now: SystemTime,
    ) -> Result<(ServiceAccountKey, ServiceAccountKeyFile), AuthError> {
        // Fail fast before the (comparatively slow) key generation.
        if self.get(email).is_none() {
            return Err(AuthError::NotFound(format!("Service account {email}")));
        }
        let generated = generate_rsa_key()?;
        self.update(|accounts| {
            let account = find_mut(accounts, email)?;
            let key = ServiceAccountKey {
                key_id: generated.key_id.clone(),
                public_key_pem: generated.public_key_pem.clone(),
                valid_after: now,
                disabled: false,
            };
            account.keys.push(key.clone());
            let file = ServiceAccountKeyFile::new(
                &account.project_id,
                &account.email,
                &account.unique_id,
                &generated,
                token_uri,
            );
            Ok((key, file))
        })
    }

    /// Adds a public key the caller generated (Google's `keys.upload`): an
    /// RSA public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`), valid after
    /// `now`. Its id is derived from the key (the first 20 bytes of the
    /// SHA-256 of its DER, in hex), so the same key always gets the same id.
    pub fn upload_key(
        &self,
        email: &str,
        public_key_pem: &str,
        now: SystemTime,
    ) -> Result<ServiceAccountKey, AuthError> {
        let key_id = crate::keys::public_key_id(public_key_pem)?;
        self.update(|accounts| {
            if accounts
                .values()
                .any(|a| a.keys.iter().any(|k| k.key_id == key_id))
            {
                return Err(AuthError::AlreadyExists(format!(
                    "Service account key {key_id}"
                )));
            }
            let account = find_mut(accounts, email)?;
            let key = ServiceAccountKey {
                key_id: key_id.clone(),
                public_key_pem: public_key_pem.to_string(),
                valid_after: now,
                disabled: false,
            };
            account.keys.push(key.clone());
            Ok(key)
        })
    }

    /// The account with this email (case-insensitively) or unique id.
    pub fn get(&self, email_or_unique_id: &str) -> Option<ServiceAccount> {
        let state = self.read();
        lookup(&state.accounts, email_or_unique_id).cloned()
    }

    /// The accounts of a project, by email.
    pub fn list(&self, project: &str) -> Vec<ServiceAccount> {
        self.read()
            .accounts
            .values()
            .filter(|a| a.project_id == project)
            .cloned()
            .collect()
    }

    /// Deletes the account (by email or unique id) and all its keys.
    pub fn delete(&self, email: &str) -> Result<(), AuthError> {
        self.update(|accounts| {
            let key = find_mut(accounts, email)?.email.clone();
            accounts.remove(&key);
            Ok(())
        })
    }

    /// Deletes one key of an account.
    pub fn delete_key(&self, email: &str, key_id: &str) -> Result<(), AuthError> {
        self.update(|accounts| {
            let account = find_mut(accounts, email)?;
            let before = account.keys.len();
            account.keys.retain(|k| k.key_id != key_id);
            if account.keys.len() == before {
                return Err(AuthError::NotFound(format!("Service account key {key_id}")));
            }
            Ok(())
        })
    }

    /// Disables or enables an account: a disabled account cannot
    /// authenticate, and tokens it already holds stop working.
    pub fn set_disabled(&self, email: &str, disabled: bool) -> Result<(), AuthError> {
        self.update(|accounts| {
            find_mut(accounts, email)?.disabled = disabled;
            Ok(())
        })
    }

    /// Disables or enables one key of an account.
    pub fn set_key_disabled(
        &self,
        email: &str,
        key_id: &str,
        disabled: bool,
    ) -> Result<(), AuthError> {
        self.update(|accounts| {
            let account = find_mut(accounts, email)?;
            let key = account
                .keys
                .iter_mut()
                .find(|k| k.key_id == key_id)
                .ok_or_else(|| AuthError::NotFound(format!("Service account key {key_id}")))?;
            key.disabled = disabled;
            Ok(())
        })
    }

    /// The owner's email and the public key of the key `key_id`, if it is an
    /// enabled key of an enabled account.
    pub fn public_key(&self, key_id: &str) -> Option<(String, DecodingKey)> {
        self.read().keys.get(key_id).cloned()
    }

    /// The enabled keys (id and public key) of an account, if it exists and
    /// is enabled; empty otherwise.
    pub fn public_keys_of(&self, email: &str) -> Vec<(String, DecodingKey)> {
        let state = self.read();
        let Some(account) = lookup(&state.accounts, email) else {
            return Vec::new();
        };
        account
            .keys
            .iter()
            .filter_map(|k| {
                state
                    .keys
                    .get(&k.key_id)
                    .map(|(_, key)| (k.key_id.clone(), key.clone()))
            })
            .collect()
    }

    /// Whether the account exists and is enabled.
    pub fn is_active(&self, email: &str) -> bool {
        lookup(&self.read().accounts, email).is_some_and(|a| !a.disabled)
    }

    /// A counter that changes on every change of the registry, so that
    /// caches of verified credentials can drop what they hold when a key or
    /// account may have been deleted or disabled.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change to a copy of the accounts, persists the copy, then
    /// makes it the registry (so a failed write changes nothing).
    fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, ServiceAccount>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut accounts = state.accounts.clone();
        let out = change(&mut accounts)?;
        let keys = index(&accounts, &state.keys).map_err(AuthError::Crypto)?;
        if let Some(path) = &self.inner.path {
            let stored = Stored {
                accounts: accounts.values().cloned().collect(),
            };
            let json = serde_json::to_vec_pretty(&stored)
                .map_err(|e| AuthError::Crypto(format!("encoding the registry: {e}")))?;
            write_atomically(path, &json, true)?;
        }
        state.accounts = accounts;
        state.keys = keys;
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }
}

/// The enabled keys of enabled accounts by key id, reusing the parsed keys
/// of `previous`.
fn index(
    accounts: &BTreeMap<String, ServiceAccount>,
    previous: &HashMap<String, (String, DecodingKey)>,
) -> Result<HashMap<String, (String, DecodingKey)>, String> {
    let mut keys = HashMap::new();
    for account in accounts.values().filter(|a| !a.disabled) {
        for key in account.keys.iter().filter(|k| !k.disabled) {
            let decoding = match previous.get(&key.key_id) {
                Some((_, decoding)) => decoding.clone(),
                None => DecodingKey::from_rsa_pem(key.public_key_pem.as_bytes())
                    .map_err(|e| format!("key {}: {e}", key.key_id))?,
            };
            keys.insert(key.key_id.clone(), (account.email.clone(), decoding));
        }
    }
    Ok(keys)
}

fn lookup<'a>(
    accounts: &'a BTreeMap<String, ServiceAccount>,
    email_or_unique_id: &str,
) -> Option<&'a ServiceAccount> {
    if email_or_unique_id.contains('@') {
        accounts.get(&email_or_unique_id.to_lowercase())
    } else {
        accounts
            .values()
            .find(|a| a.unique_id == email_or_unique_id)
    }
}

fn find_mut<'a>(
    accounts: &'a mut BTreeMap<String, ServiceAccount>,
    email_or_unique_id: &str,
) -> Result<&'a mut ServiceAccount, AuthError> {
    let email = lookup(accounts, email_or_unique_id).map(|a| a.email.clone());
    email
        .and_then(|email| accounts.get_mut(&email))
        .ok_or_else(|| AuthError::NotFound(format!("Service account {email_or_unique_id}")))
}

/// 21 digits, starting with 1, as Google's service-account unique ids do.
fn unique_id() -> String {
    let mut id = String::from("1");
    for _ in 0..20 {
        id.push(char::from(b'0' + rand::random_range(0..10u8)));
    }
    id
}

/// Checks an account id as Google's IAM API does, with its wording.
pub fn validate_account_id(account_id: &str) -> Result<(), AuthError> {
    let length = account_id.chars().count();
    if !(6..=30).contains(&length) {
        return Err(AuthError::InvalidAccountId(format!(
            "The account ID \"{account_id}\" does not have a length between 6 and 30."
        )));
    }
    let bytes = account_id.as_bytes();
    let well_formed = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !well_formed {
        return Err(AuthError::InvalidAccountId(format!(
            "Service account ID \"{account_id}\" must be between 6 and 30 characters (inclusive), must begin with a lowercase letter, and consist of lowercase alphanumeric characters that can be separated by hyphens; it must match [a-z]([-a-z0-9]*[a-z0-9])."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TOKEN_URI: &str = "https://127.0.0.1:8085/token";

    #[test]
    fn account_ids_are_checked_like_googles() {
        for good in ["robot1", "my-robot-01", "abcdefghijklmnopqrstuvwxyz0123"] {
            validate_account_id(good).unwrap();
        }
        let short = validate_account_id("robot").unwrap_err();
        assert_eq!(
            short.to_string(),
            "The account ID \"robot\" does not have a length between 6 and 30."
        );
        for bad in [
            "1robot",
            "robot-",
            "Robot1",
            "rob_ot1",
            "abcdefghijklmnopqrstuvwxyz01234",
        ] {
            assert!(
                matches!(
                    validate_account_id(bad),
                    Err(AuthError::InvalidAccountId(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn create_get_list_delete() {
        let accounts = ServiceAccounts::open(None).unwrap();
        let g0 = accounts.generation();
        let account = accounts
            .create("proj", "robot-1", "Robot", "A robot")
            .unwrap();
        assert_eq!(account.email, "robot-1@proj.iam.gserviceaccount.com");
        assert_eq!(account.unique_id.len(), 21);
        assert!(account.unique_id.bytes().all(|b| b.is_ascii_digit()));
        assert!(accounts.generation() > g0);
        assert!(matches!(
            accounts.create("proj", "robot-1", "", ""),
            Err(AuthError::AlreadyExists(_))
        ));
        assert_eq!(
            accounts.get("ROBOT-1@proj.iam.gserviceaccount.com"),
            Some(account.clone())
        );
        assert_eq!(accounts.get(&account.unique_id), Some(account.clone()));
        accounts.create("other", "robot-2", "", "").unwrap();
        assert_eq!(accounts.list("proj"), vec![account.clone()]);
        accounts.delete(&account.email).unwrap();
        assert!(accounts.get(&account.email).is_none());
        assert!(matches!(
            accounts.delete(&account.email),
            Err(AuthError::NotFound(_))
        ));
    }

    #[test]
    fn keys_are_looked_up_by_id_while_enabled() {
        let accounts = ServiceAccounts::open(None).unwrap();
        let account = accounts.create("proj", "robot-1", "", "").unwrap();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let (key, file) = accounts.create_key(&account.email, TOKEN_URI, now).unwrap();
        assert_eq!(file.private_key_id, key.key_id);
        assert_eq!(file.client_id, account.unique_id);
        assert_eq!(file.token_uri, TOKEN_URI);
        assert_eq!(key.valid_after, now);
        let (owner, _) = accounts.public_key(&key.key_id).unwrap();
        assert_eq!(owner, account.email);
        assert_eq!(accounts.public_keys_of(&account.email).len(), 1);
        let g = accounts.generation();
        accounts
            .set_key_disabled(&account.email, &key.key_id, true)
            .unwrap();
        assert!(accounts.generation() > g);
        assert!(accounts.public_key(&key.key_id).is_none());
        accounts
            .set_key_disabled(&account.email, &key.key_id, false)
            .unwrap();
        accounts.set_disabled(&account.email, true).unwrap();
        assert!(accounts.public_key(&key.key_id).is_none());
        assert!(!accounts.is_active(&account.email));
        accounts.set_disabled(&account.email, false).unwrap();
        assert!(accounts.public_key(&key.key_id).is_some());
        accounts.delete_key(&account.email, &key.key_id).unwrap();
        assert!(accounts.public_key(&key.key_id).is_none());
        // An uploaded key gets an id derived from the key itself.
        let uploaded = crate::keys::generate_rsa_key().unwrap();
        let key_id = crate::keys::public_key_id(&uploaded.public_key_pem).unwrap();
        let added = accounts
            .upload_key(&account.email, &uploaded.public_key_pem, now)
            .unwrap();
        assert_eq!(added.key_id, key_id);
        assert_eq!(accounts.public_key(&key_id).unwrap().0, account.email);
        assert!(matches!(
            accounts.upload_key(&account.email, &uploaded.public_key_pem, now),
            Err(AuthError::AlreadyExists(_))
        ));
        assert!(matches!(
            accounts.upload_key(&account.email, "garbage", now),
            Err(AuthError::Crypto(_))
        ));
        assert!(matches!(
            accounts.delete_key(&account.email, &key.key_id),
            Err(AuthError::NotFound(_))
        ));
        assert!(matches!(
            accounts.create_key("nobody@proj.iam.gserviceaccount.com", TOKEN_URI, now),
            Err(AuthError::NotFound(_))
        ));
    }

    #[test]
    fn the_registry_persists_public_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let (account, key) = {
            let accounts = ServiceAccounts::open(Some(dir.path())).unwrap();
            let account = accounts.create("proj", "robot-1", "Robot", "").unwrap();
            let (key, _file) = accounts.create_key(&account.email, TOKEN_URI, now).unwrap();
            (account, key)
        };
        let text = std::fs::read_to_string(dir.path().join(ACCOUNTS_FILE)).unwrap();
        assert!(!text.contains("PRIVATE KEY"));
        assert!(text.contains("PUBLIC KEY"));
        let reopened = ServiceAccounts::open(Some(dir.path())).unwrap();
        let loaded = reopened.get(&account.email).unwrap();
        assert_eq!(loaded.unique_id, account.unique_id);
        assert_eq!(loaded.keys, vec![key.clone()]);
        assert!(reopened.public_key(&key.key_id).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(ACCOUNTS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
