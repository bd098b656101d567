#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Exactly-once lease rules (`pubsub-api.md` section 4,
//! `enable_exactly_once_delivery`): only the current lease of a message can
//! settle, extend or nack it. An ack or modack naming any other id (a lease
//! that expired or was nacked, a message already acked, an id never handed
//! out) fails with INVALID_ARGUMENT listing each such id as
//! `PERMANENT_FAILURE_INVALID_ACK_ID` in `BrokerError::ack_failures`, while
//! the valid ids of the same request still apply. Outside exactly-once the
//! same calls succeed quietly.
//!
//! Stale ids come from leases that expired, and expiries run on Tokio's
//! paused clock: each test knows the exact instant a lease went stale and
//! takes no real time.

mod support;

use baton_broker::{AckFailure, BrokerError, ErrorCode};
use baton_proto::pubsub::Subscription;
use support::*;

fn exactly_once(id: &str, topic: &str) -> Subscription {
    Subscription {
        enable_exactly_once_delivery: true,
        ..subscription(id, topic)
    }
}

/// Asserts `error` is the exactly-once failure for exactly `ack_ids`.
fn assert_invalid_ack_ids(error: BrokerError, ack_ids: &[&str]) {
    assert_eq!(error.code, ErrorCode::InvalidArgument, "{error:?}");
    let expected: Vec<AckFailure> = ack_ids
        .iter()
        .map(|id| AckFailure {
            ack_id: id.to_string(),
            reason: "PERMANENT_FAILURE_INVALID_ACK_ID",
        })
        .collect();
    assert_eq!(error.ack_failures, expected);
}

#[tokio::test(start_paused = true)]
async fn only_the_current_lease_settles_a_message() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(exactly_once("sub", &topic));
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;
    t.sleep_until(ms(9_999)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "no redelivery while outstanding"
    );
    t.sleep_until(secs(10)).await;
    let second = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&second), ["m"]);

    let error = t
        .broker
        .acknowledge(&sub, &ack_ids(&first))
        .expect_err("the expired lease cannot ack");
    assert_invalid_ack_ids(error, &[&first[0].ack_id]);
    assert_eq!(t.backlog(&sub), 1);

    t.ack(&sub, &second);
    assert_eq!(t.backlog(&sub), 0);
    let error = t
        .broker
        .acknowledge(&sub, &ack_ids(&second))
        .expect_err("an acked message cannot be acked again");
    assert_invalid_ack_ids(error, &[&second[0].ack_id]);
    t.sleep_until(secs(60)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "nothing comes back once acked"
    );
}

#[tokio::test(start_paused = true)]
async fn valid_ids_in_a_request_apply_even_when_others_fail() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(exactly_once("sub", &topic));
    t.publish(&topic, &["a", "b"]);
    let first = t.pull_now(&sub, 10).await;
    t.modack(&sub, &first[..1], 2);
    t.sleep_until(secs(2)).await;
    let a_again = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&a_again), ["a"]);

    let stale_a = first[0].ack_id.clone();
    let request = [
        stale_a.clone(),
        first[1].ack_id.clone(),
        a_again[0].ack_id.clone(),
    ];
    let error = t
        .broker
        .acknowledge(&sub, &request)
        .expect_err("one id is stale");
    assert_invalid_ack_ids(error, &[&stale_a]);
    assert_eq!(t.backlog(&sub), 0, "both current leases settled");
}

#[tokio::test(start_paused = true)]
async fn a_stale_modack_fails_and_leaves_the_current_lease_alone() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(exactly_once("sub", &topic));
    t.publish(&topic, &["m"]);
    let stale = t.pull_now(&sub, 10).await;
    t.sleep_until(secs(10)).await;
    let current = t.pull_now(&sub, 10).await;

    t.sleep_until(secs(11)).await;
    for seconds in [60, 0] {
        let error = t
            .broker
            .modify_ack_deadline(&sub, &ack_ids(&stale), seconds)
            .expect_err("a stale id cannot modack");
        assert_invalid_ack_ids(error, &[&stale[0].ack_id]);
    }
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "the stale nack did not end the current lease"
    );
    t.sleep_until(ms(19_999)).await;
    assert!(
        t.pull_now(&sub, 10).await.is_empty(),
        "the current lease runs its own 10 s"
    );
    t.sleep_until(secs(20)).await;
    let third = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&third), ["m"], "the stale modack did not extend it");

    // A request with the now-stale and the current id: the current one is
    // extended all the same.
    let request = [current[0].ack_id.clone(), third[0].ack_id.clone()];
    let error = t
        .broker
        .modify_ack_deadline(&sub, &request, 30)
        .expect_err("one id is stale");
    assert_invalid_ack_ids(error, &[&current[0].ack_id]);
    t.sleep_until(ms(49_999)).await;
    assert!(t.pull_now(&sub, 10).await.is_empty());
    t.sleep_until(secs(50)).await;
    assert_eq!(datas(&t.pull_now(&sub, 10).await), ["m"]);
}

#[tokio::test(start_paused = true)]
async fn a_nack_of_the_current_lease_makes_its_id_stale() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(exactly_once("sub", &topic));
    t.publish(&topic, &["m"]);
    let first = t.pull_now(&sub, 10).await;
    t.nack(&sub, &first);
    let second = t.pull_now(&sub, 10).await;
    assert_eq!(datas(&second), ["m"], "redelivered at once");
    let error = t
        .broker
        .acknowledge(&sub, &ack_ids(&first))
        .expect_err("the nacked lease is over");
    assert_invalid_ack_ids(error, &[&first[0].ack_id]);
    t.ack(&sub, &second);
    assert_eq!(t.backlog(&sub), 0);
}

#[tokio::test(start_paused = true)]
async fn an_id_never_handed_out_fails_only_under_exactly_once() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let strict = t.create_subscription(exactly_once("strict", &topic));
    let lenient = t.create_subscription(subscription("lenient", &topic));
    let unknown = format!("{strict}:999999");
    let error = t
        .broker
        .acknowledge(&strict, std::slice::from_ref(&unknown))
        .expect_err("unknown id");
    assert_invalid_ack_ids(error, &[&unknown]);

    t.broker
        .acknowledge(&lenient, &[format!("{lenient}:999999")])
        .expect("ignored outside exactly-once");

    // A malformed id is a plain INVALID_ARGUMENT, not a per-id failure.
    let error = t
        .broker
        .acknowledge(&strict, &["garbage".to_string()])
        .expect_err("malformed");
    assert_eq!(error.code, ErrorCode::InvalidArgument);
    assert!(error.ack_failures.is_empty());
    assert_eq!(error.message, "Invalid ack id (ack_id=garbage)");
}
