//! What the client suite adds to the testkit: a `baton_client::Client`
//! connected to a testkit server, and a recording, fault-injecting gRPC
//! proxy of the Publisher service. The tests check what reached the server
//! through the testkit's stubs (never the client's own subscriber), so what
//! they see is what the server got.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_client::{Client, ClientConfig, Endpoint, Error, SubscriptionConfig};
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::publisher_server::{Publisher as PublisherApi, PublisherServer};
use baton_proto::pubsub::{
    DeleteTopicRequest, DetachSubscriptionRequest, DetachSubscriptionResponse, GetTopicRequest,
    ListTopicSnapshotsRequest, ListTopicSnapshotsResponse, ListTopicSubscriptionsRequest,
    ListTopicSubscriptionsResponse, ListTopicsRequest, ListTopicsResponse, PublishRequest,
    PublishResponse, Topic, UpdateTopicRequest,
};
use baton_testkit::grpc::{MAX_MESSAGE, publisher};
use baton_testkit::messages::payload_size;
use baton_testkit::server::TestServer;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Project of the tests' resources.
pub const PROJECT: &str = "p";

/// A client of `PROJECT` talking plaintext to `addr`.
pub async fn client_at(addr: SocketAddr) -> Client {
    Client::connect(ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(addr.to_string())))
        .await
        .unwrap()
}

/// The code of a failed call, panicking when it did not fail with an RPC
/// status.
pub fn rpc_code<T: std::fmt::Debug>(result: Result<T, Error>) -> Code {
    match result {
        Err(Error::Rpc(status)) => status.code(),
        other => panic!("expected Error::Rpc, got {other:?}"),
    }
}

/// A testkit server (its stubs and round trips through `Deref`) plus the
/// client under test, connected to it.
pub struct ClientServer {
    /// The server, with the testkit's stubs and helpers.
    pub kit: TestServer,
    /// The client under test, of `PROJECT`.
    pub client: Client,
}

impl ClientServer {
    /// A fresh server on `127.0.0.1:0` with an empty broker, and a client.
    pub async fn start() -> Self {
        let kit = TestServer::start().await;
        let client = client_at(kit.addr).await;
        Self { kit, client }
    }

    /// Creates topic `id` and subscription `id-sub` on it (ordered or not)
    /// through the client; answers their full names.
    pub async fn topic_and_subscription(&self, id: &str, ordered: bool) -> (String, String) {
        let topic = self.client.create_topic(id).await.unwrap().name;
        let sub = self
            .client
            .create_subscription(
                SubscriptionConfig::new(format!("{id}-sub"), id)
                    .ack_deadline(Duration::from_secs(60))
                    .message_ordering(ordered),
            )
            .await
            .unwrap()
            .name;
        (topic, sub)
    }
}

impl Deref for ClientServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.kit
    }
}

/// A Publish request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Messages in the request.
    pub count: usize,
    /// Their payload bytes (see [`payload_size`]).
    pub bytes: usize,
    /// When it arrived at the proxy.
    pub at: Instant,
    /// The messages' ordering keys, one per message.
    pub ordering_keys: Vec<String>,
    /// The messages' data, one per message.
    pub data: Vec<Vec<u8>>,
    /// The status the proxy answered without forwarding, if any.
    pub injected: Option<Code>,
}

/// Decides, per Publish call (numbered from 0), whether the proxy fails it
/// instead of forwarding.
pub type Fault = Box<dyn FnMut(usize, &PublishRequest) -> Option<Status> + Send>;

struct ProxyState {
    upstream: PublisherClient<Channel>,
    requests: Mutex<Vec<Recorded>>,
    fault: Mutex<Option<Fault>>,
    delay: Mutex<Duration>,
    calls: AtomicUsize,
    in_flight_messages: AtomicUsize,
    in_flight_bytes: AtomicUsize,
    max_in_flight_messages: AtomicUsize,
    max_in_flight_bytes: AtomicUsize,
    list_page_size: Mutex<Option<i32>>,
    list_calls: AtomicUsize,
}

/// A Publisher-service proxy in front of the real server: records every
/// Publish request, can delay them and fail them, and can shrink list pages.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyService(Arc<ProxyState>);

/// Counts a request as in flight until dropped (also when the caller gives
/// up on it).
struct InFlight<'a> {
    state: &'a ProxyState,
    messages: usize,
    bytes: usize,
}

