//! Anomaly detection in the VM: every decided request of a verified agent is shown to this worker's
//! [`Detector`], and what it signals is logged, counted and acted on: `deny` holds the agent on this worker
//! (429 for a while), `quarantine` revokes it on every worker through the shared revocation state.
//!
//! The detector learns from the requests this worker serves: Envoy spreads connections over its workers, so
//! each sees a share of every busy agent's traffic and its own baseline of it.

use super::host::LogLevel;
use super::revocation;
use super::shared::HostStore;
use super::{Shared, log};
use crate::anomaly::{Action, Detector, Observation, Signal};
use crate::engine::{Engine, Verdict};
use crate::request::{self, Headers};
use crate::revocation::sources::DEFAULT_STATE_KEY;
use crate::revocation::state;
use crate::revocation::{Facts, Selector};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::rc::Rc;

/// Refusals by the gateway's own enforcement, not shown to the detector.
const ENFORCEMENT: [&str; 5] = ["revoked", "revocation_stale", "anomaly_hold", "rate_limited", "limits_unavailable"];

thread_local! {
    /// This worker's detector, kept across configurations with the same settings (what it learnt stays).
    static DETECTOR: RefCell<Option<Detector>> = const { RefCell::new(None) };
    /// Agents held on this worker by a `deny` action, until (host milliseconds).
    static HELD: RefCell<FxHashMap<Box<str>, u64>> = RefCell::new(FxHashMap::default());
    /// The signals the request being decided set off, for its audit event.
    static SIGNALS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Takes the signals of the request just screened (for its audit event).
pub fn take_signals() -> Vec<&'static str> {
    SIGNALS.with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default())
}

/// A new configuration: a new detector if its settings changed, none without `anomaly`.
pub fn install(engine: &Engine) {
    DETECTOR.with(|d| {
        let Ok(mut d) = d.try_borrow_mut() else { return };
        match &engine.settings().anomaly {
            None => *d = None,
            Some(settings) if d.as_ref().is_some_and(|x| x.settings() == settings) => {}
            Some(settings) => *d = Some(Detector::new(settings.clone())),
        }
    });
}

/// Screens a verdict: an allowed request of an agent held on this worker is refused (429) instead; then the
/// decision is shown to the detector and its signals are acted on. `raw_path` is the request's `:path`.
pub fn screen(
    shared: &Rc<RefCell<Shared>>,
    engine: &Engine,
    headers: &Headers<'_>,
    verdict: Verdict,
    now_ms: u64,
) -> Verdict {
    let Some(settings) = &engine.settings().anomaly else { return verdict };
    let verdict = hold(engine, headers, verdict, now_ms);
    let (verified, allowed, rule, mcp) = match &verdict {
        Verdict::Allow { await_body: Some(_), .. } => return verdict,
        Verdict::Allow { verified, rule, mcp, dry_run: None, .. } => {
            (verified.clone(), true, Some(rule.clone()), mcp.clone())
        }
        Verdict::Allow { dry_run: Some(d), .. } if d.revoked_by.is_some() || ENFORCEMENT.contains(&d.reason) => {
            return verdict;
        }
        Verdict::Allow { verified, dry_run: Some(d), mcp, .. } => {
            (verified.clone(), false, d.rule.as_deref().map(Rc::from), mcp.clone())
        }
        // The gateway's own enforcement (a revocation, a hold, a limit) is not the agent's behaviour: counted as
        // denials, a quarantined agent's refusals would quarantine it again, for ever.
        Verdict::Deny(d) if d.revoked_by.is_some() || ENFORCEMENT.contains(&d.reason) => return verdict,
        Verdict::Deny(d) => (d.verified.clone(), false, d.rule.as_deref().map(Rc::from), d.mcp.clone()),
        Verdict::WaitForKeys { .. } | Verdict::UnknownKey { .. } | Verdict::Answer(_) => return verdict,
    };
    // Only verified agents are observed: each name creates state.
    let Some(verified) = verified else { return verdict };
    let token = verified.token();
    // Labels are found only when first use is watched (a path canonicalised again and a trie walk).
    let path = if settings.first_use.is_some() {
        request::single_text(headers, ":path")
            .and_then(|p| request::canonical_path_with(p, engine.settings().path_parameters).ok())
    } else {
        None
    };
    let labels = path.as_ref().map(|p| engine.policy().labels_of(&p.path)).unwrap_or_default();
    let tool = mcp.as_deref().filter(|m| m.method == "tools/call").and_then(|m| m.target());
    let observation = Observation {
        agent: token.agent(),
        subject: token.subject(),
        depth: token.chain.depth(),
        allowed,
        rule: rule.as_deref(),
        labels: &labels,
        tool,
    };
    let signals = DETECTOR.with(|d| match d.try_borrow_mut().ok().as_deref_mut().and_then(Option::as_mut) {
        Some(detector) => detector.observe(&observation, now_ms),
        None => Vec::new(),
    });
    SIGNALS.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.clear();
            s.extend(signals.iter().map(|signal| signal.kind.label()));
        }
    });
    for signal in signals {
        act(shared, engine, &signal, now_ms);
    }
    verdict
}

