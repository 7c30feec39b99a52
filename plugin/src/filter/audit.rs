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
use super::host::MapType;
use super::{Shared, now_ms};
use crate::engine::Verdict;
use crate::engine::{AGENT_HEADER, CHAIN_HEADER, Denial, HeaderValue, ISSUER_HEADER, SUBJECT_HEADER, header_safe};
use crate::request::Connection;
use crate::request::mcp::McpRequest;
use std::cell::RefCell;
use std::rc::Rc;

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
    identity(denial.identity());
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

/// This VM's audit trail under the current configuration.
pub(super) struct Trail {
    chain: crate::audit::Chain,
    /// The Envoy node id, read once.
    node: Option<String>,
}

/// A new chain for a new configuration (none without `audit`), naming the VM's previous chain.
pub(super) fn start_trail(previous: Option<&Trail>, engine: &crate::engine::Engine) -> Option<Trail> {
    engine.settings().audit.as_ref()?;
    let link = previous.and_then(|t| t.chain.link());
    let node = previous.and_then(|t| t.node.clone()).or_else(|| super::property_text(&["node", "id"]));
    Some(Trail { chain: crate::audit::Chain::new(chain_id(), link), node })
}

/// 128 random bits as hex: the process's hash seed (WASI `random_get`, which Envoy provides) mixed with the
/// time and a counter, so two VMs or two configurations never share an id.
fn chain_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    thread_local!(static COUNT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    let count = COUNT.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let now = super::now_ms().unwrap_or(0);
    let mut halves = [0u64; 2];
    for (i, half) in halves.iter_mut().enumerate() {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(now);
        h.write_u64(count);
        h.write_usize(i);
        *half = h.finish();
    }
    format!("{:016x}{:016x}", halves[0], halves[1])
}

/// Longest user agent recorded: a client chooses it, and the event should stay a log line.
const MAX_USER_AGENT: usize = 256;

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// What a decision's event needs besides the verdict.
pub(super) struct Context<'a> {
    pub engine: &'a crate::engine::Engine,
    pub headers: &'a crate::request::Headers<'a>,
    pub conn: crate::request::Connection<'a>,
    pub now_ms: u64,
}

/// Writes the decision's audit event to filter state, when the configuration records it.
/// What else an event notes of its request: the kind of revocation that refused it, the anomaly signals it
/// set off.
pub(super) struct Noted<'a> {
    pub revoked_by: Option<&'a str>,
    pub anomalies: &'a [&'a str],
}

pub(super) fn event(
    trail: &mut Trail,
    cx: &Context<'_>,
    outcome: crate::audit::Outcome<'_>,
    verified: Option<&crate::engine::Verified>,
    mcp: Option<&McpRequest>,
    noted: Noted<'_>,
) {
    use crate::audit::{Facts, RequestFacts};
    let engine = cx.engine;
    let Some(settings) = engine.settings().audit.as_ref() else { return };
    let policy = engine.policy();
    if !settings.records(&outcome, policy.audits(outcome.rule())) {
        return;
    }
    let header =
        |name: &str| cx.headers.iter().find(|(n, _)| *n == name).and_then(|(_, v)| std::str::from_utf8(v).ok());
    let raw_method = header(":method").unwrap_or_default();
    let method = crate::request::canonical_method(raw_method).unwrap_or(std::borrow::Cow::Borrowed(raw_method));
    let raw_path = header(":path").unwrap_or_default();
    // Never the query: it may carry a credential.
    let canonical = crate::request::canonical_path_with(raw_path, engine.settings().path_parameters);
    let path = match &canonical {
        Ok(c) => &*c.path,
        Err(_) => raw_path.split('?').next().unwrap_or_default(),
    };
    // The host as policy saw it; an authority the request was refused for is recorded as sent (escaped).
    let authority = header(":authority");
    let canonical_host = authority.map(crate::request::canonical_host);
    let host = match (&canonical_host, authority) {
        (Some(Ok(h)), _) => Some(&**h),
        (_, raw) => raw,
    };
    let source = super::property_text(&["source", "address"]);
    let labels = policy.labels_of(path);
    let parameters = policy.path_parameters(outcome.rule(), path);
    let facts = Facts {
        time_ms: cx.now_ms,
        outcome,
        request: RequestFacts {
            method: &method,
            path,
            host,
            request_id: header("x-request-id"),
            user_agent: header("user-agent").map(|ua| truncate(ua, MAX_USER_AGENT)),
            source: source.as_deref(),
            peer: cx.conn.peer.uri_san,
            route: cx.conn.route,
        },
        token: verified.map(|v| v.token()),
        mcp,
        policy_version: policy.version(),
        labels: &labels,
        parameters: &parameters,
        claims: &settings.claims,
        vendor: &settings.vendor,
        node: trail.node.as_deref(),
        revoked_by: noted.revoked_by,
        anomalies: noted.anomalies,
    };
    let line = crate::audit::line(settings, &mut trail.chain, &facts);
    set(crate::audit::FILTER_STATE_KEY, &line);
}

