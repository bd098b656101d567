//! `baton trace show <trace-id | message-id>` / `baton trace show --last`:
//! fetches a trace from the server's query API (`GET /api/traces/{id}`,
//! `/api/traces/last`; a message id is looked up with the search first) and
//! draws it as a waterfall in the terminal. `baton trace search` is in
//! [`crate::trace_search_cmd`].
//!
//! The drawing is [`render_waterfall`], a pure function of the API's
//! `TraceDetail` JSON: rows indented as a tree by parent, service, duration
//! and a bar on a shared time axis; spans of other traces that link here
//! (publish RPC, ack/nack/modack) are stitched in under the span they link
//! to and marked `↪ linked`; the time a message waited in the queue is drawn
//! with `░` and labelled; errors are marked `✗`.

use std::collections::{HashMap, HashSet};

use anyhow::bail;
use serde_json::Value;

use crate::text::{fit, format_duration};
use crate::trace_http::{client, get_json, trace_of_message};
use crate::trace_search_cmd::{self, SearchArgs};

/// `baton trace` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TraceCommand {
    /// Draw one trace as a waterfall (by trace id, by message id, or the
    /// most recent with --last).
    Show(ShowArgs),
    /// Search the stored traces (service, span, attributes, duration,
    /// errors, time, topic, subscription, message, ordering key) and print
    /// them as a table.
    Search(Box<SearchArgs>),
}

/// Arguments of `baton trace show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The trace id (32 hex digits), or a message id (anything else): the
    /// trace holding that message.
    #[arg(
        required_unless_present_any = ["last", "message"],
        conflicts_with_all = ["last", "message"]
    )]
    trace_id: Option<String>,
    /// Show the trace of this message id (`messaging.message.id`).
    #[arg(long, conflicts_with = "last")]
    message: Option<String>,
    /// Show the most recent trace instead.
    #[arg(long)]
    last: bool,
    /// Base URL of the Baton server's HTTP API.
    #[arg(long, env = "BATON_SERVER", default_value = "http://127.0.0.1:8085")]
    server: String,
    /// Output width in columns (default: $COLUMNS, else 100).
    #[arg(long)]
    width: Option<usize>,
    /// Print the trace JSON as the API returned it instead of drawing it.
    #[arg(long)]
    json: bool,
    /// After the waterfall, list where the spans come from: each resource's
    /// attributes and the instrumentation scopes that recorded spans.
    #[arg(long)]
    resources: bool,
}

/// Runs a `baton trace` subcommand.
pub async fn run(command: TraceCommand) -> anyhow::Result<()> {
    match command {
        TraceCommand::Show(args) => show(args).await,
        TraceCommand::Search(args) => trace_search_cmd::run(*args).await,
    }
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let client = client()?;
    // A trace id is 32 hex digits; anything else names a message.
    let message = args.message.clone().or_else(|| {
        args.trace_id.as_ref().and_then(|id| {
            let id = id.trim();
            let is_trace_id = id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit());
            (!is_trace_id).then(|| id.to_string())
        })
    });
    let url = match (&message, &args.trace_id, args.last) {
        (_, _, true) | (None, None, _) => format!("{base}/api/traces/last"),
        (Some(message), _, false) => {
            if message.is_empty() {
                bail!("a message id or a trace id is needed");
            }
            let (trace_id, holding) = trace_of_message(&client, base, message).await?;
            if holding > 1 {
                eprintln!(
                    "{holding} traces hold message {message}; showing the most recently updated"
                );
            }
            format!("{base}/api/traces/{trace_id}")
        }
        (None, Some(id), false) => format!("{base}/api/traces/{}", id.trim().to_ascii_lowercase()),
    };
    let detail = get_json(&client, &url).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    let width = args.width.unwrap_or_else(terminal_width);
    print!("{}", render_waterfall(&detail, width));
    if args.resources {
        print!("{}", render_origins(&detail));
    }
    Ok(())
}

