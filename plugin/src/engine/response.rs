//! Denials: status, `WWW-Authenticate` challenge (RFC 6750) and JSON body for each reason a request fails.

use super::{Engine, Failure, HeaderValue, Scheme, Verified};
use crate::request::mcp::McpRequest;
use crate::revocation::Kind;
use crate::token::TokenError;
use std::rc::Rc;

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 400, 401, 403, or 503 when the issuer's keys are unavailable.
    pub status: u16,
    /// Response headers (the challenge and the content type).
    pub headers: Vec<(&'static str, String)>,
    /// `{"error", "error_description", "request_id", "rule"?}`.
    pub body: String,
    /// Envoy response-code details: `agent_iam.<reason>`, no spaces.
    pub details: String,
    /// The metric/audit label of the reason.
    pub reason: &'static str,
    /// The deny rule that decided, for metrics and audit (whether or not the body names it).
    pub rule: Option<String>,
    /// The MCP message refused, when one was read (for audit and metrics).
    pub mcp: Option<Rc<McpRequest>>,
    /// For a policy denial or a revoked token, the verified token that was refused (for audit, never sent to
    /// the client).
    pub verified: Option<Verified>,
    /// For a revoked token, the kind of revocation that refused it (for logs and audit).
    pub revoked_by: Option<Kind>,
}

