//! Continuous revocation in the VM: the shared state read on every tick, one worker fetching the revocation
//! list and polling the SSF transmitter for all, pushed security events answered, and the engine handed the
//! revocations in force.
//!
//! - **Reading.** Every worker looks at the state's version key on its tick (a few bytes); when it moved, the
//!   worker reads the state, indexes it, and gives the set to its engine. A revocation written by one worker
//!   is enforced by all within one tick (250 ms). Staleness of the list is judged by each worker from the
//!   shared fetch time, so all agree.
//! - **Fetching.** One worker at a time holds a lease in shared data (renewed on its tick, taken over ten
//!   seconds after its holder stops renewing) and does the fetching and polling: a transmitter sees one
//!   poller per gateway, and acknowledgements are never split between workers. What it learns goes into the
//!   state by compare-and-swap.
//! - **Push.** Any worker answers a pushed event (RFC 8935) and writes it into the state the same way.
//!
//! No `RefCell` borrow is held across a hostcall that may call back into the plugin.

use super::host::{self, LogLevel};
use super::{Shared, log};
use crate::engine::Engine;
use crate::revocation::document::excerpt;
use crate::revocation::sources::Sources;
use crate::revocation::ssf::{self, Outcome, SecurityEvent};
use crate::revocation::state::{self, SetError};
use crate::revocation::{Closed, Kind, RevocationSet, Selector};
use crate::token::CryptoBackend;
use serde_json::Value;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

mod fetch;
mod push;

pub use fetch::on_response;
use fetch::{fetch_list, poll};
pub use push::{on_push_body, push_headers};

pub(super) use super::shared::HostStore;

/// How long a fetcher's lease lasts without renewal, milliseconds.
const LEASE_MS: u64 = 10_000;
/// How often the fetcher drops ended revocations from the state, seconds.
const PRUNE_EVERY: i64 = 60;
/// How often the active-revocation gauges are counted again without a change of state, seconds.
const COUNT_EVERY: i64 = 5;

/// What this VM last read of the shared state: one view for every root context of the plugin in the VM.
#[derive(Default)]
struct View {
    key: String,
    /// The version key's value it was read at (0: never read).
    version: u64,
    selectors: Vec<Selector>,
    list_fetched_at: Option<i64>,
    last_poll: Option<i64>,
    closed: Closed,
    set: Rc<RevocationSet>,
    /// Live revocations by kind, in [`Kind::ALL`] order, as of `counted_at`.
    counts: [usize; 6],
    /// When `counts` was computed (seconds): revocations end as time passes, so they are counted again
    /// every few seconds, not only when the state changes.
    counted_at: i64,
}

thread_local! {
    static VIEW: RefCell<View> = RefCell::new(View::default());
    /// This VM's identity for the fetcher lease: random (WASI `random_get`, which Envoy provides).
    static VM_ID: u64 = {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(super::now_ms().unwrap_or(0));
        h.finish()
    };
}

/// One fetch schedule (list or poll) of a root context.
#[derive(Debug, Default)]
struct Schedule {
    next_ms: u64,
    failures: u32,
    call: Option<u32>,
}

impl Schedule {
    fn due(&self, now_ms: u64) -> bool {
        self.call.is_none() && now_ms >= self.next_ms
    }

    fn succeeded(&mut self, next_ms: u64) {
        self.call = None;
        self.failures = 0;
        self.next_ms = next_ms;
    }

    /// Retries after 1 s, doubling up to `ceiling_ms`.
    fn failed(&mut self, now_ms: u64, ceiling_ms: u64) {
        self.call = None;
        let delay = 1000u64.checked_shl(self.failures.min(20)).unwrap_or(u64::MAX).min(ceiling_ms.max(1000));
        self.failures = self.failures.saturating_add(1);
        self.next_ms = now_ms.saturating_add(delay);
    }
}

/// The fetching a root context does when its VM holds the lease.
#[derive(Debug, Default)]
pub struct Fetcher {
    list: Schedule,
    poll: Schedule,
    /// The acknowledgements and errors the poll in flight carries: once it is answered, the transmitter has
    /// them and they leave the state.
    sent_ack: Vec<String>,
    sent_errors: Vec<String>,
    last_prune: i64,
    holds_lease: bool,
}

pub(super) fn sources_of(engine: &Engine) -> Option<Rc<Sources>> {
    engine.settings().revocation_sources.clone()
}

fn lease_holder(context_id: u32) -> String {
    format!("{:016x}-{context_id}", VM_ID.with(|id| *id))
}

/// Takes or renews the fetcher lease; whether this root context holds it.
fn lease(key: &str, context_id: u32, now_ms: u64) -> bool {
    let lease_key = format!("{key}.fetcher");
    let me = lease_holder(context_id);
    let Ok(current) = host::shared_data(&lease_key) else { return false };
    let (holder, until, cas) = match &current {
        Some((bytes, cas)) => {
            let text = std::str::from_utf8(bytes).unwrap_or("");
            let (holder, until) = text.split_once(' ').unwrap_or(("", "0"));
            (holder.to_owned(), until.parse::<u64>().unwrap_or(0), *cas)
        }
        None => (String::new(), 0, 0),
    };
    if holder != me && until > now_ms {
        return false;
    }
    if holder == me && until > now_ms + LEASE_MS / 2 {
        return true;
    }
    let value = format!("{me} {}", now_ms + LEASE_MS);
    host::set_shared_data(&lease_key, value.as_bytes(), cas).is_ok()
}

