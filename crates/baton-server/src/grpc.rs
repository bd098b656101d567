//! The gRPC face: Publisher and Subscriber services over the broker.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_broker::{Broker, BrokerError, PullWait, StreamRegistration};
use baton_proto::pubsub::publisher_server::Publisher;
use baton_proto::pubsub::subscriber_server::Subscriber;
use baton_proto::pubsub::{
    AcknowledgeRequest, CreateSnapshotRequest, DeleteSnapshotRequest, DeleteSubscriptionRequest,
    DeleteTopicRequest, DetachSubscriptionRequest, DetachSubscriptionResponse, GetSnapshotRequest,
    GetSubscriptionRequest, GetTopicRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    ListSubscriptionsRequest, ListSubscriptionsResponse, ListTopicSnapshotsRequest,
    ListTopicSnapshotsResponse, ListTopicSubscriptionsRequest, ListTopicSubscriptionsResponse,
    ListTopicsRequest, ListTopicsResponse, ModifyAckDeadlineRequest, ModifyPushConfigRequest,
    PublishRequest, PublishResponse, PullRequest, PullResponse, ReceivedMessage, SeekRequest,
    SeekResponse, Snapshot, StreamingPullRequest, StreamingPullResponse, Subscription, Topic,
    UpdateSnapshotRequest, UpdateSubscriptionRequest, UpdateTopicRequest, streaming_pull_response,
};
use baton_proto::wkt;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::status::to_status;

/// Longest a Pull without `return_immediately` waits when the caller set no
/// deadline (the emulator's long poll is about 90 s).
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(90);

/// Most messages in one StreamingPull response.
const STREAM_BATCH: usize = 1000;

type Reply<T> = Result<Response<T>, Status>;

/// Both gRPC services share one broker handle.
#[derive(Debug, Clone)]
pub struct PubSubService {
    broker: Arc<Broker>,
}

