#!/usr/bin/env python3
"""A real DPoP client (RFC 9449) from PyPI: requests-oauth2client 1.8.0 (tests/dpop/requirements.txt), calling a
resource through the gateway with a DPoP-bound access token. Everything DPoP is the library's own: DPoPKey generates
the key and computes its thumbprint, DPoPToken (a requests auth handler) sends `Authorization: DPoP <token>` with a
fresh proof per request (signed by jwskate), and when the resource server answers 401 with a `DPoP` challenge and a
`DPoP-Nonce`, the library's response hook retries the request with a new proof carrying that nonce.

    .venv/bin/python tests/dpop/client.py keygen --key KEY.json [--alg ES256]
    DPOP_ACCESS_TOKEN=... .venv/bin/python tests/dpop/client.py call --key KEY.json --url URL [--calls N] \\
        [--method GET] [--user-agent UA]

keygen  DPoPKey.generate(alg): writes the private key (JWK) to --key (mode 0600) and prints
          {"alg": .., "jkt": <DPoPKey.dpop_jkt, RFC 7638>, "public_jwk": {..}}
        for the caller to bind the access token to (`cnf.jkt`).
call    loads the key from --key into a DPoPKey, wraps the token (env DPOP_ACCESS_TOKEN, never the command line) in a
        DPoPToken, and makes --calls requests to --url on one requests.Session with it as the auth handler; prints
          {"jkt": .., "calls": [{"status": <what the caller got>, "body": <JSON body or text>}, ..],
           "exchanges": [{"status", "www_authenticate", "dpop_nonce", "proof": {"jti", "htm", "htu", "iat",
                          "nonce", "ath"}}, ..],
           "rs_nonce": <the nonce the library kept>}
        "exchanges" lists every HTTP exchange on the wire, the library's own retries included (recorded by the
        session's transport adapter, which the library's retry sends through), with the claims of the proof sent.

Exit status 0 when the script ran to the end (refusals included: they are results), 2 on bad arguments, 1 when the
library raised (its message on stderr).
"""

import argparse
import base64
import json
import os
import sys

import requests
from requests.adapters import HTTPAdapter
from requests_oauth2client import DPoPKey, DPoPToken


def proof_claims(proof):
    """The claims of a proof as sent (decoded only: the gateway is what verifies it)."""
    if not proof:
        return None
    try:
        payload = proof.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {"unreadable": proof}
    return {name: claims.get(name) for name in ("jti", "htm", "htu", "iat", "nonce", "ath")}


class RecordingAdapter(HTTPAdapter):
    """requests' HTTP adapter, recording every exchange. The library's nonce retry sends its new request with
    `response.connection.send`, that is through this adapter, so retries are recorded too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exchanges = []

    def send(self, request, *args, **kwargs):
        response = super().send(request, *args, **kwargs)
        self.exchanges.append(
            {
                "status": response.status_code,
                "www_authenticate": response.headers.get("WWW-Authenticate"),
                "dpop_nonce": response.headers.get("DPoP-Nonce"),
                "proof": proof_claims(request.headers.get("DPoP")),
            }
        )
        return response


def keygen(args):
    key = DPoPKey.generate(alg=args.alg)
    fd = os.open(args.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"alg": key.alg, "private_jwk": key.private_key.to_dict()}, f)
    print(json.dumps({"alg": key.alg, "jkt": key.dpop_jkt, "public_jwk": key.public_jwk.to_dict()}))
    return 0


def call(args):
    token = os.environ.get("DPOP_ACCESS_TOKEN")
    if not token:
        print("DPOP_ACCESS_TOKEN is not set", file=sys.stderr)
        return 2
    with open(args.key) as f:
        stored = json.load(f)
    key = DPoPKey(private_key=stored["private_jwk"], alg=stored["alg"])
    auth = DPoPToken(access_token=token, _dpop_key=key)
    adapter = RecordingAdapter()
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if args.user_agent:
        session.headers["User-Agent"] = args.user_agent
    calls = []
    for _ in range(args.calls):
        response = session.request(args.method, args.url, auth=auth, timeout=args.timeout)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        calls.append({"status": response.status_code, "body": body})
    print(json.dumps({"jkt": key.dpop_jkt, "calls": calls, "exchanges": adapter.exchanges, "rs_nonce": key.rs_nonce}))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="generate a DPoP key")
    k.add_argument("--key", required=True, help="file to write the private JWK to")
    k.add_argument("--alg", default="ES256")
    c = sub.add_parser("call", help="call a URL with a DPoP-bound token")
    c.add_argument("--key", required=True, help="the private JWK file keygen wrote")
    c.add_argument("--url", required=True)
    c.add_argument("--method", default="GET")
    c.add_argument("--calls", type=int, default=1)
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--user-agent", default=None)
    args = parser.parse_args()
    try:
        return keygen(args) if args.command == "keygen" else call(args)
    except Exception as e:  # the library's errors (RepeatedDPoPNonce, MissingDPoPNonce, ...) and transport failures
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