/// Gives the lease up (the root context is going away), so another takes over at its next tick.
pub fn release(shared: &Rc<RefCell<Shared>>, context_id: u32) {
    let Some(key) = shared
        .try_borrow()
        .ok()
        .and_then(|s| s.engine.clone())
        .and_then(|e| sources_of(&e))
        .map(|s| s.state_key.clone())
    else {
        return;
    };
    let lease_key = format!("{key}.fetcher");
    if let Ok(Some((bytes, cas))) = host::shared_data(&lease_key)
        && bytes.starts_with(lease_holder(context_id).as_bytes())
    {
        let _ = host::set_shared_data(&lease_key, b"", cas);
    }
}

/// Reads the shared state if its version moved (or `force`), judges the list's staleness, and returns the
/// set in force for this VM.
pub(super) fn sync(sources: &Sources, now: i64, force: bool) -> Rc<RevocationSet> {
    let key = sources.state_key.as_str();
    let version = state::read_version(&HostStore, key).unwrap_or(0);
    let stale_view = VIEW.with(|v| v.try_borrow().map(|v| v.key != key || v.version != version).unwrap_or(true));
    let mut rebuilt = false;
    if force || stale_view {
        match state::read(&HostStore, key) {
            Ok((st, _)) => {
                VIEW.with(|v| {
                    let Ok(mut v) = v.try_borrow_mut() else { return };
                    v.key = key.to_owned();
                    v.version = version;
                    v.selectors = st.selectors(now);
                    v.list_fetched_at = st.list.as_ref().map(|l| l.fetched_at);
                    v.last_poll = st.poll.last_success;
                });
                rebuilt = true;
            }
            Err(e) => log(LogLevel::Error, &format!("agent-iam: revocation: keeping the last state read: {e}")),
        }
    }
    VIEW.with(|v| {
        let Ok(mut v) = v.try_borrow_mut() else { return Rc::default() };
        let closed = sources.closed(v.list_fetched_at, now);
        if rebuilt || closed != v.closed {
            if closed != v.closed {
                match &closed {
                    Closed::None => log(LogLevel::Info, "agent-iam: revocation list fresh again: its issuers' tokens are accepted"),
                    _ => log(
                        LogLevel::Error,
                        "agent-iam: revocation list stale (or never fetched) and on_stale is deny: refusing its issuers' tokens (503)",
                    ),
                }
            }
            v.closed = closed.clone();
            v.set = Rc::new(RevocationSet::new(v.selectors.clone(), closed));
            v.counts = v.set.counts(now);
            v.counted_at = now;
        } else if now - v.counted_at >= COUNT_EVERY {
            v.counts = v.set.counts(now);
            v.counted_at = now;
        }
        v.set.clone()
    })
}

/// Gives the engine the set in force when it does not hold it yet.
pub(super) fn hand_to(engine: &Engine, set: Rc<RevocationSet>) {
    if engine.revocations().generation() != set.generation() {
        engine.set_revocations(set);
    }
}

/// Reads the shared state now and gives the engine what is in force (after this worker wrote into it).
pub fn refresh(engine: &Engine, now: i64) {
    if let Some(sources) = sources_of(engine) {
        hand_to(engine, sync(&sources, now, false));
    }
}

/// A new configuration: its engine starts with the shared revocations as they stand.
pub fn install(shared: &Rc<RefCell<Shared>>, now_ms: u64) -> bool {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return false };
    let now = (now_ms / 1000) as i64;
    let Some(sources) = sources_of(&engine) else {
        if !engine.settings().revocations.is_empty() {
            report(shared, &engine, None, now);
        }
        return false;
    };
    hand_to(&engine, sync(&sources, now, true));
    if let Ok(mut s) = shared.try_borrow_mut() {
        s.revocation = Fetcher::default();
    }
    true
}

