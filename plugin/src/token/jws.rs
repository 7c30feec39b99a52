//! Compact JWS serialization (RFC 7515 §7.1), parsed strictly and cheaply.

use super::crypto::Algorithm;
use super::error::TokenError;
use super::jwk::MAX_KID_BYTES;
use crate::{b64, json};
use serde_json::{Map, Value};

/// Deepest JSON nesting accepted in a header or payload. Delegation chains are the deepest legitimate
/// structure; 32 leaves room for any sane chain while costing nothing on hostile input.
pub const MAX_JSON_DEPTH: usize = 32;

/// Header members that would let the token choose its own key or change how it is processed (RFC 8725
/// §3.10, CVE-2018-0114, CVE-2024-28180). Their presence alone rejects the token.
const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "jwk", "x5u", "x5c", "zip", "crit"];

/// The three segments of a compact JWS, decoded.
#[derive(Debug)]
pub struct Jws<'a> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// `BASE64URL(payload)` as sent: what Envoy's `jwt_authn` forwards in its payload header.
    pub payload_b64: &'a [u8],
    /// The protected header's `alg`.
    pub alg: Algorithm,
    /// The protected header's `kid`, if any.
    pub kid: Option<String>,
    /// The protected header's `typ`, if any.
    pub typ: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The raw signature bytes.
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. The caller has already checked the size cap.
pub fn parse(token: &[u8]) -> Result<Jws<'_>, TokenError> {
    let (first, second) = split_points(token)?;
    let header_b64 = &token[..first];
    let payload_b64 = &token[first + 1..second];
    let signature_b64 = &token[second + 1..];
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(TokenError::Malformed("empty segment"));
    }
    let header_bytes = b64::decode(header_b64).map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header =
        json::parse_object(&header_bytes, 4).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
    for name in FORBIDDEN_HEADERS {
        if header.contains_key(name) {
            return Err(TokenError::ForbiddenHeader(name));
        }
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Algorithm::from_name(name).ok_or(TokenError::UnsupportedAlgorithm)?,
        Some(_) => return Err(TokenError::UnsupportedAlgorithm),
        None => return Err(TokenError::Malformed("header has no alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => Some(kid.clone()),
        // A kid we could never have configured names no key.
        Some(_) => return Err(TokenError::UnknownKey),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(TokenError::Malformed("header typ is not a string")),
    };
    let payload_bytes = b64::decode(payload_b64).map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    let claims = json::parse_object(&payload_bytes, MAX_JSON_DEPTH).map_err(|e| match e {
        json::JsonError::TooDeep => TokenError::Malformed("payload is nested too deeply"),
        _ => TokenError::Malformed("payload is not a JSON object"),
    })?;
    let signature = b64::decode(signature_b64).map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    Ok(Jws { signing_input: &token[..second], payload_b64, alg, kid, typ, claims, signature })
}

/// Positions of exactly two dots; a third is refused at once, without scanning for more of them.
fn split_points(token: &[u8]) -> Result<(usize, usize), TokenError> {
    let mut dots = [0usize; 2];
    let mut found = 0;
    for (i, &b) in token.iter().enumerate() {
        if b == b'.' {
            if found == 2 {
                return Err(TokenError::Malformed("not three segments"));
            }
            dots[found] = i;
            found += 1;
        }
    }
    if found != 2 {
        return Err(TokenError::Malformed("not three segments"));
    }
    Ok((dots[0], dots[1]))
}
