//! The REST face: the service's `/v1/...` HTTP/JSON mapping over the same
//! broker calls as gRPC. Paths are parsed by hand because resource ids may
//! carry a `:verb` suffix and the service answers odd paths in specific ways
//! (an unknown verb is 404, a GET on `topic:publish` is a bad topic name).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use baton_broker::{Broker, BrokerError, PullWait};
use baton_proto::pubsub::{
    AcknowledgeRequest, CreateSnapshotRequest, DetachSubscriptionResponse, ListSnapshotsResponse,
    ListSubscriptionsResponse, ListTopicSnapshotsResponse, ListTopicSubscriptionsResponse,
    ListTopicsResponse, ModifyAckDeadlineRequest, ModifyPushConfigRequest, PublishRequest,
    PublishResponse, PullRequest, PullResponse, SeekRequest, SeekResponse, Snapshot, Subscription,
    Topic,
};
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::status::to_http;

#[path = "rest_schemas.rs"]
mod schemas;

/// Longest a REST pull waits when `returnImmediately` is false.
const REST_PULL_WAIT: Duration = Duration::from_secs(60);

/// Largest accepted request body: a full Publish request in base64 plus
/// JSON overhead.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response().with_no_content_type()
}

trait NoContentType {
    fn with_no_content_type(self) -> Self;
}

impl NoContentType for Response {
    fn with_no_content_type(mut self) -> Self {
        self.headers_mut().remove(header::CONTENT_TYPE);
        self
    }
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(error) => error_response(&BrokerError::new(
            baton_broker::ErrorCode::Internal,
            error.to_string(),
        )),
    }
}

fn error_response(error: &BrokerError) -> Response {
    let (status, body) = to_http(error);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn reply<T: Serialize>(result: Result<T, BrokerError>) -> Response {
    match result {
        Ok(value) => json_response(&value),
        Err(error) => error_response(&error),
    }
}

fn invalid_payload() -> BrokerError {
    BrokerError::invalid("Payload isn't valid for request.")
}

/// JSON names (camelCase and snake_case) of every bool field in our protos.
/// Google's JSON parser accepts `"true"`/`"false"` strings for them, and
/// clients rely on it; the generated serde code alone would not.
static BOOL_FIELDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    use prost::Message;
    use prost_types::field_descriptor_proto::Type;
    let mut names = HashSet::new();
    let Ok(set) = prost_types::FileDescriptorSet::decode(baton_proto::FILE_DESCRIPTOR_SET) else {
        return names;
    };
    fn walk(message: &prost_types::DescriptorProto, names: &mut HashSet<String>) {
        for field in &message.field {
            if field.r#type() == Type::Bool {
                names.insert(field.name().to_string());
                names.insert(field.json_name().to_string());
            }
        }
        for nested in &message.nested_type {
            walk(nested, names);
        }
    }
    for file in &set.file {
        for message in &file.message_type {
            walk(message, &mut names);
        }
    }
    names
});

/// Fields whose JSON objects are string maps: their keys are user data.
const MAP_FIELDS: &[&str] = &["labels", "attributes", "tags"];

/// Brings lenient-but-valid proto3 JSON into the shape the generated serde
/// code reads: `null` means "not set", and bool fields may be strings.
fn normalize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (key, v) in map.iter_mut() {
                if let serde_json::Value::String(text) = v {
                    if BOOL_FIELDS.contains(key.as_str()) {
                        match text.as_str() {
                            "true" => *v = serde_json::Value::Bool(true),
                            "false" => *v = serde_json::Value::Bool(false),
                            _ => {}
                        }
                    }
                } else if !MAP_FIELDS.contains(&key.as_str()) {
                    normalize_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalize_json),
        _ => {}
    }
}

/// Parses a JSON body into `T`; an empty body or `null` is the empty message.
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, BrokerError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(T::default());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(trimmed).map_err(|_| invalid_payload())?;
    normalize_json(&mut value);
    serde_json::from_value(value).map_err(|_| invalid_payload())
}

