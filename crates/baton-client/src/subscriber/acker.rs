//! Acks, nacks and modacks: batched for about 100 ms (or 2500 ids), split
//! to stay under the API's 512 KiB request limit, sent as unary
//! Acknowledge / ModifyAckDeadline calls retried on idempotent codes, with
//! the per-id results of exactly-once delivery parsed from the error's
//! `google.rpc.ErrorInfo`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use baton_proto::pubsub::{AcknowledgeRequest, ModifyAckDeadlineRequest};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::{Code, Status};

use super::delivery::{AckerHandle, Command, Delivery, Kind, SettleRequest, with_traces};
use super::shared::Shared;
use crate::error::AckError;
use crate::retry::{Backoff, CallFamily, RetrySettings, with_retry};
use crate::telemetry::{ModackInfo, Settle};

/// How long a settle request waits for companions before it is sent.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Most ack ids in one request (what the official clients send).
pub(crate) const MAX_IDS_PER_REQUEST: usize = 2500;
/// Largest request the API accepts for Acknowledge and ModifyAckDeadline.
pub(crate) const MAX_REQUEST_BYTES: usize = 512 * 1024;
/// Encoding cost of one repeated string field beyond its bytes (tag and
/// length; ack ids are at most 164 bytes).
const PER_ID_OVERHEAD: usize = 3;
/// Encoding cost of a request beyond its ack ids and subscription name.
pub(crate) const REQUEST_OVERHEAD: usize = 32;

/// `ErrorInfo.reason` of exactly-once settle failures.
const EXACTLY_ONCE_REASON: &str = "EXACTLY_ONCE_ACKID_FAILURE";
/// Per-id failure: the ack id is not (or no longer) valid.
const INVALID_ACK_ID: &str = "PERMANENT_FAILURE_INVALID_ACK_ID";
/// Prefix of per-id failures worth retrying.
const TRANSIENT_PREFIX: &str = "TRANSIENT_FAILURE";

/// Starts an acker task for `shared`'s subscription.
pub(crate) fn spawn(shared: Arc<Shared>) -> AckerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(shared, rx));
    AckerHandle::new(tx)
}

#[derive(Default)]
struct Queue {
    by_kind: BTreeMap<Kind, Vec<SettleRequest>>,
    count: usize,
}

impl Queue {
    fn push(&mut self, request: SettleRequest) {
        self.by_kind.entry(request.kind).or_default().push(request);
        self.count += 1;
    }

    /// Sends everything queued, one task per request.
    fn flush(&mut self, shared: &Arc<Shared>, in_flight: &mut JoinSet<()>) {
        let base = shared.subscription.len() + REQUEST_OVERHEAD;
        for (kind, requests) in std::mem::take(&mut self.by_kind) {
            let chunks = split_batch(
                requests,
                |r| r.delivery.ack_id.len(),
                base,
                MAX_IDS_PER_REQUEST,
                MAX_REQUEST_BYTES,
            );
            for chunk in chunks {
                let shared = shared.clone();
                in_flight.spawn(async move { send(&shared, kind, chunk, true).await });
            }
        }
        self.count = 0;
    }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut queue = Queue::default();
    let mut due: Option<Instant> = None;
    let mut in_flight = JoinSet::new();
    let mut closers = Vec::new();
    loop {
        let flush_at = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Settle(request)) => {
                    queue.push(request);
                    due.get_or_insert_with(|| Instant::now() + FLUSH_INTERVAL);
                    if queue.count >= MAX_IDS_PER_REQUEST {
                        queue.flush(&shared, &mut in_flight);
                        due = None;
                    }
                }
                Some(Command::Close(done)) => {
                    closers.push(done);
                    break;
                }
                None => break,
            },
            () = tokio::time::sleep_until(flush_at), if due.is_some() => {
                queue.flush(&shared, &mut in_flight);
                due = None;
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    // Take what is already queued; later requests are refused.
    rx.close();
    while let Some(command) = rx.recv().await {
        match command {
            Command::Settle(request) => queue.push(request),
            Command::Close(done) => closers.push(done),
        }
    }
    queue.flush(&shared, &mut in_flight);
    while in_flight.join_next().await.is_some() {}
    for done in closers {
        let _ = done.send(());
    }
}

