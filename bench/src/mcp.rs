//! The MCP workload of the benchmarks (issue 18), shared by `agent-iam-mcp-bench` (in the `.wasm` and
//! natively) and configuration F of `agent-iam-envoy-bench`: the plugin configuration of
//! `envoy/bench/f-agent-iam-mcp.yaml`, the caller's token claims, a ~2 KB 2026-07-28 `tools/call` with its
//! mirrored headers, and a 100-tool `tools/list` response of which the caller may see half.

use agent_iam_tests::demo;
use serde_json::{Value, json};

/// The Envoy configuration of F; its plugin configuration is the MCP benchmark's.
pub const F_CONFIG: &str = "f-agent-iam-mcp.yaml";
/// The MCP endpoint's path.
pub const PATH: &str = "/mcp";
/// The host the requests name.
pub const AUTHORITY: &str = "gw.trading.example";
/// The endpoint's resource (RFC 8707): the token's audience.
pub const RESOURCE: &str = "https://gw.trading.example/mcp";
/// The protocol revision the requests speak.
pub const REVISION: &str = "2026-07-28";
/// The timed call's tool.
pub const TOOL: &str = "place_order";
/// Tools in the list response.
pub const LIST_TOOLS: usize = 100;

/// The trading agent's claims: the endpoint's audience and the claims its argument conditions compare with.
pub fn claims(now: i64) -> Value {
    json!({"iss": demo::ISSUER, "aud": RESOURCE, "sub": demo::TRADER, "iat": now, "exp": now + 7200,
           "scope": "mcp:tools orders:write", "account_id": "acct-7", "max_amount": 5000, "desk": "equities"})
}

/// A `tools/call` of `tool` with `account_id` and `amount`, and what a trading client sends besides: an order
/// with legs, notes and tags; about 2 KB. `_meta` repeats the protocol version, as 2026-07-28 clients do.
pub fn call_body(id: u64, tool: &str, account_id: &str, amount: u64) -> String {
    let legs: Vec<Value> = (0..6)
        .map(|i| {
            json!({"leg": i, "symbol": format!("ACME{i}"), "side": if i % 2 == 0 { "buy" } else { "sell" },
                   "quantity": 100 + i * 25, "limit_price": format!("{}.{:02}", 180 + i, i * 7),
                   "venue": "XNAS", "time_in_force": "day"})
        })
        .collect();
    let notes = "Rebalance towards the target weights agreed at the morning meeting; keep the sector exposure \
                 within the desk's limits and avoid crossing the spread by more than two ticks. Split the parent \
                 order into child orders no larger than 5% of the displayed volume, and pause if the price moves \
                 more than 1.5% from the arrival price. Report fills to the portfolio manager at the close. "
        .repeat(2);
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {
                "account_id": account_id,
                "amount": amount,
                "currency": "USD",
                "order_type": "limit",
                "client_order_id": format!("ord-{id:08}-7f3a9c"),
                "legs": legs,
                "notes": notes,
                "tags": ["rebalance", "equities", "morning-meeting", "pm-approved"],
                "dry_run": false
            },
            "_meta": {"io.modelcontextprotocol/protocolVersion": REVISION, "progressToken": format!("p-{id}")}
        }
    });
    body.to_string()
}

/// The timed call: the trader places an order for its own account within its limit (allowed).
pub fn allowed_call() -> String {
    call_body(1, TOOL, "acct-7", 2500)
}

/// The headers a 2026-07-28 client sends with a message (besides the token): content negotiation, the
/// protocol version, and `Mcp-Method`/`Mcp-Name` mirrored from the body.
pub fn headers(method: &str, name: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("accept".to_owned(), "application/json, text/event-stream".to_owned()),
        ("mcp-protocol-version".to_owned(), REVISION.to_owned()),
        ("mcp-method".to_owned(), method.to_owned()),
    ];
    if let Some(name) = name {
        h.push(("mcp-name".to_owned(), name.to_owned()));
    }
    h
}

/// The headers as Envoy hands them to the plugin: pseudo-headers first, then `authorization` and the rest.
pub fn proxy_headers(token: &str, body: &str, method: &str, name: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_owned(), "POST".to_owned()),
        (":path".to_owned(), PATH.to_owned()),
        (":authority".to_owned(), AUTHORITY.to_owned()),
        (":scheme".to_owned(), "http".to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("content-length".to_owned(), body.len().to_string()),
        ("user-agent".to_owned(), "agent-iam-bench".to_owned()),
        ("x-request-id".to_owned(), "0b6f8a52-3c1e-4d2a-9f7e-5a1c2b3d4e5f".to_owned()),
    ];
    h.extend(headers(method, name));
    h
}

/// The request as bytes on an HTTP/1.1 connection (for the load generators).
pub fn raw_request(token: &str, body: &str, method: &str, name: Option<&str>) -> Vec<u8> {
    let mut out = format!("POST {PATH} HTTP/1.1\r\nhost: {AUTHORITY}\r\nauthorization: Bearer {token}\r\n");
    for (n, v) in headers(method, name) {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

/// A `tools/list` request.
pub fn list_body() -> String {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}).to_string()
}

/// A `tools/list` answer of [`LIST_TOOLS`] tools as an MCP server writes it (title, description, input schema,
/// annotations) and a cursor. The trader may call half of them: `search_*` and
/// `risk_*` (the latter for some arguments only: listed), not `research_*` or `admin_*`.
pub fn list_response() -> String {
    let prefixes = ["search", "research", "risk", "admin"];
    let tools: Vec<Value> = (0..LIST_TOOLS)
        .map(|i| {
            let prefix = prefixes[i % prefixes.len()];
            json!({
                "name": format!("{prefix}_tool_{i}"),
                "title": format!("{prefix} tool {i}"),
                "description": format!("Runs the {prefix} operation number {i} on the trading desk's data and \
                                        returns the result as structured content."),
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "desk": {"type": "string", "description": "The desk"},
                        "symbol": {"type": "string", "pattern": "^[A-Z]{1,5}$"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 100}
                    },
                    "required": ["desk"]
                },
                "annotations": {"readOnlyHint": prefix != "admin", "openWorldHint": false}
            })
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools, "nextCursor": "page-2"}}).to_string()
}

/// How many tools of [`list_response`] the trader keeps.
pub fn list_kept() -> usize {
    (0..LIST_TOOLS).filter(|i| i % 4 == 0 || i % 4 == 2).count()
}
