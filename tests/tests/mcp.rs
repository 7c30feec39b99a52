//! MCP endpoints through the real `.wasm` in the wasmtime host, as Envoy runs it: the JSON-RPC body read
//! after the headers went on, each refusal class in the protocol's own terms, list responses filtered per
//! caller (JSON and event streams, split anywhere), the protected resource metadata, and the audience.
//!
//! Build the plugin first: `cargo build -p agent-iam --target wasm32-wasip1 --release`.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Outcome, RequestBuilder, Vm};
use agent_iam_tests::HOST;
use serde_json::{Value, json};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://idp.trading.example";
const RESOURCE: &str = "https://gw.trading.example/mcp";
const TRADER: &str = "spiffe://trading.example/agent/trader";
const READER: &str = "spiffe://trading.example/agent/reader";

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [3; 32]).unwrap());

fn config() -> Value {
    json!({
        "realm": "trading-mcp",
        "issuers": [{"issuer": ISSUER, "audiences": [RESOURCE, "other-api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [KEY.public_jwk(Some("k"))]}}],
        "forward": {"filter_state": true},
        "mcp": {"endpoints": [{
            "paths": ["/mcp"],
            "resource": RESOURCE,
            "authorization_servers": [ISSUER],
            "scopes_supported": ["mcp:tools"],
            "resource_name": "Trading tools",
            "max_body_bytes": 4096
        }]},
        "policy": {"rules": [
            {"id": "lists", "effect": "allow", "agents": ["*"], "mcp": {"methods": ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]}},
            {"id": "quotes", "effect": "allow", "agents": ["spiffe://trading.example/*"], "mcp": {"tools": ["get_quote", "search_*"]}},
            {"id": "orders", "effect": "allow", "agents": [TRADER], "scopes": ["orders:write"], "mcp": {"tools": ["place_order"]},
             "when": {"arguments": {"account_id": {"equals": {"claim": "account_id"}}, "amount": {"lte": {"claim": "max_amount"}}}}},
            {"id": "positions", "effect": "allow", "agents": [TRADER], "mcp": {"resources": ["trading://accounts/{account}/positions"]},
             "when": {"resource": {"account": {"equals": {"claim": "account_id"}}}}},
            {"id": "no-delete", "effect": "deny", "agents": ["*"], "mcp": {"tools": ["delete_*"]}}
        ]}
    })
}

fn start(config: &Value) -> Vm {
    let vm = HOST
        .vm()
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .plugin_config(serde_json::to_vec(config).unwrap())
        .start()
        .unwrap();
    vm.assert_healthy();
    vm
}

fn token(sub: &str, extra: Value) -> String {
    let mut claims = json!({"iss": ISSUER, "sub": sub, "aud": RESOURCE, "iat": NOW, "exp": NOW + 600,
                            "account_id": "acct-7", "max_amount": 5000, "scope": "mcp:tools orders:write"});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    KEY.sign_jwt(Some("k"), &claims)
}

fn post<'a>(vm: &'a mut Vm, token: &str, body: &Value) -> RequestBuilder<'a> {
    vm.request()
        .method("POST")
        .path("/mcp")
        .authority("gw.trading.example")
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("accept-encoding", "gzip")
        .body(serde_json::to_vec(body).unwrap())
}

fn call(id: Value, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

fn local(o: &Outcome) -> (u16, Value) {
    match o {
        Outcome::LocalResponse { status, body, .. } => (*status, serde_json::from_slice(body).unwrap_or(Value::Null)),
        other => panic!("not answered locally: {other:?}"),
    }
}

#[test]
fn an_allowed_tool_call_goes_upstream_with_its_body_and_identity() {
    let mut vm = start(&config());
    let body = call(json!(1), "get_quote", json!({"symbol": "ACME"}));
    let o = post(&mut vm, &token(TRADER, json!({})), &body).send();
    let Outcome::Continued { request_headers, forwarded_body, .. } = &o else { panic!("{o:?}") };
    assert_eq!(serde_json::from_slice::<Value>(forwarded_body).unwrap(), body);
    assert_eq!(o.header("x-agent-iam-agent"), Some(TRADER));
    // The headers left before the body was decided: no rule header, and identity-encoded answers asked for.
    assert_eq!(o.header("x-agent-iam-rule"), None);
    assert!(!request_headers.iter().any(|(k, _)| k == "accept-encoding"));
    let state = vm.last_filter_state();
    assert_eq!(state.get("agent_iam.rule").map(Vec::as_slice), Some(&b"quotes"[..]));
    assert_eq!(state.get("agent_iam.mcp_method").map(Vec::as_slice), Some(&b"tools/call"[..]));
    assert_eq!(state.get("agent_iam.mcp_name").map(Vec::as_slice), Some(&b"get_quote"[..]));
    vm.assert_healthy();
}

#[test]
fn mcp_decisions_are_audited_with_their_method_and_tool() {
    let mut c = config();
    c["audit"] = json!({"events": "all"});
    let mut vm = start(&c);
    let event = |vm: &Vm| -> Value {
        let line = vm.last_filter_state().get("agent_iam.audit").cloned().expect("an audit event");
        let event: Value = serde_json::from_slice(&line).unwrap();
        let problems = agent_iam_tests::ocsf::validate(&event);
        assert!(problems.is_empty(), "{event}\n{problems:#?}");
        event
    };
    post(&mut vm, &token(TRADER, json!({})), &call(json!(1), "get_quote", json!({"symbol": "ACME"}))).send();
    let allowed = event(&vm);
    assert_eq!(allowed["api"]["operation"], "tools/call");
    assert_eq!(allowed["activity_name"], "Invoke");
    assert_eq!(allowed["resources"][0]["type"], "mcp.tool");
    assert_eq!(allowed["resources"][0]["uid"], "get_quote");
    assert_eq!(allowed["unmapped"]["chain"]["seq"], 0, "the headers' pass is no decision: one event per call");
    post(&mut vm, &token(READER, json!({})), &call(json!("c-9"), "place_order", json!({}))).send();
    let denied = event(&vm);
    assert_eq!(
        (denied["http_response"]["code"].clone(), denied["unmapped"]["chain"]["seq"].clone()),
        (json!(403), json!(1))
    );
    assert_eq!(denied["actor"]["app_uid"], READER);
    vm.assert_healthy();
}

#[test]
fn a_forbidden_tool_is_a_json_rpc_error_under_the_request_id() {
    let mut vm = start(&config());
    let o = post(&mut vm, &token(READER, json!({})), &call(json!("c-9"), "place_order", json!({}))).send();
    let (status, body) = local(&o);
    assert_eq!(status, 403);
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], "c-9");
    assert_eq!(body["error"]["code"], -31001);
    assert_eq!(body["error"]["message"], "Forbidden: tool 'place_order' denied by policy");
    assert_eq!(body["error"]["data"]["error"], "insufficient_scope");
    // No scope would change this denial: no step-up challenge.
    assert_eq!(o.header("www-authenticate"), None, "{o:?}");
    let denied = post(&mut vm, &token(TRADER, json!({})), &call(json!(2), "delete_account", json!({}))).send();
    assert_eq!(local(&denied).1["error"]["data"]["rule"], "no-delete");
    vm.assert_healthy();
}

