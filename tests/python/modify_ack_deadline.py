"""subscriber.modify_ack_deadline: 0 hands a message back at once, a short
deadline makes it come back when that runs out, a long one keeps it leased
past the subscription's deadline, a negative one is INVALID_ARGUMENT."""

import time

from common import finish, log, outcome, parse_args

args = parse_args(default_timeout=90)

from google.cloud import pubsub_v1  # noqa: E402

P, pre = args.project, args.prefix
publisher = pubsub_v1.PublisherClient()
subscriber = pubsub_v1.SubscriberClient()
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 10})


def pull(immediately=True, timeout=10):
    return list(subscriber.pull(
        request={"subscription": sub, "max_messages": 10, "return_immediately": immediately},
        timeout=timeout, retry=None).received_messages)


def modack(ack_ids, seconds):
    return outcome(lambda: subscriber.modify_ack_deadline(
        request={"subscription": sub, "ack_ids": ack_ids, "ack_deadline_seconds": seconds}))[0]


def pull_until(pred, timeout):
    """Pull (acking nothing) until a message with pred(data) shows up."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for rm in pull():
            if pred(rm.message.data.decode()):
                return rm, time.monotonic() - t0
            others.append(rm)
        time.sleep(0.05)
    return None, time.monotonic() - t0


others = []
names = ["nack", "short", "long"]
ids = {n: publisher.publish(topic, n.encode()).result(timeout=30) for n in names}
first = {}
t0 = time.monotonic()
while len(first) < 3 and time.monotonic() - t0 < 20:
    for rm in pull():
        first[rm.message.data.decode()] = rm
log(f"pulled {sorted(first)}")

status = {
    "negative": modack([first["nack"].ack_id], -1),
    "garbage_ack_id": modack(["garbage"], 10),
    "long": modack([first["long"].ack_id], 60),
    "short": modack([first["short"].ack_id], 3),
    "nack": modack([first["nack"].ack_id], 0),
}
modacked_at = time.monotonic()

# Deadline 0: back at once.
again_nack, nack_after = pull_until(lambda d: d == "nack", 5)
acked = {"nack": outcome(lambda: subscriber.acknowledge(
    request={"subscription": sub, "ack_ids": [again_nack.ack_id]}))[0] if again_nack else None}
# Deadline 3 s: back after about 3 s.
again_short, short_after = pull_until(lambda d: d == "short", 15)
short_after = time.monotonic() - modacked_at
acked["short"] = outcome(lambda: subscriber.acknowledge(
    request={"subscription": sub, "ack_ids": [again_short.ack_id]}))[0] if again_short else None
# Deadline 60 s: not back after the subscription's 10 s deadline has passed.
while time.monotonic() - modacked_at < 12:
    others.extend(pull(timeout=5))
    time.sleep(0.2)
long_stayed_leased = all(rm.message.data.decode() != "long" for rm in others)

acked["long"] = outcome(lambda: subscriber.acknowledge(
    request={"subscription": sub, "ack_ids": [first["long"].ack_id]}))[0]
time.sleep(0.5)
leftover = sorted(rm.message.data.decode() for rm in pull())

finish({
    "pulled": sorted(first),
    "modack_status": status,
    "nack_redelivered": again_nack is not None
    and again_nack.message.message_id == ids["nack"],
    "nack_fast": nack_after < 3,
    "short_redelivered": again_short is not None
    and again_short.message.message_id == ids["short"],
    "short_after_its_deadline": 2 <= short_after < 8,
    "long_stayed_leased": long_stayed_leased,
    "unexpected_deliveries": sorted(rm.message.data.decode() for rm in others),
    "ack_status": acked,
    "leftover_after_ack": leftover,
    "_nack_after": round(nack_after, 3),
    "_short_after": round(short_after, 3),
})
