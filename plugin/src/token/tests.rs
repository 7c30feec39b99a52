//! Verifier tests, one per rule and per checklist class reachable with the algorithms of this build.

use super::*;
use crate::b64;
use crate::mint::SigningKey;
use crate::token::profile::Profile;
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
        max_delegation_depth: delegation::DEFAULT_MAX_DEPTH,
        jwt_authn_payload_header: None,
        remote: None,
        binding: Default::default(),
        dpop: Default::default(),
        iss_required: true,
        profile: Profile::Jwt,
        trust_domain: None,
        required_claims: vec![],
        revoked_jti: vec![],
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
    assert_eq!(t.agent(), "spiffe://trading.example/agent/trader");
    assert_eq!(t.subject(), t.agent());
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
    assert_eq!(t.subject(), "user:alice");
    assert_eq!(t.agent(), "spiffe://a.example/orchestrator");
    for bad in [json!("spiffe://x"), json!({}), json!({"sub": 1}), json!([])] {
        c["act"] = bad;
        assert_eq!(f.check(&f.es.sign_jwt(Some("es"), &c)).unwrap_err(), TokenError::InvalidClaim("act"));
    }
}

#[test]
fn tokens_verify_alike_whichever_reader_reads_them() {
    // The header and payload shapes real issuers send go through the fast readers; escapes, whitespace and
    // sizes beyond the stack buffers go through serde_json. Each must verify to the same identity.
    let f = fixture();
    let sign_raw = |header: &str, payload: &str| {
        let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
        format!("{input}.{}", b64::encode(&f.es.sign(input.as_bytes())))
    };
    let body = claims().to_string();
    let escaped = body.replace("agent/trader", "agent\\/tr\\u0061der");
    let pretty = serde_json::to_string_pretty(&claims()).unwrap();
    let mut large = claims();
    large["note"] = "n".repeat(3000).into();
    let large = large.to_string();
    let padding = "p".repeat(1000);
    let plain_header = r#"{"alg":"ES256","kid":"es","typ":"JWT"}"#;
    let headers = [
        plain_header.to_owned(),
        r#"{"alg":"ES\u0032\u00356","kid":"\u0065s","typ":"J\u0057T"}"#.to_owned(),
        "{\"alg\": \"ES256\",\r\n \"kid\": \"es\"}".to_owned(),
        format!(r#"{{"alg":"ES256","kid":"es","x-padding":"{padding}"}}"#),
        r#"{"alg":"ES256","kid":"es","a":"1","b":"2","c":"3","d":"4","e":"5"}"#.to_owned(),
    ];
    for header in &headers {
        for payload in [&body, &escaped, &pretty, &large] {
            let t = f.check(&sign_raw(header, payload)).unwrap_or_else(|e| panic!("{header} {payload}: {e}"));
            assert_eq!(t.agent(), "spiffe://trading.example/agent/trader");
            assert_eq!(t.expires_at, NOW + 300);
        }
    }
    let dup_after_many = r#"{"alg":"ES256","kid":"es","a":"1","b":"2","c":"3","d":"4","e":"5","a":"6"}"#;
    assert_eq!(
        f.check(&sign_raw(dup_after_many, &body)).unwrap_err(),
        TokenError::Malformed("header is not a JSON object")
    );
    let big_dup = large.replacen('{', r#"{"sub":"spiffe://x/admin","#, 1);
    assert_eq!(
        f.check(&sign_raw(plain_header, &big_dup)).unwrap_err(),
        TokenError::Malformed("payload is not a JSON object")
    );
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
    for alg in ["none", "None", "NONE", "nOnE", "es256", "Hs256", "ES256K", ""] {
        let header = json!({"alg": alg, "kid": "es"});
        let mut t = f.es.sign_jwt_with_header(&header, &claims());
        assert_eq!(f.check(&t).unwrap_err(), TokenError::UnsupportedAlgorithm, "{alg}");
        // And with the signature stripped to one byte, as "none" attacks send it.
        t.truncate(t.rfind('.').unwrap() + 1);
        t.push('A');
        assert!(f.check(&t).is_err());
    }
    // Known algorithms this issuer does not allow (HMAC needs an explicit secret; no RSA keys here).
    for alg in ["HS256", "RS256", "PS256"] {
        let t = f.es.sign_jwt_with_header(&json!({"alg": alg, "kid": "es"}), &claims());
        assert_eq!(f.check(&t).unwrap_err(), TokenError::AlgorithmNotAllowed, "{alg}");
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

// ---- RS*/PS*/ES384/HS* (added with those algorithms) ----

/// One RSA key per test binary: generation takes a while. Every RS*/PS* test key is this key bound to an
/// algorithm (the JWKS lists it once per algorithm, under different kids).
static RSA_KEY: std::sync::LazyLock<SigningKey> =
    std::sync::LazyLock::new(|| SigningKey::from_seed(Algorithm::RS256, [0x52; 32]).unwrap());

fn rsa_key(alg: Algorithm) -> SigningKey {
    RSA_KEY.with_rsa_alg(alg).unwrap()
}

const RSA_ALGS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// A signing key for every algorithm, with its kid (the algorithm's name).
fn every_key() -> Vec<SigningKey> {
    let mut keys = vec![key(Algorithm::ES256, 1), key(Algorithm::ES384, 3), key(Algorithm::EdDSA, 2)];
    keys.extend(RSA_ALGS.map(rsa_key));
    keys.extend(HMAC_ALGS.map(|alg| key(alg, 4)));
    keys
}

/// An issuer that allows every algorithm and holds every key of [`every_key`]: public keys from a JWKS,
/// HMAC secrets added from configuration.
fn issuer_with_every_key(keys: &[SigningKey]) -> Issuer {
    let public: Vec<(&SigningKey, Option<&str>)> =
        keys.iter().filter(|k| !k.alg().is_hmac()).map(|k| (k, Some(k.alg().name()))).collect();
    let mut issuer = issuer_with(&public);
    for k in keys.iter().filter(|k| k.alg().is_hmac()) {
        issuer.keys.add_secret(Some(k.alg().name()), k.hmac_key().unwrap().clone()).unwrap();
    }
    issuer.algorithms = Algorithm::ALL.to_vec();
    issuer
}

#[test]
fn every_algorithm_accepts_a_valid_token() {
    let keys = every_key();
    let v = Verifier::new(vec![issuer_with_every_key(&keys)], DEFAULT_MAX_TOKEN_BYTES);
    assert_eq!(keys.len(), Algorithm::ALL.len());
    for k in &keys {
        let t = v.verify(k.sign_jwt(Some(k.alg().name()), &claims()).as_bytes(), NOW, &PureRust);
        assert_eq!(
            t.map(|t| t.agent().to_owned()),
            Ok("spiffe://trading.example/agent/trader".to_owned()),
            "{:?}",
            k.alg()
        );
        // Without a kid, every key of the algorithm is a candidate.
        assert!(v.verify(k.sign_jwt(None, &claims()).as_bytes(), NOW, &PureRust).is_ok(), "{:?}", k.alg());
        // Another algorithm's kid finds no key.
        let other = if k.alg() == Algorithm::ES256 { "ES384" } else { "ES256" };
        assert_eq!(
            v.verify(k.sign_jwt(Some(other), &claims()).as_bytes(), NOW, &PureRust).unwrap_err(),
            TokenError::UnknownKey
        );
    }
}

#[test]
fn new_algorithms_reject_any_single_byte_change_in_the_signature_and_wrong_lengths() {
    let keys = every_key();
    let v = Verifier::new(vec![issuer_with_every_key(&keys)], DEFAULT_MAX_TOKEN_BYTES);
    for k in keys.iter().filter(|k| !matches!(k.alg(), Algorithm::ES256 | Algorithm::EdDSA)) {
        let t = k.sign_jwt(Some(k.alg().name()), &claims());
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = b64::decode(sig.as_bytes()).unwrap();
        let forge = |s: &[u8]| v.verify(format!("{input}.{}", b64::encode(s)).as_bytes(), NOW, &PureRust);
        assert!(forge(&sig).is_ok());
        for i in (0..sig.len()).step_by(7).chain([sig.len() - 1]) {
            let mut s = sig.clone();
            s[i] ^= 0x01;
            assert_eq!(forge(&s).unwrap_err(), TokenError::BadSignature, "{:?} byte {i}", k.alg());
        }
        // One byte short or long, with or without a leading zero, and empty-ish.
        let short = &sig[..sig.len() - 1];
        let long = [sig.as_slice(), &[0]].concat();
        let zero_led = [&[0u8][..], &sig].concat();
        for s in [short, &sig[1..], &long, &zero_led, &[0u8][..]] {
            assert_eq!(forge(s).unwrap_err(), TokenError::BadSignature, "{:?} length {}", k.alg(), s.len());
        }
    }
}

#[test]
fn es384_rejects_r_or_s_out_of_range() {
    let es = key(Algorithm::ES384, 3);
    let mut issuer = issuer_with(&[(&es, Some("p384"))]);
    issuer.algorithms = vec![Algorithm::ES384];
    let v = Verifier::new(vec![issuer], DEFAULT_MAX_TOKEN_BYTES);
    let t = es.sign_jwt(Some("p384"), &claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = b64::decode(sig.as_bytes()).unwrap();
    assert_eq!(sig.len(), 96);
    // n, the P-384 group order.
    let n = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2,
        0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
    ];
    let forge = |s: &[u8]| v.verify(format!("{input}.{}", b64::encode(s)).as_bytes(), NOW, &PureRust);
    let (r, s) = sig.split_at(48);
    for forged in [[&n[..], s].concat(), [r, &n[..]].concat(), [&[0u8; 48][..], s].concat(), [r, &[0u8; 48]].concat()] {
        assert_eq!(forge(&forged).unwrap_err(), TokenError::BadSignature);
    }
    // DER instead of raw R || S, and the ES256 length.
    let der = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01];
    assert_eq!(forge(&der).unwrap_err(), TokenError::BadSignature);
    assert_eq!(forge(&sig[..64]).unwrap_err(), TokenError::BadSignature);
    assert!(forge(&sig).is_ok());
}

#[test]
fn rsa_signature_equal_to_or_above_the_modulus_is_rejected() {
    let rs = rsa_key(Algorithm::RS256);
    let ps = rsa_key(Algorithm::PS256);
    let v = Verifier::new(vec![issuer_with_every_key(&[rs.clone(), ps.clone()])], DEFAULT_MAX_TOKEN_BYTES);
    let n = b64::decode(rs.public_jwk(None)["n"].as_str().unwrap().as_bytes()).unwrap();
    for k in [&rs, &ps] {
        let t = k.sign_jwt(Some(k.alg().name()), &claims());
        let input = t.rsplit_once('.').unwrap().0;
        for s in [n.clone(), vec![0xff; n.len()]] {
            let forged = format!("{input}.{}", b64::encode(&s));
            assert_eq!(v.verify(forged.as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::BadSignature);
        }
    }
}

#[test]
fn ps_tokens_never_verify_as_rs_and_vice_versa() {
    let rs = rsa_key(Algorithm::RS256);
    let ps = rsa_key(Algorithm::PS256);
    let v = Verifier::new(vec![issuer_with_every_key(&[rs.clone(), ps.clone()])], DEFAULT_MAX_TOKEN_BYTES);
    let check = |t: String| v.verify(t.as_bytes(), NOW, &PureRust);
    // Honest tokens pass.
    assert!(check(rs.sign_jwt(Some("RS256"), &claims())).is_ok());
    assert!(check(ps.sign_jwt(Some("PS256"), &claims())).is_ok());
    // A PS256 signature under an RS256 header (same RSA key, RS256 kid), and the reverse: bad signature.
    let as_rs = json!({"alg": "RS256", "kid": "RS256"});
    let as_ps = json!({"alg": "PS256", "kid": "PS256"});
    assert_eq!(check(ps.sign_jwt_with_header(&as_rs, &claims())).unwrap_err(), TokenError::BadSignature);
    assert_eq!(check(rs.sign_jwt_with_header(&as_ps, &claims())).unwrap_err(), TokenError::BadSignature);
    // Naming the other algorithm's kid finds no key: each kid is bound to one algorithm.
    assert_eq!(check(ps.sign_jwt(Some("RS256"), &claims())).unwrap_err(), TokenError::UnknownKey);
    assert_eq!(check(rs.sign_jwt(Some("PS256"), &claims())).unwrap_err(), TokenError::UnknownKey);
    // The same hash family but another size: RS384 signature under an RS256 header.
    let rs384 = rsa_key(Algorithm::RS384);
    assert_eq!(check(rs384.sign_jwt_with_header(&as_rs, &claims())).unwrap_err(), TokenError::BadSignature);
    // And the backend itself refuses a key used with another algorithm, even if a caller got that wrong.
    let set = KeySet::from_value(&json!({"keys": [rs.public_jwk(Some("k"))]})).unwrap();
    let rs_key = &set.candidates(Some("k"), Algorithm::RS256).next().unwrap().key;
    let sig = rs.sign(b"m");
    assert!(PureRust.verify(Algorithm::RS256, rs_key, b"m", &sig));
    for alg in Algorithm::ALL.into_iter().filter(|a| *a != Algorithm::RS256) {
        assert!(!PureRust.verify(alg, rs_key, b"m", &sig), "{alg:?}");
    }
}

#[test]
fn hs256_signed_with_the_issuers_public_key_is_rejected() {
    let es = key(Algorithm::ES256, 1);
    let rs = rsa_key(Algorithm::RS256);
    // Every byte string an HMAC-confusion attacker might use as "the key" (CVE-2016-10555).
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for k in [&es, &rs] {
        let jwk = k.public_jwk(Some(k.alg().name()));
        candidates.push(jwk.to_string().into_bytes());
        candidates.push(json!({"keys": [jwk.clone()]}).to_string().into_bytes());
        for member in ["n", "x"] {
            if let Some(v) = jwk[member].as_str() {
                candidates.push(b64::decode(v.as_bytes()).unwrap());
                candidates.push(v.as_bytes().to_vec());
            }
        }
    }
    let point = b64::decode(es.public_jwk(None)["x"].as_str().unwrap().as_bytes()).unwrap();
    let y = b64::decode(es.public_jwk(None)["y"].as_str().unwrap().as_bytes()).unwrap();
    candidates.push([&[4u8][..], &point, &y].concat());

    let public = [(&es, Some("ES256")), (&rs, Some("RS256"))];
    // (a) HS256 not allowed; (b) allowed but no secret configured; (c) allowed with a (different) secret.
    let mut not_allowed = issuer_with(&public);
    not_allowed.algorithms = vec![Algorithm::ES256, Algorithm::RS256];
    let mut no_secret = issuer_with(&public);
    no_secret.algorithms = vec![Algorithm::ES256, Algorithm::RS256, Algorithm::HS256];
    let mut with_secret = issuer_with(&public);
    with_secret.algorithms = no_secret.algorithms.clone();
    let real = key(Algorithm::HS256, 4);
    with_secret.keys.add_secret(Some("HS256"), real.hmac_key().unwrap().clone()).unwrap();
    let cases = [
        (not_allowed, TokenError::AlgorithmNotAllowed, TokenError::AlgorithmNotAllowed),
        (no_secret, TokenError::UnknownKey, TokenError::UnknownKey),
        (with_secret, TokenError::UnknownKey, TokenError::BadSignature),
    ];
    for (issuer, with_public_kid, without_kid) in cases {
        let v = Verifier::new(vec![issuer], DEFAULT_MAX_TOKEN_BYTES);
        for secret in &candidates {
            let forger = SigningKey::hmac(Algorithm::HS256, secret).unwrap();
            for kid in ["ES256", "RS256"] {
                let t = forger.sign_jwt(Some(kid), &claims());
                assert_eq!(v.verify(t.as_bytes(), NOW, &PureRust).unwrap_err(), with_public_kid, "kid {kid}");
            }
            let t = forger.sign_jwt(None, &claims());
            assert_eq!(v.verify(t.as_bytes(), NOW, &PureRust).unwrap_err(), without_kid);
        }
    }
}

#[test]
fn hmac_secret_must_be_configured_and_long_enough() {
    use crypto::{HmacKey, SecretError};
    for (alg, min) in [(Algorithm::HS256, 32), (Algorithm::HS384, 48), (Algorithm::HS512, 64)] {
        assert_eq!(HmacKey::new(alg, b"").unwrap_err(), SecretError::TooShort { min, found: 0 });
        assert_eq!(HmacKey::new(alg, b"secret").unwrap_err(), SecretError::TooShort { min, found: 6 });
        assert!(SigningKey::hmac(alg, &vec![1; min - 1]).is_none());
    }
    // An HS384 secret is not an HS256 key, even with the same bytes.
    let hs384 = key(Algorithm::HS384, 4);
    let es = key(Algorithm::ES256, 1);
    let mut issuer = issuer_with(&[(&es, None)]);
    issuer.keys = KeySet::from_secret(Some("h"), hs384.hmac_key().unwrap().clone()).unwrap();
    issuer.algorithms = HMAC_ALGS.to_vec();
    let v = Verifier::new(vec![issuer], DEFAULT_MAX_TOKEN_BYTES);
    assert!(v.verify(hs384.sign_jwt(Some("h"), &claims()).as_bytes(), NOW, &PureRust).is_ok());
    let hs256 = SigningKey::hmac(Algorithm::HS256, hs384.hmac_secret().unwrap()).unwrap();
    assert_eq!(
        v.verify(hs256.sign_jwt(Some("h"), &claims()).as_bytes(), NOW, &PureRust).unwrap_err(),
        TokenError::UnknownKey
    );
}

fn svid_issuer(key: &SigningKey, td: &str, iss: Option<&str>) -> Issuer {
    let mut issuer = issuer_with(&[(key, None)]);
    issuer.profile = Profile::JwtSvid;
    issuer.trust_domain = Some(spiffe::TrustDomain::parse(td).unwrap());
    issuer.algorithms = vec![Algorithm::ES256];
    match iss {
        Some(iss) => issuer.issuer = iss.into(),
        None => {
            issuer.issuer = format!("spiffe://{td}").into();
            issuer.iss_required = false;
        }
    }
    issuer
}

#[test]
fn jwt_svids_are_matched_by_trust_domain_across_vendors() {
    // The multi-vendor case: each vendor's agents from their own trust domain, each with its own keys.
    let (a, b) = (key(Algorithm::ES256, 21), key(Algorithm::ES256, 22));
    let v = Verifier::new(
        vec![svid_issuer(&a, "vendor-a.example", None), svid_issuer(&b, "vendor-b.example", None)],
        DEFAULT_MAX_TOKEN_BYTES,
    );
    let svid = |sub: &str| json!({"sub": sub, "aud": "trading-api", "exp": NOW + 60});
    let t = v.verify(a.sign_jwt(None, &svid("spiffe://vendor-a.example/agent/x")).as_bytes(), NOW, &PureRust).unwrap();
    assert_eq!((&*t.issuer, t.agent()), ("spiffe://vendor-a.example", "spiffe://vendor-a.example/agent/x"));
    assert!(v.verify(b.sign_jwt(None, &svid("spiffe://vendor-b.example/agent/y")).as_bytes(), NOW, &PureRust).is_ok());
    // Vendor B's key cannot speak for vendor A's trust domain.
    let cross = b.sign_jwt(None, &svid("spiffe://vendor-a.example/agent/x"));
    assert_eq!(v.verify(cross.as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::BadSignature);
    // An unknown trust domain, or a sub that is no SPIFFE ID, finds no issuer.
    let stranger = a.sign_jwt(None, &svid("spiffe://vendor-c.example/agent/z"));
    assert_eq!(v.verify(stranger.as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::MissingClaim("iss"));
    let plain = a.sign_jwt(None, &svid("agent-x"));
    assert_eq!(v.verify(plain.as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::MissingClaim("iss"));
    // SVID typ must be JWT or JOSE.
    let typed = a.sign_jwt_with_header(&json!({"alg": "ES256", "typ": "at+jwt"}), &svid("spiffe://vendor-a.example/a"));
    assert!(matches!(v.verify(typed.as_bytes(), NOW, &PureRust), Err(TokenError::ProfileViolation(_))));
}

#[test]
fn jwt_svid_issuer_with_an_iss_requires_it_and_the_trust_domain() {
    let a = key(Algorithm::ES256, 23);
    let v =
        Verifier::new(vec![svid_issuer(&a, "td.example", Some("https://spire.td.example"))], DEFAULT_MAX_TOKEN_BYTES);
    let mut c = json!({"iss": "https://spire.td.example", "sub": "spiffe://td.example/w", "aud": "trading-api", "exp": NOW + 60});
    assert!(v.verify(a.sign_jwt(None, &c).as_bytes(), NOW, &PureRust).is_ok());
    c["sub"] = "spiffe://other.example/w".into();
    assert!(matches!(v.verify(a.sign_jwt(None, &c).as_bytes(), NOW, &PureRust), Err(TokenError::ProfileViolation(_))));
    c.as_object_mut().unwrap().remove("iss");
    c["sub"] = "spiffe://td.example/w".into();
    assert_eq!(v.verify(a.sign_jwt(None, &c).as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::MissingClaim("iss"));
}

#[test]
fn at_jwt_profile_and_required_claims() {
    let f = fixture();
    let mut issuer = issuer_with(&[(&f.es, Some("es"))]);
    issuer.profile = Profile::AtJwt;
    issuer.required_claims = vec!["scope".into()];
    let v = Verifier::new(vec![issuer], DEFAULT_MAX_TOKEN_BYTES);
    let mut c = claims();
    c["client_id"] = "agent-app".into();
    c["jti"] = "t-1".into();
    c["scope"] = "orders:write".into();
    let at = |c: &Value| f.es.sign_jwt_with_header(&json!({"alg": "ES256", "kid": "es", "typ": "at+jwt"}), c);
    assert!(v.verify(at(&c).as_bytes(), NOW, &PureRust).is_ok());
    // An ID token or plain JWT from the same issuer is not an access token.
    assert!(matches!(
        v.verify(f.es.sign_jwt(Some("es"), &c).as_bytes(), NOW, &PureRust),
        Err(TokenError::ProfileViolation(_))
    ));
    c["scope"] = Value::Null;
    assert_eq!(v.verify(at(&c).as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::MissingRequiredClaim);
}

#[test]
fn revoked_token_ids_are_refused() {
    let f = fixture();
    let mut issuer = issuer_with(&[(&f.es, Some("es"))]);
    issuer.revoked_jti = vec!["t-13".into(), "t-7".into()];
    let v = Verifier::new(vec![issuer], DEFAULT_MAX_TOKEN_BYTES);
    let mut c = claims();
    c["jti"] = "t-7".into();
    assert_eq!(v.verify(f.es.sign_jwt(Some("es"), &c).as_bytes(), NOW, &PureRust).unwrap_err(), TokenError::Revoked);
    c["jti"] = "t-8".into();
    assert!(v.verify(f.es.sign_jwt(Some("es"), &c).as_bytes(), NOW, &PureRust).is_ok());
}
