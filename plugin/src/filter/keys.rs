//! Remote key sets in the VM: dispatches the fetches [`RemoteJwks`] asks for through Envoy clusters, feeds
//! it the answers, and installs usable keys into the engine.
//!
//! Each worker VM fetches on its own. The alternative, one VM fetching and the others reading the key set
//! from shared data, saves N-1 small requests per refresh period but needs a leader, a shared-data
//! encoding and a second path for "keys changed" in every VM; a JWKS endpoint serves a few requests per
//! worker per refresh period either way (measured: one fetch per VM at start, one per `max-age` after).
//!
//! No `RefCell` borrow is held across a hostcall that may call back into the plugin.

use super::host::{self, BufferType, LogLevel, MapType};
use super::{Shared, log};
use crate::engine::Engine;
use crate::token::KeySet;
use crate::token::remote::{FetchError, RemoteJwks};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Tick period while any issuer's keys are fetched: drives refreshes, retries and held requests'
/// deadlines.
pub const TICK_MS: u64 = 250;

thread_local! {
    /// The last fetch state of every remote key set this VM has fetched, by issuer name. Envoy gives an
    /// updated listener new root contexts in the same VM, so a reload must find the keys here, not in the
    /// old root context's state.
    static KNOWN: RefCell<Vec<(String, RemoteJwks)>> = const { RefCell::new(Vec::new()) };
}

fn remember(name: &str, state: &RemoteJwks) {
    KNOWN.with(|known| {
        let Ok(mut known) = known.try_borrow_mut() else { return };
        match known.iter_mut().find(|(n, s)| n == name && s.config() == state.config()) {
            Some(entry) => entry.1 = state.adopt(),
            None => known.push((name.to_owned(), state.adopt())),
        }
    });
}

fn recall(name: &str, config: &crate::token::remote::RemoteJwksConfig) -> Option<RemoteJwks> {
    KNOWN.with(|known| {
        known.try_borrow().ok()?.iter().find(|(n, s)| n == name && s.config() == config).map(|(_, s)| s.adopt())
    })
}

/// The fetch state of one issuer.
pub struct Remote {
    /// Index of the issuer in the configuration.
    pub issuer: usize,
    /// The issuer's name, for logs and to carry state across reloads.
    name: String,
    /// When to fetch, and the last good set.
    pub state: RemoteJwks,
    /// The outstanding call.
    callout: Option<u32>,
    /// Whether the engine holds this issuer's keys (false before the first fetch and once stale).
    serving: bool,
}

/// Installs a new configuration's engine. Fetch state (and keys) carry over for issuers whose remote
/// settings did not change, so a reload neither drops keys nor refetches. Returns whether any issuer's keys
/// are fetched.
pub fn install(shared: &Rc<RefCell<Shared>>, engine: Engine, now_ms: u64) -> bool {
    let now = (now_ms / 1000) as i64;
    let Ok(mut s) = shared.try_borrow_mut() else { return false };
    let mut old = std::mem::take(&mut s.remotes);
    let mut remotes = Vec::new();
    for (index, issuer) in engine.verifier().issuers().iter().enumerate() {
        let Some(config) = &issuer.remote else { continue };
        match old.iter().position(|o| *o.name == *issuer.issuer && o.state.config() == config) {
            Some(p) => {
                let mut kept = old.swap_remove(p);
                kept.issuer = index;
                remotes.push(kept);
            }
            None => remotes.push(Remote {
                issuer: index,
                name: issuer.issuer.to_string(),
                state: recall(&issuer.issuer, config).unwrap_or_else(|| RemoteJwks::new(config.clone(), now)),
                callout: None,
                serving: false,
            }),
        }
    }
    let mut engine = engine;
    for r in &mut remotes {
        r.serving = false;
        if let Some(keys) = r.state.usable_keys(now) {
            engine = engine.with_keys(r.issuer, keys.clone());
            r.serving = true;
        }
    }
    let any = !remotes.is_empty();
    s.remotes = remotes;
    s.engine = Some(Rc::new(engine));
    any
}

/// Starts every fetch that is due.
pub fn fetch_due(shared: &Rc<RefCell<Shared>>, now_ms: u64) {
    let now = (now_ms / 1000) as i64;
    let due: Vec<(usize, crate::token::remote::RemoteJwksConfig)> = match shared.try_borrow() {
        Ok(s) => s
            .remotes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state.due(now))
            .map(|(i, r)| (i, r.state.config().clone()))
            .collect(),
        Err(_) => return,
    };
    for (slot, config) in due {
        let headers = vec![
            (":method", "GET"),
            (":path", config.path.as_str()),
            (":authority", config.authority.as_str()),
            ("accept", "application/jwk-set+json, application/json"),
        ];
        let call = host::http_call(&config.cluster, &headers, Duration::from_millis(config.timeout_ms));
        let Ok(mut s) = shared.try_borrow_mut() else { return };
        let Some(r) = s.remotes.get_mut(slot) else { continue };
        match call {
            Ok(token) => {
                r.state.started();
                r.callout = Some(token);
            }
            Err(status) => {
                r.state.on_failure(now);
                log(
                    LogLevel::Warn,
                    &format!(
                        "agent-iam: cannot fetch the key set of {} from cluster \"{}\": {status:?} (retrying)",
                        r.name, config.cluster
                    ),
                );
            }
        }
    }
}

