//! What the filter records of a decision (metrics, filter state) and the outcomes it decides itself: a request
//! held for its issuer's key set, answered when none comes in time or after an unknown key's refetch, or, in
//! dry-run mode, forwarded unverified and marked.

use super::host::{self, LogLevel, MapType};
use super::metrics::{self, Counter};
use super::{Applied, Shared, Waiter, audit, log, reply};
use crate::engine::{DRY_RUN_HEADER, Denial, Engine, Verdict};
use std::cell::RefCell;
use std::rc::Rc;

/// Dry-run mode, a held request whose keys never came: forward it without any identity header but the
/// dry-run mark.
pub(super) fn forward_unverified(mark: &str, resume: bool) {
    let buffer = host::header_map(MapType::HttpRequestHeaders).unwrap_or_default();
    let headers = crate::header_map::parse(&buffer).unwrap_or_default();
    for (name, _) in headers.iter().filter(|(n, _)| crate::engine::is_identity_header(n)) {
        let _ = host::remove_header(MapType::HttpRequestHeaders, name);
    }
    let _ = host::set_header(MapType::HttpRequestHeaders, DRY_RUN_HEADER, mark);
    if resume && host::resume_request().is_err() {
        log(LogLevel::Error, "agent-iam: a held request could not be resumed");
    }
}

/// Answers a denial decided in the filter itself (an unknown key after the refetch, no key set in time). In
/// dry-run mode the request is forwarded instead, marked, without any identity header; `held`: the request
/// was paused and must be resumed.
pub(super) fn refuse(shared: &Rc<RefCell<Shared>>, denial: &Denial, dry_run: bool, held: bool) -> Applied {
    audit_refused(shared, denial, dry_run);
    if let Ok(mut s) = shared.try_borrow_mut() {
        if dry_run {
            s.metrics.count_decision(Counter::DryRunDeny, 1);
            s.metrics.count_denied(denial.reason);
        } else {
            count_denial(&mut s.metrics, denial);
        }
    }
    if !dry_run {
        reply(denial);
        return Applied::Stopped;
    }
    log(
        LogLevel::Info,
        &format!(
            "agent-iam: dry run: forwarding a request enforcement would answer {} ({})",
            denial.status, denial.details
        ),
    );
    forward_unverified(&format!("{} {}", denial.status, denial.reason), held);
    Applied::Continue
}

/// Records a refusal the filter decided itself (no key set in time, an unknown key after the refetch) in
/// filter state, when configured.
pub(super) fn audit_refused(shared: &Rc<RefCell<Shared>>, denial: &Denial, dry_run: bool) {
    super::audit::refusal_event(shared, denial, dry_run);
    let enabled = shared.try_borrow().ok().and_then(|s| s.engine.clone()).is_some_and(|e| e.settings().filter_state);
    if enabled {
        audit::refused(denial, dry_run);
    }
}

/// Counts a decision: by result, by deciding rule, by denial reason, and the token cache's hits and misses.
pub(super) fn record(
    shared: &Rc<RefCell<Shared>>,
    engine: &Engine,
    verdict: &Verdict,
    hits_before: u64,
    misses_before: u64,
    now_ms: u64,
) {
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    let m = &mut s.metrics;
    let (hits, misses) = engine.cache_stats();
    m.count_decision(Counter::CacheHit, hits.saturating_sub(hits_before));
    m.count_decision(Counter::CacheMiss, misses.saturating_sub(misses_before));
    match verdict {
        // Counted when the body is decided.
        Verdict::Allow { await_body: Some(_), .. } => {}
        Verdict::Allow { rule, dry_run: None, mcp, .. } => {
            m.count_decision(Counter::Allow, 1);
            m.count_rule(rule, true);
            if let Some(call) = mcp {
                m.count_mcp(call, true);
            }
        }
        Verdict::Allow { dry_run: Some(d), .. } => {
            m.count_decision(Counter::DryRunDeny, 1);
            m.count_denied(d.reason);
        }
        Verdict::Deny(d) => count_denial(m, d),
        // Counted when they are finally answered; a served document is no decision.
        Verdict::WaitForKeys { .. } | Verdict::UnknownKey { .. } | Verdict::Answer(_) => {}
    }
    m.flush(now_ms, false);
}

pub(super) fn count_denial(m: &mut metrics::Metrics, d: &Denial) {
    m.count_decision(Counter::Deny, 1);
    m.count_denied(d.reason);
    if let Some(call) = &d.mcp {
        m.count_mcp(call, false);
    }
    if let Some(rule) = &d.rule {
        m.count_rule(rule, false);
    }
    if let Some(kind) = d.revoked_by {
        m.count(&format!("agent_iam.revocation.refused.{}", kind.label()), 1);
    }
}

/// The stream a held request belongs to.
pub(super) struct StreamRef {
    pub(super) context_id: u32,
    pub(super) end_of_stream: bool,
    /// What it received of its body while held.
    pub(super) body: HeldBody,
}

/// What a request held for a key set received of its body meanwhile. Only a host that hands a plugin the body
/// while the headers wait (Envoy with `allow_on_headers_stop_iteration`) does so; it keeps that body back for the
/// plugin, and lets it go on with the headers when they resume, without handing it to the plugin again.
#[derive(Debug, Default)]
pub(super) enum HeldBody {
    /// Nothing yet.
    #[default]
    None,
    /// Part of it: the rest comes to the plugin after the request is decided.
    Partial,
    /// All of it, copied for the decision that follows.
    Complete(Vec<u8>),
    /// More than any MCP endpoint reads.
    TooLarge,
    /// The host would not give it.
    Unreadable,
}

/// Holds a request until `deadline_ms` (answering `on_timeout` at once if there is none or it has passed).
#[allow(clippy::too_many_arguments)]
pub(super) fn hold(
    shared: &Rc<RefCell<Shared>>,
    stream: StreamRef,
    issuer: usize,
    deadline_ms: Option<u64>,
    on_timeout: Denial,
    now_ms: u64,
    dry_run: bool,
    held: bool,
) -> Applied {
    if let (Some(deadline_ms), Ok(mut s)) = (deadline_ms, shared.try_borrow_mut())
        && deadline_ms > now_ms
    {
        // Its body callbacks come to the plugin (see `HeldBody`).
        super::mcp::set_phase(stream.context_id, super::mcp::Phase::HeldForKeys);
        s.waiting.push(Waiter {
            context_id: stream.context_id,
            end_of_stream: stream.end_of_stream,
            body: stream.body,
            issuer,
            deadline_ms,
            on_timeout,
        });
        return Applied::Stopped;
    }
    refuse(shared, &on_timeout, dry_run, held)
}
