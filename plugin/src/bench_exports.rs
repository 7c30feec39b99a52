//! Exports for the policy benchmark (`bench/src/bin/policy_bench.rs`): our evaluator timed inside the
//! `.wasm`, as it runs in the gateway, without the proxy-wasm callbacks around it. Compiled only with the
//! `bench-exports` feature into a separate target directory (`make bench`); the production `.wasm` never has
//! them.
//!
//! - `agent_iam_bench_load(ptr, len) -> i32`: takes a JSON document
//!   `{"policy": {...}, "requests": [{"claims": {...}, "method", "path", "host", "headers": [[name, value]],
//!   "time"}]}` from a buffer the host got from `proxy_on_memory_allocate(len)` (ownership passes here: the
//!   buffer is freed), compiles the policy, and builds the verified tokens and canonical requests once, as the
//!   gateway's token cache and request canonicalisation would. Returns the number of requests, or a negative
//!   error code.
//! - `agent_iam_bench_run(iterations) -> u32`: evaluates `iterations` requests round-robin (continuing where
//!   the last call stopped; a load starts at the first request) and returns how many were allowed, so that
//!   nothing can be optimised away and the host can check the decisions.
//!
//! For the MCP benchmark (`bench/src/bin/mcp_bench.rs`), the MCP request path through the engine's public API
//! on a prepared engine with a warm token cache:
//!
//! - `agent_iam_bench_mcp_load(ptr, len) -> i32`: takes a JSON document `{"config": {...plugin
//!   configuration...}, "time": seconds, "claims": {...}, "call": {"headers": [[name, value]], "body": "..."},
//!   "list": {"headers": [...], "body": "...", "response": "..."}}` (a buffer from `proxy_on_memory_allocate`,
//!   freed here), builds the engine as the gateway does ([`crate::config::parse`]), decides `call` once (which
//!   verifies its token and fills the cache) and the `list` request once (keeping the `tools/list` message its
//!   verdict carries, as the filter keeps it for the response). Returns 0, or a negative error code.
//! - `agent_iam_bench_mcp_run(phase, iterations) -> u32`: runs one phase `iterations` times; see the `PHASE_*`
//!   constants. Phases answer how many iterations were allowed (or parsed); the list phases answer the length
//!   of the last rewritten response, which the host compares with its own native run.
//!
//! Nothing here panics across the boundary: errors are return codes.
//!
//! The revocation benchmark's exports (`agent_iam_bench_revocation_load`/`_run`) are in [`revocation`], the limits
//! benchmark's (`agent_iam_bench_limits_load`/`_run`) in [`limits`], the DPoP benchmark's
//! (`agent_iam_bench_dpop_load`/`_run`, which call the host's `verify_signature` and shared data) in [`dpop`].

mod dpop;
mod limits;
mod revocation;

use crate::engine::{AwaitBody, Body, Engine, Verdict};
use crate::policy::cases::token_from_claims;
use crate::policy::{Decision, Policy, PolicyDocument};
use crate::request::mcp::list::{self, Filtered, ListKind};
use crate::request::mcp::{self as mcp_request, McpRequest, Revision};
use crate::request::{self, Connection, Header, Peer, Request};
use crate::token::{PureRust, VerifiedToken};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// The buffer is not valid JSON of the expected shape.
const ERR_DOCUMENT: i32 = -1;
/// The policy was refused.
const ERR_POLICY: i32 = -2;
/// A request's claims do not make a token.
const ERR_TOKEN: i32 = -3;
/// A request is not canonicalisable.
const ERR_REQUEST: i32 = -4;
/// A null pointer or more requests than fit the return value.
const ERR_ARGUMENT: i32 = -5;
/// The plugin configuration was refused.
const ERR_CONFIG: i32 = -6;
/// The MCP call is not allowed (the benchmark times the allowed path).
const ERR_CALL: i32 = -7;
/// The list request is not allowed, or its response does not filter.
const ERR_LIST: i32 = -8;

#[derive(Deserialize)]
struct LoadDocument {
    policy: PolicyDocument,
    requests: Vec<RequestDocument>,
}

