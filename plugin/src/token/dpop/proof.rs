//! One proof read and checked against the request it came with (RFC 9449 §4.3 checks 2–9, 11, 12's `ath`):
//! the compact JWS, `typ`, `alg` from the allow-list, the header's `jwk` validated as strictly as a key set's
//! keys, the signature with that key, `htm`, `htu`, `iat` in the window, and `ath`. What needs the token's
//! binding, the gateway's nonces or the shared replay cache is the engine's next step.
//!
//! An agent signs every proof with the same key, so its proofs share their header bytes: a validated header
//! is kept ([`ProofKeys`]) and the next proof with the same bytes skips the JSON, the key validation and the
//! thumbprint.

use super::replay::{ProofId, proof_id};
use super::{DpopError, ProofRules, htu, is_proof_algorithm, thumbprint};
use crate::bytes::fixed_time_eq;
use crate::json::tape::{Kind, Node, Tape};
use crate::token::crypto::{Algorithm, CryptoBackend, PublicKey};
use crate::token::jwk::{self, EmbeddedKeyError};
use crate::{b64, json};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// Longest proof accepted, bytes, checked before anything is decoded (an RSA key of 8192 bits fits).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted, bytes: it is hashed, never stored, but there is no reason for more.
pub const MAX_JTI_BYTES: usize = 256;
/// Longest nonce accepted, bytes.
pub const MAX_NONCE_BYTES: usize = 256;
/// Headers kept per worker.
const RECENT_HEADERS: usize = 64;
/// Header members that would name the key another way, or change how the proof is processed; the key is the
/// header's `jwk`, and only that.
const FORBIDDEN_HEADERS: [&str; 8] = ["jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "zip", "b64"];

/// A proof's header, validated: the algorithm, the public key and its RFC 7638 thumbprint.
#[derive(Debug)]
pub struct ProofHeader {
    /// `alg`.
    pub alg: Algorithm,
    /// The `jwk`, validated.
    pub key: PublicKey,
    /// The key's SHA-256 thumbprint, base64url (what `cnf.jkt` must be).
    pub jkt: String,
}

/// A header's base64url bytes and what they validated to.
type Remembered = (Box<[u8]>, Rc<ProofHeader>);

/// Headers validated recently on this worker, by their exact base64url bytes (most recent first).
#[derive(Debug, Default)]
pub struct ProofKeys {
    recent: RefCell<Vec<Remembered>>,
}

impl ProofKeys {
    fn recall(&self, header_b64: &[u8]) -> Option<Rc<ProofHeader>> {
        let mut recent = self.recent.try_borrow_mut().ok()?;
        let at = recent.iter().position(|(bytes, _)| **bytes == *header_b64)?;
        let hit = recent.remove(at);
        let header = hit.1.clone();
        recent.insert(0, hit);
        Some(header)
    }

    fn remember(&self, header_b64: &[u8], header: Rc<ProofHeader>) {
        if let Ok(mut recent) = self.recent.try_borrow_mut() {
            recent.truncate(RECENT_HEADERS - 1);
            recent.insert(0, (header_b64.into(), header));
        }
    }
}

/// What the request says a proof must be about.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method, as sent.
    pub method: &'a str,
    /// The configured origin and the request's path, normalised ([`htu::normalise`]).
    pub htu: &'a str,
    /// SHA-256 of the access token presented with the proof.
    pub token_sha256: &'a [u8; 32],
    /// Seconds since the epoch.
    pub now: i64,
}

/// A proof that passed every check of its own.
#[derive(Debug)]
pub struct CheckedProof {
    /// Its header: algorithm, key, thumbprint.
    pub header: Rc<ProofHeader>,
    /// Its identity in the replay cache.
    pub id: ProofId,
    /// `iat`.
    pub iat: i64,
    /// `nonce`, if it has one.
    pub nonce: Option<String>,
}

