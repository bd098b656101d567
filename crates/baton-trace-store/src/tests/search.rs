//! Trace search: each filter, the default message-flow view, paging, the
//! search record after replacement, eviction and retention, and the query
//! string parser (proptest).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::Status as ProtoStatus;

use super::*;
use crate::search::{
    KindFilter, ResourceName, TimeBound, format_duration, format_rfc3339, parse_rfc3339,
};

const MS: u64 = 1_000_000;

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn named(mut span: ProtoSpan, name: &str, attributes: Vec<KeyValue>) -> ProtoSpan {
    span.name = name.into();
    span.attributes = attributes;
    span
}

fn pubsub(destination: &str, operation: Option<&str>) -> Vec<KeyValue> {
    let mut kvs = vec![
        string_kv("messaging.system", "gcp_pubsub"),
        string_kv("messaging.destination.name", destination),
        string_kv("gcp.project_id", "p"),
    ];
    if let Some(op) = operation {
        kvs.push(string_kv("messaging.operation", op));
    }
    kvs
}

/// Trace `t`: a message flow, service-a publishing message `id` (ordering
/// key `key`) to `topic`, the broker receiving and delivering it on `sub`,
/// service-b processing it with a downstream call lasting `call_ms` (an
/// error when `fail`).
#[allow(clippy::too_many_arguments)]
fn message_flow(
    store: &TraceStore,
    t: u8,
    id: &str,
    key: &str,
    topic: &str,
    sub: &str,
    call_ms: u64,
    fail: bool,
) {
    let mut create_attrs = pubsub(topic, Some("create"));
    create_attrs.push(string_kv("messaging.message.id", id));
    create_attrs.push(string_kv("messaging.gcp_pubsub.message.ordering_key", key));
    store
        .ingest(request(
            "service-a",
            vec![
                named(span(t, 1, None, T0, T0 + 5 * MS), "POST /orders", vec![]),
                named(
                    span(t, 2, Some(1), T0 + MS, T0 + 4 * MS),
                    &format!("{topic} create"),
                    create_attrs,
                ),
            ],
        ))
        .unwrap();
    let mut broker = pubsub(sub, None);
    broker.push(string_kv("messaging.message.id", id));
    store
        .ingest(request(
            "baton",
            vec![named(
                span(t, 3, Some(2), T0 + 4 * MS, T0 + 20 * MS),
                &format!("{sub} deliver"),
                broker,
            )],
        ))
        .unwrap();
    let mut subscribe = pubsub(sub, None);
    subscribe.push(string_kv("messaging.message.id", id));
    subscribe.push(string_kv("messaging.gcp_pubsub.message.ordering_key", key));
    subscribe.push(int_kv("messaging.gcp_pubsub.message.delivery_attempt", 1));
    let mut call = named(
        span(t, 6, Some(5), T0 + 22 * MS, T0 + (22 + call_ms) * MS),
        "reserve inventory",
        vec![string_kv("http.route", "/reserve")],
    );
    if fail {
        call.status = Some(ProtoStatus {
            code: status::StatusCode::Error as i32,
            message: "out of stock".into(),
        });
    }
    store
        .ingest(request(
            "service-b",
            vec![
                named(
                    span(t, 4, Some(2), T0 + 20 * MS, T0 + (30 + call_ms) * MS),
                    &format!("{sub} subscribe"),
                    subscribe,
                ),
                named(
                    span(t, 5, Some(4), T0 + 21 * MS, T0 + (25 + call_ms) * MS),
                    &format!("{sub} process"),
                    vec![string_kv("messaging.system", "gcp_pubsub")],
                ),
                call,
            ],
        ))
        .unwrap();
}

/// Trace `t`: a one-span batch RPC (`<topic> publish` or `<sub> ack`).
fn rpc_trace(store: &TraceStore, t: u8, destination: &str, operation: &str) {
    let mut attrs = pubsub(destination, None);
    // Python's modack carries `messaging.operation.name`; the others
    // `messaging.operation`.
    attrs.push(string_kv(
        if operation == "modack" {
            "messaging.operation.name"
        } else {
            "messaging.operation"
        },
        operation,
    ));
    attrs.push(int_kv("messaging.batch.message_count", 1));
    store
        .ingest(request(
            "service-b",
            vec![named(
                span(t, 9, None, T0 + 30 * MS, T0 + 31 * MS),
                &format!("{destination} {operation}"),
                attrs,
            )],
        ))
        .unwrap();
}

