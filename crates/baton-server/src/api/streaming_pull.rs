//! StreamingPull, the one bidirectional RPC: a session per stream that
//! delivers leased messages as they become ready, applies in-stream acks and
//! modacks, answers keepalives, and ends with UNAVAILABLE on shutdown or
//! NOT_FOUND when the subscription goes away. It is written against plain
//! streams and channels of typed messages, so the transport (gRPC) only
//! adapts its own stream types.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

use baton_broker::names::{self, Collection};
use baton_broker::{Broker, BrokerError, BrokerResult, LeasedMessage, StreamRegistration};
use baton_proto::pubsub::{StreamingPullRequest, StreamingPullResponse, streaming_pull_response};
use bytes::BufMut;
use futures::{Stream, StreamExt};
use prost::Message as _;
use tokio::sync::mpsc;

use super::rpc::{PubSubApi, RequestContext};

/// The RPC's full name.
pub const NAME: &str = "google.pubsub.v1.Subscriber/StreamingPull";

/// Most messages in one StreamingPull response.
const STREAM_BATCH: usize = 1000;

/// Responses waiting for a slow reader; a full queue stops leasing to it.
const RESPONSE_QUEUE: usize = 4;

/// What a session sends: responses, and at most one error that ends it.
pub type Responses = mpsc::Receiver<BrokerResult<StreamingPullBatch>>;

/// `StreamingPullResponse.received_messages`' field number.
const RECEIVED_MESSAGES: u32 = 1;

/// One StreamingPull response, its messages shared with the broker rather
/// than copied into it: the gRPC transport writes it with [`Self::encode`],
/// which gives the bytes prost gives for [`Self::into_response`]'s result.
#[derive(Debug)]
pub struct StreamingPullBatch {
    /// The messages leased, in order.
    pub messages: Vec<LeasedMessage>,
    /// The rest of the response; its `received_messages` stays empty.
    pub rest: StreamingPullResponse,
}

impl StreamingPullBatch {
    /// The response in the standard type.
    pub fn into_response(self) -> StreamingPullResponse {
        let mut response = self.rest;
        response.received_messages = self
            .messages
            .into_iter()
            .map(LeasedMessage::into_received)
            .collect();
        response
    }

    /// Writes the response's protobuf encoding to `buf`, fields in number
    /// order as prost writes them.
    pub fn encode(&self, buf: &mut impl BufMut) {
        for message in &self.messages {
            message.encode(RECEIVED_MESSAGES, buf);
        }
        self.rest.encode_raw(buf);
    }

    /// The length [`Self::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        self.messages
            .iter()
            .map(|m| m.encoded_len(RECEIVED_MESSAGES))
            .sum::<usize>()
            + self.rest.encoded_len()
    }
}

fn stream_deadline_error() -> BrokerError {
    BrokerError::invalid("stream_ack_deadline_seconds must be between 10 and 600 seconds")
}

impl PubSubApi {
    /// Opens a StreamingPull session from its `first` request (which names
    /// the subscription and the stream's settings) and the rest of the
    /// client's requests; the session runs in the background and its
    /// responses come out of the returned channel.
    pub async fn streaming_pull<S, E>(
        &self,
        ctx: &RequestContext,
        first: Option<StreamingPullRequest>,
        inbound: S,
    ) -> BrokerResult<Responses>
    where
        S: Stream<Item = Result<StreamingPullRequest, E>> + Send + Unpin + 'static,
        E: Display + Send + 'static,
    {
        tracing::trace!(rpc = NAME, transport = ?ctx.transport, "request");
        let first = first
            .filter(|first| !first.subscription.is_empty())
            .ok_or_else(|| BrokerError::invalid("first message must set subscription"))?;
        self.admit(ctx, super::permissions::consume_checks(&first.subscription))?;
        names::parse(&first.subscription, Collection::Subscriptions)?;
        if !(10..=600).contains(&first.stream_ack_deadline_seconds) {
            return Err(stream_deadline_error());
        }
        let registration = self.broker.register_stream(
            &first.subscription,
            first.stream_ack_deadline_seconds,
            first.max_outstanding_messages,
            first.max_outstanding_bytes,
        )?;
        tracing::debug!(
            subscription = %first.subscription,
            client_id = %first.client_id,
            "streaming pull opened"
        );
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let session = Session {
            broker: self.broker.clone(),
            registration,
            tx,
        };
        tokio::spawn(session.run(first, inbound));
        Ok(rx)
    }
}

/// Per-id outcome of in-stream acks and modacks, for exactly-once streams.
#[derive(Default)]
struct Confirmation {
    ack: streaming_pull_response::AcknowledgeConfirmation,
    modack: streaming_pull_response::ModifyAckDeadlineConfirmation,
}

