//! `agent-iam-envoy-bench` (`make bench-envoy`): agent-iam beside Envoy's own `jwt_authn` + `rbac`, in real
//! Envoy, for the same checks (configurations in `envoy/bench/`, explained in docs/migration.md):
//!
//! | key | configuration | tokens |
//! |---|---|---|
//! | A | router only (`a-router.yaml`) | one token (ignored) |
//! | B | `jwt_authn` without cache + `rbac` (`b-jwt-authn-rbac.yaml`) | one token |
//! | B1 (B') | `jwt_authn` with `jwt_cache_config` + `rbac` (`b1-jwt-authn-cached-rbac.yaml`) | one token |
//! | C | agent-iam, host crypto (`c-agent-iam.yaml`) | one token: a warm cache |
//! | C1 (C') | agent-iam, host crypto (`c-agent-iam.yaml`) | a new ES256 token every request |
//! | C2 (C'') | agent-iam, pure-Rust crypto (`c2-agent-iam-pure-rust.yaml`) | a new ES256 token every request |
//! | C3 | agent-iam with DPoP required (`c3-agent-iam-dpop.yaml`), host crypto | one token bound to the agent's key (a warm cache), a new ES256 DPoP proof every request |
//! | D | `jwt_authn` cached + agent-iam trusting its check (`d-jwt-authn-agent-iam.yaml`) | one token |
//! | E | an empty proxy-wasm filter (`e-empty-wasm.yaml`): the floor of any Wasm filter in Envoy | one token |
//! | F | agent-iam on an MCP endpoint (`f-agent-iam-mcp.yaml`): a ~2 KB 2026-07-28 `tools/call` POST, its body parsed and decided | one token: a warm cache |
//! | F0 | control for F (`f0-mcp-post-control.yaml`): F's POST, the plugin deciding on the headers alone (no `mcp` section: the body is neither held nor read by it), Envoy's `buffer` filter holding the request until its body ends (as F's held headers do) | one token: a warm cache |
//! | G | C with agent-iam's audit trail (`g-agent-iam-audit.yaml`): an OCSF event per decision, chained and checkpointed, written by Envoy's file access logger to a real file | one token: a warm cache |
//! | G0 | control for G (`g0-access-log-control.yaml`): C with Envoy's file access logger writing a fixed line of G's event's size per request, behind an always-true CEL filter, the plugin writing nothing | one token: a warm cache |
//! | H | C with a request limit per agent (counted in Envoy's shared data, never reached) and every anomaly signal on, recording (`h-agent-iam-limits.yaml`) | one token: a warm cache |
//!
//! Method: one Envoy per configuration (each `--concurrency 1`, a `direct_response` route, HTTP/1.1
//! keep-alive), all started at once and pinned to one core; the load generator and `wrk` on another. Keys are
//! generated at start, as the demo does; every configuration must answer 200 for the good token and 401/403
//! for bad ones before anything is timed (and G must have written an OCSF event line to its audit file, G0 its
//! control line to its access log; each file is emptied before each of its runs, untimed). After a discarded
//! warm-up the configurations are measured in turn (A B B' C C' C'' D E, then again) for `--rounds` rounds:
//! first the maximum throughput (closed loop, `wrk`, or the built-in generator if `wrk` is missing), then
//! latency at half of A's median throughput (open loop, [`agent_iam_bench::loadgen`]: latency from each
//! request's intended send time). Figures are medians over the rounds. Envoy's CPU time per request (from
//! `/proc`) is recorded beside every figure: it is what the configuration costs, and unlike throughput it hardly
//! moves when other work shares the machine. Token-cache counters are read from Envoy's `/stats` at the end.
//!
//! Writes `target/bench/envoy.json` and `target/bench/envoy.md`; targets are reported, never asserted.
//! Options: `--rounds N` (3), `--seconds S` (5), `--warmup S` (2), `--connections N` (16, closed loop),
//! `--open-connections N` (16), `--no-wrk`, `--no-perf`, `--no-realtime`, `--quick` (1 round of 1 s),
//! `--out-dir DIR` (`target/bench`).
//!
//! On a machine shared with other work (compilers on both cores), a preempted Envoy or load generator adds
//! milliseconds to any request in flight and halves throughput. Where allowed (root), Envoy and the load
//! generator therefore run under `SCHED_FIFO` (priority 10): other work gets the CPU they leave idle (and the
//! kernel's real-time throttling keeps 5 % for it in any case). The JSON records whether that applied.
//!
//! Where `perf` is installed, one more closed-loop run per configuration (not among the timed ones) samples
//! Envoy with `perf record -e cpu-clock`; the JSON gets the share of Envoy's CPU time per binary object
//! (`envoy` itself: HTTP, filters, BoringSSL, V8's runtime; `[unknown]`: code V8 generated, i.e. the
//! compiled `.wasm`; the kernel; libc) and the hottest symbols: what limits each path.

use agent_iam::mint::{ProofClaims, SigningKey};
use agent_iam_bench::envoy::{
    allowed_cpus, children, cpu_us, cpus_allowed, median, pin, round1, rss_kb, run_wrk, set_realtime, split_cpus,
    wrk_version,
};
use agent_iam_bench::loadgen::{self, Plan, Report};
use agent_iam_bench::mcp;
use agent_iam_bench::measure::{load_average, machine};
use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, Ports};
use agent_iam_tests::testbed::{self, Envoy};
use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One benchmark configuration.
struct Config {
    /// Key in the JSON (`rps_<key>`).
    key: &'static str,
    /// Name in the text.
    label: &'static str,
    /// Template in `envoy/bench/`.
    file: &'static str,
    /// What it does.
    what: &'static str,
    /// Whether it checks tokens (A does not).
    auth: bool,
    /// A new token every request (else one token again and again).
    fresh_tokens: bool,
    /// Whether agent-iam runs (its token-cache counters are read).
    plugin: bool,
    /// The load is an MCP `tools/call` POST to /mcp ([`agent_iam_bench::mcp`]), not a GET of [`PATH`], and what
    /// the plugin decides it on (which checks it must pass).
    mcp: Option<Mcp>,
    /// The file Envoy's file access logger writes a line per request to.
    access_log: Option<AccessLog>,
    /// The load is one DPoP-bound token with a new DPoP proof every request (`Authorization: DPoP`, `DPoP`).
    dpop: bool,
}

/// What the plugin decides an MCP configuration's `tools/call` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mcp {
    /// Its body, read and parsed (F): checked with allowed and refused calls ([`verify_mcp`]).
    Body,
    /// The headers alone (F0: no `mcp` section, a plain rule for `POST /mcp`): checked with the timed call, no
    /// token, a token for another audience and another agent.
    Headers,
}

