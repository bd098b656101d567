//! Snapshots (CreateSnapshot, GetSnapshot, UpdateSnapshot, ListSnapshots,
//! DeleteSnapshot) and Seek, to a snapshot or to a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use baton_proto::pubsub::Snapshot;
use baton_proto::pubsub::seek_request::Target;
use baton_proto::wkt;
use tokio::time::Instant;

use super::delivery::{SubState, published_at};
use super::effects::{CatalogEntry, Effects, ExpiryKind};
use super::state::{SnapshotState, State};
use super::{Broker, DELETED_TOPIC};
use crate::clock::{system_time, timestamp};
use crate::error::{BrokerError, BrokerResult, ErrorCode};
use crate::held::HeldMessage;
use crate::names::{self, Collection};
use crate::paging::{ListPage, page};
use crate::store::StoreOp;

/// How long a snapshot lives at most (the service's rule: 7 days from its
/// creation, less the age of the oldest unacked message it captures).
const SNAPSHOT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The shortest lifetime a new snapshot may have; the service refuses to
/// create one that would expire sooner.
const MIN_SNAPSHOT_LIFETIME: Duration = Duration::from_secs(3600);

/// Whether `snapshot` has reached its expire time at `wall` (the timer task
/// deletes it then; until it has, it is treated as gone already).
fn expired(snapshot: &Snapshot, wall: SystemTime) -> bool {
    snapshot
        .expire_time
        .as_ref()
        .is_some_and(|at| system_time(at) <= wall)
}

/// Arms the expiry of `snapshot` at its expire time, if it has one.
fn arm_expiry(snapshot: &Snapshot, fx: &mut Effects) {
    if let Some(at) = &snapshot.expire_time {
        fx.expire_at(
            system_time(at),
            ExpiryKind::Snapshot {
                name: Arc::from(snapshot.name.as_str()),
            },
        );
    }
}

fn snapshot_not_found() -> BrokerError {
    BrokerError::not_found("Snapshot does not exist")
}

/// Replaces a subscription's backlog with `messages`, all unacked and ready,
/// and forgets every outstanding lease.
fn reset_backlog(
    sub: &mut SubState,
    mut messages: Vec<(u64, Arc<HeldMessage>)>,
    now: Instant,
    fx: &mut Effects,
) {
    sub.clear(fx);
    messages.sort_by_key(|(seq, _)| *seq);
    for (seq, message) in messages {
        sub.enqueue(seq, message, now, fx);
    }
}

impl Broker {
    /// CreateSnapshot: captures the subscription's unacked messages; the
    /// snapshot also keeps everything the topic receives afterwards.
    pub fn create_snapshot(
        &self,
        name: &str,
        subscription: &str,
        labels: HashMap<String, String>,
    ) -> BrokerResult<Snapshot> {
        names::parse(name, Collection::Snapshots)?;
        let mut state = self.lock();
        let wall = self.clock.wall();
        if state.snapshots.contains_key(name) {
            return Err(BrokerError::already_exists("Snapshot already exists"));
        }
        let Some(sub) = state.subscriptions.get(subscription) else {
            return Err(BrokerError::subscription_not_found());
        };
        if sub.config.topic == DELETED_TOPIC {
            return Err(BrokerError::new(
                ErrorCode::FailedPrecondition,
                "The subscription's topic has been deleted.",
            ));
        }
        let messages: BTreeMap<u64, Arc<HeldMessage>> = sub
            .unacked()
            .map_err(super::storage_error)?
            .into_iter()
            .collect();
        // 7 days, less the age of the oldest unacked message captured.
        let expire_time =
            sub.oldest_owed().map_or(wall, |oldest| oldest.min(wall)) + SNAPSHOT_LIFETIME;
        if expire_time < wall + MIN_SNAPSHOT_LIFETIME {
            return Err(BrokerError::new(
                ErrorCode::FailedPrecondition,
                "The snapshot would expire in less than 1 hour after creation: the subscription's oldest unacked message is more than 6 days and 23 hours old.",
            ));
        }
        let snapshot = Snapshot {
            name: name.to_string(),
            topic: sub.config.topic.clone(),
            expire_time: Some(timestamp(expire_time)),
            labels,
        };
        arm_expiry(&snapshot, &mut state.fx);
        state.fx.journal(|| StoreOp::SnapshotHold {
            snapshot: name.into(),
            seqs: messages.keys().copied().collect(),
        });
        state.snapshots.insert(
            name.to_string(),
            SnapshotState {
                snapshot: snapshot.clone(),
                messages,
            },
        );
        state
            .fx
            .catalog_changed(CatalogEntry::Snapshot(name.to_string()));
        Ok(snapshot)
    }

    /// GetSnapshot.
    pub fn get_snapshot(&self, name: &str) -> BrokerResult<Snapshot> {
        names::parse(name, Collection::Snapshots)?;
        let wall = self.clock.wall();
        self.lock()
            .snapshots
            .get(name)
            .map(|s| s.snapshot.clone())
            .filter(|s| !expired(s, wall))
            .ok_or_else(snapshot_not_found)
    }

