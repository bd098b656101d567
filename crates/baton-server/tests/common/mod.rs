//! Shared harness of the server's integration tests: starts the real server
//! on `127.0.0.1:0`, hands out gRPC clients and a REST client, and wraps the
//! calls most tests repeat. Every helper is a real round trip.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{
    AcknowledgeRequest, ModifyAckDeadlineRequest, PublishRequest, PubsubMessage, PullRequest,
    ReceivedMessage, StreamingPullRequest, StreamingPullResponse, Subscription, Topic,
};
use baton_proto::wkt;
use baton_server::{RunningServer, ServerConfig};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

/// Project of every resource the tests create.
pub const PROJECT: &str = "baton-tests";

/// Large enough for 10 MB messages in pull answers.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A running server plus clients for it.
pub struct TestServer {
    server: Option<RunningServer>,
    /// What the server was started with (for [`TestServer::restart`]).
    config: ServerConfig,
    pub addr: SocketAddr,
    pub channel: Channel,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts a fresh server with an empty broker and connects to it.
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::new(loopback())).await
    }

    /// Starts a durable server keeping its state in `dir` (recovering what
    /// the directory holds already) and connects to it.
    pub async fn start_durable(dir: &Path) -> Self {
        Self::start_with(ServerConfig::new(loopback()).with_data_dir(dir)).await
    }

    /// Shuts the server down cleanly (closing its store) and starts a new
    /// one with the same configuration (same data directory, a new port).
    pub async fn restart(self) -> Self {
        let config = self.config.clone();
        self.shutdown().await;
        Self::start_with(config).await
    }

    /// Starts a server with `config` and connects to it.
    pub async fn start_with(config: ServerConfig) -> Self {
        let server = baton_server::start(config.clone())
            .await
            .expect("server starts");
        let addr = server.local_addr();
        let channel = connect(addr).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            server: Some(server),
            config,
            addr,
            channel,
            http,
        }
    }

    /// The running server (for `broker()`).
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server still running")
    }

    /// Takes the server out, to shut it down while clients stay around.
    pub fn take_server(&mut self) -> RunningServer {
        self.server.take().expect("server still running")
    }

    /// A new connection (its own HTTP/2 connection) to the server.
    pub async fn new_channel(&self) -> Channel {
        connect(self.addr).await
    }

    pub fn publisher(&self) -> PublisherClient<Channel> {
        publisher(self.channel.clone())
    }

    pub fn subscriber(&self) -> SubscriberClient<Channel> {
        subscriber(self.channel.clone())
    }

    /// Number of messages of `subscription` neither acked nor dead-lettered.
    pub fn backlog(&self, subscription: &str) -> usize {
        self.server()
            .broker()
            .backlog_len(subscription)
            .expect("subscription exists")
    }

    // ----- admin --------------------------------------------------------

    pub async fn create_topic(&self, id: &str) -> String {
        let name = topic_name(id);
        self.publisher()
            .create_topic(Topic {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .expect("create topic");
        name
    }

    pub async fn create_subscription(&self, id: &str, topic: &str) -> String {
        self.create_subscription_with(Subscription {
            name: subscription_name(id),
            topic: topic.to_string(),
            ..Default::default()
        })
        .await
        .name
    }

    pub async fn create_subscription_with(&self, subscription: Subscription) -> Subscription {
        self.subscriber()
            .create_subscription(subscription)
            .await
            .expect("create subscription")
            .into_inner()
    }

    // ----- publish and pull ---------------------------------------------

    pub async fn publish(&self, topic: &str, data: &[&str]) -> Vec<String> {
        self.publish_messages(topic, data.iter().map(|d| msg(d)).collect())
            .await
    }

    pub async fn publish_messages(&self, topic: &str, messages: Vec<PubsubMessage>) -> Vec<String> {
        self.publisher()
            .publish(PublishRequest {
                topic: topic.to_string(),
                messages,
            })
            .await
            .expect("publish")
            .into_inner()
            .message_ids
    }

    /// Pull with `return_immediately`: whatever is ready now.
    pub async fn pull_now(&self, subscription: &str, max: i32) -> Vec<ReceivedMessage> {
        self.subscriber()
            .pull(pull_request(subscription, max, true))
            .await
            .expect("pull")
            .into_inner()
            .received_messages
    }

    /// A waiting Pull with a gRPC deadline of `timeout`.
    pub async fn pull_wait(
        &self,
        subscription: &str,
        max: i32,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>, Status> {
        let mut request = tonic::Request::new(pull_request(subscription, max, false));
        request.set_timeout(timeout);
        self.subscriber()
            .pull(request)
            .await
            .map(|r| r.into_inner().received_messages)
    }

    /// Waiting Pulls until `count` messages arrived or `within` passed.
    pub async fn pull_until(
        &self,
        subscription: &str,
        count: usize,
        within: Duration,
    ) -> Vec<ReceivedMessage> {
        self.pull_loop(subscription, count, within, false).await
    }

    /// Like [`Self::pull_until`], acking each batch as it arrives.
    pub async fn pull_acking_until(
        &self,
        subscription: &str,
        count: usize,
        within: Duration,
    ) -> Vec<ReceivedMessage> {
        self.pull_loop(subscription, count, within, true).await
    }

    async fn pull_loop(
        &self,
        subscription: &str,
        count: usize,
        within: Duration,
        ack: bool,
    ) -> Vec<ReceivedMessage> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < count {
            let left = end.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(100) {
                break;
            }
            let max = i32::try_from(count - got.len()).unwrap_or(i32::MAX);
            let batch = match self
                .pull_wait(subscription, max, left.min(Duration::from_secs(2)))
                .await
            {
                Ok(batch) => batch,
                Err(status) if status.code() == Code::DeadlineExceeded => Vec::new(),
                Err(status) => panic!("waiting pull: {status:?}"),
            };
            if ack && !batch.is_empty() {
                self.ack(subscription, &ack_ids(&batch)).await.expect("ack");
            }
            got.extend(batch);
        }
        got
    }

    pub async fn ack(&self, subscription: &str, ack_ids: &[String]) -> Result<(), Status> {
        self.subscriber()
            .acknowledge(AcknowledgeRequest {
                subscription: subscription.to_string(),
                ack_ids: ack_ids.to_vec(),
            })
            .await
            .map(|_| ())
    }

    pub async fn modack(
        &self,
        subscription: &str,
        ack_ids: &[String],
        seconds: i32,
    ) -> Result<(), Status> {
        self.subscriber()
            .modify_ack_deadline(ModifyAckDeadlineRequest {
                subscription: subscription.to_string(),
                ack_ids: ack_ids.to_vec(),
                ack_deadline_seconds: seconds,
            })
            .await
            .map(|_| ())
    }

    // ----- streaming pull -------------------------------------------------

    /// Opens a StreamingPull whose first request is `first`.
    pub async fn open_stream(&self, first: StreamingPullRequest) -> Result<PullStream, Status> {
        PullStream::open(self.channel.clone(), first).await
    }

    // ----- REST -----------------------------------------------------------

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A REST call with an optional JSON body; answers status and JSON.
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("REST request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("REST body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("REST answer is not JSON: {status} {text:?}"));
        (status, value)
    }

    /// A REST call with a raw body.
    pub async fn rest_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &'static str,
    ) -> (u16, String) {
        let response = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("REST request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("REST body"))
    }

    /// Shuts the server down (asserting it stops cleanly).
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(15), server.shutdown())
                .await
                .expect("shutdown finishes")
                .expect("clean shutdown");
        }
    }
}

