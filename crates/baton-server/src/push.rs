//! Push delivery: POSTs the messages of push subscriptions to their endpoints.
//!
//! A [`PushManager`] task follows the broker's catalog (the version behind
//! [`Broker::catalog_changes`], bumped by every subscription create, update,
//! delete, detach and ModifyPushConfig) and keeps exactly one worker task per
//! attached subscription with a push endpoint. A subscription switched to pull
//! (or deleted) has its worker stopped; one switched to push gets one at once.
//!
//! A worker is a StreamingPull stream in disguise: it registers a lease window
//! with the broker ([`Broker::register_stream`], at most
//! [`PushSettings::max_outstanding`] messages in flight), leases messages when
//! the subscription's `Notify` says there may be some, and POSTs each one with
//! the subscription's ack deadline as the request timeout. An answer of
//! 102/200/201/202/204 acknowledges the message; anything else, a timeout or a
//! connection error nacks it (so a retry policy's per-message backoff and the
//! dead-letter policy apply as for pull) and puts the whole subscription into
//! an exponential *push backoff* (100 ms doubling up to 60 s, reset by the next
//! success), which is what the real service documents for failing push
//! endpoints: a broken endpoint is retried, never hammered. Messages a pull
//! client holds are leased and are not pushed until they come back.
//!
//! Leases are taken after a short dispatch delay ([`PushSettings::dispatch_delay`])
//! once the subscription signals work. It batches bursts and keeps a push from
//! overtaking the answer of the request that caused it (the recorded official
//! emulator never pushes before the publish or nack that triggered the push
//! has been answered, and the conformance replay relies on that ordering).
//!
//! The request is the JSON envelope of the real service
//! (`{"message":{"data","attributes","messageId","message_id","publishTime",
//! "publish_time","orderingKey"?},"subscription","deliveryAttempt"?}`), or
//! with `no_wrapper` the raw data, plus `x-goog-pubsub-*` metadata headers and
//! the attributes as headers when `write_metadata` is set. A message carrying a
//! `googclient_traceparent` attribute (the official clients' trace context)
//! also gets a W3C `traceparent` header with its value, so tracing HTTP
//! frameworks join the publisher's trace. A subscription with an
//! `oidc_token` sends `Authorization: Bearer <ID token>`, signed by Baton's
//! key for its service account, with the audience it names (the endpoint by
//! default); receivers verify it against Baton's certificates
//! (`/oauth2/v1/certs`).
//!
//! Everything holds the broker weakly: when the broker goes away (or shutdown
//! begins) the manager and its workers end on their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use baton_broker::{
    Broker, BrokerError, DeliveryKind, ErrorCode, PushResponseClass, PushResult, StreamRegistration,
};
use baton_proto::pubsub::push_config::{AuthenticationMethod as Authentication, Wrapper};
use baton_proto::pubsub::{PubsubMessage, ReceivedMessage, Subscription};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::{Id as TaskId, JoinSet};
use tokio::time::Instant;

/// HTTP statuses that acknowledge a pushed message (the real service's list;
/// every other status is a negative acknowledgement).
const ACK_STATUSES: [u16; 5] = [102, 200, 201, 202, 204];

/// The attribute in which the official clients carry a message's W3C trace
/// context; its value is sent as the `traceparent` header.
const TRACEPARENT_ATTRIBUTE: &str = "googclient_traceparent";

/// The `User-Agent` of the real service's push requests; some frameworks
/// recognise push requests by it.
const USER_AGENT: &str =
    "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)";

/// Headers an attribute must not set in `no_wrapper` + `write_metadata` mode:
/// they frame the HTTP message itself.
const RESERVED_HEADERS: [&str; 9] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Tuning of push delivery. [`Default`] gives the values `baton serve` uses.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Pause between a subscription signalling new work and the leases being
    /// taken: batches bursts, and keeps a push behind the answer of the call
    /// that caused it (default 50 ms).
    pub dispatch_delay: Duration,
    /// First push backoff after a failed push (default 100 ms, as the real
    /// service documents).
    pub initial_backoff: Duration,
    /// Longest push backoff (default 60 s, as the real service documents).
    pub max_backoff: Duration,
    /// Most messages in flight per subscription (default 100).
    pub max_outstanding: usize,
    /// Signs the ID tokens of subscriptions with an `oidc_token`; `None`
    /// sends no `Authorization` header.
    pub id_tokens: Option<crate::identity::Identity>,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            dispatch_delay: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(60),
            max_outstanding: 100,
            id_tokens: None,
        }
    }
}

