//! One OCSF 1.8.0 API Activity event (class 6003) per decision, written as one line of JSON.
//!
//! Mapping (standards notes §3): the agent (current actor) is `actor.app_uid`, the subject it acts for
//! `actor.user.uid`, the issuer `actor.idp.uid`, the token's `jti` `actor.session.uid`, its client id
//! `actor.app_name`; the deciding rule and policy version `policy` and `actor.authorizations`; the request
//! `http_request` (method, canonical path, host; never a credential, never the query); the route labels, path
//! parameters and MCP tool, prompt or resource `resources`; the request id `metadata.correlation_uid` and
//! `api.request.uid`. OCSF 1.8.0 has no field for a delegation chain, the decision's reason label, dry run,
//! recorded claims or the Envoy node: they are under `unmapped` (notes §3.3), whose last member is the
//! tamper-evidence `chain` ([`super::chain`]).

use super::json::{member_bool, member_int, member_str, name, string};
use crate::request::mcp::{Kind, McpRequest};
use crate::token::VerifiedToken;
use std::fmt::Write;

/// What was decided.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Forwarded upstream.
    Allowed {
        /// The allowing rule (empty for a default, such as MCP lifecycle traffic).
        rule: &'a str,
    },
    /// Answered by the plugin.
    Denied {
        /// The status answered.
        status: u16,
        /// The reason label (`no_rule_allows`, `expired`, …).
        reason: &'a str,
        /// The deciding deny rule.
        rule: Option<&'a str>,
    },
    /// Forwarded in dry-run mode although enforcement would have answered.
    DryRun {
        /// The status enforcement would have answered.
        status: u16,
        /// Its reason label.
        reason: &'a str,
        /// Its deciding deny rule.
        rule: Option<&'a str>,
    },
}

impl Outcome<'_> {
    /// `allow`, `deny` or `dry_run` (`unmapped.decision`).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Allowed { .. } => "allow",
            Outcome::Denied { .. } => "deny",
            Outcome::DryRun { .. } => "dry_run",
        }
    }

    /// The deciding rule, if one decided.
    pub fn rule(&self) -> Option<&str> {
        match *self {
            Outcome::Allowed { rule } => Some(rule).filter(|r| !r.is_empty()),
            Outcome::Denied { rule, .. } | Outcome::DryRun { rule, .. } => rule,
        }
    }
}

/// The request as the plugin saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The canonical method.
    pub method: &'a str,
    /// The canonical path, without the query (which may carry a credential).
    pub path: &'a str,
    /// `:authority` without the port.
    pub host: Option<&'a str>,
    /// `x-request-id`.
    pub request_id: Option<&'a str>,
    /// `user-agent`.
    pub user_agent: Option<&'a str>,
    /// The downstream address (Envoy's `source.address`: `ip:port` or `[ip]:port`).
    pub source: Option<&'a str>,
    /// The mTLS peer certificate's URI SAN.
    pub peer: Option<&'a str>,
    /// Envoy's route name.
    pub route: Option<&'a str>,
}

/// Everything one event says.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// When it was decided, milliseconds since the epoch.
    pub time_ms: u64,
    /// What was decided.
    pub outcome: Outcome<'a>,
    /// The request.
    pub request: RequestFacts<'a>,
    /// The verified token, when it verified.
    pub token: Option<&'a VerifiedToken>,
    /// The MCP message, at an MCP endpoint.
    pub mcp: Option<&'a McpRequest>,
    /// The policy's version.
    pub policy_version: Option<&'a str>,
    /// The route labels of the path (`phi`).
    pub labels: &'a [&'a str],
    /// The path parameters under the deciding rule (`patient_id` = `42`).
    pub parameters: &'a [(&'a str, &'a str)],
    /// Claims recorded besides the identity (configuration `audit.claims`).
    pub claims: &'a [String],
    /// `metadata.product.vendor_name`.
    pub vendor: &'a str,
    /// The Envoy node id.
    pub node: Option<&'a str>,
}