#[derive(Deserialize)]
struct RequestDocument {
    claims: Map<String, Value>,
    method: String,
    path: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    time: i64,
}

/// One prepared request: what the engine has in hand when it calls [`Policy::evaluate`].
struct Prepared {
    token: VerifiedToken,
    method: String,
    path: String,
    query: Option<String>,
    host: Option<String>,
    /// Leaked at load (a handful of loads per benchmark run): the engine reads headers borrowed from the
    /// proxy's buffer, and building borrowed pairs per evaluation would time an allocation that the gateway
    /// does not make.
    headers: Vec<(&'static str, &'static [u8])>,
    now: i64,
}

struct Bench {
    policy: Policy,
    requests: Vec<Prepared>,
    cursor: usize,
}

thread_local! {
    static BENCH: RefCell<Option<Bench>> = const { RefCell::new(None) };
}

fn prepare(r: RequestDocument) -> Result<Prepared, i32> {
    let token = token_from_claims(r.claims).map_err(|_| ERR_TOKEN)?;
    let method = request::canonical_method(&r.method).map_err(|_| ERR_REQUEST)?.into_owned();
    let (path, query) = request::canonical_path(&r.path).map_err(|_| ERR_REQUEST)?;
    let (path, query) = (path.into_owned(), query.map(str::to_owned));
    let host =
        r.host.as_deref().map(request::canonical_host).transpose().map_err(|_| ERR_REQUEST)?.map(|h| h.into_owned());
    let headers = r
        .headers
        .into_iter()
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.to_ascii_lowercase().into_boxed_str());
            let value: &'static [u8] = Box::leak(v.into_bytes().into_boxed_slice());
            (name, value)
        })
        .collect();
    Ok(Prepared { token, method, path, query, host, headers, now: r.time })
}

fn load(bytes: &[u8]) -> Result<Bench, i32> {
    let doc: LoadDocument = serde_json::from_slice(bytes).map_err(|_| ERR_DOCUMENT)?;
    let policy = Policy::compile(&doc.policy).map_err(|_| ERR_POLICY)?;
    let requests = doc.requests.into_iter().map(prepare).collect::<Result<Vec<_>, _>>()?;
    if requests.is_empty() || requests.len() > i32::MAX as usize {
        return Err(ERR_ARGUMENT);
    }
    Ok(Bench { policy, requests, cursor: 0 })
}

/// Loads the policy and requests; see the module documentation.
///
/// # Safety
///
/// `ptr` must be a buffer of `len` bytes returned by this module's `proxy_on_memory_allocate(len)` and not used
/// by the caller afterwards: it is freed here.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn agent_iam_bench_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller's contract is `load_into`'s.
    unsafe { load_into(ptr, len, &BENCH, load, |bench| bench.requests.len() as i32) }
}

/// What every benchmark's `*_load` export does: takes the buffer the host filled (ownership passes here: it is
/// freed once `load` has read it), keeps what `load` made of it in `slot`, and answers `answer` of it, or
/// `load`'s error code.
///
/// # Safety
///
/// `ptr` must be a buffer of `len` bytes returned by this module's `proxy_on_memory_allocate(len)` and not used
/// by the caller afterwards.
pub(crate) unsafe fn load_into<T: 'static>(
    ptr: *mut u8,
    len: usize,
    slot: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    load: impl FnOnce(&[u8]) -> Result<T, i32>,
    answer: impl FnOnce(&T) -> i32,
) -> i32 {
    if ptr.is_null() {
        return ERR_ARGUMENT;
    }
    // SAFETY: per the contract, `proxy_on_memory_allocate(len)` made this exact allocation as a `Box<[u8]>`
    // of `len` bytes (proxy-wasm 0.2: `Vec::with_capacity(len)` with length `len`, into a boxed slice).
    let buffer: Box<[u8]> = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) };
    let loaded = load(&buffer);
    drop(buffer);
    match loaded {
        Ok(bench) => {
            let answered = answer(&bench);
            slot.with(|b| *b.borrow_mut() = Some(bench));
            answered
        }
        Err(code) => code,
    }
}

