"""Google's Python client against `baton serve --auth` over TLS, with one of
the credential flows Google's libraries use:

- ``self_signed``: a service-account key file Baton made, used as is; the
  client library sends self-signed JWTs (no token endpoint involved);
- ``token``: the same key file through google-auth's OAuth flow: a JWT
  assertion POSTed to the key file's ``token_uri`` (Baton), then the access
  token it answers;
- ``metadata``: Application Default Credentials on "GKE": no key file,
  tokens from the metadata server named by ``GCE_METADATA_HOST``;
- ``none``: no credential at all.

Run as

    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=ca.pem REQUESTS_CA_BUNDLE=ca.pem \\
    python auth_flows.py --endpoint localhost:PORT --flow FLOW \\
        [--key-file key.json] --topic T --subscription S --denied-topic D

without ``PUBSUB_EMULATOR_HOST`` (which makes the client send no
credentials). Publishes one message to T (``{prefix} via {flow}``), one to
D, then pulls S and acks what came. Prints one JSON object: the credentials'
class, each step's outcome (``ok`` or the exception class,
``Unauthenticated`` / ``PermissionDenied``), the message published and the
messages received.
"""

import argparse
import faulthandler
import json
import os
import sys


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def outcome(fn):
    from google.api_core import exceptions

    try:
        return "ok", fn()
    except exceptions.GoogleAPICallError as exc:
        log(f"{type(exc).__name__}: {exc}")
        return type(exc).__name__, None


def credentials_for(args):
    """The credentials of the flow, and what they are (for the log)."""
    from google.auth.credentials import AnonymousCredentials

    if args.flow == "none":
        return AnonymousCredentials(), "anonymous"
    if args.flow == "self_signed":
        from google.oauth2 import service_account

        return (
            service_account.Credentials.from_service_account_file(args.key_file),
            "service account key file (self-signed JWT)",
        )
    if args.flow == "token":
        import google.auth.transport.requests
        import google.oauth2.credentials
        from google.oauth2 import service_account

        scoped = service_account.Credentials.from_service_account_file(
            args.key_file, scopes=["https://www.googleapis.com/auth/pubsub"]
        )
        # google-auth's JWT-bearer grant against the key file's token_uri.
        scoped.refresh(google.auth.transport.requests.Request())
        log(f"token endpoint answered a token expiring {scoped.expiry}")
        return google.oauth2.credentials.Credentials(token=scoped.token), "access token"
    if args.flow == "metadata":
        import google.auth

        credentials, project = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        log(f"ADC found {type(credentials).__module__}.{type(credentials).__name__} for {project}")
        args.adc_project = project
        return credentials, f"metadata server ({type(credentials).__name__})"
    sys.exit(f"unknown flow {args.flow}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--flow", required=True)
    parser.add_argument("--key-file")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--denied-topic", required=True)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--prefix", default="auth", help="makes the published data unique")
    # Accepted for the shared runner; unused.
    parser.add_argument("--project")
    args = parser.parse_args()
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        sys.exit("PUBSUB_EMULATOR_HOST must not be set: it makes the client send no credentials")
    faulthandler.dump_traceback_later(args.timeout, exit=True)

    from google.cloud import pubsub_v1

    steps = {}
    credentials, kind = credentials_for(args)
    log(f"flow {args.flow}: {kind}")
    options = {"api_endpoint": args.endpoint}
    publisher = pubsub_v1.PublisherClient(credentials=credentials, client_options=options)
    subscriber = pubsub_v1.SubscriberClient(credentials=credentials, client_options=options)

    data = f"{args.prefix} via {args.flow}"
    status, published_id = outcome(
        lambda: publisher.publish(args.topic, data.encode()).result(timeout=30)
    )
    steps["publish"] = status
    status, _ = outcome(lambda: publisher.publish(args.denied_topic, b"no").result(timeout=30))
    steps["publish_denied_topic"] = status

    def pull():
        response = subscriber.pull(
            request={"subscription": args.subscription, "max_messages": 10}, timeout=30
        )
        ids = [m.ack_id for m in response.received_messages]
        if ids:
            subscriber.acknowledge(request={"subscription": args.subscription, "ack_ids": ids})
        return [
            {"message_id": m.message.message_id, "data": m.message.data.decode()}
            for m in response.received_messages
        ]

    # Only when something was published: a pull of an empty subscription
    # would wait out its deadline.
    status, received = outcome(pull) if published_id or args.flow == "none" else ("skipped", [])
    steps["pull"] = status
    faulthandler.cancel_dump_traceback_later()
    result = {
        "credentials": f"{type(credentials).__module__}.{type(credentials).__name__}",
        "steps": steps,
        "published": {"message_id": published_id, "data": data} if published_id else None,
        "received": received or [],
    }
    if args.flow == "metadata":
        result["adc_project"] = args.adc_project
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
