"""PublisherClient with OpenTelemetry tracing on publishes --count messages to
`{prefix}-topic` (made by the caller). Prints, per message, the id and the
trace id / span id of its `{topic} create` span: the context the client put in
`googclient_traceparent`, which a subscriber in another language must join.

    PUBSUB_EMULATOR_HOST=host:port python trace_publish.py --project P --prefix X [--count 3]
"""

from common import finish, log, parse_args, wait_until

args = parse_args(default_timeout=60,
                  extra=lambda p: p.add_argument("--count", type=int, default=3))

import otel  # noqa: E402

exporter = otel.install()

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

create_name = f"{topic_id} create"
# The create span ends when the Publish RPC has answered; wait for all of them.
wait_until(lambda: len(otel.finished(exporter, create_name)) >= N, timeout=10)
creates = {s.attributes.get("messaging.message.id"): otel.describe(s)
           for s in otel.finished(exporter, create_name)}
publish_rpcs = [otel.describe(s) for s in otel.finished(exporter, f"{topic_id} publish")]

messages = []
for i, mid in enumerate(ids):
    create = creates.get(mid)
    messages.append({
        "i": str(i),
        "message_id": mid,
        "create": create,
    })

finish({
    "published": len(ids),
    "create_spans": len(creates),
    "publish_rpc_spans": len(publish_rpcs),
    "messages": messages,
    "_spans": sorted(s.name for s in exporter.get_finished_spans()),
})
