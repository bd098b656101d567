//! The StreamingPull stream: opening it (and again, with backoff, after
//! transient errors), keepalives, pausing while flow control is full, and
//! the receipt modacks of what arrives.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::pubsub::StreamingPullRequest;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::acker::{self, MAX_IDS_PER_REQUEST, MAX_REQUEST_BYTES, REQUEST_OVERHEAD};
use super::delivery::{Kind, SettleRequest};
use super::dispatcher::{Core, PAUSE_AT_PERCENT, RESUME_BELOW_PERCENT};
use super::message::Pending;
use crate::pulled::PulledBatch;
use crate::retry::{Backoff, CallFamily};

/// How often an idle stream sends an empty request.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the server has to answer a keepalive before the stream is
/// considered dead and reopened.
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Messages of one response, waiting for their receipt modack.
pub(crate) struct ReceiptBatch {
    pendings: Vec<Pending>,
    seconds: i32,
    exactly_once: bool,
}

/// Resolves once the session is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

enum Ended {
    Stopped,
    Failed(Status),
}

/// Keeps a stream open until `stop` or a non-retryable error.
pub(crate) async fn run(
    core: Arc<Core>,
    mut stop: watch::Receiver<bool>,
    receipts: mpsc::UnboundedSender<ReceiptBatch>,
) -> Result<(), Status> {
    let client_id = format!("baton-rust-{:016x}", rand::random::<u64>());
    // How the stream is reopened (`CallFamily::StreamingPull`): a server
    // that takes the call and never answers it gets the attempt timeout
    // (15 s by default, as one that stops answering an open stream).
    let settings = core
        .shared
        .client
        .retry_settings(CallFamily::StreamingPull)
        .clone();
    let mut backoff = Backoff::new(settings.clone());
    loop {
        let status = match serve(&core, &client_id, &mut stop, &mut backoff, &receipts).await {
            Ended::Stopped => return Ok(()),
            Ended::Failed(status) => status,
        };
        let delay = backoff.next_delay();
        if !settings.is_retryable(status.code()) || backoff.would_exceed_total(delay) {
            tracing::warn!(
                subscription = %core.shared.subscription,
                code = ?status.code(),
                message = status.message(),
                "streaming pull failed for good"
            );
            return Err(status);
        }
        tracing::debug!(
            subscription = %core.shared.subscription,
            code = ?status.code(),
            message = status.message(),
            ?delay,
            "streaming pull interrupted; reconnecting"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return Ok(()),
        }
    }
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One stream, from opening to its end.
async fn serve(
    core: &Arc<Core>,
    client_id: &str,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    receipts: &mpsc::UnboundedSender<ReceiptBatch>,
) -> Ended {
    let shared = &core.shared;
    let config = &shared.config;
    let mut deadline = core.ack_deadline();
    let (requests, outbound) = mpsc::channel::<StreamingPullRequest>(16);
    let first = StreamingPullRequest {
        subscription: shared.subscription.clone(),
        stream_ack_deadline_seconds: deadline,
        client_id: client_id.to_string(),
        max_outstanding_messages: as_i64(config.max_outstanding_messages),
        max_outstanding_bytes: as_i64(config.max_outstanding_bytes),
        ..Default::default()
    };
    if requests.try_send(first).is_err() {
        return Ended::Failed(Status::internal("could not queue the first request"));
    }
    let request = match shared
        .client
        .request(ReceiverStream::new(outbound), &shared.subscription)
        .await
    {
        Ok(request) => request,
        Err(status) => return Ended::Failed(status),
    };
    let open_timeout = shared
        .client
        .retry_settings(CallFamily::StreamingPull)
        .attempt_timeout();
    let opened = tokio::select! {
        opened = tokio::time::timeout(open_timeout, shared.client.streaming_pull(request)) => opened,
        () = stopped(stop) => return Ended::Stopped,
    };
    let mut responses = match opened {
        Ok(Ok(response)) => {
            // Open: a later failure starts a new count towards the total,
            // even while flow control keeps the stream from being read.
            backoff.mark_healthy();
            response.into_inner()
        }
        Ok(Err(status)) => return Ended::Failed(status),
        Err(_) => {
            return Ended::Failed(Status::deadline_exceeded(format!(
                "StreamingPull did not open within {open_timeout:?}"
            )));
        }
    };
    tracing::debug!(subscription = %shared.subscription, "streaming pull open");
    let mut keepalive =
        tokio::time::interval_at(Instant::now() + KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog: Option<Instant> = None;
    let mut paused = false;
    loop {
        let load = core.load_percent();
        if paused && load < RESUME_BELOW_PERCENT {
            paused = false;
        } else if !paused && load >= PAUSE_AT_PERCENT {
            paused = true;
            // Unread answers would trip it: the next keepalive re-arms it.
            watchdog = None;
        }
        let watchdog_at = watchdog.unwrap_or_else(|| Instant::now() + KEEPALIVE_INTERVAL);
        tokio::select! {
            biased;
            () = stopped(stop) => return Ended::Stopped,
            _ = keepalive.tick() => {
                let current = core.ack_deadline();
                let mut keepalive = StreamingPullRequest::default();
                if current != deadline {
                    keepalive.stream_ack_deadline_seconds = current;
                    deadline = current;
                }
                if let Err(mpsc::error::TrySendError::Closed(_)) = requests.try_send(keepalive) {
                    return Ended::Failed(Status::unavailable("the request stream closed"));
                }
                if !paused && watchdog.is_none() {
                    watchdog = Some(Instant::now() + KEEPALIVE_TIMEOUT);
                }
            }
            () = core.capacity.notified(), if paused => {}
            message = responses.message(), if !paused => match message {
                Ok(Some(response)) => {
                    watchdog = None;
                    backoff.reset();
                    on_response(core, response, receipts);
                }
                Ok(None) => return Ended::Failed(Status::unavailable("the server closed the stream")),
                Err(status) => return Ended::Failed(status),
            },
            () = tokio::time::sleep_until(watchdog_at), if watchdog.is_some() && !paused => {
                return Ended::Failed(Status::unavailable("no answer to the keepalive within 15 s"));
            }
        }
    }
}

/// Leases the messages of a response and queues their receipt modack.
fn on_response(
    core: &Arc<Core>,
    response: PulledBatch,
    receipts: &mpsc::UnboundedSender<ReceiptBatch>,
) {
    if let Some(properties) = &response.subscription_properties {
        core.set_properties(
            properties.exactly_once_delivery_enabled,
            properties.message_ordering_enabled,
        );
    }
    if response.received_messages.is_empty() {
        return;
    }
    let exactly_once = core.exactly_once();
    let seconds = core.ack_deadline();
    let session = Arc::downgrade(core);
    let pendings: Vec<Pending> = response
        .received_messages
        .into_iter()
        .map(|received| {
            Pending::new(
                &core.shared,
                received,
                exactly_once,
                core.acker.clone(),
                Some(session.clone()),
            )
        })
        .collect();
    core.add_leases(&pendings, seconds);
    let batch = ReceiptBatch {
        pendings,
        seconds,
        exactly_once,
    };
    if let Err(mpsc::error::SendError(batch)) = receipts.send(batch) {
        for pending in batch.pendings {
            pending.nack();
        }
    }
}

/// Sends the receipt modack of each batch, in arrival order, then hands
/// the messages on: all of them, or under exactly-once delivery only those
/// whose modack succeeded (as the official clients do). Ends when the
/// stream task is gone and every batch is handled.
pub(crate) async fn run_receipts(
    core: Arc<Core>,
    mut batches: mpsc::UnboundedReceiver<ReceiptBatch>,
) {
    while let Some(batch) = batches.recv().await {
        let kind = Kind::Modack {
            seconds: batch.seconds,
            receipt: true,
        };
        let mut answers = Vec::new();
        let requests: Vec<SettleRequest> = batch
            .pendings
            .iter()
            .map(|pending| {
                let reply = batch.exactly_once.then(|| {
                    let (reply, answer) = oneshot::channel();
                    answers.push(answer);
                    reply
                });
                SettleRequest {
                    kind,
                    delivery: pending.delivery.clone(),
                    reply,
                }
            })
            .collect();
        let base = core.shared.subscription.len() + REQUEST_OVERHEAD;
        for chunk in acker::split_batch(
            requests,
            |r| r.delivery.ack_id.len(),
            base,
            MAX_IDS_PER_REQUEST,
            MAX_REQUEST_BYTES,
        ) {
            // Without exactly-once a failed receipt modack changes nothing:
            // one attempt, no retries to hold the messages back.
            acker::send(&core.shared, kind, chunk, batch.exactly_once).await;
        }
        let pendings = if batch.exactly_once {
            let mut kept = Vec::with_capacity(batch.pendings.len());
            let mut refused = Vec::new();
            for (pending, answer) in batch.pendings.into_iter().zip(answers) {
                match answer.await {
                    Ok(Ok(())) => kept.push(pending),
                    _ => refused.push(pending.delivery.ack_id.clone()),
                }
            }
            if !refused.is_empty() {
                tracing::debug!(
                    subscription = %core.shared.subscription,
                    count = refused.len(),
                    "dropping messages whose receipt modack failed (exactly-once)"
                );
                core.forget(&refused);
            }
            kept
        } else {
            batch.pendings
        };
        core.enqueue(pendings);
    }
}
