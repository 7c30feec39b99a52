//! `agent-iam-limits-bench` (`make bench`): what a request limit and the anomaly detector cost per request
//! (issue 21, item 5), natively and inside the `.wasm` (built with the plugin's `bench-exports` feature, run in
//! wasmtime).
//!
//! - `limits_1`: the limit work of one allowed request under configuration H's policy
//!   (`envoy/bench/h-agent-iam-limits.yaml`: one limit per agent, 1,000,000,000 a day, never reached):
//!   `Policy::limits_for` (which limits apply, and each one's key) and a GCRA charge of each
//!   (`SharedLimiter::charge`: the clock, a read of the counter, a compare-and-swap write), for the GET of
//!   configuration C.
//! - `limits_3`: the same for an MCP `tools/call` under three limits: per agent, per subject, per agent and tool.
//! - `limits_for_1`: `Policy::limits_for` alone, for `limits_1`'s request: the rest of `limits_1` is the charge.
//! - `observe`: `Detector::observe` of the agent's allowed request with every anomaly signal on (H's
//!   `"anomaly": {}`), after the agent's learning period, at a steady 600 requests a minute (the virtual clock
//!   moves 100 ms per request).
//! - `loop`: the `.wasm` export's loop alone, the floor under the per-operation figures of the `.wasm`.
//!
//! The counters are in an in-memory store (`MemoryStore`, Envoy's semantics: a CAS token per key): in the
//! `.wasm` its calls stand in for Envoy's shared-data host calls (`proxy_get_shared_data`, whose answer Envoy
//! copies into memory it asks the module for, and `proxy_set_shared_data`). Their own price in Envoy is not
//! here: configuration H of `make bench-envoy` (C with this limit and detector) measures it. The limiters'
//! clock moves 37 µs per request (about C's rate in Envoy), so the counter never refuses.
//!
//! Before anything is timed both sides check that the benchmark measures something: H's policy puts the GET
//! under one limit and the three-limit policy puts the MCP call under three, with distinct counters; with the
//! clock frozen, a limit of 5 a minute allows the request exactly 5 times through the whole decision and
//! refuses the sixth (429, `rate_limited`); the detector fires nothing while it learns the agent's steady
//! traffic and for half an hour after, and the same detector fires a first use for a rule the agent never used
//! (it is live). The learning period is cut to an hour for the benchmark (H keeps the default day): the signals'
//! work per request is the same during learning and after it (first use looks names up either way).
//!
//! Per figure: the median ns per operation natively and in the `.wasm` (sampled alternately), and wasm
//! instructions per operation (wasmtime fuel; deterministic). Writes `target/bench/limits.json`; targets are
//! reported, never asserted. Options: `--wasm PATH` (default
//! `target/bench-wasm/wasm32-wasip1/release/agent_iam.wasm`), `--no-wasm`, `--quick`, `--out PATH`.

use agent_iam::anomaly::{Detector, Observation, Settings, SignalKind};
use agent_iam::engine::limits::{Charge, Limiter, SharedLimiter, counter_key};
use agent_iam::engine::{Engine, Verdict};
use agent_iam::policy::cases::token_from_claims;
use agent_iam::request::mcp::{self as mcp_request, Arguments, McpRequest, Revision};
use agent_iam::request::{Peer, Request};
use agent_iam::shared_data::MemoryStore;
use agent_iam::token::{PureRust, VerifiedToken};
use agent_iam_bench::exports::{self, Calls, Phase, Phases, Wasm, target};
use agent_iam_bench::mcp;
use agent_iam_tests::demo::{self, DemoKeys};
use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;

/// The benchmark's clock (seconds since the epoch): tokens are minted for it and the `.wasm` reads it.
const NOW: i64 = 1_900_000_000;
/// Issue 21's target for the limit work of one request under one limit, inside the `.wasm`.
const LIMITS_TARGET_NS: f64 = 1000.0;
/// The limiters' clock per request: about C's rate in Envoy (27,000 a second).
const STEP_US: u64 = 37;
/// The detector's clock per request: a steady 600 requests a minute.
const STEP_MS: u64 = 100;
/// The detector's learning period for the benchmark, and how long it watches steady traffic after it before
/// anything is timed.
const LEARNING_SECONDS: u64 = 3600;
const WATCHED_SECONDS: u64 = 1800;
/// The limit of the exactness check: this many a minute.
const CHECK_REQUESTS: u32 = 5;
/// The allowing rule of configuration H, and one the agent never used.
const RULE: &str = "trader-reads-quotes";
const NEW_RULE: &str = "trader-places-orders";
/// The request of configuration C, decided through the whole engine by the exactness check.
const HEADERS: [(&str, &str); 3] =
    [(":method", "GET"), (":path", "/quotes/ACME"), (":authority", "api.trading.example")];
