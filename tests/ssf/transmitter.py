"""An SSF 1.0 transmitter for the tests: CAEP events as Security Event Tokens, delivered by RFC 8936 poll.

    transmitter.py [--port PORT] [--issuer ISS] [--audience AUD] [--poll-path PATH] [--authorization VALUE]
                   [--long-poll-seconds N] [--jwks-out FILE]

Listens on 127.0.0.1:PORT (0, the default: a free port) and prints `listening <port>` on stdout once it does. It
generates an RSA 2048-bit key at start (kid `ssf-<random>`) and signs every SET with it, RS256, JOSE header
`typ: secevent+jwt`, with jwcrypto (tests/ssf/requirements.txt, `make ssf-tools`). The gateway's own code never
signs anything here. A second key, never published ("stranger"), signs SETs a receiver must refuse.

Served (HTTP/1.1, keep-alive):

    GET  /.well-known/ssf-configuration   transmitter metadata (SSF 1.0 §7): issuer, jwks_uri, delivery methods
    GET  /jwks.json                       the public key set (jwks_uri)
    POST <poll path> (default /ssf/poll)  RFC 8936 poll: {maxEvents, returnImmediately, ack, setErrs} ->
                                          {"sets": {jti: SET}, "moreAvailable": bool}. Acknowledged SETs, and SETs
                                          reported in setErrs, are removed; every other pending SET is delivered
                                          again on the next poll. With --authorization, a poll must carry exactly
                                          that `authorization` header (401 otherwise). Without returnImmediately
                                          and with nothing pending, the answer waits up to --long-poll-seconds.

The control API for the test (no authentication: loopback only):

    POST /control/events   enqueue one SET: {"sub_id": {...RFC 9493 subject...},
                             "event_type": "session-revoked" (a CAEP name, or a full event-type URI),
                             "event": {...payload members...},       (optional, merged over the defaults)
                             "event_timestamp": N | null,            (default: now; null leaves it out)
                             "iat": N, "iss": "...", "aud": "..." | [...], "jti": "...", "typ": "...",
                             "txn": "...", "signer": "transmitter" | "stranger"}     (all optional)
                           -> {"jti": ..., "set": <the compact JWS>}
    GET  /control/state    {"polls", "polls_failed", "unauthorized", "pending": [jti], "acked": [jti],
                            "set_errs": {jti: {err, description}}, "delivered": {jti: times}, "unknown_acks": [jti],
                            "outage": mode, "last_poll": <the last poll request's JSON>}
    POST /control/outage   {"mode": null | "503" | "reset" | "hang"}: polls answered normally, answered 503, closed
                           without an answer, or held without an answer until the receiver gives up
                           (--hang-seconds); the other endpoints keep answering
    GET  /control/jwks     the public key set, as /jwks.json

Every poll is logged on stderr as one line. Stops on SIGTERM or SIGINT (exit 0).
"""