#[test]
fn a_forbidden_argument_value_is_refused() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let ok = post(&mut vm, &t, &call(json!(1), "place_order", json!({"account_id": "acct-7", "amount": 10}))).send();
    assert!(ok.is_allowed(), "{ok:?}");
    let other = post(&mut vm, &t, &call(json!(2), "place_order", json!({"account_id": "acct-8", "amount": 10}))).send();
    assert_eq!(local(&other).0, 403);
    let big = post(&mut vm, &t, &call(json!(3), "place_order", json!({"account_id": "acct-7", "amount": 5001}))).send();
    assert_eq!(local(&big).0, 403);
}

#[test]
fn a_tools_list_answer_loses_what_the_caller_may_not_call() {
    let mut vm = start(&config());
    let list = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
    let tools = json!({"jsonrpc": "2.0", "id": 4, "result": {"tools": [
        {"name": "get_quote", "inputSchema": {"type": "object"}},
        {"name": "place_order", "inputSchema": {"type": "object"}},
        {"name": "delete_account", "inputSchema": {"type": "object"}},
        {"name": "search_quotes", "inputSchema": {"type": "object"}}
    ], "nextCursor": "page-2"}});
    let names = |o: &Outcome| -> (Vec<String>, Value) {
        let Outcome::Continued { response: (_, _, body), .. } = o else { panic!("{o:?}") };
        let body = if body.starts_with(b"event:") || body.starts_with(b"data:") {
            let data = String::from_utf8_lossy(body)
                .lines()
                .find_map(|l| l.strip_prefix("data: ").map(str::to_owned))
                .unwrap();
            serde_json::from_str::<Value>(&data).unwrap()
        } else {
            serde_json::from_slice::<Value>(body).unwrap()
        };
        let names = body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        (names, body)
    };
    // JSON.
    let reader = token(READER, json!({}));
    let o = post(&mut vm, &reader, &list)
        .upstream_response(200, &[("content-type", "application/json"), ("content-length", "999")])
        .upstream_body(serde_json::to_vec(&tools).unwrap())
        .send();
    let (shown, body) = names(&o);
    assert_eq!(shown, ["get_quote", "search_quotes"]);
    assert_eq!(body["result"]["nextCursor"], "page-2");
    let Outcome::Continued { response: (_, headers, _), .. } = &o else { unreachable!() };
    assert!(!headers.iter().any(|(k, _)| k == "content-length"), "the body changed size: {headers:?}");
    // The trader may place orders (for some arguments): listed.
    let o = post(&mut vm, &token(TRADER, json!({})), &list)
        .upstream_response(200, &[("content-type", "application/json")])
        .upstream_body(serde_json::to_vec(&tools).unwrap())
        .send();
    assert_eq!(names(&o).0, ["get_quote", "place_order", "search_quotes"]);
    // An event stream split at every byte.
    let sse = format!("event: message\r\ndata: {}\r\n\r\n", tools);
    let o = post(&mut vm, &reader, &list)
        .upstream_response(200, &[("content-type", "text/event-stream")])
        .upstream_body(sse.as_bytes())
        .upstream_body_chunks(&vec![1; sse.len()])
        .send();
    assert_eq!(names(&o).0, ["get_quote", "search_quotes"]);
    // Compressed anyway: nothing of it passes.
    let o = post(&mut vm, &reader, &list)
        .upstream_response(200, &[("content-type", "application/json"), ("content-encoding", "gzip")])
        .upstream_body(b"\x1f\x8b\x08\x00compressed")
        .send();
    let Outcome::Continued { response: (_, _, body), .. } = &o else { panic!("{o:?}") };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["id"], 4);
    assert_eq!(body["error"]["code"], -32603);
    vm.assert_healthy();
}

