"""Shared bits of the interop scenarios.

Each scenario script is run as

    PUBSUB_EMULATOR_HOST=127.0.0.1:PORT python SCRIPT.py --project P [--timeout S]

against either Baton or the gcloud emulator, and prints exactly one JSON object
on the last line of stdout. Keys starting with an underscore are diagnostics
(ids, timings) that differ between servers; the Rust side compares the rest.
"""

import argparse
import base64
import faulthandler
import json
import os
import sys
import time
import uuid


def parse_args(default_timeout=60, extra=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--timeout", type=float, default=default_timeout,
                        help="hard limit for the whole script, seconds")
    parser.add_argument("--prefix", default=None,
                        help="prefix of resource ids (default: random)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        sys.exit("PUBSUB_EMULATOR_HOST must be set")
    # Hard timeout: dump every thread's stack to stderr and exit(1), whatever
    # the main thread is blocked on.
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    if args.prefix is None:
        args.prefix = "it-" + uuid.uuid4().hex[:8]
    return args


def err_name(exc):
    """The google.api_core exception class name: NotFound, AlreadyExists, ..."""
    return type(exc).__name__


def outcome(fn):
    """Run fn(); return ("ok", value) or (ExceptionClassName, None)."""
    from google.api_core import exceptions

    try:
        return "ok", fn()
    except exceptions.GoogleAPICallError as exc:
        log(f"{err_name(exc)}: {exc}")
        return err_name(exc), None


def b64(data):
    return base64.b64encode(data).decode("ascii")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def finish(result):
    """Print the result as the last stdout line and exit at once (the client
    libraries sometimes linger in background threads at interpreter exit)."""
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
