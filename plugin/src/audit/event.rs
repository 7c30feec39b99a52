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

use super::json::{contents, member, needs_escape, string, uint};
use crate::request::mcp::{Kind, McpRequest};
use crate::token::VerifiedToken;

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
    /// For a request refused by a revocation, its kind (`agent`, `jti`, ...: `unmapped.revoked_by`).
    pub revoked_by: Option<&'a str>,
    /// The anomaly signals this request set off (`rate`, `probing`, ...: `unmapped.anomalies`).
    pub anomalies: &'a [&'a str],
}

/// OCSF API Activity's class and activity for a request, the event's first members (`activity_id`, its caption,
/// `type_uid` = 600300 + activity): MCP reads are Read, a tool call is Other ("Invoke"); plain HTTP by method.
fn activity(f: &Facts<'_>) -> &'static str {
    macro_rules! head {
        ($id:literal, $name:literal) => {
            concat!(
                "{\"class_uid\":6003,\"category_uid\":6,\"activity_id\":",
                $id,
                ",\"activity_name\":\"",
                $name,
                "\",\"type_uid\":60030",
                $id
            )
        };
    }
    // `type_uid` is 600300 + a one-digit id: `60030` and the id.
    const READ: &str = head!("2", "Read");
    const OTHER: &str =
        "{\"class_uid\":6003,\"category_uid\":6,\"activity_id\":99,\"activity_name\":\"Other\",\"type_uid\":600399";
    const INVOKE: &str =
        "{\"class_uid\":6003,\"category_uid\":6,\"activity_id\":99,\"activity_name\":\"Invoke\",\"type_uid\":600399";
    if let Some(call) = f.mcp {
        return match call.method.as_str() {
            "tools/call" => INVOKE,
            m if m.ends_with("/list") || m == "resources/read" || m == "prompts/get" => READ,
            _ => OTHER,
        };
    }
    match f.request.method {
        "GET" | "HEAD" => READ,
        "POST" => head!("1", "Create"),
        "PUT" | "PATCH" => head!("3", "Update"),
        "DELETE" => head!("4", "Delete"),
        _ => OTHER,
    }
}

/// Severity: an allowed request is informational; a refusal by how much it says about the caller.
fn severity(outcome: &Outcome<'_>) -> &'static str {
    const LOW: &str = ",\"severity_id\":2,\"severity\":\"Low\"";
    match *outcome {
        Outcome::Allowed { .. } => ",\"severity_id\":1,\"severity\":\"Informational\"",
        Outcome::DryRun { .. } => LOW,
        Outcome::Denied { status, .. } => match status {
            400 | 404 | 405 | 413 => LOW,
            401 | 403 => ",\"severity_id\":3,\"severity\":\"Medium\"",
            _ => ",\"severity_id\":4,\"severity\":\"High\"",
        },
    }
}

/// `action_id`, `action`, `disposition_id`, `disposition` of the security-control profile, and `is_alert`.
fn action(outcome: &Outcome<'_>) -> &'static str {
    macro_rules! action {
        ($id:literal, $name:literal, $disposition_id:literal, $disposition:literal, $alert:literal) => {
            concat!(
                ",\"action_id\":",
                $id,
                ",\"action\":\"",
                $name,
                "\",\"disposition_id\":",
                $disposition_id,
                ",\"disposition\":\"",
                $disposition,
                "\",\"is_alert\":",
                $alert
            )
        };
    }
    match *outcome {
        Outcome::Allowed { .. } => action!("1", "Allowed", "1", "Allowed", "false"),
        // Forwarded, and what enforcement would have done is logged.
        Outcome::DryRun { .. } => action!("3", "Observed", "17", "Logged", "false"),
        Outcome::Denied { status, .. } => match status {
            401 => action!("2", "Denied", "26", "Unauthorized", "false"),
            400 | 405 | 413 => action!("2", "Denied", "25", "Rejected", "false"),
            503 => action!("2", "Denied", "27", "Error", "false"),
            403 => action!("2", "Denied", "2", "Blocked", "true"),
            _ => action!("2", "Denied", "2", "Blocked", "false"),
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
    write(f, |out| string(out, uid), out);
}

/// [`write_open`], the event's id (`metadata.uid`, a JSON string) written by `uid`. Answers where the event's
/// stable part ends: everything before it follows from the configuration, the token, the outcome, the method
/// and the deciding rule, so that successive events of one agent begin alike and the chain hashes that part
/// once ([`super::chain`]). Members are in that order (JSON objects have none); `unmapped` stays last.
pub(super) fn write(f: &Facts<'_>, uid: impl FnOnce(&mut String), out: &mut String) -> usize {
    // Each run of constant text is one `push_str`: the members that follow from the outcome and the activity
    // are whole static strings.
    out.push_str(activity(f));
    out.push_str(severity(&f.outcome));
    match f.outcome {
        Outcome::Allowed { .. } => out.push_str(",\"status_id\":1,\"status\":\"Success\""),
        Outcome::Denied { status, reason, .. } => {
            out.push_str(",\"status_id\":2,\"status\":\"Failure\",\"status_code\":\"");
            uint(out, u64::from(status));
            out.push('"');
            member(out, ",\"status_detail\":\"", reason);
        }
        Outcome::DryRun { status, reason, .. } => {
            out.push_str(
                ",\"status_id\":1,\"status\":\"Success\",\"status_detail\":\"dry run: enforcement would answer ",
            );
            uint(out, u64::from(status));
            out.push_str(" (");
            contents(out, reason);
            out.push_str(")\"");
        }
    }
    out.push_str(action(&f.outcome));

    write_actor(f, out);

    if let Some(rule) = f.outcome.rule() {
        member(out, ",\"policy\":{\"uid\":\"", rule);
        if let Some(v) = f.policy_version {
            member(out, ",\"version\":\"", v);
        }
        out.push('}');
    }

    // metadata, its event id and the request id last: the stable part ends with the id's name.
    member(
        out,
        ",\"metadata\":{\"version\":\"1.8.0\",\"profiles\":[\"security_control\"],\"log_name\":\"agent-iam-audit\",\"product\":{\"name\":\"agent-iam\",\"vendor_name\":\"",
        f.vendor,
    );
    out.push_str(concat!(",\"version\":\"", env!("CARGO_PKG_VERSION"), "\"},\"uid\":"));
    let stable = out.len();
    uid(out);
    if let Some(id) = f.request.request_id {
        member(out, ",\"correlation_uid\":\"", id);
    }
    out.push_str("},\"time\":");
    uint(out, f.time_ms);

    write_api(f, out);

    // src_endpoint: required; the downstream address, else what is known of the peer.
    match (f.request.source, f.request.peer) {
        (Some(address), peer) => {
            let (ip, port) = split_address(address);
            member(out, ",\"src_endpoint\":{\"ip\":\"", ip);
            if let Some(port) = port {
                out.push_str(",\"port\":");
                uint(out, u64::from(port));
            }
            if let Some(peer) = peer {
                member(out, ",\"svc_name\":\"", peer);
            }
            out.push('}');
        }
        (None, Some(peer)) => {
            member(out, ",\"src_endpoint\":{\"svc_name\":\"", peer);
            member(out, ",\"name\":\"", peer);
            out.push('}');
        }
        (None, None) => out.push_str(",\"src_endpoint\":{\"name\":\"unknown\"}"),
    }

    // http_request: never a header value that could carry a credential, never the query.
    member(out, ",\"http_request\":{\"http_method\":\"", f.request.method);
    member(out, ",\"url\":{\"path\":\"", f.request.path);
    if let Some(host) = f.request.host {
        member(out, ",\"hostname\":\"", host);
    }
    out.push('}');
    // The request id is `api.request.uid` and `metadata.correlation_uid` already.
    if let Some(agent) = f.request.user_agent {
        member(out, ",\"user_agent\":\"", agent);
    }
    out.push('}');
    if let Outcome::Denied { status, .. } = f.outcome {
        out.push_str(",\"http_response\":{\"code\":");
        uint(out, u64::from(status));
        out.push('}');
    }

    write_resources(f, out);
    write_unmapped_open(f, out);
    stable
}

fn write_actor(f: &Facts<'_>, out: &mut String) {
    let authorizations = match f.outcome {
        Outcome::Allowed { .. } => ",\"authorizations\":[{\"decision\":\"Allowed\"}]}",
        Outcome::Denied { .. } => ",\"authorizations\":[{\"decision\":\"Denied\"}]}",
        Outcome::DryRun { .. } => ",\"authorizations\":[{\"decision\":\"Allowed (dry run)\"}]}",
    };
    let Some(token) = f.token else {
        // Required, and one of its members must be there: no verified identity.
        out.push_str(",\"actor\":{\"app_name\":\"unverified\"");
        out.push_str(authorizations);
        return;
    };
    member(out, ",\"actor\":{\"app_uid\":\"", token.agent());
    if let Some(client) = token.claims.get("client_id").and_then(|c| c.as_str()) {
        member(out, ",\"app_name\":\"", client);
    }
    member(out, ",\"user\":{\"uid\":\"", token.subject());
    // The subject is a person unless it is the agent itself (a workload acting on its own).
    let idp = if token.chain.depth() > 0 {
        ",\"type_id\":1},\"idp\":{\"uid\":\""
    } else {
        ",\"type_id\":4},\"idp\":{\"uid\":\""
    };
    member(out, idp, &token.issuer);
    out.push('}');
    if let Some(jti) = token.claims.get("jti").and_then(|c| c.as_str()) {
        member(out, ",\"session\":{\"uid\":\"", jti);
        out.push('}');
    }
    // The deciding rule is the event's `policy`.
    out.push_str(authorizations);
}

fn write_api(f: &Facts<'_>, out: &mut String) {
    let operation = match f.mcp {
        Some(call) if !call.method.is_empty() => &call.method,
        _ => f.request.method,
    };
    member(out, ",\"api\":{\"operation\":\"", operation);
    if let Some(route) = f.request.route {
        member(out, ",\"service\":{\"name\":\"", route);
        out.push('}');
    }
    if let Some(id) = f.request.request_id {
        member(out, ",\"request\":{\"uid\":\"", id);
        out.push('}');
    }
    if let Outcome::Denied { status, reason, .. } = f.outcome {
        out.push_str(",\"response\":{\"code\":");
        uint(out, u64::from(status));
        member(out, ",\"error\":\"", reason);
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
    // `,"resources":[` before the first, `,` between.
    let mut open = ",\"resources\":[{\"uid\":\"";
    for (param, value) in f.parameters {
        member(out, open, value);
        open = ",{\"uid\":\"";
        member(out, ",\"name\":\"", param);
        out.push_str(",\"type\":\"path_parameter\",\"role_id\":1}");
    }
    if let Some((kind, target)) = mcp_target {
        member(out, open, target);
        open = ",{\"uid\":\"";
        member(out, ",\"name\":\"", target);
        member(out, ",\"type\":\"", kind);
        out.push_str(",\"role_id\":1}");
    }
    for label in f.labels {
        member(out, open, label);
        open = ",{\"uid\":\"";
        member(out, ",\"name\":\"", label);
        out.push_str(",\"type\":\"route_label\",\"role_id\":4}");
    }
    out.push(']');
}

fn write_unmapped_open(f: &Facts<'_>, out: &mut String) {
    match f.outcome {
        Outcome::Allowed { .. } => out.push_str(",\"unmapped\":{\"decision\":\"allow\""),
        Outcome::Denied { reason, .. } => {
            out.push_str(",\"unmapped\":{\"decision\":\"deny\"");
            member(out, ",\"reason\":\"", reason);
        }
        Outcome::DryRun { reason, .. } => {
            out.push_str(",\"unmapped\":{\"decision\":\"dry_run\"");
            member(out, ",\"reason\":\"", reason);
            out.push_str(",\"dry_run\":true");
        }
    }
    if let Some(kind) = f.revoked_by {
        member(out, ",\"revoked_by\":\"", kind);
    }
    if !f.anomalies.is_empty() {
        let mut open = ",\"anomalies\":[\"";
        for signal in f.anomalies {
            member(out, open, signal);
            open = ",\"";
        }
        out.push(']');
    }
    // The key a DPoP-bound token was presented with (its proof was checked against it): RFC 7638 thumbprint.
    if let Some(token) = f.token
        && let Ok(Some(jkt)) = crate::token::claims::bound_key(&token.claims)
    {
        member(out, ",\"dpop_jkt\":\"", &jkt);
    }
    if let Some(token) = f.token
        && token.chain.depth() > 0
    {
        // The whole delegation chain, current actor first (OCSF 1.8.0 has no field for it).
        let mut open = ",\"act_chain\":[\"";
        for actor in token.chain.actors() {
            member(out, open, actor.sub());
            open = ",\"";
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
            // Claims are JSON already; written compact (no newline can appear in compact JSON). A string that
            // needs no escape is the same text as serde_json writes it (which escapes a subset of what
            // `needs_escape` finds).
            match value.as_str() {
                Some(s) if !needs_escape(s.as_bytes()) => {
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
                _ => out.push_str(&value.to_value().to_string()),
            }
        }
        out.push('}');
    }
    if let Some(call) = f.mcp {
        member(out, ",\"mcp\":{\"method\":\"", &call.method);
        if let Some(target) = call.target() {
            member(out, ",\"target\":\"", target);
        }
        out.push_str(match call.kind {
            Kind::Request { .. } => ",\"kind\":\"request\"}",
            Kind::Notification => ",\"kind\":\"notification\"}",
            Kind::Response { .. } => ",\"kind\":\"response\"}",
            Kind::Session => ",\"kind\":\"session\"}",
        });
    }
    if let Some(node) = f.node {
        member(out, ",\"envoy\":{\"node\":\"", node);
        out.push('}');
    }
}
