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

use super::host::{self, BufferType, LogLevel, MapType};
use super::{Applied, Shared, log, reply};
use crate::engine::{Denial, Engine};
use crate::request::Headers;
use crate::revocation::document::excerpt;
use crate::revocation::list;
use crate::revocation::sources::{Endpoint, Sources};
use crate::revocation::ssf::{self, Outcome, SecurityEvent};
use crate::revocation::state::{self, SetError, SharedStore, StoreError};
use crate::revocation::{Closed, Kind, RevocationSet, Selector};
use crate::token::CryptoBackend;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

/// Shared data through the host.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        host::shared_data(key).map_err(|s| StoreError::Host(format!("{s:?}")))
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        match host::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(host::Status(host::CAS_MISMATCH)) => Err(StoreError::CasMismatch),
            Err(s) => Err(StoreError::Host(format!("{s:?}"))),
        }
    }
}

/// How long a fetcher's lease lasts without renewal, milliseconds.
const LEASE_MS: u64 = 10_000;
/// How often the fetcher drops ended revocations from the state, seconds.
const PRUNE_EVERY: i64 = 60;

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
    /// Live revocations by kind, in [`Kind::ALL`] order, as of the last rebuild.
    counts: [usize; 6],
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

fn sources_of(engine: &Engine) -> Option<Rc<Sources>> {
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
fn sync(sources: &Sources, now: i64, force: bool) -> Rc<RevocationSet> {
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
        }
        v.set.clone()
    })
}

/// Gives the engine the set in force when it does not hold it yet.
fn hand_to(engine: &Engine, set: Rc<RevocationSet>) {
    if engine.revocations().generation() != set.generation() {
        engine.set_revocations(set);
    }
}

/// A new configuration: its engine starts with the shared revocations as they stand.
pub fn install(shared: &Rc<RefCell<Shared>>, now_ms: u64) -> bool {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return false };
    let Some(sources) = sources_of(&engine) else { return false };
    let now = (now_ms / 1000) as i64;
    hand_to(&engine, sync(&sources, now, true));
    if let Ok(mut s) = shared.try_borrow_mut() {
        s.revocation = Fetcher::default();
    }
    true
}

/// The root context's tick: read what changed, fetch and poll when this worker holds the lease.
pub fn on_tick(shared: &Rc<RefCell<Shared>>, context_id: u32, crypto: &dyn CryptoBackend, now_ms: u64) {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return };
    let Some(sources) = sources_of(&engine) else { return };
    let now = (now_ms / 1000) as i64;
    hand_to(&engine, sync(&sources, now, false));
    report(shared, &sources, now);
    if !sources.needs_fetcher() {
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
    let _ = crypto;
}

fn call(endpoint: &Endpoint, method: &str, extra: &[(&str, &str)], body: &[u8]) -> Result<u32, host::Status> {
    let mut headers =
        vec![(":method", method), (":path", endpoint.path.as_str()), (":authority", endpoint.authority.as_str())];
    headers.extend_from_slice(extra);
    host::http_call_with_body(&endpoint.cluster, &headers, body, Duration::from_millis(endpoint.timeout_ms))
}

fn fetch_list(shared: &Rc<RefCell<Shared>>, sources: &Sources, now_ms: u64) {
    let Some(list) = &sources.list else { return };
    let result = call(&list.endpoint, "GET", &[("accept", "application/jwt, application/json")], &[]);
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    match result {
        Ok(token) => s.revocation.list.call = Some(token),
        Err(status) => {
            s.revocation.list.failed(now_ms, list.refresh as u64 * 1000);
            s.metrics.count("agent_iam.revocation.list.no_response", 1);
            log(
                LogLevel::Warn,
                &format!("agent-iam: revocation list: cannot call cluster \"{}\": {status:?}", list.endpoint.cluster),
            );
        }
    }
}

