//! Administration of topics, subscriptions and snapshots. Names may be short
//! ids (in the client's project) or full resource names.

use std::time::Duration;

use baton_proto::pubsub::{
    DeadLetterPolicy, DeleteSubscriptionRequest, DeleteTopicRequest, DetachSubscriptionRequest,
    ExpirationPolicy, GetSubscriptionRequest, GetTopicRequest, ListSubscriptionsRequest,
    ListTopicSubscriptionsRequest, ListTopicsRequest, PushConfig, RetryPolicy, SeekRequest,
    Subscription, Topic, UpdateSubscriptionRequest, UpdateTopicRequest, seek_request,
};
use baton_proto::wkt;

use crate::client::Client;
use crate::error::AdminError;
use crate::retry::{CallFamily, with_retry};

type Result<T, E = AdminError> = std::result::Result<T, E>;

pub(crate) fn duration(d: Duration) -> wkt::Duration {
    wkt::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `time` as a protobuf timestamp (times before 1970 become the epoch).
pub(crate) fn timestamp(time: std::time::SystemTime) -> wkt::Timestamp {
    timestamp_since_epoch(
        time.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn timestamp_since_epoch(since: Duration) -> wkt::Timestamp {
    wkt::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// Settings of a new subscription: `SubscriptionConfig::new(id, topic)`
/// and the `with_*` methods; unset fields take the service's defaults.
///
/// ```
/// use std::time::Duration;
/// use baton_client::SubscriptionConfig;
/// let config = SubscriptionConfig::new("worker", "orders")
///     .with_ack_deadline(Duration::from_secs(30))
///     .with_message_ordering(true)
///     .with_filter(r#"attributes.kind = "order""#);
/// assert_eq!(config.as_proto().ack_deadline_seconds, 30);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubscriptionConfig {
    /// The subscription as sent; ids are resolved to full names on create.
    subscription: Subscription,
}

impl SubscriptionConfig {
    /// A subscription `id` on `topic` (short ids or full names).
    pub fn new(id: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            subscription: Subscription {
                name: id.into(),
                topic: topic.into(),
                ..Default::default()
            },
        }
    }

    /// Every setting of `subscription` (for fields without a builder); its
    /// name, topic and dead-letter topic may be short ids.
    pub fn from_proto(subscription: Subscription) -> Self {
        Self { subscription }
    }

    /// The subscription as it will be sent (names not yet resolved).
    pub fn as_proto(&self) -> &Subscription {
        &self.subscription
    }

    /// Time a subscriber has to ack before redelivery (10-600 s).
    #[must_use]
    pub fn with_ack_deadline(mut self, deadline: Duration) -> Self {
        self.subscription.ack_deadline_seconds = i32::try_from(deadline.as_secs()).unwrap_or(600);
        self
    }

    /// Deliver messages with one ordering key in publish order.
    #[must_use]
    pub fn with_message_ordering(mut self, enabled: bool) -> Self {
        self.subscription.enable_message_ordering = enabled;
        self
    }

    /// Exactly-once delivery.
    #[must_use]
    pub fn with_exactly_once(mut self, enabled: bool) -> Self {
        self.subscription.enable_exactly_once_delivery = enabled;
        self
    }

    /// Only deliver messages matching this attribute filter.
    #[must_use]
    pub fn with_filter(mut self, filter: impl Into<String>) -> Self {
        self.subscription.filter = filter.into();
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
        self
    }

    /// Exponential backoff between redeliveries of nacked or expired messages.
    #[must_use]
    pub fn with_retry_policy(mut self, minimum: Duration, maximum: Duration) -> Self {
        self.subscription.retry_policy = Some(RetryPolicy {
            minimum_backoff: Some(duration(minimum)),
            maximum_backoff: Some(duration(maximum)),
        });
        self
    }

    /// How long unacked (and, with `retain_acked`, acked) messages are kept.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration, retain_acked: bool) -> Self {
        self.subscription.message_retention_duration = Some(duration(retention));
        self.subscription.retain_acked_messages = retain_acked;
        self
    }

    /// Deliver by HTTP POST to `endpoint` instead of pull.
    #[must_use]
    pub fn with_push_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.subscription.push_config = Some(PushConfig {
            push_endpoint: endpoint.into(),
            ..Default::default()
        });
        self
    }

    /// Delete the subscription after `ttl` without activity.
    #[must_use]
    pub fn with_expiration(mut self, ttl: Duration) -> Self {
        self.subscription.expiration_policy = Some(ExpirationPolicy {
            ttl: Some(duration(ttl)),
        });
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.subscription.labels.insert(key.into(), value.into());
        self
    }
}

