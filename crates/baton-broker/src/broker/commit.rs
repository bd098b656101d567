//! The one place where an operation's effects are carried out (see
//! [`super::effects`]): when the operation lets go of the broker's lock, but
//! still under it, so the disk store, the observer and the timers see
//! changes in the order the broker made them.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use tokio::sync::{Notify, watch};

use super::dead_letter;
use super::effects::Event;
use super::state::State;
use crate::clock::{Clock, Reading};
use crate::observer::{DeadLetter, Delivery, DeliveryObserver, Redelivery};

/// Carries out everything `state.fx` holds, and whatever that causes in turn
/// (a dead letter published to its topic wakes that topic's subscribers):
/// the operation's changes go to the disk store as one unit.
pub(crate) fn commit(
    state: &mut State,
    clock: &Clock,
    catalog: &watch::Sender<u64>,
    timer_wake: &Notify,
) {
    if state.fx.is_empty() {
        return;
    }
    let mut journal = Vec::new();
    let mut changed = BTreeSet::new();
    let mut armed = false;
    loop {
        let fresh = state.fx.fresh();
        let fx = std::mem::replace(&mut state.fx, fresh);
        if fx.is_empty() {
            break;
        }
        journal.extend(fx.journal);
        changed.extend(fx.catalog);
        armed |= !fx.timers.is_empty() || !fx.expiries.is_empty();
        state.timers.extend(fx.timers.into_iter().map(Reverse));
        state.expiries.extend(fx.expiries.into_iter().map(Reverse));
        if !fx.events.is_empty()
            && let Some(observer) = &state.observer
        {
            // The observer is outside code called under the lock; a panic in
            // it must not keep the operation's changes from the disk store.
            let reported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                report(observer.as_ref(), fx.events, clock.read());
            }));
            if reported.is_err() {
                tracing::error!("the delivery observer panicked; its events were dropped");
            }
        }
        if !fx.history.is_empty()
            && let Some(journal) = &mut state.history
        {
            journal.file(fx.history);
        }
        for notify in fx.wake {
            notify.notify_waiters();
        }
        if !fx.dead_letters.is_empty() {
            dead_letter::forward(state, fx.dead_letters, clock);
        }
    }
    if !changed.is_empty() {
        let durable = state.journal.is_some();
        for entry in &changed {
            state.note_push(entry);
            if durable {
                journal.extend(state.catalog_rows(entry));
            }
        }
        catalog.send_modify(|version| *version = version.wrapping_add(1));
    }
    if let Some(store) = &state.journal
        && !journal.is_empty()
    {
        store.record(journal);
    }
    if armed {
        timer_wake.notify_one();
    }
}

/// Tells the observer about `events`, in order, in wall-clock time.
fn report(observer: &dyn DeliveryObserver, events: Vec<Event>, reading: Reading) {
    for event in events {
        match event {
            Event::Published {
                topic,
                messages,
                received,
                stored,
            } => observer.published(&topic, &messages, received, stored),
            Event::Delivered {
                subscription,
                message,
                ack_id,
                attempt,
                available_since,
                at,
                kind,
            } => observer.delivered(Delivery {
                subscription: &subscription,
                message: &message,
                ack_id: &ack_id,
                attempt,
                available_since: reading.wall_of(available_since),
                delivered_at: reading.wall_of(at),
                kind,
            }),
            Event::Redelivery {
                subscription,
                message,
                attempt,
                reason,
                at,
                available_at,
            } => observer.redelivery(Redelivery {
                subscription: &subscription,
                message: &message,
                attempt,
                reason,
                at: reading.wall_of(at),
                available_at: reading.wall_of(available_at),
            }),
            Event::DeadLettered {
                subscription,
                message,
                attempts,
                reason,
                dead_letter_topic,
                at,
            } => observer.dead_lettered(DeadLetter {
                subscription: &subscription,
                message: &message,
                attempts,
                reason,
                dead_letter_topic: &dead_letter_topic,
                at: reading.wall_of(at),
            }),
        }
    }
}
