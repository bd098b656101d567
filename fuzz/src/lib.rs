//! Fuzz harnesses for everything Baton parses from people it does not
//! control: subscription filters, schema definitions and the messages
//! validated against them, trace context in message attributes, Publish
//! requests as the gRPC route decodes them, REST requests, OTLP/HTTP
//! exports, and credentials (`authorization` headers and token requests).
//!
//! Each harness takes raw bytes and must never panic or hang: a bad request
//! gets an error, nothing more. `fuzz_targets/` wraps each one for
//! cargo-fuzz (`scripts/fuzz`), and `tests/corpus.rs` replays the committed
//! corpus (`corpus/<target>/`) through them on every `cargo test`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use baton_broker::Broker;
use baton_broker::filter::Filter;
use baton_broker::schema::{CompiledSchema, MessageEncoding};
use baton_server::TraceStore;
use http::{Method, Request, header};
use tower::ServiceExt as _;

/// Longest any one request may take before the harness gives up on it (a
/// REST pull without `returnImmediately` waits for messages by design).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);

/// The project the REST fixture lives in.
pub const PROJECT: &str = "projects/fuzz-project";

/// A subscription filter, parsed and (when it parses) evaluated.
pub fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(filter) = Filter::parse(&text) {
        let attributes = HashMap::from([
            ("a".to_string(), "1".to_string()),
            ("kind".to_string(), "x".to_string()),
            (String::new(), String::new()),
        ]);
        filter.matches(&attributes);
        filter.matches(&HashMap::new());
    }
}

/// A trace search's query string (`GET /api/traces?...`, the web view's
/// URL, `baton trace search`): parsed; when it parses, written back and
/// parsed again to the same request, and run against a small store.
pub fn trace_search(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(request) = baton_trace_store::SearchRequest::parse_query(&text) else {
        return;
    };
    let again = baton_trace_store::SearchRequest::parse_query(&request.to_query());
    assert_eq!(again.as_ref(), Ok(&request), "query {text:?}");
    let page = trace_search_store().search(&request);
    assert!(page.traces.len() <= request.limit);
    assert!(page.total >= page.traces.len());
}

/// A store with one message flow, for [`trace_search`].
fn trace_search_store() -> &'static baton_trace_store::TraceStore {
    static STORE: std::sync::OnceLock<baton_trace_store::TraceStore> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let store = baton_trace_store::TraceStore::new(100);
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"spans":[
              {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"orders create","kind":4,
               "startTimeUnixNano":"1764100000000000000","endTimeUnixNano":"1764100000001000000",
               "attributes":[{"key":"messaging.system","value":{"stringValue":"gcp_pubsub"}},
                 {"key":"messaging.destination.name","value":{"stringValue":"orders"}},
                 {"key":"messaging.message.id","value":{"stringValue":"1"}},
                 {"key":"n","value":{"intValue":"7"}}]},
              {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203332","parentSpanId":"b7ad6b7169203331",
               "name":"orders-sub subscribe","kind":5,"status":{"code":2},
               "startTimeUnixNano":"1764100000002000000","endTimeUnixNano":"1764100000009000000",
               "attributes":[{"key":"messaging.system","value":{"stringValue":"gcp_pubsub"}},
                 {"key":"messaging.destination.name","value":{"stringValue":"orders-sub"}}]}]}]}]}"#;
        let accepted = serde_json::from_str(json)
            .map_err(|e| e.to_string())
            .and_then(|request| store.ingest(request).map_err(|e| e.to_string()))
            .map(|summary| summary.accepted);
        // A broken fixture would make the harness search an empty store.
        assert_eq!(accepted, Ok(2), "the fixture trace");
        store
    })
}

/// A schema definition (Protocol Buffer or Avro), then a message validated
/// against it. Layout: one selector byte (bit 0: Avro, bit 1: binary
/// encoding), the definition, a zero byte, the message.
pub fn schema(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = if selector & 1 == 1 { 2 } else { 1 };
    let encoding = if selector & 2 == 2 {
        MessageEncoding::Binary
    } else {
        MessageEncoding::Json
    };
    let (definition, message) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    if let Ok(compiled) = CompiledSchema::compile(kind, &String::from_utf8_lossy(definition)) {
        let _ = compiled.validate(message, encoding);
    }
}

