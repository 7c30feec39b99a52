//! The plugin's bench exports in plain wasmtime (WASI stubbed by [`crate::wasi`]), and what the benchmarks
//! built on a pair of them named by a prefix share: `{prefix}_load(ptr, len) -> i32` (0 once loaded) and
//! `{prefix}_run(phase, iterations) -> u32` (plugin/src/bench_exports.rs). Shared by `agent-iam-mcp-bench`
//! (`agent_iam_bench_mcp`), `agent-iam-audit-bench` (`agent_iam_bench_audit`), `agent-iam-revocation-bench`
//! (`agent_iam_bench_revocation`), `agent-iam-limits-bench` (`agent_iam_bench_limits`) and `agent-iam-dpop-bench`
//! (`agent_iam_bench_dpop`): their options, an instance with the load document in it, each phase sampled
//! natively and in the `.wasm` alternately, wasm instructions from fuel, and the report's phases, figures and
//! targets. `agent-iam-policy-bench` (whose
//! exports take no phase) compiles its module and writes its document with [`compile`] and [`put_document`].

use crate::measure::{Harness, Stats, machine};
use anyhow::{Context, Result, anyhow, ensure};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, TypedFunc};

/// The plugin `.wasm` with the bench exports, as `make bench` builds it, in the workspace.
pub const DEFAULT_WASM: &str = "target/bench-wasm/wasm32-wasip1/release/agent_iam.wasm";

/// Fuel a metered instance starts with: more than any run uses.
const FUEL: u64 = u64::MAX / 2;

fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// The options both benchmarks take. `--out`'s default is each benchmark's own: its help says so through
/// `#[command(mut_arg("out", ...))]`.
#[derive(clap::Args)]
pub struct Options {
    /// The plugin .wasm built with `bench-exports` [default:
    /// target/bench-wasm/wasm32-wasip1/release/agent_iam.wasm in the workspace].
    #[arg(long, value_name = "PATH", conflicts_with = "no_wasm")]
    pub wasm: Option<PathBuf>,
    /// Native figures only.
    #[arg(long = "no-wasm")]
    pub no_wasm: bool,
    /// Short run (fewer, shorter samples), for smoke tests.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON report [default: target/bench/NAME.json in the workspace].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

impl Options {
    /// Where to write the report: `--out`, or `target/bench/{name}.json` in the workspace.
    pub fn out(&self, name: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| agent_iam_host::workspace_root().join(format!("target/bench/{name}.json")))
    }

    /// The `.wasm` to run, unless `--no-wasm`.
    pub fn wasm_path(&self) -> Option<PathBuf> {
        (!self.no_wasm)
            .then(|| self.wasm.clone().unwrap_or_else(|| agent_iam_host::workspace_root().join(DEFAULT_WASM)))
    }

    /// How long each figure is sampled.
    pub fn harness(&self) -> Harness {
        if self.quick {
            Harness { warmup: Duration::from_millis(30), sample: Duration::from_millis(3), samples: 11 }
        } else {
            Harness { warmup: Duration::from_millis(300), sample: Duration::from_millis(20), samples: 31 }
        }
    }
}

/// The module at `path` compiled for `engine`, checked to have `run_export` (which only a build with the
/// plugin's `bench-exports` feature has).
pub fn compile(engine: &Engine, path: &Path, run_export: &str) -> Result<Module> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let module = Module::new(engine, &bytes).map_err(|e| anyhow!("compiling the .wasm: {e}"))?;
    ensure!(
        module.get_export(run_export).is_some(),
        "{} has no {run_export}: build it with --features bench-exports",
        path.display()
    );
    Ok(module)
}

/// `document` written into a buffer the module's `proxy_on_memory_allocate` gives (a load export takes it
/// over and frees it): the buffer's address and length, for the load export.
pub fn put_document(instance: &Instance, store: &mut Store<()>, memory: Memory, document: &[u8]) -> Result<(u32, u32)> {
    let alloc = instance.get_typed_func::<u32, u32>(&mut *store, "proxy_on_memory_allocate").map_err(wasm_error)?;
    let len = u32::try_from(document.len()).context("document too large")?;
    let ptr = alloc.call(&mut *store, len).map_err(wasm_error)?;
    memory.write(&mut *store, ptr as usize, document).map_err(|err| anyhow!("writing the document: {err}"))?;
    Ok((ptr, len))
}

