//! `agent-iam-host-bench`: what one request costs inside the real `.wasm`, run by the wasmtime host as Envoy
//! runs it. Three figures per scenario, from the same module:
//!
//! - `ns`: median wall time per request (harness of [`agent_iam_bench::measure`]), host overhead included
//!   (`baseline` is the same request through a module that only answers Continue);
//! - `in_wasm_ns`: median time per request inside the module's own code, kept by a wasmtime call hook that
//!   stops the clock whenever the module calls the host (the host's work is not the plugin's);
//! - `instructions`: wasm instructions per request (wasmtime fuel, one unit per operator) on a metered host,
//!   averaged over a batch after a warm-up request. Deterministic: the same module and request give the same
//!   count on any machine, whatever its load — the figure to compare across commits. Crypto done by the host
//!   (Envoy's `verify_signature`) is native and not counted.
//!
//! Scenarios: a request without a token (refused before any crypto), a cached token, an uncached token per
//! algorithm and backend (`token_cache_size: 0`), and policies of 10 to 10,000 rules with a cached token.
//! Writes `target/bench/host.json`. Options: `--quick`, `--out PATH`.

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_bench::measure::Harness;
use agent_iam_host::{Host, LogLevel, Vm};
use agent_iam_tests::modules::BASELINE_WAT;
use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://issuer.bench.example";
const AGENT: &str = "spiffe://bench.example/agent/42";
/// Agents of the generated policies: rule i is for agent i % AGENTS.
const AGENTS: usize = 100;
/// Requests per metered batch.
const METERED: u64 = 20;

/// What one request costs inside the real .wasm in the wasmtime host: ns, ns inside the module, wasm
/// instructions; writes target/bench/host.json.
#[derive(Parser)]
#[command(name = "agent-iam-host-bench", version)]
struct Cli {
    /// Short run (fewer, shorter samples), for smoke tests.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report [default: target/bench/host.json in the workspace].
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("agent-iam-host-bench: {e:#}");
        std::process::exit(1);
    }
}

/// A scenario: a plugin configuration, the request path, the token, and whether it is allowed.
struct Scenario {
    name: String,
    config: Value,
    path: String,
    bearer: Option<String>,
    allowed: bool,
}

/// Rule i: agent i % AGENTS may GET /svc<i>/items/{id}. The request matches rule rules/2.
fn policy(rules: usize) -> Value {
    let rules: Vec<Value> = (0..rules)
        .map(|i| {
            json!({"id": format!("r{i}"), "effect": "allow", "agents": [agent(i % AGENTS)],
                   "methods": ["GET"], "paths": [format!("/svc{i}/items/{{id}}")]})
        })
        .collect();
    json!({"rules": rules})
}

fn agent(n: usize) -> String {
    format!("spiffe://bench.example/agent/{n}")
}

fn config(key: &SigningKey, backend: &str, cache: usize, policy: Value) -> Value {
    let mut issuer = json!({"issuer": ISSUER, "audiences": ["api"], "algorithms": [key.alg().name()]});
    match key.hmac_secret() {
        Some(secret) => {
            let secret = agent_iam::b64::encode(secret);
            issuer["hmac_secrets"] = json!([{"alg": key.alg().name(), "kid": "k", "secret": secret}]);
        }
        None => issuer["jwks"] = json!({"keys": [key.public_jwk(Some("k"))]}),
    }
    json!({"issuers": [issuer], "crypto_backend": backend, "token_cache_size": cache, "policy": policy})
}

fn token(key: &SigningKey) -> String {
    token_for(key, AGENT)
}

fn token_for(key: &SigningKey, sub: &str) -> String {
    let claims = json!({"iss": ISSUER, "aud": "api", "sub": sub, "iat": NOW - 60, "exp": NOW + 86_400});
    format!("Bearer {}", key.sign_jwt(Some("k"), &claims))
}

fn scenarios() -> Result<Vec<Scenario>> {
    let es256 = SigningKey::from_seed(Algorithm::ES256, [1; 32]).context("ES256 key")?;
    let one_rule = || json!({"rules": [{"id": "agents", "effect": "allow", "agents": ["spiffe://bench.example/*"]}]});
    let mut out = vec![
        Scenario {
            name: "no_token".into(),
            config: config(&es256, "auto", 4096, one_rule()),
            path: "/orders/7".into(),
            bearer: None,
            allowed: false,
        },
        Scenario {
            name: "cached".into(),
            config: config(&es256, "auto", 4096, one_rule()),
            path: "/orders/7".into(),
            bearer: Some(token(&es256)),
            allowed: true,
        },
    ];
    for (alg, seed, backends) in [
        (Algorithm::ES256, 1u8, &["auto", "pure-rust"][..]),
        (Algorithm::ES384, 2, &["auto", "pure-rust"][..]),
        (Algorithm::EdDSA, 3, &["pure-rust"][..]),
        (Algorithm::RS256, 4, &["auto", "pure-rust"][..]),
        (Algorithm::PS256, 5, &["pure-rust"][..]),
        (Algorithm::HS256, 6, &["pure-rust"][..]),
    ] {
        let key = match alg {
            Algorithm::HS256 => SigningKey::hmac(alg, &[7u8; 32]),
            _ => SigningKey::from_seed(alg, [seed; 32]),
        }
        .with_context(|| format!("{} key", alg.name()))?;
        for backend in backends {
            let tag = if *backend == "auto" { "host" } else { "pure" };
            out.push(Scenario {
                name: format!("uncached_{}_{tag}", alg.name()),
                config: config(&key, backend, 0, one_rule()),
                path: "/orders/7".into(),
                bearer: Some(token(&key)),
                allowed: true,
            });
        }
    }
    for rules in [10usize, 100, 1000, 10_000] {
        out.push(Scenario {
            name: format!("policy_{rules}"),
            config: config(&es256, "auto", 4096, policy(rules)),
            path: format!("/svc{}/items/9", rules / 2),
            bearer: Some(token_for(&es256, &agent((rules / 2) % AGENTS))),
            allowed: true,
        });
    }
    Ok(out)
}

