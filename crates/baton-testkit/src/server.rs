//! The real server in-process: started on a free loopback port, in memory
//! or on a disk store, with the clients and round trips tests repeat. Every
//! helper is a real round trip over the network, never a call into the
//! broker behind the server's back (tests that want the broker get it from
//! [`TestServer::server`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::iam::iam_policy_client::IamPolicyClient;
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::schema_service_client::SchemaServiceClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{
    AcknowledgeRequest, ListSnapshotsRequest, ListSubscriptionsRequest, ListTopicSnapshotsRequest,
    ListTopicSubscriptionsRequest, ListTopicsRequest, ModifyAckDeadlineRequest, PublishRequest,
    PubsubMessage, ReceivedMessage, Snapshot, StreamingPullRequest, Subscription, Topic,
};
use baton_server::{RunningServer, ServerConfig, TlsSettings};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::Error;
use crate::grpc::{self, try_connect};
use crate::messages::{ack_ids, msg, project, pull_request, subscription_name, topic_name};
use crate::pages::all_items;
use crate::streaming::PullStream;
use crate::virtual_time;

/// How long [`TestServer::shutdown`] waits for a clean stop.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

/// `127.0.0.1:0`: a free loopback port, chosen when the server binds.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server configuration on [`loopback`] whose broker runs on
/// [`virtual_time::clock`]: for tests on paused time.
pub fn virtual_config() -> ServerConfig {
    ServerConfig::new(loopback()).with_clock(virtual_time::clock())
}

/// A running in-process server plus clients for it.
#[derive(Debug)]
pub struct TestServer {
    server: Option<RunningServer>,
    /// What the server was started with (for [`TestServer::restart`]).
    config: ServerConfig,
    /// The bound address (gRPC and REST share it).
    pub addr: SocketAddr,
    /// A connection every stub of this server shares.
    pub channel: Channel,
    /// The REST client (30 s timeout per request; trusting the server's
    /// certificate when it serves TLS).
    pub http: reqwest::Client,
    /// The directory of the development certificate of [`Self::start_tls`],
    /// kept for as long as the server (and its restarts) lives.
    tls_dir: Option<Arc<tempfile::TempDir>>,
}

