//! Exports for the limits benchmark (`bench/src/bin/limits_bench.rs`): what a request limit and the anomaly
//! detector cost inside the `.wasm` (issue 21, item 5).
//!
//! - `agent_iam_bench_limits_load(ptr, len) -> i32`: takes a JSON document `{"config": {...},
//!   "config3": {...}, "check_config": {...} (plugin configurations), "time_us": N, "claims": {...}, "rule":
//!   "id", "get": {"method", "path", "host"}, "mcp": {"headers": [[name, value]], "body": "..."}, "token":
//!   "JWT", "headers": [[name, value]], "check_requests": N, "step_us": N, "step_ms": N, "learn_ms": N,
//!   "new_rule": "id"}` (a buffer from `proxy_on_memory_allocate`, freed here). Builds the three engines as the
//!   gateway does ([`crate::config::parse`]), each with a [`SharedLimiter`] over its own [`MemoryStore`]: in the
//!   `.wasm` the store's calls stand in for Envoy's shared-data host calls (`proxy_get_shared_data`,
//!   `proxy_set_shared_data`), whose own price in Envoy is what configuration H of `make bench-envoy` measures.
//!   The token of `claims` and the requests (the `get`, and the MCP `tools/call` of `mcp`, parsed once) are
//!   prepared once, as the token cache and the request path would have them. A [`Detector`] with `config`'s
//!   anomaly settings learns the agent's steady traffic (one request every `step_ms` from `time_us`, for
//!   `learn_ms`).
//!
//!   Before answering it checks that nothing measures nothing: `config`'s policy puts the `get` under one limit
//!   and `config3`'s the MCP call under three, with distinct keys; with the clock frozen, `check_config`'s
//!   engine allows the request of `headers` with `token` exactly `check_requests` times and refuses the next
//!   (429, `rate_limited`); the learning detector fired nothing, and a second one that learnt the same fires a
//!   first use for `new_rule` (the detector is live). Returns 0, or a negative error code.
//! - `agent_iam_bench_limits_run(phase, iterations) -> u32`: runs one phase `iterations` times, the clocks
//!   moving on by `step_us` (limits) or `step_ms` (the detector) per operation; see the `PHASE_*` constants.
//!   Phases answer how many operations were allowed (or fired nothing).

use super::{ERR_ARGUMENT, ERR_CONFIG, ERR_DOCUMENT, ERR_TOKEN, leak_headers};
use crate::anomaly::{Detector, Observation, Settings, SignalKind};
use crate::engine::limits::{Charge, Limiter, SharedLimiter};
use crate::engine::{Engine, Verdict};
use crate::policy::cases::token_from_claims;
use crate::request::mcp::{self as mcp_request, Arguments, McpRequest, Revision};
use crate::request::{Header, Peer, Request};
use crate::shared_data::MemoryStore;
use crate::token::{PureRust, VerifiedToken};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::rc::Rc;

/// The limit work of one allowed `GET` under one limit per agent (configuration H's policy):
/// [`crate::policy::Policy::limits_for`] and a GCRA charge of each limit that applies.
pub const PHASE_LIMITS_1: u32 = 0;
/// The same for an MCP `tools/call` under three limits: per agent, per subject, per agent and tool.
pub const PHASE_LIMITS_3: u32 = 1;
/// [`crate::anomaly::Detector::observe`] of the known agent's allowed request, every signal on, after learning.
pub const PHASE_OBSERVE: u32 = 2;
/// Nothing: the loop alone, the floor under the other phases' figures.
pub const PHASE_LOOP: u32 = 3;
/// [`crate::policy::Policy::limits_for`] alone, for [`PHASE_LIMITS_1`]'s request (no charge).
pub const PHASE_LIMITS_FOR_1: u32 = 4;

/// A policy does not put its request under the expected limits.
const ERR_LIMITS: i32 = -13;
/// The limit is not exact with a frozen clock (allows other than `check_requests`, or refuses otherwise).
const ERR_EXACT: i32 = -14;
/// The configuration has no anomaly settings, the detector fired on steady traffic, or did not fire on a
/// first use.
const ERR_DETECTOR: i32 = -15;
/// The MCP call does not parse.
const ERR_MCP: i32 = -16;

#[derive(Deserialize)]
struct Document {
    config: Value,
    config3: Value,
    check_config: Value,
    time_us: u64,
    claims: Map<String, Value>,
    rule: String,
    get: Get,
    mcp: Mcp,
    token: String,
    headers: Vec<(String, String)>,
    check_requests: u32,
    step_us: u64,
    step_ms: u64,
    learn_ms: u64,
    new_rule: String,
}

#[derive(Deserialize)]
struct Get {
    method: String,
    path: String,
    host: String,
}