#[test]
fn discovery_metadata_and_the_audience() {
    let mut vm = start(&config());
    let o = vm.request().method("GET").path("/.well-known/oauth-protected-resource/mcp").send();
    let (status, body) = local(&o);
    assert_eq!(status, 200);
    assert_eq!(body["resource"], RESOURCE);
    assert_eq!(body["authorization_servers"], json!([ISSUER]));
    // A token the issuer accepts, but for another API: 401 with the metadata to find the right one.
    let other = token(TRADER, json!({"aud": "other-api"}));
    let o = post(&mut vm, &other, &call(json!(1), "get_quote", json!({}))).send();
    assert_eq!(local(&o).0, 401);
    let challenge = o.header("www-authenticate").unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains("resource_metadata=\"https://gw.trading.example/.well-known/oauth-protected-resource/mcp\"")
    );
    let none = vm.request().method("POST").path("/mcp").body(b"{}").send();
    assert!(none.header("www-authenticate").unwrap().contains("resource_metadata="));
}

// ---------------------------------------------------------------------------------------------
// Refusals before policy: the body, the JSON-RPC message, the mirrored headers of 2026-07-28.
// ---------------------------------------------------------------------------------------------

/// The `_meta` the SDK puts in every 2026-07-28 request.
fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "0.1.0"},
           "io.modelcontextprotocol/clientCapabilities": {}})
}

/// A POST of raw bytes with extra headers (legacy: no `MCP-Protocol-Version` unless given).
fn post_raw<'a>(vm: &'a mut Vm, token: &str, body: &[u8], extra: &[(&str, &str)]) -> RequestBuilder<'a> {
    let mut r = vm
        .request()
        .method("POST")
        .path("/mcp")
        .authority("gw.trading.example")
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("accept-encoding", "gzip, deflate")
        .body(body);
    for (k, v) in extra {
        r = r.header(k, v);
    }
    r
}

/// A 2026-07-28 POST as the SDK sends it: the version, `Mcp-Method`, and `extra` (`Mcp-Name`, `Mcp-Param-*`).
fn post26<'a>(vm: &'a mut Vm, token: &str, body: &Value, extra: &[(&str, &str)]) -> RequestBuilder<'a> {
    let method = body["method"].as_str().unwrap().to_owned();
    let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", method.as_str())];
    headers.extend_from_slice(extra);
    post_raw(vm, token, &serde_json::to_vec(body).unwrap(), &headers)
}

/// A refusal answered locally as a JSON-RPC error: status, `application/json`, the code; the body returned.
#[track_caller]
fn refused(o: &Outcome, status: u16, code: i64) -> Value {
    let (got, body) = local(o);
    assert_eq!((got, body["error"]["code"].as_i64()), (status, Some(code)), "{o:?}");
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(o.header("content-type"), Some("application/json"), "{o:?}");
    body
}

/// Forwarded with exactly this body.
#[track_caller]
fn forwarded(o: &Outcome, body: &[u8]) {
    let Outcome::Continued { forwarded_body, .. } = o else { panic!("not forwarded: {o:?}") };
    assert_eq!(String::from_utf8_lossy(forwarded_body), String::from_utf8_lossy(body));
}

fn with_endpoint(edit: Value) -> Value {
    let mut c = config();
    let endpoint = c["mcp"]["endpoints"][0].as_object_mut().unwrap();
    endpoint.extend(edit.as_object().unwrap().clone());
    c
}

/// A tools/call whose body is exactly `len` bytes (the argument padded).
fn call_of_len(len: usize) -> Vec<u8> {
    let empty = serde_json::to_vec(&call(json!(1), "get_quote", json!({"symbol": ""}))).unwrap();
    let body = call(json!(1), "get_quote", json!({"symbol": "A".repeat(len - empty.len())}));
    let bytes = serde_json::to_vec(&body).unwrap();
    assert_eq!(bytes.len(), len);
    bytes
}

#[test]
fn a_body_over_the_endpoint_cap_is_413_in_one_piece_or_in_many() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    // The cap (4096) itself is fine, in one piece or in many.
    let at_cap = call_of_len(4096);
    forwarded(&post_raw(&mut vm, &t, &at_cap, &[]).send(), &at_cap);
    forwarded(&post_raw(&mut vm, &t, &at_cap, &[]).body_chunks(&[7; 585]).send(), &at_cap);
    // One byte more is refused, before it is parsed: no id.
    let over = call_of_len(4097);
    let body = refused(&post_raw(&mut vm, &t, &over, &[]).send(), 413, -32600);
    assert_eq!(body["id"], Value::Null);
    // A client trickling a large body: refused as soon as the buffered part exceeds the cap.
    let big = call_of_len(20_000);
    let o = post_raw(&mut vm, &t, &big, &[]).body_chunks(&[100; 199]).send();
    let body = refused(&o, 413, -32600);
    assert_eq!(body["id"], Value::Null);
    assert_eq!(vm.last_filter_state().get("agent_iam.reason").map(Vec::as_slice), Some(&b"mcp_body_too_large"[..]));
    vm.assert_healthy();
}

