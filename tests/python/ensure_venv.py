#!/usr/bin/env python3
"""Create (once) the virtualenv the interop tests and benchmarks run Google's
Python client from.

    python3 ensure_venv.py VENV_DIR

Idempotent and safe to run from many processes at once: an exclusive flock on
VENV_DIR.lock serialises creators, and a marker file holding the hash of
requirements.txt says the venv is complete. A venv whose marker is missing or
stale is rebuilt from scratch. Prints the venv's python path on the last line
of stdout. Exits non-zero, with pip's output on stderr, when the install fails
(for example without network): the tests must fail loudly, not skip.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
MARKER = "baton-interop-ready"


def venv_python(venv):
    return os.path.join(venv, "bin", "python")


def wanted_stamp():
    with open(REQUIREMENTS, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return f"{digest} {sys.version_info.major}.{sys.version_info.minor}\n"


def is_ready(venv, stamp):
    try:
        with open(os.path.join(venv, MARKER)) as f:
            return f.read() == stamp and os.path.exists(venv_python(venv))
    except OSError:
        return False


def run(cmd):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        sys.stderr.write(f"\nensure_venv: command failed with exit code {proc.returncode}: {' '.join(cmd)}\n")
        sys.exit(2)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ensure_venv.py VENV_DIR")
    venv = os.path.abspath(sys.argv[1])
    stamp = wanted_stamp()
    if is_ready(venv, stamp):
        print(venv_python(venv))
        return
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        started = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        waited = time.monotonic() - started
        if waited > 1:
            print(f"ensure_venv: waited {waited:.0f}s for another creator", file=sys.stderr)
        if not is_ready(venv, stamp):
            print(f"ensure_venv: creating {venv} (pip install -r {REQUIREMENTS})", file=sys.stderr, flush=True)
            shutil.rmtree(venv, ignore_errors=True)
            run([sys.executable, "-m", "venv", venv])
            run([venv_python(venv), "-m", "pip", "install", "--disable-pip-version-check",
                 "--no-input", "-q", "-r", REQUIREMENTS])
            run([venv_python(venv), "-c", "import google.cloud.pubsub_v1"])
            with open(os.path.join(venv, MARKER), "w") as f:
                f.write(stamp)
            print(f"ensure_venv: ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    print(venv_python(venv))


if __name__ == "__main__":
    main()