/// Errors starting push delivery.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The HTTP client could not be built.
    #[error("cannot build the push HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why one message was not acknowledged by its endpoint.
#[derive(Debug, thiserror::Error)]
enum PushFailure {
    /// The endpoint answered with a status that is not an acknowledgement.
    #[error("endpoint answered HTTP {0}")]
    Status(u16),
    /// No answer: connection or TLS error or bad URL (with the causes).
    #[error("push request failed: {0}")]
    Request(String),
    /// No answer within the ack deadline.
    #[error("push request timed out: {0}")]
    Timeout(String),
    /// Not sent, because an earlier message of its ordering key failed.
    #[error("held back behind a failed message of its ordering key")]
    HeldBack,
}

/// Push delivery of one broker: spawn with [`PushManager::start`].
#[derive(Debug)]
pub struct PushManager {
    broker: Weak<Broker>,
    client: reqwest::Client,
    settings: Arc<PushSettings>,
    workers: HashMap<String, WorkerHandle>,
    next_generation: u64,
    exits_tx: mpsc::UnboundedSender<(String, u64)>,
}

/// The manager's side of one worker.
#[derive(Debug)]
struct WorkerHandle {
    /// The subscription's current configuration; `None` stops the worker.
    config: watch::Sender<Option<Arc<Subscription>>>,
    /// Tells this worker's exit apart from an earlier one's for the same name.
    generation: u64,
}

impl PushManager {
    /// Starts push delivery for `broker` in the background. It runs until the
    /// broker shuts down or is dropped.
    pub fn start(broker: &Arc<Broker>, settings: PushSettings) -> Result<(), PushError> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // A redirect is a failed push, as with the real service.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let manager = Self {
            broker: Arc::downgrade(broker),
            client,
            settings: Arc::new(settings),
            workers: HashMap::new(),
            next_generation: 1,
            exits_tx,
        };
        let catalog = broker.catalog_changes();
        let shutdown = broker.shutdown_signal();
        tokio::spawn(manager.run(catalog, shutdown, exits_rx));
        Ok(())
    }

    async fn run(
        mut self,
        mut catalog: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
        mut exits: mpsc::UnboundedReceiver<(String, u64)>,
    ) {
        tracing::debug!("push delivery started");
        loop {
            catalog.mark_unchanged();
            if *shutdown.borrow() || !self.reconcile() {
                break;
            }
            tokio::select! {
                changed = catalog.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                exited = exits.recv() => {
                    let current = exited.filter(|(name, generation)| {
                        self.workers.get(name).is_some_and(|w| w.generation == *generation)
                    });
                    if let Some((name, _)) = current {
                        self.workers.remove(&name);
                    }
                }
                _ = shutdown.wait_for(|down| *down) => break,
            }
        }
        // Dropping the handles closes every worker's config channel: they
        // finish what is in flight and end (or end at once on shutdown).
        self.workers.clear();
        tracing::debug!("push delivery stopped");
    }

    /// Brings the workers in line with the catalog: one per push subscription,
    /// each with the subscription's current configuration. `false` once the
    /// broker is gone.
    fn reconcile(&mut self) -> bool {
        let Some(broker) = self.broker.upgrade() else {
            return false;
        };
        let desired: HashMap<String, Arc<Subscription>> = broker
            .push_subscriptions()
            .into_iter()
            .map(|sub| (sub.name.clone(), Arc::new(sub)))
            .collect();
        self.workers.retain(|name, worker| {
            let keep = desired.contains_key(name);
            if !keep {
                tracing::info!(subscription = %name, "push delivery stopped for subscription");
                worker.config.send_replace(None);
            }
            keep
        });
        for (name, config) in desired {
            match self.workers.get(&name) {
                Some(worker) => {
                    worker.config.send_if_modified(|current| {
                        if current.as_deref() == Some(&*config) {
                            false
                        } else {
                            *current = Some(config.clone());
                            true
                        }
                    });
                }
                None => self.spawn_worker(&broker, name, config),
            }
        }
        true
    }

    fn spawn_worker(&mut self, broker: &Arc<Broker>, name: String, config: Arc<Subscription>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let endpoint = config
            .push_config
            .as_ref()
            .map(|p| p.push_endpoint.clone())
            .unwrap_or_default();
        let (config_tx, config_rx) = watch::channel(Some(config));
        let worker = Worker {
            broker: Arc::downgrade(broker),
            name: name.clone(),
            client: self.client.clone(),
            settings: self.settings.clone(),
            shutdown: broker.shutdown_signal(),
            backoff: Backoff::default(),
            in_flight: 0,
            tasks: JoinSet::new(),
            task_acks: HashMap::new(),
        };
        let exit = ExitNotice {
            exits: self.exits_tx.clone(),
            name: name.clone(),
            generation,
        };
        tracing::info!(subscription = %name, %endpoint, "push delivery started for subscription");
        tokio::spawn(async move {
            let _exit = exit;
            worker.run(config_rx).await;
        });
        self.workers.insert(
            name,
            WorkerHandle {
                config: config_tx,
                generation,
            },
        );
    }
}

