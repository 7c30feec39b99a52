//! Numbers as rules compare them: exactly, never through floating point.
//!
//! A rule that ties `/accounts/{acct}` to the claim `account_id` must not let `9007199254740992` through for
//! `9007199254740993`, which are one `f64`. So every comparison is made on decimal digits:
//!
//! - request text (path and query parameters, headers) is a number only in plain decimal notation:
//!   `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, of any length. No exponent, `+`, leading zeros or spaces: `1e2`, `007`
//!   and `0x2A` are read differently by different upstreams (`parseInt("1e2")` is 1), so they are not numbers
//!   to a rule, and a test on them cannot be evaluated;
//! - a JSON integer (claims, policy literals) is exact within 64 bits, which is all `serde_json` keeps
//!   exactly;
//! - a JSON number with a fraction or an exponent is read in its shortest decimal form (`0.1` is `0.1`),
//!   and one whose magnitude reaches 2^53 cannot be compared at all: it may be an integer that lost digits.
//!
//! "Cannot be compared" is `None`: an allow rule never matches on it, a deny rule applies.

use serde_json::Number;
use std::cmp::Ordering;
use std::fmt::Write as _;

/// 2^53: from here on, a `f64` no longer holds every integer, so a JSON number parsed into one may have lost
/// digits.
const EXACT_F64_LIMIT: f64 = 9_007_199_254_740_992.0;