/// The same request as policy sees it.
const GET: (&str, &str, &str) = ("GET", "/quotes/ACME", "api.trading.example");

/// The phases, as `agent_iam_bench_limits_run` numbers them (plugin/src/bench_exports/limits.rs).
const PHASES: [Phase; 5] = [
    (0, "limits_1", "Policy::limits_for + a GCRA charge, one limit per agent (configuration H), a GET"),
    (1, "limits_3", "Policy::limits_for + three GCRA charges (agent, subject, agent and tool), an MCP tools/call"),
    (4, "limits_for_1", "Policy::limits_for alone, limits_1's request (the rest of limits_1 is the charge)"),
    (2, "observe", "Detector::observe of a known agent's allowed request, every signal on, after learning"),
    (3, "loop", "the .wasm export's loop alone (no operation): the floor of the .wasm figures"),
];

/// What agent-iam's request limits and anomaly detector cost, natively and inside the .wasm; writes
/// target/bench/limits.json.
#[derive(Parser)]
#[command(name = "agent-iam-limits-bench", version)]
#[command(mut_arg("out", |a| a.help("Where to write the JSON report [default: target/bench/limits.json in the workspace]")))]
struct Cli {
    #[command(flatten)]
    options: exports::Options,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("agent-iam-limits-bench: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// The token: the trading agent acting for a person (a delegation of depth 1: agent and subject differ).
fn claims() -> Value {
    json!({
        "iss": demo::ISSUER,
        "aud": demo::AUDIENCE,
        "sub": demo::ALICE,
        "act": {"sub": demo::TRADER},
        "iat": NOW - 60,
        "exp": NOW + 3540,
    })
}

/// A limit that never refuses during the run: a billion a day (the most a day allows is 86,400,000,000).
fn limit(id: &str, per: &[&str]) -> Value {
    json!({"id": id, "per": per, "requests": 1_000_000_000u64, "window": "1d"})
}

/// What both sides load.
fn document() -> Result<Value> {
    let keys = DemoKeys::generate()?;
    let template_path = agent_iam_host::workspace_root().join("envoy/bench/h-agent-iam-limits.yaml");
    let template =
        std::fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let mut config = demo::plugin_config(&template, &keys.jwks())?;
    ensure!(config["anomaly"].is_object(), "{}: no anomaly section", template_path.display());
    ensure!(config["policy"]["limits"].as_array().map(Vec::len) == Some(1), "H's policy has not one limit");
    config["anomaly"]["learning_seconds"] = LEARNING_SECONDS.into();
    let mut config3 = config.clone();
    config3["policy"]["limits"] = json!([
        limit("per-agent", &["agent"]),
        limit("per-subject", &["subject"]),
        limit("per-tool", &["agent", "tool"])
    ]);
    let mut check = config.clone();
    check["policy"]["limits"] =
        json!([{"id": "per-agent", "per": ["agent"], "requests": CHECK_REQUESTS, "window": "1m"}]);
    let claims = claims();
    let token = keys.es256.sign_jwt(Some(demo::ES256_KID), &claims);
    Ok(json!({
        "config": config,
        "config3": config3,
        "check_config": check,
        "time_us": NOW as u64 * 1_000_000,
        "claims": claims,
        "rule": RULE,
        "get": {"method": GET.0, "path": GET.1, "host": GET.2},
        "mcp": {"headers": mcp::headers("tools/call", Some(mcp::TOOL)), "body": mcp::allowed_call()},
        "token": token,
        "headers": HEADERS,
        "check_requests": CHECK_REQUESTS,
        "step_us": STEP_US,
        "step_ms": STEP_MS,
        "learn_ms": (LEARNING_SECONDS + WATCHED_SECONDS) * 1000,
        "new_rule": NEW_RULE,
    }))
}

/// Header pairs as the proxy hands them over, leaked once per run as the `.wasm` side leaks them.
fn header_pairs(pairs: Vec<(String, String)>) -> Vec<(&'static str, &'static [u8])> {
    pairs
        .into_iter()
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.to_ascii_lowercase().into_boxed_str());
            let value: &'static [u8] = Box::leak(v.into_bytes().into_boxed_slice());
            (name, value)
        })
        .collect()
}

