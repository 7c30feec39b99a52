//! Limits through the real `.wasm` in the wasmtime host: counted across two VMs (two Envoy workers) in the
//! host's shared data, exact; the 429 with `Retry-After` and the `RateLimit` headers; the allowance coming
//! back with the host's clock; a JSON-RPC error on an MCP endpoint.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Outcome, Vm};
use agent_iam_tests::HOST;
use serde_json::{Value, json};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://idp.example";
const RESOURCE: &str = "https://gw.example/mcp";
const AGENT: &str = "spiffe://example.org/agent/reader";
const OTHER: &str = "spiffe://example.org/agent/writer";

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [7; 32]).unwrap());

/// A configuration whose limit ids carry `tag`: tests running at once in this process share the host's
/// shared data, so each counts under its own keys.
fn config(tag: &str) -> Value {
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["api", RESOURCE], "algorithms": ["ES256"],
                     "jwks": {"keys": [KEY.public_jwk(Some("k"))]}}],
        "mcp": {"endpoints": [{"paths": ["/mcp"], "resource": RESOURCE, "authorization_servers": [ISSUER]}]},
        "policy": {
            "rules": [
                {"id": "reads", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/records/**"]},
                {"id": "tools", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["search", "delete_*"]}}
            ],
            "limits": [
                {"id": format!("{tag}-reads"), "rules": ["reads"], "requests": 50, "window": "1m"},
                {"id": format!("{tag}-deletes"), "per": ["agent", "tool"], "tools": ["delete_*"], "requests": 2, "window": "1h"}
            ]
        }
    })
}

fn start(tag: &str) -> Vm {
    HOST.vm()
        .plugin_config(config(tag).to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn token(agent: &str, aud: &str) -> String {
    KEY.sign_jwt(Some("k"), &json!({"iss": ISSUER, "aud": aud, "sub": agent, "iat": NOW, "exp": NOW + 7200}))
}

fn read(vm: &mut Vm, agent: &str) -> Outcome {
    vm.request()
        .method("GET")
        .path("/records/1")
        .authority("api.example")
        .header("authorization", &format!("Bearer {}", token(agent, "api")))
        .send()
}

fn call_tool(vm: &mut Vm, agent: &str, tool: &str, id: u64) -> Outcome {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    vm.request()
        .method("POST")
        .path("/mcp")
        .authority("gw.example")
        .header("authorization", &format!("Bearer {}", token(agent, RESOURCE)))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
}

#[test]
fn two_workers_hammering_one_counter_let_exactly_the_limit_through() {
    let (mut first, mut second) = (start("exact"), start("exact"));
    let mut allowed = 0;
    for i in 0..80 {
        let vm = if i % 3 == 0 { &mut second } else { &mut first };
        match read(vm, AGENT).status() {
            None => allowed += 1,
            Some(429) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allowed, 50, "exactly the limit across both workers\n{}", first.logs_text());
    let refused = read(&mut first, AGENT);
    assert_eq!(refused.status(), Some(429));
    assert_eq!(refused.header("retry-after"), Some("2"), "one emission interval, 60 s / 50, rounded up");
    assert_eq!(refused.header("ratelimit-policy"), Some("\"exact-reads\";q=50;w=60"));
    assert_eq!(refused.header("ratelimit"), Some("\"exact-reads\";r=0;t=2"));
    assert_eq!(refused.body_json()["error"], "rate_limited");
    // Another agent has its own allowance.
    assert_eq!(read(&mut second, OTHER).status(), None);
    // The host's clock moves on: one interval later, one more request on either worker.
    for vm in [&mut first, &mut second] {
        vm.advance_clock(Duration::from_millis(1200));
    }
    assert_eq!(read(&mut second, AGENT).status(), None);
    assert_eq!(read(&mut first, AGENT).status(), Some(429));
}

#[test]
fn an_mcp_call_over_its_limit_gets_a_json_rpc_error_with_its_id() {
    let mut vm = start("mcp");
    for id in 1..=2 {
        let o = call_tool(&mut vm, AGENT, "delete_row", id);
        assert!(o.is_allowed(), "{:?}\n{}", o.status(), vm.logs_text());
    }
    let o = call_tool(&mut vm, AGENT, "delete_row", 3);
    assert_eq!(o.status(), Some(429), "{}", vm.logs_text());
    let body = o.body_json();
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["code"], -31002);
    assert_eq!(o.header("ratelimit-policy"), Some("\"mcp-deletes\";q=2;w=3600"));
    assert!(o.header("retry-after").is_some());
    // Counted per tool: another delete tool, and the search tool, are not limited by this one.
    assert!(call_tool(&mut vm, AGENT, "delete_table", 4).is_allowed());
    assert!(call_tool(&mut vm, AGENT, "search", 5).is_allowed());
}