/// Trace context read from message attributes: newline-separated values
/// for `googclient_traceparent`, `googclient_tracestate`, `traceparent`,
/// `tracestate`, `googclient_baggage`, `baggage`.
pub fn trace_context(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let keys = [
        baton_trace_context::TRACEPARENT_ATTRIBUTE,
        baton_trace_context::TRACESTATE_ATTRIBUTE,
        baton_trace_context::STANDARD_TRACEPARENT_ATTRIBUTE,
        baton_trace_context::STANDARD_TRACESTATE_ATTRIBUTE,
        baton_trace_context::BAGGAGE_ATTRIBUTE,
        "baggage",
    ];
    let attributes: HashMap<String, String> = keys
        .iter()
        .zip(text.split('\n'))
        .map(|(key, value)| ((*key).to_string(), value.to_string()))
        .collect();
    let options = baton_trace_context::PropagationOptions::default()
        .with_standard_keys(true)
        .with_baggage(true);
    let _ = baton_trace_context::extract(&attributes, &options);
}

/// A Publish request's bytes as the server's gRPC route decodes them
/// ([`baton_broker::PublishBatch`], each message's trace context held apart
/// from its attribute map). It must decode exactly when prost's standard
/// decoding does: to the same messages, or failing with the same words.
pub fn publish_request(data: &[u8]) {
    use baton_broker::{PublishBatch, PublishedMessage};
    use baton_proto::pubsub::{PublishRequest, PubsubMessage};
    use prost::Message as _;

    match (PublishBatch::decode(data), PublishRequest::decode(data)) {
        (Ok(batch), Ok(request)) => {
            assert_eq!(batch.topic, request.topic);
            let messages: Vec<PubsubMessage> = batch
                .messages
                .iter()
                .map(PublishedMessage::to_message)
                .collect();
            assert_eq!(messages, request.messages);
            let again = PublishRequest::decode(batch.encode_to_vec().as_slice());
            assert_eq!(again.ok(), Some(request), "encoded back");
        }
        (Err(ours), Err(standard)) => assert_eq!(ours.to_string(), standard.to_string()),
        (ours, standard) => panic!("the decoders disagree: {ours:?} against {standard:?}"),
    }
}

/// One REST request to a server holding a topic (`orders`, with a few
/// messages), a subscription (`workers`) and a snapshot. Layout: one
/// selector byte (the method), the path and query up to a newline, the body.
pub fn rest(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ][usize::from(selector) % 5]
        .clone();
    let (path, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(String::from_utf8_lossy(path).as_ref())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let fixture = fixture();
    fixture
        .runtime
        .block_on(send(fixture.rest.clone(), request));
}

/// One OTLP/HTTP export. Layout: one selector byte (bit 0: JSON rather than
/// protobuf, bit 1: gzip content encoding declared), the body.
pub fn otlp_http(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = if selector & 1 == 1 {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/v1/traces")
        .header(header::CONTENT_TYPE, content_type);
    if selector & 2 == 2 {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
    }
    let Ok(request) = builder.body(Body::from(body.to_vec())) else {
        return;
    };
    let fixture = fixture();
    fixture
        .runtime
        .block_on(send(fixture.otlp.clone(), request));
}

async fn send(router: axum::Router, request: Request<Body>) {
    if let Ok(Ok(response)) = tokio::time::timeout(REQUEST_TIMEOUT, router.oneshot(request)).await {
        // Read the whole answer: encoding it must not fail either.
        let _ = tokio::time::timeout(
            REQUEST_TIMEOUT,
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await;
    }
}

/// The servers the HTTP harnesses talk to, built once per process.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    rest: axum::Router,
    otlp: axum::Router,
    /// Keeps the broker (and its timer task) alive.
    _broker: Arc<Broker>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("fuzz fixture runtime: {e}"));
        let broker = runtime.block_on(async { populated_broker() });
        let traces = TraceStore::new(10_000);
        Fixture {
            rest: baton_server::router_with_traces(broker.clone(), traces.clone()),
            otlp: baton_trace_store::otlp::http_router(traces),
            runtime,
            _broker: broker,
        }
    })
}

