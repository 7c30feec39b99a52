//! RFC 7638 JWK thumbprints (SHA-256), computed from a validated key, never from the JSON text a client sent:
//! the required public members of the key type in lexicographic order, no whitespace (RFC 7638 §3.2, RFC 8037
//! §2 for OKP). Validation already refused coordinates of the wrong length and RSA integers with leading zero
//! octets, so one key has exactly one thumbprint.

use crate::b64;
use crate::token::crypto::PublicKey;
use sha2::{Digest, Sha256};

/// The SHA-256 thumbprint of a public key, base64url without padding (the form of `cnf.jkt`); `None` for a
/// shared secret, which has none.
pub fn jkt(key: &PublicKey) -> Option<String> {
    let canonical = canonical_json(key)?;
    Some(b64::encode(&Sha256::digest(canonical.as_bytes())))
}

/// The RFC 7638 input: `{"crv":..,"kty":"EC","x":..,"y":..}`, `{"crv":"Ed25519","kty":"OKP","x":..}` or
/// `{"e":..,"kty":"RSA","n":..}`. Every value is base64url or a fixed name, so none needs escaping.
pub fn canonical_json(key: &PublicKey) -> Option<String> {
    match key {
        PublicKey::P256(vk) => {
            let point = vk.to_sec1_point(false);
            ec("P-256", point.x()?, point.y()?)
        }
        PublicKey::P384(vk) => {
            let point = vk.to_sec1_point(false);
            ec("P-384", point.x()?, point.y()?)
        }
        PublicKey::Ed25519(pk) => Some(format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64::encode(&pk[..]))),
        PublicKey::Rsa(rsa) => {
            use rsa::traits::PublicKeyParts;
            let public = rsa.public_key();
            Some(format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64::encode(&public.e().to_bytes_be()),
                b64::encode(&public.n().to_bytes_be())
            ))
        }
        PublicKey::Hmac(_) => None,
    }
}

fn ec(crv: &str, x: &[u8], y: &[u8]) -> Option<String> {
    Some(format!(r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#, b64::encode(x), b64::encode(y)))
}