/// Evaluates `iterations` requests round-robin; returns how many were allowed (0 before a successful load).
#[unsafe(no_mangle)]
pub extern "C" fn agent_iam_bench_run(iterations: u32) -> u32 {
    BENCH.with(|b| {
        let Ok(mut guard) = b.try_borrow_mut() else { return 0 };
        let Some(bench) = guard.as_mut() else { return 0 };
        let mut allowed = 0u32;
        let mut cursor = bench.cursor;
        for _ in 0..iterations {
            let Some(r) = bench.requests.get(cursor) else { break };
            let view = Request {
                method: &r.method,
                path: &r.path,
                query: r.query.as_deref(),
                host: r.host.as_deref(),
                headers: &r.headers,
                now: r.now,
                peer: Peer::default(),
                route: None,
                route_tag: None,
                mcp: None,
                hypothetical: false,
            };
            if matches!(bench.policy.evaluate(&r.token, &view), Decision::Allow { .. }) {
                allowed += 1;
            }
            cursor += 1;
            if cursor == bench.requests.len() {
                cursor = 0;
            }
        }
        bench.cursor = cursor;
        allowed
    })
}

// ---------------------------------------------------------------------------------------------
// MCP
// ---------------------------------------------------------------------------------------------

/// The decision on an MCP `tools/call` POST once its body is read, as the filter makes it:
/// [`Engine::decide_body`] with what the decision at the headers left (the request canonicalised again, the
/// token's revocations checked, the body parsed, its mirrored headers checked, policy).
pub const PHASE_CALL: u32 = 0;
/// The same request's decision at its headers ([`Body::Absent`]: everything up to "read the body"), which
/// the filter also makes, before the body arrives.
pub const PHASE_CALL_HEADERS: u32 = 1;
/// The body read as strict JSON only ([`crate::json::tape::Tape`]).
pub const PHASE_JSON: u32 = 2;
/// The body read as an MCP message and its mirrored headers checked ([`mcp_request::parse`]), building the
/// arguments policy names, as the engine does.
pub const PHASE_PARSE: u32 = 3;
/// Policy alone on the parsed message ([`Policy::evaluate`]).
pub const PHASE_POLICY: u32 = 4;
/// A `tools/list` response filtered for the caller ([`Engine::filter_list_response`]: the request's token
/// from the cache, one hypothetical call per tool through policy, the response rewritten).
pub const PHASE_LIST: u32 = 5;
/// The same response rewritten with the answers known ([`list::filter_response`], no policy).
pub const PHASE_LIST_SCAN: u32 = 6;
/// The same decision made afresh ([`Engine::decide_with_body`] with [`Body::Complete`]: the token looked up in
/// the cache again), as the filter makes it after a new configuration arrived between headers and body.
pub const PHASE_CALL_AFRESH: u32 = 7;

#[derive(Deserialize)]
struct McpDocument {
    config: Value,
    time: i64,
    claims: Map<String, Value>,
    call: McpMessage,
    list: McpList,
}

#[derive(Deserialize)]
struct McpMessage {
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Deserialize)]
struct McpList {
    headers: Vec<(String, String)>,
    body: String,
    response: String,
}

struct McpBench {
    engine: Engine,
    now: i64,
    call_headers: Vec<Header<'static>>,
    call_body: Vec<u8>,
    /// What the call's decision at its headers left for the one on its body.
    wait: AwaitBody,
    /// The call parsed, and a token of the same claims: what policy sees.
    call: McpRequest,
    token: VerifiedToken,
    list_headers: Vec<Header<'static>>,
    list_call: Rc<McpRequest>,
    list_response: Vec<u8>,
    /// Which tools the caller keeps, in order (for [`PHASE_LIST_SCAN`]).
    kept: Vec<bool>,
}

thread_local! {
    static MCP: RefCell<Option<McpBench>> = const { RefCell::new(None) };
}

/// Header pairs as the proxy hands them over (lower-case names), leaked at load like the policy benchmark's.
fn leak_headers(headers: Vec<(String, String)>) -> Vec<Header<'static>> {
    headers
        .into_iter()
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.to_ascii_lowercase().into_boxed_str());
            let value: &'static [u8] = Box::leak(v.into_bytes().into_boxed_slice());
            (name, value)
        })
        .collect()
}