/// A decimal number: `-`? `int` `.` `frac`, with `int` free of leading zeros and `frac` of trailing ones
/// (zero is `int` and `frac` both empty, never negative), so that equal values have equal parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// Plain decimal notation, strictly (see the module documentation).
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (digits, None),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return None;
        }
        if let Some(frac) = frac
            && (frac.is_empty() || !all_digits(frac))
        {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.unwrap_or("").trim_end_matches('0');
        Some(Decimal { negative: negative && !(int.is_empty() && frac.is_empty()), int, frac })
    }

    fn cmp(&self, other: &Decimal<'_>) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }

    /// Digits with no leading zeros order by their count, then as text; fractions without trailing zeros
    /// order as text.
    fn cmp_magnitude(&self, other: &Decimal<'_>) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

/// A JSON number as exact decimal text, written into `buf`; `None` when it cannot be compared exactly.
fn json_text<'b>(n: &Number, buf: &'b mut String) -> Option<&'b str> {
    buf.clear();
    if let Some(i) = n.as_i64() {
        let _ = write!(buf, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(buf, "{u}");
    } else {
        let f = n.as_f64().filter(|f| f.is_finite() && f.abs() < EXACT_F64_LIMIT)?;
        // `Display` for f64 is the shortest text that reads back as the same f64, never with an exponent.
        let _ = write!(buf, "{f}");
    }
    Some(buf.as_str())
}

/// Whether a JSON number can be compared exactly (for checking policy literals when they are compiled).
pub(crate) fn is_exact(n: &Number) -> bool {
    json_text(n, &mut String::new()).is_some()
}

/// Two JSON numbers.
pub(crate) fn compare_json(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (integer(a), integer(b)) {
        return Some(x.cmp(&y));
    }
    let (mut x, mut y) = (String::new(), String::new());
    let (x, y) = (json_text(a, &mut x)?, json_text(b, &mut y)?);
    Some(Decimal::parse(x)?.cmp(&Decimal::parse(y)?))
}

/// Request text against a JSON number: `None` when the text is not plain decimal notation or the number
/// cannot be compared exactly.
pub(crate) fn compare_text_json(text: &str, n: &Number) -> Option<Ordering> {
    let text = Decimal::parse(text)?;
    let mut buf = String::new();
    let n = Decimal::parse(json_text(n, &mut buf)?)?;
    Some(text.cmp(&n))
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn num(v: serde_json::Value) -> Number {
        match v {
            serde_json::Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn integers_beyond_f64_compare_exactly() {
        let claim = num(json!(9_007_199_254_740_993u64));
        assert_eq!(compare_text_json("9007199254740992", &claim), Some(Ordering::Less));
        assert_eq!(compare_text_json("9007199254740993", &claim), Some(Ordering::Equal));
        // Near 2^62, where about a thousand neighbours share one f64.
        let big = num(json!(4_611_686_018_427_387_904u64 + 513));
        for delta in [-512i64, -1, 1, 512] {
            let text = (4_611_686_018_427_387_904i128 + 513 + i128::from(delta)).to_string();
            assert_ne!(compare_text_json(&text, &big), Some(Ordering::Equal), "{text}");
        }
        assert_eq!(compare_json(&num(json!(u64::MAX)), &num(json!(u64::MAX - 1))), Some(Ordering::Greater));
        assert_eq!(compare_json(&num(json!(i64::MIN)), &num(json!(u64::MAX))), Some(Ordering::Less));
    }

    #[test]
    fn text_of_any_length_compares_exactly() {
        let n = num(json!(18_446_744_073_709_551_615u64));
        assert_eq!(compare_text_json("18446744073709551616", &n), Some(Ordering::Greater));
        assert_eq!(compare_text_json("-18446744073709551616", &n), Some(Ordering::Less));
        let long = format!("1{}", "0".repeat(400));
        assert_eq!(compare_text_json(&long, &n), Some(Ordering::Greater));
        assert_eq!(compare_text_json(&format!("0.{}1", "0".repeat(400)), &num(json!(0))), Some(Ordering::Greater));
    }

    #[test]
    fn only_plain_decimal_text_is_a_number() {
        for text in ["0", "-0", "7", "-7", "10.5", "0.25", "-0.0", "123456789012345678901234567890"] {
            assert!(Decimal::parse(text).is_some(), "{text}");
        }
        for text in ["", "-", "+7", "007", "1e2", "1E2", "0x2A", " 7", "7 ", "1.", ".5", "1.2.3", "NaN", "inf", "--1"] {
            assert!(Decimal::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn fractions_and_zeros() {
        assert_eq!(compare_text_json("2.50", &num(json!(2.5))), Some(Ordering::Equal));
        assert_eq!(compare_text_json("0.1", &num(json!(0.1))), Some(Ordering::Equal));
        assert_eq!(compare_text_json("0.10000000000000001", &num(json!(0.1))), Some(Ordering::Greater));
        assert_eq!(compare_text_json("-0", &num(json!(0))), Some(Ordering::Equal));
        assert_eq!(compare_text_json("2.0", &num(json!(2))), Some(Ordering::Equal));
        assert_eq!(compare_text_json("-1.5", &num(json!(-1))), Some(Ordering::Less));
        assert_eq!(compare_json(&num(json!(2)), &num(json!(2.0))), Some(Ordering::Equal));
    }

    #[test]
    fn floats_that_may_have_lost_digits_are_not_compared() {
        // 2^64 + 1 does not fit 64 bits: serde_json keeps it as the f64 2^64.
        let lost: serde_json::Value = serde_json::from_str("18446744073709551617").unwrap();
        let lost = num(lost);
        assert!(!is_exact(&lost));
        assert_eq!(compare_text_json("18446744073709551616", &lost), None);
        assert_eq!(compare_json(&lost, &lost), None);
        assert!(!is_exact(&num(json!(1e300))));
        assert!(!is_exact(&num(json!(9_007_199_254_740_992.0))));
        assert!(is_exact(&num(json!(9_007_199_254_740_990.0))));
    }

    proptest! {
        /// Against i128 arithmetic, for integers across the whole range and their text.
        #[test]
        fn integers_order_as_i128(a in any::<i64>(), b in any::<u64>(), wide in any::<i128>()) {
            let (na, nb) = (num(json!(a)), num(json!(b)));
            prop_assert_eq!(compare_json(&na, &nb), Some(i128::from(a).cmp(&i128::from(b))));
            prop_assert_eq!(compare_text_json(&wide.to_string(), &na), Some(wide.cmp(&i128::from(a))));
            prop_assert_eq!(compare_text_json(&wide.to_string(), &nb), Some(wide.cmp(&i128::from(b))));
        }

        /// Decimal text with a fraction orders as the exact rational it spells (scaled to integers).
        #[test]
        fn fractions_order_as_rationals(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, scale in 0u32..4) {
            let text = |v: i64| {
                let d = 10i64.pow(scale);
                let sign = if v < 0 { "-" } else { "" };
                if scale == 0 { v.to_string() } else { format!("{sign}{}.{:0w$}", v.abs() / d, v.abs() % d, w = scale as usize) }
            };
            let (ta, tb) = (text(a), text(b));
            let (da, db) = (Decimal::parse(&ta).unwrap(), Decimal::parse(&tb).unwrap());
            prop_assert_eq!(da.cmp(&db), a.cmp(&b), "{} vs {}", ta, tb);
        }
    }
}
