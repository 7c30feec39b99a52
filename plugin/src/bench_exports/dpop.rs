//! Exports for the DPoP benchmark (`bench/src/bin/dpop_bench.rs`): what checking a DPoP proof costs inside the
//! `.wasm` (issue 22, item 7), with Envoy-style host crypto and Envoy-style shared data.
//!
//! Unlike the other bench exports, these reach the host: signatures go through `proxy_call_foreign_function
//! ("verify_signature")` ([`HostCrypto`], as the filter sends them to Envoy's BoringSSL), and the replay cache
//! lives in `proxy_get_shared_data` / `proxy_set_shared_data` ([`HostShared`], as the filter's store). The
//! benchmark's wasmtime linker (`bench/src/wasi.rs`) answers them as the wasmtime host does: the signature by
//! the host's native emulation of Envoy's `verify_signature`, shared data from a map, results copied into
//! memory the module allocates (`proxy_on_memory_allocate`).
//!
//! - `agent_iam_bench_dpop_load(ptr, len) -> i32`: takes a JSON document `{"config": {...plugin
//!   configuration with a dpop section...}, "headers": [[name, value]] (the request without credential),
//!   "token": "JWT bound to the proof key (cnf.jkt)", "bearer_token": "JWT, unbound", "check_proof": "a proof
//!   for token, at check_time", "check_time": seconds, "proofs": ["proof", ...], "start": seconds,
//!   "per_second": N, "prefill": N}` (a buffer from `proxy_on_memory_allocate`, freed here). Proof *i* was
//!   minted with `iat` `start + i / per_second` and a `jti` of its own, and is checked at that time: the
//!   benchmark's virtual clock runs at `per_second` proofs a second. Builds the engine as the gateway does
//!   ([`crate::config::parse`]) on [`HostShared`], and checks that nothing measures nothing: the bound token
//!   with the check proof is allowed and the same proof again refused (`dpop_replayed`), the unbound token as
//!   `Bearer` allowed and the bound one as `Bearer` refused (`dpop_bound_token_as_bearer`); which also leaves
//!   both tokens verified in the engine's cache and the proof key's header known, as on a warm worker. Then the
//!   replay cache is filled to its steady state: `prefill` proofs (synthetic identities) of the
//!   `prefill / per_second` seconds before `start`, one every `1 / per_second` s, and every bucket kept as it
//!   is then (`Bench::snapshot`). Returns 0, or a negative error code.
//! - `agent_iam_bench_dpop_run(phase, iterations) -> u32`: runs one phase `iterations` times; see the
//!   `PHASE_*` constants. Phases answer how many operations succeeded. The phases that record proofs
//!   ([`PHASE_VERIFY_HOST`], [`PHASE_VERIFY_PURE`], [`PHASE_VERIFY_INSTANT`], [`PHASE_DECIDE_DPOP`]) share one
//!   cursor over the proofs and the replay cache, so that each proof is recorded once; when the proofs run out
//!   the cache is put back as it was after the prefill (every bucket written, amortised over all the proofs;
//!   [`PHASE_WRAPS`] counts it) and the proofs start again.

use super::{ERR_ARGUMENT, ERR_CONFIG, ERR_DOCUMENT, leak_headers};
use crate::engine::{DpopSettings, Engine, Presentation, Recording, Verdict};
use crate::request::{Connection, Header};
use crate::shared_data::{SharedStore, StoreError};
use crate::token::Algorithm;
use crate::token::CryptoBackend;
use crate::token::crypto::PureRust;
use crate::token::dpop::proof::{self, CheckedProof, Expected, ProofHeader};
use crate::token::dpop::replay::{BUCKETS, ProofId, proof_id};
use crate::token::dpop::{ProofKeys, htu};
use crate::token::host_crypto::{HostCallError, HostCrypto, SignatureHost};
use crate::{b64, json};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::ptr::null_mut;
use std::rc::Rc;

