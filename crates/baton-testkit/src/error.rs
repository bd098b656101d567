//! The harness's error: what a caller that must not panic (the conformance
//! replay reports failures instead; interop scenarios collect them) gets.

use std::net::SocketAddr;

/// Why a harness call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The in-process server did not start.
    #[error("starting the Baton server: {0}")]
    ServerStart(#[from] baton_server::ServerError),
    /// No gRPC connection to a server.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Where the server was expected.
        addr: SocketAddr,
        /// What tonic said.
        #[source]
        source: tonic::transport::Error,
    },
    /// A Python scenario script could not run or printed no JSON result; the
    /// message holds its output.
    #[error("{0}")]
    Script(String),
    /// The gcloud Pub/Sub emulator did not start; the message holds its log.
    #[error("{0}")]
    Emulator(String),
    /// Binding a socket or spawning a process failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
