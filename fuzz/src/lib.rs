//! Shared fixture of the fuzz targets: one trusted issuer with an ES256, an EdDSA and an RS256 key, the
//! tokens those keys genuinely signed, and a fixed clock.
//!
//! The key set and tokens are checked in (`seeds/`), written by `cargo run --release --bin gen_seeds` from
//! fixed seeds, so a target starts instantly (no RSA key generation) and its corpus stays valid.

use agent_iam::engine::Engine;
use agent_iam::request::Header;
use agent_iam::token::Verifier;

/// The fuzzers' clock: the seed tokens are valid at this instant (they expire an hour later).
pub const NOW: i64 = 1_800_000_000;
/// The trusted issuer.
pub const ISS: &str = "https://issuer.example";
/// The accepted audience.
pub const AUD: &str = "trading-api";

/// The issuer's public keys (kids `es`, `ed`, `rs`).
pub const JWKS: &str = include_str!("../seeds/jwks.json");
/// Tokens genuinely signed by those keys, one a line. No other token may ever verify.
pub const TOKENS: &str = include_str!("../seeds/tokens.txt");
/// The policy of the fixture configuration.
pub const POLICY: &str = r#"{"rules": [
  {"id": "trader-places-orders", "effect": "allow", "agents": ["spiffe://trading.example/agent/trader"],
   "methods": ["POST"], "paths": ["/orders/**"]},
  {"id": "agents-read-quotes", "effect": "allow", "agents": ["spiffe://trading.example/*"], "methods": ["GET"],
   "paths": ["/quotes/**"]},
  {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}
]}"#;

/// The fixture configuration document.
pub fn config_json() -> String {
    format!(
        r#"{{"issuers": [{{"issuer": "{ISS}", "audiences": ["{AUD}"], "algorithms": ["ES256", "EdDSA", "RS256"], "jwks": {JWKS}}}], "policy": {POLICY}}}"#
    )
}

/// The fixture engine (and so verifier), built once per thread (an engine holds a per-worker cache, so it is
/// not `Sync`; libFuzzer runs the target on one thread).
pub fn engine() -> &'static Engine {
    thread_local! {
        static ENGINE: &'static Engine = Box::leak(Box::new(match agent_iam::config::parse(config_json().as_bytes()) {
            Ok(engine) => engine,
            Err(e) => panic!("the fuzz fixture configuration is refused: {e}"),
        }));
    }
    ENGINE.with(|e| *e)
}

/// The fixture verifier.
pub fn verifier() -> &'static Verifier {
    engine().verifier()
}

/// The SSF transmitter of the revocation fixture (its events are signed by the fixture keys).
pub const TRANSMITTER: &str = "https://ssf.issuer.example";
/// The receiver's audience.
pub const RECEIVER: &str = "https://gw.example";
/// The signer of revocation lists.
pub const LIST_ISSUER: &str = "https://lists.example";
/// Security event tokens and revocation lists the fixture keys signed, one a line.
pub const STATEMENTS: &str = include_str!("../seeds/statements.txt");

/// Whether `statement` is one of the genuinely signed events or lists.
pub fn is_genuine_statement(statement: &[u8]) -> bool {
    STATEMENTS.lines().any(|t| t.as_bytes() == statement)
}

/// A verifier of signed statements by the fixture keys: events (`secevent+jwt`) or lists (`revocation-list+jwt`).
pub fn statement_verifier(typ: &'static str) -> agent_iam::token::statement::StatementVerifier {
    use agent_iam::token::{Algorithm, KeySet};
    let list = typ == "revocation-list+jwt";
    agent_iam::token::statement::StatementVerifier {
        issuer: if list { LIST_ISSUER } else { TRANSMITTER }.to_owned(),
        audiences: if list { Vec::new() } else { vec![RECEIVER.to_owned()] },
        algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
        keys: KeySet::from_bytes(JWKS.as_bytes()).unwrap_or_default(),
        typ,
        clock_skew: 60,
        max_age: 86_400,
        max_bytes: 64 * 1024,
    }
}

/// Whether `token` is one of the genuinely signed tokens.
pub fn is_genuine(token: &[u8]) -> bool {
    TOKENS.lines().any(|t| t.as_bytes() == token)
}

/// The first genuine token (ES256, the trader agent).
pub fn a_genuine_token() -> &'static str {
    TOKENS.lines().next().unwrap_or_default()
}