impl<'a> InFlight<'a> {
    fn new(state: &'a ProxyState, messages: usize, bytes: usize) -> Self {
        let now = state
            .in_flight_messages
            .fetch_add(messages, Ordering::SeqCst)
            + messages;
        state
            .max_in_flight_messages
            .fetch_max(now, Ordering::SeqCst);
        let now = state.in_flight_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        state.max_in_flight_bytes.fetch_max(now, Ordering::SeqCst);
        Self {
            state,
            messages,
            bytes,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .in_flight_messages
            .fetch_sub(self.messages, Ordering::SeqCst);
        self.state
            .in_flight_bytes
            .fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Serves on `127.0.0.1:0`, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let channel = baton_testkit::grpc::connect(upstream).await;
        let state = Arc::new(ProxyState {
            upstream: publisher(channel),
            requests: Mutex::new(Vec::new()),
            fault: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            calls: AtomicUsize::new(0),
            in_flight_messages: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            max_in_flight_messages: AtomicUsize::new(0),
            max_in_flight_bytes: AtomicUsize::new(0),
            list_page_size: Mutex::new(None),
            list_calls: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = PublisherServer::new(ProxyService(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Self { addr, state }
    }

    /// A client whose every Publisher call goes through the proxy.
    pub async fn client(&self) -> Client {
        client_at(self.addr).await
    }

    /// Every Publish request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests that were forwarded to the server.
    pub fn forwarded(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.injected.is_none())
            .collect()
    }

    /// Forgets the recorded requests and in-flight maxima.
    pub fn reset(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.max_in_flight_messages.store(0, Ordering::SeqCst);
        self.state.max_in_flight_bytes.store(0, Ordering::SeqCst);
    }

    /// Holds every Publish this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Fails the Publish calls `fault` picks.
    pub fn set_fault(
        &self,
        fault: impl FnMut(usize, &PublishRequest) -> Option<Status> + Send + 'static,
    ) {
        *self.state.fault.lock().unwrap() = Some(Box::new(fault));
    }

    /// Forwards everything again.
    pub fn clear_fault(&self) {
        *self.state.fault.lock().unwrap() = None;
    }

    /// Publish calls seen so far (the number the next call gets).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Most messages ever in flight through the proxy at once.
    pub fn max_in_flight_messages(&self) -> usize {
        self.state.max_in_flight_messages.load(Ordering::SeqCst)
    }

    /// Most payload bytes ever in flight through the proxy at once.
    pub fn max_in_flight_bytes(&self) -> usize {
        self.state.max_in_flight_bytes.load(Ordering::SeqCst)
    }

    /// Rewrites the page size of list calls (to force several pages).
    pub fn set_list_page_size(&self, size: i32) {
        *self.state.list_page_size.lock().unwrap() = Some(size);
    }

    /// ListTopics and ListTopicSubscriptions calls seen.
    pub fn list_calls(&self) -> usize {
        self.state.list_calls.load(Ordering::SeqCst)
    }
}

impl ProxyService {
    fn upstream(&self) -> PublisherClient<Channel> {
        self.0.upstream.clone()
    }

    fn page_size(&self, asked: i32) -> i32 {
        self.0.list_calls.fetch_add(1, Ordering::SeqCst);
        self.0.list_page_size.lock().unwrap().unwrap_or(asked)
    }
}

#[tonic::async_trait]
impl PublisherApi for ProxyService {
    async fn create_topic(&self, request: Request<Topic>) -> Result<Response<Topic>, Status> {
        self.upstream().create_topic(request.into_inner()).await
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        self.upstream().update_topic(request.into_inner()).await
    }

    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let at = Instant::now();
        let state = &self.0;
        let call = state.calls.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        let count = request.messages.len();
        let bytes = request.messages.iter().map(payload_size).sum();
        let _in_flight = InFlight::new(state, count, bytes);
        let delay = *state.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let injected = state
            .fault
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|fault| fault(call, &request));
        state.requests.lock().unwrap().push(Recorded {
            count,
            bytes,
            at,
            ordering_keys: request
                .messages
                .iter()
                .map(|m| m.ordering_key.clone())
                .collect(),
            data: request.messages.iter().map(|m| m.data.to_vec()).collect(),
            injected: injected.as_ref().map(Status::code),
        });
        match injected {
            Some(status) => Err(status),
            None => self.upstream().publish(request).await,
        }
    }

    async fn get_topic(
        &self,
        request: Request<GetTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        self.upstream().get_topic(request.into_inner()).await
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let mut request = request.into_inner();
        request.page_size = self.page_size(request.page_size);
        self.upstream().list_topics(request).await
    }

    async fn list_topic_subscriptions(
        &self,
        request: Request<ListTopicSubscriptionsRequest>,
    ) -> Result<Response<ListTopicSubscriptionsResponse>, Status> {
        let mut request = request.into_inner();
        request.page_size = self.page_size(request.page_size);
        self.upstream().list_topic_subscriptions(request).await
    }

    async fn list_topic_snapshots(
        &self,
        request: Request<ListTopicSnapshotsRequest>,
    ) -> Result<Response<ListTopicSnapshotsResponse>, Status> {
        self.upstream()
            .list_topic_snapshots(request.into_inner())
            .await
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<baton_proto::wkt::Empty>, Status> {
        self.upstream().delete_topic(request.into_inner()).await
    }

    async fn detach_subscription(
        &self,
        request: Request<DetachSubscriptionRequest>,
    ) -> Result<Response<DetachSubscriptionResponse>, Status> {
        self.upstream()
            .detach_subscription(request.into_inner())
            .await
    }
}