/// The distinct resources of the trace's spans (linked spans included), in
/// order of first appearance, each with its attributes and the scopes
/// (`name version`, attributes) that recorded its spans.
fn render_origins(detail: &Value) -> String {
    let mut resources: Vec<(&Value, Vec<&Value>)> = Vec::new();
    let spans = ["spans", "linkedSpans"]
        .iter()
        .filter_map(|key| detail.get(key).and_then(Value::as_array))
        .flatten();
    for span in spans {
        let (Some(resource), Some(scope)) = (span.get("resource"), span.get("scope")) else {
            continue;
        };
        match resources.iter_mut().find(|(r, _)| *r == resource) {
            Some((_, scopes)) if !scopes.contains(&scope) => scopes.push(scope),
            Some(_) => {}
            None => resources.push((resource, vec![scope])),
        }
    }
    let mut out = String::new();
    for (resource, scopes) in resources {
        let service = resource
            .get("service.name")
            .map_or_else(|| "unknown_service".to_string(), display_value);
        out.push_str(&format!("\nresource {service}\n"));
        for (key, value) in resource.as_object().into_iter().flatten() {
            out.push_str(&format!("  {key} = {}\n", display_value(value)));
        }
        for scope in scopes {
            let field = |name: &str| scope.get(name).map(display_value).unwrap_or_default();
            let line = format!("scope {} {}", field("name"), field("version"));
            out.push_str(&format!("  {}\n", line.trim_end()));
            for (key, value) in scope
                .get("attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!("    {key} = {}\n", display_value(value)));
            }
        }
    }
    out
}

/// The terminal width: `$COLUMNS` when set and sensible, else 100.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= 40)
        .unwrap_or(100)
}

/// One row of the waterfall.
#[derive(Debug)]
struct Row<'a> {
    span: &'a Value,
    linked: bool,
    start: u64,
    end: u64,
    /// Box-drawing prefix showing the row's place in the tree.
    prefix: String,
    /// Queue time before this (consumer) span: from, to.
    gap: Option<(u64, u64, GapCause)>,
}

/// What a queue gap waited after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GapCause {
    Published,
    Redelivery,
}

/// A span as the tree sees it.
#[derive(Debug, Clone, Copy)]
struct Node<'a> {
    span: &'a Value,
    linked: bool,
    start: u64,
    end: u64,
}

fn str_field<'a>(span: &'a Value, key: &str) -> &'a str {
    span.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Nanoseconds from a JSON string (OTLP JSON style) or number.
fn nanos(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn is_error(span: &Value) -> bool {
    span.get("status")
        .and_then(|s| s.get("code"))
        .and_then(Value::as_str)
        == Some("ERROR")
}

fn is_consumer(span: &Value) -> bool {
    str_field(span, "kind") == "CONSUMER" || str_field(span, "name").ends_with(" subscribe")
}

/// Broker delivery spans, whose length is the time in the queue.
fn is_queue_span(span: &Value) -> bool {
    let name = str_field(span, "name");
    name.ends_with(" deliver") || name.ends_with(" redeliver")
}

fn link_targets(span: &Value) -> impl Iterator<Item = &str> {
    span.get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("spanId").and_then(Value::as_str))
}

fn spans_of<'a>(detail: &'a Value, key: &str, linked: bool) -> Vec<Node<'a>> {
    detail
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|span| {
            let start = nanos(span.get("startUnixNano"));
            let end = nanos(span.get("endUnixNano")).max(start);
            Node {
                span,
                linked,
                start,
                end,
            }
        })
        .collect()
}