/// Handles the answer to a fetch; returns the issuer whose keys changed.
pub fn on_response(shared: &Rc<RefCell<Shared>>, token: u32, now_ms: u64, body_size: usize) -> Option<usize> {
    let now = (now_ms / 1000) as i64;
    let (slot, max_bytes) = {
        let s = shared.try_borrow().ok()?;
        let slot = s.remotes.iter().position(|r| r.callout == Some(token))?;
        (slot, s.remotes[slot].state.config().max_bytes)
    };
    // An answer with no status is Envoy reporting a failed call (reset, timeout, no healthy host).
    let buffer = host::header_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let headers = crate::header_map::parse(&buffer).unwrap_or_default();
    let header = |name: &str| headers.iter().find(|(n, _)| *n == name).and_then(|(_, v)| std::str::from_utf8(v).ok());
    let status = header(":status").and_then(|s| s.parse::<u16>().ok());
    let cache_control = header("cache-control").map(str::to_owned);
    let body = if body_size > max_bytes {
        None
    } else {
        Some(host::buffer(BufferType::HttpCallResponseBody, body_size).unwrap_or_default())
    };

    let mut s = shared.try_borrow_mut().ok()?;
    let engine = s.engine.clone();
    let r = s.remotes.get_mut(slot)?;
    r.callout = None;
    let result = match (status, &body) {
        (None, _) => {
            r.state.on_failure(now);
            Err(FetchError::NoResponse)
        }
        (Some(_), None) => {
            // Over the cap: not even read.
            r.state.on_failure(now);
            Err(FetchError::TooLarge(body_size))
        }
        (Some(status), Some(body)) => r.state.on_response(now, status, cache_control.as_deref(), body).cloned(),
    };
    s.metrics.count(
        match &result {
            Ok(_) => "agent_iam.jwks.fetch.ok",
            Err(FetchError::NoResponse) => "agent_iam.jwks.fetch.no_response",
            Err(FetchError::Status(_)) => "agent_iam.jwks.fetch.bad_status",
            Err(FetchError::TooLarge(_)) => "agent_iam.jwks.fetch.too_large",
            Err(FetchError::Invalid(_)) => "agent_iam.jwks.fetch.invalid",
        },
        1,
    );
    let r = s.remotes.get_mut(slot)?;
    match result {
        Ok(keys) => {
            let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
            log(
                LogLevel::Info,
                &format!("agent-iam: key set of {} fetched: {} key(s) [{}]", r.name, keys.len(), kids.join(", ")),
            );
            r.serving = true;
            remember(&r.name, &r.state);
            let issuer = r.issuer;
            s.engine = engine.map(|e| Rc::new(e.with_keys(issuer, keys)));
            Some(issuer)
        }
        Err(e) => {
            let kept = match r.state.age(now) {
                Some(age) if r.serving => format!("keeping the last good set ({age} s old)"),
                _ => "no usable key set yet".to_owned(),
            };
            log(
                LogLevel::Warn,
                &format!(
                    "agent-iam: fetching the key set of {} failed ({}): {e}; {kept}; retry after {} failure(s)",
                    r.name,
                    e.label(),
                    r.state.failures()
                ),
            );
            None
        }
    }
}

/// Per tick: withdraws key sets that went stale, then starts due fetches. Returns whether the engine changed.
pub fn on_tick(shared: &Rc<RefCell<Shared>>, now_ms: u64) -> bool {
    let now = (now_ms / 1000) as i64;
    let mut changed = false;
    if let Ok(mut s) = shared.try_borrow_mut() {
        let mut stale = Vec::new();
        for r in &mut s.remotes {
            if r.serving && r.state.usable_keys(now).is_none() {
                r.serving = false;
                stale.push(r.issuer);
                log(
                    LogLevel::Warn,
                    &format!(
                        "agent-iam: the key set of {} is older than max_stale_seconds; its tokens get 503 until a fetch succeeds",
                        r.name
                    ),
                );
            }
        }
        for issuer in stale {
            s.engine = s.engine.as_ref().map(|e| Rc::new(e.with_keys(issuer, KeySet::default())));
            changed = true;
        }
        let ages: Vec<(usize, i64)> =
            s.remotes.iter().filter_map(|r| r.state.age(now).map(|age| (r.issuer, age))).collect();
        for (issuer, age) in ages {
            s.metrics.gauge(&format!("agent_iam.jwks.issuer_{issuer}.age_seconds"), u64::try_from(age).unwrap_or(0));
        }
    }
    fetch_due(shared, now_ms);
    changed
}
