//! `agent-iam-dpop-bench` (`make bench`): what checking a DPoP proof (RFC 9449) costs per request (issue 22, item
//! 7), natively and inside the `.wasm` (built with the plugin's `bench-exports` feature, run in wasmtime).
//!
//! Inside the `.wasm` the signature goes to the host as in Envoy: `proxy_call_foreign_function
//! ("verify_signature")`, answered by the wasmtime host's native emulation of Envoy's BoringSSL check
//! (RustCrypto, `host/src/envoy_foreign.rs`; not BoringSSL); and the replay cache lives in the host's shared
//! data (`proxy_get_shared_data` / `proxy_set_shared_data`, a map in the benchmark's linker). Natively, the same
//! emulation is called directly and the cache is a `MemoryStore`.
//!
//! - `verify_host` (`dpop_verify_ns_ES256_wasm_host`): every check the engine makes of one `DPoP` request
//!   (`plugin/src/engine/dpop.rs`): the one `DPoP` header found, the expected `htu` (configured origin and the
//!   request's path), `token::dpop::proof::check` (typ, alg, the header's key, the signature, `htm`, `htu`,
//!   `iat`, `ath`, the proof's identity), the binding to the token's `cnf.jkt`, and the record in the replay
//!   cache. As on a warm worker: the token's `cnf.jkt` and hash come from its cache entry, the proof key's
//!   header was validated before (an agent signs every proof with the same key).
//! - `raw_host` (`dpop_raw_ns_ES256_wasm_host`): the bare ES256 check of the same proofs through the same host
//!   crypto (`HostCrypto::verify`: the key as DER, the signature as DER, the protobuf, the host call, its
//!   answer), with the signature already decoded.
//! - `verify_pure`, `raw_pure`: the same with the pure-Rust backend.
//! - `verify_instant`, `raw_instant`: the same two with a host that reads `verify_signature`'s arguments and
//!   answers "verified" at once (`agent_iam_bench::wasi::INSTANT_FUNCTION`, a benchmark-only foreign
//!   function): the module's side alone, without the host's cryptography. With X the host's own check,
//!   verify = X + `verify_instant` and raw = X + `raw_instant`, so the 1.3 target holds for any host whose check
//!   takes at least `host_check_needed_for_target_ns` = (`verify_instant` − 1.3 `raw_instant`) / 0.3; and
//!   `host_check_ns_ES256_wasm_host` (`raw_host` − `raw_instant`) is the emulation's own X.
//! - `decide_dpop`, `decide_bearer`: `Engine::decide` of configuration C3's GET with its cached bound token and a
//!   new proof, against the same engine deciding the same GET with a cached unbound token as `Bearer`
//!   (configuration C's work): the whole decision's DPoP cost.
//! - `proof_check_host`, `preamble`, `payload`, `signature_decode`, `htu_normalise`, `proof_id`, `record`: the
//!   parts, for where the time goes: `proof::check` alone; the header scan and expected `htu`; the payload's
//!   base64url and JSON; the signature's base64url; the `htu` claim normalised; the proof's identity (SHA-256);
//!   the replay record alone (a get and a compare-and-swap set of a bucket, at the same steady state).
//! - `loop`: the `.wasm` export's loop alone.
//!
//! Every proof is new: pre-minted natively (a `jti` each), proof *i* with `iat` `START + i / PER_SECOND`
//! and checked at that time, so the replay cache records each. The cache has the plugin's default size (65,536
//! proofs in 4,096 buckets) and the default window (60 s + 5 s of skew), and before timing it is filled to the
//! steady state of `PER_SECOND` proofs a second (58,500 live proofs, about 14 per bucket): each record reads
//! and writes a bucket as full as in a gateway at that rate. When the proofs run out the cache is put back as
//! it was after that fill (every bucket written once; counted in `wraps`) and they start again.
//!
//! Before anything is timed both sides check that the benchmark measures something: the bound token with a
//! proof is allowed, the same proof again refused (`dpop_replayed`), the bound token as `Bearer` refused and an
//! unbound one as `Bearer` allowed, and every proof's raw check passes. During timing every operation must pass.
//!
//! Per figure: the median ns per operation natively and in the `.wasm` (sampled alternately), and wasm
//! instructions per operation (wasmtime fuel; deterministic; the host's native signature check is not in them).
//! `ratio_verify_over_raw_wasm_host_paired`: verify and raw sampled alternately in the `.wasm`, the ratio of
//! their medians. Writes `target/bench/dpop.json`; targets are reported, never asserted. Options: `--wasm PATH`
//! (default `target/bench-wasm/wasm32-wasip1/release/agent_iam.wasm`), `--no-wasm`, `--quick`, `--out PATH`,
//! `--proofs N`.

use agent_iam::engine::{DpopSettings, Engine, Presentation, Recording, Verdict};
use agent_iam::mint::{ProofClaims, SigningKey};
use agent_iam::request::Connection;
use agent_iam::shared_data::{MemoryStore, SharedStore};
use agent_iam::token::CryptoBackend;
use agent_iam::token::crypto::{Algorithm, PureRust};
use agent_iam::token::dpop::proof::{self, Expected, ProofHeader};
use agent_iam::token::dpop::replay::{BUCKETS, ProofId, proof_id};
use agent_iam::token::dpop::{ProofKeys, htu};
use agent_iam::token::host_crypto::{self, HostCallError, HostCrypto, SignatureHost};
use agent_iam::{b64, json};
use agent_iam_bench::envoy::{allowed_cpus, pin};
use agent_iam_bench::exports::{self, Calls, Phase, Phases, Wasm, target};
use agent_iam_bench::measure::Stats;
use agent_iam_tests::demo::{self, DemoKeys};
use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::rc::Rc;

