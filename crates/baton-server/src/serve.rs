//! The accept loop of Baton's ports: an axum router served over HTTP/1 and
//! HTTP/2 (gRPC), with HTTP/2 flow-control windows sized for Pub/Sub.
//!
//! A publisher sends batches of up to 10 MB, often many at once on one
//! connection. With hyper's default receive windows (1 MB per connection)
//! those requests advance one window at a time, and a client that publishes
//! as fast as it can stalls on window updates instead of on work. So the
//! windows here hold a few full batches.
//!
//! With TLS, each accepted connection's handshake runs on that connection's
//! own task, bounded by [`HANDSHAKE_TIMEOUT`]: a client that connects and
//! says nothing (or says garbage) never holds up the accept loop or others.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Receive window of one HTTP/2 stream (one RPC): a full batch.
const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Receive window of one HTTP/2 connection, shared by its streams.
const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;
/// Largest HTTP/2 frame we accept (the protocol's default is 16 KB).
const MAX_FRAME_BYTES: u32 = 1024 * 1024;
/// Pause after a failed accept (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` (over TLS when `tls` is given) until
/// `shutdown` resolves, then stops accepting and waits for open connections
/// to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Ends handshakes still under way when the server stops.
    let (stopping, stopped) = watch::channel(false);
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
        let watcher = graceful.watcher();
        let builder = builder.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(builder, stream, service, watcher));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let stream = tokio::select! {
                        result = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match result {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        },
                        _ = stopped.wait_for(|stopped| *stopped) => return,
                    };
                    serve_connection(builder, stream, service, watcher).await;
                });
            }
        }
    }
    let _ = stopping.send(true);
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves HTTP/1 or HTTP/2 (whichever the client speaks) on `stream` until
/// the client closes it or a graceful shutdown ends it.
async fn serve_connection<S>(
    builder: Arc<Builder<TokioExecutor>>,
    stream: S,
    service: TowerToHyperService<Router>,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Logs where the main port listens, how to trust its certificate, or (in
/// plain text off loopback) that nothing is encrypted.
pub(crate) fn announce(local_addr: SocketAddr, tls_root: Option<&std::path::Path>) {
    match tls_root {
        Some(root) => {
            tracing::info!(%local_addr, "baton server listening (gRPC and REST over TLS)");
            tracing::info!("{}", crate::tls::trust_hint(root));
        }
        None => {
            tracing::info!(%local_addr, "baton server listening (gRPC and REST)");
            if !local_addr.ip().is_loopback() {
                tracing::warn!(
                    %local_addr,
                    "listening beyond loopback without TLS: traffic and credentials are \
                     unencrypted (use --tls, or --tls-cert and --tls-key)"
                );
            }
        }
    }
}

/// A port served in the background (the OTLP receivers): its address and
/// serving task.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    pub(crate) task: JoinHandle<Result<(), std::io::Error>>,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) in the
/// background until `stop` turns true.
pub(crate) fn spawn(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) -> Result<Listener, std::io::Error> {
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        serve(listener, app, tls, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
    });
    Ok(Listener { addr, task })
}
