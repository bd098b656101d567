#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The credential kinds Baton's server has no endpoint for yet (an
//! authorized user's refresh-token grant, Workload Identity Federation's STS
//! token exchange, the IAM Credentials API's `generateAccessToken`): the
//! client's requests go to a capture server in the test, which records them
//! and answers in Google's shapes with Baton's operator token, so the calls
//! that follow, against a real `baton serve --auth`, succeed. Plus an
//! explicit token provider whose expired token is refreshed on paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use baton_client::{
    AccessToken, BoxError, Client, ClientConfig, Credentials, Endpoint, Impersonation,
    REFRESH_MARGIN, TokenProvider,
};
use baton_server::ServerConfig;
use baton_testkit::auth::{OPERATOR_TOKEN, operator_auth};
use baton_testkit::server::{TestServer, loopback, virtual_config};
use serde_json::{Value, json};

const PROJECT: &str = "p";
const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";

/// One request the capture server saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl Capture {
    /// Serves on a loopback port; its `http://host:port`.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

/// `/token` (OAuth refresh grant and STS token exchange alike) and
/// `...:generateAccessToken`, as Google answers them.
async fn answer(State(capture): State<Capture>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_string();
    capture.0.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization: parts
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if path == "/token" {
        Json(json!({
            "access_token": OPERATOR_TOKEN,
            "expires_in": 3600,
            "token_type": "Bearer",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }))
        .into_response()
    } else if path.ends_with(":generateAccessToken") {
        Json(json!({
            "accessToken": OPERATOR_TOKEN,
            "expireTime": rfc3339(SystemTime::now() + Duration::from_secs(3600)),
        }))
        .into_response()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

/// `2025-01-02T03:04:05Z`.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A plaintext `baton serve --auth`.
async fn baton() -> TestServer {
    TestServer::start_with(ServerConfig::new(loopback()).with_auth(operator_auth())).await
}

/// Connects to `server` with `credentials` and makes an authenticated call.
async fn call_with(server: &TestServer, credentials: Credentials, topic: &str) {
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: format!("http://127.0.0.1:{}", server.addr.port()),
                authenticate: true,
            })
            .with_credentials(credentials),
    )
    .await
    .unwrap();
    client
        .create_topic(topic)
        .await
        .unwrap_or_else(|e| panic!("{topic}: {e:?}"));
}

fn form_has(body: &str, pair: &str) -> bool {
    body.split('&').any(|p| p == pair)
}

#[tokio::test]
async fn authorized_user_refreshes_at_its_token_uri() {
    let server = baton().await;
    let capture = Capture::default();
    let url = capture.start().await;
    let user = json!({
        "type": "authorized_user",
        "client_id": "client-1.apps.googleusercontent.com",
        "client_secret": "secret-1",
        "refresh_token": "refresh-1",
        "token_uri": format!("{url}/token"),
    });
    call_with(&server, Credentials::Json(user), "from-a-user").await;
    let seen = capture.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/token");
    // google-cloud-auth sends the grant as JSON (Google's endpoint takes a
    // form or JSON).
    let grant: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(grant["grant_type"], "refresh_token", "{grant}");
    assert_eq!(grant["refresh_token"], "refresh-1");
    assert_eq!(grant["client_id"], "client-1.apps.googleusercontent.com");
    assert_eq!(grant["client_secret"], "secret-1");
    assert_eq!(grant["scope"], PUBSUB_SCOPE);
}

