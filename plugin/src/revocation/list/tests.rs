use super::*;
use crate::b64;
use crate::mint::SigningKey;
use crate::revocation::selector::{Facts, Scope};
use crate::token::{Algorithm, KeySet, PureRust};
use serde_json::json;
use std::sync::LazyLock;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://revocations.example";

static ES: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [0x31; 32]).unwrap());
static RS: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::RS256, [0x32; 32]).unwrap());

fn verifier() -> StatementVerifier {
    StatementVerifier {
        issuer: ISS.into(),
        audiences: Vec::new(),
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        keys: KeySet::from_value(&json!({"keys": [ES.public_jwk(Some("es")), RS.public_jwk(Some("rs"))]})).unwrap(),
        typ: LIST_TYP,
        clock_skew: 30,
        max_age: 86_400,
        max_bytes: 1 << 20,
    }
}

fn list(revocations: Value) -> Value {
    json!({"iss": ISS, "iat": NOW - 60, "exp": NOW + 3600, "revocations": revocations})
}

fn entries() -> Value {
    json!([
        {"agent": "spiffe://corp.example/agent/reporter"},
        {"jti": "8c1e", "issuer": "https://idp.example", "expires": "2027-01-15T08:00:00Z"},
        {"trust_domain": "partner.example", "in": "current", "issued_before": NOW - 10},
    ])
}

fn sign_as(key: &SigningKey, typ: &str, claims: &Value) -> String {
    let kid = if key.alg() == Algorithm::ES256 { "es" } else { "rs" };
    key.sign_jwt_with_header(&json!({"alg": key.alg().name(), "kid": kid, "typ": typ}), claims)
}

fn sign(claims: &Value) -> String {
    sign_as(&ES, LIST_TYP, claims)
}

fn signed(body: &str) -> Result<List, ListError> {
    parse(body.as_bytes(), Some(&verifier()), false, NOW, &PureRust)
}

fn unsigned(body: &str, verifier: Option<&StatementVerifier>) -> Result<List, ListError> {
    parse(body.as_bytes(), verifier, true, NOW, &PureRust)
}

fn wanted() -> Vec<Selector> {
    vec![
        Selector::validated(Facts { agent: Some("spiffe://corp.example/agent/reporter".into()), ..Facts::default() })
            .unwrap(),
        Selector::validated(Facts {
            jti: Some("8c1e".into()),
            issuer: Some("https://idp.example".into()),
            // 2027-01-15T08:00:00Z
            expires: Some(1_800_000_000),
            ..Facts::default()
        })
        .unwrap(),
        Selector::validated(Facts {
            trust_domain: Some("partner.example".into()),
            scope: Scope::Current,
            issued_before: Some(NOW - 10),
            ..Facts::default()
        })
        .unwrap(),
    ]
}

#[test]
fn signed_lists_are_read() {
    for key in [&*ES, &*RS] {
        let got = signed(&sign_as(key, LIST_TYP, &list(entries()))).unwrap();
        assert_eq!(got, List { issued_at: NOW - 60, selectors: wanted() });
    }
    // Served from a file: surrounding whitespace does not matter.
    assert!(signed(&format!("\n {}\r\n", sign(&list(entries())))).is_ok());
    assert_eq!(signed(&sign(&list(json!([])))).unwrap().selectors, vec![]);
    assert!(signed(&sign_as(&ES, "application/Revocation-List+JWT", &list(entries()))).is_ok());
    // No exp: fine.
    let mut claims = list(entries());
    claims.as_object_mut().unwrap().remove("exp");
    assert!(signed(&sign(&claims)).is_ok());
}

