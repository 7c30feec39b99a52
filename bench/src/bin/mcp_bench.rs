//! `agent-iam-mcp-bench` (`make bench`): what agent-iam's MCP path costs (issue 18), natively and inside the
//! `.wasm` (built with the plugin's `bench-exports` feature, run in wasmtime), through the engine's public
//! API on a prepared engine with a warm token cache, as the filter calls it:
//!
//! - `mcp_call`: a ~2 KB 2026-07-28 `tools/call` (`place_order`, with `MCP-Protocol-Version`, `Mcp-Method`
//!   and `Mcp-Name`) decided on its body: `Engine::decide_with_body` with `Body::Complete` (the request
//!   canonicalised, the token from the cache, the body parsed strictly, the mirrored headers checked, policy
//!   with argument conditions bound to claims);
//! - `mcp_list_filter`: a 100-tool `tools/list` response filtered for a caller who may see half
//!   (`Engine::filter_list_response`: one hypothetical call per tool through policy, the response rewritten).
//!
//! And, to show where the time goes, the phases inside them: the decision at the headers (`Body::Absent`,
//! which the filter makes first), the strict JSON parse, the MCP parse with the header agreement, policy
//! alone, and the list rewrite without policy. Per figure: the median ns per operation natively and in the
//! `.wasm` (native and `.wasm` sampled alternately, so that a change in the machine's load hits both), and
//! wasm instructions per operation (wasmtime fuel: one unit per operator; deterministic). The policy is the
//! plugin configuration of `envoy/bench/f-agent-iam-mcp.yaml` (configuration F of `make bench-envoy`).
//!
//! Writes `target/bench/mcp.json`; targets are reported, never asserted. Options: `--wasm PATH` (default
//! `target/bench-wasm/wasm32-wasip1/release/agent_iam.wasm`), `--no-wasm`, `--quick`, `--out PATH`.

use agent_iam::engine::{AwaitBody, Body, Engine, Verdict};
use agent_iam::policy::Decision;
use agent_iam::policy::cases::token_from_claims;
use agent_iam::request::mcp::list::{self, Filtered, ListKind};
use agent_iam::request::mcp::{self as mcp_request, McpRequest, Revision};
use agent_iam::request::{Connection, Peer, Request};
use agent_iam::token::{PureRust, VerifiedToken};
use agent_iam_bench::exports::{self, Calls, Phase, Phases, Wasm, target};
use agent_iam_bench::mcp;
use agent_iam_tests::demo::{self, DemoKeys};
use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::rc::Rc;

/// The benchmark's clock: tokens are minted for it and the `.wasm` reads it.
const NOW: i64 = 1_900_000_000;
/// Issue 18's targets, inside the `.wasm`.
const CALL_TARGET_NS: f64 = 3_000.0;
const LIST_TARGET_NS: f64 = 100_000.0;

/// The phases, as `agent_iam_bench_mcp_run` numbers them (plugin/src/bench_exports.rs).
const PHASES: [Phase; 8] = [
    (
        0,
        "call",
        "Engine::decide_body: the decision on a tools/call body as the filter makes it, after the one at the \
         headers (the request canonicalised, revocations checked, the body parsed and its headers checked, policy)",
    ),
    (1, "call_headers", "Engine::decide_with_body, Body::Absent: the decision at the headers, before the body"),
    (2, "call_json", "the body read as strict JSON only (json::tape)"),
    (
        3,
        "call_parse",
        "the body as an MCP message with the mirrored headers checked (request::mcp::parse), the arguments policy names built, as the engine reads it",
    ),
    (4, "call_policy", "Policy::evaluate on the parsed call"),
    (5, "list_filter", "Engine::filter_list_response: 100 tools, one policy evaluation each, rewritten"),
    (6, "list_scan", "list::filter_response with the answers known: read and rewrite, no policy"),
    (
        7,
        "call_afresh",
        "Engine::decide_with_body, Body::Complete: the same decision made afresh (the token looked up again), as \
         after a new configuration between headers and body",
    ),
];