impl Denial {
    /// For a policy denial, who was refused: the identity an allow would have forwarded (for audit, never
    /// sent to the client); empty when the token did not verify.
    pub fn identity(&self) -> &[(&'static str, HeaderValue)] {
        self.verified.as_ref().map_or(&[], |v| v.0.identity.as_slice())
    }
}

impl Engine {
    /// The answer to a failure; `scheme` is how the credential was presented, whose challenge carries the error.
    pub(super) fn denial(&self, failure: Failure, scheme: Scheme, request_id: String) -> Denial {
        // Scope tokens were checked at compile time to be visible ASCII without quotes or backslashes.
        let scope = match &failure {
            Failure::Forbidden { missing_scope: Some(s), .. } => Some(s.clone()),
            _ => None,
        };
        // Moved out, not copied: the match below needs only the rest of the failure.
        let verified = match &failure {
            Failure::Forbidden { admitted, .. }
            | Failure::Revoked { admitted, .. }
            | Failure::Limited { admitted, .. }
            | Failure::Held { admitted, .. } => Some(Verified(admitted.clone())),
            _ => None,
        };
        let revoked_by = match &failure {
            Failure::Revoked { kind, .. } => Some(*kind),
            _ => None,
        };
        let exceeded = match &failure {
            Failure::Limited { exceeded, .. } => Some(exceeded.clone()),
            _ => None,
        };
        let held_for = match &failure {
            Failure::Held { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let nonce = match &failure {
            Failure::Dpop { nonce, .. } => nonce.clone(),
            _ => None,
        };
        let (status, error, description, reason, rule): (u16, Option<&str>, String, &'static str, Option<String>) =
            match failure {
                Failure::BadRequest(e) => (400, Some("invalid_request"), e.to_string(), e.label(), None),
                Failure::TwoCredentials => (
                    400,
                    Some("invalid_request"),
                    "more than one credential in the request".into(),
                    "multiple_credentials",
                    None,
                ),
                Failure::NoToken => {
                    let wanted = match self.settings.dpop.as_deref() {
                        None => "a bearer token is required",
                        Some(d) if d.bearer_accepted => "an access token is required (Bearer or DPoP)",
                        Some(_) => "a DPoP-bound access token is required",
                    };
                    (401, None, wanted.into(), "missing_token", None)
                }
                Failure::Mcp(r) => {
                    (r.error.status(), Some("invalid_request"), r.error.to_string(), r.error.label(), None)
                }
                Failure::Token(TokenError::KeysUnavailable)
                | Failure::RemoteKeys { error: TokenError::KeysUnavailable, .. } => (
                    503,
                    Some("temporarily_unavailable"),
                    TokenError::KeysUnavailable.to_string(),
                    TokenError::KeysUnavailable.metric_label(),
                    None,
                ),
                Failure::Limited { exceeded: e, .. } => (
                    429,
                    Some("rate_limited"),
                    format!("limit \"{}\" exceeded: {} requests per {} s", e.id, e.requests, e.window_seconds),
                    "rate_limited",
                    None,
                ),
                Failure::Held { .. } => (
                    429,
                    Some("rate_limited"),
                    "this agent's requests are held after an anomaly".into(),
                    "anomaly_hold",
                    None,
                ),
                Failure::LimitsUnavailable => (
                    503,
                    Some("temporarily_unavailable"),
                    "request limits cannot be counted".into(),
                    "limits_unavailable",
                    None,
                ),
                Failure::RevocationStale => (
                    503,
                    Some("temporarily_unavailable"),
                    "the revocation list for this token's issuer is out of date".into(),
                    "revocation_stale",
                    None,
                ),
                Failure::Revoked { .. } => (
                    401,
                    Some("invalid_token"),
                    TokenError::Revoked.to_string(),
                    TokenError::Revoked.metric_label(),
                    None,
                ),
                Failure::Dpop { error, .. } => {
                    (error.status(), Some(error.code()), error.to_string(), error.metric_label(), None)
                }
                Failure::Token(e) | Failure::RemoteKeys { error: e, .. } => {
                    (401, Some("invalid_token"), e.to_string(), e.metric_label(), None)
                }
                Failure::Forbidden { rule: Some(rule), .. } => (
                    403,
                    Some("insufficient_scope"),
                    format!("denied by rule \"{rule}\""),
                    "denied_by_rule",
                    Some(rule),
                ),
                Failure::Forbidden { rule: None, missing_scope: Some(s), .. } => {
                    (403, Some("insufficient_scope"), format!("the token lacks scope \"{s}\""), "no_rule_allows", None)
                }
                Failure::Forbidden { rule: None, missing_scope: None, .. } => {
                    (403, Some("insufficient_scope"), "no rule allows this request".into(), "no_rule_allows", None)
                }
            };
        if status == 403 && self.settings.policy_denial_status == 404 {
            // Hide what exists: a plain 404, no challenge, no rule, no scope.
            return Denial {
                status: 404,
                headers: vec![("content-type", "application/json".to_owned())],
                body: json_body(&[
                    ("error", "not_found"),
                    ("error_description", "not found"),
                    ("request_id", &request_id),
                ]),
                details: format!("agent_iam.{reason}"),
                reason,
                rule,
                mcp: None,
                verified,
                revoked_by,
            };
        }
        let deciding_rule = rule.clone();
        let rule = rule.filter(|_| self.settings.expose_rule);
        let description = if status == 403 && !self.settings.expose_rule && description.starts_with("denied by rule") {
            "access denied by policy".to_owned()
        } else {
            description
        };
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if status == 401 || status == 403 {
            self.challenges(&mut headers, scheme, error, &description, scope.as_deref());
        }
        if let Some(nonce) = nonce {
            headers.push(("dpop-nonce", nonce));
            // RFC 9449 §8.2: an answer with a nonce is not to be cached.
            headers.push(("cache-control", "no-store".to_owned()));
        }
        if let Some(e) = &exceeded {
            // RFC 9110 §10.2.3, and draft-ietf-httpapi-ratelimit-headers: the policy and what is left of it.
            headers.push(("retry-after", e.retry_after.to_string()));
            headers.push(("ratelimit-policy", format!("\"{}\";q={};w={}", e.id, e.requests, e.window_seconds)));
            headers.push(("ratelimit", format!("\"{}\";r=0;t={}", e.id, e.retry_after)));
        }
        if let Some(seconds) = held_for {
            headers.push(("retry-after", seconds.to_string()));
        }
        let mut fields = vec![
            ("error", error.unwrap_or("missing_token")),
            ("error_description", description.as_str()),
            ("request_id", request_id.as_str()),
        ];
        if let Some(rule) = &rule {
            fields.push(("rule", rule));
        }
        Denial {
            status,
            headers,
            body: json_body(&fields),
            details: format!("agent_iam.{reason}"),
            reason,
            rule: deciding_rule,
            mcp: None,
            verified,
            revoked_by,
        }
    }
}

impl Engine {
    /// The `WWW-Authenticate` challenges of a 401 or 403: `Bearer` (RFC 6750) where some issuer takes bearer
    /// tokens or the request tried one, `DPoP` with the accepted `algs` (RFC 9449 §7.1) where some issuer takes
    /// DPoP. The error goes on the challenge of the scheme the request used, and on no challenge when it
    /// carried no credential (RFC 6750 §3, RFC 9449 §7.2).
    fn challenges(
        &self,
        headers: &mut Vec<(&'static str, String)>,
        scheme: Scheme,
        error: Option<&str>,
        description: &str,
        scope: Option<&str>,
    ) {
        let realm = &self.settings.realm;
        let dpop = self.settings.dpop.as_deref();
        let attempted = if scheme == Scheme::None { None } else { error };
        let error_params = || {
            attempted.map(|error| {
                let mut params = format!("error=\"{error}\", error_description=\"{}\"", challenge_safe(description));
                if let Some(scope) = scope {
                    params.push_str(&format!(", scope=\"{}\"", challenge_safe(scope)));
                }
                params
            })
        };
        // The challenge of the scheme the request used comes first: clients that join the headers into one value
        // read its start (requests-oauth2client retries `use_dpop_nonce` only on a value that starts with DPoP).
        let at = if scheme == Scheme::Dpop { headers.len() } else { usize::MAX };
        if dpop.is_none_or(|d| d.bearer_accepted) || scheme == Scheme::Bearer {
            let challenge = match error_params().filter(|_| scheme != Scheme::Dpop) {
                Some(params) => format!("Bearer realm=\"{realm}\", {params}"),
                None => format!("Bearer realm=\"{realm}\""),
            };
            headers.push(("www-authenticate", challenge));
        }
        if let Some(dpop) = dpop {
            // As RFC 9449 §7.1 writes them: `DPoP algs="..."`, and the error first when there is one.
            let challenge = match error_params().filter(|_| scheme == Scheme::Dpop) {
                Some(params) => format!("DPoP {params}, algs=\"{}\"", dpop.rules.algs()),
                None => format!("DPoP algs=\"{}\"", dpop.rules.algs()),
            };
            headers.insert(at.min(headers.len()), ("www-authenticate", challenge));
            // RFC 9449 §7.1, §8: browsers' scripts may read the challenge and the nonce.
            headers.push(("access-control-expose-headers", "WWW-Authenticate, DPoP-Nonce".to_owned()));
        }
    }
}

/// A flat JSON object of strings, written directly: a denial is on the request path, and building a
/// `serde_json::Value` to print it cost more than the rest of the denial.
pub(super) fn json_body(fields: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(96 + fields.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>());
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, name);
        out.push(':');
        json_string(&mut out, value);
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string (RFC 8259 escapes).
fn json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    // Runs that need no escape are copied whole; every byte that does is ASCII, so each run ends on a
    // character boundary.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if b != b'"' && b != b'\\' && b >= 0x20 {
            continue;
        }
        out.push_str(s.get(run..i).unwrap_or_default());
        run = i + 1;
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out.push_str(s.get(run..).unwrap_or_default());
    out.push('"');
}

/// RFC 6750 §3: `error_description` may not contain `"` or `\`.
fn challenge_safe(description: &str) -> String {
    description.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect()
}
