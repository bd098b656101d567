#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests of delivery as a state machine: random sequences of
//! publish, pull, ack, nack, modack and the passing of time, checked against a
//! small model of the rules the other test files pin down one at a time.
//!
//! - Without ordering the model predicts every pull answer exactly: a message
//!   is never handed out while its lease runs nor lost once it ends, expired
//!   and nacked messages go to the back in the order their leases ended, stale
//!   ack ids settle (or, under exactly-once, fail) as the rules say, and
//!   `backlog_len` always equals the model's count of owed messages.
//! - With ordering keys (and sometimes a retry policy) a message is only ever
//!   handed out while every earlier unacked message of its key is
//!   outstanding, and in the end every message is delivered.
//!
//! Each case runs on its own paused current-thread Tokio runtime, so lease
//! deadlines and backoffs follow virtual time exactly (the model knows to the
//! millisecond when each lease ends) and a case with minutes of virtual time
//! takes microseconds.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use baton_broker::AckFailure;
use baton_proto::pubsub::{RetryPolicy, Subscription};
use proptest::prelude::*;
use proptest::sample::Index;
use support::*;

/// Default ack deadline of the subscriptions here.
const LEASE: Duration = Duration::from_secs(10);

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// Publish this many messages (with the ordering key of this index in
    /// `KEYS`, for the ordered runs).
    Publish {
        count: usize,
        key: Index,
    },
    Pull {
        max: i32,
    },
    /// Ack (or nack, or modack) an ack id handed out earlier in the run,
    /// current or stale.
    Ack(Index),
    Nack(Index),
    Modack(Index, i32),
    /// Let virtual time pass.
    Advance(Duration),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..=3usize, any::<Index>()).prop_map(|(count, key)| Op::Publish { count, key }),
        3 => (1..=4i32).prop_map(|max| Op::Pull { max }),
        2 => any::<Index>().prop_map(Op::Ack),
        2 => any::<Index>().prop_map(Op::Nack),
        1 => (any::<Index>(), 1..=25i32).prop_map(|(id, seconds)| Op::Modack(id, seconds)),
        3 => prop_oneof![(0..=12u64).prop_map(secs), (0..=12_000u64).prop_map(ms)]
            .prop_map(Op::Advance),
    ]
}

/// Runs `test` on a fresh paused current-thread runtime.
fn on_virtual_time(
    test: impl Future<Output = Result<(), TestCaseError>>,
) -> Result<(), TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(test)
}

/// A live lease in the model.
#[derive(Debug, Clone)]
struct Lease {
    ack_id: String,
    deadline: Duration,
    /// Ack ids are numbered in the order leases are handed out; timers due
    /// at the same instant fire in that order.
    number: u64,
}

/// What an unordered subscription owes, by the rules: a FIFO of ready
/// messages and the current lease of each outstanding one.
#[derive(Debug, Default)]
struct FifoModel {
    exactly_once: bool,
    now: Duration,
    ready: VecDeque<String>,
    leases: HashMap<String, Lease>,
    /// Every ack id handed out, and its message.
    issued: Vec<(String, String)>,
}

impl FifoModel {
    fn owed(&self) -> usize {
        self.ready.len() + self.leases.len()
    }

    fn is_owed(&self, message: &str) -> bool {
        self.leases.contains_key(message) || self.ready.iter().any(|m| m == message)
    }

    /// The message whose current lease `ack_id` is.
    fn current(&self, ack_id: &str) -> Option<String> {
        self.leases
            .iter()
            .find(|(_, lease)| lease.ack_id == ack_id)
            .map(|(message, _)| message.clone())
    }