#[tokio::test]
async fn external_account_exchanges_its_subject_token_at_sts_then_impersonates() {
    let server = baton().await;
    let capture = Capture::default();
    let url = capture.start().await;
    let dir = tempfile::tempdir().unwrap();
    let subject = dir.path().join("oidc-token");
    std::fs::write(&subject, "subject-jwt-1").unwrap();
    let audience =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/gh";
    let mut config = json!({
        "type": "external_account",
        "audience": audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{url}/token"),
        "credential_source": {"file": subject},
    });
    // The federated token itself...
    let file = dir.path().join("wif.json");
    std::fs::write(&file, config.to_string()).unwrap();
    call_with(&server, Credentials::KeyFile(file), "federated").await;
    let seen = capture.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let exchange = &seen[0];
    assert_eq!(exchange.path, "/token");
    for pair in [
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        "subject_token=subject-jwt-1",
        "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
        "requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
    ] {
        assert!(form_has(&exchange.body, pair), "{pair}: {}", exchange.body);
    }
    assert!(
        exchange
            .body
            .contains("audience=%2F%2Fiam.googleapis.com%2Fprojects%2F1")
    );

    // ...or, with service_account_impersonation_url, a service account's.
    config["service_account_impersonation_url"] = json!(format!(
        "{url}/v1/projects/-/serviceAccounts/worker@p.iam.gserviceaccount.com:generateAccessToken"
    ));
    call_with(&server, Credentials::Json(config), "federated-as-worker").await;
    let seen = capture.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[1].path, "/token");
    let generate = &seen[2];
    assert_eq!(
        generate.path,
        "/v1/projects/-/serviceAccounts/worker@p.iam.gserviceaccount.com:generateAccessToken"
    );
    assert_eq!(
        generate.authorization.as_deref(),
        Some(format!("Bearer {OPERATOR_TOKEN}").as_str())
    );
    let body: Value = serde_json::from_str(&generate.body).unwrap();
    assert_eq!(body["scope"], json!([PUBSUB_SCOPE]), "{body}");
}

#[tokio::test]
async fn impersonated_service_account_config_calls_generate_access_token() {
    let server = baton().await;
    let capture = Capture::default();
    let url = capture.start().await;
    let config = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!(
            "{url}/v1/projects/-/serviceAccounts/target@p.iam.gserviceaccount.com:generateAccessToken"
        ),
        "delegates": ["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"],
        "source_credentials": {
            "type": "authorized_user",
            "client_id": "c", "client_secret": "s", "refresh_token": "r",
            "token_uri": format!("{url}/token"),
        },
    });
    call_with(&server, Credentials::Json(config), "impersonated-config").await;
    let seen = capture.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].body.contains(r#""grant_type":"refresh_token""#),
        "{seen:?}"
    );
    let generate = &seen[1];
    assert!(
        generate
            .path
            .ends_with("target@p.iam.gserviceaccount.com:generateAccessToken")
    );
    let body: Value = serde_json::from_str(&generate.body).unwrap();
    assert_eq!(
        body["delegates"],
        json!(["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"])
    );
    assert_eq!(body["scope"], json!([PUBSUB_SCOPE]), "{body}");
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

#[tokio::test]
async fn impersonation_of_a_source_credential_asks_the_iam_endpoint() {
    let server = baton().await;
    let capture = Capture::default();
    let url = capture.start().await;
    let source = Counting::new("source-token", None);
    let impersonation = Impersonation::new(
        Credentials::Provider(source.clone()),
        "target@p.iam.gserviceaccount.com",
    )
    .with_delegates(["middle@p.iam.gserviceaccount.com"])
    .with_lifetime(Duration::from_secs(1200))
    .with_iam_endpoint(&url);
    call_with(
        &server,
        Credentials::Impersonated(impersonation),
        "impersonated",
    )
    .await;
    let seen = capture.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].path,
        "/v1/projects/-/serviceAccounts/target@p.iam.gserviceaccount.com:generateAccessToken"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer source-token")
    );
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "delegates": ["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"],
            "scope": [PUBSUB_SCOPE],
            "lifetime": "1200s",
        })
    );
}

/// An explicit provider's token is cached for its lifetime and fetched
/// again once less than [`REFRESH_MARGIN`] is left, on the client's
/// (Tokio's, here paused) clock; the call after the refresh works.
#[tokio::test(start_paused = true)]
async fn expired_provider_token_is_refreshed_on_paused_time() {
    let server = TestServer::start_with(virtual_config().with_auth(operator_auth())).await;
    let provider = Counting::new(OPERATOR_TOKEN, Some(Duration::from_secs(3600)));
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: format!("http://127.0.0.1:{}", server.addr.port()),
                authenticate: true,
            })
            .with_credentials(Credentials::Provider(provider.clone())),
    )
    .await
    .unwrap();
    client.create_topic("before").await.unwrap();
    client.create_topic("still-cached").await.unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(3600) - REFRESH_MARGIN + Duration::from_secs(1)).await;
    client.create_topic("after-expiry").await.unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(client.list_topics().await.unwrap().len(), 3);
}
