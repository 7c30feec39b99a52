use super::*;
use crate::b64;
use crate::mint::SigningKey;
use crate::token::PureRust;
use crate::token::crypto::HmacKey;
use serde_json::json;
use std::sync::LazyLock;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example";

static ES: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [0x11; 32]).unwrap());
static RS: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::RS256, [0x12; 32]).unwrap());
static OTHER_ES: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [0x13; 32]).unwrap());

fn keys() -> KeySet {
    KeySet::from_value(&json!({"keys": [ES.public_jwk(Some("es")), RS.public_jwk(Some("rs"))]})).unwrap()
}

fn verifier() -> StatementVerifier {
    StatementVerifier {
        issuer: ISS.into(),
        audiences: vec!["https://gw.example".into()],
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        keys: keys(),
        typ: SET_TYP,
        clock_skew: 30,
        max_age: 3600,
        max_bytes: 16 * 1024,
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "https://gw.example", "iat": NOW - 10, "jti": "set-1", "events": {}})
}

fn header(key: &SigningKey, kid: &str, typ: &str) -> Value {
    json!({"alg": key.alg().name(), "kid": kid, "typ": typ})
}

fn sign(key: &SigningKey, kid: &str, claims: &Value) -> String {
    key.sign_jwt_with_header(&header(key, kid, SET_TYP), claims)
}

fn check(token: &str) -> Result<Statement, StatementError> {
    verifier().verify(token.as_bytes(), NOW, &PureRust)
}

fn with(claims: Value, name: &str, v: Value) -> Value {
    let mut c = claims;
    c[name] = v;
    c
}

fn without(claims: Value, name: &str) -> Value {
    let mut c = claims;
    c.as_object_mut().unwrap().remove(name);
    c
}

#[test]
fn es256_and_rs256_statements_verify() {
    for (key, kid) in [(&*ES, "es"), (&*RS, "rs")] {
        let s = check(&sign(key, kid, &claims())).unwrap();
        assert_eq!(s.issued_at, NOW - 10);
        assert_eq!(s.jti.as_deref(), Some("set-1"));
        assert_eq!(Value::Object(s.claims), claims());
    }
    // Without kid: every key of the algorithm is tried.
    let no_kid = ES.sign_jwt_with_header(&json!({"alg": "ES256", "typ": SET_TYP}), &claims());
    assert!(check(&no_kid).is_ok());
}

#[test]
fn typ_is_required_and_compared_as_a_media_type() {
    for ok in ["secevent+jwt", "application/secevent+jwt", "SecEvent+JWT", "APPLICATION/secevent+jwt"] {
        assert!(check(&ES.sign_jwt_with_header(&header(&ES, "es", ok), &claims())).is_ok(), "{ok}");
    }
    for bad in ["JWT", "at+jwt", "secevent+jwt ", "application/", "", "application/application/secevent+jwt"] {
        let token = ES.sign_jwt_with_header(&header(&ES, "es", bad), &claims());
        assert_eq!(check(&token).unwrap_err(), StatementError::WrongType, "{bad}");
    }
    let untyped = ES.sign_jwt_with_header(&json!({"alg": "ES256", "kid": "es"}), &claims());
    assert_eq!(check(&untyped).unwrap_err(), StatementError::WrongType);
    let number = ES.sign_jwt_with_header(&json!({"alg": "ES256", "kid": "es", "typ": 1}), &claims());
    assert_eq!(check(&number).unwrap_err().code(), "invalid_request");
    // An access token is not an event, whatever it says.
    assert_eq!(check(&ES.sign_jwt(Some("es"), &claims())).unwrap_err(), StatementError::WrongType);
}