#[derive(Deserialize)]
struct Mcp {
    headers: Vec<(String, String)>,
    body: String,
}

/// An engine and the limiter it counts with (held here too, so that the benchmark charges through the same
/// `dyn Limiter` as [`Engine::check_limits`](crate::engine::Engine) without deciding the whole request).
struct Counted {
    engine: Engine,
    limiter: Rc<dyn Limiter>,
}

struct Bench {
    one: Counted,
    three: Counted,
    /// The limiters' clock, microseconds.
    clock: Rc<Cell<u64>>,
    step_us: u64,
    token: VerifiedToken,
    rule: &'static str,
    get: Get,
    call: McpRequest,
    detector: Detector,
    /// The detector's clock, milliseconds.
    now_ms: u64,
    step_ms: u64,
}

thread_local! {
    static LIMITS: RefCell<Option<Bench>> = const { RefCell::new(None) };
}

/// An engine built from `config` as the gateway builds it, counting in memory at `clock`.
fn engine(config: &Value, clock: impl Fn() -> Option<u64> + 'static) -> Result<Counted, i32> {
    let bytes = serde_json::to_vec(config).map_err(|_| ERR_DOCUMENT)?;
    let engine = crate::config::parse(&bytes).map_err(|_| ERR_CONFIG)?;
    let limiter: Rc<dyn Limiter> = Rc::new(SharedLimiter { store: MemoryStore::default(), clock });
    engine.set_limiter(limiter.clone());
    Ok(Counted { engine, limiter })
}

/// The agent's allowed request as the detector sees it.
fn observation<'a>(token: &'a VerifiedToken, rule: &'a str) -> Observation<'a> {
    Observation {
        agent: token.agent(),
        subject: token.subject(),
        depth: token.chain.depth(),
        allowed: true,
        rule: Some(rule),
        labels: &[],
        tool: None,
    }
}

/// A detector with `settings` that learnt the agent's steady traffic from `from_ms` for `learn_ms`; the time
/// after, or `None` if it fired.
fn learnt(
    settings: &Settings,
    o: &Observation<'_>,
    from_ms: u64,
    learn_ms: u64,
    step_ms: u64,
) -> Option<(Detector, u64)> {
    let mut detector = Detector::new(settings.clone());
    let mut now = from_ms;
    while now < from_ms + learn_ms {
        if !detector.observe(o, now).is_empty() {
            return None;
        }
        now += step_ms;
    }
    Some((detector, now))
}

/// The limit work of one allowed request: the limits that apply and a charge of each; whether all allowed it.
fn limit_work(c: &Counted, token: &VerifiedToken, view: &Request<'_>, rule: &str) -> bool {
    let applicable = c.engine.policy().limits_for(token, view, rule);
    applicable.iter().all(|a| matches!(c.limiter.charge(&a.key, a.limit), Ok(Charge::Allowed { .. })))
}

fn load(bytes: &[u8]) -> Result<Bench, i32> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|_| ERR_DOCUMENT)?;
    if doc.step_us == 0 || doc.step_ms == 0 || doc.check_requests == 0 {
        return Err(ERR_ARGUMENT);
    }
    let clock = Rc::new(Cell::new(doc.time_us));
    let at = |c: &Rc<Cell<u64>>| {
        let c = c.clone();
        move || Some(c.get())
    };
    let one = engine(&doc.config, at(&clock))?;
    let three = engine(&doc.config3, at(&clock))?;
    let token = token_from_claims(doc.claims).map_err(|_| ERR_TOKEN)?;
    let rule: &'static str = Box::leak(doc.rule.into_boxed_str());
    let mcp_headers: Vec<Header<'static>> = leak_headers(doc.mcp.headers);
    let call = mcp_request::parse(doc.mcp.body.as_bytes(), &mcp_headers, &Revision::ALL, Arguments::All)
        .map_err(|_| ERR_MCP)?;
    let now = (doc.time_us / 1_000_000) as i64;
    let bench_get = doc.get;

    // One limit on the GET, three with distinct keys on the MCP call.
    let no_headers: Vec<Header<'static>> = Vec::new();
    let get_view = get_request(&bench_get, &no_headers, now);
    let mcp_view = mcp_request_view(&call, &mcp_headers, now);
    if one.engine.policy().limits_for(&token, &get_view, rule).len() != 1 {
        return Err(ERR_LIMITS);
    }
    let keys: Vec<String> = three
        .engine
        .policy()
        .limits_for(&token, &mcp_view, rule)
        .iter()
        .map(|a| crate::engine::limits::counter_key(a.limit, &a.key))
        .collect();
    if keys.len() != 3 || keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
        return Err(ERR_LIMITS);
    }

    // Exact at N with a frozen clock, through the whole decision.
    let frozen = doc.time_us;
    let check = engine(&doc.check_config, move || Some(frozen))?.engine;
    let mut pairs = doc.headers;
    pairs.push(("authorization".into(), format!("Bearer {}", doc.token)));
    let headers = leak_headers(pairs);
    for _ in 0..doc.check_requests {
        if !matches!(check.decide(&headers, now, &PureRust), Verdict::Allow { dry_run: None, .. }) {
            return Err(ERR_EXACT);
        }
    }
    let next = check.decide(&headers, now, &PureRust);
    if !matches!(next, Verdict::Deny(d) if d.status == 429 && d.reason == "rate_limited") {
        return Err(ERR_EXACT);
    }

    // The detector: quiet on steady traffic, live on a first use.
    let settings = one.engine.settings().anomaly.clone().ok_or(ERR_DETECTOR)?;
    let o = observation(&token, rule);
    let from_ms = doc.time_us / 1000;
    let (detector, now_ms) = learnt(&settings, &o, from_ms, doc.learn_ms, doc.step_ms).ok_or(ERR_DETECTOR)?;
    let (mut probe, probe_ms) = learnt(&settings, &o, from_ms, doc.learn_ms, doc.step_ms).ok_or(ERR_DETECTOR)?;
    let fresh = Observation { rule: Some(&doc.new_rule), ..o };
    let fired = probe.observe(&fresh, probe_ms);
    if !(fired.len() == 1 && fired.iter().all(|s| s.kind == SignalKind::FirstUse)) {
        return Err(ERR_DETECTOR);
    }
    Ok(Bench {
        one,
        three,
        clock,
        step_us: doc.step_us,
        token,
        rule,
        get: bench_get,
        call,
        detector,
        now_ms,
        step_ms: doc.step_ms,
    })
}

