"""One benchmark round with Google's Python client against PUBSUB_EMULATOR_HOST:
publish N messages of S bytes through the batching publisher (all futures
resolved), then receive and ack them all with subscriber.subscribe(). Prints
one JSON object: messages/s for publish and for receive+ack.

With --tracing, both clients run with enable_open_telemetry_tracing=True and a
global SDK TracerProvider whose BatchSpanProcessor feeds an exporter that only
counts spans: the cost of making the spans is measured, the export is free.

    PUBSUB_EMULATOR_HOST=host:port python bench_e2e.py --project P \
        [--messages 20000] [--size 1024] [--timeout 600] [--tracing]
"""

import os
import threading
import time

from common import finish, log, parse_args

args = parse_args(
    default_timeout=600,
    extra=lambda p: (p.add_argument("--messages", type=int, default=20_000),
                     p.add_argument("--size", type=int, default=1024),
                     p.add_argument("--batch-max-messages", type=int, default=1000),
                     p.add_argument("--max-outstanding", type=int, default=5000),
                     p.add_argument("--tracing", action="store_true")),
)

exported_spans = [0]
if args.tracing:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        def export(self, spans):
            exported_spans[0] += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        CountingExporter(), max_queue_size=65_536, max_export_batch_size=512))
    trace.set_tracer_provider(provider)

from google.cloud import pubsub_v1  # noqa: E402
from google.cloud.pubsub_v1.types import (  # noqa: E402
    BatchSettings, FlowControl, PublisherOptions, SubscriberOptions)

P, pre, N = args.project, args.prefix, args.messages
publisher = pubsub_v1.PublisherClient(
    batch_settings=BatchSettings(
        max_messages=args.batch_max_messages, max_bytes=9_000_000, max_latency=0.01),
    publisher_options=PublisherOptions(enable_open_telemetry_tracing=args.tracing))
subscriber = pubsub_v1.SubscriberClient(
    subscriber_options=SubscriberOptions(enable_open_telemetry_tracing=args.tracing))
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 60})

payload = os.urandom(args.size // 2).hex().encode()[: args.size].ljust(args.size, b"x")

# Publish.
t0 = time.perf_counter()
futures = [publisher.publish(topic, payload, i=str(i)) for i in range(N)]
ids = [f.result(timeout=300) for f in futures]
publish_s = time.perf_counter() - t0
assert len(set(ids)) == N, "publish ids are not distinct"
log(f"published {N} in {publish_s:.2f}s")

# Receive + ack.
lock = threading.Lock()
seen = set()
deliveries = 0
all_in = threading.Event()


def callback(message):
    global deliveries
    message.ack()
    with lock:
        deliveries += 1
        seen.add(message.attributes["i"])
        if len(seen) >= N:
            all_in.set()


t1 = time.perf_counter()
streaming = subscriber.subscribe(
    sub, callback=callback,
    flow_control=FlowControl(max_messages=args.max_outstanding, max_bytes=500 * 1024 * 1024))
complete = all_in.wait(timeout=args.timeout - 30)
received_s = time.perf_counter() - t1
streaming.cancel()  # flushes the pending acks
try:
    streaming.result(timeout=60)
except Exception as exc:  # noqa: BLE001
    log(f"streaming future ended with {type(exc).__name__}: {exc}")
settled_s = time.perf_counter() - t1
subscriber.close()
log(f"received {len(seen)} in {received_s:.2f}s, acks flushed at {settled_s:.2f}s")
if args.tracing:
    trace.get_tracer_provider().force_flush()

finish({
    "messages": N,
    "size": args.size,
    "complete": complete,
    "received": len(seen),
    "duplicates": deliveries - len(seen),
    "publish_seconds": round(publish_s, 3),
    "publish_mps": round(N / publish_s, 1),
    "receive_ack_seconds": round(settled_s, 3),
    "receive_ack_mps": round(len(seen) / settled_s, 1),
    "tracing": args.tracing,
    "exported_spans": exported_spans[0],
})
