#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The credential kinds whose tokens come from another Google endpoint
//! than the key file's own, each against a real `baton serve --auth` that
//! serves that endpoint itself: an authorized user's refresh-token grant
//! (`/token`, the credential made by the operator as `baton auth
//! application-default login` does), Workload Identity Federation's STS
//! token exchange (`/v1/token`, a subject token of a workload identity pool
//! provider the server trusts, with a key the test makes), and the IAM
//! Credentials API's `generateAccessToken` (impersonation configs,
//! `service_account_impersonation_url`, and [`Impersonation`]). Each then
//! makes a call its principal's policy allows and one it does not, which
//! fails with PERMISSION_DENIED. Plus an explicit token provider whose
//! expired token is refreshed on paused time.
//!
//! The servers run on the system clock: google-cloud-auth reads the
//! `expireTime` of `generateAccessToken` against the wall clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_client::{
    AccessToken, BoxError, Client, ClientConfig, Credentials, Endpoint, Impersonation,
    REFRESH_MARGIN, TokenProvider,
};
use baton_server::{ServerConfig, WorkloadIdentityProviderSettings};
use baton_testkit::auth::{OPERATOR_TOKEN, operator_auth};
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

fn provider_audience() -> String {
    format!("//iam.googleapis.com/{POOL}/providers/gh")
}

fn federated(subject: &str) -> String {
    format!("principal://iam.googleapis.com/{POOL}/subject/{subject}")
}

/// A plaintext `baton serve --auth` with the topic, trusting `issuer` (a
/// key the test made) as the OIDC issuer of the pool provider.
async fn baton(issuer: Option<&baton_auth::SigningKey>) -> TestServer {
    let mut config = ServerConfig::new(loopback()).with_auth(operator_auth());
    if let Some(key) = issuer {
        config = config.with_workload_identity_provider(WorkloadIdentityProviderSettings {
            audience: provider_audience(),
            issuer: ISSUER.into(),
            jwks: Some(key.jwks()),
        });
    }
    let server = TestServer::start_with(config).await;
    server
        .as_operator(
            Method::PUT,
            &format!("/v1/projects/{PROJECT}/topics/{TOPIC}"),
            json!({}),
        )
        .await;
    server
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
/// (what `baton auth application-default login` asks for).
async fn login(server: &TestServer, account: &str) -> Value {
    let file = server
        .as_operator(
            Method::POST,
            "/api/authorized-users",
            json!({"account": account}),
        )
        .await;
    assert_eq!(file["token_uri"], server.url("/token"), "{file}");
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

/// A client of `server` that authenticates with `credentials`.
async fn connect(server: &TestServer, credentials: Credentials) -> Client {
    Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: format!("http://127.0.0.1:{}", server.addr.port()),
                authenticate: true,
            })
            .with_credentials(credentials),
    )
    .await
    .unwrap()
}

/// Publishes `data` to [`TOPIC`] with `credentials`, which must fail;
/// answers the failure.
async fn refused_publish(
    server: &TestServer,
    credentials: Credentials,
    data: &str,
) -> baton_client::PublishError {
    let client = connect(server, credentials).await;
    let publisher = client.publisher(TOPIC);
    let refused = publisher
        .publish(baton_client::Message::new(data.to_string()))
        .await
        .expect_err("the publish should be refused");
    publisher.shutdown().await;
    refused
}

/// Connects with `credentials`: publishing to [`TOPIC`] works (the token
/// came from Baton and is the principal `label` says), creating a topic is
/// denied by IAM with PERMISSION_DENIED.
async fn allowed_then_denied(server: &TestServer, credentials: Credentials, label: &str) {
    let client = connect(server, credentials).await;
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

#[tokio::test]
async fn authorized_user_refreshes_at_batons_token_uri() {
    let server = baton(None).await;
    let user = login(&server, "alice@example.com").await;
    assert_eq!(user["type"], "authorized_user");
    let_publish(&server, "user:alice@example.com").await;
    allowed_then_denied(&server, Credentials::Json(user.clone()), "alice").await;
    // A credential file whose refresh token was revoked no longer works.
    server
        .revoke_refresh_token(user["refresh_token"].as_str().unwrap())
        .await;
    let refused = refused_publish(&server, Credentials::Json(user), "revoked").await;
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused:?}");
    assert!(
        format!("{refused:?}").contains("Token has been expired or revoked."),
        "{refused:?}"
    );
}

