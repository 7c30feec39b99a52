//! MCP endpoints: which requests carry an MCP message the decision needs (the filter then buffers the body),
//! the RFC 9728 protected resource metadata the plugin serves for each endpoint, the audience a token must
//! name there (RFC 8707), denials in JSON-RPC terms (standards notes §5.5), and list responses filtered per
//! caller.

use super::{Denial, Engine, Failure, RouteSelector};
use crate::policy::path::Segments;
use crate::request::mcp::list::{self, Filtered, ListError, ListKind};
use crate::request::mcp::{Arguments, Kind, McpError, McpRefusal, McpRequest, Revision};
use crate::request::{Connection, Headers, Request};
use crate::token::{CryptoBackend, VerifiedToken};
use serde_json::{Value, json};
use std::rc::Rc;

/// Largest body cap an endpoint may set: Envoy's default per-connection buffer limit, which refuses larger
/// bodies itself.
pub const MAX_BODY_CAP: usize = 1 << 20;
/// The body cap when the configuration names none.
pub const DEFAULT_BODY_CAP: usize = 64 * 1024;
/// Where RFC 9728 puts the metadata: between the resource's host and its path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
/// The JSON-RPC code of a policy denial: outside the range JSON-RPC reserves (−32768…−32000), as MCP
/// 2026-07-28 asks of application codes; the protocol defines no "forbidden" code.
pub const FORBIDDEN_CODE: i64 = -31001;
/// The JSON-RPC error code of a call over a limit (429), beside [`FORBIDDEN_CODE`].
pub const RATE_LIMITED_CODE: i64 = -31002;

/// How a refused call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpDenial {
    /// 403 with a JSON-RPC error (`-31001`, the reason and the request id).
    Forbidden,
    /// As if the tool, prompt or resource did not exist (200, `-32602`), so that callers cannot enumerate
    /// what others may use; lists are filtered the same way. Other methods are refused as with `Forbidden`.
    Unknown,
}

/// One MCP endpoint of the configuration.
#[derive(Debug, Clone)]
pub struct McpEndpoint {
    /// The requests it is for (never empty: by path, route or tag).
    pub select: RouteSelector,
    /// Accepted protocol revisions.
    pub revisions: Vec<Revision>,
    /// Largest body buffered.
    pub max_body_bytes: usize,
    /// How refused calls are answered.
    pub denial: McpDenial,
    /// Whether list responses are filtered per caller.
    pub filter_lists: bool,
    /// The canonical resource URI (RFC 8707): tokens must name it in `aud`.
    pub resource: String,
    /// Where its metadata is served: the path of [`McpEndpoint::metadata_url`].
    pub metadata_path: String,
    /// The metadata's URL, named in `resource_metadata` of challenges.
    pub metadata_url: String,
    /// The RFC 9728 metadata document.
    pub metadata: String,
    /// Every issuer whose tokens may name this endpoint requires DPoP: its challenges offer no `Bearer`.
    pub dpop_only: bool,
}

impl McpEndpoint {
    /// Whether only the stateless revision is accepted (its endpoints take nothing but POST).
    fn stateless_only(&self) -> bool {
        self.revisions.iter().all(|r| r.mirrors_headers())
    }
}

/// What a request to an MCP endpoint carries.
pub(super) enum Message {
    /// No message: a method MCP does not use (decided as plain HTTP).
    None,
    /// A POST whose body is still to be read, at most this many bytes.
    AwaitBody(usize),
    /// The message, shared as the verdict and the logs will hold it (and boxed: it is large beside the other
    /// variants).
    Call(Rc<McpRequest>),
}

/// What the filter has read of a request's body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'b> {
    /// Not read: an MCP endpoint's POST answers [`super::Verdict::NeedBody`].
    Absent,
    /// The whole body.
    Complete(&'b [u8]),
    /// More than the endpoint's cap arrived.
    TooLarge,
}

/// The RFC 9728 document and the URL it is served at, for an endpoint's resource.
pub fn metadata(
    resource: &str,
    authorization_servers: &[String],
    scopes: &[String],
    name: Option<&str>,
    documentation: Option<&str>,
) -> Option<(String, String, String)> {
    // `https://gw.example.com/mcp` → `https://gw.example.com/.well-known/oauth-protected-resource/mcp`.
    let after_scheme = resource.find("://")? + 3;
    let path_at = resource[after_scheme..].find('/').map_or(resource.len(), |p| after_scheme + p);
    let (origin, path) = resource.split_at(path_at);
    let metadata_path = format!("{WELL_KNOWN}{}", path.trim_end_matches('/'));
    let url = format!("{origin}{metadata_path}");
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": ["header"],
    });
    if !scopes.is_empty() {
        doc["scopes_supported"] = json!(scopes);
    }
    if let Some(name) = name {
        doc["resource_name"] = json!(name);
    }
    if let Some(d) = documentation {
        doc["resource_documentation"] = json!(d);
    }
    Some((metadata_path, url, doc.to_string()))
}

