use super::response::json_body;
use super::*;
use crate::config;
use crate::mint::SigningKey;
use crate::request::Peer;
use crate::token::{Algorithm, PureRust};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const TRADER: &str = "spiffe://trading.example/agent/trader";

struct Fixture {
    key: SigningKey,
    engine: Engine,
}

fn fixture() -> Fixture {
    let (key, engine) = engine_with(json!({}));
    Fixture { key, engine }
}

impl Fixture {
    fn token(&self, agent: &str) -> String {
        self.key.sign_jwt(
            Some("k1"),
            &json!({"iss": "https://issuer.example", "sub": agent, "aud": "trading-api", "exp": NOW + 60}),
        )
    }

    fn decide(&self, headers: &[(&str, &str)]) -> Verdict {
        decide_on(&self.engine, headers)
    }
}

fn request<'a>(method: &'a str, path: &'a str, auth: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![(":method", method), (":path", path), (":authority", "api.example"), ("x-request-id", "req-1")];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    h
}

fn denial(v: Verdict) -> Denial {
    match v {
        Verdict::Deny(d) => d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn body(d: &Denial) -> Value {
    serde_json::from_str(&d.body).unwrap()
}

fn header<'d>(d: &'d Denial, name: &str) -> Option<&'d str> {
    d.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[test]
fn allows_and_forwards_the_verified_identity() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(TRADER));
    let mut h = request("POST", "/orders", Some(&auth));
    h.push(("x-agent-iam-agent", "spiffe://trading.example/agent/admin"));
    h.push(("X_Agent_Iam_Subject", "forged"));
    match f.decide(&h) {
        Verdict::Allow { remove, set, rule, canonical_path, canonical_method: None, dry_run: None, .. } => {
            assert_eq!(canonical_path, None, "the path was already canonical");
            assert_eq!(&*rule, "trader-orders");
            assert_eq!(remove, vec!["x-agent-iam-agent".to_owned(), "X_Agent_Iam_Subject".to_owned()]);
            assert!(set.contains(&(AGENT_HEADER, TRADER.into())));
            assert!(set.contains(&(SUBJECT_HEADER, TRADER.into())));
        }
        other => panic!("not allowed: {other:?}"),
    }
}

#[test]
fn forwards_the_canonical_path_that_was_authorised() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(TRADER));
    for (raw, want) in [("//orders/./7?x=1", "/orders/7?x=1"), ("/quotes/../orders/%41", "/orders/A")] {
        match f.decide(&request("POST", raw, Some(&auth))) {
            Verdict::Allow { canonical_path, .. } => assert_eq!(canonical_path.as_deref(), Some(want)),
            other => panic!("{raw}: {other:?}"),
        }
    }
}

#[test]
fn no_token_gets_a_challenge_without_error() {
    let d = denial(fixture().decide(&request("POST", "/orders", None)));
    assert_eq!(d.status, 401);
    assert_eq!(header(&d, "www-authenticate"), Some("Bearer realm=\"trading\""));
    assert_eq!(body(&d)["request_id"], "req-1");
    assert_eq!(d.details, "agent_iam.missing_token");
    // A non-Bearer scheme is no bearer token either.
    let d = denial(fixture().decide(&request("POST", "/orders", Some("Basic dXNlcjpwYXNz"))));
    assert_eq!(d.status, 401);
}

#[test]
fn bad_token_gets_invalid_token() {
    let f = fixture();
    let forged = format!("Bearer {}", f.token(TRADER).replace("eyJ", "eyK"));
    let d = denial(f.decide(&request("POST", "/orders", Some(&forged))));
    assert_eq!(d.status, 401);
    let challenge = header(&d, "www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm=\"trading\", error=\"invalid_token\", error_description=\""));
    assert!(!challenge[8..].contains("\\"), "{challenge}");
    assert_eq!(body(&d)["error"], "invalid_token");
}

#[test]
fn policy_denials_are_403_with_the_rule() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(TRADER));
    let d = denial(f.decide(&request("GET", "/orders", Some(&auth))));
    assert_eq!((d.status, d.reason), (403, "no_rule_allows"));
    assert!(header(&d, "www-authenticate").unwrap().contains("error=\"insufficient_scope\""));
    assert!(body(&d).get("rule").is_none());

    let d = denial(f.decide(&request("POST", "/orders/admin/x", Some(&auth))));
    assert_eq!((d.status, d.reason), (403, "denied_by_rule"));
    assert_eq!(body(&d)["rule"], "no-admin");

    // Traversal reaches the same deny rule.
    let d = denial(f.decide(&request("post", "/orders/x/..//admin/%2e/y?q=1", Some(&auth))));
    assert_eq!(body(&d)["rule"], "no-admin");
}

