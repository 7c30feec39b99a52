//! The protected header, read in one pass into the members verification uses: the JSON scanner for the shape
//! nearly every header has, and a serde visitor under the strict JSON rules ([`crate::json`]) for the rest.

use super::{FORBIDDEN_HEADERS, MAX_HEADER_DEPTH};
use crate::json::{self, StrictValue};
use crate::token::crypto::Algorithm;
use crate::token::error::TokenError;
use crate::token::jwk::MAX_KID_BYTES;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// What verification takes from a protected header.
#[derive(Debug, PartialEq)]
pub(super) struct JoseHeader<'h> {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<Cow<'h, str>>,
    pub(super) typ: Option<Cow<'h, str>>,
}

impl<'h> JoseHeader<'h> {
    /// Reads and checks a decoded header: strict JSON, no forbidden member, a known `alg`, a usable `kid`, a
    /// string `typ`.
    pub(super) fn read(bytes: &'h [u8]) -> Result<JoseHeader<'h>, TokenError> {
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
pub(super) enum Member<'h> {
    Absent,
    String(Cow<'h, str>),
    /// Present, of another type (already checked as strictly as the rest of the header).
    Other,
}

/// The protected header, reduced to what verification reads.
#[derive(Debug, PartialEq)]
pub(super) struct Header<'h> {
    pub(super) alg: Member<'h>,
    pub(super) kid: Member<'h>,
    pub(super) typ: Member<'h>,
    /// Bit `i` set: `FORBIDDEN_HEADERS[i]` is present.
    pub(super) forbidden: u8,
}

impl<'h> Header<'h> {
    /// Reads a header: one JSON object with no duplicate names at any depth, nested at most
    /// [`MAX_HEADER_DEPTH`] deep, with nothing after it. Which rule failed does not matter to the caller.
    pub(super) fn parse(bytes: &'h [u8]) -> Result<Header<'h>, serde_json::Error> {
        if let Some(header) = Header::parse_plain(bytes) {
            return Ok(header);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let header = (&mut de).deserialize_any(HeaderVisitor)?;
        de.end()?;
        Ok(header)
    }

    /// The header through the strict reader's fast scanner ([`json::scan_object`]): the shape nearly every
    /// header has (strings without escapes, integers, literals, arrays and objects of those, no repeated name
    /// at any depth), read without serde_json. `None` for anything else: the full parser then decides, so the
    /// answer never depends on which one read the header.
    pub(super) fn parse_plain(bytes: &'h [u8]) -> Option<Header<'h>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut header = Header { alg: Member::Absent, kid: Member::Absent, typ: Member::Absent, forbidden: 0 };
        let plain = json::scan_object(text, MAX_HEADER_DEPTH, |name, value| {
            let slot = match Name::known(name) {
                Some(Name::Alg) => &mut header.alg,
                Some(Name::Kid) => &mut header.kid,
                Some(Name::Typ) => &mut header.typ,
                Some(Name::Forbidden(bit)) => {
                    header.forbidden |= bit;
                    return;
                }
                Some(Name::Other(_)) | None => return,
            };
            // The scanner passes strings without escapes only: the text between the quotes is the value.
            *slot = match text.get(value).and_then(|v| v.strip_prefix('"')).and_then(|v| v.strip_suffix('"')) {
                Some(string) => Member::String(Cow::Borrowed(string)),
                None => Member::Other,
            };
        });
        plain.then_some(header)
    }

    /// The first forbidden member present, in the order of [`FORBIDDEN_HEADERS`].
    fn first_forbidden(&self) -> Option<&'static str> {
        FORBIDDEN_HEADERS.iter().enumerate().find(|&(i, _)| self.forbidden & (1 << i) != 0).map(|(_, &name)| name)
    }
}

const DUPLICATE: &str = "duplicate header member";

pub(super) struct HeaderVisitor;

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
