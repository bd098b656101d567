//! gRPC connections to a server and the generated stubs of its services,
//! sized for the biggest messages the API allows, plus assertions on the
//! status of a failed call.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use baton_proto::iam::iam_policy_client::IamPolicyClient;
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::schema_service_client::SchemaServiceClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::error::Error;

/// Largest gRPC message the stubs send or accept: room for 10 MB messages
/// (and pull answers holding several) plus framing.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A new HTTP/2 connection to `addr`, or why there is none.
pub async fn try_connect(addr: SocketAddr) -> Result<Channel, Error> {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address makes a valid URI")
        .connect()
        .await
        .map_err(|source| Error::Connect { addr, source })
}

/// A new HTTP/2 connection over TLS to `addr`, trusting the PEM file
/// `root` and checking the server's certificate for the name `localhost`
/// (which Baton's development certificate covers).
pub async fn try_connect_tls(addr: SocketAddr, root: &Path) -> Result<Channel, Error> {
    let pem = std::fs::read(root)?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("a socket address makes a valid URI")
        .tls_config(tls)
        .map_err(|source| Error::Connect { addr, source })?
        .connect()
        .await
        .map_err(|source| Error::Connect { addr, source })
}

/// A new HTTP/2 connection to `addr`; panics when the server is not there.
pub async fn connect(addr: SocketAddr) -> Channel {
    try_connect(addr)
        .await
        .unwrap_or_else(|e| panic!("gRPC connection: {e}"))
}

/// A connection to a server that may still be starting (a child process):
/// retries for up to `within`, then panics with the last error.
pub async fn connect_retrying(addr: SocketAddr, within: Duration) -> Channel {
    let deadline = Instant::now() + within;
    loop {
        match try_connect(addr).await {
            Ok(channel) => return channel,
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot connect: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A Publisher stub on `channel`.
pub fn publisher(channel: Channel) -> PublisherClient<Channel> {
    PublisherClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// A Subscriber stub on `channel`.
pub fn subscriber(channel: Channel) -> SubscriberClient<Channel> {
    SubscriberClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// A SchemaService stub on `channel`.
pub fn schema(channel: Channel) -> SchemaServiceClient<Channel> {
    SchemaServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// An IAMPolicy stub on `channel`.
pub fn iam(channel: Channel) -> IamPolicyClient<Channel> {
    IamPolicyClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Asserts `result` failed with `code` and exactly `message`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} {message:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(
                (status.code(), status.message()),
                (code, message),
                "unexpected status {status:?}"
            );
        }
    }
}

/// Asserts `result` failed with `code` (any message); returns the status.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status {status:?}");
            status
        }
    }
}
