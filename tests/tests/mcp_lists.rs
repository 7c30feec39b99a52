//! MCP through the real `.wasm` in the wasmtime host, after the decision: list responses (prompts,
//! resources, resource templates; JSON and event streams split anywhere) filtered per caller, dry-run mode,
//! a request held for its issuer's keys and then decided on its body, the MCP counters, and the protected
//! resource metadata of one endpoint and of two. The request side is in `mcp.rs`.
//!
//! Build the plugin first: `cargo build -p agent-iam --target wasm32-wasip1 --release`.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Host, Outcome, RequestBuilder, Vm};
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
        "issuers": [{"issuer": ISSUER, "audiences": [RESOURCE], "algorithms": ["ES256"],
                     "jwks": {"keys": [KEY.public_jwk(Some("k"))]}}],
        "forward": {"filter_state": true},
        "mcp": {"endpoints": [{"paths": ["/mcp"], "resource": RESOURCE, "authorization_servers": [ISSUER]}]},
        "policy": {"rules": [
            {"id": "lists", "effect": "allow", "agents": ["*"], "mcp": {"methods": ["*/list"]}},
            {"id": "quotes", "effect": "allow", "agents": ["spiffe://trading.example/*"], "mcp": {"tools": ["get_quote"]}},
            {"id": "orders", "effect": "allow", "agents": [TRADER], "mcp": {"tools": ["place_order"]},
             "when": {"arguments": {"account_id": {"equals": {"claim": "account_id"}}}}},
            {"id": "summaries", "effect": "allow", "agents": ["*"], "mcp": {"prompts": ["summarise_*"]}},
            {"id": "positions", "effect": "allow", "agents": [TRADER], "mcp": {"resources": ["trading://accounts/{account}/positions"]},
             "when": {"resource": {"account": {"equals": {"claim": "account_id"}}}}},
            {"id": "market", "effect": "allow", "agents": ["*"], "mcp": {"resources": ["trading://market/**"]}}
        ]}
    })
}

fn start_on(host: &Host, config: &Value) -> Vm {
    let vm = host
        .vm()
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .clusters(["idp"])
        .plugin_config(serde_json::to_vec(config).unwrap())
        .start()
        .unwrap();
    vm.assert_healthy();
    vm
}

fn start(config: &Value) -> Vm {
    start_on(&HOST, config)
}

fn token(sub: &str) -> String {
    KEY.sign_jwt(
        Some("k"),
        &json!({"iss": ISSUER, "sub": sub, "aud": RESOURCE, "iat": NOW, "exp": NOW + 600, "account_id": "acct-7"}),
    )
}

fn post<'a>(vm: &'a mut Vm, token: &str, body: &Value) -> RequestBuilder<'a> {
    vm.request()
        .method("POST")
        .path("/mcp")
        .authority("gw.trading.example")
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(serde_json::to_vec(body).unwrap())
}

fn request(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method})
}

/// The response as it left the plugin: status, headers, body.
#[track_caller]
fn response(o: &Outcome) -> (u16, &[(String, String)], &[u8]) {
    let Outcome::Continued { response: (status, headers, body), .. } = o else { panic!("not forwarded: {o:?}") };
    (*status, headers, body)
}

/// A JSON list answer of `upstream` to `call`, for `token`; the body the client got.
fn listed(vm: &mut Vm, token: &str, call: &Value, upstream: &Value) -> Value {
    let o = post(vm, token, call)
        .upstream_response(200, &[("content-type", "application/json")])
        .upstream_body(serde_json::to_vec(upstream).unwrap())
        .send();
    serde_json::from_slice(response(&o).2).unwrap()
}

fn keys(list: &Value, array: &str, key: &str) -> Vec<String> {
    list["result"][array].as_array().unwrap().iter().map(|e| e[key].as_str().unwrap().to_owned()).collect()
}

