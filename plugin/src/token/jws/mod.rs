//! Compact JWS serialization (RFC 7515 §7.1), parsed strictly and cheaply.
//!
//! The header is read in one pass into just the members verification uses, borrowed from its decoded bytes,
//! under the same strict JSON rules as every other document ([`crate::json`]): the members it does not use are
//! still checked for repeated names and depth, and the answer for any header is what reading it into a map
//! and looking the members up gave (`reference_parse` in the tests holds it to that).
//!
//! Here: splitting the segments and decoding them; the header is read in `header`, recently accepted
//! headers are kept in `recent`.

use super::claims::Claims;
use super::crypto::Algorithm;
use super::error::TokenError;
#[cfg(test)]
use super::jwk::MAX_KID_BYTES;
use crate::{b64, json};
#[cfg(test)]
use serde_json::{Map, Value};
use std::borrow::Cow;

mod header;
mod recent;

use header::JoseHeader;

/// Deepest JSON nesting accepted in a header or payload. Delegation chains are the deepest legitimate
/// structure; 32 leaves room for any sane chain while costing nothing on hostile input.
pub const MAX_JSON_DEPTH: usize = 32;

/// Deepest nesting accepted in a header, the header object itself being depth 1: JOSE headers are flat.
const MAX_HEADER_DEPTH: usize = 4;

/// Header members that would let the token choose its own key or change how it is processed (RFC 8725
/// §3.10, CVE-2018-0114, CVE-2024-28180). Their presence alone rejects the token.
const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "jwk", "x5u", "x5c", "zip", "crit"];

/// Decoded headers up to this size (every real one: a maximal `kid` is 256 bytes) need no allocation.
const HEADER_STACK_BYTES: usize = 512;

/// Decoded signatures up to this size (ECDSA, EdDSA, HMAC, RSA up to 3072 bits) need no allocation.
const SIGNATURE_STACK_BYTES: usize = 384;

/// The three segments of a compact JWS, decoded: `'t` borrows from the token, `'h` from the [`DecodeBuf`] its
/// header and signature were decoded into.
#[derive(Debug)]
pub struct Jws<'t, 'h> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'t [u8],
    /// `BASE64URL(payload)` as sent: what Envoy's `jwt_authn` forwards in its payload header.
    pub payload_b64: &'t [u8],
    /// The protected header's `alg`.
    pub alg: Algorithm,
    /// The protected header's `kid`, if any.
    pub kid: Option<Cow<'h, str>>,
    /// The protected header's `typ`, if any.
    pub typ: Option<Cow<'h, str>>,
    /// The claims.
    pub claims: Claims,
    /// The raw signature bytes.
    pub signature: Cow<'h, [u8]>,
}

/// Where [`parse_in`] decodes a header and a signature, for the [`Jws`] to borrow `kid`, `typ` and the
/// signature from: on the stack unless they are unusually large.
pub struct DecodeBuf {
    header: [u8; HEADER_STACK_BYTES],
    header_heap: Vec<u8>,
    signature: [u8; SIGNATURE_STACK_BYTES],
    signature_heap: Vec<u8>,
}

impl DecodeBuf {
    /// An empty buffer (no allocation).
    pub fn new() -> DecodeBuf {
        DecodeBuf {
            header: [0; HEADER_STACK_BYTES],
            header_heap: Vec::new(),
            signature: [0; SIGNATURE_STACK_BYTES],
            signature_heap: Vec::new(),
        }
    }
}

impl Default for DecodeBuf {
    fn default() -> DecodeBuf {
        DecodeBuf::new()
    }
}

/// Splits and decodes a compact JWS. The caller has already checked the size cap.
pub fn parse(token: &[u8]) -> Result<Jws<'_, 'static>, TokenError> {
    let mut buf = DecodeBuf::new();
    let jws = parse_in(token, &mut buf)?;
    Ok(Jws {
        signing_input: jws.signing_input,
        payload_b64: jws.payload_b64,
        alg: jws.alg,
        kid: jws.kid.map(|kid| Cow::Owned(kid.into_owned())),
        typ: jws.typ.map(|typ| Cow::Owned(typ.into_owned())),
        claims: jws.claims,
        signature: Cow::Owned(jws.signature.into_owned()),
    })
}

/// [`parse`], with the header and signature decoded into `buf`.
pub fn parse_in<'t, 'h>(token: &'t [u8], buf: &'h mut DecodeBuf) -> Result<Jws<'t, 'h>, TokenError> {
    let (first, second) = outer_dots(token)?;
    // A dot in the payload fails whatever step meets it first; it is then told as what it is, before any
    // other fault, as it would be had every dot been counted up front.
    parse_segments(token, first, second, buf)
        .map_err(|e| if token[first + 1..second].contains(&b'.') { NOT_THREE } else { e })
}

