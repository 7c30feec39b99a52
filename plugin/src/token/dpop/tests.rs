//! DPoP's pure parts: the RFC's vectors (thumbprints, `ath`, the example proof), `htu` normalisation, nonces,
//! the replay cache under a second writer, and one hostile proof per check.

use super::nonce::{NonceKey, NonceRules};
use super::proof::{self, Expected, ProofKeys};
use super::replay::{self, Refusal, ReplayCache};
use super::*;
use crate::b64;
use crate::mint::{ProofClaims, SigningKey, ath};
use crate::shared_data::{MemoryStore, SharedStore, StoreError};
use crate::token::PureRust;
use crate::token::crypto::PublicKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// RFC 9449 §7.1 (figure 13): the resource request's proof, its token, and what they hash to.
const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
const RFC_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const RFC_ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const RFC_IAT: i64 = 1_562_262_618;
// RFC 7638 §3.1's RSA key and thumbprint; RFC 8037 A.3's Ed25519 key and thumbprint.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const RFC8037_JKT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

const NOW: i64 = 1_800_000_000;
const HTU: &str = "https://api.example.com/orders/7";

fn key_of(jwk: Value) -> PublicKey {
    crate::token::KeySet::from_value(&json!({"keys": [jwk]})).unwrap().iter().next().unwrap().key.clone()
}

