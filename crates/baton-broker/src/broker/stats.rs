//! Read-only observation of the broker: what each subscription and topic
//! holds and what happened to their messages, for the local console and for
//! metrics named after Cloud Monitoring's (`subscription/num_undelivered_messages`,
//! `subscription/oldest_unacked_message_age`, `topic/send_message_operation_count`,
//! `subscription/ack_message_count`, `subscription/dead_letter_message_count`,
//! `subscription/push_request_count`...).
//!
//! Nothing here scans a backlog: the delivery state machine keeps running
//! counts (backlog bytes, leases, backoffs, an ordered index of owed
//! messages) as it changes, so one subscription's stats cost a few map
//! lookups under the broker's lock, and a page of them costs that times the
//! page size, whatever the number of subscriptions or messages. Counters
//! start at zero when the broker starts (they are not kept by the disk
//! store) and when a subscription or topic is created.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use baton_proto::pubsub::{PubsubMessage, Subscription, Topic};

use super::Broker;
use super::counters::{
    PushCounts, PushOutcome, PushResponseClass, PushResult, SubscriptionCounters, TopicCounters,
};
use super::delivery::SubState;
use super::state::{State, TopicState};
use crate::clock::Reading;
use crate::error::{BrokerError, BrokerResult};
use crate::held::HeldMessage;
use crate::names::{self, Collection};
use crate::observer::LeaseEnd;
use crate::paging::{ListPage, page};

/// Page size of the stats listings when none is asked for.
pub const DEFAULT_STATS_PAGE: usize = 100;
/// Largest page of the stats listings: a page is computed under the broker's
/// lock, so it stays short whatever the caller asks.
pub const MAX_STATS_PAGE: usize = 1000;
/// How a push subscription's endpoint is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStats {
    /// The endpoint messages are pushed to (empty once the subscription
    /// stopped pushing; the counts stay).
    pub endpoint: String,
    /// Push requests by response class.
    pub counts: PushCounts,
    /// The latest request's result.
    pub last: Option<PushOutcome>,
    /// When the endpoint last acknowledged a message.
    pub last_ack: Option<SystemTime>,
    /// Requests that failed since the last acknowledged one.
    pub consecutive_failures: u64,
}

impl PushStats {
    /// Healthy unless the latest request failed: an endpoint that never got a
    /// request is healthy.
    pub fn healthy(&self) -> bool {
        self.consecutive_failures == 0
    }
}

/// One subscription's state and history, as Cloud Monitoring would chart it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionStats {
    /// Its configuration: topic, filter, ack deadline, retention, dead
    /// letter, retry and expiration policies, push config, flags.
    pub config: Subscription,
    /// Messages neither acked nor dead-lettered: ready, leased or backing
    /// off (`num_undelivered_messages`, which counts unacked ones too).
    pub backlog_messages: u64,
    /// Payload bytes of those messages (data, attributes and ordering key).
    pub backlog_bytes: u64,
    /// Of the backlog, messages waiting to be handed out.
    pub ready_messages: u64,
    /// Of the backlog, messages leased to a subscriber right now.
    pub leases_outstanding: u64,
    /// Of the backlog, messages waiting out a retry policy's backoff.
    pub backoff_messages: u64,
    /// Publish time of the oldest message in the backlog.
    pub oldest_unacked_publish_time: Option<SystemTime>,
    /// Its age on the broker's clock (`oldest_unacked_message_age`).
    pub oldest_unacked_age: Option<Duration>,
    /// StreamingPull streams (and push workers) registered right now.
    pub open_streams: u64,
    /// Acked messages kept for seeking back (`retain_acked_messages`).
    pub retained_acked_messages: u64,
    /// What happened to its messages so far.
    pub counters: SubscriptionCounters,
    /// Push delivery's record, when the subscription pushes or once pushed.
    pub push: Option<PushStats>,
}

impl SubscriptionStats {
    /// The subscription's full name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// One topic's configuration and history.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicStats {
    /// Its configuration: schema settings, retention, labels...
    pub config: Topic,
    /// Subscriptions attached to it.
    pub subscriptions: u64,
    /// Messages its own retention keeps (for seeks and new subscriptions).
    pub retained_messages: u64,
    /// What was published so far.
    pub counters: TopicCounters,
    /// When a message was last stored on it.
    pub last_publish_time: Option<SystemTime>,
}

