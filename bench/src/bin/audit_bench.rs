//! `agent-iam-audit-bench` (`make bench`): what agent-iam's audit trail costs per decision (issue 19), natively
//! and inside the `.wasm` (built with the plugin's `bench-exports` feature, run in wasmtime): one OCSF event
//! built and sealed into the VM's chain by `agent_iam::audit::line`, as the filter builds it for every decision
//! (`plugin/src/filter/audit.rs`), without the filter's reads of headers and properties around it. The decision
//! is an allowed `GET /patients/42/records/xray` by a delegated agent (a radiology assistant acting for a
//! clinician): route label `PHI`, path parameter `patient_id` = `42`, request id, user agent, source address,
//! policy version, Envoy node id, one recorded claim.
//!
//! - `audit_event`: the event with the configured checkpoint key, a signed checkpoint every 100 events (and at
//!   seq 0), as deployed: the average includes the periodic HMAC; each event's BLAKE3 hash (the chain's link);
//! - `audit_chain_only`: the same without a key (hash chain only, no HMAC);
//! - `audit_checkpoint_every_event`: every event a checkpoint (`every_events` 1): the HMAC on each event;
//! - `audit_json`: the event's JSON alone (`audit::event::write_open`), not sealed: no chain, no hash.
//!
//! Per figure: the median ns per event natively and in the `.wasm` (native and `.wasm` sampled alternately, so
//! that a change in the machine's load hits both), and wasm instructions per event (wasmtime fuel: one unit
//! per operator; deterministic), averaged over 1,000 events (whole checkpoint periods). Chains continue from
//! one sample to the next, so the seq grows as in a long-lived VM.
//!
//! Writes `target/bench/audit.json`; targets are reported, never asserted. Options: `--wasm PATH` (default
//! `target/bench-wasm/wasm32-wasip1/release/agent_iam.wasm`), `--no-wasm`, `--quick`, `--out PATH`.

use agent_iam::audit::{Chain, Facts, Outcome, RequestFacts, Settings};
use agent_iam::policy::cases::token_from_claims;
use agent_iam::token::VerifiedToken;
use agent_iam_bench::exports::{self, Calls, Phase, Phases, Wasm, target};
use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::hint::black_box;

/// The benchmark's clock (ms since the epoch): the events' `time`.
const NOW_MS: u64 = 1_900_000_000_000;
/// Issue 19's target, inside the `.wasm`.
const EVENT_TARGET_NS: f64 = 2_000.0;
/// A checkpoint every this many events (the configuration's default).
const EVERY_EVENTS: u64 = 100;

/// The phases, as `agent_iam_bench_audit_run` numbers them (plugin/src/bench_exports.rs).
const PHASES: [Phase; 5] = [
    (0, "event", "audit::line with the checkpoint key: a signed checkpoint every 100 events, BLAKE3 of every line"),
    (1, "chain_only", "audit::line without a key: BLAKE3 of every line (hash chain), no HMAC"),
    (2, "checkpoint_every_event", "audit::line with every event a signed checkpoint: BLAKE3 and HMAC-SHA256 each"),
    (3, "json", "audit::event::write_open and the uid: the event's JSON alone, not sealed (no chain, no hash)"),
    (
        4,
        "chain_only_cold",
        "chain_only in a chain that has not seen the event's stable beginning (a new chain each event, seq 0): the \
         whole line hashed, as for an agent's first event on a worker",
    ),
];

/// The chain id both sides use (plugin/src/bench_exports.rs: `AUDIT_CHAIN_ID`).
const CHAIN_ID: &str = "5f0c2a9e41d7b3686e1f0a2b3c4d5e6f";
/// The seq in phase 3's uid (`AUDIT_JSON_SEQ`).
const JSON_SEQ: u64 = 123_456;

/// The facts of the decision (plugin/src/bench_exports.rs: `audit_facts`).
mod facts {
    pub const METHOD: &str = "GET";
    pub const PATH: &str = "/patients/42/records/xray";
    pub const HOST: &str = "ehr.hospital.example";
    pub const REQUEST_ID: &str = "0b6f8a52-3c1e-4d2a-9f7e-5a1c2b3d4e5f";
    pub const USER_AGENT: &str = "radiology-assistant/2.3 (python-httpx/0.28)";
    pub const SOURCE: &str = "10.1.2.3:51234";
    pub const RULE: &str = "agents-read-patient-records";
    pub const POLICY_VERSION: &str = "2026-12-01.3";
    pub const NODE: &str = "gateway-7f9c4d-xk2lp";
    pub const LABELS: [&str; 1] = ["PHI"];
    pub const PARAMETERS: [(&str, &str); 1] = [("patient_id", "42")];
}

