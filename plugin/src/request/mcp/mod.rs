//! MCP (Model Context Protocol) requests as policy sees them: one JSON-RPC message read from the buffered
//! body of a POST to an MCP endpoint, strictly (duplicate members, depth, UTF-8, one object: batches left the
//! protocol in 2025-06-18), and on the stateless revision (2026-07-28) checked against the `Mcp-Method`,
//! `Mcp-Name` and `Mcp-Param-*` headers that intermediaries route on. Policy decides on the body; a header that
//! disagrees with it is refused, never trusted alone (standards notes §5.4).
//!
//! Also the rewriting of list responses per caller ([`list`], [`sse`]).

mod header;
pub mod list;
pub mod sse;
#[cfg(test)]
mod tests;

use super::Headers;
use crate::json::tape::{Kind as JsonKind, Node, Tape};
use header::McpHeaders;
use serde_json::{Map, Value};
use std::fmt;

/// Nesting allowed in a JSON-RPC message: arguments are objects of modest depth; deeper is refused.
pub const MAX_DEPTH: usize = 32;
/// The `_meta` key that repeats the protocol version in the body (2026-07-28).
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The MCP protocol revisions the plugin understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Revision {
    /// Sessions (`initialize`, `Mcp-Session-Id`), `MCP-Protocol-Version` after `initialize`.
    V2025_06_18,
    /// As 2025-06-18, with incremental scope consent and `Origin` checks.
    V2025_11_25,
    /// Stateless: no `initialize`, `Mcp-Method`/`Mcp-Name` headers mirror the body on every POST.
    V2026_07_28,
}

impl Revision {
    /// Every revision, oldest first.
    pub const ALL: [Revision; 3] = [Revision::V2025_06_18, Revision::V2025_11_25, Revision::V2026_07_28];

    /// The revision an `MCP-Protocol-Version` value names.
    pub fn parse(text: &str) -> Option<Revision> {
        Revision::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// As written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether requests carry `Mcp-Method`/`Mcp-Name` that must agree with the body.
    pub fn mirrors_headers(self) -> bool {
        self == Revision::V2026_07_28
    }
}

/// What kind of JSON-RPC message a body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A request, answered under its `id` (a string or an integer).
    Request {
        /// The id, as sent.
        id: Value,
    },
    /// A notification (no `id`): answered 202 without a body, or refused without one.
    Notification,
    /// A client's response to a server-initiated request (sampling, elicitation); sessions only.
    Response {
        /// The id, as sent.
        id: Value,
    },
    /// No message: a session's GET (the server's event stream) or DELETE (ending the session), as the
    /// revisions before 2026-07-28 have them.
    Session,
}

/// One MCP message, as policy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRequest {
    /// The revision from `MCP-Protocol-Version`; `None` when the header is absent (the session generation
    /// before `initialize` has negotiated one).
    pub revision: Option<Revision>,
    /// Request, notification or response.
    pub kind: Kind,
    /// The JSON-RPC method; empty for a response.
    pub method: String,
    /// `params.name` of `tools/call` and `prompts/get`.
    pub name: Option<String>,
    /// `params.uri` of `resources/read` (and `resources/subscribe`, `resources/unsubscribe`).
    pub uri: Option<String>,
    /// `params.arguments` of `tools/call` and `prompts/get` (an absent one is empty).
    pub arguments: Map<String, Value>,
}

impl McpRequest {
    /// The request id, for the answer; `None` for a notification.
    pub fn id(&self) -> Option<&Value> {
        match &self.kind {
            Kind::Request { id } | Kind::Response { id } => Some(id),
            Kind::Notification | Kind::Session => None,
        }
    }

    /// What `Mcp-Name` mirrors: the tool or prompt name, or the resource URI.
    pub fn target(&self) -> Option<&str> {
        self.name.as_deref().or(self.uri.as_deref())
    }

    /// Lifecycle traffic: messages that set up or keep up a connection rather than use a capability
    /// (`initialize`, `ping`, `server/discover`, every notification, a client's response, a session's GET
    /// stream and DELETE). Governed by rules
    /// like any other, with a default the policy chooses (`mcp_lifecycle`).
    pub fn is_lifecycle(&self) -> bool {
        matches!(self.kind, Kind::Notification | Kind::Response { .. } | Kind::Session)
            || matches!(self.method.as_str(), "initialize" | "ping" | "server/discover")
    }
}