fn load_mcp(bytes: &[u8]) -> Result<McpBench, i32> {
    let doc: McpDocument = serde_json::from_slice(bytes).map_err(|_| ERR_DOCUMENT)?;
    let config = serde_json::to_vec(&doc.config).map_err(|_| ERR_DOCUMENT)?;
    let engine = crate::config::parse(&config).map_err(|_| ERR_CONFIG)?;
    let now = doc.time;
    let call_headers = leak_headers(doc.call.headers);
    let call_body = doc.call.body.into_bytes();
    let verdict = engine.decide_with_body(&call_headers, Connection::default(), Body::Absent, now, &PureRust);
    let Verdict::Allow { await_body: Some(wait), .. } = verdict else { return Err(ERR_CALL) };
    let verdict =
        engine.decide_body(&wait, &call_headers, Connection::default(), Body::Complete(&call_body), now, &PureRust);
    let Verdict::Allow { mcp: Some(_), dry_run: None, .. } = verdict else { return Err(ERR_CALL) };
    let call = mcp_request::parse(
        &call_body,
        &call_headers,
        &Revision::ALL,
        mcp_request::Arguments::Only(&engine.policy().needs().arguments),
    )
    .map_err(|_| ERR_CALL)?;
    let token = token_from_claims(doc.claims).map_err(|_| ERR_TOKEN)?;

    let list_headers = leak_headers(doc.list.headers);
    let list_body = doc.list.body.into_bytes();
    let verdict =
        engine.decide_with_body(&list_headers, Connection::default(), Body::Complete(&list_body), now, &PureRust);
    let Verdict::Allow { mcp: Some(list_call), filter_list: true, .. } = verdict else { return Err(ERR_LIST) };
    let list_response = doc.list.response.into_bytes();
    let mut kept = Vec::new();
    let filtered = engine
        .filter_list_response(&list_headers, Connection::default(), now, &PureRust, &list_call, &list_response)
        .map_err(|_| ERR_LIST)?;
    // The answers policy gave, for the scan-only phase: the names that survived.
    let Filtered::Rewritten(out) = filtered else { return Err(ERR_LIST) };
    let out: Value = serde_json::from_slice(&out).map_err(|_| ERR_LIST)?;
    let survivors: Vec<&str> = out["result"]["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let all: Value = serde_json::from_slice(&list_response).map_err(|_| ERR_LIST)?;
    for tool in all["result"]["tools"].as_array().into_iter().flatten() {
        kept.push(tool["name"].as_str().is_some_and(|n| survivors.contains(&n)));
    }
    Ok(McpBench {
        engine,
        now,
        call_headers,
        call_body,
        wait,
        call,
        token,
        list_headers,
        list_call,
        list_response,
        kept,
    })
}

/// Loads the MCP benchmark's engine and messages; see the module documentation.
///
/// # Safety
///
/// As [`agent_iam_bench_load`]: `ptr` must be a buffer of `len` bytes from this module's
/// `proxy_on_memory_allocate(len)`, not used by the caller afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn agent_iam_bench_mcp_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller's contract is `load_into`'s.
    unsafe { load_into(ptr, len, &MCP, load_mcp, |_| 0) }
}