/// A broker with something to find: a topic with messages, a subscription
/// and a snapshot, so requests reach past "not found".
fn populated_broker() -> Arc<Broker> {
    use baton_proto::pubsub::{PubsubMessage, Subscription, Topic};
    let broker = Broker::start();
    let topic = format!("{PROJECT}/topics/orders");
    let subscription = format!("{PROJECT}/subscriptions/workers");
    let ready = broker
        .create_topic(Topic {
            name: topic.clone(),
            ..Default::default()
        })
        .and_then(|_| {
            broker.create_subscription(Subscription {
                name: subscription.clone(),
                topic: topic.clone(),
                ..Default::default()
            })
        })
        .and_then(|_| {
            broker.publish(
                &topic,
                (0..3)
                    .map(|n| PubsubMessage {
                        data: format!("message {n}").into_bytes(),
                        ordering_key: "k".into(),
                        ..Default::default()
                    })
                    .collect(),
            )
        })
        .and_then(|_| {
            broker.create_snapshot(
                &format!("{PROJECT}/snapshots/before"),
                &subscription,
                HashMap::new(),
            )
        });
    if let Err(error) = ready {
        panic!("fuzz fixture: {error}");
    }
    broker
}

/// The time the credential fixture verifies at (2023-11-14T22:13:20Z): the
/// committed seeds are valid then, so the fuzzer starts on the success path.
pub const CREDENTIAL_NOW_UNIX: u64 = 1_700_000_000;

/// Baton's issuer in the credential fixture.
pub const CREDENTIAL_ISSUER: &str = "https://127.0.0.1:8085";

/// The token endpoint of the credential fixture (the seeds' `aud`).
pub const CREDENTIAL_TOKEN_URI: &str = "https://127.0.0.1:8085/token";

/// The operator token of the credential fixture.
pub const CREDENTIAL_OPERATOR_TOKEN: &str = "fuzz-operator-token";

/// An `authorization` header value and a token request body (the same
/// bytes as both), verified at [`CREDENTIAL_NOW_UNIX`] by an authenticator
/// with one account holding one key ([`credential_authenticator`]).
pub fn credential_verifier(data: &[u8]) {
    let authenticator = credential_authenticator();
    let now = credential_now();
    let _ = authenticator.verify_bearer(Some(data), now);
    let _ = authenticator.exchange_jwt_bearer(data, CREDENTIAL_TOKEN_URI, now);
}

/// [`CREDENTIAL_NOW_UNIX`] as a time.
pub fn credential_now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(CREDENTIAL_NOW_UNIX)
}

/// The seed of the credential fixture's signing key (Baton's own key, which
/// signs the access tokens the token exchange issues).
const CREDENTIAL_SIGNING_KEY_SEED: [u8; 32] = *b"baton-fuzz credential signingkey";

/// The seed of the credential fixture's account key (the key the
/// account's self-signed JWTs and assertions in the seeds are signed with).
const CREDENTIAL_ACCOUNT_KEY_SEED: [u8; 32] = *b"baton-fuzz credential accountkey";

/// The id of the credential fixture's signing key, generated from
/// [`CREDENTIAL_SIGNING_KEY_SEED`] (`tests/corpus.rs` checks it).
pub const CREDENTIAL_SIGNING_KEY_ID: &str = "4009e7159edfbf9f48df942e2f8a88e32cc87ca8";

/// The id of the credential fixture's account key, generated from
/// [`CREDENTIAL_ACCOUNT_KEY_SEED`]: the `kid` of the seeds
/// (`tests/corpus.rs` checks it).
pub const CREDENTIAL_ACCOUNT_KEY_ID: &str = "d6e2c419b3446befaa62c02624662c9f97268b79";