/// An allowed request of a held agent becomes a 429 until the hold ends.
fn hold(engine: &Engine, headers: &Headers<'_>, verdict: Verdict, now_ms: u64) -> Verdict {
    let Verdict::Allow { verified: Some(verified), dry_run: None, await_body: None, .. } = &verdict else {
        return verdict;
    };
    let until = HELD.with(|h| {
        let Ok(mut held) = h.try_borrow_mut() else { return None };
        if held.is_empty() {
            return None;
        }
        match held.get(verified.token().agent()).copied() {
            Some(until) if until > now_ms => Some(until),
            Some(_) => {
                held.remove(verified.token().agent());
                None
            }
            None => None,
        }
    });
    match until {
        Some(until) => {
            let retry_after = (until - now_ms).div_ceil(1000);
            Verdict::Deny(engine.held_denial(verified.clone(), headers, retry_after))
        }
        None => verdict,
    }
}

/// Logs, counts and carries out one signal.
fn act(shared: &Rc<RefCell<Shared>>, engine: &Engine, signal: &Signal, now_ms: u64) {
    let agent = signal.agent.escape_debug().to_string();
    let what = match signal.action {
        Action::Record => "recorded".to_owned(),
        Action::Deny { seconds } => format!("agent held on this worker for {seconds} s"),
        Action::Quarantine { seconds } => format!("agent quarantined on every worker for {seconds} s"),
    };
    log(
        LogLevel::Warn,
        &format!("agent-iam: anomaly {} of agent \"{agent}\": {} ({what})", signal.kind.label(), signal.detail),
    );
    if let Ok(mut s) = shared.try_borrow_mut() {
        s.metrics.count(&format!("agent_iam.anomaly.{}", signal.kind.label()), 1);
    }
    match signal.action {
        Action::Record => {}
        Action::Deny { seconds } => HELD.with(|h| {
            if let Ok(mut held) = h.try_borrow_mut() {
                held.insert(signal.agent.as_str().into(), now_ms + u64::from(seconds) * 1000);
            }
        }),
        Action::Quarantine { seconds } => quarantine(engine, signal, seconds, now_ms),
    }
}

/// Revokes the agent on every worker until the quarantine ends: a revocation of the agent wherever it
/// appears, written into the shared state every worker reads on its tick (and this one at once).
fn quarantine(engine: &Engine, signal: &Signal, seconds: u32, now_ms: u64) {
    let now = (now_ms / 1000) as i64;
    let facts =
        Facts { agent: Some(signal.agent.clone()), expires: Some(now + i64::from(seconds)), ..Facts::default() };
    let Ok(selector) = Selector::validated(facts) else { return };
    let sources = engine.settings().revocation_sources.clone();
    let key = sources.as_ref().map_or(DEFAULT_STATE_KEY, |s| s.state_key.as_str());
    let limits = sources.as_ref().map(|s| s.limits).unwrap_or_default();
    let id = format!("anomaly:{}:{now_ms}", signal.kind.label());
    let until = now + i64::from(seconds);
    let written = state::update(&HostStore, key, |st| {
        st.apply_event(&id, until, std::slice::from_ref(&selector), &format!("anomaly:{}", signal.kind.label()), limits)
    });
    match written {
        Ok(_) => revocation::refresh(engine, now),
        Err(e) => log(LogLevel::Error, &format!("agent-iam: anomaly: the quarantine could not be recorded: {e}")),
    }
}
