//! One StreamingPull session from start to graceful end.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::config::ShutdownBehavior;
use super::delivery::Kind;
use super::dispatcher::{Consumer, Core};
use super::lease::LEASE_TICK;
use super::message::settle;
use super::shared::Shared;
use super::{acker, stream};

/// Runs a session until `stop` (or a fatal stream error), then shuts it
/// down so nothing is lost: messages not yet handed to a handler are
/// nacked, running handlers are awaited (or their messages nacked, per the
/// shutdown behaviour), whatever is still leased is nacked, and every
/// pending settle request is sent before this returns.
pub(crate) async fn run(
    shared: Arc<Shared>,
    consumer: Consumer,
    stop: watch::Receiver<bool>,
) -> Result<(), tonic::Status> {
    let acker = acker::spawn(shared.clone());
    let core = Core::new(shared.clone(), consumer, acker.clone());
    let (stop_leases, leases_stopped) = watch::channel(false);
    let leases = tokio::spawn(maintain_leases(core.clone(), leases_stopped));
    let (receipt_tx, receipt_rx) = mpsc::unbounded_channel();
    let receipts = tokio::spawn(stream::run_receipts(core.clone(), receipt_rx));

    let outcome = stream::run(core.clone(), stop, receipt_tx).await;

    core.begin_closing();
    // The stream task dropped its sender: the receipt task finishes the
    // batches it has (their messages stay with the scheduler) and ends.
    let _ = receipts.await;
    for pending in core.drain_waiting() {
        pending.nack();
    }
    if shared.config.shutdown == ShutdownBehavior::WaitForHandlers {
        core.wait_for_handlers().await;
    }
    for delivery in core.outstanding() {
        settle(&delivery, Kind::Nack, None);
    }
    // A stream's buffered messages are settled now: let it end.
    core.end_stream();
    acker.close().await;
    stop_leases.send_replace(true);
    let _ = leases.await;
    tracing::debug!(subscription = %shared.subscription, "subscriber session ended");
    outcome
}

/// Extends and expires leases every [`LEASE_TICK`] until `stop`.
async fn maintain_leases(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => core.maintain_leases(Instant::now()),
            changed = stop.changed() => if changed.is_err() || *stop.borrow() {
                return;
            },
        }
    }
}
