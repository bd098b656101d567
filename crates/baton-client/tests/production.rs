//! What production needs beyond the happy path, against real servers: the
//! metadata every request carries, gzip above the publisher's threshold,
//! mutual TLS, a wrong CA, a hung server (per-attempt timeouts on paused
//! time), a server that goes away mid-publish, and the `Stream` API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_suite;

use std::time::Duration;

use baton_client::{
    CallFamily, Client, ClientConfig, Endpoint, Message, PublisherConfig, RetrySettings,
    SubscriberConfig,
};
use baton_server::ServerConfig;
use baton_testkit::server::TestServer;
use client_suite::{ClientServer, PROJECT, Proxy};
use futures::StreamExt;
use tokio::time::Instant;
use tonic::Code;

/// Every request names the client (`x-goog-api-client`, user agent), and
/// the quota project when one is configured.
#[tokio::test(start_paused = true)]
async fn requests_carry_the_client_headers_and_the_quota_project() {
    let server = ClientServer::start().await;
    server.client.create_topic("headers").await.unwrap();
    let proxy = Proxy::start(server.addr).await;
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Emulator(proxy.addr.to_string()))
            .with_quota_project("billing-project"),
    )
    .await
    .unwrap();
    client
        .publisher("headers")
        .publish(Message::new("hi"))
        .await
        .unwrap();
    let metadata = proxy.metadata();
    let publish = metadata.last().unwrap();
    let api_client = publish.get("x-goog-api-client").unwrap().to_str().unwrap();
    assert!(api_client.starts_with("gl-rust/"), "{api_client}");
    assert!(
        api_client.contains(&format!("gccl/{}", env!("CARGO_PKG_VERSION")))
            && api_client.contains("grpc/0.14"),
        "{api_client}"
    );
    let user_agent = publish.get("user-agent").unwrap().to_str().unwrap();
    assert!(user_agent.starts_with("baton-client/"), "{user_agent}");
    assert_eq!(
        publish.get("x-goog-user-project").unwrap(),
        "billing-project"
    );
    // Without a quota project, no header.
    proxy.client().await.get_topic("headers").await.unwrap();
    let metadata = proxy.metadata();
    assert!(
        metadata
            .last()
            .unwrap()
            .get("x-goog-user-project")
            .is_none()
    );
    assert!(metadata.last().unwrap().get("x-goog-api-client").is_some());
}

/// Publish requests of at least the threshold are gzip-compressed; smaller
/// ones, and every request without a threshold, are not. The server
/// inflates them (the messages arrive whole).
#[tokio::test(start_paused = true)]
async fn publish_requests_above_the_threshold_are_gzip_compressed() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("gzip", false).await;
    let proxy = Proxy::start(server.addr).await;
    let client = proxy.client().await;
    let publisher = client.publisher_with(
        "gzip",
        PublisherConfig::default().with_compression_threshold(1000),
    );
    publisher.publish(Message::new("small")).await.unwrap();
    let small = proxy.metadata().last().unwrap().clone();
    assert!(small.get("grpc-encoding").is_none(), "{small:?}");
    publisher
        .publish(Message::new(vec![b'z'; 5000]))
        .await
        .unwrap();
    let large = proxy.metadata().last().unwrap().clone();
    assert_eq!(large.get("grpc-encoding").unwrap(), "gzip");
    client
        .publisher("gzip")
        .publish(Message::new(vec![b'z'; 5000]))
        .await
        .unwrap();
    let off = proxy.metadata().last().unwrap().clone();
    assert!(off.get("grpc-encoding").is_none(), "off by default");
    let received = server
        .pull_acking_all(&sub, 3, Duration::from_secs(5))
        .await;
    let mut sizes: Vec<usize> = received.iter().map(|m| m.data.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [5, 5000, 5000]);
}

/// A development CA, a server certificate for `localhost` and a client
/// certificate, made now (never committed).
struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca_cert.pem(),
        server: leaf(vec!["localhost".into()]),
        client: leaf(vec!["baton-client".into()]),
    }
}