/// An instance of the module with a document loaded by `{prefix}_load`, run by `{prefix}_run`.
pub struct ExportsInstance {
    store: Store<()>,
    run: TypedFunc<(u32, u32), u32>,
    prefix: &'static str,
    metered: bool,
}

impl ExportsInstance {
    /// An instance of the module at `path` with `document` loaded by `{prefix}_load`, its clock at `now`
    /// (seconds since the epoch); `metered`: it counts instructions.
    pub fn new(path: &Path, prefix: &'static str, document: &[u8], now: i64, metered: bool) -> Result<ExportsInstance> {
        // The host's engine configuration (`Engine::default()`: cranelift, optimised for speed), with fuel
        // when metered (what `Host::metered_from_file` adds).
        let mut config = Config::new();
        config.consume_fuel(metered);
        let engine = Engine::new(&config).map_err(wasm_error)?;
        let run_export = format!("{prefix}_run");
        let module = compile(&engine, path, &run_export)?;
        let linker = crate::wasi::linker(&engine, &module, now)?;
        let mut store = Store::new(&engine, ());
        if metered {
            store.set_fuel(FUEL).map_err(wasm_error)?;
        }
        let (instance, memory) = crate::wasi::start(&linker, &mut store, &module)?;
        let load =
            instance.get_typed_func::<(u32, u32), i32>(&mut store, &format!("{prefix}_load")).map_err(wasm_error)?;
        let run = instance.get_typed_func::<(u32, u32), u32>(&mut store, &run_export).map_err(wasm_error)?;
        let (ptr, len) = put_document(&instance, &mut store, memory, document)?;
        let loaded = load.call(&mut store, (ptr, len)).map_err(wasm_error)?;
        ensure!(loaded == 0, "{prefix}_load failed with {loaded} (see plugin/src/bench_exports.rs)");
        Ok(ExportsInstance { store, run, prefix, metered })
    }

    /// `{prefix}_run(phase, iterations)`: its answer.
    pub fn run(&mut self, phase: u32, iterations: u32) -> Result<u32> {
        self.run.call(&mut self.store, (phase, iterations)).map_err(|e| anyhow!("{}_run trapped: {e}", self.prefix))
    }

    /// Wasm instructions per operation of `phase`, over `n` operations after one discarded.
    pub fn instructions(&mut self, phase: u32, n: u32) -> Result<f64> {
        ensure!(self.metered, "not a metered instance");
        self.run(phase, 1)?;
        let before = self.store.get_fuel().map_err(wasm_error)?;
        self.run(phase, n)?;
        let after = self.store.get_fuel().map_err(wasm_error)?;
        Ok((before - after) as f64 / f64::from(n))
    }
}

/// The `.wasm` side of a benchmark: an instance to time and a metered one to count instructions, the same
/// document loaded in each (fuel slows the code it meters, so the timed instance has none).
pub struct Wasm {
    pub timed: ExportsInstance,
    pub metered: ExportsInstance,
}

impl Wasm {
    /// Both instances of the module at `path`; see [`ExportsInstance::new`].
    pub fn new(path: &Path, prefix: &'static str, document: &[u8], now: i64) -> Result<Wasm> {
        Ok(Wasm {
            timed: ExportsInstance::new(path, prefix, document, now, false)?,
            metered: ExportsInstance::new(path, prefix, document, now, true)?,
        })
    }
}

/// A phase as a benchmark numbers, names and describes it (its `PHASES`).
pub type Phase = (u32, &'static str, &'static str);

/// How a phase runs in the `.wasm`.
#[derive(Debug, Clone, Copy)]
pub struct Calls {
    /// Operations per timed call, so that the call into wasmtime is spread thin.
    pub per_call: u32,
    /// Operations the instruction count averages over.
    pub metered: u32,
}

/// The phases' figures as a benchmark reports them, each printed as it comes: the distributions under
/// `phases`, and under `figures` the medians (ns to a tenth) and instruction counts as `{phase}_ns_native`,
/// `{phase}_ns_wasm` and `{phase}_instructions`.
pub struct Phases {
    harness: Harness,
    /// What one operation is, in the report's words ("operation", "event").
    unit: &'static str,
    /// The printed columns' widths: the phase's name, then each figure.
    name_width: usize,
    width: usize,
    phases: Map<String, Value>,
    figures: Map<String, Value>,
}