/// A request carrying `token`, for `Engine::decide`.
pub fn request(method: &str, path: &str, token: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(token);
    vec![
        (":method".into(), method.as_bytes().to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        (":authority".into(), b"api.example".to_vec()),
        ("authorization".into(), bearer),
    ]
}

/// Asserts the canonical-path invariants for `raw` (used by the `canonical_path` target).
pub fn check_canonical_path(raw: &str) {
    let Ok((path, query)) = agent_iam::request::canonical_path(raw) else { return };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(!path.contains("//"), "{raw:?} -> {path:?}");
    assert!(!path.contains('?') && !path.contains('#'), "{raw:?} -> {path:?}");
    assert!(path.split('/').all(|s| s != "." && s != ".."), "{raw:?} -> {path:?}");
    if let Some(q) = query {
        assert!(raw.ends_with(q), "{raw:?} -> query {q:?}");
    }
    assert_eq!(agent_iam::request::canonical_path(&path), Ok((path.clone(), None)), "{raw:?} is not a fixed point");
}

/// The headers as the filter hands them to the engine: borrowed from the proxy's buffer.
pub fn as_headers(h: &[(String, Vec<u8>)]) -> Vec<Header<'_>> {
    h.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
}

/// A policy with every construct: templates with parameters, labels, hosts, scopes, roles, each operator,
/// references, lists, time windows, delegation and mTLS conditions.
pub const RICH_POLICY: &str = r#"{
  "version": "fuzz-1",
  "lists": {"symbols": ["ACME", "GLOBEX"]},
  "routes": [{"path": "/patients/{patient}/records/**", "labels": ["PHI"]}],
  "rules": [
    {"id": "orders", "effect": "allow", "agents": ["spiffe://t/agent/*"], "methods": ["POST", "GET"],
     "paths": ["/orders", "/orders/{id}"], "hosts": ["*.t.example"], "scopes": ["orders:write"],
     "when": {"query": {"symbol": {"in": {"list": "symbols"}}, "qty": {"gte": 1, "lte": 1000}},
              "headers": {"x-desk": {"starts_with": "eq"}},
              "time": [{"zone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:30", "to": "16:00"},
                       {"zone": "Asia/Kolkata", "from": "22:00", "to": "02:00"}]}},
    {"id": "phi", "effect": "allow", "agents": ["*"], "labels": ["PHI"], "roles": ["clinician"],
     "when": {"claims": {"purpose": {"equals": "treatment"}, "agent.version": {"version_gte": "2.1"}},
              "path": {"patient": {"equals": {"claim": "patient_id"}}}}},
    {"id": "delegated", "effect": "allow", "agents": ["spiffe://t/*"], "paths": ["/pay/**"],
     "when": {"delegation": {"delegated": true, "max_depth": 2, "actors": ["spiffe://t/*"], "origin": ["spiffe://t/o"], "may_act": true},
              "claims": {"dept": {"in": ["finance", 7, true]}, "tags": {"contains": {"header": "x-tag"}}}}},
    {"id": "bound", "effect": "allow", "agents": ["spiffe://t/agent/b"], "when": {"mtls": {"actor_is_peer": true, "certificate_bound": true}}},
    {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]},
    {"id": "no-contractors", "effect": "deny", "agents": ["*"], "paths": ["/pay/**"],
     "when": {"claims": {"employment": {"not_equals": "staff"}}, "query": {"x": {"exists": false}}}}
  ]
}"#;

/// Evaluates fuzz-chosen request attributes against [`RICH_POLICY`]; panics if the index and explain disagree.
pub fn check_policy_eval(text: &str) {
    use agent_iam::policy::{Policy, PolicyDocument, cases};
    use agent_iam::request::{Peer, Request};
    use std::sync::OnceLock;
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let doc: PolicyDocument = serde_json::from_str(RICH_POLICY).expect("the fuzz policy parses");
        Policy::compile(&doc).expect("the fuzz policy compiles")
    });
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("GET");
    let target = lines.next().unwrap_or("/");
    let host = lines.next().unwrap_or("api.t.example");
    let header = lines.next().unwrap_or("eq");
    let agent = lines.next().unwrap_or("spiffe://t/agent/a");
    let extra = lines.next().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let offset: i64 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);

    // What the gateway would hand the policy: canonical method, path and host, or a 400 before policy.
    let Ok(method) = agent_iam::request::canonical_method(method) else { return };
    let Ok((path, query)) = agent_iam::request::canonical_path(target) else { return };
    let host = agent_iam::request::canonical_host(host).ok();
    let mut claims = serde_json::json!({"sub": agent, "scope": "orders:write", "roles": ["clinician"],
        "purpose": "treatment", "agent": {"version": "2.3"}, "patient_id": "42", "dept": "finance", "tags": ["a"]});
    if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (extra, claims.as_object_mut()) {
        obj.extend(extra);
    }
    let Some(claims) = claims.as_object().cloned() else { return };
    let Ok(token) = cases::token_from_claims(claims) else { return };
    let headers: Vec<Header<'_>> = vec![("x-desk", header.as_bytes()), ("x-tag", header.as_bytes())];
    let request = Request {
        method: &method,
        path: &path,
        query,
        host: host.as_deref(),
        headers: &headers,
        now: NOW.saturating_add(offset),
        peer: Peer { uri_san: Some(agent), certificate_sha256: Some(header) },
        route: Some(header),
        route_tag: Some(header),
        mcp: None,
        hypothetical: false,
    };
    let fast = policy.evaluate(&token, &request);
    let slow = policy.explain(&token, &request);
    assert_eq!(fast, slow.decision, "index and explain disagree on {text:?}");
    let allowed = matches!(fast, agent_iam::policy::Decision::Allow { .. });
    assert_eq!(policy.allows(&token, &request), allowed, "allows and evaluate disagree on {text:?}");
}