/// Runs `phase` `iterations` times; see the `PHASE_*` constants (0 before a successful load, or for an
/// unknown phase).
#[unsafe(no_mangle)]
pub extern "C" fn agent_iam_bench_mcp_run(phase: u32, iterations: u32) -> u32 {
    MCP.with(|b| {
        let Ok(guard) = b.try_borrow() else { return 0 };
        let Some(m) = guard.as_ref() else { return 0 };
        let conn = Connection::default();
        if phase == PHASE_LIST || phase == PHASE_LIST_SCAN {
            return list_phase(m, phase, iterations);
        }
        let mut count = 0u32;
        for _ in 0..iterations {
            count = count.wrapping_add(match phase {
                PHASE_CALL => {
                    let body = Body::Complete(&m.call_body);
                    let v = m.engine.decide_body(&m.wait, &m.call_headers, conn, body, m.now, &PureRust);
                    u32::from(matches!(v, Verdict::Allow { mcp: Some(_), .. }))
                }
                PHASE_CALL_AFRESH => {
                    let body = Body::Complete(&m.call_body);
                    let v = m.engine.decide_with_body(&m.call_headers, conn, body, m.now, &PureRust);
                    u32::from(matches!(v, Verdict::Allow { mcp: Some(_), .. }))
                }
                PHASE_CALL_HEADERS => {
                    let v = m.engine.decide_with_body(&m.call_headers, conn, Body::Absent, m.now, &PureRust);
                    u32::from(matches!(v, Verdict::Allow { await_body: Some(_), .. }))
                }
                PHASE_JSON => u32::from(crate::json::tape::Tape::parse(&m.call_body, mcp_request::MAX_DEPTH).is_ok()),
                PHASE_PARSE => u32::from(
                    mcp_request::parse(
                        &m.call_body,
                        &m.call_headers,
                        &Revision::ALL,
                        mcp_request::Arguments::Only(&m.engine.policy().needs().arguments),
                    )
                    .is_ok(),
                ),
                PHASE_POLICY => {
                    let view = Request {
                        method: "POST",
                        path: "/mcp",
                        query: None,
                        host: None,
                        headers: &m.call_headers,
                        now: m.now,
                        peer: Peer::default(),
                        route: None,
                        route_tag: None,
                        mcp: Some(&m.call),
                        hypothetical: false,
                    };
                    u32::from(matches!(m.engine.policy().evaluate(&m.token, &view), Decision::Allow { .. }))
                }
                _ => return 0,
            });
        }
        count
    })
}

/// The list phases: the length of the last rewrite (0 when it did not rewrite).
fn list_phase(m: &McpBench, phase: u32, iterations: u32) -> u32 {
    let mut length = 0;
    for _ in 0..iterations {
        let filtered = if phase == PHASE_LIST {
            m.engine.filter_list_response(
                &m.list_headers,
                Connection::default(),
                m.now,
                &PureRust,
                &m.list_call,
                &m.list_response,
            )
        } else {
            let mut answers = m.kept.iter().copied();
            list::filter_response(&m.list_response, ListKind::Tools, true, &mut |_| answers.next().unwrap_or(false))
        };
        length = match filtered {
            Ok(Filtered::Rewritten(out)) => out.len() as u32,
            _ => 0,
        };
    }
    length
}

// ---------------------------------------------------------------------------------------------
// Audit events
// ---------------------------------------------------------------------------------------------
//
// For the audit benchmark (`bench/src/bin/audit_bench.rs`), one OCSF audit event built and sealed into a chain
// with [`crate::audit::line`], as the filter builds it for each decision (`filter/audit.rs`), without the
// filter's reads of the headers and properties around it:
//
// - `agent_iam_bench_audit_load(ptr, len) -> i32`: takes a JSON document `{"claims": {...token claims...},
//   "audit": {...the plugin configuration's `audit` object...}, "time_ms": N}` (a buffer from
//   `proxy_on_memory_allocate`, freed here). The audit settings are validated as the plugin configuration
//   validates them (the object is parsed inside a minimal configuration by [`crate::config::parse`]) and must
//   name a checkpoint key. Builds the token from the claims and a new chain per phase. Returns 0, or a negative
//   error code.
// - `agent_iam_bench_audit_run(phase, iterations) -> u32`: builds `iterations` events of the same decision
//   (an allowed `GET /patients/42/records/xray` by a delegated agent) in the phase's chain, continuing it (a
//   load starts every chain at seq 0); answers the total length of the lines built, so that nothing is
//   optimised away and the host can compare it with its own native run. See the `PHASE_AUDIT_*` constants
//   (phase 3, the JSON alone, reads phase 0's settings and chain id and leaves its chain as it is).