#[test]
fn a_body_split_anywhere_is_read_whole() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    // Raw UTF-8, as the SDK sends it, split inside a multi-byte character too.
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"place_order","arguments":{"account_id":"acct-7","symbol":"ÄCME ünïcode","amount":10}}}"#.as_bytes();
    for split in 1..body.len() {
        let o = post_raw(&mut vm, &t, body, &[]).body_chunks(&[split]).send();
        forwarded(&o, body);
    }
    let o = post_raw(&mut vm, &t, body, &[]).body_chunks(&vec![1; body.len()]).send();
    forwarded(&o, body);
    assert_eq!(vm.last_filter_state().get("agent_iam.rule").map(Vec::as_slice), Some(&b"orders"[..]));
    vm.assert_healthy();
}

#[test]
fn a_body_that_is_not_one_strict_json_document_is_a_parse_error() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let deep_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_quote","arguments":{{"x":{}1{}}}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":".to_vec()),
        ("garbage", b"hello".to_vec()),
        (
            "duplicate key",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_quote","name":"delete_account"}}"#
                .to_vec(),
        ),
        ("duplicate method", br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#.to_vec()),
        ("too deep", deep_params.into_bytes()),
        (
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"get_\xff\"}}".to_vec(),
        ),
        (
            "trailing data",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"} {"jsonrpc":"2.0","id":2,"method":"tools/list"}"#
                .to_vec(),
        ),
        ("trailing garbage", br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}x"#.to_vec()),
    ];
    for (what, body) in cases {
        let o = post_raw(&mut vm, &t, &body, &[]).send();
        let answer = refused(&o, 400, -32700);
        assert_eq!(answer["id"], Value::Null, "{what}");
        assert_eq!(o.header("www-authenticate"), None, "{what}");
    }
    // A nested array at the top is a batch, refused as such (below); deep nesting inside an object is not.
    assert_eq!(local(&post_raw(&mut vm, &t, deep.as_bytes(), &[]).send()).0, 400);
    vm.assert_healthy();
}

#[test]
fn a_post_without_a_body_is_a_parse_error() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    // end_of_stream on the headers: decided at once on the empty body.
    let o = vm
        .request()
        .method("POST")
        .path("/mcp")
        .header("authorization", &format!("Bearer {t}"))
        .header("content-type", "application/json")
        .send();
    let body = refused(&o, 400, -32700);
    assert_eq!(body["id"], Value::Null);
    // Whitespace only: the same.
    refused(&post_raw(&mut vm, &t, b" \r\n", &[]).send(), 400, -32700);
    vm.assert_healthy();
}

#[test]
fn a_json_value_that_is_not_one_json_rpc_message_is_an_invalid_request() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let cases = [
        ("method a number", json!({"jsonrpc": "2.0", "id": 1, "method": 7})),
        ("method empty", json!({"jsonrpc": "2.0", "id": 1, "method": ""})),
        ("id a boolean", json!({"jsonrpc": "2.0", "id": true, "method": "tools/list"})),
        ("id an object", json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"})),
        ("id a fraction", json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"})),
        ("id null", json!({"jsonrpc": "2.0", "id": null, "method": "tools/list"})),
        ("jsonrpc missing", json!({"id": 1, "method": "tools/list"})),
        ("jsonrpc 1.0", json!({"jsonrpc": "1.0", "id": 1, "method": "tools/list"})),
        ("jsonrpc a number", json!({"jsonrpc": 2.0, "id": 1, "method": "tools/list"})),
        ("params an array", json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ["get_quote"]})),
        ("params a string", json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": "x"})),
        ("neither request nor response", json!({"jsonrpc": "2.0", "id": 1})),
        ("a string", json!("tools/list")),
        ("a number", json!(1)),
        ("null", Value::Null),
    ];
    for (what, message) in cases {
        let o = post(&mut vm, &t, &message).send();
        let (status, body) = local(&o);
        assert_eq!((status, &body["error"]["code"]), (400, &json!(-32600)), "{what}: {o:?}");
        // JSON-RPC 2.0 §5: the request's id when it could be read (a string or an integer), else null.
        let id = message.get("id").filter(|id| id.is_string() || id.is_i64()).cloned().unwrap_or(Value::Null);
        assert_eq!(body["id"], id, "{what}");
    }
    vm.assert_healthy();
}