/// The benchmark's clock: the first proof's `iat`.
const START: i64 = 1_900_000_000;
/// Proofs a second of the virtual clock (the steady traffic the replay cache is filled for).
const PER_SECOND: i64 = 900;
/// The replay window of the configuration (`max_age_seconds` 60 + `clock_skew_seconds` 5, the defaults).
const WINDOW: i64 = 65;
/// Proofs minted (and recorded before they repeat).
const PROOFS: usize = 65_536;
/// The token's `iat`; the check proof's time.
const TOKEN_IAT: i64 = START - 120;
const CHECK_TIME: i64 = START - 30;
/// Issue 22's target for the proof checks over the bare signature check, inside the `.wasm`, host crypto.
const TARGET_RATIO: f64 = 1.3;
/// The gateway's external origin (envoy/bench/c3-agent-iam-dpop.yaml) and the request.
const ORIGIN: &str = "https://api.trading.example";
const METHOD: &str = "GET";
const PATH: &str = "/quotes/ACME";
const HEADERS: [(&str, &str); 3] = [(":method", METHOD), (":path", PATH), (":authority", "api.trading.example")];
/// The replay cache's shared-data keys (`plugin/src/token/dpop/replay.rs`); the load checks every bucket is
/// found under it.
const REPLAY_PREFIX: &str = "agent-iam.dpop.replay.";

/// The phases, as `agent_iam_bench_dpop_run` numbers them (plugin/src/bench_exports/dpop.rs), with their calls
/// per timed call into the `.wasm` and operations the instruction count averages over.
const PHASES: [(Phase, Calls); 16] = [
    (
        (0, "verify_host", "every proof check of one DPoP request (engine/dpop.rs), host crypto, replay recorded"),
        Calls { per_call: 4, metered: 200 },
    ),
    (
        (1, "raw_host", "HostCrypto::verify(ES256) of the same proofs: the bare signature check"),
        Calls { per_call: 4, metered: 200 },
    ),
    ((2, "verify_pure", "verify_host with the pure-Rust backend"), Calls { per_call: 1, metered: 3 }),
    ((3, "raw_pure", "PureRust.verify(ES256) of the same proofs"), Calls { per_call: 1, metered: 3 }),
    (
        (14, "verify_instant", "verify_host with a host that answers 'verified' at once: all but the host's check"),
        Calls { per_call: 16, metered: 1000 },
    ),
    (
        (15, "raw_instant", "raw_host with the same host: the module's side of the signature check"),
        Calls { per_call: 16, metered: 1000 },
    ),
    (
        (4, "decide_dpop", "Engine::decide, C3's GET: cached bound token, a new proof (host crypto)"),
        Calls { per_call: 4, metered: 200 },
    ),
    (
        (5, "decide_bearer", "Engine::decide, the same GET and engine, a cached unbound token as Bearer"),
        Calls { per_call: 16, metered: 1000 },
    ),
    (
        (6, "proof_check_host", "proof::check alone (host crypto): no binding, no replay record"),
        Calls { per_call: 4, metered: 200 },
    ),
    (
        (7, "preamble", "the DPoP header found, the path normalised, the expected htu built"),
        Calls { per_call: 64, metered: 1000 },
    ),
    (
        (8, "payload", "the proof's payload: base64url decoded, parsed as a JSON object"),
        Calls { per_call: 64, metered: 1000 },
    ),
    ((16, "signature_decode", "the proof's signature: base64url decoded"), Calls { per_call: 64, metered: 1000 }),
    ((9, "htu_normalise", "the proof's htu claim normalised (htu::normalise)"), Calls { per_call: 64, metered: 1000 }),
    (
        (10, "proof_id", "the proof's identity in the replay cache (SHA-256 of htu and jti)"),
        Calls { per_call: 64, metered: 1000 },
    ),
    (
        (11, "loop", "the .wasm export's loop alone (no operation): the floor of the .wasm figures"),
        Calls { per_call: 64, metered: 1000 },
    ),
    // Last: its clock starts after every proof's.
    (
        (12, "record", "the replay record alone: a bucket read, checked, written by compare-and-swap"),
        Calls { per_call: 16, metered: 1000 },
    ),
];
/// How often the proofs ran out (not timed).
const PHASE_WRAPS: u32 = 13;
/// Synthetic identities: the prefill's and the record phase's (as the `.wasm` side makes them).
const PREFILL_TAG: u64 = 1;
const RECORD_TAG: u64 = 2;