/// Mutual TLS: a server that requires a client certificate accepts the
/// client with `with_client_identity`, and refuses it without.
#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let server = ClientServer::start().await;
    server.client.create_topic("mtls").await.unwrap();
    let pki = pki();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let proxy = Proxy::start_with_tls(server.addr, Some(tls)).await;
    let endpoint = Endpoint::Custom {
        uri: format!("https://localhost:{}", proxy.addr.port()),
        authenticate: false,
    };
    let config = ClientConfig::new(PROJECT)
        .with_endpoint(endpoint)
        .with_ca_certificate(pki.ca_pem.clone())
        .with_retry(
            CallFamily::AdminRead,
            RetrySettings::no_retry(Duration::from_secs(10)),
        );
    let with_identity = Client::connect(
        config
            .clone()
            .with_client_identity(pki.client.0.clone(), pki.client.1.clone()),
    )
    .await
    .unwrap();
    let topic = with_identity.get_topic("mtls").await.unwrap();
    assert_eq!(topic.name, "projects/p/topics/mtls");
    let without = Client::connect(config).await.unwrap();
    let refused = without.get_topic("mtls").await.unwrap_err();
    assert!(
        refused.to_string().contains("CertificateRequired"),
        "the error names the missing client certificate: {refused}"
    );
}

/// A TLS endpoint whose certificate chains to an untrusted CA fails, and
/// the error says it was the certificate.
#[tokio::test]
async fn a_wrong_ca_fails_naming_the_tls_failure() {
    let server = TestServer::start_tls().await;
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Custom {
                uri: format!("https://localhost:{}", server.addr.port()),
                authenticate: false,
            })
            // A CA, but not the server's.
            .with_ca_certificate(pki().ca_pem)
            .with_retry(
                CallFamily::AdminRead,
                RetrySettings::no_retry(Duration::from_secs(10)),
            ),
    )
    .await
    .unwrap();
    let error = client.get_topic("any").await.unwrap_err();
    let text = format!("{error}").to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("issuer"),
        "the error should name the TLS failure: {error}"
    );
}

/// A server that accepts connections and never answers: each attempt ends
/// at its per-attempt timeout (exact on paused time); a retryable call is
/// tried again until its total deadline, a non-retryable one fails at once.
#[tokio::test(start_paused = true)]
async fn a_hung_call_hits_its_per_attempt_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Emulator(addr.to_string()))
            .with_retry(
                CallFamily::AdminWrite,
                RetrySettings::default_for(CallFamily::AdminWrite)
                    .with_attempt_timeout(Duration::from_secs(5)),
            )
            .with_retry(
                CallFamily::Publish,
                RetrySettings::default_for(CallFamily::Publish)
                    .with_attempt_timeout(Duration::from_secs(2))
                    .with_initial_backoff(Duration::from_secs(1))
                    .with_multiplier(1.0)
                    .with_max_backoff(Duration::from_secs(1))
                    .with_total_timeout(Duration::from_secs(9)),
            ),
    )
    .await
    .unwrap();
    // CreateTopic retries UNAVAILABLE only: one attempt of 5 s.
    let started = Instant::now();
    let error = client.create_topic("hung").await.unwrap_err();
    assert_eq!(error.code(), Some(Code::DeadlineExceeded), "{error:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    // Publish retries DEADLINE_EXCEEDED: attempts of 2 s with 0.5-1 s
    // between them, until the 9 s are spent.
    let started = Instant::now();
    let error = client
        .publisher("hung")
        .publish(Message::new("stuck"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::DeadlineExceeded), "{error:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed <= Duration::from_millis(9_010),
        "{elapsed:?}"
    );
}

/// A server that takes the StreamingPull call and never answers: the
/// attempt to open the stream gives up after 15 s and the subscriber tries
/// again, until the server answers and messages flow (paused time).
#[tokio::test(start_paused = true)]
async fn a_stream_that_never_opens_is_tried_again_after_its_open_timeout() {
    let server = ClientServer::start().await;
    let (topic, sub) = server.topic_and_subscription("stalled", false).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.stall_stream_opens(true);
    let client = proxy.client().await;
    let subscriber = client.subscriber(&sub);
    let mut stream = subscriber.stream();
    let waiting = tokio::time::timeout(Duration::from_secs(14), stream.next()).await;
    assert!(waiting.is_err(), "nothing can arrive from a stalled open");
    assert_eq!(proxy.streams(), 1, "one attempt within the 15 s");
    // At 15 s the attempt gives up; the next follows after a backoff of at
    // most 100 ms.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(proxy.streams(), 2, "a second attempt after 15 s");
    proxy.stall_stream_opens(false);
    server
        .client
        .publisher(&topic)
        .publish(Message::new("after the stall"))
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the stream opens once the server answers")
        .unwrap()
        .unwrap();
    assert_eq!(message.data(), b"after the stall");
    message.ack();
}

