//! The accept loop of Baton's ports: an axum router served over HTTP/1 and
//! HTTP/2 (gRPC), with HTTP/2 flow-control windows sized for Pub/Sub.
//!
//! A publisher sends batches of up to 10 MB, often many at once on one
//! connection. With hyper's default receive windows (1 MB per connection)
//! those requests advance one window at a time, and a client that publishes
//! as fast as it can stalls on window updates instead of on work. So the
//! windows here hold a few full batches.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Receive window of one HTTP/2 stream (one RPC): a full batch.
const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Receive window of one HTTP/2 connection, shared by its streams.
const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;
/// Largest HTTP/2 frame we accept (the protocol's default is 16 KB).
const MAX_FRAME_BYTES: u32 = 1024 * 1024;
/// Pause after a failed accept (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Small gRPC responses (acks, message ids) must not wait for Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A port served in the background (the OTLP receivers): its address and
/// serving task.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    pub(crate) task: JoinHandle<Result<(), std::io::Error>>,
}

/// Serves `app` on `listener` in the background until `stop` turns true.
pub(crate) fn spawn(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> Result<Listener, std::io::Error> {
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        serve(listener, app, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
    });
    Ok(Listener { addr, task })
}