/// Splits `items` into requests of at most `max_ids` ids and `max_bytes`
/// encoded bytes (`base` for the rest of the request), keeping their order.
/// An id too large on its own still gets a request of its own.
pub(crate) fn split_batch<T>(
    items: Vec<T>,
    id_len: impl Fn(&T) -> usize,
    base: usize,
    max_ids: usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = base;
    for item in items {
        let cost = id_len(&item) + PER_ID_OVERHEAD;
        if !current.is_empty() && (current.len() >= max_ids || bytes + cost > max_bytes) {
            chunks.push(std::mem::take(&mut current));
            bytes = base;
        }
        bytes += cost;
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The per-id reasons of an exactly-once settle failure: the
/// `google.rpc.Status` in `grpc-status-details-bin` whose `ErrorInfo` has
/// reason `EXACTLY_ONCE_ACKID_FAILURE` and maps each failed ack id to
/// `PERMANENT_FAILURE_INVALID_ACK_ID` or `TRANSIENT_FAILURE_*`.
pub(crate) fn exactly_once_failures(status: &Status) -> Option<HashMap<String, String>> {
    if status.details().is_empty() {
        return None;
    }
    let decoded = baton_proto::rpc::Status::decode(status.details()).ok()?;
    decoded.details.iter().find_map(|any| {
        if !any.type_url.ends_with("google.rpc.ErrorInfo") {
            return None;
        }
        let info = baton_proto::rpc::ErrorInfo::decode(any.value.as_ref()).ok()?;
        (info.reason == EXACTLY_ONCE_REASON).then_some(info.metadata)
    })
}

/// Settles `ids` with `call` (one RPC, including its own retries on
/// idempotent codes) and works out each id's result: exactly-once failures
/// per id, transient ones retried with backoff while `retry` allows; a
/// batch refused as a whole with INVALID_ARGUMENT (a stale id from another
/// server, say) is bisected so the valid ids still go through.
pub(crate) async fn settle_ids<F, Fut>(
    ids: &[String],
    retry: Option<&RetrySettings>,
    mut call: F,
) -> Vec<Result<(), AckError>>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = Result<(), Status>>,
{
    let mut results: Vec<Option<Result<(), AckError>>> = vec![None; ids.len()];
    let mut work: Vec<Vec<usize>> = vec![(0..ids.len()).collect()];
    let started = Instant::now();
    let mut backoff = retry.map(|settings| Backoff::new(settings.clone()));
    while let Some(group) = work.pop() {
        let batch: Vec<String> = group.iter().map(|&i| ids[i].clone()).collect();
        let status = match call(batch).await {
            Ok(()) => {
                for &i in &group {
                    results[i] = Some(Ok(()));
                }
                continue;
            }
            Err(status) => status,
        };
        if let Some(failures) = exactly_once_failures(&status) {
            let mut transient = Vec::new();
            let mut last_reason = String::new();
            for &i in &group {
                results[i] = match failures.get(&ids[i]) {
                    None => Some(Ok(())),
                    Some(reason) if reason == INVALID_ACK_ID => Some(Err(AckError::InvalidAckId)),
                    Some(reason) if reason.starts_with(TRANSIENT_PREFIX) => {
                        transient.push(i);
                        last_reason.clone_from(reason);
                        None
                    }
                    Some(reason) => Some(Err(AckError::Other(reason.clone()))),
                };
            }
            if transient.is_empty() {
                continue;
            }
            let retry_in = match (retry, backoff.as_mut()) {
                (Some(settings), Some(backoff)) => {
                    let delay = backoff.next_delay();
                    (started.elapsed() + delay <= settings.total_timeout()).then_some(delay)
                }
                _ => None,
            };
            match retry_in {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    work.push(transient);
                }
                None => {
                    for i in transient {
                        results[i] = Some(Err(AckError::Transient(last_reason.clone())));
                    }
                }
            }
        } else if status.code() == Code::InvalidArgument && group.len() > 1 {
            let (first, second) = group.split_at(group.len() / 2);
            work.push(second.to_vec());
            work.push(first.to_vec());
        } else {
            let error = AckError::Rpc(status.clone());
            for &i in &group {
                results[i] = Some(Err(error.clone()));
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(AckError::Other("not sent".to_string()))))
        .collect()
}

/// One Acknowledge or ModifyAckDeadline call, bounded in time.
async fn call_once(
    shared: &Shared,
    kind: Kind,
    ack_ids: Vec<String>,
    timeout: Duration,
) -> Result<(), Status> {
    let client = &shared.client;
    let subscription = &shared.subscription;
    let rpc = async {
        match kind {
            Kind::Ack => {
                let request = AcknowledgeRequest {
                    subscription: subscription.clone(),
                    ack_ids,
                };
                let mut request = client.request(request, subscription).await?;
                request.set_timeout(timeout);
                client
                    .subscriber_stub()
                    .acknowledge(request)
                    .await
                    .map(drop)
            }
            Kind::Nack | Kind::Modack { .. } => {
                let ack_deadline_seconds = match kind {
                    Kind::Modack { seconds, .. } => seconds,
                    _ => 0,
                };
                let request = ModifyAckDeadlineRequest {
                    subscription: subscription.clone(),
                    ack_ids,
                    ack_deadline_seconds,
                };
                let mut request = client.request(request, subscription).await?;
                request.set_timeout(timeout);
                client
                    .subscriber_stub()
                    .modify_ack_deadline(request)
                    .await
                    .map(drop)
            }
        }
    };
    match tokio::time::timeout(timeout, rpc).await {
        Ok(result) => result,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within the per-attempt timeout of {timeout:?}"
        ))),
    }
}