/// `127.0.0.1:0`: a free loopback port.
fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

pub fn publisher(channel: Channel) -> PublisherClient<Channel> {
    PublisherClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

pub fn subscriber(channel: Channel) -> SubscriberClient<Channel> {
    SubscriberClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// An open StreamingPull: a sender for further requests and the responses.
pub struct PullStream {
    pub requests: mpsc::Sender<StreamingPullRequest>,
    pub responses: Streaming<StreamingPullResponse>,
}

impl PullStream {
    pub async fn open(channel: Channel, first: StreamingPullRequest) -> Result<Self, Status> {
        let (requests, rx) = mpsc::channel(64);
        requests.send(first).await.expect("queue first request");
        let responses = subscriber(channel)
            .streaming_pull(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self {
            requests,
            responses,
        })
    }

    pub async fn send(&self, request: StreamingPullRequest) {
        self.requests
            .send(request)
            .await
            .expect("stream request queued");
    }

    /// The next response within `within`: `None` on timeout, `Some(Err)` on
    /// an error status, `Some(Ok(None))` when the stream ended with OK.
    pub async fn next_within(
        &mut self,
        within: Duration,
    ) -> Option<Result<Option<StreamingPullResponse>, Status>> {
        tokio::time::timeout(within, self.responses.message())
            .await
            .ok()
    }

    /// The next response, which must come within `within`.
    pub async fn expect_response(&mut self, within: Duration) -> StreamingPullResponse {
        match self.next_within(within).await {
            Some(Ok(Some(response))) => response,
            Some(Ok(None)) => panic!("stream ended with OK, a response was expected"),
            Some(Err(status)) => panic!("stream failed: {status:?}"),
            None => panic!("no response within {within:?}"),
        }
    }

    /// Collects received messages until `count` arrived or `within` passed.
    pub async fn collect(&mut self, count: usize, within: Duration) -> Vec<ReceivedMessage> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < count {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_within(left).await {
                Some(Ok(Some(response))) => got.extend(response.received_messages),
                Some(Ok(None)) => panic!("stream ended with OK while collecting"),
                Some(Err(status)) => panic!("stream failed while collecting: {status:?}"),
                None => break,
            }
        }
        got
    }

    /// Waits for the stream to end with an error status.
    pub async fn expect_error(&mut self, within: Duration) -> Status {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(Ok(Some(_))) => continue,
                Some(Ok(None)) => panic!("stream ended with OK, an error was expected"),
                Some(Err(status)) => return status,
                None => panic!("stream did not end within {within:?}"),
            }
        }
    }

    /// Sends a keepalive (an empty request) and waits for its answer.
    pub async fn keepalive(&mut self, within: Duration) -> StreamingPullResponse {
        self.send(StreamingPullRequest::default()).await;
        self.expect_response(within).await
    }
}

