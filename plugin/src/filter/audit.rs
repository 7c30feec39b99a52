//! The decision and the verified identity in Envoy filter state, for access logs and later filters
//! (`forward.filter_state`). Envoy stores a value written with `proxy_set_property("agent_iam.agent", ...)` as
//! the filter state object `wasm.agent_iam.agent`, which an access log reads with
//! `%FILTER_STATE(wasm.agent_iam.agent:PLAIN)%` and RBAC or Lua filters after this one can match on.
//!
//! Keys: `agent_iam.decision` (`allow`, `deny`, `dry_run_deny`), `agent_iam.reason` (`allowed` or the denial
//! reason, as in metrics), `agent_iam.rule` (the allowing or deciding deny rule), and when the token verified:
//! `agent_iam.agent`, `agent_iam.subject`, `agent_iam.issuer`, `agent_iam.chain` (escaped as the headers are);
//! at an MCP endpoint `agent_iam.mcp_method` and `agent_iam.mcp_name` (the tool, prompt or resource URI).

use super::host;
use crate::engine::{AGENT_HEADER, CHAIN_HEADER, Denial, HeaderValue, ISSUER_HEADER, SUBJECT_HEADER, header_safe};
use crate::request::mcp::McpRequest;

/// Writes one filter state value. A host without filter state refuses it: audit must never stop a request.
fn set(key: &str, value: &str) {
    let _ = host::set_property(key, value);
}

/// The identity headers, as filter state keys.
fn identity(headers: &[(&'static str, HeaderValue)]) {
    for (name, value) in headers {
        let key = match *name {
            AGENT_HEADER => "agent_iam.agent",
            SUBJECT_HEADER => "agent_iam.subject",
            ISSUER_HEADER => "agent_iam.issuer",
            CHAIN_HEADER => "agent_iam.chain",
            _ => continue,
        };
        set(key, value);
    }
}

/// An allowed request (`set`: the identity headers it is forwarded with; `call`: its MCP message).
pub fn allowed(rule: &str, set: &[(&'static str, HeaderValue)], call: Option<&McpRequest>) {
    set_decision("allow", "allowed", Some(rule));
    identity(set);
    mcp(call);
}

/// A refused request: answered, or forwarded in dry-run mode (`dry_run`).
pub fn refused(denial: &Denial, dry_run: bool) {
    set_decision(if dry_run { "dry_run_deny" } else { "deny" }, denial.reason, denial.rule.as_deref());
    identity(&denial.identity);
    mcp(denial.mcp.as_deref());
}

/// The MCP method and what it names (tool, prompt or resource URI), escaped as identity headers are.
fn mcp(call: Option<&McpRequest>) {
    let Some(call) = call else { return };
    if !call.method.is_empty() {
        set("agent_iam.mcp_method", &header_safe(&call.method));
    }
    if let Some(target) = call.target() {
        set("agent_iam.mcp_name", &header_safe(target));
    }
}

fn set_decision(decision: &str, reason: &str, rule: Option<&str>) {
    set("agent_iam.decision", decision);
    set("agent_iam.reason", reason);
    if let Some(rule) = rule {
        set("agent_iam.rule", rule);
    }
}