    /// Time passes to `to`: leases whose deadline comes by then end, in the
    /// order they end, each message going to the back.
    fn advance_to(&mut self, to: Duration) {
        let mut ended: Vec<(Duration, u64, String)> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline <= to)
            .map(|(message, lease)| (lease.deadline, lease.number, message.clone()))
            .collect();
        ended.sort();
        for (_, _, message) in ended {
            self.leases.remove(&message);
            self.ready.push_back(message);
        }
        self.now = to;
    }

    fn pull(&mut self, max: usize) -> Vec<String> {
        let n = max.min(self.ready.len());
        self.ready.drain(..n).collect()
    }

    fn leased(&mut self, message: String, ack_id: String) {
        let number = self.issued.len() as u64;
        self.issued.push((ack_id.clone(), message.clone()));
        self.leases.insert(
            message,
            Lease {
                ack_id,
                deadline: self.now + LEASE,
                number,
            },
        );
    }

    /// Ack: the ack ids that must fail.
    fn ack(&mut self, ack_id: &str, message: &str) -> Vec<String> {
        let settles = if self.exactly_once {
            self.current(ack_id).is_some()
        } else {
            self.is_owed(message)
        };
        if settles {
            self.leases.remove(message);
            self.ready.retain(|m| m != message);
            Vec::new()
        } else if self.exactly_once {
            vec![ack_id.to_string()]
        } else {
            Vec::new()
        }
    }

    /// ModifyAckDeadline (0: nack): the ack ids that must fail.
    fn modack(&mut self, ack_id: &str, seconds: i32) -> Vec<String> {
        let Some(message) = self.current(ack_id) else {
            return if self.exactly_once {
                vec![ack_id.to_string()]
            } else {
                Vec::new()
            };
        };
        if seconds == 0 {
            self.leases.remove(&message);
            self.ready.push_back(message);
        } else if let Some(lease) = self.leases.get_mut(&message) {
            lease.deadline = self.now + secs(u64::try_from(seconds).unwrap());
        }
        Vec::new()
    }
}

fn failures_of(result: Result<(), baton_broker::BrokerError>) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(error) => {
            assert_eq!(error.code, baton_broker::ErrorCode::InvalidArgument);
            error
                .ack_failures
                .into_iter()
                .map(|AckFailure { ack_id, reason }| {
                    assert_eq!(reason, "PERMANENT_FAILURE_INVALID_ACK_ID");
                    ack_id
                })
                .collect()
        }
    }
}

async fn check_against_fifo_model(exactly_once: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        enable_exactly_once_delivery: exactly_once,
        ..subscription("sub", &topic)
    });
    let mut model = FifoModel {
        exactly_once,
        ..FifoModel::default()
    };
    let mut published = 0;
    for op in ops {
        match op {
            Op::Publish { count, .. } => {
                let names: Vec<String> = (published..published + count)
                    .map(|n| format!("m{n}"))
                    .collect();
                published += count;
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                t.publish(&topic, &refs);
                model.ready.extend(names);
            }
            Op::Pull { max } => {
                let got = t.pull_now(&sub, max).await;
                let expected = model.pull(usize::try_from(max).unwrap());
                prop_assert_eq!(datas(&got), expected, "pull {} at {:?}", max, model.now);
                for received in &got {
                    model.leased(data(received), received.ack_id.clone());
                }
            }
            Op::Ack(_) | Op::Nack(_) | Op::Modack(..) if model.issued.is_empty() => {}
            Op::Ack(index) => {
                let (ack_id, message) = index.get(&model.issued).clone();
                let result = t.broker.acknowledge(&sub, std::slice::from_ref(&ack_id));
                prop_assert_eq!(failures_of(result), model.ack(&ack_id, &message));
            }
            Op::Nack(index) => {
                let (ack_id, _) = index.get(&model.issued).clone();
                let result = t
                    .broker
                    .modify_ack_deadline(&sub, std::slice::from_ref(&ack_id), 0);
                prop_assert_eq!(failures_of(result), model.modack(&ack_id, 0));
            }
            Op::Modack(index, seconds) => {
                let (ack_id, _) = index.get(&model.issued).clone();
                let result =
                    t.broker
                        .modify_ack_deadline(&sub, std::slice::from_ref(&ack_id), seconds);
                prop_assert_eq!(failures_of(result), model.modack(&ack_id, seconds));
            }
            Op::Advance(d) => {
                let to = model.now + d;
                t.sleep_until(to).await;
                model.advance_to(to);
            }
        }
        prop_assert_eq!(t.backlog(&sub), model.owed(), "backlog at {:?}", model.now);
    }

    // Once every lease has run out, everything owed comes back, once each.
    let end = model.now + secs(700);
    t.sleep_until(end).await;
    model.advance_to(end);
    let rest = t.pull_now(&sub, 1000).await;
    prop_assert_eq!(datas(&rest), model.pull(1000));
    if !rest.is_empty() {
        t.ack(&sub, &rest);
    }
    prop_assert_eq!(t.backlog(&sub), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn unordered_delivery_matches_the_fifo_model(
        exactly_once in any::<bool>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        on_virtual_time(check_against_fifo_model(exactly_once, ops))?;
    }
}