/// What a DPoP proof check costs, natively and inside the .wasm (host crypto); writes target/bench/dpop.json.
#[derive(Parser)]
#[command(name = "agent-iam-dpop-bench", version)]
#[command(mut_arg("out", |a| a.help("Where to write the JSON report [default: target/bench/dpop.json in the workspace]")))]
struct Cli {
    #[command(flatten)]
    options: exports::Options,
    /// Proofs minted (each recorded once before they start again).
    #[arg(long, value_name = "N", default_value_t = PROOFS)]
    proofs: usize,
    /// The plugin (without bench exports) whose whole requests are counted in the wasmtime host [default:
    /// target/wasm32-wasip1/release/agent_iam.wasm, or $AGENT_IAM_WASM].
    #[arg(long, value_name = "PATH")]
    plugin: Option<std::path::PathBuf>,
    /// No whole requests in the wasmtime host.
    #[arg(long = "no-requests")]
    no_requests: bool,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("agent-iam-dpop-bench: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// A synthetic proof identity, spread over the buckets as SHA-256 spreads real ones (splitmix64; the same as
/// `plugin/src/bench_exports/dpop.rs`).
fn synthetic_id(tag: u64, n: u64) -> ProofId {
    let mut z = n.wrapping_add(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&z.to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// The plugin configuration: C3's (envoy/bench/c3-agent-iam-dpop.yaml) with the issuer's DPoP `allowed` (so that
/// the same engine also takes the unbound token as `Bearer`) and the `dpop` section's defaults (a 60 s window,
/// a replay cache of 65,536), as a gateway would have them.
fn config(keys: &DemoKeys) -> Result<Value> {
    let template_path = agent_iam_host::workspace_root().join("envoy/bench/c3-agent-iam-dpop.yaml");
    let template =
        std::fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let mut config = demo::plugin_config(&template, &keys.jwks())?;
    ensure!(config["dpop"]["origin"] == ORIGIN, "{}: the dpop origin is not {ORIGIN}", template_path.display());
    config["issuers"][0]["dpop"] = "allowed".into();
    config["dpop"] = json!({"origin": ORIGIN});
    Ok(config)
}

/// `n` proofs of `holder` for `token`, proof *i* with `jti` `{prefix}{i}` at `iat(i)`, minted on every CPU.
fn mint_proofs(
    holder: &SigningKey,
    token: &str,
    n: usize,
    prefix: &str,
    iat: impl Fn(usize) -> i64 + Sync,
) -> Result<Vec<String>> {
    let cpus = allowed_cpus()?;
    let threads = cpus.len().max(1);
    let per = n.div_ceil(threads);
    let htu = format!("{ORIGIN}{PATH}");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (cpus, htu, iat) = (&cpus, &htu, &iat);
                scope.spawn(move || -> Result<Vec<String>> {
                    pin(cpus)?;
                    Ok((t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            holder.dpop_proof(&ProofClaims {
                                jti: &format!("{prefix}{i:06}"),
                                htm: METHOD,
                                htu,
                                iat: iat(i),
                                token: Some(token),
                                nonce: None,
                            })
                        })
                        .collect())
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.extend(h.join().map_err(|_| anyhow!("a minting thread panicked"))??);
        }
        Ok(out)
    })
}

/// What both sides load.
fn document(keys: &DemoKeys, holder: &SigningKey, proofs: usize) -> Result<Value> {
    let jkt = holder.jkt().context("the agent key's thumbprint")?;
    let claims = |bound: bool| {
        let mut c = json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::TRADER, "jti": "c3-token",
                           "iat": TOKEN_IAT, "exp": START + 3600});
        if bound {
            c["cnf"] = json!({"jkt": jkt});
        }
        c
    };
    let token = keys.es256.sign_jwt(Some(demo::ES256_KID), &claims(true));
    let bearer_token = keys.es256.sign_jwt(Some(demo::ES256_KID), &claims(false));
    let check_proof = holder.dpop_proof(&ProofClaims {
        jti: "bench-check",
        htm: METHOD,
        htu: &format!("{ORIGIN}{PATH}"),
        iat: CHECK_TIME,
        token: Some(&token),
        nonce: None,
    });
    let started = std::time::Instant::now();
    // Proof i at its time on the benchmark's clock.
    let proofs = mint_proofs(holder, &token, proofs, "bench-proof-", |i| START + i as i64 / PER_SECOND)?;
    eprintln!("{} proofs minted in {:.1} s", proofs.len(), started.elapsed().as_secs_f64());
    Ok(json!({
        "config": config(keys)?,
        "headers": HEADERS,
        "token": token,
        "bearer_token": bearer_token,
        "check_proof": check_proof,
        "check_time": CHECK_TIME,
        "proofs": proofs,
        "start": START,
        "per_second": PER_SECOND,
        "prefill": (PER_SECOND * WINDOW) as u64,
    }))
}

// ---------------------------------------------------------------------------------------------
// The native side: the same engine, proofs and calls as plugin/src/bench_exports/dpop.rs
// ---------------------------------------------------------------------------------------------

/// The wasmtime host's emulation of Envoy's `verify_signature`, called directly.
struct NativeForeign;

impl SignatureHost for NativeForeign {
    fn verify_signature(&self, args: &[u8]) -> Result<Vec<u8>, HostCallError> {
        agent_iam_host::envoy_foreign::verify_signature(args).map_err(|_| HostCallError)
    }
}

/// The instant host (`agent_iam_bench::wasi::INSTANT_FUNCTION`): the arguments read, "verified" answered,
/// nothing checked.
struct InstantForeign;

impl SignatureHost for InstantForeign {
    fn verify_signature(&self, args: &[u8]) -> Result<Vec<u8>, HostCallError> {
        host_crypto::decode_args(args).map(|_| host_crypto::encode_result(true, "")).ok_or(HostCallError)
    }
}

type Header = (&'static str, &'static [u8]);

