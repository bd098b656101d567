//! TLS on the server's ports (gRPC, REST and the web view on the main port;
//! the OTLP receivers on theirs).
//!
//! The certificate comes from PEM files ([`TlsSettings::Files`]) or is a
//! development certificate Baton makes and keeps ([`TlsSettings::Development`]):
//! a small CA (`ca.pem`, `ca-key.pem`) signing a server certificate
//! (`cert.pem`, `key.pem`) for `localhost`, `127.0.0.1`, `::1` and the bound
//! address. Clients trust `ca.pem`. A CA plus a leaf, rather than one
//! self-signed certificate, because rustls/webpki rejects a CA certificate
//! presented as a server certificate and a non-CA certificate used as a trust
//! root is not accepted everywhere either; the pair works with gRPC C-core
//! (Python), OpenSSL, Node and rustls alike. The files are reused on restart
//! (so a client trusts them once); the server certificate alone is reissued
//! by the kept CA when it no longer covers the bound address.
//!
//! The rustls configuration offers ALPN `h2` and `http/1.1`: gRPC clients
//! (C-core in particular) insist on `h2`, browsers and REST clients may use
//! either; the connection builder detects the protocol itself.

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier as _;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// File name of the development CA certificate (what clients trust).
pub const DEV_CA_FILE: &str = "ca.pem";
/// File name of the development CA's private key (mode 0600).
pub const DEV_CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the development server certificate.
pub const DEV_CERT_FILE: &str = "cert.pem";
/// File name of the development server certificate's key (mode 0600).
pub const DEV_KEY_FILE: &str = "key.pem";

/// Subject of the development CA. It is fixed so that the kept CA key can
/// sign a new server certificate whose issuer matches the kept `ca.pem`.
const DEV_CA_NAME: &str = "Baton development CA (do not trust in production)";
/// Subject of the development server certificate.
const DEV_CERT_NAME: &str = "Baton development server";

/// Where the server's TLS certificate comes from. Plain text (no TLS) is
/// the default of [`ServerConfig`](crate::ServerConfig); set one of these
/// with [`ServerConfig::with_tls`](crate::ServerConfig::with_tls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// A certificate chain and its private key, PEM files (from your own
    /// CA, or a public one). Clients trust whatever issued `cert`.
    Files {
        /// The certificate chain, server certificate first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A development CA and server certificate that Baton makes in `dir`
    /// (created if missing) and reuses on later starts: `ca.pem` (trust
    /// this), `ca-key.pem`, `cert.pem`, `key.pem` (keys mode 0600 on Unix).
    Development {
        /// The directory holding the files (`baton serve` uses
        /// `<data-dir>/tls`).
        dir: PathBuf,
    },
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// A development certificate file or its directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Making the development CA or certificate failed.
    #[error("cannot make the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key (a key not matching the
    /// certificate, say).
    #[error("invalid TLS certificate or key: {0}")]
    Config(#[from] rustls::Error),
}

/// TLS ready to serve: the acceptor wrapping accepted connections and the
/// file clients should trust.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) root: PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("root", &self.root).finish()
    }
}

/// Loads or makes the certificate `settings` name, for a server bound to
/// `addr`.
pub(crate) fn prepare(settings: &TlsSettings, addr: SocketAddr) -> Result<Tls, TlsError> {
    let (cert, key, root) = match settings {
        TlsSettings::Files { cert, key } => (cert.clone(), key.clone(), cert.clone()),
        TlsSettings::Development { dir } => {
            development_files(dir, addr.ip())?;
            (
                dir.join(DEV_CERT_FILE),
                dir.join(DEV_KEY_FILE),
                dir.join(DEV_CA_FILE),
            )
        }
    };
    let chain = load_certs(&cert)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|source| TlsError::Read {
        path: key.clone(),
        source,
    })?;
    let config = server_config(chain, key)?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        root,
    })
}

/// The certificates of a PEM file, in order.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

