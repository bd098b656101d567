//! The books of one streaming session: leases, flow control, ordering keys,
//! and the handler tasks.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use opentelemetry::trace::FutureExt as _;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::delivery::{AckerHandle, Delivery, Kind, SessionBooks, SettleRequest};
use super::lease::{Histogram, Lease, LeaseAction, LeaseClock};
use super::message::{Pending, ReceivedMessage};
use super::scheduler::Scheduler;
use super::shared::Shared;
use crate::error::AckError;
use crate::telemetry::ProcessScope;

/// The handler as the session stores it.
pub(crate) type Handler = Arc<dyn Fn(ReceivedMessage) -> BoxFuture<'static, ()> + Send + Sync>;

/// Who gets the messages flow control releases.
pub(crate) enum Consumer {
    /// A handler task per message ([`crate::Subscriber::subscribe`]).
    Handler(Handler),
    /// The channel of a [`crate::MessageStream`]; taken at the end of the
    /// session, which ends the stream.
    Stream(Mutex<Option<mpsc::UnboundedSender<Pending>>>),
}

/// Load (percent of a flow-control limit) at which the stream stops reading.
pub(crate) const PAUSE_AT_PERCENT: usize = 100;
/// Load below which a paused stream reads again.
pub(crate) const RESUME_BELOW_PERCENT: usize = 80;

/// An ordered message handed to a handler: its key is free for the next
/// message once the handler has finished and the message is settled.
struct KeyHold {
    key: String,
    handler_done: bool,
    settled: bool,
}

struct State {
    /// Outstanding messages by ack id: received and neither settled nor
    /// expired.
    leases: HashMap<String, Lease>,
    leased_bytes: usize,
    scheduler: Scheduler<Pending>,
    key_holds: HashMap<String, KeyHold>,
    latencies: Histogram,
}

impl State {
    /// Marks one half of an ordered message's turn as over; frees its key
    /// when both are.
    fn key_progress(&mut self, ack_id: &str, handler_done: bool) {
        let Some(hold) = self.key_holds.get_mut(ack_id) else {
            return;
        };
        if handler_done {
            hold.handler_done = true;
        } else {
            hold.settled = true;
        }
        if hold.handler_done
            && hold.settled
            && let Some(hold) = self.key_holds.remove(ack_id)
        {
            self.scheduler.key_done(&hold.key);
        }
    }

    /// Ends a lease (settled, expired or refused): frees its flow-control
    /// share and its half of the ordering key's turn.
    fn remove_lease(&mut self, ack_id: &str) -> Option<Lease> {
        let lease = self.leases.remove(ack_id)?;
        let size = lease.delivery.size;
        self.leased_bytes = self.leased_bytes.saturating_sub(size);
        if lease.dispatched {
            self.scheduler.release(size);
            self.key_progress(ack_id, false);
        } else {
            // Still waiting for flow control or its key: it never will run.
            let _ = self.scheduler.remove(|p| p.delivery.ack_id == ack_id);
        }
        Some(lease)
    }
}

/// One streaming session's shared state.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    pub acker: AckerHandle,
    consumer: Consumer,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
    /// Signalled when outstanding messages go down (the stream may read
    /// again).
    pub capacity: Notify,
    slots: Arc<Semaphore>,
    /// Handler tasks spawned and not finished.
    running: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
    exactly_once: AtomicBool,
    ordering: AtomicBool,
}

fn seconds(n: i32) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

