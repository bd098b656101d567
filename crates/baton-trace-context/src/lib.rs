//! The trace contract shared by Baton's client and server.
//!
//! When a service publishes to Pub/Sub and another processes the message later,
//! the two halves only land in one trace if the trace context travels inside
//! the message. Google's official clients do this with W3C Trace Context in the
//! message attributes, every key prefixed `googclient_`. This crate holds
//! everything both sides of Baton need to speak that format and to produce the
//! same span shape as the official clients:
//!
//! - the carrier: [`inject`], [`extract`], [`extract_span_context`],
//!   [`MessageCarrier`] and [`PropagationOptions`];
//! - span names ([`create_span_name`], [`subscribe_span_name`], ... and the fixed
//!   internal names), attribute keys and values, event names;
//! - link helpers ([`link_to`], [`settle_link`]);
//! - our instrumentation scope ([`scope`]);
//! - the spans themselves ([`instrument`]): the create, publish, subscribe,
//!   process and settle spans of one publisher or subscriber, made the same
//!   way by Baton's client and by the [`adapter`] that gives users of other
//!   Rust Pub/Sub crates joined traces.
//!
//! ```
//! use std::collections::HashMap;
//! use opentelemetry::Context;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use baton_trace_context::PropagationOptions;
//!
//! // Publisher: the context of the per-message "{topic} create" span.
//! let create = SpanContext::new(
//!     TraceId::from(1_u128),
//!     SpanId::from(2_u64),
//!     TraceFlags::SAMPLED,
//!     false,
//!     TraceState::default(),
//! );
//! let mut attributes = HashMap::new();
//! let options = PropagationOptions::default();
//! baton_trace_context::inject(&Context::new().with_remote_span_context(create), &mut attributes, &options);
//!
//! // Subscriber: parent of the "{subscription} subscribe" span.
//! let parent = baton_trace_context::extract(&attributes, &options);
//! assert_eq!(parent.span().span_context().trace_id(), TraceId::from(1_u128));
//! ```

#![warn(missing_docs)]

pub mod adapter;
pub mod instrument;
mod links;
mod names;
mod propagation;

pub use links::{link_to, settle_link};
pub use names::*;
pub use propagation::{
    ATTRIBUTE_PREFIX, BAGGAGE_ATTRIBUTE, LEGACY_SPAN_CONTEXT_ATTRIBUTE, MessageCarrier,
    PropagationOptions, STANDARD_TRACEPARENT_ATTRIBUTE, STANDARD_TRACESTATE_ATTRIBUTE,
    TRACEPARENT_ATTRIBUTE, TRACESTATE_ATTRIBUTE, Traceparent, compact_traceparent, extract,
    extract_span_context, inject,
};

use opentelemetry::InstrumentationScope;

/// Instrumentation scope name of the spans Baton creates, so users see our own
/// scope (not the official clients' `google.cloud.pubsub_v1`) in their backend.
pub const INSTRUMENTATION_SCOPE_NAME: &str = "baton";

/// The instrumentation scope for Baton's tracers: [`INSTRUMENTATION_SCOPE_NAME`]
/// with this crate's version.
///
/// ```
/// let scope = baton_trace_context::scope();
/// assert_eq!(scope.name(), "baton");
/// assert_eq!(scope.version(), Some(env!("CARGO_PKG_VERSION")));
/// // e.g. opentelemetry::global::tracer_with_scope(scope)
/// ```
#[must_use]
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(INSTRUMENTATION_SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}