#[test]
fn params_a_method_needs_are_checked() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let tools_call = |params: Value| json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params});
    let read = |uri: &str| json!({"jsonrpc": "2.0", "id": 9, "method": "resources/read", "params": {"uri": uri}});
    let cases = [
        ("tools/call without params", json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call"})),
        ("tools/call without a name", tools_call(json!({"arguments": {"symbol": "ACME"}}))),
        ("tools/call with an empty name", tools_call(json!({"name": ""}))),
        ("tools/call with a numeric name", tools_call(json!({"name": 7}))),
        ("arguments an array", tools_call(json!({"name": "get_quote", "arguments": ["ACME"]}))),
        ("arguments a string", tools_call(json!({"name": "get_quote", "arguments": "ACME"}))),
        (
            "prompts/get without a name",
            json!({"jsonrpc": "2.0", "id": 6, "method": "prompts/get", "params": {"arguments": {}}}),
        ),
        ("a dot-dot segment", read("trading://accounts/acct-7/../acct-8/positions")),
        ("a trailing dot-dot", read("trading://accounts/acct-7/positions/..")),
        ("a dot segment", read("trading://accounts/./acct-7/positions")),
        ("an escaped slash", read("trading://accounts/acct-7%2F..%2Facct-8/positions")),
        ("an escaped slash, lower case", read("trading://accounts/acct-7%2f/positions")),
        ("an escaped dot", read("trading://accounts/%2e%2e/positions")),
        ("a backslash", read("trading://accounts/acct-7\\positions")),
        ("a fragment", read("trading://accounts/acct-7/positions#x")),
        ("a space", read("trading://accounts/ acct-7/positions")),
        ("no uri", json!({"jsonrpc": "2.0", "id": 9, "method": "resources/read", "params": {}})),
    ];
    for (what, message) in cases {
        let o = post(&mut vm, &t, &message).send();
        let (status, body) = local(&o);
        assert_eq!((status, &body["error"]["code"]), (400, &json!(-32602)), "{what}: {o:?}");
    }
    // The same URI without tricks is read.
    let o = post(&mut vm, &t, &read("trading://accounts/acct-7/positions")).send();
    assert!(o.is_allowed(), "{o:?}");
    // `"arguments": null` is no arguments.
    let o = post(&mut vm, &t, &tools_call(json!({"name": "get_quote", "arguments": null}))).send();
    assert!(o.is_allowed(), "{o:?}");
    vm.assert_healthy();
}

#[test]
fn errors_after_the_id_was_read_carry_it() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let o = post(&mut vm, &t, &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {}})).send();
    assert_eq!(refused(&o, 400, -32602)["id"], 5);
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "get_quote", "arguments": {}, "_meta": meta()}});
    let o = post26(&mut vm, &t, &body, &[("mcp-name", "search_quotes")]).send();
    assert_eq!(refused(&o, 400, -32020)["id"], 3, "the SDK server itself answers -32020 under the id");
}

#[test]
fn batches_are_refused() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let one = call(json!(1), "get_quote", json!({}));
    for batch in [json!([one.clone()]), json!([one.clone(), call(json!(2), "delete_account", json!({}))]), json!([])] {
        let body = refused(&post(&mut vm, &t, &batch).send(), 400, -32600);
        assert_eq!(body["id"], Value::Null);
    }
    // Leading whitespace does not hide one; a broken one is still a batch.
    refused(&post_raw(&mut vm, &t, b" \n\t[{\"jsonrpc\":\"2.0\"}]", &[]).send(), 400, -32600);
    refused(&post_raw(&mut vm, &t, b"[{", &[]).send(), 400, -32600);
    assert_eq!(vm.last_filter_state().get("agent_iam.reason").map(Vec::as_slice), Some(&b"mcp_batch"[..]));
    vm.assert_healthy();
}

