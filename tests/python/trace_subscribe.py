"""SubscriberClient with OpenTelemetry tracing on: a streaming pull on
`{prefix}-{--subscription}` (made by the caller) with a callback that acks,
until --expect distinct messages came. Prints each message (id, data,
attributes) with its `{subscription} subscribe` span: trace id, span id and
parent span id (null when the span started a new trace).

    PUBSUB_EMULATOR_HOST=host:port python trace_subscribe.py --project P --prefix X \
        [--subscription sub] [--expect 3] [--receive-timeout 30]
"""

import threading

from common import finish, log, parse_args, wait_until

args = parse_args(default_timeout=60,
                  extra=lambda p: (p.add_argument("--subscription", default="sub"),
                                   p.add_argument("--expect", type=int, default=3),
                                   p.add_argument("--receive-timeout", type=float, default=30)))

import otel  # noqa: E402

exporter = otel.install()

from google.cloud import pubsub_v1  # noqa: E402
from google.cloud.pubsub_v1.types import SubscriberOptions  # noqa: E402

P, pre = args.project, args.prefix
sub_id = f"{pre}-{args.subscription}"
subscriber = pubsub_v1.SubscriberClient(
    subscriber_options=SubscriberOptions(enable_open_telemetry_tracing=True))
sub = subscriber.subscription_path(P, sub_id)

lock = threading.Lock()
received = {}  # message id -> message details (first delivery)
deliveries = 0


def callback(message):
    global deliveries
    with lock:
        deliveries += 1
        received.setdefault(message.message_id, {
            "message_id": message.message_id,
            "data": message.data.decode("utf-8", "replace"),
            "attributes": dict(message.attributes),
        })
    message.ack()


streaming = subscriber.subscribe(sub, callback=callback)


def count():
    with lock:
        return len(received)


complete = wait_until(lambda: count() >= args.expect, timeout=args.receive_timeout)
subscribe_name = f"{sub_id} subscribe"


def subscribe_spans():
    return {s.attributes.get("messaging.message.id"): s
            for s in otel.finished(exporter, subscribe_name)}


# A subscribe span ends once the ack RPC has answered.
spans_complete = wait_until(lambda: set(received) <= set(subscribe_spans()), timeout=15)
streaming.cancel()
try:
    streaming.result(timeout=10)
except Exception as exc:  # noqa: BLE001
    log(f"streaming future ended with {type(exc).__name__}: {exc}")
subscriber.close()

spans = subscribe_spans()
with lock:
    messages = []
    for mid, details in sorted(received.items()):
        span = spans.get(mid)
        details["subscribe"] = otel.describe(span) if span is not None else None
        messages.append(details)

finish({
    "complete": complete,
    "spans_complete": spans_complete,
    "received": len(messages),
    "messages": messages,
    "_deliveries": deliveries,
    "_spans": sorted({s.name for s in exporter.get_finished_spans()}),
})