/// The store of most tests: two message flows, three RPC traces, one
/// plain trace.
fn sample() -> TraceStore {
    let store = TraceStore::new(1000);
    message_flow(
        &store,
        1,
        "101",
        "customer-1",
        "orders",
        "orders-sub",
        10,
        false,
    );
    message_flow(&store, 2, "102", "", "payments", "payments-sub", 300, true);
    rpc_trace(&store, 3, "orders", "publish");
    rpc_trace(&store, 4, "orders-sub", "ack");
    rpc_trace(&store, 5, "orders-sub", "modack");
    store
        .ingest(request(
            "service-c",
            vec![named(span(6, 1, None, T0, T0 + MS), "GET /health", vec![])],
        ))
        .unwrap();
    store.audit();
    store
}

/// Trace numbers (the last byte of the id) found by `query`, in order.
fn found(store: &TraceStore, query: &str) -> Vec<u8> {
    let request = SearchRequest::parse_query(query).unwrap();
    let page = store.search(&request);
    assert!(page.total >= page.traces.len());
    page.traces
        .iter()
        .map(|t| u8::from_str_radix(&t.trace_id[30..], 16).unwrap())
        .collect()
}

#[test]
fn the_default_view_shows_message_flows_not_batch_rpc_traces() {
    let store = sample();
    // Most recently updated first; the RPC traces left out.
    assert_eq!(found(&store, ""), [6, 2, 1]);
    assert_eq!(found(&store, "kind=all"), [6, 5, 4, 3, 2, 1]);
    assert_eq!(found(&store, "kind=rpc"), [5, 4, 3]);
    assert_eq!(found(&store, "kind=message"), [2, 1]);
    assert_eq!(found(&store, "kind=other"), [6]);
    let page = store.search(&SearchRequest::default());
    let kinds: Vec<TraceKind> = page.traces.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [TraceKind::Other, TraceKind::Message, TraceKind::Message]
    );
    let flow = &page.traces[2];
    assert_eq!(flow.root_name, "POST /orders");
    assert_eq!(flow.message_ids, ["101"]);
    assert_eq!(flow.topics, ["orders"]);
    assert_eq!(flow.subscriptions, ["orders-sub"]);
    assert_eq!(flow.services, ["service-a", "baton", "service-b"]);
    assert_eq!(flow.span_count, 6);
}

#[test]
fn each_filter_narrows_the_search() {
    let store = sample();
    // Service (resource service.name), exact.
    assert_eq!(found(&store, "service=baton"), [2, 1]);
    assert_eq!(found(&store, "service=service-c"), [6]);
    assert_eq!(found(&store, "service=service"), Vec::<u8>::new());
    assert_eq!(found(&store, "service=service-b&kind=all"), [5, 4, 3, 2, 1]);
    // Span name: contained, any case.
    assert_eq!(found(&store, "span=Reserve%20INVENTORY"), [2, 1]);
    assert_eq!(found(&store, "span=health"), [6]);
    assert_eq!(found(&store, "span=ack&kind=all"), [5, 4]);
    // Attributes: several, each by some span; numbers as text.
    assert_eq!(found(&store, "attr=messaging.message.id%3D101"), [1]);
    assert_eq!(
        found(
            &store,
            "attr=messaging.gcp_pubsub.message.delivery_attempt%3D1&attr=http.route%3D/reserve"
        ),
        [2, 1]
    );
    assert_eq!(
        found(
            &store,
            "attr=http.route%3D/reserve&attr=messaging.message.id%3D102"
        ),
        [2]
    );
    assert_eq!(found(&store, "attr=http.route%3D/other"), Vec::<u8>::new());
    assert_eq!(found(&store, "attr=service.name%3Dservice-c"), [6]);
    // Durations: first start to last end (40 ms and 330 ms).
    assert_eq!(found(&store, "min_duration=100ms"), [2]);
    assert_eq!(found(&store, "max_duration=100ms&kind=message"), [1]);
    assert_eq!(found(&store, "min_duration=40ms&max_duration=40ms"), [1]);
    // Errors.
    assert_eq!(found(&store, "error=true"), [2]);
    assert_eq!(found(&store, "error=false"), [6, 1]);
    // Pub/Sub terms: short and full names.
    assert_eq!(found(&store, "topic=orders"), [1]);
    assert_eq!(found(&store, "topic=orders&kind=all"), [3, 1]);
    assert_eq!(found(&store, "topic=projects/p/topics/orders"), [1]);
    assert_eq!(
        found(&store, "topic=projects/other/topics/orders"),
        Vec::<u8>::new()
    );
    assert_eq!(found(&store, "topic=orders-sub"), Vec::<u8>::new());
    assert_eq!(found(&store, "subscription=orders-sub"), [1]);
    assert_eq!(
        found(
            &store,
            "subscription=projects/p/subscriptions/orders-sub&kind=all"
        ),
        [5, 4, 1]
    );
    assert_eq!(found(&store, "subscription=orders"), Vec::<u8>::new());
    assert_eq!(found(&store, "message=102"), [2]);
    assert_eq!(found(&store, "message=103"), Vec::<u8>::new());
    assert_eq!(found(&store, "ordering_key=customer-1"), [1]);
    // Everything at once.
    assert_eq!(
        found(
            &store,
            "service=service-b&span=process&topic=payments&subscription=payments-sub&message=102&error=true&min_duration=1ms"
        ),
        [2]
    );
}

