"""A nack through subscribe() makes the message come back (same id and data);
the callback nacks each message's first delivery and acks the second. With a
dead-letter policy, delivery_attempt counts 1, 2; without one it is absent. A
message nacked max_delivery_attempts times goes to the dead-letter topic.
(No filter here: emulator 0.8.20 ignores subscription filters.)"""

import threading
import time

from common import finish, log, parse_args, wait_until

args = parse_args(default_timeout=120)

from google.cloud import pubsub_v1  # noqa: E402

P, pre = args.project, args.prefix
N = 5
publisher = pubsub_v1.PublisherClient()
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(P, f"{pre}-topic")
dead_topic = publisher.topic_path(P, f"{pre}-dead")
plain = subscriber.subscription_path(P, f"{pre}-plain")
with_dlq = subscriber.subscription_path(P, f"{pre}-dlq")
always_nack = subscriber.subscription_path(P, f"{pre}-always-nack")
dead_sub = subscriber.subscription_path(P, f"{pre}-dead-sub")
publisher.create_topic(name=topic)
publisher.create_topic(name=dead_topic)
subscriber.create_subscription(request={"name": dead_sub, "topic": dead_topic})
subscriber.create_subscription(request={"name": plain, "topic": topic})
dlq_policy = {"dead_letter_topic": dead_topic, "max_delivery_attempts": 5}
subscriber.create_subscription(request={"name": with_dlq, "topic": topic,
                                        "dead_letter_policy": dlq_policy})
subscriber.create_subscription(request={"name": always_nack, "topic": topic,
                                        "dead_letter_policy": dlq_policy})

ids = [publisher.publish(topic, f"m{i}".encode(), i=str(i)).result(timeout=30)
       for i in range(N)]
log(f"published {ids}")

lock = threading.Lock()
seen = {}  # subscription -> message_id -> list of (data, delivery_attempt)


def make_callback(name, nack_times):
    def callback(message):
        with lock:
            got = seen.setdefault(name, {}).setdefault(message.message_id, [])
            got.append((message.data.decode(), message.delivery_attempt))
            count = len(got)
        if count <= nack_times:
            message.nack()
        else:
            message.ack()
    return callback


def make_dead_callback():
    def callback(message):
        with lock:
            seen.setdefault("dead", {}).setdefault(message.message_id, []).append(
                (message.data.decode(), dict(message.attributes)))
        message.ack()
    return callback


futures = [
    subscriber.subscribe(plain, callback=make_callback("plain", 1)),
    subscriber.subscribe(with_dlq, callback=make_callback("dlq", 1)),
    subscriber.subscribe(always_nack, callback=make_callback("always_nack", 1000)),
    subscriber.subscribe(dead_sub, callback=make_dead_callback()),
]
started = time.monotonic()


def done():
    with lock:
        return (all(len(seen.get(s, {}).get(m, [])) >= 2 for s in ("plain", "dlq") for m in ids)
                and len(seen.get("dead", {})) >= N)


complete = wait_until(done, timeout=60)
elapsed = time.monotonic() - started
time.sleep(1.0)  # extra deliveries would show up here
for f in futures:
    f.cancel()
for f in futures:
    try:
        f.result(timeout=10)
    except Exception as exc:  # noqa: BLE001
        log(f"streaming future ended with {type(exc).__name__}: {exc}")
subscriber.close()

with lock:
    def summary(name):
        per = seen.get(name, {})
        return {
            "messages": len(per),
            "redelivered_same_data": all(
                len(per.get(m, [])) >= 2 and len({d for d, _ in per[m]}) == 1 for m in ids),
            "delivery_counts": sorted(len(v) for v in per.values()),
            "delivery_attempts": sorted({str([a for _, a in v]) for v in per.values()}),
        }

    dead = seen.get("dead", {})
    dead_attrs = [a for v in dead.values() for _, a in v]
    result = {
        "complete": complete,
        "plain": summary("plain"),
        "dlq": summary("dlq"),
        "always_nack_attempts": sorted({str([a for _, a in v])
                                        for v in seen.get("always_nack", {}).values()}),
        "dead_lettered": sorted(d for v in dead.values() for d, _ in v),
        "dead_letter_attributes": sorted({
            k for a in dead_attrs for k in a if k.startswith("CloudPubSubDeadLetter")}),
        "dead_letter_source_subscription": sorted({
            a.get("CloudPubSubDeadLetterSourceSubscription", "") for a in dead_attrs}),
        "dead_letter_delivery_count": sorted({
            a.get("CloudPubSubDeadLetterSourceDeliveryCount", "") for a in dead_attrs}),
        "_seconds": round(elapsed, 3),
        "_raw": {k: {m: [a for _, a in v] for m, v in per.items()}
                 for k, per in seen.items() if k != "dead"},
    }
finish(result)