impl Phases {
    pub fn new(harness: Harness, unit: &'static str, name_width: usize, width: usize) -> Phases {
        Phases { harness, unit, name_width, width, phases: Map::new(), figures: Map::new() }
    }

    /// Measures `phase`: `native` (one operation) and, with `wasm`, `{prefix}_run(phase, calls.per_call)`
    /// timed in alternating samples, so that a change in the machine's load hits both (the `.wasm`'s figures
    /// per operation), then its instructions per operation counted by the metered instance. An answer of the
    /// `.wasm`'s that fails `answer_ok` while timing is the error `mismatch`.
    pub fn measure(
        &mut self,
        phase: Phase,
        native: impl FnMut(),
        mut wasm: Option<&mut Wasm>,
        calls: Calls,
        answer_ok: impl Fn(u32) -> bool,
        mismatch: &str,
    ) -> Result<()> {
        let (number, name, what) = phase;
        let (n, w) = match wasm.as_deref_mut() {
            Some(wm) => {
                let mut failed = false;
                let (n, w) = self.harness.pair(native, || {
                    failed |= wm.timed.run(number, calls.per_call).map_or(true, |got| !answer_ok(got))
                });
                ensure!(!failed, "{name}: {mismatch}");
                let per = f64::from(calls.per_call);
                (n, Some(Stats { median: w.median / per, p10: w.p10 / per, p90: w.p90 / per, ..w }))
            }
            None => (self.harness.time(native), None),
        };
        let instructions = match wasm {
            Some(wm) => Some(wm.metered.instructions(number, calls.metered)?.round()),
            None => None,
        };
        self.record(name, what, n, w, instructions);
        Ok(())
    }

    /// The figures of phase `name` (which measures `what`): printed, and kept for the report.
    fn record(&mut self, name: &str, what: &str, native: Stats, wasm: Option<Stats>, instructions: Option<f64>) {
        let (name_width, width, unit) = (self.name_width, self.width, self.unit);
        println!(
            "{name:<name_width$} native {:>width$.0} ns   wasm {:>width$} ns   {:>width$} instructions",
            native.median,
            wasm.map_or("–".into(), |w| format!("{:.0}", w.median)),
            instructions.map_or("–".into(), |i| format!("{i:.0}")),
        );
        self.phases.insert(
            name.into(),
            json!({
                "what": what,
                "native": native.json(&format!("ns per {unit}, natively")),
                "wasm": wasm.map(|w| w.json(&format!("ns per {unit} inside the .wasm in wasmtime"))),
                "wasm_instructions": instructions,
            }),
        );
        let tenth = |x: f64| (x * 10.0).round() / 10.0;
        self.figures.insert(format!("{name}_ns_native"), tenth(native.median).into());
        self.figures.insert(format!("{name}_ns_wasm"), wasm.map(|w| tenth(w.median)).into());
        self.figures.insert(format!("{name}_instructions"), instructions.into());
    }

    /// A figure, if measured.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.get(key).and_then(Value::as_f64)
    }

    /// `phases` and `figures` put into `report`.
    pub fn report(self, report: &mut Map<String, Value>) {
        report.insert("figures".into(), self.figures.into());
        report.insert("phases".into(), self.phases.into());
    }
}

/// A target for the report: `value` (when measured) against `limit`, met when not above it.
pub fn target(name: &str, value: Option<f64>, limit: f64) -> Value {
    json!({"target": name, "value": value, "limit": limit, "met": value.map(|v| v <= limit)})
}

/// `report` completed with the `.wasm` run (`wasm`), whether the run was `quick` and the machine; its
/// `targets` printed, and the whole written to `out`.
pub fn write_report(mut report: Map<String, Value>, wasm: Option<&Path>, quick: bool, out: &Path) -> Result<()> {
    report.insert("wasm".into(), wasm.map(|p| p.display().to_string()).into());
    report.insert("quick".into(), quick.into());
    report.insert("machine".into(), machine());
    for t in report["targets"].as_array().into_iter().flatten() {
        println!(
            "{}: {} ({})",
            t["target"].as_str().unwrap_or("?"),
            t["value"],
            match t["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "missed",
                None => "not measured",
            }
        );
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&Value::Object(report))? + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}