/// A wall clock the test sets by hand (ns since the epoch).
fn manual_clock(at: u64) -> (WallClock, std::sync::Arc<AtomicU64>) {
    let now = std::sync::Arc::new(AtomicU64::new(at));
    let read = std::sync::Arc::clone(&now);
    let clock: WallClock =
        std::sync::Arc::new(move || UNIX_EPOCH + Duration::from_nanos(read.load(Ordering::SeqCst)));
    (clock, now)
}

#[test]
fn time_windows_are_relative_to_the_stores_clock_or_absolute() {
    let (clock, now) = manual_clock(T0 + 3_600 * 1_000 * MS);
    let store = TraceStore::builder().clock(clock).build().unwrap();
    // Trace 1 at T0, trace 2 half an hour later.
    store
        .ingest(request("s", vec![span(1, 1, None, T0, T0 + MS)]))
        .unwrap();
    let half = T0 + 1_800 * 1_000 * MS;
    store
        .ingest(request("s", vec![span(2, 1, None, half, half + MS)]))
        .unwrap();
    assert_eq!(found(&store, "since=45m"), [2]);
    assert_eq!(found(&store, "since=2h"), [2, 1]);
    assert_eq!(found(&store, "until=45m"), [1]);
    // The window moves with the clock.
    now.fetch_add(3_600 * 1_000 * MS, Ordering::SeqCst);
    assert_eq!(found(&store, "since=45m"), Vec::<u8>::new());
    assert_eq!(found(&store, "since=1d"), [2, 1]);
    // Absolute RFC 3339: T0 is 2023-11-14T22:13:20Z.
    assert_eq!(format_rfc3339(T0), "2023-11-14T22:13:20Z");
    assert_eq!(found(&store, "since=2023-11-14T22:30:00Z"), [2]);
    assert_eq!(
        found(
            &store,
            "since=2023-11-14T23:13:00%2B01:00&until=2023-11-14T22:20:00Z"
        ),
        [1]
    );
    // A window overlapping a trace finds it.
    assert_eq!(
        found(
            &store,
            "since=2023-11-14T22:13:20.0005Z&until=2023-11-14T22:13:21Z"
        ),
        [1]
    );
}

