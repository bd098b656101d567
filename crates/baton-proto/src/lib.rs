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

pub mod published;

/// The `googclient_traceparent` attribute as one entry of a message's
/// attribute map (`PubsubMessage.attributes`, field 2), with a value of the
/// W3C form's length, written as prost writes a map entry. Baton's
/// publisher writes its trace context this way without building a map, and
/// the server takes such an entry apart without decoding it into one; the
/// two must agree byte for byte, so the bytes are defined here, once.
pub mod traceparent_entry {
    use prost::bytes::BufMut;

    /// The attribute's key (the official clients' carrier).
    pub const KEY: &str = "googclient_traceparent";
    /// The length of a version-`00` `traceparent` value.
    pub const VALUE_LEN: usize = 55;
    /// `PubsubMessage.attributes`' tag: field 2, length-delimited.
    const TAG: u8 = 2 << 3 | 2;
    /// What comes between the tag and the value: the entry's length, the
    /// key (field 1, length-delimited), and the value's tag (field 2) and
    /// length. Every length is under 128, so one byte each.
    const HEAD: [u8; 27] = {
        let mut head = [0_u8; 27];
        head[0] = (27 - 1 + VALUE_LEN) as u8;
        head[1] = 1 << 3 | 2;
        head[2] = KEY.len() as u8;
        let key = KEY.as_bytes();
        let mut at = 0;
        while at < key.len() {
            head[3 + at] = key[at];
            at += 1;
        }
        head[25] = 2 << 3 | 2;
        head[26] = VALUE_LEN as u8;
        head
    };
    /// What the entry adds to a message's encoding, tag included.
    pub const ENCODED_LEN: usize = 1 + AFTER_TAG_LEN;
    /// What the entry takes after its tag.
    pub const AFTER_TAG_LEN: usize = HEAD.len() + VALUE_LEN;

    /// Writes the entry for `value`, tag included.
    pub fn encode(value: &[u8; VALUE_LEN], buf: &mut impl BufMut) {
        buf.put_u8(TAG);
        buf.put_slice(&HEAD);
        buf.put_slice(value);
    }

    /// The value of the entry that `bytes` start with, `bytes` being what
    /// follows an attribute entry's tag; `None` unless the entry is written
    /// exactly as [`encode`] writes it. The entry takes [`AFTER_TAG_LEN`]
    /// bytes.
    pub fn value_after_tag(bytes: &[u8]) -> Option<&[u8; VALUE_LEN]> {
        bytes.strip_prefix(&HEAD)?.get(..VALUE_LEN)?.try_into().ok()
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;

    use super::pubsub::PubsubMessage;
    use super::traceparent_entry::{self, ENCODED_LEN, KEY};

    #[test]
    fn the_traceparent_entry_is_the_map_entry_prost_writes() {
        let value = *b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut ours = Vec::new();
        traceparent_entry::encode(&value, &mut ours);
        let message = PubsubMessage {
            attributes: [(KEY.to_string(), String::from_utf8(value.to_vec()).unwrap())].into(),
            ..Default::default()
        };
        assert_eq!(ours, message.encode_to_vec());
        assert_eq!(ours.len(), ENCODED_LEN);
        assert_eq!(traceparent_entry::value_after_tag(&ours[1..]), Some(&value));
        let cut = &ours[1..ours.len() - 1];
        assert_eq!(traceparent_entry::value_after_tag(cut), None);
        let mut other_key = ours.clone();
        other_key[5] = b'x';
        assert_eq!(traceparent_entry::value_after_tag(&other_key[1..]), None);
    }
}