fn sha(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[test]
fn thumbprints_of_the_rfc_keys() {
    let rsa = key_of(json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}));
    assert_eq!(thumbprint::jkt(&rsa).unwrap(), RFC7638_JKT);
    let ed = key_of(json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}));
    assert_eq!(
        thumbprint::canonical_json(&ed).unwrap(),
        format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{RFC8037_X}"}}"#)
    );
    assert_eq!(thumbprint::jkt(&ed).unwrap(), RFC8037_JKT);
    let ec = key_of(json!({"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                           "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}));
    assert_eq!(thumbprint::jkt(&ec).unwrap(), RFC_JKT);
    // Members that are not part of the thumbprint change nothing; the key's own JSON is never hashed.
    let with_extras = key_of(json!({"kid": "x", "use": "sig", "alg": "ES256", "kty": "EC", "crv": "P-256",
                                    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
                                    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs"}));
    assert_eq!(thumbprint::jkt(&with_extras).unwrap(), RFC_JKT);
}

#[test]
fn the_rfc_resource_request_proof_passes_every_check() {
    assert_eq!(ath(RFC_TOKEN), RFC_ATH);
    let token_sha256 = sha(RFC_TOKEN);
    let htu = htu::normalise("https://resource.example.org/protectedresource").unwrap();
    let expected = Expected { method: "GET", htu: &htu, token_sha256: &token_sha256, now: RFC_IAT };
    let keys = ProofKeys::default();
    let rules = ProofRules::default();
    let checked = proof::check(RFC_PROOF.as_bytes(), &expected, &rules, &keys, &PureRust).unwrap();
    assert_eq!(checked.header.jkt, RFC_JKT);
    assert_eq!(checked.iat, RFC_IAT);
    assert_eq!(checked.id, replay::proof_id(&htu, "e1j3V_bKic8-LAEB"));
    // Again from the remembered header: the same answer.
    let again = proof::check(RFC_PROOF.as_bytes(), &expected, &rules, &keys, &PureRust).unwrap();
    assert_eq!(again.header.jkt, RFC_JKT);
    // Another token, method, URI or time: refused.
    let other = sha("another-token");
    let cases: [(Expected<'_>, DpopError); 4] = [
        (Expected { token_sha256: &other, ..expected }, DpopError::WrongTokenHash),
        (Expected { method: "POST", ..expected }, DpopError::WrongMethod),
        (Expected { htu: "https://resource.example.org/other", ..expected }, DpopError::WrongUri),
        (Expected { now: RFC_IAT + 61, ..expected }, DpopError::Stale),
    ];
    for (e, want) in cases {
        assert_eq!(proof::check(RFC_PROOF.as_bytes(), &e, &rules, &keys, &PureRust).unwrap_err(), want);
    }
}

#[test]
fn htu_normalisation() {
    let same = [
        ("https://API.Example.com/a/b", "https://api.example.com/a/b"),
        ("HTTPS://api.example.com:443/a", "https://api.example.com/a"),
        ("http://api.example.com:80/a", "http://api.example.com/a"),
        ("https://api.example.com:8443/a", "https://api.example.com:8443/a"),
        ("https://api.example.com", "https://api.example.com/"),
        ("https://api.example.com/a?x=1#frag", "https://api.example.com/a"),
        ("https://api.example.com/a#f?x", "https://api.example.com/a"),
        ("https://api.example.com/%7euser/%2fx", "https://api.example.com/~user/%2Fx"),
        ("https://api.example.com/a/./b/../c", "https://api.example.com/a/c"),
        ("https://api.example.com/a/%2E%2E/c", "https://api.example.com/c"),
        ("https://api.example.com/a/b/..", "https://api.example.com/a/"),
        ("https://api.example.com/a|b", "https://api.example.com/a%7Cb"),
        ("https://[::1]:8443/a", "https://[::1]:8443/a"),
        ("https://api.example.com:/a", "https://api.example.com/a"),
    ];
    for (input, want) in same {
        assert_eq!(htu::normalise(input).as_deref(), Some(want), "{input}");
    }
    // Path case and a trailing slash are part of the resource.
    assert_ne!(htu::normalise("https://a.example/API"), htu::normalise("https://a.example/api"));
    assert_ne!(htu::normalise("https://a.example/api/"), htu::normalise("https://a.example/api"));
    for bad in [
        "api.example.com/a",
        "ftp://api.example.com/a",
        "https://user@api.example.com/a",
        "https:///a",
        "https://api.example.com/a b",
        "https://api.example.com/%zz",
        "https://api.example.com/%4",
        "https://api.example.com:99999/a",
        "https://api.example.com:x/a",
        "https://api.exämple.com/a",
    ] {
        assert_eq!(htu::normalise(bad), None, "{bad}");
    }
    assert_eq!(htu::normalise_origin("https://API.example.com:443/").unwrap(), "https://api.example.com");
    assert!(htu::normalise_origin("https://api.example.com/v1").is_err());
    assert!(htu::normalise_origin("api.example.com").is_err());
}

#[test]
fn nonces_rotate_expire_and_cannot_be_forged() {
    let key = NonceKey::new(&[7; 32]).unwrap();
    let other = NonceKey::new(&[8; 32]).unwrap();
    let rules = NonceRules { lifetime: 120 };
    let nonce = rules.issue(&key, NOW).unwrap();
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "NQCHAR: {nonce}");
    assert_eq!(rules.issue(&key, NOW + 1), Some(nonce.clone()), "one nonce per period, on every worker");
    assert!(rules.accepts(&key, &nonce, NOW));
    assert!(rules.accepts(&key, &nonce, NOW + 100));
    assert!(!rules.accepts(&key, &nonce, NOW + 200), "expired");
    assert!(!rules.accepts(&other, &nonce, NOW), "another gateway's");
    assert_ne!(rules.issue(&key, NOW + 60), Some(nonce.clone()), "rotated");
    let mut raw = b64::decode(nonce.as_bytes()).unwrap();
    raw[20] ^= 1;
    assert!(!rules.accepts(&key, &b64::encode(&raw), NOW), "tampered");
    // A nonce from a period that has not begun is forged, whatever its MAC.
    let future = rules.issue(&key, NOW + 600).unwrap();
    assert!(!rules.accepts(&key, &future, NOW));
    for junk in ["", "x", "!!!!", &"A".repeat(34), &nonce[1..]] {
        assert!(!rules.accepts(&key, junk, NOW), "{junk}");
    }
    assert!(NonceKey::new(&[1; 31]).is_none());
}

/// A store whose every first compare-and-swap loses to a writer that records another proof in between.
struct Interleaved {
    inner: MemoryStore,
    cache: ReplayCache,
    raced: std::cell::Cell<bool>,
}

impl SharedStore for Interleaved {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if cas != 0 && !self.raced.replace(true) {
            let rival = replay::proof_id(HTU, "rival");
            self.cache.record(&self.inner, &rival, NOW, NOW + 65, NOW).unwrap();
        }
        self.inner.set(key, value, cas)
    }
}

/// A proof id in bucket 0 (the bucket is chosen by the first four bytes).
fn in_bucket_0(n: u8) -> replay::ProofId {
    let mut id = [0u8; 16];
    id[15] = n;
    id
}

#[test]
fn replay_cache_remembers_across_writers_and_stays_bounded() {
    let cache = ReplayCache::with_capacity(16);
    assert_eq!(cache.capacity(), replay::BUCKETS, "at least one entry per bucket");
    let store = Interleaved { inner: MemoryStore::default(), cache, raced: Default::default() };
    let id = replay::proof_id(HTU, "jti-1");
    cache.record(&store, &id, NOW, NOW + 65, NOW).unwrap();
    assert_eq!(cache.record(&store.inner, &id, NOW, NOW + 65, NOW + 1), Err(Refusal::Replayed));
    let rival = replay::proof_id(HTU, "rival");
    assert_eq!(cache.record(&store.inner, &rival, NOW, NOW + 65, NOW), Err(Refusal::Replayed), "the lost race kept");
    // The same jti for another URI is another proof.
    let elsewhere = replay::proof_id("https://api.example.com/other", "jti-1");
    cache.record(&store.inner, &elsewhere, NOW, NOW + 65, NOW).unwrap();
    // After the window the entry is gone (the proof is refused as stale before it gets here).
    cache.record(&store.inner, &id, NOW + 70, NOW + 135, NOW + 70).unwrap();
    // A bucket full of live proofs: the oldest makes room, and nothing as old comes in after it.
    let full = ReplayCache::with_capacity(replay::BUCKETS * 4);
    let store = MemoryStore::default();
    for i in 0..4 {
        full.record(&store, &in_bucket_0(i), NOW - 4 + i64::from(i), NOW + 60, NOW).unwrap();
    }
    full.record(&store, &in_bucket_0(10), NOW, NOW + 60, NOW).unwrap();
    assert_eq!(
        full.record(&store, &in_bucket_0(0), NOW - 4, NOW + 60, NOW),
        Err(Refusal::TooOld),
        "evicted, then too old"
    );
    assert_eq!(
        full.record(&store, &in_bucket_0(11), NOW - 4, NOW + 60, NOW),
        Err(Refusal::TooOld),
        "never seen, but as old"
    );
    assert_eq!(full.record(&store, &in_bucket_0(1), NOW - 3, NOW + 60, NOW), Err(Refusal::Replayed), "still held");
    let (bytes, _) = store.get("agent-iam.dpop.replay.0").unwrap().unwrap();
    assert_eq!(bytes.len(), 11 + 4 * 32, "bounded");
    // A smaller cache (a new configuration, or a worker still on the old one) looks in the same bucket, and
    // forgets nothing it would accept: the bucket shrinks by its oldest entries and its watermark rises.
    let smaller = ReplayCache::with_capacity(replay::BUCKETS * 2);
    assert_eq!(smaller.record(&store, &in_bucket_0(10), NOW, NOW + 60, NOW), Err(Refusal::Replayed));
    assert_eq!(smaller.record(&store, &in_bucket_0(2), NOW - 2, NOW + 60, NOW), Err(Refusal::Replayed));
    smaller.record(&store, &in_bucket_0(12), NOW, NOW + 60, NOW).unwrap();
    assert_eq!(smaller.record(&store, &in_bucket_0(3), NOW - 1, NOW + 60, NOW), Err(Refusal::TooOld));
    let (bytes, _) = store.get("agent-iam.dpop.replay.0").unwrap().unwrap();
    assert_eq!(bytes.len(), 11 + 2 * 32);
    // Shared data another version wrote is started again, refusing what it might have held.
    store.set("agent-iam.dpop.replay.0", b"garbage", 0).unwrap();
    assert_eq!(full.record(&store, &in_bucket_0(20), NOW - 1, NOW + 60, NOW), Err(Refusal::TooOld));
    full.record(&store, &in_bucket_0(21), NOW, NOW + 60, NOW).unwrap();
}

struct Failing;

impl SharedStore for Failing {
    fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Host("down".into()))
    }
    fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), StoreError> {
        Err(StoreError::Host("down".into()))
    }
}