#[test]
fn pages_follow_the_cursor_and_say_how_many_match() {
    let store = TraceStore::new(10_000);
    for t in 1..=25u8 {
        message_flow(
            &store,
            t,
            &t.to_string(),
            "",
            "orders",
            "orders-sub",
            1,
            t % 5 == 0,
        );
        rpc_trace(&store, 100 + t, "orders", "publish");
    }
    let mut request = SearchRequest::parse_query("limit=10").unwrap();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.search(&request);
        pages += 1;
        assert_eq!(page.total, 25, "the total counts every page");
        seen.extend(page.traces.iter().map(|t| t.trace_id.clone()));
        assert_eq!(page.more, page.next_cursor.is_some());
        match page.next_cursor {
            Some(cursor) => {
                assert_eq!(page.traces.len(), 10);
                assert_eq!(page.traces.last().unwrap().cursor, cursor);
                request.cursor = Some(cursor.parse().unwrap());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    let distinct: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 25, "no trace twice");
    // Newest first, across pages.
    assert_eq!(seen[0], convert::hex(&tid(25)));
    assert_eq!(seen[24], convert::hex(&tid(1)));
    // Filters page too.
    let errors = store.search(&SearchRequest::parse_query("error=true&limit=2").unwrap());
    assert_eq!(
        (errors.total, errors.traces.len(), errors.more),
        (5, 2, true)
    );
    let all = store.search(&SearchRequest::parse_query("kind=all&limit=1000").unwrap());
    assert_eq!((all.total, all.traces.len(), all.more), (50, 50, false));
}

#[test]
fn the_search_record_follows_replacement_eviction_and_retention() {
    // Room for two message flows (6 spans each) and a bit.
    let (clock, now) = manual_clock(T0);
    let store = TraceStore::builder()
        .max_spans(14)
        .retention(Some(Duration::from_secs(60)))
        .clock(clock)
        .build()
        .unwrap();
    message_flow(&store, 1, "1", "", "orders", "orders-sub", 1, true);
    store.audit();
    assert_eq!(found(&store, "error=true"), [1]);
    // The failed span sent again without the error: the trace has none.
    let fixed = named(
        span(1, 6, Some(5), T0 + 22 * MS, T0 + 23 * MS),
        "reserve inventory",
        vec![string_kv("http.route", "/reserve")],
    );
    store.ingest(request("service-b", vec![fixed])).unwrap();
    store.audit();
    assert_eq!(found(&store, "error=true"), Vec::<u8>::new());
    assert_eq!(found(&store, "message=1"), [1]);
    // Two more flows push the first one out: it is no longer found.
    message_flow(&store, 2, "2", "", "orders", "orders-sub", 1, false);
    message_flow(&store, 3, "3", "", "orders", "orders-sub", 1, false);
    store.audit();
    assert_eq!(found(&store, "message=1"), Vec::<u8>::new());
    assert_eq!(found(&store, "topic=orders"), [3, 2]);
    assert_eq!(store.search(&SearchRequest::default()).total, 2);
    // Retention: trace 3 updated later than trace 2.
    now.fetch_add(30_000 * MS, Ordering::SeqCst);
    rpc_trace(&store, 3, "orders", "publish");
    now.fetch_add(40_000 * MS, Ordering::SeqCst);
    assert_eq!(store.evict_expired(), 1);
    store.audit();
    assert_eq!(found(&store, "topic=orders&kind=all"), [3]);
    assert_eq!(found(&store, "message=2"), Vec::<u8>::new());
    let facets = store.facets();
    assert_eq!(facets.services, ["baton", "service-a", "service-b"]);
    assert_eq!(facets.topics, ["orders"]);
    assert_eq!(facets.subscriptions, ["orders-sub"]);
}

#[test]
fn malformed_searches_are_refused_with_the_reason() {
    for (query, needle) in [
        ("colour=red", "unknown search parameter \"colour\""),
        ("attr=novalue", "not key=value"),
        ("attr=%3Dv", "empty key"),
        ("min_duration=fast", "invalid min_duration"),
        ("min_duration=2s&max_duration=1s", "below the minimum"),
        ("error=maybe", "invalid error"),
        ("since=yesterday", "invalid since"),
        ("until=2026-13-01T00:00:00Z", "not an RFC 3339 time"),
        ("kind=everything", "invalid kind"),
        ("limit=ten", "invalid limit"),
        ("cursor=abc", "invalid cursor"),
    ] {
        let error = SearchRequest::parse_query(query).unwrap_err().to_string();
        assert!(error.contains(needle), "{query}: {error}");
    }
    // Empty values are ignored (an empty form field), limits clamped.
    let request = SearchRequest::parse_query("service=&topic=&limit=5000").unwrap();
    assert!(request.filter.is_empty());
    assert_eq!(request.limit, crate::search::MAX_PAGE_LIMIT);
}

#[test]
fn rfc3339_reads_offsets_and_fractions() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2024-02-29T12:00:00.5+02:00"),
        Some((1_709_208_000 - 7200) * 1_000_000_000 + 500_000_000)
    );
    assert_eq!(parse_rfc3339("2023-02-29T12:00:00Z"), None);
    assert_eq!(parse_rfc3339("2024-01-01T00:00:00"), None);
    assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert_eq!(parse_rfc3339(&format_rfc3339(now)), Some(now));
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./_-]{1,12}",
        // Anything printable, with the query string's own characters.
        "[ -~&=%+#?]{1,12}".prop_map(|s| s.trim().to_string()),
        any::<String>().prop_map(|s| s.trim().to_string()),
    ]
    .prop_filter("non-empty", |s| !s.is_empty())
}

