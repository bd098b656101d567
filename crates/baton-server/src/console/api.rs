//! The console's JSON API (`/api/console/...`): stats of topics and
//! subscriptions (paged), a subscription's dead-lettered messages, peeking
//! at a backlog, publishing a test message, seeking, and a message's
//! history. Times are milliseconds since the Unix epoch (`*_ms`), durations
//! milliseconds; errors are Google's JSON error body with the HTTP status
//! the Pub/Sub REST API would answer.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use baton_broker::{
    BrokerError, DeliveryKind, LeaseEnd, MessageEventKind, MessageHistory, PeekedState,
    SubscriptionStats, TopicStats,
};
use baton_proto::pubsub::{PublishRequest, PubsubMessage, SeekRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::access::{Checks, on};
use crate::api::{PubSubApi, Publish, RequestContext, Seek, Transport};

/// Most subscriptions of a topic listed with their stats on one page.
const TOPIC_SUBSCRIPTIONS_PAGE: i32 = 100;
/// Messages a peek shows unless asked.
const DEFAULT_PEEK: usize = 10;

pub(super) fn routes() -> axum::Router<PubSubApi> {
    axum::Router::new()
        .route("/api/console/topics", get(list_topics))
        .route("/api/console/topics/{project}/{topic}", get(topic))
        .route(
            "/api/console/topics/{project}/{topic}/publish",
            post(publish),
        )
        .route("/api/console/subscriptions", get(list_subscriptions))
        .route(
            "/api/console/subscriptions/{project}/{subscription}",
            get(subscription),
        )
        .route(
            "/api/console/subscriptions/{project}/{subscription}/peek",
            get(peek),
        )
        .route(
            "/api/console/subscriptions/{project}/{subscription}/seek",
            post(seek),
        )
        .route(
            "/api/console/messages/{project}/{topic}/{message_id}",
            get(message),
        )
}

/// A broker error as the REST API answers it.
#[derive(Debug)]
struct ApiError(BrokerError);

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = crate::status::to_http(&self.0);
        (status, Json(body)).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// The request as the request layer sees it: REST, with the caller's
/// credential.
fn context(headers: &HeaderMap) -> RequestContext {
    RequestContext::new(Transport::Rest).with_authorization(headers.get(AUTHORIZATION).cloned())
}

/// With authentication on, the caller must hold `checks`; see the module
/// docs of [`super`].
fn admit(api: &PubSubApi, headers: &HeaderMap, checks: Checks<'_>) -> Result<(), ApiError> {
    api.admit(&context(headers), checks)?;
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    /// A project id (`my-project`) or name (`projects/my-project`); every
    /// project when missing.
    project: Option<String>,
    page_size: Option<i32>,
    page_token: Option<String>,
}

impl ListQuery {
    fn project(&self) -> Option<String> {
        self.project.as_deref().filter(|p| !p.is_empty()).map(|p| {
            match p.strip_prefix("projects/") {
                Some(_) => p.to_string(),
                None => format!("projects/{p}"),
            }
        })
    }
}

fn millis(time: SystemTime) -> u64 {
    u64::try_from(
        time.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn opt_millis(time: Option<SystemTime>) -> Value {
    time.map_or(Value::Null, |t| json!(millis(t)))
}

/// The last `/`-separated part of a full name.
fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn config_json<T: serde::Serialize>(config: &T) -> Value {
    serde_json::to_value(config).unwrap_or(Value::Null)
}

fn subscription_json(stats: &SubscriptionStats) -> Value {
    let config = &stats.config;
    let push = stats.push.as_ref().map(|push| {
        let counts: serde_json::Map<String, Value> = baton_broker::PushResponseClass::ALL
            .iter()
            .map(|class| (class.as_str().to_string(), json!(push.counts.get(*class))))
            .collect();
        json!({
            "endpoint": push.endpoint,
            "healthy": push.healthy(),
            "counts": counts,
            "consecutive_failures": push.consecutive_failures,
            "last_ack_ms": opt_millis(push.last_ack),
            "last": push.last.as_ref().map(|last| json!({
                "class": last.result.class.as_str(),
                "status": last.result.status,
                "detail": last.result.detail,
                "at_ms": millis(last.at),
            })),
        })
    });
    let counters = stats.counters;
    json!({
        "name": config.name,
        "short_name": short(&config.name),
        "topic": config.topic,
        "filter": config.filter,
        "ack_deadline_seconds": config.ack_deadline_seconds,
        "detached": config.detached,
        "ordering": config.enable_message_ordering,
        "exactly_once": config.enable_exactly_once_delivery,
        "backlog_messages": stats.backlog_messages,
        "backlog_bytes": stats.backlog_bytes,
        "ready_messages": stats.ready_messages,
        "leases_outstanding": stats.leases_outstanding,
        "backoff_messages": stats.backoff_messages,
        "oldest_unacked_publish_time_ms": opt_millis(stats.oldest_unacked_publish_time),
        "oldest_unacked_age_ms": stats.oldest_unacked_age.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "open_streams": stats.open_streams,
        "retained_acked_messages": stats.retained_acked_messages,
        "counters": {
            "delivery_attempts": counters.delivery_attempts,
            "acked": counters.acked,
            "nacked": counters.nacked,
            "expired": counters.expired,
            "dead_lettered": counters.dead_lettered,
        },
        "push": push,
    })
}

fn topic_json(stats: &TopicStats) -> Value {
    let counters = stats.counters;
    let config = &stats.config;
    json!({
        "name": config.name,
        "short_name": short(&config.name),
        "schema": config.schema_settings.as_ref().map(config_json),
        "message_retention_duration": config.message_retention_duration.as_ref().map(config_json),
        "labels": config.labels,
        "subscriptions": stats.subscriptions,
        "retained_messages": stats.retained_messages,
        "last_publish_time_ms": opt_millis(stats.last_publish_time),
        "counters": {
            "publish_operations": counters.publish_operations,
            "publish_errors": counters.publish_errors,
            "messages_published": counters.messages_published,
            "bytes_published": counters.bytes_published,
        },
    })
}

/// A message for display: its data as text when it is UTF-8, and always as
/// base64.
fn message_json(message: &PubsubMessage) -> Value {
    json!({
        "message_id": message.message_id,
        "data_text": std::str::from_utf8(&message.data).ok(),
        "data_base64": BASE64.encode(&message.data),
        "size": message.payload_size(),
        "attributes": message.attributes,
        "ordering_key": message.ordering_key,
        "publish_time_ms": message.publish_time.as_ref().map(|t| {
            u64::try_from(t.seconds).unwrap_or(0) * 1000 + u64::try_from(t.nanos / 1_000_000).unwrap_or(0)
        }),
    })
}

/// `GET /api/console/topics`: a page of topics with their stats.
async fn list_topics(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Answer {
    let mut filter = api.project_filter(&context(&headers), "pubsub.topics.list")?;
    let page = api.broker().list_topic_stats(
        query.project().as_deref(),
        query.page_size.unwrap_or(0),
        query.page_token.as_deref().unwrap_or(""),
    )?;
    let topics: Vec<Value> = page
        .items
        .iter()
        .filter(|t| filter.allows(t.name()))
        .map(topic_json)
        .collect();
    Ok(Json(
        json!({ "topics": topics, "next_page_token": page.next_page_token }),
    ))
}

/// `GET /api/console/subscriptions`: a page of subscriptions with their
/// stats.
async fn list_subscriptions(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Answer {
    let mut filter = api.project_filter(&context(&headers), "pubsub.subscriptions.list")?;
    let page = api.broker().list_subscription_stats(
        query.project().as_deref(),
        query.page_size.unwrap_or(0),
        query.page_token.as_deref().unwrap_or(""),
    )?;
    let subscriptions: Vec<Value> = page
        .items
        .iter()
        .filter(|s| filter.allows(s.name()))
        .map(subscription_json)
        .collect();
    Ok(Json(
        json!({ "subscriptions": subscriptions, "next_page_token": page.next_page_token }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct TopicQuery {
    /// Page token of the topic's subscriptions.
    page_token: Option<String>,
}

/// `GET /api/console/topics/{project}/{topic}`: stats, configuration and a
/// page of its subscriptions with theirs.
async fn topic(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Path((project, topic)): Path<(String, String)>,
    Query(query): Query<TopicQuery>,
) -> Answer {
    let name = format!("projects/{project}/topics/{topic}");
    admit(&api, &headers, on("pubsub.topics.get", &name))?;
    let broker = api.broker();
    let stats = broker.topic_stats(&name)?;
    let page = broker.list_topic_subscriptions(
        &name,
        TOPIC_SUBSCRIPTIONS_PAGE,
        query.page_token.as_deref().unwrap_or(""),
    )?;
    let subscriptions: Vec<Value> = page
        .items
        .iter()
        .filter_map(|sub| broker.subscription_stats(sub).ok())
        .map(|stats| subscription_json(&stats))
        .collect();
    Ok(Json(json!({
        "topic": topic_json(&stats),
        "config": config_json(&stats.config),
        "subscriptions": subscriptions,
        "next_page_token": page.next_page_token,
    })))
}

/// `GET /api/console/subscriptions/{project}/{subscription}`: stats,
/// configuration, recent dead-lettered messages and the topic's snapshots
/// (to seek to).
async fn subscription(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Path((project, subscription)): Path<(String, String)>,
) -> Answer {
    let name = format!("projects/{project}/subscriptions/{subscription}");
    admit(&api, &headers, on("pubsub.subscriptions.get", &name))?;
    let broker = api.broker();
    let stats = broker.subscription_stats(&name)?;
    let dead_letters: Vec<Value> = broker
        .recent_dead_letters(&name)?
        .iter()
        .map(|letter| {
            json!({
                "message": message_json(&letter.message.to_message()),
                "attempts": letter.attempts,
                "reason": letter.reason.as_str(),
                "reason_text": letter.reason_text(),
                "dead_letter_topic": letter.dead_letter_topic,
                "at_ms": millis(letter.at),
            })
        })
        .collect();
    let snapshots = broker
        .list_topic_snapshots(&stats.config.topic, 100, "")
        .map(|page| page.items)
        .unwrap_or_default();
    Ok(Json(json!({
        "subscription": subscription_json(&stats),
        "config": config_json(&stats.config),
        "dead_letters": dead_letters,
        "snapshots": snapshots,
    })))
}

#[derive(Debug, Default, Deserialize)]
struct PeekQuery {
    max: Option<usize>,
}

/// `GET /api/console/subscriptions/{project}/{subscription}/peek?max=N`:
/// the oldest messages of the backlog, without leasing or acking them.
async fn peek(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Path((project, subscription)): Path<(String, String)>,
    Query(query): Query<PeekQuery>,
) -> Answer {
    let name = format!("projects/{project}/subscriptions/{subscription}");
    admit(&api, &headers, on("pubsub.subscriptions.consume", &name))?;
    let peeked = api
        .broker()
        .peek(&name, query.max.unwrap_or(DEFAULT_PEEK))?;
    let messages: Vec<Value> = peeked
        .iter()
        .map(|p| {
            let state = match p.state {
                PeekedState::Ready => json!({ "kind": "ready" }),
                PeekedState::Leased { deadline, stream } => {
                    json!({ "kind": "leased", "deadline_ms": millis(deadline), "stream": stream })
                }
                PeekedState::Backoff { until } => {
                    json!({ "kind": "backoff", "until_ms": millis(until) })
                }
            };
            json!({
                "message": message_json(&p.message),
                "attempts": p.attempts,
                "state": state,
            })
        })
        .collect();
    Ok(Json(json!({ "messages": messages })))
}

#[derive(Debug, Default, Deserialize)]
struct PublishBody {
    /// The data as text (UTF-8).
    #[serde(default)]
    data: Option<String>,
    /// Or the data as base64.
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    attributes: HashMap<String, String>,
    #[serde(default)]
    ordering_key: String,
}

/// `POST /api/console/topics/{project}/{topic}/publish`: publishes one
/// message through the request layer's Publish.
async fn publish(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Path((project, topic)): Path<(String, String)>,
    Json(body): Json<PublishBody>,
) -> Answer {
    // Authenticate before reading the body, so a caller without a
    // credential learns nothing but 401; Publish checks the permission.
    admit(&api, &headers, Checks::none())?;
    let data = match (&body.data_base64, body.data) {
        (Some(encoded), _) => BASE64
            .decode(encoded.trim())
            .map_err(|_| BrokerError::invalid("data_base64 is not valid base64"))?,
        (None, Some(text)) => text.into_bytes(),
        (None, None) => Vec::new(),
    };
    let request = PublishRequest {
        topic: format!("projects/{project}/topics/{topic}"),
        messages: vec![PubsubMessage {
            data,
            attributes: body.attributes,
            ordering_key: body.ordering_key,
            ..Default::default()
        }],
    };
    let response = api
        .call::<Publish>(&context(&headers), request.into())
        .await?;
    Ok(Json(json!({ "message_ids": response.message_ids })))
}

#[derive(Debug, Default, Deserialize)]
struct SeekBody {
    /// RFC 3339 time to seek to.
    #[serde(default)]
    time: Option<String>,
    /// Or a snapshot: its id in the subscription's project, or full name.
    #[serde(default)]
    snapshot: Option<String>,
}

/// `POST /api/console/subscriptions/{project}/{subscription}/seek`: seeks
/// through the request layer's Seek.
async fn seek(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Path((project, subscription)): Path<(String, String)>,
    Json(body): Json<SeekBody>,
) -> Answer {
    admit(&api, &headers, Checks::none())?;
    let name = format!("projects/{project}/subscriptions/{subscription}");
    let request = match (body.time, body.snapshot) {
        (Some(time), None) => json!({ "subscription": name, "time": time }),
        (None, Some(snapshot)) => {
            let snapshot = if snapshot.starts_with("projects/") {
                snapshot
            } else {
                format!("projects/{project}/snapshots/{snapshot}")
            };
            json!({ "subscription": name, "snapshot": snapshot })
        }
        _ => {
            return Err(BrokerError::invalid("Give exactly one of time or snapshot.").into());
        }
    };
    let request: SeekRequest = serde_json::from_value(request)
        .map_err(|error| BrokerError::invalid(format!("Invalid seek target: {error}")))?;
    api.call::<Seek>(&context(&headers), request).await?;
    let stats = api.broker().subscription_stats(&name)?;
    Ok(Json(json!({ "subscription": subscription_json(&stats) })))
}

fn reason_str(reason: LeaseEnd) -> &'static str {
    reason.as_str()
}

fn via_str(kind: DeliveryKind) -> &'static str {
    kind.as_str()
}

fn history_json(history: &MessageHistory) -> Value {
    let events: Vec<Value> = history
        .events
        .iter()
        .map(|event| {
            let mut value = match &event.kind {
                MessageEventKind::Delivered {
                    attempt,
                    via,
                    stream,
                    lease_deadline,
                } => json!({
                    "kind": "delivered",
                    "attempt": attempt,
                    "via": via_str(*via),
                    "stream": stream,
                    "lease_deadline_ms": millis(*lease_deadline),
                }),
                MessageEventKind::DeadlineModified { attempt, deadline } => json!({
                    "kind": "modack",
                    "attempt": attempt,
                    "deadline_ms": millis(*deadline),
                }),
                MessageEventKind::LeaseEnded {
                    attempt,
                    reason,
                    available_at,
                } => json!({
                    "kind": reason_str(*reason),
                    "attempt": attempt,
                    "available_at_ms": millis(*available_at),
                }),
                MessageEventKind::Acked { attempt } => json!({
                    "kind": "ack",
                    "attempt": attempt,
                }),
                MessageEventKind::DeadLettered {
                    attempts,
                    reason,
                    dead_letter_topic,
                } => json!({
                    "kind": "dead_lettered",
                    "attempt": attempts,
                    "reason": reason_str(*reason),
                    "dead_letter_topic": dead_letter_topic,
                    "reason_text": "max delivery attempts reached",
                }),
                MessageEventKind::DeadLetterCopy { topic, message_id } => json!({
                    "kind": "dead_letter_copy",
                    "topic": topic,
                    "message_id": message_id,
                }),
            };
            if let Some(object) = value.as_object_mut() {
                object.insert("at_ms".into(), json!(millis(event.at)));
                object.insert("subscription".into(), json!(event.subscription));
            }
            value
        })
        .collect();
    let deliveries: serde_json::Map<String, Value> = history
        .subscriptions()
        .into_iter()
        .map(|sub| (sub.to_string(), json!(history.deliveries(sub))))
        .collect();
    let published = history.published.as_ref().map(|p| {
        json!({
            "topic": p.topic,
            "at_ms": millis(p.at),
            "ordering_key": p.ordering_key,
            "size": p.size,
            "attributes": p.attributes,
            "traceparent": p.traceparent,
        })
    });
    json!({
        "message_id": history.message_id,
        "published": published,
        "events": events,
        "events_dropped": history.events_dropped,
        "deliveries": deliveries,
        "explain": history.explain(),
        "trace_id": history.published.as_ref().and_then(|p| p.trace_id()),
    })
}

/// `GET /api/console/messages/{project}/{topic}/{message_id}`: the
/// message's history from the broker's journal, with the trace id of its
/// trace context (for `/api/traces/{id}`).
async fn message(
    State(api): State<PubSubApi>,
    headers: HeaderMap,
    Path((project, topic, message_id)): Path<(String, String, String)>,
) -> Answer {
    let name = format!("projects/{project}/topics/{topic}");
    admit(&api, &headers, on("pubsub.topics.get", &name))?;
    let history = api.broker().message_history(&name, &message_id)?;
    Ok(Json(history_json(&history)))
}