#[test]
fn an_unavailable_store_records_nothing_and_says_so() {
    let cache = ReplayCache::with_capacity(1024);
    assert!(matches!(
        cache.record(&Failing, &replay::proof_id(HTU, "j"), NOW, NOW + 60, NOW),
        Err(Refusal::Unavailable(_))
    ));
}

/// A fresh proof for [`HTU`] with the token `tok`, from `key`, and what the request expects of it.
fn proof_for(key: &SigningKey, claims: ProofClaims<'_>) -> String {
    key.dpop_proof(&claims)
}

fn good_claims<'a>(jti: &'a str) -> ProofClaims<'a> {
    ProofClaims { jti, htm: "POST", htu: HTU, iat: NOW, token: Some("tok"), nonce: None }
}

fn signed(key: &SigningKey, header: Value, payload: Value) -> String {
    key.sign_jwt_with_header(&header, &payload)
}

fn check(proof: &str) -> Result<proof::CheckedProof, DpopError> {
    let token_sha256 = sha("tok");
    let expected = Expected { method: "POST", htu: HTU, token_sha256: &token_sha256, now: NOW };
    proof::check(proof.as_bytes(), &expected, &ProofRules::default(), &ProofKeys::default(), &PureRust)
}

#[test]
fn every_algorithm_proves_and_the_thumbprint_is_the_keys() {
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let key = SigningKey::from_seed(alg, [3; 32]).unwrap();
        let checked = check(&proof_for(&key, good_claims("a"))).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(Some(checked.header.jkt.clone()), key.jkt(), "{alg:?}");
    }
    let rsa = SigningKey::from_seed(Algorithm::PS256, [4; 32]).unwrap();
    for alg in [Algorithm::PS256, Algorithm::RS256] {
        let key = rsa.with_rsa_alg(alg).unwrap();
        check(&proof_for(&key, good_claims("r"))).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
}

