//! DPoP on the request path: the scheme against the issuer's mode, the binding to `cnf.jkt`, challenges,
//! nonces, replays through the shared store, delegation, and what is forwarded.

use super::*;
use crate::mint::ProofClaims;
use crate::shared_data::MemoryStore;
use crate::token::dpop::nonce::NonceKey;

const ORIGIN: &str = "https://api.example.com";

/// An engine whose issuer has `dpop: mode`, with the replay cache in memory (and `extra` in the `dpop` section).
fn dpop_engine(mode: &str, extra: Value) -> (SigningKey, Engine) {
    let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
    let mut section = json!({"origin": ORIGIN});
    for (k, v) in extra.as_object().unwrap() {
        section[k] = v.clone();
    }
    let doc = json!({
        "realm": "trading",
        "issuers": [{"issuer": "https://issuer.example", "audiences": ["trading-api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [key.public_jwk(Some("k1"))]}, "dpop": mode}],
        "dpop": section,
        "forward": {"credential": false},
        "policy": {"rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders/**"]}
        ]}
    });
    let engine = config::parse(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    engine.set_shared_store(Rc::new(MemoryStore::default()));
    (key, engine)
}

/// The agent's own key, which its tokens are bound to.
fn agent_key() -> SigningKey {
    SigningKey::from_seed(Algorithm::ES256, [9; 32]).unwrap()
}

fn bound_token(issuer: &SigningKey, holder: &SigningKey, extra: Value) -> String {
    let mut claims = json!({"cnf": {"jkt": holder.jkt().unwrap()}});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    trader_token(issuer, claims)
}

fn proof(holder: &SigningKey, token: &str, jti: &str, nonce: Option<&str>) -> String {
    holder.dpop_proof(&ProofClaims {
        jti,
        htm: "POST",
        htu: &format!("{ORIGIN}/orders/7"),
        iat: NOW,
        token: Some(token),
        nonce,
    })
}

fn with<'a>(auth: &'a str, proofs: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut h = request("POST", "/orders/7?x=1", Some(auth));
    for p in proofs {
        h.push(("dpop", p));
    }
    h
}

fn challenges(d: &Denial) -> Vec<&str> {
    d.headers.iter().filter(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str()).collect()
}

fn refused(v: Verdict) -> (u16, &'static str, Vec<String>) {
    let d = denial(v);
    let c = challenges(&d).into_iter().map(str::to_owned).collect();
    (d.status, d.reason, c)
}

#[test]
fn a_bound_token_with_its_proof_is_allowed_and_the_proof_is_not_forwarded() {
    let (issuer, engine) = dpop_engine("required", json!({}));
    let holder = agent_key();
    let token = bound_token(&issuer, &holder, json!({}));
    let auth = format!("DPoP {token}");
    let p1 = proof(&holder, &token, "j1", None);
    match decide_on(&engine, &with(&auth, &[&p1])) {
        Verdict::Allow { remove, dry_run: None, .. } => {
            assert!(remove.contains(&"dpop".to_owned()) && remove.contains(&"authorization".to_owned()), "{remove:?}");
        }
        other => panic!("{other:?}"),
    }
    // The scheme name is case-insensitive (RFC 9110 §11.1); the next proof verifies from the cached token.
    let lower = format!("dpop {token}");
    let p2 = proof(&holder, &token, "j2", None);
    assert!(matches!(decide_on(&engine, &with(&lower, &[&p2])), Verdict::Allow { .. }));
    let (hits, _) = engine.cache_stats();
    assert_eq!(hits, 1);
    // The same proof again: a replay.
    let (status, reason, c) = refused(decide_on(&engine, &with(&auth, &[&p2])));
    assert_eq!((status, reason), (401, "dpop_replayed"));
    assert_eq!(
        c,
        vec![
            "DPoP error=\"invalid_dpop_proof\", error_description=\"DPoP proof has already been used\", algs=\"ES256 ES384 EdDSA PS256 PS384 PS512 RS256 RS384 RS512\""
        ]
    );
}

