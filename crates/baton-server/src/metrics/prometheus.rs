//! The Prometheus text exposition (format 0.0.4) of a [`MetricSet`].
//!
//! Written here rather than through `prometheus-client`: that crate encodes
//! OpenMetrics, which appends `_total` to every counter's name, and the point
//! of these metrics is that their names are exactly the ones Cloud Monitoring
//! gives the real service's metrics in PromQL.

use std::fmt::Write as _;

use super::{MetricKind, MetricSet};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `set` in the Prometheus text format: a `# HELP` and `# TYPE` line per
/// metric, then one sample line per labelled point.
pub fn render(set: &MetricSet) -> String {
    let mut out = String::with_capacity(256 * set.families.len().max(1));
    for family in &set.families {
        let name = family.prometheus_name();
        let kind = match family.kind {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for point in &family.points {
            out.push_str(&name);
            out.push('{');
            let resource = [
                ("monitored_resource", family.resource.monitored_resource()),
                ("project_id", point.project.as_str()),
                (family.resource.id_label(), point.resource_id.as_str()),
            ];
            let labels = resource
                .iter()
                .map(|(k, v)| (*k, *v))
                .chain(point.labels.iter().map(|(k, v)| (*k, v.as_str())));
            for (i, (key, value)) in labels.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{key}=\"{}\"", escape_label(value));
            }
            let _ = writeln!(out, "}} {}", point.value);
        }
    }
    out
}

/// A label value as the text format quotes it: backslash, double quote and
/// line feed escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text as the text format takes it: backslash and line feed escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{MetricFamily, MetricPoint, MonitoredResource};

    #[test]
    fn renders_cloud_monitoring_names_and_escaped_labels() {
        let set = MetricSet {
            families: vec![
                MetricFamily {
                    metric_type: "subscription/num_undelivered_messages",
                    kind: MetricKind::Gauge,
                    unit: "1",
                    help: "Messages not yet acked.",
                    resource: MonitoredResource::Subscription,
                    points: vec![MetricPoint {
                        project: "p".into(),
                        resource_id: "we\"ird\\sub".into(),
                        labels: vec![],
                        value: 7,
                    }],
                },
                MetricFamily {
                    metric_type: "subscription/push_request_count",
                    kind: MetricKind::Counter,
                    unit: "1",
                    help: "Push attempts,\nby response.",
                    resource: MonitoredResource::Subscription,
                    points: vec![MetricPoint {
                        project: "p".into(),
                        resource_id: "s".into(),
                        labels: vec![
                            ("response_class", "remote_server_5xx".into()),
                            ("response_code", "503".into()),
                        ],
                        value: 2,
                    }],
                },
            ],
        };
        let text = render(&set);
        assert_eq!(
            text,
            "# HELP pubsub_googleapis_com:subscription_num_undelivered_messages Messages not yet acked.\n\
             # TYPE pubsub_googleapis_com:subscription_num_undelivered_messages gauge\n\
             pubsub_googleapis_com:subscription_num_undelivered_messages{monitored_resource=\"pubsub_subscription\",project_id=\"p\",subscription_id=\"we\\\"ird\\\\sub\"} 7\n\
             # HELP pubsub_googleapis_com:subscription_push_request_count Push attempts,\\nby response.\n\
             # TYPE pubsub_googleapis_com:subscription_push_request_count counter\n\
             pubsub_googleapis_com:subscription_push_request_count{monitored_resource=\"pubsub_subscription\",project_id=\"p\",subscription_id=\"s\",response_class=\"remote_server_5xx\",response_code=\"503\"} 2\n"
        );
    }
}