import argparse
import json
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jwcrypto import jwk, jwt

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
POLL_METHOD = "urn:ietf:rfc:8936"
OUTAGE_MODES = (None, "503", "reset", "hang")


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class Transmitter:
    """The stream: SETs pending delivery, and what the receiver said about them."""

    def __init__(self, issuer, audience, long_poll_seconds, hang_seconds):
        self.issuer = issuer
        self.audience = audience
        self.long_poll_seconds = long_poll_seconds
        self.hang_seconds = hang_seconds
        self.key = jwk.JWK.generate(kty="RSA", size=2048, kid=f"ssf-{secrets.token_hex(4)}", alg="RS256", use="sig")
        self.stranger = jwk.JWK.generate(kty="RSA", size=2048, kid=self.key.get("kid"), alg="RS256", use="sig")
        self.jwks = {"keys": [self.key.export_public(as_dict=True)]}
        self.cond = threading.Condition()
        self.pending = {}  # jti -> SET, in enqueue order
        self.acked = []
        self.set_errs = {}
        self.delivered = {}
        self.unknown_acks = []
        self.polls = 0
        self.polls_failed = 0
        self.unauthorized = 0
        self.outage = None
        self.last_poll = None

    def sign(self, claims, typ, signer):
        key = self.stranger if signer == "stranger" else self.key
        header = {"alg": "RS256", "typ": typ, "kid": key.get("kid")}
        token = jwt.JWT(header=header, claims=claims)
        token.make_signed_token(key)
        return token.serialize()

    def enqueue(self, req):
        if not isinstance(req, dict):
            raise ValueError("the event must be a JSON object")
        sub_id = req.get("sub_id")
        if not isinstance(sub_id, dict) or "format" not in sub_id:
            raise ValueError("sub_id must be an RFC 9493 subject identifier (an object with format)")
        event_type = req.get("event_type", "session-revoked")
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("event_type must be a string")
        if "://" not in event_type:
            event_type = CAEP + event_type
        now = int(time.time())
        payload = {}
        timestamp = req.get("event_timestamp", now)
        if timestamp is not None:
            payload["event_timestamp"] = timestamp
        if event_type == CAEP + "session-revoked":
            payload["initiating_entity"] = "policy"
            payload["reason_admin"] = {"en": "agent compromised"}
        extra = req.get("event", {})
        if not isinstance(extra, dict):
            raise ValueError("event must be an object")
        payload.update(extra)
        jti = req.get("jti") or secrets.token_hex(16)
        claims = {
            "iss": req.get("iss", self.issuer),
            "iat": req.get("iat", now),
            "jti": jti,
            "aud": req.get("aud", self.audience),
            "sub_id": sub_id,
            "events": {event_type: payload},
        }
        if "txn" in req:
            claims["txn"] = req["txn"]
        signer = req.get("signer", "transmitter")
        if signer not in ("transmitter", "stranger"):
            raise ValueError("signer must be transmitter or stranger")
        token = self.sign(claims, req.get("typ", "secevent+jwt"), signer)
        with self.cond:
            self.pending[jti] = token
            self.cond.notify_all()
        log(f"enqueued {jti}: {event_type} for {json.dumps(sub_id)} (signer {signer})")
        return {"jti": jti, "set": token}

    def poll(self, req):
        """One RFC 8936 poll; the answer's JSON. Raises ValueError on a malformed request."""
        if not isinstance(req, dict):
            raise ValueError("the poll request must be a JSON object")
        max_events = req.get("maxEvents")
        if max_events is not None and (not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0):
            raise ValueError("maxEvents must be a non-negative integer")
        return_immediately = req.get("returnImmediately", False)
        if not isinstance(return_immediately, bool):
            raise ValueError("returnImmediately must be a boolean")
        ack = req.get("ack", [])
        if not isinstance(ack, list) or not all(isinstance(j, str) for j in ack):
            raise ValueError("ack must be an array of strings")
        set_errs = req.get("setErrs", {})
        if not isinstance(set_errs, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("err"), str) for e in set_errs.values()
        ):
            raise ValueError("setErrs must map jti to {err, description}")
        with self.cond:
            self.last_poll = req
            for j in ack:
                if self.pending.pop(j, None) is not None:
                    self.acked.append(j)
                else:
                    self.unknown_acks.append(j)
            for j, e in set_errs.items():
                self.pending.pop(j, None)
                self.set_errs[j] = e
            if max_events != 0 and not self.pending and not return_immediately:
                self.cond.wait_for(lambda: self.pending, timeout=self.long_poll_seconds)
            jtis = list(self.pending)
            chosen = jtis if max_events is None else jtis[:max_events]
            for j in chosen:
                self.delivered[j] = self.delivered.get(j, 0) + 1
            answer = {"sets": {j: self.pending[j] for j in chosen}, "moreAvailable": len(chosen) < len(jtis)}
        if ack or set_errs or chosen:
            log(f"poll: ack {ack}, setErrs {json.dumps(set_errs)}, delivering {chosen}")
        return answer

    def state(self):
        with self.cond:
            return {
                "polls": self.polls,
                "polls_failed": self.polls_failed,
                "unauthorized": self.unauthorized,
                "pending": list(self.pending),
                "acked": list(self.acked),
                "set_errs": dict(self.set_errs),
                "delivered": dict(self.delivered),
                "unknown_acks": list(self.unknown_acks),
                "outage": self.outage,
                "last_poll": self.last_poll,
            }