/// Orders the spans of `detail` as waterfall rows (see the module docs).
fn build_rows(detail: &Value) -> Vec<Row<'_>> {
    let spans = spans_of(detail, "spans", false);
    let linked = spans_of(detail, "linkedSpans", true);
    let by_id: HashMap<&str, Node<'_>> = spans
        .iter()
        .map(|n| (str_field(n.span, "spanId"), *n))
        .collect();
    let linked_ids: HashSet<&str> = linked.iter().map(|n| str_field(n.span, "spanId")).collect();

    // Under each span: first the linked spans pointing at it, then its children.
    let mut linked_to: HashMap<&str, Vec<Node<'_>>> = HashMap::new();
    let mut children: HashMap<&str, Vec<Node<'_>>> = HashMap::new();
    let mut linked_children: HashMap<&str, Vec<Node<'_>>> = HashMap::new();
    let mut roots = Vec::new();
    for n in &spans {
        let parent = str_field(n.span, "parentSpanId");
        if !parent.is_empty() && parent != str_field(n.span, "spanId") && by_id.contains_key(parent)
        {
            children.entry(parent).or_default().push(*n);
        } else {
            roots.push(*n);
        }
    }
    let mut strays = Vec::new();
    for n in &linked {
        let parent = str_field(n.span, "parentSpanId");
        if let Some(target) = link_targets(n.span).find(|t| by_id.contains_key(t)) {
            linked_to.entry(target).or_default().push(*n);
        } else if !parent.is_empty() && linked_ids.contains(parent) {
            linked_children.entry(parent).or_default().push(*n);
        } else {
            strays.push(*n);
        }
    }

    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    roots.sort_by_key(|n| n.start);
    strays.sort_by_key(|n| n.start);
    let top: Vec<Node<'_>> = roots.into_iter().chain(strays).collect();
    let count = top.len();
    for (i, n) in top.into_iter().enumerate() {
        visit(
            n,
            "",
            i + 1 == count,
            true,
            &Tree {
                linked_to: &linked_to,
                children: &children,
                linked_children: &linked_children,
            },
            &mut seen,
            &mut rows,
        );
    }

    // Queue gaps: a consumer waited from the end of what made the message
    // available (its create span, the publish RPC linked to it, or an earlier
    // delivery attempt) until it started.
    let consumers_of = |anchor: &str| -> Vec<Node<'_>> {
        children
            .get(anchor)
            .map(|c| c.iter().filter(|n| is_consumer(n.span)).copied().collect())
            .unwrap_or_default()
    };
    for row in rows.iter_mut().filter(|r| !r.linked && is_consumer(r.span)) {
        let parent = str_field(row.span, "parentSpanId");
        let anchor = by_id
            .get(parent)
            .or_else(|| link_targets(row.span).find_map(|t| by_id.get(t)));
        let Some(anchor) = anchor else { continue };
        let anchor_id = str_field(anchor.span, "spanId");
        let mut from = (anchor.end <= row.start).then_some((anchor.end, GapCause::Published));
        let publishes = linked_to.get(anchor_id).into_iter().flatten();
        for p in publishes.filter(|p| p.end <= row.start) {
            if from.is_none_or(|(f, _)| p.end > f) {
                from = Some((p.end, GapCause::Published));
            }
        }
        let row_id = str_field(row.span, "spanId");
        for sib in consumers_of(anchor_id) {
            if str_field(sib.span, "spanId") != row_id
                && sib.end <= row.start
                && from.is_none_or(|(f, _)| sib.end > f)
            {
                from = Some((sib.end, GapCause::Redelivery));
            }
        }
        if let Some((from, cause)) = from.filter(|(f, _)| *f < row.start) {
            row.gap = Some((from, row.start, cause));
        }
    }
    rows
}

/// The parent/child relations [`visit`] walks.
#[derive(Debug)]
struct Tree<'m, 'a> {
    linked_to: &'m HashMap<&'a str, Vec<Node<'a>>>,
    children: &'m HashMap<&'a str, Vec<Node<'a>>>,
    linked_children: &'m HashMap<&'a str, Vec<Node<'a>>>,
}

