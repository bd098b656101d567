//! Typed updates of topics and subscriptions: each `with_*` sets a field
//! and adds its path to the update mask, so only what was set changes.
//! Schema revisions and the encoding alone go as nested paths
//! (`schema_settings.first_revision_id`), which leave the topic's schema
//! and the other settings as they are.

use std::collections::HashMap;
use std::time::Duration;

use baton_proto::pubsub::{
    DeadLetterPolicy, ExpirationPolicy, ModifyPushConfigRequest, PushConfig, RetryPolicy,
    SchemaSettings, Subscription, Topic,
};

use crate::admin::duration;
use crate::client::Client;
use crate::error::AdminError;
use crate::retry::CallFamily;
use crate::schemas::MessageEncoding;

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Adds `path` to `paths` once.
fn touch(paths: &mut Vec<String>, path: &str) {
    if !paths.iter().any(|p| p == path) {
        paths.push(path.to_string());
    }
}

/// Changes to a topic; the update mask is derived from what was set.
///
/// ```
/// use baton_client::TopicUpdate;
/// let update = TopicUpdate::new("orders")
///     .with_label("env", "prod")
///     .with_schema_revisions("rev-a", "rev-b");
/// assert_eq!(
///     update.paths(),
///     ["labels", "schema_settings.first_revision_id", "schema_settings.last_revision_id"]
/// );
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TopicUpdate {
    /// The topic with the new values (name may be short).
    topic: Topic,
    /// The mask, snake_case paths in the order first set.
    paths: Vec<String>,
}

impl TopicUpdate {
    /// Changes to topic `id` (short id or full name).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            topic: Topic {
                name: id.into(),
                ..Default::default()
            },
            paths: Vec::new(),
        }
    }

    fn schema_settings(&mut self) -> &mut SchemaSettings {
        self.topic
            .schema_settings
            .get_or_insert_with(SchemaSettings::default)
    }

    /// Whether the whole of `schema_settings` is replaced (a schema was
    /// set or removed), in which case no nested schema path is added.
    fn replaces_schema_settings(&self) -> bool {
        self.paths.iter().any(|p| p == "schema_settings")
    }

    fn touch_schema_field(&mut self, field: &str) {
        if !self.replaces_schema_settings() {
            touch(&mut self.paths, &format!("schema_settings.{field}"));
        }
    }

    /// Replaces every label with `labels`.
    #[must_use]
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.topic.labels = labels;
        touch(&mut self.paths, "labels");
        self
    }

    /// Adds a label to the new set of labels (which replaces the old one).
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.topic.labels.insert(key.into(), value.into());
        touch(&mut self.paths, "labels");
        self
    }

    /// How long published messages are kept (10 minutes to 31 days), for
    /// seeking subscriptions back; `None` stops keeping them.
    #[must_use]
    pub fn with_message_retention(mut self, retention: Option<Duration>) -> Self {
        self.topic.message_retention_duration = retention.map(duration);
        touch(&mut self.paths, "message_retention_duration");
        self
    }

    /// Validates publishes against `schema` (id or full name) in
    /// `encoding`: replaces the whole schema settings, so revisions not set
    /// with [`Self::with_schema_revisions`] are cleared.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>, encoding: MessageEncoding) -> Self {
        let settings = self.schema_settings();
        settings.schema = schema.into();
        settings.encoding = encoding.to_proto();
        self.paths.retain(|p| !p.starts_with("schema_settings."));
        touch(&mut self.paths, "schema_settings");
        self
    }

    /// Stops validating publishes against a schema.
    #[must_use]
    pub fn without_schema(mut self) -> Self {
        self.topic.schema_settings = None;
        self.paths.retain(|p| !p.starts_with("schema_settings."));
        touch(&mut self.paths, "schema_settings");
        self
    }

    /// Changes only the encoding messages are validated in; the schema and
    /// its revisions stay.
    #[must_use]
    pub fn with_message_encoding(mut self, encoding: MessageEncoding) -> Self {
        self.schema_settings().encoding = encoding.to_proto();
        self.touch_schema_field("encoding");
        self
    }

    /// Accepts messages valid against revisions `first` to `last` of the
    /// topic's schema (revision ids); the schema and encoding stay.
    #[must_use]
    pub fn with_schema_revisions(self, first: impl Into<String>, last: impl Into<String>) -> Self {
        self.with_first_revision_id(first)
            .with_last_revision_id(last)
    }

    /// The oldest schema revision messages may be valid against.
    #[must_use]
    pub fn with_first_revision_id(mut self, revision_id: impl Into<String>) -> Self {
        self.schema_settings().first_revision_id = revision_id.into();
        self.touch_schema_field("first_revision_id");
        self
    }

    /// The newest schema revision messages may be valid against.
    #[must_use]
    pub fn with_last_revision_id(mut self, revision_id: impl Into<String>) -> Self {
        self.schema_settings().last_revision_id = revision_id.into();
        self.touch_schema_field("last_revision_id");
        self
    }

    /// The field-mask paths this update sends.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The topic as it will be sent (name not yet resolved).
    pub fn as_proto(&self) -> &Topic {
        &self.topic
    }
}

