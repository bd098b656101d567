//! Wire types of the Pub/Sub API as Baton speaks it.
//!
//! Everything here is generated at build time from the `.proto` files in this
//! crate's `proto/` folder: prost messages and serde impls that follow the
//! proto3 JSON mapping (camelCase names, base64 bytes, `"600s"` durations,
//! RFC 3339 timestamps, int64 as strings), so the gRPC and REST faces of the
//! server share one set of types. The tonic clients and servers are generated
//! only with the `client` and `server` features, so code that needs just the
//! messages (the broker) does not build tonic.

/// `google.pubsub.v1`: topics, subscriptions, messages and their services.
pub mod pubsub {
    #![allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        missing_debug_implementations
    )]
    include!(concat!(env!("OUT_DIR"), "/google.pubsub.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/google.pubsub.v1.serde.rs"));
}

/// The generated code of packages that refer to one another (`google.iam.v1`
/// uses `google.type.Expr`) names those types by relative paths such as
/// `super::super::r#type::Expr`, so they live in a tree shaped like their
/// package names and are re-exported below under short names.
mod google {
    pub mod iam {
        /// `google.iam.v1`: the IAM policy mixin (`SetIamPolicy`,
        /// `GetIamPolicy`, `TestIamPermissions`) and its policy types.
        pub mod v1 {
            #![allow(
                missing_docs,
                clippy::all,
                clippy::pedantic,
                missing_debug_implementations
            )]
            include!(concat!(env!("OUT_DIR"), "/google.iam.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/google.iam.v1.serde.rs"));
        }
    }

    /// `google.rpc`: the `Status` error model and the standard error details
    /// (`ErrorInfo`, `BadRequest`, `RetryInfo`, ...).
    pub mod rpc {
        #![allow(
            missing_docs,
            clippy::all,
            clippy::pedantic,
            missing_debug_implementations
        )]
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.rpc.serde.rs"));
    }

    /// `google.type`: common types (`Expr`, used by IAM binding conditions).
    pub mod r#type {
        #![allow(
            missing_docs,
            clippy::all,
            clippy::pedantic,
            missing_debug_implementations
        )]
        include!(concat!(env!("OUT_DIR"), "/google.r#type.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.r#type.serde.rs"));
    }
}

pub use google::iam::v1 as iam;
pub use google::rpc;
pub use google::r#type as gtype;

/// Well-known protobuf types (Duration, Timestamp, FieldMask, Empty) with
/// proto3 JSON support.
pub use pbjson_types as wkt;

/// The encoded `FileDescriptorSet` of every `.proto` file above, for code
/// that needs the schema at run time (reflection, JSON field lookups).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/baton_descriptor.bin"));

impl pubsub::PubsubMessage {
    /// The size the service counts against its limits (10 MB a message, the
    /// publisher's batch and flow-control bytes): data, ordering key, and
    /// attribute keys and values, not the encoded protobuf.
    pub fn payload_size(&self) -> usize {
        self.data.len()
            + self.ordering_key.len()
            + self
                .attributes
                .iter()
                .map(|(key, value)| key.len() + value.len())
                .sum::<usize>()
    }
}