#[test]
fn prompts_resources_and_templates_are_filtered_by_what_the_caller_may_use() {
    let mut vm = start(&config());
    let (trader, reader) = (token(TRADER), token(READER));
    let prompts = json!({"jsonrpc": "2.0", "id": 5, "result": {"prompts": [
        {"name": "summarise_portfolio", "arguments": [{"name": "account_id", "required": true}]},
        {"name": "admin_report"},
        {"name": "summarise_market", "description": "x"}
    ]}});
    let list = listed(&mut vm, &reader, &request(5, "prompts/list"), &prompts);
    assert_eq!(keys(&list, "prompts", "name"), ["summarise_portfolio", "summarise_market"]);
    assert_eq!(list["result"]["prompts"][0], prompts["result"]["prompts"][0], "entries kept whole");

    let resources = json!({"jsonrpc": "2.0", "id": 6, "result": {"resources": [
        {"uri": "trading://accounts/acct-7/positions", "name": "positions-7", "mimeType": "application/json"},
        {"uri": "trading://market/status", "name": "status"},
        {"uri": "trading://admin/audit", "name": "audit"}
    ], "nextCursor": "c2"}});
    let list = listed(&mut vm, &reader, &request(6, "resources/list"), &resources);
    assert_eq!(keys(&list, "resources", "uri"), ["trading://market/status"]);
    assert_eq!(list["result"]["nextCursor"], "c2");
    let list = listed(&mut vm, &trader, &request(6, "resources/list"), &resources);
    assert_eq!(keys(&list, "resources", "uri"), ["trading://accounts/acct-7/positions", "trading://market/status"]);

    let templates = json!({"jsonrpc": "2.0", "id": 7, "result": {"resourceTemplates": [
        {"uriTemplate": "trading://accounts/{account}/positions", "name": "positions"},
        {"uriTemplate": "trading://market/{symbol}", "name": "market"},
        {"uriTemplate": "trading://admin/{report}", "name": "admin"}
    ]}});
    let list = listed(&mut vm, &reader, &request(7, "resources/templates/list"), &templates);
    assert_eq!(keys(&list, "resourceTemplates", "uriTemplate"), ["trading://market/{symbol}"]);
    let list = listed(&mut vm, &trader, &request(7, "resources/templates/list"), &templates);
    assert_eq!(
        keys(&list, "resourceTemplates", "uriTemplate"),
        ["trading://accounts/{account}/positions", "trading://market/{symbol}"]
    );
    vm.assert_healthy();
}

#[test]
fn a_listed_resource_uri_is_decided_with_its_conditions() {
    let mut vm = start(&config());
    let resources = json!({"jsonrpc": "2.0", "id": 6, "result": {"resources": [
        {"uri": "trading://accounts/acct-7/positions", "name": "mine"},
        {"uri": "trading://accounts/acct-8/positions", "name": "someone else's"}
    ]}});
    // Reading acct-8 is refused to the trader (account_id acct-7); listing it says it exists.
    let read = json!({"jsonrpc": "2.0", "id": 9, "method": "resources/read",
                      "params": {"uri": "trading://accounts/acct-8/positions"}});
    assert_eq!(post(&mut vm, &token(TRADER), &read).send().status(), Some(403));
    let list = listed(&mut vm, &token(TRADER), &request(6, "resources/list"), &resources);
    assert_eq!(keys(&list, "resources", "uri"), ["trading://accounts/acct-7/positions"]);
}

