//! The small JSON writer audit events are built with: members appended to a `String` in a fixed order, strings
//! escaped as RFC 8259 requires (every control character, `"` and `\`). An event is one line: a newline in a
//! client-sent value is written `\n`, never raw, so no one can add a line to the audit log.

/// Whether any byte of `s` needs an escape: eight bytes at a time (most values need none), the last few
/// bytes of a string as one more word, overlapping the one before (values are short: a byte at a time, the
/// tail was most of the check).
pub fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    // A byte is zero in `v` when `(v - 1) & !v` has its high bit; `quote`, `backslash` and `del` differ from `x`
    // only below the high bit, so one `!x` serves the three, and `x - 0x20` with it finds the bytes below 0x20.
    let hit = |x: u64| {
        let (quote, backslash, del) = (x ^ (ONES * 0x22), x ^ (ONES * 0x5c), x ^ (ONES * 0x7f));
        (quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES) | del.wrapping_sub(ONES) | x.wrapping_sub(ONES * 0x20))
            & !x
            & HIGHS
            != 0
    };
    let u32_at = |chunk: Option<&[u8; 4]>| u64::from(u32::from_le_bytes(chunk.copied().unwrap_or([b' '; 4])));
    match s.len() {
        0 => false,
        // Every byte, some twice, padded with spaces (which need no escape).
        1..=3 => {
            let byte = |i: usize| s.get(i).copied().unwrap_or(b' ');
            hit(u64::from_le_bytes([byte(0), byte(s.len() / 2), byte(s.len() - 1), b' ', b' ', b' ', b' ', b' ']))
        }
        4..=7 => hit(u32_at(s.first_chunk::<4>()) | (u32_at(s.last_chunk::<4>()) << 32)),
        _ => {
            let (words, _) = s.as_chunks::<8>();
            words.iter().any(|w| hit(u64::from_le_bytes(*w)))
                || s.last_chunk::<8>().is_some_and(|w| hit(u64::from_le_bytes(*w)))
        }
    }
}

/// Appends `s` as a JSON string.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    contents(out, s);
    out.push('"');
}

/// Appends `s` escaped, without the quotes.
pub fn contents(out: &mut String, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
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
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

/// Appends `name_open` and `value` as the rest of a JSON string: `name_open` is the writer's own constant up to
/// and including the value's opening quote (`,"name":"`), never escaped.
pub fn member(out: &mut String, name_open: &str, value: &str) {
    out.push_str(name_open);
    contents(out, value);
    out.push('"');
}

/// Appends the decimal digits of `n`.
pub fn uint(out: &mut String, n: u64) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut n = n;
    // The .wasm has no 64-bit multiply-high: a 64-bit division by a constant is a real division, a 32-bit one a
    // multiplication. So eight digits at a time while `n` has more than 32 bits (a time in milliseconds: once),
    // then 32-bit arithmetic.
    while n > u64::from(u32::MAX) {
        let low = (n % 100_000_000) as u32;
        n /= 100_000_000;
        digits_before(&mut digits, &mut at, low, 8);
    }
    digits_before(&mut digits, &mut at, n as u32, 1);
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// Writes `m`'s decimal digits into `digits` before `at`, at least `min` of them (`digits` holds `0`s), and
/// moves `at` to the first.
fn digits_before(digits: &mut [u8; 20], at: &mut usize, mut m: u32, min: usize) {
    const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839\
                                4041424344454647484950515253545556575859606162636465666768697071727374757677787980\
                                81828384858687888990919293949596979899";
    let end = *at;
    let mut pair = |at: &mut usize, p: u32| {
        let p = p as usize * 2;
        *at = at.saturating_sub(2);
        if let (Some(d), Some(p)) = (digits.get_mut(*at..*at + 2), PAIRS.get(p..p + 2)) {
            d.copy_from_slice(p);
        }
    };
    while m >= 100 {
        pair(at, m % 100);
        m /= 100;
    }
    if m >= 10 {
        pair(at, m);
    } else if m > 0 {
        *at = at.saturating_sub(1);
        if let Some(d) = digits.get_mut(*at) {
            *d = b'0' + m as u8;
        }
    }
    *at = (*at).min(end.saturating_sub(min));
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

    #[test]
    fn every_length_and_position_of_a_byte_that_needs_an_escape_is_found() {
        // High bytes close to the ones that need an escape (0x22, 0x5c, 0x7f and below 0x20, with 0x80 set)
        // need none.
        for fill in [b'a', 0x80, 0xa2, 0xdc, 0xff, 0x9f, 0x20] {
            for len in 0..=24 {
                let clean = vec![fill; len];
                assert!(!needs_escape(&clean), "{fill:#x} * {len}");
                for at in 0..len {
                    for bad in [0, 0x0a, 0x1f, b'"', b'\\', 0x7f] {
                        let mut s = clean.clone();
                        s[at] = bad;
                        assert!(needs_escape(&s), "{fill:#x} * {len}, {bad:#x} at {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        let mut samples =
            vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 65_535, 1_900_000_000_000, u64::MAX, u64::MAX - 1];
        samples.extend((0..64).map(|i| 1u64 << i));
        samples.extend((1..20).map(|i| 10u64.pow(i) - 1));
        samples.extend((1..20).map(|i| 10u64.pow(i)));
        for n in samples {
            let mut out = String::from("x");
            uint(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_integer_is_written_as_display_writes_it(n: u64) {
            let mut out = String::new();
            uint(&mut out, n);
            proptest::prop_assert_eq!(out, n.to_string());
        }

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
