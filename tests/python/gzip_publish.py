"""Google's Python client over gzip-compressed gRPC channels: creates
`{prefix}-topic` and `{prefix}-sub`, publishes one message and pulls it back,
every call on a channel made with `compression=grpc.Compression.Gzip` (the
client has no compression option of its own, so the channel is handed to
its transport). Then, with --otlp, exports one span with the OpenTelemetry
OTLP/gRPC exporter and `compression=Compression.Gzip`, and reports its
trace id.

    PUBSUB_EMULATOR_HOST=host:port python gzip_publish.py --project P --prefix X \
        [--otlp http://127.0.0.1:4317]
"""

import os

from common import finish, log, parse_args

args = parse_args(default_timeout=60, extra=lambda p: (
    p.add_argument("--otlp", default=None, help="OTLP/gRPC endpoint, http://host:port"),
))

import grpc  # noqa: E402
from google.cloud import pubsub_v1  # noqa: E402
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport  # noqa: E402
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport  # noqa: E402

host = os.environ["PUBSUB_EMULATOR_HOST"]
P, pre = args.project, args.prefix


def gzip_channel():
    return grpc.insecure_channel(host, compression=grpc.Compression.Gzip)


publisher = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=gzip_channel()))
subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=gzip_channel()))
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={"name": sub, "topic": topic})
# Compressible, so gzip has something to do.
data = b"gzip " * 2000
message_id = publisher.publish(topic, data, via="gzip").result(timeout=30)
log(f"published {message_id}")
pulled = subscriber.pull(request={"subscription": sub, "max_messages": 10}, timeout=30).received_messages
subscriber.acknowledge(request={"subscription": sub, "ack_ids": [m.ack_id for m in pulled]})
result = {
    "message_id": message_id,
    "pulled": [{"message_id": m.message.message_id, "data_ok": m.message.data == data,
                "attributes": dict(m.message.attributes)} for m in pulled],
}

if args.otlp:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: E402
        Compression, OTLPSpanExporter)
    from opentelemetry.sdk.resources import Resource  # noqa: E402
    from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402

    provider = TracerProvider(resource=Resource.create({"service.name": "python-gzip"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=args.otlp, insecure=True, compression=Compression.Gzip)))
    with provider.get_tracer("gzip").start_as_current_span("gzip span") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    result["otlp"] = {"trace_id": trace_id, "flushed": provider.force_flush(timeout_millis=20000)}

finish(result)
