"""Receives one message on the existing subscription <prefix>-sub with
subscribe() (StreamingPull) and acks it: what a message published from the
console's topic page looks like to Google's Python client."""

import threading

from common import finish, log, parse_args

args = parse_args(default_timeout=90)

from google.cloud import pubsub_v1  # noqa: E402

subscriber = pubsub_v1.SubscriberClient()
subscription = subscriber.subscription_path(args.project, f"{args.prefix}-sub")
received = []
got = threading.Event()


def callback(message):
    received.append({
        "data": message.data.decode(),
        "attributes": dict(message.attributes),
        "ordering_key": message.ordering_key,
        "message_id": message.message_id,
    })
    message.ack()
    got.set()


future = subscriber.subscribe(subscription, callback=callback)
log(f"subscribed to {subscription}")
complete = got.wait(timeout=args.timeout - 10)
future.cancel()
try:
    future.result(timeout=10)
except Exception as exc:  # noqa: BLE001
    log(f"streaming future ended with {type(exc).__name__}: {exc}")
subscriber.close()
finish({"complete": complete, "received": received})
