//! The broker's metrics under the names Cloud Monitoring gives the real
//! service's Pub/Sub metrics, so dashboards and alerts written for Google
//! Cloud read Baton's numbers unchanged.
//!
//! One sample of the broker ([`collect`]) feeds both outputs: the Prometheus
//! text served at `GET /metrics` ([`prometheus`]), where a metric type such as
//! `subscription/num_undelivered_messages` is named as Cloud Monitoring names
//! it in PromQL (`pubsub_googleapis_com:subscription_num_undelivered_messages`),
//! and an OTLP export sent upstream when metrics are forwarded ([`otlp`]),
//! named by the metric type itself
//! (`pubsub.googleapis.com/subscription/num_undelivered_messages`). Labels are
//! the monitored resource's (`project_id`, `subscription_id` or `topic_id`)
//! and the metric's own (`response_class` of push requests, `response_code`
//! of publishes).

pub mod otlp;
pub mod prometheus;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use baton_broker::{
    Broker, BrokerError, BrokerResult, ListPage, MAX_STATS_PAGE, PushResponseClass,
    SubscriptionStats, TopicStats,
};

use crate::api::{PubSubApi, RequestContext, Transport};

/// The instrumentation scope of the exported metrics.
pub const SCOPE_NAME: &str = "baton-server";

/// Cloud Monitoring's prefix of Pub/Sub metric types.
const DOMAIN: &str = "pubsub.googleapis.com";

/// How a metric's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A level sampled now (a backlog, an age).
    Gauge,
    /// A count that only grows, from the broker's start.
    Counter,
}

/// The monitored resource a metric describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitoredResource {
    /// `pubsub_topic`, labelled `topic_id`.
    Topic,
    /// `pubsub_subscription`, labelled `subscription_id`.
    Subscription,
}

impl MonitoredResource {
    /// Cloud Monitoring's resource type.
    pub fn monitored_resource(self) -> &'static str {
        match self {
            Self::Topic => "pubsub_topic",
            Self::Subscription => "pubsub_subscription",
        }
    }

    /// The label naming the resource.
    pub fn id_label(self) -> &'static str {
        match self {
            Self::Topic => "topic_id",
            Self::Subscription => "subscription_id",
        }
    }
}

/// One metric: its Cloud Monitoring type and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The metric type after `pubsub.googleapis.com/`, e.g.
    /// `subscription/num_undelivered_messages`.
    pub metric_type: &'static str,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// The unit in UCUM, as Cloud Monitoring gives it (`1`, `s`, `By`).
    pub unit: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// What its points describe.
    pub resource: MonitoredResource,
    /// One point per resource and label combination.
    pub points: Vec<MetricPoint>,
}

impl MetricFamily {
    /// The PromQL name Cloud Monitoring gives the metric type: the domain's
    /// dots and the type's slashes become underscores, joined by a colon.
    pub fn prometheus_name(&self) -> String {
        format!(
            "{}:{}",
            DOMAIN.replace('.', "_"),
            self.metric_type.replace('/', "_")
        )
    }

    /// The full metric type, the OTLP metric's name.
    pub fn otlp_name(&self) -> String {
        format!("{DOMAIN}/{}", self.metric_type)
    }
}

/// One value of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The resource's project id (`project_id`).
    pub project: String,
    /// The topic or subscription id.
    pub resource_id: String,
    /// The metric's own labels.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: u64,
}

/// One sample of every metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSet {
    /// The metrics, in a fixed order.
    pub families: Vec<MetricFamily>,
}

/// `projects/{project}/{collection}/{id}` as `(project, id)`.
fn split_name(name: &str) -> (String, String) {
    let mut parts = name.splitn(4, '/');
    let project = parts.nth(1).unwrap_or_default().to_owned();
    let id = parts.nth(1).unwrap_or_default().to_owned();
    (project, id)
}