/// The engine step of one DPoP request (`engine/dpop.rs`, `check_dpop` for a `DPoP` presentation), host
/// crypto: the one `DPoP` header found, the expected `htu` built, [`proof::check`], the binding to the token's
/// `cnf.jkt`, and the proof recorded in the replay cache (no nonces: the benchmark's configuration has none).
pub const PHASE_VERIFY_HOST: u32 = 0;
/// The bare signature check of the same proofs with host crypto: [`HostCrypto::verify`] (ES256) of each
/// proof's signing input and signature (decoded at load) with its key.
pub const PHASE_RAW_HOST: u32 = 1;
/// [`PHASE_VERIFY_HOST`] with [`PureRust`] crypto.
pub const PHASE_VERIFY_PURE: u32 = 2;
/// [`PHASE_RAW_HOST`] with [`PureRust`] crypto.
pub const PHASE_RAW_PURE: u32 = 3;
/// [`Engine::decide`] of a GET with the cached bound token and a new proof (host crypto): the whole decision
/// of configuration C3.
pub const PHASE_DECIDE_DPOP: u32 = 4;
/// [`Engine::decide`] of the same GET with the cached unbound token as `Bearer`, same engine: configuration C.
pub const PHASE_DECIDE_BEARER: u32 = 5;
/// [`proof::check`] alone (host crypto), without the binding and the replay cache.
pub const PHASE_PROOF_CHECK_HOST: u32 = 6;
/// What the engine step does before [`proof::check`]: the `DPoP` header found, the request's path normalised
/// and the expected `htu` built.
pub const PHASE_PREAMBLE: u32 = 7;
/// Inside [`proof::check`]: the payload's base64url decoded and parsed as a JSON object.
pub const PHASE_PAYLOAD: u32 = 8;
/// The proof's `htu` claim normalised ([`htu::normalise`]): in [`proof::check`] only when the claim is not byte for
/// byte the expected URI (the bench's proofs are, so the real path skips it).
pub const PHASE_HTU_NORMALISE: u32 = 9;
/// Inside [`proof::check`]: the proof's identity in the replay cache ([`proof_id`], BLAKE3).
pub const PHASE_PROOF_ID: u32 = 10;
/// Nothing: the loop alone, the floor under the other phases' figures.
pub const PHASE_LOOP: u32 = 11;
/// The replay cache's record alone (two shared-data calls), a synthetic new proof each time at the
/// benchmark's rate, on a clock that starts after the last proof's (so it runs last).
pub const PHASE_RECORD: u32 = 12;
/// How many times the proofs ran out and the cache was put back (not timed).
pub const PHASE_WRAPS: u32 = 13;
/// [`PHASE_VERIFY_HOST`] with a host that answers "verified" at once ([`INSTANT_FUNCTION`]): everything but the
/// host's own signature check, the module's side of the call included.
pub const PHASE_VERIFY_INSTANT: u32 = 14;
/// [`PHASE_RAW_HOST`] with the same host: the module's side of the signature check alone (the key and the
/// signature as DER, the protobuf, the call, its answer).
pub const PHASE_RAW_INSTANT: u32 = 15;
/// Inside [`proof::check`]: the signature's base64url decoded.
pub const PHASE_SIGNATURE_DECODE: u32 = 16;

/// The benchmark linker's foreign function that reads `verify_signature`'s arguments and answers "verified"
/// without checking anything (`bench/src/wasi.rs`): the module's side of a host signature check, timed without
/// the host's cryptography. Only the benchmark's linker has it.
pub const INSTANT_FUNCTION: &str = "agent_iam_bench_verified";

/// The configuration has no `dpop` section, or its engine does not decide as expected.
const ERR_DPOP: i32 = -20;
/// The host does not verify ES256 (its `verify_signature` self-test failed).
const ERR_HOST_CRYPTO: i32 = -21;
/// A proof does not pass the engine step at its time.
const ERR_PROOF: i32 = -22;
/// The replay cache could not be filled, or a bucket is not where the benchmark looks for it.
const ERR_PREFILL: i32 = -23;

/// The replay cache's shared-data keys: this prefix and the bucket number (`token/dpop/replay.rs`). The load
/// checks that every bucket is found under it after the prefill.
const REPLAY_PREFIX: &str = "agent-iam.dpop.replay.";

// ---------------------------------------------------------------------------------------------
// The host: Envoy's foreign function and shared data
// ---------------------------------------------------------------------------------------------

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// Takes back a buffer the host filled through `proxy_on_memory_allocate` (as `filter/host.rs` does).
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host got `data` from `proxy_on_memory_allocate(size)`, which hands out a leaked boxed slice
    // of exactly `size` bytes: ownership comes back here, once.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// `verify_signature` through `proxy_call_foreign_function`, as the filter's `EnvoyForeign`; or, for the
