#!/usr/bin/env python3
"""Drives the official MCP Python SDK's client (mcp 2.x, tests/mcp/requirements.txt) against a Streamable HTTP
endpoint and reports, one JSON line per scripted action, what the SDK surfaced.

    .venv/bin/python tests/mcp/client.py URL --protocol 2026-07-28 --token TOKEN \\
        --actions '[{"op":"list_tools"},{"op":"call_tool","name":"get_quote","arguments":{"symbol":"ACME"}}]'

Options:
  --protocol  2026-07-28 (alias modern): the stateless generation, adopted directly (no server/discover probe);
              2025-11-25 (alias legacy) or 2025-06-18: the initialize handshake offering that version;
              auto: the SDK's default (server/discover probe, falls back to initialize).
  --token     the bearer token (else the env MCP_TOKEN; none: no Authorization header).
  --header    'Name: value', repeatable: extra headers on every HTTP request.
  --timeout   seconds per action, connect included (default 10).
  --actions   JSON array (or @file). Each action is an object with "op":
                list_tools | list_prompts | list_resources | list_resource_templates   [cursor]
                call_tool name [arguments]     get_prompt name [arguments]     read_resource uri
                ping     sleep seconds
              An optional "id" is copied to the output line.

Output (stdout, one JSON object per line, in order):
  {"op":"connect","ok":true,"result":{"protocol_version":..,"server_info":..},"http":[..]}
  {"op":<op>,"ok":true,"result":<the SDK's result, JSON>,"http":[..]}
  {"op":<op>,"ok":false,"error":{"type":"MCPError","code":-31001,"message":..,"data":..},"http":[..]}
  {"op":"summary","requests":N,"status_counts":{"200":..,"403":..},"unauthorized":<401s>,"http":[..every request..]}
"http" lists the HTTP exchanges the action caused (an httpx event hook on the SDK's own client):
  {"method","path","mcp_method","mcp_name","protocol_version","session","status","content_type"}.
After a failed connect, or a transport failure (connection refused/reset) during an action, the remaining actions
are not run (the summary line is still printed). Exit status 0 when
the script ran to the end (refusals included: they are results), 2 on bad arguments.
Tool execution errors (result.isError) are ok:true results: only JSON-RPC errors, transport failures and timeouts
are ok:false. The SDK's response cache is off, so every list action reaches the wire.
"""

import argparse
import json
import math
import os
import sys
import time
import warnings
from typing import Any

import anyio
import httpx2

import mcp.client.session as mcp_session
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

MODERN = "2026-07-28"
# The SDK warns about deprecated features (ping at 2026-07-28, ...); a test drives them on purpose.
warnings.simplefilter("ignore")
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")