impl Confirmation {
    fn is_empty(&self) -> bool {
        self.ack.ack_ids.is_empty()
            && self.ack.invalid_ack_ids.is_empty()
            && self.modack.ack_ids.is_empty()
            && self.modack.invalid_ack_ids.is_empty()
    }

    /// Records the result of settling `ids`; errors other than per-id
    /// exactly-once failures end the stream.
    fn record(
        &mut self,
        ids: &[String],
        result: BrokerResult<()>,
        is_ack: bool,
    ) -> BrokerResult<()> {
        let failed: Vec<String> = match result {
            Ok(()) => Vec::new(),
            Err(error) if !error.ack_failures.is_empty() => {
                error.ack_failures.into_iter().map(|f| f.ack_id).collect()
            }
            Err(error) => return Err(error),
        };
        let succeeded = ids.iter().filter(|id| !failed.contains(id)).cloned();
        if is_ack {
            self.ack.ack_ids.extend(succeeded);
            self.ack.invalid_ack_ids.extend(failed);
        } else {
            self.modack.ack_ids.extend(succeeded);
            self.modack.invalid_ack_ids.extend(failed);
        }
        Ok(())
    }
}

/// Resolves once the broker starts shutting down.
async fn shutdown_begun(signal: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the broker is gone, which is a shutdown as well.
    let _ = signal.wait_for(|down| *down).await;
}

/// One stream's session; see the module docs.
struct Session {
    broker: Arc<Broker>,
    registration: StreamRegistration,
    tx: mpsc::Sender<BrokerResult<StreamingPullBatch>>,
}

impl Session {
    fn response(&self, messages: Vec<LeasedMessage>) -> StreamingPullBatch {
        let (exactly_once, ordered) = self
            .broker
            .subscription_flags(self.registration.subscription())
            .unwrap_or((self.registration.exactly_once, self.registration.ordered));
        StreamingPullBatch {
            messages,
            rest: StreamingPullResponse {
                received_messages: Vec::new(),
                acknowledge_confirmation: Some(Default::default()),
                modify_ack_deadline_confirmation: Some(Default::default()),
                subscription_properties: Some(streaming_pull_response::SubscriptionProperties {
                    exactly_once_delivery_enabled: exactly_once,
                    message_ordering_enabled: ordered,
                }),
            },
        }
    }