#[test]
fn schemes_against_modes_and_bindings() {
    let holder = agent_key();
    for mode in ["allowed", "required"] {
        let (issuer, engine) = dpop_engine(mode, json!({"algorithms": ["ES256", "EdDSA"]}));
        let bound = bound_token(&issuer, &holder, json!({}));
        let unbound = trader_token(&issuer, json!({}));
        // §7.2: a bound token as Bearer, whatever the proof.
        let p = proof(&holder, &bound, "b1", None);
        let (status, reason, c) = refused(decide_on(&engine, &with(&format!("Bearer {bound}"), &[&p])));
        assert_eq!((status, reason), (401, "dpop_bound_token_as_bearer"), "{mode}");
        assert!(c[0].starts_with("Bearer realm=\"trading\", error=\"invalid_token\""), "{c:?}");
        assert_eq!(c.last().unwrap(), "DPoP algs=\"ES256 EdDSA\"", "the DPoP challenge offered");
        // An unbound token as DPoP.
        let p = proof(&holder, &unbound, "u1", None);
        let (status, reason, c) = refused(decide_on(&engine, &with(&format!("DPoP {unbound}"), &[&p])));
        assert_eq!((status, reason), (401, "dpop_token_not_bound"));
        assert!(c[0].starts_with("DPoP error=\"invalid_token\""), "the scheme used comes first: {c:?}");
        // An unbound token as Bearer: allowed only where bearer tokens are.
        let verdict = decide_on(&engine, &request("POST", "/orders/7", Some(&format!("Bearer {unbound}"))));
        match mode {
            "allowed" => assert!(matches!(verdict, Verdict::Allow { .. }), "{verdict:?}"),
            _ => {
                let (status, reason, c) = refused(verdict);
                assert_eq!((status, reason), (401, "dpop_required"));
                assert_eq!(c.len(), 2, "the Bearer attempt gets its error, and DPoP is offered: {c:?}");
            }
        }
    }
    // Where no issuer takes DPoP, the scheme is no credential, and a bound token as Bearer is still refused.
    let (issuer, engine) = engine_with(json!({}));
    let bound = bound_token(&issuer, &holder, json!({}));
    let d = denial(decide_on(&engine, &request("POST", "/orders/7", Some(&format!("DPoP {bound}")))));
    assert_eq!((d.status, d.reason), (401, "missing_token"));
    let (status, reason, _) =
        refused(decide_on(&engine, &request("POST", "/orders/7", Some(&format!("Bearer {bound}")))));
    assert_eq!((status, reason), (401, "dpop_bound_token_as_bearer"));
}

#[test]
fn proofs_must_be_one_and_the_holders() {
    let (issuer, engine) = dpop_engine("required", json!({}));
    let holder = agent_key();
    let thief = SigningKey::from_seed(Algorithm::ES256, [10; 32]).unwrap();
    let token = bound_token(&issuer, &holder, json!({}));
    let auth = format!("DPoP {token}");
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (vec![], "dpop_missing_proof", "invalid_dpop_proof"),
        (
            vec![proof(&holder, &token, "r1", None), proof(&holder, &token, "r2", None)],
            "dpop_repeated_proof",
            "invalid_dpop_proof",
        ),
        (vec![proof(&thief, &token, "t1", None)], "dpop_key_mismatch", "invalid_token"),
        (vec![proof(&holder, "another-token", "a1", None)], "dpop_wrong_ath", "invalid_dpop_proof"),
    ];
    for (proofs, reason, error) in cases {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let (status, got, c) = refused(decide_on(&engine, &with(&auth, &refs)));
        assert_eq!((status, got), (401, reason));
        assert!(c[0].contains(&format!("error=\"{error}\"")), "{c:?}");
        assert_eq!(c.len(), 1, "every issuer requires DPoP: no Bearer challenge");
    }
    // The key binding refusal reads as the RFC's example.
    let p = proof(&thief, &token, "t2", None);
    let c = challenges(&denial(decide_on(&engine, &with(&auth, &[&p])))).join("|");
    assert!(c.contains("error_description=\"Invalid DPoP key binding\""), "{c}");
    // No credential: the challenge names the algorithms, no error.
    let d = denial(decide_on(&engine, &request("POST", "/orders/7", None)));
    assert_eq!(challenges(&d), vec!["DPoP algs=\"ES256 ES384 EdDSA PS256 PS384 PS512 RS256 RS384 RS512\""]);
    assert!(header(&d, "access-control-expose-headers").unwrap().contains("DPoP-Nonce"));
}

