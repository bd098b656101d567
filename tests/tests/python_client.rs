//! Google's Python client (`google-cloud-pubsub`, pinned in
//! `python/requirements.txt`) against Baton and against the gcloud emulator:
//! each scenario runs against both at once and must observe the same results.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baton_testkit::python::{Pair, assert_same, at, compare};
use serde_json::{Value, json};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// Runs `check` on the emulator's result (which validates the scenario
/// itself), then compares both servers, then runs `check` on Baton's.
fn check_both(pair: &Pair, check: impl Fn(&str, &Value)) {
    check("emulator", &pair.emulator.result);
    assert_same(pair);
    check("Baton", &pair.baton.result);
}

fn expect(who: &str, result: &Value, pointer: &str, want: Value) {
    let got = at(result, pointer);
    assert_eq!(got, &want, "{who}: {pointer} in {result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_topics_and_subscriptions() {
    let pair = compare(TMP, "admin.py", Duration::from_secs(90), &[]).await;
    check_both(&pair, |who, r| {
        for (step, status) in [
            ("create_topic", "ok"),
            ("create_topic_again", "AlreadyExists"),
            ("get_topic_missing", "NotFound"),
            ("create_topic_invalid_goog-x", "InvalidArgument"),
            ("create_topic_invalid_1abc", "InvalidArgument"),
            ("update_topic_retention", "ok"),
            ("update_topic_empty_mask", "InvalidArgument"),
            ("update_topic_missing", "NotFound"),
            ("create_subscription_again", "AlreadyExists"),
            ("create_subscription_missing_topic", "NotFound"),
            ("get_subscription_missing", "NotFound"),
            ("update_subscription", "ok"),
            ("delete_subscription_again", "NotFound"),
            ("delete_topic", "ok"),
            ("delete_topic_again", "NotFound"),
            ("publish_deleted_topic", "NotFound"),
            ("recreate_topic", "ok"),
        ] {
            expect(who, r, &format!("/steps/{step}/status"), json!(status));
        }
        expect(
            who,
            r,
            "/steps/subscription_of_deleted_topic/value/topic",
            json!("_deleted-topic_"),
        );
        expect(
            who,
            r,
            "/steps/get_subscription_after_update/value/ack_deadline_seconds",
            json!(45),
        );
        expect(
            who,
            r,
            "/steps/create_subscription_zero_deadline/value/ack_deadline_seconds",
            json!(10),
        );
        expect(
            who,
            r,
            "/steps/list_topics_paged/value/pages_within_size",
            json!(true),
        );
        assert_eq!(
            at(r, "/steps/list_topics_paged/value/names")
                .as_array()
                .map(Vec::len),
            Some(5),
            "{who}: {r}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_batching_resolves_distinct_ids() {
    let pair = compare(
        TMP,
        "publish_batch.py",
        Duration::from_secs(120),
        &["--messages", "500", "--batch-max-messages", "50"],
    )
    .await;
    check_both(&pair, |who, r| {
        expect(who, r, "/resolved_ids", json!(500));
        expect(who, r, "/distinct_ids", json!(500));
        expect(who, r, "/ids_are_decimal", json!(true));
        expect(who, r, "/pulled_distinct", json!(500));
        expect(who, r, "/mismatched", json!([]));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_pull_receives_every_message_as_published() {
    let pair = compare(TMP, "streaming_pull.py", Duration::from_secs(120), &[]).await;
    check_both(&pair, |who, r| {
        expect(who, r, "/received_all", json!(true));
        expect(who, r, "/received_distinct", at(r, "/published").clone());
        expect(who, r, "/mismatched", json!([]));
        expect(who, r, "/unknown_ids", json!(0));
        expect(who, r, "/publish_time_sane", json!(true));
        expect(
            who,
            r,
            "/ordering_keys_in_order",
            json!({"key-0": true, "key-1": true, "key-2": true}),
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_leads_to_redelivery_and_dead_letter() {
    let pair = compare(TMP, "nack_redelivery.py", Duration::from_secs(120), &[]).await;
    check_both(&pair, |who, r| {
        expect(who, r, "/complete", json!(true));
        expect(who, r, "/plain/redelivered_same_data", json!(true));
        expect(who, r, "/plain/delivery_attempts", json!(["[None, None]"]));
        expect(who, r, "/dlq/redelivered_same_data", json!(true));
        expect(who, r, "/dlq/delivery_attempts", json!(["[1, 2]"]));
        expect(who, r, "/always_nack_attempts", json!(["[1, 2, 3, 4, 5]"]));
        expect(
            who,
            r,
            "/dead_lettered",
            json!(["m0", "m1", "m2", "m3", "m4"]),
        );
        expect(who, r, "/dead_letter_delivery_count", json!(["5"]));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_pull_and_acknowledge() {
    let pair = compare(TMP, "sync_pull.py", Duration::from_secs(120), &[]).await;
    check_both(&pair, |who, r| {
        expect(who, r, "/received_distinct", json!(20));
        expect(who, r, "/max_batch", json!(10));
        expect(who, r, "/data_ok", json!(true));
        expect(who, r, "/ack_status", json!(["ok", "ok"]));
        expect(who, r, "/empty_while_leased", json!(true));
        expect(who, r, "/redelivered_is_unacked_one", json!(true));
        expect(who, r, "/redelivered_after_deadline", json!(true));
        expect(who, r, "/waiting_pull_data", json!(["late"]));
        expect(
            who,
            r,
            "/errors",
            json!({
                "ack_garbage": "InvalidArgument",
                "ack_missing_subscription": "NotFound",
                "pull_missing_subscription": "NotFound",
                "pull_zero_max_messages": "InvalidArgument",
            }),
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_ack_deadline_nacks_extends_and_shortens() {
    let pair = compare(TMP, "modify_ack_deadline.py", Duration::from_secs(120), &[]).await;
    check_both(&pair, |who, r| {
        expect(
            who,
            r,
            "/modack_status",
            json!({
                "negative": "InvalidArgument",
                "garbage_ack_id": "InvalidArgument",
                "long": "ok",
                "short": "ok",
                "nack": "ok",
            }),
        );
        expect(who, r, "/nack_redelivered", json!(true));
        expect(who, r, "/nack_fast", json!(true));
        expect(who, r, "/short_redelivered", json!(true));
        expect(who, r, "/short_after_its_deadline", json!(true));
        expect(who, r, "/long_stayed_leased", json!(true));
        expect(who, r, "/unexpected_deliveries", json!([]));
        expect(who, r, "/leftover_after_ack", json!([]));
    });
}
