//! The one table that turns broker errors into gRPC statuses and HTTP
//! answers, so the two transports can never disagree.

use baton_broker::{BrokerError, ErrorCode};
use http::StatusCode;

/// gRPC code, HTTP status and canonical name of a broker error code.
pub fn mapping(code: ErrorCode) -> (tonic::Code, StatusCode, &'static str) {
    match code {
        ErrorCode::InvalidArgument => (
            tonic::Code::InvalidArgument,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
        ErrorCode::NotFound => (tonic::Code::NotFound, StatusCode::NOT_FOUND, "NOT_FOUND"),
        ErrorCode::AlreadyExists => (
            tonic::Code::AlreadyExists,
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
        ),
        ErrorCode::FailedPrecondition => (
            tonic::Code::FailedPrecondition,
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
        ),
        ErrorCode::OutOfRange => (
            tonic::Code::OutOfRange,
            StatusCode::BAD_REQUEST,
            "OUT_OF_RANGE",
        ),
        ErrorCode::Unknown => (
            tonic::Code::Unknown,
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
        ),
        ErrorCode::Unavailable => (
            tonic::Code::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
        ),
        ErrorCode::Internal => (
            tonic::Code::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
        ),
    }
}

/// The gRPC status of a broker error.
pub fn to_status(error: BrokerError) -> tonic::Status {
    let (code, _, _) = mapping(error.code);
    tonic::Status::new(code, error.message)
}

/// The HTTP status and the Google JSON error body of a broker error.
pub fn to_http(error: &BrokerError) -> (StatusCode, serde_json::Value) {
    let (_, status, name) = mapping(error.code);
    let body = serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "message": error.message,
            "status": name,
        }
    });
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_transports_agree() {
        let error = BrokerError::not_found("Topic not found");
        let status = to_status(error.clone());
        let (http, body) = to_http(&error);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(http, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        assert_eq!(body["error"]["message"], "Topic not found");
    }
}