impl Engine {
    /// The MCP endpoint a request is for, if any.
    pub(super) fn mcp_endpoint(&self, path: &str, conn: &Connection<'_>) -> Option<&McpEndpoint> {
        if self.settings.mcp.is_empty() {
            return None;
        }
        let segments = Segments::new(path);
        self.settings.mcp.iter().find(|e| e.select.selects(&segments, conn))
    }

    /// The protected resource metadata, for a `GET` of an endpoint's well-known URL (or of the bare well-known
    /// URL when there is one endpoint). Answered before any token is asked for: clients fetch it to learn
    /// where to get one.
    pub(super) fn discovery(&self, method: &str, path: &str) -> Option<Denial> {
        if method != "GET" || !path.starts_with(WELL_KNOWN) {
            return None;
        }
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let endpoint = match self.settings.mcp.as_slice() {
            [only] if path == WELL_KNOWN => Some(only),
            all => all.iter().find(|e| e.metadata_path == path),
        }?;
        Some(Denial {
            status: 200,
            headers: vec![("content-type", "application/json".into()), ("cache-control", "max-age=300".into())],
            body: endpoint.metadata.clone(),
            details: "agent_iam.protected_resource_metadata".into(),
            reason: "protected_resource_metadata",
            rule: None,
            mcp: None,
            verified: None,
            revoked_by: None,
        })
    }

    /// The message in a request to an MCP endpoint, or that its body is still to be read.
    pub(super) fn mcp_message(
        &self,
        endpoint: &McpEndpoint,
        method: &str,
        request: &Request<'_>,
        body: Body<'_>,
    ) -> Result<Message, Failure> {
        match method {
            "POST" => {}
            // The stateless revision has no sessions: nothing but POST (its servers answer 405 too).
            _ if endpoint.stateless_only() => return Err(Failure::Mcp(McpError::MethodNotAllowed.into())),
            "GET" | "DELETE" => {
                return crate::request::mcp::session(request.headers, &endpoint.revisions)
                    .map(|call| Message::Call(Rc::new(call)))
                    .map_err(|e| Failure::Mcp(e.into()));
            }
            _ => return Ok(Message::None),
        }
        let bytes = match body {
            Body::Absent => return Ok(Message::AwaitBody(endpoint.max_body_bytes)),
            Body::TooLarge => return Err(Failure::Mcp(McpError::TooLarge.into())),
            Body::Complete(b) if b.len() > endpoint.max_body_bytes => {
                return Err(Failure::Mcp(McpError::TooLarge.into()));
            }
            Body::Complete(b) => b,
        };
        crate::request::mcp::parse(
            bytes,
            request.headers,
            &endpoint.revisions,
            Arguments::Only(&self.policy.needs().arguments),
        )
        .map(|call| Message::Call(Rc::new(call)))
        .map_err(Failure::Mcp)
    }

    /// RFC 8707: at an MCP endpoint the token must have been issued for it.
    pub(super) fn mcp_audience(&self, endpoint: &McpEndpoint, token: &VerifiedToken) -> Result<(), Failure> {
        token.claims.registered().check_audience(std::slice::from_ref(&endpoint.resource)).map_err(Failure::Token)
    }

