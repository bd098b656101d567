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
        ErrorCode::Aborted => (tonic::Code::Aborted, StatusCode::CONFLICT, "ABORTED"),
        ErrorCode::Internal => (
            tonic::Code::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
        ),
        ErrorCode::Unimplemented => (
            tonic::Code::Unimplemented,
            StatusCode::NOT_IMPLEMENTED,
            "UNIMPLEMENTED",
        ),
        ErrorCode::Unauthenticated => (
            tonic::Code::Unauthenticated,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
        ),
        ErrorCode::PermissionDenied => (
            tonic::Code::PermissionDenied,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
        ),
    }
}

/// Reason and domain of exactly-once ack failures, as clients parse them.
const EXACTLY_ONCE_REASON: &str = "EXACTLY_ONCE_ACKID_FAILURE";
const PUBSUB_DOMAIN: &str = "pubsub.googleapis.com";
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// The gRPC status of a broker error. Exactly-once ack failures travel as a
/// `google.rpc.Status` whose first detail is an `ErrorInfo` naming each id.
pub fn to_status(error: BrokerError) -> tonic::Status {
    use prost::Message;
    let (code, _, _) = mapping(error.code);
    if error.ack_failures.is_empty() {
        return tonic::Status::new(code, error.message);
    }
    let info = baton_proto::rpc::ErrorInfo {
        reason: EXACTLY_ONCE_REASON.to_string(),
        domain: PUBSUB_DOMAIN.to_string(),
        metadata: error
            .ack_failures
            .iter()
            .map(|f| (f.ack_id.clone(), f.reason.to_string()))
            .collect(),
    };
    let details = baton_proto::rpc::Status {
        code: code as i32,
        message: error.message.clone(),
        details: vec![baton_proto::wkt::Any {
            type_url: ERROR_INFO_TYPE.to_string(),
            value: info.encode_to_vec().into(),
        }],
    };
    tonic::Status::with_details(code, error.message, details.encode_to_vec().into())
}

/// The HTTP status and the Google JSON error body of a broker error.
pub fn to_http(error: &BrokerError) -> (StatusCode, serde_json::Value) {
    let (_, status, name) = mapping(error.code);
    let mut body = serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "message": error.message,
            "status": name,
        }
    });
    if !error.ack_failures.is_empty() {
        let metadata: serde_json::Map<String, serde_json::Value> = error
            .ack_failures
            .iter()
            .map(|f| (f.ack_id.clone(), serde_json::Value::from(f.reason)))
            .collect();
        body["error"]["details"] = serde_json::json!([{
            "@type": ERROR_INFO_TYPE,
            "reason": EXACTLY_ONCE_REASON,
            "domain": PUBSUB_DOMAIN,
            "metadata": metadata,
        }]);
    }
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

    #[test]
    fn exactly_once_failures_carry_error_info() {
        use prost::Message;
        let error = BrokerError::ack_failures(vec![baton_broker::AckFailure {
            ack_id: "projects/p/subscriptions/s:1".into(),
            reason: "PERMANENT_FAILURE_INVALID_ACK_ID",
        }]);
        let status = to_status(error.clone());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let decoded = baton_proto::rpc::Status::decode(status.details()).unwrap();
        let info = baton_proto::rpc::ErrorInfo::decode(decoded.details[0].value.clone()).unwrap();
        assert_eq!(info.reason, "EXACTLY_ONCE_ACKID_FAILURE");
        assert_eq!(info.domain, "pubsub.googleapis.com");
        assert_eq!(
            info.metadata["projects/p/subscriptions/s:1"],
            "PERMANENT_FAILURE_INVALID_ACK_ID"
        );
        let (_, body) = to_http(&error);
        assert_eq!(
            body["error"]["details"][0]["reason"],
            "EXACTLY_ONCE_ACKID_FAILURE"
        );
    }
}
