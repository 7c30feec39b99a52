//! The headers the stateless revision mirrors from the body (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`), and
//! their agreement with it. Load balancers and gateways that route on them without reading the body would
//! otherwise decide on one tool while the server runs another.

use super::{McpError, McpRequest};
use crate::request::{Headers, Seen, trim_ows};
use serde_json::Value;
use std::borrow::Cow;

/// The MCP headers of a request, found in one pass over its headers.
#[derive(Clone, Copy)]
pub(super) struct McpHeaders<'h> {
    /// `MCP-Protocol-Version`.
    pub(super) version: Seen<'h>,
    method: Seen<'h>,
    name: Seen<'h>,
    /// Whether there is an `Mcp-Param-*` header (rare: they are looked for again only then).
    pub(super) params: bool,
}

impl<'h> McpHeaders<'h> {
    pub(super) fn of(headers: &Headers<'h>) -> McpHeaders<'h> {
        let mut found = McpHeaders { version: Seen::Absent, method: Seen::Absent, name: Seen::Absent, params: false };
        for &(name, value) in headers {
            // One comparison rules out every other header.
            let Some(rest) = name.strip_prefix("mcp-") else { continue };
            match rest {
                "protocol-version" => found.version.add(value),
                "method" => found.method.add(value),
                "name" => found.name.add(value),
                _ => found.params |= rest.starts_with("param-"),
            }
        }
        found
    }
}

/// A mirrored header's value as text without surrounding whitespace. Sent twice, or not text, it cannot be said
/// to agree with anything.
pub(super) fn text(seen: Seen<'_>) -> Result<Option<&str>, McpError> {
    match seen {
        Seen::Absent => Ok(None),
        Seen::Once(v) => match std::str::from_utf8(v) {
            Ok(text) => Ok(Some(trim_ows(text))),
            Err(_) => Err(McpError::HeaderMismatch),
        },
        Seen::Repeated => Err(McpError::HeaderMismatch),
    }
}

/// A mirrored value: as is, or `=?base64?<standard base64>?=` for values that are not plain ASCII.
fn decoded(value: &str) -> Option<Cow<'_, str>> {
    let Some(inner) = value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) else {
        // Plain values are visible ASCII and spaces; anything else should have been encoded.
        return value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()).then_some(Cow::Borrowed(value));
    };
    // Standard base64 (RFC 4648 §4) with its padding, read by the strict base64url decoder: the two alphabets
    // differ only in '+' and '/', and the padding must make a whole number of quanta.
    let unpadded = inner.trim_end_matches('=');
    let padding = inner.len() - unpadded.len();
    if inner.len() % 4 != 0 || padding > 2 || unpadded.contains(['-', '_']) {
        return None;
    }
    let url: Vec<u8> = unpadded
        .bytes()
        .map(|b| {
            if b == b'+' {
                b'-'
            } else if b == b'/' {
                b'_'
            } else {
                b
            }
        })
        .collect();
    let bytes = crate::b64::decode(&url).ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// An argument as its mirrored header carries it: strings as they are, numbers and booleans as JSON writes
/// them. Objects, arrays and null have no header form.
fn header_form(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Checks the mirrored headers against the message: `Mcp-Method` must be there and equal the method;
/// `Mcp-Name` must be there for the methods that name something and equal the name or URI, and be absent
/// otherwise; an `Mcp-Param-<Name>` that names an argument (compared without case, as header names are) must
/// equal it. One that names none comes from a schema annotation the gateway does not have, and is left to the
/// server, which checks it against that schema.
pub(super) fn agree(request: &McpRequest, headers: &Headers<'_>, found: &McpHeaders<'_>) -> Result<(), McpError> {
    let method = text(found.method)?.ok_or(McpError::HeaderMismatch)?;
    if method != request.method {
        return Err(McpError::HeaderMismatch);
    }
    match (text(found.name)?, request.target()) {
        (None, None) => {}
        (Some(sent), Some(target)) if decoded(sent).as_deref() == Some(target) => {}
        _ => return Err(McpError::HeaderMismatch),
    }
    if !found.params {
        return Ok(());
    }
    for &(name, value) in headers {
        let Some(param) = name.strip_prefix(super::PARAM_HEADER_PREFIX) else { continue };
        let text = std::str::from_utf8(value).map_err(|_| McpError::HeaderMismatch)?;
        let sent = decoded(trim_ows(text)).ok_or(McpError::HeaderMismatch)?;
        let mut matching = request.arguments.iter().filter(|(k, _)| k.eq_ignore_ascii_case(param));
        let argument = match (matching.next(), matching.next()) {
            (Some((_, v)), None) => v,
            // The header's name comes from the tool's schema (`x-mcp-header`), which need not be the
            // argument's: without the schema the gateway cannot tie it to an argument. The server checks it
            // against its schema; policy never reads it (arguments are read from the body).
            (None, _) => continue,
            (Some(_), Some(_)) => return Err(McpError::HeaderMismatch),
        };
        if header_form(argument).as_deref() != Some(&*sent) {
            return Err(McpError::HeaderMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_values_decode_strictly() {
        assert_eq!(decoded("get_weather").as_deref(), Some("get_weather"));
        // "Zürich" in standard base64.
        assert_eq!(decoded("=?base64?WsO8cmljaA==?=").as_deref(), Some("Zürich"));
        assert_eq!(decoded("=?base64?WsO8cmljaA?=").as_deref(), None, "padding is part of the form");
        assert_eq!(decoded("=?base64?WsO8cmljaA===?=").as_deref(), None);
        assert_eq!(decoded("=?base64?+/+/?=").as_deref(), None, "not UTF-8");
        assert_eq!(decoded("=?base64?-_-_?=").as_deref(), None, "the URL alphabet is not the form");
        assert_eq!(decoded("caf\u{e9}").as_deref(), None, "non-ASCII must be encoded");
        assert_eq!(decoded("a\tb").as_deref(), None);
    }
}
