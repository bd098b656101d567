//! Property tests of the `googclient_` carrier.

use std::collections::HashMap;

use baton_trace_context::{
    LEGACY_SPAN_CONTEXT_ATTRIBUTE, PropagationOptions, STANDARD_TRACEPARENT_ATTRIBUTE,
    TRACEPARENT_ATTRIBUTE, TRACESTATE_ATTRIBUTE, extract, extract_span_context, inject,
};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use proptest::prelude::*;

fn options() -> impl Strategy<Value = PropagationOptions> {
    (any::<bool>(), any::<bool>()).prop_map(|(standard_keys, baggage)| {
        PropagationOptions::default()
            .with_standard_keys(standard_keys)
            .with_baggage(baggage)
    })
}

/// Keys biased towards the ones the carrier reads.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(TRACEPARENT_ATTRIBUTE.to_owned()),
        Just(TRACESTATE_ATTRIBUTE.to_owned()),
        Just(LEGACY_SPAN_CONTEXT_ATTRIBUTE.to_owned()),
        Just(STANDARD_TRACEPARENT_ATTRIBUTE.to_owned()),
        Just("tracestate".to_owned()),
        Just("googclient_baggage".to_owned()),
        any::<String>(),
    ]
}

/// Values biased towards almost-valid trace contexts.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F]{2}-[0-9a-f]{0,34}-[0-9a-f]{0,18}-[0-9a-fx]{0,3}(-.*)?",
        "[a-z0-9]{1,8}=[ -~]{0,12}(,[a-z0-9]{1,8}=[ -~]{0,12}){0,3}",
        r#"\{"traceId":"[0-9a-f]{0,33}","spanId":"[0-9a-f]{0,17}","traceFlags":(-?[0-9]{1,4}|"[0-9a-f]{0,3}"|null|\[\])\}"#,
        "[%=,;a-z0-9 ]{0,40}",
    ]
}

proptest! {
    #[test]
    fn extract_never_panics(
        attributes in prop::collection::hash_map(key(), value(), 0..8),
        options in options(),
    ) {
        let cx = extract(&attributes, &options);
        let span = cx.span();
        let sc = span.span_context();
        let direct = extract_span_context(&attributes, &options);
        prop_assert_eq!(direct.as_ref(), sc.is_valid().then_some(sc));
        if let Some(sc) = direct {
            prop_assert!(sc.is_valid());
            prop_assert!(sc.is_remote());
        }
    }

    #[test]
    fn inject_then_extract_round_trips(
        trace_id in 1..=u128::MAX,
        span_id in 1..=u64::MAX,
        flags in any::<u8>(),
        options in options(),
        user in prop::collection::hash_map(key(), value(), 0..4),
    ) {
        let span_context = SpanContext::new(
            TraceId::from(trace_id),
            SpanId::from(span_id),
            TraceFlags::new(flags),
            false,
            TraceState::default(),
        );
        let mut attributes = user;
        inject(&Context::new().with_remote_span_context(span_context), &mut attributes, &options);
        let got = extract_span_context(&attributes, &options);
        prop_assert!(got.is_some());
        if let Some(got) = got {
            prop_assert_eq!(got.trace_id(), TraceId::from(trace_id));
            prop_assert_eq!(got.span_id(), SpanId::from(span_id));
            prop_assert_eq!(got.is_sampled(), flags & 1 == 1);
            prop_assert!(got.is_remote());
        }
        prop_assert!(!attributes.contains_key(TRACESTATE_ATTRIBUTE));
    }
}

#[test]
fn inject_into_empty_map_writes_only_traceparent() {
    let span_context = SpanContext::new(
        TraceId::from(7_u128),
        SpanId::from(9_u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let mut attributes = HashMap::new();
    inject(
        &Context::new().with_remote_span_context(span_context),
        &mut attributes,
        &PropagationOptions::default(),
    );
    assert_eq!(attributes.len(), 1);
    assert_eq!(
        attributes[TRACEPARENT_ATTRIBUTE],
        "00-00000000000000000000000000000007-0000000000000009-01"
    );
}