#[test]
fn malformed_requests_are_400() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(TRADER));
    for (method, path) in
        [("POST", "/orders%2Fadmin"), ("POST", "/orders\\admin"), ("CONNECT", "/orders"), ("POST", "*")]
    {
        let d = denial(f.decide(&request(method, path, Some(&auth))));
        assert_eq!(d.status, 400, "{method} {path}");
        assert_eq!(body(&d)["error"], "invalid_request");
    }
    let d = denial(f.decide(&[(":method", "GET")]));
    assert_eq!((d.status, d.reason), (400, "missing_path"));
}

#[test]
fn two_credentials_are_refused() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(TRADER));
    let mut h = request("POST", "/orders", Some(&auth));
    h.push(("authorization", &auth));
    let d = denial(f.decide(&h));
    assert_eq!((d.status, d.reason), (400, "multiple_credentials"));
}

#[test]
fn forwarded_values_cannot_inject_headers() {
    assert_eq!(header_safe("spiffe://a/b"), "spiffe://a/b");
    assert_eq!(header_safe("x\r\nx-admin: 1\0%"), "x%0D%0Ax-admin: 1%00%25");
    assert_eq!(header_safe("é"), "%C3%A9");
}

#[test]
fn identity_header_detection() {
    for name in ["x-agent-iam-agent", "X-Agent-IAM-Rule", "x_agent_iam_agent", "x-agent_iam-whatever"] {
        assert!(is_identity_header(name), "{name}");
    }
    for name in ["x-agent-ia", "x-agent-iamx", "agent-iam-agent", "authorization"] {
        assert!(!is_identity_header(name), "{name}");
    }
}

#[test]
fn fetched_keys_wait_then_verify_and_unknown_kids_are_flagged() {
    let key = SigningKey::from_seed(Algorithm::ES256, [6; 32]).unwrap();
    let doc = json!({
        "issuers": [{"issuer": "https://issuer.example", "audiences": ["trading-api"], "algorithms": ["ES256"],
                     "remote_jwks": {"cluster": "idp", "path": "/jwks"}}],
        "policy": {"rules": [{"id": "any", "effect": "allow", "agents": ["*"]}]}
    });
    let engine = config::parse(doc.to_string().as_bytes()).unwrap();
    let claims = json!({"iss": "https://issuer.example", "sub": TRADER, "aud": "trading-api", "exp": NOW + 60});
    let token = format!("Bearer {}", key.sign_jwt(Some("k1"), &claims));
    let request = request("GET", "/", Some(&token));
    let headers = as_bytes(&request);
    match engine.decide(&headers, NOW, &PureRust) {
        Verdict::WaitForKeys { issuer: 0, on_timeout } => {
            assert_eq!(on_timeout.status, 503);
            assert_eq!(on_timeout.reason, "keys_unavailable");
            assert!(!on_timeout.headers.iter().any(|(n, _)| *n == "www-authenticate"));
        }
        other => panic!("expected to wait for keys, got {other:?}"),
    }
    let other = SigningKey::from_seed(Algorithm::ES256, [7; 32]).unwrap();
    let keys = KeySet::from_value(&json!({"keys": [other.public_jwk(Some("k0"))]})).unwrap();
    let engine = engine.with_keys(0, keys);
    match engine.decide(&headers, NOW, &PureRust) {
        Verdict::UnknownKey { issuer: 0, denial } => assert_eq!((denial.status, denial.reason), (401, "unknown_key")),
        other => panic!("expected an unknown key, got {other:?}"),
    }
    let keys =
        KeySet::from_value(&json!({"keys": [other.public_jwk(Some("k0")), key.public_jwk(Some("k1"))]})).unwrap();
    assert!(matches!(engine.with_keys(0, keys).decide(&headers, NOW, &PureRust), Verdict::Allow { .. }));
}

