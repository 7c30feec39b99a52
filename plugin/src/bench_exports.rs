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
//! Nothing here panics across the boundary: errors are return codes.

use crate::policy::cases::token_from_claims;
use crate::policy::{Decision, Policy, PolicyDocument};
use crate::request::{self, Peer, Request};
use crate::token::VerifiedToken;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;

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
            let n = bench.requests.len() as i32;
            BENCH.with(|b| *b.borrow_mut() = Some(bench));
            n
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
