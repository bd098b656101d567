//! `baton trace search [filters...]`: searches the server's trace store
//! (`GET /api/traces?...`, the search the web view's list page makes) and
//! prints the matching traces as a table, most recently updated first.
//!
//! Filters are flags (`--subscription orders-sub --errors`) or
//! `name=value` words in the query syntax of the API and the web view's URL
//! (`subscription=orders-sub error=true`); both are parsed by the trace
//! store's own parser ([`SearchRequest`]), so a bad filter is refused before
//! anything is sent, with the same message the API gives.

use anyhow::Context;
use baton_trace_store::search::format_rfc3339;
use baton_trace_store::{SearchRequest, TraceFilter};
use serde_json::Value;

use crate::text::{fit, format_duration};
use crate::trace_http::{client, get_json};

/// Arguments of `baton trace search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Filters as `name=value` words, in the API's query syntax: service,
    /// span, attr (`attr=key=value`), min_duration, max_duration, error,
    /// since, until, topic, subscription, message, ordering_key, kind.
    filters: Vec<String>,
    /// Traces with a span of this `service.name`.
    #[arg(long)]
    service: Option<String>,
    /// Traces with a span whose name contains this (any case).
    #[arg(long)]
    span: Option<String>,
    /// Traces with a span attribute `key=value` (repeatable: each must hold).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// Traces lasting at least this long (`100ms`, `2s`).
    #[arg(long)]
    min_duration: Option<String>,
    /// Traces lasting at most this long.
    #[arg(long)]
    max_duration: Option<String>,
    /// Only traces with an error span.
    #[arg(long)]
    errors: bool,
    /// Traces active since this long ago (`15m`, `2h`, `1d`) or this RFC
    /// 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Traces active until this long ago or this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Traces naming this topic (short id or `projects/p/topics/t`).
    #[arg(long)]
    topic: Option<String>,
    /// Traces naming this subscription (short id or full name).
    #[arg(long)]
    subscription: Option<String>,
    /// The trace of this message id.
    #[arg(long)]
    message: Option<String>,
    /// Traces of messages with this ordering key.
    #[arg(long)]
    ordering_key: Option<String>,
    /// Which traces: message flows and other traces by default; `message`,
    /// `rpc` (the batch publish and ack/modack/nack RPC traces), `other`,
    /// `all`.
    #[arg(long)]
    kind: Option<String>,
    /// Every kind of trace (same as `--kind all`).
    #[arg(long, conflicts_with = "kind")]
    all: bool,
    /// Most traces to print (1 to 1000).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long)]
    cursor: Option<String>,
    /// Base URL of the Baton server's HTTP API.
    #[arg(long, env = "BATON_SERVER", default_value = "http://127.0.0.1:8085")]
    server: String,
    /// Print the API's JSON answer instead of the table.
    #[arg(long)]
    json: bool,
}

impl SearchArgs {
    /// The search these arguments ask for, parsed by the trace store.
    fn request(&self) -> anyhow::Result<SearchRequest> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for word in &self.filters {
            let (name, value) = word.split_once('=').with_context(|| {
                format!("a filter is name=value (such as subscription=orders-sub), got {word:?}")
            })?;
            pairs.push((name.to_string(), value.to_string()));
        }
        let mut put = |name: &str, value: Option<&String>| {
            if let Some(value) = value {
                pairs.push((name.to_string(), value.clone()));
            }
        };
        put("service", self.service.as_ref());
        put("span", self.span.as_ref());
        put("min_duration", self.min_duration.as_ref());
        put("max_duration", self.max_duration.as_ref());
        put("since", self.since.as_ref());
        put("until", self.until.as_ref());
        put("topic", self.topic.as_ref());
        put("subscription", self.subscription.as_ref());
        put("message", self.message.as_ref());
        put("ordering_key", self.ordering_key.as_ref());
        put("kind", self.kind.as_ref());
        put("cursor", self.cursor.as_ref());
        for attribute in &self.attributes {
            pairs.push(("attr".to_string(), attribute.clone()));
        }
        if self.errors {
            pairs.push(("error".to_string(), "true".to_string()));
        }
        if self.all {
            pairs.push(("kind".to_string(), "all".to_string()));
        }
        pairs.push(("limit".to_string(), self.limit.to_string()));
        Ok(SearchRequest::from_pairs(&pairs)?)
    }
}

