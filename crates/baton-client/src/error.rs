//! The client's error type.

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Application Default Credentials could not be found or used.
    #[error("Google Cloud authentication failed: {0}")]
    Auth(#[from] gcp_auth::Error),
    /// A service-account key file could not be read or used.
    #[error("cannot use the service-account key file `{}`: {source}", .path.display())]
    KeyFile {
        /// The file as given.
        path: std::path::PathBuf,
        /// Why (unreadable, not JSON, no usable private key...).
        source: gcp_auth::Error,
    },
    /// The metadata server gave no access token (reported through
    /// [`Error::Auth`] when a call needs one).
    #[error("metadata server at `{url}`: {reason}")]
    MetadataServer {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A file of trusted CA certificates could not be read.
    #[error("cannot read CA certificates from `{}`: {source}", .path.display())]
    CaCertificates {
        /// The file (from [`crate::ClientConfig::with_ca_certificate_file`]
        /// or `SSL_CERT_FILE`).
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS or HTTP/2 transport could not be set up.
    #[error("transport setup failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// An RPC failed with this status (after any retries).
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
    /// A name is not `projects/{project}/{collection}/{id}` or a bare id.
    #[error("invalid resource name `{0}`")]
    InvalidName(String),
    /// Publisher flow control is full and its behaviour is to fail.
    #[error("publisher flow control limit reached ({0})")]
    FlowControlLimit(String),
    /// The message alone exceeds a limit (flow control or the API's).
    #[error("message too large: {size} bytes, limit {limit}")]
    MessageTooLarge {
        /// The message's size.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// A publish with this ordering key failed earlier; the key stays paused
    /// until [`crate::Publisher::resume_publish`] is called.
    #[error("ordering key `{0}` is paused after a failed publish; call resume_publish")]
    OrderingKeyPaused(String),
    /// A message needs data or at least one attribute.
    #[error("a message needs data or at least one attribute")]
    EmptyMessage,
    /// An ordering key was used but message ordering is not enabled.
    #[error("publishing with an ordering key requires enable_message_ordering")]
    OrderingNotEnabled,
    /// The publisher or subscriber was shut down.
    #[error("shut down")]
    Shutdown,
    /// An exactly-once acknowledgement or deadline change was refused.
    #[error("acknowledgement failed: {0}")]
    Ack(AckError),
}

/// Why an exactly-once ack, nack or modack did not take effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The ack id is no longer valid (expired lease, already acked, or from
    /// an earlier delivery); the message may be redelivered.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The server could not settle it now; the client gave up retrying.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The subscriber stopped before the result was known.
    #[error("the subscriber shut down first")]
    Shutdown,
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

// Not `#[from]`: the status is the whole story, and as a `source` it would
// print twice in error chains.
impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(status)
    }
}

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
