//! JSON Web Key Sets (RFC 7517): parsing with key validation, and lookup by `kid` and algorithm.
//!
//! Keys are validated when they are loaded, never when a request arrives: points must be on the curve,
//! `crv`/`alg` must agree, Ed25519 keys must not have small order. A key is bound to exactly one algorithm.

use super::crypto::Algorithm;
use crate::b64;
use serde_json::{Map, Value};
use std::fmt;

/// Longest `kid` accepted, in a key set and in a token header. It is an opaque map key, nothing more.
pub const MAX_KID_BYTES: usize = 256;
/// Most keys one set may hold; more is a misconfiguration or an attack on lookup cost.
pub const MAX_KEYS: usize = 64;

/// A validated public key.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// P-256 (ES256).
    P256(p256::ecdsa::VerifyingKey),
    /// Ed25519 (EdDSA).
    Ed25519(ed25519_compact::PublicKey),
}

/// One key of a set, bound to the single algorithm it may verify.
#[derive(Clone, Debug)]
pub struct Jwk {
    /// The key id, if the set gave one (JWT-SVID allows keys without).
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: Algorithm,
    /// The key itself.
    pub key: PublicKey,
}

/// A validated key set.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// A key set that was refused, with the JSON path of the problem relative to the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// Where, e.g. `keys[2].crv`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

impl std::error::Error for JwksError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> JwksError {
    JwksError { path: path.into(), message: message.into() }
}

impl KeySet {
    /// Parses and validates a JWKS document. Keys whose `use` is not `sig` are skipped (a set may carry
    /// encryption keys too); every other problem rejects the whole set, so a half-understood set is never used.
    pub fn from_value(doc: &Value) -> Result<KeySet, JwksError> {
        let obj = doc.as_object().ok_or_else(|| err("", "a JWKS must be a JSON object"))?;
        let keys = match obj.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(err("keys", "must be an array")),
            None => return Err(err("keys", "is required")),
        };
        if keys.len() > MAX_KEYS {
            return Err(err("keys", format!("has {} keys; at most {MAX_KEYS} are allowed", keys.len())));
        }
        let mut out: Vec<Jwk> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let path = format!("keys[{i}]");
            let key = key.as_object().ok_or_else(|| err(&path, "must be an object"))?;
            if let Some(jwk) = parse_key(key, &path)? {
                if let Some(kid) = &jwk.kid
                    && out.iter().any(|k| k.kid.as_deref() == Some(kid))
                {
                    return Err(err(format!("{path}.kid"), format!("duplicate kid \"{kid}\"")));
                }
                out.push(jwk);
            }
        }
        if out.is_empty() {
            return Err(err("keys", "no signature verification keys"));
        }
        Ok(KeySet { keys: out })
    }

    /// Parses a JWKS from bytes with strict JSON rules.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeySet, JwksError> {
        let doc = crate::json::parse_value(bytes, 8).map_err(|e| err("", format!("JWKS is {e}")))?;
        KeySet::from_value(&doc)
    }

    /// The keys that may verify a token with this `kid` (or none given) and `alg`.
    ///
    /// With a `kid`, only the key with that exact id; without, every key of that algorithm.
    pub fn candidates<'a>(&'a self, kid: Option<&'a str>, alg: Algorithm) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys (never true for a set built by [`KeySet::from_value`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn str_member<'a>(key: &'a Map<String, Value>, name: &str, path: &str) -> Result<Option<&'a str>, JwksError> {
    match key.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(format!("{path}.{name}"), "must be a string")),
    }
}

fn required<'a>(key: &'a Map<String, Value>, name: &str, path: &str) -> Result<&'a str, JwksError> {
    str_member(key, name, path)?.ok_or_else(|| err(format!("{path}.{name}"), "is required"))
}

fn coordinate(key: &Map<String, Value>, name: &str, path: &str, len: usize) -> Result<Vec<u8>, JwksError> {
    let text = required(key, name, path)?;
    let bytes = b64::decode(text.as_bytes()).map_err(|_| err(format!("{path}.{name}"), "is not strict base64url"))?;
    if bytes.len() != len {
        return Err(err(format!("{path}.{name}"), format!("must be {len} bytes, found {}", bytes.len())));
    }
    Ok(bytes)
}