/// What agent-iam's MCP path costs, natively and inside the .wasm; writes target/bench/mcp.json.
#[derive(Parser)]
#[command(name = "agent-iam-mcp-bench", version)]
#[command(mut_arg("out", |a| a.help("Where to write the JSON report [default: target/bench/mcp.json in the workspace]")))]
struct Cli {
    #[command(flatten)]
    options: exports::Options,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("agent-iam-mcp-bench: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// What both sides load: the plugin configuration, the clock, the caller's claims, the call and the list.
fn document() -> Result<Value> {
    let keys = DemoKeys::generate()?;
    let template_path = agent_iam_host::workspace_root().join("envoy/bench").join(mcp::F_CONFIG);
    let template =
        std::fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let config = demo::plugin_config(&template, &keys.jwks())?;
    let claims = mcp::claims(NOW - 60);
    let token = keys.es256.sign_jwt(Some(demo::ES256_KID), &claims);
    let call = mcp::allowed_call();
    let list = mcp::list_body();
    Ok(json!({
        "config": config,
        "time": NOW,
        "claims": claims,
        "call": {"headers": mcp::proxy_headers(&token, &call, "tools/call", Some(mcp::TOOL)), "body": call},
        "list": {"headers": mcp::proxy_headers(&token, &list, "tools/list", None), "body": list,
                 "response": mcp::list_response()},
    }))
}

/// The native side: the same engine and messages, the same calls as plugin/src/bench_exports.rs.
struct Native {
    engine: Engine,
    call_headers: Vec<(&'static str, &'static [u8])>,
    call_body: Vec<u8>,
    wait: AwaitBody,
    call: McpRequest,
    token: VerifiedToken,
    list_headers: Vec<(&'static str, &'static [u8])>,
    list_call: Rc<McpRequest>,
    list_response: Vec<u8>,
    kept: Vec<bool>,
}

/// Header pairs as the proxy hands them over, leaked (once per run) as the `.wasm` side leaks them: the
/// engine borrows headers from the proxy's buffer, and building the pairs per operation would time an
/// allocation the gateway does not make.
fn header_pairs(v: &Value) -> Result<Vec<(&'static str, &'static [u8])>> {
    let pairs: Vec<(String, String)> = serde_json::from_value(v.clone())?;
    Ok(pairs
        .into_iter()
        .map(|(n, v)| {
            let name: &'static str = Box::leak(n.to_ascii_lowercase().into_boxed_str());
            let value: &'static [u8] = Box::leak(v.into_bytes().into_boxed_slice());
            (name, value)
        })
        .collect())
}

impl Native {
    fn new(doc: &Value) -> Result<Native> {
        let engine = agent_iam::config::parse(doc["config"].to_string().as_bytes())
            .map_err(|e| anyhow!("the configuration: {e}"))?;
        let call_headers = header_pairs(&doc["call"]["headers"])?;
        let call_body = doc["call"]["body"].as_str().context("call body")?.as_bytes().to_vec();
        let list_headers = header_pairs(&doc["list"]["headers"])?;
        let list_body = doc["list"]["body"].as_str().context("list body")?.as_bytes().to_vec();
        let list_response = doc["list"]["response"].as_str().context("list response")?.as_bytes().to_vec();
        let verdict = engine.decide_with_body(&call_headers, Connection::default(), Body::Absent, NOW, &PureRust);
        let Verdict::Allow { await_body: Some(wait), .. } = verdict else { bail!("the call's headers: {verdict:?}") };
        let verdict =
            engine.decide_body(&wait, &call_headers, Connection::default(), Body::Complete(&call_body), NOW, &PureRust);
        ensure!(matches!(verdict, Verdict::Allow { mcp: Some(_), dry_run: None, .. }), "the call: {verdict:?}");
        let call = mcp_request::parse(
            &call_body,
            &call_headers,
            &Revision::ALL,
            mcp_request::Arguments::Only(&engine.policy().needs().arguments),
        )
        .map_err(|e| anyhow!("the call: {e:?}"))?;
        let claims = doc["claims"].as_object().context("claims")?.clone();
        let token = token_from_claims(claims).map_err(|e| anyhow!("token: {e}"))?;
        let verdict =
            engine.decide_with_body(&list_headers, Connection::default(), Body::Complete(&list_body), NOW, &PureRust);
        let Verdict::Allow { mcp: Some(list_call), filter_list: true, .. } = verdict else {
            bail!("the list request: {verdict:?}")
        };
        let mut n = Native {
            engine,
            call_headers,
            call_body,
            wait,
            call,
            token,
            list_headers,
            list_call,
            list_response,
            kept: Vec::new(),
        };
        let Filtered::Rewritten(out) = n.list()? else { bail!("the list was not filtered") };
        let out: Value = serde_json::from_slice(&out)?;
        let survivors: Vec<&str> =
            out["result"]["tools"].as_array().context("tools")?.iter().filter_map(|t| t["name"].as_str()).collect();
        ensure!(
            survivors.len() == mcp::list_kept(),
            "the caller sees {} tools of {}, expected {}",
            survivors.len(),
            mcp::LIST_TOOLS,
            mcp::list_kept()
        );
        let all: Value = serde_json::from_slice(&n.list_response)?;
        n.kept = all["result"]["tools"]
            .as_array()
            .context("tools")?
            .iter()
            .map(|t| t["name"].as_str().is_some_and(|name| survivors.contains(&name)))
            .collect();
        Ok(n)
    }

    fn list(&self) -> Result<Filtered> {
        self.engine
            .filter_list_response(
                &self.list_headers,
                Connection::default(),
                NOW,
                &PureRust,
                &self.list_call,
                &self.list_response,
            )
            .map_err(|e| anyhow!("filtering the list: {e:?}"))
    }

    /// One operation of `phase`: as `agent_iam_bench_mcp_run(phase, 1)` answers.
    fn run(&self, phase: u32) -> u32 {
        let headers = &self.call_headers;
        let conn = Connection::default();
        let length = |f: Option<Filtered>| match f {
            Some(Filtered::Rewritten(out)) => out.len() as u32,
            _ => 0,
        };
        match phase {
            0 => {
                let body = Body::Complete(&self.call_body);
                let v = self.engine.decide_body(&self.wait, headers, conn, body, NOW, &PureRust);
                u32::from(matches!(v, Verdict::Allow { mcp: Some(_), .. }))
            }
            7 => {
                let v = self.engine.decide_with_body(headers, conn, Body::Complete(&self.call_body), NOW, &PureRust);
                u32::from(matches!(v, Verdict::Allow { mcp: Some(_), .. }))
            }
            1 => {
                let v = self.engine.decide_with_body(headers, conn, Body::Absent, NOW, &PureRust);
                u32::from(matches!(v, Verdict::Allow { await_body: Some(_), .. }))
            }
            2 => u32::from(agent_iam::json::tape::Tape::parse(&self.call_body, mcp_request::MAX_DEPTH).is_ok()),
            3 => u32::from(
                mcp_request::parse(
                    &self.call_body,
                    headers,
                    &Revision::ALL,
                    mcp_request::Arguments::Only(&self.engine.policy().needs().arguments),
                )
                .is_ok(),
            ),
            4 => {
                let view = Request {
                    method: "POST",
                    path: mcp::PATH,
                    query: None,
                    host: None,
                    headers,
                    now: NOW,
                    peer: Peer::default(),
                    route: None,
                    route_tag: None,
                    mcp: Some(&self.call),
                    hypothetical: false,
                };
                u32::from(matches!(self.engine.policy().evaluate(&self.token, &view), Decision::Allow { .. }))
            }
            5 => length(self.list().ok()),
            6 => {
                let mut answers = self.kept.iter().copied();
                length(
                    list::filter_response(&self.list_response, ListKind::Tools, true, &mut |_| {
                        answers.next().unwrap_or(false)
                    })
                    .ok(),
                )
            }
            _ => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

fn run(cli: Cli) -> Result<()> {
    let out = cli.options.out("mcp");
    let wasm_path = cli.options.wasm_path();
    let harness = cli.options.harness();
    let doc = document()?;
    let bytes = serde_json::to_vec(&doc)?;
    let native = Native::new(&doc)?;
    let mut wasm = wasm_path.as_deref().map(|p| Wasm::new(p, "agent_iam_bench_mcp", &bytes, NOW)).transpose()?;

    let call_bytes = doc["call"]["body"].as_str().map_or(0, str::len);
    let list_bytes = doc["list"]["response"].as_str().map_or(0, str::len);
    eprintln!(
        "tools/call body {call_bytes} bytes; tools/list response {list_bytes} bytes, {} tools, the caller keeps {}",
        mcp::LIST_TOOLS,
        mcp::list_kept()
    );

    let mut phases = Phases::new(harness, "operation", 14, 10);
    for (phase, name, what) in PHASES {
        // Both sides must give the same answer before anything is timed.
        let expected = native.run(phase);
        ensure!(expected > 0, "{name}: the native run answered {expected}");
        if let Some(w) = wasm.as_mut() {
            let got = w.timed.run(phase, 1)?;
            ensure!(got == expected, "{name}: the .wasm answered {got}, natively {expected}");
        }
        // The .wasm's calls run `per_call` operations each, so that the call into wasmtime is spread thin.
        let per_call: u32 = if phase >= 5 { 1 } else { 8 };
        // Counting phases answer one per operation; the list phases the length of the last rewrite.
        let per_call_answer = if phase >= 5 { expected } else { expected * per_call };
        phases.measure(
            (phase, name, what),
            || {
                black_box(native.run(black_box(phase)));
            },
            wasm.as_mut(),
            Calls { per_call, metered: if phase >= 5 { 20 } else { 200 } },
            |got| got == per_call_answer,
            "the .wasm answered differently during timing",
        )?;
    }

    let get = |k: &str| phases.get(k);
    let mut report = Map::new();
    report.insert(
        "what".into(),
        "agent-iam's MCP path (issue 18) natively and inside the .wasm (bench-exports, wasmtime), warm token cache: \
         mcp_call = Engine::decide_with_body on a ~2 KB 2026-07-28 tools/call (parse, header agreement, policy); \
         mcp_list_filter = Engine::filter_list_response on a 100-tool tools/list for a caller who keeps half. \
         Medians of ns per operation; instructions = wasm operators (wasmtime fuel). See docs/performance.md."
            .into(),
    );
    report.insert("mcp_call_ns_native".into(), get("call_ns_native").into());
    report.insert("mcp_call_ns_wasm".into(), get("call_ns_wasm").into());
    report.insert("mcp_call_instructions".into(), get("call_instructions").into());
    report.insert("mcp_list_filter_ns_native".into(), get("list_filter_ns_native").into());
    report.insert("mcp_list_filter_ns_wasm".into(), get("list_filter_ns_wasm").into());
    report.insert("mcp_list_filter_instructions".into(), get("list_filter_instructions").into());
    report.insert(
        "targets".into(),
        json!([
            target("mcp_call_ns_wasm <= 3000", get("call_ns_wasm"), CALL_TARGET_NS),
            target("mcp_list_filter_ns_wasm <= 100000", get("list_filter_ns_wasm"), LIST_TARGET_NS),
        ]),
    );
    phases.report(&mut report);
    report.insert(
        "workload".into(),
        json!({
            "config": format!("envoy/bench/{}", mcp::F_CONFIG),
            "call_body_bytes": call_bytes,
            "call_tool": mcp::TOOL,
            "revision": mcp::REVISION,
            "list_response_bytes": list_bytes,
            "list_tools": mcp::LIST_TOOLS,
            "list_kept": mcp::list_kept(),
        }),
    );
    report.insert(
        "notes".into(),
        json!({
            "ns": "median ns per operation; native and .wasm sampled alternately; compare within one run",
            "instructions": "wasm operators per operation (wasmtime fuel), deterministic: compare across commits",
            "call_headers": "the filter decides twice per MCP POST: at the headers (call_headers) and on the body (call); mcp_call is the second",
            "targets": "issue 18; reported, never asserted",
        }),
    );
    exports::write_report(report, wasm_path.as_deref(), cli.options.quick, &out)
}
