//! The request as policy sees it: method, canonical path, host. Canonicalised before any rule looks at it,
//! so that `//admin`, `/a/../admin` and `/%2e%2e/admin` are all `/admin` (CVE-2019-9901, CVE-2021-31920), and
//! encodings that different components would read differently are refused outright (CVE-2021-29492).

use crate::percent;
use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;

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
    /// A path segment with parameters (`/admin;x=1/users`), which Tomcat, Spring and Jetty strip before
    /// routing, under the default `request.path_parameters: reject`.
    PathParameters,
    /// A method override (`X-HTTP-Method-Override`, `X-Method-Override`, `X-HTTP-Method`, `_method`), under
    /// the default `request.method_override: reject`, or one that cannot be evaluated.
    MethodOverride,
    /// A query parameter name with a malformed percent escape.
    InvalidQuery,
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
            RequestError::PathParameters => "path_parameters",
            RequestError::MethodOverride => "method_override",
            RequestError::InvalidQuery => "invalid_query",
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
            RequestError::PathParameters => "request path has path parameters (;)",
            RequestError::MethodOverride => "request carries a method override",
            RequestError::InvalidQuery => "request query has a malformed parameter name",
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

/// What a request path's segment parameters (`/admin;x=1/users`, RFC 3986 §3.3) mean to the gateway.
/// Tomcat, Spring and Jetty drop `;...` from every segment before routing, so `/admin;x=1/users` is their
/// `/admin/users`: a rule on `/admin/**` must see it as that, or refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Refuse any segment with parameters (400 `path_parameters`). The default.
    #[default]
    Reject,
    /// Decide on the segments without their parameters, and forward exactly that path.
    Strip,
    /// Decide on the segments without their parameters, and forward the path with them, for upstreams that
    /// use matrix parameters.
    Keep,
}

/// What the gateway does with a method override (see [`METHOD_OVERRIDE_HEADERS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodOverride {
    /// Refuse a request that carries one (400 `method_override`). The default.
    #[default]
    Reject,
    /// Remove the headers and the query parameter before forwarding; decide on the request's own method.
    Strip,
    /// Decide under the request's method and under the override: both must be allowed (a deny under either
    /// denies). The override is forwarded as it came, since policy saw it.
    Evaluate,
}

/// A canonical request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// The path rules decide on: canonical, without segment parameters, without the query.
    pub path: Cow<'a, str>,
    /// Under [`PathParameters::Keep`], when the path has parameters: the same canonical path with them, which
    /// is what is forwarded.
    pub with_parameters: Option<String>,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
}

/// The canonical path (without the query) and the raw query string, refusing segment parameters (see
/// [`canonical_path_with`]).
pub fn canonical_path(raw: &str) -> Result<(Cow<'_, str>, Option<&str>), RequestError> {
    canonical_path_with(raw, PathParameters::Reject).map(|c| (c.path, c.query))
}

/// The canonical path and the raw query string.
///
/// Steps: split off the query; refuse fragments, backslashes, controls and non-ASCII; decode percent-encoded
/// unreserved characters and upper-case the hex of the rest; refuse `%2F`, `%5C`, `%00`, `%23`, `%3B`;
/// handle segment parameters as `parameters` says (a dot segment with parameters, `..;x`, and a segment that
/// is nothing but parameters, `/;x`, are refused in every mode); merge slashes; resolve `.` and `..` (never
/// above the root).
pub fn canonical_path_with(raw: &str, parameters: PathParameters) -> Result<CanonicalPath<'_>, RequestError> {
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
        return Ok(CanonicalPath { path: Cow::Borrowed(path), with_parameters: None, query });
    }
    let decoded = decode_path(path.as_bytes())?;
    let mut has_parameters = false;
    for segment in decoded.split('/') {
        let Some((name, _)) = segment.split_once(';') else { continue };
        // `..;x` is a literal segment to us but `..` to servers that strip parameters, and `;x` alone is an
        // empty segment to them: read differently by different parsers, so refused whatever the mode.
        if matches!(name, "" | "." | "..") {
            return Err(RequestError::AmbiguousPath);
        }
        has_parameters = true;
    }
    if !has_parameters {
        return Ok(CanonicalPath { path: Cow::Owned(remove_dot_segments(&decoded)), with_parameters: None, query });
    }
    if parameters == PathParameters::Reject {
        return Err(RequestError::PathParameters);
    }
    // No segment with parameters is empty or a dot segment, so both forms resolve the same segments.
    let stripped: Vec<&str> = decoded.split('/').map(|s| s.split_once(';').map_or(s, |(name, _)| name)).collect();
    let path = remove_dot_segments(&stripped.join("/"));
    let with_parameters = (parameters == PathParameters::Keep).then(|| remove_dot_segments(&decoded));
    Ok(CanonicalPath { path: Cow::Owned(path), with_parameters, query })
}