/// The minimal configuration the `.wasm` validates the audit settings in (plugin/src/bench_exports.rs:
/// `audit_config`).
fn audit_config(audit: &Value) -> String {
    let jwk = r#"{"kty": "EC", "crv": "P-256", "kid": "placeholder", "x": "8HpFOIR2t_bK0h7x15g_rnxvg4W7b_k7d5_5a0DDJLQ", "y": "fgx6ts-MmE-tDPpiBmZsbQhbxLVKiclZ3PG4bNm7wXY"}"#;
    format!(
        r#"{{"issuers": [{{"issuer": "https://idp.bench.example", "audiences": ["bench"], "algorithms": ["ES256"], "jwks": {{"keys": [{jwk}]}}}}], "policy": {{"rules": []}}, "audit": {audit}}}"#
    )
}

/// What agent-iam's audit event costs, natively and inside the .wasm; writes target/bench/audit.json.
#[derive(Parser)]
#[command(name = "agent-iam-audit-bench", version)]
#[command(mut_arg("out", |a| a.help("Where to write the JSON report [default: target/bench/audit.json in the workspace]")))]
struct Cli {
    #[command(flatten)]
    options: exports::Options,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("agent-iam-audit-bench: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// What both sides load: the delegated agent's claims, the `audit` object of the plugin configuration (with a
/// checkpoint key), the clock.
fn document() -> Value {
    // A fixed key (the benchmark signs nothing anyone verifies): 32 bytes, base64url without padding.
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    let now = (NOW_MS / 1000) as i64;
    json!({
        "claims": {
            "iss": "https://idp.hospital.example",
            "aud": "ehr-api",
            "sub": "clinician:dr-amara-okafor",
            "act": {"sub": "spiffe://hospital.example/agent/radiology-assistant"},
            "client_id": "radiology-assistant",
            "jti": "7c1d0e9a-5b2f-4e8d-a6c3-9f8e7d6c5b4a",
            "scope": "records:read imaging:read",
            "department": "radiology",
            "iat": now - 60,
            "exp": now + 3540,
        },
        "audit": {
            "events": "all",
            "claims": ["department"],
            "checkpoint": {"key": agent_iam::b64::encode(&key), "key_id": "k1", "every_events": EVERY_EVENTS,
                           "every_seconds": 10},
        },
        "time_ms": NOW_MS,
    })
}

/// The native side: the same settings, token and facts, the same calls as plugin/src/bench_exports.rs.
struct Native {
    token: VerifiedToken,
    /// Per phase 0..=2: its settings and chain (phase 3 reads phase 0's settings, phase 4 phase 1's).
    phases: Vec<(Settings, Chain)>,
}

impl Native {
    fn new(doc: &Value) -> Result<Native> {
        let engine = agent_iam::config::parse(audit_config(&doc["audit"]).as_bytes())
            .map_err(|e| anyhow!("the audit settings: {e}"))?;
        let settings = engine.settings().audit.clone().context("no audit settings")?;
        let key = settings.checkpoint.clone().context("no checkpoint key")?;
        ensure!(key.every_events == EVERY_EVENTS, "a checkpoint every {} events", key.every_events);
        let claims = doc["claims"].as_object().context("claims")?.clone();
        let token = token_from_claims(claims).map_err(|e| anyhow!("token: {e}"))?;
        ensure!(token.chain.depth() > 0, "the token is not delegated");
        let unkeyed = Settings { checkpoint: None, ..settings.clone() };
        let every = Settings {
            checkpoint: Some(agent_iam::audit::CheckpointKey { every_events: 1, ..key }),
            ..settings.clone()
        };
        let chain = || Chain::new(CHAIN_ID.to_owned(), None);
        Ok(Native { token, phases: vec![(settings, chain()), (unkeyed, chain()), (every, chain())] })
    }

    /// The chains as a load leaves them (seq 0).
    fn reset(&mut self) {
        for (_, chain) in &mut self.phases {
            *chain = Chain::new(CHAIN_ID.to_owned(), None);
        }
    }

    /// One event of `phase`: the length of its line, as `agent_iam_bench_audit_run(phase, 1)` answers.
    fn run(&mut self, phase: u32) -> u32 {
        self.line(phase).map_or(0, |l| l.len() as u32)
    }

    /// One event of `phase` (for phase 3, the unsealed JSON).
    fn line(&mut self, phase: u32) -> Option<String> {
        let index = match phase {
            0 | 3 => 0,
            1 | 4 => 1,
            2 => 2,
            _ => return None,
        };
        let (settings, chain) = self.phases.get_mut(index)?;
        let facts = Facts {
            time_ms: NOW_MS,
            outcome: Outcome::Allowed { rule: facts::RULE },
            request: RequestFacts {
                method: facts::METHOD,
                path: facts::PATH,
                host: Some(facts::HOST),
                request_id: Some(facts::REQUEST_ID),
                user_agent: Some(facts::USER_AGENT),
                source: Some(facts::SOURCE),
                peer: None,
                route: None,
            },
            token: Some(&self.token),
            mcp: None,
            policy_version: Some(facts::POLICY_VERSION),
            labels: &facts::LABELS,
            parameters: &facts::PARAMETERS,
            claims: &settings.claims,
            vendor: &settings.vendor,
            node: Some(facts::NODE),
            revoked_by: None,
            anomalies: &[],
        };
        Some(if phase == 3 {
            let mut out = String::with_capacity(1024);
            let uid = format!("{}.{}", chain.id(), JSON_SEQ);
            agent_iam::audit::event::write_open(&facts, &uid, &mut out);
            out
        } else if phase == 4 {
            agent_iam::audit::line(settings, &mut Chain::new(CHAIN_ID.to_owned(), None), &facts)
        } else {
            agent_iam::audit::line(settings, chain, &facts)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Events both sides build from a fresh chain and compare before anything is timed: more than two checkpoint
/// periods.
const CHECKED_EVENTS: u32 = 250;
/// Events per call into the `.wasm` while timing, so that the call into wasmtime is spread thin.
const PER_CALL: u32 = 8;
/// Events the instruction counts average over: whole checkpoint periods.
const METERED_EVENTS: u32 = 1_000;

fn run(cli: Cli) -> Result<()> {
    let out = cli.options.out("audit");
    let wasm_path = cli.options.wasm_path();
    let harness = cli.options.harness();
    let doc = document();
    let bytes = serde_json::to_vec(&doc)?;
    let mut native = Native::new(&doc)?;

    // The lines themselves: a checkpoint (seq 0) and an ordinary event (seq 1), read back as OCSF JSON.
    let checkpoint_line = native.line(0).context("no line")?;
    let plain_line = native.line(0).context("no line")?;
    for (what, line) in [("the checkpoint", &checkpoint_line), ("the event", &plain_line)] {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{what} is not JSON: {line}"))?;
        ensure!(v["class_uid"] == 6003, "{what}: class_uid {}", v["class_uid"]);
        ensure!(!line.contains('\n'), "{what} spans lines");
    }
    ensure!(checkpoint_line.contains("\"mac\":") && !plain_line.contains("\"mac\":"), "checkpoints where expected");
    native.reset();
    eprintln!(
        "event {} bytes; checkpoint event {} bytes (a checkpoint every {EVERY_EVENTS} events)",
        plain_line.len(),
        checkpoint_line.len()
    );

    let now = (NOW_MS / 1000) as i64;
    let mut wasm = wasm_path.as_deref().map(|p| Wasm::new(p, "agent_iam_bench_audit", &bytes, now)).transpose()?;

    // Both sides must build the same lines before anything is timed: from fresh chains, the total length of
    // the first events (which covers the checkpoints, the prev hashes and the seq's digits).
    for (phase, name, _) in PHASES {
        let expected: u32 = (0..CHECKED_EVENTS).map(|_| native.run(phase)).sum();
        ensure!(expected > 0, "{name}: the native run answered {expected}");
        if let Some(w) = wasm.as_mut() {
            let got = w.timed.run(phase, CHECKED_EVENTS)?;
            ensure!(
                got == expected,
                "{name}: the .wasm built {got} bytes in {CHECKED_EVENTS} events, natively {expected}"
            );
        }
    }

    let mut phases = Phases::new(harness, "event", 24, 8);
    for phase in PHASES {
        phases.measure(
            phase,
            || {
                black_box(native.run(black_box(phase.0)));
            },
            wasm.as_mut(),
            Calls { per_call: PER_CALL, metered: METERED_EVENTS },
            |got| got != 0,
            "the .wasm built no line during timing",
        )?;
    }

    let get = |k: &str| phases.get(k);
    // Where an event's time goes in the .wasm: the JSON, the chain's BLAKE3 hash (and the seal's few members), the
    // HMAC of a checkpoint.
    let difference = |a: &str, b: &str| match (get(a), get(b)) {
        (Some(a), Some(b)) => Some(((a - b) * 10.0).round() / 10.0),
        _ => None,
    };
    let breakdown = json!({
        "json_ns_wasm": get("json_ns_wasm"),
        "seal_and_hash_ns_wasm": difference("chain_only_ns_wasm", "json_ns_wasm"),
        "checkpoint_hmac_ns_wasm": difference("checkpoint_every_event_ns_wasm", "chain_only_ns_wasm"),
        "json_instructions": get("json_instructions"),
        "seal_and_hash_instructions": difference("chain_only_instructions", "json_instructions"),
        "checkpoint_hmac_instructions": difference("checkpoint_every_event_instructions", "chain_only_instructions"),
        "what": "differences of the phases' medians: chain_only - json = sealing (the chain member, BLAKE3 of the \
                 line); checkpoint_every_event - chain_only = a checkpoint's extra (HMAC-SHA256 of the line, the \
                 copy it is computed on, kid and mac)",
    });
    let mut report = Map::new();
    report.insert(
        "what".into(),
        "agent-iam's audit trail (issue 19) natively and inside the .wasm (bench-exports, wasmtime): audit_event = \
         one OCSF 1.8.0 API Activity event built and sealed into the VM's chain by audit::line (BLAKE3 of the \
         line, resumed after the stable beginning the agent's previous event had; a signed checkpoint, \
         HMAC-SHA256, every 100 events), for an allowed GET by a delegated agent; audit_event_cold = an agent's \
         first event on the worker, the whole line hashed. \
         Medians of ns per event; instructions = wasm operators (wasmtime fuel). See docs/performance.md."
            .into(),
    );
    report.insert("audit_event_ns_native".into(), get("event_ns_native").into());
    report.insert("audit_event_ns_wasm".into(), get("event_ns_wasm").into());
    report.insert("audit_event_instructions".into(), get("event_instructions").into());
    report.insert("audit_chain_only_ns_wasm".into(), get("chain_only_ns_wasm").into());
    // An agent's first event on a worker: the chain has no hash state for its stable beginning yet.
    report.insert("audit_event_cold_ns_wasm".into(), get("chain_only_cold_ns_wasm").into());
    report.insert("audit_event_cold_instructions".into(), get("chain_only_cold_instructions").into());
    report.insert("audit_event_bytes".into(), plain_line.len().into());
    report.insert("audit_checkpoint_event_bytes".into(), checkpoint_line.len().into());
    report.insert(
        "targets".into(),
        json!([target("audit_event_ns_wasm <= 2000", get("event_ns_wasm"), EVENT_TARGET_NS)]),
    );
    phases.report(&mut report);
    report.insert("breakdown".into(), breakdown);
    report.insert(
        "workload".into(),
        json!({
            "decision": format!("allow {} {} (rule {})", facts::METHOD, facts::PATH, facts::RULE),
            "agent": "spiffe://hospital.example/agent/radiology-assistant acting for clinician:dr-amara-okafor",
            "labels": facts::LABELS,
            "parameters": {"patient_id": "42"},
            "audit": {"events": "all", "claims": ["department"], "checkpoint": {"key_id": "k1",
                      "every_events": EVERY_EVENTS, "every_seconds": 10}},
            "event_bytes": plain_line.len(),
            "checkpoint_event_bytes": checkpoint_line.len(),
            "sample_event": plain_line,
        }),
    );
    report.insert(
        "notes".into(),
        json!({
            "ns": "median ns per event; native and .wasm sampled alternately; compare within one run",
            "instructions": "wasm operators per event (wasmtime fuel) over 1,000 events, deterministic: compare across commits",
            "scope": "audit::line only; the filter also reads the headers, source.address and the rule's labels \
                      and path parameters, and hands the line to Envoy (proxy_set_property): see configuration G \
                      of make bench-envoy",
            "targets": "issue 19; reported, never asserted",
        }),
    );
    exports::write_report(report, wasm_path.as_deref(), cli.options.quick, &out)
}
