//! The one harness of Baton's test suites. Every suite (the server's, the
//! client's, the CLI's, the conformance replay and the full tier in `tests/`)
//! starts servers, talks to them and checks what came out through this crate,
//! so a server is started one way and a round trip means one thing everywhere.
//!
//! - [`server::TestServer`]: the real server in-process on `127.0.0.1:0`, in
//!   memory or durable, restartable on the same directory, with gRPC stubs, a
//!   REST client and the round trips tests repeat (create, publish, pull,
//!   ack, modack); [`server::TestServer::start_tls`] serves TLS with a
//!   development certificate (its clients trust it);
//!   [`server::TestServer::start_virtual`] starts it on
//!   [`virtual_time`], so a `start_paused` test drives its deadlines,
//!   backoffs and waits on Tokio's paused clock.
//! - [`auth`]: authentication on with a known operator token, and the
//!   operator's service accounts, key files and IAM grants.
//! - [`process::ServeProcess`]: the real `baton serve` binary as a child
//!   process (killed on drop, SIGKILL for the crash tests), with OTLP off
//!   or on free ports and environment of the test's choosing (never the
//!   test process's `OTEL_*`);
//!   [`process::baton_command`] runs any other `baton` verb, and
//!   [`process::output_within`] runs one to its end within a time limit;
//!   [`process::succeed_within`] runs any program (`node`) to a success.
//! - [`grpc`]: connections and stubs of the Publisher, Subscriber, Schema and
//!   IAM services; status assertions. [`streaming`]: StreamingPull sessions.
//! - [`pages`]: follows `next_page_token` through any List call.
//! - [`messages`]: resource names, messages and what tests read out of them.
//! - [`push`]: an HTTP push endpoint that records what the server pushes.
//! - [`otlp`]: OTLP export requests and exporters aimed at the server's
//!   receivers; [`spans`]: spans captured in memory; [`trace_api`]: the
//!   trace query API's JSON.
//! - [`chromium`]: headless Chromium on a page of the web view;
//!   [`devtools`]: the same driven over the DevTools protocol (typing,
//!   clicking, history).
//! - [`python`] and [`emulator`]: Google's Python client (in a venv made
//!   once) against Baton and against the official gcloud emulator.
//!
//! Waiting is event-driven where the server offers an event: waiting pulls
//! instead of polling with immediate ones, the push recorder's arrival
//! signal, [`virtual_time::settled`] for what the server reaches without a
//! timer. Short bounded polls remain only where the wait is on something
//! outside (a port the OS has yet to release, a child process still
//! starting, an SDK exporter's own thread).
//!
//! The fast tier (`cargo test`) uses only the pure-Rust parts; Chromium,
//! Python and gcloud are used by the full tier only, and fail loudly (never
//! skip) when missing.

// A test harness: failing loudly (panicking) on anything unexpected is its
// job, so unwrap and expect are how it reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod auth;
pub mod chromium;
pub mod devtools;
pub mod emulator;
mod error;
pub mod grpc;
pub mod interop;
pub mod messages;
pub mod otlp;
pub mod pages;
pub mod process;
pub mod prometheus;
pub mod push;
pub mod python;
pub mod server;
#[cfg(feature = "span-capture")]
pub mod spans;
pub mod streaming;
pub mod trace_api;
pub mod virtual_time;

pub use error::Error;

/// What most server tests use, for one glob import.
pub mod prelude {
    pub use crate::grpc::{
        assert_code, assert_status, connect, iam, publisher, schema, subscriber,
    };
    pub use crate::messages::*;
    pub use crate::pages::{Page, all_pages};
    pub use crate::server::{TestServer, loopback};
    pub use crate::streaming::{PullStream, stream_failure, stream_request};
    pub use crate::virtual_time::{settled, since};
}