/// Changes to a subscription; the update mask is derived from what was set.
///
/// ```
/// use std::time::Duration;
/// use baton_client::SubscriptionUpdate;
/// let update = SubscriptionUpdate::new("worker")
///     .with_ack_deadline(Duration::from_secs(60))
///     .with_push_endpoint("https://example.com/push");
/// assert_eq!(update.paths(), ["ack_deadline_seconds", "push_config"]);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubscriptionUpdate {
    /// The subscription with the new values (names may be short).
    subscription: Subscription,
    /// The mask, snake_case paths in the order first set.
    paths: Vec<String>,
}

impl SubscriptionUpdate {
    /// Changes to subscription `id` (short id or full name).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            subscription: Subscription {
                name: id.into(),
                ..Default::default()
            },
            paths: Vec::new(),
        }
    }

    /// Time a subscriber has to ack before redelivery (10-600 s).
    #[must_use]
    pub fn with_ack_deadline(mut self, deadline: Duration) -> Self {
        self.subscription.ack_deadline_seconds = i32::try_from(deadline.as_secs()).unwrap_or(600);
        touch(&mut self.paths, "ack_deadline_seconds");
        self
    }

    /// Replaces every label with `labels`.
    #[must_use]
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.subscription.labels = labels;
        touch(&mut self.paths, "labels");
        self
    }

    /// Adds a label to the new set of labels (which replaces the old one).
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.subscription.labels.insert(key.into(), value.into());
        touch(&mut self.paths, "labels");
        self
    }

    /// Deliver by HTTP POST to `endpoint`.
    #[must_use]
    pub fn with_push_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.subscription.push_config = Some(PushConfig {
            push_endpoint: endpoint.into(),
            ..Default::default()
        });
        touch(&mut self.paths, "push_config");
        self
    }

    /// Back to pull delivery (no push endpoint).
    #[must_use]
    pub fn with_pull_delivery(mut self) -> Self {
        self.subscription.push_config = Some(PushConfig::default());
        touch(&mut self.paths, "push_config");
        self
    }

    /// How long unacked (and, with `retain_acked`, acked) messages are kept.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration, retain_acked: bool) -> Self {
        self.subscription.message_retention_duration = Some(duration(retention));
        self.subscription.retain_acked_messages = retain_acked;
        touch(&mut self.paths, "message_retention_duration");
        touch(&mut self.paths, "retain_acked_messages");
        self
    }

    /// Forward a message to `topic` after `max_delivery_attempts` (5-100).
    #[must_use]
    pub fn with_dead_letter(
        mut self,
        topic: impl Into<String>,
        max_delivery_attempts: i32,
    ) -> Self {
        self.subscription.dead_letter_policy = Some(DeadLetterPolicy {
            dead_letter_topic: topic.into(),
            max_delivery_attempts,
        });
        touch(&mut self.paths, "dead_letter_policy");
        self
    }

    /// No dead-lettering any more.
    #[must_use]
    pub fn without_dead_letter(mut self) -> Self {
        self.subscription.dead_letter_policy = None;
        touch(&mut self.paths, "dead_letter_policy");
        self
    }

    /// Exponential backoff between redeliveries.
    #[must_use]
    pub fn with_retry_policy(mut self, minimum: Duration, maximum: Duration) -> Self {
        self.subscription.retry_policy = Some(RetryPolicy {
            minimum_backoff: Some(duration(minimum)),
            maximum_backoff: Some(duration(maximum)),
        });
        touch(&mut self.paths, "retry_policy");
        self
    }

    /// Delete the subscription after `ttl` without activity.
    #[must_use]
    pub fn with_expiration(mut self, ttl: Duration) -> Self {
        self.subscription.expiration_policy = Some(ExpirationPolicy {
            ttl: Some(duration(ttl)),
        });
        touch(&mut self.paths, "expiration_policy");
        self
    }

    /// Exactly-once delivery on or off.
    #[must_use]
    pub fn with_exactly_once(mut self, enabled: bool) -> Self {
        self.subscription.enable_exactly_once_delivery = enabled;
        touch(&mut self.paths, "enable_exactly_once_delivery");
        self
    }

    /// The field-mask paths this update sends.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The subscription as it will be sent (names not yet resolved).
    pub fn as_proto(&self) -> &Subscription {
        &self.subscription
    }
}