/// Why an MCP request is refused before policy: each maps to a JSON-RPC error code and an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpError {
    /// The body is larger than the endpoint's cap (413).
    TooLarge,
    /// Not JSON, not UTF-8, a duplicate member, nested too deeply (-32700).
    Parse,
    /// A JSON array: batches were removed in 2025-06-18 (-32600).
    Batch,
    /// Valid JSON that is not one JSON-RPC 2.0 message: `jsonrpc` not "2.0", `method` or `id` of the wrong
    /// type, `params` not an object, a response where the revision forbids one (-32600).
    InvalidRequest,
    /// `params` lacks what the method needs, or has the wrong type: a `tools/call` without a string `name`,
    /// `arguments` that are not an object, a resource URI with dot segments or ambiguous escapes (-32602).
    InvalidParams,
    /// `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` or the body's protocol version disagree with the body, or a
    /// header the revision requires is missing or repeated (-32020).
    HeaderMismatch,
    /// `MCP-Protocol-Version` names a revision this endpoint does not accept (-32022).
    UnsupportedVersion,
    /// A method other than POST where only the stateless revision is accepted (405).
    MethodNotAllowed,
}

impl McpError {
    /// The JSON-RPC error code.
    pub fn code(self) -> i64 {
        match self {
            McpError::Parse => -32700,
            McpError::Batch | McpError::InvalidRequest | McpError::TooLarge | McpError::MethodNotAllowed => -32600,
            McpError::InvalidParams => -32602,
            McpError::HeaderMismatch => -32020,
            McpError::UnsupportedVersion => -32022,
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            McpError::TooLarge => 413,
            McpError::MethodNotAllowed => 405,
            _ => 400,
        }
    }

    /// Stable label for metrics, logs and response details.
    pub fn label(self) -> &'static str {
        match self {
            McpError::TooLarge => "mcp_body_too_large",
            McpError::Parse => "mcp_parse_error",
            McpError::Batch => "mcp_batch",
            McpError::InvalidRequest => "mcp_invalid_request",
            McpError::InvalidParams => "mcp_invalid_params",
            McpError::HeaderMismatch => "mcp_header_mismatch",
            McpError::UnsupportedVersion => "mcp_unsupported_version",
            McpError::MethodNotAllowed => "mcp_method_not_allowed",
        }
    }
}

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            McpError::TooLarge => "the MCP message is larger than this endpoint accepts",
            McpError::Parse => "the body is not one strict JSON document",
            McpError::Batch => "JSON-RPC batches are not part of MCP since 2025-06-18",
            McpError::InvalidRequest => "the body is not a JSON-RPC 2.0 message",
            McpError::InvalidParams => "the message's params are missing or malformed",
            McpError::HeaderMismatch => "the MCP headers do not agree with the body",
            McpError::UnsupportedVersion => "this endpoint does not accept this MCP protocol version",
            McpError::MethodNotAllowed => "this MCP endpoint accepts only POST",
        })
    }
}

/// The protocol revision of a request, from `MCP-Protocol-Version`, among those `accepted`. An absent header
/// is the session generation before `initialize` agreed on one, accepted when a session revision is.
pub fn revision(headers: &Headers<'_>, accepted: &[Revision]) -> Result<Option<Revision>, McpError> {
    revision_in(&McpHeaders::of(headers), accepted)
}

/// [`revision`] of headers already found.
fn revision_in(found: &McpHeaders<'_>, accepted: &[Revision]) -> Result<Option<Revision>, McpError> {
    match header::text(found.version)? {
        Some(text) => match Revision::parse(text) {
            Some(r) if accepted.contains(&r) => Ok(Some(r)),
            _ => Err(McpError::UnsupportedVersion),
        },
        None if accepted.iter().any(|r| !r.mirrors_headers()) => Ok(None),
        None => Err(McpError::UnsupportedVersion),
    }
}

/// A session's GET or DELETE (no body to read), with its revision.
pub fn session(headers: &Headers<'_>, accepted: &[Revision]) -> Result<McpRequest, McpError> {
    Ok(McpRequest {
        revision: revision(headers, accepted)?,
        kind: Kind::Session,
        method: String::new(),
        name: None,
        uri: None,
        arguments: Map::new(),
    })
}

