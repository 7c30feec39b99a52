//! The request as policy sees it: method, canonical path, host. Canonicalised before any rule looks at it,
//! so that `//admin`, `/a/../admin` and `/%2e%2e/admin` are all `/admin` (CVE-2019-9901, CVE-2021-31920), and
//! encodings that different components would read differently are refused outright (CVE-2021-29492).
//!
//! Also the request as the layers above read it: its headers as the proxy hands them over ([`Headers`]), what
//! Envoy knows of its connection ([`Connection`]), and the canonical view policy evaluates ([`Request`]).
//! The bottom layer of the core: it depends on nothing above it.

mod host;
pub mod mcp;
mod method;
mod path;
#[cfg(test)]
mod tests;

pub use host::canonical_host;
pub use method::{
    METHOD_OVERRIDE_HEADERS, METHOD_OVERRIDE_PARAMETERS, MethodOverride, canonical_method, is_method_override_header,
    is_method_override_parameter, may_carry_method_override,
};
pub use path::{CanonicalPath, PathParameters, canonical_path, canonical_path_with};
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

/// One request header: lower-case name, raw value bytes.
pub type Header<'a> = (&'a str, &'a [u8]);

/// A request's headers as the proxy hands them over: names lower-case, values raw bytes, pseudo-headers
/// (`:method`, `:path`, `:authority`) included, repeated headers repeated. Borrowed from the one buffer the
/// proxy fills ([`crate::header_map`]), so that reading them copies nothing.
pub type Headers<'a> = [Header<'a>];

/// The request as policy sees it: canonical method, path and host (see this module), the raw query,
/// the headers, the time and the TLS peer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Canonical path, without the query.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Canonical host (lower case, no port).
    pub host: Option<&'a str>,
    /// Header names lower-case; repeated headers repeated.
    pub headers: &'a Headers<'a>,
    /// Seconds since the epoch.
    pub now: i64,
    /// The mutual-TLS peer, if any.
    pub peer: Peer<'a>,
    /// The name of the Envoy route the request matched (`xds.route_name`), if known.
    pub route: Option<&'a str>,
    /// The matched route's tag (metadata `filter_metadata.agent_iam.tag`): `""` for a route without one,
    /// `None` when Envoy could not say.
    pub route_tag: Option<&'a str>,
    /// The MCP message of a request to an MCP endpoint.
    pub mcp: Option<&'a mcp::McpRequest>,
    /// A message the client did not send, evaluated to filter a list for it (would it be allowed to call
    /// this tool?): conditions on arguments and resource parameters, which it has none of, count as holding
    /// for allow rules and as not holding for deny rules.
    pub hypothetical: bool,
}

/// The mutual-TLS peer certificate, as Envoy reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer<'a> {
    /// `connection.uri_san_peer_certificate`.
    pub uri_san: Option<&'a str>,
    /// `connection.sha256_peer_certificate_digest`, hex.
    pub certificate_sha256: Option<&'a str>,
}

/// What Envoy knows about a request beyond its headers, read by the filter only when the policy needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connection<'a> {
    /// The mutual-TLS peer.
    pub peer: Peer<'a>,
    /// The matched Envoy route's name (`xds.route_name`).
    pub route: Option<&'a str>,
    /// The matched route's tag (`xds.route_metadata` `filter_metadata.agent_iam.tag`): `""` for a route
    /// without one, `None` when unknown.
    pub route_tag: Option<&'a str>,
}

/// A header that may appear at most once, as one pass over the headers finds it (when several are looked for:
/// [`single_value`] looks for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'h> {
    /// Not there.
    Absent,
    /// There once, with this value.
    Once(&'h [u8]),
    /// There more than once: no one value.
    Repeated,
}

impl<'h> Seen<'h> {
    /// The header found (again) with `value`.
    pub fn add(&mut self, value: &'h [u8]) {
        *self = match self {
            Seen::Absent => Seen::Once(value),
            _ => Seen::Repeated,
        };
    }
}

/// The value of a header that must appear exactly once (`None` when absent or repeated).
pub fn single_value<'h>(headers: &'h Headers<'h>, name: &str) -> Option<&'h [u8]> {
    let mut values = headers.iter().filter(|(n, _)| *n == name);
    match (values.next(), values.next()) {
        (Some(&(_, v)), None) => Some(v),
        _ => None,
    }
}

/// [`single_value`] as text (`None` when it is not UTF-8).
pub fn single_text<'h>(headers: &'h Headers<'h>, name: &str) -> Option<&'h str> {
    single_value(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// A header field's value without its leading and trailing spaces and tabs, which RFC 9110 §5.5 says are not
/// part of it. Envoy strips them over HTTP/1.1 but not over HTTP/2, and upstreams strip them either way, so
/// whatever reads a header value reads it without.
pub fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// Whether `name` is a lower-case HTTP header name (an RFC 9110 token).
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b))
}
