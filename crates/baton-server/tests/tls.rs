//! TLS on every port: gRPC, REST (HTTP/1.1 and h2 by ALPN) and the OTLP
//! receivers, with the development certificate (made, kept, reused) or PEM
//! files given explicitly; clients that do not speak TLS fail without
//! disturbing anyone else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use baton_server::{ServerConfig, TlsSettings};
use baton_testkit::grpc::try_connect_tls;
use baton_testkit::otlp::{hex, now_nanos as now, request, span, trace_id};
use baton_testkit::prelude::*;
use baton_testkit::server::root_certificate;
use opentelemetry_proto_types::*;
use prost::Message;
use tokio::io::AsyncWriteExt;

/// The OTLP types, through the trace store's re-export.
mod opentelemetry_proto_types {
    pub use baton_server::baton_trace_store::opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
}

/// A reqwest client trusting `root`; `http1` forces HTTP/1.1, otherwise
/// ALPN picks h2.
fn https_client(root: &Path, http1: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().add_root_certificate(root_certificate(root));
    let builder = if http1 { builder.http1_only() } else { builder };
    builder.build().unwrap()
}

#[tokio::test]
async fn grpc_publish_and_pull_over_tls() {
    let server = TestServer::start_tls().await;
    assert_eq!(server.server().scheme(), "https");
    let root = server.tls_root().unwrap().to_path_buf();
    assert!(root.ends_with("tls/ca.pem"), "{}", root.display());
    // The testkit's channel is TLS (domain `localhost`, trusting ca.pem).
    let topic = server.create_topic("tls-topic").await;
    let subscription = server.create_subscription("tls-sub", &topic).await;
    let ids = server.publish(&topic, &["secret"]).await;
    let received = server.pull_acking_now(&subscription).await;
    assert_eq!(datas(&received), ["secret"]);
    assert_eq!(message_id(&received[0]), ids[0]);
    // The certificate covers the loopback address as well as `localhost`.
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(std::fs::read(&root).unwrap()),
        ))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let topics = publisher(channel)
        .get_topic(baton_proto::pubsub::GetTopicRequest {
            topic: topic.clone(),
        })
        .await
        .unwrap();
    assert_eq!(topics.into_inner().name, topic);
    server.shutdown().await;
}

