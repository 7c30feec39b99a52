//! MCP requests whose headers wait for the decision on their body, through the real `.wasm` in the wasmtime
//! host run as Envoy with `allow_on_headers_stop_iteration` (the Wasm `PluginConfig` setting of Envoy 1.35 and
//! later): with `mcp.hold_headers` a refused call never reaches the upstream at all; without it the host hands
//! the plugin the body of a request held for a key set, which the plugin must keep back and decide on.
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

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [3; 32]).unwrap());

/// An MCP endpoint with `hold_headers`, keys inline.
fn config(hold_headers: bool) -> Value {
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": [RESOURCE], "algorithms": ["ES256"],
                     "jwks": {"keys": [KEY.public_jwk(Some("k"))]}}],
        "forward": {"filter_state": true},
        "mcp": {"hold_headers": hold_headers, "endpoints": [{
            "paths": ["/mcp"], "resource": RESOURCE, "authorization_servers": [ISSUER], "max_body_bytes": 4096
        }]},
        "policy": {"rules": [
            {"id": "quotes", "effect": "allow", "agents": [TRADER], "mcp": {"tools": ["get_quote"]}},
            {"id": "orders", "effect": "allow", "agents": [TRADER], "mcp": {"tools": ["place_order"]},
             "when": {"arguments": {"account_id": {"equals": {"claim": "account_id"}}}}}
        ]}
    })
}

/// The same endpoint with its keys fetched from a cluster (requests before the first answer wait for it).
fn remote_config(hold_headers: bool) -> Value {
    let mut c = config(hold_headers);
    c["issuers"][0].as_object_mut().unwrap().remove("jwks");
    c["issuers"][0]["remote_jwks"] = json!({"cluster": "idp", "path": "/jwks", "authority": "idp.example",
                                             "wait_timeout_ms": 2000});
    c
}

fn start(config: &Value, headers_stop_iteration: bool) -> Vm {
    HOST.vm()
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .clusters(["idp"])
        .headers_stop_iteration(headers_stop_iteration)
        .plugin_config(serde_json::to_vec(config).unwrap())
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn token() -> String {
    KEY.sign_jwt(
        Some("k"),
        &json!({"iss": ISSUER, "sub": TRADER, "aud": RESOURCE, "iat": NOW, "exp": NOW + 600, "account_id": "acct-7"}),
    )
}

fn post<'a>(vm: &'a mut Vm, body: &[u8]) -> RequestBuilder<'a> {
    vm.request()
        .method("POST")
        .path("/mcp")
        .authority("gw.trading.example")
        .header("authorization", &format!("Bearer {}", token()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
}

fn call(tool: &str, arguments: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                               "params": {"name": tool, "arguments": arguments}}))
    .unwrap()
}

#[track_caller]
fn forwarded(o: &Outcome, body: &[u8]) {
    let Outcome::Continued { forwarded_body, .. } = o else { panic!("not forwarded: {o:?}") };
    assert_eq!(String::from_utf8_lossy(forwarded_body), String::from_utf8_lossy(body));
    assert_eq!(o.header("x-agent-iam-agent"), Some(TRADER));
}

#[track_caller]
fn refused(o: &Outcome, status: u16, code: i64) {
    let Outcome::LocalResponse { status: got, body, .. } = o else { panic!("not answered locally: {o:?}") };
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    assert_eq!((*got, body["error"]["code"].as_i64()), (status, Some(code)), "{o:?}");
}

#[test]
fn held_headers_go_on_with_the_body_once_it_is_allowed() {
    let mut vm = start(&config(true), true);
    let allowed = call("place_order", json!({"account_id": "acct-7", "amount": 10}));
    forwarded(&post(&mut vm, &allowed).send(), &allowed);
    // Split anywhere, trickled byte by byte: still one decision on the whole body.
    forwarded(&post(&mut vm, &allowed).body_chunks(&[5, 1, 17]).send(), &allowed);
    forwarded(&post(&mut vm, &allowed).body_chunks(&vec![1; allowed.len()]).send(), &allowed);
    assert_eq!(vm.last_filter_state().get("agent_iam.rule").map(Vec::as_slice), Some(&b"orders"[..]));
    // Refusals: another account, a tool no rule allows, a body over the cap, a body that is not JSON.
    refused(&post(&mut vm, &call("place_order", json!({"account_id": "acct-8"}))).send(), 403, -31001);
    refused(&post(&mut vm, &call("delete_account", json!({}))).body_chunks(&[3]).send(), 403, -31001);
    let big = call("get_quote", json!({"symbol": "A".repeat(5000)}));
    refused(&post(&mut vm, &big).body_chunks(&[1000; 4]).send(), 413, -32600);
    refused(&post(&mut vm, b"{\"jsonrpc\":").send(), 400, -32700);
    vm.assert_healthy();
}

