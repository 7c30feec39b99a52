use super::*;
use crate::b64;
use crate::mint::SigningKey;
use crate::token::statement::{SET_TYP, StatementVerifier};
use crate::token::{Algorithm, KeySet, PureRust};
use serde_json::json;
use std::sync::LazyLock;

const NOW: i64 = 1_800_000_000;
const IAT: i64 = NOW - 5;
const ISS: &str = "https://idp.example";
const AUD: &str = "https://gw.example";
const LIFETIME: i64 = 3600;
const SKEW: i64 = 30;
const AGENT: &str = "spiffe://corp.example/agent/reporter";

static ES: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [0x21; 32]).unwrap());
static RS: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::RS256, [0x22; 32]).unwrap());

fn verifier() -> StatementVerifier {
    StatementVerifier {
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        keys: KeySet::from_value(&json!({"keys": [ES.public_jwk(Some("es")), RS.public_jwk(Some("rs"))]})).unwrap(),
        typ: SET_TYP,
        clock_skew: SKEW,
        max_age: 600,
        max_bytes: 64 * 1024,
    }
}

fn mapping() -> Mapping {
    Mapping { iss_sub: IssSubAs::Both, opaque: None, scope: Scope::Chain, lifetime: LIFETIME, clock_skew: SKEW }
}

fn caep(name: &str) -> String {
    format!("{CAEP_EVENT}{name}")
}

fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": ISS, "sub": sub})
}

/// A SET's claims: one event of `event_type` about `sub_id`.
fn set(event_type: &str, event: Value, sub_id: Value) -> Value {
    json!({"iss": ISS, "aud": AUD, "iat": IAT, "jti": "set-1", "txn": "t-1", "sub_id": sub_id,
        "events": {event_type: event}})
}

fn revoked_session(sub_id: Value) -> Value {
    set(&caep("session-revoked"), json!({"initiating_entity": "policy", "reason_admin": {"en": "compromised"}}), sub_id)
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let kid = if key.alg() == Algorithm::ES256 { "es" } else { "rs" };
    key.sign_jwt_with_header(&json!({"alg": key.alg().name(), "kid": kid, "typ": SET_TYP}), claims)
}

/// Verified, profiled and mapped, as the receiver does; a refusal as its RFC 8935 code and description.
fn receive_with(token: &str, mapping: &Mapping) -> Result<Outcome, (&'static str, String)> {
    let statement = verifier().verify(token.as_bytes(), NOW, &PureRust).map_err(|e| (e.code(), e.to_string()))?;
    let event = SecurityEvent::from_statement(statement).map_err(|e| (e.code(), e.to_string()))?;
    Ok(revocations(&event, mapping, NOW))
}

fn outcome_with(claims: &Value, mapping: &Mapping) -> Outcome {
    receive_with(&sign(&ES, claims), mapping).unwrap()
}

fn outcome(claims: &Value) -> Outcome {
    outcome_with(claims, &mapping())
}

fn refused(claims: &Value) -> String {
    match outcome(claims) {
        Outcome::Refuse { err: "invalid_request", description } => description,
        other => panic!("{claims}: {other:?}"),
    }
}

fn ignored(claims: &Value) -> String {
    match outcome(claims) {
        Outcome::Ignore(why) => why,
        other => panic!("{claims}: {other:?}"),
    }
}

/// The selector an event with cut-off `cut` makes of `facts`.
fn selector(facts: Facts, cut: i64) -> Selector {
    Selector::validated(Facts { issued_before: Some(cut), ..facts }).unwrap().ending(cut + LIFETIME + SKEW)
}

fn subject_facts(sub: &str) -> Facts {
    Facts { subject: Some(sub.into()), issuer: Some(ISS.into()), ..Facts::default() }
}

fn agent_facts(agent: &str, issuer: Option<&str>) -> Facts {
    Facts { agent: Some(agent.into()), issuer: issuer.map(Into::into), ..Facts::default() }
}

