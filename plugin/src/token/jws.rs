//! Compact JWS serialization (RFC 7515 §7.1), parsed strictly and cheaply.
//!
//! The header is read in one pass into just the members verification uses, borrowed from its decoded bytes,
//! under the same strict JSON rules as every other document ([`crate::json`]): the members it does not use are
//! still checked for repeated names and depth, and the answer for any header is what reading it into a map
//! and looking the members up gave (`reference_parse` in the tests holds it to that).

use super::claims::Claims;
use super::crypto::Algorithm;
use super::error::TokenError;
use super::jwk::MAX_KID_BYTES;
use crate::json::StrictValue;
use crate::{b64, json};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
#[cfg(test)]
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

mod recent;

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

/// What verification takes from a protected header.
#[derive(Debug, PartialEq)]
struct JoseHeader<'h> {
    alg: Algorithm,
    kid: Option<Cow<'h, str>>,
    typ: Option<Cow<'h, str>>,
}

impl<'h> JoseHeader<'h> {
    /// Reads and checks a decoded header: strict JSON, no forbidden member, a known `alg`, a usable `kid`, a
    /// string `typ`.
    fn read(bytes: &'h [u8]) -> Result<JoseHeader<'h>, TokenError> {
        let header = Header::parse(bytes).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        if let Some(name) = header.first_forbidden() {
            return Err(TokenError::ForbiddenHeader(name));
        }
        let alg = match header.alg {
            Member::String(name) => Algorithm::from_name(&name).ok_or(TokenError::UnsupportedAlgorithm)?,
            Member::Other => return Err(TokenError::UnsupportedAlgorithm),
            Member::Absent => return Err(TokenError::Malformed("header has no alg")),
        };
        let kid = match header.kid {
            Member::Absent => None,
            Member::String(kid) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => Some(kid),
            // A kid we could never have configured names no key.
            _ => return Err(TokenError::UnknownKey),
        };
        let typ = match header.typ {
            Member::Absent => None,
            Member::String(t) => Some(t),
            Member::Other => return Err(TokenError::Malformed("header typ is not a string")),
        };
        Ok(JoseHeader { alg, kid, typ })
    }
}

/// A header member verification reads.
#[derive(Debug, PartialEq)]
enum Member<'h> {
    Absent,
    String(Cow<'h, str>),
    /// Present, of another type (already checked as strictly as the rest of the header).
    Other,
}

/// The protected header, reduced to what verification reads.
#[derive(Debug, PartialEq)]
struct Header<'h> {
    alg: Member<'h>,
    kid: Member<'h>,
    typ: Member<'h>,
    /// Bit `i` set: `FORBIDDEN_HEADERS[i]` is present.
    forbidden: u8,
}

