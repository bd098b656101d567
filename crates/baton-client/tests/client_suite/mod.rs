//! What the client suite adds to the testkit: a `baton_client::Client`
//! connected to a testkit server on virtual time, and a recording,
//! fault-injecting gRPC proxy of the Publisher and Subscriber services. The
//! tests check what reached the server through the testkit's stubs or the
//! proxy's records (never the client's own subscriber), so what they see is
//! what the server got.
//!
//! Time: the suites run on `#[tokio::test(start_paused = true)]`. The
//! client's timers, the in-process server (whose broker's wall clock is
//! [`Clock::virtual_time`]) and the proxy all read Tokio's clock, which only
//! moves when every task waits; round trips over loopback take no virtual
//! time, so the proxy's timestamps are exact. A test that checks what
//! happened at a timer's instant sleeps past it (to a moment when nothing
//! fires), since Tokio may wake the test before the other task when both
//! timers end at once.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_broker::Clock;
use baton_client::{Client, ClientConfig, Endpoint, Error, SubscriptionConfig};
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::publisher_server::{Publisher as PublisherApi, PublisherServer};
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::subscriber_server::{Subscriber as SubscriberApi, SubscriberServer};
use baton_proto::pubsub::{
    AcknowledgeRequest, CreateSnapshotRequest, DeleteSnapshotRequest, DeleteSubscriptionRequest,
    DeleteTopicRequest, DetachSubscriptionRequest, DetachSubscriptionResponse, GetSnapshotRequest,
    GetSubscriptionRequest, GetTopicRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    ListSubscriptionsRequest, ListSubscriptionsResponse, ListTopicSnapshotsRequest,
    ListTopicSnapshotsResponse, ListTopicSubscriptionsRequest, ListTopicSubscriptionsResponse,
    ListTopicsRequest, ListTopicsResponse, ModifyAckDeadlineRequest, ModifyPushConfigRequest,
    PublishRequest, PublishResponse, PullRequest, PullResponse, ReceivedMessage, SeekRequest,
    SeekResponse, Snapshot, StreamingPullRequest, StreamingPullResponse, Subscription, Topic,
    UpdateSnapshotRequest, UpdateSubscriptionRequest, UpdateTopicRequest,
};
use baton_proto::wkt::Empty;
use baton_server::ServerConfig;
use baton_testkit::grpc::{MAX_MESSAGE, publisher, subscriber};
use baton_testkit::messages::payload_size;
use baton_testkit::server::{TestServer, loopback};
use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

/// Project of the tests' resources.
pub const PROJECT: &str = "p";

/// A client of `PROJECT` talking plaintext to `addr`.
pub async fn client_at(addr: SocketAddr) -> Client {
    Client::connect(ClientConfig::new(PROJECT).with_endpoint(Endpoint::Emulator(addr.to_string())))
        .await
        .unwrap()
}

/// Where the broker's virtual wall clock starts (2023-11-14T22:13:20Z).
pub fn start_wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A fresh in-memory server on `127.0.0.1:0` whose broker reads its wall
/// clock from Tokio's (publish times, retention and seeks follow a paused
/// test clock; its lease deadlines and pull waits always do).
pub async fn virtual_server() -> TestServer {
    let clock = Clock::virtual_time(start_wall());
    TestServer::start_with(ServerConfig::new(loopback()).with_clock(clock)).await
}

/// The server's wall clock now (virtual on a [`virtual_server`]).
pub fn server_wall(server: &TestServer) -> SystemTime {
    server.server().broker().clock().wall()
}

/// Virtual time since `since`, in whole milliseconds.
pub fn ms_since(since: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(since).as_millis()).unwrap()
}

/// `d` rounded up to Tokio's timer resolution (1 ms): a sleep of `d` on a
/// paused clock ends exactly then.
pub fn timer_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap())
}