#[test]
fn a_list_the_plugin_cannot_read_is_replaced_by_an_error_under_the_request_id() {
    let mut vm = start(&config());
    let reader = token(READER);
    let bad = [
        json!({"jsonrpc": "2.0", "id": 5, "result": {"prompts": [{"name": "summarise_x"}, {"description": "no name"}]}}),
        json!({"jsonrpc": "2.0", "id": 5, "result": {"prompts": [{"name": 7}]}}),
        json!({"jsonrpc": "2.0", "id": 5, "result": {"prompts": ["summarise_x"]}}),
        json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": []}}),
        json!({"jsonrpc": "2.0", "id": 5, "result": []}),
    ];
    for upstream in bad {
        let list = listed(&mut vm, &reader, &request(5, "prompts/list"), &upstream);
        assert_eq!(list["id"], 5, "{upstream}");
        assert_eq!(list["error"]["code"], -32603, "{upstream}");
        assert!(list.get("result").is_none());
    }
    // A duplicate member could hide an entry from one reader of two: refused too.
    let dup = br#"{"jsonrpc":"2.0","id":"p","result":{"prompts":[{"name":"summarise_x"}],"prompts":[{"name":"admin_report"}]}}"#;
    let o = post(&mut vm, &reader, &json!({"jsonrpc": "2.0", "id": "p", "method": "prompts/list"}))
        .upstream_response(200, &[("content-type", "application/json; charset=utf-8")])
        .upstream_body(dup)
        .send();
    let body: Value = serde_json::from_slice(response(&o).2).unwrap();
    assert_eq!((&body["id"], &body["error"]["code"]), (&json!("p"), &json!(-32603)));
    assert!(!String::from_utf8_lossy(response(&o).2).contains("admin_report"));
    vm.assert_healthy();
}

#[test]
fn an_error_response_and_an_unfiltered_list_pass_byte_for_byte() {
    let mut vm = start(&config());
    let reader = token(READER);
    let error = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"Internal server error"}}"#;
    let o = post(&mut vm, &reader, &request(5, "prompts/list"))
        .upstream_response(200, &[("content-type", "application/json"), ("content-length", "83")])
        .upstream_body(error)
        .send();
    assert_eq!(response(&o).2, error);
    // Nothing to remove, legacy revision: unchanged, member order and spacing kept.
    let list = b"{ \"jsonrpc\": \"2.0\", \"id\": 5, \"result\": {\"prompts\": [{\"name\": \"summarise_portfolio\"}], \"z\": 123456789012345678901234567890 } }";
    let o = post(&mut vm, &reader, &request(5, "prompts/list"))
        .upstream_response(200, &[("content-type", "application/json")])
        .upstream_body(list)
        .send();
    let (status, _, body) = response(&o);
    assert_eq!((status, body), (200, &list[..]));
    // An upstream error status with a plain body passes as it is.
    let o = post(&mut vm, &reader, &request(5, "prompts/list"))
        .upstream_response(503, &[("content-type", "text/plain")])
        .upstream_body("upstream connect error")
        .send();
    assert_eq!(
        response(&o),
        (503, &[("content-type".to_owned(), "text/plain".to_owned())][..], &b"upstream connect error"[..])
    );
    vm.assert_healthy();
}

/// The SSE frames of a body, decoded: the JSON of each `data:` line.
fn events(body: &[u8]) -> Vec<Value> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data:").map(|d| serde_json::from_str(d.trim()).unwrap()))
        .collect()
}

#[test]
fn an_event_stream_is_filtered_however_it_is_split_and_whatever_comes_first() {
    let mut vm = start(&config());
    let reader = token(READER);
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": "t1", "progress": 1, "total": 2}});
    let answer = json!({"jsonrpc": "2.0", "id": 5, "result": {"prompts": [
        {"name": "admin_report"}, {"name": "summarise_portfolio"}]}});
    let sse = format!(
        ": keepalive\r\n\r\nevent: message\r\ndata: {progress}\r\n\r\nevent: message\r\ndata: {answer}\r\n\r\n"
    );
    let call = request(5, "prompts/list");
    let check = |o: &Outcome, how: &str| {
        let (status, headers, body) = response(o);
        assert_eq!(status, 200);
        assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "text/event-stream"), "{headers:?}");
        let events = events(body);
        assert_eq!(events.len(), 2, "{how}: {}", String::from_utf8_lossy(body));
        assert_eq!(events[0], progress, "{how}");
        assert_eq!(events[1]["id"], 5, "{how}");
        assert_eq!(keys(&events[1], "prompts", "name"), ["summarise_portfolio"], "{how}");
        assert!(!String::from_utf8_lossy(body).contains("admin_report"), "{how}");
    };
    // Split in two at every byte.
    for at in 1..sse.len() {
        let o = post(&mut vm, &reader, &call)
            .upstream_response(200, &[("content-type", "text/event-stream")])
            .upstream_body(&sse)
            .upstream_body_chunks(&[at])
            .send();
        check(&o, &format!("split at {at}"));
    }
    // In three, around every line end.
    for (at, _) in sse.match_indices("\r\n") {
        let o = post(&mut vm, &reader, &call)
            .upstream_response(200, &[("content-type", "text/event-stream")])
            .upstream_body(&sse)
            .upstream_body_chunks(&[at, 1])
            .send();
        check(&o, &format!("split at {at} and {}", at + 1));
    }
    // LF line ends, one event per chunk, as another server frames them.
    let lf = sse.replace("\r\n", "\n");
    let first = lf.find("\n\n").unwrap() + 2;
    let o = post(&mut vm, &reader, &call)
        .upstream_response(200, &[("content-type", "text/event-stream")])
        .upstream_body(&lf)
        .upstream_body_chunks(&[first])
        .send();
    check(&o, "LF");
    vm.assert_healthy();
}