/// The fixture's configuration (trader may POST under `/orders`, nobody reaches `/orders/admin`) with
/// `extra` merged at the top level.
fn engine_with(extra: Value) -> (SigningKey, Engine) {
    let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
    let mut doc = json!({
        "realm": "trading",
        "issuers": [{"issuer": "https://issuer.example", "audiences": ["trading-api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [key.public_jwk(Some("k1"))]}}],
        "policy": {"rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders/**"]},
            {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/orders/admin/**"]}
        ]}
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    let engine = config::parse(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    (key, engine)
}

fn decide_on(engine: &Engine, headers: &[(&str, &str)]) -> Verdict {
    engine.decide(&as_bytes(headers), NOW, &PureRust)
}

/// Headers as the filter hands them to the engine: values as bytes.
fn as_bytes<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
    headers.iter().map(|&(n, v)| (n, v.as_bytes())).collect()
}

fn trader_token(key: &SigningKey, extra: Value) -> String {
    let mut claims = json!({"iss": "https://issuer.example", "sub": TRADER, "aud": "trading-api", "exp": NOW + 60});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    key.sign_jwt(Some("k1"), &claims)
}

#[test]
fn token_sources_headers_prefixes_query_and_one_credential_only() {
    let (key, engine) = engine_with(json!({"token_sources": [
        {"header": "authorization", "prefix": "Bearer "}, {"header": "Txn-Token"}, {"query": "access_token"}
    ]}));
    let t = trader_token(&key, json!({}));
    let bearer = format!("bearer {t}");
    let base = [(":method", "POST"), (":authority", "api.example")];
    let with = |extra: &[(&'static str, &str)], path: &str| {
        let mut h: Vec<(&str, &str)> = base.to_vec();
        h.push((":path", path));
        h.extend_from_slice(extra);
        decide_on(&engine, &h)
    };
    let path_with_token = format!("/orders?access_token={t}&x=1");
    assert!(matches!(with(&[("authorization", &bearer)], "/orders"), Verdict::Allow { .. }));
    assert!(matches!(with(&[("txn-token", &t)], "/orders"), Verdict::Allow { .. }));
    assert!(matches!(with(&[], &path_with_token), Verdict::Allow { .. }));
    assert_eq!(
        denial(with(&[("authorization", &bearer), ("txn-token", &t)], "/orders")).reason,
        "multiple_credentials"
    );
    assert_eq!(denial(with(&[("txn-token", &t)], &path_with_token)).reason, "multiple_credentials");
    assert_eq!(denial(with(&[("authorization", "Basic dXNlcjpwYXNz")], "/orders")).reason, "missing_token");
}

#[test]
fn credentials_can_be_kept_from_the_upstream() {
    let (key, engine) = engine_with(json!({
        "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}],
        "forward": {"credential": false, "claims": ["department", "cost_center"]}
    }));
    let t = trader_token(&key, json!({"department": "equities", "cost_center": 42}));
    let bearer = format!("Bearer {t}");
    match decide_on(&engine, &request("POST", "/orders", Some(&bearer))) {
        Verdict::Allow { remove, set, .. } => {
            assert!(remove.contains(&"authorization".to_owned()), "{remove:?}");
            assert!(set.contains(&("x-agent-iam-claim-department", "equities".into())), "{set:?}");
            assert!(set.contains(&("x-agent-iam-claim-cost-center", "42".into())), "{set:?}");
        }
        other => panic!("{other:?}"),
    }
    let path = format!("/orders?a=1&access_token={t}&b=2");
    match decide_on(&engine, &[(":method", "POST"), (":authority", "api.example"), (":path", &path)]) {
        Verdict::Allow { canonical_path, .. } => assert_eq!(canonical_path.as_deref(), Some("/orders?a=1&b=2")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dry_run_forwards_what_enforcement_would_refuse_and_marks_it() {
    let (key, engine) = engine_with(json!({"mode": "dry_run"}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let mut h = request("GET", "/orders", Some(&auth));
    h.push(("x-agent-iam-agent", "spoofed"));
    match decide_on(&engine, &h) {
        Verdict::Allow { remove, set, dry_run: Some(would), .. } => {
            assert_eq!(would.status, 403);
            assert_eq!(remove, ["x-agent-iam-agent"]);
            assert!(set.contains(&(DRY_RUN_HEADER, "403 no_rule_allows".into())), "{set:?}");
            assert!(set.contains(&(AGENT_HEADER, TRADER.into())), "a valid token's identity is forwarded: {set:?}");
        }
        other => panic!("{other:?}"),
    }
    match decide_on(&engine, &request("POST", "/orders", Some("Bearer not.a.token"))) {
        Verdict::Allow { set, dry_run: Some(would), .. } => {
            assert_eq!(would.status, 401);
            assert_eq!(set, [(DRY_RUN_HEADER, "401 malformed".into())], "no identity from an invalid token");
        }
        other => panic!("{other:?}"),
    }
    match decide_on(&engine, &request("POST", "/orders", Some(&auth))) {
        Verdict::Allow { dry_run: None, rule, .. } => assert_eq!(&*rule, "trader-orders"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn policy_denials_can_hide_behind_404_or_keep_the_rule_private() {
    let (key, engine) = engine_with(json!({"denials": {"policy_status": 404}}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let d = denial(decide_on(&engine, &request("POST", "/orders/admin/x", Some(&auth))));
    assert_eq!(d.status, 404);
    assert!(!d.headers.iter().any(|(n, _)| *n == "www-authenticate"));
    assert_eq!(body(&d)["error"], "not_found");
    assert!(body(&d).get("rule").is_none());
    // Token problems are still 401: hiding applies to policy only.
    assert_eq!(denial(decide_on(&engine, &request("POST", "/orders", Some("Bearer x.y.z")))).status, 401);

    let (key, engine) = engine_with(json!({"denials": {"expose_rule": false}}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let d = denial(decide_on(&engine, &request("POST", "/orders/admin/x", Some(&auth))));
    assert_eq!(d.status, 403);
    assert!(body(&d).get("rule").is_none());
    assert_eq!(body(&d)["error_description"], "access denied by policy");
}

#[test]
fn settings_errors_name_their_place() {
    for (extra, want) in [
        (json!({"token_sources": []}), "token_sources: must not be empty"),
        (json!({"token_sources": [{"header": "x-agent-iam-agent"}]}), "token_sources[0].header:"),
        (json!({"token_sources": [{"header": "a", "query": "b"}]}), "token_sources[0]: give exactly one"),
        (json!({"token_sources": [{"query": "t", "prefix": "Bearer "}]}), "token_sources[0].prefix: applies only"),
        (json!({"token_sources": [{"header": "a"}, {"header": "A"}]}), "token_sources[1]: duplicate"),
        (json!({"mode": "audit"}), "mode: unknown mode \"audit\""),
        (json!({"denials": {"policy_status": 401}}), "denials.policy_status: must be 403 or 404"),
        (json!({"forward": {"claims": ["a.b"]}}), "forward.claims[0]:"),
        (json!({"forward": {"claims": ["cost_center", "cost-center"]}}), "forward.claims[1]: duplicate"),
        (json!({"request": {"path_parameters": "drop"}}), "request.path_parameters: unknown value \"drop\""),
        (json!({"request": {"method_override": "allow"}}), "request.method_override: unknown value \"allow\""),
        (json!({"request": {"methods": "x"}}), "request.methods: unknown field"),
    ] {
        let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
        let mut doc = json!({
            "issuers": [{"issuer": "https://issuer.example", "audiences": ["a"], "algorithms": ["ES256"],
                         "jwks": {"keys": [key.public_jwk(Some("k1"))]}}],
            "policy": {"rules": []}
        });
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let e = config::parse(doc.to_string().as_bytes()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with(want), "{extra}: {e}");
    }
}

#[test]
fn an_issuer_can_bind_every_token_to_the_mtls_peer() {
    let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
    let doc = json!({
        "issuers": [{"issuer": "https://issuer.example", "audiences": ["trading-api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [key.public_jwk(Some("k1"))]},
                     "mtls": {"actor_is_peer": true, "certificate_bound": true}}],
        "policy": {"rules": [{"id": "any", "effect": "allow", "agents": ["*"]}]}
    });
    let engine = config::parse(doc.to_string().as_bytes()).unwrap();
    assert!(engine.needs_peer());
    let digest = [9u8; 32];
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let auth = format!("Bearer {}", trader_token(&key, json!({"cnf": {"x5t#S256": crate::b64::encode(&digest)}})));
    let request = request("GET", "/", Some(&auth));
    let headers = as_bytes(&request);
    let on = |san: Option<&str>, digest: Option<&str>| {
        let conn = Connection { peer: Peer { uri_san: san, certificate_sha256: digest }, ..Connection::default() };
        engine.decide_with(&headers, conn, NOW, &PureRust)
    };
    assert!(matches!(on(Some(TRADER), Some(&hex)), Verdict::Allow { .. }));
    for (san, digest) in [(None, None), (Some("spiffe://x/y"), Some(hex.as_str())), (Some(TRADER), Some("00"))] {
        let d = denial(on(san, digest));
        assert_eq!((d.status, d.reason), (401, "not_bound"), "{san:?} {digest:?}");
    }
    let mut bad = doc.clone();
    bad["issuers"][0]["mtls"] = json!({"actor_is_peer": false});
    assert!(config::parse(bad.to_string().as_bytes()).unwrap_err().to_string().starts_with("issuers[0].mtls:"));
}

#[test]
fn denial_bodies_are_json_whatever_the_strings() {
    let tricky = [
        "",
        "plain",
        "quote \" and \\ backslash",
        "ctl \u{1}\n\t\u{1f}",
        "ünïcödé ✓",
        "</script>",
        "ü\"ü\\ü\u{0}",
        "\"",
        "\u{7f}\u{80}",
    ];
    for a in tricky {
        for b in tricky {
            let body = json_body(&[("error", a), ("request_id", b)]);
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(v, json!({"error": a, "request_id": b}), "{body}");
        }
    }
}

/// An issuer behind Envoy's `jwt_authn`: a token is believed without a signature check only when the
/// forwarded payload header carries exactly its payload; every other check still applies.
#[test]
fn jwt_authn_attests_the_payload_it_forwarded_and_nothing_else() {
    let base = |issuer_extra: Value| {
        let (key, mut doc) = (SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap(), json!({}));
        doc["issuers"] = json!([{"issuer": "https://issuer.example", "audiences": ["trading-api"],
                                 "algorithms": ["ES256"], "jwt_authn": {"payload_header": "x-jwt-payload"}}]);
        for (k, v) in issuer_extra.as_object().unwrap() {
            doc["issuers"][0][k] = v.clone();
        }
        doc["policy"] = json!({"rules": [{"id": "any", "effect": "allow", "agents": ["*"]}]});
        (key, config::parse(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}")))
    };
    let payload = |token: &str| token.split('.').nth(1).unwrap().to_owned();
    let forged = |token: &str| format!("{}.AAAA", token.rsplit_once('.').unwrap().0);
    let run = |engine: &Engine, token: &str, forwarded: &[&str]| {
        let auth = format!("Bearer {token}");
        let mut h = request("GET", "/", Some(&auth));
        h.extend(forwarded.iter().map(|f| ("x-jwt-payload", *f)));
        decide_on(engine, &h)
    };
    let reason = |v: Verdict| match v {
        Verdict::Allow { .. } => "allowed",
        other => denial(other).reason,
    };

    // No keys of its own: jwt_authn is the only way in.
    let (key, engine) = base(json!({}));
    let token = trader_token(&key, json!({}));
    let p = payload(&token);
    assert_eq!(reason(run(&engine, &token, &[])), "not_attested");
    assert_eq!(reason(run(&engine, &token, &[&p])), "allowed");
    assert_eq!(reason(run(&engine, &forged(&token), &[&p])), "allowed", "the signature is jwt_authn's to check");
    assert_eq!(reason(run(&engine, &token, &[&format!("{p}==")])), "allowed", "pad_forward_payload_header");
    let other = trader_token(&key, json!({"sub": "spiffe://trading.example/agent/other"}));
    for forwarded in [&[][..], &[payload(&other).as_str()], &[&p, &p], &[""], &[&p[1..]]] {
        // A fresh engine each time: the token cache remembers bytes that were once vouched for.
        let d = denial(run(&base(json!({})).1, &token, forwarded));
        assert_eq!((d.status, d.reason), (401, "not_attested"), "{forwarded:?}");
    }
    let expired = trader_token(&key, json!({"exp": NOW - 3600}));
    assert_eq!(reason(run(&engine, &expired, &[&payload(&expired)])), "expired", "claims are still checked");
    let elsewhere = trader_token(&key, json!({"aud": "billing"}));
    assert_eq!(reason(run(&engine, &elsewhere, &[&payload(&elsewhere)])), "wrong_audience");

    // With keys as well: tokens jwt_authn did not vouch for are verified here.
    let (key, engine) = base(json!({"jwks": {"keys": [SigningKey::from_seed(Algorithm::ES256, [5; 32])
        .unwrap()
        .public_jwk(Some("k1"))]}}));
    let token = trader_token(&key, json!({}));
    assert_eq!(reason(run(&engine, &token, &[])), "allowed");
    assert_eq!(reason(run(&engine, &forged(&token), &[])), "bad_signature");
    assert_eq!(reason(run(&engine, &forged(&token), &[&payload(&other)])), "bad_signature");

    for (header, problem) in [("X-Jwt-Payload", "lower-case"), ("x jwt", "lower-case"), ("x-agent-iam-p", "sets")] {
        let mut doc = json!({"issuers": [{"issuer": "i", "audiences": ["a"], "algorithms": ["ES256"],
                                          "jwt_authn": {"payload_header": header}}],
                             "policy": {"rules": []}});
        let e = config::parse(doc.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("issuers[0].jwt_authn.payload_header: ") && e.contains(problem), "{e}");
        doc["issuers"][0].as_object_mut().unwrap().remove("jwt_authn");
        let e = config::parse(doc.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("issuers[0].jwks: is required"), "{e}");
    }
}

mod bypass;
mod dpop;
mod limits;
mod mcp_body;
mod revocation;
