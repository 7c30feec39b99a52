//! JSON Web Key Sets (RFC 7517): parsing with key validation, and lookup by `kid` and algorithm.
//!
//! Keys are validated when they are loaded, never when a request arrives: points must be on the curve,
//! `crv`/`alg` must agree, Ed25519 keys must not have small order, RSA moduli are 2048 to 8192 bits with an odd
//! exponent of at most 32 bits. A key is bound to exactly one algorithm.
//!
//! Which algorithm a key gets:
//! - `EC` `P-256` → ES256, `EC` `P-384` → ES384, `OKP` `Ed25519` → EdDSA; an `alg` member must agree.
//! - `RSA` with an `alg` member (RS256/384/512, PS256/384/512) → exactly that algorithm.
//! - `RSA` without `alg` → RS256 only. Many real key sets omit `alg` on RSA keys (Azure AD/Entra ID, SPIFFE
//!   bundles), and RS256 is what they mean (it is the one RSA algorithm RFC 7518 recommends). Letting such a
//!   key verify every RS*/PS* variant would break "one key, one algorithm" (RFC 8725 §3.1) for no gain; an
//!   issuer that signs PS* or RS384/512 publishes `alg`, and if it does not, its tokens find no key (401), which
//!   is the safe failure.
//! - `oct` (symmetric) keys are refused: a JWKS is public material, often fetched over the network, and a
//!   shared secret in it would let anyone who can read or replace it mint tokens. HMAC secrets come only from
//!   the issuer's explicit configuration, through [`KeySet::add_secret`].

use super::crypto::{Algorithm, Family, HmacKey, PublicKey, RsaKey, RsaKeyError};
use crate::b64;
use serde_json::{Map, Value};
use std::fmt;