impl PubSubService {
    /// Serves `broker` over gRPC.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

fn ok<T>(result: Result<T, BrokerError>) -> Reply<T> {
    result.map(Response::new).map_err(to_status)
}

fn empty<T>(result: Result<T, BrokerError>) -> Reply<wkt::Empty> {
    ok(result.map(|_| wkt::Empty {}))
}

fn mask_paths(mask: Option<wkt::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

/// Parses the `grpc-timeout` header (`<digits><unit>`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// When a waiting Pull must answer: shortly before the caller gives up, so
/// an empty answer arrives instead of DEADLINE_EXCEEDED.
pub fn pull_deadline(caller_timeout: Option<Duration>) -> Instant {
    let wait = match caller_timeout {
        Some(timeout) => {
            let margin = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
            timeout.saturating_sub(margin).min(MAX_PULL_WAIT)
        }
        None => MAX_PULL_WAIT,
    };
    Instant::now() + wait
}

#[tonic::async_trait]
impl Publisher for PubSubService {
    async fn create_topic(&self, request: Request<Topic>) -> Reply<Topic> {
        ok(self
            .broker
            .durably(self.broker.create_topic(request.into_inner()))
            .await)
    }

    async fn update_topic(&self, request: Request<UpdateTopicRequest>) -> Reply<Topic> {
        let request = request.into_inner();
        let paths = mask_paths(request.update_mask);
        ok(self
            .broker
            .durably(
                self.broker
                    .update_topic(request.topic.unwrap_or_default(), &paths),
            )
            .await)
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Reply<PublishResponse> {
        let request = request.into_inner();
        ok(self
            .broker
            .durably(
                self.broker
                    .publish(&request.topic, request.messages)
                    .map(|message_ids| PublishResponse { message_ids }),
            )
            .await)
    }

    async fn get_topic(&self, request: Request<GetTopicRequest>) -> Reply<Topic> {
        ok(self.broker.get_topic(&request.into_inner().topic))
    }

    async fn list_topics(&self, request: Request<ListTopicsRequest>) -> Reply<ListTopicsResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_topics(&r.project, r.page_size, &r.page_token)
            .map(|page| ListTopicsResponse {
                topics: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn list_topic_subscriptions(
        &self,
        request: Request<ListTopicSubscriptionsRequest>,
    ) -> Reply<ListTopicSubscriptionsResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_topic_subscriptions(&r.topic, r.page_size, &r.page_token)
            .map(|page| ListTopicSubscriptionsResponse {
                subscriptions: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn list_topic_snapshots(
        &self,
        request: Request<ListTopicSnapshotsRequest>,
    ) -> Reply<ListTopicSnapshotsResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_topic_snapshots(&r.topic, r.page_size, &r.page_token)
            .map(|page| ListTopicSnapshotsResponse {
                snapshots: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn delete_topic(&self, request: Request<DeleteTopicRequest>) -> Reply<wkt::Empty> {
        empty(
            self.broker
                .durably(self.broker.delete_topic(&request.into_inner().topic))
                .await,
        )
    }

    async fn detach_subscription(
        &self,
        request: Request<DetachSubscriptionRequest>,
    ) -> Reply<DetachSubscriptionResponse> {
        ok(self
            .broker
            .durably(
                self.broker
                    .detach_subscription(&request.into_inner().subscription)
                    .map(|()| DetachSubscriptionResponse {}),
            )
            .await)
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<StreamingPullResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Subscriber for PubSubService {
    async fn create_subscription(&self, request: Request<Subscription>) -> Reply<Subscription> {
        ok(self
            .broker
            .durably(self.broker.create_subscription(request.into_inner()))
            .await)
    }

    async fn get_subscription(
        &self,
        request: Request<GetSubscriptionRequest>,
    ) -> Reply<Subscription> {
        ok(self
            .broker
            .get_subscription(&request.into_inner().subscription))
    }

    async fn update_subscription(
        &self,
        request: Request<UpdateSubscriptionRequest>,
    ) -> Reply<Subscription> {
        let request = request.into_inner();
        let paths = mask_paths(request.update_mask);
        ok(self
            .broker
            .durably(
                self.broker
                    .update_subscription(request.subscription.unwrap_or_default(), &paths),
            )
            .await)
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Reply<ListSubscriptionsResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_subscriptions(&r.project, r.page_size, &r.page_token)
            .map(|page| ListSubscriptionsResponse {
                subscriptions: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn delete_subscription(
        &self,
        request: Request<DeleteSubscriptionRequest>,
    ) -> Reply<wkt::Empty> {
        empty(
            self.broker
                .durably(
                    self.broker
                        .delete_subscription(&request.into_inner().subscription),
                )
                .await,
        )
    }

    async fn modify_ack_deadline(
        &self,
        request: Request<ModifyAckDeadlineRequest>,
    ) -> Reply<wkt::Empty> {
        let r = request.into_inner();
        // A nack counts a delivery attempt (and may dead-letter): durable too.
        let result =
            self.broker
                .modify_ack_deadline(&r.subscription, &r.ack_ids, r.ack_deadline_seconds);
        empty(self.broker.durably(result).await)
    }

    async fn acknowledge(&self, request: Request<AcknowledgeRequest>) -> Reply<wkt::Empty> {
        let r = request.into_inner();
        empty(
            self.broker
                .durably(self.broker.acknowledge(&r.subscription, &r.ack_ids))
                .await,
        )
    }

    async fn pull(&self, request: Request<PullRequest>) -> Reply<PullResponse> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let r = request.into_inner();
        #[allow(deprecated)]
        let wait = if r.return_immediately {
            PullWait::Immediate
        } else {
            PullWait::Until(pull_deadline(timeout))
        };
        ok(self
            .broker
            .pull(&r.subscription, r.max_messages, wait)
            .await
            .map(|received_messages| PullResponse { received_messages }))
    }

    type StreamingPullStream = ResponseStream;

    async fn streaming_pull(
        &self,
        request: Request<Streaming<StreamingPullRequest>>,
    ) -> Reply<Self::StreamingPullStream> {
        let mut inbound = request.into_inner();
        let first = match inbound.message().await? {
            Some(first) => first,
            None => {
                return Err(Status::invalid_argument(
                    "first message must set subscription",
                ));
            }
        };
        if first.subscription.is_empty() {
            return Err(Status::invalid_argument(
                "first message must set subscription",
            ));
        }
        baton_broker::names::parse(
            &first.subscription,
            baton_broker::names::Collection::Subscriptions,
        )
        .map_err(to_status)?;
        if !(10..=600).contains(&first.stream_ack_deadline_seconds) {
            return Err(Status::invalid_argument(
                "stream_ack_deadline_seconds must be between 10 and 600 seconds",
            ));
        }
        let registration = self
            .broker
            .register_stream(
                &first.subscription,
                first.stream_ack_deadline_seconds,
                first.max_outstanding_messages,
                first.max_outstanding_bytes,
            )
            .map_err(to_status)?;
        tracing::debug!(
            subscription = %first.subscription,
            client_id = %first.client_id,
            "streaming pull opened"
        );
        let (tx, rx) = mpsc::channel(4);
        let session = StreamSession {
            broker: self.broker.clone(),
            registration,
            tx,
        };
        tokio::spawn(session.run(first, inbound));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn modify_push_config(
        &self,
        request: Request<ModifyPushConfigRequest>,
    ) -> Reply<wkt::Empty> {
        let r = request.into_inner();
        empty(
            self.broker
                .durably(
                    self.broker
                        .modify_push_config(&r.subscription, r.push_config),
                )
                .await,
        )
    }

    async fn get_snapshot(&self, request: Request<GetSnapshotRequest>) -> Reply<Snapshot> {
        ok(self.broker.get_snapshot(&request.into_inner().snapshot))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Reply<ListSnapshotsResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_snapshots(&r.project, r.page_size, &r.page_token)
            .map(|page| ListSnapshotsResponse {
                snapshots: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn create_snapshot(&self, request: Request<CreateSnapshotRequest>) -> Reply<Snapshot> {
        let r = request.into_inner();
        ok(self
            .broker
            .durably(
                self.broker
                    .create_snapshot(&r.name, &r.subscription, r.labels),
            )
            .await)
    }

    async fn update_snapshot(&self, request: Request<UpdateSnapshotRequest>) -> Reply<Snapshot> {
        let r = request.into_inner();
        let paths = mask_paths(r.update_mask);
        ok(self
            .broker
            .durably(
                self.broker
                    .update_snapshot(r.snapshot.unwrap_or_default(), &paths),
            )
            .await)
    }

    async fn delete_snapshot(&self, request: Request<DeleteSnapshotRequest>) -> Reply<wkt::Empty> {
        empty(
            self.broker
                .durably(self.broker.delete_snapshot(&request.into_inner().snapshot))
                .await,
        )
    }

    async fn seek(&self, request: Request<SeekRequest>) -> Reply<SeekResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .durably(
                self.broker
                    .seek(&r.subscription, r.target)
                    .map(|()| SeekResponse {}),
            )
            .await)
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
        result: Result<(), BrokerError>,
        is_ack: bool,
    ) -> Result<(), Status> {
        let failed: Vec<String> = match result {
            Ok(()) => Vec::new(),
            Err(error) if !error.ack_failures.is_empty() => {
                error.ack_failures.into_iter().map(|f| f.ack_id).collect()
            }
            Err(error) => return Err(to_status(error)),
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

/// One StreamingPull stream: delivers leased messages as they become ready,
/// applies in-stream acks and modacks, answers keepalives, and ends with
/// UNAVAILABLE on shutdown or NOT_FOUND when the subscription goes away.
struct StreamSession {
    broker: Arc<Broker>,
    registration: StreamRegistration,
    tx: mpsc::Sender<Result<StreamingPullResponse, Status>>,
}

impl StreamSession {
    fn response(&self, received_messages: Vec<ReceivedMessage>) -> StreamingPullResponse {
        let (exactly_once, ordered) = self
            .broker
            .subscription_flags(self.registration.subscription())
            .unwrap_or((self.registration.exactly_once, self.registration.ordered));
        StreamingPullResponse {
            received_messages,
            acknowledge_confirmation: Some(Default::default()),
            modify_ack_deadline_confirmation: Some(Default::default()),
            subscription_properties: Some(streaming_pull_response::SubscriptionProperties {
                exactly_once_delivery_enabled: exactly_once,
                message_ordering_enabled: ordered,
            }),
        }
    }

    async fn run(
        mut self,
        first: StreamingPullRequest,
        mut inbound: Streaming<StreamingPullRequest>,
    ) {
        if let Err(status) = self.apply(&first, true).await {
            let _ = self.tx.send(Err(status)).await;
            return;
        }
        let mut shutdown = self.broker.shutdown_signal();
        let notify = self.registration.notify();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let channel_full = match self.tx.try_reserve() {
                Ok(permit) => match self.broker.stream_take(&self.registration, STREAM_BATCH) {
                    Ok(messages) if !messages.is_empty() => {
                        permit.send(Ok(self.response(messages)));
                        continue;
                    }
                    Ok(_) => false,
                    Err(error) => {
                        permit.send(Err(to_status(error)));
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
                    message = inbound.message() => {
                        if self.on_inbound(message).await.is_err() { return; }
                        continue;
                    }
                    () = shutdown_begun(&mut shutdown) => return,
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                message = inbound.message() => {
                    if self.on_inbound(message).await.is_err() { return; }
                }
                () = shutdown_begun(&mut shutdown) => {
                    let _ = self.tx.send(Err(Status::unavailable("The service is shutting down."))).await;
                    return;
                }
                () = self.tx.closed() => return,
            }
        }
    }

    /// Handles one inbound item; `Err(())` ends the stream.
    async fn on_inbound(
        &mut self,
        message: Result<Option<StreamingPullRequest>, Status>,
    ) -> Result<(), ()> {
        match message {
            Ok(Some(request)) => match self.apply(&request, false).await {
                Ok(()) => Ok(()),
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    Err(())
                }
            },
            // The client half-closed: finish with OK, as the emulator does.
            Ok(None) => Err(()),
            Err(status) => {
                tracing::debug!(%status, "streaming pull inbound error");
                Err(())
            }
        }
    }

    async fn apply(&mut self, request: &StreamingPullRequest, first: bool) -> Result<(), Status> {
        if !first
            && (!request.subscription.is_empty()
                || !request.client_id.is_empty()
                || request.max_outstanding_messages != 0
                || request.max_outstanding_bytes != 0
                || request.protocol_version != 0)
        {
            return Err(Status::invalid_argument(
                "subscription, client_id, max_outstanding_messages, max_outstanding_bytes and protocol_version may only be set in the first request",
            ));
        }
        if request.modify_deadline_ack_ids.len() != request.modify_deadline_seconds.len() {
            return Err(Status::invalid_argument(
                "modify_deadline_seconds and modify_deadline_ack_ids must be the same length",
            ));
        }
        if request.modify_deadline_seconds.iter().any(|s| *s < 0) {
            return Err(Status::invalid_argument("Ack deadline cannot be negative"));
        }
        if !first && request.stream_ack_deadline_seconds != 0 {
            if !(10..=600).contains(&request.stream_ack_deadline_seconds) {
                return Err(Status::invalid_argument(
                    "stream_ack_deadline_seconds must be between 10 and 600 seconds",
                ));
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
            self.broker.durable().await.map_err(to_status)?;
            let mut response = self.response(Vec::new());
            response.acknowledge_confirmation = Some(confirmation.ack);
            response.modify_ack_deadline_confirmation = Some(confirmation.modack);
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
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("12Q"), None);
    }

    #[test]
    fn pull_answers_before_the_caller_deadline() {
        let before = Instant::now();
        let deadline = pull_deadline(Some(Duration::from_secs(5)));
        let wait = deadline - before;
        assert!(wait < Duration::from_secs(5) && wait >= Duration::from_millis(4400));
    }
}
