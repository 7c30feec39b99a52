//! Strict JSON for untrusted documents (JOSE headers, claims, JWKS).
//!
//! serde_json already rejects invalid UTF-8, a BOM, lone surrogates, trailing bytes and numbers out of range.
//! It keeps the *last* of duplicate member names, though, and two parsers that disagree on duplicates are a
//! classic token-confusion bug (RFC 8725 §3.7), so duplicates are an error here. Nesting is capped well below
//! serde_json's own recursion limit so deep input costs little and can never exhaust the stack.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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

#[derive(Clone, Copy)]
struct StrictValue {
    depth: usize,
    max_depth: usize,
}

impl StrictValue {
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
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
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
