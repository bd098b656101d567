//! Link helpers (`tracing.md` sections 2 and 3).
//!
//! The publish RPC span and the settle RPC spans (ack/nack/modack) are roots of
//! their own traces; links tie them to the per-message spans in both
//! directions. Links from a `subscribe` span to a settle span carry the
//! [`LINK_OPERATION_NAME`] attribute.

use opentelemetry::KeyValue;
use opentelemetry::trace::{Link, SpanContext};

use crate::names::{LINK_OPERATION_NAME, SettleKind};

/// Builds a link to `span_context`, with the `messaging.operation.name`
/// attribute when `operation` is given.
///
/// ```
/// use opentelemetry::trace::SpanContext;
///
/// let link = baton_trace_context::link_to(&SpanContext::empty_context(), Some("ack"));
/// assert_eq!(link.attributes.len(), 1);
/// assert_eq!(link.attributes[0].key.as_str(), "messaging.operation.name");
/// assert!(baton_trace_context::link_to(&SpanContext::empty_context(), None).attributes.is_empty());
/// ```
#[must_use]
pub fn link_to(span_context: &SpanContext, operation: Option<&str>) -> Link {
    let attributes = operation
        .map(|op| vec![KeyValue::new(LINK_OPERATION_NAME, op.to_owned())])
        .unwrap_or_default();
    Link::new(span_context.clone(), attributes, 0)
}

/// Builds the link from a `subscribe` span to the settle RPC span of `kind`
/// (`messaging.operation.name` = `ack` | `nack` | `modack`).
#[must_use]
pub fn settle_link(settle_span_context: &SpanContext, kind: SettleKind) -> Link {
    Link::new(
        settle_span_context.clone(),
        vec![KeyValue::new(LINK_OPERATION_NAME, kind.operation())],
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Value;

    #[test]
    fn links_carry_operation() {
        let sc = SpanContext::empty_context();
        let link = settle_link(&sc, SettleKind::Nack);
        assert_eq!(
            link.attributes,
            vec![KeyValue::new(LINK_OPERATION_NAME, "nack")]
        );
        assert_eq!(link, link_to(&sc, Some("nack")));
        assert_eq!(link.attributes[0].value, Value::from("nack"));
        assert!(link_to(&sc, None).attributes.is_empty());
    }
}