/// An engine built from `config`, and the limiter it counts with (in memory, at `clock`).
struct Counted {
    engine: Engine,
    limiter: Rc<dyn Limiter>,
}

fn counted(config: &Value, clock: impl Fn() -> Option<u64> + 'static) -> Result<Counted> {
    let engine = agent_iam::config::parse(config.to_string().as_bytes()).map_err(|e| anyhow!("configuration: {e}"))?;
    let limiter: Rc<dyn Limiter> = Rc::new(SharedLimiter { store: MemoryStore::default(), clock });
    engine.set_limiter(limiter.clone());
    Ok(Counted { engine, limiter })
}

fn observation<'a>(token: &'a VerifiedToken) -> Observation<'a> {
    Observation {
        agent: token.agent(),
        subject: token.subject(),
        depth: token.chain.depth(),
        allowed: true,
        rule: Some(RULE),
        labels: &[],
        tool: None,
    }
}

/// A detector with `settings` that learnt the agent's steady traffic for `learn_ms`, and the time after.
fn learnt(settings: &Settings, o: &Observation<'_>, from_ms: u64, learn_ms: u64) -> Result<(Detector, u64)> {
    let mut detector = Detector::new(settings.clone());
    let mut now = from_ms;
    while now < from_ms + learn_ms {
        let fired = detector.observe(o, now);
        ensure!(fired.is_empty(), "the detector fired on steady traffic at +{} ms: {fired:?}", now - from_ms);
        now += STEP_MS;
    }
    Ok((detector, now))
}

fn get_request<'a>(now: i64) -> Request<'a> {
    Request {
        method: GET.0,
        path: GET.1,
        query: None,
        host: Some(GET.2),
        headers: &[],
        now,
        peer: Peer::default(),
        route: None,
        route_tag: None,
        mcp: None,
        hypothetical: false,
    }
}

fn mcp_request_view(call: &McpRequest, now: i64) -> Request<'_> {
    Request {
        method: "POST",
        path: "/mcp",
        query: None,
        host: None,
        headers: &[],
        now,
        peer: Peer::default(),
        route: None,
        route_tag: None,
        mcp: Some(call),
        hypothetical: false,
    }
}

/// The native side: the same engines, token, requests and detector, the same calls as
/// plugin/src/bench_exports/limits.rs.
struct Native {
    one: Counted,
    three: Counted,
    clock: Rc<Cell<u64>>,
    token: VerifiedToken,
    call: McpRequest,
    detector: Detector,
    now_ms: u64,
}