#[test]
fn unsigned_lists_only_where_allowed() {
    let body = list(entries()).to_string();
    assert_eq!(signed(&body).unwrap_err(), ListError::Unsigned);
    assert_eq!(parse(body.as_bytes(), None, false, NOW, &PureRust).unwrap_err(), ListError::Unsigned);
    assert_eq!(unsigned(&format!("  {body}\n"), None).unwrap().selectors, wanted());
    assert_eq!(unsigned(&body, Some(&verifier())).unwrap().selectors, wanted());
    // The claim rules still hold: the verifier's issuer, or without one any non-empty issuer; iat; exp.
    let mut other = list(entries());
    other["iss"] = json!("https://other.example");
    assert_eq!(
        unsigned(&other.to_string(), Some(&verifier())).unwrap_err(),
        ListError::Statement(StatementError::WrongIssuer)
    );
    assert!(unsigned(&other.to_string(), None).is_ok());
    for iss in [json!(""), json!(1)] {
        let mut bad = list(entries());
        bad["iss"] = iss;
        assert_eq!(unsigned(&bad.to_string(), None).unwrap_err(), ListError::Statement(StatementError::WrongIssuer));
    }
    let mut future = list(entries());
    future["iat"] = json!(NOW + 31);
    for v in [None, Some(&verifier())] {
        assert_eq!(unsigned(&future.to_string(), v).unwrap_err(), ListError::Statement(StatementError::IssuedInFuture));
    }
    let mut expired = list(entries());
    expired["exp"] = json!(NOW - 31);
    assert_eq!(unsigned(&expired.to_string(), None).unwrap_err(), ListError::Statement(StatementError::Expired));
    // Allowing unsigned lists does not make a signed one unchecked.
    let forged = sign_as(&SigningKey::from_seed(Algorithm::ES256, [0x33; 32]).unwrap(), LIST_TYP, &list(entries()));
    assert_eq!(unsigned(&forged, Some(&verifier())).unwrap_err(), ListError::Statement(StatementError::BadSignature));
    assert_eq!(unsigned(&forged, None).unwrap_err(), ListError::NoVerifier);
    // The verifier's size cap applies to unsigned lists too.
    let mut small = verifier();
    small.max_bytes = body.len() - 1;
    assert_eq!(unsigned(&body, Some(&small)).unwrap_err(), ListError::Statement(StatementError::TooLarge));
}