/// The event sealed with the configured checkpoint key: a signed checkpoint every `every_events` events (and
/// at seq 0), as deployed.
pub const PHASE_AUDIT_CHECKPOINTS: u32 = 0;
/// The event in a hash chain without a key: BLAKE3 of every line, no HMAC.
pub const PHASE_AUDIT_CHAIN: u32 = 1;
/// Every event a signed checkpoint (`every_events` 1): the HMAC's cost on each event.
pub const PHASE_AUDIT_EVERY_CHECKPOINT: u32 = 2;
/// The event's JSON alone ([`crate::audit::event::write_open`] with its uid, as [`crate::audit::line`] starts
/// it), not sealed: no chain, no hash.
pub const PHASE_AUDIT_JSON: u32 = 3;
/// [`PHASE_AUDIT_CHAIN`] in a chain that has not seen the event's stable beginning (a new chain for every event,
/// so at seq 0): the hash of the whole line, as for an agent's first event on a worker.
pub const PHASE_AUDIT_CHAIN_COLD: u32 = 4;

/// The audit settings are refused or name no checkpoint key.
const ERR_AUDIT: i32 = -9;
/// The seq in the uid of [`PHASE_AUDIT_JSON`]'s events.
const AUDIT_JSON_SEQ: u64 = 123_456;

/// The benchmark's chain id: 32 hex digits, as the filter's (fixed, so that both sides build lines of the same
/// length).
const AUDIT_CHAIN_ID: &str = "5f0c2a9e41d7b3686e1f0a2b3c4d5e6f";

/// A P-256 public key nobody holds the private key of (envoy/demo.yaml's placeholder): the minimal
/// configuration the audit settings are validated in needs an issuer.
const AUDIT_ISSUER_JWK: &str = r#"{"kty": "EC", "crv": "P-256", "kid": "placeholder", "x": "8HpFOIR2t_bK0h7x15g_rnxvg4W7b_k7d5_5a0DDJLQ", "y": "fgx6ts-MmE-tDPpiBmZsbQhbxLVKiclZ3PG4bNm7wXY"}"#;

/// A minimal plugin configuration around an `audit` object: what [`crate::config::parse`] validates the audit
/// settings in (the audit benchmark builds the same document natively).
fn audit_config(audit: &Value) -> String {
    format!(
        r#"{{"issuers": [{{"issuer": "https://idp.bench.example", "audiences": ["bench"], "algorithms": ["ES256"], "jwks": {{"keys": [{AUDIT_ISSUER_JWK}]}}}}], "policy": {{"rules": []}}, "audit": {audit}}}"#
    )
}

/// The decision every event records, besides the token: an allowed `GET /patients/42/records/xray` at a
/// gateway (the audit benchmark's native side states the same facts).
mod audit_facts {
    /// The canonical method.
    pub const METHOD: &str = "GET";
    /// The canonical path.
    pub const PATH: &str = "/patients/42/records/xray";
    /// `:authority` without the port.
    pub const HOST: &str = "ehr.hospital.example";
    /// `x-request-id`.
    pub const REQUEST_ID: &str = "0b6f8a52-3c1e-4d2a-9f7e-5a1c2b3d4e5f";
    /// `user-agent`.
    pub const USER_AGENT: &str = "radiology-assistant/2.3 (python-httpx/0.28)";
    /// Envoy's `source.address`.
    pub const SOURCE: &str = "10.1.2.3:51234";
    /// The allowing rule.
    pub const RULE: &str = "agents-read-patient-records";
    /// The policy's version.
    pub const POLICY_VERSION: &str = "2026-12-01.3";
    /// The Envoy node id.
    pub const NODE: &str = "gateway-7f9c4d-xk2lp";
    /// The route labels of the path.
    pub const LABELS: [&str; 1] = ["PHI"];
    /// The path parameters under the rule.
    pub const PARAMETERS: [(&str, &str); 1] = [("patient_id", "42")];
}

#[derive(Deserialize)]
struct AuditBenchDocument {
    claims: Map<String, Value>,
    audit: Value,
    time_ms: u64,
}

struct AuditBench {
    token: VerifiedToken,
    time_ms: u64,
    /// Per phase: its settings and its chain.
    phases: [(crate::audit::Settings, crate::audit::Chain); 3],
}

thread_local! {
    static AUDIT: RefCell<Option<AuditBench>> = const { RefCell::new(None) };
}