impl Client {
    /// Applies a [`TopicUpdate`]: only the fields it set change.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::TopicUpdate;
    /// // Pin the accepted schema revisions; the schema and encoding stay.
    /// let topic = client
    ///     .update_topic_with(TopicUpdate::new("orders").with_schema_revisions("rev-a", "rev-b"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_topic_with(&self, update: TopicUpdate) -> Result<Topic> {
        let mut topic = update.topic;
        if let Some(settings) = topic
            .schema_settings
            .as_mut()
            .filter(|s| !s.schema.is_empty())
        {
            settings.schema = self.schema_name(&settings.schema);
        }
        let paths: Vec<&str> = update.paths.iter().map(String::as_str).collect();
        self.update_topic(topic, &paths).await
    }

    /// Applies a [`SubscriptionUpdate`]: only the fields it set change.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use std::time::Duration;
    /// use baton_client::SubscriptionUpdate;
    /// client
    ///     .update_subscription_with(SubscriptionUpdate::new("worker").with_ack_deadline(Duration::from_secs(60)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_subscription_with(
        &self,
        update: SubscriptionUpdate,
    ) -> Result<Subscription> {
        let paths: Vec<&str> = update.paths.iter().map(String::as_str).collect();
        self.update_subscription(update.subscription, &paths).await
    }

    /// Switches a subscription between push (`push_config` with an
    /// endpoint) and pull (`PushConfig::default()`), or changes its push
    /// settings.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::proto::PushConfig;
    /// let push = PushConfig { push_endpoint: "https://example.com/push".into(), ..Default::default() };
    /// client.modify_push_config("worker", push).await?;
    /// client.modify_push_config("worker", PushConfig::default()).await?; // pull again
    /// # Ok(()) }
    /// ```
    pub async fn modify_push_config(
        &self,
        subscription: &str,
        push_config: PushConfig,
    ) -> Result<()> {
        let name = self.subscription_name(subscription);
        let request = ModifyPushConfigRequest {
            subscription: name.clone(),
            push_config: Some(push_config),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.subscriber_stub().modify_push_config(r).await
        })
        .await?;
        Ok(())
    }
}
