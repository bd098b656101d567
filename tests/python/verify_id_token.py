"""A push receiver's check of the ID token Baton sends with a push
subscription's ``oidc_token``, done the way Google documents it for Python:
``google.oauth2.id_token.verify_token`` with the certificates of the issuer
(Baton's ``/oauth2/v1/certs``, PEM certificates), fetched over TLS with
``requests`` (REQUESTS_CA_BUNDLE names the CA). google-auth reads the JWKS
form (``/oauth2/v3/certs``) only with PyJWT, which the venv does not have,
so the JWKS is checked to publish the same key (modulus and exponent) for
the token's ``kid`` as the certificate does.

    REQUESTS_CA_BUNDLE=ca.pem python verify_id_token.py --base https://127.0.0.1:PORT \\
        --token-file token.txt --audience https://push.example/handler

Prints one JSON object: the claims (or the error), whether the JWKS key of
the token's ``kid`` is the certificate's, and the outcome of verifying for
another audience, which must fail.
"""

import argparse
import faulthandler
import json
import os
import sys


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="Baton's https://host:port")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--timeout", type=float, default=60)
    # Accepted for the shared runner; unused.
    parser.add_argument("--project")
    parser.add_argument("--prefix")
    args = parser.parse_args()
    faulthandler.dump_traceback_later(args.timeout, exit=True)

    import google.auth.transport.requests
    import requests
    from cryptography import x509
    from google.auth import jwt
    from google.oauth2 import id_token

    with open(args.token_file) as f:
        token = f.read().strip()
    request = google.auth.transport.requests.Request()

    def verify(certs_url, audience):
        try:
            claims = id_token.verify_token(
                token, request, audience=audience, certs_url=certs_url
            )
            return {"ok": True, "claims": claims}
        except Exception as exc:  # what a receiver would turn into a 401
            log(f"{certs_url} for {audience}: {type(exc).__name__}: {exc}")
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def b64_int(value):
        import base64

        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    def jwks_matches_certificate():
        kid = jwt.decode_header(token)["kid"]
        certs = requests.get(f"{args.base}/oauth2/v1/certs", timeout=30).json()
        jwks = requests.get(f"{args.base}/oauth2/v3/certs", timeout=30).json()
        numbers = (
            x509.load_pem_x509_certificate(certs[kid].encode()).public_key().public_numbers()
        )
        key = next(k for k in jwks["keys"] if k["kid"] == kid)
        return (
            key["kty"] == "RSA"
            and key.get("alg", "RS256") == "RS256"
            and b64_int(key["n"]) == numbers.n
            and b64_int(key["e"]) == numbers.e
        )

    result = {
        "verified": verify(f"{args.base}/oauth2/v1/certs", args.audience),
        "jwks_matches_certificate": jwks_matches_certificate(),
        "other_audience": verify(f"{args.base}/oauth2/v1/certs", "https://elsewhere.example/"),
    }
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