impl Core {
    /// Must be called within a Tokio runtime.
    pub fn new(shared: Arc<Shared>, consumer: Consumer, acker: AckerHandle) -> Arc<Self> {
        let config = &shared.config;
        let scheduler = Scheduler::new(
            config.max_outstanding_messages,
            config.max_outstanding_bytes,
        );
        let slots = config
            .max_concurrent_handlers
            .clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            acker,
            consumer,
            runtime: tokio::runtime::Handle::current(),
            state: Mutex::new(State {
                leases: HashMap::new(),
                leased_bytes: 0,
                scheduler,
                key_holds: HashMap::new(),
                latencies: Histogram::default(),
            }),
            capacity: Notify::new(),
            slots: Arc::new(Semaphore::new(slots)),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
            exactly_once: AtomicBool::new(false),
            ordering: AtomicBool::new(false),
            shared,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn exactly_once(&self) -> bool {
        self.exactly_once.load(Ordering::Acquire)
    }

    /// Records the subscription properties of a StreamingPull response.
    pub fn set_properties(&self, exactly_once: bool, ordering: bool) {
        self.exactly_once.store(exactly_once, Ordering::Release);
        self.ordering.store(ordering, Ordering::Release);
    }

    /// The ack deadline to ask for now (seconds).
    pub fn ack_deadline(&self) -> i32 {
        let bounds = self.shared.config.deadline_bounds(self.exactly_once());
        self.lock().latencies.deadline(bounds)
    }

    /// Outstanding messages as a percentage of the flow-control limits (the
    /// larger of messages and bytes; 0 without limits).
    pub fn load_percent(&self) -> usize {
        let config = &self.shared.config;
        let state = self.lock();
        // No limit (0) counts as no load.
        let percent =
            |used: usize, limit: usize| used.saturating_mul(100).checked_div(limit).unwrap_or(0);
        percent(state.leases.len(), config.max_outstanding_messages)
            .max(percent(state.leased_bytes, config.max_outstanding_bytes))
    }

    /// Starts leasing newly received messages.
    pub fn add_leases(&self, pendings: &[Pending], deadline_seconds: i32) {
        let max_extension = self.shared.config.max_lease_extension;
        let mut state = self.lock();
        for pending in pendings {
            let delivery = &pending.delivery;
            let received = delivery.received_at;
            let lease = Lease {
                delivery: delivery.clone(),
                dispatched: false,
                clock: LeaseClock {
                    expires_at: received + seconds(deadline_seconds),
                    give_up_at: received + max_extension,
                    custom_seconds: None,
                },
            };
            state.leased_bytes += delivery.size;
            if let Some(old) = state.leases.insert(delivery.ack_id.clone(), lease) {
                state.leased_bytes = state.leased_bytes.saturating_sub(old.delivery.size);
            }
        }
    }

    /// Drops messages whose receipt modack failed under exactly-once
    /// delivery: the server will deliver them again with a new ack id.
    pub fn forget(&self, ack_ids: &[String]) {
        let mut state = self.lock();
        for ack_id in ack_ids {
            state.remove_lease(ack_id);
        }
        drop(state);
        self.capacity.notify_one();
    }

    /// Hands messages whose receipt modack is done to flow control and the
    /// ordering-key scheduler.
    pub fn enqueue(self: &Arc<Self>, pendings: Vec<Pending>) {
        if pendings.is_empty() {
            return;
        }
        let ordering = self.ordering.load(Ordering::Acquire);
        if self.shared.telemetry.enabled() {
            for pending in &pendings {
                pending
                    .delivery
                    .with_trace(|traced| traced.trace.start_concurrency_control());
            }
        }
        {
            let mut state = self.lock();
            for pending in pendings {
                let delivery = pending.delivery.clone();
                // Expired while its receipt modack was on the way.
                if !state.leases.contains_key(&delivery.ack_id) {
                    continue;
                }
                let key = (ordering && !delivery.ordering_key.is_empty())
                    .then(|| delivery.ordering_key.clone());
                state.scheduler.push(pending, delivery.size, key);
            }
        }
        self.pump();
    }

    /// Starts a handler task for every message flow control lets through.
    fn pump(self: &Arc<Self>) {
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        let streaming = matches!(self.consumer, Consumer::Stream(_));
        let released = {
            let mut state = self.lock();
            let mut released = Vec::new();
            while let Some(next) = state.scheduler.next_released() {
                let ack_id = next.item.delivery.ack_id.clone();
                match state.leases.get_mut(&ack_id) {
                    Some(lease) => lease.dispatched = true,
                    None => {
                        // Its lease is gone: do not run it.
                        state.scheduler.release(next.size);
                        if let Some(key) = &next.key {
                            state.scheduler.key_done(key);
                        }
                        continue;
                    }
                }
                if let Some(key) = next.key {
                    state.key_holds.insert(
                        ack_id,
                        KeyHold {
                            key,
                            // A streamed message has no handler: its key
                            // waits for the settle alone.
                            handler_done: streaming,
                            settled: false,
                        },
                    );
                }
                released.push(next.item);
            }
            released
        };
        for pending in released {
            if let Some(instrument) = self.shared.telemetry.span_layer() {
                pending.delivery.with_trace(|traced| {
                    traced.trace.end_concurrency_control(instrument);
                    traced.trace.start_scheduler();
                });
            }
            if let Consumer::Stream(sender) = &self.consumer {
                let sender = sender
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                match sender {
                    Some(sender) => {
                        if let Err(mpsc::error::SendError(pending)) = sender.send(pending) {
                            // The stream is gone.
                            pending.nack();
                        }
                    }
                    None => pending.nack(),
                }
                continue;
            }
            self.running.fetch_add(1, Ordering::AcqRel);
            let guard = HandlerGuard {
                core: self.clone(),
                ack_id: pending.delivery.ack_id.clone(),
                ran: false,
            };
            self.runtime
                .spawn(run_handler(self.clone(), pending, guard));
        }
    }

    /// A message was acked or nacked (by the user or at shutdown); acks
    /// feed the latency histogram the ack deadline follows.
    pub fn on_settled(self: &Arc<Self>, delivery: &Delivery, acked: bool) {
        {
            let mut state = self.lock();
            if acked {
                state.latencies.record(delivery.received_at.elapsed());
            }
            state.remove_lease(&delivery.ack_id);
        }
        self.capacity.notify_one();
        self.pump();
    }

    /// The user set a message's deadline.
    pub fn on_modify(&self, ack_id: &str, deadline_seconds: i32) {
        let now = Instant::now();
        if let Some(lease) = self.lock().leases.get_mut(ack_id) {
            lease.clock.expires_at = now + seconds(deadline_seconds);
            lease.clock.custom_seconds = Some(deadline_seconds);
            if deadline_seconds == 0 {
                // Given back to the server: let the lease end now.
                lease.clock.give_up_at = now;
            }
        }
    }

    /// A handler task ended; `ran` is false when it was dropped unpolled
    /// (the runtime is going away: start nothing new then).
    fn handler_finished(self: &Arc<Self>, ack_id: &str, ran: bool) {
        self.lock().key_progress(ack_id, true);
        // Start the key's next message first, so the count of running
        // handlers never touches zero in between.
        if ran {
            self.pump();
        }
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Extends the leases due and expires those past their maximum.
    pub fn maintain_leases(self: &Arc<Self>, now: Instant) {
        let deadline = self.ack_deadline();
        let mut extend: BTreeMap<i32, Vec<Arc<Delivery>>> = BTreeMap::new();
        let expired: Vec<Arc<Delivery>> = {
            let mut state = self.lock();
            let mut expired = Vec::new();
            for (ack_id, lease) in &mut state.leases {
                match lease.clock.action(now, deadline) {
                    LeaseAction::Keep => {}
                    LeaseAction::Extend(secs) => {
                        lease.clock.expires_at = now + seconds(secs);
                        extend.entry(secs).or_default().push(lease.delivery.clone());
                    }
                    LeaseAction::Expire => expired.push(ack_id.clone()),
                }
            }
            expired
                .iter()
                .filter_map(|ack_id| state.remove_lease(ack_id))
                .map(|lease| lease.delivery)
                .collect()
        };
        if !expired.is_empty() {
            for delivery in &expired {
                tracing::debug!(
                    subscription = %self.shared.subscription,
                    ack_id = %delivery.ack_id,
                    "lease expired after the maximum extension"
                );
                expire_trace(&self.shared, delivery);
            }
            self.capacity.notify_one();
            self.pump();
        }
        let exactly_once = self.exactly_once();
        for (secs, deliveries) in extend {
            let kind = Kind::Modack {
                seconds: secs,
                receipt: false,
            };
            let mut answers = Vec::new();
            for delivery in deliveries {
                let reply = exactly_once.then(|| {
                    let (reply, answer) = oneshot::channel();
                    answers.push((delivery.ack_id.clone(), answer));
                    reply
                });
                let _ = self.acker.send(SettleRequest {
                    kind,
                    delivery,
                    reply,
                });
            }
            if !answers.is_empty() {
                // An extension refused for good under exactly-once means the
                // message is no longer ours: stop leasing it.
                let core = Arc::downgrade(self);
                self.runtime.spawn(async move {
                    let mut refused = Vec::new();
                    for (ack_id, answer) in answers {
                        if let Ok(Err(AckError::InvalidAckId)) = answer.await {
                            refused.push(ack_id);
                        }
                    }
                    if let Some(core) = core.upgrade() {
                        core.expire(&refused);
                    }
                });
            }
        }
    }

    /// Ends the leases of `ack_ids` as expired.
    fn expire(self: &Arc<Self>, ack_ids: &[String]) {
        if ack_ids.is_empty() {
            return;
        }
        let expired: Vec<Lease> = {
            let mut state = self.lock();
            ack_ids
                .iter()
                .filter_map(|id| state.remove_lease(id))
                .collect()
        };
        for lease in &expired {
            expire_trace(&self.shared, &lease.delivery);
        }
        self.capacity.notify_one();
        self.pump();
    }

    /// Shutdown begins: nothing new is handed to handlers. Messages whose
    /// handler task still waits for a slot are nacked now, not once the
    /// running handlers have finished.
    pub fn begin_closing(&self) {
        self.closing.store(true, Ordering::Release);
        self.slots.close();
    }

    /// Ends a stream consumer's channel: the stream yields what it holds
    /// and then ends.
    pub fn end_stream(&self) {
        if let Consumer::Stream(sender) = &self.consumer {
            sender.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }

    /// Takes every message not yet handed to a handler.
    pub fn drain_waiting(&self) -> Vec<Pending> {
        self.lock().scheduler.drain()
    }

    /// Every message still leased.
    pub fn outstanding(&self) -> Vec<Arc<Delivery>> {
        self.lock()
            .leases
            .values()
            .map(|lease| lease.delivery.clone())
            .collect()
    }

    /// Resolves once no handler task is left.
    pub async fn wait_for_handlers(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    #[cfg(test)]
    fn in_flight(&self) -> (usize, usize) {
        self.lock().scheduler.in_flight()
    }
}

/// Records the end of a delivery whose lease ran out.
impl SessionBooks for Core {
    fn on_settled(self: Arc<Self>, delivery: &Delivery, acked: bool) {
        Core::on_settled(&self, delivery, acked);
    }

    fn on_modify(&self, ack_id: &str, deadline_seconds: i32) {
        Core::on_modify(self, ack_id, deadline_seconds);
    }
}

fn expire_trace(shared: &Shared, delivery: &Delivery) {
    let Some(instrument) = shared.telemetry.span_layer() else {
        return;
    };
    delivery.with_trace(|traced| {
        if let Some(scope) = traced.process.as_ref().and_then(Weak::upgrade) {
            scope.event(baton_trace_context::EVENT_EXPIRED);
        }
        traced
            .trace
            .finish(instrument, baton_trace_context::RESULT_EXPIRED);
    });
}

/// Marks a handler task finished however it ends (even unpolled or
/// panicking).
struct HandlerGuard {
    core: Arc<Core>,
    ack_id: String,
    ran: bool,
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.core.handler_finished(&self.ack_id, self.ran);
    }
}

/// Ends a released message's scheduler span and starts its `process` span,
/// which lasts as long as the message handed to the user is unsettled.
pub(crate) fn start_process(shared: &Shared, pending: &Pending) -> Option<Arc<ProcessScope>> {
    pending
        .delivery
        .with_trace(|traced| {
            let instrument = shared.telemetry.span_layer()?;
            traced.trace.end_scheduler(instrument);
            let scope = Arc::new(traced.trace.start_process(instrument));
            traced.process = Some(Arc::downgrade(&scope));
            Some(scope)
        })
        .flatten()
}

/// Runs the handler on one message, inside its process span, once a
/// handler slot is free.
async fn run_handler(core: Arc<Core>, pending: Pending, mut guard: HandlerGuard) {
    guard.ran = true;
    let permit = core.slots.clone().acquire_owned().await;
    if permit.is_err() || core.closing.load(Ordering::Acquire) {
        // Shutting down before it started: give it back.
        pending.nack();
        drop(guard);
        return;
    }
    let Consumer::Handler(handler) = &core.consumer else {
        return;
    };
    let handler = handler.clone();
    let process = start_process(&core.shared, &pending);
    let unsampled = pending.delivery.unsampled_context().cloned();
    let message = ReceivedMessage::new(pending, process.clone());
    let work = AssertUnwindSafe(async move { handler(message).await }).catch_unwind();
    let outcome = match (&process, unsampled) {
        (Some(scope), _) => {
            work.instrument(scope.span.clone())
                .with_context(scope.context.clone())
                .await
        }
        (None, Some(context)) => work.with_context(context).await,
        (None, None) => work.await,
    };
    if outcome.is_err() {
        tracing::error!(
            subscription = %core.shared.subscription,
            "message handler panicked; its message is nacked unless it was settled"
        );
    }
    drop(process);
    drop(permit);
    drop(guard);
}

#[cfg(test)]
mod tests {
    use baton_proto::pubsub::{PubsubMessage, ReceivedMessage as ProtoReceived};

    use super::*;
    use crate::subscriber::SubscriberConfig;
    use crate::subscriber::acker;
    use crate::{Client, ClientConfig, Endpoint};

    async fn core_with(config: SubscriberConfig, handler: Handler) -> Arc<Core> {
        let client = Client::connect(
            ClientConfig::new("p").with_endpoint(Endpoint::Emulator("127.0.0.1:1".into())),
        )
        .await
        .unwrap();
        let shared = Arc::new(Shared::new(&client, "s", config));
        // An acker whose RPCs fail fast (nothing listens on port 1).
        let acker = acker::spawn(shared.clone());
        Core::new(shared, Consumer::Handler(handler), acker)
    }

    fn pending(core: &Arc<Core>, id: u32, key: &str, data: &[u8]) -> Pending {
        Pending::new(
            &core.shared,
            ProtoReceived {
                ack_id: format!("projects/p/subscriptions/s:{id}"),
                message: Some(PubsubMessage {
                    data: data.to_vec(),
                    ordering_key: key.to_string(),
                    message_id: id.to_string(),
                    ..Default::default()
                }),
                delivery_attempt: 0,
            }
            .into(),
            false,
            core.acker.clone(),
            Some(Arc::downgrade(core) as Weak<dyn SessionBooks>),
        )
    }

    /// Flow control counts outstanding messages from release to settle, and
    /// the books balance once everything is settled.
    #[tokio::test]
    async fn flow_control_accounting() {
        let started = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = {
            let started = started.clone();
            let held = held.clone();
            Arc::new(move |message| {
                started.fetch_add(1, Ordering::SeqCst);
                held.lock().unwrap().push(message);
                Box::pin(async {})
            })
        };
        let config = SubscriberConfig::default().with_flow_control(2, 1000);
        let core = core_with(config, handler).await;
        let batch: Vec<Pending> = (0..5)
            .map(|i| pending(&core, i, "", b"0123456789"))
            .collect();
        let size = batch[0].delivery.size;
        core.add_leases(&batch, 10);
        assert_eq!(core.load_percent(), 250);
        core.enqueue(batch);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(core.in_flight(), (2, 2 * size));
        // Settling one lets exactly one more through.
        let first = held.lock().unwrap().remove(0);
        first.ack();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 3);
        assert_eq!(core.in_flight(), (2, 2 * size));
        assert_eq!(core.load_percent(), 200);
        // Dropping settles (nack) too.
        let rest: Vec<ReceivedMessage> = held.lock().unwrap().drain(..).collect();
        drop(rest);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rest: Vec<ReceivedMessage> = held.lock().unwrap().drain(..).collect();
        assert_eq!(rest.len(), 2);
        for message in rest {
            message.nack();
        }
        assert_eq!(started.load(Ordering::SeqCst), 5);
        assert_eq!(core.in_flight(), (0, 0));
        assert_eq!(core.load_percent(), 0);
        core.wait_for_handlers().await;
    }

    /// Shutdown nacks the messages whose handler task still waits for a
    /// slot at once, not after the running handlers have finished.
    #[tokio::test(start_paused = true)]
    async fn closing_nacks_messages_waiting_for_a_slot() {
        let handler: Handler = Arc::new(|message: ReceivedMessage| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                message.ack();
            })
        });
        let config = SubscriberConfig::default().with_max_concurrent_handlers(1);
        let core = core_with(config, handler).await;
        let batch: Vec<Pending> = (0..3).map(|i| pending(&core, i, "", b"x")).collect();
        core.add_leases(&batch, 10);
        core.enqueue(batch);
        tokio::task::yield_now().await;
        assert_eq!(core.outstanding().len(), 3);
        let begun = Instant::now();
        core.begin_closing();
        tokio::task::yield_now().await;
        assert_eq!(
            core.outstanding().len(),
            1,
            "the two waiting for a slot are nacked"
        );
        assert_eq!(begun.elapsed(), Duration::ZERO);
        core.wait_for_handlers().await;
        assert_eq!(begun.elapsed(), Duration::from_secs(60));
        assert!(core.outstanding().is_empty());
    }

    /// Messages of one key run one at a time, in arrival order; the next
    /// waits for both the handler's end and the settle.
    #[tokio::test]
    async fn ordering_keys_run_one_at_a_time() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = {
            let log = log.clone();
            Arc::new(move |message: ReceivedMessage| {
                let log = log.clone();
                Box::pin(async move {
                    let id = message.message_id().to_string();
                    log.lock().unwrap().push(format!("start {id}"));
                    message.ack();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    log.lock().unwrap().push(format!("end {id}"));
                })
            })
        };
        let core = core_with(SubscriberConfig::default(), handler).await;
        core.set_properties(false, true);
        let batch: Vec<Pending> = (0..4).map(|i| pending(&core, i, "k", b"x")).collect();
        core.add_leases(&batch, 10);
        core.enqueue(batch);
        tokio::time::sleep(Duration::from_millis(30)).await;
        core.wait_for_handlers().await;
        let log = log.lock().unwrap().clone();
        let expected: Vec<String> = (0..4)
            .flat_map(|i| [format!("start {i}"), format!("end {i}")])
            .collect();
        assert_eq!(log, expected);
    }
}