/// Header pairs as the proxy hands them over, leaked once per run as the `.wasm` side leaks them.
fn header_pairs(pairs: Vec<(String, String)>) -> Vec<Header> {
    pairs
        .into_iter()
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.to_ascii_lowercase().into_boxed_str());
            let value: &'static [u8] = Box::leak(v.into_bytes().into_boxed_slice());
            (name, value)
        })
        .collect()
}

fn allowed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Allow { dry_run: None, .. })
}

fn refused_as(verdict: &Verdict, reason: &str) -> bool {
    matches!(verdict, Verdict::Deny(d) if d.status == 401 && d.reason == reason)
}

struct Proof {
    bytes: &'static [u8],
    message: &'static [u8],
    signature: Vec<u8>,
    htu: String,
    jti: String,
    payload_b64: &'static [u8],
}

fn split(proof: &'static str) -> Result<Proof> {
    let bytes = proof.as_bytes();
    let mut parts = bytes.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("a proof is not three segments");
    };
    let message = &bytes[..header.len() + 1 + payload.len()];
    let signature = b64::decode(signature).map_err(|_| anyhow!("signature"))?;
    let claims = json::parse_object(&b64::decode(payload).map_err(|_| anyhow!("payload"))?, 4)
        .map_err(|_| anyhow!("payload JSON"))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned).context("claim");
    Ok(Proof { bytes, message, signature, htu: text("htu")?, jti: text("jti")?, payload_b64: payload })
}

struct Native {
    engine: Engine,
    dpop: Rc<DpopSettings>,
    host: HostCrypto<NativeForeign>,
    instant: HostCrypto<InstantForeign>,
    store: Rc<MemoryStore>,
    proofs: Vec<Proof>,
    header: Rc<ProofHeader>,
    dpop_headers: RefCell<Vec<Header>>,
    bearer_headers: Vec<Header>,
    expected_htu: String,
    jkt: String,
    token_sha256: [u8; 32],
    keys: ProofKeys,
    snapshot: Vec<(String, Vec<u8>)>,
    cursor: Cell<usize>,
    check_cursor: Cell<usize>,
    raw_cursor: Cell<usize>,
    records: Cell<u64>,
    wraps: Cell<u32>,
}