/// Longest `kid` accepted, in a key set and in a token header. It is an opaque map key, nothing more.
pub const MAX_KID_BYTES: usize = 256;
/// Most keys one set may hold; more is a misconfiguration or an attack on lookup cost.
pub const MAX_KEYS: usize = 64;

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

    /// Adds an explicitly configured HMAC secret (bound to its one HS* algorithm) under `kid`, if given.
    ///
    /// This is the only way an HMAC key enters a set. A set may hold secrets and public keys side by side:
    /// every key is bound to one algorithm, so an HS* token is only ever checked against a configured secret
    /// and never against a public key's bytes (CVE-2016-10555). Errors use the path `kid` or `keys`.
    pub fn add_secret(&mut self, kid: Option<&str>, key: HmacKey) -> Result<(), JwksError> {
        if let Some(kid) = kid {
            if kid.is_empty() || kid.len() > MAX_KID_BYTES {
                return Err(err("kid", format!("must be 1 to {MAX_KID_BYTES} bytes")));
            }
            if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(err("kid", format!("duplicate kid \"{kid}\"")));
            }
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(err("keys", format!("at most {MAX_KEYS} keys are allowed")));
        }
        self.keys.push(Jwk { kid: kid.map(str::to_owned), alg: key.alg(), key: PublicKey::Hmac(key) });
        Ok(())
    }

    /// A set holding only this secret.
    pub fn from_secret(kid: Option<&str>, key: HmacKey) -> Result<KeySet, JwksError> {
        let mut set = KeySet::default();
        set.add_secret(kid, key)?;
        Ok(set)
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

    /// Every key.
    pub fn iter(&self) -> impl Iterator<Item = &Jwk> {
        self.keys.iter()
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

/// `04 || x || y` from the JWK coordinates, each exactly `len` bytes.
fn ec_point(key: &Map<String, Value>, path: &str, len: usize) -> Result<Vec<u8>, JwksError> {
    let x = coordinate(key, "x", path, len)?;
    let y = coordinate(key, "y", path, len)?;
    let mut sec1 = Vec::with_capacity(1 + 2 * len);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    Ok(sec1)
}

/// A Base64urlUInt (RFC 7518 §2): strict base64url, non-empty, no leading zero octets. Length caps on the
/// value are [`RsaKey::new`]'s; the text is bounded first so a huge member is not decoded.
fn big_uint(key: &Map<String, Value>, name: &str, path: &str) -> Result<Vec<u8>, JwksError> {
    let text = required(key, name, path)?;
    if text.len() > (RsaKey::MAX_BITS / 8 + 1).div_ceil(3) * 4 {
        return Err(err(format!("{path}.{name}"), "is too long"));
    }
    let bytes = b64::decode(text.as_bytes()).map_err(|_| err(format!("{path}.{name}"), "is not strict base64url"))?;
    match bytes.first() {
        None => Err(err(format!("{path}.{name}"), "must not be empty")),
        Some(0) => Err(err(format!("{path}.{name}"), "must not have leading zero octets (RFC 7518 §2)")),
        Some(_) => Ok(bytes),
    }
}

fn parse_key(key: &Map<String, Value>, path: &str) -> Result<Option<Jwk>, JwksError> {
    match str_member(key, "use", path)? {
        // SPIFFE trust bundles mark JWT authorities `jwt-svid` (and X.509 ones `x509-svid`, skipped).
        None | Some("sig") | Some("jwt-svid") => {}
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
    let declared = match str_member(key, "alg", path)? {
        None => None,
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| err(format!("{path}.alg"), format!("unsupported algorithm \"{name}\"")))?,
        ),
    };
    let (alg, public) = match (kty, crv) {
        ("EC", Some("P-256")) => {
            let sec1 = ec_point(key, path, 32)?;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| err(path, "EC point is not on the P-256 curve"))?;
            (Algorithm::ES256, PublicKey::P256(vk))
        }
        ("EC", Some("P-384")) => {
            let sec1 = ec_point(key, path, 48)?;
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| err(path, "EC point is not on the P-384 curve"))?;
            (Algorithm::ES384, PublicKey::P384(vk))
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
        ("RSA", _) => {
            if crv.is_some() {
                return Err(err(format!("{path}.crv"), "must not be present on an RSA key"));
            }
            // See the module documentation: without `alg` an RSA key verifies RS256 only.
            let alg = match declared {
                None => Algorithm::RS256,
                Some(a) if matches!(a.family(), Family::RsaPkcs1 | Family::RsaPss) => a,
                Some(a) => {
                    return Err(err(
                        format!("{path}.alg"),
                        format!("\"{}\" does not match the key type (expected RS* or PS*)", a.name()),
                    ));
                }
            };
            let n = big_uint(key, "n", path)?;
            let e = big_uint(key, "e", path)?;
            let rsa = RsaKey::new(alg, &n, &e).map_err(|problem| {
                let member = match problem {
                    RsaKeyError::BadExponent => "e",
                    _ => "n",
                };
                err(format!("{path}.{member}"), problem.to_string())
            })?;
            (alg, PublicKey::Rsa(rsa))
        }
        ("oct", _) => {
            return Err(err(
                format!("{path}.kty"),
                "symmetric (oct) keys are not accepted in a JWKS; configure an HMAC secret for the issuer instead",
            ));
        }
        (other, _) => {
            return Err(err(format!("{path}.kty"), format!("unsupported key type \"{other}\"")));
        }
    };
    if let Some(declared) = declared
        && declared != alg
    {
        return Err(err(
            format!("{path}.alg"),
            format!("\"{}\" does not match the key type (expected \"{}\")", declared.name(), alg.name()),
        ));
    }
    Ok(Some(Jwk { kid, alg, key: public }))
}

/// Members that only a private key has (RFC 7517 §9.2, RFC 7518 §6.2.2, §6.3.2, §6.4.1; `k` of `oct`).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a key carried in a message (a DPoP proof's `jwk`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddedKeyError {
    /// A private member is present.
    Private,
    /// Not a valid public key for the algorithm (the reason, with its path).
    Invalid(JwksError),
}