const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// OCSF API Activity's activity for a request: MCP reads are Read, a tool call is Other ("Invoke"); plain
/// HTTP by method.
fn activity(f: &Facts<'_>) -> (u8, &'static str) {
    if let Some(call) = f.mcp {
        return match call.method.as_str() {
            "tools/call" => (99, "Invoke"),
            m if m.ends_with("/list") || m == "resources/read" || m == "prompts/get" => (2, "Read"),
            _ => (99, "Other"),
        };
    }
    match f.request.method {
        "GET" | "HEAD" => (2, "Read"),
        "POST" => (1, "Create"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// Severity: an allowed request is informational; a refusal by how much it says about the caller.
fn severity(outcome: &Outcome<'_>) -> (u8, &'static str) {
    match *outcome {
        Outcome::Allowed { .. } => (1, "Informational"),
        Outcome::DryRun { .. } => (2, "Low"),
        Outcome::Denied { status, .. } => match status {
            400 | 404 | 405 | 413 => (2, "Low"),
            401 | 403 => (3, "Medium"),
            _ => (4, "High"),
        },
    }
}

/// `(action_id, action, disposition_id, disposition)` of the security-control profile.
fn action(outcome: &Outcome<'_>) -> (u8, &'static str, u8, &'static str) {
    match *outcome {
        Outcome::Allowed { .. } => (1, "Allowed", 1, "Allowed"),
        // Forwarded, and what enforcement would have done is logged.
        Outcome::DryRun { .. } => (3, "Observed", 17, "Logged"),
        Outcome::Denied { status, .. } => match status {
            401 => (2, "Denied", 26, "Unauthorized"),
            400 | 405 | 413 => (2, "Denied", 25, "Rejected"),
            503 => (2, "Denied", 27, "Error"),
            _ => (2, "Denied", 2, "Blocked"),
        },
    }
}

/// Splits Envoy's `ip:port` / `[ipv6]:port`.
fn split_address(address: &str) -> (&str, Option<u16>) {
    if let Some(rest) = address.strip_prefix('[')
        && let Some((ip, port)) = rest.split_once("]:")
    {
        return (ip, port.parse().ok());
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') => (ip, port.parse().ok()),
        _ => (address, None),
    }
}

/// Writes the event up to and including the opening of `unmapped` and its members, without closing it: the
/// chain appends its own member and closes both objects. `uid` is the event's id.
pub fn write_open(f: &Facts<'_>, uid: &str, out: &mut String) {
    let (activity_id, activity_name) = activity(f);
    let (severity_id, severity_name) = severity(&f.outcome);
    let (action_id, action_name, disposition_id, disposition_name) = action(&f.outcome);
    let allowed = matches!(f.outcome, Outcome::Allowed { .. } | Outcome::DryRun { .. });
    let status_code = match f.outcome {
        Outcome::Denied { status, .. } => status,
        _ => 0,
    };
    let _ = write!(
        out,
        "{{\"class_uid\":6003,\"category_uid\":6,\"activity_id\":{activity_id},\"activity_name\":\"{activity_name}\",\"type_uid\":{},\"time\":{},\"severity_id\":{severity_id},\"severity\":\"{severity_name}\"",
        6003 * 100 + u32::from(activity_id),
        f.time_ms,
    );
    if allowed {
        out.push_str(",\"status_id\":1,\"status\":\"Success\"");
    } else {
        let _ = write!(out, ",\"status_id\":2,\"status\":\"Failure\",\"status_code\":\"{status_code}\"");
    }
    match f.outcome {
        Outcome::Allowed { .. } => {}
        Outcome::Denied { reason, .. } => member_str(out, "status_detail", reason),
        Outcome::DryRun { status, reason, .. } => {
            member_str(out, "status_detail", &format!("dry run: enforcement would answer {status} ({reason})"))
        }
    }
    let _ = write!(
        out,
        ",\"action_id\":{action_id},\"action\":\"{action_name}\",\"disposition_id\":{disposition_id},\"disposition\":\"{disposition_name}\",\"is_alert\":{}",
        matches!(f.outcome, Outcome::Denied { status: 403, .. })
    );

    // metadata
    out.push_str(",\"metadata\":{\"version\":\"1.8.0\",\"profiles\":[\"security_control\"]");
    member_str(out, "uid", uid);
    if let Some(id) = f.request.request_id {
        member_str(out, "correlation_uid", id);
    }
    out.push_str(",\"log_name\":\"agent-iam-audit\",\"product\":{\"name\":\"agent-iam\"");
    member_str(out, "vendor_name", f.vendor);
    let _ = write!(out, ",\"version\":\"{PRODUCT_VERSION}\"}}}}");

    write_actor(f, out);
    write_api(f, out);

    // src_endpoint: required; the downstream address, else what is known of the peer.
    out.push_str(",\"src_endpoint\":{");
    match (f.request.source, f.request.peer) {
        (Some(address), peer) => {
            let (ip, port) = split_address(address);
            name(out, "ip");
            string(out, ip);
            if let Some(port) = port {
                member_int(out, "port", port);
            }
            if let Some(peer) = peer {
                member_str(out, "svc_name", peer);
            }
        }
        (None, Some(peer)) => {
            name(out, "svc_name");
            string(out, peer);
            member_str(out, "name", peer);
        }
        (None, None) => out.push_str("\"name\":\"unknown\""),
    }
    out.push('}');

    // http_request: never a header value that could carry a credential, never the query.
    out.push_str(",\"http_request\":{");
    name(out, "http_method");
    string(out, f.request.method);
    out.push_str(",\"url\":{");
    name(out, "path");
    string(out, f.request.path);
    if let Some(host) = f.request.host {
        member_str(out, "hostname", host);
    }
    out.push('}');
    // The request id is `api.request.uid` and `metadata.correlation_uid` already.
    if let Some(agent) = f.request.user_agent {
        member_str(out, "user_agent", agent);
    }
    out.push('}');
    if let Outcome::Denied { status, .. } = f.outcome {
        let _ = write!(out, ",\"http_response\":{{\"code\":{status}}}");
    }

    write_resources(f, out);

    if let Some(rule) = f.outcome.rule() {
        out.push_str(",\"policy\":{");
        name(out, "uid");
        string(out, rule);
        if let Some(v) = f.policy_version {
            member_str(out, "version", v);
        }
        out.push('}');
    }

    write_unmapped_open(f, out);
}

fn write_actor(f: &Facts<'_>, out: &mut String) {
    out.push_str(",\"actor\":{");
    let Some(token) = f.token else {
        // Required, and one of its members must be there: no verified identity.
        out.push_str("\"app_name\":\"unverified\"");
        write_authorizations(f, out);
        out.push('}');
        return;
    };
    name(out, "app_uid");
    string(out, token.agent());
    if let Some(client) = token.claims.get("client_id").and_then(|c| c.as_str()) {
        member_str(out, "app_name", client);
    }
    out.push_str(",\"user\":{");
    name(out, "uid");
    string(out, token.subject());
    // The subject is a person unless it is the agent itself (a workload acting on its own).
    let _ = write!(out, ",\"type_id\":{}}}", if token.chain.depth() > 0 { 1 } else { 4 });
    out.push_str(",\"idp\":{");
    name(out, "uid");
    string(out, &token.issuer);
    out.push('}');
    if let Some(jti) = token.claims.get("jti").and_then(|c| c.as_str()) {
        out.push_str(",\"session\":{");
        name(out, "uid");
        string(out, jti);
        out.push('}');
    }
    write_authorizations(f, out);
    out.push('}');
}

fn write_authorizations(f: &Facts<'_>, out: &mut String) {
    let decision = match f.outcome {
        Outcome::Allowed { .. } => "Allowed",
        Outcome::Denied { .. } => "Denied",
        Outcome::DryRun { .. } => "Allowed (dry run)",
    };
    // The deciding rule is the event's `policy`.
    out.push_str(",\"authorizations\":[{");
    name(out, "decision");
    string(out, decision);
    out.push_str("}]");
}

fn write_api(f: &Facts<'_>, out: &mut String) {
    out.push_str(",\"api\":{");
    name(out, "operation");
    match f.mcp {
        Some(call) if !call.method.is_empty() => string(out, &call.method),
        _ => string(out, f.request.method),
    }
    if let Some(route) = f.request.route {
        out.push_str(",\"service\":{");
        name(out, "name");
        string(out, route);
        out.push('}');
    }
    if let Some(id) = f.request.request_id {
        out.push_str(",\"request\":{");
        name(out, "uid");
        string(out, id);
        out.push('}');
    }
    if let Outcome::Denied { status, reason, .. } = f.outcome {
        let _ = write!(out, ",\"response\":{{\"code\":{status}");
        member_str(out, "error", reason);
        out.push('}');
    }
    out.push('}');
}

fn write_resources(f: &Facts<'_>, out: &mut String) {
    let mcp_target = f.mcp.and_then(|c| {
        let kind = match c.method.as_str() {
            "tools/call" => "mcp.tool",
            "prompts/get" => "mcp.prompt",
            _ if c.uri.is_some() => "mcp.resource",
            _ => return None,
        };
        c.target().map(|t| (kind, t))
    });
    if f.labels.is_empty() && f.parameters.is_empty() && mcp_target.is_none() {
        return;
    }
    out.push_str(",\"resources\":[");
    let mut first = true;
    let mut open = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push('{');
    };
    for (param, value) in f.parameters {
        open(out);
        name(out, "uid");
        string(out, value);
        member_str(out, "name", param);
        out.push_str(",\"type\":\"path_parameter\",\"role_id\":1}");
    }
    if let Some((kind, target)) = mcp_target {
        open(out);
        name(out, "uid");
        string(out, target);
        member_str(out, "name", target);
        member_str(out, "type", kind);
        out.push_str(",\"role_id\":1}");
    }
    for label in f.labels {
        open(out);
        name(out, "uid");
        string(out, label);
        member_str(out, "name", label);
        out.push_str(",\"type\":\"route_label\",\"role_id\":4}");
    }
    out.push(']');
}

fn write_unmapped_open(f: &Facts<'_>, out: &mut String) {
    out.push_str(",\"unmapped\":{");
    name(out, "decision");
    string(out, f.outcome.label());
    match f.outcome {
        Outcome::Allowed { .. } => {}
        Outcome::Denied { reason, .. } | Outcome::DryRun { reason, .. } => member_str(out, "reason", reason),
    }
    if matches!(f.outcome, Outcome::DryRun { .. }) {
        member_bool(out, "dry_run", true);
    }
    if let Some(token) = f.token
        && token.chain.depth() > 0
    {
        // The whole delegation chain, current actor first (OCSF 1.8.0 has no field for it).
        out.push_str(",\"act_chain\":[");
        for (i, actor) in token.chain.actors().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, actor.sub());
        }
        out.push(']');
    }
    if let (Some(token), false) = (f.token, f.claims.is_empty()) {
        out.push_str(",\"claims\":{");
        let mut first = true;
        for claim in f.claims {
            let Some(value) = token.claims.get(claim) else { continue };
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            string(out, claim);
            out.push(':');
            // Claims are JSON already; written compact (no newline can appear in compact JSON).
            out.push_str(&value.to_value().to_string());
        }
        out.push('}');
    }
    if let Some(call) = f.mcp {
        out.push_str(",\"mcp\":{");
        name(out, "method");
        string(out, &call.method);
        if let Some(target) = call.target() {
            member_str(out, "target", target);
        }
        let kind = match call.kind {
            Kind::Request { .. } => "request",
            Kind::Notification => "notification",
            Kind::Response { .. } => "response",
            Kind::Session => "session",
        };
        member_str(out, "kind", kind);
        out.push('}');
    }
    if let Some(node) = f.node {
        out.push_str(",\"envoy\":{");
        name(out, "node");
        string(out, node);
        out.push('}');
    }
}