fn parse_key(key: &Map<String, Value>, path: &str) -> Result<Option<Jwk>, JwksError> {
    match str_member(key, "use", path)? {
        None | Some("sig") => {}
        Some(_) => return Ok(None),
    }
    if let Some(ops) = key.get("key_ops") {
        let ops = ops.as_array().ok_or_else(|| err(format!("{path}.key_ops"), "must be an array"))?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    if key.contains_key("d") {
        return Err(err(format!("{path}.d"), "private key material must not be configured"));
    }
    let kid = match str_member(key, "kid", path)? {
        Some(kid) if kid.is_empty() || kid.len() > MAX_KID_BYTES => {
            return Err(err(format!("{path}.kid"), format!("must be 1 to {MAX_KID_BYTES} bytes")));
        }
        kid => kid.map(str::to_owned),
    };
    let kty = required(key, "kty", path)?;
    let crv = str_member(key, "crv", path)?;
    let (alg, public) = match (kty, crv) {
        ("EC", Some("P-256")) => {
            let x = coordinate(key, "x", path, 32)?;
            let y = coordinate(key, "y", path, 32)?;
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| err(path, "EC point is not on the P-256 curve"))?;
            (Algorithm::ES256, PublicKey::P256(vk))
        }
        ("OKP", Some("Ed25519")) => {
            let x = coordinate(key, "x", path, 32)?;
            let pk = ed25519_compact::PublicKey::from_slice(&x)
                .map_err(|_| err(format!("{path}.x"), "invalid Ed25519 key"))?;
            if is_weak_ed25519(&pk) {
                return Err(err(format!("{path}.x"), "Ed25519 key is not a valid point of large order"));
            }
            (Algorithm::EdDSA, PublicKey::Ed25519(pk))
        }
        ("EC", Some(other)) | ("OKP", Some(other)) => {
            return Err(err(format!("{path}.crv"), format!("unsupported curve \"{other}\"")));
        }
        ("EC", None) | ("OKP", None) => return Err(err(format!("{path}.crv"), "is required")),
        (other, _) => {
            return Err(err(format!("{path}.kty"), format!("unsupported key type \"{other}\"")));
        }
    };
    if let Some(declared) = str_member(key, "alg", path)?
        && Algorithm::from_name(declared) != Some(alg)
    {
        return Err(err(
            format!("{path}.alg"),
            format!("\"{declared}\" does not match the key type (expected \"{}\")", alg.name()),
        ));
    }
    Ok(Some(Jwk { kid, alg, key: public }))
}

/// ed25519-compact checks the key on every verification; asking it once at load time lets a bad key be
/// refused with the configuration instead of silently failing every token. The all-zero signature has a
/// canonical S, so the only key-dependent error it can raise first is a key error.
fn is_weak_ed25519(pk: &ed25519_compact::PublicKey) -> bool {
    let probe = ed25519_compact::Signature::new([0u8; 64]);
    matches!(
        pk.verify(b"", &probe),
        Err(ed25519_compact::Error::WeakPublicKey) | Err(ed25519_compact::Error::InvalidPublicKey)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A real P-256 point (the generator) and a real Ed25519 public key (RFC 8032 test 1).
    const GX: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
    const GY: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
    const ED: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn ec(extra: Value) -> Value {
        let mut k = json!({"kty": "EC", "crv": "P-256", "x": GX, "y": GY, "kid": "ec1"});
        if let (Some(k), Some(extra)) = (k.as_object_mut(), extra.as_object()) {
            for (n, v) in extra {
                k.insert(n.clone(), v.clone());
            }
        }
        json!({ "keys": [k] })
    }

    #[test]
    fn loads_ec_and_okp_keys() {
        let set = KeySet::from_value(&json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": GX, "y": GY, "kid": "a", "alg": "ES256", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED}
        ]}))
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.candidates(Some("a"), Algorithm::ES256).count(), 1);
        assert_eq!(set.candidates(Some("a"), Algorithm::EdDSA).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::EdDSA).count(), 1);
        assert_eq!(set.candidates(Some("zzz"), Algorithm::ES256).count(), 0);
    }

    #[test]
    fn rejects_point_off_curve() {
        let bad_y = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfQ";
        let e = KeySet::from_value(&ec(json!({"y": bad_y}))).unwrap_err();
        assert_eq!(e.path, "keys[0]");
        assert!(e.message.contains("not on the P-256 curve"));
    }

    #[test]
    fn rejects_alg_that_disagrees_with_the_key() {
        let e = KeySet::from_value(&ec(json!({"alg": "EdDSA"}))).unwrap_err();
        assert_eq!(e.path, "keys[0].alg");
        let e = KeySet::from_value(&ec(json!({"alg": "HS256"}))).unwrap_err();
        assert_eq!(e.path, "keys[0].alg");
    }

    #[test]
    fn rejects_wrong_lengths_unsupported_curves_and_private_keys() {
        assert_eq!(KeySet::from_value(&ec(json!({"x": "AAAA"}))).unwrap_err().path, "keys[0].x");
        assert_eq!(KeySet::from_value(&ec(json!({"crv": "P-521"}))).unwrap_err().path, "keys[0].crv");
        assert_eq!(KeySet::from_value(&ec(json!({"d": "AAAA"}))).unwrap_err().path, "keys[0].d");
        assert_eq!(KeySet::from_value(&ec(json!({"kid": 7}))).unwrap_err().path, "keys[0].kid");
        let long = "k".repeat(MAX_KID_BYTES + 1);
        assert_eq!(KeySet::from_value(&ec(json!({ "kid": long }))).unwrap_err().path, "keys[0].kid");
    }

    #[test]
    fn rejects_small_order_ed25519_keys() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64::encode(&identity)}]});
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].x");
    }

    #[test]
    fn skips_encryption_keys_but_never_returns_an_empty_set() {
        let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": GX, "y": GY, "use": "enc"}]});
        assert_eq!(KeySet::from_value(&doc).unwrap_err().message, "no signature verification keys");
        assert!(KeySet::from_value(&json!({"keys": []})).is_err());
        assert!(KeySet::from_bytes(b"<html>").is_err());
    }

    #[test]
    fn rejects_duplicate_kids() {
        let k = json!({"kty": "EC", "crv": "P-256", "x": GX, "y": GY, "kid": "same"});
        let e = KeySet::from_value(&json!({"keys": [k.clone(), k]})).unwrap_err();
        assert_eq!(e.path, "keys[1].kid");
    }
}