impl Native {
    fn new(doc: &Value) -> Result<Native> {
        let engine = agent_iam::config::parse(doc["config"].to_string().as_bytes())
            .map_err(|e| anyhow!("the configuration: {e}"))?;
        let dpop = engine.settings().dpop.clone().context("the configuration has no dpop section")?;
        let host = HostCrypto::detect(NativeForeign);
        ensure!(host.host_algorithms().contains(&Algorithm::ES256), "the host emulation does not verify ES256");
        let store = Rc::new(MemoryStore::default());
        engine.set_shared_store(store.clone());
        let pairs: Vec<(String, String)> = serde_json::from_value(doc["headers"].clone())?;
        let text = |k: &str| doc[k].as_str().map(str::to_owned).with_context(|| k.to_owned());
        let (token, bearer_token, check_proof) = (text("token")?, text("bearer_token")?, text("check_proof")?);
        let with = |auth: String, proof: Option<&str>| {
            let mut p = pairs.clone();
            p.push(("authorization".into(), auth));
            if let Some(proof) = proof {
                p.push(("dpop".into(), proof.to_owned()));
            }
            header_pairs(p)
        };
        let check = with(format!("DPoP {token}"), Some(&check_proof));
        let bearer_headers = with(format!("Bearer {bearer_token}"), None);
        let bound_as_bearer = with(format!("Bearer {token}"), None);
        let v = engine.decide(&check, CHECK_TIME, &host);
        ensure!(allowed(&v), "the bound token with its proof: {v:?}");
        let v = engine.decide(&check, CHECK_TIME, &host);
        ensure!(refused_as(&v, "dpop_replayed"), "the same proof again: {v:?}");
        let v = engine.decide(&bearer_headers, CHECK_TIME, &host);
        ensure!(allowed(&v), "the unbound token as Bearer: {v:?}");
        let v = engine.decide(&bound_as_bearer, CHECK_TIME, &host);
        ensure!(refused_as(&v, "dpop_bound_token_as_bearer"), "the bound token as Bearer: {v:?}");

        let prefill = doc["prefill"].as_u64().context("prefill")?;
        let window = dpop.rules.window();
        ensure!(window == WINDOW, "the configuration's replay window is {window} s, not {WINDOW}");
        let first = START - prefill.div_ceil(PER_SECOND as u64) as i64;
        for n in 0..prefill {
            let iat = first + n as i64 / PER_SECOND;
            dpop.replay
                .record(store.as_ref(), &synthetic_id(PREFILL_TAG, n), iat, iat + window, iat)
                .map_err(|e| anyhow!("prefilling the replay cache: {e:?}"))?;
        }
        let mut snapshot = Vec::new();
        for i in 0..BUCKETS {
            let key = format!("{REPLAY_PREFIX}{i}");
            let (value, _) =
                store.get(&key).map_err(|e| anyhow!("{e}"))?.with_context(|| format!("no bucket {key}"))?;
            snapshot.push((key, value));
        }

        let proofs: Vec<String> = serde_json::from_value(doc["proofs"].clone())?;
        let proofs: &'static [String] = Box::leak(proofs.into_boxed_slice());
        let proofs = proofs.iter().map(|p| split(p)).collect::<Result<Vec<_>>>()?;
        let token_sha256: [u8; 32] = b64::decode(agent_iam::mint::ath(&token).as_bytes())
            .ok()
            .and_then(|h| h.try_into().ok())
            .context("the token's hash")?;
        let payload: Map<String, Value> = serde_json::from_slice(
            &b64::decode(token.split('.').nth(1).context("token")?.as_bytes()).map_err(|_| anyhow!("token"))?,
        )?;
        let jkt = payload["cnf"]["jkt"].as_str().context("cnf.jkt")?.to_owned();
        let keys = ProofKeys::default();
        let expected_htu = format!("{}{PATH}", dpop.origin);
        let expected = Expected { method: METHOD, htu: &expected_htu, token_sha256: &token_sha256, now: CHECK_TIME };
        let checked = proof::check(check_proof.as_bytes(), &expected, &dpop.rules, &keys, &host)
            .map_err(|e| anyhow!("the check proof: {e}"))?;
        let dpop_headers = RefCell::new(with(format!("DPoP {token}"), Some(&check_proof)));
        let native = Native {
            engine,
            dpop,
            host,
            instant: HostCrypto::new(InstantForeign, vec![Algorithm::ES256]),
            store,
            proofs,
            header: checked.header,
            dpop_headers,
            bearer_headers,
            expected_htu,
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
        for p in &native.proofs {
            ensure!(native.host.verify(native.header.alg, &native.header.key, p.message, &p.signature), "a proof");
        }
        Ok(native)
    }

    fn time_of(&self, i: usize) -> i64 {
        START + i as i64 / PER_SECOND
    }

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

    /// engine/dpop.rs's checks for a `DPoP` presentation (`DpopSettings::check`), as `engine_step` in
    /// plugin/src/bench_exports/dpop.rs.
    fn step(&self, crypto: &dyn CryptoBackend) -> bool {
        let (i, now) = self.next();
        let mut headers = self.dpop_headers.borrow_mut();
        if let Some(last) = headers.last_mut() {
            last.1 = self.proofs[i].bytes;
        }
        let presentation = Presentation {
            headers: &headers,
            method: METHOD,
            raw_path: black_box(PATH),
            path: PATH,
            conn: Connection::default(),
            bound_key: &self.jkt,
            token_sha256: &self.token_sha256,
        };
        let recording = Recording::In(Some(self.store.as_ref()));
        self.dpop.check(&presentation, &self.keys, None, recording, now, crypto).is_ok()
    }

    fn raw(&self, crypto: &dyn CryptoBackend) -> bool {
        let i = self.raw_cursor.get();
        self.raw_cursor.set(if i + 1 == self.proofs.len() { 0 } else { i + 1 });
        let p = &self.proofs[i];
        crypto.verify(self.header.alg, &self.header.key, black_box(p.message), black_box(&p.signature))
    }

    fn peek(&self) -> (&Proof, i64) {
        let i = self.check_cursor.get();
        self.check_cursor.set(if i + 1 == self.proofs.len() { 0 } else { i + 1 });
        (&self.proofs[i], self.time_of(i))
    }

    fn record_one(&self) -> bool {
        let n = self.records.get();
        self.records.set(n + 1);
        let now = self.time_of(self.proofs.len()) + 1 + (n / PER_SECOND as u64) as i64;
        let expires = now.saturating_add(self.dpop.rules.window());
        self.dpop.replay.record(self.store.as_ref(), &synthetic_id(RECORD_TAG, n), now, expires, now).is_ok()
    }

    /// One operation of `phase`: as `agent_iam_bench_dpop_run(phase, 1)` answers.
    fn run(&self, phase: u32) -> u32 {
        u32::from(match phase {
            0 => self.step(&self.host),
            1 => self.raw(&self.host),
            2 => self.step(&PureRust),
            3 => self.raw(&PureRust),
            4 => {
                let (i, now) = self.next();
                let mut headers = self.dpop_headers.borrow_mut();
                if let Some(last) = headers.last_mut() {
                    last.1 = self.proofs[i].bytes;
                }
                allowed(&self.engine.decide(&headers, now, &self.host))
            }
            5 => allowed(&self.engine.decide(&self.bearer_headers, START, &self.host)),
            6 => {
                let (p, now) = self.peek();
                let expected =
                    Expected { method: METHOD, htu: &self.expected_htu, token_sha256: &self.token_sha256, now };
                proof::check(p.bytes, &expected, &self.dpop.rules, &self.keys, &self.host).is_ok()
            }
            7 => {
                let headers = self.dpop_headers.borrow();
                let mut proofs = headers.iter().filter(|(name, _)| *name == "dpop");
                let one = matches!((proofs.next(), proofs.next()), (Some(_), None));
                let path_only = PATH.split(['?', '#']).next().unwrap_or(PATH);
                let expected = htu::normalise_path(black_box(path_only)).map(|p| format!("{}{p}", self.dpop.origin));
                one && expected.is_some_and(|e| !e.is_empty())
            }
            8 => {
                let (p, _) = self.peek();
                b64::decode(black_box(p.payload_b64))
                    .ok()
                    .and_then(|payload| json::parse_object(&payload, 4).ok())
                    .is_some_and(|claims| claims.contains_key("jti"))
            }
            9 => {
                let (p, _) = self.peek();
                htu::normalise(black_box(&p.htu)).is_some()
            }
            10 => {
                let (p, _) = self.peek();
                black_box(proof_id(black_box(&p.htu), black_box(&p.jti)));
                true
            }
            11 => true,
            14 => self.step(&self.instant),
            15 => self.raw(&self.instant),
            16 => {
                let (p, _) = self.peek();
                b64::decode(black_box(&p.bytes[p.message.len() + 1..])).is_ok_and(|s| s.len() == 64)
            }
            12 => {
                // As the .wasm side: the first call records a whole window first (the cache's steady state).
                let warm = if self.records.get() == 0 { (PER_SECOND * WINDOW) as u64 } else { 0 };
                (0..=warm).all(|_| self.record_one())
            }
            _ => false,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

fn run(cli: Cli) -> Result<()> {
    let out = cli.options.out("dpop");
    let wasm_path = cli.options.wasm_path();
    let harness = cli.options.harness();
    ensure!(cli.proofs >= 1000, "--proofs: at least 1000");
    let keys = DemoKeys::generate()?;
    let holder = SigningKey::from_seed(Algorithm::ES256, demo::random_seed()?).context("the agent's key")?;
    let doc = document(&keys, &holder, cli.proofs)?;
    let bytes = serde_json::to_vec(&doc)?;
    let native = Native::new(&doc)?;
    let mut wasm = wasm_path.as_deref().map(|p| Wasm::new(p, "agent_iam_bench_dpop", &bytes, START)).transpose()?;
    eprintln!(
        "the bound token with a proof allowed, the same proof refused as replayed, the bound token as Bearer refused, \
         an unbound one allowed, {} proofs' signatures good, on both sides; the replay cache filled with {} proofs",
        native.proofs.len(),
        doc["prefill"]
    );

    let mut phases = Phases::new(harness, "operation", 18, 8);
    let mut paired: Option<(f64, f64)> = None;
    for ((phase, name, what), calls) in PHASES {
        ensure!(native.run(phase) == 1, "{name}: the native run failed");
        if let Some(w) = wasm.as_mut() {
            let got = w.timed.run(phase, 1)?;
            ensure!(got == 1, "{name}: the .wasm answered {got}");
        }
        let per_call = calls.per_call;
        phases.measure(
            (phase, name, what),
            || {
                black_box(native.run(black_box(phase)));
            },
            wasm.as_mut(),
            calls,
            |got| got == per_call,
            "the .wasm answered differently during timing (a proof refused)",
        )?;
        if phase == 1 {
            // verify and raw alternately in the .wasm: their ratio, steadier than the ratio of two phases timed
            // at different moments.
            if let Some(w) = wasm.as_mut() {
                let timed = RefCell::new(&mut w.timed);
                let failed = Cell::new(false);
                let run = |phase: u32| {
                    let ok = timed.borrow_mut().run(phase, 4).is_ok_and(|got| got == 4);
                    failed.set(failed.get() || !ok);
                };
                let (verify, raw): (Stats, Stats) = harness.pair(|| run(0), || run(1));
                ensure!(!failed.get(), "verify/raw paired: the .wasm answered differently during timing");
                paired = Some((verify.median / 4.0, raw.median / 4.0));
            }
        }
    }
    let wraps_native = native.wraps.get();
    let wraps_wasm = match wasm.as_mut() {
        Some(w) => Some(w.timed.run(PHASE_WRAPS, 1)?),
        None => None,
    };

    let get = |k: &str| phases.get(k);
    let difference = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((a - b) * 10.0).round() / 10.0);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (a / b * 1000.0).round() / 1000.0);
    let paired_ratio = paired.map(|(v, r)| (v / r * 1000.0).round() / 1000.0);
    // verify = X + v and raw = X + r, X the host's own check: (X + v) / (X + r) <= 1.3 once X >= (v - 1.3 r) / 0.3.
    let needed = get("verify_instant_ns_wasm")
        .zip(get("raw_instant_ns_wasm"))
        .map(|(v, r)| ((v - TARGET_RATIO * r) / (TARGET_RATIO - 1.0)).max(0.0).round());
    let mut report = Map::new();
    report.insert(
        "what".into(),
        "agent-iam's DPoP proof checks (issue 22) natively and inside the .wasm (bench-exports, wasmtime), ES256: \
         dpop_verify_* = every check engine/dpop.rs makes of one DPoP request (header, expected htu, proof::check, \
         cnf.jkt binding, replay-cache record in shared data), a new proof each time; dpop_raw_* = the bare \
         signature check of the same proofs through the same crypto. _host: signatures through \
         proxy_call_foreign_function(verify_signature), answered by the wasmtime host's native emulation of \
         Envoy's BoringSSL check (RustCrypto), shared data through the host; _pure: the pure-Rust backend. \
         Medians of ns per operation; instr = wasm operators (wasmtime fuel). See docs/performance.md."
            .into(),
    );
    let figures = [
        ("dpop_verify_ns_ES256_wasm_host", get("verify_host_ns_wasm")),
        ("dpop_raw_ns_ES256_wasm_host", get("raw_host_ns_wasm")),
        ("ratio_dpop_verify_over_raw_ES256_wasm_host", ratio(get("verify_host_ns_wasm"), get("raw_host_ns_wasm"))),
        ("ratio_dpop_verify_over_raw_ES256_wasm_host_paired", paired_ratio),
        ("dpop_verify_minus_raw_ns_ES256_wasm_host", difference(get("verify_host_ns_wasm"), get("raw_host_ns_wasm"))),
        ("dpop_verify_instr_ES256_wasm_host", get("verify_host_instructions")),
        ("dpop_raw_instr_ES256_wasm_host", get("raw_host_instructions")),
        (
            "dpop_verify_minus_raw_instr_ES256_wasm_host",
            difference(get("verify_host_instructions"), get("raw_host_instructions")),
        ),
        ("dpop_verify_ns_ES256_native_host", get("verify_host_ns_native")),
        ("dpop_raw_ns_ES256_native_host", get("raw_host_ns_native")),
        (
            "ratio_dpop_verify_over_raw_ES256_native_host",
            ratio(get("verify_host_ns_native"), get("raw_host_ns_native")),
        ),
        ("dpop_verify_ns_ES256_wasm_pure", get("verify_pure_ns_wasm")),
        ("dpop_raw_ns_ES256_wasm_pure", get("raw_pure_ns_wasm")),
        ("ratio_dpop_verify_over_raw_ES256_wasm_pure", ratio(get("verify_pure_ns_wasm"), get("raw_pure_ns_wasm"))),
        ("dpop_verify_ns_ES256_native_pure", get("verify_pure_ns_native")),
        ("dpop_raw_ns_ES256_native_pure", get("raw_pure_ns_native")),
        (
            "ratio_dpop_verify_over_raw_ES256_native_pure",
            ratio(get("verify_pure_ns_native"), get("raw_pure_ns_native")),
        ),
        ("dpop_verify_ns_ES256_wasm_instant", get("verify_instant_ns_wasm")),
        ("dpop_raw_ns_ES256_wasm_instant", get("raw_instant_ns_wasm")),
        (
            "dpop_verify_minus_raw_ns_ES256_wasm_instant",
            difference(get("verify_instant_ns_wasm"), get("raw_instant_ns_wasm")),
        ),
        ("host_check_ns_ES256_wasm_host", difference(get("raw_host_ns_wasm"), get("raw_instant_ns_wasm"))),
        ("host_check_needed_for_target_ns", needed),
        ("dpop_decide_ns_wasm_host", get("decide_dpop_ns_wasm")),
        ("bearer_decide_ns_wasm", get("decide_bearer_ns_wasm")),
        ("dpop_decision_extra_ns_wasm_host", difference(get("decide_dpop_ns_wasm"), get("decide_bearer_ns_wasm"))),
        (
            "dpop_decision_extra_instr_wasm_host",
            difference(get("decide_dpop_instructions"), get("decide_bearer_instructions")),
        ),
        ("dpop_record_ns_wasm_host", get("record_ns_wasm")),
        ("dpop_record_instr_wasm_host", get("record_instructions")),
    ];
    for (key, value) in figures {
        report.insert(key.into(), value.into());
    }
    report.insert(
        "targets".into(),
        json!([target(
            "dpop_verify_ns_ES256_wasm_host <= 1.3 * dpop_raw_ns_ES256_wasm_host",
            ratio(get("verify_host_ns_wasm"), get("raw_host_ns_wasm")),
            TARGET_RATIO
        )]),
    );
    report.insert("wraps".into(), json!({"native": wraps_native, "wasm": wraps_wasm}));
    phases.report(&mut report);
    report.insert(
        "workload".into(),
        json!({
            "engine": "envoy/bench/c3-agent-iam-dpop.yaml's plugin configuration, issuer dpop allowed, dpop section \
                       {origin} only (defaults: max_age 60 s, skew 5 s, replay_cache_size 65,536)",
            "request": format!("{METHOD} {PATH}, Authorization: DPoP <token bound by cnf.jkt>, DPoP: <proof>"),
            "proofs": native.proofs.len(),
            "proof_bytes": native.proofs.first().map(|p| p.bytes.len()),
            "virtual_rate_per_second": PER_SECOND,
            "replay_cache_prefill": doc["prefill"],
            "proof_key": "ES256 (P-256), one key for every proof (its header validated once and kept)",
        }),
    );
    report.insert(
        "notes".into(),
        json!({
            "ns": "median ns per operation; native and .wasm sampled alternately; compare within one run",
            "instructions": "wasm operators per operation (wasmtime fuel), deterministic: compare across commits; \
                             they include the export's loop (loop_instr) and the module's side of host calls \
                             (marshalling, the allocation callback), not the host's native work (the signature \
                             check itself, the shared-data map)",
            "host": "the wasmtime host's emulation of Envoy's verify_signature is RustCrypto's P-256, not BoringSSL: \
                     real Envoy's check is faster, so the same overhead is a larger share there; see C3 in \
                     make bench-envoy",
            "targets": "issue 22; reported, never asserted",
        }),
    );
    if !cli.no_requests {
        let plugin = cli.plugin.clone().unwrap_or_else(agent_iam_host::plugin_wasm_path);
        let requests = whole_requests(&plugin, &keys, &holder, &doc)
            .with_context(|| format!("whole requests through {} in the wasmtime host", plugin.display()))?;
        report.insert("requests_in_host".into(), requests);
    }
    exports::write_report(report, wasm_path.as_deref(), cli.options.quick, &out)
}

// ---------------------------------------------------------------------------------------------
// Whole requests of configurations C1 and C3 in the wasmtime host
// ---------------------------------------------------------------------------------------------

/// Requests per metered batch.
const METERED: u64 = 40;
/// C3's requests before the count, so that the replay cache's buckets exist (a bucket's first proof also
/// creates it: two more shared-data calls) and hold about five proofs each.
const HOST_PREFILL: usize = 5 * BUCKETS;

/// The whole request of `make bench-envoy`'s C1 (configuration C, a new ES256 token every request) and C3 (a
/// cached bound token, a new proof every request) through the plain plugin in the wasmtime host (the proxy-wasm
/// host Envoy's role is played by): wasm instructions per request (fuel, after a warm-up request), per callback,
/// and host calls per request. What C3 adds over C1 inside the module, deterministically; the host's signature
/// check (native) and Envoy's own work (the larger request parsed, the header map) are not in it.
fn whole_requests(plugin: &std::path::Path, keys: &DemoKeys, holder: &SigningKey, doc: &Value) -> Result<Value> {
    use agent_iam_host::{Host, LogLevel, Vm};
    use std::time::{Duration, UNIX_EPOCH};
    let metered = Host::metered_from_file(plugin)?;
    let root = agent_iam_host::workspace_root();
    let config_of = |file: &str| -> Result<Value> {
        let template = std::fs::read_to_string(root.join("envoy/bench").join(file))?;
        demo::plugin_config(&template, &keys.jwks())
    };
    let start = |host: &Host, config: &Value, clocked: bool| -> Result<Vm> {
        host.vm()
            .clock_wasm(clocked)
            .log_level(LogLevel::Info)
            .plugin_config(config.to_string())
            .time(UNIX_EPOCH + Duration::from_secs(START as u64))
            .start()
            .context("starting the plugin")
    };
    let send = |vm: &mut Vm, authorization: &str, proof: Option<&str>| {
        let mut r = vm.request().method(METHOD).path(PATH).authority("api.trading.example");
        r = r.header("authorization", authorization);
        if let Some(p) = proof {
            r = r.header("dpop", p);
        }
        r.send()
    };
    let n = 2 * METERED as usize + 1;
    // C1: a new token each request (jti of its own), as configuration C' sends them.
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            let claims = json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::TRADER,
                                "jti": format!("c1-{i}"), "iat": TOKEN_IAT, "exp": START + 3600});
            format!("Bearer {}", keys.es256.sign_jwt(Some(demo::ES256_KID), &claims))
        })
        .collect();
    // C3: the bound token of the microbenchmark, new proofs at START (the host's clock stands still).
    let token = doc["token"].as_str().context("token")?;
    let proofs = mint_proofs(holder, token, HOST_PREFILL + n, "c3-", |_| START)?;
    let dpop_auth = format!("DPoP {token}");
    let mut out = Map::new();
    for (key, file) in [("C1", "c-agent-iam.yaml"), ("C3", "c3-agent-iam-dpop.yaml")] {
        let config = config_of(file)?;
        let request = |vm: &mut Vm, i: usize| match key {
            "C1" => send(vm, &tokens[i], None),
            _ => send(vm, &dpop_auth, Some(&proofs[i])),
        };
        // Metered and clocked (for its count of host calls).
        let mut m = start(&metered, &config, true)?;
        let mut next = 0usize;
        let mut go = |vm: &mut Vm| -> Result<()> {
            let outcome = request(vm, next);
            next += 1;
            ensure!(outcome.is_allowed(), "{key}: request {next} refused: {outcome:?}\n{}", vm.logs_text());
            drop(vm.take_logs());
            Ok(())
        };
        for _ in 0..if key == "C3" { HOST_PREFILL + 1 } else { 1 } {
            go(&mut m)?;
        }
        let before = m.fuel_consumed().context("metered host")?;
        let calls_before = m.wasm_time().map_or(0, |(_, calls)| calls);
        for _ in 0..METERED {
            go(&mut m)?;
        }
        let per_request = (m.fuel_consumed().context("metered host")? - before) / METERED;
        let calls = (m.wasm_time().map_or(0, |(_, calls)| calls) - calls_before) as f64 / METERED as f64;
        m.reset_fuel_by_export();
        for _ in 0..METERED {
            go(&mut m)?;
        }
        let split: Map<String, Value> =
            m.fuel_by_export().into_iter().map(|(export, f)| (export, json!(f / METERED))).collect();
        println!("{key} whole request in the wasmtime host: {per_request} instructions, {calls:.1} host calls");
        out.insert(
            key.into(),
            json!({"instructions": per_request, "instructions_by_callback": split,
                   "host_calls": calls, "config": format!("envoy/bench/{file}")}),
        );
    }
    let instr = |k: &str| out[k]["instructions"].as_f64();
    out.insert("C3_minus_C1_instructions".into(), instr("C3").zip(instr("C1")).map(|(a, b)| a - b).into());
    out.insert("plugin".into(), plugin.display().to_string().into());
    out.insert(
        "what".into(),
        "the whole request of make bench-envoy's C1 (a new ES256 token) and C3 (a cached bound token, a new ES256 \
         proof) through the plain .wasm in the wasmtime host: wasm instructions per request (fuel), per callback, \
         and host calls per request; the host's native signature check and Envoy's own work are not counted. C3 \
         after 5 x 4,096 requests (every replay bucket exists, about 5 proofs in each)"
            .into(),
    );
    Ok(Value::Object(out))
}