/// Asserts the virtual gaps between consecutive `attempts` follow the
/// backoff: the nominal delay starts at `initial` and grows by `multiplier`
/// up to `max`, each delay jittered to between half and all of it. On
/// virtual time a gap is exactly the delay slept. Answers the nominal delay
/// of the next retry.
pub fn assert_backoff(
    attempts: &[Instant],
    initial: Duration,
    multiplier: f64,
    max: Duration,
) -> Duration {
    let mut nominal = initial;
    for (i, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= nominal / 2 && gap <= timer_ms(nominal),
            "retry {}: waited {gap:?}, nominal backoff {nominal:?}",
            i + 1
        );
        nominal = nominal.mul_f64(multiplier).min(max);
    }
    nominal
}

/// The code of a failed call, panicking when it did not fail with an RPC
/// status.
pub fn rpc_code<T: std::fmt::Debug, E: Into<Error> + std::fmt::Debug>(
    result: Result<T, E>,
) -> Code {
    match result.map_err(Into::into) {
        Err(error) if error.code().is_some() => error.code().unwrap(),
        other => panic!("expected an RPC failure, got {other:?}"),
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
    /// A fresh [`virtual_server`] with an empty broker, and a client.
    pub async fn start() -> Self {
        let kit = virtual_server().await;
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
                    .with_ack_deadline(Duration::from_secs(60))
                    .with_message_ordering(ordered),
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

/// Any other unary call (admin, pull, ack, modack) as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method, as in the service definition (`"GetTopic"`).
    pub method: &'static str,
    /// When it arrived at the proxy.
    pub at: Instant,
    /// The status the proxy answered without forwarding, if any.
    pub injected: Option<Code>,
}

/// What an Acknowledge or ModifyAckDeadline call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    Ack,
    /// A modack to this many seconds (0 nacks).
    Modack(i32),
}

/// An Acknowledge or ModifyAckDeadline call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Settled {
    pub at: Instant,
    pub kind: SettleKind,
    pub ack_ids: Vec<String>,
}

/// A message the server delivered through the proxy (StreamingPull or Pull).
#[derive(Debug, Clone)]
pub struct Delivered {
    /// When the response passed the proxy.
    pub at: Instant,
    pub message_id: String,
    pub ack_id: String,
}

/// A StreamingPull request (the first or a later one) as the proxy saw it.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub at: Instant,
    /// Which stream (numbered from 0 in opening order).
    pub stream: usize,
    pub stream_ack_deadline_seconds: i32,
    pub max_outstanding_messages: i64,
    /// In-stream acks and modacks (the client sends them as unary calls).
    pub ack_ids: usize,
}

/// Decides, per Publish call (numbered from 0), whether the proxy fails it
/// instead of forwarding.
pub type Fault = Box<dyn FnMut(usize, &PublishRequest) -> Option<Status> + Send>;

/// Decides, per unary call other than Publish (by method name and number
/// of that method's calls so far, from 0), whether the proxy fails it.
pub type CallFault = Box<dyn FnMut(&'static str, usize) -> Option<Status> + Send>;

struct ProxyState {
    metadata: Mutex<Vec<tonic::metadata::MetadataMap>>,
    upstream: PublisherClient<Channel>,
    upstream_subscriber: SubscriberClient<Channel>,
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
    other_calls: Mutex<Vec<Call>>,
    call_fault: Mutex<Option<CallFault>>,
    settled: Mutex<Vec<Settled>>,
    delivered: Mutex<Vec<Delivered>>,
    stream_requests: Mutex<Vec<StreamRequest>>,
    streams: AtomicUsize,
    strip_stream_flow_control: AtomicBool,
    /// StreamingPull calls are taken and never answered.
    stall_stream_opens: AtomicBool,
}

impl ProxyState {
    /// Records a unary call other than Publish and asks the call fault
    /// whether to fail it.
    fn call(&self, method: &'static str) -> Result<(), Status> {
        let at = Instant::now();
        let mut calls = self.other_calls.lock().unwrap();
        let number = calls.iter().filter(|c| c.method == method).count();
        let injected = self
            .call_fault
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|fault| fault(method, number));
        calls.push(Call {
            method,
            at,
            injected: injected.as_ref().map(Status::code),
        });
        injected.map_or(Ok(()), Err)
    }

    fn record_deliveries(&self, received: &[ReceivedMessage]) {
        let at = Instant::now();
        self.delivered
            .lock()
            .unwrap()
            .extend(received.iter().map(|r| {
                Delivered {
                    at,
                    message_id: r
                        .message
                        .as_ref()
                        .map(|m| m.message_id.clone())
                        .unwrap_or_default(),
                    ack_id: r.ack_id.clone(),
                }
            }));
    }
}

