//! The ceiling: a bare tonic server implementing just enough of the Pub/Sub
//! Publisher and Subscriber services for the load generator, and nothing
//! a broker does. Publish answers message ids and stores nothing;
//! StreamingPull streams messages built before the call (as many as the
//! round is about to receive) and ignores acks. What the client reaches
//! against it is what gRPC, HTTP/2 and the client cost on this loopback.
//!
//! It runs on a Tokio runtime of its own (as if another process) on a free
//! loopback port, with the HTTP/2 receive windows and frame size Baton's
//! listener uses (`crates/baton-server/src/serve.rs`): with hyper's
//! defaults (64 KB windows) large publish batches would stall on flow
//! control and the "ceiling" would sit below the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use baton_proto::pubsub::publisher_server::{Publisher, PublisherServer};
use baton_proto::pubsub::subscriber_server::{Subscriber, SubscriberServer};
use baton_proto::pubsub::{
    AcknowledgeRequest, CreateSnapshotRequest, DeleteSnapshotRequest, DeleteSubscriptionRequest,
    DeleteTopicRequest, DetachSubscriptionRequest, DetachSubscriptionResponse, GetSnapshotRequest,
    GetSubscriptionRequest, GetTopicRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    ListSubscriptionsRequest, ListSubscriptionsResponse, ListTopicSnapshotsRequest,
    ListTopicSnapshotsResponse, ListTopicSubscriptionsRequest, ListTopicSubscriptionsResponse,
    ListTopicsRequest, ListTopicsResponse, ModifyAckDeadlineRequest, ModifyPushConfigRequest,
    PublishRequest, PublishResponse, PubsubMessage, PullRequest, PullResponse, ReceivedMessage,
    SeekRequest, SeekResponse, Snapshot, StreamingPullRequest, StreamingPullResponse, Subscription,
    Topic, UpdateSnapshotRequest, UpdateSubscriptionRequest, UpdateTopicRequest,
};
use baton_proto::wkt;
use tonic::codegen::tokio_stream::{self, Stream, StreamExt as _};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// Baton's HTTP/2 settings (`baton-server`'s `serve.rs`).
const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;
const MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// Most messages and bytes of payload per StreamingPull response (the
/// client decodes responses of up to 32 MiB).
const PER_RESPONSE: usize = 1000;
const PER_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

type Reply<T> = Result<Response<T>, Status>;
type ResponseStream = Pin<Box<dyn Stream<Item = Result<StreamingPullResponse, Status>> + Send>>;

/// What the echo services share: the next message id, and the responses
/// the next StreamingPull call streams.
#[derive(Debug, Default)]
struct EchoState {
    next_id: AtomicU64,
    prepared: Mutex<Vec<StreamingPullResponse>>,
}

#[derive(Debug, Clone, Default)]
struct EchoService(Arc<EchoState>);

fn unimplemented<T>() -> Reply<T> {
    Err(Status::unimplemented("not part of the echo"))
}

#[tonic::async_trait]
impl Publisher for EchoService {
    async fn create_topic(&self, request: Request<Topic>) -> Reply<Topic> {
        Ok(Response::new(request.into_inner()))
    }

    async fn update_topic(&self, _: Request<UpdateTopicRequest>) -> Reply<Topic> {
        unimplemented()
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Reply<PublishResponse> {
        let count = request.get_ref().messages.len() as u64;
        let first = self.0.next_id.fetch_add(count, Ordering::Relaxed);
        Ok(Response::new(PublishResponse {
            message_ids: (first..first + count).map(|id| id.to_string()).collect(),
        }))
    }

    async fn get_topic(&self, _: Request<GetTopicRequest>) -> Reply<Topic> {
        unimplemented()
    }

    async fn list_topics(&self, _: Request<ListTopicsRequest>) -> Reply<ListTopicsResponse> {
        Ok(Response::new(ListTopicsResponse::default()))
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<ListTopicSubscriptionsRequest>,
    ) -> Reply<ListTopicSubscriptionsResponse> {
        unimplemented()
    }

    async fn list_topic_snapshots(
        &self,
        _: Request<ListTopicSnapshotsRequest>,
    ) -> Reply<ListTopicSnapshotsResponse> {
        unimplemented()
    }

    async fn delete_topic(&self, _: Request<DeleteTopicRequest>) -> Reply<wkt::Empty> {
        Ok(Response::new(wkt::Empty {}))
    }

    async fn detach_subscription(
        &self,
        _: Request<DetachSubscriptionRequest>,
    ) -> Reply<DetachSubscriptionResponse> {
        unimplemented()
    }
}

#[tonic::async_trait]
impl Subscriber for EchoService {
    async fn create_subscription(&self, request: Request<Subscription>) -> Reply<Subscription> {
        Ok(Response::new(request.into_inner()))
    }

    async fn get_subscription(&self, _: Request<GetSubscriptionRequest>) -> Reply<Subscription> {
        unimplemented()
    }

    async fn update_subscription(
        &self,
        _: Request<UpdateSubscriptionRequest>,
    ) -> Reply<Subscription> {
        unimplemented()
    }

