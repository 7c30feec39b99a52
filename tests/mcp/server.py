#!/usr/bin/env python3
"""An MCP server over Streamable HTTP built with the official MCP Python SDK (mcp 2.x, tests/mcp/requirements.txt),
the upstream behind Envoy + agent-iam in the MCP real-component tests.

    .venv/bin/python tests/mcp/server.py PORT [--stateless] [--json-response] [--no-param-header] [--path /mcp]

Listens on 127.0.0.1:PORT (0 picks a free port), path /mcp, and prints one line to stdout once listening:

    READY http://127.0.0.1:<port>/mcp

One process serves both protocol generations at once; the SDK routes each POST on its MCP-Protocol-Version header:
  * 2026-07-28 (stateless envelope, Mcp-Method / Mcp-Name headers, no session): always available;
  * 2025-11-25 / 2025-06-18 / ... (initialize handshake): with a Mcp-Session-Id by default, without one under
    --stateless.
--json-response answers requests with application/json instead of text/event-stream (handshake generation; a
2026-07-28 request is answered with JSON unless the handler emits a notification or runs past 15 s, see
_streamable_http_modern.py in the SDK).

Tools echo which agent identity the gateway forwarded (x-agent-iam-agent), whether an Authorization header reached
the upstream, and every x-agent-iam-* header, so a test can check forwarding and that the client token is not
passed through. place_order's account_id is annotated `x-mcp-header: AccountId`, so a 2026-07-28 client that has
listed the tools mirrors it as `Mcp-Param-AccountId` (--no-param-header drops the annotation).

DNS-rebinding protection (Host / Origin allow-list) is off: the gateway in front is what is being tested, and it
forwards whatever Host the test uses.
"""


import argparse
import asyncio
import json
import sys
from typing import Annotated, Any

import uvicorn
from pydantic import Field

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

AGENT_HEADER = "x-agent-iam-agent"

QUOTES = {"ACME": 123.45, "GLOBEX": 67.8, "INITECH": 9.99, "UMBRELLA": 250.0}


def forwarded(ctx: Context | None) -> dict[str, Any]:
    """What the upstream saw of the caller: the agent header, every x-agent-iam-* header, Authorization presence."""
    headers = {k.lower(): v for k, v in (ctx.headers or {}).items()} if ctx is not None else {}
    return {
        "agent": headers.get(AGENT_HEADER),
        "agent_iam_headers": {k: v for k, v in sorted(headers.items()) if k.startswith("x-agent-iam-")},
        "authorization_present": "authorization" in headers,
        "protocol_version": headers.get("mcp-protocol-version"),
        "session_id_present": "mcp-session-id" in headers,
    }


def build(param_header: bool) -> MCPServer:
    mcp = MCPServer(
        name="agent-iam-trading",
        version="1.0.0",
        instructions="Trading desk test server for agent-iam.",
        log_level="WARNING",
    )

    @mcp.tool()
    def get_quote(symbol: str, ctx: Context) -> dict[str, Any]:
        """Current price of one symbol."""
        return {"symbol": symbol, "price": QUOTES.get(symbol.upper(), 1.0), "forwarded": forwarded(ctx)}

    @mcp.tool()
    def search_quotes(query: str, ctx: Context) -> dict[str, Any]:
        """Symbols whose name contains the query."""
        hits = [s for s in sorted(QUOTES) if query.upper() in s]
        return {"query": query, "symbols": hits, "forwarded": forwarded(ctx)}

    # Evaluated here, not as a string: no `from __future__ import annotations` in this file, the SDK reads it.
    account_schema: dict[str, Any] = {"x-mcp-header": "AccountId"} if param_header else {}

    @mcp.tool()
    def place_order(
        account_id: Annotated[str, Field(json_schema_extra=account_schema)],
        symbol: str,
        amount: float,
        ctx: Context,
    ) -> dict[str, Any]:
        """Place a buy order of `amount` (currency units) of `symbol` for the account."""
        return {
            "order_id": f"ord-{account_id}-{symbol}",
            "account_id": account_id,
            "symbol": symbol,
            "amount": amount,
            "status": "accepted",
            "forwarded": forwarded(ctx),
        }

    @mcp.tool()
    def delete_account(account_id: str, ctx: Context) -> dict[str, Any]:
        """Close an account (destructive)."""
        return {"account_id": account_id, "deleted": True, "forwarded": forwarded(ctx)}

    @mcp.prompt()
    def summarise_portfolio(account_id: str) -> str:
        """Ask the model to summarise an account's portfolio."""
        return f"Summarise the portfolio of account {account_id} in three bullet points."

    @mcp.prompt()
    def admin_report() -> str:
        """Privileged: a report over every account."""
        return "Produce the administrative report over every account, including closed ones."

    @mcp.resource(
        "trading://accounts/{account_id}/positions",
        name="account_positions",
        description="Open positions of one account",
        mime_type="application/json",
    )
    def positions(account_id: str, ctx: Context) -> str:
        return json.dumps(
            {"account_id": account_id, "positions": [{"symbol": "ACME", "quantity": 10}], "forwarded": forwarded(ctx)}
        )

    @mcp.resource(
        "trading://market/status",
        name="market_status",
        description="Whether the market is open",
        mime_type="application/json",
    )
    def market_status() -> str:
        # The SDK gives static resources no Context, so no forwarding echo here.
        return json.dumps({"open": True})

    return mcp


async def serve(args: argparse.Namespace) -> None:
    mcp = build(param_header=not args.no_param_header)
    app = mcp.streamable_http_app(
        streamable_http_path=args.path,
        json_response=args.json_response,
        stateless_http=args.stateless,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host="127.0.0.1",
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,  # an open handshake-generation GET stream must not hold SIGTERM up
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # re-raises the startup failure
            sys.exit(1)
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{port}{args.path}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--path", default="/mcp")
    parser.add_argument("--stateless", action="store_true", help="handshake generation without Mcp-Session-Id")
    parser.add_argument("--json-response", action="store_true", help="application/json instead of SSE")
    parser.add_argument("--no-param-header", action="store_true", help="no x-mcp-header on place_order.account_id")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
