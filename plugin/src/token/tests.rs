//! Verifier tests, one per rule and per checklist class reachable with the algorithms of this build.

use super::*;
use crate::b64;
use crate::mint::SigningKey;
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";

fn key(alg: Algorithm, seed: u8) -> SigningKey {
    SigningKey::from_seed(alg, [seed; 32]).unwrap()
}

fn issuer_with(keys: &[(&SigningKey, Option<&str>)]) -> Issuer {
    let jwks = json!({"keys": keys.iter().map(|(k, kid)| k.public_jwk(*kid)).collect::<Vec<_>>()});
    Issuer {
        issuer: ISS.into(),
        audiences: vec!["trading-api".into()],
        algorithms: vec![Algorithm::ES256, Algorithm::EdDSA],
        keys: KeySet::from_value(&jwks).unwrap(),
        clock_skew: 30,
        max_lifetime: None,
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "spiffe://trading.example/agent/trader", "aud": "trading-api", "exp": NOW + 300, "iat": NOW})
}

struct Fixture {
    es: SigningKey,
    ed: SigningKey,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let es = key(Algorithm::ES256, 1);
    let ed = key(Algorithm::EdDSA, 2);
    let verifier = Verifier::new(vec![issuer_with(&[(&es, Some("es")), (&ed, Some("ed"))])], DEFAULT_MAX_TOKEN_BYTES);
    Fixture { es, ed, verifier }
}

impl Fixture {
    fn check(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verifier.verify(token.as_bytes(), NOW, &PureRust)
    }
}

#[test]
fn accepts_valid_es256_and_eddsa_tokens() {
    let f = fixture();
    let t = f.check(&f.es.sign_jwt(Some("es"), &claims())).unwrap();
    assert_eq!(t.agent, "spiffe://trading.example/agent/trader");
    assert_eq!(t.subject, t.agent);
    assert_eq!(t.expires_at, NOW + 300);
    assert!(f.check(&f.ed.sign_jwt(Some("ed"), &claims())).is_ok());
    // Without a kid every key of the algorithm is a candidate (JWT-SVID allows this).
    assert!(f.check(&f.ed.sign_jwt(None, &claims())).is_ok());
}

#[test]
fn current_actor_comes_from_the_outermost_act() {
    let f = fixture();
    let mut c = claims();
    c["sub"] = "user:alice".into();
    c["act"] = json!({"sub": "spiffe://a.example/orchestrator", "act": {"sub": "spiffe://a.example/admin"}});
    let t = f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap();
    assert_eq!(t.subject, "user:alice");
    assert_eq!(t.agent, "spiffe://a.example/orchestrator");
    for bad in [json!("spiffe://x"), json!({}), json!({"sub": 1}), json!([])] {
        c["act"] = bad;
        assert_eq!(f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap_err(), TokenError::InvalidClaim("act"));
    }
}

#[test]
fn any_single_byte_change_is_rejected() {
    let f = fixture();
    for token in [f.es.sign_jwt(Some("es"), &claims()), f.ed.sign_jwt(Some("ed"), &claims())] {
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for delta in [1u8, 0x20, 0x80] {
                let mut changed = bytes.to_vec();
                changed[i] ^= delta;
                if let Ok(t) = f.verifier.verify(&changed, NOW, &PureRust) {
                    panic!("byte {i} ^ {delta:#x} still verified: {t:?}");
                }
            }
        }
    }
}

#[test]
fn size_cap_comes_before_parsing() {
    let f = fixture();
    let huge = ".".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
    assert_eq!(f.check(&huge).unwrap_err(), TokenError::TooLarge);
    assert_eq!(f.check("a.b.c.d.e").unwrap_err(), TokenError::Malformed("not three segments"));
    assert_eq!(f.check("a..c").unwrap_err(), TokenError::Malformed("empty segment"));
    assert_eq!(f.check("").unwrap_err(), TokenError::Malformed("not three segments"));
}