    /// A denial at an MCP endpoint, in the protocol's terms: challenges name the resource metadata; a refused
    /// call is a JSON-RPC error under the request's id (never a 401 for a valid token, which sends clients
    /// back to authorisation in a loop); a refused notification gets no body.
    /// `refused`: why the message was refused before policy (and its id, when it could be read).
    pub(super) fn mcp_denial(
        &self,
        endpoint: &McpEndpoint,
        mut denial: Denial,
        call: Option<&McpRequest>,
        refused: Option<McpRefusal>,
    ) -> Denial {
        let challenge = format!(", resource_metadata=\"{}\"", endpoint.metadata_url);
        if endpoint.dpop_only {
            // The metadata says DPoP-bound tokens are required here: a Bearer challenge is kept only to carry
            // the error of a request that tried one.
            denial
                .headers
                .retain(|(n, v)| *n != "www-authenticate" || !v.starts_with("Bearer ") || v.contains(" error="));
        }
        // A 403 challenge tells an MCP client to ask for more scopes (step-up authorisation): it is sent only
        // when a scope is what is missing; a policy denial no token could change carries none.
        if denial.status == 403 {
            denial.headers.retain(|(n, v)| *n != "www-authenticate" || v.contains(" scope=\""));
        }
        for (name, value) in &mut denial.headers {
            if *name == "www-authenticate" {
                value.push_str(&challenge);
            }
        }
        if denial.status == 401 || denial.status == 503 {
            return denial;
        }
        let (refused_error, refused_id) = match refused {
            Some(r) => (Some(r.error), r.id),
            None => (None, None),
        };
        let id = call.and_then(McpRequest::id).cloned().or(refused_id).unwrap_or(Value::Null);
        if refused_error == Some(McpError::MethodNotAllowed) {
            // RFC 9110 §15.5.6: a 405 names the methods the resource has.
            denial.headers.push(("allow", "POST".into()));
        }
        if matches!(call.map(|c| &c.kind), Some(Kind::Notification)) {
            denial.body.clear();
            denial.headers.retain(|(n, _)| *n != "content-type");
            return denial;
        }
        let (code, message) = match call {
            Some(c) if denial.status == 403 || denial.status == 404 => {
                let what = match c.method.as_str() {
                    "tools/call" => "tool",
                    "prompts/get" => "prompt",
                    _ => "resource",
                };
                match (endpoint.denial, c.target()) {
                    (McpDenial::Unknown, Some(target)) => {
                        denial.status = 200;
                        denial.headers.retain(|(n, _)| *n != "www-authenticate");
                        (-32602, format!("Unknown {what}: {target}"))
                    }
                    (_, Some(target)) => (FORBIDDEN_CODE, format!("Forbidden: {what} '{target}' denied by policy")),
                    (_, None) => (FORBIDDEN_CODE, format!("Forbidden: '{}' denied by policy", c.method)),
                }
            }
            // A policy denial of a request without a message (a session's stream, another method).
            None if denial.status == 403 || denial.status == 404 => (FORBIDDEN_CODE, denial_description(&denial)),
            _ if denial.status == 429 => (RATE_LIMITED_CODE, denial_description(&denial)),
            // Refused before policy with its own code; anything else (a request that cannot be read) is not a
            // valid request.
            _ => (refused_error.map_or(-32600, McpError::code), denial_description(&denial)),
        };
        // The OAuth-style body's fields become the error's data (reason, rule, request id), so both kinds of
        // client find them.
        let data: Value = serde_json::from_str(&denial.body).unwrap_or(Value::Null);
        let body = if denial.status == 200 {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        } else {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
        };
        denial.body = body.to_string();
        denial
    }

    /// A list response (one JSON-RPC message) filtered for the caller of the request `headers` carried:
    /// the request is prepared again (its token from the cache) and each entry decided as a call of it. A
    /// request that no longer verifies gets nothing through.
    pub fn filter_list_response(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
        call: &McpRequest,
        message: &[u8],
    ) -> Result<Filtered, ListError> {
        let p = self.prepare(headers, now, crypto, &mut Default::default()).map_err(|_| ListError::Unverified)?;
        let view = p.view(headers, conn, now, Some(call));
        self.filter_list(&p.verified.token, &view, call, message)
    }

    /// A list response filtered for the caller of `call`: entries it could not use are removed (see
    /// [`Request::hypothetical`]). `view` is the request as it was decided.
    pub fn filter_list(
        &self,
        token: &VerifiedToken,
        view: &Request<'_>,
        call: &McpRequest,
        message: &[u8],
    ) -> Result<Filtered, ListError> {
        let Some(kind) = ListKind::of_method(&call.method) else { return Ok(Filtered::Unchanged) };
        let method = match kind {
            ListKind::Tools => "tools/call",
            ListKind::Prompts => "prompts/get",
            ListKind::Resources | ListKind::ResourceTemplates => "resources/read",
        };
        let mut probe = McpRequest {
            revision: call.revision,
            kind: Kind::Request { id: Value::Null },
            method: method.to_owned(),
            name: None,
            uri: None,
            arguments: serde_json::Map::new(),
        };
        let private = call.revision.is_some_and(Revision::mirrors_headers);
        // A listed resource is a concrete URI: decided as reading it would be. Tools, prompts and templates
        // stand for calls whose arguments (or template values) are not known yet.
        let hypothetical = kind != ListKind::Resources;
        // Every entry is the same request but for its MCP message: the candidate rules are found once.
        let candidates = self.policy.candidates(token, view);
        list::filter_response(message, kind, private, &mut |entry| {
            let slot = match kind {
                ListKind::Tools | ListKind::Prompts => &mut probe.name,
                ListKind::Resources | ListKind::ResourceTemplates => &mut probe.uri,
            };
            // The entry's name in the probe's buffer, reused from entry to entry.
            let text = slot.get_or_insert_with(String::new);
            text.clear();
            text.push_str(entry);
            let probe_view = Request { mcp: Some(&probe), hypothetical, ..*view };
            self.policy.allows_among(&candidates, token, &probe_view)
        })
    }
}

/// A denial's description, from its body.
fn denial_description(denial: &Denial) -> String {
    serde_json::from_str::<Value>(&denial.body)
        .ok()
        .and_then(|v| v.get("error_description").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| denial.reason.to_owned())
}