#[test]
fn algorithms_and_keys() {
    // alg none, with or without a signature segment.
    let h = b64::encode(br#"{"alg":"none","typ":"secevent+jwt"}"#);
    let p = b64::encode(claims().to_string().as_bytes());
    let none = format!("{h}.{p}.AAAA");
    assert_eq!(check(&none).unwrap_err(), StatementError::UnsupportedAlgorithm);
    assert_eq!(check(&none).unwrap_err().code(), "invalid_key");
    assert_eq!(check(&format!("{h}.{p}.")).unwrap_err().code(), "invalid_request");
    // HS256: not allowed, or allowed but no secret configured (never verified with a public key's bytes).
    let hs = SigningKey::from_seed(Algorithm::HS256, [0x14; 32]).unwrap();
    let token = hs.sign_jwt_with_header(&header(&hs, "es", SET_TYP), &claims());
    assert_eq!(check(&token).unwrap_err(), StatementError::AlgorithmNotAllowed);
    let mut v = verifier();
    v.algorithms.push(Algorithm::HS256);
    assert_eq!(v.verify(token.as_bytes(), NOW, &PureRust).unwrap_err(), StatementError::UnknownKey);
    // Explicitly agreed: a configured secret.
    v.keys.add_secret(Some("hs"), HmacKey::new(Algorithm::HS256, hs.hmac_secret().unwrap()).unwrap()).unwrap();
    let token = hs.sign_jwt_with_header(&header(&hs, "hs", SET_TYP), &claims());
    assert!(v.verify(token.as_bytes(), NOW, &PureRust).is_ok());
    // RS256 allowed, but the kid names the EC key.
    let token = RS.sign_jwt_with_header(&header(&RS, "es", SET_TYP), &claims());
    assert_eq!(check(&token).unwrap_err(), StatementError::UnknownKey);
    // Unknown kid, another key under a known kid, a kid no key could have.
    assert_eq!(check(&sign(&ES, "nope", &claims())).unwrap_err(), StatementError::UnknownKey);
    assert_eq!(check(&sign(&OTHER_ES, "es", &claims())).unwrap_err(), StatementError::BadSignature);
    assert_eq!(check(&sign(&ES, "", &claims())).unwrap_err(), StatementError::UnknownKey);
    // No keys yet.
    let mut v = verifier();
    v.keys = KeySet::default();
    let err = v.verify(sign(&ES, "es", &claims()).as_bytes(), NOW, &PureRust).unwrap_err();
    assert_eq!((err, err.code()), (StatementError::KeysUnavailable, "invalid_key"));
    // ES256 only: an RS256 statement from a known key is still refused.
    let mut v = verifier();
    v.algorithms = vec![Algorithm::ES256];
    let err = v.verify(sign(&RS, "rs", &claims()).as_bytes(), NOW, &PureRust).unwrap_err();
    assert_eq!(err, StatementError::AlgorithmNotAllowed);
}

#[test]
fn hostile_headers_are_refused() {
    for (name, value) in [("jwk", ES.public_jwk(None)), ("jku", json!("https://evil")), ("crit", json!(["x"]))] {
        let mut h = header(&ES, "es", SET_TYP);
        h[name] = value;
        let err = check(&ES.sign_jwt_with_header(&h, &claims())).unwrap_err();
        assert!(matches!(err, StatementError::ForbiddenHeader(_)), "{name}: {err:?}");
    }
    let dup = br#"{"alg":"ES256","kid":"es","typ":"secevent+jwt","typ":"JWT"}"#;
    let input = format!("{}.{}", b64::encode(dup), b64::encode(claims().to_string().as_bytes()));
    let token = format!("{input}.{}", b64::encode(&ES.sign(input.as_bytes())));
    assert!(matches!(check(&token).unwrap_err(), StatementError::Malformed(_)));
}

#[test]
fn payloads_are_read_strictly() {
    let h = b64::encode(header(&ES, "es", SET_TYP).to_string().as_bytes());
    for payload in [
        format!(r#"{{"iss":"{ISS}","iat":{},"iss":"{ISS}"}}"#, NOW),
        format!(r#"{{"iss":"{ISS}","iat":{},"events":{{"a":{{}},"a":{{}}}}}}"#, NOW),
        "[1]".to_owned(),
        "{".to_owned(),
        format!(r#"{{"iss":"{ISS}"}} x"#),
        format!("{}{}", "[".repeat(40), "]".repeat(40)),
    ] {
        let input = format!("{h}.{}", b64::encode(payload.as_bytes()));
        let token = format!("{input}.{}", b64::encode(&ES.sign(input.as_bytes())));
        assert!(matches!(check(&token).unwrap_err(), StatementError::Malformed(_)), "{payload}");
    }
    for garbage in ["", ".", "..", "a.b", "a.b.c", "a.b.c.d", "eyJ.eyJ.AA=", "\u{0}.\u{0}.\u{0}"] {
        let err = check(garbage).unwrap_err();
        assert!(matches!(err, StatementError::Malformed(_) | StatementError::UnknownKey), "{garbage:?}: {err:?}");
    }
}

#[test]
fn the_size_cap_comes_first() {
    let token = sign(&ES, "es", &claims());
    let mut v = verifier();
    v.max_bytes = token.len();
    assert!(v.verify(token.as_bytes(), NOW, &PureRust).is_ok());
    v.max_bytes = token.len() - 1;
    assert_eq!(v.verify(token.as_bytes(), NOW, &PureRust).unwrap_err(), StatementError::TooLarge);
    assert_eq!(v.verify(&vec![b'.'; token.len()], NOW, &PureRust).unwrap_err(), StatementError::TooLarge);
}

#[test]
fn issuer_and_audience() {
    for bad in [json!("https://idp.example/"), json!("https://IDP.example"), json!(""), json!(1), json!([ISS])] {
        let err = check(&sign(&ES, "es", &with(claims(), "iss", bad.clone()))).unwrap_err();
        assert_eq!((err, err.code()), (StatementError::WrongIssuer, "invalid_issuer"), "{bad}");
    }
    assert_eq!(check(&sign(&ES, "es", &without(claims(), "iss"))).unwrap_err(), StatementError::WrongIssuer);
    assert!(check(&sign(&ES, "es", &with(claims(), "aud", json!(["x", "https://gw.example"])))).is_ok());
    for bad in [json!("x"), json!(["x"]), json!([]), json!(""), json!(7), json!(["https://gw.example", 1])] {
        let err = check(&sign(&ES, "es", &with(claims(), "aud", bad.clone()))).unwrap_err();
        assert_eq!((err, err.code()), (StatementError::WrongAudience, "invalid_audience"), "{bad}");
    }
    assert_eq!(check(&sign(&ES, "es", &without(claims(), "aud"))).unwrap_err(), StatementError::WrongAudience);
    // No audiences configured: aud is not checked.
    let mut v = verifier();
    v.audiences.clear();
    for aud in [json!("x"), json!(7)] {
        assert!(v.verify(sign(&ES, "es", &with(claims(), "aud", aud)).as_bytes(), NOW, &PureRust).is_ok());
    }
    assert!(v.verify(sign(&ES, "es", &without(claims(), "aud")).as_bytes(), NOW, &PureRust).is_ok());
}

#[test]
fn times() {
    let at = |iat: Value| check(&sign(&ES, "es", &with(claims(), "iat", iat)));
    assert!(at(json!(NOW + 30)).is_ok());
    assert_eq!(at(json!(NOW + 31)).unwrap_err(), StatementError::IssuedInFuture);
    assert!(at(json!(NOW - 3600)).is_ok());
    assert_eq!(at(json!(NOW - 3601)).unwrap_err(), StatementError::TooOld);
    assert!(at(json!(NOW as f64 - 0.5)).is_ok());
    for bad in [json!("1"), json!(-1), json!(null), json!(1e300), json!([NOW])] {
        assert_eq!(at(bad.clone()).unwrap_err(), StatementError::InvalidClaim("iat"), "{bad}");
    }
    assert_eq!(check(&sign(&ES, "es", &without(claims(), "iat"))).unwrap_err(), StatementError::MissingClaim("iat"));
    let exp = |exp: Value| check(&sign(&ES, "es", &with(claims(), "exp", exp)));
    assert!(exp(json!(NOW - 29)).is_ok());
    assert_eq!(exp(json!(NOW - 30)).unwrap_err(), StatementError::Expired);
    assert_eq!(exp(json!("soon")).unwrap_err(), StatementError::InvalidClaim("exp"));
    let nbf = |nbf: Value| check(&sign(&ES, "es", &with(claims(), "nbf", nbf)));
    assert!(nbf(json!(NOW + 30)).is_ok());
    assert_eq!(nbf(json!(NOW + 31)).unwrap_err(), StatementError::NotYetValid);
    assert_eq!(nbf(json!(true)).unwrap_err(), StatementError::InvalidClaim("nbf"));
    // An extreme max_age or skew does not overflow.
    let mut v = verifier();
    (v.max_age, v.clock_skew) = (i64::MAX, i64::MAX);
    assert!(v.verify(sign(&ES, "es", &with(claims(), "iat", json!(0))).as_bytes(), NOW, &PureRust).is_ok());
    let at_min = v.verify(sign(&ES, "es", &claims()).as_bytes(), i64::MIN, &PureRust);
    assert_eq!(at_min.unwrap_err(), StatementError::IssuedInFuture);
}

#[test]
fn jti_is_a_string_when_present() {
    assert_eq!(check(&sign(&ES, "es", &without(claims(), "jti"))).unwrap().jti, None);
    let escaped = check(&sign(&ES, "es", &with(claims(), "jti", json!("a\"b")))).unwrap();
    assert_eq!(escaped.jti.as_deref(), Some("a\"b"));
    for bad in [json!(1), json!(null), json!(["a"])] {
        let err = check(&sign(&ES, "es", &with(claims(), "jti", bad))).unwrap_err();
        assert_eq!(err, StatementError::InvalidClaim("jti"));
    }
}

#[test]
fn every_single_byte_change_is_refused() {
    let token = sign(&ES, "es", &claims());
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'A', b'.', b'_', 0xff] {
            if bytes[i] == replacement {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[i] = replacement;
            assert!(verifier().verify(&changed, NOW, &PureRust).is_err(), "byte {i} -> {replacement}");
        }
    }
    for cut in 0..bytes.len() {
        assert!(verifier().verify(&bytes[..cut], NOW, &PureRust).is_err(), "cut at {cut}");
    }
}

#[test]
fn descriptions_never_echo_the_statement() {
    let evil = "EVIL\u{1b}[31m\n<script>";
    let hostile = [
        with(claims(), "iss", json!(evil)),
        with(claims(), "aud", json!(evil)),
        with(claims(), "iat", json!(evil)),
        with(claims(), "jti", json!({ evil: evil })),
    ];
    for c in hostile {
        let err = check(&sign(&ES, "es", &c)).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("EVIL") && !text.contains('\n') && !text.contains('\u{1b}'), "{text}");
    }
    let token = ES.sign_jwt_with_header(&header(&ES, evil, evil), &claims());
    let text = check(&token).unwrap_err().to_string();
    assert!(!text.contains("EVIL"), "{text}");
}

#[test]
fn codes_and_labels() {
    use StatementError as E;
    for (e, code) in [
        (E::TooLarge, "invalid_request"),
        (E::Malformed("x"), "invalid_request"),
        (E::ForbiddenHeader("jku"), "invalid_request"),
        (E::WrongType, "invalid_request"),
        (E::UnsupportedAlgorithm, "invalid_key"),
        (E::AlgorithmNotAllowed, "invalid_key"),
        (E::KeysUnavailable, "invalid_key"),
        (E::UnknownKey, "invalid_key"),
        (E::BadSignature, "invalid_key"),
        (E::WrongIssuer, "invalid_issuer"),
        (E::WrongAudience, "invalid_audience"),
        (E::MissingClaim("iat"), "invalid_request"),
        (E::InvalidClaim("iat"), "invalid_request"),
        (E::IssuedInFuture, "invalid_request"),
        (E::TooOld, "invalid_request"),
        (E::Expired, "invalid_request"),
        (E::NotYetValid, "invalid_request"),
    ] {
        assert_eq!(e.code(), code, "{e:?}");
        assert!(!e.label().is_empty() && !e.to_string().is_empty());
    }
}

#[test]
fn claims_alone_for_unsigned_documents() {
    let map = claims().as_object().cloned().unwrap();
    let s = verifier().check_claims(&Claims::from_map(map.clone()), NOW).unwrap();
    assert_eq!(s.claims, map);
    let mut map = map;
    map.insert("iss".into(), json!("https://other"));
    assert_eq!(verifier().check_claims(&Claims::from_map(map), NOW).unwrap_err(), StatementError::WrongIssuer);
}