/// instant phases, [`INSTANT_FUNCTION`].
struct BenchForeign(&'static str);

impl SignatureHost for BenchForeign {
    fn verify_signature(&self, args: &[u8]) -> Result<Vec<u8>, HostCallError> {
        let name = self.0;
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: live input buffers; the host writes a pointer and a length into valid out-parameters.
        let status = unsafe {
            proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), &mut data, &mut size)
        };
        let result = owned(data, size);
        if status == OK { Ok(result) } else { Err(HostCallError) }
    }
}

/// Shared data through the host, as the filter's `HostStore`.
struct HostShared;

impl SharedStore for HostShared {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
        // SAFETY: a live key buffer; the host writes a pointer, a length and a u32 into valid out-parameters.
        let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
        match status {
            OK => Ok(Some((owned(data, size), cas))),
            NOT_FOUND => Ok(None),
            other => Err(StoreError::Host(format!("status {other}"))),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        // SAFETY: live input buffers for the whole call; the host copies them.
        match unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) } {
            OK => Ok(()),
            CAS_MISMATCH => Err(StoreError::CasMismatch),
            other => Err(StoreError::Host(format!("status {other}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Document {
    config: Value,
    headers: Vec<(String, String)>,
    token: String,
    bearer_token: String,
    check_proof: String,
    check_time: i64,
    proofs: Vec<String>,
    start: i64,
    per_second: i64,
    prefill: u64,
}

/// One proof, as the request brings it and as the raw phases check it.
struct Proof {
    bytes: &'static [u8],
    /// The signing input (`header.payload`) and the signature, decoded.
    message: &'static [u8],
    signature: Vec<u8>,
    /// Its `htu` claim and `jti` (for the phases inside [`proof::check`]).
    htu: String,
    jti: String,
    /// Its payload, base64url.
    payload_b64: &'static [u8],
}

struct Bench {
    engine: Engine,
    dpop: Rc<DpopSettings>,
    host: HostCrypto<BenchForeign>,
    /// ES256 to a host that answers at once.
    instant: HostCrypto<BenchForeign>,
    store: HostShared,
    proofs: Vec<Proof>,
    /// The proofs' header, validated (what the raw phases verify with).
    header: Rc<ProofHeader>,
    start: i64,
    per_second: i64,
    /// The request of the engine step (its `dpop` header: the current proof) and of the decide phases.
    dpop_headers: RefCell<Vec<Header<'static>>>,
    bearer_headers: Vec<Header<'static>>,
    method: &'static str,
    raw_path: &'static str,
    /// The `htu` the proofs must name (the configured origin and the path).
    expected_htu: String,
    /// The bound token's `cnf.jkt` and SHA-256, as the token cache keeps them (`Admitted`).
    jkt: String,
    token_sha256: [u8; 32],
    /// The engine step's recently validated headers (the engine keeps its own).
    keys: ProofKeys,
    /// Every replay bucket as it was after the prefill.
    snapshot: Vec<(String, Vec<u8>)>,
    /// The next proof to record, the next to check without recording, the next to verify raw.
    cursor: Cell<usize>,
    check_cursor: Cell<usize>,
    raw_cursor: Cell<usize>,
    /// Synthetic proofs recorded by [`PHASE_RECORD`].
    records: Cell<u64>,
    wraps: Cell<u32>,
}

thread_local! {
    static DPOP: RefCell<Option<Bench>> = const { RefCell::new(None) };
}

/// Whether `verdict` forwards the request.
fn allowed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Allow { dry_run: None, .. })
}

fn refused_as(verdict: &Verdict, reason: &str) -> bool {
    matches!(verdict, Verdict::Deny(d) if d.status == 401 && d.reason == reason)
}

/// A synthetic proof identity, spread over the buckets as SHA-256 spreads real ones (splitmix64).
pub fn synthetic_id(tag: u64, n: u64) -> ProofId {
    let mut z = n.wrapping_add(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&z.to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// Tags of the synthetic identities: the prefill's and [`PHASE_RECORD`]'s.
pub const PREFILL_TAG: u64 = 1;
pub const RECORD_TAG: u64 = 2;

/// The engine step of `engine/dpop.rs` for a `DPoP` presentation of a token bound to `jkt` (SHA-256
/// `token_sha256`) with the request `headers`, without nonces: [`DpopSettings::check`], what
/// [`PHASE_VERIFY_HOST`] times.
#[allow(clippy::too_many_arguments)]
fn engine_step(
    dpop: &DpopSettings,
    keys: &ProofKeys,
    store: &dyn SharedStore,
    headers: &[Header<'_>],
    method: &str,
    raw_path: &str,
    jkt: &str,
    token_sha256: &[u8; 32],
    now: i64,
    crypto: &dyn CryptoBackend,
) -> bool {
    let presentation = Presentation {
        headers,
        method,
        raw_path,
        path: raw_path,
        conn: Connection::default(),
        bound_key: jkt,
        token_sha256,
    };
    dpop.check(&presentation, keys, None, Recording::In(Some(store)), now, crypto).is_ok()
}

fn split(proof: &'static str) -> Result<Proof, i32> {
    let bytes = proof.as_bytes();
    let mut parts = bytes.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ERR_PROOF);
    };
    let message = &bytes[..header.len() + 1 + payload.len()];
    let signature = b64::decode(signature).map_err(|_| ERR_PROOF)?;
    let claims = json::parse_object(&b64::decode(payload).map_err(|_| ERR_PROOF)?, 4).map_err(|_| ERR_PROOF)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned).ok_or(ERR_PROOF);
    Ok(Proof { bytes, message, signature, htu: text("htu")?, jti: text("jti")?, payload_b64: payload })
}

impl Bench {
    /// The time proof `i` is checked at: its `iat`.
    fn time_of(&self, i: usize) -> i64 {
        self.start + i as i64 / self.per_second
    }

    /// The next proof to record and its time; when the proofs run out, the cache is put back as it was after
    /// the prefill and they start again.
    fn next(&self) -> (usize, i64) {
        let mut i = self.cursor.get();
        if i == self.proofs.len() {
            for (key, value) in &self.snapshot {
                let _ = self.store.set(key, value, 0);
            }
            self.wraps.set(self.wraps.get() + 1);
            i = 0;
        }
        self.cursor.set(i + 1);
        (i, self.time_of(i))
    }

    fn step(&self, crypto: &dyn CryptoBackend) -> bool {
        let (i, now) = self.next();
        let Ok(mut headers) = self.dpop_headers.try_borrow_mut() else { return false };
        if let Some(last) = headers.last_mut() {
            last.1 = self.proofs[i].bytes;
        }
        engine_step(
            &self.dpop,
            &self.keys,
            &self.store,
            &headers,
            self.method,
            self.raw_path,
            &self.jkt,
            &self.token_sha256,
            now,
            crypto,
        )
    }

    fn raw(&self, crypto: &dyn CryptoBackend) -> bool {
        let i = self.raw_cursor.get();
        self.raw_cursor.set(if i + 1 == self.proofs.len() { 0 } else { i + 1 });
        let p = &self.proofs[i];
        crypto.verify(self.header.alg, &self.header.key, black_box(p.message), black_box(&p.signature))
    }

    /// The next proof to look at without recording it, and its time.
    fn peek(&self) -> (&Proof, i64) {
        let i = self.check_cursor.get();
        self.check_cursor.set(if i + 1 == self.proofs.len() { 0 } else { i + 1 });
        (&self.proofs[i], self.time_of(i))
    }

    fn proof_check(&self) -> Option<CheckedProof> {
        let (p, now) = self.peek();
        let expected = Expected { method: self.method, htu: &self.expected_htu, token_sha256: &self.token_sha256, now };
        proof::check(p.bytes, &expected, &self.dpop.rules, &self.keys, &self.host).ok()
    }

    fn decide_dpop(&self) -> bool {
        let (i, now) = self.next();
        let Ok(mut headers) = self.dpop_headers.try_borrow_mut() else { return false };
        if let Some(last) = headers.last_mut() {
            last.1 = self.proofs[i].bytes;
        }
        allowed(&self.engine.decide(&headers, now, &self.host))
    }

    /// One synthetic proof recorded, after every proof's time, at the benchmark's rate. The first call first
    /// records a whole window of them, so that every call finds the cache at its steady state (whatever the
    /// proof phases left in it).
    fn record(&self) -> bool {
        if self.records.get() == 0 {
            let warm = (self.per_second * self.dpop.rules.window()) as u64;
            if !(0..warm).all(|_| self.record_one()) {
                return false;
            }
        }
        self.record_one()
    }

    fn record_one(&self) -> bool {
        let n = self.records.get();
        self.records.set(n + 1);
        let now = self.time_of(self.proofs.len()) + 1 + (n / self.per_second as u64) as i64;
        let expires = now.saturating_add(self.dpop.rules.window());
        self.dpop.replay.record(&self.store, &synthetic_id(RECORD_TAG, n), now, expires, now).is_ok()
    }
}

/// The buckets' shared-data keys.
fn bucket_keys() -> impl Iterator<Item = String> {
    (0..BUCKETS).map(|i| format!("{REPLAY_PREFIX}{i}"))
}

/// `cnf.jkt` of a token's payload.
fn jkt_of(token: &str) -> Result<String, i32> {
    let payload = token.split('.').nth(1).ok_or(ERR_DPOP)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&b64::decode(payload.as_bytes()).map_err(|_| ERR_DPOP)?).map_err(|_| ERR_DPOP)?;
    claims.get("cnf").and_then(|c| c.get("jkt")).and_then(Value::as_str).map(str::to_owned).ok_or(ERR_DPOP)
}

