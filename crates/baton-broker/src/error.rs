//! The broker's one error type. Every failure carries the canonical status it
//! maps to and the exact message the real service (or, where the spec says so,
//! the official emulator) sends, so the gRPC and REST faces answer alike.

/// Canonical status codes the broker can produce; the server maps each to a
/// gRPC code and an HTTP status through a single table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or breaks a documented limit.
    InvalidArgument,
    /// The named resource does not exist.
    NotFound,
    /// A resource with that name exists already.
    AlreadyExists,
    /// The resource is in a state that does not allow the operation.
    FailedPrecondition,
    /// A numeric setting is outside its documented range.
    OutOfRange,
    /// The request was well formed but the server could not make sense of it
    /// (kept for parity with the emulator's "Application error").
    Unknown,
    /// The server is going away; clients retry.
    Unavailable,
    /// A concurrent change got in first (stale etag); retry the whole
    /// read-modify-write.
    Aborted,
    /// Internal invariant broken.
    Internal,
    /// The request asks for a feature of the API that Baton does not carry
    /// out (a BigQuery subscription, a message transform...): refused
    /// rather than accepted and left inert.
    Unimplemented,
    /// The request carries no valid credential (authentication is on).
    Unauthenticated,
    /// The caller's credential is valid but no IAM policy grants the
    /// permission the request needs.
    PermissionDenied,
}

/// An ack or modack that could not be applied on an exactly-once
/// subscription; clients read these from the error's `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFailure {
    /// The ack id as the client sent it.
    pub ack_id: String,
    /// The reason code clients understand (`PERMANENT_FAILURE_INVALID_ACK_ID`).
    pub reason: &'static str,
}

/// A failed broker operation: the status plus the message clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct BrokerError {
    /// Canonical status of the failure.
    pub code: ErrorCode,
    /// Human-readable message, exactly as sent on the wire.
    pub message: String,
    /// Per-ack-id failures of an exactly-once acknowledge or modack; the
    /// ids not listed here were applied.
    pub ack_failures: Vec<AckFailure>,
}

impl BrokerError {
    /// Builds an error from a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            ack_failures: Vec::new(),
        }
    }

    /// PERMISSION_DENIED with the real service's wording.
    pub fn permission_denied() -> Self {
        Self::new(
            ErrorCode::PermissionDenied,
            "User not authorized to perform this action.",
        )
    }

    /// UNAUTHENTICATED with `message` (the credential verifier's wording).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// INVALID_ARGUMENT with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// NOT_FOUND with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// ALREADY_EXISTS with `message`.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }

    /// The emulator's answer for requests it cannot interpret (a malformed
    /// project name, for one).
    pub fn application_error() -> Self {
        Self::new(ErrorCode::Unknown, "Application error processing RPC")
    }

    /// INVALID_ARGUMENT carrying exactly-once ack failures.
    pub fn ack_failures(failures: Vec<AckFailure>) -> Self {
        Self {
            code: ErrorCode::InvalidArgument,
            message: String::new(),
            ack_failures: failures,
        }
    }

    /// UNAVAILABLE: the broker is shutting down.
    pub fn shutting_down() -> Self {
        Self::new(ErrorCode::Unavailable, "The service is shutting down.")
    }

    pub(crate) fn topic_not_found() -> Self {
        Self::not_found("Topic not found")
    }

    pub(crate) fn subscription_not_found() -> Self {
        Self::not_found("Subscription does not exist")
    }
}

/// Result alias used throughout the broker.
pub type BrokerResult<T> = Result<T, BrokerError>;