/// An access log file in a configuration's work directory.
struct AccessLog {
    /// Its path in the template, replaced by a file of the same name in the configuration's work directory.
    template: &'static str,
    /// What its lines are (what is checked before timing).
    lines: LogLines,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogLines {
    /// The plugin's OCSF audit events (G).
    Audit,
    /// Envoy's own fixed line of the size of G's event (G0), its `metadata.log_name` this.
    Control(&'static str),
}

/// G's audit file in its template (`envoy/bench/g-agent-iam-audit.yaml`).
const AUDIT_LOG: AccessLog = AccessLog { template: "target/bench/envoy/G/audit.ndjson", lines: LogLines::Audit };
/// G0's access log in its template (`envoy/bench/g0-access-log-control.yaml`).
const CONTROL_LOG: AccessLog =
    AccessLog { template: "target/bench/envoy/G0/access.ndjson", lines: LogLines::Control("g0-control-line") };

const CONFIGS: [Config; 14] = [
    Config {
        key: "A",
        label: "A",
        file: "a-router.yaml",
        what: "router only",
        auth: false,
        fresh_tokens: false,
        plugin: false,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "B",
        label: "B",
        file: "b-jwt-authn-rbac.yaml",
        what: "jwt_authn (no cache) + rbac",
        auth: true,
        fresh_tokens: false,
        plugin: false,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "B1",
        label: "B'",
        file: "b1-jwt-authn-cached-rbac.yaml",
        what: "jwt_authn (jwt_cache_config) + rbac",
        auth: true,
        fresh_tokens: false,
        plugin: false,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "C",
        label: "C",
        file: "c-agent-iam.yaml",
        what: "agent-iam, warm token cache",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "C1",
        label: "C'",
        file: "c-agent-iam.yaml",
        what: "agent-iam, new ES256 token every request, host crypto",
        auth: true,
        fresh_tokens: true,
        plugin: true,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "C2",
        label: "C''",
        file: "c2-agent-iam-pure-rust.yaml",
        what: "agent-iam, new ES256 token every request, pure-Rust crypto",
        auth: true,
        fresh_tokens: true,
        plugin: true,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "C3",
        label: "C3",
        file: "c3-agent-iam-dpop.yaml",
        what: "agent-iam, DPoP required: one bound token (warm cache), a new ES256 proof every request, host crypto",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: None,
        access_log: None,
        dpop: true,
    },
    Config {
        key: "D",
        label: "D",
        file: "d-jwt-authn-agent-iam.yaml",
        what: "jwt_authn (cached) + agent-iam policy only",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "E",
        label: "E",
        file: "e-empty-wasm.yaml",
        what: "an empty proxy-wasm filter (Envoy's Wasm floor)",
        auth: false,
        fresh_tokens: false,
        plugin: false,
        mcp: None,
        access_log: None,
        dpop: false,
    },
    Config {
        key: "F",
        label: "F",
        file: mcp::F_CONFIG,
        what: "agent-iam on an MCP endpoint: a ~2 KB tools/call POST decided on its body, warm token cache",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: Some(Mcp::Body),
        access_log: None,
        dpop: false,
    },
    Config {
        key: "F0",
        label: "F0",
        file: "f0-mcp-post-control.yaml",
        what: "control for F: F's POST (same body, headers, token), the plugin deciding on the headers alone (no \
               mcp section: the body neither held nor read by it), Envoy's buffer filter holding the request \
               until its body ends, warm token cache",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: Some(Mcp::Headers),
        access_log: None,
        dpop: false,
    },
    Config {
        key: "G",
        label: "G",
        file: "g-agent-iam-audit.yaml",
        what: "agent-iam, warm token cache, with its audit trail: an OCSF event per request, chained, checkpointed \
               every 100 events, written to a file by Envoy's file access logger",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: None,
        access_log: Some(AUDIT_LOG),
        dpop: false,
    },
    Config {
        key: "G0",
        label: "G0",
        file: "g0-access-log-control.yaml",
        what: "control for G: C, and Envoy's file access logger writing a line of G's event's size (a fixed text, \
               not the plugin's) per request, behind an always-true CEL filter",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: None,
        access_log: Some(CONTROL_LOG),
        dpop: false,
    },
    Config {
        key: "H",
        label: "H",
        file: "h-agent-iam-limits.yaml",
        what: "agent-iam, warm token cache, with a limit per agent (GCRA in Envoy's shared data, never reached) and \
               every anomaly signal on (record)",
        auth: true,
        fresh_tokens: false,
        plugin: true,
        mcp: None,
        access_log: None,
        dpop: false,
    },
];

/// The request every configuration allows for the trading agent.
const PATH: &str = "/quotes/ACME";
/// The external origin C3's proofs name in `htu` (`dpop.origin` in envoy/bench/c3-agent-iam-dpop.yaml).
const DPOP_ORIGIN: &str = "https://api.trading.example";

struct Options {
    rounds: usize,
    seconds: u64,
    warmup: u64,
    connections: usize,
    open_connections: usize,
    use_wrk: bool,
    perf: bool,
    realtime: bool,
    only: Vec<String>,
    memory_tokens: usize,
    open: bool,
    wasm: Option<PathBuf>,
    out_dir: PathBuf,
}

/// In real Envoy, agent-iam beside Envoy's own jwt_authn + rbac: throughput (closed loop) and latency at a
/// fixed rate (open loop); writes target/bench/envoy.json and envoy.md.
#[derive(Parser)]
#[command(name = "agent-iam-envoy-bench", version)]
struct Cli {
    /// Measured rounds; figures are medians over the rounds [default: 3, 1 with --quick].
    #[arg(long, value_name = "N", value_parser = positive)]
    rounds: Option<usize>,
    /// Seconds per measured run [default: 5, 1 with --quick].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Seconds of the discarded warm-up per configuration [default: 2, 1 with --quick].
    #[arg(long, value_name = "S")]
    warmup: Option<u64>,
    /// Connections of the closed-loop runs (wrk, or the built-in generator).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = positive)]
    connections: usize,
    /// Connections of the open-loop (fixed rate) runs.
    #[arg(long = "open-connections", value_name = "N", default_value_t = 16, value_parser = positive)]
    open_connections: usize,
    /// Closed loop by the built-in generator even if wrk is installed.
    #[arg(long = "no-wrk")]
    no_wrk: bool,
    /// No `perf record` profile of Envoy, even if perf is installed.
    #[arg(long = "no-perf")]
    no_perf: bool,
    /// Do not run Envoy and the load generator under SCHED_FIFO, even where allowed.
    #[arg(long = "no-realtime")]
    no_realtime: bool,
    /// Only these configurations (comma-separated keys: A,B,B1,C,C1,C2,C3,D,E,F,F0,G,G0,H); A is always run, as
    /// the reference.
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    only: Vec<String>,
    /// Distinct tokens sent to C for the memory figures (RSS and the Wasm VM's memory after 4,096 and after
    /// this many); 0 skips them [default: 1000000, 20000 with --quick].
    #[arg(long = "memory-tokens", value_name = "N")]
    memory_tokens: Option<usize>,
    /// No open-loop (latency) runs.
    #[arg(long = "no-open")]
    no_open: bool,
    /// The plugin to measure instead of target/wasm32-wasip1/release/agent_iam.wasm (to compare two builds).
    #[arg(long, value_name = "PATH")]
    wasm: Option<PathBuf>,
    /// Short run: 1 round of 1 s after a 1 s warm-up; --rounds, --seconds and --warmup override it.
    #[arg(long)]
    quick: bool,
    /// Directory for envoy.json and envoy.md [default: target/bench in the workspace].
    #[arg(long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// A count of at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be positive".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Options {
    fn from_cli(cli: Cli) -> Options {
        let (rounds, seconds, warmup) = if cli.quick { (1, 1, 1) } else { (3, 5, 2) };
        Options {
            rounds: cli.rounds.unwrap_or(rounds),
            seconds: cli.seconds.unwrap_or(seconds),
            warmup: cli.warmup.unwrap_or(warmup),
            connections: cli.connections,
            open_connections: cli.open_connections,
            use_wrk: !cli.no_wrk,
            perf: !cli.no_perf,
            realtime: !cli.no_realtime,
            only: cli.only,
            memory_tokens: cli.memory_tokens.unwrap_or(if cli.quick { 20_000 } else { 1_000_000 }),
            open: !cli.no_open,
            wasm: cli.wasm,
            out_dir: cli.out_dir.unwrap_or_else(|| agent_iam_host::workspace_root().join("target/bench")),
        }
    }
}

fn main() {
    let opts = Options::from_cli(Cli::parse());
    if let Err(e) = run(opts) {
        eprintln!("agent-iam-envoy-bench: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Pinning and process accounting
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// Mints the trading agent's ES256 tokens, each with its own `jti`, so no two are alike; and for C3 its DPoP
/// proofs, each with its own `jti` too.
struct Minter<'a> {
    key: &'a SigningKey,
    next: u64,
    now: i64,
    /// CPUs the minting threads may use (all: minting happens between timed runs).
    cpus: Vec<usize>,
    /// C3: the agent's DPoP key and the token bound to it (`cnf.jkt`).
    holder: &'a SigningKey,
    bound: &'a str,
}

impl<'a> Minter<'a> {
    fn claims(&self, n: u64) -> Value {
        json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::TRADER, "iat": self.now,
               "exp": self.now + 7200, "jti": format!("bench-{n}")})
    }

    /// What a run of `seconds` at up to `rps` sends: fresh tokens when the configuration needs them, fresh
    /// proofs for the bound token for a DPoP configuration, the MCP call under the one token `mcp` for an MCP
    /// configuration, else the one token `fixed`.
    fn load<'t>(&mut self, config: &Config, rps: f64, seconds: u64, fixed: &'t str, mcp: &'t str) -> Result<Load<'t>>
    where
        'a: 't,
    {
        Ok(if config.mcp.is_some() {
            Load::Mcp(mcp)
        } else if config.dpop {
            Load::Dpop(self.bound, self.proofs(tokens_for(rps, seconds), PATH)?)
        } else if config.fresh_tokens {
            Load::Fresh(self.fresh(tokens_for(rps, seconds))?)
        } else {
            Load::Fixed(fixed)
        })
    }

    /// `n` new tokens, on every CPU.
    fn fresh(&mut self, n: usize) -> Result<Vec<String>> {
        self.parallel(n, |m, i| m.key.sign_jwt(Some(demo::ES256_KID), &m.claims(i)))
    }

    /// `n` new DPoP proofs of the bound token for `GET path`, issued now, on every CPU.
    fn proofs(&mut self, n: usize, path: &str) -> Result<Vec<String>> {
        let htu = format!("{DPOP_ORIGIN}{path}");
        let iat = demo::now();
        self.parallel(n, |m, i| {
            m.holder.dpop_proof(&ProofClaims {
                jti: &format!("bench-proof-{i}"),
                htm: "GET",
                htu: &htu,
                iat,
                token: Some(m.bound),
                nonce: None,
            })
        })
    }

    /// `n` strings made by `make` (numbered on from the last), on every CPU.
    fn parallel(&mut self, n: usize, make: impl Fn(&Self, u64) -> String + Sync) -> Result<Vec<String>> {
        let first = self.next;
        self.next += n as u64;
        let threads = self.cpus.len().max(1);
        let per = n.div_ceil(threads);
        let this = &*self;
        let make = &make;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || -> Result<Vec<String>> {
                        pin(&this.cpus)?;
                        // Minting is not measured: it must not crowd out the machine's other work.
                        set_realtime(None)?;
                        let from = first + (t * per) as u64;
                        let to = (first + ((t + 1) * per) as u64).min(first + n as u64);
                        Ok((from..to).map(|i| make(this, i)).collect())
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(n);
            for h in handles {
                out.extend(h.join().map_err(|_| anyhow::anyhow!("a minting thread panicked"))??);
            }
            Ok(out)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

/// What one timed run of one configuration measured.
#[derive(Debug, Clone)]
struct Run {
    rps: f64,
    completed: u64,
    non_2xx: u64,
    /// Envoy's CPU time per completed request.
    cpu_us_per_request: Option<f64>,
    /// Envoy's CPU time over the wall time of the run (1.0: one core busy the whole time).
    envoy_cpu_share: Option<f64>,
    latency: Option<Latency>,
    /// Fresh tokens or proofs only: some token or proof was sent twice (the list ran out).
    tokens_reused: bool,
    /// A configuration with an audit file: bytes written to it per completed request during the run.
    audit_bytes_per_request: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    incomplete: u64,
    target_rate: f64,
}

impl Run {
    fn json(&self) -> Value {
        let mut out = json!({
            "rps": self.rps.round(),
            "completed": self.completed,
            "non_2xx": self.non_2xx,
            "cpu_us_per_request": self.cpu_us_per_request.map(round1),
            "envoy_cpu_share": self.envoy_cpu_share.map(|s| (s * 100.0).round() / 100.0),
        });
        if let Some(l) = self.latency {
            out["p50_us"] = round1(l.p50).into();
            out["p99_us"] = round1(l.p99).into();
            out["p999_us"] = round1(l.p999).into();
            out["max_us"] = round1(l.max).into();
            out["incomplete"] = l.incomplete.into();
            out["target_rate"] = l.target_rate.round().into();
        }
        if self.tokens_reused {
            out["tokens_reused"] = true.into();
        }
        if let Some(b) = self.audit_bytes_per_request {
            out["audit_bytes_per_request"] = round1(b).into();
        }
        out
    }
}

/// The requests of a run: the same one again and again, or one per fresh token (or proof).
enum Load<'a> {
    Fixed(&'a str),
    Fresh(Vec<String>),
    /// One DPoP-bound token (`Authorization: DPoP`) and a fresh proof per request (`DPoP`).
    Dpop(&'a str, Vec<String>),
    /// The MCP `tools/call` ([`mcp::allowed_call`]) under this token, again and again.
    Mcp(&'a str),
}

/// A running configuration.
struct Gateway {
    config: &'static Config,
    envoy: Envoy,
    port: u16,
    pid: Option<u32>,
    closed: Vec<Run>,
    open: Vec<Run>,
    /// Runs that went wrong (non-2xx answers, reused tokens): the figure is still reported, with this.
    warnings: Vec<String>,
    /// The file Envoy's access logger writes to: the plugin's audit events (G), Envoy's control line (G0).
    audit_file: Option<PathBuf>,
}

impl Gateway {
    fn cpu(&self) -> Option<f64> {
        self.pid.and_then(cpu_us)
    }

    /// Empties the audit file before a run (untimed), so that the disk does not fill over the benchmark. Envoy
    /// appends (`O_APPEND`): its next write lands at the new end. A failure is printed, not fatal.
    fn audit_reset(&self) {
        let Some(path) = &self.audit_file else { return };
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(0)) {
            eprintln!("{}: emptying {}: {e}", self.config.label, path.display());
        }
    }

    /// After a run (untimed): has Envoy write out what it buffered (`POST /reopen_logs`) and records the audit
    /// file's size per completed request of the run. A failure is printed, not fatal (the figure stays empty).
    fn audit_written(&self, run: &mut Run) {
        let Some(path) = &self.audit_file else { return };
        let bytes = flush_access_logs(self.envoy.admin_port())
            .and_then(|()| Ok(std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len()));
        match bytes {
            Ok(bytes) if run.completed > 0 => run.audit_bytes_per_request = Some(bytes as f64 / run.completed as f64),
            Ok(_) => {}
            Err(e) => eprintln!("{}: the audit file after a run: {e:#}", self.config.label),
        }
    }

    /// Envoy's CPU over a run and per request.
    fn account(&self, before: Option<f64>, wall: Duration, completed: u64) -> (Option<f64>, Option<f64>) {
        match (before, self.cpu()) {
            (Some(b), Some(a)) if completed > 0 => {
                (Some((a - b) / completed as f64), Some((a - b) / 1e6 / wall.as_secs_f64()))
            }
            _ => (None, None),
        }
    }
}

/// The MCP load's request: the timed `tools/call` with its 2026-07-28 headers.
fn mcp_request(token: &str) -> Vec<u8> {
    mcp::raw_request(token, &mcp::allowed_call(), "tools/call", Some(mcp::TOOL))
}

fn requests(load: &Load) -> Vec<Vec<u8>> {
    match load {
        Load::Fixed(token) => vec![loadgen::get_request(PATH, &[("authorization", &format!("Bearer {token}"))])],
        Load::Fresh(tokens) => {
            tokens.iter().map(|t| loadgen::get_request(PATH, &[("authorization", &format!("Bearer {t}"))])).collect()
        }
        Load::Dpop(token, proofs) => {
            let authorization = format!("DPoP {token}");
            proofs
                .iter()
                .map(|p| loadgen::get_request(PATH, &[("authorization", &authorization), ("dpop", p)]))
                .collect()
        }
        Load::Mcp(token) => vec![mcp_request(token)],
    }
}

impl Load<'_> {
    /// Whether each request must be new (fresh tokens or proofs): sending one twice is a reuse.
    fn fresh(&self) -> bool {
        matches!(self, Load::Fresh(_) | Load::Dpop(..))
    }
}

/// Maximum throughput: `wrk` (one thread) if present, else the built-in closed loop.
fn closed_run(gw: &Gateway, opts: &Options, wrk: bool, seconds: u64, load: &Load, work: &Path) -> Result<Run> {
    let before = gw.cpu();
    let started = Instant::now();
    let (completed, secs, non_2xx, reused) = if wrk {
        let path = if matches!(load, Load::Mcp(_)) { mcp::PATH } else { PATH };
        let url = format!("http://127.0.0.1:{}{path}", gw.port);
        let mut args: Vec<String> =
            ["-t1", "-c", &opts.connections.to_string(), "-d", &format!("{seconds}s"), "--timeout", "10s"]
                .map(String::from)
                .into();
        let tokens = match load {
            Load::Fixed(token) => {
                args.extend(["-H".into(), format!("Authorization: Bearer {token}"), url]);
                0
            }
            Load::Fresh(tokens) => {
                let file = work.join(format!("tokens-{}.txt", gw.config.key));
                std::fs::write(&file, tokens.join("\n")).with_context(|| format!("writing {}", file.display()))?;
                let script = agent_iam_host::workspace_root().join("envoy/bench/tokens.lua");
                args.extend(["-s".into(), script.display().to_string(), url, "--".into(), file.display().to_string()]);
                tokens.len()
            }
            Load::Dpop(token, proofs) => {
                let file = work.join(format!("proofs-{}.txt", gw.config.key));
                std::fs::write(&file, proofs.join("\n")).with_context(|| format!("writing {}", file.display()))?;
                let script = agent_iam_host::workspace_root().join("envoy/bench/dpop.lua");
                args.extend([
                    "-s".into(),
                    script.display().to_string(),
                    url,
                    "--".into(),
                    file.display().to_string(),
                    (*token).to_owned(),
                ]);
                proofs.len()
            }
            Load::Mcp(token) => {
                // wrk sends the request of the file as it is (envoy/bench/mcp.lua).
                let file = work.join(format!("request-{}.http", gw.config.key));
                std::fs::write(&file, mcp_request(token)).with_context(|| format!("writing {}", file.display()))?;
                let script = agent_iam_host::workspace_root().join("envoy/bench/mcp.lua");
                args.extend(["-s".into(), script.display().to_string(), url, "--".into(), file.display().to_string()]);
                0
            }
        };
        let (summary, text) = run_wrk(&args)?;
        let wraps = text
            .lines()
            .any(|l| (l.starts_with("token file wraps:") || l.starts_with("proof file wraps:")) && !l.ends_with(" 0"));
        (summary.requests, summary.seconds, summary.non_2xx, tokens > 0 && wraps)
    } else {
        let requests = requests(load);
        let plan =
            Plan { port: gw.port, connections: opts.connections, rate: None, duration: secs(seconds), limit: None };
        let report = loadgen::run(&plan, &requests)?;
        let reused = load.fresh() && report.sent > requests.len() as u64;
        (report.completed, report.elapsed.as_secs_f64(), report.completed - report.ok(), reused)
    };
    let (cpu_us_per_request, envoy_cpu_share) = gw.account(before, started.elapsed(), completed);
    Ok(Run {
        rps: completed as f64 / secs,
        completed,
        non_2xx,
        cpu_us_per_request,
        envoy_cpu_share,
        latency: None,
        tokens_reused: reused,
        audit_bytes_per_request: None,
    })
}

/// Latency at a fixed rate (open loop).
fn open_run(gw: &Gateway, opts: &Options, rate: f64, seconds: u64, load: &Load) -> Result<Run> {
    let requests = requests(load);
    let plan = Plan {
        port: gw.port,
        connections: opts.open_connections,
        rate: Some(rate),
        duration: secs(seconds),
        limit: None,
    };
    let before = gw.cpu();
    let started = Instant::now();
    let report: Report = loadgen::run(&plan, &requests)?;
    let (cpu_us_per_request, envoy_cpu_share) = gw.account(before, started.elapsed(), report.completed);
    Ok(Run {
        rps: report.rps(),
        completed: report.completed,
        non_2xx: report.completed - report.ok(),
        cpu_us_per_request,
        envoy_cpu_share,
        latency: Some(Latency {
            p50: report.percentile_us(0.5),
            p99: report.percentile_us(0.99),
            p999: report.percentile_us(0.999),
            max: report.percentile_us(1.0),
            incomplete: report.incomplete,
            target_rate: rate,
        }),
        tokens_reused: load.fresh() && report.sent > requests.len() as u64,
        audit_bytes_per_request: None,
    })
}

/// Samples Envoy with `perf record` during one closed-loop run: CPU share by binary object and the hottest
/// symbols (Envoy's binary is stripped: its own symbols show as addresses).
fn profile(gw: &Gateway, opts: &Options, wrk: bool, seconds: u64, load: &Load, work: &Path) -> Result<Value> {
    let pid = gw.pid.context("Envoy's pid is unknown")?;
    let data = work.join(gw.config.key).join("perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "2000", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &(seconds + 1).to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting perf record")?;
    std::thread::sleep(Duration::from_millis(300));
    let run = closed_run(gw, opts, wrk, seconds, load, work);
    let status = perf.wait().context("waiting for perf record")?;
    let run = run?;
    ensure!(status.success(), "perf record failed ({status})");
    let report = |sort: &str| -> Result<Vec<(String, f64)>> {
        let out = Command::new("perf")
            .args(["report", "--stdio", "--quiet", "--sort", sort, "-i"])
            .arg(&data)
            .output()
            .context("running perf report")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (pct, rest) = l.trim().split_once('%')?;
                Some((rest.split_whitespace().collect::<Vec<_>>().join(" "), pct.trim().parse::<f64>().ok()?))
            })
            .collect())
    };
    let by_object: Map<String, Value> =
        report("dso")?.into_iter().filter(|(_, p)| *p >= 0.5).map(|(d, p)| (d, round1(p).into())).collect();
    let symbols: Vec<Value> =
        report("dso,sym")?.into_iter().take(12).map(|(s, p)| json!({"percent": round1(p), "symbol": s})).collect();
    Ok(json!({"rps_while_sampled": run.rps.round(), "cpu_us_per_request": run.cpu_us_per_request.map(round1),
              "percent_by_object": by_object, "top_symbols": symbols}))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------------------------------------
// Set-up and checks
// ---------------------------------------------------------------------------------------------

/// The MCP configuration's tokens: the trading agent's and the research agent's for the endpoint's resource.
struct McpTokens {
    trader: String,
    research: String,
}

/// An MCP configuration must decide right before it is timed: 200 from the `direct_response` for the timed
/// call; 403 for another agent; 401 for no token or a token for another audience. One deciding on the body
/// (F) must also refuse, on the body, another account, too large an amount and a denied tool (403) and a
/// `Mcp-Name` that disagrees with the body (400).
fn verify_mcp(port: u16, config: &Config, on: Mcp, tokens: &McpTokens, api_token: &str) -> Result<()> {
    let call = |tool: &str, account: &str, amount: u64| mcp::call_body(7, tool, account, amount);
    let mut checks: Vec<(&str, Option<&str>, String, &str, u16)> = vec![
        ("the timed call", Some(&tokens.trader), mcp::allowed_call(), mcp::TOOL, 200),
        ("another agent (research)", Some(&tokens.research), mcp::allowed_call(), mcp::TOOL, 403),
        ("no token", None, mcp::allowed_call(), mcp::TOOL, 401),
        ("a token for another audience", Some(api_token), mcp::allowed_call(), mcp::TOOL, 401),
    ];
    if on == Mcp::Body {
        let trader = Some(tokens.trader.as_str());
        checks.extend([
            ("another account", trader, call(mcp::TOOL, "acct-8", 10), mcp::TOOL, 403),
            ("an amount over max_amount", trader, call(mcp::TOOL, "acct-7", 5001), mcp::TOOL, 403),
            ("a denied tool", trader, call("delete_account", "acct-7", 1), "delete_account", 403),
            ("Mcp-Name not the body's tool", trader, mcp::allowed_call(), "get_quote", 400),
        ]);
    }
    for (what, token, body, name, want) in checks {
        let mut owned = mcp::headers("tools/call", Some(name));
        if let Some(t) = token {
            owned.push(("authorization".into(), format!("Bearer {t}")));
        }
        let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let r = testbed::http_request_to(port, mcp::AUTHORITY, "POST", mcp::PATH, &headers, body.as_bytes())
            .with_context(|| format!("{}: {what}", config.label))?;
        ensure!(
            r.status == want && (want != 200 || r.body == b"ok\n"),
            "{} ({}): {what}: expected {want}, got {} {}",
            config.label,
            config.file,
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        );
    }
    Ok(())
}

/// Every configuration must decide right before it is timed: 200 for the good token, 401 for a forged,
/// expired or missing one, 403 for another agent or another path.
fn verify(port: u16, config: &Config, tokens: &DemoTokens, fresh: &str) -> Result<()> {
    let mut checks: Vec<(&str, Option<&str>, &str, u16)> = vec![("good token", Some(&tokens.trader), PATH, 200)];
    if config.auth {
        checks.extend([
            ("a new token", Some(fresh), PATH, 200),
            ("no token", None, PATH, 401),
            ("forged token", Some(&tokens.forged), PATH, 401),
            ("expired token", Some(&tokens.expired), PATH, 401),
            ("another agent (research)", Some(&tokens.research), PATH, 403),
            ("another path", Some(&tokens.trader), "/admin/users", 403),
            ("another method", Some(&tokens.trader), "POST /quotes/ACME", 403),
        ]);
    }
    for (what, token, target, want) in checks {
        let (method, path) = target.split_once(' ').unwrap_or(("GET", target));
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        let r = testbed::http_request(port, method, path, &headers, b"")
            .with_context(|| format!("{}: {what}", config.label))?;
        ensure!(
            r.status == want,
            "{} ({}): {what}, {method} {path}: expected {want}, got {} {}",
            config.label,
            config.file,
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        );
    }
    Ok(())
}

/// What C3 is checked with before it is timed: its bound token, one forged with the attacker's key, and proofs.
struct DpopChecks {
    bound: String,
    forged: String,
    /// Fresh proofs of the bound token for `GET` [`PATH`] by the agent's key.
    proofs: [String; 2],
    /// A fresh proof of the bound token for `GET /admin/users`.
    admin: String,
    /// A proof of the bound token for `GET` [`PATH`] signed by another key.
    other_key: String,
    /// A proof of the forged token by the agent's key.
    for_forged: String,
}

/// One check of C3: what it is, the path, `Authorization`, `DPoP`, the status expected.
type DpopCheck<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, u16);

/// A DPoP configuration must decide right before it is timed: 200 for the bound token with a new proof (and
/// again with another one after the refusals), 401 for the same proof again, the bound token as `Bearer`, the
/// bound token without a proof, no token, a proof by another key and a forged token, 403 for another path.
fn verify_dpop(port: u16, config: &Config, c: &DpopChecks) -> Result<()> {
    let dpop = format!("DPoP {}", c.bound);
    let bearer = format!("Bearer {}", c.bound);
    let forged = format!("DPoP {}", c.forged);
    let checks: [DpopCheck; 9] = [
        ("the bound token with a new proof", PATH, Some(&dpop), Some(&c.proofs[0]), 200),
        ("the same proof again (a replay)", PATH, Some(&dpop), Some(&c.proofs[0]), 401),
        ("the bound token as Bearer", PATH, Some(&bearer), None, 401),
        ("the bound token without a proof", PATH, Some(&dpop), None, 401),
        ("no token", PATH, None, None, 401),
        ("a proof signed by another key", PATH, Some(&dpop), Some(&c.other_key), 401),
        ("a forged token", PATH, Some(&forged), Some(&c.for_forged), 401),
        ("another path, with its proof", "/admin/users", Some(&dpop), Some(&c.admin), 403),
        ("the bound token with another new proof", PATH, Some(&dpop), Some(&c.proofs[1]), 200),
    ];
    for (what, path, authorization, proof, want) in checks {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        if let Some(p) = proof {
            headers.push(("dpop", p));
        }
        let r = testbed::http_request(port, "GET", path, &headers, b"")
            .with_context(|| format!("{}: {what}", config.label))?;
        ensure!(
            r.status == want,
            "{} ({}): {what}, GET {path}: expected {want}, got {} {}",
            config.label,
            config.file,
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        );
    }
    Ok(())
}

/// Makes Envoy write out its buffered access log files now (`POST /reopen_logs`); otherwise it writes them every
/// `--file-flush-interval-msec` (10 s) or once 64 KiB are buffered.
fn flush_access_logs(admin: u16) -> Result<()> {
    let r = testbed::http_request(admin, "POST", "/reopen_logs", &[], b"")?;
    ensure!(r.status == 200, "POST /reopen_logs answered {}", r.status);
    Ok(())
}

/// A configuration with an access log must have written the lines of the checks' requests before it is timed:
/// its last complete line is an OCSF API Activity event (`class_uid` 6003): the plugin's (G), or Envoy's control
/// line, with its `metadata.log_name` and a request id (G0).
fn verify_audit(gw: &Gateway) -> Result<()> {
    let (Some(path), Some(log)) = (&gw.audit_file, &gw.config.access_log) else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        flush_access_logs(gw.envoy.admin_port())?;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Only complete lines: Envoy may be writing the last one.
        let complete = text.rsplit_once('\n').map_or("", |(lines, _)| lines);
        if let Some(line) = complete.lines().last() {
            break line.to_owned();
        }
        ensure!(Instant::now() < deadline, "{}: no audit event written to {}", gw.config.label, path.display());
        std::thread::sleep(Duration::from_millis(200));
    };
    let event: Value = serde_json::from_str(&last)
        .with_context(|| format!("{}: the last line of {} is not JSON: {last}", gw.config.label, path.display()))?;
    ensure!(
        event["class_uid"] == 6003,
        "{}: the last line of {} is not an OCSF API Activity event (class_uid {}): {last}",
        gw.config.label,
        path.display(),
        event["class_uid"]
    );
    if let LogLines::Control(name) = log.lines {
        ensure!(
            event["metadata"]["log_name"] == name
                && event["metadata"]["correlation_uid"].as_str().is_some_and(|id| id.len() == 36),
            "{}: the last line of {} is not the control line ({name}, with a request id): {last}",
            gw.config.label,
            path.display(),
        );
    }
    Ok(())
}

/// Sends each of `tokens` once to `gw` (closed loop); fails unless every answer is 200.
fn send_once(gw: &Gateway, opts: &Options, tokens: &[String]) -> Result<()> {
    let requests = requests(&Load::Fresh(tokens.to_vec()));
    let plan = Plan {
        port: gw.port,
        connections: opts.connections,
        rate: None,
        duration: Duration::from_secs(3600),
        limit: Some(requests.len() as u64),
    };
    let report = loadgen::run(&plan, &requests)?;
    ensure!(
        report.completed == requests.len() as u64 && report.ok() == report.completed,
        "{} of {} tokens answered 200",
        report.ok(),
        requests.len()
    );
    Ok(())
}

/// Envoy's RSS and the plugin's linear memory (`agent_iam.vm.memory_bytes`: every VM of the plugin, the
/// worker's and the main thread's) after `n` distinct tokens in all, sent in batches.
fn memory(gw: &Gateway, opts: &Options, minter: &mut Minter) -> Result<Value> {
    let pid = gw.pid.context("Envoy's pid is unknown")?;
    let mut out = Map::new();
    let mut sent = 0usize;
    for (label, target) in [("4096_tokens", 4096usize), ("1m_tokens", opts.memory_tokens.max(4096))] {
        while sent < target {
            let batch = (target - sent).min(100_000);
            send_once(gw, opts, &minter.fresh(batch)?)?;
            sent += batch;
        }
        // The plugin reports its memory on its tick (every second).
        std::thread::sleep(Duration::from_millis(1500));
        let wasm_kb =
            stat(&stats(gw.envoy.admin_port(), "vm.memory_bytes")?, "agent_iam.vm.memory_bytes").map(|b| b / 1024);
        let rss = rss_kb(pid);
        out.insert(format!("rss_kb_{label}"), rss.into());
        out.insert(format!("wasm_memory_kb_{label}"), wasm_kb.into());
        eprintln!("memory after {sent} distinct tokens: RSS {rss:?} KiB, Wasm {wasm_kb:?} KiB");
    }
    out.insert("memory_tokens".into(), sent.into());
    if let (Some(a), Some(b)) = (out["rss_kb_4096_tokens"].as_f64(), out["rss_kb_1m_tokens"].as_f64()) {
        out.insert("rss_1m_over_4096".into(), ((b / a * 1000.0).round() / 1000.0).into());
    }
    Ok(Value::Object(out))
}

/// Envoy's `/stats` (text), those whose names match `filter` (a regular expression).
fn stats(admin: u16, filter: &str) -> Result<String> {
    let r = testbed::http_request(admin, "GET", &format!("/stats?filter={filter}"), &[], b"")?;
    ensure!(r.status == 200, "/stats answered {}", r.status);
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

/// The value of the stat whose name ends with `suffix`, in `/stats` text.
fn stat(text: &str, suffix: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, v) = l.split_once(':')?;
        name.trim().ends_with(suffix).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `agent_iam.token_cache.hit` and `.miss` from Envoy's `/stats`.
fn cache_counters(admin: u16) -> Result<(u64, u64)> {
    let text = stats(admin, "token_cache")?;
    Ok((stat(&text, "token_cache.hit").unwrap_or(0), stat(&text, "token_cache.miss").unwrap_or(0)))
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn run(opts: Options) -> Result<()> {
    let t0 = Instant::now();
    let load_at_start = load_average();
    // Before pinning: the machine's CPUs, not this thread's.
    let machine_info = machine();
    let root = agent_iam_host::workspace_root();
    let work = root.join("target/bench/envoy");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let envoy_bin = testbed::envoy_binary();
    ensure!(envoy_bin.exists(), "Envoy not found at {} (run `make envoy`)", envoy_bin.display());
    let wasm = match &opts.wasm {
        Some(path) => std::path::absolute(path).with_context(|| format!("{}", path.display()))?,
        None => agent_iam_host::plugin_wasm_path(),
    };
    ensure!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
    let wrk = if opts.use_wrk { wrk_version() } else { None };
    if opts.use_wrk && wrk.is_none() {
        eprintln!("wrk not found: closed-loop figures from the built-in generator (agent-iam-loadgen)");
    }

    // Envoy on one core, the load on another (taskset's syscall, inherited by Envoy and wrk).
    let cpus = allowed_cpus()?;
    let (envoy_cpus, load_cpus) = split_cpus(&cpus);
    let pinned = cpus.len() >= 2;
    if !pinned {
        eprintln!("only {} CPU(s) available: Envoy and the load generator share it (unpinned)", cpus.len());
    }

    // Keys and tokens, as the demo makes them.
    let keys = DemoKeys::generate()?;
    let now = demo::now();
    let demo_tokens = DemoTokens::mint(&keys, now, 7200);
    let research_es256 = keys.es256.sign_jwt(
        Some(demo::ES256_KID),
        &json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::RESEARCH, "iat": now, "exp": now + 7200}),
    );
    // The research agent signed with the ES256 key (the demo signs it with EdDSA, which B's `jwt_authn` would
    // refuse with 401 before `rbac` could answer 403).
    let tokens = DemoTokens { research: research_es256, ..demo_tokens };
    // C3: the agent's own DPoP key and a token bound to it (`cnf.jkt`), its one token.
    let holder = SigningKey::from_seed(agent_iam::token::Algorithm::ES256, demo::random_seed()?).context("DPoP key")?;
    let bound_claims = json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::TRADER, "iat": now,
                              "exp": now + 7200, "jti": "c3-bound-token", "cnf": {"jkt": holder.jkt().context("jkt")?}});
    let bound = keys.es256.sign_jwt(Some(demo::ES256_KID), &bound_claims);
    let mut minter = Minter { key: &keys.es256, next: 0, now, cpus: cpus.clone(), holder: &holder, bound: &bound };
    // F's tokens name the MCP endpoint's resource in `aud`.
    let mut research_claims = mcp::claims(now);
    research_claims["sub"] = demo::RESEARCH.into();
    let mcp_tokens = McpTokens {
        trader: keys.es256.sign_jwt(Some(demo::ES256_KID), &mcp::claims(now)),
        research: keys.es256.sign_jwt(Some(demo::ES256_KID), &research_claims),
    };
    let mcp_token = mcp_tokens.trader.clone();
    let jwks = keys.jwks();

    let realtime = opts.realtime
        && match set_realtime(Some(10)) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("normal scheduling ({e:#}): other work on the machine will show in the figures");
                false
            }
        };

    // Start every configuration at once (from this thread: Envoy is stopped when the thread that started it
    // ends), pinned.
    if pinned {
        pin(&envoy_cpus)?;
    }
    let mut gateways: Vec<Gateway> = Vec::new();
    let mut failed: Map<String, Value> = Map::new();
    for config in
        CONFIGS.iter().filter(|c| c.key == "A" || opts.only.is_empty() || opts.only.iter().any(|k| k == c.key))
    {
        let started = (|| -> Result<Gateway> {
            let template_path = root.join("envoy/bench").join(config.file);
            let template = std::fs::read_to_string(&template_path)
                .with_context(|| format!("reading {}", template_path.display()))?;
            let ports = Ports { listener: testbed::free_port()?, admin: testbed::free_port()?, ..Ports::DEFAULT };
            let yaml = demo::render_bench_config(&template, &jwks, ports, &wasm)?;
            // The access log: a real file of the template's name in the configuration's work directory
            // (Envoy::start creates the directory), emptied of any earlier run's lines.
            let audit_file = config.access_log.as_ref().map(|log| {
                let name = Path::new(log.template).file_name().unwrap_or("access.log".as_ref());
                work.join(config.key).join(name)
            });
            let yaml = match (&config.access_log, &audit_file) {
                (Some(log), Some(file)) => {
                    if file.exists() {
                        std::fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
                    }
                    demo::replace_once(&yaml, &format!("path: {}", log.template), &format!("path: {}", file.display()))
                        .with_context(|| format!("{}: the access log's path", config.file))?
                }
                _ => yaml,
            };
            let before = children();
            let envoy = Envoy::start(&envoy_bin, &yaml, ports.admin, &work.join(config.key))
                .with_context(|| format!("starting {} ({})", config.label, config.file))?;
            let pid = children().difference(&before).next().copied();
            Ok(Gateway {
                config,
                envoy,
                port: ports.listener,
                pid,
                closed: Vec::new(),
                open: Vec::new(),
                warnings: Vec::new(),
                audit_file,
            })
        })();
        match started {
            Ok(g) => gateways.push(g),
            Err(e) => {
                eprintln!("{}: not measured: {e:#}", config.label);
                failed.insert(config.key.into(), format!("{e:#}").into());
            }
        }
    }
    if pinned {
        pin(&load_cpus)?;
    }
    eprintln!("{} Envoys started in {:.1} s", gateways.len(), t0.elapsed().as_secs_f64());

    // Nothing is timed unless it decides right.
    let probe = minter.fresh(1)?;
    let probe = probe.first().context("no probe token")?;
    let dpop_checks = {
        let forged = keys.attacker.sign_jwt(Some(demo::ES256_KID), &bound_claims);
        let proof = |key: &SigningKey, jti: &str, path: &str, token: &str| {
            key.dpop_proof(&ProofClaims {
                jti,
                htm: "GET",
                htu: &format!("{DPOP_ORIGIN}{path}"),
                iat: demo::now(),
                token: Some(token),
                nonce: None,
            })
        };
        DpopChecks {
            proofs: [proof(&holder, "check-1", PATH, &bound), proof(&holder, "check-2", PATH, &bound)],
            admin: proof(&holder, "check-3", "/admin/users", &bound),
            other_key: proof(&keys.attacker, "check-4", PATH, &bound),
            for_forged: proof(&holder, "check-5", PATH, &forged),
            bound: bound.clone(),
            forged,
        }
    };
    gateways.retain(|g| {
        match if let Some(mcp) = g.config.mcp {
            verify_mcp(g.port, g.config, mcp, &mcp_tokens, &tokens.trader)
        } else if g.config.dpop {
            verify_dpop(g.port, g.config, &dpop_checks)
        } else {
            verify(g.port, g.config, &tokens, probe).and_then(|()| verify_audit(g))
        } {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{}: not measured: {e:#}", g.config.label);
                failed.insert(g.config.key.into(), format!("{e:#}").into());
                false
            }
        }
    });
    ensure!(gateways.iter().any(|g| g.config.key == "A"), "configuration A could not run: no reference");

    // Warm-up, discarded; it also gives a first estimate of how many fresh tokens a run needs.
    let mut estimate = vec![30_000.0; gateways.len()];
    for (g, est) in gateways.iter().zip(estimate.iter_mut()) {
        let load = minter.load(g.config, *est, opts.warmup, &tokens.trader, &mcp_token)?;
        g.audit_reset();
        let run = closed_run(g, &opts, wrk.is_some(), opts.warmup, &load, &work)?;
        *est = run.rps;
    }

    // Maximum throughput, configurations interleaved, round after round.
    for round in 0..opts.rounds {
        for (g, est) in gateways.iter_mut().zip(estimate.iter_mut()) {
            let load = minter.load(g.config, *est, opts.seconds, &tokens.trader, &mcp_token)?;
            g.audit_reset();
            let mut run = closed_run(g, &opts, wrk.is_some(), opts.seconds, &load, &work)?;
            g.audit_written(&mut run);
            eprintln!("round {} closed loop {:>3}: {:>8.0} req/s", round + 1, g.config.label, run.rps);
            // The fastest run so far sizes the next token list (a faster round must not run out).
            *est = est.max(run.rps);
            g.closed.push(run);
        }
    }
    let rps_a = gateways
        .iter()
        .find(|g| g.config.key == "A")
        .and_then(|g| median(g.closed.iter().map(|r| r.rps).collect()))
        .context("no throughput for A")?;
    let rate = (rps_a * 0.5).round();

    // Where the CPU goes, per configuration (an extra, untimed run each).
    let mut profiles = Map::new();
    let perf = opts.perf && Command::new("perf").arg("--version").output().is_ok_and(|o| o.status.success());
    if perf {
        for (g, est) in gateways.iter().zip(estimate.iter()) {
            let load = minter.load(g.config, *est, opts.seconds, &tokens.trader, &mcp_token)?;
            g.audit_reset();
            let p = profile(g, &opts, wrk.is_some(), opts.seconds, &load, &work)
                .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
            profiles.insert(g.config.key.into(), p);
        }
    }

    // Latency at half of A's maximum, interleaved the same way.
    for round in 0..if opts.open { opts.rounds } else { 0 } {
        for (g, est) in gateways.iter_mut().zip(estimate.iter()) {
            let load = minter.load(g.config, rate.min(*est * 1.3), opts.seconds, &tokens.trader, &mcp_token)?;
            g.audit_reset();
            let mut run = open_run(g, &opts, rate, opts.seconds, &load)?;
            g.audit_written(&mut run);
            if let Some(l) = run.latency {
                eprintln!(
                    "round {} open loop {:>3} at {rate:.0} req/s: p50 {:.0} µs, p99 {:.0} µs, {:.0} req/s answered",
                    round + 1,
                    g.config.label,
                    l.p50,
                    l.p99,
                    run.rps
                );
            }
            g.open.push(run);
        }
    }

    // Token-cache counters: hits for C, misses for C' and C''. The plugin hands counters to Envoy at most once a
    // second (on its tick when idle): wait for the last ones.
    std::thread::sleep(Duration::from_millis(1500));
    let mut hit_ratio = Map::new();
    let mut counters = Map::new();
    for g in gateways.iter().filter(|g| g.config.plugin) {
        match cache_counters(g.envoy.admin_port()) {
            Ok((hit, miss)) => {
                let ratio = if hit + miss > 0 { Some(hit as f64 / (hit + miss) as f64) } else { None };
                hit_ratio.insert(g.config.key.into(), ratio.map(|r| (r * 10_000.0).round() / 10_000.0).into());
                counters.insert(g.config.key.into(), json!({"hit": hit, "miss": miss}));
            }
            Err(e) => {
                counters.insert(g.config.key.into(), format!("{e:#}").into());
            }
        }
    }
    // Memory: C's Envoy after 4,096 distinct tokens (a full cache) and after many more (the cache is bounded).
    let memory = match gateways.iter().find(|g| g.config.key == "C") {
        Some(g) if opts.memory_tokens > 0 => memory(g, &opts, &mut minter).unwrap_or_else(|e| {
            eprintln!("memory figures: {e:#}");
            json!({"memory_error": format!("{e:#}")})
        }),
        _ => json!({}),
    };

    for g in &mut gateways {
        let (non_2xx, reused) =
            g.closed.iter().chain(&g.open).fold((0, false), |(n, r), run| (n + run.non_2xx, r || run.tokens_reused));
        if non_2xx > 0 {
            g.warnings.push(format!("{non_2xx} answers other than 2xx during timed runs"));
        }
        if reused {
            g.warnings.push("the token list ran out in some run: some tokens were sent twice".into());
        }
    }

    let report = results(
        &opts,
        &gateways,
        &failed,
        Results {
            rate,
            memory,
            hit_ratio,
            counters,
            wrk,
            profiles,
            pinning: json!({
                "pinned": pinned,
                "how": "sched_setaffinity (what taskset -c does), inherited by Envoy and wrk",
                "scheduling": if realtime { "SCHED_FIFO 10 (Envoy, wrk, load generator)" } else { "normal" },
                "envoy_cpus": envoy_cpus,
                "load_cpus": load_cpus,
                "envoy_cpus_allowed": gateways.iter().map(|g| (g.config.key.to_owned(), g.pid.and_then(cpus_allowed).into()))
                    .collect::<Map<String, Value>>(),
            }),
            load_at_start,
            machine: machine_info,
            wall: t0.elapsed(),
        },
    );
    std::fs::create_dir_all(&opts.out_dir)?;
    let json_path = opts.out_dir.join("envoy.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md = markdown(&report);
    let md_path = opts.out_dir.join("envoy.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    println!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

/// Fresh tokens for `seconds` at `rps`, with a margin (a token list that runs out is recorded, not fatal).
fn tokens_for(rps: f64, seconds: u64) -> usize {
    (rps.max(1000.0) * seconds as f64 * 1.6) as usize + 2000
}

struct Results {
    rate: f64,
    memory: Value,
    hit_ratio: Map<String, Value>,
    counters: Map<String, Value>,
    wrk: Option<String>,
    profiles: Map<String, Value>,
    pinning: Value,
    load_at_start: Option<String>,
    machine: Value,
    wall: Duration,
}

fn results(opts: &Options, gateways: &[Gateway], failed: &Map<String, Value>, r: Results) -> Value {
    let mut out = Map::new();
    out.insert(
        "what".into(),
        "agent-iam beside Envoy's jwt_authn + rbac in real Envoy (one worker, direct_response route, HTTP/1.1 \
         keep-alive): rps_* = maximum throughput (closed loop, median of rounds); p50_us_*/p99_us_* = latency at \
         half of rps_A (open loop, from intended send times, median of rounds). Keys: A router only, B jwt_authn \
         + rbac, B1 the same cached, C agent-iam warm cache, C1 agent-iam new token per request (host crypto), \
         C2 the same in pure Rust, D jwt_authn cached + agent-iam policy only, E an empty Wasm filter, F agent-iam \
         on an MCP tools/call POST (~2 KB body decided), warm cache, G C with agent-iam's audit trail (an OCSF \
         event per request, chained and checkpointed, to a file by Envoy's file access logger), H C with a limit \
         per agent in Envoy's shared data (never reached) and every anomaly signal on (record), C3 agent-iam with \
         DPoP required: one bound token (warm cache) and a new ES256 DPoP proof per request (host crypto, the \
         replay cache in Envoy's shared data). Controls: F0 F's POST with the plugin deciding on the headers \
         alone (no mcp section), G0 C with Envoy's file access logger writing a fixed line of G's event's size \
         per request (not the plugin's). See docs/performance.md."
            .into(),
    );
    let mut configs = Map::new();
    let figure = |key: &str, f: &dyn Fn(&Gateway) -> Option<f64>| -> Option<f64> {
        gateways.iter().find(|g| g.config.key == key).and_then(f)
    };
    for c in &CONFIGS {
        let rps = figure(c.key, &|g| median(g.closed.iter().map(|r| r.rps).collect()));
        let lat = |f: fn(&Latency) -> f64| {
            figure(c.key, &|g| median(g.open.iter().filter_map(|r| r.latency.as_ref().map(f)).collect()))
        };
        out.insert(format!("rps_{}", c.key), rps.map(f64::round).into());
        out.insert(format!("p50_us_{}", c.key), lat(|l| l.p50).map(round1).into());
        out.insert(format!("p99_us_{}", c.key), lat(|l| l.p99).map(round1).into());
        out.insert(format!("p999_us_{}", c.key), lat(|l| l.p999).map(round1).into());
        let mut detail = json!({"label": c.label, "file": format!("envoy/bench/{}", c.file), "what": c.what});
        if let Some(g) = gateways.iter().find(|g| g.config.key == c.key) {
            let cpu = |runs: &[Run]| median(runs.iter().filter_map(|r| r.cpu_us_per_request).collect()).map(round1);
            detail["cpu_us_per_request_closed"] = cpu(&g.closed).into();
            detail["cpu_us_per_request_open"] = cpu(&g.open).into();
            detail["open_loop_rps"] = median(g.open.iter().map(|r| r.rps).collect()).map(f64::round).into();
            detail["open_loop_incomplete"] =
                g.open.iter().filter_map(|r| r.latency.map(|l| l.incomplete)).sum::<u64>().into();
            detail["max_us_open"] = g
                .open
                .iter()
                .filter_map(|r| r.latency.map(|l| l.max))
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
                .map(round1)
                .into();
            if let Some(file) = &g.audit_file {
                detail["audit_file"] = file.display().to_string().into();
                detail["audit_bytes_per_request_closed"] =
                    median(g.closed.iter().filter_map(|r| r.audit_bytes_per_request).collect()).map(round1).into();
            }
            detail["closed_rounds"] = g.closed.iter().map(Run::json).collect::<Vec<_>>().into();
            detail["open_rounds"] = g.open.iter().map(Run::json).collect::<Vec<_>>().into();
            if !g.warnings.is_empty() {
                detail["warnings"] = g.warnings.clone().into();
            }
        } else if let Some(e) = failed.get(c.key) {
            detail["error"] = e.clone();
        }
        configs.insert(c.key.into(), detail);
    }
    let get = |k: &str| out.get(k).and_then(Value::as_f64);
    let ratio = |a: &str, b: &str| match (get(a), get(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some((x / y * 1000.0).round() / 1000.0),
        _ => None,
    };
    // The same ratio round by round, then its median: configurations run interleaved, so a round's ratio
    // compares runs seconds apart, and a machine whose speed drifts between rounds (other tenants) moves both
    // sides of it alike. Reported beside the ratio of medians, which decides the target.
    let paired = |a: &str, b: &str, f: fn(&Run) -> Option<f64>| -> Option<f64> {
        let runs = |key: &str| gateways.iter().find(|g| g.config.key == key).map(|g| &g.closed);
        let (ra, rb) = (runs(a)?, runs(b)?);
        let per_round: Vec<f64> =
            ra.iter().zip(rb).filter_map(|(x, y)| Some(f(x)? / f(y)?)).filter(|r| r.is_finite()).collect();
        median(per_round).map(|m| (m * 1000.0).round() / 1000.0)
    };
    let rps = |r: &Run| Some(r.rps);
    let inverse_cpu = |r: &Run| r.cpu_us_per_request.filter(|c| *c > 0.0).map(|c| 1.0 / c);
    let target = |name: &str, value: Option<f64>, paired: Option<f64>, min: f64| json!({"target": name, "ratio": value, "paired_ratio": paired, "needs": min, "met": value.map(|v| v >= min)});
    let cpu_of = |key: &str| {
        gateways
            .iter()
            .find(|g| g.config.key == key)
            .and_then(|g| median(g.closed.iter().filter_map(|r| r.cpu_us_per_request).collect()))
    };
    // Envoy's CPU per request for C against B': a ratio that must be at least 1, like the others.
    let cpu_ratio = match (cpu_of("B1"), cpu_of("C")) {
        (Some(b1), Some(c)) if c > 0.0 => Some((b1 / c * 1000.0).round() / 1000.0),
        _ => None,
    };
    let targets = vec![
        target("rps_C >= rps_B1", ratio("rps_C", "rps_B1"), paired("C", "B1", rps), 1.0),
        target("rps_C1 >= rps_B", ratio("rps_C1", "rps_B"), paired("C1", "B", rps), 1.0),
        target("rps_C >= 0.8 * rps_E", ratio("rps_C", "rps_E"), paired("C", "E", rps), 0.8),
        target("cpu_us_per_request C <= B1 (ratio B1/C)", cpu_ratio, paired("C", "B1", inverse_cpu), 1.0),
        // Issue 18: an MCP tools/call (body read, parsed and decided) against C's plain GET.
        target("rps_F >= 0.8 * rps_C", ratio("rps_F", "rps_C"), paired("F", "C", rps), 0.8),
        // Issue 19: C with the audit trail on, its events written to a file, against C.
        target("rps_G >= 0.85 * rps_C", ratio("rps_G", "rps_C"), paired("G", "C", rps), 0.85),
        // Issue 21: C with a limit per agent and every anomaly signal on, against C.
        target("rps_H >= 0.85 * rps_C", ratio("rps_H", "rps_C"), paired("H", "C", rps), 0.85),
        // Issue 22: a warm token with a new DPoP proof every request, against a new token every request.
        target("rps_C3 >= 0.9 * rps_C1", ratio("rps_C3", "rps_C1"), paired("C3", "C1", rps), 0.9),
    ];
    let mut ratios = Map::new();
    for c in CONFIGS.iter().skip(1) {
        ratios.insert(format!("rps_{}/rps_A", c.key), ratio(&format!("rps_{}", c.key), "rps_A").into());
    }
    ratios.insert("rps_C/rps_B1".into(), ratio("rps_C", "rps_B1").into());
    ratios.insert("rps_C1/rps_B".into(), ratio("rps_C1", "rps_B").into());
    ratios.insert("rps_C2/rps_B".into(), ratio("rps_C2", "rps_B").into());
    ratios.insert("rps_D/rps_B1".into(), ratio("rps_D", "rps_B1").into());
    // How close agent-iam comes to a Wasm filter that does nothing: the part of the gap to A that is ours.
    ratios.insert("rps_C/rps_E".into(), ratio("rps_C", "rps_E").into());
    ratios.insert("rps_F/rps_C".into(), ratio("rps_F", "rps_C").into());
    ratios.insert("rps_G/rps_C".into(), ratio("rps_G", "rps_C").into());
    // The controls: F's POST with the plugin at the headers only (the ceiling the POST leaves, and the plugin's
    // MCP work beyond it); Envoy logging a line of G's event's size itself (its floor, and the plugin's audit
    // trail beyond it).
    ratios.insert("rps_F0/rps_C".into(), ratio("rps_F0", "rps_C").into());
    ratios.insert("rps_F/rps_F0".into(), ratio("rps_F", "rps_F0").into());
    ratios.insert("rps_G0/rps_C".into(), ratio("rps_G0", "rps_C").into());
    ratios.insert("rps_G/rps_G0".into(), ratio("rps_G", "rps_G0").into());
    ratios.insert("rps_H/rps_C".into(), ratio("rps_H", "rps_C").into());
    ratios.insert("rps_C3/rps_C1".into(), ratio("rps_C3", "rps_C1").into());
    ratios.insert("rps_C3/rps_C".into(), ratio("rps_C3", "rps_C").into());
    // Envoy's CPU per request, C1 over C3 (at least 1 when C3 costs no more than C1).
    let cpu_c1_over_c3 = match (cpu_of("C1"), cpu_of("C3")) {
        (Some(c1), Some(c3)) if c3 > 0.0 => Some((c1 / c3 * 1000.0).round() / 1000.0),
        _ => None,
    };
    ratios.insert("cpu_C1/cpu_C3".into(), cpu_c1_over_c3.into());
    out.insert("ratios".into(), ratios.into());
    out.insert("targets".into(), targets.into());
    out.insert("token_cache_hit_ratio".into(), r.hit_ratio.into());
    if let Value::Object(memory) = r.memory {
        out.extend(memory);
    }
    out.insert("token_cache_counters".into(), r.counters.into());
    out.insert("configs".into(), configs.into());
    out.insert("profiles".into(), r.profiles.into());
    out.insert(
        "method".into(),
        json!({
            "rounds": opts.rounds,
            "seconds_per_run": opts.seconds,
            "warmup_seconds": opts.warmup,
            "closed_loop": match &r.wrk {
                Some(v) => format!("{v}, -t1 -c{}", opts.connections),
                None => format!("agent-iam-loadgen closed loop, {} connections (wrk not found)", opts.connections),
            },
            "open_loop": format!("agent-iam-loadgen, {} connections, latency from intended send times",
                                 opts.open_connections),
            "open_loop_rate": r.rate,
            "envoy": "--concurrency 1, one Envoy per configuration, all running during the whole benchmark",
            "pinning": r.pinning,
            "wall_seconds": r.wall.as_secs(),
        }),
    );
    let end = load_average();
    out.insert("load_average".into(), json!({"start": r.load_at_start, "end": end}));
    let mut machine = r.machine;
    machine["loadavg_at_end"] = end.into();
    out.insert("machine".into(), machine);
    out.into()
}

/// The Markdown summary of the JSON.
fn markdown(r: &Value) -> String {
    let num = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.0}"));
    let ratio = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.2}"));
    let mut md = String::from("# agent-iam in Envoy: benchmark summary (`make bench-envoy`)\n\n");
    md.push_str(&format!(
        "Envoy 1.40, one worker (`--concurrency 1`) pinned to a core, load on another; maximum throughput by \
         closed loop ({}), latency at {} req/s (half of A's maximum) by open loop (agent-iam-loadgen, from \
         intended send times); medians of {} rounds of {} s, configurations interleaved. Load average: {} at \
         start, {} at end.\n\n",
        r["method"]["closed_loop"].as_str().unwrap_or("?"),
        num(&r["method"]["open_loop_rate"]),
        r["method"]["rounds"],
        r["method"]["seconds_per_run"],
        r["load_average"]["start"].as_str().unwrap_or("?"),
        r["load_average"]["end"].as_str().unwrap_or("?"),
    ));
    md.push_str("| | configuration | req/s | × A | CPU µs/req | p50 µs | p99 µs | p99.9 µs | token cache hits |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in &CONFIGS {
        let detail = &r["configs"][c.key];
        let x_a = if c.key == "A" { "1.00".to_owned() } else { ratio(&r["ratios"][format!("rps_{}/rps_A", c.key)]) };
        let hits = r["token_cache_hit_ratio"][c.key].as_f64().map_or(String::new(), |h| format!("{:.1} %", h * 100.0));
        let mut what = c.what.to_owned();
        if let Some(e) = detail["error"].as_str() {
            what.push_str(&format!(" — **not measured**: {}", e.lines().next().unwrap_or(e)));
        }
        if let Some(w) = detail["warnings"].as_array() {
            for w in w.iter().filter_map(Value::as_str) {
                what.push_str(&format!(" — warning: {w}"));
            }
        }
        // Overloaded: it answered clearly fewer requests than the schedule sent (a few in flight at the end of
        // every run are normal and counted as incomplete anyway).
        let rate = r["method"]["open_loop_rate"].as_f64().unwrap_or(0.0);
        let overloaded = detail["open_loop_rps"].as_f64().is_some_and(|a| a < 0.97 * rate);
        let p99 = if overloaded {
            format!("{} (overloaded)", num(&r[format!("p99_us_{}", c.key)]))
        } else {
            num(&r[format!("p99_us_{}", c.key)])
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.label,
            what,
            num(&r[format!("rps_{}", c.key)]),
            x_a,
            detail["cpu_us_per_request_closed"].as_f64().map_or("–".to_owned(), |x| format!("{x:.1}")),
            num(&r[format!("p50_us_{}", c.key)]),
            p99,
            num(&r[format!("p999_us_{}", c.key)]),
            hits,
        ));
    }
    md.push_str("\nTargets (reported, never asserted):\n\n");
    for t in r["targets"].as_array().into_iter().flatten() {
        let verdict = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        md.push_str(&format!(
            "- `{}`: ratio {} (needs {}; round by round, median {}): {verdict}\n",
            t["target"].as_str().unwrap_or("?"),
            ratio(&t["ratio"]),
            t["needs"],
            ratio(&t["paired_ratio"]),
        ));
    }
    let controls: Vec<String> = ["rps_F0/rps_C", "rps_F/rps_F0", "rps_G0/rps_C", "rps_G/rps_G0"]
        .into_iter()
        .filter(|k| r["ratios"][*k].is_number())
        .map(|k| format!("`{k}` {}", ratio(&r["ratios"][k])))
        .collect();
    if !controls.is_empty() {
        md.push_str(&format!(
            "\nControls (F0: F's POST, the plugin at the headers only; G0: Envoy logging a line of G's event's size \
             itself): {}.\n",
            controls.join(", ")
        ));
    }
    let cpu = |k: &str| r["configs"][k]["cpu_us_per_request_closed"].as_f64();
    if let (Some(a), Some(c), Some(e)) = (cpu("A"), cpu("C"), cpu("E")) {
        md.push_str(&format!(
            "\nWhere C's cost goes (Envoy CPU per request): {:.1} µs is Envoy's per-request Wasm machinery (E − A: a \
             filter context per stream and each call between Envoy and V8, with a module that does nothing), \
             {:.1} µs is agent-iam's own work (C − E). rps_C/rps_E = {}.\n",
            e - a,
            c - e,
            ratio(&r["ratios"]["rps_C/rps_E"]),
        ));
    }
    md.push_str(
        "\n\"(overloaded)\": the configuration answered less than 97 % of the open-loop rate (its maximum is below \
         it): its queue grew for the whole run, and requests still waiting at the end count with the time they \
         had waited. CPU µs/req is Envoy's CPU time per request at maximum \
         throughput. Details per round: `target/bench/envoy.json`; method and analysis: docs/performance.md.\n",
    );
    md
}