impl Native {
    fn new(doc: &Value) -> Result<Native> {
        let time_us = doc["time_us"].as_u64().context("time_us")?;
        let clock = Rc::new(Cell::new(time_us));
        let at = |c: &Rc<Cell<u64>>| {
            let c = c.clone();
            move || Some(c.get())
        };
        let one = counted(&doc["config"], at(&clock))?;
        let three = counted(&doc["config3"], at(&clock))?;
        let token = token_from_claims(doc["claims"].as_object().context("claims")?.clone())
            .map_err(|e| anyhow!("token: {e}"))?;
        ensure!(token.agent() == demo::TRADER && token.subject() == demo::ALICE, "agent or subject");
        let mcp_pairs: Vec<(String, String)> = serde_json::from_value(doc["mcp"]["headers"].clone())?;
        let mcp_headers = header_pairs(mcp_pairs);
        let body = doc["mcp"]["body"].as_str().context("mcp body")?;
        let call = mcp_request::parse(body.as_bytes(), &mcp_headers, &Revision::ALL, Arguments::All)
            .map_err(|e| anyhow!("the MCP call: {e:?}"))?;

        let one_limits = one.engine.policy().limits_for(&token, &get_request(NOW), RULE);
        ensure!(one_limits.len() == 1, "H's policy puts the GET under {} limits", one_limits.len());
        let keys: Vec<String> = three
            .engine
            .policy()
            .limits_for(&token, &mcp_request_view(&call, NOW), RULE)
            .iter()
            .map(|a| counter_key(a.limit, &a.key))
            .collect();
        ensure!(keys.len() == 3, "the three-limit policy puts the MCP call under {} limits", keys.len());
        ensure!(keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k)), "counters not distinct: {keys:?}");

        // Exact at N with a frozen clock, through the whole decision.
        let check = counted(&doc["check_config"], move || Some(time_us))?.engine;
        let pairs: Vec<(String, String)> = serde_json::from_value(doc["headers"].clone())?;
        let mut pairs = pairs;
        pairs.push(("authorization".into(), format!("Bearer {}", doc["token"].as_str().context("token")?)));
        let headers = header_pairs(pairs);
        for i in 0..CHECK_REQUESTS {
            let v = check.decide(&headers, NOW, &PureRust);
            ensure!(matches!(v, Verdict::Allow { dry_run: None, .. }), "request {} of {CHECK_REQUESTS}: {v:?}", i + 1);
        }
        let v = check.decide(&headers, NOW, &PureRust);
        ensure!(
            matches!(&v, Verdict::Deny(d) if d.status == 429 && d.reason == "rate_limited"),
            "request {} of a limit of {CHECK_REQUESTS}: {v:?}",
            CHECK_REQUESTS + 1
        );

        // The detector: quiet on steady traffic, live on a first use.
        let settings = one.engine.settings().anomaly.clone().context("no anomaly settings")?;
        ensure!(
            settings.rate.is_some()
                && settings.first_use.is_some()
                && settings.probing.is_some()
                && settings.delegation.is_some(),
            "not every signal is on"
        );
        let o = observation(&token);
        let learn_ms = doc["learn_ms"].as_u64().context("learn_ms")?;
        let (detector, now_ms) = learnt(&settings, &o, time_us / 1000, learn_ms)?;
        let (mut probe, probe_ms) = learnt(&settings, &o, time_us / 1000, learn_ms)?;
        let fired = probe.observe(&Observation { rule: Some(NEW_RULE), ..o }, probe_ms);
        ensure!(
            fired.len() == 1 && fired[0].kind == SignalKind::FirstUse,
            "a rule never used does not fire a first use: {fired:?}"
        );
        Ok(Native { one, three, clock, token, call, detector, now_ms })
    }

    /// One operation of `phase`: as `agent_iam_bench_limits_run(phase, 1)` answers.
    fn run(&mut self, phase: u32) -> u32 {
        match phase {
            0 | 1 | 4 => {
                self.clock.set(self.clock.get() + STEP_US);
                let now = (self.clock.get() / 1_000_000) as i64;
                let (c, view) = if phase == 1 {
                    (&self.three, mcp_request_view(&self.call, now))
                } else {
                    (&self.one, get_request(now))
                };
                let applicable = c.engine.policy().limits_for(black_box(&self.token), &view, RULE);
                if phase == 4 {
                    return u32::from(applicable.len() == 1);
                }
                u32::from(
                    applicable.iter().all(|a| matches!(c.limiter.charge(&a.key, a.limit), Ok(Charge::Allowed { .. }))),
                )
            }
            2 => {
                self.now_ms += STEP_MS;
                let o = observation(&self.token);
                u32::from(self.detector.observe(black_box(&o), self.now_ms).is_empty())
            }
            3 => 1,
            _ => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

fn run(cli: Cli) -> Result<()> {
    let out = cli.options.out("limits");
    let wasm_path = cli.options.wasm_path();
    let harness = cli.options.harness();
    let doc = document()?;
    let bytes = serde_json::to_vec(&doc)?;
    let mut native = Native::new(&doc)?;
    let mut wasm = wasm_path.as_deref().map(|p| Wasm::new(p, "agent_iam_bench_limits", &bytes, NOW)).transpose()?;
    eprintln!(
        "checked on both sides: one limit on the GET, three distinct counters on the MCP call; a limit of \
         {CHECK_REQUESTS} a minute allows exactly {CHECK_REQUESTS} with a frozen clock; the detector quiet on steady \
         traffic, live on a first use"
    );

    let mut phases = Phases::new(harness, "request", 12, 8);
    for (phase, name, what) in PHASES {
        ensure!(native.run(phase) == 1, "{name}: the native run answered otherwise");
        if let Some(w) = wasm.as_mut() {
            let got = w.timed.run(phase, 1)?;
            ensure!(got == 1, "{name}: the .wasm answered {got}");
        }
        let per_call: u32 = 64;
        phases.measure(
            (phase, name, what),
            || {
                black_box(native.run(black_box(phase)));
            },
            wasm.as_mut(),
            Calls { per_call, metered: 1_000 },
            |got| got == per_call,
            "the .wasm answered differently during timing (a refused charge, or a signal on steady traffic)",
        )?;
    }

    let get = |k: &str| phases.get(k);
    let difference = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((a - b) * 10.0).round() / 10.0);
    let mut report = Map::new();
    report.insert(
        "what".into(),
        "agent-iam's request limits and anomaly detector (issue 21) natively and inside the .wasm (bench-exports, \
         wasmtime): limits_* = Policy::limits_for + a GCRA charge of each limit that applies (the counters in an \
         in-memory store standing in for Envoy's shared-data host calls, whose price in Envoy configuration H of \
         make bench-envoy measures), with configuration H's one limit per agent (a GET) and with three limits \
         (agent, subject, agent and tool; an MCP tools/call); anomaly_observe_* = Detector::observe of a known \
         agent's allowed request with every signal on, after learning, on steady traffic. Medians of ns per \
         request; instr = wasm operators (wasmtime fuel). See docs/performance.md."
            .into(),
    );
    let figures = [
        ("limits_ns_wasm", get("limits_1_ns_wasm")),
        ("limits_3_ns_wasm", get("limits_3_ns_wasm")),
        ("limits_ns_native", get("limits_1_ns_native")),
        ("limits_3_ns_native", get("limits_3_ns_native")),
        ("limits_instr_wasm", get("limits_1_instructions")),
        ("limits_3_instr_wasm", get("limits_3_instructions")),
        ("limits_for_ns_wasm", get("limits_for_1_ns_wasm")),
        ("limits_for_ns_native", get("limits_for_1_ns_native")),
        ("limits_for_instr_wasm", get("limits_for_1_instructions")),
        ("charge_ns_wasm", difference(get("limits_1_ns_wasm"), get("limits_for_1_ns_wasm"))),
        ("charge_instr_wasm", difference(get("limits_1_instructions"), get("limits_for_1_instructions"))),
        ("anomaly_observe_ns_wasm", get("observe_ns_wasm")),
        ("anomaly_observe_ns_native", get("observe_ns_native")),
        ("anomaly_observe_instr_wasm", get("observe_instructions")),
        ("loop_ns_wasm", get("loop_ns_wasm")),
        ("loop_instr_wasm", get("loop_instructions")),
    ];
    for (key, value) in figures {
        report.insert(key.into(), value.into());
    }
    report
        .insert("targets".into(), json!([target("limits_ns_wasm <= 1000", get("limits_1_ns_wasm"), LIMITS_TARGET_NS)]));
    phases.report(&mut report);
    report.insert(
        "workload".into(),
        json!({
            "token": {"iss": demo::ISSUER, "sub": demo::ALICE, "act": demo::TRADER},
            "limits_1": {"config": "envoy/bench/h-agent-iam-limits.yaml", "limits": doc["config"]["policy"]["limits"],
                         "request": format!("{} {}", GET.0, GET.1)},
            "limits_3": {"limits": doc["config3"]["policy"]["limits"],
                         "request": format!("POST /mcp, tools/call of {}", mcp::TOOL)},
            "store": "MemoryStore (in the .wasm: in place of proxy_get_shared_data / proxy_set_shared_data)",
            "limiter_clock": format!("{STEP_US} µs per request"),
            "anomaly": {"settings": "H's \"anomaly\": {} (every signal on, record), learning_seconds cut to 3600",
                        "traffic": format!("one allowed request every {STEP_MS} ms, learnt for {LEARNING_SECONDS} s \
                                            and watched for {WATCHED_SECONDS} s before timing")},
            "exactness_check":
                format!("{CHECK_REQUESTS} a minute, frozen clock: {CHECK_REQUESTS} allowed, the next 429"),
        }),
    );
    report.insert(
        "notes".into(),
        json!({
            "ns": "median ns per request; native and .wasm sampled alternately; compare within one run",
            "instructions": "wasm operators per request (wasmtime fuel) over 1,000 requests, deterministic: compare \
                             across commits; they include the export's loop (loop_instr_wasm)",
            "hostcalls": "not included: in Envoy a charge is proxy_get_current_time_nanoseconds, \
                          proxy_get_shared_data (its answer copied into memory Envoy asks the module for) and \
                          proxy_set_shared_data; configuration H measures them",
            "targets": "issue 21; reported, never asserted",
        }),
    );
    exports::write_report(report, wasm_path.as_deref(), cli.options.quick, &out)
}