/// Tells the manager a worker ended (also when it panicked), so a worker that
/// ended on its own is replaced if its subscription still pushes.
#[derive(Debug)]
struct ExitNotice {
    exits: mpsc::UnboundedSender<(String, u64)>,
    name: String,
    generation: u64,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self
            .exits
            .send((std::mem::take(&mut self.name), self.generation));
    }
}

/// The push backoff of one subscription: consecutive failures stretch it
/// exponentially, a success clears it.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| until > now)
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    /// Records a failure. Failures of requests that were in flight together
    /// count once: only a failure outside an active backoff stretches it.
    /// Returns the new backoff when it was stretched.
    fn failed(&mut self, settings: &PushSettings, now: Instant) -> Option<Duration> {
        if self.active(now) {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.saturating_sub(1).min(20);
        let delay = settings
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(settings.max_backoff);
        self.until = Some(now + delay);
        Some(delay)
    }
}

/// What one delivery task reports back: per message its ack id and outcome.
type Outcomes = Vec<(String, Result<u16, PushFailure>)>;

impl PushFailure {
    /// The result push delivery reports to the broker's stats; `None` for a
    /// message that was never sent.
    fn result(&self) -> Option<PushResult> {
        let (class, status) = match self {
            Self::Status(status) => (PushResponseClass::of_status(*status, false), Some(*status)),
            Self::Request(_) => (PushResponseClass::Unreachable, None),
            Self::Timeout(_) => (PushResponseClass::DeadlineExceeded, None),
            Self::HeldBack => return None,
        };
        Some(PushResult {
            class,
            status,
            detail: self.to_string(),
        })
    }
}

/// Delivers one subscription's messages; see the module docs.
#[derive(Debug)]
struct Worker {
    broker: Weak<Broker>,
    name: String,
    client: reqwest::Client,
    settings: Arc<PushSettings>,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
    /// Messages leased and not yet acked or nacked.
    in_flight: usize,
    tasks: JoinSet<Outcomes>,
    /// The ack ids each task carries, to nack them should the task panic.
    task_acks: HashMap<TaskId, Vec<String>>,
}

/// The result of trying to lease messages.
enum Taken {
    Messages(Vec<ReceivedMessage>),
    /// Nothing to do until the subscription signals (none ready, or detached).
    Idle,
    /// The subscription or the broker is gone: stop.
    Gone,
}