impl Client {
    /// One unary admin call with the retries of `family`: each attempt gets
    /// fresh credentials and the attempt's deadline.
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        family: CallFamily,
        resource: &str,
        message: Req,
        rpc: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Client, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let settings = self.retry_settings(family).clone();
        with_retry(&settings, |attempt_timeout| {
            let message = message.clone();
            let rpc = &rpc;
            async move {
                let mut request = self.request(message, resource).await?;
                request.set_timeout(attempt_timeout);
                rpc(self.clone(), request).await
            }
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(AdminError::Rpc)
    }

    /// Every item of a paged list call on `resource` (of `family`):
    /// `request(token)` builds one page's request, `rpc` sends it, and
    /// `page` splits its answer into the items and the next page's token
    /// (empty after the last page).
    pub(crate) async fn list_all<Req, Resp, T, F, Fut>(
        &self,
        family: CallFamily,
        resource: &str,
        request: impl Fn(String) -> Req,
        rpc: F,
        page: impl Fn(Resp) -> (Vec<T>, String),
    ) -> Result<Vec<T>>
    where
        Req: Clone,
        F: Fn(Client, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let response = self.unary(family, resource, request(token), &rpc).await?;
            let (mut batch, next) = page(response);
            items.append(&mut batch);
            if next.is_empty() {
                return Ok(items);
            }
            token = next;
        }
    }

    /// Creates a topic.
    pub async fn create_topic(&self, topic: &str) -> Result<Topic> {
        self.create_topic_with(Topic {
            name: self.topic_name(topic),
            ..Default::default()
        })
        .await
    }

    /// Creates a topic with every setting of `topic` (its name may be short).
    pub async fn create_topic_with(&self, mut topic: Topic) -> Result<Topic> {
        topic.name = self.topic_name(&topic.name);
        let name = topic.name.clone();
        self.unary(CallFamily::AdminWrite, &name, topic, |c, r| async move {
            c.publisher_stub().create_topic(r).await
        })
        .await
    }

    /// Gets a topic.
    pub async fn get_topic(&self, topic: &str) -> Result<Topic> {
        let name = self.topic_name(topic);
        let request = GetTopicRequest {
            topic: name.clone(),
        };
        self.unary(CallFamily::AdminRead, &name, request, |c, r| async move {
            c.publisher_stub().get_topic(r).await
        })
        .await
    }