    async fn list_subscriptions(
        &self,
        _: Request<ListSubscriptionsRequest>,
    ) -> Reply<ListSubscriptionsResponse> {
        unimplemented()
    }

    async fn delete_subscription(
        &self,
        _: Request<DeleteSubscriptionRequest>,
    ) -> Reply<wkt::Empty> {
        Ok(Response::new(wkt::Empty {}))
    }

    async fn modify_ack_deadline(&self, _: Request<ModifyAckDeadlineRequest>) -> Reply<wkt::Empty> {
        Ok(Response::new(wkt::Empty {}))
    }

    async fn acknowledge(&self, _: Request<AcknowledgeRequest>) -> Reply<wkt::Empty> {
        Ok(Response::new(wkt::Empty {}))
    }

    async fn pull(&self, _: Request<PullRequest>) -> Reply<PullResponse> {
        unimplemented()
    }

    type StreamingPullStream = ResponseStream;

    async fn streaming_pull(
        &self,
        request: Request<Streaming<StreamingPullRequest>>,
    ) -> Reply<Self::StreamingPullStream> {
        // Read (and ignore) what the client sends: keepalives, acks.
        let mut inbound = request.into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        let prepared = std::mem::take(
            &mut *self
                .0
                .prepared
                .lock()
                .map_err(|_| Status::internal("poisoned"))?,
        );
        // Stays open after the prepared messages, as a server's stream does.
        let responses = tokio_stream::iter(prepared.into_iter().map(Ok))
            .chain(tokio_stream::pending::<Result<StreamingPullResponse, Status>>());
        Ok(Response::new(Box::pin(responses)))
    }

    async fn modify_push_config(&self, _: Request<ModifyPushConfigRequest>) -> Reply<wkt::Empty> {
        unimplemented()
    }

    async fn get_snapshot(&self, _: Request<GetSnapshotRequest>) -> Reply<Snapshot> {
        unimplemented()
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Reply<ListSnapshotsResponse> {
        unimplemented()
    }

    async fn create_snapshot(&self, _: Request<CreateSnapshotRequest>) -> Reply<Snapshot> {
        unimplemented()
    }

    async fn update_snapshot(&self, _: Request<UpdateSnapshotRequest>) -> Reply<Snapshot> {
        unimplemented()
    }

    async fn delete_snapshot(&self, _: Request<DeleteSnapshotRequest>) -> Reply<wkt::Empty> {
        unimplemented()
    }

    async fn seek(&self, _: Request<SeekRequest>) -> Reply<SeekResponse> {
        unimplemented()
    }
}

/// The echo server, on its own runtime; stopped on drop.
#[derive(Debug)]
pub struct Echo {
    addr: SocketAddr,
    state: Arc<EchoState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    pub fn start() -> Result<Self> {
        let service = EchoService::default();
        let state = service.0.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("echo-server")
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("echo runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let incoming = match TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))) {
                        Ok(incoming) => incoming.with_nodelay(Some(true)),
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!("echo bind: {e}")));
                            return;
                        }
                    };
                    match incoming.local_addr() {
                        Ok(addr) => {
                            let _ = ready_tx.send(Ok(addr));
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!("echo address: {e}")));
                            return;
                        }
                    }
                    let served = tonic::transport::Server::builder()
                        .initial_stream_window_size(STREAM_WINDOW_BYTES)
                        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
                        .max_frame_size(MAX_FRAME_BYTES)
                        .add_service(
                            PublisherServer::new(service.clone())
                                .max_decoding_message_size(usize::MAX),
                        )
                        .add_service(
                            SubscriberServer::new(service).max_encoding_message_size(usize::MAX),
                        )
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stop_rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        eprintln!("   echo server: {e}");
                    }
                });
            })?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the echo server did not start within 10 s")??;
        Ok(Self {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `host:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Builds the messages the next StreamingPull call streams: `n` of
    /// `size` bytes, each with the attribute `i` the round counts by.
    pub fn prepare(&self, n: usize, size: usize) -> Result<()> {
        let data = crate::support::payload(size);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let publish_time = Some(wkt::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
        });

        let per_response = (PER_RESPONSE_BYTES / size.max(1)).clamp(1, PER_RESPONSE);
        let mut responses = Vec::with_capacity(n.div_ceil(per_response));
        let mut batch = Vec::with_capacity(per_response);
        for i in 0..n {
            batch.push(ReceivedMessage {
                ack_id: format!("echo-{i}"),
                message: Some(PubsubMessage {
                    data: data.clone(),
                    attributes: HashMap::from([("i".to_owned(), i.to_string())]),
                    message_id: i.to_string(),
                    publish_time,
                    ordering_key: String::new(),
                }),
                delivery_attempt: 0,
            });
            if batch.len() == per_response || i + 1 == n {
                responses.push(StreamingPullResponse {
                    received_messages: std::mem::take(&mut batch),
                    ..Default::default()
                });
            }
        }
        *self
            .state
            .prepared
            .lock()
            .map_err(|_| anyhow!("echo state poisoned"))? = responses;
        Ok(())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