/// Parses a body that may carry a proto3-JSON `updateMask` string (which the
/// generated types expect in object form): returns the message and the mask
/// paths in snake_case.
fn parse_with_mask<T: DeserializeOwned + Default>(
    body: &[u8],
    query_mask: Option<String>,
) -> Result<(T, Vec<String>), BrokerError> {
    let trimmed = body.trim_ascii();
    let mut value: serde_json::Value = if trimmed.is_empty() || trimmed == b"null" {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_slice(trimmed).map_err(|_| invalid_payload())?
    };
    normalize_json(&mut value);
    let serde_json::Value::Object(map) = &mut value else {
        return Err(invalid_payload());
    };
    let mask = map
        .remove("updateMask")
        .or_else(|| map.remove("update_mask"));
    let mask_text = match mask {
        None | Some(serde_json::Value::Null) => query_mask.unwrap_or_default(),
        Some(serde_json::Value::String(text)) => text,
        Some(_) => return Err(invalid_payload()),
    };
    let paths = mask_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(camel_to_snake)
        .collect();
    let message = serde_json::from_value(value).map_err(|_| invalid_payload())?;
    Ok((message, paths))
}

/// `ackDeadlineSeconds` -> `ack_deadline_seconds` (per path segment).
pub fn camel_to_snake(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    let query = query?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn page_params(query: Option<&str>) -> (i32, String) {
    let size = query_param(query, "pageSize")
        .or_else(|| query_param(query, "page_size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let token = query_param(query, "pageToken")
        .or_else(|| query_param(query, "page_token"))
        .unwrap_or_default();
    (size, token)
}

/// Serves every HTTP/1.1 request that is not gRPC.
pub async fn handle(State(broker): State<Arc<Broker>>, request: Request) -> Response {
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
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(&BrokerError::invalid(format!(
                "Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."
            )));
        }
    };
    let response = route(
        &broker,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        body,
    )
    .await;
    // A change is answered once it is durable (pulls change nothing
    // durable), failures too: an exactly-once ack that fails for some ids
    // applied the others.
    let changes = parts.method != Method::GET && !parts.uri.path().ends_with(":pull");
    if changes && let Err(error) = broker.durable().await {
        return error_response(&error);
    }
    response
}

async fn route(
    broker: &Arc<Broker>,
    method: &Method,
    raw_path: &str,
    query: Option<&str>,
    body: Bytes,
) -> Response {
    if raw_path == "/" {
        return match *method {
            Method::GET => plain(StatusCode::OK, "Ok\n"),
            _ => not_found(),
        };
    }
    let path = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    let Some(rest) = path.strip_prefix('/') else {
        return not_found();
    };
    let mut segments: Vec<&str> = rest.split('/').collect();
    match segments.first() {
        Some(&"v1") => {}
        Some(version)
            if version.starts_with('v')
                && version.len() > 1
                && version[1..].chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            return plain_owned(
                StatusCode::NOT_FOUND,
                format!("Not Found (Unsupported API version \"{version}\")\n"),
            );
        }
        _ => return not_found(),
    }
    segments.remove(0);
    if *method == Method::OPTIONS {
        return plain(StatusCode::OK, "");
    }
    if *method == Method::HEAD {
        return plain(StatusCode::NOT_FOUND, "");
    }
    if segments.iter().any(|s| s.is_empty()) || segments.first() != Some(&"projects") {
        return not_found();
    }
    if let ["projects", project, collection, id] = segments.as_slice()
        && let Some((id, verb)) = id.rsplit_once(':')
        && (verb.ends_with("IamPolicy") || verb == "testIamPermissions")
    {
        let resource = format!("projects/{project}/{collection}/{id}");
        return iam(broker, method, &resource, verb, &body);
    }
    if segments
        .get(2)
        .is_some_and(|c| *c == "schemas" || c.starts_with("schemas:"))
    {
        return schemas::route(broker, method, &segments, query, &body);
    }
    match segments.as_slice() {
        ["projects", project, collection] => list(broker, method, project, collection, query),
        ["projects", project, collection, id] => {
            resource(broker, method, project, collection, id, query, body).await
        }
        ["projects", project, "topics", topic, child] if *method == Method::GET => {
            let name = format!("projects/{project}/topics/{topic}");
            let (size, token) = page_params(query);
            match *child {
                "subscriptions" => reply(broker.list_topic_subscriptions(&name, size, &token).map(
                    |p| ListTopicSubscriptionsResponse {
                        subscriptions: p.items,
                        next_page_token: p.next_page_token,
                    },
                )),
                "snapshots" => reply(broker.list_topic_snapshots(&name, size, &token).map(|p| {
                    ListTopicSnapshotsResponse {
                        snapshots: p.items,
                        next_page_token: p.next_page_token,
                    }
                })),
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// `:getIamPolicy` (GET or POST), `:setIamPolicy`, `:testIamPermissions`.
fn iam(broker: &Broker, method: &Method, resource: &str, verb: &str, body: &[u8]) -> Response {
    use baton_proto::iam::{
        SetIamPolicyRequest, TestIamPermissionsRequest, TestIamPermissionsResponse,
    };
    match (verb, method.clone()) {
        ("getIamPolicy", Method::GET | Method::POST) => reply(broker.get_iam_policy(resource)),
        ("setIamPolicy", Method::POST) => reply(
            parse_with_mask::<SetIamPolicyRequest>(body, None).and_then(|(request, paths)| {
                broker.set_iam_policy(resource, request.policy.unwrap_or_default(), &paths)
            }),
        ),
        ("testIamPermissions", Method::POST) => reply(
            parse_body::<TestIamPermissionsRequest>(body).and_then(|request| {
                broker
                    .test_iam_permissions(resource, request.permissions)
                    .map(|permissions| TestIamPermissionsResponse { permissions })
            }),
        ),
        _ => not_found(),
    }
}

fn plain_owned(status: StatusCode, text: String) -> Response {
    (status, text).into_response().with_no_content_type()
}

fn list(
    broker: &Broker,
    method: &Method,
    project: &str,
    collection: &str,
    query: Option<&str>,
) -> Response {
    if *method != Method::GET {
        return not_found();
    }
    let project = format!("projects/{project}");
    let (size, token) = page_params(query);
    match collection {
        "topics" => reply(
            broker
                .list_topics(&project, size, &token)
                .map(|p| ListTopicsResponse {
                    topics: p.items,
                    next_page_token: p.next_page_token,
                }),
        ),
        "subscriptions" => reply(broker.list_subscriptions(&project, size, &token).map(|p| {
            ListSubscriptionsResponse {
                subscriptions: p.items,
                next_page_token: p.next_page_token,
            }
        })),
        "snapshots" => {
            reply(
                broker
                    .list_snapshots(&project, size, &token)
                    .map(|p| ListSnapshotsResponse {
                        snapshots: p.items,
                        next_page_token: p.next_page_token,
                    }),
            )
        }
        _ => not_found(),
    }
}

async fn resource(
    broker: &Arc<Broker>,
    method: &Method,
    project: &str,
    collection: &str,
    id: &str,
    query: Option<&str>,
    body: Bytes,
) -> Response {
    if !matches!(collection, "topics" | "subscriptions" | "snapshots") {
        return not_found();
    }
    if *method == Method::POST {
        let Some((id, verb)) = id.rsplit_once(':') else {
            return not_found();
        };
        let name = format!("projects/{project}/{collection}/{id}");
        return action(broker, collection, &name, verb, &body).await;
    }
    let name = format!("projects/{project}/{collection}/{id}");
    match (collection, method.clone()) {
        ("topics", Method::PUT) => reply(parse_body::<Topic>(&body).and_then(|mut topic| {
            topic.name = name;
            broker.create_topic(topic)
        })),
        ("topics", Method::GET) => reply(broker.get_topic(&name)),
        ("topics", Method::PATCH) => {
            let mask = query_param(query, "updateMask");
            reply(
                parse_with_mask::<baton_proto::pubsub::UpdateTopicRequest>(&body, mask).and_then(
                    |(request, paths)| {
                        let mut topic = request.topic.unwrap_or_default();
                        topic.name = name;
                        broker.update_topic(topic, &paths)
                    },
                ),
            )
        }
        ("topics", Method::DELETE) => reply(broker.delete_topic(&name).map(|()| Empty {})),
        ("subscriptions", Method::PUT) => {
            reply(parse_body::<Subscription>(&body).and_then(|mut sub| {
                sub.name = name;
                broker.create_subscription(sub)
            }))
        }
        ("subscriptions", Method::GET) => reply(broker.get_subscription(&name)),
        ("subscriptions", Method::PATCH) => {
            let mask = query_param(query, "updateMask");
            reply(
                parse_with_mask::<baton_proto::pubsub::UpdateSubscriptionRequest>(&body, mask)
                    .and_then(|(request, paths)| {
                        let mut sub = request.subscription.unwrap_or_default();
                        sub.name = name;
                        broker.update_subscription(sub, &paths)
                    }),
            )
        }
        ("subscriptions", Method::DELETE) => {
            reply(broker.delete_subscription(&name).map(|()| Empty {}))
        }
        ("snapshots", Method::PUT) => reply(parse_body::<CreateSnapshotRequest>(&body).and_then(
            |request| broker.create_snapshot(&name, &request.subscription, request.labels),
        )),
        ("snapshots", Method::GET) => reply(broker.get_snapshot(&name)),
        ("snapshots", Method::PATCH) => {
            let mask = query_param(query, "updateMask");
            reply(
                parse_with_mask::<baton_proto::pubsub::UpdateSnapshotRequest>(&body, mask)
                    .and_then(|(request, paths)| {
                        let mut snapshot: Snapshot = request.snapshot.unwrap_or_default();
                        snapshot.name = name;
                        broker.update_snapshot(snapshot, &paths)
                    }),
            )
        }
        ("snapshots", Method::DELETE) => reply(broker.delete_snapshot(&name).map(|()| Empty {})),
        _ => not_found(),
    }
}

/// `{}`: the JSON of google.protobuf.Empty.
#[derive(Serialize)]
struct Empty {}

async fn action(
    broker: &Arc<Broker>,
    collection: &str,
    name: &str,
    verb: &str,
    body: &[u8],
) -> Response {
    match (collection, verb) {
        ("topics", "publish") => reply(parse_body::<PublishRequest>(body).and_then(|request| {
            broker
                .publish(name, request.messages)
                .map(|message_ids| PublishResponse { message_ids })
        })),
        ("subscriptions", "pull") => {
            let request = match parse_body::<PullRequest>(body) {
                Ok(request) => request,
                Err(error) => return error_response(&error),
            };
            #[allow(deprecated)]
            let wait = if request.return_immediately {
                PullWait::Immediate
            } else {
                PullWait::Until(Instant::now() + REST_PULL_WAIT)
            };
            reply(
                broker
                    .pull(name, request.max_messages, wait)
                    .await
                    .map(|received_messages| PullResponse { received_messages }),
            )
        }
        ("subscriptions", "acknowledge") => reply(
            parse_body::<AcknowledgeRequest>(body)
                .and_then(|request| broker.acknowledge(name, &request.ack_ids).map(|_| Empty {})),
        ),
        ("subscriptions", "modifyAckDeadline") => reply(
            parse_body::<ModifyAckDeadlineRequest>(body).and_then(|request| {
                broker
                    .modify_ack_deadline(name, &request.ack_ids, request.ack_deadline_seconds)
                    .map(|_| Empty {})
            }),
        ),
        ("subscriptions", "modifyPushConfig") => reply(
            parse_body::<ModifyPushConfigRequest>(body).and_then(|request| {
                broker
                    .modify_push_config(name, request.push_config)
                    .map(|()| Empty {})
            }),
        ),
        ("subscriptions", "seek") => reply(
            parse_body::<SeekRequest>(body)
                .and_then(|request| broker.seek(name, request.target).map(|()| SeekResponse {})),
        ),
        ("subscriptions", "detach") => reply(
            broker
                .detach_subscription(name)
                .map(|()| DetachSubscriptionResponse {}),
        ),
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_become_snake_case() {
        assert_eq!(camel_to_snake("ackDeadlineSeconds"), "ack_deadline_seconds");
        assert_eq!(camel_to_snake("push_config"), "push_config");
    }

    #[test]
    fn empty_bodies_are_empty_messages() {
        let topic: Topic = parse_body(b"").unwrap();
        assert_eq!(topic, Topic::default());
        let topic: Topic = parse_body(b" null ").unwrap();
        assert_eq!(topic, Topic::default());
        assert!(parse_body::<Topic>(b"[]").is_err());
        assert!(parse_body::<Topic>(b"{\"bogus\":1}").is_err());
    }
}