def make_handler(tx, poll_path, authorization):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ssf-test-transmitter"

        def log_message(self, fmt, *args):
            pass

        def send_json(self, status, value, headers=()):
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for name, v in headers:
                self.send_header(name, v)
            self.end_headers()
            self.wfile.write(body)

        def read_json(self):
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else {}

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/.well-known/ssf-configuration":
                port = self.server.server_address[1]
                self.send_json(200, {
                    "issuer": tx.issuer,
                    "spec_version": "1_0",
                    "jwks_uri": f"http://127.0.0.1:{port}/jwks.json",
                    "delivery_methods_supported": [POLL_METHOD],
                    "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}],
                    "default_subjects": "ALL",
                })
            elif path in ("/jwks.json", "/control/jwks"):
                self.send_json(200, tx.jwks)
            elif path == "/control/state":
                self.send_json(200, tx.state())
            else:
                self.send_json(404, {"err": "not_found"})

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            try:
                body = self.read_json()
            except ValueError as e:
                self.send_json(400, {"err": "invalid_request", "description": f"not JSON: {e}"})
                return
            if path == poll_path:
                self.handle_poll(body)
            elif path == "/control/events":
                try:
                    self.send_json(200, tx.enqueue(body))
                except ValueError as e:
                    self.send_json(400, {"err": "invalid_request", "description": str(e)})
            elif path == "/control/outage":
                mode = body.get("mode") if isinstance(body, dict) else "?"
                if mode not in OUTAGE_MODES:
                    self.send_json(400, {"err": "invalid_request", "description": f"mode must be one of {OUTAGE_MODES}"})
                    return
                with tx.cond:
                    tx.outage = mode
                log(f"outage: {mode}")
                self.send_json(200, {"outage": mode})
            else:
                self.send_json(404, {"err": "not_found"})

        def handle_poll(self, body):
            with tx.cond:
                tx.polls += 1
                outage = tx.outage
                if outage is not None:
                    tx.polls_failed += 1
            if outage == "503":
                self.send_json(503, {"err": "temporarily_unavailable", "description": "transmitter outage"})
                return
            if outage in ("reset", "hang"):
                if outage == "hang":
                    time.sleep(tx.hang_seconds)
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            if authorization is not None and self.headers.get("authorization") != authorization:
                with tx.cond:
                    tx.unauthorized += 1
                self.send_json(401, {"err": "authentication_failed", "description": "missing or wrong authorization"},
                               headers=[("www-authenticate", "Bearer")])
                return
            try:
                self.send_json(200, tx.poll(body))
            except ValueError as e:
                self.send_json(400, {"err": "invalid_request", "description": str(e)})

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--issuer", default="https://ssf.trading.example")
    p.add_argument("--audience", default="https://gw.trading.example")
    p.add_argument("--poll-path", default="/ssf/poll")
    p.add_argument("--authorization", default=None)
    p.add_argument("--long-poll-seconds", type=float, default=2.0)
    p.add_argument("--hang-seconds", type=float, default=30.0)
    p.add_argument("--jwks-out", default=None)
    args = p.parse_args()

    tx = Transmitter(args.issuer, args.audience, args.long_poll_seconds, args.hang_seconds)
    if args.jwks_out:
        with open(args.jwks_out, "w") as f:
            json.dump(tx.jwks, f)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(tx, args.poll_path, args.authorization))
    server.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.server_address[1]}", flush=True)
    log(f"transmitter {args.issuer} on 127.0.0.1:{server.server_address[1]}, poll {args.poll_path}, kid {tx.key.get('kid')}")
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