/// Sends one request's worth of settle requests now: traces it as an
/// ack/nack/modack span, retries per `retry` (idempotent codes and
/// transient exactly-once failures), ends the subscribe spans it settles
/// and answers every reply.
pub(crate) async fn send(shared: &Shared, kind: Kind, requests: Vec<SettleRequest>, retry: bool) {
    if requests.is_empty() {
        return;
    }
    // One pass over the deliveries, while the ids are read anyway: after
    // the RPC they are cold, and under sampling most are untraced.
    let mut ids: Vec<String> = Vec::with_capacity(requests.len());
    let mut traced: Vec<&Arc<Delivery>> = Vec::new();
    for request in &requests {
        ids.push(request.delivery.ack_id.clone());
        if request.delivery.is_traced() {
            traced.push(&request.delivery);
        }
    }
    // The settle span is made once the RPC has answered, with this start.
    let sent = (!traced.is_empty()).then(SystemTime::now);
    let settings = shared.client.retry_settings(CallFamily::Settle);
    let results = settle_ids(&ids, retry.then_some(settings), |batch| async move {
        if retry {
            with_retry(settings, |timeout| {
                call_once(shared, kind, batch.clone(), timeout)
            })
            .await
        } else {
            call_once(shared, kind, batch, settings.attempt_timeout()).await
        }
    })
    .await;
    let failure = results.iter().find_map(|r| r.as_ref().err()).cloned();
    if let Some(error) = &failure {
        let failed = results.iter().filter(|r| r.is_err()).count();
        tracing::warn!(
            subscription = %shared.subscription,
            operation = kind.settle_kind().operation(),
            failed,
            of = results.len(),
            %error,
            "settling messages failed"
        );
    }
    if let Some(sent) = sent {
        trace_settle(shared, kind, sent, &traced, failure.as_ref());
    }
    for (request, result) in requests.into_iter().zip(results) {
        if let Some(reply) = request.reply {
            let _ = reply.send(result);
        }
    }
}