impl<'h> Header<'h> {
    /// Reads a header: one JSON object with no duplicate names at any depth, nested at most
    /// [`MAX_HEADER_DEPTH`] deep, with nothing after it. Which rule failed does not matter to the caller.
    fn parse(bytes: &'h [u8]) -> Result<Header<'h>, serde_json::Error> {
        if let Some(header) = Header::parse_plain(bytes) {
            return Ok(header);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let header = (&mut de).deserialize_any(HeaderVisitor)?;
        de.end()?;
        Ok(header)
    }

    /// The shape nearly every header has, `{"name":"value",...}` with strings that need no unescaping and no
    /// whitespace, read without serde_json. `None` for anything else, a repeated name included: the full parser
    /// then decides, so the answer never depends on which one read the header.
    fn parse_plain(bytes: &'h [u8]) -> Option<Header<'h>> {
        let mut header = Header { alg: Member::Absent, kid: Member::Absent, typ: Member::Absent, forbidden: 0 };
        let mut others: [&str; 4] = [""; 4];
        let mut other_count = 0;
        let mut rest = std::str::from_utf8(bytes).ok()?.strip_prefix('{')?;
        if rest == "}" {
            return Some(header);
        }
        loop {
            let (name, after) = json::plain_string(rest)?;
            let (value, after) = json::plain_string(after.strip_prefix(':')?)?;
            // Where the values of members verification does not read go.
            let mut ignored = Member::Absent;
            let slot = match Name::known(name) {
                Some(Name::Alg) => &mut header.alg,
                Some(Name::Kid) => &mut header.kid,
                Some(Name::Typ) => &mut header.typ,
                Some(Name::Forbidden(bit)) if header.forbidden & bit == 0 => {
                    header.forbidden |= bit;
                    &mut ignored
                }
                Some(_) => return None,
                None => {
                    let seen = others.get(..other_count)?;
                    if seen.contains(&name) {
                        return None;
                    }
                    *others.get_mut(other_count)? = name;
                    other_count += 1;
                    &mut ignored
                }
            };
            if !matches!(slot, Member::Absent) {
                return None;
            }
            *slot = Member::String(Cow::Borrowed(value));
            match after.strip_prefix(',') {
                Some(more) => rest = more,
                None if after == "}" => return Some(header),
                None => return None,
            }
        }
    }

    /// The first forbidden member present, in the order of [`FORBIDDEN_HEADERS`].
    fn first_forbidden(&self) -> Option<&'static str> {
        FORBIDDEN_HEADERS.iter().enumerate().find(|&(i, _)| self.forbidden & (1 << i) != 0).map(|(_, &name)| name)
    }
}

const DUPLICATE: &str = "duplicate header member";

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
        // The members' values sit one level inside the header object.
        let inner = StrictValue::new(1, MAX_HEADER_DEPTH);
        let mut header = Header { alg: Member::Absent, kid: Member::Absent, typ: Member::Absent, forbidden: 0 };
        // Names not read otherwise are kept only to refuse a repeated one; real headers rarely have any, and an
        // empty set does not allocate.
        let mut others = BTreeSet::new();
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let slot = match name {
                Name::Alg => &mut header.alg,
                Name::Kid => &mut header.kid,
                Name::Typ => &mut header.typ,
                Name::Forbidden(bit) => {
                    if header.forbidden & bit != 0 {
                        return Err(de::Error::custom(DUPLICATE));
                    }
                    header.forbidden |= bit;
                    map.next_value_seed(inner)?;
                    continue;
                }
                Name::Other(name) => {
                    if !others.insert(name) {
                        return Err(de::Error::custom(DUPLICATE));
                    }
                    map.next_value_seed(inner)?;
                    continue;
                }
            };
            if !matches!(slot, Member::Absent) {
                return Err(de::Error::custom(DUPLICATE));
            }
            *slot = map.next_value_seed(MemberSeed(inner))?;
        }
        Ok(header)
    }
}

/// A header member's name, as far as verification cares.
enum Name<'h> {
    Alg,
    Kid,
    Typ,
    /// `1 << i` for `FORBIDDEN_HEADERS[i]`.
    Forbidden(u8),
    Other(Cow<'h, str>),
}

impl Name<'_> {
    fn known(name: &str) -> Option<Name<'static>> {
        match name {
            "alg" => Some(Name::Alg),
            "kid" => Some(Name::Kid),
            "typ" => Some(Name::Typ),
            _ => FORBIDDEN_HEADERS.iter().position(|&f| f == name).map(|i| Name::Forbidden(1 << i)),
        }
    }
}

