//! The real service's expiry rules, on the broker's wall clock: what an
//! [`Expiry`](super::effects::Expiry) does when it comes due.
//!
//! - subscription retention: unacked messages older than the
//!   subscription's `message_retention_duration` (by publish time) leave
//!   its backlog and their leases end; with `retain_acked_messages` the
//!   retained acked messages are pruned to it too;
//! - topic retention: the topic's log is pruned to its retention;
//! - expiration policy: a subscription without activity for its ttl
//!   (31 days unless its policy says otherwise) is deleted;
//! - snapshots are deleted at their expire time.
//!
//! Each deadline is armed for the oldest thing that can expire (messages
//! leave in publish order), so a firing costs what it removes plus one new
//! deadline; nothing scans the backlog on a tick. Every rule checks again
//! when it fires, so a stale deadline (armed before the state moved on) does
//! nothing but, at most, arm the right one.

use std::time::SystemTime;

use super::effects::ExpiryKind;
use super::state::State;

/// Carries out the expiry `kind`, due at `wall`.
pub(crate) fn fire(state: &mut State, kind: ExpiryKind, wall: SystemTime) {
    match kind {
        ExpiryKind::SubscriptionRetention { uid, name } => {
            subscription_retention(state, uid, &name, wall)
        }
        ExpiryKind::SubscriptionInactivity { uid, name } => {
            subscription_inactivity(state, uid, &name, wall)
        }
        ExpiryKind::TopicRetention { topic } => topic_retention(state, &topic, wall),
        ExpiryKind::Snapshot { name } => snapshot(state, &name, wall),
    }
}

fn subscription_retention(state: &mut State, uid: u64, name: &str, wall: SystemTime) {
    let State {
        subscriptions,
        retained,
        fx,
        ..
    } = &mut *state;
    let Some(sub) = subscriptions.get_mut(name).filter(|s| s.uid == uid) else {
        return;
    };
    if sub.retention_armed.is_some_and(|armed| armed > wall) {
        // Stale: an earlier deadline fired and armed a later one.
        return;
    }
    let dropped = sub.drop_expired(wall, fx);
    let retention = sub.retention();
    let mut pruned = 0usize;
    if let Some(kept) = retained.get_mut(&uid) {
        while let Some(entry) = kept.first_entry() {
            if entry.get().1 + retention > wall {
                break;
            }
            let seq = *entry.key();
            entry.remove();
            fx.journal(|| crate::store::StoreOp::Unretain {
                subscription: uid,
                seq,
            });
            pruned += 1;
        }
    }
    if dropped + pruned > 0 {
        tracing::debug!(subscription = %name, dropped, pruned, "messages past the subscription's retention");
    }
    state.rearm_retention(name);
}

fn subscription_inactivity(state: &mut State, uid: u64, name: &str, wall: SystemTime) {
    let State {
        subscriptions, fx, ..
    } = &mut *state;
    let Some(sub) = subscriptions.get_mut(name).filter(|s| s.uid == uid) else {
        return;
    };
    if sub.inactivity_armed.is_some_and(|armed| armed > wall) {
        return;
    }
    sub.inactivity_armed = None;
    let Some(ttl) = crate::validate::expiration_ttl(&sub.config) else {
        return;
    };
    if sub.has_subscriber_stream() {
        // An open stream is activity for as long as it is open.
        sub.touch(wall);
    }
    if sub.last_activity + ttl > wall {
        sub.arm_inactivity(fx);
        return;
    }
    tracing::info!(subscription = %name, ?ttl, "subscription expired after inactivity");
    state.remove_subscription(name);
}

fn topic_retention(state: &mut State, name: &str, wall: SystemTime) {
    let State { topics, fx, .. } = &mut *state;
    let Some(topic) = topics.get_mut(name) else {
        return;
    };
    if topic.retention_armed.is_some_and(|armed| armed > wall) {
        return;
    }
    topic.retention_armed = None;
    topic.prune_log(wall, fx);
    topic.arm_retention(fx);
}

fn snapshot(state: &mut State, name: &str, wall: SystemTime) {
    let due = state.snapshots.get(name).is_some_and(|s| {
        s.snapshot
            .expire_time
            .as_ref()
            .is_some_and(|at| crate::clock::system_time(at) <= wall)
    });
    if due {
        tracing::info!(snapshot = %name, "snapshot expired");
        state.remove_snapshot(name);
    }
}
