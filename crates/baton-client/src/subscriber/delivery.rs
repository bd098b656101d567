//! One delivery of a message and the requests that settle it: what the
//! message handed to the user, the session's books and the acker share.
//! Nothing here depends on the session itself; it reaches the session's
//! books through [`SessionBooks`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use baton_trace_context::SettleKind;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::AckError;
use crate::telemetry::{DeliveryTrace, ProcessScope};

/// The books of the streaming session a delivery belongs to: settling or
/// re-leasing a message updates them (lease, flow control, ordering key).
pub(crate) trait SessionBooks: Send + Sync {
    /// The message was acked or nacked.
    fn on_settled(self: Arc<Self>, delivery: &Delivery, acked: bool);
    /// The user set the message's ack deadline.
    fn on_modify(&self, ack_id: &str, deadline_seconds: i32);
}

/// The spans of one delivery.
pub(crate) struct Traced {
    pub trace: DeliveryTrace,
    /// The handler's process span while it lives (for the `expired` event).
    pub process: Option<Weak<ProcessScope>>,
}

/// One delivery of a message: what settling, leasing and tracing need,
/// shared by the message handed to the user and the session's books.
pub(crate) struct Delivery {
    pub ack_id: String,
    /// Size counted by flow control (the message's encoded length).
    pub size: usize,
    pub ordering_key: String,
    pub received_at: Instant,
    /// Its recorded spans.
    pub trace: Option<Mutex<Traced>>,
    /// The trace context of a delivery whose trace is not sampled (nothing
    /// recorded); the handler runs in it.
    pub unsampled: Option<opentelemetry::Context>,
    /// Set by the first ack or nack (the user's or shutdown's).
    pub settled: AtomicBool,
    pub acker: AckerHandle,
    /// The streaming session that leases it; `None` for unary pulls.
    pub session: Option<Weak<dyn SessionBooks>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Delivery {
    /// Runs `f` on the delivery's spans, when it has any.
    pub fn with_trace<R>(&self, f: impl FnOnce(&mut Traced) -> R) -> Option<R> {
        self.trace.as_ref().map(|t| f(&mut lock(t)))
    }

    pub fn is_traced(&self) -> bool {
        self.trace.is_some()
    }

    /// The context of a delivery whose trace is not sampled.
    pub fn unsampled_context(&self) -> Option<&opentelemetry::Context> {
        self.unsampled.as_ref()
    }

    /// Claims the right to settle; `false` when it was settled already.
    pub fn claim_settlement(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    pub fn session(&self) -> Option<Arc<dyn SessionBooks>> {
        self.session.as_ref().and_then(Weak::upgrade)
    }
}

/// Runs `f` on the subscribe spans of `deliveries` at once (for settle
/// spans, which link to all of them). Locks in address order, each
/// delivery once, so concurrent batches cannot deadlock.
pub(crate) fn with_traces<R>(
    deliveries: &[&Arc<Delivery>],
    f: impl FnOnce(&mut [&mut DeliveryTrace]) -> R,
) -> Option<R> {
    let mut traced: Vec<&Arc<Delivery>> = deliveries
        .iter()
        .copied()
        .filter(|d| d.is_traced())
        .collect();
    if traced.is_empty() {
        return None;
    }
    traced.sort_by_key(|d| Arc::as_ptr(d).addr());
    traced.dedup_by_key(|d| Arc::as_ptr(d).addr());
    let mut guards: Vec<MutexGuard<'_, Traced>> = traced
        .iter()
        .filter_map(|d| d.trace.as_ref())
        .map(lock)
        .collect();
    let mut traces: Vec<&mut DeliveryTrace> = guards.iter_mut().map(|g| &mut g.trace).collect();
    Some(f(&mut traces))
}

/// What a settle request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Ack,
    Nack,
    /// A new ack deadline; `receipt` for the modack sent on arrival.
    Modack {
        seconds: i32,
        receipt: bool,
    },
}

impl Kind {
    pub fn settle_kind(self) -> SettleKind {
        match self {
            Self::Ack => SettleKind::Ack,
            Self::Nack => SettleKind::Nack,
            Self::Modack { .. } => SettleKind::Modack,
        }
    }

    /// The subscribe span's result once this request completes, when it
    /// ends the delivery.
    pub fn result(self) -> Option<&'static str> {
        match self {
            Self::Ack => Some(baton_trace_context::RESULT_ACKED),
            Self::Nack => Some(baton_trace_context::RESULT_NACKED),
            Self::Modack { .. } => None,
        }
    }
}

/// Where the outcome of one id goes.
pub(crate) type Reply = oneshot::Sender<Result<(), AckError>>;

/// One id to settle.
pub(crate) struct SettleRequest {
    pub kind: Kind,
    pub delivery: Arc<Delivery>,
    pub reply: Option<Reply>,
}

pub(crate) enum Command {
    Settle(SettleRequest),
    Close(oneshot::Sender<()>),
}

/// Queues settle requests for the acker task. The task ends after
/// [`AckerHandle::close`] or when every handle is gone, sending what is
/// queued first.
#[derive(Clone)]
pub(crate) struct AckerHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl AckerHandle {
    /// A handle queueing on `tx` (see `acker::spawn`).
    pub fn new(tx: mpsc::UnboundedSender<Command>) -> Self {
        Self { tx }
    }

    /// Queues `request`; gives it back when the acker has stopped.
    pub fn send(&self, request: SettleRequest) -> Result<(), SettleRequest> {
        match self.tx.send(Command::Settle(request)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Command::Settle(request))) => Err(request),
            Err(mpsc::error::SendError(Command::Close(_))) => Ok(()),
        }
    }

    /// Sends everything queued, waits for every request in flight (with its
    /// retries) and stops the acker.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Command::Close(done)).is_ok() {
            let _ = finished.await;
        }
    }
}