/// A message refused, with its id when it could be read (JSON-RPC answers an error under the request's id, and
/// under null only when the id itself could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRefusal {
    /// Why.
    pub error: McpError,
    /// The request's id, when it was a valid one.
    pub id: Option<Value>,
}

impl From<McpError> for McpRefusal {
    fn from(error: McpError) -> McpRefusal {
        McpRefusal { error, id: None }
    }
}

/// Which arguments a message is read with: policy conditions read a few of them, and a tool call's arguments
/// can be most of its body; the others are checked as JSON but not built.
#[derive(Debug, Clone, Copy)]
pub enum Arguments<'a> {
    /// Every argument (test cases, tools).
    All,
    /// The arguments with these top-level names (and those a `Mcp-Param-*` header mirrors).
    Only(&'a [String]),
}

/// Reads one MCP message from a POST body and, on the stateless revision, checks the mirrored headers
/// against it.
pub fn parse(
    body: &[u8],
    headers: &Headers<'_>,
    accepted: &[Revision],
    arguments: Arguments<'_>,
) -> Result<McpRequest, McpRefusal> {
    let found = McpHeaders::of(headers);
    let revision = revision_in(&found, accepted)?;
    // A batch is refused as such, before the strict reader turns it into "not an object".
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(McpError::Batch.into());
    }
    let tape = Tape::parse(body, MAX_DEPTH).map_err(|_| McpError::Parse)?;
    let message = tape.root();
    if message.kind() != JsonKind::Object {
        return Err(McpError::InvalidRequest.into());
    }
    // One pass over the message's members (the reader refused repeated names, so the first is the only one).
    let mut top = TopMembers::default();
    for (name, value) in message.members() {
        match &*name {
            "id" => top.id = Some(value),
            "jsonrpc" => top.jsonrpc = Some(value),
            "method" => top.method = Some(value),
            "params" => top.params = Some(value),
            "result" | "error" => top.response = true,
            _ => {}
        }
    }
    let id = match top.id {
        None => None,
        Some(id) => Some(request_id(id).ok_or(McpError::InvalidRequest)?),
    };
    let refused = |error| McpRefusal { error, id: id.clone() };
    // The arguments a `Mcp-Param-*` header names (matched without case, as header names are), found once.
    let mirrored: Vec<&str> = if found.params && revision.is_some_and(Revision::mirrors_headers) {
        headers.iter().filter_map(|(h, _)| h.strip_prefix(PARAM_HEADER_PREFIX)).collect()
    } else {
        Vec::new()
    };
    let wanted = |name: &str| match arguments {
        Arguments::All => true,
        Arguments::Only(names) => {
            names.iter().any(|n| n == name) || mirrored.iter().any(|p| p.eq_ignore_ascii_case(name))
        }
    };
    let request = message_of(top, id.clone(), revision, &wanted).map_err(refused)?;
    if revision.is_some_and(Revision::mirrors_headers) {
        header::agree(&request, headers, &found).map_err(refused)?;
    }
    Ok(request)
}

/// The members of a message that say what it is.
#[derive(Default)]
struct TopMembers<'t, 'a> {
    id: Option<Node<'t, 'a>>,
    jsonrpc: Option<Node<'t, 'a>>,
    method: Option<Node<'t, 'a>>,
    params: Option<Node<'t, 'a>>,
    /// A `result` or an `error`: a response.
    response: bool,
}

/// The prefix of the headers that mirror arguments (`Mcp-Param-<Name>`).
const PARAM_HEADER_PREFIX: &str = "mcp-param-";

/// MCP: an id is "a string or integer", never null; a fraction or an integer beyond 64 bits is not one an
/// answer can echo exactly.
fn request_id(id: Node<'_, '_>) -> Option<Value> {
    match id.kind() {
        JsonKind::String => id.as_str().map(|s| Value::String(s.into_owned())),
        JsonKind::Number => {
            let raw = id.raw();
            raw.parse::<i64>().ok().map(Value::from).or_else(|| raw.parse::<u64>().ok().map(Value::from))
        }
        _ => None,
    }
}

/// A string value, or `Err` when present and not a string.
fn string_value(node: Option<Node<'_, '_>>, error: McpError) -> Result<Option<String>, McpError> {
    match node {
        None => Ok(None),
        Some(n) => n.as_str().map(|s| Some(s.into_owned())).ok_or(error),
    }
}