class Recorder:
    """Every HTTP exchange the SDK's httpx2 client makes."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self._pending: dict[int, dict[str, Any]] = {}

    async def on_request(self, request: httpx2.Request) -> None:
        h = request.headers
        entry = {
            "method": request.method,
            "path": request.url.raw_path.decode("ascii", "replace"),
            "mcp_method": h.get("mcp-method"),
            "mcp_name": h.get("mcp-name"),
            "protocol_version": h.get("mcp-protocol-version"),
            "session": h.get("mcp-session-id") is not None,
            "status": None,
            "content_type": None,
        }
        params = {k: v for k, v in h.items() if k.lower().startswith("mcp-param-")}
        if params:
            entry["mcp_params"] = params
        if request.method == "POST" and entry["mcp_method"] is None:
            # Handshake generation: no Mcp-Method header; take the JSON-RPC method from the body.
            try:
                body = json.loads(request.content or b"{}")
                entry["body_method"] = body.get("method") if isinstance(body, dict) else None
            except (ValueError, httpx2.RequestNotRead):
                pass
        self._pending[id(request)] = entry
        self.exchanges.append(entry)

    async def on_response(self, response: httpx2.Response) -> None:
        entry = self._pending.pop(id(response.request), None)
        if entry is not None:
            entry["status"] = response.status_code
            entry["content_type"] = response.headers.get("content-type")
            if "www-authenticate" in response.headers:
                entry["www_authenticate"] = response.headers["www-authenticate"]


def jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        return {"type": "MCPError", "code": exc.code, "message": exc.message, "data": jsonable(exc.data)}
    if isinstance(exc, TimeoutError):
        return {"type": "Timeout", "code": None, "message": "action timed out"}
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if len(exc.exceptions) == 1 else None
        if inner is not None:
            return error_of(inner)
    return {"type": type(exc).__name__, "code": None, "message": str(exc)}


async def run_action(client: Client, action: dict[str, Any]) -> Any:
    op = action.get("op")
    cursor = action.get("cursor")
    if op == "list_tools":
        return await client.list_tools(cursor=cursor)
    if op == "list_prompts":
        return await client.list_prompts(cursor=cursor)
    if op == "list_resources":
        return await client.list_resources(cursor=cursor)
    if op == "list_resource_templates":
        return await client.list_resource_templates(cursor=cursor)
    if op == "call_tool":
        return await client.call_tool(action["name"], action.get("arguments"))
    if op == "get_prompt":
        return await client.get_prompt(action["name"], action.get("arguments"))
    if op == "read_resource":
        return await client.read_resource(action["uri"])
    if op == "ping":
        return await client.send_ping()
    if op == "sleep":
        await anyio.sleep(float(action.get("seconds", 0)))
        return None
    raise ValueError(f"unknown op {op!r}")


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line, separators=(",", ":"), sort_keys=False), flush=True)


async def main_async(args: argparse.Namespace, actions: list[dict[str, Any]]) -> None:
    recorder = Recorder()
    headers = {}
    token = args.token if args.token is not None else os.environ.get("MCP_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for raw in args.header:
        name, _, value = raw.partition(":")
        headers[name.strip()] = value.strip()

    protocol = {"modern": MODERN, "legacy": "2025-11-25"}.get(args.protocol, args.protocol)
    if protocol == MODERN:
        mode = MODERN
    elif protocol in HANDSHAKE_VERSIONS:
        mode = "legacy"
        # The SDK always offers its newest handshake version; a test of an older one patches the offer.
        mcp_session.LATEST_HANDSHAKE_VERSION = protocol
    elif protocol == "auto":
        mode = "auto"
    else:
        raise SystemExit(f"unknown --protocol {args.protocol!r}")

    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(args.timeout),
        event_hooks={"request": [recorder.on_request], "response": [recorder.on_response]},
    )
    client = Client(
        streamable_http_client(args.url, http_client=http),
        mode=mode,
        cache=None,
        read_timeout_seconds=args.timeout,
    )

    def since(mark: int) -> list[dict[str, Any]]:
        return recorder.exchanges[mark:]

    # One cancel scope around the client's whole life: the SDK's transport runs a task group inside `async with
    # client`, so a timeout scope must enclose it, not sit inside it. Its deadline bounds the connect, is lifted while
    # the actions run (each has its own fail_after), and bounds the close again.
    state = "connect"
    mark = 0
    current: dict[str, Any] = {}
    try:
        with anyio.CancelScope(deadline=anyio.current_time() + args.timeout) as scope:
            async with http, client:
                scope.deadline = math.inf
                state = "actions"
                emit(
                    {
                        "op": "connect",
                        "ok": True,
                        "result": {
                            "protocol_version": client.protocol_version,
                            "server_info": jsonable(client.server_info),
                        },
                        "http": since(mark),
                    }
                )
                for action in actions:
                    mark = len(recorder.exchanges)
                    line: dict[str, Any] = {"op": action.get("op")}
                    if "id" in action:
                        line["id"] = action["id"]
                    current = line
                    started = time.monotonic()
                    try:
                        with anyio.fail_after(args.timeout):
                            result = await run_action(client, action)
                        line.update(ok=True, result=jsonable(result))
                    except Exception as exc:  # a refusal is a result, not a crash
                        line.update(ok=False, error=error_of(exc))
                    line["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
                    line["http"] = since(mark)
                    emit(line)
                    current = {}
                # Leaving the client (a DELETE of the session on the handshake generation) is in the summary.
                state = "close"
                mark = len(recorder.exchanges)
                scope.deadline = anyio.current_time() + args.timeout
        if scope.cancelled_caught:
            emit({"op": state, "ok": False, "error": error_of(TimeoutError()), "http": since(mark)})
    except Exception as exc:
        # A transport failure (connection refused, reset) tears the SDK's task group down from inside: it surfaces
        # here, not in the action's own try. Report it as that action's result; the later actions are not run.
        line = current or {"op": state}
        line.update(ok=False, error=error_of(exc), http=since(mark))
        emit(line)

    counts: dict[str, int] = {}
    for exchange in recorder.exchanges:
        key = str(exchange["status"])
        counts[key] = counts.get(key, 0) + 1
    emit(
        {
            "op": "summary",
            "requests": len(recorder.exchanges),
            "status_counts": counts,
            "unauthorized": counts.get("401", 0),
            "http": recorder.exchanges,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--protocol", default=MODERN)
    parser.add_argument("--token", default=None)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--actions", default="[]")
    args = parser.parse_args()
    text = args.actions
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    try:
        actions = json.loads(text)
        if not isinstance(actions, list) or not all(isinstance(a, dict) and "op" in a for a in actions):
            raise ValueError("--actions must be a JSON array of objects with an 'op'")
    except ValueError as exc:
        print(f"client.py: {exc}", file=sys.stderr)
        sys.exit(2)
    anyio.run(main_async, args, actions)


if __name__ == "__main__":
    main()