#[test]
fn bad_signed_lists_are_refused() {
    let claims = list(entries());
    let good = sign(&claims);
    // A bad signature: the last signature character changed, or another key under the same kid.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let err = parse(&tampered, Some(&verifier()), false, NOW, &PureRust).unwrap_err();
    assert!(
        matches!(err, ListError::Statement(StatementError::BadSignature | StatementError::Malformed(_))),
        "{err:?}"
    );
    let stranger = SigningKey::from_seed(Algorithm::ES256, [0x34; 32]).unwrap();
    assert_eq!(
        signed(&sign_as(&stranger, LIST_TYP, &claims)).unwrap_err(),
        ListError::Statement(StatementError::BadSignature)
    );
    let none = format!(
        "{}.{}.AAAA",
        b64::encode(br#"{"alg":"none","typ":"revocation-list+jwt"}"#),
        b64::encode(claims.to_string().as_bytes())
    );
    assert_eq!(signed(&none).unwrap_err(), ListError::Statement(StatementError::UnsupportedAlgorithm));
    assert_eq!(
        unsigned(&none, Some(&verifier())).unwrap_err(),
        ListError::Statement(StatementError::UnsupportedAlgorithm)
    );
    // A SET or an access token is not a list.
    assert_eq!(
        signed(&sign_as(&ES, "secevent+jwt", &claims)).unwrap_err(),
        ListError::Statement(StatementError::WrongType)
    );
    assert_eq!(signed(&ES.sign_jwt(Some("es"), &claims)).unwrap_err(), ListError::Statement(StatementError::WrongType));
    assert_eq!(parse(good.as_bytes(), None, false, NOW, &PureRust).unwrap_err(), ListError::NoVerifier);
    let mut future = claims.clone();
    future["iat"] = json!(NOW + 31);
    assert_eq!(signed(&sign(&future)).unwrap_err(), ListError::Statement(StatementError::IssuedInFuture));
    let mut stale = claims.clone();
    stale["iat"] = json!(NOW - 86_401);
    assert_eq!(signed(&sign(&stale)).unwrap_err(), ListError::Statement(StatementError::TooOld));
    let mut wrong = claims;
    wrong["iss"] = json!("https://other.example");
    assert_eq!(signed(&sign(&wrong)).unwrap_err(), ListError::Statement(StatementError::WrongIssuer));
    assert!(matches!(signed("not a list").unwrap_err(), ListError::Statement(StatementError::Malformed(_))));
    assert!(matches!(signed("").unwrap_err(), ListError::Statement(StatementError::Malformed(_))));
}

#[test]
fn size_caps() {
    let good = sign(&list(entries()));
    let mut v = verifier();
    v.max_bytes = good.len() - 1;
    let err = parse(good.as_bytes(), Some(&v), false, NOW, &PureRust).unwrap_err();
    assert_eq!(err, ListError::Statement(StatementError::TooLarge));
    let huge = vec![b' '; MAX_LIST_BYTES + 1];
    assert_eq!(parse(&huge, Some(&verifier()), true, NOW, &PureRust).unwrap_err(), ListError::TooLarge);
}

#[test]
fn repeated_names_are_refused() {
    let dup_top = format!(r#"{{"iss":"{ISS}","iat":{},"revocations":[],"revocations":[{{"jti":"a"}}]}}"#, NOW);
    assert_eq!(unsigned(&dup_top, None).unwrap_err(), ListError::Json(JsonError::DuplicateMember));
    let dup_entry = format!(r#"{{"iss":"{ISS}","iat":{},"revocations":[{{"jti":"a","jti":"b"}}]}}"#, NOW);
    assert_eq!(unsigned(&dup_entry, None).unwrap_err(), ListError::Json(JsonError::DuplicateMember));
    // Signed: the payload is read by the token's strict reader.
    let header = b64::encode(json!({"alg": "ES256", "kid": "es", "typ": LIST_TYP}).to_string().as_bytes());
    let input = format!("{header}.{}", b64::encode(dup_entry.as_bytes()));
    let token = format!("{input}.{}", b64::encode(&ES.sign(input.as_bytes())));
    assert!(matches!(signed(&token).unwrap_err(), ListError::Statement(StatementError::Malformed(_))));
    for bad in ["{", r#"{"iss":"x"} {}"#, "{\"iss\":\"\u{0}\"}"] {
        assert_eq!(unsigned(bad, None).unwrap_err(), ListError::Json(JsonError::Syntax), "{bad:?}");
    }
}

#[test]
fn errors_name_the_exact_entry() {
    let at = |entry: Value| {
        let mut revocations = entries();
        revocations.as_array_mut().unwrap().push(entry);
        signed(&sign(&list(revocations))).unwrap_err().to_string()
    };
    assert_eq!(at(json!({"agent": ""})), "revocations[3].agent: must not be empty");
    assert_eq!(at(json!({"trust_domain": "Bad Domain"})).split(':').next(), Some("revocations[3].trust_domain"));
    assert!(at(json!({"jti": 7})).starts_with("revocations[3].jti: invalid type"));
    assert!(at(json!({"jti": "a", "expires": "soon"})).starts_with("revocations[3].expires: "));
    assert!(at(json!({"jti": "a", "expires": 0})).starts_with("revocations[3].expires: must be from 1970"));
    assert!(at(json!({"jti": "a", "in": "elsewhere"})).starts_with("revocations[3].in: "));
    assert!(at(json!({"jti": "a", "agnet": "x"})).starts_with("revocations[3]"), "unknown field");
    assert_eq!(at(json!("jti")), "revocations[3]: must be an object");
    assert_eq!(at(json!(["jti"])), "revocations[3]: must be an object");
    assert!(at(json!({})).starts_with("revocations[3]: must name"));
    assert!(at(json!({"issuer": "https://idp.example"})).starts_with("revocations[3]: must name"));
    let evil = at(json!({"jti": "a", "evil\nfield\u{1b}": 1}));
    assert!(!evil.contains('\n') && !evil.contains('\u{1b}'), "{evil}");
    for (claims, want) in [
        (json!({"iss": ISS, "iat": NOW}), "revocations: is required"),
        (json!({"iss": ISS, "iat": NOW, "revocations": {"jti": "a"}}), "revocations: must be an array"),
    ] {
        assert_eq!(signed(&sign(&claims)).unwrap_err().to_string(), want);
    }
}

#[test]
fn at_most_100000_entries() {
    let body = |n: usize| {
        let entries = vec![r#"{"jti":"a"}"#; n].join(",");
        format!(r#"{{"iss":"{ISS}","iat":{NOW},"revocations":[{entries}]}}"#)
    };
    let full = unsigned(&body(MAX_ENTRIES), None).unwrap();
    assert_eq!(full.selectors.len(), MAX_ENTRIES);
    assert_eq!(
        unsigned(&body(MAX_ENTRIES + 1), None).unwrap_err().to_string(),
        "revocations: has 100001 entries; at most 100000 are allowed"
    );
}