/// The JSON-RPC message of these members (its `id` already read and checked).
fn message_of(
    top: TopMembers<'_, '_>,
    id: Option<Value>,
    revision: Option<Revision>,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<McpRequest, McpError> {
    if top.jsonrpc.and_then(|v| v.as_str()).as_deref() != Some("2.0") {
        return Err(McpError::InvalidRequest);
    }
    let method = string_value(top.method, McpError::InvalidRequest)?;
    if method.as_deref() == Some("") {
        return Err(McpError::InvalidRequest);
    }
    let (kind, method) = match (method, id, top.response) {
        (Some(method), Some(id), false) => (Kind::Request { id }, method),
        (Some(method), None, false) => (Kind::Notification, method),
        // The stateless revision forbids clients to send responses (there is no server-initiated request).
        (None, Some(id), true) if !revision.is_some_and(Revision::mirrors_headers) => {
            (Kind::Response { id }, String::new())
        }
        _ => return Err(McpError::InvalidRequest),
    };
    let params = match top.params {
        None => None,
        Some(p) if p.kind() == JsonKind::Object => Some(p),
        Some(_) => return Err(McpError::InvalidRequest),
    };
    let mut request = McpRequest { revision, kind, method, name: None, uri: None, arguments: Map::new() };
    let Some(params) = params else {
        return match request.method.as_str() {
            "tools/call" | "prompts/get" | "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Err(McpError::InvalidParams)
            }
            _ => Ok(request),
        };
    };
    let (mut meta, mut name, mut uri, mut arguments) = (None, None, None, None);
    for (member, value) in params.members() {
        match &*member {
            "_meta" => meta = Some(value),
            "name" => name = Some(value),
            "uri" => uri = Some(value),
            "arguments" => arguments = Some(value),
            _ => {}
        }
    }
    if let (Some(r), Some(meta)) = (revision, meta) {
        match meta.get(META_VERSION) {
            None => {}
            Some(v) if v.as_str().as_deref() == Some(r.as_str()) => {}
            Some(_) => return Err(McpError::HeaderMismatch),
        }
    }
    match request.method.as_str() {
        "tools/call" | "prompts/get" => {
            request.name = match string_value(name, McpError::InvalidParams)? {
                Some(name) if !name.is_empty() => Some(name),
                _ => return Err(McpError::InvalidParams),
            };
            match arguments {
                None => {}
                Some(a) if a.kind() == JsonKind::Null => {}
                Some(a) if a.kind() == JsonKind::Object => {
                    for (name, value) in a.members() {
                        if wanted(&name) {
                            let value = value.to_value().ok_or(McpError::InvalidParams)?;
                            request.arguments.insert(name.into_owned(), value);
                        }
                    }
                }
                Some(_) => return Err(McpError::InvalidParams),
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            request.uri = match string_value(uri, McpError::InvalidParams)? {
                Some(uri) if resource_uri_ok(&uri) => Some(uri),
                _ => return Err(McpError::InvalidParams),
            };
        }
        _ => {}
    }
    Ok(request)
}

/// A resource URI policy can match without being misled: printable ASCII without spaces (RFC 3986 has no other
/// characters), no dot segment anywhere (`a/../b` is another resource to any server that resolves it), no
/// backslash, no fragment, no broken `%` escape, and no escape of a delimiter, a dot or NUL (`%2F`, `%5C`,
/// `%00`, `%23`, `%3F`, `%2E`), which servers decode at different times. Anything else is refused as invalid
/// params.
fn resource_uri_ok(uri: &str) -> bool {
    if uri.is_empty() || uri.len() > 2048 || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    if uri.contains(['\\', '#']) {
        return false;
    }
    let lower = uri.to_ascii_lowercase();
    if ["%2f", "%5c", "%00", "%23", "%3f", "%2e"].iter().any(|e| lower.contains(e)) {
        return false;
    }
    // Every `%` starts an escape of two hex digits (RFC 3986 §2.1): a broken one is read differently by each
    // decoder.
    let bytes = uri.as_bytes();
    if bytes.iter().enumerate().any(|(i, &b)| b == b'%' && crate::percent::escape_at(bytes, i).is_none()) {
        return false;
    }
    // No `.` or `..` segment anywhere after `scheme:`, the query included: servers treat resource URIs as paths
    // in ways the gateway cannot know (a file server joining the whole string to a root).
    !uri.split('/').skip(1).any(|segment| segment == "." || segment == "..")
}