#[test]
fn a_bad_event_ends_the_stream_with_an_error_event() {
    let mut vm = start(&config());
    let sse = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"prompts\":[{\"title\":\"no name\"}]}}\r\n\r\nevent: message\r\ndata: {\"later\":1}\r\n\r\n";
    let o = post(&mut vm, &token(READER), &request(5, "prompts/list"))
        .upstream_response(200, &[("content-type", "text/event-stream")])
        .upstream_body(sse)
        .upstream_body_chunks(&[sse.find("event: message\r\ndata: {\"later").unwrap()])
        .send();
    let events = events(response(&o).2);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((&events[0]["id"], &events[0]["error"]["code"]), (&json!(5), &json!(-32603)));
    vm.assert_healthy();
}

#[test]
fn the_stateless_revision_marks_a_filtered_list_private() {
    let mut vm = start(&config());
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "0.1.0"},
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/list", "params": {"_meta": meta}});
    let send = |vm: &mut Vm, upstream: &str| -> Vec<u8> {
        let o = post(vm, &token(READER), &call)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "prompts/list")
            .upstream_response(200, &[("content-type", "application/json"), ("content-length", "9")])
            .upstream_body(upstream)
            .send();
        let (_, headers, body) = response(&o);
        assert!(!headers.iter().any(|(k, _)| k == "content-length"), "{headers:?}");
        body.to_vec()
    };
    // The SDK's shape: already private; an entry removed, the rest byte for byte.
    let sdk = r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","prompts":[{"name":"admin_report"},{"name":"summarise_portfolio"}],"resultType":"complete","ttlMs":0,"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"trading"}}}}"#;
    let got = send(&mut vm, sdk);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","prompts":[{"name":"summarise_portfolio"}],"resultType":"complete","ttlMs":0,"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"trading"}}}}"#
    );
    // A public answer is made private, even when nothing is removed.
    let public = r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"summarise_portfolio"}],"cacheScope":"public","ttlMs":60000}}"#;
    let got: Value = serde_json::from_slice(&send(&mut vm, public)).unwrap();
    assert_eq!(got["result"]["cacheScope"], "private");
    assert_eq!(got["result"]["ttlMs"], 60000);
    // None at all: added.
    let none = r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"summarise_portfolio"}]}}"#;
    let got: Value = serde_json::from_slice(&send(&mut vm, none)).unwrap();
    assert_eq!(got["result"], json!({"cacheScope": "private", "prompts": [{"name": "summarise_portfolio"}]}));
    // The legacy revisions have no cacheScope: none is added.
    let o = post(&mut vm, &token(READER), &request(1, "prompts/list"))
        .header("mcp-protocol-version", "2025-11-25")
        .upstream_response(200, &[("content-type", "application/json")])
        .upstream_body(none)
        .send();
    assert_eq!(response(&o).2, none.as_bytes());
    vm.assert_healthy();
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

