//! The decision on an MCP body from what the decision at the headers left (`Engine::decide_body`) against the
//! same decision made afresh (`Engine::decide_with_body`): equal verdicts for every kind of body, in both modes,
//! and a token revoked or expired between the headers and the end of the body refused as afresh.

use super::*;
use crate::revocation::{Closed, Facts, RevocationSet, Selector};

fn mcp_engine(mode: &str) -> (SigningKey, Engine) {
    engine_with(json!({
        "mode": mode,
        "issuers": [{"issuer": "https://issuer.example", "audiences": ["https://gw.example/mcp"], "algorithms": ["ES256"],
                     "jwks": {"keys": [SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap().public_jwk(Some("k1"))]}}],
        "mcp": {"endpoints": [{"paths": ["/mcp"], "resource": "https://gw.example/mcp",
                               "authorization_servers": ["https://issuer.example"], "max_body_bytes": 1024}]},
        "policy": {"rules": [
            {"id": "quotes", "effect": "allow", "agents": [TRADER], "mcp": {"tools": ["get_quote"]}},
            {"id": "orders", "effect": "allow", "agents": [TRADER], "scopes": ["orders:write"], "mcp": {"tools": ["place_order"]},
             "when": {"arguments": {"account_id": {"equals": {"claim": "account_id"}}}}},
            {"id": "no-delete", "effect": "deny", "agents": ["*"], "mcp": {"tools": ["delete_*"]}}
        ]}
    }))
}

fn mcp_token(key: &SigningKey, exp: i64) -> String {
    key.sign_jwt(
        Some("k1"),
        &json!({"iss": "https://issuer.example", "sub": TRADER, "aud": "https://gw.example/mcp", "exp": exp,
                "jti": "t-9", "account_id": "acct-7", "scope": "orders:write"}),
    )
}

fn call(tool: &str, arguments: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#)
}

/// Decides `body` both ways at `now` after the headers were decided at NOW; the verdicts must be equal.
fn both(engine: &Engine, h: &Headers<'_>, wait: &AwaitBody, body: Body<'_>, now: i64) -> Verdict {
    let fast = engine.decide_body(wait, h, Connection::default(), body, now, &PureRust);
    let afresh = engine.decide_with_body(h, Connection::default(), body, now, &PureRust);
    assert_eq!(fast, afresh, "decide_body and decide_with_body disagree");
    fast
}

fn wait_of(engine: &Engine, h: &Headers<'_>) -> AwaitBody {
    match engine.decide_with(h, Connection::default(), NOW, &PureRust) {
        Verdict::Allow { await_body: Some(wait), .. } => wait,
        other => panic!("expected the body to be awaited: {other:?}"),
    }
}

#[test]
fn the_body_decided_from_the_headers_decision_equals_the_decision_afresh() {
    for mode in ["enforce", "dry_run"] {
        let (key, engine) = mcp_engine(mode);
        let auth = format!("Bearer {}", mcp_token(&key, NOW + 60));
        let headers = [
            (":method", "POST"),
            (":path", "/mcp"),
            (":authority", "gw.example"),
            ("x-request-id", "req-9"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2025-06-18"),
            ("authorization", auth.as_str()),
        ];
        let h = as_bytes(&headers);
        let wait = wait_of(&engine, &h);
        assert_eq!(wait.max_bytes, 1024);
        let large = call("get_quote", &format!(r#"{{"symbol":"{}"}}"#, "A".repeat(1100)));
        let bodies: Vec<(String, &str)> = vec![
            (call("get_quote", r#"{"symbol":"ACME"}"#), "allowed"),
            (call("place_order", r#"{"account_id":"acct-7"}"#), "allowed with a claim"),
            (call("place_order", r#"{"account_id":"acct-8"}"#), "another account"),
            (call("delete_account", "{}"), "a deny rule"),
            (call("unknown_tool", "{}"), "no rule"),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_quote","name":"x"}}"#.into(),
                "a repeated member",
            ),
            ("[1]".into(), "a batch"),
            ("{".into(), "not JSON"),
            (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(), "a notification"),
            (r#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#.into(), "no params"),
            (large, "over the cap"),
        ];
        for (body, what) in &bodies {
            let v = both(&engine, &h, &wait, Body::Complete(body.as_bytes()), NOW);
            let expect_allowed = what.starts_with("allowed") || *what == "a notification" || mode == "dry_run";
            assert_eq!(matches!(v, Verdict::Allow { .. }), expect_allowed, "{mode}: {what}: {v:?}");
        }
        both(&engine, &h, &wait, Body::TooLarge, NOW);
    }
}

#[test]
fn a_token_revoked_or_expired_while_its_body_arrived_is_refused_as_afresh() {
    let (key, engine) = mcp_engine("enforce");
    let auth = format!("Bearer {}", mcp_token(&key, NOW + 60));
    let headers = [
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "gw.example"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", auth.as_str()),
    ];
    let h = as_bytes(&headers);
    let wait = wait_of(&engine, &h);
    let body = call("get_quote", r#"{"symbol":"ACME"}"#);
    assert!(matches!(both(&engine, &h, &wait, Body::Complete(body.as_bytes()), NOW), Verdict::Allow { .. }));
    // Revoked between the headers and the end of the body.
    let jti = Selector::validated(Facts { jti: Some("t-9".into()), ..Facts::default() }).unwrap();
    engine.set_revocations(Rc::new(RevocationSet::new(vec![jti], Closed::None)));
    let v = both(&engine, &h, &wait, Body::Complete(body.as_bytes()), NOW);
    assert!(matches!(&v, Verdict::Deny(d) if d.status == 401 && d.reason == "revoked"), "{v:?}");
    engine.set_revocations(Rc::new(RevocationSet::new(Vec::new(), Closed::None)));
    // Still valid within the clock-skew leeway after `exp`; expired past it.
    assert!(matches!(both(&engine, &h, &wait, Body::Complete(body.as_bytes()), NOW + 61), Verdict::Allow { .. }));
    let v = both(&engine, &h, &wait, Body::Complete(body.as_bytes()), NOW + 91);
    assert!(matches!(&v, Verdict::Deny(d) if d.status == 401), "{v:?}");
}