/// [`parse_in`] for the segments around `first` and `second`, the outermost dots of `token`.
fn parse_segments<'t, 'h>(
    token: &'t [u8],
    first: usize,
    second: usize,
    buf: &'h mut DecodeBuf,
) -> Result<Jws<'t, 'h>, TokenError> {
    let header_b64 = &token[..first];
    let payload_b64 = &token[first + 1..second];
    let signature_b64 = &token[second + 1..];
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(TokenError::Malformed("empty segment"));
    }
    let recalled = recent::recall(header_b64, &mut buf.header);
    let JoseHeader { alg, kid, typ } = match recalled {
        Some(recalled) => recalled.view(&buf.header)?,
        None => {
            let header_bytes = decode_segment(header_b64, &mut buf.header, &mut buf.header_heap)
                .map_err(|_| TokenError::Malformed("header is not base64url"))?;
            let header = JoseHeader::read(header_bytes)?;
            recent::remember(header_b64, header_bytes, &header);
            header
        }
    };
    // Decoded straight into the allocation that a verified token keeps its claims in.
    let payload = b64::decode(payload_b64).map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    let claims = Claims::parse(payload, MAX_JSON_DEPTH).map_err(|e| match e {
        json::JsonError::TooDeep => TokenError::Malformed("payload is nested too deeply"),
        _ => TokenError::Malformed("payload is not a JSON object"),
    })?;
    let signature = decode_segment(signature_b64, &mut buf.signature, &mut buf.signature_heap)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    Ok(Jws { signing_input: &token[..second], payload_b64, alg, kid, typ, claims, signature: Cow::Borrowed(signature) })
}

/// Decodes `input` into `stack`, or into `heap` when it does not fit.
fn decode_segment<'b>(input: &[u8], stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Result<&'b [u8], b64::B64Error> {
    match b64::decoded_len(input.len()) {
        Some(len) if len > stack.len() => {
            *heap = b64::decode(input)?;
            Ok(heap)
        }
        _ => b64::decode_into(input, stack),
    }
}

const NOT_THREE: TokenError = TokenError::Malformed("not three segments");

/// The first and the last dot of `token`, when they are two different ones. Dots between them are left to the
/// caller: the payload lies there, and base64url refuses a dot anyway, so only a failed parse needs to look.
fn outer_dots(token: &[u8]) -> Result<(usize, usize), TokenError> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const DOTS: u64 = u64::from_ne_bytes([b'.'; 8]);
    // Whether a word holds a dot (zero exactly where a byte is a dot; the classic zero-byte test). Only the
    // word that does is then read byte by byte.
    let holds_dot = |word: &[u8; 8]| {
        let x = u64::from_ne_bytes(*word) ^ DOTS;
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let is_dot = |&b: &u8| b == b'.';
    let (words, _) = token.as_chunks::<8>();
    let from = words.iter().position(holds_dot).unwrap_or(words.len()) * 8;
    let first = token.get(from..).and_then(|rest| rest.iter().position(is_dot)).map(|i| from + i);
    let (head, words) = token.as_rchunks::<8>();
    let to = words.iter().rposition(holds_dot).map_or(0, |w| w + 1) * 8 + head.len();
    let last = token.get(..to).and_then(|front| front.iter().rposition(is_dot));
    match (first, last) {
        (Some(first), Some(last)) if first < last => Ok((first, last)),
        _ => Err(NOT_THREE),
    }
}

/// The parser this module had before the header was read in one pass (serde_json into a map, then lookups):
/// the reference whose answers the current one must give for every input.
#[cfg(test)]
pub(super) fn reference_parse(token: &[u8]) -> Result<ReferenceJws<'_>, TokenError> {
    let segments: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    let &[header_b64, payload_b64, signature_b64] = segments.as_slice() else {
        return Err(NOT_THREE);
    };
    let second = header_b64.len() + 1 + payload_b64.len();
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(TokenError::Malformed("empty segment"));
    }
    // serde_json alone, as before the fast reader.
    let object = json::parse_object_with_serde;
    let header_bytes = b64::decode(header_b64).map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header = object(&header_bytes, 4).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
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
        Some(_) => return Err(TokenError::UnknownKey),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(TokenError::Malformed("header typ is not a string")),
    };
    let payload_bytes = b64::decode(payload_b64).map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    let claims = object(&payload_bytes, MAX_JSON_DEPTH).map_err(|e| match e {
        json::JsonError::TooDeep => TokenError::Malformed("payload is nested too deeply"),
        _ => TokenError::Malformed("payload is not a JSON object"),
    })?;
    let signature = b64::decode(signature_b64).map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    Ok(ReferenceJws { signing_input: &token[..second], payload_b64, alg, kid, typ, claims, signature })
}

/// What [`reference_parse`] reads.
#[cfg(test)]
#[derive(Debug, PartialEq)]
pub(super) struct ReferenceJws<'a> {
    pub signing_input: &'a [u8],
    pub payload_b64: &'a [u8],
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
}

#[cfg(test)]
impl Jws<'_, '_> {
    /// The same fields in the reference's form, for comparison.
    pub(super) fn as_reference(&self) -> ReferenceJws<'_> {
        ReferenceJws {
            signing_input: self.signing_input,
            payload_b64: self.payload_b64,
            alg: self.alg,
            kid: self.kid.as_deref().map(str::to_owned),
            typ: self.typ.as_deref().map(str::to_owned),
            claims: self.claims.map().clone(),
            signature: self.signature.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests;