fn poll(shared: &Rc<RefCell<Shared>>, sources: &Sources, now_ms: u64) {
    let Some(poll) = sources.ssf.as_ref().and_then(|r| r.poll.as_ref()) else { return };
    // What is owed to the transmitter is in the shared state: a new fetcher pays its predecessor's debts.
    let (ack, errors) = match state::read(&HostStore, &sources.state_key) {
        Ok((st, _)) => (st.poll.ack, st.poll.errors),
        Err(e) => {
            log(LogLevel::Error, &format!("agent-iam: ssf: not polling: {e}"));
            return;
        }
    };
    let mut set_errs = Map::new();
    for e in &errors {
        set_errs.insert(e.jti.clone(), json!({"err": e.err, "description": e.description}));
    }
    let mut body = json!({"maxEvents": poll.max_events, "returnImmediately": true});
    if !ack.is_empty() {
        body["ack"] = json!(ack);
    }
    if !set_errs.is_empty() {
        body["setErrs"] = Value::Object(set_errs);
    }
    let body = body.to_string();
    let mut headers = vec![("content-type", "application/json"), ("accept", "application/json")];
    if let Some(authorization) = &poll.authorization {
        headers.push(("authorization", authorization.as_str()));
    }
    let result = call(&poll.endpoint, "POST", &headers, body.as_bytes());
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    match result {
        Ok(token) => {
            let f = &mut s.revocation;
            f.poll.call = Some(token);
            f.sent_ack = ack;
            f.sent_errors = errors.into_iter().map(|e| e.jti).collect();
        }
        Err(status) => {
            s.revocation.poll.failed(now_ms, poll.interval_ms.max(30_000));
            s.metrics.count("agent_iam.revocation.ssf.poll.no_response", 1);
            log(
                LogLevel::Warn,
                &format!("agent-iam: ssf: cannot call cluster \"{}\": {status:?}", poll.endpoint.cluster),
            );
        }
    }
}

/// The answer to an HTTP call: whether it was one of revocation's.
pub fn on_response(
    shared: &Rc<RefCell<Shared>>,
    token: u32,
    body_size: usize,
    crypto: &dyn CryptoBackend,
    now_ms: u64,
) -> bool {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return false };
    let Some(sources) = sources_of(&engine) else { return false };
    let (is_list, is_poll) = match shared.try_borrow() {
        Ok(s) => (s.revocation.list.call == Some(token), s.revocation.poll.call == Some(token)),
        Err(_) => return false,
    };
    if !is_list && !is_poll {
        return false;
    }
    let max = if is_list {
        sources.list.as_ref().map_or(0, |l| l.endpoint.max_bytes)
    } else {
        sources.ssf.as_ref().and_then(|r| r.poll.as_ref()).map_or(0, |p| p.endpoint.max_bytes)
    };
    let buffer = host::header_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let headers = crate::header_map::parse(&buffer).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(n, _)| *n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let body = match status {
        Some(200) if body_size <= max => {
            Ok(host::buffer(BufferType::HttpCallResponseBody, body_size).unwrap_or_default())
        }
        Some(200) => Err(format!("answer of {body_size} bytes is over the limit of {max}")),
        Some(other) => Err(format!("HTTP status {other}")),
        None => Err("no answer (cluster unavailable, reset or timeout)".to_owned()),
    };
    if is_list {
        on_list(shared, &sources, body, crypto, now_ms);
    } else {
        on_poll(shared, &sources, body, crypto, now_ms);
    }
    // Enforce at once on this worker what was just learnt; the others read it on their tick.
    hand_to(&engine, sync(&sources, (now_ms / 1000) as i64, false));
    true
}