impl Worker {
    async fn run(mut self, mut config: watch::Receiver<Option<Arc<Subscription>>>) {
        let Some(mut registration) = self.register(&config) else {
            return;
        };
        let mut config_open = true;
        let mut shutdown = self.shutdown.clone();
        loop {
            let current = config.borrow_and_update().clone();
            let stopping = current.is_none() || !config_open;
            if stopping && self.tasks.is_empty() {
                break;
            }
            if let Some(sub) = &current {
                registration.set_deadline(sub.ack_deadline_seconds);
            }
            let notify = registration.notify();
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before leasing, so work signalled meanwhile is seen.
            notified.as_mut().enable();
            let now = Instant::now();
            let room = self.settings.max_outstanding.saturating_sub(self.in_flight);
            let may_take = !stopping && room > 0 && !self.backoff.active(now);
            if let (true, Some(sub)) = (may_take, &current) {
                match self.take(&mut registration, room) {
                    Taken::Messages(messages) => {
                        self.dispatch(sub, messages);
                        // A batch can stop short of the window (the broker
                        // caps a batch's bytes): lease again right away.
                        if self.in_flight < self.settings.max_outstanding {
                            continue;
                        }
                    }
                    Taken::Idle => {}
                    Taken::Gone => return,
                }
            }
            // Wait for whatever can move things on: a result, a config
            // change, new work (when there is room for it), the backoff's end.
            let now = Instant::now();
            let room = self.settings.max_outstanding.saturating_sub(self.in_flight);
            let wait_for_work = !stopping && room > 0 && !self.backoff.active(now);
            let backoff_until = self.backoff.until.filter(|until| !stopping && *until > now);
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|down| *down).await; } => return,
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.settle(joined);
                }
                changed = config.changed(), if config_open => {
                    if changed.is_err() {
                        config_open = false;
                    }
                }
                _ = &mut notified, if wait_for_work => {
                    tokio::time::sleep(self.settings.dispatch_delay).await;
                }
                _ = sleep_until_or_never(backoff_until), if backoff_until.is_some() => {}
            }
        }
        tracing::debug!(subscription = %self.name, "push worker ended");
    }

    /// Registers the worker's lease window with the broker.
    fn register(
        &self,
        config: &watch::Receiver<Option<Arc<Subscription>>>,
    ) -> Option<StreamRegistration> {
        let broker = self.broker.upgrade()?;
        let deadline = config
            .borrow()
            .as_ref()
            .map_or(10, |sub| sub.ack_deadline_seconds);
        let max = i64::try_from(self.settings.max_outstanding).unwrap_or(i64::MAX);
        match broker.register_stream(&self.name, deadline, max, 0) {
            Ok(mut registration) => {
                registration.set_delivery_kind(DeliveryKind::Push);
                Some(registration)
            }
            Err(error) => {
                tracing::debug!(subscription = %self.name, %error, "push worker cannot register");
                None
            }
        }
    }

    /// Leases up to `max` messages. A subscription deleted and created again
    /// under the same name gets a fresh registration.
    fn take(&self, registration: &mut StreamRegistration, max: usize) -> Taken {
        let Some(broker) = self.broker.upgrade() else {
            return Taken::Gone;
        };
        match broker.stream_take(registration, max) {
            Ok(messages) if messages.is_empty() => Taken::Idle,
            Ok(messages) => Taken::Messages(messages),
            Err(BrokerError {
                code: ErrorCode::NotFound,
                ..
            }) => {
                let max_outstanding =
                    i64::try_from(self.settings.max_outstanding).unwrap_or(i64::MAX);
                let fresh = broker.get_subscription(&self.name).and_then(|sub| {
                    broker.register_stream(&self.name, sub.ack_deadline_seconds, max_outstanding, 0)
                });
                let Ok(mut fresh) = fresh else {
                    return Taken::Gone;
                };
                fresh.set_delivery_kind(DeliveryKind::Push);
                *registration = fresh;
                match broker.stream_take(registration, max) {
                    Ok(messages) if !messages.is_empty() => Taken::Messages(messages),
                    Ok(_) => Taken::Idle,
                    Err(_) => Taken::Gone,
                }
            }
            Err(BrokerError {
                code: ErrorCode::Unavailable,
                ..
            }) => Taken::Gone,
            Err(error) => {
                // Detached, for one: wait until the catalog or the
                // subscription changes.
                tracing::debug!(subscription = %self.name, %error, "push worker cannot lease");
                Taken::Idle
            }
        }
    }

    /// Starts delivery tasks for freshly leased messages. In an ordered
    /// subscription the messages of one ordering key go out one after the
    /// other in one task; everything else goes out concurrently.
    fn dispatch(&mut self, sub: &Arc<Subscription>, messages: Vec<ReceivedMessage>) {
        self.in_flight += messages.len();
        let mut groups: Vec<Vec<ReceivedMessage>> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for received in messages {
            let key = received
                .message
                .as_ref()
                .map(|m| m.ordering_key.clone())
                .unwrap_or_default();
            if sub.enable_message_ordering && !key.is_empty() {
                if let Some(&index) = by_key.get(&key) {
                    groups[index].push(received);
                    continue;
                }
                by_key.insert(key, groups.len());
            }
            groups.push(vec![received]);
        }
        for group in groups {
            let acks: Vec<String> = group.iter().map(|r| r.ack_id.clone()).collect();
            let handle = self.tasks.spawn(deliver_group(
                self.client.clone(),
                self.settings.id_tokens.clone(),
                sub.clone(),
                group,
            ));
            self.task_acks.insert(handle.id(), acks);
        }
    }

    /// Acks what was delivered and nacks the rest, then adjusts the backoff.
    fn settle(&mut self, joined: Option<Result<(TaskId, Outcomes), tokio::task::JoinError>>) {
        let outcomes = match joined {
            None => return,
            Some(Ok((id, outcomes))) => {
                self.task_acks.remove(&id);
                outcomes
            }
            Some(Err(error)) => {
                tracing::error!(subscription = %self.name, %error, "push delivery task failed");
                let acks = self.task_acks.remove(&error.id()).unwrap_or_default();
                acks.into_iter()
                    .map(|ack| (ack, Err(PushFailure::HeldBack)))
                    .collect()
            }
        };
        self.in_flight = self.in_flight.saturating_sub(outcomes.len());
        let mut acked = Vec::new();
        let mut nacked = Vec::new();
        let mut first_failure = None;
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        for (ack_id, outcome) in outcomes {
            let result = match &outcome {
                Ok(status) => Some(PushResult {
                    class: PushResponseClass::Ack,
                    status: Some(*status),
                    detail: String::new(),
                }),
                Err(failure) => failure.result(),
            };
            if let Some(result) = result {
                broker.record_push_result(&self.name, result);
            }
            match outcome {
                Ok(_) => acked.push(ack_id),
                Err(failure) => {
                    if first_failure.is_none() && !matches!(failure, PushFailure::HeldBack) {
                        first_failure = Some(failure);
                    }
                    nacked.push(ack_id);
                }
            }
        }
        if !acked.is_empty() {
            if let Err(error) = broker.acknowledge(&self.name, &acked) {
                tracing::debug!(subscription = %self.name, %error, "acknowledging pushed messages failed");
            }
            self.backoff.succeeded();
        }
        if !nacked.is_empty() {
            // Back in the queue (after the retry policy's backoff, if any):
            // counts as a delivery attempt for the dead-letter policy.
            if let Err(error) = broker.modify_ack_deadline(&self.name, &nacked, 0) {
                tracing::debug!(subscription = %self.name, %error, "nacking pushed messages failed");
            }
            let failure = first_failure.map_or_else(String::new, |f| f.to_string());
            match self.backoff.failed(&self.settings, Instant::now()) {
                Some(delay) if self.backoff.failures == 1 => tracing::warn!(
                    subscription = %self.name,
                    %failure,
                    backoff_ms = delay.as_millis(),
                    "push failed; backing off"
                ),
                Some(delay) => tracing::debug!(
                    subscription = %self.name,
                    %failure,
                    failures = self.backoff.failures,
                    backoff_ms = delay.as_millis(),
                    "push failed again; backing off longer"
                ),
                None => tracing::debug!(subscription = %self.name, %failure, "push failed"),
            }
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own message rarely
/// says what went wrong, its sources do).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn sleep_until_or_never(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// POSTs a group's messages in order. In a group of several (one ordering
/// key), the messages after a failed one are held back unsent.
async fn deliver_group(
    client: reqwest::Client,
    id_tokens: Option<crate::identity::Identity>,
    sub: Arc<Subscription>,
    group: Vec<ReceivedMessage>,
) -> Outcomes {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut failed = false;
    for received in group {
        let outcome = if failed {
            Err(PushFailure::HeldBack)
        } else {
            push_one(&client, id_tokens.as_ref(), &sub, &received).await
        };
        failed |= outcome.is_err();
        outcomes.push((received.ack_id, outcome));
    }
    outcomes
}

/// POSTs one message to the subscription's endpoint.
async fn push_one(
    client: &reqwest::Client,
    id_tokens: Option<&crate::identity::Identity>,
    sub: &Subscription,
    received: &ReceivedMessage,
) -> Result<u16, PushFailure> {
    let default_message = PubsubMessage::default();
    let message = received.message.as_ref().unwrap_or(&default_message);
    let push = sub.push_config.clone().unwrap_or_default();
    let timeout = Duration::from_secs(u64::try_from(sub.ack_deadline_seconds.max(1)).unwrap_or(10));
    let (headers, body) = match &push.wrapper {
        Some(Wrapper::NoWrapper(no_wrapper)) => {
            let headers = if no_wrapper.write_metadata {
                metadata_headers(sub, message)
            } else {
                HeaderMap::new()
            };
            (headers, message.data.to_vec())
        }
        _ => {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = envelope(sub, received, message).to_string().into_bytes();
            (headers, body)
        }
    };
    let mut headers = headers;
    if let Some(value) = message
        .attributes
        .get(TRACEPARENT_ATTRIBUTE)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(HeaderName::from_static("traceparent"), value);
    }
    if let (Some(oidc), Some(identity)) = (&push.authentication_method, id_tokens) {
        let Authentication::OidcToken(oidc) = oidc;
        // The audience defaults to the endpoint, as with the real service.
        let audience = if oidc.audience.is_empty() {
            push.push_endpoint.as_str()
        } else {
            oidc.audience.as_str()
        };
        let token = identity
            .push_id_token(&oidc.service_account_email, audience)
            .await
            .map_err(|error| PushFailure::Request(format!("cannot sign the ID token: {error}")))?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|error| PushFailure::Request(error.to_string()))?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let response = client
        .post(&push.push_endpoint)
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| {
            if error.is_timeout() {
                PushFailure::Timeout(error_chain(&error))
            } else {
                PushFailure::Request(error_chain(&error))
            }
        })?;
    let status = response.status().as_u16();
    // Read the (normally empty) answer so the connection can be reused.
    let _ = response.bytes().await;
    if ACK_STATUSES.contains(&status) {
        tracing::trace!(subscription = %sub.name, message_id = %message.message_id, status, "pushed");
        Ok(status)
    } else {
        Err(PushFailure::Status(status))
    }
}

