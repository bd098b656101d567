"""Admin calls through PublisherClient / SubscriberClient: create, get, list,
update and delete topics and subscriptions, and the errors they give."""

from common import finish, log, outcome, parse_args

args = parse_args(default_timeout=60)

from google.cloud import pubsub_v1  # noqa: E402
from google.protobuf import field_mask_pb2  # noqa: E402

P = args.project
pre = args.prefix
publisher = pubsub_v1.PublisherClient()
subscriber = pubsub_v1.SubscriberClient()
T = lambda i: publisher.topic_path(P, f"{pre}-topic-{i}")  # noqa: E731
S = lambda i: subscriber.subscription_path(P, f"{pre}-sub-{i}")  # noqa: E731

steps = {}


def step(name, fn, shape=lambda v: None):
    status, value = outcome(fn)
    steps[name] = {"status": status}
    if status == "ok":
        shaped = shape(value)
        if shaped is not None:
            steps[name]["value"] = shaped
    log(f"{name}: {steps[name]}")
    return value


def topic_shape(t):
    return {
        "name": t.name,
        "labels": dict(t.labels),
        "message_retention_duration": t._pb.message_retention_duration.seconds,
    }


def sub_shape(s):
    return {
        "name": s.name,
        "topic": s.topic,
        "ack_deadline_seconds": s.ack_deadline_seconds,
        "labels": dict(s.labels),
        "enable_message_ordering": s.enable_message_ordering,
        "retain_acked_messages": s.retain_acked_messages,
        "message_retention_duration": s._pb.message_retention_duration.seconds,
        "filter": s.filter,
        "detached": s.detached,
    }


def ours(names):
    return sorted(n for n in names if f"/{pre}-" in n)


def pages_shape(pager):
    pages = []
    for page in pager.pages:
        items = page.topics if hasattr(page, "topics") else page.subscriptions
        pages.append([getattr(x, "name", x) for x in items])
    names = [n for page in pages for n in page]
    shaped = {"names": ours(names)}
    if pager._request.page_size:
        # Every page honours page_size (the last page may be shorter).
        shaped["pages_within_size"] = all(len(p) <= pager._request.page_size for p in pages)
    return shaped


# Topics.
step("create_topic", lambda: publisher.create_topic(name=T(1)), topic_shape)
step("create_topic_again", lambda: publisher.create_topic(name=T(1)))
step("get_topic", lambda: publisher.get_topic(topic=T(1)), topic_shape)
step("get_topic_missing", lambda: publisher.get_topic(topic=T("missing")))
for bad in ("goog-x", "1abc", "ab"):
    step(f"create_topic_invalid_{bad}",
         lambda bad=bad: publisher.create_topic(name=publisher.topic_path(P, bad)))
step("get_topic_invalid", lambda: publisher.get_topic(topic=publisher.topic_path(P, "1abc")))
step("create_topic_labels",
     lambda: publisher.create_topic(request={"name": T(2), "labels": {"team": "a", "tier": "1"}}),
     topic_shape)
for i in range(3, 6):
    step(f"create_topic_{i}", lambda i=i: publisher.create_topic(name=T(i)))
step("list_topics_paged",
     lambda: publisher.list_topics(request={"project": f"projects/{P}", "page_size": 2}),
     pages_shape)
# (The emulator rejects "labels" in update masks, unlike the real service.)
step("update_topic_retention",
     lambda: publisher.update_topic(request={
         "topic": {"name": T(1), "message_retention_duration": {"seconds": 3600}},
         "update_mask": field_mask_pb2.FieldMask(paths=["message_retention_duration"]),
     }),
     topic_shape)
step("update_topic_empty_mask",
     lambda: publisher.update_topic(request={
         "topic": {"name": T(1), "message_retention_duration": {"seconds": 7200}},
         "update_mask": field_mask_pb2.FieldMask(paths=[]),
     }))
step("get_topic_after_update", lambda: publisher.get_topic(topic=T(1)), topic_shape)
step("update_topic_missing",
     lambda: publisher.update_topic(request={
         "topic": {"name": T("missing"), "message_retention_duration": {"seconds": 3600}},
         "update_mask": field_mask_pb2.FieldMask(paths=["message_retention_duration"]),
     }))

