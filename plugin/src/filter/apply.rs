//! Carrying out a verdict: the request forwarded with the identity headers (and canonical path and method),
//! a denial answered, or the request held for a key set.

use super::host::{self, LogLevel, MapType};
use super::outcome::{HeldBody, StreamRef, hold, refuse};
use super::{Applied, Decided, Held, Shared, fail_closed, log, logging_at, mcp, reply};
use crate::engine::{Mode, Verdict};
use std::cell::RefCell;
use std::rc::Rc;

/// Carries out a verdict: forward with the identity headers, answer a denial, or hold for keys. `held` is set
/// when a held request is decided again: it keeps its deadline and is resumed rather than continued.
pub(super) fn apply(
    shared: &Rc<RefCell<Shared>>,
    decided: &Decided<'_>,
    verdict: Verdict,
    context_id: u32,
    held: Option<Held>,
    end_of_stream: bool,
) -> Applied {
    let &Decided { engine, headers, conn, now_ms, now, crypto, .. } = decided;
    let held_until = held.as_ref().map(|h| h.deadline_ms);
    let held_body = held.map(|h| h.body).unwrap_or_default();
    let explain = |level: LogLevel| {
        if logging_at(level, now_ms) {
            log(level, &format!("agent-iam: explain {}", engine.explain(headers, conn, now, crypto)));
        }
    };
    match verdict {
        Verdict::Answer(document) => {
            reply(&document);
            Applied::Stopped
        }
        Verdict::Allow { remove, set, canonical_path, canonical_method, dry_run, await_body, dpop_nonce, .. } => {
            if let Some(nonce) = dpop_nonce {
                super::dpop::remember(context_id, nonce);
            }
            if let Some(would) = dry_run {
                log(
                    LogLevel::Info,
                    &format!(
                        "agent-iam: dry run: forwarding a request enforcement would answer {} ({})",
                        would.status, would.details
                    ),
                );
                explain(LogLevel::Debug);
            } else {
                explain(LogLevel::Trace);
            }
            let mut edits = remove.iter().map(|name| host::remove_header(MapType::HttpRequestHeaders, name));
            if edits.any(|r| r.is_err()) {
                return fail_closed("a client-sent identity header could not be removed");
            }
            for (name, value) in &set {
                if host::set_header(MapType::HttpRequestHeaders, name, value).is_err() {
                    return fail_closed("an identity header could not be set");
                }
            }
            if let Some(method) = &canonical_method
                && host::set_header(MapType::HttpRequestHeaders, ":method", method).is_err()
            {
                return fail_closed("the canonical method could not be set");
            }
            if let Some(path) = &canonical_path
                && host::set_header(MapType::HttpRequestHeaders, ":path", path).is_err()
            {
                return fail_closed("the canonical path could not be set");
            }
            if canonical_path.is_some() || canonical_method.is_some() {
                // Forward what was authorised. Envoy chose the route on the old path and method: recompute it.
                let _ = host::call_foreign_function("clear_route_cache", &[]);
            }
            if let Some(wait) = await_body {
                let hold_headers = engine.settings().mcp_hold_headers || matches!(held_body, HeldBody::Partial);
                mcp::set_phase(
                    context_id,
                    mcp::Phase::AwaitingBody(Box::new(mcp::Pending {
                        wait,
                        engine: Rc::downgrade(engine),
                        headers: decided.raw_headers.to_vec(),
                        properties: decided.properties.clone(),
                        headers_held: hold_headers,
                    })),
                );
                let body = match &held_body {
                    // No body will come: decided now, on an empty one.
                    _ if end_of_stream => Some(crate::engine::Body::Complete(b"")),
                    HeldBody::Complete(bytes) => Some(crate::engine::Body::Complete(bytes)),
                    HeldBody::TooLarge => Some(crate::engine::Body::TooLarge),
                    HeldBody::Unreadable => return fail_closed("the request body is unavailable"),
                    HeldBody::None | HeldBody::Partial => None,
                };
                let go_on = match body {
                    Some(body) => mcp::decide_body(shared, crypto, context_id, body) == mcp::DATA_CONTINUE,
                    // The headers wait for the body's decision: configured, or some of the body was kept back
                    // while the request waited for keys (resumed now, it would go on without the plugin).
                    None => !hold_headers,
                };
                if !go_on {
                    return Applied::Stopped;
                }
            }
            if held_until.is_some() && host::resume_request().is_err() {
                return fail_closed("a held request could not be resumed");
            }
            Applied::Continue
        }
        Verdict::Deny(denial) => {
            if let Some(kind) = denial.revoked_by {
                let agent = denial.verified.as_ref().map_or("", |v| v.token().agent());
                log(
                    LogLevel::Info,
                    &format!(
                        "agent-iam: refused a revoked token of agent \"{}\" (revoked by {})",
                        agent.escape_debug(),
                        kind.label()
                    ),
                );
            }
            // Formatted only when it will be written: every refused request passes here.
            if logging_at(LogLevel::Debug, now_ms) {
                log(LogLevel::Debug, &format!("agent-iam: {} {}", denial.status, denial.details));
            }
            // Why, rule by rule: only when an operator turned debug logging on, as it re-evaluates every rule
            // (`--component-log-level wasm:debug`).
            explain(LogLevel::Debug);
            reply(&denial);
            Applied::Stopped
        }
        Verdict::WaitForKeys { issuer, on_timeout } => {
            let dry_run = engine.settings().mode == Mode::DryRun;
            let wait_ms =
                engine.verifier().issuers().get(issuer).and_then(|i| i.remote.as_ref()).map(|r| r.wait_timeout_ms);
            hold(
                shared,
                StreamRef { context_id, end_of_stream, body: held_body },
                issuer,
                held_until.or(wait_ms.map(|w| now_ms.saturating_add(w))),
                on_timeout,
                now_ms,
                dry_run,
                held_until.is_some(),
            )
        }
        Verdict::UnknownKey { issuer, denial } => {
            let dry_run = engine.settings().mode == Mode::DryRun;
            // One refetch per unknown kid (rate-limited per issuer); a request decided again after it is answered.
            let refetch = held_until.is_none()
                && shared
                    .try_borrow_mut()
                    .ok()
                    .and_then(|mut s| {
                        s.remotes.iter_mut().find(|r| r.issuer == issuer).map(|r| r.state.unknown_kid(now))
                    })
                    .unwrap_or(false);
            if !refetch {
                explain(LogLevel::Debug);
                return refuse(shared, &denial, dry_run, held_until.is_some());
            }
            let wait_ms =
                engine.verifier().issuers().get(issuer).and_then(|i| i.remote.as_ref()).map(|r| r.wait_timeout_ms);
            // The root context fetches on its next tick: a call made here would be answered to this stream
            // (the SDK routes answers to the calling context), and lost if the stream ends first.
            let stream = StreamRef { context_id, end_of_stream, body: held_body };
            hold(shared, stream, issuer, wait_ms.map(|w| now_ms.saturating_add(w)), denial, now_ms, dry_run, false)
        }
    }
}