impl TopicStats {
    /// The topic's full name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// A message a subscription forwarded to its dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetteredMessage {
    /// The original message (the copy on the dead-letter topic has a new id
    /// and the `CloudPubSubDeadLetterSource*` attributes).
    pub message: Arc<HeldMessage>,
    /// Delivery attempts it used: the policy's `max_delivery_attempts`.
    pub attempts: i32,
    /// How its last lease ended.
    pub reason: LeaseEnd,
    /// The dead-letter topic it went to.
    pub dead_letter_topic: String,
    /// When it was forwarded.
    pub at: SystemTime,
}

impl DeadLetteredMessage {
    /// A sentence saying why it was dead-lettered.
    pub fn reason_text(&self) -> String {
        let last = match self.reason {
            LeaseEnd::Nacked => "nacked",
            LeaseEnd::Expired => "its lease expired",
        };
        format!(
            "max delivery attempts reached: attempt {} {last}",
            self.attempts
        )
    }
}

/// Most messages one [`Broker::peek`] shows.
pub const MAX_PEEK: usize = 100;

/// Where a peeked message stands on its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekedState {
    /// Waiting to be handed out.
    Ready,
    /// Leased to a subscriber.
    Leased {
        /// When the lease ends unless extended.
        deadline: SystemTime,
        /// The StreamingPull stream (or push worker) holding it; `None` for
        /// a unary Pull.
        stream: Option<u64>,
    },
    /// Waiting out a retry policy's backoff.
    Backoff {
        /// When it is ready again.
        until: SystemTime,
    },
}

/// A message of a subscription's backlog, looked at without leasing it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeekedMessage {
    /// The message as stored, payload included.
    pub message: PubsubMessage,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// Ready, leased or backing off.
    pub state: PeekedState,
}

/// The prefix of names listed for `project` (every project when `None`).
fn list_prefix(project: Option<&str>, collection: &str) -> BrokerResult<String> {
    match project {
        Some(project) => {
            let id = names::parse_project(project)?;
            Ok(format!("projects/{id}/{collection}/"))
        }
        None => Ok("projects/".to_string()),
    }
}

/// The page size to use for an asked one (0 or less: the default).
fn stats_page_size(asked: i32) -> i32 {
    let size = usize::try_from(asked)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_STATS_PAGE)
        .min(MAX_STATS_PAGE);
    i32::try_from(size).unwrap_or(1)
}

fn subscription_stats(
    sub: &SubState,
    retained: Option<&BTreeMap<u64, (Arc<HeldMessage>, SystemTime)>>,
    reading: Reading,
) -> SubscriptionStats {
    let backlog = sub.backlog_len();
    let oldest = sub.oldest_owed();
    let endpoint = sub
        .config
        .push_config
        .as_ref()
        .map(|p| p.push_endpoint.clone())
        .unwrap_or_default();
    let record = &sub.push;
    let push = (!endpoint.is_empty() || record.counts.total() > 0).then(|| PushStats {
        endpoint,
        counts: record.counts,
        last: record.last.clone(),
        last_ack: record.last_ack,
        consecutive_failures: record.consecutive_failures,
    });
    SubscriptionStats {
        config: sub.config.clone(),
        backlog_messages: backlog as u64,
        backlog_bytes: sub.backlog_size(),
        ready_messages: backlog.saturating_sub(sub.leased + sub.backing_off) as u64,
        leases_outstanding: sub.leased as u64,
        backoff_messages: sub.backing_off as u64,
        oldest_unacked_publish_time: oldest,
        oldest_unacked_age: oldest.map(|t| reading.wall.duration_since(t).unwrap_or_default()),
        open_streams: sub.streams.len() as u64,
        retained_acked_messages: retained.map_or(0, |r| r.len() as u64),
        counters: sub.counters,
        push,
    }
}

fn topic_stats(topic: &TopicState) -> TopicStats {
    TopicStats {
        config: topic.topic.clone(),
        subscriptions: topic.subscriptions.len() as u64,
        retained_messages: topic.log.len() as u64,
        counters: topic.counters,
        last_publish_time: topic.last_publish,
    }
}

fn stats_of(state: &State, sub: &SubState, reading: Reading) -> SubscriptionStats {
    subscription_stats(sub, state.retained.get(&sub.uid), reading)
}

impl Broker {
    /// The stats of one subscription.
    pub fn subscription_stats(&self, name: &str) -> BrokerResult<SubscriptionStats> {
        names::parse(name, Collection::Subscriptions)?;
        let state = self.lock();
        let reading = self.clock.read();
        state
            .subscriptions
            .get(name)
            .map(|sub| stats_of(&state, sub, reading))
            .ok_or_else(BrokerError::subscription_not_found)
    }

