#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The client against a Baton serving TLS (its development CA) with
//! authentication and IAM on: credentials from a service-account key file
//! Baton made and from Baton's metadata server, given explicitly and found
//! as Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
//! `GCE_METADATA_HOST`, with `SSL_CERT_FILE` trusting the CA). Publish and
//! pull succeed where a policy grants the role, fail with
//! `PERMISSION_DENIED` where none does, and a client without credentials is
//! `UNAUTHENTICATED`.
//!
//! The servers run on the system clock: access tokens carry real
//! timestamps (google-cloud-auth's self-signed JWTs, the token cache) and are checked
//! against the broker's clock.
//!
//! Environment variables are process-wide (and setting them is `unsafe`),
//! so the scenarios that read them run in a child process: this test
//! binary run again for [`child_scenario`] alone, with the variables set on
//! the command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_client::{
    AccessToken, BoxError, Client, ClientConfig, ConnectError, Credentials, Endpoint, Error,
    SubscriptionConfig, TokenProvider,
};
use baton_server::{MetadataSettings, ServerConfig};
use baton_testkit::auth::{OPERATOR_TOKEN, operator_auth};
use baton_testkit::process::run_test_in_child;
use baton_testkit::server::{TestServer, loopback};
use serde_json::{Value, json};
use tonic::Code;

const PROJECT: &str = "p";
/// Granted: roles/pubsub.publisher on the topic.
const TOPIC: &str = "orders";
/// Not granted to the account.
const OTHER_TOPIC: &str = "audit";
/// Granted: roles/pubsub.subscriber on the project.
const SUBSCRIPTION: &str = "orders-worker";
/// What the parent tells [`child_scenario`] to do (JSON).
const CHILD_ENV: &str = "BATON_CLIENT_AUTH_CHILD";

/// A Baton with TLS, authentication and a metadata server speaking for a
/// service account that may publish to [`TOPIC`] and consume from every
/// subscription of the project, plus a key file of that account.
struct Baton {
    server: TestServer,
    /// The development CA's certificate.
    ca: PathBuf,
    /// The account's key file.
    key_file: PathBuf,
    /// `host:port` of the metadata server (what `GCE_METADATA_HOST` holds).
    metadata_host: String,
    _dir: tempfile::TempDir,
}

impl Baton {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::new(loopback())
            .with_data_dir(dir.path().join("data"))
            .with_auth(operator_auth());
        // The account must exist before the metadata server speaks for it:
        // it is made on a first run and kept in the data directory.
        let first = TestServer::start_with(config.clone()).await;
        let email = first.create_service_account(PROJECT, "orders-app").await;
        first.shutdown().await;
        let server = TestServer::start_tls_with(config.with_metadata(MetadataSettings {
            addr: loopback(),
            service_account: email.clone(),
        }))
        .await;
        let ca = dir.path().join("ca.pem");
        std::fs::copy(server.tls_root().expect("the server serves TLS"), &ca).unwrap();
        // The key is made on the TLS run, so its token_uri is https.
        let key = server.create_key(&email).await;
        assert!(
            key["token_uri"].as_str().unwrap().starts_with("https://"),
            "{key}"
        );
        let key_file = dir.path().join("key.json");
        std::fs::write(&key_file, key.to_string()).unwrap();
        let metadata_host = server.server().metadata_addr().unwrap().to_string();

        let operator = Client::connect(
            ClientConfig::new(PROJECT)
                .with_endpoint(endpoint(&server, "localhost", true))
                .with_ca_certificate_file(&ca)
                .with_credentials(Credentials::Provider(Arc::new(StaticToken(
                    OPERATOR_TOKEN.into(),
                )))),
        )
        .await
        .unwrap();
        operator.create_topic(TOPIC).await.unwrap();
        operator.create_topic(OTHER_TOPIC).await.unwrap();
        operator
            .create_subscription(SubscriptionConfig::new(SUBSCRIPTION, TOPIC))
            .await
            .unwrap();
        let member = format!("serviceAccount:{email}");
        server
            .grant(
                &format!("projects/{PROJECT}/topics/{TOPIC}"),
                "roles/pubsub.publisher",
                &member,
            )
            .await;
        server
            .grant(
                &format!("projects/{PROJECT}"),
                "roles/pubsub.subscriber",
                &member,
            )
            .await;
        Self {
            server,
            ca,
            key_file,
            metadata_host,
            _dir: dir,
        }
    }

    /// Runs [`child_scenario`] in a child process with `env` set (and the
    /// variables that choose credentials or roots cleared otherwise).
    async fn run_child(&self, spec: Value, env: &[(&str, &Path)]) {
        let env: Vec<(&str, &std::ffi::OsStr)> = env
            .iter()
            .map(|(name, value)| (*name, value.as_os_str()))
            .collect();
        let spec = spec.to_string();
        run_test_in_child("child_scenario", CHILD_ENV, &spec, &env, &spec).await;
    }
}