fn load(bytes: &[u8]) -> Result<Bench, i32> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|_| ERR_DOCUMENT)?;
    if doc.proofs.is_empty() || doc.proofs.len() > i32::MAX as usize || doc.per_second <= 0 {
        return Err(ERR_ARGUMENT);
    }
    let config = serde_json::to_vec(&doc.config).map_err(|_| ERR_DOCUMENT)?;
    let engine = crate::config::parse(&config).map_err(|_| ERR_CONFIG)?;
    let dpop = engine.settings().dpop.clone().ok_or(ERR_DPOP)?;
    let host = HostCrypto::detect(BenchForeign(crate::token::host_crypto::FOREIGN_FUNCTION));
    if !host.host_algorithms().contains(&Algorithm::ES256) {
        return Err(ERR_HOST_CRYPTO);
    }
    engine.set_shared_store(Rc::new(HostShared));

    let find = |name: &str| doc.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).ok_or(ERR_ARGUMENT);
    let method: &'static str = Box::leak(find(":method")?.into_boxed_str());
    let raw_path: &'static str = Box::leak(find(":path")?.into_boxed_str());
    let with = |auth: String, proof: Option<&str>| {
        let mut pairs = doc.headers.clone();
        pairs.push(("authorization".into(), auth));
        if let Some(p) = proof {
            pairs.push(("dpop".into(), p.to_owned()));
        }
        leak_headers(pairs)
    };
    let check_headers = with(format!("DPoP {}", doc.token), Some(&doc.check_proof));
    let bearer_headers = with(format!("Bearer {}", doc.bearer_token), None);
    let bound_as_bearer = with(format!("Bearer {}", doc.token), None);
    if !allowed(&engine.decide(&check_headers, doc.check_time, &host))
        || !refused_as(&engine.decide(&check_headers, doc.check_time, &host), "dpop_replayed")
        || !allowed(&engine.decide(&bearer_headers, doc.check_time, &host))
        || !refused_as(&engine.decide(&bound_as_bearer, doc.check_time, &host), "dpop_bound_token_as_bearer")
    {
        return Err(ERR_DPOP);
    }

    // The replay cache at its steady state: `prefill` proofs over the seconds before `start`.
    let window = dpop.rules.window();
    let first = doc.start - (doc.prefill.div_ceil(doc.per_second as u64)) as i64;
    for n in 0..doc.prefill {
        let iat = first + n as i64 / doc.per_second;
        let id = synthetic_id(PREFILL_TAG, n);
        dpop.replay.record(&HostShared, &id, iat, iat + window, iat).map_err(|_| ERR_PREFILL)?;
    }
    let mut snapshot = Vec::new();
    for key in bucket_keys() {
        match HostShared.get(&key) {
            Ok(Some((value, _))) => snapshot.push((key, value)),
            _ => return Err(ERR_PREFILL),
        }
    }

    let proofs: &'static [String] = Box::leak(doc.proofs.into_boxed_slice());
    let proofs = proofs.iter().map(|p| split(p)).collect::<Result<Vec<_>, _>>()?;
    let token_sha256: [u8; 32] = Sha256::digest(doc.token.as_bytes()).into();
    let jkt = jkt_of(&doc.token)?;
    let dpop_headers = with(format!("DPoP {}", doc.token), Some(&doc.check_proof));
    // The proofs' header, validated by one check of the check proof (not recorded): the raw phases' key, and
    // the engine step's header cache warm.
    let keys = ProofKeys::default();
    let check_htu = format!("{}{}", dpop.origin, raw_path);
    let expected = Expected { method, htu: &check_htu, token_sha256: &token_sha256, now: doc.check_time };
    let checked =
        proof::check(doc.check_proof.as_bytes(), &expected, &dpop.rules, &keys, &host).map_err(|_| ERR_PROOF)?;
    let bench = Bench {
        engine,
        dpop,
        host,
        instant: HostCrypto::new(BenchForeign(INSTANT_FUNCTION), vec![Algorithm::ES256]),
        store: HostShared,
        proofs,
        header: checked.header,
        start: doc.start,
        per_second: doc.per_second,
        dpop_headers: RefCell::new(dpop_headers),
        bearer_headers,
        method,
        raw_path,
        expected_htu: check_htu,
        jkt,
        token_sha256,
        keys,
        snapshot,
        cursor: Cell::new(0),
        check_cursor: Cell::new(0),
        raw_cursor: Cell::new(0),
        records: Cell::new(0),
        wraps: Cell::new(0),
    };
    // Every proof's raw check passes (nothing recorded).
    for p in &bench.proofs {
        if !bench.host.verify(bench.header.alg, &bench.header.key, p.message, &p.signature) {
            return Err(ERR_PROOF);
        }
    }
    Ok(bench)
}