/// Writes the audit event of a verdict that decides (an allow waiting for its body, a request held for keys
/// and a served document are not decisions yet, or at all).
pub(super) fn verdict_event(shared: &Rc<RefCell<Shared>>, cx: &Context<'_>, verdict: &Verdict) {
    use crate::audit::Outcome;
    if cx.engine.settings().audit.is_none() {
        return;
    }
    let (outcome, verified, mcp, revoked_by) = match verdict {
        Verdict::Allow { await_body: Some(_), .. } => return,
        Verdict::Allow { rule, dry_run: None, verified, mcp, .. } => {
            (Outcome::Allowed { rule }, verified.as_ref(), mcp.as_deref(), None)
        }
        Verdict::Allow { dry_run: Some(d), verified, mcp, .. } => (
            Outcome::DryRun { status: d.status, reason: d.reason, rule: d.rule.as_deref() },
            verified.as_ref(),
            mcp.as_deref(),
            d.revoked_by,
        ),
        Verdict::Deny(d) => (
            Outcome::Denied { status: d.status, reason: d.reason, rule: d.rule.as_deref() },
            d.verified.as_ref(),
            d.mcp.as_deref(),
            d.revoked_by,
        ),
        Verdict::WaitForKeys { .. } | Verdict::UnknownKey { .. } | Verdict::Answer(_) => return,
    };
    let anomalies = super::anomaly::take_signals();
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    if let Some(trail) = s.audit.as_mut() {
        let noted = Noted { revoked_by: revoked_by.map(|k| k.label()), anomalies: &anomalies };
        event(trail, cx, outcome, verified, mcp, noted);
    }
}

/// The audit event of a refusal decided without a verdict (a held request whose keys never came), read from
/// the effective stream's headers.
pub(super) fn refusal_event(shared: &Rc<RefCell<Shared>>, denial: &Denial, dry_run: bool) {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return };
    if engine.settings().audit.is_none() {
        return;
    }
    let Ok(buffer) = host::header_map(MapType::HttpRequestHeaders) else { return };
    let Ok(headers) = crate::header_map::parse(&buffer) else { return };
    let cx = Context { engine: &engine, headers: &headers, conn: Connection::default(), now_ms: now_ms().unwrap_or(0) };
    let outcome = if dry_run {
        crate::audit::Outcome::DryRun { status: denial.status, reason: denial.reason, rule: denial.rule.as_deref() }
    } else {
        crate::audit::Outcome::Denied { status: denial.status, reason: denial.reason, rule: denial.rule.as_deref() }
    };
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    if let Some(trail) = s.audit.as_mut() {
        let noted = Noted { revoked_by: denial.revoked_by.map(|k| k.label()), anomalies: &[] };
        event(trail, &cx, outcome, denial.verified.as_ref(), denial.mcp.as_deref(), noted);
    }
}