/// Checks a proof (the `DPoP` header's value) against the request it came with.
pub fn check(
    proof: &[u8],
    expected: &Expected<'_>,
    rules: &ProofRules,
    keys: &ProofKeys,
    crypto: &dyn CryptoBackend,
) -> Result<CheckedProof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::ProofTooLarge);
    }
    let mut parts = proof.split(|&b| b == b'.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("not three segments"));
    };
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(DpopError::Malformed("empty segment"));
    }
    let header = match keys.recall(header_b64) {
        // Remembered only after it passed under these same rules (one cache per configuration).
        Some(header) => header,
        None => {
            let header = Rc::new(read_header(header_b64, rules)?);
            keys.remember(header_b64, header.clone());
            header
        }
    };
    let signature = b64::decode(signature_b64).map_err(|_| DpopError::Malformed("signature is not base64url"))?;
    let signing_input = &proof[..header_b64.len() + 1 + payload_b64.len()];
    if !crypto.verify(header.alg, &header.key, signing_input, &signature) {
        return Err(DpopError::BadSignature);
    }
    let payload = b64::decode(payload_b64).map_err(|_| DpopError::Malformed("payload is not base64url"))?;
    // The strict one-pass tape, not a map: a proof is read on every request (measured: the map was a fifth of
    // a proof's instructions in the .wasm). It refuses exactly what the strict reader does.
    let tape = Tape::parse(&payload, 4).map_err(|_| DpopError::Malformed("payload is not a JSON object"))?;
    let claims = tape.root();
    if claims.kind() != Kind::Object {
        return Err(DpopError::Malformed("payload is not a JSON object"));
    }
    let jti = string_claim(claims, "jti")?;
    let htm = string_claim(claims, "htm")?;
    let htu_claim = string_claim(claims, "htu")?;
    let iat = numeric_date(claims, "iat")?;
    let ath = string_claim(claims, "ath")?;
    let nonce = match claims.get("nonce") {
        None => None,
        Some(n) => match n.as_str() {
            Some(n) if !n.is_empty() && n.len() <= MAX_NONCE_BYTES => Some(n.into_owned()),
            _ => return Err(DpopError::InvalidClaim("nonce")),
        },
    };
    if jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::InvalidClaim("jti"));
    }
    if htm != expected.method {
        return Err(DpopError::WrongMethod);
    }
    // Normalising is idempotent: a claim already equal to the (normalised) expected URI needs no more.
    if *htu_claim != *expected.htu {
        let htu = htu::normalise(&htu_claim).ok_or(DpopError::InvalidClaim("htu"))?;
        if htu != expected.htu {
            return Err(DpopError::WrongUri);
        }
    }
    if iat < expected.now - rules.max_age {
        return Err(DpopError::Stale);
    }
    if iat > expected.now + rules.future_skew {
        return Err(DpopError::FromTheFuture);
    }
    let mut ath_bytes = [0u8; 32];
    match b64::decode_into(ath.as_bytes(), &mut ath_bytes) {
        Ok(decoded) if fixed_time_eq(decoded, expected.token_sha256) => {}
        _ => return Err(DpopError::WrongTokenHash),
    }
    Ok(CheckedProof { id: proof_id(expected.htu, &jti), header, iat, nonce })
}

/// The header: `typ`, `alg`, no member that names a key another way, and the `jwk`.
fn read_header(header_b64: &[u8], rules: &ProofRules) -> Result<ProofHeader, DpopError> {
    let bytes = b64::decode(header_b64).map_err(|_| DpopError::Malformed("header is not base64url"))?;
    // The header object, the jwk inside it, and RSA's `oth` array would be deeper; nothing else is.
    let header = json::parse_object(&bytes, 3).map_err(|_| DpopError::Malformed("header is not a JSON object"))?;
    match header.get("typ") {
        Some(Value::String(typ)) if typ == "dpop+jwt" => {}
        _ => return Err(DpopError::WrongType),
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Algorithm::from_name(name)
            .filter(|a| is_proof_algorithm(*a) && rules.algorithms.contains(a))
            .ok_or(DpopError::AlgorithmNotAllowed)?,
        _ => return Err(DpopError::AlgorithmNotAllowed),
    };
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|name| header.contains_key(**name)) {
        return Err(DpopError::ForbiddenHeader(name));
    }
    let jwk = match header.get("jwk") {
        Some(Value::Object(jwk)) => jwk,
        _ => return Err(DpopError::BadKey),
    };
    let key = jwk::embedded_key(jwk, alg).map_err(|e| match e {
        EmbeddedKeyError::Private => DpopError::PrivateKey,
        EmbeddedKeyError::Invalid(_) => DpopError::BadKey,
    })?;
    let jkt = thumbprint::jkt(&key).ok_or(DpopError::BadKey)?;
    Ok(ProofHeader { alg, key, jkt })
}

fn string_claim<'a>(claims: Node<'_, 'a>, name: &'static str) -> Result<Cow<'a, str>, DpopError> {
    match claims.get(name) {
        None => Err(DpopError::MissingClaim(name)),
        Some(value) => value.as_str().filter(|s| !s.is_empty()).ok_or(DpopError::InvalidClaim(name)),
    }
}

/// A NumericDate: seconds since the epoch, an integer or a finite fraction (truncated), in `0..=2^40`.
fn numeric_date(claims: Node<'_, '_>, name: &'static str) -> Result<i64, DpopError> {
    let node = claims.get(name).ok_or(DpopError::MissingClaim(name))?;
    if node.kind() != Kind::Number {
        return Err(DpopError::InvalidClaim(name));
    }
    let value = node.to_value().ok_or(DpopError::InvalidClaim(name))?;
    let seconds = match value.as_i64() {
        Some(n) => n,
        None => match value.as_f64() {
            Some(f) if f.is_finite() && (0.0..=(1u64 << 40) as f64).contains(&f) => f as i64,
            _ => return Err(DpopError::InvalidClaim(name)),
        },
    };
    if !(0..=1 << 40).contains(&seconds) {
        return Err(DpopError::InvalidClaim(name));
    }
    Ok(seconds)
}
