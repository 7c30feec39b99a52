//! Strict JSON for untrusted documents (JOSE headers, claims, JWKS).
//!
//! serde_json already rejects invalid UTF-8, a BOM, lone surrogates, trailing bytes and numbers out of range.
//! It keeps the *last* of duplicate member names, though, and two parsers that disagree on duplicates are a
//! classic token-confusion bug (RFC 8725 §3.7), so duplicates are an error here. Nesting is capped well below
//! serde_json's own recursion limit so deep input costs little and can never exhaust the stack.

pub mod tape;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};
use std::fmt;
use std::ops::Range;

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, or not UTF-8, or trailing data.
    Syntax,
    /// The same member name twice in one object.
    DuplicateMember,
    /// Arrays and objects nested deeper than allowed.
    TooDeep,
    /// Valid JSON whose top level is not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonError::Syntax => "not valid UTF-8 JSON",
            JsonError::DuplicateMember => "duplicate member name",
            JsonError::TooDeep => "nested too deeply",
            JsonError::NotAnObject => "not a JSON object",
        })
    }
}

/// Parses `bytes` as one JSON object, rejecting duplicate names and nesting deeper than `max_depth`
/// (the top-level object is depth 1).
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, JsonError> {
    match Plain::object(bytes, max_depth) {
        Some(map) => Ok(map),
        None => parse_object_with_serde(bytes, max_depth),
    }
}

/// [`parse_object`] by serde_json alone: what decides every document the fast reader declines.
pub(crate) fn parse_object_with_serde(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes, max_depth)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Parses any JSON value with the same strictness as [`parse_object`].
pub fn parse_value(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { depth: 0, max_depth }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(value)
}

/// A reader for the JSON that tokens carry in practice: strings without escapes, non-negative integers of up
/// to 18 digits, `true`, `false`, `null`, arrays and objects. It is exact on that subset and answers `None` for
/// anything outside it (escapes, other numbers, a repeated name, too deep, not UTF-8, trailing bytes), leaving
/// every refusal, and every error's kind, to the serde_json path. It exists because serde_json's per-string and
/// per-member overhead is most of the cost of reading a small payload.
struct Plain<'a> {
    text: &'a str,
    pos: usize,
    max_depth: usize,
}

/// Deepest nesting [`Plain`] reads itself, however deep a caller allows: it recurses, and serde_json refuses
/// documents nested past its own recursion limit (128), which [`Plain`] must never accept.
const PLAIN_MAX_DEPTH: usize = 32;

impl<'a> Plain<'a> {
    fn object(bytes: &[u8], max_depth: usize) -> Option<Map<String, Value>> {
        // Valid UTF-8 throughout means any string cut at its (ASCII) quotes is valid too.
        let mut p = Plain::start(std::str::from_utf8(bytes).ok()?, max_depth)?;
        let map = p.map(1)?;
        p.finish().then_some(map)
    }