fn on_list(
    shared: &Rc<RefCell<Shared>>,
    sources: &Sources,
    body: Result<Vec<u8>, String>,
    crypto: &dyn CryptoBackend,
    now_ms: u64,
) {
    let Some(source) = &sources.list else { return };
    let now = (now_ms / 1000) as i64;
    let parsed = body.and_then(|b| {
        list::parse(&b, source.verifier.as_ref(), source.allow_unsigned, now, crypto).map_err(|e| e.to_string())
    });
    let outcome = parsed.and_then(|l| {
        let count = l.selectors.len();
        let mut older = false;
        state::update(&HostStore, &sources.state_key, |st| {
            let installed = st.install_list(l.issued_at, now, l.selectors.clone());
            older = !installed;
            Ok(installed)
        })
        .map_err(|e| e.to_string())?;
        if older {
            Err("older than the list in force (replayed or rolled back): refused".to_owned())
        } else {
            Ok((l.issued_at, count))
        }
    });
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    let refresh_ms = source.refresh as u64 * 1000;
    match outcome {
        Ok((issued_at, count)) => {
            s.revocation.list.succeeded(now_ms + refresh_ms);
            s.metrics.count("agent_iam.revocation.list.ok", 1);
            log(
                LogLevel::Info,
                &format!("agent-iam: revocation list (iat {issued_at}) applied: {count} revocation(s)"),
            );
        }
        Err(why) => {
            s.revocation.list.failed(now_ms, refresh_ms);
            s.metrics.count("agent_iam.revocation.list.refused", 1);
            log(LogLevel::Warn, &format!("agent-iam: revocation list not applied, the last good one is kept: {why}"));
        }
    }
}

/// One event of a poll answer, judged.
enum Judged {
    /// Apply (no selectors: acknowledge and remember only).
    Apply { jti: String, until: i64, selectors: Vec<Selector>, note: String },
    /// Report in `setErrs`.
    Refuse(SetError),
}

/// Verifies and maps one event; `key` is the `jti` a poll answer sent it under (a pushed event has none).
fn judge(
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
                "{source} event {} ({}) revokes: {}",
                excerpt(&event.jti),
                excerpt(&event.event_type),
                kinds.join(", ")
            );
            Judged::Apply { jti: event.jti, until, selectors, note }
        }
        Outcome::Ignore(why) => {
            let note =
                format!("{source} event {} ({}) acknowledged, nothing revoked: {why}", event.jti, event.event_type);
            Judged::Apply { jti: event.jti, until, selectors: Vec::new(), note }
        }
        Outcome::Refuse { err, description } => refuse(err, description),
    }
}