#[test]
fn the_origin_is_configured_never_the_host_header() {
    let (issuer, engine) = dpop_engine(
        "required",
        json!({"routes": [{"paths": ["/orders/admin/**"], "origin": "https://admin.example.com:8443"}]}),
    );
    let holder = agent_key();
    let token = bound_token(&issuer, &holder, json!({}));
    let auth = format!("DPoP {token}");
    // A proof for the Host the client sent (api.example) is not one for the configured origin.
    let by_host = holder.dpop_proof(&ProofClaims {
        jti: "h1",
        htm: "POST",
        htu: "https://api.example/orders/7",
        iat: NOW,
        token: Some(&token),
        nonce: None,
    });
    let mut h = with(&auth, &[&by_host]);
    h.push(("x-forwarded-host", "api.example"));
    assert_eq!(refused(decide_on(&engine, &h)).1, "dpop_wrong_htu");
    // The route's own origin, spelled in another case: accepted.
    let admin = holder.dpop_proof(&ProofClaims {
        jti: "h2",
        htm: "POST",
        htu: "https://ADMIN.example.com:8443/orders/admin/x",
        iat: NOW,
        token: Some(&token),
        nonce: None,
    });
    let mut h = request("POST", "/orders/admin/x", Some(&auth));
    h.push(("dpop", &admin));
    assert!(matches!(decide_on(&engine, &h), Verdict::Allow { .. }));
}

#[test]
fn nonces_are_asked_for_given_and_then_accepted() {
    let (issuer, engine) = dpop_engine("required", json!({"nonce": {"lifetime_seconds": 120}}));
    let holder = agent_key();
    let token = bound_token(&issuer, &holder, json!({}));
    let auth = format!("DPoP {token}");
    // No key yet (the filter installs the shared one): nothing is accepted unchecked.
    let p = proof(&holder, &token, "n0", None);
    assert_eq!(refused(decide_on(&engine, &with(&auth, &[&p]))).0, 503);
    engine.set_nonce_key(NonceKey::new(&[4; 32]).unwrap());
    let p = proof(&holder, &token, "n1", None);
    let d = denial(decide_on(&engine, &with(&auth, &[&p])));
    assert_eq!((d.status, d.reason), (401, "dpop_nonce_missing"));
    assert!(challenges(&d)[0].starts_with("DPoP error=\"use_dpop_nonce\""));
    assert_eq!(header(&d, "cache-control"), Some("no-store"));
    let nonce = header(&d, "dpop-nonce").unwrap().to_owned();
    let p = proof(&holder, &token, "n2", Some(&nonce));
    assert!(matches!(decide_on(&engine, &with(&auth, &[&p])), Verdict::Allow { dpop_nonce: None, .. }));
    // A nonce of the period before is still accepted, and the response brings the current one (§8.2).
    let rules = crate::token::dpop::nonce::NonceRules { lifetime: 120 };
    let older = rules.issue(&NonceKey::new(&[4; 32]).unwrap(), NOW - 70).unwrap();
    assert_ne!(older, nonce);
    let p = proof(&holder, &token, "n2b", Some(&older));
    match decide_on(&engine, &with(&auth, &[&p])) {
        Verdict::Allow { dpop_nonce, .. } => assert_eq!(dpop_nonce.as_deref(), Some(nonce.as_str())),
        other => panic!("{other:?}"),
    }
    let p = proof(&holder, &token, "n3", Some("forged-nonce"));
    let d = denial(decide_on(&engine, &with(&auth, &[&p])));
    assert_eq!(d.reason, "dpop_nonce_invalid");
    assert_eq!(header(&d, "dpop-nonce"), Some(nonce.as_str()), "the current nonce again");
    // A configured secret needs nothing installed.
    let secret = crate::b64::encode(&[6; 32]);
    let (issuer, engine) = dpop_engine("required", json!({"nonce": {"secret": secret}}));
    let token = bound_token(&issuer, &holder, json!({}));
    let p = proof(&holder, &token, "c1", None);
    let d = denial(decide_on(&engine, &with(&format!("DPoP {token}"), &[&p])));
    assert_eq!(d.reason, "dpop_nonce_missing");
    assert!(header(&d, "dpop-nonce").is_some());
}

