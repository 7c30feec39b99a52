//! `agent-iam-envoy-hostcalls` (part of `make bench-envoy`): what one proxy-wasm crossing costs in real Envoy.
//!
//! One Envoy per module of [`agent_iam_bench::hostcalls::Probe`] (each `--concurrency 1`, the listener and
//! `direct_response` route of `envoy/bench/e-empty-wasm.yaml`), all pinned to one core and loaded in turn by
//! `wrk` on another with the request configuration C sees (`GET /quotes/ACME` with a bearer token), for
//! `--rounds` rounds. For each module: Envoy's CPU time per request (from `/proc`, median over rounds); the
//! price of one unit is the difference to the floor module divided by the units per request. Writes
//! `target/bench/envoy-hostcalls.json`; nothing is asserted.

use agent_iam_bench::envoy::{
    allowed_cpus, children, cpu_us, median, pin, round1, run_wrk, set_realtime, split_cpus, wrk_version,
};
use agent_iam_bench::hostcalls::{Probe, REPEAT};
use agent_iam_bench::measure::machine;
use agent_iam_tests::demo::{self, Ports};
use agent_iam_tests::testbed::{self, Envoy};
use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

/// The price of each proxy-wasm crossing in real Envoy: Envoy's CPU per request with a module making one host
/// call 20 times, against a module making none.
#[derive(Parser)]
#[command(name = "agent-iam-envoy-hostcalls", version)]
struct Cli {
    /// Measured rounds; figures are medians over the rounds.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// Seconds per measured run.
    #[arg(long, value_name = "S", default_value_t = 4)]
    seconds: u64,
    /// Connections of wrk.
    #[arg(long, value_name = "N", default_value_t = 16)]
    connections: usize,
    /// Only these probes (comma-separated keys, e.g. floor,get_header_map_pairs); the floor is always run.
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    only: Vec<String>,
    /// Directory for envoy-hostcalls.json [default: target/bench in the workspace].
    #[arg(long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// The same path and a token-sized `authorization` header as configuration C's requests (any text: nothing
/// here verifies it), so the header map Envoy serialises has the same size.
const PATH: &str = "/quotes/ACME";

struct Running {
    probe: Probe,
    _envoy: Envoy,
    port: u16,
    pid: u32,
    cpu_us_per_request: Vec<f64>,
    rps: Vec<f64>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("agent-iam-envoy-hostcalls: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    ensure!(wrk_version().is_some(), "wrk is needed (make wrk)");
    let machine_info = machine();
    let root = agent_iam_host::workspace_root();
    let work = root.join("target/bench/envoy-hostcalls");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let envoy_bin = testbed::envoy_binary();
    let template_path = root.join("envoy/bench/e-empty-wasm.yaml");
    let template =
        std::fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let token = format!("Bearer {}", "x".repeat(420));

    let cpus = allowed_cpus()?;
    let (envoy_cpus, load_cpus) = split_cpus(&cpus);
    let realtime = set_realtime(Some(10)).is_ok();
    pin(&envoy_cpus)?;
    let mut running = Vec::new();
    let wanted = |p: &Probe| p == &Probe::Floor || cli.only.is_empty() || cli.only.iter().any(|k| k == p.key());
    for probe in Probe::ALL.into_iter().filter(wanted) {
        let module = work.join(format!("{}.wasm", probe.key()));
        std::fs::write(&module, wat::parse_str(probe.wat()).with_context(|| probe.key())?)?;
        let ports = Ports { listener: testbed::free_port()?, admin: testbed::free_port()?, ..Ports::DEFAULT };
        let yaml = demo::replace_once(
            &demo::render_ports(&template, ports, &module)?,
            "filename: target/bench/envoy/empty-filter.wasm",
            &format!("filename: {}", module.display()),
        )?;
        let before = children();
        let envoy = Envoy::start(&envoy_bin, &yaml, ports.admin, &work.join(probe.key()))
            .with_context(|| format!("starting Envoy with {}", probe.key()))?;
        let pid = children().difference(&before).next().copied().context("Envoy's pid")?;
        let r = testbed::http_request(ports.listener, "GET", PATH, &[("authorization", &token)], b"")?;
        ensure!(r.status == 200, "{}: answered {}", probe.key(), r.status);
        running.push(Running {
            probe,
            _envoy: envoy,
            port: ports.listener,
            pid,
            cpu_us_per_request: vec![],
            rps: vec![],
        });
    }
    pin(&load_cpus)?;

    let wrk = |port: u16, seconds: u64| -> Result<u64> {
        let args: Vec<String> = vec![
            "-t1".into(),
            "-c".into(),
            cli.connections.to_string(),
            "-d".into(),
            format!("{seconds}s"),
            "-H".into(),
            format!("Authorization: {token}"),
            format!("http://127.0.0.1:{port}{PATH}"),
        ];
        let (summary, _) = run_wrk(&args)?;
        ensure!(summary.non_2xx == 0, "{} answers other than 2xx", summary.non_2xx);
        Ok(summary.requests)
    };
    for r in &running {
        wrk(r.port, 1)?;
    }
    for round in 0..cli.rounds {
        for r in &mut running {
            let before = cpu_us(r.pid).context("Envoy's CPU time")?;
            let started = std::time::Instant::now();
            let n = wrk(r.port, cli.seconds)?;
            let spent = cpu_us(r.pid).context("Envoy's CPU time")? - before;
            r.cpu_us_per_request.push(spent / n as f64);
            r.rps.push(n as f64 / started.elapsed().as_secs_f64());
            eprintln!(
                "round {} {:>32}: {:>7.0} req/s, {:>5.2} µs of Envoy CPU per request",
                round + 1,
                r.probe.key(),
                n as f64 / started.elapsed().as_secs_f64(),
                spent / n as f64
            );
        }
    }

    let cpu = |p: Probe| running.iter().find(|r| r.probe == p).and_then(|r| median(r.cpu_us_per_request.clone()));
    let floor = cpu(Probe::Floor).context("no figure for the floor module")?;
    let mut probes = Map::new();
    for r in &running {
        let per_request = median(r.cpu_us_per_request.clone());
        let per_unit =
            per_request.filter(|_| r.probe != Probe::Floor).map(|c| (c - floor) / f64::from(r.probe.units()));
        probes.insert(
            r.probe.key().into(),
            json!({
                "cpu_us_per_request": per_request.map(|c| (c * 100.0).round() / 100.0),
                "rps": median(r.rps.clone()).map(f64::round),
                "units_per_request": r.probe.units(),
                "ns_per_unit": per_unit.map(|u| round1(u * 1000.0)),
                "rounds_cpu_us_per_request": r.cpu_us_per_request.iter().map(|c| (c * 100.0).round() / 100.0).collect::<Vec<_>>(),
            }),
        );
    }
    let report = json!({
        "what": format!("Envoy's CPU time per request (µs, /proc, median of {} rounds of {} s, wrk -t1 -c{}) with a \
                 module whose request-headers callback makes one proxy-wasm host call {REPEAT} times; ns_per_unit = \
                 (that - floor) / units: the price of one call (one callback for all_sdk_callbacks, one Wasm \
                 instruction for wasm_instructions). See bench/src/hostcalls.rs.", cli.rounds, cli.seconds, cli.connections),
        "floor_cpu_us_per_request": (floor * 100.0).round() / 100.0,
        "probes": probes,
        "machine": machine_info,
        "scheduling": if realtime { "SCHED_FIFO 10" } else { "normal" },
        "envoy_cpus": envoy_cpus,
        "load_cpus": load_cpus,
        "wrk": wrk_version(),
    });
    let out_dir = cli.out_dir.unwrap_or_else(|| root.join("target/bench"));
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join("envoy-hostcalls.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("| call | µs of Envoy CPU per request | ns per call |\n|---|---:|---:|");
    for r in &running {
        let v: &Value = &report["probes"][r.probe.key()];
        println!(
            "| {} | {} | {} |",
            r.probe.key(),
            v["cpu_us_per_request"],
            v["ns_per_unit"].as_f64().map_or("–".into(), |x| format!("{x:.1}"))
        );
    }
    println!("wrote {}", path.display());
    Ok(())
}
