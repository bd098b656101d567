#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The credential kinds whose tokens come from another Google endpoint
//! than the key file's own, each against a real `baton serve` with TLS (its
//! development CA), authentication and IAM on, which serves that endpoint
//! itself: an authorized user's refresh-token grant (`/token`, the
//! credential made by the operator as `baton auth application-default
//! login` does), Workload Identity Federation's STS token exchange
//! (`/v1/token`, a subject token of a workload identity pool provider the
//! server trusts, with a key the test makes), and the IAM Credentials API's
//! `generateAccessToken` (impersonation configs,
//! `service_account_impersonation_url`, and [`Impersonation`]). Each then
//! makes a call its principal's policy allows and one it does not, which
//! fails with PERMISSION_DENIED as a typed error. Plus an explicit token
//! provider whose expired token is refreshed on paused time.
//!
//! Everything runs over TLS: the gRPC channel (`https://localhost:PORT`,
//! trusting the CA given in code) and every token request. The servers are
//! started with TLS before any credential is made, so the URLs Baton writes
//! into credentials (an authorized user's `token_uri`) and those the
//! configs name (`token_url`, `service_account_impersonation_url`) are
//! `https://`, asserted where they are made.
//!
//! `google-cloud-auth` makes its own token requests (the refresh-token
//! grant, STS, `generateAccessToken` of configs) trusting only the system
//! roots or `SSL_CERT_FILE`, and environment variables are process-wide
//! (setting them is `unsafe`), so the scenarios that use it run in a child
//! process: this test binary run again for [`child_scenario`] alone, with
//! `SSL_CERT_FILE` naming the CA on the command. One child runs without it
//! and its token request fails on the server's certificate, which shows
//! that request is made over TLS. Baton's own [`Impersonation`] makes its call with the client's CA
//! certificates, and its source key file signs its own tokens, so that
//! scenario runs in the test's process; so does the token provider's.
//!
//! The servers run on the system clock, but for the provider's test, whose
//! server (TLS too) follows its paused clock: google-cloud-auth reads the `expireTime` of
//! `generateAccessToken` against the wall clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_client::{
    AccessToken, BoxError, Client, ClientConfig, Credentials, Endpoint, Impersonation,
    REFRESH_MARGIN, TokenProvider,
};
use baton_server::{ServerConfig, WorkloadIdentityProviderSettings};
use baton_testkit::auth::{OPERATOR_TOKEN, operator_auth};
use baton_testkit::process::run_test_in_child;
use baton_testkit::server::{TestServer, loopback, virtual_config};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

const PROJECT: &str = "p";
/// The topic every principal below is granted to publish to.
const TOPIC: &str = "orders";
const PUBLISHER: &str = "roles/pubsub.publisher";
const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";
const POOL: &str = "projects/123/locations/global/workloadIdentityPools/ci";
const ISSUER: &str = "https://token.actions.example.com";
/// What the parent tells [`child_scenario`] to do (JSON).
const CHILD_ENV: &str = "BATON_CLIENT_CREDENTIALS_CHILD";

fn provider_audience() -> String {
    format!("//iam.googleapis.com/{POOL}/providers/gh")
}

fn federated(subject: &str) -> String {
    format!("principal://iam.googleapis.com/{POOL}/subject/{subject}")
}

/// A `baton serve` with TLS, authentication and IAM on, and the topic.
struct Baton {
    server: TestServer,
    /// The development CA's certificate.
    ca: PathBuf,
    /// Where the test keeps the CA, credential files and subject tokens.
    dir: tempfile::TempDir,
}

impl Baton {
    /// Starts the server with TLS (before any credential is made, so the
    /// URLs it writes into them are `https`), trusting `issuer` (a key the
    /// test made) as the OIDC issuer of the pool provider.
    async fn start(issuer: Option<&baton_auth::SigningKey>) -> Self {
        let mut config = ServerConfig::new(loopback()).with_auth(operator_auth());
        if let Some(key) = issuer {
            config = config.with_workload_identity_provider(WorkloadIdentityProviderSettings {
                audience: provider_audience(),
                issuer: ISSUER.into(),
                jwks: Some(key.jwks()),
            });
        }
        Self::around(TestServer::start_tls_with(config).await).await
    }

    /// Copies `server`'s CA and creates the topic as the operator.
    async fn around(server: TestServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::copy(server.tls_root().expect("the server serves TLS"), &ca).unwrap();
        assert_https(&server, &json!(server.url("/token")), "/token");
        server
            .as_operator(
                Method::PUT,
                &format!("/v1/projects/{PROJECT}/topics/{TOPIC}"),
                json!({}),
            )
            .await;
        Self { server, ca, dir }
    }

