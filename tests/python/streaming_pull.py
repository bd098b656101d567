"""subscriber.subscribe() (StreamingPull) with a callback that acks: every
message comes back exactly as published (data bytes, attributes, ordering key,
message id), and messages of one ordering key arrive in publish order."""

import threading
import time
from datetime import datetime, timedelta, timezone

from common import b64, finish, log, parse_args, wait_until

args = parse_args(default_timeout=90)

from google.cloud import pubsub_v1  # noqa: E402
from google.cloud.pubsub_v1.types import PublisherOptions  # noqa: E402

P, pre = args.project, args.prefix
publisher = pubsub_v1.PublisherClient(
    publisher_options=PublisherOptions(enable_message_ordering=True))
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={
    "name": sub, "topic": topic, "enable_message_ordering": True, "ack_deadline_seconds": 30})

# What to publish: (data, attributes, ordering_key).
messages = []
for k in range(3):
    for i in range(30):
        messages.append((f"key {k} seq {i}".encode(), {"key": str(k), "seq": str(i)}, f"key-{k}"))
messages.append((bytes(range(256)), {"kind": "all-bytes"}, ""))
messages.append((b"", {"kind": "empty-data"}, ""))
messages.append((b"\x00" * 10, {}, ""))
messages.append(("zürich ☃".encode(), {"ünïcode-kéy": "välue ☃", "kind": "unicode"}, ""))
messages.append((b"x" * 200_000, {"kind": "large"}, ""))
messages.append((b"attrs", {f"a{i}": "v" * i for i in range(50)}, ""))
for i in range(20):
    messages.append((f"plain {i}".encode(), {"kind": "plain", "i": str(i)}, ""))

before = datetime.now(timezone.utc) - timedelta(seconds=5)
futures = [publisher.publish(topic, data, ordering_key=key, **attrs)
           for data, attrs, key in messages]
ids = [f.result(timeout=30) for f in futures]
after = datetime.now(timezone.utc) + timedelta(seconds=5)
by_id = {mid: i for i, mid in enumerate(ids)}
log(f"published {len(ids)}")

lock = threading.Lock()
deliveries = []  # (index or None, data, attributes, ordering_key, publish_time, delivery_attempt)


def callback(message):
    with lock:
        deliveries.append((by_id.get(message.message_id), message.data, dict(message.attributes),
                           message.ordering_key, message.publish_time, message.delivery_attempt))
    message.ack()


streaming = subscriber.subscribe(sub, callback=callback)
started = time.monotonic()


def all_seen():
    with lock:
        return len({d[0] for d in deliveries if d[0] is not None}) >= len(messages)


complete = wait_until(all_seen, timeout=45)
elapsed = time.monotonic() - started
time.sleep(1.0)  # let stray redeliveries show up
streaming.cancel()
try:
    streaming.result(timeout=10)
except Exception as exc:  # noqa: BLE001
    log(f"streaming future ended with {type(exc).__name__}: {exc}")
subscriber.close()

with lock:
    seen = {}
    mismatched, unknown_ids, bad_publish_time, attempts = [], 0, 0, set()
    order = {}  # ordering key -> seq numbers in delivery order (first deliveries)
    for idx, data, attrs, key, ptime, attempt in deliveries:
        attempts.add(attempt)
        if idx is None:
            unknown_ids += 1
            continue
        if not (before <= ptime <= after):
            bad_publish_time += 1
        if idx in seen:
            continue
        seen[idx] = True
        want = messages[idx]
        if (data, attrs, key) != want:
            mismatched.append({"index": idx,
                               "want": [b64(want[0][:64]), want[1] if len(want[1]) < 5 else "...", want[2]],
                               "got": [b64(data[:64]), attrs if len(attrs) < 5 else "...", key]})
        if key:
            order.setdefault(key, []).append(int(attrs["seq"]))
    ordering_ok = {k: v == sorted(v) for k, v in sorted(order.items())}

finish({
    "published": len(messages),
    "distinct_ids": len(set(ids)),
    "received_all": complete,
    "received_distinct": len(seen),
    "unknown_ids": unknown_ids,
    "mismatched": mismatched[:5],
    "publish_time_sane": bad_publish_time == 0,
    "ordering_keys_in_order": ordering_ok,
    "delivery_attempts": sorted(str(a) for a in attempts),
    "_duplicates": len(deliveries) - len(seen) - unknown_ids,
    "_seconds_to_receive_all": round(elapsed, 3),
})