#[tokio::test]
async fn external_account_exchanges_its_subject_token_at_batons_sts_then_impersonates() {
    let key = issuer_key();
    let server = baton(Some(&key)).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = server.create_service_account(PROJECT, "wif-worker").await;
    // The federated principal itself publishes; the deployer may only
    // mint the worker's tokens.
    set_policy(
        &server,
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
        &server,
        &format!("projects/{PROJECT}"),
        &[(TOKEN_CREATOR, &[&federated("repo:acme/deployer")])],
    )
    .await;
    let config = |subject: &str| {
        let file = dir
            .path()
            .join(format!("{}.jwt", subject.replace(['/', ':'], "-")));
        std::fs::write(&file, subject_token(&key, subject)).unwrap();
        json!({
            "type": "external_account",
            "audience": provider_audience(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": server.url("/v1/token"),
            "credential_source": {"file": file},
        })
    };
    // The federated token itself, from a credentials file...
    let path = dir.path().join("wif.json");
    std::fs::write(&path, config("repo:acme/app").to_string()).unwrap();
    allowed_then_denied(&server, Credentials::KeyFile(path), "federated").await;

    // ...or, with service_account_impersonation_url, the worker's.
    let mut impersonating = config("repo:acme/deployer");
    impersonating["service_account_impersonation_url"] = json!(server.url(&format!(
        "/v1/projects/-/serviceAccounts/{worker}:generateAccessToken"
    )));
    allowed_then_denied(
        &server,
        Credentials::Json(impersonating),
        "federated-as-worker",
    )
    .await;
}

#[tokio::test]
async fn impersonated_service_account_config_calls_batons_generate_access_token() {
    let server = baton(None).await;
    let target = server.create_service_account(PROJECT, "target-sa").await;
    let middle = server.create_service_account(PROJECT, "middle-sa").await;
    let user = login(&server, "bob@example.com").await;
    // Bob may mint the middle account's tokens, the middle account the
    // target's; only the target publishes.
    set_policy(
        &server,
        &format!("projects/{PROJECT}"),
        &[(
            TOKEN_CREATOR,
            &["user:bob@example.com", &format!("serviceAccount:{middle}")],
        )],
    )
    .await;
    let_publish(&server, &format!("serviceAccount:{target}")).await;
    let config = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": server.url(&format!(
            "/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
        )),
        "delegates": [format!("projects/-/serviceAccounts/{middle}")],
        "source_credentials": user,
    });
    allowed_then_denied(&server, Credentials::Json(config), "impersonated-config").await;
}

#[tokio::test]
async fn impersonation_of_a_source_credential_asks_batons_iam_endpoint() {
    let server = baton(None).await;
    let target = server.create_service_account(PROJECT, "impersonated").await;
    let source = server.create_service_account(PROJECT, "source-sa").await;
    let key_file = server.create_key(&source).await;
    set_policy(
        &server,
        &format!("projects/{PROJECT}"),
        &[(TOKEN_CREATOR, &[&format!("serviceAccount:{source}")])],
    )
    .await;
    let_publish(&server, &format!("serviceAccount:{target}")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.json");
    std::fs::write(&path, key_file.to_string()).unwrap();
    let impersonation = Impersonation::new(Credentials::KeyFile(path.clone()), &target)
        .with_lifetime(Duration::from_secs(1200))
        .with_iam_endpoint(server.url(""));
    allowed_then_denied(
        &server,
        Credentials::Impersonated(impersonation),
        "impersonation",
    )
    .await;
    // The source account's own token publishes nothing.
    let denied = refused_publish(&server, Credentials::KeyFile(path), "as the source").await;
    assert_eq!(denied.code(), Some(Code::PermissionDenied));
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
/// (Tokio's, here paused) clock; the call after the refresh works.
#[tokio::test(start_paused = true)]
async fn expired_provider_token_is_refreshed_on_paused_time() {
    let server = TestServer::start_with(virtual_config().with_auth(operator_auth())).await;
    let provider = Counting::new(OPERATOR_TOKEN, Some(Duration::from_secs(3600)));
    let client = connect(&server, Credentials::Provider(provider.clone())).await;
    client.create_topic("before").await.unwrap();
    client.create_topic("still-cached").await.unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(3600) - REFRESH_MARGIN + Duration::from_secs(1)).await;
    client.create_topic("after-expiry").await.unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(client.list_topics().await.unwrap().len(), 3);
}