    /// `https://localhost:PORT`, the gRPC endpoint (the certificate names
    /// `localhost`).
    fn uri(&self) -> String {
        format!("https://localhost:{}", self.server.addr.port())
    }

    /// A client of the server over TLS (trusting the CA given in code)
    /// that authenticates with `credentials`.
    async fn connect(&self, credentials: Credentials) -> Client {
        connect(&self.uri(), &self.ca, credentials).await
    }

    /// A `generateAccessToken` URL of the server for `email`, asserted to
    /// be `https`.
    fn generate_access_token_url(&self, email: &str) -> String {
        let path = format!("/v1/projects/-/serviceAccounts/{email}:generateAccessToken");
        let url = self.server.url(&path);
        assert_https(&self.server, &json!(url), &path);
        url
    }

    /// Runs [`child_scenario`] in a child process: `credentials` (`{"json":
    /// ...}` or `{"file": path}`) connect to the server over TLS (the CA
    /// given in code) and do what `expect` says. `SSL_CERT_FILE` names the
    /// CA when `trust_token_requests` (google-cloud-auth's own requests
    /// trust nothing else); the variables that choose credentials or roots
    /// are cleared otherwise.
    async fn run_child(
        &self,
        credentials: Value,
        label: &str,
        expect: &str,
        trust_token_requests: bool,
    ) {
        let spec = json!({
            "uri": self.uri(),
            "ca": self.ca,
            "credentials": credentials,
            "label": label,
            "expect": expect,
        });
        let trust = [("SSL_CERT_FILE", self.ca.as_os_str())];
        let env: &[(&str, &std::ffi::OsStr)] = if trust_token_requests { &trust } else { &[] };
        let label = format!("{label} ({expect})");
        run_test_in_child("child_scenario", CHILD_ENV, &spec.to_string(), env, &label).await;
    }
}

/// Asserts `url` (a URL Baton wrote or the test built from
/// [`TestServer::url`]) is `https` and names the server's `path`.
#[track_caller]
fn assert_https(server: &TestServer, url: &Value, path: &str) {
    let url = url.as_str().unwrap_or_else(|| panic!("not a URL: {url}"));
    assert!(url.starts_with("https://"), "{url}");
    assert_eq!(url, server.url(path));
}

/// A client of `uri` (TLS, trusting `ca`) that authenticates with
/// `credentials`.
async fn connect(uri: &str, ca: &Path, credentials: Credentials) -> Client {
    Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: uri.to_string(),
                authenticate: true,
            })
            .with_ca_certificate_file(ca)
            .with_credentials(credentials),
    )
    .await
    .unwrap()
}

/// Sets `resource`'s policy to these bindings, as the operator.
async fn set_policy(server: &TestServer, resource: &str, bindings: &[(&str, &[&str])]) {
    let bindings: Vec<Value> = bindings
        .iter()
        .map(|(role, members)| json!({"role": role, "members": members}))
        .collect();
    server
        .as_operator(
            Method::POST,
            &format!("/v1/{resource}:setIamPolicy"),
            json!({"policy": {"bindings": bindings}}),
        )
        .await;
}

/// An authorized-user credential for `account`, issued by the operator
/// (what `baton auth application-default login` asks for); its
/// `token_uri` is the server's, over TLS.
async fn login(server: &TestServer, account: &str) -> Value {
    let file = server
        .as_operator(
            Method::POST,
            "/api/authorized-users",
            json!({"account": account}),
        )
        .await;
    assert_eq!(file["type"], "authorized_user", "{file}");
    assert_https(server, &file["token_uri"], "/token");
    file
}

/// Grants `member` the publisher role on [`TOPIC`].
async fn let_publish(server: &TestServer, member: &str) {
    set_policy(
        server,
        &format!("projects/{PROJECT}/topics/{TOPIC}"),
        &[(PUBLISHER, &[member])],
    )
    .await;
}

/// Publishes `data` to [`TOPIC`] with `client`, which must fail; answers
/// the failure.
async fn refused_publish(client: &Client, data: &str) -> baton_client::PublishError {
    let publisher = client.publisher(TOPIC);
    let refused = publisher
        .publish(baton_client::Message::new(data.to_string()))
        .await
        .expect_err("the publish should be refused");
    publisher.shutdown().await;
    refused
}