    async fn run<S, E>(mut self, first: StreamingPullRequest, mut inbound: S)
    where
        S: Stream<Item = Result<StreamingPullRequest, E>> + Send + Unpin,
        E: Display,
    {
        if let Err(error) = self.apply(&first, true).await {
            let _ = self.tx.send(Err(error)).await;
            return;
        }
        let mut shutdown = self.broker.shutdown_signal();
        let notify = self.registration.notify();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let channel_full = match self.tx.try_reserve() {
                Ok(permit) => match self.broker.stream_lease(&self.registration, STREAM_BATCH) {
                    Ok(messages) if !messages.is_empty() => {
                        permit.send(Ok(self.response(messages)));
                        continue;
                    }
                    Ok(_) => false,
                    Err(error) => {
                        permit.send(Err(error));
                        return;
                    }
                },
                Err(mpsc::error::TrySendError::Full(())) => true,
                Err(mpsc::error::TrySendError::Closed(())) => return,
            };
            if channel_full {
                // The client is not reading: stop leasing to it, but keep
                // serving its acks until it reads or goes away.
                let tx = self.tx.clone();
                tokio::select! {
                    permit = tx.reserve() => match permit {
                        Ok(permit) => { drop(permit); continue; }
                        Err(_) => return,
                    },
                    message = inbound.next() => {
                        if self.on_inbound(message).await.is_err() { return; }
                        continue;
                    }
                    () = shutdown_begun(&mut shutdown) => return,
                }
            }
            tokio::select! {
                () = &mut notified => {}
                message = inbound.next() => {
                    if self.on_inbound(message).await.is_err() { return; }
                }
                () = shutdown_begun(&mut shutdown) => {
                    let _ = self.tx.send(Err(BrokerError::shutting_down())).await;
                    return;
                }
                () = self.tx.closed() => return,
            }
        }
    }

    /// Handles one inbound item; `Err(())` ends the stream.
    async fn on_inbound<E: Display>(
        &mut self,
        message: Option<Result<StreamingPullRequest, E>>,
    ) -> Result<(), ()> {
        match message {
            Some(Ok(request)) => match self.apply(&request, false).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    Err(())
                }
            },
            // The client half-closed: finish with OK, as the emulator does.
            None => Err(()),
            Some(Err(error)) => {
                tracing::debug!(%error, "streaming pull inbound error");
                Err(())
            }
        }
    }

    async fn apply(&mut self, request: &StreamingPullRequest, first: bool) -> BrokerResult<()> {
        if !first
            && (!request.subscription.is_empty()
                || !request.client_id.is_empty()
                || request.max_outstanding_messages != 0
                || request.max_outstanding_bytes != 0
                || request.protocol_version != 0)
        {
            return Err(BrokerError::invalid(
                "subscription, client_id, max_outstanding_messages, max_outstanding_bytes and protocol_version may only be set in the first request",
            ));
        }
        if request.modify_deadline_ack_ids.len() != request.modify_deadline_seconds.len() {
            return Err(BrokerError::invalid(
                "modify_deadline_seconds and modify_deadline_ack_ids must be the same length",
            ));
        }
        if request.modify_deadline_seconds.iter().any(|s| *s < 0) {
            return Err(BrokerError::invalid("Ack deadline cannot be negative"));
        }
        if !first && request.stream_ack_deadline_seconds != 0 {
            if !(10..=600).contains(&request.stream_ack_deadline_seconds) {
                return Err(stream_deadline_error());
            }
            self.registration
                .set_deadline(request.stream_ack_deadline_seconds);
        }
        let subscription = self.registration.subscription().to_string();
        let mut confirmation = Confirmation::default();
        if !request.ack_ids.is_empty() {
            let result = self.broker.acknowledge(&subscription, &request.ack_ids);
            confirmation.record(&request.ack_ids, result, true)?;
        }
        let mut by_deadline: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (ack_id, seconds) in request
            .modify_deadline_ack_ids
            .iter()
            .zip(&request.modify_deadline_seconds)
        {
            by_deadline
                .entry(*seconds)
                .or_default()
                .push(ack_id.clone());
        }
        for (seconds, ack_ids) in by_deadline {
            let result = self
                .broker
                .modify_ack_deadline(&subscription, &ack_ids, seconds);
            confirmation.record(&ack_ids, result, false)?;
        }
        let exactly_once = self
            .broker
            .subscription_flags(&subscription)
            .map(|(eod, _)| eod)
            .unwrap_or(false);
        if exactly_once && !confirmation.is_empty() {
            // Exactly-once clients wait for these confirmations, and an
            // ack they confirm must not come back after a restart.
            self.broker.durable().await?;
            let mut response = self.response(Vec::new());
            response.rest.acknowledge_confirmation = Some(confirmation.ack);
            response.rest.modify_ack_deadline_confirmation = Some(confirmation.modack);
            let _ = self.tx.send(Ok(response)).await;
        }
        let keepalive = !first
            && request.ack_ids.is_empty()
            && request.modify_deadline_ack_ids.is_empty()
            && request.stream_ack_deadline_seconds == 0;
        if keepalive {
            // Answer so the client's 15 s keepalive watchdog stays calm; if
            // the client is not reading, it does not need the answer.
            let _ = self.tx.try_send(Ok(self.response(Vec::new())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use baton_broker::HeldMessage;
    use baton_proto::pubsub::PubsubMessage;

    use super::*;

    #[test]
    fn a_batch_is_written_as_its_standard_response() {
        let messages = (0..3)
            .map(|i| {
                let message = PubsubMessage {
                    data: vec![i; 10 * usize::from(i)],
                    attributes: [
                        ("googclient_traceparent".to_string(), format!("00-{i}")),
                        ("i".to_string(), i.to_string()),
                    ]
                    .into(),
                    message_id: (100 + u64::from(i)).to_string(),
                    ordering_key: if i == 1 { "k".into() } else { String::new() },
                    ..Default::default()
                };
                LeasedMessage::new(
                    format!("projects/p/subscriptions/s:{i}"),
                    Arc::new(HeldMessage::new(message)),
                    i32::from(i),
                )
            })
            .collect();
        let batch = StreamingPullBatch {
            messages,
            rest: StreamingPullResponse {
                acknowledge_confirmation: Some(streaming_pull_response::AcknowledgeConfirmation {
                    ack_ids: vec!["a".into()],
                    ..Default::default()
                }),
                subscription_properties: Some(streaming_pull_response::SubscriptionProperties {
                    exactly_once_delivery_enabled: true,
                    message_ordering_enabled: false,
                }),
                ..Default::default()
            },
        };
        let mut written = Vec::new();
        batch.encode(&mut written);
        assert_eq!(written.len(), batch.encoded_len());
        let response = batch.into_response();
        assert_eq!(response.received_messages.len(), 3);
        assert_eq!(written, response.encode_to_vec());
        assert_eq!(
            StreamingPullResponse::decode(written.as_slice()).unwrap(),
            response
        );
    }
}