/// The common case, checked in one pass: visible ASCII without `%`, `\\` or `;`, no empty segment, no segment
/// starting with `.` (so no dot segment). Such a path is its own canonical form.
fn is_canonical(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() == Some(&b'/')
        && b.iter().all(|&c| (0x21..0x7f).contains(&c) && c != b'%' && c != b'\\' && c != b';')
        && !b.windows(2).any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

fn decode_path(path: &[u8]) -> Result<String, RequestError> {
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'\\' => return Err(RequestError::AmbiguousPath),
            b'%' => {
                let byte = percent::escape_at(path, i).ok_or(RequestError::InvalidPath)?;
                let (hi, lo) = (byte >> 4, byte & 15);
                match byte {
                    // `%3B` is a segment-parameter delimiter to servers that decode before they split.
                    b'/' | b'\\' | 0 | b'#' | b';' => return Err(RequestError::AmbiguousPath),
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

/// Headers through which common frameworks let a client replace the request method (Express's
/// method-override, ASP.NET Core, OData, Rails, Spring's filters). Compared case-insensitively with `_` for
/// `-`, since CGI-style upstreams read `X_HTTP_Method_Override` as the same header.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-method-override", "x-http-method"];

/// Query parameters through which frameworks let a client replace the request method: `_method` (Rails,
/// Spring's `HiddenHttpMethodFilter`, Laravel, Symfony), `_HttpMethod` (Salesforce), and the override headers'
/// names, which some APIs also accept as parameters. Compared case-insensitively, after percent-decoding.
pub const METHOD_OVERRIDE_PARAMETERS: [&str; 5] =
    ["_method", "_httpmethod", "x-http-method-override", "x-method-override", "x-http-method"];

/// Whether a decoded query parameter name is one of [`METHOD_OVERRIDE_PARAMETERS`] (any case).
pub fn is_method_override_parameter(name: &str) -> bool {
    METHOD_OVERRIDE_PARAMETERS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Whether a raw query string could carry a method override parameter: every such name contains `method` in
/// some case, once decoded, so a query without `%`, `+` or that word needs no closer look.
pub fn may_carry_method_override(query: &str) -> bool {
    let b = query.as_bytes();
    b.iter().any(|&c| c == b'%' || c == b'+') || b.windows(6).any(|w| w.eq_ignore_ascii_case(b"method"))
}

/// Whether a header name is one of [`METHOD_OVERRIDE_HEADERS`] (any case, `_` for `-`).
pub fn is_method_override_header(name: &str) -> bool {
    METHOD_OVERRIDE_HEADERS.iter().any(|h| {
        h.len() == name.len()
            && name.bytes().zip(h.bytes()).all(|(a, p)| {
                let a = a.to_ascii_lowercase();
                a == p || (a == b'_' && p == b'-')
            })
    })
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
            "/admin%3Bx=1/users",
            "/admin%3b/users",
            "/admin/;x=1/users",
            "/;/admin",
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

    fn with(raw: &str, mode: PathParameters) -> Result<(String, Option<String>), RequestError> {
        canonical_path_with(raw, mode).map(|c| (c.path.into_owned(), c.with_parameters))
    }

    #[test]
    fn path_parameters_are_refused_by_default_in_any_segment() {
        for raw in [
            "/admin;x=1/users",
            "/admin;/users",
            "/admin;jsessionid=0123",
            "/patients/42/records;x=1/2026",
            "/a/...;x",
            "/items;v=2/7",
            "/%61dmin;x/users",
            "/admin;x=1/users?q=1",
            "//admin;x",
        ] {
            assert_eq!(path(raw), Err(RequestError::PathParameters), "{raw}");
            assert_eq!(with(raw, PathParameters::Reject), Err(RequestError::PathParameters), "{raw}");
        }
        // A semicolon in the query is not a path parameter.
        assert_eq!(path("/admin?a=1;b=2"), Ok("/admin".into()));
    }

    #[test]
    fn path_parameters_stripped_are_decided_and_forwarded_without_them() {
        for (raw, want) in [
            ("/admin;x=1/users", "/admin/users"),
            ("/admin;/users", "/admin/users"),
            ("/admin;jsessionid=0123", "/admin"),
            ("/patients/42/records;x=1/2026", "/patients/42/records/2026"),
            ("/a;x/../admin;y", "/admin"),
            ("/a/b;c=d;e=f/", "/a/b/"),
        ] {
            assert_eq!(with(raw, PathParameters::Strip), Ok((want.into(), None)), "{raw}");
        }
    }

    #[test]
    fn path_parameters_kept_are_decided_without_them_and_forwarded_with_them() {
        for (raw, decided, forwarded) in [
            ("/admin;x=1/users", "/admin/users", "/admin;x=1/users"),
            ("/a;v=1/../b;w=2/./c", "/b/c", "/b;w=2/c"),
            ("/items;v=2/%37", "/items/7", "/items;v=2/7"),
        ] {
            assert_eq!(with(raw, PathParameters::Keep), Ok((decided.into(), Some(forwarded.into()))), "{raw}");
        }
        assert_eq!(with("/plain/path", PathParameters::Keep), Ok(("/plain/path".into(), None)));
        // Dot segments and empty segments with parameters are refused whatever the mode.
        for mode in [PathParameters::Strip, PathParameters::Keep] {
            for raw in ["/a/..;x/admin", "/a/.;x", "/a/;x/../admin", "/a%3Bx"] {
                assert_eq!(with(raw, mode), Err(RequestError::AmbiguousPath), "{raw} {mode:?}");
            }
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
            ("host:65536", Err(RequestError::InvalidHost)),
            // Empty labels, before, between or after.
            ("admin.test.example..", Err(RequestError::InvalidHost)),
            (".admin.test.example", Err(RequestError::InvalidHost)),
            ("admin..test.example", Err(RequestError::InvalidHost)),
            ("admin.test.example..:443", Err(RequestError::InvalidHost)),
            ("..", Err(RequestError::InvalidHost)),
            ("admin.test.example.", Ok("admin.test.example")),
            // Labels RFC 1123 forbids.
            ("-admin.example", Err(RequestError::InvalidHost)),
            ("admin-.example", Err(RequestError::InvalidHost)),
            ("a~b.example", Err(RequestError::InvalidHost)),
            ("a%41.example", Err(RequestError::InvalidHost)),
            ("a*b", Err(RequestError::InvalidHost)),
            ("x-1.a-b.example", Ok("x-1.a-b.example")),
            // Addresses: dotted-decimal IPv4 only; IPv6 in its one form.
            ("127.0.0.1", Ok("127.0.0.1")),
            ("10.0.0.1:8080", Ok("10.0.0.1")),
            ("127.1", Err(RequestError::InvalidHost)),
            ("2130706433", Err(RequestError::InvalidHost)),
            ("0x7f.0.0.1", Err(RequestError::InvalidHost)),
            ("127.0.0.0x1", Err(RequestError::InvalidHost)),
            ("0177.0.0.1", Err(RequestError::InvalidHost)),
            ("256.0.0.1", Err(RequestError::InvalidHost)),
            ("1.2.3.4.5", Err(RequestError::InvalidHost)),
            ("host.0x10", Err(RequestError::InvalidHost)),
            ("[0:0::1]:443", Ok("[::1]")),
            ("[::FFFF:127.0.0.1]", Ok("[::ffff:127.0.0.1]")),
            ("[evil.example]", Err(RequestError::InvalidHost)),
            ("[fe80::1%25eth0]", Err(RequestError::InvalidHost)),
            ("[v1.x]", Err(RequestError::InvalidHost)),
        ] {
            assert_eq!(canonical_host(raw).as_deref().map_err(|e| *e), want, "{raw:?}");
        }
    }

    #[test]
    fn host_lengths() {
        let label = "a".repeat(63);
        assert!(canonical_host(&format!("{label}.example")).is_ok());
        assert_eq!(canonical_host(&format!("a{label}.example")), Err(RequestError::InvalidHost));
        let long = [label.as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert_eq!(canonical_host(&long), Err(RequestError::InvalidHost));
        assert!(canonical_host(&long[2..]).is_ok(), "253 bytes");
    }

    #[test]
    fn method_override_headers_in_any_spelling() {
        for name in [
            "x-http-method-override",
            "X-HTTP-Method-Override",
            "x_http_method_override",
            "x-method-override",
            "x-http-method",
            "X_HTTP_METHOD",
        ] {
            assert!(is_method_override_header(name), "{name}");
        }
        for name in ["x-http-method-overrides", "x-http-methods", "method", "x-forwarded-method"] {
            assert!(!is_method_override_header(name), "{name}");
        }
        for name in ["_method", "_METHOD", "_HttpMethod", "X-HTTP-Method-Override", "x-http-method"] {
            assert!(is_method_override_parameter(name), "{name}");
        }
        for name in ["method", "_methods", "x_http_method", ""] {
            assert!(!is_method_override_parameter(name), "{name}");
        }
        for query in ["_method=x", "a=1&_METHOD=x", "x%5F=1", "a+b", "HttpMethod"] {
            assert!(may_carry_method_override(query), "{query}");
        }
        for query in ["", "a=1&b=2", "metho=d", "meth_od"] {
            assert!(!may_carry_method_override(query), "{query}");
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