/// Publishing to [`TOPIC`] with `client` works (its token came from Baton
/// and is the principal `label` says), creating a topic is denied by IAM
/// with PERMISSION_DENIED.
async fn allowed_then_denied(client: &Client, label: &str) {
    let publisher = client.publisher(TOPIC);
    publisher
        .publish(baton_client::Message::new(label.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{label}: publish: {e:?}"));
    publisher.shutdown().await;
    let denied = client
        .create_topic(&format!("{label}-topic"))
        .await
        .expect_err("creating a topic is not granted");
    assert_eq!(
        denied.code(),
        Some(Code::PermissionDenied),
        "{label}: {denied}"
    );
}

/// An OIDC issuer's key, made for the test.
fn issuer_key() -> baton_auth::SigningKey {
    baton_auth::SigningKey::from_pkcs8_pem(
        &baton_auth::generate_rsa_key().unwrap().private_pkcs8_pem,
    )
    .unwrap()
}

/// A subject token of `key` for `subject`, for the provider, valid for ten
/// minutes.
fn subject_token(key: &baton_auth::SigningKey, subject: &str) -> String {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    key.sign(&json!({
        "iss": ISSUER,
        "aud": format!("https:{}", provider_audience()),
        "sub": subject,
        "iat": iat,
        "exp": iat + 600,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_user_refreshes_at_batons_token_uri() {
    let baton = Baton::start(None).await;
    let user = login(&baton.server, "alice@example.com").await;
    let_publish(&baton.server, "user:alice@example.com").await;
    let credentials = json!({"json": user});
    baton
        .run_child(credentials.clone(), "alice", "allowed_then_denied", true)
        .await;
    // Without SSL_CERT_FILE google-cloud-auth does not trust the CA: the
    // refresh-token grant is made over TLS.
    baton
        .run_child(credentials.clone(), "untrusted", "untrusted", false)
        .await;
    // A credential file whose refresh token was revoked no longer works.
    baton
        .server
        .revoke_refresh_token(user["refresh_token"].as_str().unwrap())
        .await;
    baton
        .run_child(credentials, "revoked", "revoked", true)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_exchanges_its_subject_token_at_batons_sts_then_impersonates() {
    let key = issuer_key();
    let baton = Baton::start(Some(&key)).await;
    let server = &baton.server;
    let worker = server.create_service_account(PROJECT, "wif-worker").await;
    // The federated principal itself publishes; the deployer may only
    // mint the worker's tokens.
    set_policy(
        server,
        &format!("projects/{PROJECT}/topics/{TOPIC}"),
        &[(
            PUBLISHER,
            &[
                &federated("repo:acme/app"),
                &format!("serviceAccount:{worker}"),
            ],
        )],
    )
    .await;
    set_policy(
        server,
        &format!("projects/{PROJECT}"),
        &[(TOKEN_CREATOR, &[&federated("repo:acme/deployer")])],
    )
    .await;
    let config = |subject: &str| {
        let file = baton
            .dir
            .path()
            .join(format!("{}.jwt", subject.replace(['/', ':'], "-")));
        std::fs::write(&file, subject_token(&key, subject)).unwrap();
        let config = json!({
            "type": "external_account",
            "audience": provider_audience(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": server.url("/v1/token"),
            "credential_source": {"file": file},
        });
        assert_https(server, &config["token_url"], "/v1/token");
        config
    };
    // The federated token itself, from a credentials file...
    let path = baton.dir.path().join("wif.json");
    std::fs::write(&path, config("repo:acme/app").to_string()).unwrap();
    baton
        .run_child(
            json!({"file": path}),
            "federated",
            "allowed_then_denied",
            true,
        )
        .await;

    // ...or, with service_account_impersonation_url, the worker's.
    let mut impersonating = config("repo:acme/deployer");
    impersonating["service_account_impersonation_url"] =
        json!(baton.generate_access_token_url(&worker));
    baton
        .run_child(
            json!({"json": impersonating}),
            "federated-as-worker",
            "allowed_then_denied",
            true,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonated_service_account_config_calls_batons_generate_access_token() {
    let baton = Baton::start(None).await;
    let server = &baton.server;
    let target = server.create_service_account(PROJECT, "target-sa").await;
    let middle = server.create_service_account(PROJECT, "middle-sa").await;
    let user = login(server, "bob@example.com").await;
    // Bob may mint the middle account's tokens, the middle account the
    // target's; only the target publishes.
    set_policy(
        server,
        &format!("projects/{PROJECT}"),
        &[(
            TOKEN_CREATOR,
            &["user:bob@example.com", &format!("serviceAccount:{middle}")],
        )],
    )
    .await;
    let_publish(server, &format!("serviceAccount:{target}")).await;
    let config = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": baton.generate_access_token_url(&target),
        "delegates": [format!("projects/-/serviceAccounts/{middle}")],
        "source_credentials": user,
    });
    baton
        .run_child(
            json!({"json": config}),
            "impersonated-config",
            "allowed_then_denied",
            true,
        )
        .await;
}

/// Baton's own [`Impersonation`] asks the IAM endpoint trusting the
/// client's CA certificates, and its source (a key file) signs its own
/// tokens: no `SSL_CERT_FILE`, so no child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_of_a_source_credential_asks_batons_iam_endpoint() {
    let baton = Baton::start(None).await;
    let server = &baton.server;
    let target = server.create_service_account(PROJECT, "impersonated").await;
    let source = server.create_service_account(PROJECT, "source-sa").await;
    let key_file = server.create_key(&source).await;
    assert_https(server, &key_file["token_uri"], "/token");
    set_policy(
        server,
        &format!("projects/{PROJECT}"),
        &[(TOKEN_CREATOR, &[&format!("serviceAccount:{source}")])],
    )
    .await;
    let_publish(server, &format!("serviceAccount:{target}")).await;
    let path = baton.dir.path().join("source.json");
    std::fs::write(&path, key_file.to_string()).unwrap();
    let iam_endpoint = server.url("");
    assert!(iam_endpoint.starts_with("https://"), "{iam_endpoint}");
    let impersonation = Impersonation::new(Credentials::KeyFile(path.clone()), &target)
        .with_lifetime(Duration::from_secs(1200))
        .with_iam_endpoint(iam_endpoint);
    let client = baton
        .connect(Credentials::Impersonated(impersonation))
        .await;
    allowed_then_denied(&client, "impersonation").await;
    // The source account's own token publishes nothing.
    let client = baton.connect(Credentials::KeyFile(path)).await;
    let denied = refused_publish(&client, "as the source").await;
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied:?}");
}

/// Run by [`Baton::run_child`] in a child process (does nothing in a
/// normal run): connects as [`CHILD_ENV`] says and checks what it expects:
/// `allowed_then_denied` ([`allowed_then_denied`]), `revoked` (the token
/// request is refused: UNAUTHENTICATED, saying why) or `untrusted` (an
/// authorized user's token request fails on the server's certificate, the
/// CA being trusted by the channel alone).
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
    let credentials = match (
        spec["credentials"].get("json"),
        spec["credentials"]["file"].as_str(),
    ) {
        (Some(json), None) => Credentials::Json(json.clone()),
        (None, Some(path)) => Credentials::KeyFile(path.into()),
        _ => panic!("no credentials in {spec}"),
    };
    let label = spec["label"].as_str().unwrap();
    let client = connect(
        spec["uri"].as_str().unwrap(),
        Path::new(spec["ca"].as_str().unwrap()),
        credentials,
    )
    .await;
    match spec["expect"].as_str().unwrap() {
        "allowed_then_denied" => allowed_then_denied(&client, label).await,
        "revoked" => {
            let refused = refused_publish(&client, label).await;
            assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused:?}");
            assert!(
                format!("{refused:?}").contains("Token has been expired or revoked."),
                "{refused:?}"
            );
        }
        "untrusted" => {
            let refused = refused_publish(&client, label).await;
            assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused:?}");
            // The refresh-token grant went to the https token_uri and
            // failed on the server's certificate.
            let token_uri = spec["credentials"]["json"]["token_uri"].as_str().unwrap();
            let message = format!("{refused:?}");
            assert!(
                message.contains(token_uri) && message.contains("UnknownIssuer"),
                "{message}"
            );
        }
        other => panic!("unknown expectation {other}"),
    }
}

/// A fixed token, counting how often it is asked for.
struct Counting {
    token: String,
    lifetime: Option<Duration>,
    fetches: AtomicUsize,
}

impl Counting {
    fn new(token: &str, lifetime: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            token: token.into(),
            lifetime,
            fetches: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl TokenProvider for Counting {
    async fn token(&self) -> Result<AccessToken, BoxError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let token = AccessToken::new(self.token.clone());
        Ok(match self.lifetime {
            Some(lifetime) => token.with_expires_in(lifetime),
            None => token,
        })
    }
}

/// An explicit provider's token is cached for its lifetime and fetched
/// again once less than [`REFRESH_MARGIN`] is left, on the client's
/// (Tokio's, here paused) clock; the call after the refresh works, over
/// TLS to a server on the same virtual time (the handshakes take no
/// virtual time: loopback data is readable at once).
#[tokio::test(start_paused = true)]
async fn expired_provider_token_is_refreshed_on_paused_time() {
    let baton = Baton::around(
        TestServer::start_tls_with(virtual_config().with_auth(operator_auth())).await,
    )
    .await;
    let provider = Counting::new(OPERATOR_TOKEN, Some(Duration::from_secs(3600)));
    let client = baton.connect(Credentials::Provider(provider.clone())).await;
    client.create_topic("before").await.unwrap();
    client.create_topic("still-cached").await.unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(3600) - REFRESH_MARGIN + Duration::from_secs(1)).await;
    client.create_topic("after-expiry").await.unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    // The three, plus the topic every Baton here starts with.
    assert_eq!(client.list_topics().await.unwrap().len(), 4);
}
