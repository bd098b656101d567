//! Subscriptions: CreateSubscription, GetSubscription, UpdateSubscription,
//! ListSubscriptions, DeleteSubscription, ModifyPushConfig and
//! DetachSubscription, plus what the server reads of them (push endpoints,
//! flags, streams, backlog).

use baton_proto::pubsub::{PushConfig, Subscription};
use baton_proto::wkt;

use super::delivery::SubState;
use super::effects::CatalogEntry;
use super::state::State;
use super::{Broker, Txn};
use crate::error::{BrokerError, BrokerResult, ErrorCode};
use crate::field_mask::{self, FoldError};
use crate::filter::Filter;
use crate::names::{self, Collection};
use crate::paging::{ListPage, page};
use crate::validate;

/// Fields of a Subscription that UpdateSubscription may change.
/// The protobuf name of the Subscription message, for field-mask paths.
const SUBSCRIPTION_MESSAGE: &str = "google.pubsub.v1.Subscription";

const MUTABLE: &[&str] = &[
    "ack_deadline_seconds",
    "push_config",
    "bigquery_config",
    "cloud_storage_config",
    "retain_acked_messages",
    "message_retention_duration",
    "labels",
    "expiration_policy",
    "dead_letter_policy",
    "retry_policy",
    "enable_exactly_once_delivery",
    "message_transforms",
];

/// Fields of a Subscription fixed at creation.
const IMMUTABLE: &[&str] = &[
    "topic",
    "enable_message_ordering",
    "detached",
    "filter",
    "name",
];

impl Broker {
    /// CreateSubscription. A topic that retains messages hands its retained
    /// backlog to the new subscription.
    pub fn create_subscription(&self, mut sub: Subscription) -> BrokerResult<Subscription> {
        names::parse(&sub.name, Collection::Subscriptions)?;
        names::parse(&sub.topic, Collection::Topics)?;
        validate::subscription_settings(&mut sub)?;
        validate::subscription_features(&sub)?;
        let filter = if sub.filter.is_empty() {
            None
        } else {
            Some(
                Filter::parse(&sub.filter)
                    .map_err(|error| BrokerError::invalid(error.to_string()))?,
            )
        };
        let mut txn = self.lock();
        let (wall, now) = (self.clock.wall(), self.clock.now());
        let state = &mut *txn;
        if state.subscriptions.contains_key(&sub.name) {
            return Err(BrokerError::already_exists("Subscription already exists"));
        }
        if !state.topics.contains_key(&sub.topic) {
            return Err(BrokerError::not_found("Subscription topic does not exist"));
        }
        if let Some(policy) = &mut sub.dead_letter_policy {
            policy.max_delivery_attempts =
                validate::max_delivery_attempts(policy.max_delivery_attempts)?;
            if !state.topics.contains_key(&policy.dead_letter_topic) {
                return Err(BrokerError::not_found("Dead letter topic not found"));
            }
        }
        sub.state = 0;
        let uid = state.next_uid;
        state.next_uid += 1;
        let mut delivery = SubState::new(uid, sub.clone());
        delivery.pager = state.pager.clone();
        delivery.filter = filter;
        delivery.touch(wall);
        delivery.arm_inactivity(&mut state.fx);
        let State { topics, fx, .. } = state;
        if let Some(topic) = topics.get_mut(&sub.topic)
            && !sub.detached
        {
            topic.subscriptions.insert(sub.name.clone());
            topic.prune_log(wall, fx);
            for logged in &topic.log {
                delivery.offer(logged.seq, logged.message.clone(), now, fx);
            }
        }
        state.subscriptions.insert(sub.name.clone(), delivery);
        state.resize_windows();
        state
            .fx
            .catalog_changed(CatalogEntry::Subscription(sub.name.clone()));
        tracing::debug!(subscription = %sub.name, topic = %sub.topic, "subscription created");
        Ok(sub)
    }