/// Ordering keys of the ordered runs; "" publishes without a key.
const KEYS: [&str; 3] = ["a", "b", ""];

/// A message of an ordered run as the test sees it.
#[derive(Debug, Clone)]
struct Tracked {
    key: String,
    acked: bool,
    /// The live lease, if the message is outstanding.
    lease: Option<Lease>,
}

/// What the test knows of an ordered subscription: each message's key and
/// whether it is acked or outstanding. Leases end by nack or expiry, and
/// when one ends the later outstanding messages of its key come back too.
#[derive(Debug, Default)]
struct KeyModel {
    now: Duration,
    /// By message number, in publish order.
    messages: BTreeMap<usize, Tracked>,
    issued: Vec<(String, usize)>,
}

impl KeyModel {
    /// Ends the lease of `n` and of the later outstanding messages of its key.
    fn end_lease(&mut self, n: usize) {
        let key = self.messages[&n].key.clone();
        for (m, tracked) in self.messages.range_mut(n..) {
            if *m == n || (!key.is_empty() && tracked.key == key) {
                tracked.lease = None;
            }
        }
    }

    fn advance_to(&mut self, to: Duration) {
        loop {
            let next = self
                .messages
                .iter()
                .filter_map(|(n, t)| t.lease.as_ref().map(|l| (l.deadline, l.number, *n)))
                .filter(|(deadline, _, _)| *deadline <= to)
                .min();
            let Some((_, _, n)) = next else {
                break;
            };
            self.end_lease(n);
        }
        self.now = to;
    }

    fn current(&self, ack_id: &str) -> Option<usize> {
        self.messages
            .iter()
            .find(|(_, t)| t.lease.as_ref().is_some_and(|l| l.ack_id == ack_id))
            .map(|(n, _)| *n)
    }

    /// `n` is handed out: every earlier unacked message of its key must be
    /// outstanding. The message numbers that break that rule.
    fn delivered(&mut self, n: usize, ack_id: String) -> Vec<usize> {
        let key = self.messages[&n].key.clone();
        let overtaken: Vec<usize> = if key.is_empty() {
            Vec::new()
        } else {
            self.messages
                .range(..n)
                .filter(|(_, t)| t.key == key && !t.acked && t.lease.is_none())
                .map(|(m, _)| *m)
                .collect()
        };
        let number = self.issued.len() as u64;
        self.issued.push((ack_id.clone(), n));
        if let Some(tracked) = self.messages.get_mut(&n) {
            tracked.lease = Some(Lease {
                ack_id,
                deadline: self.now + LEASE,
                number,
            });
        }
        overtaken
    }
}