impl TestServer {
    /// Starts a fresh server with an empty in-memory broker on
    /// `127.0.0.1:0` and connects to it.
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::new(loopback())).await
    }

    /// Starts a durable server keeping its state in `dir` (recovering what
    /// the directory holds already) and connects to it.
    pub async fn start_durable(dir: &Path) -> Self {
        Self::start_with(ServerConfig::new(loopback()).with_data_dir(dir)).await
    }

    /// Starts a fresh in-memory server serving TLS on every port with a
    /// development certificate made in a temporary directory, and connects
    /// to it over TLS (trusting [`Self::tls_root`]).
    pub async fn start_tls() -> Self {
        Self::start_tls_with(ServerConfig::new(loopback())).await
    }

    /// [`Self::start_tls`] with `config` otherwise (OTLP ports, a data
    /// directory); its TLS setting is replaced.
    pub async fn start_tls_with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the certificate");
        let config = config.with_tls(TlsSettings::Development {
            dir: dir.path().join("tls"),
        });
        let mut server = Self::start_with(config).await;
        server.tls_dir = Some(Arc::new(dir));
        server
    }

    /// Starts a fresh in-memory server on virtual time (see
    /// [`virtual_time`](crate::virtual_time)): its broker's wall clock reads
    /// [`virtual_time::start_wall`] now and follows Tokio's clock, so in a
    /// `#[tokio::test(start_paused = true)]` every deadline, backoff and
    /// wait of the server runs on the test's paused clock.
    pub async fn start_virtual() -> Self {
        Self::start_with(virtual_config()).await
    }

    /// [`Self::start_durable`] on virtual time, like [`Self::start_virtual`]
    /// ([`Self::restart`] keeps the clock).
    pub async fn start_durable_virtual(dir: &Path) -> Self {
        Self::start_with(virtual_config().with_data_dir(dir)).await
    }

    /// Starts a server with `config` (see [`loopback`] for its address) and
    /// connects to it; panics when it cannot.
    pub async fn start_with(config: ServerConfig) -> Self {
        Self::try_start_with(config)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`TestServer::start_with`], answering the failure instead of
    /// panicking (for callers that report it, like the conformance replay).
    pub async fn try_start_with(config: ServerConfig) -> Result<Self, Error> {
        let server = baton_server::start(config.clone()).await?;
        let addr = server.local_addr();
        let channel = match server.tls_root() {
            Some(root) => grpc::try_connect_tls(addr, root).await?,
            None => try_connect(addr).await?,
        };
        Ok(Self::around(server, config, channel))
    }

    /// Starts a server on exactly `addr` (a port a server just stopped
    /// held), retrying the bind for up to 5 s while the port is still taken.
    /// Its channel connects lazily, on the first call: nothing awaits
    /// between the bind and the return, so on a current-thread runtime the
    /// caller can create resources before any client reaches the server.
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::start_on_with(ServerConfig::new(addr)).await
    }

    /// [`Self::start_on`] with `config`, whose addresses (main, OTLP) are
    /// ports a server just stopped held: retries the bind for up to 5 s.
    pub async fn start_on_with(config: ServerConfig) -> Self {
        // Waits on the OS (the port to be released): real time.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let server = loop {
            match baton_server::start(config.clone()).await {
                Ok(server) => break server,
                Err(error) if std::time::Instant::now() < deadline => {
                    eprintln!("retrying bind: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot start the server: {error}"),
            }
        };
        let channel = Endpoint::from_shared(format!("http://{}", server.local_addr()))
            .expect("a socket address makes a valid URI")
            .connect_lazy();
        Self::around(server, config, channel)
    }

    fn around(server: RunningServer, config: ServerConfig, channel: Channel) -> Self {
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(root) = server.tls_root() {
            http = http.add_root_certificate(root_certificate(root));
        }
        let http = http.build().expect("http client");
        Self {
            addr: server.local_addr(),
            server: Some(server),
            config,
            channel,
            http,
            tls_dir: None,
        }
    }

    /// Shuts the server down cleanly (closing its store) and starts a new
    /// one with the same configuration (same data directory, a new port).
    pub async fn restart(self) -> Self {
        let config = self.config.clone();
        let tls_dir = self.tls_dir.clone();
        self.shutdown().await;
        let mut server = Self::start_with(config).await;
        server.tls_dir = tls_dir;
        server
    }

    /// Shuts the server down, asserting it stops cleanly within 15 s.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            tokio::time::timeout(SHUTDOWN_LIMIT, server.shutdown())
                .await
                .expect("shutdown finishes")
                .expect("clean shutdown");
        }
    }

    /// The running server (its broker, trace store, OTLP addresses).
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server still running")
    }

    /// Takes the server out, to shut it down (or watch it fail to) while
    /// the clients stay around.
    pub fn take_server(&mut self) -> RunningServer {
        self.server.take().expect("server still running")
    }

    /// The certificate file clients trust when the server serves TLS (the
    /// development CA of [`Self::start_tls`]); `None` in plain text.
    pub fn tls_root(&self) -> Option<&Path> {
        self.server().tls_root()
    }

    /// `host:port`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port` (`https` with TLS) of the OTLP/gRPC receiver
    /// (started with `ServerConfig::with_otlp_grpc`), as exporters want it.
    pub fn otlp_grpc_endpoint(&self) -> String {
        let addr = self
            .server()
            .otlp_grpc_addr()
            .expect("the server receives OTLP/gRPC");
        format!("{}://{addr}", self.server().scheme())
    }

    /// `http://host:port` (`https` with TLS) of the OTLP/HTTP receiver
    /// (started with `ServerConfig::with_otlp_http`).
    pub fn otlp_http_endpoint(&self) -> String {
        let addr = self
            .server()
            .otlp_http_addr()
            .expect("the server receives OTLP/HTTP");
        format!("{}://{addr}", self.server().scheme())
    }

    /// A new connection (its own HTTP/2 connection) to the server.
    pub async fn new_channel(&self) -> Channel {
        grpc::connect(self.addr).await
    }

    /// A Publisher stub on the shared connection.
    pub fn publisher(&self) -> PublisherClient<Channel> {
        grpc::publisher(self.channel.clone())
    }

    /// A Subscriber stub on the shared connection.
    pub fn subscriber(&self) -> SubscriberClient<Channel> {
        grpc::subscriber(self.channel.clone())
    }

    /// A SchemaService stub on the shared connection.
    pub fn schema(&self) -> SchemaServiceClient<Channel> {
        grpc::schema(self.channel.clone())
    }

    /// An IAMPolicy stub on the shared connection.
    pub fn iam(&self) -> IamPolicyClient<Channel> {
        grpc::iam(self.channel.clone())
    }

    // ----- listings (every page) -----------------------------------------

    /// Every topic of the tests' project, through ListTopics page by page.
    pub async fn list_topics(&self) -> Vec<Topic> {
        let mut publisher = self.publisher();
        all_items(
            async |page_token| {
                let request = ListTopicsRequest {
                    project: project(),
                    page_token,
                    ..Default::default()
                };
                publisher.list_topics(request).await.unwrap().into_inner()
            },
            |page| page.topics,
        )
        .await
    }

    /// Every subscription of the tests' project, page by page.
    pub async fn list_subscriptions(&self) -> Vec<Subscription> {
        let mut subscriber = self.subscriber();
        all_items(
            async |page_token| {
                let request = ListSubscriptionsRequest {
                    project: project(),
                    page_token,
                    ..Default::default()
                };
                subscriber
                    .list_subscriptions(request)
                    .await
                    .unwrap()
                    .into_inner()
            },
            |page| page.subscriptions,
        )
        .await
    }

    /// Every snapshot of the tests' project, page by page.
    pub async fn list_snapshots(&self) -> Vec<Snapshot> {
        let mut subscriber = self.subscriber();
        all_items(
            async |page_token| {
                let request = ListSnapshotsRequest {
                    project: project(),
                    page_token,
                    ..Default::default()
                };
                subscriber
                    .list_snapshots(request)
                    .await
                    .unwrap()
                    .into_inner()
            },
            |page| page.snapshots,
        )
        .await
    }

    /// Names of the subscriptions attached to `topic`, page by page.
    pub async fn list_topic_subscriptions(&self, topic: &str) -> Vec<String> {
        let mut publisher = self.publisher();
        all_items(
            async |page_token| {
                let request = ListTopicSubscriptionsRequest {
                    topic: topic.to_string(),
                    page_token,
                    ..Default::default()
                };
                publisher
                    .list_topic_subscriptions(request)
                    .await
                    .unwrap()
                    .into_inner()
            },
            |page| page.subscriptions,
        )
        .await
    }

    /// Names of the snapshots of `topic`, page by page.
    pub async fn list_topic_snapshots(&self, topic: &str) -> Vec<String> {
        let mut publisher = self.publisher();
        all_items(
            async |page_token| {
                let request = ListTopicSnapshotsRequest {
                    topic: topic.to_string(),
                    page_token,
                    ..Default::default()
                };
                publisher
                    .list_topic_snapshots(request)
                    .await
                    .unwrap()
                    .into_inner()
            },
            |page| page.snapshots,
        )
        .await
    }

    /// Number of messages of `subscription` neither acked nor dead-lettered
    /// (after a restart on a disk store, only those in memory until the
    /// broker's background count is in: see `Broker::backlog_counted`).
    pub fn backlog(&self, subscription: &str) -> usize {
        self.server()
            .broker()
            .backlog_len(subscription)
            .expect("subscription exists")
    }

    // ----- admin --------------------------------------------------------

    /// Creates topic `id` of [`PROJECT`](crate::messages::PROJECT); answers
    /// its full name.
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

    /// Creates subscription `id` of the topic named `topic` with default
    /// settings; answers its full name.
    pub async fn create_subscription(&self, id: &str, topic: &str) -> String {
        self.create_subscription_with(Subscription {
            name: subscription_name(id),
            topic: topic.to_string(),
            ..Default::default()
        })
        .await
        .name
    }

    /// Creates `subscription` as given; answers what the server made of it.
    pub async fn create_subscription_with(&self, subscription: Subscription) -> Subscription {
        self.subscriber()
            .create_subscription(subscription)
            .await
            .expect("create subscription")
            .into_inner()
    }

    // ----- publish and pull ---------------------------------------------

    /// Publishes one message per `data` item; answers the message ids.
    pub async fn publish(&self, topic: &str, data: &[&str]) -> Vec<String> {
        self.publish_messages(topic, data.iter().map(|d| msg(d)).collect())
            .await
    }

    /// Publishes `messages` in one request; answers the message ids.
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

    /// Pull with `return_immediately` (up to 1000 messages) and ack
    /// whatever came.
    pub async fn pull_acking_now(&self, subscription: &str) -> Vec<ReceivedMessage> {
        let received = self.pull_now(subscription, 1000).await;
        if !received.is_empty() {
            self.ack(subscription, &ack_ids(&received))
                .await
                .expect("ack");
        }
        received
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

    /// Waiting Pulls until `count` messages arrived or `within` passed
    /// (Tokio's clock: virtual time in a paused test).
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
        let end = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < count {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
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

    /// Pulls, acking everything, until `expected` messages arrived or
    /// `within` passed; then keeps pulling briefly (100 ms on) so extra
    /// deliveries (duplicates) show up too. Messages in delivery order.
    ///
    /// The pulls wait for messages (answered as soon as one is published),
    /// so nothing polls; its clock is Tokio's, so it follows a paused test
    /// clock.
    pub async fn pull_acking_all(
        &self,
        subscription: &str,
        expected: usize,
        within: Duration,
    ) -> Vec<PubsubMessage> {
        let received = self.pull_acking_until(subscription, expected, within).await;
        let mut messages: Vec<PubsubMessage> =
            received.into_iter().filter_map(|r| r.message).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        loop {
            let received = self.pull_acking_now(subscription).await;
            if received.is_empty() {
                break;
            }
            messages.extend(received.into_iter().filter_map(|r| r.message));
        }
        messages
    }

    /// Acknowledges `ack_ids`.
    pub async fn ack(&self, subscription: &str, ack_ids: &[String]) -> Result<(), Status> {
        self.subscriber()
            .acknowledge(AcknowledgeRequest {
                subscription: subscription.to_string(),
                ack_ids: ack_ids.to_vec(),
            })
            .await
            .map(|_| ())
    }

    /// Sets the ack deadline of `ack_ids` to `seconds` (0 nacks).
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

    /// Opens a StreamingPull on the shared connection whose first request
    /// is `first`.
    pub async fn open_stream(&self, first: StreamingPullRequest) -> Result<PullStream, Status> {
        PullStream::open(self.channel.clone(), first).await
    }

    // ----- REST -----------------------------------------------------------

    /// `http://host:port{path}` (`https` when serving TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = self.server.as_ref().map_or("http", |s| s.scheme());
        format!("{scheme}://{}{path}", self.addr)
    }

    /// A REST call with an optional JSON body; answers the status and the
    /// JSON answer (panicking when the answer is not JSON).
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

    /// A REST call with a raw body sent as JSON; answers status and text.
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
}

/// The PEM certificate in `path`, for a reqwest client to trust.
pub fn root_certificate(path: &Path) -> reqwest::Certificate {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    reqwest::Certificate::from_pem(&pem).expect("a PEM certificate")
}
