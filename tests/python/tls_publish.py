"""Google's Python client over TLS, the way a client reaches a real Pub/Sub
endpoint: not through PUBSUB_EMULATOR_HOST (which forces plain text) but
with `client_options={"api_endpoint": ...}`, anonymous credentials, and the
server's CA trusted through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC C-core's
roots). Creates `{prefix}-topic` and `{prefix}-sub`, publishes one message
and pulls it back; then lists the topics over REST with `requests`, trusting
the CA through REQUESTS_CA_BUNDLE.

    python tls_publish.py --project P --prefix X --endpoint localhost:PORT --ca ca.pem
"""

import os

from common import finish, log, parse_args

args = parse_args(default_timeout=60, extra=lambda p: (
    p.add_argument("--endpoint", required=True, help="host:port of the TLS server"),
    p.add_argument("--ca", required=True, help="PEM file of the CA to trust"),
))
# Set before gRPC or requests read them; no emulator mode.
os.environ.pop("PUBSUB_EMULATOR_HOST", None)
os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = args.ca
os.environ["REQUESTS_CA_BUNDLE"] = args.ca

import requests  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import pubsub_v1  # noqa: E402

P, pre = args.project, args.prefix
options = {"api_endpoint": args.endpoint}
publisher = pubsub_v1.PublisherClient(credentials=AnonymousCredentials(), client_options=options)
subscriber = pubsub_v1.SubscriberClient(credentials=AnonymousCredentials(), client_options=options)
topic = publisher.topic_path(P, f"{pre}-topic")
sub = subscriber.subscription_path(P, f"{pre}-sub")
publisher.create_topic(name=topic)
subscriber.create_subscription(request={"name": sub, "topic": topic})
message_id = publisher.publish(topic, b"over tls").result(timeout=30)
log(f"published {message_id}")
pulled = subscriber.pull(request={"subscription": sub, "max_messages": 10}, timeout=30).received_messages
subscriber.acknowledge(request={"subscription": sub, "ack_ids": [m.ack_id for m in pulled]})

listed = requests.get(f"https://{args.endpoint}/v1/projects/{P}/topics", timeout=30)
finish({
    "message_id": message_id,
    "pulled": [{"message_id": m.message.message_id, "data": m.message.data.decode()}
               for m in pulled],
    "rest_status": listed.status_code,
    "rest_topics": [t["name"] for t in listed.json().get("topics", [])],
})
