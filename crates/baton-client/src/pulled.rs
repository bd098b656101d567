//! StreamingPull answers as the subscriber reads them: each message's
//! `googclient_traceparent` held apart from its attribute map
//! ([`PublishedMessage`]), so that a traced subscriber reads the publisher's
//! context without building a map entry for it, and a handler that never
//! looks at the attributes never pays for one. The bytes are the standard
//! `StreamingPullResponse`'s; a property test decodes both ways.

use baton_proto::published::{PublishedMessage, in_field};
use baton_proto::pubsub::streaming_pull_response::{
    AcknowledgeConfirmation, ModifyAckDeadlineConfirmation, SubscriptionProperties,
};
use baton_proto::pubsub::{self as proto};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

/// A `StreamingPullResponse`, its messages with their trace contexts held
/// apart. The subscriber does not read the confirmations (it sends its acks
/// and modacks as unary calls, whose answers carry their results); they are
/// decoded all the same, so that an answer fails to decode exactly when the
/// standard one does.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PulledBatch {
    pub received_messages: Vec<PulledMessage>,
    pub acknowledge_confirmation: Option<AcknowledgeConfirmation>,
    pub modify_ack_deadline_confirmation: Option<ModifyAckDeadlineConfirmation>,
    pub subscription_properties: Option<SubscriptionProperties>,
}

/// One `ReceivedMessage` of a [`PulledBatch`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PulledMessage {
    pub ack_id: String,
    pub message: Option<PublishedMessage>,
    pub delivery_attempt: i32,
}

impl From<proto::ReceivedMessage> for PulledMessage {
    /// A message of a unary Pull, its trace context taken out of the map.
    fn from(received: proto::ReceivedMessage) -> Self {
        Self {
            ack_id: received.ack_id,
            message: received.message.map(PublishedMessage::from),
            delivery_attempt: received.delivery_attempt,
        }
    }
}

/// `StreamingPullResponse`'s field numbers.
const RECEIVED_MESSAGES: u32 = 1;
const MODIFY_ACK_DEADLINE_CONFIRMATION: u32 = 3;
const SUBSCRIPTION_PROPERTIES: u32 = 4;
const ACKNOWLEDGE_CONFIRMATION: u32 = 5;
/// `ReceivedMessage`'s field numbers.
const ACK_ID: u32 = 1;
const MESSAGE: u32 = 2;
const DELIVERY_ATTEMPT: u32 = 3;

/// Merges an optional message field, as prost's generated code does.
fn merge_optional<M: Message + Default>(
    wire_type: WireType,
    field: &mut Option<M>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), prost::DecodeError> {
    encoding::message::merge(wire_type, field.get_or_insert_with(M::default), buf, ctx)
}

/// The encoded length of an optional message field.
fn optional_len<M: Message>(tag: u32, field: &Option<M>) -> usize {
    field
        .as_ref()
        .map_or(0, |message| encoding::message::encoded_len(tag, message))
}