fn state<'v>(vm: &'v Vm, key: &str) -> Option<&'v str> {
    vm.last_filter_state().get(key).map(|v| std::str::from_utf8(v).unwrap())
}

#[test]
fn dry_run_forwards_what_enforcement_would_refuse_and_says_so() {
    let mut c = config();
    c["mode"] = json!("dry_run");
    let mut vm = start(&c);
    let refused = call(3, "place_order", json!({"account_id": "acct-7", "amount": 10}));
    let o = post(&mut vm, &token(READER), &refused).send();
    let Outcome::Continued { forwarded_body, request_headers, .. } = &o else { panic!("{o:?}") };
    assert_eq!(forwarded_body, &serde_json::to_vec(&refused).unwrap());
    // The headers left before the body was read: verified identity, no dry-run mark.
    assert_eq!(o.header("x-agent-iam-agent"), Some(READER));
    assert!(!request_headers.iter().any(|(k, _)| k == "x-agent-iam-dry-run"), "{request_headers:?}");
    assert_eq!(state(&vm, "agent_iam.decision"), Some("dry_run_deny"));
    assert_eq!(state(&vm, "agent_iam.reason"), Some("no_rule_allows"));
    let logs = vm.logs_text();
    assert!(logs.contains("agent-iam: dry run: forwarding an MCP request enforcement would answer 403"), "{logs}");
    // A malformed body too.
    let o = vm
        .request()
        .method("POST")
        .path("/mcp")
        .header("authorization", &format!("Bearer {}", token(READER)))
        .body(b"[{\"jsonrpc\":\"2.0\"}]")
        .send();
    let Outcome::Continued { forwarded_body, .. } = &o else { panic!("{o:?}") };
    assert_eq!(forwarded_body, b"[{\"jsonrpc\":\"2.0\"}]");
    assert_eq!(state(&vm, "agent_iam.reason"), Some("mcp_batch"));
    // What is allowed is allowed.
    let o = post(&mut vm, &token(READER), &call(4, "get_quote", json!({}))).send();
    assert!(o.is_allowed());
    assert_eq!(state(&vm, "agent_iam.decision"), Some("allow"));
    vm.assert_healthy();
}

#[test]
fn a_post_held_for_its_issuers_keys_is_decided_on_its_body_when_they_arrive() {
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut c = config();
    c["issuers"][0].as_object_mut().unwrap().remove("jwks");
    c["issuers"][0]["remote_jwks"] = json!({"cluster": "idp", "path": "/.well-known/jwks.json", "authority": "idp.trading.example",
               "wait_timeout_ms": 2000});
    let mut vm = start_on(&host, &c);
    let callouts = vm.pending_callouts();
    assert_eq!(callouts.len(), 1, "{callouts:?}");
    let allowed = call(1, "get_quote", json!({"symbol": "ACME"}));
    let Outcome::Paused(first) = post(&mut vm, &token(READER), &allowed).send() else { panic!("not held") };
    let refused = call(2, "place_order", json!({"account_id": "acct-7"}));
    let Outcome::Paused(second) = post(&mut vm, &token(READER), &refused).body_chunks(&[10, 10]).send() else {
        panic!("not held")
    };
    let jwks = json!({"keys": [KEY.public_jwk(Some("k"))]}).to_string();
    vm.respond(callouts[0].token, 200, &[("content-type", "application/json")], jwks.as_bytes());
    let o = vm.resume(first);
    let Outcome::Continued { forwarded_body, .. } = &o else { panic!("{o:?}\n{}", vm.logs_text()) };
    assert_eq!(forwarded_body, &serde_json::to_vec(&allowed).unwrap());
    assert_eq!(o.header("x-agent-iam-agent"), Some(READER));
    let o = vm.resume(second);
    let Outcome::LocalResponse { status, body, .. } = &o else { panic!("{o:?}") };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!((*status, &body["id"], &body["error"]["code"]), (403, &json!(2), &json!(-31001)));
    vm.assert_healthy();
}

