//! RSA keys and Google's service-account key-file format.
//!
//! Baton generates a service account's key pair, hands the private half to
//! the caller once, inside a [`ServiceAccountKeyFile`] that Google's client
//! libraries load unchanged, and keeps only the public half.

use std::fmt;

use rsa::pkcs8::{DecodePublicKey as _, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::AuthError;

/// The size of every RSA key Baton generates, as Google's are.
pub const RSA_KEY_BITS: usize = 2048;

/// The `type` of a service-account key file.
pub const SERVICE_ACCOUNT_TYPE: &str = "service_account";

/// The `universe_domain` Google's key files carry.
pub const UNIVERSE_DOMAIN: &str = "googleapis.com";

/// A service-account key file, field for field Google's JSON format (what
/// `gcloud iam service-accounts keys create` writes), so that Python's
/// `service_account.Credentials.from_service_account_file`, Node's
/// google-auth-library and the other clients load it unchanged. Only
/// `token_uri` points at Baton; the clients sign their assertions with
/// `private_key`, name the key by `private_key_id`, and send them there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKeyFile {
    /// Always `"service_account"`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// The project that owns the account.
    pub project_id: String,
    /// The key's id (40 hex digits): the `kid` of what the key signs.
    pub private_key_id: String,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key: String,
    /// The account's email.
    pub client_email: String,
    /// The account's unique id (21 digits).
    pub client_id: String,
    /// The OAuth authorization endpoint (Google's; no client uses it for
    /// service accounts).
    pub auth_uri: String,
    /// Where clients exchange signed assertions for access tokens: Baton's
    /// token endpoint.
    pub token_uri: String,
    /// Where Google publishes its own certificates (informational).
    pub auth_provider_x509_cert_url: String,
    /// Where the account's public certificates are published (informational).
    pub client_x509_cert_url: String,
    /// Always `"googleapis.com"`.
    pub universe_domain: String,
}

impl ServiceAccountKeyFile {
    /// A key file for `email`'s key `key`, whose clients fetch tokens from
    /// `token_uri`. The informational URLs are Google's, as in a real file.
    pub fn new(
        project_id: &str,
        email: &str,
        unique_id: &str,
        key: &GeneratedKey,
        token_uri: &str,
    ) -> Self {
        let encoded_email: String = email
            .bytes()
            .map(|b| match b {
                b'@' => "%40".to_string(),
                _ => (b as char).to_string(),
            })
            .collect();
        ServiceAccountKeyFile {
            key_type: SERVICE_ACCOUNT_TYPE.to_string(),
            project_id: project_id.to_string(),
            private_key_id: key.key_id.clone(),
            private_key: key.private_pkcs8_pem.clone(),
            client_email: email.to_string(),
            client_id: unique_id.to_string(),
            auth_uri: "https://accounts.google.com/o/oauth2/auth".to_string(),
            token_uri: token_uri.to_string(),
            auth_provider_x509_cert_url: "https://www.googleapis.com/oauth2/v1/certs".to_string(),
            client_x509_cert_url: format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{encoded_email}"
            ),
            universe_domain: UNIVERSE_DOMAIN.to_string(),
        }
    }

    /// Parses a key file (JSON).
    pub fn from_json(json: &[u8]) -> Result<Self, AuthError> {
        serde_json::from_slice(json).map_err(|e| AuthError::Malformed(e.to_string()))
    }

    /// The key file as pretty JSON, as gcloud writes it.
    pub fn to_json(&self) -> Result<String, AuthError> {
        serde_json::to_string_pretty(self).map_err(|e| AuthError::Crypto(e.to_string()))
    }
}

/// Never prints the private key.
impl fmt::Debug for ServiceAccountKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKeyFile")
            .field("type", &self.key_type)
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// A freshly generated RSA key pair, PEM encoded.
#[derive(Clone)]
pub struct GeneratedKey {
    /// 40 random hex digits, like Google's `private_key_id`.
    pub key_id: String,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_pkcs8_pem: String,
    /// The public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
}

/// Never prints the private key.
impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key_id", &self.key_id)
            .field("private_pkcs8_pem", &"<redacted>")
            .field("public_key_pem", &self.public_key_pem)
            .finish()
    }
}

