//! Baton's network face.
//!
//! One port serves gRPC (HTTP/2) and the REST mapping (HTTP/1.1 JSON) over
//! the same [`Broker`]: gRPC requests are routed by their service path, all
//! else goes to the REST handler. [`start`] binds, serves in the background
//! and hands back a [`RunningServer`] to learn the address and to shut down.

mod grpc;
mod iam_service;
mod push;
mod rest;
mod schema_service;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use baton_broker::Broker;
use baton_proto::iam::iam_policy_server::IamPolicyServer;
use baton_proto::pubsub::publisher_server::PublisherServer;
use baton_proto::pubsub::schema_service_server::SchemaServiceServer;
use baton_proto::pubsub::subscriber_server::SubscriberServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tower::ServiceExt;

pub use grpc::{PubSubService, parse_grpc_timeout};
pub use iam_service::IamService;
pub use push::{PushError, PushManager, PushSettings};
pub use schema_service::SchemaServiceImpl;
pub use status::{mapping as status_mapping, to_http, to_status};

/// Largest gRPC message accepted or sent: a full Publish request plus
/// framing, and StreamingPull responses up to what clients accept.
const MAX_GRPC_MESSAGE_BYTES: usize = 20 * 1024 * 1024;

/// Errors starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The serving task panicked or was cancelled.
    #[error("server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Push delivery could not start.
    #[error("push delivery: {0}")]
    Push(#[from] PushError),
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub addr: SocketAddr,
}

impl ServerConfig {
    /// Serves on `addr` with the in-memory store.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

/// A server serving in the background.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl RunningServer {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The broker behind the server, for embedding and tests.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, ends open streams with UNAVAILABLE so clients
    /// reconnect elsewhere, and waits for connections to finish.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.broker.begin_shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        match tokio::time::timeout(std::time::Duration::from_secs(10), task).await {
            Ok(result) => result??,
            Err(_) => {
                tracing::warn!("connections did not close within 10 s; closing them");
                self.task.abort();
            }
        }
        Ok(())
    }

    /// Waits until the server stops on its own (it only does on error).
    pub async fn wait(self) -> Result<(), ServerError> {
        let RunningServer { task, stop, .. } = self;
        let _keep_open = stop;
        task.await??;
        Ok(())
    }
}

/// Mounts a tonic service under its `/package.Service/` path prefix.
fn with_grpc<S>(router: axum::Router<Arc<Broker>>, service: S) -> axum::Router<Arc<Broker>>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    router.route_service(
        &format!("/{}/{{*method}}", S::NAME),
        service.map_request(|r: http::Request<axum::body::Body>| r.map(tonic::body::Body::new)),
    )
}

/// The router serving both transports for `broker`: gRPC services by their
/// path prefix, everything else REST.
pub fn router(broker: Arc<Broker>) -> axum::Router {
    let service = PubSubService::new(broker.clone());
    let publisher = PublisherServer::new(service.clone())
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let subscriber = SubscriberServer::new(service)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let schemas = SchemaServiceServer::new(SchemaServiceImpl::new(broker.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let iam = IamPolicyServer::new(IamService::new(broker.clone()));
    let router = axum::Router::new();
    let router = with_grpc(router, publisher);
    let router = with_grpc(router, subscriber);
    let router = with_grpc(router, schemas);
    let router = with_grpc(router, iam);
    router.fallback(rest::handle).with_state(broker)
}

/// Binds `config.addr` and serves until [`RunningServer::shutdown`].
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let local_addr = listener.local_addr()?;
    let broker = Broker::start();
    // Push subscriptions are served for as long as the broker lives.
    PushManager::start(&broker, PushSettings::default())?;
    let app = router(broker.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%local_addr, "baton server listening (gRPC and REST)");
    Ok(RunningServer {
        local_addr,
        broker,
        stop: Some(stop),
        task,
    })
}