fn arb_bound() -> impl Strategy<Value = TimeBound> {
    prop_oneof![
        (1..u64::MAX / 4).prop_map(TimeBound::Ago),
        (0..4_000_000_000u64 * 1_000_000_000).prop_map(TimeBound::At),
    ]
}

fn arb_kind() -> impl Strategy<Value = KindFilter> {
    prop_oneof![
        Just(KindFilter::Default),
        Just(KindFilter::All),
        Just(KindFilter::Only(TraceKind::Message)),
        Just(KindFilter::Only(TraceKind::Rpc)),
        Just(KindFilter::Only(TraceKind::Other)),
    ]
}

prop_compose! {
    fn arb_filter()(
        service in prop::option::of(arb_text()),
        span_name in prop::option::of(arb_text()),
        attributes in prop::collection::vec(
            ("[a-z][a-z0-9._]{0,20}", prop_oneof!["[ -~]{0,10}", any::<String>()])
                .prop_map(|(k, v): (String, String)| (k, v.trim().to_string())),
            0..4,
        ),
        durations in prop::option::of((0..u64::MAX / 2, 0..u64::MAX / 2)),
        error in prop::option::of(any::<bool>()),
        since in prop::option::of(arb_bound()),
        until in prop::option::of(arb_bound()),
        topic in prop::option::of(prop_oneof![
            arb_text(),
            "[a-z]{1,8}".prop_map(|t| format!("projects/p/topics/{t}")),
        ]),
        subscription in prop::option::of(arb_text()),
        message_id in prop::option::of(arb_text()),
        ordering_key in prop::option::of(arb_text()),
        kind in arb_kind(),
    ) -> TraceFilter {
        let (min_duration, max_duration) = match durations {
            Some((a, b)) => (Some(a.min(b)), Some(a.max(b))),
            None => (None, None),
        };
        TraceFilter {
            service,
            span_name,
            attributes,
            min_duration,
            max_duration,
            error,
            since,
            until,
            topic: topic.map(|t| ResourceName::new(&t)),
            subscription: subscription.map(|s| ResourceName::new(&s)),
            message_id,
            ordering_key,
            kind,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What `to_query` writes, `parse_query` reads back as the same filter
    /// (the web view's URL and the CLI's request depend on it).
    #[test]
    fn a_filter_survives_its_query_string(filter in arb_filter()) {
        let query = filter.to_query();
        let parsed = TraceFilter::parse_query(&query);
        prop_assert_eq!(parsed.as_ref(), Ok(&filter), "query {}", query);
        let request = SearchRequest { filter: filter.clone(), limit: 7, cursor: Some(42) };
        prop_assert_eq!(SearchRequest::parse_query(&request.to_query()), Ok(request));
    }

    /// Any query string parses or is refused with a reason; never a panic.
    #[test]
    fn any_query_string_parses_or_is_refused(query in "[ -~]{0,80}") {
        let _ = SearchRequest::parse_query(&query);
    }

    /// Parameter values of any shape parse or are refused.
    #[test]
    fn any_parameter_value_parses_or_is_refused(
        name in prop::sample::select(vec![
            "service", "span", "attr", "min_duration", "max_duration", "error", "since",
            "until", "topic", "subscription", "message", "ordering_key", "kind", "limit",
            "cursor",
        ]),
        value in any::<String>(),
    ) {
        let _ = SearchRequest::from_pairs(&[(name.to_string(), value)]);
    }

    #[test]
    fn durations_and_times_are_written_exactly(nanos in any::<u64>(), at in 0..u64::MAX) {
        prop_assert_eq!(crate::duration::parse_duration(&format_duration(nanos)), Ok(nanos));
        prop_assert_eq!(parse_rfc3339(&format_rfc3339(at)), Some(at));
    }
}

#[tokio::test]
async fn the_query_api_searches_pages_and_refuses_bad_filters() {
    use super::jaeger::get;
    let store = sample();
    // An old client: `limit` alone still answers `traces` (message flows
    // and other traces first), now with the total and paging fields.
    let (status, body) = get(&store, "/api/traces?limit=2").await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [convert::hex(&tid(6)), convert::hex(&tid(2))]);
    assert_eq!(body["total"], 3);
    assert_eq!(body["more"], true);
    let cursor = body["nextCursor"].as_str().unwrap().to_string();
    let (_, next) = get(&store, &format!("/api/traces?limit=2&cursor={cursor}")).await;
    assert_eq!(next["traces"][0]["traceId"], convert::hex(&tid(1)));
    assert_eq!(next["more"], false);
    assert!(next["nextCursor"].is_null());
    // Filters, the summary's Pub/Sub fields.
    let (status, body) = get(
        &store,
        "/api/traces?subscription=projects%2Fp%2Fsubscriptions%2Forders-sub&attr=messaging.message.id%3D101",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    let trace = &body["traces"][0];
    assert_eq!(trace["kind"], "message");
    assert_eq!(trace["messageIds"], serde_json::json!(["101"]));
    assert_eq!(trace["topics"], serde_json::json!(["orders"]));
    assert_eq!(trace["subscriptions"], serde_json::json!(["orders-sub"]));
    assert_eq!(trace["durationNanos"], "40000000");
    let (_, rpc) = get(&store, "/api/traces?kind=rpc").await;
    assert_eq!(rpc["total"], 3);
    assert_eq!(rpc["traces"][0]["kind"], "rpc");
    // Bad filters: 400 with the reason.
    for query in ["min_duration=soon", "colour=red", "attr=x"] {
        let (status, body) = get(&store, &format!("/api/traces?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("invalid")
                || body["error"].as_str().unwrap().contains("unknown"),
            "{body}"
        );
    }
    // Suggestions for the search form.
    let (status, facets) = get(&store, "/api/traces/facets").await;
    assert_eq!(status, 200);
    assert_eq!(
        facets["subscriptions"],
        serde_json::json!(["orders-sub", "payments-sub"])
    );
    assert_eq!(facets["topics"], serde_json::json!(["orders", "payments"]));
}

fn double_kv(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(value)),
        }),
        ..Default::default()
    }
}

