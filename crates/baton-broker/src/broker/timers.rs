//! The broker's timers: lease deadlines and retry backoffs, in one heap
//! ordered by when they are due (monotonic time), and the expiry deadlines
//! ([`super::expiry`]) in another, ordered by wall-clock time. A timer whose
//! lease was settled or extended, or whose subscription was deleted, is
//! skipped when it fires.

use std::cmp::Reverse;

use tokio::time::Instant;

use super::effects::TimerKind;
use super::expiry;
use super::state::State;
use crate::clock::Reading;
use crate::observer::LeaseEnd;

/// Fires every timer and expiry due at `reading`; when the next one is due.
pub(crate) fn fire_due(state: &mut State, reading: Reading) -> Option<Instant> {
    let now = reading.now;
    while let Some(Reverse(expiry)) = state.expiries.peek() {
        if expiry.at > reading.wall {
            break;
        }
        let Some(Reverse(expiry)) = state.expiries.pop() else {
            break;
        };
        expiry::fire(state, expiry.kind, reading.wall);
    }
    while let Some(Reverse(timer)) = state.timers.peek() {
        if timer.at > now {
            break;
        }
        let Some(Reverse(timer)) = state.timers.pop() else {
            break;
        };
        let State {
            subscriptions, fx, ..
        } = &mut *state;
        let Some(sub) = subscriptions
            .get_mut(&*timer.sub_name)
            .filter(|s| s.uid == timer.sub_uid)
        else {
            continue;
        };
        match timer.kind {
            TimerKind::LeaseExpiry { ack } => {
                if let Some(seq) = sub.lease_expired(ack, now) {
                    sub.requeue(seq, now, LeaseEnd::Expired, fx);
                }
            }
            TimerKind::BackoffOver { seq } => {
                sub.backoff_elapsed(seq, now, fx);
            }
        }
    }
    // Timers armed by what just fired (backoffs) are still in the effects;
    // the earliest of both is when to look again.
    let armed = state.fx.timers.iter().map(|t| t.at).min();
    let queued = state.timers.peek().map(|Reverse(t)| t.at);
    // Expiries wait in wall-clock time; the sleep is monotonic.
    let instant_of =
        |at: std::time::SystemTime| now + at.duration_since(reading.wall).unwrap_or_default();
    let armed_expiry = state.fx.expiries.iter().map(|e| instant_of(e.at)).min();
    let queued_expiry = state.expiries.peek().map(|Reverse(e)| instant_of(e.at));
    armed
        .into_iter()
        .chain(queued)
        .chain(armed_expiry)
        .chain(queued_expiry)
        .min()
}