/// Runs `baton trace search`.
pub async fn run(args: SearchArgs) -> anyhow::Result<()> {
    let request = args.request()?;
    let base = args.server.trim_end_matches('/');
    let url = format!("{base}/api/traces?{}", request.to_query());
    let page = get_json(&client()?, &url).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    print!("{}", render_table(&page, &request.filter));
    Ok(())
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn nanos(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The search answer (`SearchPage` JSON) as a table, with the count and,
/// when there is more, how to get the next page. Pure: no I/O.
pub fn render_table(page: &Value, filter: &TraceFilter) -> String {
    let traces = page
        .get("traces")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let total = page.get("total").and_then(Value::as_u64).unwrap_or(0);
    let mut out = String::new();
    if traces.is_empty() {
        out.push_str(if filter.is_empty() {
            "No traces stored.\n"
        } else {
            "No traces match.\n"
        });
        return out;
    }
    out.push_str(&format!(
        "{} {} {} {} {:>10} {:>5} {} {}\n",
        fit("TRACE", 32),
        fit("STARTED (UTC)", 23),
        fit("KIND", 7),
        fit("ROOT", 34),
        "DURATION",
        "SPANS",
        fit("STATUS", 6),
        "MESSAGE / TOPIC -> SUBSCRIPTION",
    ));
    for trace in traces {
        let field = |key: &str| trace.get(key).and_then(Value::as_str).unwrap_or("");
        let start = nanos(trace.get("startUnixNano"));
        // `2026-12-04 10:02:11.412`: whole seconds, then milliseconds.
        let seconds = format_rfc3339(start / 1_000_000_000 * 1_000_000_000);
        let started = format!(
            "{}.{:03}",
            seconds.trim_end_matches('Z').replacen('T', " ", 1),
            start / 1_000_000 % 1000
        );
        let kind = match field("kind") {
            "rpc" => "rpc",
            "message" => "message",
            _ => "other",
        };
        let root = format!("{}: {}", field("rootService"), field("rootName"));
        let status = if trace.get("error").and_then(Value::as_bool) == Some(true) {
            "error"
        } else {
            "ok"
        };
        let mut terms = Vec::new();
        let messages = strings(trace.get("messageIds"));
        if !messages.is_empty() {
            terms.push(format!("msg {}", messages.join(",")));
        }
        let topics = strings(trace.get("topics")).join(",");
        let subscriptions = strings(trace.get("subscriptions")).join(",");
        match (topics.is_empty(), subscriptions.is_empty()) {
            (false, false) => terms.push(format!("{topics} -> {subscriptions}")),
            (false, true) => terms.push(topics),
            (true, false) => terms.push(format!("-> {subscriptions}")),
            (true, true) => {}
        }
        let line = format!(
            "{} {} {} {} {:>10} {:>5} {} {}",
            fit(field("traceId"), 32),
            fit(&started, 23),
            fit(kind, 7),
            fit(&root, 34),
            format_duration(nanos(trace.get("durationNanos"))),
            trace.get("spanCount").and_then(Value::as_u64).unwrap_or(0),
            fit(status, 6),
            terms.join("  "),
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let noun = if total == 1 { "trace" } else { "traces" };
    out.push_str(&format!(
        "{} of {total} matching {noun}, most recently updated first",
        traces.len()
    ));
    if filter.kind == baton_trace_store::search::KindFilter::Default {
        out.push_str(" (batch RPC traces left out: --all shows them)");
    }
    out.push('\n');
    if let Some(cursor) = page.get("nextCursor").and_then(Value::as_str) {
        out.push_str(&format!("more: add --cursor {cursor}\n"));
    }
    out
}