#[test]
fn with_delegation_only_the_current_actors_key_presents() {
    let (issuer, engine) = dpop_engine("required", json!({}));
    let current = agent_key();
    let earlier = SigningKey::from_seed(Algorithm::ES256, [11; 32]).unwrap();
    // alice ← helper (earlier actor, whose key an inner cnf names) ← trader (current actor, bound at the top).
    let token = bound_token(
        &issuer,
        &current,
        json!({"sub": "user:alice", "act": {"sub": TRADER, "act": {"sub": "spiffe://helpers.example/agent/h",
                "cnf": {"jkt": earlier.jkt().unwrap()}}}}),
    );
    let auth = format!("DPoP {token}");
    let p = proof(&current, &token, "d1", None);
    assert!(matches!(decide_on(&engine, &with(&auth, &[&p])), Verdict::Allow { .. }));
    let p = proof(&earlier, &token, "d2", None);
    assert_eq!(refused(decide_on(&engine, &with(&auth, &[&p]))).1, "dpop_key_mismatch");
}

#[test]
fn without_a_store_nothing_is_accepted_unchecked() {
    let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
    let doc = json!({
        "issuers": [{"issuer": "https://issuer.example", "audiences": ["trading-api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [key.public_jwk(Some("k1"))]}, "dpop": "required"}],
        "dpop": {"origin": ORIGIN},
        "policy": {"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "paths": ["/**"]}]}
    });
    let engine = config::parse(doc.to_string().as_bytes()).unwrap();
    let holder = agent_key();
    let token = bound_token(&key, &holder, json!({}));
    let p = proof(&holder, &token, "s1", None);
    let d = denial(decide_on(&engine, &with(&format!("DPoP {token}"), &[&p])));
    assert_eq!((d.status, d.reason), (503, "dpop_unavailable"));
}

#[test]
fn configuration_errors_name_their_path() {
    let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
    let base = |issuer_extra: Value, dpop: Option<Value>| {
        let mut issuer = json!({"issuer": "https://issuer.example", "audiences": ["a"], "algorithms": ["ES256"],
                                "jwks": {"keys": [key.public_jwk(Some("k1"))]}});
        for (k, v) in issuer_extra.as_object().unwrap() {
            issuer[k] = v.clone();
        }
        let mut doc = json!({"issuers": [issuer], "policy": {"rules": []}});
        if let Some(d) = dpop {
            doc["dpop"] = d;
        }
        config::parse(doc.to_string().as_bytes()).err().map(|e| e.path)
    };
    let required = json!({"dpop": "required"});
    assert_eq!(base(required.clone(), None).as_deref(), Some("issuers[0].dpop"));
    assert_eq!(base(json!({"dpop": "sometimes"}), None).as_deref(), Some("issuers[0].dpop"));
    assert_eq!(base(json!({}), Some(json!({"origin": ORIGIN}))).as_deref(), Some("dpop"));
    assert_eq!(base(required.clone(), Some(json!({"origin": "https://a.example/v1"}))).as_deref(), Some("dpop.origin"));
    assert_eq!(
        base(required.clone(), Some(json!({"origin": ORIGIN, "algorithms": ["HS256"]}))).as_deref(),
        Some("dpop.algorithms[0]")
    );
    assert_eq!(
        base(required.clone(), Some(json!({"origin": ORIGIN, "nonce": {"secret": "c2hvcnQ"}}))).as_deref(),
        Some("dpop.nonce.secret")
    );
    assert_eq!(
        base(required.clone(), Some(json!({"origin": ORIGIN, "routes": [{"origin": ORIGIN}]}))).as_deref(),
        Some("dpop.routes[0]")
    );
    assert_eq!(
        base(required.clone(), Some(json!({"origin": ORIGIN, "max_age_seconds": 0}))).as_deref(),
        Some("dpop.max_age_seconds")
    );
    assert_eq!(base(required, Some(json!({"origin": ORIGIN}))), None);
}

#[test]
fn a_request_decided_again_is_not_its_own_replay() {
    // An MCP endpoint: the headers are decided (and the proof recorded), then the body.
    let key = SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap();
    let resource = format!("{ORIGIN}/mcp");
    let doc = json!({
        "issuers": [{"issuer": "https://issuer.example", "audiences": [resource], "algorithms": ["ES256"],
                     "jwks": {"keys": [key.public_jwk(Some("k1"))]}, "dpop": "required"}],
        "dpop": {"origin": ORIGIN},
        "mcp": {"endpoints": [{"paths": ["/mcp"], "resource": resource, "authorization_servers": ["https://issuer.example"]}]},
        "policy": {"rules": [
            {"id": "quotes", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["get_quote"]}},
            {"id": "watch", "effect": "deny", "mode": "dry_run", "agents": ["*"], "mcp": {"tools": ["get_quote"]}}
        ]}
    });
    let engine = config::parse(doc.to_string().as_bytes()).unwrap();
    engine.set_shared_store(Rc::new(MemoryStore::default()));
    let holder = agent_key();
    let token = key.sign_jwt(
        Some("k1"),
        &json!({"iss": "https://issuer.example", "sub": TRADER, "aud": resource, "exp": NOW + 60,
                "cnf": {"jkt": holder.jkt().unwrap()}}),
    );
    let auth = format!("DPoP {token}");
    let p = holder.dpop_proof(&ProofClaims {
        jti: "m1",
        htm: "POST",
        htu: &resource,
        iat: NOW,
        token: Some(&token),
        nonce: None,
    });
    let h = [
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "api.example.com"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", auth.as_str()),
        ("dpop", p.as_str()),
    ];
    let h = as_bytes(&h);
    let first = engine.decide(&h, NOW, &PureRust);
    assert!(matches!(first, Verdict::Allow { await_body: Some(_), .. }), "{first:?}");
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_quote","arguments":{}}}"#;
    let second = engine.decide_with_body(&h, Connection::default(), Body::Complete(body), NOW, &PureRust);
    assert!(matches!(second, Verdict::Allow { await_body: None, .. }), "{second:?}");
    let explained = engine.explain_with_body(&h, Connection::default(), Body::Complete(body), NOW, &PureRust);
    assert!(explained.contains("\"decision\":\"allow\""), "{explained}");
    let hits = engine.dry_run_rules(&h, Connection::default(), Body::Complete(body), NOW, &PureRust);
    assert_eq!(hits, vec![("watch".to_owned(), Effect::Deny)]);
    // And the metadata says DPoP is required there.
    let meta = match engine.decide(
        &as_bytes(&request("GET", "/.well-known/oauth-protected-resource/mcp", None)),
        NOW,
        &PureRust,
    ) {
        Verdict::Answer(d) => serde_json::from_str::<Value>(&d.body).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(meta["dpop_bound_access_tokens_required"], true);
    assert_eq!(meta["dpop_signing_alg_values_supported"][0], "ES256");
    // Its challenges offer DPoP only.
    let d = denial(engine.decide(&as_bytes(&request("POST", "/mcp", None)), NOW, &PureRust));
    let c = challenges(&d);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("DPoP algs=\"") && c[0].contains("resource_metadata=\""), "{c:?}");
    // A new request with the same proof is a replay.
    let again = engine.decide(&h, NOW, &PureRust);
    assert_eq!(denial(again).reason, "dpop_replayed");
}

#[test]
fn an_explanation_after_the_decision_is_not_a_replay() {
    let (issuer, engine) = dpop_engine("required", json!({}));
    let holder = agent_key();
    let token = bound_token(&issuer, &holder, json!({}));
    let auth = format!("DPoP {token}");
    let p = proof(&holder, &token, "x1", None);
    let h = with(&auth, &[&p]);
    assert!(matches!(decide_on(&engine, &h), Verdict::Allow { .. }));
    let explained = engine.explain(&as_bytes(&h), Connection::default(), NOW, &PureRust);
    assert!(explained.contains("\"decision\":\"allow\""), "{explained}");
}