/// The root context's tick: read what changed, fetch and poll when this worker holds the lease.
pub fn on_tick(shared: &Rc<RefCell<Shared>>, context_id: u32, now_ms: u64) {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return };
    let Some(sources) = sources_of(&engine) else { return };
    let now = (now_ms / 1000) as i64;
    hand_to(&engine, sync(&sources, now, false));
    report(shared, &engine, Some(&sources), now);
    if !sources.needs_fetcher() {
        // No fetcher holds a lease: every worker drops what has ended (a write only when something did; the
        // state is then the same whoever writes it).
        let due = shared.try_borrow_mut().is_ok_and(|mut s| {
            let due = now - s.revocation.last_prune >= PRUNE_EVERY;
            if due {
                s.revocation.last_prune = now;
            }
            due
        });
        if due {
            let _ = state::update(&HostStore, &sources.state_key, |st| Ok(st.prune(now)));
        }
        return;
    }
    let holds = lease(&sources.state_key, context_id, now_ms);
    let (list_due, poll_due, prune_due) = {
        let Ok(mut s) = shared.try_borrow_mut() else { return };
        let f = &mut s.revocation;
        if holds && !f.holds_lease {
            log(LogLevel::Info, "agent-iam: revocation: this worker now fetches and polls for the gateway");
        }
        f.holds_lease = holds;
        if !holds {
            return;
        }
        let prune = now - f.last_prune >= PRUNE_EVERY;
        if prune {
            f.last_prune = now;
        }
        (
            sources.list.is_some() && f.list.due(now_ms),
            sources.ssf.as_ref().is_some_and(|r| r.poll.is_some()) && f.poll.due(now_ms),
            prune,
        )
    };
    if prune_due {
        let _ = state::update(&HostStore, &sources.state_key, |st| Ok(st.prune(now)));
    }
    if list_due {
        fetch_list(shared, &sources, now_ms);
    }
    if poll_due {
        poll(shared, &sources, now_ms);
    }
}

/// One event of a poll answer, judged.
pub(super) enum Judged {
    /// Apply (no selectors: acknowledge and remember only).
    Apply { jti: String, until: i64, selectors: Vec<Selector>, note: String },
    /// Report in `setErrs`.
    Refuse(SetError),
}

/// Verifies and maps one event; `key` is the `jti` a poll answer sent it under (a pushed event has none).
pub(super) fn judge(
    sources: &Sources,
    key: Option<&str>,
    set: &Value,
    crypto: &dyn CryptoBackend,
    now: i64,
    source: &str,
) -> Judged {
    let refuse = |err: &str, description: String| {
        Judged::Refuse(SetError { jti: key.unwrap_or("").to_owned(), err: err.to_owned(), description })
    };
    let Some(receiver) = &sources.ssf else { return refuse("invalid_request", "no receiver configured".into()) };
    let Some(jws) = set.as_str() else { return refuse("invalid_request", "not a compact JWS".into()) };
    let statement = match receiver.verifier.verify(jws.as_bytes(), now, crypto) {
        Ok(s) => s,
        Err(e) => return refuse(e.code(), e.to_string()),
    };
    let event = match SecurityEvent::from_statement(statement) {
        Ok(e) => e,
        Err(e) => return refuse("invalid_request", e.to_string()),
    };
    if key.is_some_and(|k| k != event.jti) {
        return refuse("invalid_request", "sent under another jti than its own".into());
    }
    // Remembered as long as it could be accepted again: until it is too old for the verifier.
    let until = event.issued_at + receiver.verifier.max_age + receiver.verifier.clock_skew + 1;
    match ssf::revocations(&event, &receiver.mapping, now) {
        Outcome::Revoke(selectors) => {
            let kinds: Vec<&str> = selectors.iter().map(|s| s.kind().label()).collect();
            let note = format!(
                "revocation applied: {source} event {} ({}) revokes: {}",
                excerpt(&event.jti),
                excerpt(short_type(&event.event_type)),
                kinds.join(", ")
            );
            Judged::Apply { jti: event.jti, until, selectors, note }
        }
        Outcome::Ignore(why) => {
            let note = format!(
                "{source} event {} ({}) acknowledged, nothing revoked: {why}",
                excerpt(&event.jti),
                excerpt(short_type(&event.event_type))
            );
            Judged::Apply { jti: event.jti, until, selectors: Vec::new(), note }
        }
        Outcome::Refuse { err, description } => refuse(err, description),
    }
}

/// An event type by its last path segment (`session-revoked`): the URIs differ only there.
fn short_type(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or(uri)
}

/// Metrics: live revocations by kind, the list's age, the time since the last good poll.
/// The configuration's own revocations count among the active ones.
fn report(shared: &Rc<RefCell<Shared>>, engine: &Engine, sources: Option<&Sources>, now: i64) {
    let (counts, list_at, poll_at) = match sources {
        Some(_) => VIEW.with(|v| {
            v.try_borrow().map(|v| (v.counts, v.list_fetched_at, v.last_poll)).unwrap_or(([0; 6], None, None))
        }),
        None => ([0; 6], None, None),
    };
    let inline = engine.settings().revocations.counts(now);
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    for ((kind, count), more) in Kind::ALL.iter().zip(counts).zip(inline) {
        s.metrics.gauge(&format!("agent_iam.revocation.active.{}", kind.label()), (count + more) as u64);
    }
    let Some(sources) = sources else { return };
    if sources.list.is_some() {
        s.metrics.gauge(
            "agent_iam.revocation.list.age_seconds",
            list_at.map_or(u64::MAX >> 1, |at| (now - at).max(0) as u64),
        );
    }
    if let Some(at) = poll_at {
        s.metrics.gauge("agent_iam.revocation.ssf.last_poll_timestamp_seconds", at.max(0) as u64);
    }
}
