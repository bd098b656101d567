"""PublisherClient with OpenTelemetry tracing on publishes --count messages to
`{prefix}-topic` (made by the caller) and exports its spans over OTLP/HTTP
(protobuf) to --otlp (Baton's receiver, e.g. http://127.0.0.1:4318), with
service.name "python-publisher". Prints, per message, the id and the trace id
/ span id of its `{topic} create` span.

    PUBSUB_EMULATOR_HOST=host:port python trace_otlp_publish.py --project P --prefix X \
        --otlp http://127.0.0.1:4318 [--count 2]
"""

from common import finish, log, parse_args, wait_until

args = parse_args(default_timeout=60, extra=lambda p: (
    p.add_argument("--count", type=int, default=2),
    p.add_argument("--otlp", required=True, help="OTLP/HTTP base URL"),
))

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

import otel  # noqa: E402

provider = TracerProvider(resource=Resource.create({"service.name": "python-publisher"}))
provider.add_span_processor(BatchSpanProcessor(
    OTLPSpanExporter(endpoint=args.otlp.rstrip("/") + "/v1/traces")))
# A local copy of the spans, to report the create spans' ids.
memory = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)

from google.cloud import pubsub_v1  # noqa: E402
from google.cloud.pubsub_v1.types import PublisherOptions  # noqa: E402

P, pre, N = args.project, args.prefix, args.count
topic_id = f"{pre}-topic"
publisher = pubsub_v1.PublisherClient(
    publisher_options=PublisherOptions(enable_open_telemetry_tracing=True))
topic = publisher.topic_path(P, topic_id)

futures = [publisher.publish(topic, f"from python {i}".encode(), i=str(i)) for i in range(N)]
ids = [f.result(timeout=30) for f in futures]
log(f"published {ids}")

# The create span ends when the Publish RPC has answered; then export all.
wait_until(lambda: len(otel.finished(memory, f"{topic_id} create")) >= N, timeout=10)
exported = provider.force_flush(timeout_millis=20000)
creates = {s.attributes.get("messaging.message.id"): otel.describe(s)
           for s in otel.finished(memory, f"{topic_id} create")}
finish({
    "exported": bool(exported),
    "messages": [{"i": str(i), "message_id": mid, "create": creates.get(mid)}
                 for i, mid in enumerate(ids)],
})
