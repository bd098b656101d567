//! Baton's own signing key: it signs the access tokens Baton issues and the
//! OIDC ID tokens it attaches to push requests, and is published (JWKS and
//! X.509 certificates) so that push endpoints can verify those.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{PrivateKey, PublicKey};
use serde::Serialize;

use crate::error::{AuthError, io_error};
use crate::fsutil::write_atomically;
use crate::keys::{generate_rsa_key, rsa_components, spki_key_id};

/// The file, inside the state directory, that holds the private key
/// (PKCS#8 PEM, mode 0600).
pub const SIGNING_KEY_FILE: &str = "signing-key.pem";

/// Baton's RS256 signing key, with its published forms (JWKS, X.509
/// certificate) computed once at construction.
pub struct SigningKey {
    key_id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_key_pem: String,
    jwks: serde_json::Value,
    certificate_pem: String,
}

/// Never prints key material.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// With a directory, loads `dir/signing-key.pem`, or generates a key and
    /// stores it there (created with mode 0600, written atomically), so the
    /// key, and every token it signed, survives a restart. Without one, an
    /// ephemeral key that lives as long as the process.
    pub fn load_or_create(dir: Option<&Path>) -> Result<SigningKey, AuthError> {
        let Some(dir) = dir else {
            return SigningKey::from_pkcs8_pem(&generate_rsa_key()?.private_pkcs8_pem);
        };
        let path = dir.join(SIGNING_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| AuthError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
                let pem = generate_rsa_key()?.private_pkcs8_pem;
                write_atomically(&path, pem.as_bytes(), true)?;
                SigningKey::from_pkcs8_pem(&pem)
            }
            Err(e) => Err(io_error(format!("reading {}", path.display()), e)),
        }
    }

    /// A signing key from a PKCS#8 PEM private key. Its key id is derived
    /// from the public key (the first 20 bytes of the SHA-256 of its SPKI
    /// DER, in hex), so it is the same on every load of the same key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, AuthError> {
        let private = PrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| AuthError::Crypto(format!("parsing the signing key: {e}")))?;
        let public = PublicKey::from(&private);
        let key_id = spki_key_id(&public)?;
        let public_key_pem = crate::keys::public_key_pem(&public)?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| AuthError::Crypto(format!("loading the signing key: {e}")))?;
        let decoding = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .map_err(|e| AuthError::Crypto(format!("loading the signing key: {e}")))?;
        let (n, e) = rsa_components(&public);
        let jwks = serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": key_id,
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
            }]
        });
        let certificate_pem = self_signed_certificate(pem, &key_id)?;
        Ok(SigningKey {
            key_id,
            encoding,
            decoding,
            public_key_pem,
            jwks,
            certificate_pem,
        })
    }

    /// The key id, the `kid` header of everything this key signs.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, SPKI PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The key for verifying what this key signed.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The JSON Web Key Set (`/oauth2/v3/certs`):
    /// `{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":..,"n":..,"e":..}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
    }

    /// The key as a self-signed X.509 certificate, in the format of
    /// `https://www.googleapis.com/oauth2/v1/certs` (`{kid: PEM}`), which
    /// Python google-auth's `id_token.verify_token(..., certs_url=...)`
    /// takes without pyjwt.
    pub fn x509_certs(&self) -> serde_json::Value {
        serde_json::json!({ self.key_id.clone(): self.certificate_pem.clone() })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid` in the header.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Crypto(format!("signing a token: {e}")))
    }
}

/// A self-signed certificate (CN = the key id) for the key.
fn self_signed_certificate(private_pkcs8_pem: &str, key_id: &str) -> Result<String, AuthError> {
    let crypto = |e: rcgen::Error| AuthError::Crypto(format!("certifying the signing key: {e}"));
    let key_pair =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(private_pkcs8_pem, &rcgen::PKCS_RSA_SHA256)
            .map_err(crypto)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, key_id);
    let certificate = params.self_signed(&key_pair).map_err(crypto)?;
    Ok(certificate.pem())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_key_in_a_directory_is_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKey::load_or_create(Some(dir.path())).unwrap();
        let second = SigningKey::load_or_create(Some(dir.path())).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.jwks(), second.jwks());
        assert_eq!(first.key_id().len(), 40);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the key file is left (no temporary file).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SIGNING_KEY_FILE]);
        let ephemeral = SigningKey::load_or_create(None).unwrap();
        assert_ne!(ephemeral.key_id(), first.key_id());
        assert!(!format!("{first:?}").contains("PRIVATE"));
    }

    #[test]
    fn published_forms_name_the_key() {
        let key = SigningKey::load_or_create(None).unwrap();
        let jwks = key.jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.key_id());
        assert_eq!(jwk["e"], "AQAB");
        let certs = key.x509_certs();
        let pem = certs[key.key_id()].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(certs.as_object().unwrap().len(), 1);
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNING_KEY_FILE), "garbage").unwrap();
        let error = SigningKey::load_or_create(Some(dir.path())).unwrap_err();
        assert!(matches!(error, AuthError::Corrupt { .. }), "{error}");
    }
}