/// The wrapped push body. `attributes` and `data` are always present (empty
/// when the message has none), ids and times in both spellings the service
/// sends. `orderingKey` is sent by subscriptions that order messages (the
/// emulator leaves it out elsewhere), `deliveryAttempt` by those with a
/// dead-letter policy.
fn envelope(sub: &Subscription, received: &ReceivedMessage, message: &PubsubMessage) -> Value {
    let attributes: BTreeMap<&String, &String> = message.attributes.iter().collect();
    let mut body = Map::new();
    body.insert(
        "data".to_owned(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(&message.data)),
    );
    body.insert("attributes".to_owned(), json!(attributes));
    body.insert("messageId".to_owned(), json!(message.message_id));
    body.insert("message_id".to_owned(), json!(message.message_id));
    if let Some(time) = publish_time(message) {
        body.insert("publishTime".to_owned(), json!(time));
        body.insert("publish_time".to_owned(), json!(time));
    }
    if sub.enable_message_ordering && !message.ordering_key.is_empty() {
        body.insert("orderingKey".to_owned(), json!(message.ordering_key));
    }
    let mut envelope = Map::new();
    envelope.insert("message".to_owned(), Value::Object(body));
    envelope.insert("subscription".to_owned(), json!(sub.name));
    if received.delivery_attempt > 0 {
        envelope.insert(
            "deliveryAttempt".to_owned(),
            json!(received.delivery_attempt),
        );
    }
    Value::Object(envelope)
}