    /// UpdateSnapshot: labels and expire time.
    pub fn update_snapshot(&self, update: Snapshot, paths: &[String]) -> BrokerResult<Snapshot> {
        if paths.is_empty() {
            return Err(BrokerError::invalid(
                "The update_mask in the UpdateSnapshotRequest must be set, and must contain a non-empty paths list.",
            ));
        }
        names::parse(&update.name, Collection::Snapshots)?;
        if let Some(other) = paths
            .iter()
            .find(|p| !matches!(p.as_str(), "labels" | "expire_time"))
        {
            return Err(BrokerError::invalid(format!(
                "Invalid update_mask provided in the UpdateSnapshotRequest: {other} is not a known Snapshot field."
            )));
        }
        let mut txn = self.lock();
        let wall = self.clock.wall();
        let State { snapshots, fx, .. } = &mut *txn;
        let snapshot = &mut snapshots
            .get_mut(&update.name)
            .filter(|s| !expired(&s.snapshot, wall))
            .ok_or_else(snapshot_not_found)?
            .snapshot;
        for path in paths {
            match path.as_str() {
                "labels" => snapshot.labels = update.labels.clone(),
                _ => {
                    snapshot.expire_time = update.expire_time;
                    // An expiry armed for an earlier time finds the later
                    // one and does nothing.
                    arm_expiry(snapshot, fx);
                }
            }
        }
        let answer = snapshot.clone();
        fx.catalog_changed(CatalogEntry::Snapshot(answer.name.clone()));
        Ok(answer)
    }

    /// ListSnapshots of `project`.
    pub fn list_snapshots(
        &self,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Snapshot>> {
        let project = names::parse_project(project)?;
        let prefix = format!("projects/{project}/snapshots/");
        let state = self.lock();
        Ok(page(
            &state.snapshots,
            &prefix,
            page_size,
            page_token,
            |_| true,
            |_, s| s.snapshot.clone(),
        ))
    }

    /// DeleteSnapshot.
    pub fn delete_snapshot(&self, name: &str) -> BrokerResult<()> {
        names::parse(name, Collection::Snapshots)?;
        let mut state = self.lock();
        state.remove_snapshot(name).ok_or_else(snapshot_not_found)?;
        Ok(())
    }

    /// Seek, to a snapshot or a time (the two targets of a SeekRequest).
    pub fn seek(&self, subscription: &str, target: Option<Target>) -> BrokerResult<()> {
        match target {
            Some(Target::Snapshot(snapshot)) => self.seek_to_snapshot(subscription, &snapshot),
            Some(Target::Time(time)) => self.seek_to_time(subscription, &time),
            None => Err(BrokerError::invalid(
                "No target was specified in the SeekRequest. Must specify either a time or a snapshot",
            )),
        }
    }

    /// Seek to a snapshot: the subscription's backlog becomes the snapshot's.
    pub fn seek_to_snapshot(&self, subscription: &str, snapshot: &str) -> BrokerResult<()> {
        names::parse(subscription, Collection::Subscriptions)?;
        names::parse(snapshot, Collection::Snapshots)?;
        let mut txn = self.lock();
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let State {
            snapshots,
            subscriptions,
            fx,
            ..
        } = &mut *txn;
        let Some(snap) = snapshots
            .get(snapshot)
            .filter(|s| !expired(&s.snapshot, wall))
        else {
            return Err(snapshot_not_found());
        };
        let Some(sub) = subscriptions.get_mut(subscription) else {
            return Err(BrokerError::subscription_not_found());
        };
        sub.touch(wall);
        if sub.config.topic != snap.snapshot.topic {
            return Err(BrokerError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "The subscription's topic {} is different from that of the snapshot {}; they must match in order for Seek work. Note that if a topic is deleted and then re-created with the same name, it is considered a distinct topic for these purposes.",
                    sub.config.topic, snap.snapshot.topic
                ),
            ));
        }
        let messages = snap.messages.iter().map(|(s, m)| (*s, m.clone())).collect();
        reset_backlog(sub, messages, now, fx);
        Ok(())
    }

    /// Seek to a time: messages published before it count as acked, later
    /// ones (still held, retained or in the topic's log) as unacked.
    pub fn seek_to_time(&self, subscription: &str, time: &wkt::Timestamp) -> BrokerResult<()> {
        names::parse(subscription, Collection::Subscriptions)?;
        let target = system_time(time);
        let mut txn = self.lock();
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let State {
            subscriptions,
            retained,
            topics,
            fx,
            ..
        } = &mut *txn;
        let Some(sub) = subscriptions.get_mut(subscription) else {
            return Err(BrokerError::subscription_not_found());
        };
        sub.touch(wall);
        let mut candidates: BTreeMap<u64, Arc<HeldMessage>> = sub
            .unacked()
            .map_err(super::storage_error)?
            .into_iter()
            .collect();
        let kept = retained.entry(sub.uid).or_default();
        for (seq, (message, _)) in kept.iter() {
            candidates.insert(*seq, message.clone());
        }
        if let Some(topic) = topics.get(&sub.config.topic) {
            for logged in &topic.log {
                candidates.insert(logged.seq, logged.message.clone());
            }
        }
        let keep_acked = sub.config.retain_acked_messages;
        let mut unacked = Vec::new();
        let mut acked = BTreeMap::new();
        for (seq, message) in candidates {
            let when = published_at(&message);
            if when >= target {
                unacked.push((seq, message));
            } else if keep_acked {
                acked.insert(seq, (message, when));
            }
        }
        let uid = sub.uid;
        fx.journal(|| StoreOp::RetainNone { subscription: uid });
        for (seq, (_, published)) in &acked {
            fx.journal(|| StoreOp::Retain {
                subscription: uid,
                seq: *seq,
                published: *published,
            });
        }
        *kept = acked;
        reset_backlog(sub, unacked, now, fx);
        txn.rearm_retention(subscription);
        Ok(())
    }
}
