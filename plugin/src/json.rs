//! Strict JSON for untrusted documents (JOSE headers, claims, JWKS).
//!
//! serde_json already rejects invalid UTF-8, a BOM, lone surrogates, trailing bytes and numbers out of range.
//! It keeps the *last* of duplicate member names, though, and two parsers that disagree on duplicates are a
//! classic token-confusion bug (RFC 8725 §3.7), so duplicates are an error here. Nesting is capped well below
//! serde_json's own recursion limit so deep input costs little and can never exhaust the stack.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};
use std::fmt;

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

impl Plain<'_> {
    fn object(bytes: &[u8], max_depth: usize) -> Option<Map<String, Value>> {
        // Valid UTF-8 throughout means any string cut at its (ASCII) quotes is valid too.
        let text = std::str::from_utf8(bytes).ok()?;
        let mut p = Plain { text, pos: 0, max_depth: max_depth.min(PLAIN_MAX_DEPTH) };
        p.skip_whitespace();
        if p.peek() != Some(b'{') {
            return None;
        }
        let map = p.map(1)?;
        p.skip_whitespace();
        (p.pos == text.len()).then_some(map)
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

    /// An object whose `{` is next, at `depth` (the top level is 1).
    fn map(&mut self, depth: usize) -> Option<Map<String, Value>> {
        if depth > self.max_depth {
            return None;
        }
        self.pos += 1;
        let mut map = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(map);
        }
        loop {
            self.skip_whitespace();
            let name = self.string()?;
            self.skip_whitespace();
            if self.next()? != b':' {
                return None;
            }
            self.skip_whitespace();
            let value = self.value(depth)?;
            let Entry::Vacant(slot) = map.entry(name) else {
                return None;
            };
            slot.insert(value);
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b'}' => return Some(map),
                _ => return None,
            }
        }
    }

    /// An array whose `[` is next, at `depth`.
    fn array(&mut self, depth: usize) -> Option<Vec<Value>> {
        if depth > self.max_depth {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some(items);
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b']' => return Some(items),
                _ => return None,
            }
        }
    }

    /// A value inside a container at `depth`.
    fn value(&mut self, depth: usize) -> Option<Value> {
        match self.peek()? {
            b'"' => self.string().map(Value::String),
            b'{' => self.map(depth + 1).map(Value::Object),
            b'[' => self.array(depth + 1).map(Value::Array),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Option<Value> {
        self.text.get(self.pos..)?.starts_with(word).then(|| {
            self.pos += word.len();
            value
        })
    }

    /// Digits with no sign, fraction or exponent, no leading zero, and few enough to fit a u64.
    fn integer(&mut self) -> Option<Value> {
        let rest = self.text.get(self.pos..)?.as_bytes();
        let len = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        let digits = rest.get(..len)?;
        if len > 18 || (len > 1 && digits.first() == Some(&b'0')) || matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let n = digits.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        self.pos += len;
        Some(Value::from(n))
    }

    /// A string whose `"` is next, with no escapes and no control characters.
    fn string(&mut self) -> Option<String> {
        let (contents, after) = plain_string(self.text.get(self.pos..)?)?;
        self.pos = self.text.len() - after.len();
        Some(contents.to_owned())
    }
}

/// At the start of `text`, a JSON string with neither escapes nor control characters: its contents and the
/// text after it. `None` for anything else, including a string that needs unescaping.
pub(crate) fn plain_string(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('"')?;
    let len = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    let (contents, after) = rest.split_at_checked(len)?;
    Some((contents, after.strip_prefix('"')?))
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

    /// `parse_object` answers exactly as serde_json alone does, whichever reader decided.
    fn assert_agrees(text: &[u8]) {
        for depth in [0, 1, 2, 3, 32] {
            let shown = String::from_utf8_lossy(text);
            assert_eq!(parse_object(text, depth), parse_object_with_serde(text, depth), "{shown} at {depth}");
        }
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
    fn rejects_bom_invalid_utf8_trailing_data_and_non_objects() {
        assert_eq!(parse_object(b"\xef\xbb\xbf{}", 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}", 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":"\ud800"}"#, 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{} {}", 4), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"[1]", 4), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"1e400", 4), Err(JsonError::Syntax));
    }
}