/// A VM for a scenario; `clocked`: it keeps the time spent inside the module.
fn start(host: &Host, config: &Value, clocked: bool) -> Result<Vm> {
    host.vm()
        .clock_wasm(clocked)
        .log_level(LogLevel::Info)
        .plugin_config(config.to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .context("starting the plugin")
}

fn send(vm: &mut Vm, path: &str, bearer: Option<&str>) -> agent_iam_host::Outcome {
    let mut r =
        vm.request().method("GET").path(path).authority("api.bench.example").header("x-request-id", "req-bench");
    if let Some(b) = bearer {
        r = r.header("authorization", b);
    }
    r.send()
}

fn run(cli: Cli) -> Result<()> {
    let quick = cli.quick;
    let out = cli.out.unwrap_or_else(|| agent_iam_host::workspace_root().join("target/bench/host.json"));
    let harness = if quick {
        Harness { warmup: Duration::from_millis(30), sample: Duration::from_millis(3), samples: 11 }
    } else {
        Harness { warmup: Duration::from_millis(300), sample: Duration::from_millis(20), samples: 31 }
    };
    let wasm = agent_iam_host::plugin_wasm_path();
    let host = Host::from_file(&wasm).context("build the plugin first: make wasm")?;
    let metered = Host::metered_from_file(&wasm)?;
    let mut ns = Map::new();
    let mut in_wasm = Map::new();
    let mut instructions = Map::new();
    let mut by_callback = Map::new();

    let baseline = Host::from_bytes(&wat::parse_str(BASELINE_WAT)?)?;
    let mut vm = baseline.vm().start()?;
    let stats = harness.run(&mut vm, |vm| drop(black_box(send(vm, "/orders/7", None))), |vm| drop(vm.take_logs()));
    ns.insert("baseline".into(), json!(stats.median.round()));

    for s in scenarios()? {
        let mut vm = start(&host, &s.config, false)?;
        let first = send(&mut vm, &s.path, s.bearer.as_deref());
        ensure!(first.is_allowed() == s.allowed, "{}: unexpected {first:?}\n{}", s.name, vm.logs_text());
        let stats = harness.run(
            &mut vm,
            |vm| drop(black_box(send(vm, &s.path, s.bearer.as_deref()))),
            |vm| drop(vm.take_logs()),
        );
        ensure!(vm.trap().is_none(), "{}: the plugin trapped", s.name);
        ns.insert(s.name.clone(), json!(stats.median.round()));

        let mut c = start(&host, &s.config, true)?;
        send(&mut c, &s.path, s.bearer.as_deref());
        let inside = harness.run_clocked(
            &mut c,
            |vm| drop(black_box(send(vm, &s.path, s.bearer.as_deref()))),
            |vm| drop(vm.take_logs()),
            |vm| vm.wasm_time().map_or(Duration::ZERO, |(inside, _)| inside),
        );
        in_wasm.insert(s.name.clone(), json!(inside.median.round()));

        let mut m = start(&metered, &s.config, false)?;
        send(&mut m, &s.path, s.bearer.as_deref());
        let before = m.fuel_consumed().context("metered host")?;
        for _ in 0..METERED {
            send(&mut m, &s.path, s.bearer.as_deref());
        }
        m.reset_fuel_by_export();
        let per_request = (m.fuel_consumed().context("metered host")? - before) / METERED;
        instructions.insert(s.name.clone(), json!(per_request));
        for _ in 0..METERED {
            send(&mut m, &s.path, s.bearer.as_deref());
        }
        let split: Map<String, Value> =
            m.fuel_by_export().into_iter().map(|(export, n)| (export, json!(n / METERED))).collect();
        by_callback.insert(s.name.clone(), Value::Object(split));
        println!(
            "{:<24} {:>10.0} ns {:>10.0} ns in wasm {:>12} instructions",
            s.name, stats.median, inside.median, per_request
        );
    }

    let get = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let derived = json!({
        "cached_plugin_ns": get(&ns, "cached").zip(get(&ns, "baseline")).map(|(c, b)| (c - b).round()),
        "policy_growth_10_to_10000_instructions": ratio(get(&instructions, "policy_10000"), get(&instructions, "policy_10")),
        "policy_growth_10_to_10000_ns": ratio(get(&ns, "policy_10000"), get(&ns, "policy_10")),
    });
    let report = json!({
        "ns": ns,
        "in_wasm_ns": in_wasm,
        "instructions": instructions,
        "instructions_by_callback": by_callback,
        "derived": derived,
        "wasm": wasm.display().to_string(),
        "quick": quick,
        "notes": {
            "ns": "median wall time per request through the wasmtime host, host overhead included; compare within one run",
            "in_wasm_ns": "median time per request inside the module's own code (a wasmtime call hook stops the clock at every host call): the host's work is not counted, two clock reads per crossing are (an upper bound)",
            "instructions": "wasm instructions per request (wasmtime fuel), deterministic; host-side crypto not counted",
            "cached_plugin_ns": "cached minus baseline: the plugin's own time in a cached request",
        }
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
