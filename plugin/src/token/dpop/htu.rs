//! The target URI of a proof (`htu`), normalised for comparison as RFC 9449 §4.3 asks (RFC 3986 §6.2.2
//! syntax-based and §6.2.3 scheme-based normalisation): scheme and host in lower case, the default port
//! dropped, percent-encodings in upper case and unreserved characters decoded, dot segments removed, an empty
//! path made `/`; query and fragment are not part of it.
//!
//! The gateway's side is never built from what the client says about where it is (`Host`, `:authority`,
//! `X-Forwarded-*`): it is the configured external origin of the route followed by the request's `:path`.

/// Longest `htu` (and `:path`) compared, bytes.
pub const MAX_URI_BYTES: usize = 4096;

/// `htu` normalised, or `None` when it is not an absolute `http`/`https` URI this comparison can read (no user
/// information, no control characters or spaces, valid percent-encodings).
pub fn normalise(uri: &str) -> Option<String> {
    if uri.len() > MAX_URI_BYTES {
        return None;
    }
    let without_fragment = uri.split('#').next().unwrap_or(uri);
    let without_query = without_fragment.split('?').next().unwrap_or(without_fragment);
    let (scheme, rest) = without_query.split_once("://")?;
    let path_at = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_at);
    let mut out = origin(scheme, authority)?;
    out.push_str(&normalise_path(path)?);
    Some(out)
}

/// A configured origin (`https://api.example.com`, no path), normalised; `Err` says what is wrong with it.
pub fn normalise_origin(text: &str) -> Result<String, &'static str> {
    let (scheme, authority) =
        text.split_once("://").ok_or("must be an absolute URI such as https://api.example.com")?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#']) {
        return Err("must be an origin only: scheme, host and port, without path, query or fragment");
    }
    origin(scheme, authority).ok_or("must be an http or https origin with a host, without user information")
}

/// `scheme://authority` normalised.
fn origin(scheme: &str, authority: &str) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    if authority.is_empty() || authority.contains('@') || !authority.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // The port is after the last colon, unless that colon is inside an IPv6 literal.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let host_ok = if let Some(literal) = host.strip_prefix('[') {
        literal
            .strip_suffix(']')
            .is_some_and(|ip| !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'))
    } else {
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b))
    };
    if !host_ok {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u32 = digits.parse().ok()?;
            (n != default_port).then_some(u16::try_from(n).ok()?)
        }
        Some(_) => return None,
    };
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    Some(out)
}

/// A path without its query normalised (`/a/%7euser/../%7e` is `/a/~`); empty is `/`. Other
/// visible ASCII characters outside RFC 3986 `pchar` are percent-encoded, so that a client library that
/// encodes them and one that does not compare equal; control characters, spaces and non-ASCII are refused.
pub fn normalise_path(path: &str) -> Option<String> {
    if path.len() > MAX_URI_BYTES {
        return None;
    }
    if path.is_empty() {
        return Some("/".to_owned());
    }
    if !path.starts_with('/') {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                let c = hi << 4 | lo;
                if is_unreserved(c) {
                    decoded.push(char::from(c));
                } else {
                    decoded.push('%');
                    decoded.push(char::from(HEX[usize::from(hi)]));
                    decoded.push(char::from(HEX[usize::from(lo)]));
                }
                i += 3;
                continue;
            }
            _ if is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b) => decoded.push(char::from(b)),
            _ if b.is_ascii_graphic() => {
                decoded.push('%');
                decoded.push(char::from(HEX[usize::from(b >> 4)]));
                decoded.push(char::from(HEX[usize::from(b & 15)]));
            }
            _ => return None,
        }
        i += 1;
    }
    Some(remove_dot_segments(&decoded))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments vanish, `..` removes the one before; a path ending in
/// either ends with `/`.
fn remove_dot_segments(path: &str) -> String {
    if !path.split('/').any(|s| s == "." || s == "..") {
        return path.to_owned();
    }
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate().skip(1) {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        if i == last && (*segment == "." || *segment == "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}
