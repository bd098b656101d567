//! The services of `baton demo`, the story of the project in one command:
//!
//! - [`service_a`]: an HTTP API (`POST /orders`) that publishes each order
//!   with `baton-client`, tracing on, inside its server span;
//! - [`service_b`]: the worker that subscribes, calls the inventory service
//!   over HTTP inside the client's `process` span, and acks (or nacks when
//!   the inventory fails), plus that inventory service.
//!
//! Each runs in-process (`baton demo`, the tests) or on its own
//! (`cargo run -p baton-demo --bin service-a`), exporting its spans over OTLP.

pub mod service_a;
pub mod service_b;