async fn check_ordering_keys(
    backoff: Option<(i64, i64)>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        enable_message_ordering: true,
        retry_policy: backoff.map(|(min, max)| RetryPolicy {
            minimum_backoff: Some(proto_secs(min)),
            maximum_backoff: Some(proto_secs(max)),
        }),
        ..subscription("sub", &topic)
    });
    let mut model = KeyModel::default();
    let number_of = |received: &baton_proto::pubsub::ReceivedMessage| -> usize {
        data(received)[1..].parse().unwrap()
    };
    for op in ops {
        match op {
            Op::Publish { count, key } => {
                let key = *key.get(&KEYS);
                let first = model.messages.len();
                let names: Vec<String> = (first..first + count).map(|n| format!("m{n}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                t.publish_keyed(&topic, key, &refs);
                for n in first..first + count {
                    model.messages.insert(
                        n,
                        Tracked {
                            key: key.to_string(),
                            acked: false,
                            lease: None,
                        },
                    );
                }
            }
            Op::Pull { max } => {
                for received in t.pull_now(&sub, max).await {
                    let n = number_of(&received);
                    let overtaken = model.delivered(n, received.ack_id.clone());
                    prop_assert!(
                        overtaken.is_empty(),
                        "m{} handed out at {:?} while earlier m{:?} of its key were neither acked nor outstanding",
                        n,
                        model.now,
                        overtaken
                    );
                }
            }
            Op::Ack(_) | Op::Nack(_) | Op::Modack(..) if model.issued.is_empty() => {}
            Op::Ack(index) => {
                let (ack_id, n) = index.get(&model.issued).clone();
                t.broker
                    .acknowledge(&sub, std::slice::from_ref(&ack_id))
                    .unwrap();
                // Outside exactly-once any id of an owed message settles it.
                if let Some(tracked) = model.messages.get_mut(&n) {
                    tracked.acked = true;
                    tracked.lease = None;
                }
            }
            Op::Nack(index) => {
                let (ack_id, _) = index.get(&model.issued).clone();
                if let Some(n) = model.current(&ack_id) {
                    model.end_lease(n);
                }
                t.broker
                    .modify_ack_deadline(&sub, std::slice::from_ref(&ack_id), 0)
                    .unwrap();
            }
            Op::Modack(index, seconds) => {
                let (ack_id, _) = index.get(&model.issued).clone();
                if let Some(n) = model.current(&ack_id)
                    && let Some(lease) = model.messages.get_mut(&n).and_then(|t| t.lease.as_mut())
                {
                    lease.deadline = model.now + secs(u64::try_from(seconds).unwrap());
                }
                t.broker
                    .modify_ack_deadline(&sub, std::slice::from_ref(&ack_id), seconds)
                    .unwrap();
            }
            Op::Advance(d) => {
                let to = model.now + d;
                t.sleep_until(to).await;
                model.advance_to(to);
            }
        }
        let owed = model.messages.values().filter(|t| !t.acked).count();
        prop_assert_eq!(t.backlog(&sub), owed, "backlog at {:?}", model.now);
    }

    // In the end every message is delivered, still in order: let all leases
    // and backoffs run out, then take and ack whatever comes until nothing
    // is owed. A key left held for good would stall this.
    for _ in 0..50 {
        if t.backlog(&sub) == 0 {
            break;
        }
        let to = model.now + secs(700);
        t.sleep_until(to).await;
        model.advance_to(to);
        let got = t.pull_now(&sub, 1000).await;
        for received in &got {
            let n = number_of(received);
            let overtaken = model.delivered(n, received.ack_id.clone());
            prop_assert!(
                overtaken.is_empty(),
                "m{} overtook m{:?} in the drain",
                n,
                overtaken
            );
        }
        if !got.is_empty() {
            t.ack(&sub, &got);
        }
        for received in &got {
            if let Some(tracked) = model.messages.get_mut(&number_of(received)) {
                tracked.acked = true;
                tracked.lease = None;
            }
        }
    }
    prop_assert_eq!(t.backlog(&sub), 0, "everything is delivered in the end");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ordering_keys_never_overtake_and_everything_is_delivered(
        backoff in prop::option::of((0..=3i64, 0..=4i64).prop_map(|(min, extra)| (min, min + extra))),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        on_virtual_time(check_ordering_keys(backoff, ops))?;
    }
}
