//! Rebuilding the broker's state from what the disk store held: the
//! catalog, every unacked message (ready again, with the delivery attempts it
//! had used), snapshot contents, retained messages and topic logs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::delivery::{BacklogPager, SubState};
use super::effects::{CatalogEntry, ExpiryKind};
use super::state::{LoggedMessage, SnapshotState, State, TopicState};
use crate::clock::{Reading, system_time};
use crate::iam::IamPolicies;
use crate::schema::SchemaRegistry;
use crate::store::{Recovered, TailCount, opening_base};

/// Fills an empty `state` with what the store held, and arms the expiry
/// rules again: retention of every backlog, retained set and topic log,
/// snapshot expire times, and expiration policies (inactivity counts from
/// the restart: when a subscription was last active is not stored). What
/// expired while the server was down goes as soon as the timer task runs.
///
/// Each subscription holds the first of its backlog in memory; the rest
/// waits on disk, read back through `pager` as it is delivered, and is
/// counted for the stats by [`count_tails`] once the background count is
/// done.
pub(crate) fn restore(
    state: &mut State,
    recovered: Recovered,
    reading: Reading,
    pager: &BacklogPager,
) {
    let now = reading.now;
    let Recovered {
        catalog,
        windows,
        held,
        snapshot_messages,
        retained,
        logged,
        next_seq,
        opening,
        mut missing,
    } = recovered;
    // In this opening's own range of ids (see `store::OPENING_RANGE_BITS`).
    state.next_seq = next_seq;
    // Ack ids of earlier runs must not settle this run's deliveries: each
    // opening numbers its acks from its own range (the first from 1, like
    // an in-memory broker).
    state.next_ack = opening_base(opening);
    state.schemas = SchemaRegistry::restore(catalog.schemas);
    state.iam = IamPolicies::restore(catalog.policies);
    for topic in catalog.topics {
        state
            .topics
            .insert(topic.name.clone(), TopicState::new(topic));
    }
    for (topic, seq) in logged {
        let decoded = held.get(&seq).cloned();
        match (state.topics.get_mut(&topic), decoded) {
            (Some(topic), Some((message, published))) => topic.log.push_back(LoggedMessage {
                seq,
                message,
                published,
            }),
            _ => missing += 1,
        }
    }
    // Uids as before: long-named subscriptions' ack ids carry them.
    state.next_uid = catalog
        .subscriptions
        .iter()
        .map(|(uid, _)| uid + 1)
        .fold(catalog.next_uid.max(1), u64::max);
    let mut names = HashMap::new();
    for (uid, config) in catalog.subscriptions {
        let mut sub = SubState::new(uid, config.clone());
        sub.pager = Some(pager.clone());
        if !config.filter.is_empty() {
            match crate::filter::Filter::parse(&config.filter) {
                Ok(filter) => sub.filter = Some(filter),
                Err(error) => {
                    tracing::warn!(subscription = %config.name, %error, "stored filter does not parse; delivering everything");
                }
            }
        }
        if !config.detached
            && let Some(topic) = state.topics.get_mut(&config.topic)
        {
            topic.subscriptions.insert(config.name.clone());
        }
        names.insert(uid, config.name.clone());
        sub.touch(reading.wall);
        sub.arm_inactivity(&mut state.fx);
        let entry = CatalogEntry::Subscription(config.name.clone());
        state.subscriptions.insert(config.name, sub);
        state.note_push(&entry);
    }
    let State {
        subscriptions, fx, ..
    } = &mut *state;
    for window in windows {
        let Some(sub) = names
            .get(&window.uid)
            .and_then(|name| subscriptions.get_mut(name))
        else {
            continue;
        };
        for (seq, attempts, message) in window.rows {
            sub.restore(seq, message, attempts, now, fx);
        }
        if let Some(after) = window.more_after {
            sub.restore_tail(after, next_seq, now);
        }
    }
    for snapshot in catalog.snapshots {
        state.snapshots.insert(
            snapshot.name.clone(),
            SnapshotState {
                snapshot,
                messages: BTreeMap::new(),
            },
        );
    }
    for (name, seq) in snapshot_messages {
        let message = held.get(&seq).map(|(m, _)| m.clone());
        match (state.snapshots.get_mut(&name), message) {
            (Some(snapshot), Some(message)) => {
                snapshot.messages.insert(seq, message);
            }
            _ => missing += 1,
        }
    }
    for (uid, seq, published) in retained {
        let message = held.get(&seq).map(|(m, _)| m.clone());
        match (names.contains_key(&uid), message) {
            (true, Some(message)) => {
                state
                    .retained
                    .entry(uid)
                    .or_default()
                    .insert(seq, (message, published));
            }
            _ => missing += 1,
        }
    }
    let subscriptions: Vec<String> = names.into_values().collect();
    for name in &subscriptions {
        state.rearm_retention(name);
    }
    let State {
        topics,
        snapshots,
        fx,
        ..
    } = &mut *state;
    for topic in topics.values_mut() {
        topic.arm_retention(fx);
    }
    for snapshot in snapshots.values() {
        if let Some(at) = &snapshot.snapshot.expire_time {
            fx.expire_at(
                system_time(at),
                ExpiryKind::Snapshot {
                    name: Arc::from(snapshot.snapshot.name.as_str()),
                },
            );
        }
    }
    if missing > 0 {
        tracing::warn!(
            missing,
            "store rows refer to messages or resources that are gone; ignored"
        );
    }
    let (in_memory, on_disk) = state.subscriptions.values().fold((0, 0), |(m, d), sub| {
        (
            m + sub.messages.len(),
            d + usize::from(sub.disk_tail.is_some()),
        )
    });
    tracing::info!(
        topics = state.topics.len(),
        subscriptions = state.subscriptions.len(),
        snapshots = state.snapshots.len(),
        unacked_in_memory = in_memory,
        backlogs_continuing_on_disk = on_disk,
        "state recovered from the disk store"
    );
}

/// Adds what the background count found each backlog held beyond its
/// window when the store was opened (a subscription deleted or reset since
/// is passed over).
pub(crate) fn count_tails(state: &mut State, tails: &[TailCount]) -> (u64, u64) {
    let by_uid: HashMap<u64, &TailCount> = tails.iter().map(|tail| (tail.uid, tail)).collect();
    let (mut messages, mut bytes) = (0, 0);
    for sub in state.subscriptions.values_mut() {
        if let Some(tail) = by_uid.get(&sub.uid) {
            sub.count_tail(tail.messages, tail.bytes);
            messages += tail.messages;
            bytes += tail.bytes;
        }
    }
    (messages, bytes)
}