#[test]
fn session_revoked_for_an_iss_sub_subject_revokes_subject_and_agent() {
    let want = Outcome::Revoke(vec![selector(subject_facts(AGENT), IAT), selector(agent_facts(AGENT, Some(ISS)), IAT)]);
    for key in [&*ES, &*RS] {
        assert_eq!(receive_with(&sign(key, &revoked_session(iss_sub(AGENT))), &mapping()), Ok(want.clone()));
    }
    let claims = revoked_session(iss_sub(AGENT));
    let only = |iss_sub| Mapping { iss_sub, scope: Scope::Current, ..mapping() };
    let current = |facts| selector(Facts { scope: Scope::Current, ..facts }, IAT);
    assert_eq!(outcome_with(&claims, &only(IssSubAs::Subject)), Outcome::Revoke(vec![current(subject_facts(AGENT))]));
    assert_eq!(
        outcome_with(&claims, &only(IssSubAs::Agent)),
        Outcome::Revoke(vec![current(agent_facts(AGENT, Some(ISS)))])
    );
}

#[test]
fn the_event_is_read_by_the_ssf_profile() {
    let statement = verifier().verify(sign(&ES, &revoked_session(iss_sub("u"))).as_bytes(), NOW, &PureRust).unwrap();
    let event = SecurityEvent::from_statement(statement).unwrap();
    assert_eq!(event.jti, "set-1");
    assert_eq!(event.issuer, ISS);
    assert_eq!(event.issued_at, IAT);
    assert_eq!(event.event_type, caep("session-revoked"));
    assert_eq!(event.txn.as_deref(), Some("t-1"));
    assert_eq!(event.toe, None);
    assert_eq!(event.subject, iss_sub("u").as_object().cloned());
    // Legacy CAEP: the subject inside the event; `sub_id` wins where both are present.
    let mut legacy = revoked_session(iss_sub("x"));
    legacy.as_object_mut().unwrap().remove("sub_id");
    legacy["events"][caep("session-revoked")]["subject"] = iss_sub("legacy");
    let Outcome::Revoke(s) = outcome(&legacy) else { panic!() };
    assert_eq!(s[0], selector(subject_facts("legacy"), IAT));
    legacy["sub_id"] = iss_sub("primary");
    let Outcome::Revoke(s) = outcome(&legacy) else { panic!() };
    assert_eq!(s[0], selector(subject_facts("primary"), IAT));
    let mut toe = revoked_session(iss_sub("u"));
    toe["toe"] = json!(NOW - 100);
    let statement = verifier().verify(sign(&ES, &toe).as_bytes(), NOW, &PureRust).unwrap();
    assert_eq!(SecurityEvent::from_statement(statement).unwrap().toe, Some(NOW - 100));
}

#[test]
fn sets_that_break_the_profile_are_refused() {
    let base = || revoked_session(iss_sub("u"));
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = base();
        f(&mut c);
        receive_with(&sign(&ES, &c), &mapping()).unwrap_err()
    };
    let remove = |name: &'static str| move |c: &mut Value| drop(c.as_object_mut().unwrap().remove(name));
    let set = |name: &'static str, v: Value| move |c: &mut Value| c[name] = v.clone();
    for (what, err) in [
        ("sub", edit(&set("sub", json!("u")))),
        ("exp", edit(&set("exp", json!(NOW + 60)))),
        ("no jti", edit(&remove("jti"))),
        ("empty jti", edit(&set("jti", json!("")))),
        ("long jti", edit(&set("jti", json!("j".repeat(257))))),
        ("jti with a space", edit(&set("jti", json!("a b")))),
        ("non-ASCII jti", edit(&set("jti", json!("é")))),
        ("jti number", edit(&set("jti", json!(7)))),
        ("no events", edit(&remove("events"))),
        ("empty events", edit(&set("events", json!({})))),
        ("events array", edit(&set("events", json!([caep("session-revoked")])))),
        ("two events", edit(&set("events", json!({caep("session-revoked"): {}, caep("credential-change"): {}})))),
        ("event not an object", edit(&set("events", json!({caep("session-revoked"): true})))),
        ("empty event type", edit(&set("events", json!({"": {}})))),
        ("sub_id string", edit(&set("sub_id", json!("u")))),
        ("txn number", edit(&set("txn", json!(1)))),
        ("toe string", edit(&set("toe", json!("now")))),
    ] {
        assert_eq!(err.0, "invalid_request", "{what}: {err:?}");
    }
    let mut longest = base();
    longest["jti"] = json!("j".repeat(256));
    assert!(receive_with(&sign(&ES, &longest), &mapping()).is_ok());
}