#[test]
fn in_dry_run_a_held_request_refused_on_its_body_is_forwarded_marked() {
    let mut c = config(true);
    c["mode"] = json!("dry_run");
    let mut vm = start(&c, true);
    let body = call("delete_account", json!({}));
    let o = post(&mut vm, &body).send();
    forwarded(&o, &body);
    // The headers waited, so the mark could still be added (headers that went on cannot carry it).
    assert!(o.header("x-agent-iam-dry-run").is_some_and(|m| m.starts_with("403 ")), "{o:?}");
    let mut c = config(false);
    c["mode"] = json!("dry_run");
    let mut vm = start(&c, true);
    let o = post(&mut vm, &body).send();
    forwarded(&o, &body);
    assert_eq!(o.header("x-agent-iam-dry-run"), None, "{o:?}");
}

#[test]
fn held_headers_without_the_host_setting_never_reach_the_upstream() {
    // A misconfiguration fails closed: Envoy without `allow_on_headers_stop_iteration` stops everything on the
    // plugin's StopIteration and never hands it the body, so the request waits until Envoy's timeouts end it.
    let mut vm = start(&config(true), false);
    let o = post(&mut vm, &call("get_quote", json!({"symbol": "ACME"}))).send();
    let Outcome::Paused(pending) = o else { panic!("expected the request to wait: {o:?}") };
    assert!(matches!(vm.abort(pending), Outcome::LocalResponse { status: 0, .. }));
    // The default (headers on at once, the body decided as it ends) works with either host setting.
    let mut vm = start(&config(false), false);
    let body = call("get_quote", json!({"symbol": "ACME"}));
    forwarded(&post(&mut vm, &body).send(), &body);
}

/// A request that arrives before the key set waits for it; a host that hands the plugin the body meanwhile
/// would let that body go on unseen when the request resumes, unless the plugin kept it and decides on it.
#[test]
fn a_body_that_came_while_the_request_waited_for_keys_is_decided_on() {
    for hold_headers in [false, true] {
        let mut vm = start(&remote_config(hold_headers), true);
        let fetch = vm.pending_callouts().into_iter().next().expect("the key set is fetched at start");
        let allowed = call("place_order", json!({"account_id": "acct-7"}));
        let forbidden = call("place_order", json!({"account_id": "acct-8"}));
        let big = call("get_quote", json!({"symbol": "A".repeat(5000)}));
        let mut waiting = Vec::new();
        for body in [&allowed, &forbidden, &big] {
            match post(&mut vm, body).body_chunks(&[9]).send() {
                Outcome::Paused(p) => waiting.push(p),
                other => panic!("expected the request to wait for keys: {other:?}\n{}", vm.logs_text()),
            }
        }
        let keys = json!({"keys": [KEY.public_jwk(Some("k"))]}).to_string();
        vm.respond(fetch.token, 200, &[("content-type", "application/json")], keys.as_bytes());
        let mut outcomes = waiting.into_iter().map(|p| vm.resume(p));
        forwarded(&outcomes.next().unwrap(), &allowed);
        refused(&outcomes.next().unwrap(), 403, -31001);
        refused(&outcomes.next().unwrap(), 413, -32600);
        vm.assert_healthy();
    }
}

#[test]
fn hold_headers_must_be_a_boolean_and_a_refused_configuration_changes_nothing() {
    let mut vm = start(&config(false), true);
    let mut bad = config(false);
    bad["mcp"]["hold_headers"] = json!("yes");
    assert!(!vm.configure(bad.to_string().as_bytes()), "accepted: {bad}");
    assert!(vm.logs_text().contains("agent-iam: configuration rejected: mcp.hold_headers"), "{}", vm.logs_text());
    // The last good configuration (headers on at once) keeps deciding.
    let body = call("get_quote", json!({"symbol": "ACME"}));
    forwarded(&post(&mut vm, &body).send(), &body);
}