#[tokio::test]
async fn rest_over_tls_with_http1_and_h2() {
    let server = TestServer::start_tls().await;
    let root = server.tls_root().unwrap().to_path_buf();
    let url = server.url(&format!("/v1/{}", topic_name("rest-tls")));
    assert!(url.starts_with("https://"), "{url}");

    let http1 = https_client(&root, true);
    let created = http1
        .put(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.version(), reqwest::Version::HTTP_11);
    assert_eq!(created.status(), 200);

    let h2 = https_client(&root, false);
    let got = h2.get(&url).send().await.unwrap();
    assert_eq!(got.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(got.status(), 200);
    let body: serde_json::Value = got.json().await.unwrap();
    assert_eq!(body["name"], topic_name("rest-tls"));

    // The web view is on the same port, over TLS too.
    let ui = h2.get(server.url("/ui/")).send().await.unwrap();
    assert_eq!(ui.status(), 200);

    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder().build().unwrap();
    let error = untrusting.get(&url).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn development_certificate_is_kept_private_and_reused_on_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("tls");
    let config = ServerConfig::new(loopback())
        .with_data_dir(data.path())
        .with_tls(TlsSettings::Development { dir: dir.clone() });
    let server = TestServer::start_with(config).await;
    assert_eq!(server.tls_root().unwrap(), dir.join("ca.pem"));
    let topic = server.create_topic("kept").await;
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let before: Vec<Vec<u8>> = ["ca.pem", "ca-key.pem", "cert.pem", "key.pem"]
        .iter()
        .map(|name| read(name))
        .collect();
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    let server = server.restart().await;
    let after: Vec<Vec<u8>> = ["ca.pem", "ca-key.pem", "cert.pem", "key.pem"]
        .iter()
        .map(|name| read(name))
        .collect();
    assert_eq!(before, after, "the same files, byte for byte");
    // A client trusting the first run's CA (the restarted testkit channel
    // reads ca.pem again, so check with the bytes read before) still works.
    let ca_copy = data.path().join("first-ca.pem");
    std::fs::write(&ca_copy, &before[0]).unwrap();
    let channel = try_connect_tls(server.addr, &ca_copy).await.unwrap();
    let answer = publisher(channel)
        .get_topic(baton_proto::pubsub::GetTopicRequest {
            topic: topic.clone(),
        })
        .await
        .unwrap();
    assert_eq!(answer.into_inner().name, topic);
    server.shutdown().await;
}

/// A CA and a server certificate for `localhost` signed by it, as PEM
/// files in `dir`: (ca.pem, cert.pem, key.pem).
fn make_pem_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    // The chain: server certificate first, then its issuer.
    std::fs::write(&paths.1, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn pem_files_given_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_pem_files(dir.path());
    let config = ServerConfig::new(loopback()).with_tls(TlsSettings::Files {
        cert: cert.clone(),
        key,
    });
    let server = baton_server::start(config).await.unwrap();
    assert_eq!(server.tls_root(), Some(cert.as_path()));
    assert_eq!(server.scheme(), "https");
    let channel = try_connect_tls(server.local_addr(), &ca).await.unwrap();
    let mut publisher = publisher(channel);
    publisher
        .create_topic(baton_proto::pubsub::Topic {
            name: topic_name("files"),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids = publisher
        .publish(baton_proto::pubsub::PublishRequest {
            topic: topic_name("files"),
            messages: vec![msg("over files")],
        })
        .await
        .unwrap()
        .into_inner()
        .message_ids;
    assert_eq!(ids.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_or_wrong_key_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, _key) = make_pem_files(dir.path());
    let missing = ServerConfig::new(loopback()).with_tls(TlsSettings::Files {
        cert: cert.clone(),
        key: dir.path().join("nope.pem"),
    });
    let error = baton_server::start(missing).await.unwrap_err();
    assert!(error.to_string().contains("nope.pem"), "{error}");
    // A certificate file as the key: no key in it.
    let wrong = ServerConfig::new(loopback()).with_tls(TlsSettings::Files { cert, key: ca });
    let error = baton_server::start(wrong).await.unwrap_err();
    assert!(
        matches!(error, baton_server::ServerError::Tls(_)),
        "{error}"
    );
}

#[tokio::test]
async fn clients_without_tls_fail_and_do_not_hold_up_others() {
    let server = TestServer::start_tls().await;
    let topic = server.create_topic("others").await;
    // Connected before anyone else, saying nothing: if the handshake ran in
    // the accept loop, every later client would wait behind this one.
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut garbage = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"\x00\x01 this is not a TLS client hello\r\n\r\n")
        .await
        .unwrap();

    // Plaintext gRPC and HTTP/1.1 against the TLS port fail cleanly.
    let plaintext = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let result = publisher(channel)
            .get_topic(baton_proto::pubsub::GetTopicRequest {
                topic: topic.clone(),
            })
            .await;
        assert!(result.is_err(), "plaintext gRPC must not be answered");
    }
    let plain_rest = reqwest::get(format!("http://{}/v1/{topic}", server.addr)).await;
    assert!(plain_rest.is_err(), "plaintext HTTP must not be answered");

    // A new TLS connection is served while the silent one is still open.
    // The bound is a hang detector, not a latency check: a handshake in the
    // accept loop would hold everyone for the 10 s handshake timeout.
    let served = async {
        let channel = try_connect_tls(server.addr, server.tls_root().unwrap())
            .await
            .unwrap();
        publisher(channel)
            .publish(baton_proto::pubsub::PublishRequest {
                topic: topic.clone(),
                messages: vec![msg("served")],
            })
            .await
            .unwrap()
            .into_inner()
            .message_ids
    };
    let ids = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("served while a silent client holds a connection");
    assert_eq!(ids.len(), 1);
    drop((silent, garbage));
    server.shutdown().await;
}

#[tokio::test]
async fn otlp_ports_over_tls() {
    let server = TestServer::start_tls_with(
        ServerConfig::new(loopback())
            .with_otlp_grpc(loopback())
            .with_otlp_http(loopback()),
    )
    .await;
    let root = server.tls_root().unwrap().to_path_buf();
    assert!(server.otlp_http_endpoint().starts_with("https://"));
    assert!(server.otlp_grpc_endpoint().starts_with("https://"));

    // OTLP/HTTP, protobuf, over TLS.
    let start = now();
    let http_trace = trace_id(7);
    let body = request(
        "tls-http",
        vec![span(&http_trace, 1, None, "over https", start, start + 10)],
    )
    .encode_to_vec();
    let answer = https_client(&root, false)
        .post(format!("{}/v1/traces", server.otlp_http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // OTLP/gRPC over TLS.
    let grpc_trace = trace_id(8);
    let otlp_grpc = server.server().otlp_grpc_addr().unwrap();
    let channel = try_connect_tls(otlp_grpc, &root).await.unwrap();
    TraceServiceClient::new(channel)
        .export(request(
            "tls-grpc",
            vec![span(&grpc_trace, 1, None, "over grpcs", start, start + 10)],
        ))
        .await
        .unwrap();

    // Both landed; the query API answers over TLS on the main port.
    for (trace, name) in [(http_trace, "over https"), (grpc_trace, "over grpcs")] {
        let (status, detail) = server
            .rest(
                reqwest::Method::GET,
                &format!("/api/traces/{}", hex(&trace)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{detail}");
        assert_eq!(detail["spans"][0]["name"], name);
    }

    // Plain text on the OTLP ports is refused.
    let plain = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/traces",
            server.server().otlp_http_addr().unwrap()
        ))
        .body(Vec::<u8>::new())
        .send()
        .await;
    assert!(plain.is_err());
    server.shutdown().await;
}