/// Loads the DPoP benchmark's engine, tokens and proofs; see the module documentation.
///
/// # Safety
///
/// As [`super::agent_iam_bench_load`]: `ptr` must be a buffer of `len` bytes from this module's
/// `proxy_on_memory_allocate(len)`, not used by the caller afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn agent_iam_bench_dpop_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller's contract is `load_into`'s.
    unsafe { super::load_into(ptr, len, &DPOP, load, |_| 0) }
}

/// Runs `phase` `iterations` times; see the `PHASE_*` constants (0 before a successful load, or for an unknown
/// phase).
#[unsafe(no_mangle)]
pub extern "C" fn agent_iam_bench_dpop_run(phase: u32, iterations: u32) -> u32 {
    DPOP.with(|b| {
        let Ok(guard) = b.try_borrow() else { return 0 };
        let Some(d) = guard.as_ref() else { return 0 };
        if phase == PHASE_WRAPS {
            return d.wraps.get();
        }
        let mut count = 0u32;
        for _ in 0..iterations {
            let ok = match phase {
                PHASE_VERIFY_HOST => d.step(&d.host),
                PHASE_RAW_HOST => d.raw(&d.host),
                PHASE_VERIFY_PURE => d.step(&PureRust),
                PHASE_RAW_PURE => d.raw(&PureRust),
                PHASE_DECIDE_DPOP => d.decide_dpop(),
                PHASE_DECIDE_BEARER => allowed(&d.engine.decide(&d.bearer_headers, d.start, &d.host)),
                PHASE_PROOF_CHECK_HOST => d.proof_check().is_some(),
                PHASE_PREAMBLE => {
                    let Ok(headers) = d.dpop_headers.try_borrow() else { return 0 };
                    let mut proofs = headers.iter().filter(|(name, _)| *name == "dpop");
                    let one = matches!((proofs.next(), proofs.next()), (Some(_), None));
                    let path_only = d.raw_path.split(['?', '#']).next().unwrap_or(d.raw_path);
                    let expected = htu::normalise_path(black_box(path_only)).map(|p| format!("{}{p}", d.dpop.origin));
                    one && expected.is_some_and(|e| !e.is_empty())
                }
                PHASE_PAYLOAD => {
                    let (p, _) = d.peek();
                    b64::decode(black_box(p.payload_b64))
                        .ok()
                        .and_then(|payload| {
                            crate::json::tape::Tape::parse(&payload, 4).ok().map(|t| t.root().get("jti").is_some())
                        })
                        .unwrap_or(false)
                }
                PHASE_HTU_NORMALISE => {
                    let (p, _) = d.peek();
                    htu::normalise(black_box(&p.htu)).is_some()
                }
                PHASE_PROOF_ID => {
                    let (p, _) = d.peek();
                    black_box(proof_id(black_box(&p.htu), black_box(&p.jti)));
                    true
                }
                PHASE_LOOP => black_box(true),
                PHASE_VERIFY_INSTANT => d.step(&d.instant),
                PHASE_RAW_INSTANT => d.raw(&d.instant),
                PHASE_SIGNATURE_DECODE => {
                    let (p, _) = d.peek();
                    let signature = &p.bytes[p.message.len() + 1..];
                    b64::decode(black_box(signature)).is_ok_and(|s| s.len() == 64)
                }
                PHASE_RECORD => d.record(),
                _ => return 0,
            };
            count += u32::from(ok);
        }
        count
    })
}
