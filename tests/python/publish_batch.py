"""Publish many messages through the batching publisher; every future must
resolve to a distinct id, and a subscription created beforehand must hold each
message once, under the id its future returned."""

from common import finish, log, parse_args, wait_until

args = parse_args(
    default_timeout=90,
    extra=lambda p: (p.add_argument("--messages", type=int, default=500),
                     p.add_argument("--batch-max-messages", type=int, default=50)),
)

from google.cloud import pubsub_v1  # noqa: E402
from google.cloud.pubsub_v1.types import BatchSettings  # noqa: E402

P, pre, N = args.project, args.prefix, args.messages
publisher = pubsub_v1.PublisherClient(
    batch_settings=BatchSettings(max_messages=args.batch_max_messages, max_latency=0.05))
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 60})

futures = []
for i in range(N):
    futures.append(publisher.publish(topic, f"message {i}".encode(), index=str(i), parity=str(i % 2)))
ids = []
errors = []
for f in futures:
    try:
        ids.append(f.result(timeout=60))
    except Exception as exc:  # noqa: BLE001 - report, do not stop
        errors.append(f"{type(exc).__name__}: {exc}")
        ids.append(None)
log(f"published {N}, errors {len(errors)}")

# Pull everything back with synchronous pulls and ack it.
received = {}  # index -> (message_id, data, attributes)
duplicates = 0


def pull_round():
    global duplicates
    resp = subscriber.pull(request={"subscription": sub, "max_messages": 100,
                                    "return_immediately": True}, timeout=10)
    ack_ids = []
    for rm in resp.received_messages:
        m = rm.message
        idx = int(m.attributes["index"])
        if idx in received:
            duplicates += 1
        received[idx] = (m.message_id, m.data.decode(), dict(m.attributes))
        ack_ids.append(rm.ack_id)
    if ack_ids:
        subscriber.acknowledge(request={"subscription": sub, "ack_ids": ack_ids})
    return len(received) >= N


wait_until(pull_round, timeout=40, interval=0.01)

mismatched = []
for i in range(N):
    got = received.get(i)
    want = (ids[i], f"message {i}", {"index": str(i), "parity": str(i % 2)})
    if got != want:
        mismatched.append({"index": i, "want": want, "got": got})

finish({
    "published": N,
    "publish_errors": errors[:5],
    "resolved_ids": sum(1 for x in ids if x),
    "distinct_ids": len({x for x in ids if x}),
    "ids_are_decimal": all(x is not None and x.isdigit() for x in ids),
    "pulled_distinct": len(received),
    "mismatched": mismatched[:5],
    "_duplicates": duplicates,
})