/// The key pairs of the credential fixture.
#[derive(Debug)]
pub struct CredentialKeys {
    /// Baton's signing key.
    pub signing: baton_auth::GeneratedKey,
    /// The key of the fixture's one service account; the seeds are signed
    /// with its private half.
    pub account: baton_auth::GeneratedKey,
}

/// The credential fixture's keys, generated once per process. No key is
/// committed: each is generated from a fixed seed, so it is the same on
/// every run and the committed seeds, signed with the account key, stay
/// valid (`regenerate_credential_seeds` in `tests/corpus.rs` re-signs them).
pub fn credential_keys() -> &'static CredentialKeys {
    static KEYS: OnceLock<CredentialKeys> = OnceLock::new();
    KEYS.get_or_init(|| CredentialKeys {
        signing: seeded_rsa_key(CREDENTIAL_SIGNING_KEY_SEED)
            .unwrap_or_else(|e| panic!("fuzz signing key: {e}")),
        account: seeded_rsa_key(CREDENTIAL_ACCOUNT_KEY_SEED)
            .unwrap_or_else(|e| panic!("fuzz account key: {e}")),
    })
}

/// A 2048-bit RSA key pair generated from `seed` (ChaCha20 as the random
/// source), so the same seed gives the same key, PKCS#8 and SPKI PEM. Its
/// id is the one Baton derives from the public key, as for an uploaded key.
/// Deterministic only as long as the `rsa` crate's key generation draws
/// the same way; `tests/corpus.rs` notices when it does not.
pub fn seeded_rsa_key(seed: [u8; 32]) -> Result<baton_auth::GeneratedKey, baton_auth::AuthError> {
    use chacha20::rand_core::SeedableRng as _;
    use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

    let crypto = |what: &str, e: &dyn std::fmt::Display| {
        baton_auth::AuthError::Crypto(format!("{what} the fuzz key: {e}"))
    };
    let mut rng = chacha20::ChaCha20Rng::from_seed(seed);
    let private = rsa::PrivateKey::new(&mut rng, baton_auth::keys::RSA_KEY_BITS)
        .map_err(|e| crypto("generating", &e))?;
    let private_pkcs8_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| crypto("encoding", &e))?
        .to_string();
    let public_key_pem = rsa::PublicKey::from(&private)
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| crypto("encoding", &e))?;
    Ok(baton_auth::GeneratedKey {
        key_id: baton_auth::keys::public_key_id(&public_key_pem)?,
        private_pkcs8_pem,
        public_key_pem,
    })
}

/// The credential fixture: Baton's signing key and one service account,
/// `fuzz-robot@fuzz-project.iam.gserviceaccount.com`, with one uploaded
/// public key, both from [`credential_keys`]. The account key's id is the
/// `kid` of the seeds, which were signed with its private half; fixed keys
/// make the seeds valid on every run, so the fuzzer mutates tokens that
/// reach signature and claim checks.
pub fn credential_authenticator() -> &'static baton_auth::Authenticator {
    static AUTHENTICATOR: OnceLock<baton_auth::Authenticator> = OnceLock::new();
    AUTHENTICATOR.get_or_init(|| {
        let keys = credential_keys();
        let signing = baton_auth::SigningKey::from_pkcs8_pem(&keys.signing.private_pkcs8_pem)
            .unwrap_or_else(|e| panic!("fuzz signing key: {e}"));
        let accounts = baton_auth::ServiceAccounts::open(None)
            .unwrap_or_else(|e| panic!("fuzz accounts: {e}"));
        let account = accounts
            .create("fuzz-project", "fuzz-robot", "Fuzz robot", "")
            .unwrap_or_else(|e| panic!("fuzz account: {e}"));
        accounts
            .upload_key(
                &account.email,
                &keys.account.public_key_pem,
                credential_now(),
            )
            .unwrap_or_else(|e| panic!("fuzz account key: {e}"));
        baton_auth::Authenticator::new(
            Arc::new(signing),
            accounts,
            CREDENTIAL_ISSUER.to_string(),
            Some(CREDENTIAL_OPERATOR_TOKEN.to_string()),
        )
    })
}