/// Records a settle RPC that was sent at `sent` and has answered: its span,
/// and its start and end on every subscribe span it settled (ending those
/// that an ack or nack settles for good). `deliveries` are the RPC's traced
/// deliveries.
fn trace_settle(
    shared: &Shared,
    kind: Kind,
    sent: SystemTime,
    deliveries: &[&Arc<Delivery>],
    failure: Option<&AckError>,
) {
    let modack = match kind {
        Kind::Modack { seconds, receipt } => Some(ModackInfo {
            deadline_seconds: seconds,
            receipt,
        }),
        _ => None,
    };
    let failure = failure.map(ToString::to_string);
    with_traces(deliveries, |traces| {
        shared.telemetry.record_settle(
            Settle {
                kind: kind.settle_kind(),
                modack,
                sent,
                result: kind.result(),
            },
            traces,
            failure.as_deref(),
        );
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn eod_status(failures: &[(&str, &str)]) -> Status {
        let info = baton_proto::rpc::ErrorInfo {
            reason: EXACTLY_ONCE_REASON.to_string(),
            domain: "pubsub.googleapis.com".to_string(),
            metadata: failures
                .iter()
                .map(|(id, reason)| ((*id).to_string(), (*reason).to_string()))
                .collect(),
        };
        let details = baton_proto::rpc::Status {
            code: Code::InvalidArgument as i32,
            message: "Some acknowledgement ids in the request were invalid.".to_string(),
            details: vec![baton_proto::wkt::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".to_string(),
                value: info.encode_to_vec().into(),
            }],
        };
        Status::with_details(
            Code::InvalidArgument,
            "Some acknowledgement ids in the request were invalid.",
            details.encode_to_vec().into(),
        )
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn splits_by_count_and_bytes_keeping_order() {
        let items: Vec<usize> = (0..6000).collect();
        let chunks = split_batch(items, |_| 10, 100, 2500, 1 << 20);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [2500, 2500, 1000]
        );
        assert_eq!(chunks.concat(), (0..6000).collect::<Vec<_>>());

        // 164-byte ids: 512 KiB holds (524288 - 100) / 167 = 3138 of them,
        // so the count limit binds first; at 5000 ids per request the byte
        // limit does.
        let long: Vec<String> = (0..4000).map(|i| format!("{i:0>164}")).collect();
        let chunks = split_batch(long, String::len, 100, 5000, MAX_REQUEST_BYTES);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [3138, 862]);
        for chunk in &chunks {
            let bytes: usize = 100
                + chunk
                    .iter()
                    .map(|id| id.len() + PER_ID_OVERHEAD)
                    .sum::<usize>();
            assert!(bytes <= MAX_REQUEST_BYTES);
        }
    }

    #[test]
    fn split_edge_cases() {
        assert!(split_batch(Vec::<String>::new(), String::len, 0, 10, 100).is_empty());
        // An id larger than the limit still travels, alone.
        let chunks = split_batch(ids(&["a", &"x".repeat(200), "b"]), String::len, 0, 10, 100);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn encoded_requests_stay_under_the_limit() {
        let subscription = format!("projects/p/subscriptions/{}", "s".repeat(255));
        let long: Vec<String> = (0..10_000).map(|i| format!("{i:0>164}")).collect();
        let base = subscription.len() + REQUEST_OVERHEAD;
        for chunk in split_batch(
            long,
            String::len,
            base,
            MAX_IDS_PER_REQUEST,
            MAX_REQUEST_BYTES,
        ) {
            let request = ModifyAckDeadlineRequest {
                subscription: subscription.clone(),
                ack_ids: chunk,
                ack_deadline_seconds: 600,
            };
            assert!(request.encoded_len() <= MAX_REQUEST_BYTES);
            assert!(request.ack_ids.len() <= MAX_IDS_PER_REQUEST);
        }
    }

    #[test]
    fn parses_exactly_once_error_info() {
        let status = eod_status(&[
            ("a", INVALID_ACK_ID),
            ("b", "TRANSIENT_FAILURE_UNORDERED_ACK_ID"),
        ]);
        let failures = exactly_once_failures(&status).unwrap();
        assert_eq!(failures.len(), 2);
        assert_eq!(failures["a"], INVALID_ACK_ID);
        assert_eq!(failures["b"], "TRANSIENT_FAILURE_UNORDERED_ACK_ID");

        // No details, garbage details, another reason: not exactly-once.
        assert!(exactly_once_failures(&Status::invalid_argument("bad")).is_none());
        let garbage = Status::with_details(Code::InvalidArgument, "x", vec![1, 2, 3].into());
        assert!(exactly_once_failures(&garbage).is_none());
        let other = baton_proto::rpc::Status {
            code: 3,
            message: String::new(),
            details: vec![baton_proto::wkt::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".to_string(),
                value: baton_proto::rpc::ErrorInfo {
                    reason: "SOMETHING_ELSE".to_string(),
                    ..Default::default()
                }
                .encode_to_vec()
                .into(),
            }],
        };
        let other = Status::with_details(Code::InvalidArgument, "x", other.encode_to_vec().into());
        assert!(exactly_once_failures(&other).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn per_id_results_of_exactly_once_failures() {
        let calls = Mutex::new(Vec::new());
        let settings = RetrySettings::default_for(CallFamily::Settle);
        let results = settle_ids(
            &ids(&["ok", "gone", "later", "odd"]),
            Some(&settings),
            |batch| {
                let attempt = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(batch.clone());
                    calls.len()
                };
                async move {
                    if attempt == 1 {
                        Err(eod_status(&[
                            ("gone", INVALID_ACK_ID),
                            ("later", "TRANSIENT_FAILURE_OTHER"),
                            ("odd", "PERMANENT_FAILURE_OTHER"),
                        ]))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert_eq!(
            results,
            [
                Ok(()),
                Err(AckError::InvalidAckId),
                Ok(()),
                Err(AckError::Other("PERMANENT_FAILURE_OTHER".to_string()))
            ]
        );
        // The transient id alone was retried.
        assert_eq!(calls.lock().unwrap()[1], ids(&["later"]));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_give_up_after_the_total_timeout() {
        let settings = RetrySettings::default_for(CallFamily::Settle)
            .with_total_timeout(Duration::from_secs(2));
        let calls = Mutex::new(0);
        let results = settle_ids(&ids(&["a"]), Some(&settings), |_| {
            *calls.lock().unwrap() += 1;
            async { Err(eod_status(&[("a", "TRANSIENT_FAILURE_X")])) }
        })
        .await;
        assert_eq!(
            results,
            [Err(AckError::Transient("TRANSIENT_FAILURE_X".to_string()))]
        );
        assert!(*calls.lock().unwrap() > 1);
        // Without retries: one call.
        let results = settle_ids(&ids(&["a"]), None, |_| async {
            Err(eod_status(&[("a", "TRANSIENT_FAILURE_X")]))
        })
        .await;
        assert!(matches!(results[0], Err(AckError::Transient(_))));
    }

    #[tokio::test]
    async fn a_batch_refused_whole_is_bisected() {
        let results = settle_ids(&ids(&["a", "stale", "b", "c"]), None, |batch| async move {
            if batch.iter().any(|id| id == "stale") {
                Err(Status::invalid_argument("Invalid ack id"))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(results[0], Ok(()));
        assert!(
            matches!(&results[1], Err(AckError::Rpc(s)) if s.code() == Code::InvalidArgument && s.message() == "Invalid ack id")
        );
        assert_eq!(results[2..], [Ok(()), Ok(())]);
        // Other errors fail the whole batch at once.
        let results = settle_ids(&ids(&["a", "b"]), None, |_| async {
            Err(Status::not_found("Subscription does not exist"))
        })
        .await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().err().and_then(AckError::code) == Some(Code::NotFound))
        );
    }
}
