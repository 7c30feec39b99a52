//! The string formats of the dictionary's data types that carry a `regex`, checked by hand (the test crate has
//! no regex engine). Each follows its dictionary pattern (OCSF 1.8.0), quirks included where they are harmless.
//! `bytestring_t` is left to its base type (string_t): its pattern demands a padded final quantum, so it
//! rejects valid base64 such as `AAAA`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `None` when `value` has the format of `type_name` (or the type has no format checked here), else what was
/// expected.
pub(super) fn check(type_name: &str, value: &str) -> Option<&'static str> {
    let (ok, expected) = match type_name {
        "datetime_t" => (datetime(value), "an RFC 3339 date-time such as 2026-01-01T12:00:00.123Z"),
        "email_t" => (email(value), "an email address such as alice@example.com"),
        "ip_t" => (ip(value), "an IPv4 or IPv6 address"),
        "mac_t" => (mac(value), "a MAC address such as 18:36:F3:98:4F:9A"),
        "uuid_t" => (uuid(value), "a UUID (8-4-4-4-12 hex digits)"),
        _ => (true, ""),
    };
    (!ok).then_some(expected)
}

/// `^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?([Zz]|[\+-]\d{2}:\d{2})?$`: as in the dictionary, the
/// offset is optional and the fields are not range-checked.
fn datetime(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let byte = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    let date_time = digits(0, 4)
        && byte(4, b"-")
        && digits(5, 7)
        && byte(7, b"-")
        && digits(8, 10)
        && byte(10, b"Tt")
        && digits(11, 13)
        && byte(13, b":")
        && digits(14, 16)
        && byte(16, b":")
        && digits(17, 19);
    let Some(mut rest) = b.get(19..).filter(|_| date_time) else { return false };
    if let Some((b'.', fraction)) = rest.split_first() {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// `^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$` (`+-/` is the range `+,-./`).
fn email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else { return false };
    let local_ok =
        !local.is_empty() && local.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+,-./=?^_`{|}~".contains(&c));
    let domain_ok = domain.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    // The first label has no dot and at least one character; something follows its dot.
    let dot_ok = domain.find('.').is_some_and(|dot| dot > 0 && dot + 1 < domain.len());
    local_ok && domain_ok && dot_ok
}

/// The dictionary's pattern is the usual IPv4 | IPv6 alternation, with surrounding whitespace and an IPv6 zone
/// (`fe80::1%eth0`) allowed; std's parsers check the same addresses.
fn ip(value: &str) -> bool {
    let address = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if address.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let address = match address.split_once('%') {
        Some((address, zone)) if !zone.is_empty() => address,
        Some(_) => return false,
        None => address,
    };
    address.parse::<Ipv6Addr>().is_ok()
}

/// `^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})$`
fn mac(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| if i % 3 == 2 { matches!(c, b':' | b'-') } else { c.is_ascii_hexdigit() })
}

/// `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`. The dictionary's pattern is not
/// anchored, so the OCSF validator accepts any string that contains a UUID (`urn:uuid:…`); so do we.
fn uuid(value: &str) -> bool {
    value.as_bytes().windows(36).any(|w| {
        w.iter()
            .enumerate()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
    })
}