/// Every item of a paged stats listing, a page at a time so the broker's
/// lock is never held for all of them at once.
fn all_pages<T>(list: impl Fn(&str) -> BrokerResult<ListPage<T>>) -> Vec<T> {
    let mut all = Vec::new();
    let mut token = String::new();
    while let Ok(page) = list(&token) {
        all.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    all
}

/// A family of one point per subscription, valued by `value`.
fn per_subscription(
    subscriptions: &[SubscriptionStats],
    metric_type: &'static str,
    kind: MetricKind,
    unit: &'static str,
    help: &'static str,
    value: impl Fn(&SubscriptionStats) -> u64,
) -> MetricFamily {
    MetricFamily {
        metric_type,
        kind,
        unit,
        help,
        resource: MonitoredResource::Subscription,
        points: subscriptions
            .iter()
            .map(|stats| {
                let (project, resource_id) = split_name(stats.name());
                MetricPoint {
                    project,
                    resource_id,
                    labels: Vec::new(),
                    value: value(stats),
                }
            })
            .collect(),
    }
}

/// Samples the broker now.
pub fn collect(broker: &Broker) -> MetricSet {
    collect_visible(broker, |_| true, |_| true)
}

/// Samples the broker now, keeping the subscriptions and topics (by full
/// name) that `subscription_visible` and `topic_visible` accept.
fn collect_visible(
    broker: &Broker,
    mut subscription_visible: impl FnMut(&str) -> bool,
    mut topic_visible: impl FnMut(&str) -> bool,
) -> MetricSet {
    let page = i32::try_from(MAX_STATS_PAGE).unwrap_or(i32::MAX);
    let mut subscriptions = all_pages(|token| broker.list_subscription_stats(None, page, token));
    subscriptions.retain(|s| subscription_visible(s.name()));
    let mut topics = all_pages(|token| broker.list_topic_stats(None, page, token));
    topics.retain(|t| topic_visible(t.name()));
    let mut families = vec![
        per_subscription(
            &subscriptions,
            "subscription/num_undelivered_messages",
            MetricKind::Gauge,
            "1",
            "Messages not yet acknowledged by a subscriber (the backlog): undelivered and leased.",
            |s| s.backlog_messages,
        ),
        per_subscription(
            &subscriptions,
            "subscription/backlog_bytes",
            MetricKind::Gauge,
            "By",
            "Bytes of the messages not yet acknowledged.",
            |s| s.backlog_bytes,
        ),
        per_subscription(
            &subscriptions,
            "subscription/oldest_unacked_message_age",
            MetricKind::Gauge,
            "s",
            "Age in seconds of the oldest message not yet acknowledged (0 without a backlog).",
            |s| s.oldest_unacked_age.map_or(0, |age| age.as_secs()),
        ),
        per_subscription(
            &subscriptions,
            "subscription/num_outstanding_messages",
            MetricKind::Gauge,
            "1",
            "Messages delivered and leased, awaiting their ack.",
            |s| s.leases_outstanding,
        ),
        per_subscription(
            &subscriptions,
            "subscription/num_retained_acked_messages",
            MetricKind::Gauge,
            "1",
            "Acknowledged messages kept for seeking (retain_acked_messages).",
            |s| s.retained_acked_messages,
        ),
        per_subscription(
            &subscriptions,
            "subscription/sent_message_count",
            MetricKind::Counter,
            "1",
            "Messages sent to subscribers: every delivery attempt, by pull, streaming pull or push.",
            |s| s.counters.delivery_attempts,
        ),
        per_subscription(
            &subscriptions,
            "subscription/ack_message_count",
            MetricKind::Counter,
            "1",
            "Messages acknowledged.",
            |s| s.counters.acked,
        ),
        per_subscription(
            &subscriptions,
            "subscription/dead_letter_message_count",
            MetricKind::Counter,
            "1",
            "Messages forwarded to the dead-letter topic.",
            |s| s.counters.dead_lettered,
        ),
    ];
    families.push(MetricFamily {
        metric_type: "subscription/push_request_count",
        kind: MetricKind::Counter,
        unit: "1",
        help: "Push requests by how the endpoint answered (response_class).",
        resource: MonitoredResource::Subscription,
        points: subscriptions
            .iter()
            .filter_map(|stats| Some((stats, stats.push.as_ref()?)))
            .flat_map(|(stats, push)| {
                let (project, resource_id) = split_name(stats.name());
                PushResponseClass::ALL
                    .into_iter()
                    .map(move |class| MetricPoint {
                        project: project.clone(),
                        resource_id: resource_id.clone(),
                        labels: vec![("response_class", class.as_str().to_owned())],
                        value: push.counts.get(class),
                    })
            })
            .collect(),
    });
    let topic_point = |stats: &TopicStats, labels: Vec<(&'static str, String)>, value: u64| {
        let (project, resource_id) = split_name(stats.name());
        MetricPoint {
            project,
            resource_id,
            labels,
            value,
        }
    };
    families.push(MetricFamily {
        metric_type: "topic/send_message_operation_count",
        kind: MetricKind::Counter,
        unit: "1",
        help: "Messages published to the topic (one operation per message).",
        resource: MonitoredResource::Topic,
        points: topics
            .iter()
            .map(|stats| {
                topic_point(
                    stats,
                    vec![("response_code", "success".to_owned())],
                    stats.counters.messages_published,
                )
            })
            .collect(),
    });
    families.push(MetricFamily {
        metric_type: "topic/send_request_count",
        kind: MetricKind::Counter,
        unit: "1",
        help: "Publish requests, by result: success, or invalid_argument when the messages were refused.",
        resource: MonitoredResource::Topic,
        points: topics
            .iter()
            .flat_map(|stats| {
                [
                    topic_point(
                        stats,
                        vec![("response_code", "success".to_owned())],
                        stats.counters.publish_operations,
                    ),
                    topic_point(
                        stats,
                        vec![("response_code", "invalid_argument".to_owned())],
                        stats.counters.publish_errors,
                    ),
                ]
            })
            .collect(),
    });
    families.push(MetricFamily {
        metric_type: "topic/num_retained_messages",
        kind: MetricKind::Gauge,
        unit: "1",
        help: "Messages the topic's own retention keeps.",
        resource: MonitoredResource::Topic,
        points: topics
            .iter()
            .map(|stats| topic_point(stats, Vec::new(), stats.retained_messages))
            .collect(),
    });
    MetricSet { families }
}

/// `GET /metrics`: the broker's metrics in the Prometheus text format. With
/// authentication on, the scrape needs a credential (Prometheus'
/// `authorization` setting) and shows only the projects whose topics and
/// subscriptions it may list, as the console's lists do.
pub(crate) fn routes() -> axum::Router<PubSubApi> {
    axum::Router::new().route("/metrics", axum::routing::get(scrape))
}

async fn scrape(State(api): State<PubSubApi>, headers: HeaderMap) -> Response {
    let context = RequestContext::new(Transport::Rest)
        .with_authorization(headers.get(AUTHORIZATION).cloned());
    // Sampling takes the broker's lock page by page: off the async workers,
    // so a scrape of 10,000 subscriptions never stalls a connection's task.
    let sampled = tokio::task::spawn_blocking(move || {
        let mut subscriptions = api.project_filter(&context, "pubsub.subscriptions.list")?;
        let mut topics = api.project_filter(&context, "pubsub.topics.list")?;
        let set = collect_visible(
            api.broker(),
            |name| subscriptions.allows(name),
            |name| topics.allows(name),
        );
        Ok::<_, BrokerError>(prometheus::render(&set))
    })
    .await;
    match sampled {
        Ok(Ok(text)) => ([(CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response(),
        Ok(Err(error)) => {
            let (status, body) = crate::status::to_http(&error);
            (status, axum::Json(body)).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
