//! Authentication and IAM enforcement, end to end over gRPC and REST: the
//! service-account key files Baton makes, both service-account flows
//! (self-signed JWTs and the JWT-bearer token exchange), the metadata
//! server, policies on resources and projects, the real service's error
//! codes and wording, and the ID tokens of push subscriptions. Tokens
//! expire on the broker's virtual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use baton_proto::iam::TestIamPermissionsRequest;
use baton_proto::iam::iam_policy_client::IamPolicyClient;
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{PublishRequest, PubsubMessage, PullRequest, Subscription, Topic};
use baton_testkit::auth::{OPERATOR_TOKEN, operator_auth};
use baton_testkit::push::PushRecorder;
use baton_testkit::server::{TestServer, virtual_config};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const MISSING: &str = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const INVALID: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const DENIED: &str = "User not authorized to perform this action.";
const TOPIC: &str = "projects/p/topics/orders";
const SUBSCRIPTION: &str = "projects/p/subscriptions/orders-worker";

async fn start() -> TestServer {
    TestServer::start_with(virtual_config().with_auth(operator_auth())).await
}

fn now(server: &TestServer) -> SystemTime {
    server.server().broker().clock().wall()
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Adds the `authorization` header to every call.
type AddCredential = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;
type Authed = InterceptedService<Channel, AddCredential>;

fn with_token(server: &TestServer, token: Option<String>) -> Authed {
    let value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        token.map(|t| format!("Bearer {t}").parse().unwrap());
    let interceptor: AddCredential = Box::new(move |mut request: Request<()>| {
        if let Some(value) = &value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    });
    InterceptedService::new(server.channel.clone(), interceptor)
}

fn publisher(server: &TestServer, token: Option<String>) -> PublisherClient<Authed> {
    PublisherClient::new(with_token(server, token))
}

fn subscriber(server: &TestServer, token: Option<String>) -> SubscriberClient<Authed> {
    SubscriberClient::new(with_token(server, token))
}

fn iam(server: &TestServer, token: Option<String>) -> IamPolicyClient<Authed> {
    IamPolicyClient::new(with_token(server, token))
}

fn operator(server: &TestServer) -> (PublisherClient<Authed>, SubscriberClient<Authed>) {
    (
        publisher(server, Some(OPERATOR_TOKEN.into())),
        subscriber(server, Some(OPERATOR_TOKEN.into())),
    )
}

/// The operator makes the topic; answers the operator's clients.
async fn operator_topic(
    server: &TestServer,
) -> (PublisherClient<Authed>, SubscriberClient<Authed>) {
    let (mut publisher, subscriber) = operator(server);
    publisher
        .create_topic(Topic {
            name: TOPIC.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    (publisher, subscriber)
}

/// The operator makes the topic and subscription.
async fn resources(server: &TestServer) {
    let (_, mut subscriber) = operator_topic(server).await;
    subscriber
        .create_subscription(Subscription {
            name: SUBSCRIPTION.into(),
            topic: TOPIC.into(),
            ack_deadline_seconds: 10,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A service account of project `p` and the key file Baton made for it.
async fn account(server: &TestServer, id: &str) -> Value {
    let email = server.create_service_account("p", id).await;
    server.create_key(&email).await
}

/// `serviceAccount:EMAIL` of the key file's account (a policy member).
fn member(key_file: &Value) -> String {
    format!(
        "serviceAccount:{}",
        key_file["client_email"].as_str().unwrap()
    )
}

/// A self-signed JWT as Google's libraries send it for a service account.
fn self_signed(key_file: &Value, iat: u64, exp: u64, audience: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key_file["private_key_id"].as_str().unwrap().into());
    let email = key_file["client_email"].as_str().unwrap();
    let mut claims = json!({"iss": email, "sub": email, "iat": iat, "exp": exp});
    match audience {
        Some(aud) => claims["aud"] = json!(aud),
        None => claims["scope"] = json!("https://www.googleapis.com/auth/cloud-platform"),
    }
    let key =
        EncodingKey::from_rsa_pem(key_file["private_key"].as_str().unwrap().as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn jwt_now(server: &TestServer, key_file: &Value) -> String {
    let iat = unix(now(server));
    self_signed(key_file, iat, iat + 3600, None)
}

async fn publish(
    publisher: &mut PublisherClient<Authed>,
    data: &str,
) -> Result<Vec<String>, Status> {
    publisher
        .publish(PublishRequest {
            topic: TOPIC.into(),
            messages: vec![PubsubMessage {
                data: data.as_bytes().to_vec(),
                ..Default::default()
            }],
        })
        .await
        .map(|r| r.into_inner().message_ids)
}

/// Whether a publish with `token` succeeds.
async fn publishes(server: &TestServer, token: String, data: &str) -> bool {
    publish(&mut publisher(server, Some(token)), data)
        .await
        .is_ok()
}

async fn pull(subscriber: &mut SubscriberClient<Authed>) -> Result<usize, Status> {
    #[allow(deprecated)]
    let request = PullRequest {
        subscription: SUBSCRIPTION.into(),
        return_immediately: true,
        max_messages: 10,
    };
    subscriber
        .pull(request)
        .await
        .map(|r| r.into_inner().received_messages.len())
}

/// Asserts a REST answer is the error `status` with `code` and `message`.
async fn assert_rest_error(response: reqwest::Response, status: u16, code: &str, message: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], code);
    assert_eq!(body["error"]["message"], message);
}

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, message: &str) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

#[tokio::test(start_paused = true)]
async fn a_call_without_a_credential_is_unauthenticated_on_both_transports() {
    let server = start().await;
    resources(&server).await;
    assert_status(
        publish(&mut publisher(&server, None), "x").await,
        Code::Unauthenticated,
        MISSING,
    );
    let response = server
        .http
        .post(format!("http://{}/v1/{TOPIC}:publish", server.addr))
        .json(&json!({"messages": [{"data": "eA=="}]}))
        .send()
        .await
        .unwrap();
    assert_rest_error(response, 401, "UNAUTHENTICATED", MISSING).await;
    // The operator token may do everything.
    let (mut publisher, _) = operator(&server);
    assert_eq!(publish(&mut publisher, "x").await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn garbage_foreign_and_forged_credentials_are_refused() {
    let server = start().await;
    resources(&server).await;
    let key_file = account(&server, "forger-target").await;
    let iat = unix(now(&server));
    let email = key_file["client_email"].as_str().unwrap();
    // alg "none": a JWT with no signature.
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": key_file["private_key_id"]})),
        b64(
            json!({"iss": email, "sub": email, "iat": iat, "exp": iat + 600,
                   "scope": "https://www.googleapis.com/auth/cloud-platform"})
        ),
    );
    // HS256 keyed with the public key (key confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = key_file["private_key_id"].as_str().map(str::to_string);
    let confused = jsonwebtoken::encode(
        &hs,
        &json!({"iss": email, "sub": email, "iat": iat, "exp": iat + 600,
                "aud": "https://pubsub.googleapis.com/"}),
        &EncodingKey::from_secret(b"whatever").unwrap(),
    )
    .unwrap();
    // Signed by another account's key but claiming to be this one.
    let other = account(&server, "someone-else").await;
    let mut forged_file = other.clone();
    forged_file["client_email"] = json!(email);
    let forged = self_signed(&forged_file, iat, iat + 600, None);
    // A token for another API.
    let wrong_audience = self_signed(
        &key_file,
        iat,
        iat + 600,
        Some("https://storage.googleapis.com/"),
    );
    for token in [
        "not-a-jwt".to_string(),
        "a.b.c".to_string(),
        unsigned,
        confused,
        forged,
        wrong_audience,
        "x".repeat(12_000),
    ] {
        assert_status(
            publish(&mut publisher(&server, Some(token)), "x").await,
            Code::Unauthenticated,
            INVALID,
        );
    }
    // A header larger than the connection takes is refused by HTTP/2
    // itself (431), before any parsing.
    let oversized = publish(&mut publisher(&server, Some("x".repeat(64_000))), "x").await;
    let status = oversized.expect_err("an oversized header must fail");
    assert!(status.message().contains("431"), "{status:?}");
    // A header that is not a bearer token at all.
    let response = server
        .http
        .post(format!("http://{}/v1/{TOPIC}:publish", server.addr))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({"messages": [{"data": "eA=="}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The server still serves a good caller.
    let (mut publisher, _) = operator(&server);
    assert!(publish(&mut publisher, "still here").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn self_signed_jwts_are_checked_against_resource_and_project_policies() {
    let server = start().await;
    resources(&server).await;
    let key_file = account(&server, "orders-api").await;
    let member = member(&key_file);
    let token = || Some(jwt_now(&server, &key_file));
    // Authenticated, but no policy grants anything yet.
    assert_status(
        publish(&mut publisher(&server, token()), "x").await,
        Code::PermissionDenied,
        DENIED,
    );
    // Publisher on the topic: publishing works, consuming does not.
    server.grant(TOPIC, "roles/pubsub.publisher", &member).await;
    assert_eq!(
        publish(&mut publisher(&server, token()), "one")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_status(
        pull(&mut subscriber(&server, token())).await,
        Code::PermissionDenied,
        DENIED,
    );
    // Subscriber on the project: every subscription of the project.
    server
        .grant("projects/p", "roles/pubsub.subscriber", &member)
        .await;
    assert_eq!(pull(&mut subscriber(&server, token())).await.unwrap(), 1);
    // Neither role may delete the topic or read another project.
    let deleted = publisher(&server, token())
        .delete_topic(baton_proto::pubsub::DeleteTopicRequest {
            topic: TOPIC.into(),
        })
        .await;
    assert_status(deleted, Code::PermissionDenied, DENIED);
    // TestIamPermissions answers from the policies.
    let held = iam(&server, token())
        .test_iam_permissions(TestIamPermissionsRequest {
            resource: TOPIC.into(),
            permissions: vec![
                "pubsub.topics.publish".into(),
                "pubsub.topics.delete".into(),
                "pubsub.topics.attachSubscription".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .permissions;
    assert_eq!(
        held,
        ["pubsub.topics.publish", "pubsub.topics.attachSubscription"]
    );
    // The audience form (Node's) works as the scope form does.
    let iat = unix(now(&server));
    let with_aud = self_signed(
        &key_file,
        iat,
        iat + 600,
        Some("https://pubsub.googleapis.com/"),
    );
    assert!(publishes(&server, with_aud, "two").await);
    // REST denies with 403 and the same wording.
    let response = server
        .http
        .delete(format!("http://{}/v1/{TOPIC}", server.addr))
        .bearer_auth(jwt_now(&server, &key_file))
        .send()
        .await
        .unwrap();
    assert_rest_error(response, 403, "PERMISSION_DENIED", DENIED).await;
}

#[tokio::test(start_paused = true)]
async fn the_token_endpoint_exchanges_a_signed_assertion_for_an_access_token() {
    let server = start().await;
    resources(&server).await;
    let key_file = account(&server, "orders-worker").await;
    let token_uri = key_file["token_uri"].as_str().unwrap().to_string();
    assert_eq!(token_uri, format!("http://{}/token", server.addr));
    let member = member(&key_file);
    server
        .grant("projects/p", "roles/pubsub.editor", &member)
        .await;
    let iat = unix(now(&server));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key_file["private_key_id"].as_str().map(str::to_string);
    let email = key_file["client_email"].as_str().unwrap();
    let key =
        EncodingKey::from_rsa_pem(key_file["private_key"].as_str().unwrap().as_bytes()).unwrap();
    let assertion = |aud: &str, exp: u64| {
        jsonwebtoken::encode(
            &header,
            &json!({"iss": email, "aud": aud, "iat": iat, "exp": exp,
                    "scope": "https://www.googleapis.com/auth/pubsub"}),
            &key,
        )
        .unwrap()
    };
    let exchange = |assertion: String| {
        let http = server.http.clone();
        let uri = token_uri.clone();
        async move {
            http.post(uri)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let answer = exchange(assertion(&token_uri, iat + 3600)).await;
    assert_eq!(answer.status(), 200);
    let token: Value = answer.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let access = token["access_token"].as_str().unwrap().to_string();
    assert!(publishes(&server, access.clone(), "x").await);
    // Longer than an hour, or for another audience: invalid_grant.
    for bad in [
        assertion(&token_uri, iat + 7200),
        assertion("https://elsewhere/token", iat + 600),
    ] {
        let answer = exchange(bad).await;
        assert_eq!(answer.status(), 400);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    // The access token expires with its hour, on the broker's clock.
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_status(
        publish(&mut publisher(&server, Some(access)), "late").await,
        Code::Unauthenticated,
        INVALID,
    );
}

#[tokio::test(start_paused = true)]
async fn a_verified_token_stops_working_when_it_expires_or_its_key_is_deleted() {
    let server = start().await;
    resources(&server).await;
    let key_file = account(&server, "short-lived").await;
    let email = key_file["client_email"].as_str().unwrap().to_string();
    server
        .grant(TOPIC, "roles/pubsub.publisher", &member(&key_file))
        .await;
    let iat = unix(now(&server));
    let token = self_signed(&key_file, iat, iat + 120, None);
    assert!(publishes(&server, token.clone(), "a").await);
    tokio::time::advance(Duration::from_secs(121)).await;
    assert_status(
        publish(&mut publisher(&server, Some(token)), "b").await,
        Code::Unauthenticated,
        INVALID,
    );
    let fresh = jwt_now(&server, &key_file);
    assert!(publishes(&server, fresh.clone(), "c").await);
    let key_id = key_file["private_key_id"].as_str().unwrap();
    server
        .as_operator(
            reqwest::Method::DELETE,
            &format!("/v1/projects/p/serviceAccounts/{email}/keys/{key_id}"),
            json!({}),
        )
        .await;
    assert_status(
        publish(&mut publisher(&server, Some(fresh)), "d").await,
        Code::Unauthenticated,
        INVALID,
    );
}

#[tokio::test(start_paused = true)]
async fn the_metadata_server_hands_out_tokens_for_its_service_account() {
    let dir = tempfile::tempdir().unwrap();
    // The account must exist before the metadata server speaks for it, so
    // it is made on a first run and kept in the data directory.
    let config = virtual_config()
        .with_data_dir(dir.path())
        .with_auth(operator_auth());
    let first = TestServer::start_with(config.clone()).await;
    let email = first.create_service_account("p", "gke-workload").await;
    first.shutdown().await;
    let server = TestServer::start_with(config.with_metadata(baton_server::MetadataSettings {
        addr: baton_testkit::server::loopback(),
        service_account: email.clone(),
    }))
    .await;
    resources(&server).await;
    server
        .grant(
            TOPIC,
            "roles/pubsub.publisher",
            &format!("serviceAccount:{email}"),
        )
        .await;
    let metadata = format!("http://{}", server.server().metadata_addr().unwrap());
    let ping = server.http.get(&metadata).send().await.unwrap();
    assert_eq!(ping.headers()["metadata-flavor"], "Google");
    let unflavored = server
        .http
        .get(format!(
            "{metadata}/computeMetadata/v1/instance/service-accounts/default/token"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unflavored.status(), 403);
    let get = |path: &str| {
        server
            .http
            .get(format!("{metadata}/computeMetadata/v1/{path}"))
            .header("Metadata-Flavor", "Google")
            .send()
    };
    let info: Value = get("instance/service-accounts/default/?recursive=true")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], email);
    assert_eq!(
        get("project/project-id")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "p"
    );
    let token: Value = get("instance/service-accounts/default/token")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_string();
    assert!(publishes(&server, access, "from gke").await);
    // An ID token for an audience verifies with Baton's published keys.
    let id_token = get("instance/service-accounts/default/identity?audience=https://svc.example")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let claims = verify_id_token(&server, &id_token, "https://svc.example").await;
    assert_eq!(claims["email"], email);
}

/// Verifies `token` with the JWKS Baton publishes, as a receiver would.
async fn verify_id_token(server: &TestServer, token: &str, audience: &str) -> Value {
    let base = format!("http://{}", server.addr);
    let discovery: Value = server
        .http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], base);
    let jwks: jsonwebtoken::jwk::JwkSet = server
        .http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).expect("the token's key is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[base.as_str()]);
    // The token's times are on the broker's virtual clock.
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test(start_paused = true)]
async fn push_with_an_oidc_token_sends_a_verifiable_id_token() {
    let server = start().await;
    let recorder = PushRecorder::start().await;
    let key_file = account(&server, "push-invoker").await;
    let email = key_file["client_email"].as_str().unwrap().to_string();
    let (mut publisher, mut subscriber) = operator_topic(&server).await;
    let endpoint = recorder.url("/push");
    subscriber
        .create_subscription(Subscription {
            name: "projects/p/subscriptions/pushed".into(),
            topic: TOPIC.into(),
            push_config: Some(baton_proto::pubsub::PushConfig {
                push_endpoint: endpoint.clone(),
                authentication_method: Some(
                    baton_proto::pubsub::push_config::AuthenticationMethod::OidcToken(
                        baton_proto::pubsub::push_config::OidcToken {
                            service_account_email: email.clone(),
                            audience: String::new(),
                        },
                    ),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&mut publisher, "pushed").await.unwrap();
    let push = recorder.expect().await;
    let bearer = push
        .header("authorization")
        .expect("an Authorization header");
    let token = bearer.strip_prefix("Bearer ").unwrap();
    // The audience defaults to the endpoint.
    let claims = verify_id_token(&server, token, &endpoint).await;
    assert_eq!(claims["email"], email);
    assert_eq!(claims["email_verified"], true);
}

#[tokio::test(start_paused = true)]
async fn with_authentication_off_every_caller_may_do_everything() {
    let server = TestServer::start_virtual().await;
    let topic = server.create_topic("open").await;
    let held = server
        .iam()
        .test_iam_permissions(TestIamPermissionsRequest {
            resource: topic.clone(),
            permissions: vec!["pubsub.topics.delete".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .permissions;
    assert_eq!(held, ["pubsub.topics.delete"]);
    // A credential, even a bad one, is ignored.
    let mut publisher = publisher(&server, Some("garbage".into()));
    let published = publisher
        .publish(PublishRequest {
            topic,
            messages: vec![PubsubMessage {
                data: b"x".to_vec(),
                ..Default::default()
            }],
        })
        .await;
    assert!(published.is_ok());
}

/// The series names of a scrape of `/metrics` with `token`, or its status.
async fn scrape(server: &TestServer, token: Option<&str>) -> Result<String, u16> {
    let mut request = reqwest::Client::new().get(server.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    Ok(response.text().await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn metrics_need_a_credential_and_show_only_the_projects_it_may_list() {
    let server = start().await;
    resources(&server).await;
    // A second project the account is not granted.
    let (mut publisher, mut subscriber) = operator(&server);
    publisher
        .create_topic(Topic {
            name: "projects/q/topics/payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    subscriber
        .create_subscription(Subscription {
            name: "projects/q/subscriptions/payments-worker".into(),
            topic: "projects/q/topics/payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key_file = account(&server, "watcher").await;
    server
        .grant("projects/p", "roles/pubsub.viewer", &member(&key_file))
        .await;

    assert_eq!(scrape(&server, None).await, Err(401));
    assert_eq!(scrape(&server, Some("not-a-token")).await, Err(401));
    let seen = scrape(&server, Some(&jwt_now(&server, &key_file)))
        .await
        .unwrap();
    assert!(seen.contains("subscription_id=\"orders-worker\""), "{seen}");
    assert!(seen.contains("topic_id=\"orders\""), "{seen}");
    assert!(!seen.contains("payments"), "{seen}");
    let all = scrape(&server, Some(OPERATOR_TOKEN)).await.unwrap();
    assert!(all.contains("subscription_id=\"payments-worker\""), "{all}");
    assert!(all.contains("subscription_id=\"orders-worker\""), "{all}");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// IAM Credentials' generateAccessToken, authorized users' refresh tokens and
// Workload Identity Federation's token exchange.

const GET_ACCESS_TOKEN_DENIED: &str =
    "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).";
const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";
const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";

/// Sets `resource`'s policy (as the operator) to these bindings.
async fn set_policy(server: &TestServer, resource: &str, bindings: &[(&str, &[&str])]) {
    let bindings: Vec<Value> = bindings
        .iter()
        .map(|(role, members)| json!({"role": role, "members": members}))
        .collect();
    server
        .as_operator(
            reqwest::Method::POST,
            &format!("/v1/{resource}:setIamPolicy"),
            json!({"policy": {"bindings": bindings}}),
        )
        .await;
}

/// `generateAccessToken` for `target` (`projects/{project}/serviceAccounts/{target}`)
/// with `bearer`; the status and the JSON answer.
async fn generate(
    server: &TestServer,
    project: &str,
    target: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = server.http.post(server.url(&format!(
        "/v1/projects/{project}/serviceAccounts/{target}:generateAccessToken"
    )));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A time as `expireTime` spells it.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap();
    serde_json::to_value(pbjson_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: 0,
    })
    .unwrap()
    .as_str()
    .unwrap()
    .to_string()
}

#[tokio::test(start_paused = true)]
async fn generate_access_token_mints_for_token_creators_along_the_delegation_chain() {
    let server = start().await;
    resources(&server).await;
    let caller = account(&server, "deployer").await;
    let caller_email = caller["client_email"].as_str().unwrap().to_string();
    let worker = server.create_service_account("p", "orders-worker").await;
    let middle = server.create_service_account("p", "middleman").await;
    let remote = server.create_service_account("q", "far-worker").await;
    let token = || jwt_now(&server, &caller);
    let body = json!({"scope": [PUBSUB_SCOPE], "lifetime": "3600s"});

    // No credential, then no grant: refused the way Google refuses.
    let (status, answer) = generate(&server, "-", &worker, None, body.clone()).await;
    assert_eq!(
        (status, &answer["error"]["message"]),
        (401, &json!(MISSING))
    );
    let (status, answer) = generate(&server, "-", &worker, Some(&token()), body.clone()).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(answer["error"]["message"], GET_ACCESS_TOKEN_DENIED);
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "IAM_PERMISSION_DENIED"
    );
    // An account that does not exist.
    let nobody = "nobody@p.iam.gserviceaccount.com";
    let (status, answer) = generate(&server, "-", nobody, Some(&token()), body.clone()).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["status"], "NOT_FOUND");
    assert_eq!(
        answer["error"]["message"],
        format!("Not found; Gaia id not found for email {nobody}")
    );

    // Token Creator on the project: the caller mints the worker's tokens,
    // which IAM treats as the worker's (it may publish; the caller may not).
    set_policy(
        &server,
        "projects/p",
        &[(TOKEN_CREATOR, &[&format!("serviceAccount:{caller_email}")])],
    )
    .await;
    server
        .grant(
            TOPIC,
            "roles/pubsub.publisher",
            &format!("serviceAccount:{worker}"),
        )
        .await;
    let (status, answer) = generate(&server, "-", &worker, Some(&token()), body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["expireTime"],
        rfc3339(now(&server) + Duration::from_secs(3600))
    );
    let minted = answer["accessToken"].as_str().unwrap().to_string();
    assert!(publishes(&server, minted, "as the worker").await);
    assert!(!publishes(&server, token(), "as the caller").await);
    // The project id in place of `-`; another project does not hold it.
    let (status, _) = generate(&server, "p", &worker, Some(&token()), body.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = generate(&server, "q", &worker, Some(&token()), body.clone()).await;
    assert_eq!(status, 404);

    // Longer than an hour is refused; a shorter token expires on time.
    let (status, answer) = generate(
        &server,
        "-",
        &worker,
        Some(&token()),
        json!({"scope": [PUBSUB_SCOPE], "lifetime": "7200s"}),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["status"]),
        (400, &json!("INVALID_ARGUMENT"))
    );
    let (status, answer) = generate(
        &server,
        "-",
        &worker,
        Some(&token()),
        json!({"lifetime": "60s"}),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["message"]),
        (400, &json!("Scope required."))
    );
    let (_, answer) = generate(
        &server,
        "-",
        &worker,
        Some(&token()),
        json!({"scope": [PUBSUB_SCOPE], "lifetime": "600s"}),
    )
    .await;
    let short = answer["accessToken"].as_str().unwrap().to_string();
    assert!(publishes(&server, short.clone(), "within 600 s").await);
    tokio::time::advance(Duration::from_secs(601)).await;
    assert_status(
        publish(&mut publisher(&server, Some(short)), "late").await,
        Code::Unauthenticated,
        INVALID,
    );

    // A chain: the caller holds Token Creator in p only, the middle account
    // in q; the caller reaches q's account only through the middle one.
    set_policy(
        &server,
        "projects/q",
        &[(TOKEN_CREATOR, &[&format!("serviceAccount:{middle}")])],
    )
    .await;
    let (status, _) = generate(&server, "-", &remote, Some(&token()), body.clone()).await;
    assert_eq!(status, 403);
    let chained = json!({
        "scope": [PUBSUB_SCOPE],
        "delegates": [format!("projects/-/serviceAccounts/{middle}")],
    });
    let (status, answer) = generate(&server, "-", &remote, Some(&token()), chained.clone()).await;
    assert_eq!(status, 200, "{answer}");
    // Each link needs it on the next: without the middle account's grant
    // in q the chain breaks.
    set_policy(&server, "projects/q", &[]).await;
    let (status, answer) = generate(&server, "-", &remote, Some(&token()), chained).await;
    assert_eq!(
        (status, &answer["error"]["message"]),
        (403, &json!(GET_ACCESS_TOKEN_DENIED))
    );
    // An unknown delegate.
    let (status, _) = generate(
        &server,
        "-",
        &worker,
        Some(&token()),
        json!({"scope": [PUBSUB_SCOPE], "delegates": [format!("projects/-/serviceAccounts/{nobody}")]}),
    )
    .await;
    assert_eq!(status, 404);
}

/// Issues an authorized-user credential for `account` as the operator.
async fn login(server: &TestServer, account: &str) -> Value {
    let file = server
        .as_operator(
            reqwest::Method::POST,
            "/api/authorized-users",
            json!({"account": account, "quotaProjectId": "p"}),
        )
        .await;
    assert_eq!(file["type"], "authorized_user", "{file}");
    file
}

/// The refresh-token grant of `file`, as JSON; the status and the answer.
async fn refresh(server: &TestServer, file: &Value) -> (u16, Value) {
    let response = server
        .http
        .post(file["token_uri"].as_str().unwrap())
        .json(&json!({
            "grant_type": "refresh_token",
            "client_id": file["client_id"],
            "client_secret": file["client_secret"],
            "refresh_token": file["refresh_token"],
            "scope": PUBSUB_SCOPE,
        }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn authorized_users_refresh_their_tokens_and_act_as_the_user() {
    let server = start().await;
    resources(&server).await;
    let file = login(&server, "alice@example.com").await;
    assert_eq!(file["token_uri"], server.url("/token"));
    assert_eq!(file["quota_project_id"], "p");
    assert_eq!(file["account"], "alice@example.com");
    // Only the operator issues them.
    let key_file = account(&server, "not-an-operator").await;
    let refused = server
        .http
        .post(server.url("/api/authorized-users"))
        .bearer_auth(jwt_now(&server, &key_file))
        .json(&json!({"account": "mallory@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let (status, token) = refresh(&server, &file).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    assert_eq!(token["scope"], PUBSUB_SCOPE);
    let access = token["access_token"].as_str().unwrap().to_string();
    // The token is user:alice@example.com for IAM.
    assert!(!publishes(&server, access.clone(), "before the grant").await);
    server
        .grant(TOPIC, "roles/pubsub.publisher", "user:alice@example.com")
        .await;
    assert!(publishes(&server, access.clone(), "as alice").await);
    assert_status(
        pull(&mut subscriber(&server, Some(access.clone()))).await,
        Code::PermissionDenied,
        DENIED,
    );
    // The form encoding works too (Python's google-auth sends one), with
    // the client in an HTTP Basic header.
    let form = server
        .http
        .post(server.url("/token"))
        .basic_auth(
            file["client_id"].as_str().unwrap(),
            file["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", file["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);

    // Another client's secret, another token: OAuth's refusals.
    let mut wrong = file.clone();
    wrong["client_secret"] = json!("guessed");
    let (status, answer) = refresh(&server, &wrong).await;
    assert_eq!((status, &answer["error"]), (401, &json!("invalid_client")));
    let mut wrong = file.clone();
    wrong["refresh_token"] = json!("1//forged");
    let (status, answer) = refresh(&server, &wrong).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );

    // Access tokens expire with their hour; the refresh token does not.
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_status(
        publish(&mut publisher(&server, Some(access)), "late").await,
        Code::Unauthenticated,
        INVALID,
    );
    let (_, token) = refresh(&server, &file).await;
    let fresh = token["access_token"].as_str().unwrap().to_string();
    assert!(publishes(&server, fresh.clone(), "refreshed").await);

    // Revoking the refresh token stops it and the tokens it bought.
    server
        .revoke_refresh_token(file["refresh_token"].as_str().unwrap())
        .await;
    let (status, answer) = refresh(&server, &file).await;
    assert_eq!((status, &answer["error"]), (400, &json!("invalid_grant")));
    assert_status(
        publish(&mut publisher(&server, Some(fresh)), "after revoke").await,
        Code::Unauthenticated,
        INVALID,
    );
}

const POOL: &str = "projects/123/locations/global/workloadIdentityPools/ci";
const ISSUER: &str = "https://token.actions.example.com";

fn provider_audience() -> String {
    format!("//iam.googleapis.com/{POOL}/providers/gh")
}

/// An OIDC issuer's key, made for the test.
fn issuer_key() -> baton_auth::SigningKey {
    baton_auth::SigningKey::from_pkcs8_pem(
        &baton_auth::generate_rsa_key().unwrap().private_pkcs8_pem,
    )
    .unwrap()
}

/// A subject token of `key` for `sub`, valid for ten minutes from `iat`.
fn subject_token(
    key: &baton_auth::SigningKey,
    iss: &str,
    aud: &str,
    sub: &str,
    iat: u64,
) -> String {
    key.sign(&json!({"iss": iss, "aud": aud, "sub": sub, "iat": iat, "exp": iat + 600}))
        .unwrap()
}

/// The STS token exchange of `subject` at `server`, with these fields
/// replaced; the status and the answer.
async fn exchange(server: &TestServer, subject: &str, replace: &[(&str, &str)]) -> (u16, Value) {
    let audience = provider_audience();
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", audience.as_str()),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", subject),
    ];
    for (name, value) in replace {
        for field in form.iter_mut().filter(|(n, _)| n == name) {
            field.1 = value;
        }
    }
    let response = server
        .http
        .post(server.url("/v1/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A subject token, the form fields replaced, the error expected.
type StsCase = (String, Vec<(&'static str, &'static str)>, &'static str);

fn provider(issuer: &str, jwks: Option<Value>) -> baton_server::WorkloadIdentityProviderSettings {
    baton_server::WorkloadIdentityProviderSettings {
        audience: provider_audience(),
        issuer: issuer.to_string(),
        jwks,
    }
}

#[tokio::test(start_paused = true)]
async fn the_sts_exchanges_a_trusted_providers_subject_tokens_for_federated_tokens() {
    let key = issuer_key();
    let server = TestServer::start_with(
        virtual_config()
            .with_auth(operator_auth())
            .with_workload_identity_provider(provider(ISSUER, Some(key.jwks()))),
    )
    .await;
    resources(&server).await;
    let iat = unix(now(&server));
    let subject = "repo:acme/orders:ref:refs/heads/main";
    let https_audience = format!("https:{}", provider_audience());
    let good = subject_token(&key, ISSUER, &https_audience, subject, iat);

    let (status, token) = exchange(&server, &good, &[]).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(
        token["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let federated = token["access_token"].as_str().unwrap().to_string();
    // The federated principal, in IAM bindings: first nothing, then the
    // principal itself, then the whole pool.
    let principal = format!("principal://iam.googleapis.com/{POOL}/subject/{subject}");
    assert_status(
        publish(&mut publisher(&server, Some(federated.clone())), "x").await,
        Code::PermissionDenied,
        DENIED,
    );
    server
        .grant(TOPIC, "roles/pubsub.publisher", &principal)
        .await;
    assert!(publishes(&server, federated.clone(), "federated").await);
    assert_status(
        pull(&mut subscriber(&server, Some(federated.clone()))).await,
        Code::PermissionDenied,
        DENIED,
    );
    server
        .grant(
            SUBSCRIPTION,
            "roles/pubsub.subscriber",
            &format!("principalSet://iam.googleapis.com/{POOL}/*"),
        )
        .await;
    assert_eq!(
        pull(&mut subscriber(&server, Some(federated.clone())))
            .await
            .unwrap(),
        1
    );
    // An id_token subject token type, and the audience without https:.
    let plain = subject_token(&key, ISSUER, &provider_audience(), "other", iat);
    let (status, _) = exchange(
        &server,
        &plain,
        &[(
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token",
        )],
    )
    .await;
    assert_eq!(status, 200);

    // The federated token impersonates a service account it was granted
    // Token Creator on (the service_account_impersonation_url flow).
    let worker = server.create_service_account("p", "federated-worker").await;
    let (status, _) = generate(
        &server,
        "-",
        &worker,
        Some(&federated),
        json!({"scope": [PUBSUB_SCOPE]}),
    )
    .await;
    assert_eq!(status, 403);
    set_policy(&server, "projects/p", &[(TOKEN_CREATOR, &[&principal])]).await;
    let (status, answer) = generate(
        &server,
        "-",
        &worker,
        Some(&federated),
        json!({"scope": [PUBSUB_SCOPE]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // Refusals, in the STS's shape.
    let other_key = issuer_key();
    let cases: Vec<StsCase> = vec![
        (
            subject_token(&other_key, ISSUER, &https_audience, subject, iat),
            vec![],
            "invalid_grant",
        ),
        (
            subject_token(&key, "https://elsewhere", &https_audience, subject, iat),
            vec![],
            "invalid_grant",
        ),
        (
            subject_token(&key, ISSUER, "https://pubsub.googleapis.com/", subject, iat),
            vec![],
            "invalid_grant",
        ),
        (
            subject_token(&key, ISSUER, &https_audience, subject, iat - 601),
            vec![],
            "invalid_grant",
        ),
        ("not-a-jwt".to_string(), vec![], "invalid_grant"),
        (
            good.clone(),
            vec![(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            )],
            "invalid_request",
        ),
        (
            good.clone(),
            vec![(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            )],
            "invalid_request",
        ),
        (
            good.clone(),
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (
            good.clone(),
            vec![(
                "audience",
                "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/other",
            )],
            "invalid_target",
        ),
    ];
    for (subject_token, replace, expected) in cases {
        let (status, answer) = exchange(&server, &subject_token, &replace).await;
        assert_eq!(status, 400, "{replace:?}: {answer}");
        assert_eq!(answer["error"], expected, "{replace:?}: {answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    // The subject token expires on the broker's clock too.
    tokio::time::advance(Duration::from_secs(601)).await;
    let (status, _) = exchange(&server, &good, &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test(start_paused = true)]
async fn a_providers_keys_are_discovered_from_its_issuer() {
    let key = issuer_key();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")});
    let jwks = key.jwks();
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/keys",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let server = TestServer::start_with(
        virtual_config()
            .with_auth(operator_auth())
            .with_workload_identity_provider(provider(&issuer, None)),
    )
    .await;
    let iat = unix(now(&server));
    let token = subject_token(&key, &issuer, &provider_audience(), "job-1", iat);
    let (status, answer) = exchange(&server, &token, &[]).await;
    assert_eq!(status, 200, "{answer}");
    // An issuer that serves no keys is an error at start, not a provider
    // that refuses everything.
    let missing = TestServer::try_start_with(
        virtual_config()
            .with_auth(operator_auth())
            .with_workload_identity_provider(provider("http://127.0.0.1:9/none", None)),
    )
    .await;
    assert!(missing.is_err());
}
