//! The small JSON writer audit events are built with: members appended to a `String` in a fixed order, strings
//! escaped as RFC 8259 requires (every control character, `"` and `\`). An event is one line: a newline in a
//! client-sent value is written `\n`, never raw, so no one can add a line to the audit log.

use std::fmt::Write;

/// Whether any byte of `s` needs an escape: eight bytes at a time (most values need none).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    let (words, rest) = s.as_chunks::<8>();
    let hit = |x: u64| {
        let (quote, backslash, del) = (x ^ (ONES * 0x22), x ^ (ONES * 0x5c), x ^ (ONES * 0x7f));
        ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (del.wrapping_sub(ONES) & !del)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGHS
            != 0
    };
    words.iter().any(|w| hit(u64::from_le_bytes(*w)))
        || rest.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
}

/// Appends `s` as a JSON string.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Appends `"name":` (names are the writer's own constants: never escaped).
pub fn name(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// Appends `"name":"value"` with the value escaped, preceded by a comma.
pub fn member_str(out: &mut String, key: &str, value: &str) {
    out.push(',');
    name(out, key);
    string(out, value);
}

/// Appends `"name":<integer>`, preceded by a comma.
pub fn member_int(out: &mut String, key: &str, value: impl std::fmt::Display) {
    out.push(',');
    name(out, key);
    let _ = write!(out, "{value}");
}

/// Appends `"name":true|false`, preceded by a comma.
pub fn member_bool(out: &mut String, key: &str, value: bool) {
    out.push(',');
    name(out, key);
    out.push_str(if value { "true" } else { "false" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_stay_on_one_line() {
        for s in
            ["plain", "quote \" and \\ slash", "line\nbreak\r\ttab", "\u{0}\u{1f}\u{7f}", "caf\u{e9} \u{1F600}", ""]
        {
            let mut out = String::new();
            string(&mut out, s);
            assert!(!out.contains('\n') && !out.contains('\r'), "{out}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    proptest::proptest! {
        #[test]
        fn the_fast_check_finds_every_byte_that_needs_an_escape(s in "(\\PC|[\u{0}-\u{1f}\u{7f}\"\\\\]){0,40}") {
            let naive = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f);
            proptest::prop_assert_eq!(needs_escape(s.as_bytes()), naive);
            let mut out = String::new();
            string(&mut out, &s);
            proptest::prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