/// An access token that never changes (the operator's).
struct StaticToken(String);

#[async_trait::async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self) -> Result<AccessToken, BoxError> {
        Ok(AccessToken::new(self.0.clone()))
    }
}

/// `https://{host}:{port}` of the server's gRPC port.
fn endpoint(server: &TestServer, host: &str, authenticate: bool) -> Endpoint {
    Endpoint::Custom {
        uri: format!("https://{host}:{}", server.addr.port()),
        authenticate,
    }
}

fn code<E: Into<Error> + std::fmt::Debug>(result: Result<impl std::fmt::Debug, E>) -> Code {
    match result.map_err(Into::into) {
        Err(error) if error.code().is_some() => error.code().unwrap(),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

/// What an account holding the two roles may and may not do: publish to
/// and pull from the granted topic and subscription, not publish elsewhere.
async fn exercise(client: &Client, label: &str) {
    let data = format!("hello from {label}");
    let publisher = client.publisher(TOPIC);
    let id = publisher
        .publish(baton_client::Message::new(data.clone()))
        .await
        .unwrap_or_else(|e| panic!("{label}: publish: {e}"));
    assert!(!id.is_empty());
    publisher.shutdown().await;

    let subscriber = client.subscriber(SUBSCRIPTION);
    let mut received = Vec::new();
    // Pull answers what is there; the message is there already, but a pull
    // may answer fewer than asked, so ask a few times.
    for _ in 0..20 {
        let batch = subscriber
            .pull(10)
            .await
            .unwrap_or_else(|e| panic!("{label}: pull: {e}"));
        let done = batch.iter().any(|m| m.data() == data.as_bytes());
        for message in batch {
            received.push(String::from_utf8_lossy(message.data()).into_owned());
            message.ack();
        }
        if done {
            break;
        }
    }
    assert!(received.contains(&data), "{label}: pulled {received:?}");

    let elsewhere = client.publisher(OTHER_TOPIC);
    let denied = elsewhere
        .publish(baton_client::Message::new("not allowed"))
        .await;
    assert_eq!(code(denied), Code::PermissionDenied, "{label}");
    elsewhere.shutdown().await;
}

/// A client without credentials (TLS alone) is refused.
async fn assert_unauthenticated(baton: &Baton) {
    let anonymous = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(endpoint(&baton.server, "127.0.0.1", false))
            .with_ca_certificate(std::fs::read(&baton.ca).unwrap()),
    )
    .await
    .unwrap();
    let publisher = anonymous.publisher(TOPIC);
    let refused = publisher
        .publish(baton_client::Message::new("anonymous"))
        .await;
    assert_eq!(code(refused), Code::Unauthenticated);
    let pulled = anonymous.subscriber(SUBSCRIPTION).pull(1).await;
    assert_eq!(code(pulled), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_server_credentials_given_explicitly() {
    let baton = Baton::start().await;
    // The certificate is checked for the URI's host, a name or an address.
    for host in ["localhost", "127.0.0.1"] {
        let client = Client::connect(
            ClientConfig::new(PROJECT)
                .with_endpoint(endpoint(&baton.server, host, true))
                .with_ca_certificate_file(&baton.ca)
                .with_credentials(Credentials::MetadataServer(baton.metadata_host.clone())),
        )
        .await
        .unwrap();
        exercise(&client, &format!("the metadata server via {host}")).await;
    }
    assert_unauthenticated(&baton).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_and_application_default_credentials_from_the_environment() {
    let baton = Baton::start().await;
    assert_unauthenticated(&baton).await;
    let uri = format!("https://localhost:{}", baton.server.addr.port());
    // The key file's tokens are self-signed; the channel trusts
    // SSL_CERT_FILE.
    baton
        .run_child(
            json!({"uri": uri, "key_file": baton.key_file}),
            &[("SSL_CERT_FILE", &baton.ca)],
        )
        .await;
    // Application Default Credentials: the key file...
    baton
        .run_child(
            json!({"uri": uri}),
            &[
                ("SSL_CERT_FILE", &baton.ca),
                ("GOOGLE_APPLICATION_CREDENTIALS", &baton.key_file),
            ],
        )
        .await;
    // ...or the metadata server.
    baton
        .run_child(
            json!({"uri": uri}),
            &[
                ("SSL_CERT_FILE", &baton.ca),
                ("GCE_METADATA_HOST", Path::new(&baton.metadata_host)),
            ],
        )
        .await;
}

/// Run by [`Baton::run_child`] in a child process (does nothing in a
/// normal run): connects as [`CHILD_ENV`] says, with no CA or credentials
/// given in code, and exercises the granted and refused calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_scenario() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("google_cloud_auth=warn")
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = ClientConfig::new(PROJECT).with_endpoint(Endpoint::Custom {
        uri: spec["uri"].as_str().unwrap().to_string(),
        authenticate: true,
    });
    let label = match spec["key_file"].as_str() {
        Some(path) => {
            config = config.with_credentials(Credentials::KeyFile(path.into()));
            "a key file".to_string()
        }
        None => format!(
            "application default credentials ({})",
            if std::env::var_os("GCE_METADATA_HOST").is_some() {
                "GCE_METADATA_HOST"
            } else {
                "GOOGLE_APPLICATION_CREDENTIALS"
            }
        ),
    };
    let client = Client::connect(config).await.unwrap();
    exercise(&client, &label).await;
}

#[tokio::test]
async fn unusable_credentials_and_roots_say_what_is_wrong() {
    let missing = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: "https://127.0.0.1:1".into(),
                authenticate: true,
            })
            .with_credentials(Credentials::KeyFile("/nonexistent/key.json".into())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(missing, ConnectError::KeyFile { .. }),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("/nonexistent/key.json"),
        "{missing}"
    );

    let no_ca = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: "https://127.0.0.1:1".into(),
                authenticate: false,
            })
            .with_ca_certificate_file("/nonexistent/ca.pem"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(no_ca, ConnectError::CaCertificates { .. }),
        "{no_ca:?}"
    );
    assert!(no_ca.to_string().contains("/nonexistent/ca.pem"), "{no_ca}");

    // A metadata server that is not there: the first call says which URL
    // failed. (Port 1 on loopback refuses at once.)
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: "http://127.0.0.1:1".into(),
                authenticate: true,
            })
            .with_credentials(Credentials::MetadataServer("127.0.0.1:1".into())),
    )
    .await
    .unwrap();
    let error = client.create_topic(TOPIC).await.unwrap_err();
    assert_eq!(error.code(), Some(Code::Unauthenticated), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(
            "http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/default/token"
        ),
        "{message}"
    );
    // The status keeps its cause as a typed error, after the retry layer.
    let cause = error
        .status()
        .and_then(std::error::Error::source)
        .and_then(|source| source.downcast_ref::<baton_client::CredentialsError>());
    assert!(cause.is_some(), "{error:?}");
}

/// A key file given explicitly, trusting the CA in code alone: its tokens
/// are self-signed JWTs (google-cloud-auth never calls the file's
/// `token_uri`), so no SSL_CERT_FILE is needed; the same file as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_and_json_given_explicitly() {
    let baton = Baton::start().await;
    let json: Value = serde_json::from_slice(&std::fs::read(&baton.key_file).unwrap()).unwrap();
    for (label, credentials) in [
        ("a key file", Credentials::KeyFile(baton.key_file.clone())),
        ("key JSON", Credentials::Json(json)),
    ] {
        let client = Client::connect(
            ClientConfig::new(PROJECT)
                .with_endpoint(endpoint(&baton.server, "localhost", true))
                .with_ca_certificate_file(&baton.ca)
                .with_credentials(credentials),
        )
        .await
        .unwrap();
        exercise(&client, label).await;
    }
}