/// rustls (ring) serving `chain`, offering HTTP/2 and HTTP/1.1 by ALPN.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The names the development certificate is valid for: loopback by name
/// and address, plus the bound address when it is a specific other one.
fn development_names(bound: IpAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !bound.is_unspecified() && !bound.is_loopback() {
        names.push(bound.to_string());
    }
    names
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, DEV_CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Makes sure `dir` holds a development CA and a server certificate it
/// signed that covers [`development_names`] of `bound`; keeps what is there
/// when it still fits.
fn development_files(dir: &Path, bound: IpAddr) -> Result<(), TlsError> {
    create_private_dir(dir)?;
    let ca_path = dir.join(DEV_CA_FILE);
    let ca_key_path = dir.join(DEV_CA_KEY_FILE);
    let cert_path = dir.join(DEV_CERT_FILE);
    let key_path = dir.join(DEV_KEY_FILE);
    let names = development_names(bound);

    let kept_ca = match (fs::read_to_string(&ca_key_path), load_certs(&ca_path).ok()) {
        (Ok(pem), Some(_)) => KeyPair::from_pem(&pem).ok(),
        _ => None,
    };
    let (ca_key, new_ca) = match kept_ca {
        Some(key) => (key, false),
        None => {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_file(&ca_key_path, &key.serialize_pem(), true)?;
            write_file(&ca_path, &cert.pem(), false)?;
            tracing::info!(path = %ca_path.display(), "made a development CA");
            (key, true)
        }
    };
    if !new_ca && leaf_fits(&ca_path, &cert_path, &key_path, &names) {
        tracing::debug!(path = %cert_path.display(), "reusing the development certificate");
        return Ok(());
    }
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(names)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, DEV_CERT_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    tracing::info!(path = %cert_path.display(), "made a development server certificate");
    Ok(())
}

/// Whether the kept server certificate chains to the kept CA, is valid now
/// for every one of `names`, and has its key beside it.
fn leaf_fits(ca: &Path, cert: &Path, key: &Path, names: &[String]) -> bool {
    let (Ok(roots), Ok(chain)) = (load_certs(ca), load_certs(cert)) else {
        return false;
    };
    if PrivateKeyDer::from_pem_file(key).is_err() {
        return false;
    }
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        if store.add(root).is_err() {
            return false;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider).build()
    else {
        return false;
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    names.iter().all(|name| {
        ServerName::try_from(name.as_str()).is_ok_and(|server_name| {
            verifier
                .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
                .is_ok()
        })
    })
}

/// Creates `dir` (and its parents); on Unix a new directory is mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` through a temporary file renamed into
/// place, so a crash never leaves half a key; `private` files are mode 0600
/// on Unix from the moment they exist.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
    fs::rename(&tmp, path).map_err(error)
}

/// How to make clients trust `root`, for the startup log.
pub(crate) fn trust_hint(root: &Path) -> String {
    let root = root.display();
    format!(
        "TLS on; trust {root}: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={root} (gRPC C-core: Python, \
         Ruby, PHP, C++), SSL_CERT_FILE={root} (Rust rustls-native-certs, OpenSSL, Go), \
         REQUESTS_CA_BUNDLE={root} (Python requests / google-auth), \
         NODE_EXTRA_CA_CERTS={root} (Node)"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_loopback_and_a_specific_bound_address() {
        let names = development_names(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(names, ["localhost", "127.0.0.1", "::1"]);
        let names = development_names(IpAddr::from([10, 1, 2, 3]));
        assert_eq!(names.last().map(String::as_str), Some("10.1.2.3"));
    }

    #[test]
    fn the_server_certificate_is_reissued_by_the_kept_ca_for_a_new_address() {
        let dir = tempfile::tempdir().unwrap();
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        development_files(dir.path(), IpAddr::from([127, 0, 0, 1])).unwrap();
        let (ca, cert) = (read(DEV_CA_FILE), read(DEV_CERT_FILE));
        let names = development_names(IpAddr::from([127, 0, 0, 1]));
        let at = |name: &str| dir.path().join(name);
        assert!(leaf_fits(
            &at(DEV_CA_FILE),
            &at(DEV_CERT_FILE),
            &at(DEV_KEY_FILE),
            &names
        ));

        development_files(dir.path(), IpAddr::from([10, 9, 8, 7])).unwrap();
        assert_eq!(read(DEV_CA_FILE), ca, "the CA is kept");
        assert_ne!(read(DEV_CERT_FILE), cert, "a new server certificate");
        let names = development_names(IpAddr::from([10, 9, 8, 7]));
        assert!(leaf_fits(
            &at(DEV_CA_FILE),
            &at(DEV_CERT_FILE),
            &at(DEV_KEY_FILE),
            &names
        ));
        // And kept from then on.
        let reissued = read(DEV_CERT_FILE);
        development_files(dir.path(), IpAddr::from([10, 9, 8, 7])).unwrap();
        assert_eq!(read(DEV_CERT_FILE), reissued);
    }
}