    /// A reader at the first `{` of `text`, or `None` if the text does not start with an object.
    fn start(text: &'a str, max_depth: usize) -> Option<Plain<'a>> {
        let mut p = Plain { text, pos: 0, max_depth: max_depth.min(PLAIN_MAX_DEPTH) };
        p.skip_whitespace();
        (p.peek() == Some(b'{')).then_some(p)
    }

    /// Whether nothing but whitespace follows.
    fn finish(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// The next byte, consumed.
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Walks an array or object whose opening bracket is next, at `depth` (the top level is 1), up to `close`:
    /// `entry` must consume each item or member.
    fn each(&mut self, depth: usize, close: u8, mut entry: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if depth > self.max_depth {
            return None;
        }
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.skip_whitespace();
            entry(self)?;
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// Walks an object whose `{` is next, at `depth`: `member` is called with each name and must consume the
    /// value that follows. Repeated names are `member`'s to refuse.
    fn each_member(&mut self, depth: usize, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.each(depth, b'}', |p| {
            let name = p.string()?;
            p.skip_whitespace();
            if p.next()? != b':' {
                return None;
            }
            p.skip_whitespace();
            member(p, name)
        })
    }

    /// An object whose `{` is next, at `depth`, read into a map.
    fn map(&mut self, depth: usize) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        self.each_member(depth, |p, name| {
            let value = p.value(depth)?;
            let Entry::Vacant(slot) = map.entry(name) else {
                return None;
            };
            slot.insert(value);
            Some(())
        })?;
        Some(map)
    }

    /// A value inside a container at `depth`.
    fn value(&mut self, depth: usize) -> Option<Value> {
        Some(match self.peek()? {
            b'"' => Value::String(self.string()?.to_owned()),
            b'{' => Value::Object(self.map(depth + 1)?),
            b'[' => {
                let mut items = Vec::new();
                self.each(depth + 1, b']', |p| {
                    items.push(p.value(depth + 1)?);
                    Some(())
                })?;
                Value::Array(items)
            }
            _ => self.scalar()?,
        })
    }

    /// A value inside a container at `depth`, checked and passed over without building anything. Objects
    /// nested inside one with more than [`SKIPPED_OBJECT_MEMBERS`] members are declined: their names are
    /// compared on the stack.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                let mut seen = SeenNames::<SKIPPED_OBJECT_MEMBERS>::new(self.text);
                self.each_member(depth + 1, |p, name| {
                    seen.insert(name)?;
                    p.skip_value(depth + 1)
                })
            }
            b'[' => self.each(depth + 1, b']', |p| p.skip_value(depth + 1)),
            _ => {
                self.pos += scalar_len(self.text.get(self.pos..)?)?;
                Some(())
            }
        }
    }

    /// `true`, `false`, `null` or an integer.
    fn scalar(&mut self) -> Option<Value> {
        let rest = self.text.get(self.pos..)?;
        let text = rest.get(..scalar_len(rest)?)?;
        self.pos += text.len();
        Some(match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            // At most 18 digits: no overflow.
            digits => Value::from(digits.bytes().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))),
        })
    }

    /// A string whose `"` is next, with no escapes and no control characters: its contents.
    fn string(&mut self) -> Option<&'a str> {
        let text = self.text;
        let (contents, after) = plain_string(text.get(self.pos..)?)?;
        self.pos = text.len() - after.len();
        Some(contents)
    }
}

/// Most members an object nested in a document that [`scan_object`] reads may have; larger ones go to
/// serde_json.
const SKIPPED_OBJECT_MEMBERS: usize = 16;

/// Most top-level members [`scan_object`] lists; larger documents go to serde_json.
const SCANNED_MEMBERS: usize = 64;

/// Whether `text` is an object that [`parse_object`]'s plain reader would read itself, checked exactly as that
/// reader checks it (repeated names at any depth, nesting, the JSON subset) without building anything: `member`
/// is called with each top-level name and the byte range of its value. `false` leaves the document to
/// [`parse_object`], whatever `member` was told.
///
/// The values are JSON text of the plain subset: strings without escapes, non-negative integers, literals, and
/// arrays and objects of those; [`plain_items`] splits an array of them.
pub(crate) fn scan_object(text: &str, max_depth: usize, mut member: impl FnMut(&str, Range<usize>)) -> bool {
    let Some(mut p) = Plain::start(text, max_depth) else {
        return false;
    };
    let mut seen = SeenNames::<SCANNED_MEMBERS>::new(text);
    p.each_member(1, |p, name| {
        seen.insert(name)?;
        let start = p.pos;
        // Most claims are strings or integers: those are read here, in the loop, rather than through the
        // recursive reader's call (about 1 % of an HS256 verification).
        match p.peek()? {
            b'"' => p.string().map(drop)?,
            b'0'..=b'9' => p.pos += plain_integer(p.text.get(start..)?)?.len(),
            _ => p.skip_value(1)?,
        }
        member(name, start..p.pos);
        Some(())
    })
    .is_some()
        && p.finish()
}

/// The member names of one object so far, to refuse a repeat. A 64-bit filter answers most names without a
/// comparison; most claim names are three bytes long, so it mixes the first two bytes and the last. Names are
/// kept as 32-bit offsets into the document, which need no initialising beyond zeroes, with 16 bits of the mix:
/// when the filter says "maybe", only a name with the same mix is compared byte by byte.
struct SeenNames<'a, const N: usize> {
    text: &'a str,
    names: [Seen; N],
    count: usize,
    filter: u64,
}

#[derive(Clone, Copy)]
struct Seen {
    at: u32,
    len: u16,
    mix: u16,
}

impl<'a, const N: usize> SeenNames<'a, N> {
    fn new(text: &'a str) -> Self {
        SeenNames { text, names: [Seen { at: 0, len: 0, mix: 0 }; N], count: 0, filter: 0 }
    }