#[test]
fn mcp_decisions_are_counted_by_method() {
    // Counters are shared by a host's VMs: a host of its own.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut vm = start_on(&host, &config());
    let reader = token(READER);
    for id in 0..3 {
        assert!(post(&mut vm, &reader, &call(id, "get_quote", json!({}))).send().is_allowed());
    }
    for id in 0..2 {
        assert_eq!(post(&mut vm, &reader, &call(id, "place_order", json!({}))).send().status(), Some(403));
    }
    assert!(post(&mut vm, &reader, &request(9, "tools/list")).send().is_allowed());
    // A body that never became a message is counted as a denial, under no method.
    assert_eq!(post(&mut vm, &reader, &json!([1])).send().status(), Some(400));
    vm.tick();
    let m = |name: &str| vm.metric(name).unwrap_or_else(|| panic!("no metric {name}: {:?}", host.metrics()));
    assert_eq!(m("agent_iam.mcp.tools_call.allow"), 3);
    assert_eq!(m("agent_iam.mcp.tools_call.deny"), 2);
    assert_eq!(m("agent_iam.mcp.tools_list.allow"), 1);
    assert_eq!(m("agent_iam.decision.allow"), 4);
    assert_eq!(m("agent_iam.decision.deny"), 3);
    assert_eq!(m("agent_iam.denied.mcp_batch"), 1);
    assert_eq!(m("agent_iam.rule.quotes.allow"), 3);
    vm.assert_healthy();
}

#[test]
fn protected_resource_metadata_for_one_endpoint_and_for_two() {
    let get = |vm: &mut Vm, path: &str| vm.request().method("GET").path(path).authority("gw.trading.example").send();
    let mut vm = start(&config());
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let o = get(&mut vm, path);
        let Outcome::LocalResponse { status, body, .. } = &o else { panic!("{o:?}") };
        assert_eq!(*status, 200, "{path}");
        assert_eq!(o.header("content-type"), Some("application/json"));
        assert_eq!(
            serde_json::from_slice::<Value>(body).unwrap(),
            json!({"resource": RESOURCE, "authorization_servers": [ISSUER], "bearer_methods_supported": ["header"]})
        );
    }
    // Only GET is answered.
    let o = vm.request().method("POST").path("/.well-known/oauth-protected-resource/mcp").send();
    assert_eq!(o.status(), Some(401));

    let mut c = config();
    c["issuers"][0]["audiences"] = json!([RESOURCE, "https://gw.trading.example/admin/mcp"]);
    c["mcp"]["endpoints"].as_array_mut().unwrap().push(json!({
        "paths": ["/admin/mcp"], "resource": "https://gw.trading.example/admin/mcp",
        "authorization_servers": ["https://idp.admin.example"], "scopes_supported": ["admin"],
        "resource_name": "Admin", "resource_documentation": "https://docs.trading.example/admin"}));
    let mut vm = start(&c);
    let o = get(&mut vm, "/.well-known/oauth-protected-resource/mcp");
    assert_eq!(o.body_json()["resource"], RESOURCE);
    let o = get(&mut vm, "/.well-known/oauth-protected-resource/admin/mcp?x=1");
    assert_eq!(
        o.body_json(),
        json!({"resource": "https://gw.trading.example/admin/mcp", "authorization_servers": ["https://idp.admin.example"],
               "bearer_methods_supported": ["header"], "scopes_supported": ["admin"], "resource_name": "Admin",
               "resource_documentation": "https://docs.trading.example/admin"})
    );
    // The root form is ambiguous with two: not served (decided as any request: no token, 401).
    let o = get(&mut vm, "/.well-known/oauth-protected-resource");
    assert_eq!(o.status(), Some(401), "{o:?}");
    // Each endpoint's challenge names its own metadata.
    let o = vm.request().method("POST").path("/admin/mcp").body(b"{}").send();
    assert!(
        o.header("www-authenticate").unwrap().ends_with(
            "resource_metadata=\"https://gw.trading.example/.well-known/oauth-protected-resource/admin/mcp\""
        ),
        "{o:?}"
    );
    vm.assert_healthy();
}