/// An MCP policy every fuzzed message is decided under: tools, resources with a parameter bound to a claim,
/// prompts, arguments bound to claims, a deny on an argument, and the lifecycle default.
static MCP_POLICY: std::sync::LazyLock<Option<agent_iam::policy::Policy>> = std::sync::LazyLock::new(|| {
    let doc = serde_json::json!({"rules": [
        {"id": "lists", "effect": "allow", "agents": ["*"], "mcp": {"methods": ["tools/list", "*/list"]}},
        {"id": "quotes", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["get_*"]}},
        {"id": "orders", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["place_order"]},
         "when": {"arguments": {"account": {"equals": {"claim": "account"}}, "amount": {"lte": {"claim": "max"}}}}},
        {"id": "big", "effect": "deny", "agents": ["*"], "mcp": {"tools": ["*"]},
         "when": {"arguments": {"amount": {"gt": 1000}}}},
        {"id": "files", "effect": "allow", "agents": ["*"], "mcp": {"resources": ["file:///{user}/**"]},
         "when": {"resource": {"user": {"equals": {"claim": "sub"}}}}},
        {"id": "prompts", "effect": "allow", "agents": ["*"], "mcp": {"prompts": ["p*"]}}
    ]});
    agent_iam::policy::Policy::compile(&serde_json::from_value(doc).ok()?).ok()
});

/// See `fuzz_targets/mcp_request.rs`.
pub fn check_mcp_request(data: &[u8]) {
    use agent_iam::policy::cases;
    use agent_iam::request::mcp::{Arguments, Kind, Revision, parse};
    use agent_iam::request::{Peer, Request};
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(0);
    let (first, body) = data.split_at(split);
    let body = body.strip_prefix(b"\n").unwrap_or(body);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for pair in first.split(|&b| b == b'\t') {
        if let Some(colon) = pair.iter().position(|&b| b == b':')
            && let Ok(name) = std::str::from_utf8(&pair[..colon])
        {
            headers.push((name.to_ascii_lowercase(), pair[colon + 1..].to_vec()));
        }
    }
    let borrowed: Vec<Header<'_>> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let Ok(message) = parse(body, &borrowed, &Revision::ALL, Arguments::All) else { return };
    match &message.kind {
        Kind::Request { id } | Kind::Response { id } => assert!(id.is_string() || id.is_i64() || id.is_u64()),
        Kind::Notification | Kind::Session => {}
    }
    if message.method == "tools/call" || message.method == "prompts/get" {
        assert!(message.name.as_deref().is_some_and(|n| !n.is_empty()));
    }
    if message.method == "resources/read" {
        let uri = message.uri.as_deref().unwrap_or_default();
        assert!(!uri.contains("/../") && !uri.contains('\\'), "{uri:?}");
    }
    let Some(policy) = MCP_POLICY.as_ref() else { return };
    let claims = serde_json::json!({"sub": "alice", "account": "a-1", "max": 500});
    let Some(claims) = claims.as_object().cloned() else { return };
    let Ok(token) = cases::token_from_claims(claims) else { return };
    for hypothetical in [false, true] {
        let request = Request {
            method: "POST",
            path: "/mcp",
            query: None,
            host: None,
            headers: &borrowed,
            now: NOW,
            peer: Peer::default(),
            route: None,
            route_tag: None,
            mcp: Some(&message),
            hypothetical,
        };
        let fast = policy.evaluate(&token, &request);
        let slow = policy.explain(&token, &request);
        assert_eq!(fast, slow.decision, "index and explain disagree on {message:?}");
        let allowed = matches!(fast, agent_iam::policy::Decision::Allow { .. });
        assert_eq!(policy.allows(&token, &request), allowed, "allows and evaluate disagree on {message:?}");
    }
}
