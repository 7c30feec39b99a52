#!/usr/bin/env python3
"""A logging HTTP/1.1 reverse proxy (stdlib only) to capture the exact wire between an MCP client and server.

    python3 tests/mcp/wiretap.py LISTEN_PORT UPSTREAM_HOST:PORT [--log FILE.jsonl] [--pretty]

Listens on 127.0.0.1:LISTEN_PORT (0: any free port), prints `READY http://127.0.0.1:<port>` to stdout once
listening, and relays every request byte for byte to the upstream (one upstream connection per request; request and
response bytes are not altered, so Content-Encoding, chunking and SSE framing pass through as sent). Each exchange is
appended to the log as one JSON object once its response has ended:

    {"seq", "request": {"method", "target", "version", "headers": [[name, value], ...], "body"},
     "response": {"status", "reason", "version", "headers": [...], "framing": "content-length"|"chunked"|"close",
                  "chunks": [sizes...], "complete": bool, "client_gone": bool, "body"}, "ms": {"first_byte", "done"}}

Header names keep the case the peer sent; bodies are the de-chunked bytes decoded as UTF-8 (with replacement).
"complete" is false when the body did not end by its framing; "client_gone" is true when the client closed its side
before the response body ended (the tap then reads the upstream on for up to 2 s to log how it would have ended).
--pretty also prints each exchange readably to stdout.
"""

import argparse
import asyncio
import json
import sys
import time

MAX_HEAD = 64 * 1024


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    if len(head) > MAX_HEAD:
        raise ValueError("head too large")
    return head


def parse_head(head: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return start, headers


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class Message:
    """What has been seen of one message body so far (kept when the transfer is cut short)."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.chunks: list[int] = []
        self.framing = "none"
        self.complete = False
        self.peer_gone = False  # the receiving side closed before the body ended


async def relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    headers: list[tuple[str, str]],
    until_close: bool,
    msg: Message,
    drain_timeout: float = 2.0,
) -> None:
    """Copy one message body from reader to writer (raw bytes), recording it de-chunked in msg.

    When the writer's peer goes away mid-body, keep reading (for drain_timeout seconds) so the log shows how the
    sender would have ended the body."""
    te = (header(headers, "transfer-encoding") or "").lower()
    deadline: list[float | None] = [None]

    async def forward(data: bytes) -> None:
        nonlocal writer
        if writer is not None and data:
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                writer = None
                msg.peer_gone = True
                deadline[0] = time.monotonic() + drain_timeout

    async def read(op):
        if deadline[0] is None:
            return await op
        return await asyncio.wait_for(op, max(0.0, deadline[0] - time.monotonic()))

    if "chunked" in te:
        msg.framing = "chunked"
        while True:
            size_line = await read(reader.readuntil(b"\r\n"))
            await forward(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers until an empty line
                    line = await read(reader.readuntil(b"\r\n"))
                    await forward(line)
                    if line == b"\r\n":
                        break
                msg.complete = True
                return
            data = await read(reader.readexactly(size + 2))
            await forward(data)
            msg.body += data[:-2]
            msg.chunks.append(size)
    length = header(headers, "content-length")
    if length is not None:
        msg.framing = "content-length"
        n = int(length)
        data = await read(reader.readexactly(n)) if n else b""
        await forward(data)
        msg.body += data
        msg.complete = True
        return
    if not until_close:
        msg.complete = True
        return
    msg.framing = "close"
    while True:
        data = await read(reader.read(65536))
        if not data:
            msg.complete = True
            return
        await forward(data)
        msg.body += data
        msg.chunks.append(len(data))


class Tap:
    def __init__(self, upstream: str, log_path: str | None, pretty: bool) -> None:
        host, _, port = upstream.rpartition(":")
        self.host, self.port = host, int(port)
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.pretty = pretty
        self.seq = 0

    def record(self, entry: dict) -> None:
        if self.log:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()
        if self.pretty:
            req, resp = entry["request"], entry["response"]
            out = [f"#{entry['seq']} >>> {req['method']} {req['target']} {req['version']}"]
            out += [f"    {k}: {v}" for k, v in req["headers"]]
            if req["body"]:
                out.append("    " + req["body"])
            if resp:
                out.append(
                    f"#{entry['seq']} <<< {resp['status']} {resp['reason']} ({resp['framing']}, chunks {resp['chunks']}, "
                    f"complete {resp['complete']}, client gone {resp['client_gone']})"
                )
                out += [f"    {k}: {v}" for k, v in resp["headers"]]
                if resp["body"]:
                    out.append("    " + resp["body"].replace("\n", "\n    "))
            print("\n".join(out), flush=True)

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await read_head(creader)
                if head is None:
                    return
                start, headers = parse_head(head)
                method, target, version = start[0], start[1], start[2]
                req = Message()
                await relay_body(creader, None, headers, False, req)
                req_body = bytes(req.body)
                self.seq += 1
                entry = {
                    "seq": self.seq,
                    "request": {
                        "method": method,
                        "target": target,
                        "version": version,
                        "headers": headers,
                        "body": req_body.decode("utf-8", "replace"),
                    },
                    "response": None,
                    "ms": {},
                }
                t0 = time.monotonic()
                ureader, uwriter = await asyncio.open_connection(self.host, self.port)
                try:
                    # Forward the request exactly as received (the body re-chunked only if it came chunked).
                    uwriter.write(head)
                    if "chunked" in (header(headers, "transfer-encoding") or "").lower():
                        if req_body:
                            uwriter.write(b"%x\r\n" % len(req_body) + req_body + b"\r\n")
                        uwriter.write(b"0\r\n\r\n")
                    else:
                        uwriter.write(req_body)
                    await uwriter.drain()
                    rhead = await read_head(ureader)
                    if rhead is None:
                        raise ConnectionError("upstream closed")
                    entry["ms"]["first_byte"] = round((time.monotonic() - t0) * 1000, 1)
                    rstart, rheaders = parse_head(rhead)
                    cwriter.write(rhead)
                    await cwriter.drain()
                    status = int(rstart[1])
                    no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                    msg = Message()
                    try:
                        if not no_body:
                            await relay_body(ureader, cwriter, rheaders, True, msg)
                        else:
                            msg.complete = True
                    except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                        pass
                    finally:
                        entry["response"] = {
                            "status": status,
                            "reason": rstart[2] if len(rstart) > 2 else "",
                            "version": rstart[0],
                            "headers": rheaders,
                            "framing": msg.framing,
                            "chunks": msg.chunks,
                            "complete": msg.complete,
                            "client_gone": msg.peer_gone,
                            "body": bytes(msg.body).decode("utf-8", "replace"),
                        }
                        entry["ms"]["done"] = round((time.monotonic() - t0) * 1000, 1)
                        self.record(entry)
                    if msg.peer_gone or not msg.complete or msg.framing == "close":
                        return
                finally:
                    uwriter.close()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            print(f"wiretap: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            cwriter.close()


async def main_async(args: argparse.Namespace) -> None:
    tap = Tap(args.upstream, args.log, args.pretty)
    server = await asyncio.start_server(tap.handle, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("upstream", help="HOST:PORT")
    parser.add_argument("--log")
    parser.add_argument("--pretty", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
