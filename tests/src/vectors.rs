//! ES256 signature edge cases as whole tokens, for checking that the host crypto backend (Envoy's BoringSSL)
//! and the pure-Rust backend decide exactly alike, in the wasmtime host and in real Envoy.

use agent_iam::b64;
use agent_iam::mint::SigningKey;
use agent_iam::token::host_crypto::ecdsa_der;
use serde_json::Value;

/// The P-256 group order n, big-endian.
pub const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `a - b` for 32-byte big-endian numbers with `a >= b`.
fn sub(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        out[i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    out
}

/// One token and whether a correct verifier accepts it.
pub struct Vector {
    /// What the case is.
    pub name: &'static str,
    /// The compact token.
    pub token: String,
    /// Whether its signature is valid.
    pub valid: bool,
}

/// Tokens for `claims` signed by `key` (ES256) under `kid`, with the signature altered in every way the
/// checklist names. `high-S` is mathematically valid and both BoringSSL and RustCrypto accept it.
pub fn es256_vectors(key: &SigningKey, kid: &str, claims: &Value) -> Vec<Vector> {
    let token = key.sign_jwt(Some(kid), claims);
    let (input, sig) = token.rsplit_once('.').unwrap_or((&token, ""));
    let sig = b64::decode(sig.as_bytes()).unwrap_or_default();
    let (r, s) = sig.split_at(32.min(sig.len()));
    let with = |name, bytes: Vec<u8>, valid| Vector { name, token: format!("{input}.{}", b64::encode(&bytes)), valid };
    let mut flipped = sig.clone();
    flipped[10] ^= 0x01;
    let high_s = [r, &sub(&P256_N, s)[..]].concat();
    vec![
        Vector { name: "valid", token: token.clone(), valid: true },
        with("high-S", high_s, true),
        with("bit flipped in r", flipped, false),
        with("r = n", [&P256_N[..], s].concat(), false),
        with("s = n", [r, &P256_N[..]].concat(), false),
        with("r = 0", [&[0u8; 32][..], s].concat(), false),
        with("s = 0", [r, &[0u8; 32][..]].concat(), false),
        with("63 bytes", sig[..63].to_vec(), false),
        with("65 bytes", [&sig[..], &[0]].concat(), false),
        with("DER instead of R||S", ecdsa_der(r, s), false),
        with("all zero", vec![0; 64], false),
    ]
}

/// Tokens for `claims` signed by `key` (RS256) under `kid`, with the signature altered: one byte short or
/// long, leading zero dropped, a bit flipped, all zero, and all 0xff (not below the modulus).
pub fn rs256_vectors(key: &SigningKey, kid: &str, claims: &Value) -> Vec<Vector> {
    let token = key.sign_jwt(Some(kid), claims);
    let (input, sig) = token.rsplit_once('.').unwrap_or((&token, ""));
    let sig = b64::decode(sig.as_bytes()).unwrap_or_default();
    let with = |name, bytes: Vec<u8>| Vector { name, token: format!("{input}.{}", b64::encode(&bytes)), valid: false };
    let mut flipped = sig.clone();
    flipped[100] ^= 0x01;
    vec![
        Vector { name: "valid", token: token.clone(), valid: true },
        with("bit flipped", flipped),
        with("one byte short", sig[1..].to_vec()),
        with("one byte long", [&[0u8][..], &sig[..]].concat()),
        with("all zero", vec![0; sig.len()]),
        with("all 0xff (>= n)", vec![0xff; sig.len()]),
        with("ES256-sized", sig[..64].to_vec()),
    ]
}
