//! One StreamingPull session from start to graceful end.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::acker::{AckerHandle, Kind};
use super::dispatcher::Core;
use super::message::settle;
use super::{Handler, Shared, ShutdownBehavior, lease, stream};

/// Runs a session until `stop` (or a fatal stream error), then shuts it
/// down so nothing is lost: messages not yet handed to a handler are
/// nacked, running handlers are awaited (or their messages nacked, per the
/// shutdown behaviour), whatever is still leased is nacked, and every
/// pending settle request is sent before this returns.
pub(crate) async fn run(
    shared: Arc<Shared>,
    handler: Handler,
    stop: watch::Receiver<bool>,
) -> Result<(), tonic::Status> {
    let acker = AckerHandle::spawn(shared.clone());
    let core = Core::new(shared.clone(), handler, acker.clone());
    let (stop_leases, leases_stopped) = watch::channel(false);
    let leases = tokio::spawn(lease::run(core.clone(), leases_stopped));
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
    acker.close().await;
    stop_leases.send_replace(true);
    let _ = leases.await;
    tracing::debug!(subscription = %shared.subscription, "subscriber session ended");
    outcome
}
