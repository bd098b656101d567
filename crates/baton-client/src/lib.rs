//! A Google Cloud Pub/Sub client for Rust whose OpenTelemetry traces join
//! the traces of Google's official clients.
//!
//! It talks to any Pub/Sub-API endpoint: a local server or emulator named by
//! `PUBSUB_EMULATOR_HOST`, Google Cloud with Application Default Credentials,
//! or a custom endpoint ([`Endpoint`]).
//!
//! A Baton serving TLS and authentication (`baton serve --tls --auth`) is a
//! custom `https` endpoint that authenticates: trust its CA with
//! [`ClientConfig::with_ca_certificate_file`] (or `SSL_CERT_FILE`), and
//! choose [`Credentials`]: Application Default Credentials by default
//! (`GOOGLE_APPLICATION_CREDENTIALS` naming a key file Baton made, or
//! `GCE_METADATA_HOST` naming Baton's metadata server), or either one
//! explicitly.
//!
//! ```no_run
//! # async fn run() -> Result<(), baton_client::ConnectError> {
//! use baton_client::{Client, ClientConfig, Credentials, Endpoint};
//! let client = Client::connect(
//!     ClientConfig::new("my-project")
//!         .with_endpoint(Endpoint::Custom {
//!             uri: "https://localhost:8085".into(),
//!             authenticate: true,
//!         })
//!         .with_ca_certificate_file("baton-data/tls/ca.pem")
//!         // Baton's metadata server (`--metadata-port 8086`).
//!         .with_credentials(Credentials::MetadataServer("127.0.0.1:8086".into())),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Credentials of every kind Google's libraries accept (key files,
//! authorized users, external accounts, impersonation, the metadata server,
//! a [`TokenProvider`] of your own) come from Google's `google-cloud-auth`;
//! tokens are refreshed [`REFRESH_MARGIN`] before they expire.
//!
//! - [`Publisher`]: batching, flow control, ordering keys, retries.
//! - [`Subscriber`]: StreamingPull with leases, flow control, ack/nack,
//!   ordered and exactly-once delivery.
//! - Admin calls on [`Client`]: topics, subscriptions, snapshots, schemas,
//!   seek, push configs, typed updates ([`TopicUpdate`],
//!   [`SubscriptionUpdate`], [`SnapshotUpdate`]: the update mask follows
//!   what was set) and the IAM policies of all four kinds of resource
//!   ([`iam`]).
//!
//! With tracing switched on, a message carries the W3C trace context of its
//! `create` span in the `googclient_traceparent` attribute, as the official
//! clients do, so a publisher and a subscriber in any language form one trace.

#![warn(missing_docs)]

mod admin;
mod auth;
mod client;
mod encoded_publish;
mod error;
pub mod iam;
mod publisher;
mod pulled;
mod retry;
mod schemas;
mod snapshots;
mod subscriber;
mod telemetry;
mod updates;

pub use admin::SubscriptionConfig;
pub use auth::{
    AccessToken, BoxError, CREDENTIALS_FILE_ENV, Credentials, CredentialsError,
    IAM_CREDENTIALS_ENDPOINT, Impersonation, METADATA_HOST_ENV, REFRESH_MARGIN, TokenProvider,
};
/// The generated wire types, for settings this crate has no builder for.
pub use baton_proto::pubsub as proto;
pub use client::{
    Client, ClientConfig, EMULATOR_HOST_ENV, Endpoint, GOOGLE_CLOUD_ENDPOINT, QUOTA_PROJECT_ENV,
    SSL_CERT_FILE_ENV,
};
pub use error::{AckError, AdminError, ConnectError, Error, PublishError, Result, SubscribeError};
/// Google's auth crate, for [`Credentials::Google`] built with its builders.
pub use google_cloud_auth;
pub use publisher::{
    BatchSettings, LimitExceededBehavior, Message, PublishHandle, Publisher, PublisherConfig,
    PublisherFlowControl,
};
pub use retry::{CallFamily, RetrySettings};
pub use schemas::{MessageEncoding, SchemaDefinition, SchemaType, SchemaView};
pub use snapshots::{SnapshotConfig, SnapshotUpdate};
pub use subscriber::{
    MessageStream, ReceivedMessage, ShutdownBehavior, Subscriber, SubscriberConfig,
    SubscriptionHandle,
};
pub use telemetry::{DEFAULT_MAX_LINKS_PER_SPAN, PropagationOptions, TracingConfig};
pub use updates::{SubscriptionUpdate, TopicUpdate};
