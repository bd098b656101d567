//! A Google Cloud Pub/Sub client for Rust whose OpenTelemetry traces join
//! the traces of Google's official clients.
//!
//! It talks to any Pub/Sub-API endpoint: a local server or emulator named by
//! `PUBSUB_EMULATOR_HOST`, Google Cloud with Application Default Credentials,
//! or a custom endpoint ([`Endpoint`]).
//!
//! - [`Publisher`]: batching, flow control, ordering keys, retries.
//! - [`Subscriber`]: StreamingPull with leases, flow control, ack/nack,
//!   ordered and exactly-once delivery.
//! - Admin calls on [`Client`]: topics, subscriptions, seek.
//!
//! With tracing switched on, a message carries the W3C trace context of its
//! `create` span in the `googclient_traceparent` attribute, as the official
//! clients do, so a publisher and a subscriber in any language form one trace.

mod admin;
mod client;
mod error;
mod publisher;
pub mod retry;
mod subscriber;
mod telemetry;

pub use admin::SubscriptionConfig;
/// The generated wire types, for settings this crate has no builder for.
pub use baton_proto::pubsub as proto;
pub use client::{
    Client, ClientConfig, EMULATOR_HOST_ENV, Endpoint, GOOGLE_CLOUD_ENDPOINT, short_id,
};
pub use error::{AckError, Error, Result};
pub use publisher::{
    BatchSettings, LimitExceededBehavior, Message, PublishHandle, Publisher, PublisherConfig,
    PublisherFlowControl,
};
pub use subscriber::{
    ReceivedMessage, ShutdownBehavior, Subscriber, SubscriberConfig, SubscriptionHandle,
};
pub use telemetry::{DEFAULT_MAX_LINKS_PER_SPAN, ProcessScope, PropagationOptions, TracingConfig};