#[test]
fn stateless_headers_must_agree_with_the_body() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let quote = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "get_quote", "arguments": {"symbol": "ACME", "limit": 5, "live": true},
                                  "_meta": meta()}});
    let bytes = serde_json::to_vec(&quote).unwrap();
    // As the SDK sends it; the name in its base64 form (any value may be wrapped); parameter headers that
    // mirror arguments of the same name (numbers and booleans as JSON writes them, names without case).
    for extra in [
        vec![("mcp-name", "get_quote")],
        vec![("mcp-name", "=?base64?Z2V0X3F1b3Rl?=")],
        vec![("mcp-name", "get_quote"), ("Mcp-Param-Symbol", "ACME"), ("mcp-param-limit", "5")],
        vec![("mcp-name", "get_quote"), ("mcp-param-live", "true"), ("mcp-param-symbol", "=?base64?QUNNRQ==?=")],
        // A parameter header naming no argument comes from the tool schema's `x-mcp-header`, which the gateway
        // does not have: left to the server.
        vec![("mcp-name", "get_quote"), ("mcp-param-account", "acct-7")],
    ] {
        let o = post26(&mut vm, &t, &quote, &extra).send();
        forwarded(&o, &bytes);
    }
    let mismatches: [(&str, Vec<(&str, &str)>); 10] = [
        ("another name", vec![("mcp-name", "search_quotes")]),
        ("no name", vec![]),
        ("the name twice", vec![("mcp-name", "get_quote"), ("mcp-name", "get_quote")]),
        ("another name in base64", vec![("mcp-name", "=?base64?ZGVsZXRlX2FjY291bnQ=?=")]),
        ("base64 without its padding", vec![("mcp-name", "=?base64?Z2V0X3F1b3Rl?=x")]),
        ("unpadded base64", vec![("mcp-name", "=?base64?QUNNRQ?=")]),
        ("the URL alphabet", vec![("mcp-name", "get_quote"), ("mcp-param-symbol", "=?base64?-_-_?=")]),
        ("another argument value", vec![("mcp-name", "get_quote"), ("mcp-param-symbol", "EVIL")]),
        ("a number differently written", vec![("mcp-name", "get_quote"), ("mcp-param-limit", "5.0")]),
        ("the header form of a string", vec![("mcp-name", "get_quote"), ("mcp-param-live", "\"true\"")]),
    ];
    for (what, extra) in mismatches {
        let o = post26(&mut vm, &t, &quote, &extra).send();
        let (status, body) = local(&o);
        assert_eq!((status, &body["error"]["code"]), (400, &json!(-32020)), "{what}: {o:?}");
    }
    // Mcp-Method: another method, or none at all.
    let bytes = serde_json::to_vec(&quote).unwrap();
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list"), ("mcp-name", "get_quote")];
    refused(&post_raw(&mut vm, &t, &bytes, &headers).send(), 400, -32020);
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-name", "get_quote")];
    refused(&post_raw(&mut vm, &t, &bytes, &headers).send(), 400, -32020);
    // A method that names nothing must not carry Mcp-Name.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}});
    assert!(post26(&mut vm, &t, &list, &[]).send().is_allowed());
    refused(&post26(&mut vm, &t, &list, &[("mcp-name", "get_quote")]).send(), 400, -32020);
    // The body's own protocol version must be the header's.
    let mut other = meta();
    other["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": other}});
    refused(&post26(&mut vm, &t, &list, &[]).send(), 400, -32020);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": 20260728}}});
    refused(&post26(&mut vm, &t, &list, &[]).send(), 400, -32020);
    // Resources: Mcp-Name is the URI, verbatim or in base64.
    let read = json!({"jsonrpc": "2.0", "id": 8, "method": "resources/read",
                      "params": {"uri": "trading://accounts/acct-7/positions", "_meta": meta()}});
    let uri = "trading://accounts/acct-7/positions";
    assert!(post26(&mut vm, &t, &read, &[("mcp-name", uri)]).send().is_allowed());
    let b64 = "=?base64?dHJhZGluZzovL2FjY291bnRzL2FjY3QtNy9wb3NpdGlvbnM=?=";
    assert!(post26(&mut vm, &t, &read, &[("mcp-name", b64)]).send().is_allowed());
    refused(&post26(&mut vm, &t, &read, &[("mcp-name", "trading://accounts/acct-8/positions")]).send(), 400, -32020);
    // The reason is recorded.
    assert_eq!(vm.last_filter_state().get("agent_iam.reason").map(Vec::as_slice), Some(&b"mcp_header_mismatch"[..]));
    vm.assert_healthy();
}

#[test]
fn a_parameter_header_named_by_the_tool_schema_is_not_refused() {
    // mcp-wire.md §1/§2: server.py annotates place_order.account_id with "x-mcp-header": "AccountId", and the
    // SDK client sends `Mcp-Param-AccountId: acct-7` once it has listed the tool.
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let order = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "place_order",
        "arguments": {"account_id": "acct-7", "symbol": "ACME", "amount": 10}, "_meta": meta()}});
    let o = post26(&mut vm, &t, &order, &[("mcp-name", "place_order"), ("Mcp-Param-AccountId", "acct-7")]).send();
    forwarded(&o, &serde_json::to_vec(&order).unwrap());
}

#[test]
fn protocol_versions_the_endpoint_does_not_accept_are_refused() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    for version in ["2024-11-05", "2025-03-26", "2099-01-01", "latest", ""] {
        let o = post(&mut vm, &t, &list).header("mcp-protocol-version", version).send();
        let (status, body) = local(&o);
        assert_eq!((status, &body["error"]["code"]), (400, &json!(-32022)), "{version:?}: {o:?}");
    }
    // Sent twice.
    let o = post(&mut vm, &t, &list)
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-protocol-version", "2025-11-25")
        .send();
    refused(&o, 400, -32020);
    // The legacy revisions without the mirrored headers are fine, and so is `initialize` without any version.
    for version in ["2025-11-25", "2025-06-18"] {
        let o = post(&mut vm, &t, &list).header("mcp-protocol-version", version).send();
        forwarded(&o, &serde_json::to_vec(&list).unwrap());
    }
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "mcp", "version": "0.1.0"}}});
    assert!(post(&mut vm, &t, &init).send().is_allowed());
    // An endpoint of the stateless revision only: no header is no revision it accepts; a legacy one neither.
    let mut vm = start(&with_endpoint(json!({"revisions": ["2026-07-28"]})));
    refused(&post(&mut vm, &t, &list).send(), 400, -32022);
    refused(&post(&mut vm, &t, &list).header("mcp-protocol-version", "2025-11-25").send(), 400, -32022);
    let modern = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta()}});
    assert!(post26(&mut vm, &t, &modern, &[]).send().is_allowed());
    // And one of the legacy revisions only.
    let mut vm = start(&with_endpoint(json!({"revisions": ["2025-11-25"]})));
    refused(&post26(&mut vm, &t, &modern, &[]).send(), 400, -32022);
    refused(&post(&mut vm, &t, &list).header("mcp-protocol-version", "2025-06-18").send(), 400, -32022);
    assert!(post(&mut vm, &t, &list).header("mcp-protocol-version", "2025-11-25").send().is_allowed());
    vm.assert_healthy();
}