/// Generates a 2048-bit RSA key pair (public exponent 65537) from the
/// operating system's random source, with a random 40-hex-digit key id.
pub fn generate_rsa_key() -> Result<GeneratedKey, AuthError> {
    let private = PrivateKey::new(&mut getrandom::SysRng, RSA_KEY_BITS)
        .map_err(|e| AuthError::Crypto(format!("generating an RSA key: {e}")))?;
    let private_pkcs8_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| AuthError::Crypto(format!("encoding an RSA key: {e}")))?
        .to_string();
    let public_key_pem = public_key_pem(&PublicKey::from(&private))?;
    Ok(GeneratedKey {
        key_id: random_hex(20),
        private_pkcs8_pem,
        public_key_pem,
    })
}

/// The id Baton gives a public key it did not generate (an uploaded key,
/// its own signing key): the first 20 bytes of the SHA-256 of the key's
/// SPKI DER, as 40 hex digits. Refuses anything but an RSA public key in
/// SPKI PEM.
pub fn public_key_id(public_key_pem: &str) -> Result<String, AuthError> {
    let public = PublicKey::from_public_key_pem(public_key_pem)
        .map_err(|e| AuthError::Crypto(format!("not an RSA public key: {e}")))?;
    spki_key_id(&public)
}

/// The key id of a public key (see [`public_key_id`]).
pub(crate) fn spki_key_id(public: &PublicKey) -> Result<String, AuthError> {
    let der = public
        .to_public_key_der()
        .map_err(|e| AuthError::Crypto(format!("encoding an RSA public key: {e}")))?;
    Ok(Sha256::digest(der.as_bytes())[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `len` random bytes as lowercase hex.
pub(crate) fn random_hex(len: usize) -> String {
    (0..len)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A public key as SPKI PEM.
pub(crate) fn public_key_pem(public: &PublicKey) -> Result<String, AuthError> {
    public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| AuthError::Crypto(format!("encoding an RSA public key: {e}")))
}

/// The modulus and exponent of a public key, big-endian without leading
/// zeros (the `n` and `e` of a JWK, before base64url).
pub(crate) fn rsa_components(public: &PublicKey) -> (Vec<u8>, Vec<u8>) {
    (public.n_bytes().into_vec(), public.e_bytes().into_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn generated_keys_are_2048_bit_pkcs8_and_spki() {
        let key = generate_rsa_key().unwrap();
        assert_eq!(key.key_id.len(), 40);
        assert!(key.key_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(
            key.private_pkcs8_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(
            key.private_pkcs8_pem
                .ends_with("-----END PRIVATE KEY-----\n")
        );
        assert!(
            key.public_key_pem
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        use rsa::pkcs8::DecodePrivateKey;
        let private = PrivateKey::from_pkcs8_pem(&key.private_pkcs8_pem).unwrap();
        assert_eq!(private.size() * 8, RSA_KEY_BITS);
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE KEY"));
    }

    #[test]
    fn key_files_have_exactly_googles_fields() {
        let key = generate_rsa_key().unwrap();
        let file = ServiceAccountKeyFile::new(
            "my-project",
            "robot-1@my-project.iam.gserviceaccount.com",
            "123456789012345678901",
            &key,
            "https://127.0.0.1:8085/token",
        );
        let json: serde_json::Value = serde_json::from_str(&file.to_json().unwrap()).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "auth_provider_x509_cert_url",
                "auth_uri",
                "client_email",
                "client_id",
                "client_x509_cert_url",
                "private_key",
                "private_key_id",
                "project_id",
                "token_uri",
                "type",
                "universe_domain"
            ]
        );
        assert_eq!(json["type"], "service_account");
        assert_eq!(json["universe_domain"], "googleapis.com");
        assert_eq!(
            json["client_x509_cert_url"],
            "https://www.googleapis.com/robot/v1/metadata/x509/robot-1%40my-project.iam.gserviceaccount.com"
        );
        let parsed = ServiceAccountKeyFile::from_json(file.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(parsed, file);
        assert!(!format!("{file:?}").contains("PRIVATE KEY"));
    }
}