/// Reads a member name, compared after unescaping (`"al\u0067"` is `alg`).
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Name<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Name<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
        Ok(Name::known(v).unwrap_or(Name::Other(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
        Ok(Name::known(v).unwrap_or_else(|| Name::Other(Cow::Owned(v.to_owned()))))
    }
}

/// Reads `alg`, `kid` or `typ`: a string is kept (borrowed unless it had escapes); any other value is checked by
/// the [`StrictValue`] rules and only its presence kept.
#[derive(Clone, Copy)]
struct MemberSeed(StrictValue);

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Member<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Member<'de>, E> {
        Ok(Member::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Member<'de>, E> {
        Ok(Member::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Member<'de>, E> {
        Ok(Member::String(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Member<'de>, E> {
        self.0.visit_bool(v).map(|_| Member::Other)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Member<'de>, E> {
        self.0.visit_i64(v).map(|_| Member::Other)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Member<'de>, E> {
        self.0.visit_u64(v).map(|_| Member::Other)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Member<'de>, E> {
        self.0.visit_f64(v).map(|_| Member::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Member<'de>, E> {
        self.0.visit_unit().map(|_| Member::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
        self.0.visit_seq(seq).map(|_| Member::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
        self.0.visit_map(map).map(|_| Member::Other)
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
mod tests {
    use super::*;

    const PAYLOAD: &[u8] = br#"{"iss":"https://issuer.example","sub":"agent","aud":"api","exp":1900000000}"#;

    fn token(header: &[u8], payload: &[u8]) -> String {
        format!("{}.{}.{}", b64::encode(header), b64::encode(payload), b64::encode(b"signature"))
    }

    /// `parse` (and `parse_in`) give exactly the reference's answer for this header and payload.
    fn assert_as_reference(header: &[u8], payload: &[u8]) -> Result<ReferenceJws<'static>, TokenError> {
        let token = token(header, payload);
        let want = reference_parse(token.as_bytes());
        let got = parse(token.as_bytes());
        let shown = String::from_utf8_lossy(header);
        assert_eq!(got.as_ref().map(Jws::as_reference).map_err(|e| *e), want, "header {shown}");
        let mut buf = DecodeBuf::new();
        let got_in = parse_in(token.as_bytes(), &mut buf);
        assert_eq!(got_in.as_ref().map(Jws::as_reference).map_err(|e| *e), want, "header {shown}");
        want.map(|r| ReferenceJws { signing_input: &[], payload_b64: &[], ..r })
    }

    fn header_error(header: &[u8]) -> TokenError {
        assert_as_reference(header, PAYLOAD).map(|_| ()).unwrap_err()
    }

    const NOT_AN_OBJECT: TokenError = TokenError::Malformed("header is not a JSON object");

    #[test]
    fn ordinary_headers() {
        let r = assert_as_reference(br#"{"alg":"HS256","kid":"k","typ":"JWT"}"#, PAYLOAD).unwrap();
        assert_eq!((r.alg, r.kid.as_deref(), r.typ.as_deref()), (Algorithm::HS256, Some("k"), Some("JWT")));
        let r = assert_as_reference(br#"{"typ":"JWT","alg":"ES256"}"#, PAYLOAD).unwrap();
        assert_eq!((r.alg, r.kid, r.typ.as_deref()), (Algorithm::ES256, None, Some("JWT")));
        // RFC 7515 A.1 writes its header with CR LF and a space: the full parser's shape, the same answer.
        let r = assert_as_reference(b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}", PAYLOAD).unwrap();
        assert_eq!(r.typ.as_deref(), Some("JWT"));
        for header in [
            &br#"{ "alg":"HS256"}"#[..],
            br#"{"alg" :"HS256"}"#,
            br#"{"alg": "HS256"}"#,
            br#"{"alg":"HS256" }"#,
            br#" {"alg":"HS256"}"#,
            b"{\"alg\":\"HS256\"}\n",
            br#"{"alg":"HS256","cty":"JWT","x5t#S256":"abc","b64":true,"n":-1.5e3,"o":{"a":[1,{}]}}"#,
        ] {
            assert_eq!(assert_as_reference(header, PAYLOAD).unwrap().alg, Algorithm::HS256);
        }
    }

    #[test]
    fn headers_that_are_not_one_object() {
        for header in [
            &b"{"[..],
            b"}",
            b"{}}",
            b"{}{}",
            b"[]",
            br#"["HS256"]"#,
            br#""HS256""#,
            b"1",
            b"null",
            br#"{"alg":"HS256""#,
            br#"{"alg":"HS256",}"#,
            br#"{"alg":"HS256"}x"#,
            br#"{"alg":"HS256"},"#,
            br#"{"alg":"HS256"}}"#,
            br#"{"alg":"HS256";"kid":"k"}"#,
            br#"{"alg""HS256"}"#,
            br#"{alg:"HS256"}"#,
            br#"{'alg':'HS256'}"#,
            b"\xef\xbb\xbf{\"alg\":\"HS256\"}",
            b"{\"alg\":\"HS256\",\"kid\":\"\xff\"}",
            b"{\"alg\":\"HS256\",\"kid\":\"a\x01b\"}",
            b"{\"alg\":\"HS256\",\"kid\":\"a\nb\"}",
            br#"{"alg":"HS256","kid":"\ud800"}"#,
            br#"{"alg":"HS256","kid":"\x"}"#,
            br#"{"alg":"HS256","x":1e400}"#,
            br#"{"alg":"HS256","x":01}"#,
            br#"{"alg":"HS256","x":tru}"#,
        ] {
            assert_eq!(header_error(header), NOT_AN_OBJECT, "{}", String::from_utf8_lossy(header));
        }
    }

    #[test]
    fn repeated_names_at_any_depth() {
        for header in [
            &br#"{"alg":"HS256","alg":"HS256"}"#[..],
            br#"{"alg":"HS256","al\u0067":"HS256"}"#,
            br#"{"kid":"a","alg":"HS256","kid":"a"}"#,
            br#"{"typ":"JWT","alg":"HS256","typ":"JWT"}"#,
            br#"{"typ":1,"alg":"HS256","typ":"JWT"}"#,
            br#"{"alg":"HS256","x":"1","x":"1"}"#,
            br#"{"alg":"HS256","x":1,"x":2}"#,
            br#"{"alg":"HS256","\u0078":1,"x":2}"#,
            br#"{"alg":"HS256","x":{"y":1,"y":2}}"#,
            br#"{"alg":"HS256","x":[{"y":1,"y":2}]}"#,
            br#"{"alg":{"a":1,"a":2}}"#,
            br#"{"alg":"HS256","kid":[{"a":1,"a":2}]}"#,
            // A repeated forbidden member is a JSON error first.
            br#"{"alg":"HS256","jku":"a","jku":"b"}"#,
            br#"{"alg":"HS256","jku":"a","j\u006bu":"b"}"#,
            // More unread names than the plain reader tracks, and a repeat after them.
            br#"{"alg":"HS256","a":"1","b":"2","c":"3","d":"4","a":"5"}"#,
            br#"{"alg":"HS256","a":"1","b":"2","c":"3","d":"4","e":"5","e":"6"}"#,
        ] {
            assert_eq!(header_error(header), NOT_AN_OBJECT, "{}", String::from_utf8_lossy(header));
        }
        let many = br#"{"alg":"HS256","a":"1","b":"2","c":"3","d":"4","e":"5","f":"6"}"#;
        assert_eq!(assert_as_reference(many, PAYLOAD).unwrap().alg, Algorithm::HS256);
    }

    #[test]
    fn nesting_is_capped_at_four() {
        assert!(assert_as_reference(br#"{"alg":"HS256","x":{"a":{"b":{"c":1}}}}"#, PAYLOAD).is_ok());
        assert!(assert_as_reference(br#"{"alg":"HS256","x":[[[]]]}"#, PAYLOAD).is_ok());
        assert_eq!(header_error(br#"{"alg":"HS256","x":{"a":{"b":{"c":{}}}}}"#), NOT_AN_OBJECT);
        assert_eq!(header_error(br#"{"alg":"HS256","x":[[[[]]]]}"#), NOT_AN_OBJECT);
        // The same cap through the members that are read.
        assert_eq!(header_error(br#"{"alg":[[["HS256"]]]}"#), TokenError::UnsupportedAlgorithm);
        assert_eq!(header_error(br#"{"alg":[[[["HS256"]]]]}"#), NOT_AN_OBJECT);
        assert_eq!(header_error(br#"{"alg":"HS256","kid":{"a":{"b":[]}}}"#), TokenError::UnknownKey);
        assert_eq!(header_error(br#"{"alg":"HS256","kid":{"a":{"b":[[]]}}}"#), NOT_AN_OBJECT);
        let deep = format!(r#"{{"alg":"HS256","x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(header_error(deep.as_bytes()), NOT_AN_OBJECT);
    }

    #[test]
    fn forbidden_members_whatever_their_value_or_spelling() {
        for (i, name) in FORBIDDEN_HEADERS.iter().enumerate() {
            for value in ["\"x\"", "null", "[]", "{\"k\":1}", "true", "0"] {
                let header = format!(r#"{{"alg":"HS256","{name}":{value}}}"#);
                assert_eq!(header_error(header.as_bytes()), TokenError::ForbiddenHeader(name), "{header}");
            }
            // Found after unescaping, and before alg is even looked at.
            let escaped: String = name.chars().map(|c| format!("\\u{:04x}", u32::from(c))).collect();
            let header = format!(r#"{{"{escaped}":"x","alg":"none"}}"#);
            assert_eq!(header_error(header.as_bytes()), TokenError::ForbiddenHeader(name), "{header}");
            // With several, the first in FORBIDDEN_HEADERS' order is the one reported.
            let later: Vec<String> = FORBIDDEN_HEADERS[i..].iter().rev().map(|n| format!(r#""{n}":"x""#)).collect();
            let header = format!(r#"{{"alg":"HS256",{}}}"#, later.join(","));
            assert_eq!(header_error(header.as_bytes()), TokenError::ForbiddenHeader(name), "{header}");
        }
        // Near misses are ordinary members.
        for name in ["JKU", "jku ", "x5t", "crit2", "zi"] {
            let header = format!(r#"{{"alg":"HS256","{name}":"x"}}"#);
            assert!(assert_as_reference(header.as_bytes(), PAYLOAD).is_ok(), "{header}");
        }
    }

    #[test]
    fn alg_kid_and_typ_types_and_bounds() {
        assert_eq!(header_error(b"{}"), TokenError::Malformed("header has no alg"));
        assert_eq!(header_error(br#"{"kid":"k"}"#), TokenError::Malformed("header has no alg"));
        for alg in ["7", "null", "true", "[\"HS256\"]", "{\"a\":1}", "\"none\"", "\"hs256\"", "\"\""] {
            let header = format!(r#"{{"alg":{alg}}}"#);
            assert_eq!(header_error(header.as_bytes()), TokenError::UnsupportedAlgorithm, "{header}");
        }
        let long = "a".repeat(MAX_KID_BYTES);
        let longer = "a".repeat(MAX_KID_BYTES + 1);
        for kid in ["\"\"", "7", "null", "[]", "{}", &format!("\"{longer}\"")] {
            let header = format!(r#"{{"alg":"HS256","kid":{kid}}}"#);
            assert_eq!(header_error(header.as_bytes()), TokenError::UnknownKey, "{header}");
        }
        let header = format!(r#"{{"alg":"HS256","kid":"{long}"}}"#);
        assert_eq!(assert_as_reference(header.as_bytes(), PAYLOAD).unwrap().kid, Some(long.clone()));
        for typ in ["7", "null", "false", "[\"JWT\"]", "{}"] {
            let header = format!(r#"{{"alg":"HS256","typ":{typ}}}"#);
            assert_eq!(
                header_error(header.as_bytes()),
                TokenError::Malformed("header typ is not a string"),
                "{header}"
            );
        }
        // Escaped strings are unescaped (and so owned); unescaped non-ASCII and DEL are plain.
        let r = assert_as_reference(br#"{"alg":"HS\u0032\u00356","kid":"k\u0000\n","typ":"J\/T"}"#, PAYLOAD);
        let r = r.unwrap();
        assert_eq!((r.alg, r.kid.as_deref(), r.typ.as_deref()), (Algorithm::HS256, Some("k\0\n"), Some("J/T")));
        let r = assert_as_reference("{\"alg\":\"HS256\",\"kid\":\"ключ\x7f\"}".as_bytes(), PAYLOAD).unwrap();
        assert_eq!(r.kid.as_deref(), Some("ключ\x7f"));
        // The kid's length counts its bytes once unescaped.
        let escaped_long = format!(r#"{{"alg":"HS256","kid":"{}\u0061"}}"#, "a".repeat(MAX_KID_BYTES - 1));
        assert_eq!(assert_as_reference(escaped_long.as_bytes(), PAYLOAD).unwrap().kid, Some(long));
        let escaped_longer = format!(r#"{{"alg":"HS256","kid":"{}\u0061"}}"#, "a".repeat(MAX_KID_BYTES));
        assert_eq!(header_error(escaped_longer.as_bytes()), TokenError::UnknownKey);
    }

    #[test]
    fn headers_too_large_for_the_stack_buffer() {
        let padding = "p".repeat(2 * HEADER_STACK_BYTES);
        let header = format!(r#"{{"alg":"HS256","x":"{padding}","kid":"k","typ":"JWT"}}"#);
        let r = assert_as_reference(header.as_bytes(), PAYLOAD).unwrap();
        assert_eq!((r.kid.as_deref(), r.typ.as_deref()), (Some("k"), Some("JWT")));
        let header = format!(r#"{{"alg":"HS256","x":"{padding}","x":1}}"#);
        assert_eq!(header_error(header.as_bytes()), NOT_AN_OBJECT);
        // Exactly at the boundary, and one byte over.
        for extra in [0, 1] {
            let fill = HEADER_STACK_BYTES + extra - r#"{"alg":"HS256","x":""}"#.len();
            let header = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "f".repeat(fill));
            assert_eq!(header.len(), HEADER_STACK_BYTES + extra);
            assert!(assert_as_reference(header.as_bytes(), PAYLOAD).is_ok());
        }
    }

    /// What [`recent`] would answer for this header now, as (alg, kid, typ).
    fn recalled(header: &[u8]) -> Option<(Algorithm, Option<String>, Option<String>)> {
        let mut out = [0; HEADER_STACK_BYTES];
        let recalled = recent::recall(b64::encode(header).as_bytes(), &mut out)?;
        let h = recalled.view(&out).unwrap();
        Some((h.alg, h.kid.map(Cow::into_owned), h.typ.map(Cow::into_owned)))
    }

    #[test]
    fn recently_accepted_headers_are_kept_and_recalled_only_for_their_bytes() {
        let ordinary = br#"{"alg":"HS256","kid":"k","typ":"JWT"}"#;
        let ours = Some((Algorithm::HS256, Some("k".to_owned()), Some("JWT".to_owned())));
        assert_as_reference(ordinary, PAYLOAD).unwrap();
        assert_eq!(recalled(ordinary), ours);
        // A byte apart, in the JSON or in its encoding, is another header.
        assert_eq!(recalled(br#"{"alg":"HS256","kid":"j","typ":"JWT"}"#), None);
        let mut encoded = b64::encode(ordinary).into_bytes();
        encoded[5] ^= 1;
        assert!(recent::recall(&encoded, &mut [0; HEADER_STACK_BYTES]).is_none());
        // Refused headers are not kept, and leave the last accepted one in place.
        let long_kid = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(MAX_KID_BYTES + 1));
        for refused in [
            &br#"{"alg":"none"}"#[..],
            br#"{"alg":"HS256","jku":"x"}"#,
            br#"{"alg":"HS256","kid":7}"#,
            long_kid.as_bytes(),
        ] {
            assert!(assert_as_reference(refused, PAYLOAD).is_err());
            assert_eq!(recalled(refused), None);
            assert_eq!(recalled(ordinary), ours);
        }
        // Accepted, but not kept: a kid that needed unescaping is not a slice of the header, and a header past
        // the kept length is read every time. Neither displaces the one kept.
        let escaped = br#"{"alg":"HS256","kid":"\u006b"}"#;
        let long = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "x".repeat(recent::MAX_BYTES));
        for unkept in [&escaped[..], long.as_bytes()] {
            assert!(assert_as_reference(unkept, PAYLOAD).is_ok());
            assert_eq!(recalled(unkept), None);
            assert_eq!(recalled(ordinary), ours);
        }
        // The longest kept header, and the next, both read as the reference reads them.
        let fill =
            |len: usize| format!(r#"{{"alg":"ES256","x":"{}"}}"#, "y".repeat(len - r#"{"alg":"ES256","x":""}"#.len()));
        assert!(assert_as_reference(fill(recent::MAX_BYTES).as_bytes(), PAYLOAD).is_ok());
        assert_eq!(recalled(fill(recent::MAX_BYTES).as_bytes()), Some((Algorithm::ES256, None, None)));
        assert!(assert_as_reference(fill(recent::MAX_BYTES + 1).as_bytes(), PAYLOAD).is_ok());
        assert_eq!(recalled(fill(recent::MAX_BYTES + 1).as_bytes()), None);
        // A few are kept; the oldest gives way.
        let kids: Vec<String> = (0..6).map(|i| format!(r#"{{"alg":"HS256","kid":"key-{i}"}}"#)).collect();
        for kid in &kids {
            assert!(assert_as_reference(kid.as_bytes(), PAYLOAD).is_ok());
        }
        let kept: Vec<bool> = kids.iter().map(|kid| recalled(kid.as_bytes()).is_some()).collect();
        assert_eq!(kept, [false, false, true, true, true, true]);
        assert_eq!(recalled(kids[5].as_bytes()), Some((Algorithm::HS256, Some("key-5".to_owned()), None)));
        // Each token read after every other one, and after itself, gives the reference's answer.
        let headers = [
            &ordinary[..],
            br#"{"alg":"ES256","kid":"k"}"#,
            br#"{"typ":"JWT","alg":"HS256"}"#,
            escaped,
            br#"{"alg":"none"}"#,
        ];
        for first in headers {
            for second in headers {
                for header in [first, second, first, first] {
                    let _ = assert_as_reference(header, PAYLOAD);
                }
            }
        }
    }

    #[test]
    fn payloads_kept_as_text_or_parsed_and_their_errors() {
        let header = br#"{"alg":"HS256"}"#;
        let many: Vec<String> = (0..70).map(|i| format!(r#""m{i}":{i}"#)).collect();
        let wide_nested: Vec<String> = (0..17).map(|i| format!(r#""n{i}":{i}"#)).collect();
        for (payload, scanned) in [
            (format!(r#"{{"sub":"{}"}}"#, "s".repeat(4096)), true),
            (format!("{{{}}}", many[..64].join(",")), true),
            (format!("{{{}}}", many.join(",")), false),
            (format!(r#"{{"x":{{{}}}}}"#, wide_nested[..16].join(",")), true),
            (format!(r#"{{"x":{{{}}}}}"#, wide_nested.join(",")), false),
            (r#"{"sub":"a\u0062"}"#.to_owned(), false),
            (r#"{"exp":1.5}"#.to_owned(), false),
        ] {
            assert_as_reference(header, payload.as_bytes()).unwrap();
            let claims = parse(token(header, payload.as_bytes()).as_bytes()).unwrap().claims;
            assert_eq!(claims.is_map_built(), !scanned, "{payload}");
        }
        let big_dup = format!(r#"{{"sub":"{}","sub":1}}"#, "s".repeat(4096));
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(40), "]".repeat(40));
        let late_dup = format!("{{{},\"m3\":1}}", many[..10].join(","));
        let nested_dup = format!(r#"{{"x":[{{{},"n1":1}}]}}"#, wide_nested[..5].join(","));
        for (payload, want) in [
            (&big_dup[..], "payload is not a JSON object"),
            (&late_dup, "payload is not a JSON object"),
            (&nested_dup, "payload is not a JSON object"),
            (&deep, "payload is nested too deeply"),
            ("[]", "payload is not a JSON object"),
            ("{\"a\":1} x", "payload is not a JSON object"),
        ] {
            let got = assert_as_reference(header, payload.as_bytes()).map(|_| ());
            assert_eq!(got, Err(TokenError::Malformed(want)), "{payload}");
        }
    }

    #[test]
    fn signatures_on_and_off_the_stack() {
        let head = format!("{}.{}", b64::encode(br#"{"alg":"RS256"}"#), b64::encode(PAYLOAD));
        for len in [1, 64, SIGNATURE_STACK_BYTES - 1, SIGNATURE_STACK_BYTES, SIGNATURE_STACK_BYTES + 1, 2048] {
            let signature: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let token = format!("{head}.{}", b64::encode(&signature));
            let parsed = parse(token.as_bytes()).unwrap();
            assert_eq!(parsed.as_reference(), reference_parse(token.as_bytes()).unwrap());
            assert_eq!(&*parsed.signature, &signature[..], "{len}");
            let mut buf = DecodeBuf::new();
            assert_eq!(&*parse_in(token.as_bytes(), &mut buf).unwrap().signature, &signature[..], "{len}");
        }
    }

    #[test]
    fn segments_and_encodings() {
        let valid = token(br#"{"alg":"HS256"}"#, PAYLOAD);
        let (h, rest) = valid.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        for bad in [
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}."),
            format!("{h}.{p}.{s}.x.y"),
            format!(".{p}.{s}"),
            format!("{h}..{s}"),
            format!("{h}.{p}."),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}=.{s}"),
            format!("{h}.{p}.{s}="),
            format!("{h}.{p}x.{s}"),
            format!("{h}.{p}.{s}x"),
            format!("{h} .{p}.{s}"),
            "..".to_owned(),
            "...".to_owned(),
            // Dots between the outermost two are counted before any other fault is told.
            format!("{h}.{p}.x.{s}"),
            format!("!.{p}.{s}."),
            format!("{h}.{p}..{s}"),
            format!("{h}.x.{s}.."),
            format!("{h}.{p}.{s}.{s}"),
            "a.b.c.d".to_owned(),
            String::new(),
        ] {
            let want = reference_parse(bad.as_bytes());
            assert!(want.is_err(), "{bad}");
            assert_eq!(parse(bad.as_bytes()).map(|j| j.as_reference().alg), want.map(|r| r.alg), "{bad}");
        }
        // Dots found eight bytes at a time from either end: in every position of a word, in the bytes left
        // over at either end, and with dots in between.
        for len in 0..40 {
            for middle in ["b", "bb.b", "b.b.b", "."] {
                let middle = middle.repeat(len % 7 + 1);
                let token = format!("{}.{middle}.{}", "a".repeat(len), "c".repeat(len % 5 + 1));
                assert_eq!(outer_dots(token.as_bytes()), Ok((len, len + middle.len() + 1)), "{token}");
            }
            let token = format!("{}.{}", "a".repeat(len), "c".repeat(len % 9));
            assert_eq!(outer_dots(token.as_bytes()), Err(NOT_THREE), "{token}");
            assert_eq!(outer_dots(token.replace('.', "").as_bytes()), Err(NOT_THREE), "{token}");
        }
    }

    #[test]
    fn the_plain_header_reader_agrees_with_the_full_one() {
        // Every header the plain reader accepts must read the same through serde_json.
        for header in [
            &br#"{}"#[..],
            br#"{"alg":"HS256"}"#,
            br#"{"alg":"HS256","kid":"k","typ":"JWT"}"#,
            br#"{"jku":"x","alg":"HS256"}"#,
            br#"{"x":"1","y":"2","z":"3","w":"4","alg":"none"}"#,
            "{\"alg\":\"ES256\",\"kid\":\"ключ\x7f\"}".as_bytes(),
        ] {
            let plain = Header::parse_plain(header).unwrap();
            let mut de = serde_json::Deserializer::from_slice(header);
            let full = (&mut de).deserialize_any(HeaderVisitor).unwrap();
            de.end().unwrap();
            assert_eq!(plain, full, "{}", String::from_utf8_lossy(header));
        }
        for declined in [
            &br#"{"alg":"HS256","alg":"HS256"}"#[..],
            br#"{"alg":"HS\u0032"}"#,
            br#"{"alg":1}"#,
            br#"{"alg":"HS256" }"#,
            br#"{"a":"1","b":"2","c":"3","d":"4","e":"5"}"#,
            br#"{"jku":"1","jku":"2"}"#,
        ] {
            assert_eq!(Header::parse_plain(declined), None, "{}", String::from_utf8_lossy(declined));
        }
    }
}
