//! Topics: CreateTopic, GetTopic, UpdateTopic, ListTopics,
//! ListTopicSubscriptions, ListTopicSnapshots, DeleteTopic, and Publish.

use baton_proto::pubsub::Topic;

use super::effects::CatalogEntry;
use super::state::TopicState;
use super::{Broker, DELETED_TOPIC, fanout};
use crate::error::{BrokerError, BrokerResult, ErrorCode};
use crate::field_mask::{self, FoldError};
use crate::names::{self, Collection};
use crate::paging::{ListPage, page};
use crate::published::PublishedMessage;
use crate::schema::TopicBinding;
use crate::store::StoreOp;
use crate::validate;

/// Fields of a Topic that UpdateTopic may change.
/// The protobuf name of the Topic message, for field-mask paths.
const TOPIC_MESSAGE: &str = "google.pubsub.v1.Topic";

const UPDATABLE: &[&str] = &[
    "labels",
    "message_storage_policy",
    "kms_key_name",
    "schema_settings",
    "message_retention_duration",
    "ingestion_data_source_settings",
    "message_transforms",
];

impl Broker {
    /// CreateTopic.
    pub fn create_topic(&self, mut topic: Topic) -> BrokerResult<Topic> {
        names::parse(&topic.name, Collection::Topics)?;
        validate::topic_settings(&topic)?;
        validate::topic_features(&topic)?;
        let mut state = self.lock();
        if let Some(settings) = &topic.schema_settings {
            state.schemas.check_settings(settings)?;
        }
        if state.topics.contains_key(&topic.name) {
            return Err(BrokerError::already_exists("Topic already exists"));
        }
        topic.state = 0;
        state
            .topics
            .insert(topic.name.clone(), TopicState::new(topic.clone()));
        state
            .fx
            .catalog_changed(CatalogEntry::Topic(topic.name.clone()));
        tracing::debug!(topic = %topic.name, "topic created");
        Ok(topic)
    }

    /// GetTopic.
    pub fn get_topic(&self, name: &str) -> BrokerResult<Topic> {
        names::parse(name, Collection::Topics)?;
        self.lock()
            .topics
            .get(name)
            .map(|t| t.topic.clone())
            .ok_or_else(BrokerError::topic_not_found)
    }

    /// UpdateTopic: applies the fields named in `paths` (snake_case).
    pub fn update_topic(&self, update: Topic, paths: &[String]) -> BrokerResult<Topic> {
        if paths.is_empty() {
            return Err(BrokerError::invalid(
                "The update_mask in the UpdateTopicRequest must be set, and must contain a non-empty paths list.",
            ));
        }
        names::parse(&update.name, Collection::Topics)?;
        let unknown = |path: &str| {
            BrokerError::invalid(format!(
                "Invalid update_mask provided in the UpdateTopicRequest: {path} is not a known Topic field. Note that field paths must be of the form 'schema_settings' rather than 'schemaSetings'."
            ))
        };
        // A nested path (`schema_settings.first_revision_id`) updates one
        // field of an updatable top-level field.
        if let Some(other) = paths.iter().find(|p| {
            let top = p.split('.').next().unwrap_or(p);
            !UPDATABLE.contains(&top) || !field_mask::is_known(TOPIC_MESSAGE, p)
        }) {
            return Err(unknown(other));
        }
        let mut state = self.lock();
        let current = state
            .topics
            .get(&update.name)
            .ok_or_else(|| BrokerError::not_found("Topic not found."))?
            .topic
            .clone();
        let (update, paths) = match field_mask::fold_nested(TOPIC_MESSAGE, &current, update, paths)
        {
            Ok(folded) => folded,
            Err(FoldError::Unknown(path)) => return Err(unknown(&path)),
            Err(FoldError::Reflection) => {
                return Err(BrokerError::new(
                    ErrorCode::Internal,
                    "the Topic descriptor is unavailable",
                ));
            }
        };
        validate::topic_settings(&update)?;
        for path in &paths {
            match path.as_str() {
                "ingestion_data_source_settings" => validate::ingestion_data_source_settings(
                    update.ingestion_data_source_settings.as_ref(),
                )?,
                "message_transforms" => validate::message_transforms(&update.message_transforms)?,
                _ => {}
            }
        }
        if let Some(settings) = &update.schema_settings
            && paths.iter().any(|p| p == "schema_settings")
        {
            state.schemas.check_settings(settings)?;
        }
        let wall = self.clock.wall();
        let super::state::State { topics, fx, .. } = &mut *state;
        let topic_state = topics
            .get_mut(&update.name)
            .ok_or_else(|| BrokerError::not_found("Topic not found."))?;
        let topic = &mut topic_state.topic;
        for path in &paths {
            match path.as_str() {
                "labels" => topic.labels = update.labels.clone(),
                "message_storage_policy" => {
                    topic.message_storage_policy = update.message_storage_policy.clone()
                }
                "kms_key_name" => topic.kms_key_name = update.kms_key_name.clone(),
                "schema_settings" => topic.schema_settings = update.schema_settings.clone(),
                "message_retention_duration" => {
                    topic.message_retention_duration = update.message_retention_duration
                }
                "ingestion_data_source_settings" => {
                    topic.ingestion_data_source_settings =
                        update.ingestion_data_source_settings.clone()
                }
                "message_transforms" => {
                    topic.message_transforms = update.message_transforms.clone()
                }
                _ => {}
            }
        }
        let answer = topic.clone();
        if paths.iter().any(|p| p == "message_retention_duration") {
            // The log follows the new retention from now on.
            topic_state.prune_log(wall, fx);
            topic_state.retention_armed = None;
            topic_state.arm_retention(fx);
        }
        fx.catalog_changed(CatalogEntry::Topic(answer.name.clone()));
        Ok(answer)
    }

