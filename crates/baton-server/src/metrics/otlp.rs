//! A [`MetricSet`] as an OTLP metrics export, and the task that sends one
//! upstream at an interval when metrics are forwarded.
//!
//! Metric names are Cloud Monitoring's metric types
//! (`pubsub.googleapis.com/subscription/num_undelivered_messages`) and the
//! labels are its resource and metric labels, so a backend that already holds
//! the real service's metrics shows Baton's beside them under the same names.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use baton_broker::Broker;
use baton_trace_store::forward::Forwarding;
use baton_trace_store::opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use baton_trace_store::opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use baton_trace_store::opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use baton_trace_store::opentelemetry_proto::tonic::resource::v1::Resource;
use baton_trace_store::otlp_values::{string_attribute, unix_nanos};
use tokio::sync::watch;

use super::{MetricKind, MetricSet};

/// `set`, sampled at `now`, as one export request of `service` (the
/// resource's `service.name`): gauges as OTLP gauges, counters as cumulative
/// monotonic sums counted since `start`.
pub fn export_request(
    set: &MetricSet,
    service: &str,
    start: SystemTime,
    now: SystemTime,
) -> ExportMetricsServiceRequest {
    let (start, now) = (unix_nanos(start), unix_nanos(now));
    let metrics = set
        .families
        .iter()
        .map(|family| {
            let data_points = family
                .points
                .iter()
                .map(|point| {
                    let mut attributes = vec![
                        string_attribute("project_id", &point.project),
                        string_attribute(family.resource.id_label(), &point.resource_id),
                    ];
                    attributes.extend(
                        point
                            .labels
                            .iter()
                            .map(|(key, value)| string_attribute(key, value)),
                    );
                    NumberDataPoint {
                        attributes,
                        start_time_unix_nano: match family.kind {
                            MetricKind::Counter => start,
                            MetricKind::Gauge => 0,
                        },
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(
                            i64::try_from(point.value).unwrap_or(i64::MAX),
                        )),
                        ..Default::default()
                    }
                })
                .collect();
            let data = match family.kind {
                MetricKind::Gauge => metric::Data::Gauge(Gauge { data_points }),
                MetricKind::Counter => metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            };
            Metric {
                name: family.otlp_name(),
                description: family.help.to_owned(),
                unit: family.unit.to_owned(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: super::SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The shortest export interval: a zero or tiny one would sample the
/// broker in a busy loop.
const MIN_EXPORT_INTERVAL: Duration = Duration::from_millis(100);

/// Sends the broker's metrics into `forwarding`'s metrics queue every
/// `interval` (at least 100 ms) as `service`'s until `stop` turns true, and
/// once more then, so the last counts reach the backend.
pub(crate) async fn export_periodically(
    broker: Arc<Broker>,
    service: &'static str,
    forwarding: Forwarding,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let start = SystemTime::now();
    let mut ticks = tokio::time::interval(interval.max(MIN_EXPORT_INTERVAL));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: nothing has happened yet to report.
    ticks.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            _ = stop.wait_for(|stopped| *stopped) => true,
        };
        let set = super::collect(&broker);
        forwarding.metrics(
            &export_request(&set, service, start, SystemTime::now()),
            None,
        );
        if stopping {
            break;
        }
    }
}