    /// Records `name`, a slice of the document; `None` if it was seen before, or if there is no room for it.
    fn insert(&mut self, name: &'a str) -> Option<()> {
        let b = name.as_bytes();
        let byte = |i: usize| u32::from(b.get(i).copied().unwrap_or(0));
        let mixed = ((b.len() as u32).wrapping_mul(0x9e37_79b9)
            ^ byte(0)
            ^ (byte(1) << 7)
            ^ (byte(b.len().wrapping_sub(1)) << 13))
            .wrapping_mul(0x2545_f491);
        let bit = 1u64 << (mixed >> 26);
        let mix = mixed as u16;
        let text = self.text;
        if self.filter & bit != 0
            && self.names.get(..self.count)?.iter().any(|seen| {
                seen.mix == mix && text.get(seen.at as usize..seen.at as usize + usize::from(seen.len)) == Some(name)
            })
        {
            return None;
        }
        let at = (name.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        *self.names.get_mut(self.count)? =
            Seen { at: u32::try_from(at).ok()?, len: u16::try_from(name.len()).ok()?, mix };
        self.count += 1;
        self.filter |= bit;
        Some(())
    }
}

/// The items of `array`, the JSON text of an array that [`scan_object`] passed (anything else gives
/// nothing useful, but never panics): each item's JSON text, without surrounding whitespace.
pub(crate) fn plain_items(array: &str) -> PlainItems<'_> {
    PlainItems { rest: array.trim().strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or("") }
}

/// See [`plain_items`].
#[derive(Debug, Clone)]
pub struct PlainItems<'a> {
    rest: &'a str,
}

impl<'a> Iterator for PlainItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.trim().is_empty() {
            return None;
        }
        // Strings carry no escapes, so a quote always opens or closes one, and no bracket or comma inside one
        // counts.
        let (mut depth, mut quoted) = (0usize, false);
        let end = self
            .rest
            .bytes()
            .position(|b| match b {
                b'"' => {
                    quoted = !quoted;
                    false
                }
                b'[' | b'{' if !quoted => {
                    depth += 1;
                    false
                }
                b']' | b'}' if !quoted => {
                    depth = depth.saturating_sub(1);
                    false
                }
                b',' => !quoted && depth == 0,
                _ => false,
            })
            .unwrap_or(self.rest.len());
        let (item, after) = self.rest.split_at_checked(end)?;
        self.rest = after.get(1..).unwrap_or("");
        Some(item.trim())
    }
}

/// The length of the `true`, `false`, `null` or plain integer at the start of `text`.
fn scalar_len(text: &str) -> Option<usize> {
    match text.as_bytes().first()? {
        b't' => text.starts_with("true").then_some(4),
        b'f' => text.starts_with("false").then_some(5),
        b'n' => text.starts_with("null").then_some(4),
        b'0'..=b'9' => plain_integer(text).map(str::len),
        _ => None,
    }
}

/// At the start of `text`, the digits of an integer in the plain subset: no sign, fraction or exponent, no
/// leading zero, and few enough to fit a u64.
fn plain_integer(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut len = 0;
    while len < bytes.len() && bytes[len].is_ascii_digit() {
        len += 1;
    }
    let leading_zero = len > 1 && bytes[0] == b'0';
    if len == 0 || len > 18 || leading_zero || matches!(bytes.get(len), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    text.get(..len)
}

/// At the start of `text`, a JSON string with neither escapes nor control characters: its contents and the
/// text after it. `None` for anything else, including a string that needs unescaping.
// Inlined into the reader: it runs for every name and string of a payload, and the call was ~1 % of an HS256
// verification.
#[inline]
pub(crate) fn plain_string(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('"')?;
    let (contents, after) = rest.split_at_checked(plain_run(rest.as_bytes()))?;
    Some((contents, after.strip_prefix('"')?))
}

/// How many bytes at the start of `bytes` a string can hold as they are: none is `"`, `\` or a control
/// character. Eight at a time, as most of the bytes of a token's payload are in its strings.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    let mut done = 0;
    while let Some(word) = bytes.get(done..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*word);
        let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
        // The classic zero-byte test, three times; a borrow can only flag bytes after a real hit, and the
        // first hit is the lowest bit on this little-endian load.
        let stop = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGHS;
        if stop != 0 {
            return done + stop.trailing_zeros() as usize / 8;
        }
        done += 8;
    }
    let tail = bytes.get(done..).unwrap_or_default();
    done + tail.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(tail.len())
}