    /// ListTopics of `project` (`projects/{id}`).
    pub fn list_topics(
        &self,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Topic>> {
        let project = names::parse_project(project)?;
        let prefix = format!("projects/{project}/topics/");
        let state = self.lock();
        Ok(page(
            &state.topics,
            &prefix,
            page_size,
            page_token,
            |_| true,
            |_, t| t.topic.clone(),
        ))
    }

    /// ListTopicSubscriptions: names of the topic's attached subscriptions.
    pub fn list_topic_subscriptions(
        &self,
        topic: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<String>> {
        names::parse(topic, Collection::Topics)?;
        let state = self.lock();
        // The emulator lists nothing (rather than NOT_FOUND) for a missing topic.
        let attached: std::collections::BTreeMap<String, ()> = state
            .topics
            .get(topic)
            .map(|t| t.subscriptions.iter().map(|s| (s.clone(), ())).collect())
            .unwrap_or_default();
        Ok(page(
            &attached,
            "projects/",
            page_size,
            page_token,
            |_| true,
            |n, _| n.clone(),
        ))
    }

    /// ListTopicSnapshots: names of the snapshots taken from the topic.
    pub fn list_topic_snapshots(
        &self,
        topic: &str,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<String>> {
        names::parse(topic, Collection::Topics)?;
        let state = self.lock();
        Ok(page(
            &state.snapshots,
            "projects/",
            page_size,
            page_token,
            |s| s.snapshot.topic == topic,
            |n, _| n.clone(),
        ))
    }

    /// DeleteTopic: its subscriptions stay, reporting [`DELETED_TOPIC`].
    pub fn delete_topic(&self, name: &str) -> BrokerResult<()> {
        names::parse(name, Collection::Topics)?;
        let mut state = self.lock();
        let topic = state
            .topics
            .remove(name)
            .ok_or_else(BrokerError::topic_not_found)?;
        state.iam.remove(name);
        for sub_name in topic.subscriptions {
            if let Some(sub) = state.subscriptions.get_mut(&sub_name) {
                sub.config.topic = DELETED_TOPIC.to_string();
                state
                    .fx
                    .catalog_changed(CatalogEntry::Subscription(sub_name));
            }
        }
        state.fx.journal(|| StoreOp::LogNone { topic: name.into() });
        state
            .fx
            .catalog_changed(CatalogEntry::Topic(name.to_string()));
        tracing::debug!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Publish: validates, assigns ids and publish times, fans out to every
    /// attached subscription and wakes their waiters.
    pub fn publish<M: Into<PublishedMessage>>(
        &self,
        topic: &str,
        messages: Vec<M>,
    ) -> BrokerResult<Vec<String>> {
        // A no-op for messages already taken apart: the vector is reused.
        let mut messages: Vec<PublishedMessage> = messages.into_iter().map(Into::into).collect();
        let received = self.clock.wall();
        names::parse(topic, Collection::Topics)?;
        let binding: Option<BrokerResult<TopicBinding>> = {
            let state = self.lock();
            let topic = state
                .topics
                .get(topic)
                .ok_or_else(BrokerError::topic_not_found)?;
            let settings = topic.topic.schema_settings.as_ref();
            settings.map(|settings| state.schemas.binding(settings))
        };
        let checked = validate::publish_messages(&messages).and_then(|()| match binding {
            // Decoding happens outside the lock: schemas are compiled once
            // and shared by `Arc`.
            Some(binding) => binding?.stamp(&mut messages),
            None => Ok(()),
        });
        let mut state = self.lock();
        let outcome = checked
            .and_then(|()| fanout::append(&mut state, topic, messages, received, &self.clock));
        if let Some(counters) = state.topics.get_mut(topic).map(|t| &mut t.counters) {
            match outcome {
                Ok(_) => counters.publish_operations += 1,
                Err(_) => counters.publish_errors += 1,
            }
        }
        outcome
    }
}
