"""Synchronous subscriber.pull + acknowledge: batches bounded by max_messages,
acked messages stay acked, the one left unacked comes back once the 1 s
deadline it was given with ModifyAckDeadline is over (not before), a waiting
pull returns a message published while it waits, and the usual errors."""

import threading
import time

from common import finish, log, outcome, parse_args

args = parse_args(default_timeout=90)

from google.cloud import pubsub_v1  # noqa: E402

P, pre = args.project, args.prefix
N = 20
publisher = pubsub_v1.PublisherClient()
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 10})


def pull(max_messages, immediately=True, timeout=10):
    return subscriber.pull(
        request={"subscription": sub, "max_messages": max_messages,
                 "return_immediately": immediately},
        timeout=timeout, retry=None).received_messages


ids = [publisher.publish(topic, f"sync {i}".encode(), i=str(i)).result(timeout=30)
       for i in range(N)]
log(f"published {N}")

received = {}  # message_id -> ReceivedMessage
batch_sizes = []
deadline = time.monotonic() + 20
while len(received) < N and time.monotonic() < deadline:
    batch = pull(10)
    batch_sizes.append(len(batch))
    for rm in batch:
        received.setdefault(rm.message.message_id, rm)
    if not batch:
        time.sleep(0.05)
data_ok = all(received[m].message.data == f"sync {i}".encode()
              and dict(received[m].message.attributes) == {"i": str(i)}
              for i, m in enumerate(ids) if m in received)

# Ack all but the last message, in two requests.
keep = ids[-1]
to_ack = [received[m].ack_id for m in ids[:-1] if m in received]
ack_status = [outcome(lambda part=part: subscriber.acknowledge(
    request={"subscription": sub, "ack_ids": part}))[0]
    for part in (to_ack[:10], to_ack[10:])]
# The kept message's lease ends 1 s from now (the API's shortest deadline),
# so its redelivery is seen without waiting out the subscription's 10 s.
subscriber.modify_ack_deadline(
    request={"subscription": sub, "ack_ids": [received[keep].ack_id], "ack_deadline_seconds": 1})
acked_at = time.monotonic()

errors = {
    "ack_garbage": outcome(lambda: subscriber.acknowledge(
        request={"subscription": sub, "ack_ids": ["garbage"]}))[0],
    "pull_zero_max_messages": outcome(lambda: pull(0))[0],
    "pull_missing_subscription": outcome(lambda: subscriber.pull(
        request={"subscription": subscriber.subscription_path(P, f"{pre}-missing"),
                 "max_messages": 1, "return_immediately": True}, timeout=10, retry=None))[0],
    "ack_missing_subscription": outcome(lambda: subscriber.acknowledge(
        request={"subscription": subscriber.subscription_path(P, f"{pre}-missing"),
                 "ack_ids": [received[keep].ack_id]}))[0],
}

# Nothing is deliverable now: everything is acked or leased.
empty_while_leased = len(pull(10)) == 0

# The unacked message comes back after its 1 s deadline, the acked ones never.
redelivered = []
while time.monotonic() - acked_at < 25 and not redelivered:
    redelivered = list(pull(10, immediately=False, timeout=5))
    if not redelivered:
        log("waiting for the expired lease")
redelivery_after = time.monotonic() - acked_at
redelivered_ids = sorted(rm.message.message_id for rm in redelivered)
for rm in redelivered:
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [rm.ack_id]})

# A pull that waits gets a message published while it waits.
result = {}


def waiting_pull():
    t0 = time.monotonic()
    got = pull(10, immediately=False, timeout=20)
    result["count"] = len(got)
    result["latency"] = time.monotonic() - t0
    result["data"] = [rm.message.data.decode() for rm in got]
    if got:
        subscriber.acknowledge(request={"subscription": sub, "ack_ids": [rm.ack_id for rm in got]})


th = threading.Thread(target=waiting_pull)
th.start()
time.sleep(0.5)
publisher.publish(topic, b"late").result(timeout=10)
th.join(timeout=30)

finish({
    "received_distinct": len(received),
    "max_batch": max(batch_sizes, default=0),
    "data_ok": data_ok,
    "ack_status": ack_status,
    "errors": errors,
    "empty_while_leased": empty_while_leased,
    "redelivered_is_unacked_one": redelivered_ids == [keep],
    "redelivered_after_deadline": redelivery_after >= 0.8,
    "waiting_pull_data": result.get("data"),
    "_redelivery_after": round(redelivery_after, 3),
    "_waiting_pull_latency": round(result.get("latency", -1), 3),
    "_batch_sizes": batch_sizes,
})