// serde errors are strings by the time they come back; our own two are recognised by their exact text.
const DUPLICATE: &str = "agent-iam: duplicate member";
const TOO_DEEP: &str = "agent-iam: too deep";

fn classify(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    if text.starts_with(DUPLICATE) {
        JsonError::DuplicateMember
    } else if text.starts_with(TOO_DEEP) {
        JsonError::TooDeep
    } else {
        JsonError::Syntax
    }
}

/// Reads one value with these rules, `depth` levels inside a document nested at most `max_depth` deep: a seed
/// for parsers that read some members themselves and the rest as [`Value`]s (the JOSE header).
#[derive(Clone, Copy)]
pub(crate) struct StrictValue {
    depth: usize,
    max_depth: usize,
}

impl StrictValue {
    pub(crate) fn new(depth: usize, max_depth: usize) -> StrictValue {
        StrictValue { depth, max_depth }
    }

    fn nested<E: de::Error>(self) -> Result<StrictValue, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(StrictValue { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Entry::Vacant(slot) = out.entry(key) else {
                return Err(de::Error::custom(DUPLICATE));
            };
            slot.insert(map.next_value_seed(inner)?);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_objects() {
        let m = parse_object(br#"{"a":1,"b":[true,null,"x"],"c":{"d":-2.5}}"#, 4).unwrap();
        assert_eq!(m["a"], 1);
        assert_eq!(m["c"]["d"], -2.5);
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert_eq!(parse_object(br#"{"a":1,"a":2}"#, 4), Err(JsonError::DuplicateMember));
        assert_eq!(parse_object(br#"{"x":{"a":1,"a":1}}"#, 4), Err(JsonError::DuplicateMember));
    }

    #[test]
    fn caps_depth_without_recursing_further() {
        assert!(parse_object(br#"{"a":{"b":{}}}"#, 3).is_ok());
        assert_eq!(parse_object(br#"{"a":{"b":{"c":{}}}}"#, 3), Err(JsonError::TooDeep));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_object(deep.as_bytes(), 32), Err(JsonError::TooDeep));
    }

    /// `parse_object` answers exactly as serde_json alone does, whichever reader decided; the scanner takes
    /// exactly what the plain reader takes (these documents are all small), and lists its members.
    fn assert_agrees(text: &[u8]) {
        for depth in [0, 1, 2, 3, 32] {
            let shown = String::from_utf8_lossy(text);
            assert_eq!(parse_object(text, depth), parse_object_with_serde(text, depth), "{shown} at {depth}");
            let scanned = std::str::from_utf8(text).ok().and_then(|t| scan(t, depth));
            assert_eq!(scanned.is_some(), Plain::object(text, depth).is_some(), "{shown} at {depth}");
            if let Some(members) = scanned {
                assert_eq!(Ok(members_map(&members)), parse_object_with_serde(text, depth), "{shown}");
            }
        }
    }

    /// What [`scan_object`] reports: each top-level name and its value's text, or `None` if it declines.
    fn scan(text: &str, depth: usize) -> Option<Vec<(String, &str)>> {
        let mut members = Vec::new();
        let plain = scan_object(text, depth, |name, value| members.push((name.to_owned(), &text[value])));
        plain.then_some(members)
    }

    /// A scanned document's members, each value parsed on its own.
    fn members_map(members: &[(String, &str)]) -> Map<String, Value> {
        let map: Map<String, Value> =
            members.iter().map(|(name, value)| (name.clone(), parse_value(value.as_bytes(), 32).unwrap())).collect();
        assert_eq!(map.len(), members.len());
        map
    }

    #[test]
    fn the_scanner_declines_what_it_cannot_check_on_the_stack() {
        let members = |n: usize| (0..n).map(|i| format!("\"m{i}\":{i}")).collect::<Vec<_>>().join(",");
        let top = |n: usize| format!("{{{}}}", members(n));
        let nested = |n: usize| format!("{{\"x\":[{{{}}}]}}", members(n));
        assert!(scan(&top(SCANNED_MEMBERS), 32).is_some());
        assert!(scan(&top(SCANNED_MEMBERS + 1), 32).is_none());
        assert!(scan(&nested(SKIPPED_OBJECT_MEMBERS), 32).is_some());
        assert!(scan(&nested(SKIPPED_OBJECT_MEMBERS + 1), 32).is_none());
        for text in [top(SCANNED_MEMBERS + 1), nested(SKIPPED_OBJECT_MEMBERS + 1)] {
            assert!(parse_object(text.as_bytes(), 32).is_ok());
        }
    }

    #[test]
    fn names_alike_to_the_filter_are_compared_byte_by_byte() {
        // `abcd` and `abzd` share their length and first two and last bytes: one filter bit and one mix.
        // `iat` and `sub` share a filter bit only.
        for (a, b) in [("abcd", "abzd"), ("iat", "sub")] {
            assert!(scan(&format!(r#"{{"{a}":1,"{b}":2}}"#), 4).is_some(), "{a} {b}");
            assert!(scan(&format!(r#"{{"{a}":1,"{b}":2,"{a}":3}}"#), 4).is_none(), "{a} {b}");
            assert!(scan(&format!(r#"{{"{a}":1,"{b}":2,"{b}":3}}"#), 4).is_none(), "{a} {b}");
            assert!(scan(&format!(r#"{{"x":{{"{a}":1,"{b}":2}}}}"#), 4).is_some(), "{a} {b}");
            assert!(scan(&format!(r#"{{"x":{{"{a}":1,"{b}":2,"{a}":3}}}}"#), 4).is_none(), "{a} {b}");
        }
    }

    #[test]
    fn plain_items_split_arrays_at_their_own_commas() {
        fn items(t: &str) -> Vec<&str> {
            plain_items(t).collect()
        }
        assert_eq!(items("[]"), Vec::<&str>::new());
        assert_eq!(items(" [ ] "), Vec::<&str>::new());
        assert_eq!(items(r#"["a",1]"#), ["\"a\"", "1"]);
        assert_eq!(items(r#"[ "a,b" , [1,2] , {"k":"]"} ]"#), ["\"a,b\"", "[1,2]", r#"{"k":"]"}"#]);
        assert_eq!(items(r#"[[],{},"[{"]"#), ["[]", "{}", "\"[{\""]);
        // Not an array: nothing, and no panic.
        assert_eq!(items("1"), Vec::<&str>::new());
        assert_eq!(items(""), Vec::<&str>::new());
    }

    #[test]
    fn the_plain_reader_agrees_with_serde_json() {
        for text in [
            &b"{}"[..],
            b" {} ",
            b"\t{\r\n\"a\" : [ 1 , true ] }\n",
            br#"{"a":0}"#,
            br#"{"a":00}"#,
            br#"{"a":01}"#,
            br#"{"a":-0}"#,
            br#"{"a":-1}"#,
            br#"{"a":+1}"#,
            br#"{"a":1.0}"#,
            br#"{"a":1.}"#,
            br#"{"a":.5}"#,
            br#"{"a":1e3}"#,
            br#"{"a":1E3}"#,
            br#"{"a":1e400}"#,
            br#"{"a":123456789012345678}"#,
            br#"{"a":999999999999999999}"#,
            br#"{"a":1234567890123456789}"#,
            br#"{"a":18446744073709551615}"#,
            br#"{"a":18446744073709551616}"#,
            br#"{"a":99999999999999999999999}"#,
            br#"{"a":1x}"#,
            br#"{"a":1 }"#,
            br#"{"a":true}"#,
            br#"{"a":false}"#,
            br#"{"a":null}"#,
            br#"{"a":tru}"#,
            br#"{"a":truex}"#,
            br#"{"a":nul}"#,
            br#"{"a":"x"}"#,
            br#"{"a":""}"#,
            br#"{"":""}"#,
            br#"{"a":"\""}"#,
            br#"{"a":"\u0041"}"#,
            br#"{"a":"\ud800"}"#,
            "{\"a\":\"\u{fc}\u{2028}\u{10ffff}\"}".as_bytes(),
            b"{\"a\":\"\x7f\"}",
            b"{\"a\":\"\x1f\"}",
            b"{\"a\":\"\t\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"\xff\":1}",
            b"{\"a\":1,\"b\":\xff}",
            b"\xef\xbb\xbf{}",
            br#"{"a":"x}"#,
            br#"{"a" "x"}"#,
            br#"{"a":}"#,
            br#"{"a"}"#,
            br#"{a:1}"#,
            br#"{"a":1,}"#,
            br#"{,"a":1}"#,
            br#"{"a":1,,"b":2}"#,
            br#"{"a":1}}"#,
            br#"{"a":1}x"#,
            br#"{"a":1}{}"#,
            br#"{"a":1"#,
            br#"{"a":[]}"#,
            br#"{"a":[1,2,]}"#,
            br#"{"a":[,]}"#,
            br#"{"a":[1 2]}"#,
            br#"{"a":[1,{"b":[null,"c"]}]}"#,
            br#"{"a":[[[[]]]]}"#,
            br#"{"a":{"b":{}}}"#,
            br#"{"a":{"b":{"c":[]}}}"#,
            br#"{"a":1,"a":1}"#,
            br#"{"a":1,"\u0061":2}"#,
            br#"{"a":{"b":1,"b":2}}"#,
            br#"{"a":[{"b":1,"b":2}]}"#,
            b"[]",
            b"[{}]",
            b"1",
            br#""a""#,
            b"",
            b" ",
        ] {
            assert_agrees(text);
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_agrees(deep.as_bytes());
    }

    #[test]
    fn the_plain_reader_takes_what_tokens_carry_and_declines_the_rest() {
        let claims =
            br#"{"iss":"https://i","aud":["a","b"],"exp":1900000000,"t":true,"f":false,"n":null,"act":{"sub":"x"}}"#;
        assert_eq!(Plain::object(claims, 32), parse_object_with_serde(claims, 32).ok());
        assert_eq!(Plain::object(claims, 1), None);
        for declined in [
            &br#"{"a":"\n"}"#[..],
            br#"{"a":-1}"#,
            br#"{"a":1.5}"#,
            br#"{"a":1e3}"#,
            br#"{"a":1234567890123456789}"#,
            br#"{"a":01}"#,
            br#"{"a":1,"a":1}"#,
            br#"{"a":1} x"#,
            b"{\"a\":\"\xff\"}",
            b"[]",
        ] {
            assert_eq!(Plain::object(declined, 32), None, "{}", String::from_utf8_lossy(declined));
        }
    }

    #[test]
    fn the_plain_reader_leaves_deep_documents_to_serde_json() {
        // Past serde_json's recursion limit the answer is serde_json's refusal, whatever depth is allowed.
        for levels in [PLAIN_MAX_DEPTH, PLAIN_MAX_DEPTH + 1, 127, 128, 200] {
            let text = format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels));
            assert_eq!(Plain::object(text.as_bytes(), usize::MAX).is_some(), levels <= PLAIN_MAX_DEPTH);
            assert_eq!(parse_object(text.as_bytes(), usize::MAX), parse_object_with_serde(text.as_bytes(), usize::MAX));
        }
        let text = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse_object(text.as_bytes(), 1000), Err(JsonError::Syntax));
    }

    #[test]
    fn plain_strings() {
        assert_eq!(plain_string(r#""abc",x"#), Some(("abc", ",x")));
        assert_eq!(plain_string(r#""""#), Some(("", "")));
        assert_eq!(plain_string("\"é\u{7f}\""), Some(("é\u{7f}", "")));
        for declined in ["abc", r#""abc"#, r#""a\"b""#, "\"a\nb\"", "\"a\u{0}b\"", "", "\""] {
            assert_eq!(plain_string(declined), None, "{declined:?}");
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_byte_a_string_cannot_hold_as_it_is() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(b.len());
        // Every stop byte at every position of the first three words, behind every kind of byte that is not one
        // (including those the word tests could confuse: 0x20, 0x7f, 0x80, 0xa0, 0xff), and a second stop after.
        for len in 0..26 {
            for filler in [b'a', b' ', 0x7f, 0x80, 0xa0, 0xff, b'#', b']'] {
                for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    for at in 0..=len {
                        let mut bytes = vec![filler; len];
                        if at < len {
                            bytes[at] = stop;
                            if at + 3 < len {
                                bytes[at + 3] = 0x01;
                            }
                        }
                        assert_eq!(plain_run(&bytes), naive(&bytes), "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bom_invalid_utf8_trailing_data_and_non_objects() {
        assert_eq!(parse_object(b"\xef\xbb\xbf{}", 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}", 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":"\ud800"}"#, 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{} {}", 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"[1]", 4), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"1e400", 4), Err(JsonError::Syntax));
    }
}