/// Depth-first walk adding `node` and what hangs under it to `rows`.
fn visit<'a>(
    node: Node<'a>,
    indent: &str,
    last: bool,
    top: bool,
    tree: &Tree<'_, 'a>,
    seen: &mut HashSet<(&'a str, &'a str)>,
    rows: &mut Vec<Row<'a>>,
) {
    let id = str_field(node.span, "spanId");
    if !seen.insert((str_field(node.span, "traceId"), id)) {
        return;
    }
    let (prefix, child_indent) = if top {
        (String::new(), String::new())
    } else if last {
        (format!("{indent}└─ "), format!("{indent}   "))
    } else {
        (format!("{indent}├─ "), format!("{indent}│  "))
    };
    rows.push(Row {
        span: node.span,
        linked: node.linked,
        start: node.start,
        end: node.end,
        prefix,
        gap: None,
    });
    let mut under: Vec<Node<'a>> = Vec::new();
    if node.linked {
        let mut kids = tree.linked_children.get(id).cloned().unwrap_or_default();
        kids.sort_by_key(|n| n.start);
        under.extend(kids);
    } else {
        let mut links = tree.linked_to.get(id).cloned().unwrap_or_default();
        links.sort_by_key(|n| n.start);
        let mut kids = tree.children.get(id).cloned().unwrap_or_default();
        kids.sort_by_key(|n| n.start);
        under.extend(links);
        under.extend(kids);
    }
    let count = under.len();
    for (i, child) in under.into_iter().enumerate() {
        visit(
            child,
            &child_indent,
            i + 1 == count,
            false,
            tree,
            seen,
            rows,
        );
    }
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes `label` into `cells` starting at `at` if it fits in `cells`.
fn put(cells: &mut [char], at: usize, label: &str) -> bool {
    let len = label.chars().count();
    if at + len > cells.len() {
        return false;
    }
    for (i, c) in label.chars().enumerate() {
        cells[at + i] = c;
    }
    true
}

/// Draws a trace (the query API's `TraceDetail` JSON) as a text waterfall
/// `width` columns wide. Pure: no I/O, no colours.
pub fn render_waterfall(detail: &Value, width: usize) -> String {
    let rows = build_rows(detail);
    let trace_id = str_field(detail, "traceId");
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str(&format!("Trace {trace_id}: no spans\n"));
        return out;
    }
    let t0 = rows.iter().map(|r| r.start).min().unwrap_or(0);
    let t1 = rows.iter().map(|r| r.end).max().unwrap_or(t0);
    let total = (t1 - t0).max(1);

    let width = width.max(60);
    let name_w = (width * 36 / 100).clamp(24, 64);
    let svc_w = 10;
    let dur_w = 9;
    let bar_w = width.saturating_sub(name_w + svc_w + dur_w + 5).max(10);
    let col = |t: u64| -> usize {
        let x = (t.saturating_sub(t0)) as f64 / total as f64 * bar_w as f64;
        (x.floor() as usize).min(bar_w.saturating_sub(1))
    };

    // Header.
    let root = rows.iter().find(|r| !r.linked);
    let own = rows.iter().filter(|r| !r.linked).count();
    let linked = rows.len() - own;
    let errors = rows.iter().filter(|r| is_error(r.span)).count();
    let mut services: Vec<&str> = Vec::new();
    for r in &rows {
        let s = str_field(r.span, "service");
        if !services.contains(&s) {
            services.push(s);
        }
    }
    if let Some(root) = root {
        out.push_str(&format!(
            "Trace {trace_id}  {}: {}\n",
            str_field(root.span, "service"),
            str_field(root.span, "name")
        ));
    }
    out.push_str(&format!(
        "{} · {own} spans · {linked} linked · {errors} {} · services: {}\n\n",
        format_duration(t1 - t0),
        if errors == 1 { "error" } else { "errors" },
        services.join(", ")
    ));

    // Time axis: labels at 0, ¼, ½, ¾ and the end.
    // Labels that would run into the next one are left out.
    let mut axis = vec![' '; bar_w];
    let end_label = format!("{}┤", format_duration(total));
    let end_at = bar_w.saturating_sub(end_label.chars().count());
    put(&mut axis, end_at, &end_label);
    let mut free_from = 0;
    for q in 0..4u64 {
        let at = col(t0 + total * q / 4);
        let label = if q == 0 {
            "├0".to_string()
        } else {
            format!("├{}", format_duration(total * q / 4))
        };
        let end = at + label.chars().count();
        if at >= free_from && end < end_at && put(&mut axis, at, &label) {
            free_from = end + 1;
        }
    }
    out.push_str(&format!(
        "{} {} {} │{}│\n",
        fit("span", name_w),
        fit("service", svc_w),
        fit(&format!("{:>dur_w$}", "duration"), dur_w),
        axis.iter().collect::<String>()
    ));

    for row in &rows {
        let span = row.span;
        let mut name = row.prefix.clone();
        if row.linked {
            name.push_str("↪ linked ");
        }
        if is_error(span) {
            name.push_str("✗ ");
        }
        name.push_str(str_field(span, "name"));

        let mut cells = vec![' '; bar_w];
        let bar_char = if row.linked {
            '▒'
        } else if is_queue_span(span) {
            '░'
        } else {
            '█'
        };
        let (a, b) = (col(row.start), col(row.end));
        for cell in cells.iter_mut().take(b + 1).skip(a) {
            *cell = bar_char;
        }
        if let Some((from, to, cause)) = row.gap {
            let (ga, gb) = (col(from), col(to));
            for cell in cells.iter_mut().take(gb).skip(ga) {
                *cell = '░';
            }
            let what = match cause {
                GapCause::Published => "queued",
                GapCause::Redelivery => "redelivery wait",
            };
            let waited = format_duration(to - from);
            // Inside the hatched gap if it fits, else after the bar, else
            // before the gap; a short label when the long one fits nowhere.
            let placed = [format!(" {what} {waited} "), format!(" {waited} ")]
                .iter()
                .any(|label| {
                    let len = label.chars().count();
                    (gb.saturating_sub(ga) >= len + 2 && put(&mut cells, ga + 1, label))
                        || put(&mut cells, b + 1, label)
                        || (ga >= len && put(&mut cells, ga - len, label))
                });
            if !placed {
                name.push_str(&format!(" [{what} {waited}]"));
            }
        } else if is_queue_span(span) {
            let label = format!(" in queue {}", format_duration(row.end - row.start));
            let len = label.chars().count();
            if !put(&mut cells, b + 1, &label) && a >= len {
                put(&mut cells, a - len, &format!("{} ", label.trim_start()));
            }
        }
        out.push_str(&format!(
            "{} {} {:>dur_w$} │{}│\n",
            fit(&name, name_w),
            fit(str_field(span, "service"), svc_w),
            format_duration(row.end - row.start),
            cells.iter().collect::<String>()
        ));
    }
    out.push_str(
        "\n█ span  ░ waiting in queue  ▒ linked span (other trace)  ✗ error  \
         ↪ linked: links to the span above\n",
    );
    let error_lines: Vec<String> = rows
        .iter()
        .filter(|r| is_error(r.span))
        .map(|r| {
            let message = r
                .span
                .get("status")
                .and_then(|s| s.get("message"))
                .map(display_value)
                .unwrap_or_default();
            format!(
                "  ✗ {} ({}): {}",
                str_field(r.span, "name"),
                str_field(r.span, "service"),
                if message.is_empty() {
                    "error"
                } else {
                    &message
                }
            )
        })
        .collect();
    if !error_lines.is_empty() {
        out.push_str("errors:\n");
        for line in error_lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/trace_detail.json");

    fn fixture() -> Value {
        serde_json::from_str(FIXTURE).unwrap()
    }

    /// The rows of the drawing (between the axis and the legend).
    fn rows(text: &str) -> Vec<&str> {
        text.lines()
            .skip_while(|l| !l.starts_with("span "))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn origins_list_each_resource_once_with_its_scopes() {
        let text = render_origins(&fixture());
        assert_eq!(text.matches("\nresource ").count(), 3, "{text}");
        assert!(text.contains("\nresource service-b\n"), "{text}");
        assert!(text.contains("  host.name = worker-7\n"), "{text}");
        assert!(
            text.contains("  scope fixture 0.4.2\n    scope.flavor = consumer\n"),
            "{text}"
        );
        assert!(text.contains("\nresource baton\n  service.name = baton\n  scope fixture 1.0.0\n"));
    }

    #[test]
    fn rows_follow_the_tree_with_linked_spans_under_their_target() {
        let text = render_waterfall(&fixture(), 120);
        let names: Vec<String> = rows(&text)
            .iter()
            // The name column is 36% of the width: 43 columns at 120.
            .map(|l| {
                l.chars()
                    .take(43)
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "POST /orders",
                "└─ orders create",
                "   ├─ ↪ linked orders publish",
                "   ├─ orders receive",
                "   ├─ orders-sub deliver",
                "   ├─ ✗ orders-sub subscribe",
                "   │  ├─ ↪ linked orders-sub nack",
                "   │  └─ ✗ charge payment",
                "   ├─ orders-sub redeliver",
                "   └─ orders-sub subscribe",
                "      ├─ ↪ linked orders-sub ack",
                "      ├─ charge payment",
                "      └─ INSERT orders",
            ],
            "{text}"
        );
    }

    #[test]
    fn every_line_has_the_requested_width() {
        for width in [60, 100, 160] {
            let text = render_waterfall(&fixture(), width);
            let expected = rows(&text)[0].chars().count();
            assert!(expected <= width, "{width}: {expected}\n{text}");
            assert!(expected >= width - 2, "{width}: {expected}\n{text}");
            for line in rows(&text) {
                assert_eq!(line.chars().count(), expected, "{line}");
            }
        }
    }

    #[test]
    fn queue_time_is_drawn_and_labelled() {
        let text = render_waterfall(&fixture(), 120);
        let rows = rows(&text);
        let first = rows
            .iter()
            .find(|l| l.contains("✗ orders-sub subscribe"))
            .unwrap();
        assert!(first.contains("░"), "{first}");
        assert!(first.contains("queued 30.9 ms"), "{first}");
        let second = rows
            .iter()
            .find(|l| l.contains("└─ orders-sub subscribe"))
            .unwrap();
        assert!(second.contains("redelivery wait 14.4 ms"), "{second}");
        let deliver = rows
            .iter()
            .find(|l| l.contains("orders-sub deliver"))
            .unwrap();
        assert!(deliver.contains("in queue 30.1 ms"), "{deliver}");
        // The gap ends where the consumer's bar begins.
        let bar = first.split('│').nth(1).unwrap();
        let gap_end = bar.rfind('░').unwrap();
        assert_eq!(bar[gap_end..].chars().nth(1), Some('█'), "{first}");
    }

    #[test]
    fn bars_sit_on_a_shared_time_axis() {
        let text = render_waterfall(&fixture(), 100);
        let rows = rows(&text);
        let bar = |needle: &str| -> (usize, usize) {
            let line = rows.iter().find(|l| l.contains(needle)).unwrap();
            let cells: Vec<char> = line.split('│').nth(1).unwrap().chars().collect();
            let first = cells.iter().position(|c| *c == '█').unwrap();
            let last = cells.iter().rposition(|c| *c == '█').unwrap();
            (first, last)
        };
        let (root_start, root_end) = bar("POST /orders");
        assert_eq!(root_start, 0);
        let (insert_start, insert_end) = bar("INSERT orders");
        assert!(insert_start > root_end);
        let width = rows[0].split('│').nth(1).unwrap().chars().count();
        assert!(
            insert_end >= width - 4,
            "the last span ends near the right edge"
        );
    }

    #[test]
    fn header_legend_and_errors() {
        let text = render_waterfall(&fixture(), 100);
        assert!(
            text.starts_with("Trace 4bf92f3577b34da6a3ce929d0e0e4736  service-a: POST /orders\n")
        );
        assert!(text.contains("102.0 ms · 10 spans · 3 linked · 2 errors"));
        assert!(text.contains("services: service-a, baton, service-b"));
        assert!(text.contains("░ waiting in queue"));
        assert!(text.contains("✗ orders-sub subscribe (service-b): payment service unavailable"));
        assert!(text.contains("✗ charge payment (service-b): 503 Service Unavailable"));
        let linked = rows(&text)
            .into_iter()
            .find(|l| l.contains("↪ linked orders-sub ack"))
            .unwrap();
        assert!(linked.contains('▒'), "{linked}");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for json in [
            "{}",
            r#"{"traceId":"x","spans":[]}"#,
            r#"{"spans":[{"spanId":"1","parentSpanId":"1","name":"self"}]}"#,
            r#"{"spans":[{"spanId":"1","startUnixNano":"9","endUnixNano":"3"}],
                "linkedSpans":[{"spanId":"2","links":[{"spanId":"nope"}]}]}"#,
            r#"{"spans":[{"spanId":"1","startUnixNano":5,"endUnixNano":5,"kind":"CONSUMER"}]}"#,
        ] {
            let value: Value = serde_json::from_str(json).unwrap();
            let text = render_waterfall(&value, 80);
            assert!(!text.is_empty());
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(850), "850 ns");
        assert_eq!(format_duration(12_300), "12.3 µs");
        assert_eq!(format_duration(1_200_000), "1.20 ms");
        assert_eq!(format_duration(30_900_000), "30.9 ms");
        assert_eq!(format_duration(1_250_000_000), "1.25 s");
    }
}
