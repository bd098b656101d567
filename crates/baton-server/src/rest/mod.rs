//! The REST transport: the service's `/v1/...` HTTP/JSON mapping over the
//! request layer. [`routes`] is the table of method and path template to
//! RPC; [`json`] builds the request message from body, query and path;
//! this module serves what lies around the table the way the service does
//! (the root, other API versions, OPTIONS and HEAD, oversized bodies, gRPC
//! calls to services we do not serve).

mod json;
mod routes;
mod template;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use baton_broker::BrokerError;
use http::{Method, StatusCode, header};

use crate::api::{PubSubApi, RequestContext, Transport};
use crate::status::to_http;

/// Largest accepted request body: a full Publish request in base64 plus
/// JSON overhead.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A plain-text answer without a content type, as the service sends for
/// paths outside the API.
fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut response = (status, text.into()).into_response();
    response.headers_mut().remove(header::CONTENT_TYPE);
    response
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(error: &BrokerError) -> Response {
    let (status, body) = to_http(error);
    json(status, body.to_string().into_bytes())
}

/// Serves every HTTP request that no other route took.
pub async fn handle(State(api): State<PubSubApi>, request: Request) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        // A gRPC call to a service we do not serve: answer in gRPC terms so
        // the client sees UNIMPLEMENTED rather than a garbled HTTP 404.
        let method = request.uri().path().trim_start_matches('/').to_string();
        return tonic::Status::unimplemented(format!("Method {method} is unimplemented"))
            .into_http();
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return error_response(&BrokerError::invalid(format!(
            "Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."
        )));
    };
    let ctx = RequestContext::new(Transport::Rest)
        .with_authorization(parts.headers.get(header::AUTHORIZATION).cloned());
    serve(
        &api,
        ctx,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &body,
    )
    .await
}

async fn serve(
    api: &PubSubApi,
    ctx: RequestContext,
    method: &Method,
    raw_path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    if raw_path == "/" {
        return match *method {
            Method::GET => plain(StatusCode::OK, "Ok\n"),
            _ => not_found(),
        };
    }
    let path = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    let Some(path) = path.strip_prefix('/') else {
        return not_found();
    };
    let segments: Vec<&str> = path.split('/').collect();
    match segments.first() {
        Some(&"v1") => {}
        Some(version)
            if version.starts_with('v')
                && version.len() > 1
                && version[1..].chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            return plain(
                StatusCode::NOT_FOUND,
                format!("Not Found (Unsupported API version \"{version}\")\n"),
            );
        }
        _ => return not_found(),
    }
    if *method == Method::OPTIONS {
        return plain(StatusCode::OK, "");
    }
    if *method == Method::HEAD {
        return plain(StatusCode::NOT_FOUND, "");
    }
    if segments.iter().any(|s| s.is_empty()) || segments.get(1) != Some(&"projects") {
        return not_found();
    }
    let Some((route, binding)) = routes::find(method, &segments) else {
        return not_found();
    };
    let request = match json::request_json(route.body, body, query, route.query, binding) {
        Ok(request) => request,
        Err(error) => return error_response(&error),
    };
    match (route.call)(api, ctx, request).await {
        Ok(body) => json(StatusCode::OK, body),
        Err(error) => error_response(&error),
    }
}