#[test]
fn lifecycle_messages_are_allowed_by_default_and_governed_by_rules_on_request() {
    let mut vm = start(&config());
    // A verified caller no rule mentions.
    let t = token("spiffe://elsewhere.example/agent/x", json!({}));
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "mcp", "version": "0.1.0"}}});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    let answer = json!({"jsonrpc": "2.0", "id": "srv-1", "result": {"action": "accept"}});
    for message in [&init, &initialized, &ping, &answer] {
        let o = post(&mut vm, &t, message).header("mcp-session-id", "8695414a0c2d4b6f9e1a3b5c7d9e0f12").send();
        forwarded(&o, &serde_json::to_vec(message).unwrap());
        assert_eq!(vm.last_filter_state().get("agent_iam.rule").map(Vec::as_slice), Some(&b"mcp-lifecycle"[..]));
    }
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}});
    assert!(post26(&mut vm, &t, &discover, &[]).send().is_allowed());
    // A client's response at 2026-07-28 (no server-initiated requests there) is not a message it may send.
    let answer26 = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": "srv-1", "result": {"_meta": meta()}})).unwrap();
    let o = post_raw(&mut vm, &t, &answer26, &[("mcp-protocol-version", "2026-07-28")]).send();
    assert_eq!(refused(&o, 400, -32600)["id"], "srv-1");
    // A request, not lifecycle, still needs a rule.
    refused(&post(&mut vm, &t, &call(json!(4), "get_quote", json!({}))).send(), 403, -31001);

    // `mcp_lifecycle: "rules"`: refused like anything no rule allows.
    let mut c = config();
    c["policy"]["mcp_lifecycle"] = json!("rules");
    let mut vm = start(&c);
    let body = refused(&post(&mut vm, &t, &init).send(), 403, -31001);
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["message"], "Forbidden: 'initialize' denied by policy");
    assert_eq!(body["error"]["data"]["reason"], Value::Null, "{body}");
    // A refused notification: 403 and nothing else (there is no id to answer under).
    let o = post(&mut vm, &t, &initialized).send();
    let Outcome::LocalResponse { status, headers, body, .. } = &o else { panic!("{o:?}") };
    assert_eq!(*status, 403);
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(body));
    assert!(!headers.iter().any(|(k, _)| k == "content-type"), "{headers:?}");
    assert_eq!(o.header("www-authenticate"), None, "{o:?}");
    // A rule can allow them again.
    c["policy"]["rules"].as_array_mut().unwrap().push(json!({"id": "handshake", "effect": "allow", "agents": ["*"],
        "mcp": {"methods": ["initialize", "notifications/*"]}}));
    let mut vm = start(&c);
    assert!(post(&mut vm, &t, &init).send().is_allowed());
    assert!(post(&mut vm, &t, &initialized).send().is_allowed());
    assert_eq!(vm.last_filter_state().get("agent_iam.rule").map(Vec::as_slice), Some(&b"handshake"[..]));
    refused(&post(&mut vm, &t, &ping).send(), 403, -31001);
    // Under the default, a deny rule still refuses a lifecycle message.
    let mut c = config();
    c["policy"]["rules"].as_array_mut().unwrap().push(json!({"id": "no-ping", "effect": "deny", "agents": ["*"],
        "mcp": {"methods": ["ping"]}}));
    let mut vm = start(&c);
    let body = refused(&post(&mut vm, &t, &ping).send(), 403, -31001);
    assert_eq!((&body["id"], &body["error"]["data"]["rule"]), (&json!(9), &json!("no-ping")));
    vm.assert_healthy();
}

#[test]
fn the_unknown_denial_mode_answers_as_if_nothing_were_there() {
    let mut vm = start(&with_endpoint(json!({"denial": "unknown"})));
    let reader = token(READER, json!({}));
    let o = post(&mut vm, &reader, &call(json!(12), "place_order", json!({"account_id": "acct-7"}))).send();
    let Outcome::LocalResponse { status, body, .. } = &o else { panic!("{o:?}") };
    assert_eq!(*status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(body).unwrap(),
        json!({"jsonrpc": "2.0", "id": 12, "error": {"code": -32602, "message": "Unknown tool: place_order"}})
    );
    assert_eq!(o.header("www-authenticate"), None);
    assert_eq!(o.header("content-type"), Some("application/json"));
    // Denied by a deny rule: the same answer, nothing says which rule.
    let o = post(&mut vm, &token(TRADER, json!({})), &call(json!("d"), "delete_account", json!({}))).send();
    assert_eq!(
        o.body_json(),
        json!({"jsonrpc": "2.0", "id": "d", "error": {"code": -32602, "message": "Unknown tool: delete_account"}})
    );
    // Resources and prompts likewise.
    let read = json!({"jsonrpc": "2.0", "id": 8, "method": "resources/read",
                      "params": {"uri": "trading://accounts/acct-7/positions"}});
    let body = refused(&post(&mut vm, &reader, &read).send(), 200, -32602);
    assert_eq!(body["error"]["message"], "Unknown resource: trading://accounts/acct-7/positions");
    let get = json!({"jsonrpc": "2.0", "id": 6, "method": "prompts/get", "params": {"name": "admin_report"}});
    let body = refused(&post(&mut vm, &reader, &get).send(), 200, -32602);
    assert_eq!(body["error"]["message"], "Unknown prompt: admin_report");
    // A method that names nothing is refused as usual; so is a bad token.
    let mut c = with_endpoint(json!({"denial": "unknown"}));
    c["policy"]["mcp_lifecycle"] = json!("rules");
    let mut vm = start(&c);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    refused(&post(&mut vm, &reader, &init).send(), 403, -31001);
    let o = post(&mut vm, &token(READER, json!({"aud": "other-api"})), &init).send();
    assert_eq!(local(&o).0, 401);
    vm.assert_healthy();
}