    /// A page of subscriptions' stats in name order: those of `project`
    /// (`projects/{id}`), or of every project when `None`. `page_size` of 0
    /// or less means [`DEFAULT_STATS_PAGE`]; at most [`MAX_STATS_PAGE`] come
    /// back. The page token is the one the previous page handed back; each
    /// page costs its own size, not the number of subscriptions.
    pub fn list_subscription_stats(
        &self,
        project: Option<&str>,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<SubscriptionStats>> {
        let prefix = list_prefix(project, "subscriptions")?;
        let state = self.lock();
        let reading = self.clock.read();
        Ok(page(
            &state.subscriptions,
            &prefix,
            stats_page_size(page_size),
            page_token,
            |_| true,
            |_, sub| stats_of(&state, sub, reading),
        ))
    }

    /// The stats of one topic.
    pub fn topic_stats(&self, name: &str) -> BrokerResult<TopicStats> {
        names::parse(name, Collection::Topics)?;
        self.lock()
            .topics
            .get(name)
            .map(topic_stats)
            .ok_or_else(BrokerError::topic_not_found)
    }

    /// A page of topics' stats, paged like [`Self::list_subscription_stats`].
    pub fn list_topic_stats(
        &self,
        project: Option<&str>,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<TopicStats>> {
        let prefix = list_prefix(project, "topics")?;
        let state = self.lock();
        Ok(page(
            &state.topics,
            &prefix,
            stats_page_size(page_size),
            page_token,
            |_| true,
            |_, topic| topic_stats(topic),
        ))
    }

    /// The last messages (up to [`RECENT_DEAD_LETTERS`](crate::RECENT_DEAD_LETTERS)) `subscription`
    /// forwarded to its dead-letter topic, newest first.
    pub fn recent_dead_letters(
        &self,
        subscription: &str,
    ) -> BrokerResult<Vec<DeadLetteredMessage>> {
        names::parse(subscription, Collection::Subscriptions)?;
        let state = self.lock();
        let reading = self.clock.read();
        let sub = state
            .subscriptions
            .get(subscription)
            .ok_or_else(BrokerError::subscription_not_found)?;
        Ok(sub
            .recent_dead_letters
            .iter()
            .rev()
            .map(|record| DeadLetteredMessage {
                message: record.message.clone(),
                attempts: record.attempts,
                reason: record.reason,
                dead_letter_topic: record.dead_letter_topic.to_string(),
                at: reading.wall_of(record.at),
            })
            .collect())
    }

    /// Up to `max` (at most [`MAX_PEEK`]) messages of `subscription`'s
    /// backlog, oldest first, without leasing, acking or counting a delivery
    /// attempt: the backlog, leases and counters stay exactly as they were.
    pub fn peek(&self, subscription: &str, max: usize) -> BrokerResult<Vec<PeekedMessage>> {
        use super::delivery::EntryState;
        names::parse(subscription, Collection::Subscriptions)?;
        let state = self.lock();
        let reading = self.clock.read();
        let sub = state
            .subscriptions
            .get(subscription)
            .ok_or_else(BrokerError::subscription_not_found)?;
        let mut peeked: Vec<PeekedMessage> = sub
            .owed
            .iter()
            .filter_map(|seq| sub.messages.get(seq))
            .take(max.min(MAX_PEEK))
            .map(|entry| PeekedMessage {
                message: entry.message.to_message(),
                attempts: entry.attempts,
                state: match entry.state {
                    EntryState::Ready => PeekedState::Ready,
                    EntryState::Leased {
                        deadline, stream, ..
                    } => PeekedState::Leased {
                        deadline: reading.wall_of(deadline),
                        stream,
                    },
                    EntryState::Backoff { until } => PeekedState::Backoff {
                        until: reading.wall_of(until),
                    },
                },
            })
            .collect();
        let journal = state.journal.clone();
        drop(state);
        if let Some(journal) = journal {
            journal
                .fill_payloads(peeked.iter_mut().map(|p| &mut p.message))
                .map_err(super::storage_error)?;
        }
        Ok(peeked)
    }

    /// Records the result of one push request to `subscription`'s endpoint
    /// (push delivery calls it for every request it makes), for
    /// [`PushStats`]. A subscription deleted meanwhile is ignored.
    pub fn record_push_result(&self, subscription: &str, result: PushResult) {
        let mut state = self.lock();
        let at = self.clock.wall();
        let Some(sub) = state.subscriptions.get_mut(subscription) else {
            return;
        };
        let record = &mut sub.push;
        record.counts.bump(result.class);
        if result.class == PushResponseClass::Ack {
            record.consecutive_failures = 0;
            record.last_ack = Some(at);
        } else {
            record.consecutive_failures += 1;
        }
        record.last = Some(PushOutcome { result, at });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::UNIX_EPOCH;

    use baton_proto::pubsub::{DeadLetterPolicy, PushConfig, RetryPolicy};
    use baton_proto::wkt;

    use super::*;
    use crate::Clock;
    use crate::broker::leases::PullWait;

    fn start_wall() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn broker() -> Arc<Broker> {
        Broker::builder()
            .clock(Clock::virtual_time(start_wall()))
            .start()
            .unwrap()
    }

    fn topic(broker: &Broker, id: &str) -> String {
        let name = format!("projects/p/topics/{id}");
        broker
            .create_topic(Topic {
                name: name.clone(),
                ..Default::default()
            })
            .unwrap();
        name
    }

    fn subscription(
        broker: &Broker,
        id: &str,
        topic: &str,
        edit: impl FnOnce(&mut Subscription),
    ) -> String {
        let mut sub = Subscription {
            name: format!("projects/p/subscriptions/{id}"),
            topic: topic.to_string(),
            ack_deadline_seconds: 10,
            ..Default::default()
        };
        edit(&mut sub);
        broker.create_subscription(sub).unwrap().name
    }

    fn publish(broker: &Broker, topic: &str, datas: &[&str]) {
        let messages = datas
            .iter()
            .map(|d| PubsubMessage {
                data: d.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect();
        broker.publish(topic, messages).unwrap();
    }

    async fn pull(broker: &Broker, sub: &str, max: i32) -> Vec<String> {
        broker
            .pull(sub, max, PullWait::Immediate)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.ack_id)
            .collect()
    }

    /// Lets the timer task run what is due.
    async fn sleep(d: Duration) {
        tokio::time::sleep(d).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    /// The running counts agree with a scan of the backlog.
    fn assert_counts_match_a_scan(broker: &Broker, name: &str) {
        use super::super::delivery::EntryState;
        let state = broker.lock();
        let sub = state.subscriptions.get(name).unwrap();
        let leased = sub
            .messages
            .values()
            .filter(|e| matches!(e.state, EntryState::Leased { .. }))
            .count();
        let backoff = sub
            .messages
            .values()
            .filter(|e| matches!(e.state, EntryState::Backoff { .. }))
            .count();
        let bytes: usize = sub.messages.values().map(|e| e.size).sum();
        assert_eq!(sub.leased, leased, "leases");
        assert_eq!(sub.backing_off, backoff, "backoffs");
        assert_eq!(sub.backlog_bytes, bytes as u64, "bytes");
        assert_eq!(
            sub.owed.iter().copied().collect::<Vec<_>>(),
            {
                let mut seqs: Vec<u64> = sub.messages.keys().copied().collect();
                seqs.sort_unstable();
                seqs
            },
            "owed index"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backlog_leases_and_oldest_age_follow_publishes_pulls_and_acks() {
        let broker = broker();
        let t = topic(&broker, "orders");
        let s = subscription(&broker, "worker", &t, |_| {});
        publish(&broker, &t, &["aa", "bbb"]);
        sleep(Duration::from_secs(3)).await;
        publish(&broker, &t, &["c"]);

        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.backlog_messages, 3);
        assert_eq!(stats.backlog_bytes, 6);
        assert_eq!(stats.ready_messages, 3);
        assert_eq!(stats.leases_outstanding, 0);
        assert_eq!(stats.oldest_unacked_publish_time, Some(start_wall()));
        assert_eq!(stats.oldest_unacked_age, Some(Duration::from_secs(3)));

        sleep(Duration::from_secs(2)).await;
        let acks = pull(&broker, &s, 2).await;
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.leases_outstanding, 2);
        assert_eq!(stats.ready_messages, 1);
        assert_eq!(stats.backlog_messages, 3, "leased messages are unacked");
        assert_eq!(stats.oldest_unacked_age, Some(Duration::from_secs(5)));
        assert_eq!(stats.counters.delivery_attempts, 2);
        assert_counts_match_a_scan(&broker, &s);

        broker.acknowledge(&s, &acks).unwrap();
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.backlog_messages, 1);
        assert_eq!(stats.backlog_bytes, 1);
        assert_eq!(stats.leases_outstanding, 0);
        assert_eq!(stats.counters.acked, 2);
        assert_eq!(
            stats.oldest_unacked_publish_time,
            Some(start_wall() + Duration::from_secs(3)),
            "the oldest left is the third message"
        );
        assert_eq!(stats.oldest_unacked_age, Some(Duration::from_secs(2)));
        assert_counts_match_a_scan(&broker, &s);

        let topic = broker.topic_stats(&t).unwrap();
        assert_eq!(topic.subscriptions, 1);
        assert_eq!(topic.counters.publish_operations, 2);
        assert_eq!(topic.counters.messages_published, 3);
        assert_eq!(topic.counters.bytes_published, 6);
        assert_eq!(
            topic.last_publish_time,
            Some(start_wall() + Duration::from_secs(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nacks_expiries_backoffs_and_dead_letters_are_counted() {
        let broker = broker();
        let t = topic(&broker, "orders");
        let dlq = topic(&broker, "dead");
        let s = subscription(&broker, "worker", &t, |s| {
            s.dead_letter_policy = Some(DeadLetterPolicy {
                dead_letter_topic: dlq.clone(),
                max_delivery_attempts: 5,
            });
            s.retry_policy = Some(RetryPolicy {
                minimum_backoff: Some(wkt::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                maximum_backoff: Some(wkt::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            });
        });
        publish(&broker, &t, &["poison"]);
        // Attempt 1 nacked: one second of backoff.
        let acks = pull(&broker, &s, 1).await;
        broker.modify_ack_deadline(&s, &acks, 0).unwrap();
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.backoff_messages, 1);
        assert_eq!(stats.ready_messages, 0);
        assert_eq!(stats.counters.nacked, 1);
        assert_counts_match_a_scan(&broker, &s);
        // Attempts 2..=5 expire (10 s each, after 1 s of backoff each).
        for _ in 0..4 {
            sleep(Duration::from_secs(1)).await;
            assert_eq!(pull(&broker, &s, 1).await.len(), 1);
            sleep(Duration::from_secs(10)).await;
        }
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.backlog_messages, 0);
        assert_eq!(stats.counters.delivery_attempts, 5);
        assert_eq!(stats.counters.expired, 4);
        assert_eq!(stats.counters.dead_lettered, 1);
        assert_eq!(stats.counters.acked, 0, "dead-lettering is no ack");
        assert_counts_match_a_scan(&broker, &s);

        let letters = broker.recent_dead_letters(&s).unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].attempts, 5);
        assert_eq!(letters[0].reason, LeaseEnd::Expired);
        assert_eq!(letters[0].dead_letter_topic, dlq);
        assert_eq!(letters[0].at, start_wall() + Duration::from_secs(44));
        assert!(letters[0].reason_text().contains("max delivery attempts"));
        let dead = broker.topic_stats(&dlq).unwrap();
        assert_eq!(dead.counters.messages_published, 1);
        assert_eq!(dead.counters.publish_operations, 0, "no publish request");
    }

    #[tokio::test(start_paused = true)]
    async fn push_results_are_counted_by_class_with_health() {
        let broker = broker();
        let t = topic(&broker, "orders");
        let s = subscription(&broker, "pusher", &t, |s| {
            s.push_config = Some(PushConfig {
                push_endpoint: "http://127.0.0.1:9/push".into(),
                ..Default::default()
            });
        });
        let stats = broker.subscription_stats(&s).unwrap();
        let push = stats.push.unwrap();
        assert!(push.healthy() && push.last.is_none());
        let result = |class, status: Option<u16>| PushResult {
            class,
            status,
            detail: String::new(),
        };
        broker.record_push_result(&s, result(PushResponseClass::Ack, Some(200)));
        sleep(Duration::from_secs(1)).await;
        broker.record_push_result(&s, result(PushResponseClass::RemoteServer5xx, Some(503)));
        broker.record_push_result(&s, result(PushResponseClass::DeadlineExceeded, None));
        let push = broker.subscription_stats(&s).unwrap().push.unwrap();
        assert_eq!(push.endpoint, "http://127.0.0.1:9/push");
        assert_eq!(push.counts.ack, 1);
        assert_eq!(push.counts.remote_server_5xx, 1);
        assert_eq!(push.counts.deadline_exceeded, 1);
        assert_eq!(push.counts.total(), 3);
        assert_eq!(push.consecutive_failures, 2);
        assert!(!push.healthy());
        assert_eq!(push.last_ack, Some(start_wall()));
        let last = push.last.unwrap();
        assert_eq!(last.result.class, PushResponseClass::DeadlineExceeded);
        assert_eq!(last.at, start_wall() + Duration::from_secs(1));
        assert_eq!(
            PushResponseClass::of_status(404, false),
            PushResponseClass::RemoteServer4xx
        );
        assert_eq!(PushResponseClass::of_status(204, true).as_str(), "ack");
    }

    #[tokio::test(start_paused = true)]
    async fn stats_pages_walk_ten_thousand_subscriptions() {
        let broker = broker();
        let t = topic(&broker, "fan");
        for i in 0..10_000 {
            subscription(&broker, &format!("s{i:05}"), &t, |_| {});
        }
        publish(&broker, &t, &["x"]);
        let mut token = String::new();
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page = broker
                .list_subscription_stats(Some("projects/p"), 0, &token)
                .unwrap();
            assert!(page.items.len() <= DEFAULT_STATS_PAGE);
            seen += page.items.len();
            assert!(page.items.iter().all(|s| s.backlog_messages == 1));
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen, 10_000);
        assert_eq!(pages, 100);
        let big = broker.list_subscription_stats(None, 100_000, "").unwrap();
        assert_eq!(big.items.len(), MAX_STATS_PAGE, "pages are capped");
        assert_eq!(broker.topic_stats(&t).unwrap().subscriptions, 10_000);
        let other = broker
            .list_subscription_stats(Some("projects/q"), 10, "")
            .unwrap();
        assert!(other.items.is_empty());
        assert!(
            broker
                .list_subscription_stats(Some("nonsense"), 10, "")
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn peek_changes_nothing() {
        let broker = broker();
        let t = topic(&broker, "orders");
        let s = subscription(&broker, "worker", &t, |_| {});
        publish(&broker, &t, &["a", "b", "c"]);
        let leased = pull(&broker, &s, 1).await;
        assert_eq!(leased.len(), 1);
        let before = broker.subscription_stats(&s).unwrap();
        let journal_before = broker.message_history(&t, "2").unwrap();
        let peeked = broker.peek(&s, 10).unwrap();
        let datas: Vec<&[u8]> = peeked.iter().map(|p| p.message.data.as_slice()).collect();
        assert_eq!(datas, [b"a".as_slice(), b"b", b"c"], "oldest first");
        assert_eq!(
            peeked[0].state,
            PeekedState::Leased {
                deadline: start_wall() + Duration::from_secs(10),
                stream: None,
            }
        );
        assert_eq!(peeked[1].state, PeekedState::Ready);
        assert_eq!((peeked[0].attempts, peeked[1].attempts), (1, 0));
        assert_eq!(broker.peek(&s, 2).unwrap().len(), 2);
        assert_eq!(
            broker.subscription_stats(&s).unwrap(),
            before,
            "stats unchanged"
        );
        assert_eq!(broker.message_history(&t, "2").unwrap(), journal_before);
        // The peeked messages are still delivered, once each, in order.
        let rest = broker.pull(&s, 10, PullWait::Immediate).await.unwrap();
        let datas: Vec<&[u8]> = rest
            .iter()
            .map(|r| r.message.as_ref().unwrap().data.as_slice())
            .collect();
        assert_eq!(datas, [b"b".as_slice(), b"c"]);
        assert_eq!(rest.iter().map(|r| r.delivery_attempt).max(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn seek_and_detach_keep_the_counts_right() {
        let broker = broker();
        let t = topic(&broker, "orders");
        let s = subscription(&broker, "worker", &t, |s| s.retain_acked_messages = true);
        publish(&broker, &t, &["a", "b", "c"]);
        let acks = pull(&broker, &s, 3).await;
        broker.acknowledge(&s, &acks[..2]).unwrap();
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.retained_acked_messages, 2);
        assert_eq!(stats.leases_outstanding, 1);
        broker
            .seek_to_time(
                &s,
                &wkt::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                },
            )
            .unwrap();
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!(stats.backlog_messages, 3);
        assert_eq!(stats.leases_outstanding, 0);
        assert_eq!(stats.ready_messages, 3);
        assert_counts_match_a_scan(&broker, &s);
        broker.detach_subscription(&s).unwrap();
        let stats = broker.subscription_stats(&s).unwrap();
        assert_eq!((stats.backlog_messages, stats.backlog_bytes), (0, 0));
        assert_counts_match_a_scan(&broker, &s);
    }
}