#[test]
fn sets_that_fail_verification_are_refused_with_their_rfc_8935_code() {
    let claims = revoked_session(iss_sub("u"));
    let code = |token: String| receive_with(&token, &mapping()).unwrap_err().0;
    let with_header = |h: Value| ES.sign_jwt_with_header(&h, &claims);
    assert_eq!(code(ES.sign_jwt(Some("es"), &claims)), "invalid_request", "typ JWT");
    assert_eq!(code(with_header(json!({"alg": "ES256", "kid": "es"}))), "invalid_request", "no typ");
    let none = format!(
        "{}.{}.AAAA",
        b64::encode(br#"{"alg":"none","typ":"secevent+jwt"}"#),
        b64::encode(claims.to_string().as_bytes())
    );
    assert_eq!(code(none), "invalid_key", "alg none");
    let hs = SigningKey::from_seed(Algorithm::HS256, [0x23; 32]).unwrap();
    assert_eq!(code(hs.sign_jwt_with_header(&json!({"alg": "HS256", "typ": SET_TYP}), &claims)), "invalid_key");
    let stranger = SigningKey::from_seed(Algorithm::ES256, [0x24; 32]).unwrap();
    assert_eq!(code(sign(&stranger, &claims)), "invalid_key", "another key");
    let mut wrong = claims.clone();
    wrong["iss"] = json!("https://evil.example");
    assert_eq!(code(sign(&ES, &wrong)), "invalid_issuer");
    let mut wrong = claims.clone();
    wrong["aud"] = json!(["https://other.example"]);
    assert_eq!(code(sign(&ES, &wrong)), "invalid_audience");
    let mut old = claims.clone();
    old["iat"] = json!(NOW - 601);
    assert_eq!(code(sign(&ES, &old)), "invalid_request", "iat too old");
    let mut future = claims;
    future["iat"] = json!(NOW + 31);
    assert_eq!(code(sign(&ES, &future)), "invalid_request", "iat in the future");
}

#[test]
fn credential_change() {
    let change = |event: Value| set(&caep("credential-change"), event, iss_sub("u"));
    for change_type in ["revoke", "delete"] {
        let o = outcome(&change(json!({"credential_type": "x509", "change_type": change_type})));
        assert!(matches!(o, Outcome::Revoke(ref s) if s.len() == 2), "{change_type}: {o:?}");
    }
    for change_type in ["create", "update"] {
        let why = ignored(&change(json!({"credential_type": "fido2-roaming", "change_type": change_type})));
        assert!(why.contains(change_type) && why.contains("informational"), "{why}");
    }
    for bad in [
        json!({"change_type": "revoke"}),
        json!({"credential_type": "", "change_type": "revoke"}),
        json!({"credential_type": 1, "change_type": "revoke"}),
        json!({"credential_type": "password"}),
        json!({"credential_type": "password", "change_type": "rotate"}),
        json!({"credential_type": "password", "change_type": "REVOKE"}),
        json!({"credential_type": "password", "change_type": ["revoke"]}),
    ] {
        refused(&change(bad));
    }
}

#[test]
fn token_claims_change_revokes_the_token() {
    let jwt_id = json!({"format": "jwt_id", "iss": ISS, "jti": "tok-9"});
    let change = |event: Value| set(&caep("token-claims-change"), event, jwt_id.clone());
    let want = selector(Facts { jti: Some("tok-9".into()), issuer: Some(ISS.into()), ..Facts::default() }, IAT);
    assert_eq!(outcome(&change(json!({"claims": {"role": "guest"}}))), Outcome::Revoke(vec![want]));
    for bad in [json!({}), json!({"claims": ["role"]}), json!({"claims": "role=guest"})] {
        refused(&change(bad));
    }
}

#[test]
fn other_events_are_acknowledged_and_ignored() {
    let verification = set(
        &format!("{SSF_EVENT}verification"),
        json!({"state": "VGhpcyBpcyBhbiBl"}),
        json!({"format": "opaque", "id": "s"}),
    );
    assert_eq!(ignored(&verification), "stream verification, state VGhpcyBpcyBhbiBl");
    let updated =
        set(&format!("{SSF_EVENT}stream-updated"), json!({"status": "paused"}), json!({"format": "opaque", "id": "s"}));
    assert_eq!(ignored(&updated), "stream updated, status paused");
    let bare = set(&format!("{SSF_EVENT}verification"), json!({}), json!({"format": "opaque", "id": "s"}));
    assert_eq!(ignored(&bare), "stream verification, state none");
    for other in [
        caep("assurance-level-change"),
        caep("session-established"),
        caep("device-compliance-change"),
        "https://schemas.openid.net/secevent/risc/event-type/account-disabled".into(),
        "urn:example:whatever".into(),
        format!("{CAEP_EVENT}session-revoked/"),
    ] {
        // Whatever the subject, even a malformed one.
        let why = ignored(&set(&other, json!({}), json!({"format": 7})));
        assert!(why.starts_with("event type not acted on"), "{why}");
    }
}

#[test]
fn the_cut_off_is_the_event_timestamp_or_iat() {
    let at =
        |t: Value| set(&caep("session-revoked"), json!({"event_timestamp": t}), json!({"format": "uri", "uri": AGENT}));
    let revoked_at = |cut: i64| Outcome::Revoke(vec![selector(agent_facts(AGENT, None), cut)]);
    assert_eq!(outcome(&at(json!(NOW - 100))), revoked_at(NOW - 100));
    assert_eq!(outcome(&at(json!(NOW + SKEW))), revoked_at(NOW + SKEW));
    assert_eq!(outcome(&at(json!((NOW - 100) as f64 + 0.9))), revoked_at(NOW - 100));
    assert_eq!(refused(&at(json!(NOW + SKEW + 1))), "event_timestamp is in the future");
    for bad in [json!("2026-01-01T00:00:00Z"), json!(-1), json!(null), json!(1e300), json!((1i64 << 40) + 1)] {
        assert_eq!(refused(&at(bad.clone())), "event_timestamp must be a NumericDate", "{bad}");
    }
    // So old that every token it could revoke has expired: nothing to do.
    assert!(ignored(&at(json!(NOW - LIFETIME - SKEW))).contains("expired"));
    assert_eq!(outcome(&at(json!(NOW - LIFETIME - SKEW + 1))), revoked_at(NOW - LIFETIME - SKEW + 1));
    assert!(ignored(&at(json!(0))).contains("expired"));
}

#[test]
fn simple_subjects() {
    let revoked = |sub_id: Value, m: &Mapping| outcome_with(&revoked_session(sub_id), m);
    let one = |facts: Facts| Outcome::Revoke(vec![selector(facts, IAT)]);
    let m = mapping();
    let jwt_id = json!({"format": "jwt_id", "iss": ISS, "jti": "t"});
    assert_eq!(revoked(jwt_id, &m), one(Facts { jti: Some("t".into()), issuer: Some(ISS.into()), ..Facts::default() }));
    assert_eq!(revoked(json!({"format": "uri", "uri": AGENT}), &m), one(agent_facts(AGENT, None)));
    let current = Mapping { scope: Scope::Current, ..mapping() };
    assert_eq!(
        revoked(json!({"format": "uri", "uri": AGENT}), &current),
        one(Facts { scope: Scope::Current, ..agent_facts(AGENT, None) })
    );
    for not_spiffe in ["https://corp.example/agent", "spiffe://Corp.example/a", "spiffe://corp.example/a/", "urn:x"] {
        let why = ignored(&revoked_session(json!({"format": "uri", "uri": not_spiffe})));
        assert!(why.contains("not supported"), "{not_spiffe}: {why}");
    }
    let opaque = json!({"format": "opaque", "id": "o-1"});
    assert!(ignored(&revoked_session(opaque.clone())).contains("not supported"));
    for (kind, facts) in [
        (Kind::Agent, Facts { agent: Some("o-1".into()), ..Facts::default() }),
        (Kind::Subject, Facts { subject: Some("o-1".into()), ..Facts::default() }),
        (Kind::ClientId, Facts { client_id: Some("o-1".into()), ..Facts::default() }),
        (Kind::Jti, Facts { jti: Some("o-1".into()), ..Facts::default() }),
    ] {
        assert_eq!(revoked(opaque.clone(), &Mapping { opaque: Some(kind), ..mapping() }), one(facts), "{kind:?}");
    }
    for kind in [Kind::TrustDomain, Kind::Issuer] {
        let o = revoked(opaque.clone(), &Mapping { opaque: Some(kind), ..mapping() });
        assert!(matches!(o, Outcome::Ignore(_)), "{kind:?}: {o:?}");
    }
}

#[test]
fn unsupported_subject_formats_are_ignored() {
    for sub_id in [
        json!({"format": "email", "email": "reporter@corp.example"}),
        json!({"format": "phone_number", "phone_number": "+12065550100"}),
        json!({"format": "account", "uri": "acct:reporter@corp.example"}),
        json!({"format": "did", "url": "did:example:123"}),
        json!({"format": "aliases", "identifiers": [iss_sub("u")]}),
        json!({"format": "ip-addresses", "ip-addresses": ["10.0.0.1"]}),
        json!({"format": "saml_assertion_id", "issuer": ISS, "assertion_id": "a"}),
        json!({"format": "x-custom", "sub": "u"}),
    ] {
        let why = ignored(&revoked_session(sub_id.clone()));
        assert!(why.starts_with("subject format not supported"), "{sub_id}: {why}");
    }
}

#[test]
fn complex_subjects_become_one_selector_or_nothing() {
    let app = json!({"format": "opaque", "id": "client-7"});
    let complex = |members: Value| {
        let mut s = json!({"format": "complex"});
        s.as_object_mut().unwrap().extend(members.as_object().unwrap().clone());
        revoked_session(s)
    };
    let one = |facts: Facts| Outcome::Revoke(vec![selector(facts, IAT)]);
    let user_and_app = complex(json!({"user": iss_sub("u"), "application": app}));
    assert_eq!(outcome(&user_and_app), one(Facts { client_id: Some("client-7".into()), ..subject_facts("u") }));
    // Whatever `iss_sub` maps to alone, a user is its subject fact.
    let agents = Mapping { iss_sub: IssSubAs::Agent, ..mapping() };
    assert_eq!(
        outcome_with(&user_and_app, &agents),
        one(Facts { client_id: Some("client-7".into()), ..subject_facts("u") })
    );
    assert_eq!(outcome(&complex(json!({"user": iss_sub("u")}))), one(subject_facts("u")));
    assert_eq!(
        outcome(&complex(json!({"application": app}))),
        one(Facts { client_id: Some("client-7".into()), ..Facts::default() })
    );
    let spiffe_user = complex(json!({"user": {"format": "uri", "uri": AGENT}, "application": app}));
    assert_eq!(outcome(&spiffe_user), one(Facts { client_id: Some("client-7".into()), ..agent_facts(AGENT, None) }));
    let jwt_user = complex(json!({"user": {"format": "jwt_id", "iss": ISS, "jti": "t"}}));
    assert_eq!(outcome(&jwt_user), one(Facts { jti: Some("t".into()), issuer: Some(ISS.into()), ..Facts::default() }));
    // An opaque user as a client id, beside an application: the same one, or a contradiction.
    let clients = Mapping { opaque: Some(Kind::ClientId), ..mapping() };
    let same = complex(json!({"user": {"format": "opaque", "id": "client-7"}, "application": app}));
    assert_eq!(outcome_with(&same, &clients), one(Facts { client_id: Some("client-7".into()), ..Facts::default() }));
    let other = complex(json!({"user": {"format": "opaque", "id": "client-8"}, "application": app}));
    assert!(matches!(outcome_with(&other, &clients), Outcome::Ignore(ref why) if why.contains("contradict")));
    // Never a broader selector: any member that cannot be evaluated ignores the whole event.
    for member in ["session", "device", "tenant", "group", "org_unit", "x-custom"] {
        let c = complex(json!({"user": iss_sub("u"), member: {"format": "opaque", "id": "s"}}));
        let why = ignored(&c);
        assert!(why.starts_with("complex subject"), "{member}: {why}");
    }
    for unmapped in [
        json!({"user": {"format": "email", "email": "u@corp.example"}, "application": app}),
        json!({"user": {"format": "opaque", "id": "u"}, "application": app}),
        json!({"user": {"format": "uri", "uri": "https://corp.example/u"}}),
        json!({"user": iss_sub("u"), "application": iss_sub("app")}),
        json!({"user": iss_sub("u"), "application": {"format": "uri", "uri": AGENT}}),
    ] {
        ignored(&complex(unmapped));
    }
    for malformed in [
        json!({}),
        json!({"user": "u"}),
        json!({"user": {"iss": ISS, "sub": "u"}}),
        json!({"user": {"format": "iss_sub", "iss": ISS}}),
        json!({"application": {"format": "opaque"}}),
        json!({"application": {"format": "opaque", "id": ""}}),
        json!({"user": iss_sub("u"), "application": {"format": 1, "id": "x"}}),
    ] {
        refused(&complex(malformed));
    }
}

#[test]
fn malformed_subjects_are_refused() {
    for sub_id in [
        json!({}),
        json!({"format": ""}),
        json!({"format": 1, "iss": ISS, "sub": "u"}),
        json!({"format": "iss_sub", "iss": ISS}),
        json!({"format": "iss_sub", "sub": "u"}),
        json!({"format": "iss_sub", "iss": ISS, "sub": ""}),
        json!({"format": "iss_sub", "iss": ISS, "sub": 7}),
        json!({"format": "iss_sub", "iss": [ISS], "sub": "u"}),
        json!({"format": "jwt_id", "iss": ISS}),
        json!({"format": "jwt_id", "iss": "", "jti": "t"}),
        json!({"format": "uri", "uri": ""}),
        json!({"format": "uri"}),
        json!({"format": "opaque", "id": 3}),
        json!({"format": "iss_sub", "iss": ISS, "sub": "u\u{0}v"}),
        json!({"format": "iss_sub", "iss": ISS, "sub": "u".repeat(2049)}),
    ] {
        let mut mapping = mapping();
        mapping.opaque = Some(Kind::Agent);
        match outcome_with(&revoked_session(sub_id.clone()), &mapping) {
            Outcome::Refuse { err: "invalid_request", .. } => {}
            other => panic!("{sub_id}: {other:?}"),
        }
    }
    let mut no_subject = revoked_session(json!({}));
    no_subject.as_object_mut().unwrap().remove("sub_id");
    assert_eq!(refused(&no_subject), "the event has no subject (sub_id)");
}

#[test]
fn reasons_and_descriptions_quote_only_escaped_excerpts() {
    let evil = format!("EVIL\n\u{1b}[31m{}", "x".repeat(200));
    let why = ignored(&set(&evil, json!({}), iss_sub("u")));
    assert!(!why.contains('\n') && !why.contains('\u{1b}') && why.len() < 120, "{why}");
    let why = ignored(&revoked_session(json!({"format": evil})));
    assert!(!why.contains('\n') && why.len() < 120, "{why}");
    let why = ignored(&set(&format!("{SSF_EVENT}stream-updated"), json!({"status": evil}), iss_sub("u")));
    assert!(!why.contains('\n') && why.len() < 120, "{why}");
    let description = refused(&revoked_session(json!({"format": "iss_sub", "iss": ISS, "sub": evil.repeat(20)})));
    assert!(!description.contains("EVIL"), "{description}");
}