/// The GET as policy sees it.
fn get_request<'a>(get: &'a Get, headers: &'a [Header<'a>], now: i64) -> Request<'a> {
    Request {
        method: &get.method,
        path: &get.path,
        query: None,
        host: Some(&get.host),
        headers,
        now,
        peer: Peer::default(),
        route: None,
        route_tag: None,
        mcp: None,
        hypothetical: false,
    }
}

/// The MCP call as policy sees it.
fn mcp_request_view<'a>(call: &'a McpRequest, headers: &'a [Header<'a>], now: i64) -> Request<'a> {
    Request {
        method: "POST",
        path: "/mcp",
        query: None,
        host: None,
        headers,
        now,
        peer: Peer::default(),
        route: None,
        route_tag: None,
        mcp: Some(call),
        hypothetical: false,
    }
}

/// Loads the limits benchmark's engines, token, requests and detector; see the module documentation.
///
/// # Safety
///
/// As [`super::agent_iam_bench_load`]: `ptr` must be a buffer of `len` bytes from this module's
/// `proxy_on_memory_allocate(len)`, not used by the caller afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn agent_iam_bench_limits_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller's contract is `load_into`'s.
    unsafe { super::load_into(ptr, len, &LIMITS, load, |_| 0) }
}

/// Runs `phase` `iterations` times; see the `PHASE_*` constants (0 before a successful load, or for an unknown
/// phase).
#[unsafe(no_mangle)]
pub extern "C" fn agent_iam_bench_limits_run(phase: u32, iterations: u32) -> u32 {
    LIMITS.with(|b| {
        let Ok(mut guard) = b.try_borrow_mut() else { return 0 };
        let Some(bench) = guard.as_mut() else { return 0 };
        let no_headers: [Header<'static>; 0] = [];
        let mut count = 0u32;
        for _ in 0..iterations {
            count = count.wrapping_add(match phase {
                PHASE_LIMITS_1 | PHASE_LIMITS_3 | PHASE_LIMITS_FOR_1 => {
                    bench.clock.set(bench.clock.get() + bench.step_us);
                    let now = (bench.clock.get() / 1_000_000) as i64;
                    let (engine, view) = if phase == PHASE_LIMITS_3 {
                        (&bench.three, mcp_request_view(&bench.call, &no_headers, now))
                    } else {
                        (&bench.one, get_request(&bench.get, &no_headers, now))
                    };
                    if phase == PHASE_LIMITS_FOR_1 {
                        let applicable = engine.engine.policy().limits_for(black_box(&bench.token), &view, bench.rule);
                        u32::from(applicable.len() == 1)
                    } else {
                        u32::from(limit_work(engine, black_box(&bench.token), &view, bench.rule))
                    }
                }
                PHASE_OBSERVE => {
                    bench.now_ms += bench.step_ms;
                    let o = observation(&bench.token, bench.rule);
                    u32::from(bench.detector.observe(black_box(&o), bench.now_ms).is_empty())
                }
                PHASE_LOOP => black_box(1),
                _ => return 0,
            });
        }
        count
    })
}