fn bool_kv(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(value)),
        }),
        ..Default::default()
    }
}

/// An attribute of one of a few keys with a value of any JSON type.
fn arb_attribute() -> impl Strategy<Value = KeyValue> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    prop_oneof![
        (key.clone(), "[0-9a-z]{0,3}").prop_map(|(k, v)| string_kv(k, &v)),
        (key.clone(), -50i64..50).prop_map(|(k, v)| int_kv(k, v)),
        (
            key.clone(),
            prop::sample::select(vec![0.5, 1.0, 2.25, -3.0])
        )
            .prop_map(|(k, v)| double_kv(k, v)),
        (key, any::<bool>()).prop_map(|(k, v)| bool_kv(k, v)),
    ]
}

fn arb_want() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-z]{0,3}",
        (-50i64..50).prop_map(|i| i.to_string()),
        (-50i64..50).prop_map(|i| format!("+{i}")),
        Just("1.0".to_string()),
        Just("2.25".to_string()),
        Just("1".to_string()),
        Just("TRUE".to_string()),
        Just("false".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An `attr` search finds exactly the traces a span-by-span check
    /// finds: the per-trace attribute filter never hides a match.
    #[test]
    fn attribute_search_agrees_with_reading_every_span(
        traces in prop::collection::vec(prop::collection::vec(
            prop::collection::vec(arb_attribute(), 0..4), 1..4), 1..12),
        key in prop::sample::select(vec!["a", "b", "c"]),
        want in arb_want(),
    ) {
        let store = TraceStore::new(10_000);
        for (t, spans) in traces.iter().enumerate() {
            let t = u8::try_from(t + 1).unwrap();
            let spans: Vec<ProtoSpan> = spans
                .iter()
                .enumerate()
                .map(|(i, attrs)| {
                    let mut s = span(t, u8::try_from(i + 1).unwrap(), None, T0, T0 + 1);
                    s.attributes = attrs.clone();
                    s
                })
                .collect();
            store.ingest(request("s", spans)).unwrap();
        }
        let query = TraceFilter {
            attributes: vec![(key.to_string(), want.clone())],
            kind: KindFilter::All,
            ..Default::default()
        };
        let request = SearchRequest { filter: query, limit: 1000, cursor: None };
        let mut found: Vec<String> =
            store.search(&request).traces.into_iter().map(|t| t.trace_id).collect();
        found.sort();
        let mut expected: Vec<String> = store
            .list(usize::MAX)
            .into_iter()
            .filter(|t| {
                let detail = store.trace(&t.trace_id).unwrap();
                detail.spans.iter().any(|s| {
                    s.attributes.get(key).is_some_and(|v| crate::search::value_is(v, &want))
                })
            })
            .map(|t| t.trace_id)
            .collect();
        expected.sort();
        prop_assert_eq!(found, expected);
    }
}