#[test]
fn rejects_jwe_and_json_serialization() {
    let f = fixture();
    assert!(matches!(f.check("eyJh.eyJi.c2ln.aXY.dGFn"), Err(TokenError::Malformed(_))));
    assert!(matches!(f.check(r#"{"payload":"x","signatures":[]}"#), Err(TokenError::Malformed(_))));
}

#[test]
fn rejects_signature_encoding_tricks() {
    let f = fixture();
    let t = f.es.sign_jwt(Some("es"), &claims());
    for bad in [format!("{t}="), format!("{t}AA"), format!("{t} "), t.replace('-', "+").replace('_', "/")] {
        if bad != t {
            assert!(f.check(&bad).is_err(), "{bad}");
        }
    }
    let (input, _) = t.rsplit_once('.').unwrap();
    // Empty, zero, and DER-shaped signatures.
    assert_eq!(f.check(&format!("{input}.")).unwrap_err(), TokenError::Malformed("empty segment"));
    let zero = b64::encode(&[0u8; 64]);
    assert_eq!(f.check(&format!("{input}.{zero}")).unwrap_err(), TokenError::BadSignature);
    let der = b64::encode(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]);
    assert_eq!(f.check(&format!("{input}.{der}")).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn rejects_r_or_s_out_of_range() {
    let f = fixture();
    let t = f.es.sign_jwt(Some("es"), &claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = b64::decode(sig.as_bytes()).unwrap();
    // n, the P-256 group order: r = n and s = n are out of range; r = 0 too.
    let n = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6,
        0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
    for (r, s) in [(&n[..], &sig[32..]), (&sig[..32], &n[..]), (&[0u8; 32][..], &sig[32..])] {
        let forged = [r, s].concat();
        assert_eq!(f.check(&format!("{input}.{}", b64::encode(&forged))).unwrap_err(), TokenError::BadSignature);
    }
}

#[test]
fn rejects_alg_none_in_any_case_and_unknown_algorithms() {
    let f = fixture();
    for alg in ["none", "None", "NONE", "nOnE", "HS256", "RS256", "es256", ""] {
        let header = json!({"alg": alg, "kid": "es"});
        let mut t = f.es.sign_jwt_with_header(&header, &claims());
        assert_eq!(f.check(&t).unwrap_err(), TokenError::UnsupportedAlgorithm, "{alg}");
        // And with the signature stripped to one byte, as "none" attacks send it.
        t.truncate(t.rfind('.').unwrap() + 1);
        t.push('A');
        assert!(f.check(&t).is_err());
    }
    let t = f.es.sign_jwt_with_header(&json!({"alg": 256}), &claims());
    assert_eq!(f.check(&t).unwrap_err(), TokenError::UnsupportedAlgorithm);
    let t = f.es.sign_jwt_with_header(&json!({"kid": "es"}), &claims());
    assert_eq!(f.check(&t).unwrap_err(), TokenError::Malformed("header has no alg"));
}

#[test]
fn rejects_algorithms_outside_the_issuers_allow_list() {
    let es = key(Algorithm::ES256, 1);
    let ed = key(Algorithm::EdDSA, 2);
    let mut issuer = issuer_with(&[(&es, Some("es")), (&ed, Some("ed"))]);
    issuer.algorithms = vec![Algorithm::ES256];
    let v = Verifier::new(vec![issuer], DEFAULT_MAX_TOKEN_BYTES);
    let t = ed.sign_jwt(Some("ed"), &claims());
    assert_eq!(v.verify(t.as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::AlgorithmNotAllowed);
}

#[test]
fn rejects_key_carrying_and_processing_headers() {
    let f = fixture();
    for name in ["jku", "jwk", "x5u", "x5c", "zip", "crit"] {
        let mut header = json!({"alg": "ES256", "kid": "es"});
        header[name] = json!("x");
        let t = f.es.sign_jwt_with_header(&header, &claims());
        assert_eq!(f.check(&t).unwrap_err(), TokenError::ForbiddenHeader(name));
    }
}

#[test]
fn hostile_kids_are_unknown_keys() {
    let f = fixture();
    let long = "a".repeat(jwk::MAX_KID_BYTES + 1);
    for kid in [json!("../../etc/passwd"), json!("' OR 1=1 --"), json!("$(reboot)"), json!(long), json!(7), json!("")] {
        let t = f.es.sign_jwt_with_header(&json!({"alg": "ES256", "kid": kid}), &claims());
        assert_eq!(f.check(&t).unwrap_err(), TokenError::UnknownKey);
    }
}

#[test]
fn key_must_match_the_tokens_algorithm() {
    let f = fixture();
    // An EdDSA token naming the ES256 key's kid finds no candidate key.
    let t = f.ed.sign_jwt(Some("es"), &claims());
    assert_eq!(f.check(&t).unwrap_err(), TokenError::UnknownKey);
}

#[test]
fn duplicate_members_deep_nesting_and_non_objects() {
    let f = fixture();
    let sign_raw = |header: &str, payload: &str| {
        let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
        format!("{input}.{}", b64::encode(&f.es.sign(input.as_bytes())))
    };
    let body = claims().to_string();
    let dup_header = sign_raw(r#"{"alg":"ES256","alg":"ES256","kid":"es"}"#, &body);
    assert!(matches!(f.check(&dup_header), Err(TokenError::Malformed(_))));
    let dup_claim = sign_raw(r#"{"alg":"ES256","kid":"es"}"#, &body.replacen('{', r#"{"sub":"spiffe://x/admin","#, 1));
    assert!(matches!(f.check(&dup_claim), Err(TokenError::Malformed(_))));
    let deep = body.replacen('{', &format!("{{\"x\":{}1{},", "[".repeat(1000), "]".repeat(1000)), 1);
    assert_eq!(
        f.check(&sign_raw(r#"{"alg":"ES256","kid":"es"}"#, &deep)).unwrap_err(),
        TokenError::Malformed("payload is nested too deeply")
    );
    assert!(matches!(f.check(&sign_raw(r#"["ES256"]"#, &body)), Err(TokenError::Malformed(_))));
    assert!(matches!(f.check(&sign_raw("\u{feff}{\"alg\":\"ES256\"}", &body)), Err(TokenError::Malformed(_))));
}

#[test]
fn issuer_rules() {
    let f = fixture();
    let mut c = claims();
    c["iss"] = "https://evil.example".into();
    assert_eq!(f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap_err(), TokenError::UnknownIssuer);
    c["iss"] = json!(["https://issuer.example"]);
    assert_eq!(f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap_err(), TokenError::InvalidClaim("iss"));

    // Issuer B's token signed with issuer A's key: B's keys do not verify it.
    let a_key = key(Algorithm::ES256, 9);
    let b_key = key(Algorithm::ES256, 10);
    let mut a = issuer_with(&[(&a_key, Some("k"))]);
    a.issuer = "https://a.example".into();
    let mut b = issuer_with(&[(&b_key, Some("k"))]);
    b.issuer = "https://b.example".into();
    let v = Verifier::new(vec![a, b], DEFAULT_MAX_TOKEN_BYTES);
    let mut c = claims();
    c["iss"] = "https://b.example".into();
    assert_eq!(
        v.verify(a_key.sign_jwt(Some("k"), &c).as_bytes(), NOW, &PureRust).unwrap_err(),
        TokenError::BadSignature
    );
    assert!(v.verify(b_key.sign_jwt(Some("k"), &c).as_bytes(), NOW, &PureRust).is_ok());
}

#[test]
fn claims_are_checked_after_the_signature() {
    let f = fixture();
    let mut c = claims();
    c["exp"] = json!(NOW - 100);
    let t = f.es.sign_jwt(Some("es"), &c);
    assert_eq!(f.check(&t).unwrap_err(), TokenError::Expired);
    // A forged token with an expired claim is reported as a bad signature, not as expired.
    let forged = format!("{}.{}", t.rsplit_once('.').unwrap().0, b64::encode(&[1u8; 64]));
    assert_eq!(f.check(&forged).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn audience_and_subject_are_required() {
    let f = fixture();
    let mut c = claims();
    c["aud"] = "other-api".into();
    assert_eq!(f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap_err(), TokenError::WrongAudience);
    c["aud"] = "trading-api".into();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap_err(), TokenError::MissingClaim("sub"));
}
