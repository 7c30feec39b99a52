//! Revocation on the request path: every selector kind, cut-offs, expiry, delegation scope, and tokens that
//! come from the verified-token cache.

use super::*;
use crate::revocation::{Closed, Facts, Scope, Selector};

const HUMAN: &str = "user:alice";
const HELPER: &str = "spiffe://helpers.example/agent/summariser";

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow { dry_run: None, .. })
}

fn revoked_by(v: Verdict) -> Option<&'static str> {
    match v {
        Verdict::Deny(d) if d.status == 401 && d.reason == "revoked" => d.revoked_by.map(|k| k.label()),
        _ => None,
    }
}

fn selector(facts: Facts) -> Selector {
    Selector::validated(facts).unwrap()
}

fn shared(selectors: Vec<Selector>) -> Rc<RevocationSet> {
    Rc::new(RevocationSet::new(selectors, Closed::None))
}

/// A token of the trader acting for alice, through the helper agent (chain: alice ← helper ← trader).
fn delegated(key: &SigningKey, iat: i64) -> String {
    trader_token(
        key,
        json!({"sub": HUMAN, "iat": iat, "jti": "t-1", "client_id": "desk",
               "act": {"sub": TRADER, "act": {"sub": HELPER}}}),
    )
}

#[test]
fn every_kind_refuses_a_cached_token_as_soon_as_the_set_changes() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", delegated(&key, NOW - 10));
    let h = request("POST", "/orders", Some(&auth));
    assert!(allowed(&decide_on(&engine, &h)));
    assert!(allowed(&decide_on(&engine, &h)), "now from the cache");
    let cases: Vec<(Facts, &str)> = vec![
        (Facts { jti: Some("t-1".into()), ..Facts::default() }, "jti"),
        (Facts { agent: Some(TRADER.into()), scope: Scope::Current, ..Facts::default() }, "agent"),
        (Facts { agent: Some(HELPER.into()), ..Facts::default() }, "agent"),
        (Facts { client_id: Some("desk".into()), ..Facts::default() }, "client_id"),
        (Facts { subject: Some(HUMAN.into()), ..Facts::default() }, "subject"),
        (Facts { trust_domain: Some("helpers.example".into()), ..Facts::default() }, "trust_domain"),
        (
            Facts { trust_domain: Some("trading.example".into()), scope: Scope::Current, ..Facts::default() },
            "trust_domain",
        ),
        (
            Facts { issuer: Some("https://issuer.example".into()), issued_before: Some(NOW), ..Facts::default() },
            "issuer",
        ),
    ];
    for (facts, kind) in cases {
        engine.set_revocations(shared(vec![selector(facts.clone())]));
        assert_eq!(revoked_by(decide_on(&engine, &h)), Some(kind), "{facts:?}");
        engine.set_revocations(shared(Vec::new()));
        assert!(allowed(&decide_on(&engine, &h)), "lifted: {facts:?}");
    }
    let (hits, _) = engine.cache_stats();
    assert!(hits >= 16, "the token was answered from the cache throughout ({hits} hits)");
}

#[test]
fn selectors_that_do_not_match_leave_the_token_alone() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", delegated(&key, NOW - 10));
    let h = request("POST", "/orders", Some(&auth));
    engine.set_revocations(shared(vec![
        // The helper is in the chain, but this selector looks at the current actor only.
        selector(Facts { agent: Some(HELPER.into()), scope: Scope::Current, ..Facts::default() }),
        selector(Facts { jti: Some("t-2".into()), ..Facts::default() }),
        // Both facts must match: the subject does, the client does not.
        selector(Facts { subject: Some(HUMAN.into()), client_id: Some("other".into()), ..Facts::default() }),
        // Another issuer's token with this id.
        selector(Facts { jti: Some("t-1".into()), issuer: Some("https://other.example".into()), ..Facts::default() }),
        selector(Facts { trust_domain: Some("helpers.example".into()), scope: Scope::Current, ..Facts::default() }),
    ]));
    assert!(allowed(&decide_on(&engine, &h)));
}

#[test]
fn a_cut_off_revokes_older_tokens_and_a_token_issued_after_it_works_again() {
    let (key, engine) = engine_with(json!({}));
    engine.set_revocations(shared(vec![selector(Facts {
        agent: Some(TRADER.into()),
        issued_before: Some(NOW - 5),
        ..Facts::default()
    })]));
    let old = format!("Bearer {}", trader_token(&key, json!({"iat": NOW - 6})));
    let new = format!("Bearer {}", trader_token(&key, json!({"iat": NOW - 5})));
    let without_iat = format!("Bearer {}", trader_token(&key, json!({})));
    assert_eq!(revoked_by(decide_on(&engine, &request("POST", "/orders", Some(&old)))), Some("agent"));
    assert!(allowed(&decide_on(&engine, &request("POST", "/orders", Some(&new)))));
    assert_eq!(
        revoked_by(decide_on(&engine, &request("POST", "/orders", Some(&without_iat)))),
        Some("agent"),
        "a token without iat cannot show it was issued after the cut-off"
    );
}

#[test]
fn a_revocation_ends_at_its_expiry() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let h = request("POST", "/orders", Some(&auth));
    let s = selector(Facts { agent: Some(TRADER.into()), expires: Some(NOW + 1), ..Facts::default() });
    engine.set_revocations(shared(vec![s]));
    assert_eq!(revoked_by(engine.decide(&as_bytes(&h), NOW, &PureRust)), Some("agent"));
    assert!(allowed(&engine.decide(&as_bytes(&h), NOW + 1, &PureRust)));
}

#[test]
fn inline_selectors_of_the_configuration_apply_with_the_shared_ones() {
    let (key, engine) = engine_with(json!({"revocation": {"selectors": [
        {"agent": TRADER, "issued_before": "2027-01-15T08:00:00Z"}
    ]}}));
    // NOW is 2027-01-15T08:00:00Z.
    let old = format!("Bearer {}", trader_token(&key, json!({"iat": NOW - 1})));
    let new = format!("Bearer {}", trader_token(&key, json!({"iat": NOW})));
    assert_eq!(revoked_by(decide_on(&engine, &request("POST", "/orders", Some(&old)))), Some("agent"));
    assert!(allowed(&decide_on(&engine, &request("POST", "/orders", Some(&new)))));
    engine.set_revocations(shared(vec![selector(Facts { jti: Some("x".into()), ..Facts::default() })]));
    assert_eq!(revoked_by(decide_on(&engine, &request("POST", "/orders", Some(&old)))), Some("agent"));
}

#[test]
fn a_stale_list_that_fails_closed_answers_503_for_its_issuers_only() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let h = request("POST", "/orders", Some(&auth));
    engine.set_revocations(Rc::new(RevocationSet::new(vec![], Closed::Issuers(vec!["https://other.example".into()]))));
    assert!(allowed(&decide_on(&engine, &h)));
    engine.set_revocations(Rc::new(RevocationSet::new(vec![], Closed::All)));
    let d = denial(decide_on(&engine, &h));
    assert_eq!((d.status, d.reason), (503, "revocation_stale"));
}

#[test]
fn a_revoked_token_in_dry_run_is_forwarded_and_marked() {
    let (key, engine) = engine_with(json!({"mode": "dry_run"}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    engine.set_revocations(shared(vec![selector(Facts { agent: Some(TRADER.into()), ..Facts::default() })]));
    match decide_on(&engine, &request("POST", "/orders", Some(&auth))) {
        Verdict::Allow { dry_run: Some(d), .. } => assert_eq!((d.status, d.reason), (401, "revoked")),
        other => panic!("{other:?}"),
    }
}