fn load_audit(bytes: &[u8]) -> Result<AuditBench, i32> {
    let doc: AuditBenchDocument = serde_json::from_slice(bytes).map_err(|_| ERR_DOCUMENT)?;
    let engine = crate::config::parse(audit_config(&doc.audit).as_bytes()).map_err(|_| ERR_AUDIT)?;
    let settings = engine.settings().audit.clone().ok_or(ERR_AUDIT)?;
    let key = settings.checkpoint.clone().ok_or(ERR_AUDIT)?;
    let token = token_from_claims(doc.claims).map_err(|_| ERR_TOKEN)?;
    let chain = || crate::audit::Chain::new(AUDIT_CHAIN_ID.to_owned(), None);
    let unkeyed = crate::audit::Settings { checkpoint: None, ..settings.clone() };
    let every = crate::audit::Settings {
        checkpoint: Some(crate::audit::CheckpointKey { every_events: 1, ..key }),
        ..settings.clone()
    };
    Ok(AuditBench { token, time_ms: doc.time_ms, phases: [(settings, chain()), (unkeyed, chain()), (every, chain())] })
}

/// Loads the audit benchmark's token and settings; see the section's documentation.
///
/// # Safety
///
/// As [`agent_iam_bench_load`]: `ptr` must be a buffer of `len` bytes from this module's
/// `proxy_on_memory_allocate(len)`, not used by the caller afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn agent_iam_bench_audit_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller's contract is `load_into`'s.
    unsafe { load_into(ptr, len, &AUDIT, load_audit, |_| 0) }
}

/// Builds `iterations` events in `phase`'s chain; answers the total length of their lines (0 before a
/// successful load, or for an unknown phase).
#[unsafe(no_mangle)]
pub extern "C" fn agent_iam_bench_audit_run(phase: u32, iterations: u32) -> u32 {
    use crate::audit::{Facts, Outcome, RequestFacts};
    use audit_facts as f;
    AUDIT.with(|b| {
        let Ok(mut guard) = b.try_borrow_mut() else { return 0 };
        let Some(bench) = guard.as_mut() else { return 0 };
        let index = match phase {
            PHASE_AUDIT_CHECKPOINTS | PHASE_AUDIT_JSON => 0,
            PHASE_AUDIT_CHAIN | PHASE_AUDIT_CHAIN_COLD => 1,
            PHASE_AUDIT_EVERY_CHECKPOINT => 2,
            _ => return 0,
        };
        let Some((settings, chain)) = bench.phases.get_mut(index) else { return 0 };
        let facts = Facts {
            time_ms: bench.time_ms,
            outcome: Outcome::Allowed { rule: f::RULE },
            request: RequestFacts {
                method: f::METHOD,
                path: f::PATH,
                host: Some(f::HOST),
                request_id: Some(f::REQUEST_ID),
                user_agent: Some(f::USER_AGENT),
                source: Some(f::SOURCE),
                peer: None,
                route: None,
            },
            token: Some(&bench.token),
            mcp: None,
            policy_version: Some(f::POLICY_VERSION),
            labels: &f::LABELS,
            parameters: &f::PARAMETERS,
            claims: &settings.claims,
            vendor: &settings.vendor,
            node: Some(f::NODE),
            revoked_by: None,
            anomalies: &[],
        };
        let mut total = 0u32;
        for _ in 0..iterations {
            let length = if phase == PHASE_AUDIT_JSON {
                // As `audit::line` begins; the uid's seq fixed (the chain does not move).
                let mut out = String::with_capacity(1024);
                let uid = format!("{}.{}", chain.id(), AUDIT_JSON_SEQ);
                crate::audit::event::write_open(&facts, &uid, &mut out);
                out.len()
            } else if phase == PHASE_AUDIT_CHAIN_COLD {
                let mut fresh = crate::audit::Chain::new(AUDIT_CHAIN_ID.to_owned(), None);
                crate::audit::line(settings, &mut fresh, &facts).len()
            } else {
                crate::audit::line(settings, chain, &facts).len()
            };
            total = total.wrapping_add(length as u32);
        }
        total
    })
}
