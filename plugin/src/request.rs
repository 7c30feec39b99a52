//! The request as policy sees it: method, canonical path, host. Canonicalised before any rule looks at it,
//! so that `//admin`, `/a/../admin` and `/%2e%2e/admin` are all `/admin` (CVE-2019-9901, CVE-2021-31920), and
//! encodings that different components would read differently are refused outright (CVE-2021-29492).

use std::borrow::Cow;
use std::fmt;

/// Why a request cannot be evaluated; answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// No `:method`.
    MissingMethod,
    /// A method that is not an HTTP token, or CONNECT (a tunnel has no path to authorise).
    UnsupportedMethod,
    /// No `:path`, or one that is not origin-form (`/...`).
    MissingPath,
    /// `%2F`, `%5C`, `%00`, `%23`, a backslash or a fragment: bytes different parsers disagree on.
    AmbiguousPath,
    /// Control characters, non-ASCII, or a broken percent escape.
    InvalidPath,
    /// A `:authority` that is not a host name or address.
    InvalidHost,
}

impl RequestError {
    /// Stable label for metrics and response details.
    pub fn label(&self) -> &'static str {
        match self {
            RequestError::MissingMethod => "missing_method",
            RequestError::UnsupportedMethod => "unsupported_method",
            RequestError::MissingPath => "missing_path",
            RequestError::AmbiguousPath => "ambiguous_path",
            RequestError::InvalidPath => "invalid_path",
            RequestError::InvalidHost => "invalid_host",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::MissingMethod => "request has no method",
            RequestError::UnsupportedMethod => "request method is not supported",
            RequestError::MissingPath => "request has no origin-form path",
            RequestError::AmbiguousPath => "request path contains an ambiguous encoding",
            RequestError::InvalidPath => "request path is malformed",
            RequestError::InvalidHost => "request host is malformed",
        })
    }
}

/// HTTP method, upper-cased: methods are case-sensitive on the wire, but a rule written for `DELETE` must
/// not be bypassed by `delete` reaching a lenient upstream.
pub fn canonical_method(raw: &str) -> Result<Cow<'_, str>, RequestError> {
    if raw.is_empty() {
        return Err(RequestError::MissingMethod);
    }
    if !raw.bytes().all(is_tchar) {
        return Err(RequestError::UnsupportedMethod);
    }
    if raw.eq_ignore_ascii_case("CONNECT") {
        return Err(RequestError::UnsupportedMethod);
    }
    // Nearly every method arrives upper-case already: no copy then.
    Ok(if raw.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(raw.to_ascii_uppercase())
    } else {
        Cow::Borrowed(raw)
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The canonical path (without the query) and the raw query string.
///
/// Steps: split off the query; refuse fragments, backslashes, controls and non-ASCII; decode percent-encoded
/// unreserved characters and upper-case the hex of the rest; refuse `%2F`, `%5C`, `%00`, `%23`; merge
/// slashes; resolve `.` and `..` (never above the root).
pub fn canonical_path(raw: &str) -> Result<(Cow<'_, str>, Option<&str>), RequestError> {
    // One pass for both: `str` pattern searches cost more to set up than a path takes to scan.
    let (mut question, mut fragment) = (None, false);
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'?' if question.is_none() => question = Some(i),
            b'#' => fragment = true,
            _ => {}
        }
    }
    let (path, query) = match question.and_then(|q| raw.split_at_checked(q)) {
        Some((p, q)) => (p, q.strip_prefix('?')),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(RequestError::MissingPath);
    }
    if fragment {
        return Err(RequestError::AmbiguousPath);
    }
    if query.is_some_and(|q| q.bytes().any(|b| !(0x21..0x7f).contains(&b))) {
        return Err(RequestError::InvalidPath);
    }
    if is_canonical(path) {
        return Ok((Cow::Borrowed(path), query));
    }
    let decoded = decode_path(path.as_bytes())?;
    // `..;x` is a literal segment to us but `..` to servers that strip path parameters (Tomcat, Spring,
    // Jetty): a dot segment with parameters is read differently by different parsers, so it is refused.
    if decoded
        .split('/')
        .any(|segment| matches!(segment.split(';').next(), Some(".") | Some("..")) && segment.contains(';'))
    {
        return Err(RequestError::AmbiguousPath);
    }
    Ok((Cow::Owned(remove_dot_segments(&decoded)), query))
}

/// The common case, checked in one pass: visible ASCII without `%` or `\\`, no empty segment, no segment
/// starting with `.` (so no dot segment and no `..;`). Such a path is its own canonical form.
fn is_canonical(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() == Some(&b'/')
        && b.iter().all(|&c| (0x21..0x7f).contains(&c) && c != b'%' && c != b'\\')
        && !b.windows(2).any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_path(path: &[u8]) -> Result<String, RequestError> {
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'\\' => return Err(RequestError::AmbiguousPath),
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (path.get(i + 1).copied().and_then(hex), path.get(i + 2).copied().and_then(hex))
                else {
                    return Err(RequestError::InvalidPath);
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' | 0 | b'#' => return Err(RequestError::AmbiguousPath),
                    _ if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => out.push(char::from(byte)),
                    _ => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(hi)]));
                        out.push(char::from(HEX[usize::from(lo)]));
                    }
                }
                i += 3;
            }
            0x21..=0x7e => {
                out.push(char::from(b));
                i += 1;
            }
            _ => return Err(RequestError::InvalidPath),
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 over `/`-separated segments, with empty segments (repeated slashes) merged away.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.len() > 1 && (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/.."));
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push('/');
    }
    out
}