#[test]
fn hostile_proofs_each_fail_their_own_check() {
    let key = SigningKey::from_seed(Algorithm::ES256, [1; 32]).unwrap();
    let other = SigningKey::from_seed(Algorithm::ES256, [2; 32]).unwrap();
    let jwk = {
        let mut j = key.public_jwk(None);
        j.as_object_mut().unwrap().retain(|k, _| k != "alg" && k != "use");
        j
    };
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let payload = crate::mint::proof_payload(&good_claims("h"));
    let with_header = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        signed(&key, h, payload.clone())
    };
    let with_payload = |f: &dyn Fn(&mut Value)| {
        let mut p = payload.clone();
        f(&mut p);
        signed(&key, header.clone(), p)
    };
    let hmac = SigningKey::hmac(Algorithm::HS256, &[9; 32]).unwrap();
    let rsa_private = {
        let mut j = jwk.clone();
        j["d"] = "AAAA".into();
        j
    };
    let good = proof_for(&key, good_claims("h"));
    let parts: Vec<&str> = good.split('.').collect();
    let cases: Vec<(&str, String, DpopError)> = vec![
        ("not a JWS", "abc".into(), DpopError::Malformed("not three segments")),
        ("four segments", format!("{good}.x"), DpopError::Malformed("not three segments")),
        ("empty signature", format!("{}.{}.", parts[0], parts[1]), DpopError::Malformed("empty segment")),
        ("oversized", "a".repeat(proof::MAX_PROOF_BYTES + 1), DpopError::ProofTooLarge),
        ("typ JWT", with_header(&|h| h["typ"] = "JWT".into()), DpopError::WrongType),
        ("typ missing", with_header(&|h| _ = h.as_object_mut().unwrap().remove("typ")), DpopError::WrongType),
        ("typ in capitals", with_header(&|h| h["typ"] = "DPOP+JWT".into()), DpopError::WrongType),
        ("alg none", with_header(&|h| h["alg"] = "none".into()), DpopError::AlgorithmNotAllowed),
        (
            "HS256 with a symmetric key",
            signed(
                &hmac,
                json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}}),
                payload.clone(),
            ),
            DpopError::AlgorithmNotAllowed,
        ),
        ("private key in jwk", with_header(&|h| h["jwk"] = rsa_private.clone()), DpopError::PrivateKey),
        ("no jwk", with_header(&|h| _ = h.as_object_mut().unwrap().remove("jwk")), DpopError::BadKey),
        ("jwk for ES384 with ES256", with_header(&|h| h["jwk"]["crv"] = "P-384".into()), DpopError::BadKey),
        (
            "RSA key with ES256",
            with_header(&|h| h["jwk"] = json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})),
            DpopError::BadKey,
        ),
        ("point off the curve", with_header(&|h| h["jwk"]["y"] = h["jwk"]["x"].clone()), DpopError::BadKey),
        ("encryption key", with_header(&|h| h["jwk"]["use"] = "enc".into()), DpopError::BadKey),
        (
            "jku beside the jwk",
            with_header(&|h| h["jku"] = "https://evil.example/jwks".into()),
            DpopError::ForbiddenHeader("jku"),
        ),
        ("x5c beside the jwk", with_header(&|h| h["x5c"] = json!(["MIIB"])), DpopError::ForbiddenHeader("x5c")),
        ("crit", with_header(&|h| h["crit"] = json!(["exp"])), DpopError::ForbiddenHeader("crit")),
        ("signed by another key", signed(&other, header.clone(), payload.clone()), DpopError::BadSignature),
        (
            "payload changed",
            format!("{}.{}.{}", parts[0], b64::encode(br#"{"jti":"x"}"#), parts[2]),
            DpopError::BadSignature,
        ),
        ("no jti", with_payload(&|p| _ = p.as_object_mut().unwrap().remove("jti")), DpopError::MissingClaim("jti")),
        ("no htm", with_payload(&|p| _ = p.as_object_mut().unwrap().remove("htm")), DpopError::MissingClaim("htm")),
        ("no htu", with_payload(&|p| _ = p.as_object_mut().unwrap().remove("htu")), DpopError::MissingClaim("htu")),
        ("no iat", with_payload(&|p| _ = p.as_object_mut().unwrap().remove("iat")), DpopError::MissingClaim("iat")),
        ("no ath", with_payload(&|p| _ = p.as_object_mut().unwrap().remove("ath")), DpopError::MissingClaim("ath")),
        ("iat a string", with_payload(&|p| p["iat"] = "1800000000".into()), DpopError::InvalidClaim("iat")),
        ("jti a number", with_payload(&|p| p["jti"] = 7.into()), DpopError::InvalidClaim("jti")),
        ("jti too long", with_payload(&|p| p["jti"] = "j".repeat(300).into()), DpopError::InvalidClaim("jti")),
        ("nonce not a string", with_payload(&|p| p["nonce"] = json!(1)), DpopError::InvalidClaim("nonce")),
        ("htm GET", with_payload(&|p| p["htm"] = "GET".into()), DpopError::WrongMethod),
        ("htm lower case", with_payload(&|p| p["htm"] = "post".into()), DpopError::WrongMethod),
        (
            "htu another host",
            with_payload(&|p| p["htu"] = "https://evil.example.com/orders/7".into()),
            DpopError::WrongUri,
        ),
        (
            "htu another port",
            with_payload(&|p| p["htu"] = "https://api.example.com:8443/orders/7".into()),
            DpopError::WrongUri,
        ),
        ("htu http", with_payload(&|p| p["htu"] = "http://api.example.com/orders/7".into()), DpopError::WrongUri),
        ("htu path case", with_payload(&|p| p["htu"] = "https://api.example.com/Orders/7".into()), DpopError::WrongUri),
        (
            "htu trailing slash",
            with_payload(&|p| p["htu"] = "https://api.example.com/orders/7/".into()),
            DpopError::WrongUri,
        ),
        ("htu not a URI", with_payload(&|p| p["htu"] = "/orders/7".into()), DpopError::InvalidClaim("htu")),
        ("stale iat", with_payload(&|p| p["iat"] = (NOW - 61).into()), DpopError::Stale),
        ("future iat", with_payload(&|p| p["iat"] = (NOW + 6).into()), DpopError::FromTheFuture),
        ("wrong ath", with_payload(&|p| p["ath"] = ath("another-token").into()), DpopError::WrongTokenHash),
        (
            "ath not base64url",
            with_payload(&|p| p["ath"] = "fUHyO2r2+Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQE=".into()),
            DpopError::WrongTokenHash,
        ),
        (
            "duplicate claim",
            {
                let text = payload.to_string().replacen('{', r#"{"htm":"GET","#, 1);
                let input = format!("{}.{}", parts[0], b64::encode(text.as_bytes()));
                format!("{input}.{}", b64::encode(&key.sign(input.as_bytes())))
            },
            DpopError::Malformed("payload is not a JSON object"),
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, proof, want) in cases {
        assert_eq!(check(&proof).map(|c| c.iat).unwrap_err(), want, "{name}");
    }
    // Query and fragment are not part of htu: a proof naming them passes.
    let with_query = with_payload(&|p| p["htu"] = format!("{HTU}?page=2#top").into());
    check(&with_query).unwrap();
    // A proof from the edges of the window passes.
    check(&with_payload(&|p| p["iat"] = (NOW - 60).into())).unwrap();
    check(&with_payload(&|p| p["iat"] = (NOW + 5).into())).unwrap();
}

#[test]
fn an_algorithm_outside_the_configured_list_is_refused() {
    let key = SigningKey::from_seed(Algorithm::EdDSA, [1; 32]).unwrap();
    let proof = proof_for(&key, good_claims("e"));
    let token_sha256 = sha("tok");
    let expected = Expected { method: "POST", htu: HTU, token_sha256: &token_sha256, now: NOW };
    let only_es256 = ProofRules { algorithms: vec![Algorithm::ES256], ..ProofRules::default() };
    let keys = ProofKeys::default();
    assert_eq!(
        proof::check(proof.as_bytes(), &expected, &only_es256, &keys, &PureRust).unwrap_err(),
        DpopError::AlgorithmNotAllowed
    );
    assert!(proof::check(proof.as_bytes(), &expected, &ProofRules::default(), &keys, &PureRust).is_ok());
}