fn on_poll(
    shared: &Rc<RefCell<Shared>>,
    sources: &Sources,
    body: Result<Vec<u8>, String>,
    crypto: &dyn CryptoBackend,
    now_ms: u64,
) {
    let Some(poll) = sources.ssf.as_ref().and_then(|r| r.poll.as_ref()) else { return };
    let now = (now_ms / 1000) as i64;
    let answer = body.and_then(|b| {
        let object = crate::json::parse_object(&b, 8).map_err(|e| format!("not a poll answer: {e}"))?;
        let sets = match object.get("sets") {
            Some(Value::Object(sets)) => sets.clone(),
            _ => return Err("not a poll answer: \"sets\" must be an object".to_owned()),
        };
        let more = match object.get("moreAvailable") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("not a poll answer: \"moreAvailable\" must be a boolean".to_owned()),
        };
        Ok((sets, more))
    });
    let (sent_ack, sent_errors) = match shared.try_borrow_mut() {
        Ok(mut s) => (std::mem::take(&mut s.revocation.sent_ack), std::mem::take(&mut s.revocation.sent_errors)),
        Err(_) => return,
    };
    let (sets, more) = match answer {
        Ok(a) => a,
        Err(why) => {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.revocation.poll.failed(now_ms, poll.interval_ms.max(30_000));
                s.metrics.count("agent_iam.revocation.ssf.poll.failed", 1);
            }
            log(LogLevel::Warn, &format!("agent-iam: ssf: poll failed, the last state is kept: {why}"));
            return;
        }
    };
    let judged: Vec<Judged> =
        sets.iter().map(|(key, set)| judge(sources, Some(key), set, crypto, now, "ssf")).collect();
    let limits = sources.limits;
    let mut notes: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut accepted = 0u64;
    let written = state::update(&HostStore, &sources.state_key, |st| {
        notes.clear();
        refused.clear();
        accepted = 0;
        st.poll.ack.retain(|a| !sent_ack.contains(a));
        st.poll.errors.retain(|e| !sent_errors.contains(&e.jti));
        for j in &judged {
            match j {
                Judged::Apply { jti, until, selectors, note } => {
                    match st.apply_event(jti, *until, selectors, &format!("ssf:{jti}"), limits) {
                        Ok(fresh) => {
                            st.owe_ack(jti);
                            if fresh {
                                accepted += 1;
                                notes.push(note.clone());
                            }
                        }
                        Err(e) => {
                            refused.push(format!("{jti}: {e}"));
                            st.owe_error(SetError {
                                jti: jti.clone(),
                                err: "invalid_request".into(),
                                description: e.to_string(),
                            });
                        }
                    }
                }
                Judged::Refuse(e) => {
                    refused.push(format!("{}: {} ({})", excerpt(&e.jti), e.err, e.description));
                    st.owe_error(e.clone());
                }
            }
        }
        st.poll.last_success = Some(now);
        Ok(true)
    });
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    match written {
        Ok(_) => {
            let next = if more { now_ms } else { now_ms + poll.interval_ms };
            s.revocation.poll.succeeded(next);
            s.metrics.count("agent_iam.revocation.ssf.poll.ok", 1);
            s.metrics.count("agent_iam.revocation.ssf.set.accepted", accepted);
            s.metrics.count("agent_iam.revocation.ssf.set.refused", refused.len() as u64);
            drop(s);
            for note in &notes {
                log(LogLevel::Warn, &format!("agent-iam: revocation applied: {note}"));
            }
            for r in &refused {
                log(LogLevel::Warn, &format!("agent-iam: ssf: event refused: {r}"));
            }
        }
        Err(e) => {
            s.revocation.poll.failed(now_ms, poll.interval_ms.max(30_000));
            drop(s);
            log(LogLevel::Error, &format!("agent-iam: ssf: events not applied (will be delivered again): {e}"));
        }
    }
}

/// Metrics: live revocations by kind, the list's age, the time since the last good poll.
fn report(shared: &Rc<RefCell<Shared>>, sources: &Sources, now: i64) {
    let (counts, list_at, poll_at) = VIEW
        .with(|v| v.try_borrow().map(|v| (v.counts, v.list_fetched_at, v.last_poll)).unwrap_or(([0; 6], None, None)));
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    for (kind, count) in Kind::ALL.iter().zip(counts) {
        s.metrics.gauge(&format!("agent_iam.revocation.active.{}", kind.label()), count as u64);
    }
    if sources.list.is_some() {
        s.metrics.gauge(
            "agent_iam.revocation.list.age_seconds",
            list_at.map_or(u64::MAX >> 1, |at| (now - at).max(0) as u64),
        );
    }
    if let Some(at) = poll_at {
        s.metrics.gauge("agent_iam.revocation.ssf.last_poll_seconds", at.max(0) as u64);
    }
}