/// Host as policy sees it: lower case, no port, no trailing dot (CVE-2021-39155).
pub fn canonical_host(raw: &str) -> Result<Cow<'_, str>, RequestError> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(RequestError::InvalidHost)?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return Err(RequestError::InvalidHost);
        }
        return Ok(Cow::Owned(format!("[{}]", v6.to_ascii_lowercase())));
    } else {
        // Byte loops rather than `str` patterns: a host is a few dozen bytes and is read on every request, where
        // a pattern searcher's setup costs more than the search.
        match raw.bytes().rposition(|b| b == b':').and_then(|colon| raw.split_at_checked(colon)) {
            Some((h, port)) if port.strip_prefix(':').is_some_and(is_port) => h,
            Some(_) => return Err(RequestError::InvalidHost),
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let mut upper = false;
    for b in host.bytes() {
        match b {
            b'A'..=b'Z' => upper = true,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {}
            _ => return Err(RequestError::InvalidHost),
        }
    }
    if host.is_empty() {
        return Err(RequestError::InvalidHost);
    }
    Ok(if upper { Cow::Owned(host.to_ascii_lowercase()) } else { Cow::Borrowed(host) })
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, RequestError> {
        canonical_path(raw).map(|(p, _)| p.into_owned())
    }

    #[test]
    fn resolves_traversal_and_merges_slashes() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("//admin", "/admin"),
            ("/a/../admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/%2E%2e/admin", "/admin"),
            ("/./admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/orders/", "/orders/"),
            ("/orders/.", "/orders/"),
            ("/a/b/..", "/a/"),
            ("/", "/"),
            ("/..", "/"),
            ("/%41pi/%7euser", "/Api/~user"),
            ("/a%20b/%3a", "/a%20b/%3A"),
            ("/items;v=2/7", "/items;v=2/7"),
            ("/a/...;x", "/a/...;x"),
        ] {
            assert_eq!(path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn splits_the_query_off() {
        assert_eq!(canonical_path("/orders?symbol=ACME&x=1"), Ok(("/orders".into(), Some("symbol=ACME&x=1"))));
        assert_eq!(canonical_path("/orders?"), Ok(("/orders".into(), Some(""))));
    }

    #[test]
    fn refuses_ambiguous_encodings() {
        for raw in [
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a#frag",
            "/a%23b",
            "/a?x#y",
            "/orders/..;/admin",
            "/orders/..;x=1/admin",
            "/orders/.;/admin",
            "/orders/%2e%2e;/admin",
            "/..;",
        ] {
            assert_eq!(path(raw), Err(RequestError::AmbiguousPath), "{raw}");
        }
        for raw in ["/a%zz", "/a%2", "/a b", "/a\u{e9}", "/a\tb", "/x?a b"] {
            assert_eq!(path(raw), Err(RequestError::InvalidPath), "{raw}");
        }
        for raw in ["", "*", "admin", "http://x/admin"] {
            assert_eq!(path(raw), Err(RequestError::MissingPath), "{raw}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(canonical_method("post").as_deref(), Ok("POST"));
        assert_eq!(canonical_method("DeLeTe").as_deref(), Ok("DELETE"));
        assert_eq!(canonical_method("connect"), Err(RequestError::UnsupportedMethod));
        assert_eq!(canonical_method("GE T"), Err(RequestError::UnsupportedMethod));
        assert_eq!(canonical_method(""), Err(RequestError::MissingMethod));
    }

    #[test]
    fn hosts() {
        assert_eq!(canonical_host("API.Example.COM.:8443").as_deref(), Ok("api.example.com"));
        assert_eq!(canonical_host("api.example.com").as_deref(), Ok("api.example.com"));
        assert_eq!(canonical_host("[::1]:80").as_deref(), Ok("[::1]"));
        assert_eq!(canonical_host("a:b:c"), Err(RequestError::InvalidHost));
        assert_eq!(canonical_host("evil.com/x"), Err(RequestError::InvalidHost));
        assert_eq!(canonical_host(""), Err(RequestError::InvalidHost));
        for (raw, want) in [
            ("a:b:80", Err(RequestError::InvalidHost)),
            ("host:", Err(RequestError::InvalidHost)),
            ("host:123456", Err(RequestError::InvalidHost)),
            ("host:8a", Err(RequestError::InvalidHost)),
            (":80", Err(RequestError::InvalidHost)),
            (".", Err(RequestError::InvalidHost)),
            (".:80", Err(RequestError::InvalidHost)),
            ("h\u{e9}st", Err(RequestError::InvalidHost)),
            ("h st", Err(RequestError::InvalidHost)),
            ("Host_1.internal:65535", Ok("host_1.internal")),
            ("x:0", Ok("x")),
        ] {
            assert_eq!(canonical_host(raw).as_deref().map_err(|e| *e), want, "{raw:?}");
        }
    }

    #[test]
    fn query_and_fragment_are_found_wherever_they_are() {
        assert_eq!(canonical_path("/a?b?c").map(|(p, q)| (p.into_owned(), q)), Ok(("/a".into(), Some("b?c"))));
        assert_eq!(canonical_path("/a?").map(|(p, q)| (p.into_owned(), q)), Ok(("/a".into(), Some(""))));
        assert_eq!(canonical_path("?a"), Err(RequestError::MissingPath));
        for raw in ["/a#f", "/a?b#f", "/a?b=#", "#/a"] {
            let want = if raw.starts_with('#') { RequestError::MissingPath } else { RequestError::AmbiguousPath };
            assert_eq!(canonical_path(raw).map(|_| ()), Err(want), "{raw}");
        }
    }
}