/// `no_wrapper` + `write_metadata` headers: the message's metadata as
/// `x-goog-pubsub-*` headers and its attributes as headers of their own names
/// (those that are valid header names and values and do not frame the request).
fn metadata_headers(sub: &Subscription, message: &PubsubMessage) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (key, value) in &message.attributes {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            continue;
        };
        if RESERVED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let mut metadata = vec![
        ("x-goog-pubsub-subscription-name", sub.name.clone()),
        ("x-goog-pubsub-message-id", message.message_id.clone()),
    ];
    if let Some(time) = publish_time(message) {
        metadata.push(("x-goog-pubsub-publish-time", time));
    }
    if sub.enable_message_ordering && !message.ordering_key.is_empty() {
        metadata.push(("x-goog-pubsub-ordering-key", message.ordering_key.clone()));
    }
    for (name, value) in metadata {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

/// The publish time in RFC 3339 with a `Z` suffix and 0, 3, 6 or 9
/// fractional digits, as the service writes it.
fn publish_time(message: &PubsubMessage) -> Option<String> {
    let time = serde_json::to_value(message.publish_time.as_ref()?).ok()?;
    let text = time.as_str()?;
    Some(match text.strip_suffix("+00:00") {
        Some(utc) => format!("{utc}Z"),
        None => text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use baton_proto::pubsub::{DeadLetterPolicy, PushConfig};
    use baton_proto::wkt;

    fn message() -> PubsubMessage {
        PubsubMessage {
            data: b"hello".to_vec(),
            attributes: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
            message_id: "42".to_owned(),
            publish_time: Some(wkt::Timestamp {
                seconds: 1_614_366_835,
                nanos: 749_000_000,
            }),
            ordering_key: "key".to_owned(),
        }
    }

    fn subscription() -> Subscription {
        Subscription {
            name: "projects/p/subscriptions/s".to_owned(),
            push_config: Some(PushConfig {
                push_endpoint: "http://127.0.0.1:1/hook".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn envelope_has_both_spellings_and_no_ordering_key_when_unordered() {
        let message = message();
        let received = ReceivedMessage {
            ack_id: "a".to_owned(),
            message: Some(message.clone()),
            delivery_attempt: 0,
        };
        let body = envelope(&subscription(), &received, &message);
        assert_eq!(
            body,
            json!({
                "message": {
                    "data": "aGVsbG8=",
                    "attributes": {"k": "v"},
                    "messageId": "42",
                    "message_id": "42",
                    "publishTime": "2021-02-26T19:13:55.749Z",
                    "publish_time": "2021-02-26T19:13:55.749Z",
                },
                "subscription": "projects/p/subscriptions/s",
            })
        );
    }

    #[test]
    fn envelope_of_ordered_dead_lettering_subscription() {
        let message = PubsubMessage {
            data: Default::default(),
            attributes: Default::default(),
            ..message()
        };
        let sub = Subscription {
            enable_message_ordering: true,
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: "projects/p/topics/dl".to_owned(),
                max_delivery_attempts: 5,
            }),
            ..subscription()
        };
        let received = ReceivedMessage {
            ack_id: "a".to_owned(),
            message: Some(message.clone()),
            delivery_attempt: 3,
        };
        let body = envelope(&sub, &received, &message);
        assert_eq!(body["message"]["data"], "");
        assert_eq!(body["message"]["attributes"], json!({}));
        assert_eq!(body["message"]["orderingKey"], "key");
        assert_eq!(body["deliveryAttempt"], 3);
    }

    #[test]
    fn metadata_headers_carry_ids_times_and_attributes() {
        let mut message = message();
        message
            .attributes
            .insert("content-length".to_owned(), "1".to_owned());
        message
            .attributes
            .insert("bad header".to_owned(), "x".to_owned());
        let headers = metadata_headers(&subscription(), &message);
        assert_eq!(
            headers["x-goog-pubsub-subscription-name"],
            "projects/p/subscriptions/s"
        );
        assert_eq!(headers["x-goog-pubsub-message-id"], "42");
        assert_eq!(
            headers["x-goog-pubsub-publish-time"],
            "2021-02-26T19:13:55.749Z"
        );
        assert_eq!(headers["k"], "v");
        assert!(!headers.contains_key("content-length"));
        assert!(!headers.contains_key("x-goog-pubsub-ordering-key"));
        assert_eq!(headers.len(), 4);
    }

    #[test]
    fn backoff_doubles_from_the_initial_value_up_to_the_cap_and_resets() {
        let settings = PushSettings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..PushSettings::default()
        };
        let mut backoff = Backoff::default();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..4 {
            let delay = backoff.failed(&settings, now).unwrap();
            // A second failure within the same backoff does not stretch it.
            assert!(backoff.failed(&settings, now).is_none());
            delays.push(delay.as_millis());
            now += delay;
        }
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.succeeded();
        assert!(!backoff.active(now));
        assert_eq!(
            backoff.failed(&settings, now),
            Some(Duration::from_millis(100))
        );
    }
}