/// A pushed event's headers (RFC 8935): refused at once when they cannot be right, otherwise the body is
/// awaited. `None` when the request is not for the push endpoint.
pub fn push_headers(engine: &Engine, headers: &Headers<'_>, context_id: u32, end_of_stream: bool) -> Option<Applied> {
    let sources = sources_of(engine)?;
    let push = sources.push()?;
    let one = |name: &str| {
        let mut values = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v);
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    let path = one(":path")?;
    let path = path.split(|b| *b == b'?').next().unwrap_or(path);
    if path != push.path.as_bytes() {
        return None;
    }
    let answer = |status: u16, err: &str, description: &str| {
        push_reply(status, err, description);
        Some(Applied::Stopped)
    };
    if one(":method") != Some(b"POST".as_slice()) {
        return answer(405, "invalid_request", "security events are pushed with POST");
    }
    let authorized =
        one("authorization").is_some_and(|v| crate::bytes::constant_time_eq(v, push.authorization.as_bytes()));
    if !authorized {
        return answer(400, "authentication_failed", "missing or wrong authorization");
    }
    let content_type = one("content-type").and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/secevent+jwt") {
        return answer(400, "invalid_request", "content-type must be application/secevent+jwt");
    }
    if end_of_stream {
        return answer(400, "invalid_request", "no security event in the request");
    }
    // The upstream sees this request's headers (Envoy sends them on before any filter sees the body; the
    // route of the push path must lead somewhere), never its credential or its body: the plugin answers.
    if host::remove_header(MapType::HttpRequestHeaders, "authorization").is_err() {
        return answer(503, "temporarily_unavailable", "the request could not be handled");
    }
    super::mcp::set_phase(context_id, super::mcp::Phase::SecurityEvent { max_bytes: push.max_bytes });
    Some(Applied::Continue)
}

fn push_reply(status: u16, err: &str, description: &str) {
    let body = if status == 202 { String::new() } else { json!({"err": err, "description": description}).to_string() };
    let details =
        if status == 202 { "agent_iam.ssf_push_accepted".to_owned() } else { format!("agent_iam.ssf_push_{err}") };
    let headers: Vec<(&'static str, String)> =
        if status == 202 { Vec::new() } else { vec![("content-type", "application/json".to_owned())] };
    reply(&Denial {
        status,
        headers,
        body,
        details,
        reason: "ssf_push",
        rule: None,
        mcp: None,
        verified: None,
        revoked_by: None,
    });
}

/// The body of a pushed event, complete (or over the cap: `None`): verified, applied, answered.
pub fn on_push_body(shared: &Rc<RefCell<Shared>>, crypto: &dyn CryptoBackend, body: Option<&[u8]>, now_ms: u64) {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else {
        return push_reply(503, "temporarily_unavailable", "no configuration");
    };
    let Some(sources) = sources_of(&engine) else {
        return push_reply(503, "temporarily_unavailable", "no receiver configured");
    };
    let Some(body) = body else { return push_reply(400, "invalid_request", "the event is larger than allowed") };
    let now = (now_ms / 1000) as i64;
    let text = String::from_utf8_lossy(body);
    let judged = judge(&sources, None, &Value::String(text.trim().to_owned()), crypto, now, "push");
    let limits = sources.limits;
    match judged {
        Judged::Refuse(e) => {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.metrics.count("agent_iam.revocation.ssf.set.refused", 1);
            }
            log(LogLevel::Warn, &format!("agent-iam: ssf push: event refused: {} ({})", e.err, e.description));
            push_reply(400, &e.err, &e.description);
        }
        Judged::Apply { jti, until, selectors, note } => {
            let written = state::update(&HostStore, &sources.state_key, |st| {
                st.apply_event(&jti, until, &selectors, &format!("push:{jti}"), limits)
            });
            match written {
                Ok(_) => {
                    if let Ok(mut s) = shared.try_borrow_mut() {
                        s.metrics.count("agent_iam.revocation.ssf.set.accepted", 1);
                    }
                    log(LogLevel::Warn, &format!("agent-iam: revocation applied: {note}"));
                    hand_to(&engine, sync(&sources, now, false));
                    push_reply(202, "", "");
                }
                Err(e) => {
                    log(LogLevel::Error, &format!("agent-iam: ssf push: event not applied: {e}"));
                    push_reply(503, "temporarily_unavailable", "the event could not be recorded; send it again");
                }
            }
        }
    }
}
