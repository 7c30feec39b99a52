//! The plugin's one hex reader and one percent-decoder, strict.
//!
//! Every place that reads hex digits or `%XX` escapes (query parameters, path parameters, credentials under
//! an encoded parameter name, the peer certificate's digest, the delegation chain's header) goes through
//! here, so they all refuse the same things: a sign (`%+4`, `%-1`, which `u8::from_str_radix` accepts), a
//! space (`% 1`), a truncated escape (`%4` at the end), and anything that is not a hex digit (`%G0`).
//! Lenient decoders disagree about exactly these inputs; a strict one cannot be read two ways.

use std::borrow::Cow;

/// The value of one hex digit (`0-9`, `a-f`, `A-F`); anything else, signs and spaces included, is `None`.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte two hex digits spell, or `None` unless both are hex digits.
pub fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(hex_digit(hi)? << 4 | hex_digit(lo)?)
}

/// The escape at `bytes[at..]` (which must start with `%`): the byte it spells, or `None` when the two bytes
/// after `%` are missing or not both hex digits.
pub fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    match bytes.get(at..at + 3)? {
        [b'%', hi, lo] => hex_byte(*hi, *lo),
        _ => None,
    }
}

/// Decodes hex text into `out`, which must be exactly half as long: `None` on any other length or a
/// non-hex character.
pub fn decode_hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (pair, byte) in hex.chunks_exact(2).zip(out.iter_mut()) {
        *byte = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

/// How `+` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plus {
    /// `+` is a space (`application/x-www-form-urlencoded`: query strings).
    Space,
    /// `+` is itself (paths).
    Literal,
}

/// Percent-decodes `raw` to UTF-8 text, strictly: `None` on a malformed escape or when the decoded bytes
/// are not UTF-8. Borrows when there is nothing to decode.
pub fn decode(raw: &str, plus: Plus) -> Option<Cow<'_, str>> {
    let bytes = raw.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || (b == b'+' && plus == Plus::Space)) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                out.push(escape_at(bytes, i)?);
                i += 3;
            }
            b'+' if plus == Plus::Space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// One `name=value` pair of a query string, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryPair<'q> {
    /// The whole pair, as sent.
    pub raw: &'q str,
    /// The name, still encoded.
    pub name: &'q str,
    /// The value, still encoded (`""` for a pair without `=`).
    pub value: &'q str,
}

impl<'q> QueryPair<'q> {
    /// The decoded name (`+` as space), `None` when it is malformed.
    pub fn decoded_name(&self) -> Option<Cow<'q, str>> {
        decode(self.name, Plus::Space)
    }
}

/// The non-empty `&`-separated pairs of a query string.
pub fn query_pairs(query: &str) -> impl Iterator<Item = QueryPair<'_>> {
    query.split('&').filter(|p| !p.is_empty()).map(|raw| {
        let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
        QueryPair { raw, name, value }
    })
}

/// The query without the pairs whose decoded name `drop` selects (pairs whose name does not decode are
/// kept: callers refuse such queries before they forward anything).
pub fn query_without(query: &str, mut drop: impl FnMut(&str) -> bool) -> String {
    let mut out = String::with_capacity(query.len());
    for pair in query_pairs(query) {
        if pair.decoded_name().is_some_and(|name| drop(&name)) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(pair.raw);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_are_only_hex_digits() {
        for b in 0..=255u8 {
            let want = (b as char).to_digit(16).map(|d| d as u8);
            assert_eq!(hex_digit(b), want, "{b:#04x}");
        }
        assert_eq!(hex_byte(b'4', b'1'), Some(0x41));
        assert_eq!(hex_byte(b'f', b'F'), Some(0xff));
        for (hi, lo) in [(b'+', b'4'), (b'-', b'1'), (b' ', b'1'), (b'G', b'0'), (b'0', b'g'), (b'4', 0)] {
            assert_eq!(hex_byte(hi, lo), None, "{}{}", hi as char, lo as char);
        }
    }

    #[test]
    fn the_escapes_lenient_decoders_accept_are_refused() {
        for raw in ["%+4", "%-1", "% 1", "%4", "%", "a%G0", "%0G", "%%41", "x%+f", "%\u{e9}1"] {
            assert_eq!(decode(raw, Plus::Space), None, "{raw}");
            assert_eq!(decode(raw, Plus::Literal), None, "{raw}");
        }
    }

    #[test]
    fn decodes_what_is_well_formed() {
        assert_eq!(decode("access%5Ftoken", Plus::Space).as_deref(), Some("access_token"));
        assert_eq!(decode("a+b%20c", Plus::Space).as_deref(), Some("a b c"));
        assert_eq!(decode("a+b", Plus::Literal).as_deref(), Some("a+b"));
        assert_eq!(decode("%C3%A9", Plus::Space).as_deref(), Some("\u{e9}"));
        assert_eq!(decode("%C3", Plus::Space), None, "not UTF-8 once decoded");
        assert!(matches!(decode("plain", Plus::Space), Some(Cow::Borrowed("plain"))));
    }

    #[test]
    fn hex_into_a_buffer() {
        let mut out = [0u8; 2];
        assert_eq!(decode_hex_into(b"0aFf", &mut out), Some(()));
        assert_eq!(out, [0x0a, 0xff]);
        assert_eq!(decode_hex_into(b"+a00", &mut out), None);
        assert_eq!(decode_hex_into(b"0a0", &mut out), None);
        assert_eq!(decode_hex_into(b"0a00ff", &mut out), None);
    }

    #[test]
    fn query_pairs_and_removal_read_names_decoded() {
        let pairs: Vec<_> = query_pairs("a=1&&b&c=x=y").map(|p| (p.name, p.value)).collect();
        assert_eq!(pairs, [("a", "1"), ("b", ""), ("c", "x=y")]);
        assert_eq!(query_without("x=1&access%5Ftoken=t&access_token=u&y=2", |n| n == "access_token"), "x=1&y=2");
        assert_eq!(query_without("access_token=t", |n| n == "access_token"), "");
    }
}