/// The StreamingPull family is the stream's retry settings: each attempt
/// gets its per-attempt timeout to open, and once reopening has failed for
/// the total, the session ends with the last error. On paused time.
#[tokio::test(start_paused = true)]
async fn a_stream_gives_up_after_its_configured_total() {
    let server = ClientServer::start().await;
    let (_topic, sub) = server
        .topic_and_subscription("stalled-for-good", false)
        .await;
    let proxy = Proxy::start(server.addr).await;
    proxy.stall_stream_opens(true);
    let client = Client::connect(
        ClientConfig::new(PROJECT)
            .with_endpoint(Endpoint::Emulator(proxy.addr.to_string()))
            .with_retry(
                CallFamily::StreamingPull,
                RetrySettings::default_for(CallFamily::StreamingPull)
                    .with_attempt_timeout(Duration::from_secs(2))
                    .with_total_timeout(Duration::from_secs(5)),
            ),
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let handle = client
        .subscriber(&sub)
        .subscribe(|message| async move { message.ack() });
    let ended = tokio::time::timeout(Duration::from_secs(60), handle.wait())
        .await
        .expect("the session ends within the total and one more attempt");
    let error = ended.unwrap_err();
    assert_eq!(error.code(), Some(Code::DeadlineExceeded), "{error:?}");
    // Attempts of 2 s each: the first fails at 2 s, reopening goes on
    // until 5 s of failures, so 3 or 4 attempts in all, never more.
    let attempts = proxy.streams();
    assert!((3..=4).contains(&attempts), "{attempts} attempts");
    assert!(
        started.elapsed() <= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

/// The server goes away while a message is being published and comes back
/// on the same port: the publish is retried (UNAVAILABLE) and succeeds. On
/// paused time: the outage and the retry backoffs take no real time.
#[tokio::test(start_paused = true)]
async fn a_publish_survives_the_server_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_durable(dir.path()).await;
    let addr = server.addr;
    let client = client_suite::client_at(addr).await;
    client.create_topic("outage").await.unwrap();
    let publisher = client.publisher("outage");
    publisher.publish(Message::new("before")).await.unwrap();
    server.shutdown().await;
    let during = publisher.publish(Message::new("during the outage"));
    // The outage lasts 300 ms of virtual time: the first attempts fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = TestServer::start_on_with(ServerConfig::new(addr).with_data_dir(dir.path())).await;
    let id = tokio::time::timeout(Duration::from_secs(30), during)
        .await
        .expect("the retried publish resolves once the server is back")
        .unwrap();
    assert!(!id.is_empty());
    back.shutdown().await;
}

/// `Subscriber::stream`: flow control holds back messages beyond the limit
/// until one is settled, acks and nacks reach the server, and dropping the
/// stream nacks what it held so another subscriber gets it at once.
#[tokio::test(start_paused = true)]
async fn the_stream_respects_flow_control_and_settles() {
    let server = ClientServer::start().await;
    let (_, sub) = server.topic_and_subscription("streamed", false).await;
    let publisher = server.client.publisher("streamed");
    for i in 0..4 {
        publisher
            .publish(Message::new(format!("m{i}")))
            .await
            .unwrap();
    }
    let subscriber = server
        .client
        .subscriber_with(&sub, SubscriberConfig::default().with_flow_control(2, 0));
    let mut stream = subscriber.stream();
    let first = stream.next().await.unwrap().unwrap();
    let second = stream.next().await.unwrap().unwrap();
    // Two outstanding: the third waits for a settle.
    let held = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
    assert!(held.is_err(), "a third message beyond the limit");
    first.ack();
    let third = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("room after an ack")
        .unwrap()
        .unwrap();
    third.ack();
    // A nack gives the message back for redelivery.
    let nacked = second.message_id().to_string();
    second.nack();
    let mut held = Vec::new();
    let mut redelivered = false;
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if next.message_id() == nacked {
            redelivered = true;
            next.ack();
        } else {
            held.push(next);
        }
    }
    assert!(redelivered, "the nacked message comes back");
    assert_eq!(held.len(), 1);
    // Dropping the stream shuts down cleanly: what it held is nacked.
    drop(stream);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left = server
        .pull_acking_all(&sub, 1, Duration::from_secs(30))
        .await;
    assert_eq!(left.len(), 1, "the one message the stream still held");
    assert_eq!(left[0].message_id, held[0].message_id());
}