/// The first request of a stream on `subscription` (deadline 10 s).
pub fn stream_request(subscription: &str) -> StreamingPullRequest {
    StreamingPullRequest {
        subscription: subscription.to_string(),
        stream_ack_deadline_seconds: 10,
        client_id: "baton-test".to_string(),
        ..Default::default()
    }
}

/// Opens a stream and expects it to fail, from the call or its first item.
pub async fn stream_failure(channel: Channel, first: StreamingPullRequest) -> Status {
    match PullStream::open(channel, first).await {
        Err(status) => status,
        Ok(mut stream) => stream.expect_error(Duration::from_secs(5)).await,
    }
}

// ----- names and values ---------------------------------------------------

pub fn topic_name(id: &str) -> String {
    format!("projects/{PROJECT}/topics/{id}")
}

pub fn subscription_name(id: &str) -> String {
    format!("projects/{PROJECT}/subscriptions/{id}")
}

pub fn snapshot_name(id: &str) -> String {
    format!("projects/{PROJECT}/snapshots/{id}")
}

pub fn project() -> String {
    format!("projects/{PROJECT}")
}

pub fn msg(data: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn keyed(data: &str, key: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        ordering_key: key.to_string(),
        ..Default::default()
    }
}

pub fn with_attributes(data: &str, attributes: &[(&str, &str)]) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

pub fn secs(seconds: i64) -> wkt::Duration {
    wkt::Duration { seconds, nanos: 0 }
}

pub fn mask(paths: &[&str]) -> Option<wkt::FieldMask> {
    Some(wkt::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[allow(deprecated)]
pub fn pull_request(subscription: &str, max: i32, return_immediately: bool) -> PullRequest {
    PullRequest {
        subscription: subscription.to_string(),
        return_immediately,
        max_messages: max,
    }
}

/// The data of a received message as text.
pub fn data(received: &ReceivedMessage) -> String {
    let message = received.message.as_ref().expect("message present");
    String::from_utf8(message.data.clone()).expect("utf-8 data")
}

pub fn datas(received: &[ReceivedMessage]) -> Vec<String> {
    received.iter().map(data).collect()
}

pub fn message_id(received: &ReceivedMessage) -> String {
    received
        .message
        .as_ref()
        .expect("message present")
        .message_id
        .clone()
}

pub fn ack_ids(received: &[ReceivedMessage]) -> Vec<String> {
    received.iter().map(|m| m.ack_id.clone()).collect()
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

/// Median of some durations.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