#[test]
fn a_missing_scope_is_a_step_up_challenge_with_a_json_rpc_body() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({"scope": "mcp:tools"}));
    let o = post(&mut vm, &t, &call(json!(21), "place_order", json!({"account_id": "acct-7", "amount": 10}))).send();
    let body = refused(&o, 403, -31001);
    assert_eq!(body["id"], 21);
    assert_eq!(body["error"]["message"], "Forbidden: tool 'place_order' denied by policy");
    assert_eq!(body["error"]["data"]["error"], "insufficient_scope");
    assert_eq!(body["error"]["data"]["error_description"], "the token lacks scope \"orders:write\"");
    assert_eq!(
        o.header_all("www-authenticate"),
        ["Bearer realm=\"trading-mcp\", error=\"insufficient_scope\", \
          error_description=\"the token lacks scope 'orders:write'\", scope=\"orders:write\", \
          resource_metadata=\"https://gw.trading.example/.well-known/oauth-protected-resource/mcp\""]
    );
    // With the scope the same call goes on.
    let t = token(TRADER, json!({}));
    assert!(
        post(&mut vm, &t, &call(json!(22), "place_order", json!({"account_id": "acct-7", "amount": 10})))
            .send()
            .is_allowed()
    );
    vm.assert_healthy();
}

#[test]
fn non_post_requests_to_mcp_endpoints() {
    let t = token(TRADER, json!({}));
    let get = |vm: &mut Vm, method: &str| {
        vm.request()
            .method(method)
            .path("/mcp")
            .authority("gw.trading.example")
            .header("authorization", &format!("Bearer {t}"))
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", "8695414a0c2d4b6f9e1a3b5c7d9e0f12")
            .send()
    };
    // Only the stateless revision: nothing but POST.
    let mut vm = start(&with_endpoint(json!({"revisions": ["2026-07-28"]})));
    for method in ["GET", "DELETE", "PUT"] {
        let o = get(&mut vm, method);
        let body = refused(&o, 405, -32600);
        assert_eq!(body["id"], Value::Null);
    }
    // Sessions: a GET stream and a DELETE carry no message; they are lifecycle traffic, allowed by default.
    let mut vm = start(&config());
    for method in ["GET", "DELETE"] {
        let o = get(&mut vm, method);
        assert!(o.is_allowed(), "{method}: {o:?}");
        assert_eq!(o.header("x-agent-iam-agent"), Some(TRADER));
    }
    // Their protocol version is checked like a POST's.
    let o = vm
        .request()
        .method("GET")
        .path("/mcp")
        .header("authorization", &format!("Bearer {t}"))
        .header("mcp-protocol-version", "2024-11-05")
        .send();
    refused(&o, 400, -32022);
    // Other methods are plain HTTP, decided by rules without `mcp` (none here: refused).
    assert_eq!(local(&get(&mut vm, "PUT")).0, 403);
    // Under `mcp_lifecycle: "rules"`, a rule must allow the session requests; one without `mcp` does.
    let mut c = config();
    c["policy"]["mcp_lifecycle"] = json!("rules");
    let mut vm = start(&c);
    assert_eq!(local(&get(&mut vm, "GET")).0, 403);
    c["policy"]["rules"].as_array_mut().unwrap().push(json!({"id": "sessions", "effect": "allow",
        "agents": ["spiffe://trading.example/*"], "methods": ["GET", "DELETE", "PUT"], "paths": ["/mcp"]}));
    let mut vm = start(&c);
    for method in ["GET", "DELETE", "PUT"] {
        let o = get(&mut vm, method);
        assert!(o.is_allowed(), "{method}: {o:?}");
        assert_eq!(o.header("x-agent-iam-rule"), Some("sessions"), "decided on the headers: the rule goes on");
    }
    // The endpoint's audience still applies.
    let o = vm
        .request()
        .method("GET")
        .path("/mcp")
        .header("authorization", &format!("Bearer {}", token(TRADER, json!({"aud": "other-api"}))))
        .send();
    assert_eq!(local(&o).0, 401);
    vm.assert_healthy();
}

#[test]
fn a_405_names_the_allowed_method() {
    let mut vm = start(&with_endpoint(json!({"revisions": ["2026-07-28"]})));
    let t = token(TRADER, json!({}));
    let o = vm.request().method("GET").path("/mcp").header("authorization", &format!("Bearer {t}")).send();
    assert_eq!(local(&o).0, 405);
    assert_eq!(o.header("allow"), Some("POST"));
}

#[test]
fn a_policy_denial_without_a_message_is_not_an_invalid_request() {
    let mut vm = start(&config());
    let t = token(TRADER, json!({}));
    let o = vm.request().method("PUT").path("/mcp").header("authorization", &format!("Bearer {t}")).send();
    let (status, body) = local(&o);
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], -31001, "{body}");
}
