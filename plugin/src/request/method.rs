//! The request method: canonical spelling, and the overrides frameworks let a client send.

use super::RequestError;
use std::borrow::Cow;

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
