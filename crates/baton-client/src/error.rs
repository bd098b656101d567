//! The client's errors, one type per operation, so each can grow on its
//! own: [`ConnectError`] (setting up a client), [`PublishError`],
//! [`AdminError`], [`SubscribeError`] and [`AckError`] (settling a message).
//! Those that can come from an RPC give its gRPC status through `status()`
//! and `code()`: its code, message and details, and its source, the typed
//! cause when there is one (a [`crate::CredentialsError`] when no token
//! could be had, a transport error...). Their text names the cause chain.
//! [`Error`] gathers them for `?` in code that does several.

use std::path::PathBuf;

use tonic::{Code, Status};

/// [`crate::Client::connect`] could not set up the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    #[non_exhaustive]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The credentials could not be set up: none found (Application
    /// Default Credentials), JSON of an unknown `type` or missing a field,
    /// an unusable CA certificate for the IAM Credentials calls...
    #[error("cannot use {credentials} credentials: {source}")]
    #[non_exhaustive]
    Credentials {
        /// Which credentials.
        credentials: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A credentials file could not be read or used.
    #[error("cannot use the credentials file `{}`: {source}", .path.display())]
    #[non_exhaustive]
    KeyFile {
        /// The file as given.
        path: PathBuf,
        /// Why (unreadable, not JSON, no usable private key...).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file of trusted CA certificates could not be read.
    #[error("cannot read CA certificates from `{}`: {source}", .path.display())]
    #[non_exhaustive]
    CaCertificates {
        /// The file (from [`crate::ClientConfig::with_ca_certificate_file`]
        /// or `SSL_CERT_FILE`).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS or HTTP/2 transport could not be set up.
    #[error("transport setup failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A failed RPC's code and message, with the chain of its causes (a
/// transport failure says what failed: "transport error: ... invalid peer
/// certificate: UnknownIssuer", not only that something did). The status
/// itself keeps its source, for code that looks for a cause's type.
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let words = error.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        cause = error.source();
    }
    text
}

/// A publish did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The Publish RPC failed with this status (after any retries).
    #[error("publish failed: {}", describe(.0))]
    Rpc(Status),
    /// Publisher flow control is full and its behaviour is to fail.
    #[error("publisher flow control limit reached (outstanding {0})")]
    FlowControlLimit(&'static str),
    /// The message alone exceeds a limit (flow control or the API's).
    #[error("message too large: {size} bytes, limit {limit}")]
    #[non_exhaustive]
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
    #[error("publishing with an ordering key requires message ordering on the publisher")]
    OrderingNotEnabled,
    /// The publisher stopped before the message was sent.
    #[error("the publisher shut down")]
    Shutdown,
}

impl PublishError {
    /// The gRPC status of a failed Publish RPC.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Rpc(status) => Some(status),
            _ => None,
        }
    }

    /// The gRPC code of a failed Publish RPC.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }
}

/// An admin call (topics, subscriptions, seek) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The RPC failed with this status (after any retries).
    #[error("{}", describe(.0))]
    Rpc(Status),
}

impl AdminError {
    /// The RPC's gRPC status (code, message and details).
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Rpc(status) => Some(status),
        }
    }

    /// The RPC's gRPC code.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }
}

/// Receiving failed: the StreamingPull session ended for good, or a unary
/// Pull failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The RPC failed with this status: a non-retryable code (NOT_FOUND for
    /// a deleted subscription, PERMISSION_DENIED...) or retries ran out.
    #[error("{}", describe(.0))]
    Rpc(Status),
    /// The session's task ended without an outcome (it panicked).
    #[error("the subscriber stopped unexpectedly")]
    Shutdown,
}

impl SubscribeError {
    /// The RPC's gRPC status.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Rpc(status) => Some(status),
            Self::Shutdown => None,
        }
    }

    /// The RPC's gRPC code.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }
}

/// Why an exactly-once ack, nack or modack did not take effect.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The ack id is no longer valid (expired lease, already acked, or from
    /// an earlier delivery); the message may be redelivered.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The server could not settle it now; the client gave up retrying.
    /// The text is the reason the server gave for this ack id.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The subscriber stopped before the result was known.
    #[error("the subscriber shut down first")]
    Shutdown,
    /// The RPC failed as a whole with this status (after any retries): not
    /// a result the server gave for this ack id.
    #[error("{}", describe(.0))]
    Rpc(Status),
    /// The server refused this ack id for another reason (the reason it
    /// gave).
    #[error("{0}")]
    Other(String),
}

impl AckError {
    /// The gRPC status when the RPC failed as a whole.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Rpc(status) => Some(status),
            _ => None,
        }
    }

    /// The gRPC code when the RPC failed as a whole.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }
}

/// Equal kinds with equal reasons; statuses are equal when their code,
/// message and details are.
impl PartialEq for AckError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::InvalidAckId, Self::InvalidAckId) | (Self::Shutdown, Self::Shutdown) => true,
            (Self::Transient(a), Self::Transient(b)) | (Self::Other(a), Self::Other(b)) => a == b,
            (Self::Rpc(a), Self::Rpc(b)) => {
                a.code() == b.code() && a.message() == b.message() && a.details() == b.details()
            }
            _ => false,
        }
    }
}

impl Eq for AckError {}

/// Any error of the client, for `?` in code that connects, publishes,
/// administers and subscribes in one function. Match on the operation's
/// own error type for details.
///
/// ```no_run
/// # async fn run() -> Result<(), baton_client::Error> {
/// use baton_client::{Client, ClientConfig, Message};
/// let client = Client::connect(ClientConfig::new("my-project")).await?; // ConnectError
/// client.create_topic("orders").await?; // AdminError
/// let id = client.publisher("orders").publish(Message::new("hi")).await?; // PublishError
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Setting up the client failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// An admin call failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Receiving failed.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// Settling a message failed.
    #[error(transparent)]
    Ack(#[from] AckError),
}

impl Error {
    /// The gRPC status when an RPC failed.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Publish(error) => error.status(),
            Self::Admin(error) => error.status(),
            Self::Subscribe(error) => error.status(),
            Self::Ack(error) => error.status(),
            Self::Connect(_) => None,
        }
    }

    /// The gRPC code when an RPC failed.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }
}

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