# Subscriptions.
step("create_subscription",
     lambda: subscriber.create_subscription(request={
         "name": S(1), "topic": T(1), "ack_deadline_seconds": 30, "labels": {"k": "v"}}),
     sub_shape)
step("create_subscription_again",
     lambda: subscriber.create_subscription(request={"name": S(1), "topic": T(1)}))
step("create_subscription_missing_topic",
     lambda: subscriber.create_subscription(request={"name": S("orphan"), "topic": T("missing")}))
step("get_subscription", lambda: subscriber.get_subscription(subscription=S(1)), sub_shape)
step("get_subscription_missing", lambda: subscriber.get_subscription(subscription=S("missing")))
step("create_subscription_invalid_name",
     lambda: subscriber.create_subscription(request={
         "name": subscriber.subscription_path(P, "goog-sub"), "topic": T(1)}))
step("create_subscription_zero_deadline",
     lambda: subscriber.create_subscription(request={
         "name": S(5), "topic": T(2), "ack_deadline_seconds": 0}),
     sub_shape)
step("create_subscription_ordered",
     lambda: subscriber.create_subscription(request={
         "name": S(2), "topic": T(1), "enable_message_ordering": True}),
     sub_shape)
step("create_subscription_filtered",
     lambda: subscriber.create_subscription(request={
         "name": S(3), "topic": T(2), "filter": 'attributes.k = "v"'}),
     sub_shape)
step("create_subscription_default_deadline",
     lambda: subscriber.create_subscription(request={"name": S(4), "topic": T(2)}),
     sub_shape)
step("list_subscriptions_paged",
     lambda: subscriber.list_subscriptions(request={"project": f"projects/{P}", "page_size": 2}),
     pages_shape)
step("list_topic_subscriptions",
     lambda: publisher.list_topic_subscriptions(request={"topic": T(1)}),
     lambda pager: ours(list(pager)))
step("list_topic_subscriptions_missing",
     lambda: list(publisher.list_topic_subscriptions(request={"topic": T("missing")})),
     ours)
step("update_subscription",
     lambda: subscriber.update_subscription(request={
         "subscription": {"name": S(1), "ack_deadline_seconds": 45,
                          "retain_acked_messages": True,
                          "message_retention_duration": {"seconds": 7200}},
         "update_mask": field_mask_pb2.FieldMask(
             paths=["ack_deadline_seconds", "retain_acked_messages", "message_retention_duration"]),
     }),
     sub_shape)
step("get_subscription_after_update",
     lambda: subscriber.get_subscription(subscription=S(1)), sub_shape)
step("update_subscription_missing",
     lambda: subscriber.update_subscription(request={
         "subscription": {"name": S("missing"), "ack_deadline_seconds": 45},
         "update_mask": field_mask_pb2.FieldMask(paths=["ack_deadline_seconds"]),
     }))

# Deletes.
step("delete_subscription", lambda: subscriber.delete_subscription(subscription=S(2)))
step("delete_subscription_again", lambda: subscriber.delete_subscription(subscription=S(2)))
step("get_deleted_subscription", lambda: subscriber.get_subscription(subscription=S(2)))
step("delete_topic", lambda: publisher.delete_topic(topic=T(1)))
step("delete_topic_again", lambda: publisher.delete_topic(topic=T(1)))
step("get_deleted_topic", lambda: publisher.get_topic(topic=T(1)))
step("publish_deleted_topic",
     lambda: publisher.api.publish(topic=T(1), messages=[{"data": b"x"}]))
step("subscription_of_deleted_topic",
     lambda: subscriber.get_subscription(subscription=S(1)), sub_shape)
step("list_topic_subscriptions_deleted",
     lambda: list(publisher.list_topic_subscriptions(request={"topic": T(1)})),
     ours)
step("recreate_topic", lambda: publisher.create_topic(name=T(1)), topic_shape)
step("list_topic_subscriptions_recreated",
     lambda: publisher.list_topic_subscriptions(request={"topic": T(1)}),
     lambda pager: ours(list(pager)))
step("list_topics_after_deletes",
     lambda: publisher.list_topics(request={"project": f"projects/{P}"}),
     pages_shape)
step("list_subscriptions_after_deletes",
     lambda: subscriber.list_subscriptions(request={"project": f"projects/{P}"}),
     pages_shape)

finish({"prefix": pre, "steps": steps})