/// A Publisher and Subscriber proxy in front of the real server: records
/// every Publish request, every other unary call (settle calls with their
/// ack ids), what StreamingPull carries both ways; can delay Publish calls,
/// fail any unary call, and shrink list pages.
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
        Self::start_with_tls(upstream, None).await
    }

    /// [`Self::start`], serving TLS with `tls` when given.
    pub async fn start_with_tls(
        upstream: SocketAddr,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Self {
        let channel = baton_testkit::grpc::connect(upstream).await;
        let state = Arc::new(ProxyState {
            upstream: publisher(channel.clone()),
            upstream_subscriber: subscriber(channel),
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
            other_calls: Mutex::new(Vec::new()),
            call_fault: Mutex::new(None),
            settled: Mutex::new(Vec::new()),
            delivered: Mutex::new(Vec::new()),
            stream_requests: Mutex::new(Vec::new()),
            streams: AtomicUsize::new(0),
            strip_stream_flow_control: AtomicBool::new(false),
            stall_stream_opens: AtomicBool::new(false),
            metadata: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gzip = tonic::codec::CompressionEncoding::Gzip;
        let publisher_service = PublisherServer::new(ProxyService(state.clone()))
            .accept_compressed(gzip)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let subscriber_service = SubscriberServer::new(ProxyService(state.clone()))
            .accept_compressed(gzip)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let recorder = state.clone();
        let record = move |request: Request<()>| {
            recorder
                .metadata
                .lock()
                .unwrap()
                .push(request.metadata().clone());
            Ok(request)
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        tokio::spawn(
            builder
                .layer(tonic::service::InterceptorLayer::new(record))
                .add_service(publisher_service)
                .add_service(subscriber_service)
                // Without TCP_NODELAY a small write can sit in the kernel
                // until the peer's delayed ACK (tens of real milliseconds),
                // while a paused clock jumps on to the next timer.
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        Self { addr, state }
    }

    /// A client whose every call goes through the proxy.
    pub async fn client(&self) -> Client {
        client_at(self.addr).await
    }

    /// The metadata (headers) of every request so far, in arrival order.
    pub fn metadata(&self) -> Vec<tonic::metadata::MetadataMap> {
        self.state.metadata.lock().unwrap().clone()
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

    /// Fails the unary calls other than Publish that `fault` picks.
    pub fn set_call_fault(
        &self,
        fault: impl FnMut(&'static str, usize) -> Option<Status> + Send + 'static,
    ) {
        *self.state.call_fault.lock().unwrap() = Some(Box::new(fault));
    }

    /// Forwards every unary call other than Publish again.
    pub fn clear_call_fault(&self) {
        *self.state.call_fault.lock().unwrap() = None;
    }

    /// Publish calls seen so far (the number the next call gets).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The unary calls of `method` (other than Publish) so far.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.state
            .other_calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Every Acknowledge and ModifyAckDeadline call so far, in arrival
    /// order.
    pub fn settled(&self) -> Vec<Settled> {
        self.state.settled.lock().unwrap().clone()
    }

    /// Every message delivered through the proxy so far, in order.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.state.delivered.lock().unwrap().clone()
    }

    /// Every StreamingPull request so far (first requests and keepalives).
    pub fn stream_requests(&self) -> Vec<StreamRequest> {
        self.state.stream_requests.lock().unwrap().clone()
    }

    /// Drops the flow-control limits from the StreamingPull requests it
    /// forwards, so the server sends whatever is ready and only the
    /// client's own flow control holds messages back.
    pub fn strip_stream_flow_control(&self) {
        self.state
            .strip_stream_flow_control
            .store(true, Ordering::SeqCst);
    }

    /// Takes StreamingPull calls and never answers them (`true`), as a hung
    /// server would, or forwards them again (`false`).
    pub fn stall_stream_opens(&self, stall: bool) {
        self.state.stall_stream_opens.store(stall, Ordering::SeqCst);
    }

    /// StreamingPull streams opened so far (stalled attempts included).
    pub fn streams(&self) -> usize {
        self.state.streams.load(Ordering::SeqCst)
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

    fn subscriber(&self) -> SubscriberClient<Channel> {
        self.0.upstream_subscriber.clone()
    }

    fn page_size(&self, asked: i32) -> i32 {
        self.0.list_calls.fetch_add(1, Ordering::SeqCst);
        self.0.list_page_size.lock().unwrap().unwrap_or(asked)
    }

    fn settle(&self, kind: SettleKind, ack_ids: &[String]) -> Result<(), Status> {
        let method = match kind {
            SettleKind::Ack => "Acknowledge",
            SettleKind::Modack(_) => "ModifyAckDeadline",
        };
        self.0.call(method)?;
        self.0.settled.lock().unwrap().push(Settled {
            at: Instant::now(),
            kind,
            ack_ids: ack_ids.to_vec(),
        });
        Ok(())
    }
}

#[tonic::async_trait]
impl PublisherApi for ProxyService {
    async fn create_topic(&self, request: Request<Topic>) -> Result<Response<Topic>, Status> {
        self.0.call("CreateTopic")?;
        self.upstream().create_topic(request.into_inner()).await
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        self.0.call("UpdateTopic")?;
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
        self.0.call("GetTopic")?;
        self.upstream().get_topic(request.into_inner()).await
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        self.0.call("ListTopics")?;
        let mut request = request.into_inner();
        request.page_size = self.page_size(request.page_size);
        self.upstream().list_topics(request).await
    }

    async fn list_topic_subscriptions(
        &self,
        request: Request<ListTopicSubscriptionsRequest>,
    ) -> Result<Response<ListTopicSubscriptionsResponse>, Status> {
        self.0.call("ListTopicSubscriptions")?;
        let mut request = request.into_inner();
        request.page_size = self.page_size(request.page_size);
        self.upstream().list_topic_subscriptions(request).await
    }

    async fn list_topic_snapshots(
        &self,
        request: Request<ListTopicSnapshotsRequest>,
    ) -> Result<Response<ListTopicSnapshotsResponse>, Status> {
        self.0.call("ListTopicSnapshots")?;
        self.upstream()
            .list_topic_snapshots(request.into_inner())
            .await
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.0.call("DeleteTopic")?;
        self.upstream().delete_topic(request.into_inner()).await
    }

    async fn detach_subscription(
        &self,
        request: Request<DetachSubscriptionRequest>,
    ) -> Result<Response<DetachSubscriptionResponse>, Status> {
        self.0.call("DetachSubscription")?;
        self.upstream()
            .detach_subscription(request.into_inner())
            .await
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<StreamingPullResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SubscriberApi for ProxyService {
    async fn create_subscription(
        &self,
        request: Request<Subscription>,
    ) -> Result<Response<Subscription>, Status> {
        self.0.call("CreateSubscription")?;
        self.subscriber()
            .create_subscription(request.into_inner())
            .await
    }

    async fn get_subscription(
        &self,
        request: Request<GetSubscriptionRequest>,
    ) -> Result<Response<Subscription>, Status> {
        self.0.call("GetSubscription")?;
        self.subscriber()
            .get_subscription(request.into_inner())
            .await
    }

    async fn update_subscription(
        &self,
        request: Request<UpdateSubscriptionRequest>,
    ) -> Result<Response<Subscription>, Status> {
        self.0.call("UpdateSubscription")?;
        self.subscriber()
            .update_subscription(request.into_inner())
            .await
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Result<Response<ListSubscriptionsResponse>, Status> {
        self.0.call("ListSubscriptions")?;
        self.subscriber()
            .list_subscriptions(request.into_inner())
            .await
    }

    async fn delete_subscription(
        &self,
        request: Request<DeleteSubscriptionRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.0.call("DeleteSubscription")?;
        self.subscriber()
            .delete_subscription(request.into_inner())
            .await
    }

    async fn modify_ack_deadline(
        &self,
        request: Request<ModifyAckDeadlineRequest>,
    ) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        self.settle(
            SettleKind::Modack(request.ack_deadline_seconds),
            &request.ack_ids,
        )?;
        self.subscriber().modify_ack_deadline(request).await
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        self.settle(SettleKind::Ack, &request.ack_ids)?;
        self.subscriber().acknowledge(request).await
    }

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullResponse>, Status> {
        self.0.call("Pull")?;
        // Keep the caller's deadline: a waiting pull answers at its end.
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(baton_server::parse_grpc_timeout);
        let mut forwarded = Request::new(request.into_inner());
        if let Some(timeout) = timeout {
            forwarded.set_timeout(timeout);
        }
        let response = self.subscriber().pull(forwarded).await?;
        self.0
            .record_deliveries(&response.get_ref().received_messages);
        Ok(response)
    }

    type StreamingPullStream = ResponseStream;

    async fn streaming_pull(
        &self,
        request: Request<Streaming<StreamingPullRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let state = self.0.clone();
        let stream = state.streams.fetch_add(1, Ordering::SeqCst);
        if state.stall_stream_opens.load(Ordering::SeqCst) {
            return std::future::pending().await;
        }
        let recorder = state.clone();
        let requests = request
            .into_inner()
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .map(move |mut r| {
                recorder
                    .stream_requests
                    .lock()
                    .unwrap()
                    .push(StreamRequest {
                        at: Instant::now(),
                        stream,
                        stream_ack_deadline_seconds: r.stream_ack_deadline_seconds,
                        max_outstanding_messages: r.max_outstanding_messages,
                        ack_ids: r.ack_ids.len() + r.modify_deadline_ack_ids.len(),
                    });
                if recorder.strip_stream_flow_control.load(Ordering::SeqCst) {
                    r.max_outstanding_messages = 0;
                    r.max_outstanding_bytes = 0;
                }
                r
            });
        let responses = self.subscriber().streaming_pull(requests).await?;
        let responses = responses.into_inner().inspect(move |r| {
            if let Ok(response) = r {
                state.record_deliveries(&response.received_messages);
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn modify_push_config(
        &self,
        request: Request<ModifyPushConfigRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.0.call("ModifyPushConfig")?;
        self.subscriber()
            .modify_push_config(request.into_inner())
            .await
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.0.call("GetSnapshot")?;
        self.subscriber().get_snapshot(request.into_inner()).await
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        self.0.call("ListSnapshots")?;
        self.subscriber().list_snapshots(request.into_inner()).await
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.0.call("CreateSnapshot")?;
        self.subscriber()
            .create_snapshot(request.into_inner())
            .await
    }

    async fn update_snapshot(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.0.call("UpdateSnapshot")?;
        self.subscriber()
            .update_snapshot(request.into_inner())
            .await
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.0.call("DeleteSnapshot")?;
        self.subscriber()
            .delete_snapshot(request.into_inner())
            .await
    }

    async fn seek(&self, request: Request<SeekRequest>) -> Result<Response<SeekResponse>, Status> {
        self.0.call("Seek")?;
        self.subscriber().seek(request.into_inner()).await
    }
}