    /// The lock, once `name` is known to be a subscription's valid name and
    /// the subscription exists.
    pub(crate) fn lock_subscription(&self, name: &str) -> BrokerResult<Txn<'_>> {
        names::parse(name, Collection::Subscriptions)?;
        let txn = self.lock();
        if txn.subscriptions.contains_key(name) {
            Ok(txn)
        } else {
            Err(BrokerError::subscription_not_found())
        }
    }

    /// Reads something of a subscription's state (NOT_FOUND when it is gone).
    fn read_subscription<T>(
        &self,
        name: &str,
        read: impl FnOnce(&SubState) -> T,
    ) -> BrokerResult<T> {
        self.lock()
            .subscriptions
            .get(name)
            .map(read)
            .ok_or_else(BrokerError::subscription_not_found)
    }

    /// GetSubscription.
    pub fn get_subscription(&self, name: &str) -> BrokerResult<Subscription> {
        names::parse(name, Collection::Subscriptions)?;
        self.read_subscription(name, |s| s.config.clone())
    }

    /// UpdateSubscription: applies the mutable fields named in `paths`.
    pub fn update_subscription(
        &self,
        update: Subscription,
        paths: &[String],
    ) -> BrokerResult<Subscription> {
        if paths.is_empty() {
            return Err(BrokerError::invalid(
                "The update_mask in the UpdateSubscriptionRequest must be set, and must contain a non-empty paths list.",
            ));
        }
        names::parse(&update.name, Collection::Subscriptions)?;
        let unknown = |path: &str| {
            BrokerError::invalid(format!(
                "Invalid update_mask provided in the UpdateSubscriptionRequest: {path} is not a known Subscription field. Note that field paths must be of the form 'push_config' rather than 'pushConfig'."
            ))
        };
        for path in paths {
            // A nested path (`push_config.push_endpoint`) updates one field
            // of a mutable top-level field.
            let top = path.split('.').next().unwrap_or(path);
            if IMMUTABLE.contains(&top) {
                return Err(BrokerError::invalid(format!(
                    "Invalid update_mask provided in the UpdateSubscriptionRequest: the {top} field in the Subscription is not mutable."
                )));
            }
            if !MUTABLE.contains(&top) || !field_mask::is_known(SUBSCRIPTION_MESSAGE, path) {
                return Err(unknown(path));
            }
        }
        let mut state = self.lock();
        let Some(current) = state
            .subscriptions
            .get(&update.name)
            .map(|s| s.config.clone())
        else {
            return Err(BrokerError::not_found("Subscription not found."));
        };
        let (update, paths) =
            match field_mask::fold_nested(SUBSCRIPTION_MESSAGE, &current, update, paths) {
                Ok(folded) => folded,
                Err(FoldError::Unknown(path)) => return Err(unknown(&path)),
                Err(FoldError::Reflection) => {
                    return Err(BrokerError::new(
                        ErrorCode::Internal,
                        "the Subscription descriptor is unavailable",
                    ));
                }
            };
        let mut next = current;
        for path in &paths {
            match path.as_str() {
                "ack_deadline_seconds" => {
                    next.ack_deadline_seconds = validate::ack_deadline(update.ack_deadline_seconds)?
                }
                "push_config" => {
                    let push = update.push_config.clone().unwrap_or_default();
                    validate::push_endpoint(&push.push_endpoint)?;
                    next.push_config = Some(push);
                }
                "bigquery_config" => {
                    validate::bigquery_config(update.bigquery_config.as_ref())?;
                    next.bigquery_config = update.bigquery_config.clone()
                }
                "cloud_storage_config" => {
                    validate::cloud_storage_config(update.cloud_storage_config.as_ref())?;
                    next.cloud_storage_config = update.cloud_storage_config.clone()
                }
                "retain_acked_messages" => {
                    next.retain_acked_messages = update.retain_acked_messages
                }
                "message_retention_duration" => {
                    let retention = update.message_retention_duration.unwrap_or(wkt::Duration {
                        seconds: validate::DEFAULT_RETENTION_SECS,
                        nanos: 0,
                    });
                    let mut probe = next.clone();
                    probe.message_retention_duration = Some(retention);
                    validate::subscription_settings(&mut probe)?;
                    next.message_retention_duration = Some(retention);
                }
                "labels" => next.labels = update.labels.clone(),
                "expiration_policy" => {
                    validate::expiration_policy(update.expiration_policy.as_ref())?;
                    next.expiration_policy = update.expiration_policy
                }
                "dead_letter_policy" => {
                    let mut policy = update.dead_letter_policy.clone();
                    if let Some(policy) = &mut policy {
                        policy.max_delivery_attempts =
                            validate::max_delivery_attempts(policy.max_delivery_attempts)?;
                        if !state.topics.contains_key(&policy.dead_letter_topic) {
                            return Err(BrokerError::not_found("Dead letter topic not found"));
                        }
                    }
                    next.dead_letter_policy = policy;
                }
                "retry_policy" => {
                    let mut policy = update.retry_policy;
                    if let Some(policy) = &mut policy {
                        validate::retry_policy(policy)?;
                    }
                    next.retry_policy = policy;
                }
                "enable_exactly_once_delivery" => {
                    next.enable_exactly_once_delivery = update.enable_exactly_once_delivery
                }
                "message_transforms" => {
                    validate::message_transforms(&update.message_transforms)?;
                    next.message_transforms = update.message_transforms.clone()
                }
                _ => {}
            }
        }
        let wall = self.clock.wall();
        let State {
            subscriptions, fx, ..
        } = &mut *state;
        if let Some(sub) = subscriptions.get_mut(&update.name) {
            sub.config = next.clone();
            // Changing a subscription is activity; a new ttl counts from now.
            sub.touch(wall);
            if paths.iter().any(|p| p == "expiration_policy") {
                sub.inactivity_armed = None;
                sub.arm_inactivity(fx);
            }
            // Streams read the flags (exactly-once, deadlines) as they go.
            fx.wake(&sub.notify);
        }
        if paths.iter().any(|p| p == "message_retention_duration") {
            state.rearm_retention(&update.name);
        }
        state
            .fx
            .catalog_changed(CatalogEntry::Subscription(update.name.clone()));
        Ok(next)
    }

    /// ListSubscriptions of `project`.
    pub fn list_subscriptions(
        &self,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Subscription>> {
        let project = names::parse_project(project)?;
        let prefix = format!("projects/{project}/subscriptions/");
        let state = self.lock();
        Ok(page(
            &state.subscriptions,
            &prefix,
            page_size,
            page_token,
            |_| true,
            |_, s| s.config.clone(),
        ))
    }

    /// DeleteSubscription: its backlog and leases go with it; open streams
    /// end with NOT_FOUND.
    pub fn delete_subscription(&self, name: &str) -> BrokerResult<()> {
        let mut state = self.lock_subscription(name)?;
        state.remove_subscription(name);
        Ok(())
    }

    /// ModifyPushConfig.
    pub fn modify_push_config(&self, name: &str, push: Option<PushConfig>) -> BrokerResult<()> {
        let push = push.unwrap_or_default();
        validate::push_endpoint(&push.push_endpoint)?;
        let mut state = self.lock_subscription(name)?;
        let wall = self.clock.wall();
        if let Some(sub) = state.subscriptions.get_mut(name) {
            sub.config.push_config = Some(push);
            sub.touch(wall);
        }
        state
            .fx
            .catalog_changed(CatalogEntry::Subscription(name.to_string()));
        Ok(())
    }

    /// DetachSubscription: the subscription stops receiving and its backlog
    /// is dropped; pulls answer FAILED_PRECONDITION.
    pub fn detach_subscription(&self, name: &str) -> BrokerResult<()> {
        let mut txn = self.lock_subscription(name)?;
        let State {
            subscriptions,
            topics,
            fx,
            ..
        } = &mut *txn;
        let Some(sub) = subscriptions.get_mut(name) else {
            return Err(BrokerError::subscription_not_found());
        };
        sub.config.detached = true;
        sub.clear(fx);
        if let Some(topic) = topics.get_mut(&sub.config.topic) {
            topic.subscriptions.remove(name);
        }
        fx.catalog_changed(CatalogEntry::Subscription(name.to_string()));
        Ok(())
    }

    /// Every attached subscription with a push endpoint: the ones push
    /// delivery must serve.
    pub fn push_subscriptions(&self) -> Vec<Subscription> {
        let state = self.lock();
        state
            .push
            .iter()
            .filter_map(|name| state.subscriptions.get(name))
            .map(|s| s.config.clone())
            .collect()
    }

    /// Current exactly-once and ordering flags of a subscription.
    pub fn subscription_flags(&self, name: &str) -> BrokerResult<(bool, bool)> {
        self.read_subscription(name, |s| {
            (
                s.config.enable_exactly_once_delivery,
                s.config.enable_message_ordering,
            )
        })
    }

    /// StreamingPull streams currently registered on a subscription. A client
    /// that drops its stream is only seen once the server reads the reset, so
    /// callers that need "no stream can lease this" wait for zero.
    pub fn open_streams(&self, name: &str) -> BrokerResult<usize> {
        self.read_subscription(name, |s| s.streams.len())
    }

    /// Messages neither acked nor dead-lettered on a subscription (after a
    /// restart on the disk store, only those in memory until
    /// [`Broker::backlog_counted`]).
    pub fn backlog_len(&self, name: &str) -> BrokerResult<usize> {
        self.read_subscription(name, SubState::backlog_len)
    }
}