    /// Updates the fields of `topic` named in `paths` (snake_case).
    pub async fn update_topic(&self, mut topic: Topic, paths: &[&str]) -> Result<Topic> {
        topic.name = self.topic_name(&topic.name);
        let name = topic.name.clone();
        let request = UpdateTopicRequest {
            topic: Some(topic),
            update_mask: Some(wkt::FieldMask {
                paths: paths.iter().map(|p| (*p).to_string()).collect(),
            }),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.publisher_stub().update_topic(r).await
        })
        .await
    }

    /// Every topic of the client's project.
    pub async fn list_topics(&self) -> Result<Vec<Topic>> {
        let project = self.project_name();
        self.list_all(
            CallFamily::AdminRead,
            &project,
            |page_token| ListTopicsRequest {
                project: project.clone(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.publisher_stub().list_topics(r).await },
            |response| (response.topics, response.next_page_token),
        )
        .await
    }

    /// Names of the subscriptions attached to a topic.
    pub async fn list_topic_subscriptions(&self, topic: &str) -> Result<Vec<String>> {
        let name = self.topic_name(topic);
        self.list_all(
            CallFamily::AdminRead,
            &name,
            |page_token| ListTopicSubscriptionsRequest {
                topic: name.clone(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.publisher_stub().list_topic_subscriptions(r).await },
            |response| (response.subscriptions, response.next_page_token),
        )
        .await
    }

    /// Deletes a topic (its subscriptions stay, detached from it).
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let name = self.topic_name(topic);
        let request = DeleteTopicRequest {
            topic: name.clone(),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.publisher_stub().delete_topic(r).await
        })
        .await?;
        Ok(())
    }

    /// Creates a subscription.
    pub async fn create_subscription(&self, config: SubscriptionConfig) -> Result<Subscription> {
        let mut subscription = config.subscription;
        subscription.name = self.subscription_name(&subscription.name);
        subscription.topic = self.topic_name(&subscription.topic);
        if let Some(policy) = &mut subscription.dead_letter_policy {
            policy.dead_letter_topic = self.topic_name(&policy.dead_letter_topic);
        }
        let name = subscription.name.clone();
        self.unary(
            CallFamily::AdminRead,
            &name,
            subscription,
            |c, r| async move { c.subscriber_stub().create_subscription(r).await },
        )
        .await
    }

    /// Gets a subscription.
    pub async fn get_subscription(&self, subscription: &str) -> Result<Subscription> {
        let name = self.subscription_name(subscription);
        let request = GetSubscriptionRequest {
            subscription: name.clone(),
        };
        self.unary(CallFamily::AdminRead, &name, request, |c, r| async move {
            c.subscriber_stub().get_subscription(r).await
        })
        .await
    }

    /// Updates the fields of `subscription` named in `paths` (snake_case).
    /// Its name, topic and dead-letter topic may be short ids.
    pub async fn update_subscription(
        &self,
        mut subscription: Subscription,
        paths: &[&str],
    ) -> Result<Subscription> {
        subscription.name = self.subscription_name(&subscription.name);
        if !subscription.topic.is_empty() {
            subscription.topic = self.topic_name(&subscription.topic);
        }
        if let Some(policy) = subscription
            .dead_letter_policy
            .as_mut()
            .filter(|p| !p.dead_letter_topic.is_empty())
        {
            policy.dead_letter_topic = self.topic_name(&policy.dead_letter_topic);
        }
        let name = subscription.name.clone();
        let request = UpdateSubscriptionRequest {
            subscription: Some(subscription),
            update_mask: Some(wkt::FieldMask {
                paths: paths.iter().map(|p| (*p).to_string()).collect(),
            }),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.subscriber_stub().update_subscription(r).await
        })
        .await
    }

    /// Every subscription of the client's project.
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>> {
        let project = self.project_name();
        self.list_all(
            CallFamily::AdminRead,
            &project,
            |page_token| ListSubscriptionsRequest {
                project: project.clone(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.subscriber_stub().list_subscriptions(r).await },
            |response| (response.subscriptions, response.next_page_token),
        )
        .await
    }

    /// Deletes a subscription.
    pub async fn delete_subscription(&self, subscription: &str) -> Result<()> {
        let name = self.subscription_name(subscription);
        let request = DeleteSubscriptionRequest {
            subscription: name.clone(),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.subscriber_stub().delete_subscription(r).await
        })
        .await?;
        Ok(())
    }

    /// Detaches a subscription from its topic (Publisher.DetachSubscription,
    /// as `gcloud pubsub topics detach-subscription` does): it stops
    /// receiving the topic's messages, its backlog is dropped, and pulls
    /// fail with FAILED_PRECONDITION. The subscription itself stays, with
    /// [`detached`](Subscription::detached) set, until it is deleted.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// client.detach_subscription("worker").await?;
    /// assert!(client.get_subscription("worker").await?.detached);
    /// # Ok(()) }
    /// ```
    pub async fn detach_subscription(&self, subscription: &str) -> Result<()> {
        let name = self.subscription_name(subscription);
        let request = DetachSubscriptionRequest {
            subscription: name.clone(),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.publisher_stub().detach_subscription(r).await
        })
        .await?;
        Ok(())
    }

    /// Seeks a subscription to a point in time: earlier messages count as
    /// acked, later ones as unacked.
    pub async fn seek_to_time(
        &self,
        subscription: &str,
        time: std::time::SystemTime,
    ) -> Result<()> {
        let since = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let target = seek_request::Target::Time(timestamp_since_epoch(since));
        self.seek(subscription, target).await
    }

    /// Seeks a subscription to a snapshot.
    pub async fn seek_to_snapshot(&self, subscription: &str, snapshot: &str) -> Result<()> {
        let target = seek_request::Target::Snapshot(self.snapshot_name(snapshot));
        self.seek(subscription, target).await
    }

    async fn seek(&self, subscription: &str, target: seek_request::Target) -> Result<()> {
        let name = self.subscription_name(subscription);
        let request = SeekRequest {
            subscription: name.clone(),
            target: Some(target),
        };
        self.unary(CallFamily::AdminRead, &name, request, |c, r| async move {
            c.subscriber_stub().seek(r).await
        })
        .await?;
        Ok(())
    }
}