/// A public key carried in a message, for the message's `alg`: validated exactly as the keys of a key set
/// (curve points, lengths, RSA sizes, small-order Ed25519 keys), with no private member at all, a `use` of
/// `sig` or none, and agreeing with `alg`. An RSA key without its own `alg` takes the message's.
pub fn embedded_key(key: &Map<String, Value>, alg: Algorithm) -> Result<PublicKey, EmbeddedKeyError> {
    if PRIVATE_MEMBERS.iter().any(|m| key.contains_key(*m)) {
        return Err(EmbeddedKeyError::Private);
    }
    let invalid = |message: &str| EmbeddedKeyError::Invalid(err("jwk", message));
    let with_alg;
    let key = if key.get("kty").and_then(Value::as_str) == Some("RSA") && !key.contains_key("alg") {
        let mut copy = key.clone();
        copy.insert("alg".into(), Value::String(alg.name().into()));
        with_alg = copy;
        &with_alg
    } else {
        key
    };
    match parse_key(key, "jwk").map_err(EmbeddedKeyError::Invalid)? {
        Some(jwk) if jwk.alg == alg => Ok(jwk.key),
        Some(_) => Err(invalid("does not fit the algorithm")),
        None => Err(invalid("is not a signature key")),
    }
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

    /// An RSA JWK with a syntactically fine modulus of `bytes` bytes (odd, top bit set).
    fn rsa_jwk(bytes: usize, e: &[u8], alg: Option<&str>) -> Value {
        let mut n = vec![0xc5; bytes];
        n[bytes - 1] = 0x01;
        let mut k = json!({"kty": "RSA", "n": b64::encode(&n), "e": b64::encode(e), "kid": "r"});
        if let Some(alg) = alg {
            k["alg"] = alg.into();
        }
        json!({ "keys": [k] })
    }

    #[test]
    fn rsa_keys_bind_to_their_alg_or_to_rs256_without_one() {
        let set = KeySet::from_value(&rsa_jwk(256, &[1, 0, 1], None)).unwrap();
        assert_eq!(set.candidates(Some("r"), Algorithm::RS256).count(), 1);
        for other in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512] {
            assert_eq!(set.candidates(Some("r"), other).count(), 0, "{other:?}");
        }
        for alg in [Algorithm::RS384, Algorithm::PS256, Algorithm::PS512] {
            let set = KeySet::from_value(&rsa_jwk(256, &[1, 0, 1], Some(alg.name()))).unwrap();
            assert_eq!(set.candidates(None, alg).count(), 1);
            assert_eq!(set.candidates(None, Algorithm::RS256).count(), 0);
            match &set.candidates(None, alg).next().unwrap().key {
                PublicKey::Rsa(k) => assert_eq!((k.alg(), k.modulus_len()), (alg, 256)),
                other => panic!("{other:?}"),
            }
        }
        for wrong in ["ES256", "HS256", "EdDSA", "RSA-OAEP", "rs256"] {
            let e = KeySet::from_value(&rsa_jwk(256, &[1, 0, 1], Some(wrong))).unwrap_err();
            assert_eq!(e.path, "keys[0].alg", "{wrong}");
        }
    }

    #[test]
    fn rejects_weak_or_absurd_rsa_keys_at_load() {
        // 1024 and 2040 bits, and 8200 bits.
        for bytes in [128, 255, 1025] {
            let e = KeySet::from_value(&rsa_jwk(bytes, &[1, 0, 1], None)).unwrap_err();
            assert_eq!(e.path, "keys[0].n", "{bytes}");
        }
        assert!(KeySet::from_value(&rsa_jwk(1024, &[1, 0, 1], None)).is_ok(), "8192 bits is the limit");
        // Exponent 1, even, 2, a 33-bit value, leading zero octet, empty.
        for e in [&[1u8][..], &[2], &[1, 0, 0], &[1, 0, 0, 0, 1], &[0, 1, 0, 1]] {
            let err = KeySet::from_value(&rsa_jwk(256, e, None)).unwrap_err();
            assert_eq!(err.path, "keys[0].e", "{e:?}");
        }
        assert!(KeySet::from_value(&rsa_jwk(256, &[3], None)).is_ok());
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        doc["keys"][0]["e"] = "".into();
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].e");
        // Leading zero on n, non-strict base64url, missing member, even modulus, crv on an RSA key.
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        let n = b64::decode(doc["keys"][0]["n"].as_str().unwrap().as_bytes()).unwrap();
        doc["keys"][0]["n"] = b64::encode(&[&[0u8][..], &n].concat()).into();
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].n");
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        doc["keys"][0]["e"] = "AQAB=".into();
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].e");
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        doc["keys"][0].as_object_mut().unwrap().remove("n");
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].n");
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        let mut n = b64::decode(doc["keys"][0]["n"].as_str().unwrap().as_bytes()).unwrap();
        n[255] = 0x02;
        doc["keys"][0]["n"] = b64::encode(&n).into();
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].n");
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        doc["keys"][0]["crv"] = "P-256".into();
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].crv");
        let mut doc = rsa_jwk(256, &[1, 0, 1], None);
        doc["keys"][0]["n"] = "A".repeat(20_000).into();
        assert_eq!(KeySet::from_value(&doc).unwrap_err().path, "keys[0].n");
    }

    // The P-384 generator (SEC 2 / FIPS 186-4).
    const G384X: &str = "qofKIr6LBTeOscce8yCtdG4dO2KLp5uYWfdB4IJUKjhVAvJdv1UpbDpUXjhydgq3";
    const G384Y: &str = "NhfeSpYmLG9dnpi_kpLcKfj0Hb0omhR86doxE7XwuMAKYLHOHX6BnXpDHXyQ6g5f";

    #[test]
    fn p384_keys_bind_to_es384() {
        let doc = json!({"keys": [{"kty": "EC", "crv": "P-384", "x": G384X, "y": G384Y, "kid": "p"}]});
        let set = KeySet::from_value(&doc).unwrap();
        assert_eq!(set.candidates(Some("p"), Algorithm::ES384).count(), 1);
        assert_eq!(set.candidates(Some("p"), Algorithm::ES256).count(), 0);
        let mut bad = doc.clone();
        bad["keys"][0]["alg"] = "ES256".into();
        assert_eq!(KeySet::from_value(&bad).unwrap_err().path, "keys[0].alg");
        let mut ok = doc.clone();
        ok["keys"][0]["alg"] = "ES384".into();
        assert!(KeySet::from_value(&ok).is_ok());
        // Off the curve: flip the last bit of y.
        let mut y = b64::decode(G384Y.as_bytes()).unwrap();
        y[47] ^= 1;
        let mut off = doc.clone();
        off["keys"][0]["y"] = b64::encode(&y).into();
        let e = KeySet::from_value(&off).unwrap_err();
        assert!(e.message.contains("not on the P-384 curve"), "{e}");
        // 32-byte coordinates with crv P-384, and P-384 coordinates with crv P-256.
        let mut short = doc.clone();
        short["keys"][0]["x"] = GX.into();
        assert_eq!(KeySet::from_value(&short).unwrap_err().path, "keys[0].x");
        let mut p256 = doc;
        p256["keys"][0]["crv"] = "P-256".into();
        assert_eq!(KeySet::from_value(&p256).unwrap_err().path, "keys[0].x");
        // ES256 alg on a P-384 key is a crv/alg mismatch; ES384 on a P-256 key too.
        assert_eq!(KeySet::from_value(&ec(json!({"alg": "ES384"}))).unwrap_err().path, "keys[0].alg");
    }

    #[test]
    fn symmetric_keys_only_through_configuration() {
        let doc = json!({"keys": [{"kty": "oct", "k": b64::encode(&[7; 32]), "alg": "HS256"}]});
        let e = KeySet::from_value(&doc).unwrap_err();
        assert_eq!(e.path, "keys[0].kty");
        assert!(e.message.contains("HMAC secret"), "{e}");

        let secret = HmacKey::new(Algorithm::HS256, &[7; 32]).unwrap();
        let mut set = KeySet::from_value(&ec(json!({}))).unwrap();
        set.add_secret(Some("h"), secret.clone()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.candidates(Some("h"), Algorithm::HS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 1);
        // The EC key never becomes an HS256 candidate, and the secret never an ES256 one.
        assert_eq!(set.candidates(Some("ec1"), Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("h"), Algorithm::ES256).count(), 0);
        assert_eq!(set.add_secret(Some("ec1"), secret.clone()).unwrap_err().path, "kid");
        assert_eq!(set.add_secret(Some(""), secret.clone()).unwrap_err().path, "kid");
        let only = KeySet::from_secret(None, secret).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only.candidates(None, Algorithm::HS384).count(), 0);
    }
}
