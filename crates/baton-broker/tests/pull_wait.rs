#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Blocking pulls (`PullWait::Until`): a pull with nothing to take waits,
//! answers empty exactly at its deadline, and answers at the very instant a
//! message becomes available, whether published, nacked, back from an
//! expired lease or out of a retry backoff.
//!
//! On Tokio's paused clock a waiting pull costs no real time and "at once"
//! is exact: the test asserts the virtual instant the pull returned, where a
//! wall-clock test could only bound a latency.

mod support;

use baton_broker::PullWait;
use baton_proto::pubsub::{RetryPolicy, Subscription};
use support::*;

#[tokio::test(start_paused = true)]
async fn blocking_pull_answers_empty_exactly_at_its_deadline() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let other = t.create_topic("other");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.create_subscription(subscription("other-sub", &other));
    let (got, ()) = tokio::join!(t.pull_until(&sub, 10, secs(30)), async {
        // A publish elsewhere does not answer this pull.
        sleep(secs(5)).await;
        t.publish(&other, &["elsewhere"]);
    });
    assert!(got.is_empty());
    assert_eq!(t.now(), secs(30));
}

#[tokio::test(start_paused = true)]
async fn immediate_pull_never_waits() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let got = t
        .broker
        .pull(&sub, 10, PullWait::Immediate)
        .await
        .expect("pull");
    assert!(got.is_empty());
    assert_eq!(t.now(), secs(0));
}

#[tokio::test(start_paused = true)]
async fn blocking_pull_returns_at_once_when_a_publish_arrives() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let ((got, returned_at), ()) = tokio::join!(
        async {
            let got = t.pull_until(&sub, 10, secs(30)).await;
            (got, t.now())
        },
        async {
            sleep(ms(2_500)).await;
            t.publish(&topic, &["m", "n"]);
        }
    );
    assert_eq!(datas(&got), ["m", "n"], "everything ready in one answer");
    assert_eq!(returned_at, ms(2_500));
}

#[tokio::test(start_paused = true)]
async fn one_message_answers_one_of_two_waiting_pulls_and_the_other_waits_on() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    // Leased past both pull deadlines, so it cannot come back meanwhile.
    let sub = t.create_subscription(Subscription {
        ack_deadline_seconds: 60,
        ..subscription("sub", &topic)
    });
    let timed = |deadline| {
        let (t, sub) = (&t, &sub);
        async move {
            let got = t.pull_until(sub, 10, deadline).await;
            (datas(&got), t.now())
        }
    };
    let (first, second, ()) = tokio::join!(timed(secs(20)), timed(secs(30)), async {
        sleep(secs(2)).await;
        t.publish(&topic, &["m"]);
    });
    let mut answers = [first, second];
    answers.sort_by_key(|(_, at)| *at);
    assert_eq!(answers[0], (vec!["m".to_string()], secs(2)));
    assert!(answers[1].0.is_empty(), "a message is handed out once");
    assert!(
        answers[1].1 == secs(20) || answers[1].1 == secs(30),
        "the other pull waits for its own deadline, answered at {:?}",
        answers[1].1
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_pull_is_woken_by_a_nack() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    t.publish(&topic, &["m"]);
    let leased = t.pull_now(&sub, 10).await;
    let ((got, returned_at), ()) = tokio::join!(
        async {
            let got = t.pull_until(&sub, 10, secs(30)).await;
            (got, t.now())
        },
        async {
            sleep(secs(3)).await;
            t.nack(&sub, &leased);
        }
    );
    assert_eq!(datas(&got), ["m"]);
    assert_eq!(returned_at, secs(3));
}

#[tokio::test(start_paused = true)]
async fn blocking_pull_is_woken_by_a_lease_expiry() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        ack_deadline_seconds: 15,
        ..subscription("sub", &topic)
    });
    t.publish(&topic, &["m"]);
    t.pull_now(&sub, 10).await;
    let got = t.pull_until(&sub, 10, secs(60)).await;
    assert_eq!(datas(&got), ["m"]);
    assert_eq!(t.now(), secs(15));
}

#[tokio::test(start_paused = true)]
async fn blocking_pull_is_woken_when_a_backoff_ends() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(Subscription {
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(proto_secs(7)),
            maximum_backoff: Some(proto_secs(60)),
        }),
        ..subscription("sub", &topic)
    });
    t.publish(&topic, &["m"]);
    let leased = t.pull_now(&sub, 10).await;
    t.sleep_until(secs(1)).await;
    t.nack(&sub, &leased);
    let got = t.pull_until(&sub, 10, secs(60)).await;
    assert_eq!(datas(&got), ["m"]);
    assert_eq!(t.now(), secs(8));
}

#[tokio::test(start_paused = true)]
async fn blocking_pull_ends_when_the_broker_shuts_down() {
    let t = VirtualBroker::start();
    let topic = t.create_topic("orders");
    let sub = t.create_subscription(subscription("sub", &topic));
    let ((answer, returned_at), ()) = tokio::join!(
        async {
            let answer = t
                .broker
                .pull(&sub, 10, PullWait::Until(t.instant(secs(30))))
                .await;
            (answer, t.now())
        },
        async {
            sleep(secs(4)).await;
            t.broker.begin_shutdown();
        }
    );
    let error = answer.expect_err("a pull during shutdown fails");
    assert_eq!(error.code, baton_broker::ErrorCode::Unavailable);
    assert_eq!(returned_at, secs(4));
}