impl Message for PulledBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::message::encode_repeated(RECEIVED_MESSAGES, &self.received_messages, buf);
        if let Some(confirmation) = &self.modify_ack_deadline_confirmation {
            encoding::message::encode(MODIFY_ACK_DEADLINE_CONFIRMATION, confirmation, buf);
        }
        if let Some(properties) = &self.subscription_properties {
            encoding::message::encode(SUBSCRIPTION_PROPERTIES, properties, buf);
        }
        if let Some(confirmation) = &self.acknowledge_confirmation {
            encoding::message::encode(ACKNOWLEDGE_CONFIRMATION, confirmation, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            RECEIVED_MESSAGES => in_field(
                encoding::message::merge_repeated(wire_type, &mut self.received_messages, buf, ctx),
                "StreamingPullResponse",
                "received_messages",
            ),
            MODIFY_ACK_DEADLINE_CONFIRMATION => in_field(
                merge_optional(
                    wire_type,
                    &mut self.modify_ack_deadline_confirmation,
                    buf,
                    ctx,
                ),
                "StreamingPullResponse",
                "modify_ack_deadline_confirmation",
            ),
            SUBSCRIPTION_PROPERTIES => in_field(
                merge_optional(wire_type, &mut self.subscription_properties, buf, ctx),
                "StreamingPullResponse",
                "subscription_properties",
            ),
            ACKNOWLEDGE_CONFIRMATION => in_field(
                merge_optional(wire_type, &mut self.acknowledge_confirmation, buf, ctx),
                "StreamingPullResponse",
                "acknowledge_confirmation",
            ),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(RECEIVED_MESSAGES, &self.received_messages)
            + optional_len(
                MODIFY_ACK_DEADLINE_CONFIRMATION,
                &self.modify_ack_deadline_confirmation,
            )
            + optional_len(SUBSCRIPTION_PROPERTIES, &self.subscription_properties)
            + optional_len(ACKNOWLEDGE_CONFIRMATION, &self.acknowledge_confirmation)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Message for PulledMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.ack_id.is_empty() {
            encoding::string::encode(ACK_ID, &self.ack_id, buf);
        }
        if let Some(message) = &self.message {
            encoding::message::encode(MESSAGE, message, buf);
        }
        if self.delivery_attempt != 0 {
            encoding::int32::encode(DELIVERY_ATTEMPT, &self.delivery_attempt, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            ACK_ID => in_field(
                encoding::string::merge(wire_type, &mut self.ack_id, buf, ctx),
                "ReceivedMessage",
                "ack_id",
            ),
            MESSAGE => in_field(
                merge_optional(wire_type, &mut self.message, buf, ctx),
                "ReceivedMessage",
                "message",
            ),
            DELIVERY_ATTEMPT => in_field(
                encoding::int32::merge(wire_type, &mut self.delivery_attempt, buf, ctx),
                "ReceivedMessage",
                "delivery_attempt",
            ),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let ack_id = if self.ack_id.is_empty() {
            0
        } else {
            encoding::string::encoded_len(ACK_ID, &self.ack_id)
        };
        let message = optional_len(MESSAGE, &self.message);
        let attempt = if self.delivery_attempt == 0 {
            0
        } else {
            encoding::int32::encoded_len(DELIVERY_ATTEMPT, &self.delivery_attempt)
        };
        ack_id + message + attempt
    }

    fn clear(&mut self) {
        self.ack_id.clear();
        self.message = None;
        self.delivery_attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use baton_proto::published::TRACEPARENT_ATTRIBUTE;
    use baton_proto::pubsub::PubsubMessage;
    use proptest::prelude::*;

    use super::*;

    /// A delivered message, sometimes with a trace context among its
    /// attributes (of the usual form or not).
    fn message() -> impl Strategy<Value = PubsubMessage> {
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::hash_map("[a-z_]{1,24}", "[ -~]{0,60}", 0..4),
            proptest::option::of(prop_oneof![
                "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]",
                "[ -~]{0,80}",
                "\\PC{50,56}",
            ]),
            "[a-z]{0,8}",
            "[0-9]{1,12}",
        )
            .prop_map(
                |(data, mut attributes, traceparent, ordering_key, message_id)| {
                    if let Some(value) = traceparent {
                        attributes.insert(TRACEPARENT_ATTRIBUTE.to_string(), value);
                    }
                    PubsubMessage {
                        data,
                        attributes,
                        ordering_key,
                        message_id,
                        ..Default::default()
                    }
                },
            )
    }

    fn response() -> impl Strategy<Value = proto::StreamingPullResponse> {
        (
            proptest::collection::vec(
                (
                    "[a-z0-9:/]{0,40}",
                    proptest::option::of(message()),
                    0..5_i32,
                ),
                0..5,
            ),
            proptest::option::of((any::<bool>(), any::<bool>())),
            proptest::collection::vec("[a-z0-9]{1,10}", 0..3),
        )
            .prop_map(
                |(received, properties, confirmed)| proto::StreamingPullResponse {
                    received_messages: received
                        .into_iter()
                        .map(
                            |(ack_id, message, delivery_attempt)| proto::ReceivedMessage {
                                ack_id,
                                message,
                                delivery_attempt,
                            },
                        )
                        .collect(),
                    subscription_properties: properties.map(|(exactly_once, ordering)| {
                        SubscriptionProperties {
                            exactly_once_delivery_enabled: exactly_once,
                            message_ordering_enabled: ordering,
                        }
                    }),
                    acknowledge_confirmation: (!confirmed.is_empty()).then(|| {
                        AcknowledgeConfirmation {
                            ack_ids: confirmed,
                            ..Default::default()
                        }
                    }),
                    ..Default::default()
                },
            )
    }

    /// What the subscriber reads of a standard answer.
    fn read(response: proto::StreamingPullResponse) -> PulledBatch {
        PulledBatch {
            received_messages: response
                .received_messages
                .into_iter()
                .map(PulledMessage::from)
                .collect(),
            acknowledge_confirmation: response.acknowledge_confirmation,
            modify_ack_deadline_confirmation: response.modify_ack_deadline_confirmation,
            subscription_properties: response.subscription_properties,
        }
    }

    proptest! {
        #[test]
        fn an_answer_decodes_as_prost_decodes_it_with_the_context_apart(
            response in response(),
        ) {
            let bytes = response.encode_to_vec();
            let batch = PulledBatch::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(&batch, &read(response.clone()));
            for (pulled, standard) in batch.received_messages.iter().zip(&response.received_messages) {
                let (Some(ours), Some(theirs)) = (&pulled.message, &standard.message) else {
                    prop_assert_eq!(pulled.message.is_none(), standard.message.is_none());
                    continue;
                };
                prop_assert_eq!(&ours.to_message(), theirs);
                prop_assert_eq!(ours.attributes().to_map(), theirs.attributes.clone());
                prop_assert_eq!(ours.encoded_len(), theirs.encoded_len());
            }
            // What the subscriber keeps encodes back to what prost reads
            // as the same messages.
            let back = proto::StreamingPullResponse::decode(batch.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(back, response);
        }

        #[test]
        fn a_damaged_answer_fails_as_prost_fails_it(
            response in response(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = response.encode_to_vec();
            if !bytes.is_empty() {
                for (at, value) in flips {
                    let at = at.index(bytes.len());
                    bytes[at] = value;
                }
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            match (PulledBatch::decode(bytes.as_slice()), proto::StreamingPullResponse::decode(bytes.as_slice())) {
                (Ok(batch), Ok(standard)) => prop_assert_eq!(batch, read(standard)),
                (Err(ours), Err(prost)) => prop_assert_eq!(ours.to_string(), prost.to_string()),
                (ours, prost) => prop_assert!(false, "{:?} against {:?}", ours, prost),
            }
        }
    }
}
