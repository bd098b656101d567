//! Wire types of the Pub/Sub API as Baton speaks it.
//!
//! Everything here is generated at build time from the `.proto` files in the
//! repository's `proto/` folder: prost messages, tonic clients and servers, and
//! serde impls that follow the proto3 JSON mapping (camelCase names, base64
//! bytes, `"600s"` durations, RFC 3339 timestamps, int64 as strings), so the
//! gRPC and REST faces of the server share one set of types.

/// `google.pubsub.v1`: topics, subscriptions, messages and their services.
pub mod pubsub {
    #![allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
    include!(concat!(env!("OUT_DIR"), "/google.pubsub.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/google.pubsub.v1.serde.rs"));
}

/// Well-known protobuf types (Duration, Timestamp, FieldMask, Empty) with
/// proto3 JSON support.
pub use pbjson_types as wkt;
