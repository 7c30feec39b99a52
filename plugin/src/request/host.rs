//! The canonical host: lower case, no port, no trailing dot, only what RFC 1123 and RFC 3986 allow.

use super::RequestError;
use std::borrow::Cow;
use std::net::Ipv6Addr;

/// Host as policy sees it: lower case, no port, no trailing dot (CVE-2021-39155), and only what RFC 1123 and
/// RFC 3986 allow, so that `admin.example..`, `.admin.example` or `0x7f.1` cannot dodge a rule on
/// `admin.example` or `127.0.0.1`:
///
/// - a name: labels of 1 to 63 letters, digits, `-` and `_`, not starting or ending with `-`, 253 bytes at
///   most, one trailing dot allowed (and removed);
/// - a name whose last label is a number (`1.2.3.4`, `10.1`, `0x7f`) is an IPv4 address, which must be in
///   dotted-decimal form: four numbers 0 to 255 without leading zeros. Other forms (`127.1`, `2130706433`,
///   `0177.0.0.1`) are read as IPv4 by some software and as names by others;
/// - an IPv6 address in brackets, in its RFC 5952 form (`[0:0::1]` is `[::1]`); no zone, no IPvFuture.
pub fn canonical_host(raw: &str) -> Result<Cow<'_, str>, RequestError> {
    if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(RequestError::InvalidHost)?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return Err(RequestError::InvalidHost);
        }
        let address: Ipv6Addr = v6.parse().map_err(|_| RequestError::InvalidHost)?;
        return Ok(Cow::Owned(format!("[{address}]")));
    }
    // Byte loops rather than `str` patterns: a host is a few dozen bytes and is read on every request, where
    // a pattern searcher's setup costs more than the search.
    let host = match raw.bytes().rposition(|b| b == b':').and_then(|colon| raw.split_at_checked(colon)) {
        Some((h, port)) if port.strip_prefix(':').is_some_and(is_port) => h,
        Some(_) => return Err(RequestError::InvalidHost),
        None => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(RequestError::InvalidHost);
    }
    // One pass over the bytes without a branch per byte (a host is read on every request): each byte's class
    // is looked up and accumulated; two classes side by side catch an empty label (`..`) and a label that
    // starts or ends with `-` (`.-`, `-.`). Padding the name with a dot on each side covers its ends.
    let (mut seen, mut pairs, mut prev) = (0u8, 0u8, DOT);
    for &c in host.as_bytes() {
        let class = HOST_BYTES[usize::from(c)];
        seen |= class;
        pairs |= PAIRS[usize::from(prev & KIND | (class & KIND) << 3)];
        prev = class;
    }
    pairs |= PAIRS[usize::from(prev & KIND | DOT << 3)];
    if seen & INVALID != 0 || pairs != 0 || (host.len() > 63 && host.split('.').any(|label| label.len() > 63)) {
        return Err(RequestError::InvalidHost);
    }
    // A last label that is a number (decimal, or `0x` hex) makes the whole name an IPv4 address to URL parsers.
    let last = host.rsplit_once('.').map_or(host, |(_, last)| last);
    let numeric =
        last.bytes().all(|c| c.is_ascii_digit()) || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"));
    if numeric && !is_dotted_quad(host) {
        return Err(RequestError::InvalidHost);
    }
    Ok(if seen & UPPER != 0 { Cow::Owned(host.to_ascii_lowercase()) } else { Cow::Borrowed(host) })
}

/// Byte classes of a host name: three bits of kind, then flags.
const OTHER: u8 = 0; // a letter, digit or `_`
const DOT: u8 = 1;
const HYPHEN: u8 = 2;
const KIND: u8 = 7;
const UPPER: u8 = 1 << 6;
const INVALID: u8 = 1 << 7;

/// The class of each byte in a host name.
static HOST_BYTES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'_' => OTHER,
            b'A'..=b'Z' => OTHER | UPPER,
            b'.' => DOT,
            b'-' => HYPHEN,
            _ => INVALID,
        };
        c += 1;
    }
    t
};

/// Non-zero for two neighbouring kinds (`prev | next << 3`) that make a label empty or start or end it with
/// `-`: `..`, `.-`, `-.`.
static PAIRS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let (prev, next) = (i & 7, (i >> 3) & 7);
        let bad = (prev == DOT as usize && (next == DOT as usize || next == HYPHEN as usize))
            || (prev == HYPHEN as usize && next == DOT as usize);
        t[i] = bad as u8;
        i += 1;
    }
    t
};

/// Four decimal numbers 0 to 255, without leading zeros.
fn is_dotted_quad(host: &str) -> bool {
    let mut count = 0;
    for part in host.split('.') {
        count += 1;
        let canonical = !part.is_empty() && part.len() <= 3 && !(part.len() > 1 && part.starts_with('0'));
        if !canonical || !part.bytes().all(|c| c.is_ascii_digit()) || part.parse::<u16>().map_or(true, |n| n > 255) {
            return false;
        }
    }
    count == 4
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}
