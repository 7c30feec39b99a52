//! Anomaly signals end to end: the release `.wasm` in real Envoy with two workers (`--concurrency 2`) on
//! `envoy/anomaly.yaml`, the issuer's keys served by a real JWKS endpoint ([`JwksServer`]) and an echo upstream,
//! from the test bed, in real time. The signal is `probing` (5 refused requests of an agent within one clock
//! minute, counted by the worker that served them), which needs no learnt baseline and fires during learning.
//!
//! - `quarantine`: the trader deletes records (403 each) on one connection, so on one worker; at the 5th refusal
//!   it is revoked on every worker: within one tick its allowed reads get 401 `invalid_token`, "token has been
//!   revoked", on both workers, while the research agent is still allowed on both; Envoy's log and stats say
//!   so; after the quarantine's 30 s the trader is allowed again on both workers.
//! - `deny` (the same configuration with `"action": "deny"`): the hold is the worker's own. The worker that saw
//!   the signal answers the trader 429 with `Retry-After`; the other worker still serves it, past several ticks.
//!
//! Each worker keeps its own detector, so the test chooses the worker that counts: a keep-alive connection stays
//! on the worker that accepted it, and which worker that is is read from Envoy's per-worker listener stats
//! ([`Envoy::served_by`]). Refusals caused by a quarantine or a hold are denials too, and count towards the signal
//! again in a later minute: the test sends the trader no more than a few refused requests per worker and minute.
//!
//! The end-to-end tests need Envoy and the `.wasm` (`make envoy wasm`), so they are `#[ignore]`d for a plain
//! `cargo test` and run with `-- --ignored`; the check of the configuration needs neither and always runs.

use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, Ports, RESEARCH, TRADER};
use agent_iam_tests::testbed::{self, EchoUpstream, Envoy, HttpResponse, JwksServer};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every worker reads the shared revocation state on its tick.
const TICK: Duration = Duration::from_millis(250);
/// Allowance for a loaded machine on top of a tick.
const MARGIN: Duration = Duration::from_millis(750);

fn work_dir(test: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("target/e2e").join(test)
}

fn read_envoy(name: &str) -> String {
    std::fs::read_to_string(agent_iam_host::workspace_root().join("envoy").join(name)).unwrap()
}

/// The probing signal as envoy/anomaly.yaml configures it: (denials within a minute, action, seconds).
fn probing(text: &str) -> (usize, String, u64) {
    let p = &demo::plugin_config_in(text).unwrap()["anomaly"]["probing"];
    (
        p["denials_per_minute"].as_u64().unwrap() as usize,
        p["action"].as_str().unwrap().to_owned(),
        p["seconds"].as_u64().unwrap(),
    )
}

/// envoy/anomaly.yaml: the plugin with a policy on records (agents read them, none deletes them) and the probing
/// signal only, quarantining; then the router.
#[test]
fn anomaly_config_quarantines_a_probing_agent() {
    let text = read_envoy("anomaly.yaml");
    let config: Value = serde_norway::from_str(&text).unwrap();
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters: Vec<&str> =
        hcm["http_filters"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(filters, ["agent-iam", "envoy.filters.http.router"]);
    let plugin = demo::plugin_config_in(&text).unwrap();
    assert_eq!(plugin["issuers"][0]["remote_jwks"]["cluster"], "idp");
    assert_eq!(
        plugin["anomaly"],
        json!({"probing": {"denials_per_minute": 5, "action": "quarantine", "seconds": 30},
               "rate": {"enabled": false}, "first_use": {"enabled": false}, "delegation": {"enabled": false}})
    );
    let rules: Vec<(&Value, &Value, &Value, &Value)> = plugin["policy"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["effect"], &r["agents"], &r["methods"], &r["paths"]))
        .collect();
    assert_eq!(
        rules,
        [
            (&json!("allow"), &json!(["spiffe://trading.example/*"]), &json!(["GET"]), &json!(["/records/**"])),
            (&json!("deny"), &json!(["*"]), &json!(["DELETE"]), &json!(["/records/**"])),
        ]
    );
    assert_eq!(probing(&text), (5, "quarantine".to_owned(), 30));
}

/// A keep-alive HTTP/1.1 connection to the gateway: every request on it is served by the worker that accepted it.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Result<Conn> {
        let conn = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to {port}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { reader: BufReader::new(conn.try_clone()?), writer: conn })
    }

    /// `method path` with `token`, and its whole response; the connection stays open.
    fn send(&mut self, method: &str, path: &str, token: &str) -> Result<HttpResponse> {
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nhost: api.trading.example\r\nauthorization: Bearer {token}\r\n\r\n"
        )?;
        self.writer.flush()?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("the gateway closed the connection (after {lines:?})");
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        let status = lines.first().and_then(|l| l.split(' ').nth(1)).context("no status")?.parse()?;
        let headers: Vec<(String, String)> = lines[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body = vec![0; header("content-length").map(|l| l.parse()).transpose()?.unwrap_or(0)];
            self.reader.read_exact(&mut body)?;
        }
        Ok(HttpResponse { status, headers, body })
    }

    fn get(&mut self, token: &str) -> HttpResponse {
        self.send("GET", "/records/r-1", token).unwrap()
    }
}

/// The gateway under test: the JWKS endpoint, the echo upstream and Envoy with two workers.
struct Bed {
    envoy: Envoy,
    _jwks: JwksServer,
    _upstream: EchoUpstream,
    ports: Ports,
}

impl Bed {
    /// Envoy on `text` (envoy/anomaly.yaml, perhaps changed) on free ports.
    fn start(text: &str, dir: &Path, keys: &DemoKeys) -> Bed {
        let wasm = agent_iam_host::plugin_wasm_path();
        assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
        let jwks = JwksServer::start(0, &keys.jwks()).unwrap();
        let upstream = EchoUpstream::start(0).unwrap();
        let ports = Ports { jwks: jwks.port(), upstream: upstream.port(), ..Ports::free().unwrap() };
        let rendered = demo::render_ports(text, ports, &wasm).unwrap();
        for port in [Ports::DEFAULT.listener, Ports::DEFAULT.upstream, Ports::DEFAULT.admin, Ports::DEFAULT.jwks] {
            assert!(!rendered.contains(&format!("port_value: {port} ")), "port {port} not substituted");
        }
        let envoy = Envoy::start_with_workers(&testbed::envoy_binary(), &rendered, ports.admin, dir, 2).unwrap();
        Bed { envoy, _jwks: jwks, _upstream: upstream, ports }
    }

    /// `GET /records/r-1` with `token` on a fresh connection, and the worker that served it.
    fn get(&self, token: &str) -> (usize, HttpResponse) {
        let auth = format!("Bearer {token}");
        self.envoy
            .served_by(self.ports.listener, || {
                testbed::http_request(self.ports.listener, "GET", "/records/r-1", &[("authorization", &auth)], b"")
            })
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.envoy.log_tail(30)))
    }

    /// Sends `token` on fresh connections until each worker has served it `per_worker` times (at most 200
    /// requests), checking every answer with `check` (given the worker).
    fn on_both_workers(
        &self,
        token: &str,
        per_worker: usize,
        what: &str,
        check: impl Fn(usize, &HttpResponse) -> bool,
    ) {
        let mut served = [0usize; 2];
        for _ in 0..200 {
            let (worker, r) = self.get(token);
            assert!(check(worker, &r), "{what}: worker {worker} answered {}\n{}", show(&r), self.diagnostics());
            served[worker] += 1;
            if served.iter().all(|&n| n >= per_worker) {
                return;
            }
        }
        panic!("{what}: 200 fresh connections were served by the workers {served:?}: not both");
    }

    /// A keep-alive connection to each worker, indexed by worker, each opened with an allowed read by `token`.
    fn connections(&self, token: &str) -> [Conn; 2] {
        let mut conns: [Option<Conn>; 2] = [None, None];
        for _ in 0..200 {
            let mut opened = None;
            let (worker, r) = self
                .envoy
                .served_by(self.ports.listener, || {
                    let mut conn = Conn::open(self.ports.listener)?;
                    let r = conn.send("GET", "/records/r-1", token)?;
                    opened = Some(conn);
                    Ok(r)
                })
                .unwrap_or_else(|e| panic!("{e:#}\n{}", self.envoy.log_tail(30)));
            assert_eq!(r.status, 200, "opening a connection: {}\n{}", show(&r), self.diagnostics());
            if conns[worker].is_none() {
                conns[worker] = opened;
            }
            if conns.iter().all(Option::is_some) {
                return conns.map(Option::unwrap);
            }
        }
        panic!("200 fresh connections did not reach both workers");
    }

    /// The stat ending in `name`, once `done` holds for it or after 5 s (the plugin hands its counts to Envoy at
    /// most once a second).
    fn stat_when(&self, name: &str, done: impl Fn(Option<u64>) -> bool) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.envoy.stat(name).unwrap();
            if done(value) || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The lines of Envoy's log that contain `needle`, once there is one or after 15 s.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<String> =
                self.envoy.log().lines().filter(|l| l.contains(needle)).map(str::to_owned).collect();
            if !lines.is_empty() || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn diagnostics(&self) -> String {
        let stats = self.envoy.stats("agent_iam.(anomaly|revocation|denied)").unwrap_or_default();
        let stats: Vec<String> = stats.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        format!("stats:\n{}\nEnvoy log:\n{}", stats.join("\n"), self.envoy.log_tail(40))
    }
}

fn show(r: &HttpResponse) -> String {
    format!("{} {:?} {}", r.status, r.headers, String::from_utf8_lossy(&r.body))
}

fn allowed(r: &HttpResponse) -> bool {
    r.status == 200
}

/// A 401 for a revoked token: `invalid_token`, "token has been revoked", in the body and the challenge.
fn revoked(r: &HttpResponse) -> bool {
    let body = r.json();
    let challenge = r.header("www-authenticate").unwrap_or("");
    r.status == 401
        && body["error"] == "invalid_token"
        && body["error_description"] == "token has been revoked"
        && challenge.contains("error=\"invalid_token\"")
        && challenge.contains("error_description=\"token has been revoked\"")
}

/// A 429 of an anomaly hold, with `Retry-After` at most `seconds`.
fn held(r: &HttpResponse, seconds: u64) -> bool {
    let body = r.json();
    let retry_after: Option<u64> = r.header("retry-after").and_then(|s| s.parse().ok());
    r.status == 429
        && body["error"] == "rate_limited"
        && body["error_description"] == "this agent's requests are held after an anomaly"
        && retry_after.is_some_and(|s| (1..=seconds).contains(&s))
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Probing counts within one clock minute: waits for the next minute unless `needed` is left of this one.
fn room_in_this_minute(needed: Duration) {
    let into = wall_ms() % 60_000;
    if into + needed.as_millis() as u64 > 60_000 {
        std::thread::sleep(Duration::from_millis(60_000 - into + 200));
    }
}

/// Sleeps until the wall clock reads `ms`, following the wall clock rather than sleeping once for the difference:
/// the plugin times a quarantine on the wall clock (the only clock proxy-wasm gives it), so when the machine's
/// clock is stepped during the wait (a CI VM's clock set while the test ran once moved it 21 s ahead), the test
/// must wake by the same clock or it asks about a quarantine that has, by that clock, already ended.
fn sleep_until_wall(ms: u64) {
    loop {
        let now = wall_ms();
        if now >= ms {
            return;
        }
        std::thread::sleep(Duration::from_millis((ms - now).min(200)));
    }
}

/// The trader's `denials` refused deletes on `conn` (one worker), each 403; the wall-clock milliseconds before
/// the first and after the last.
fn probe(conn: &mut Conn, token: &str, denials: usize, bed: &Bed) -> (u64, u64) {
    let first = wall_ms();
    let mut last_sent = first;
    for i in 1..=denials {
        last_sent = wall_ms();
        let r = conn.send("DELETE", &format!("/records/r-{i}"), token).unwrap();
        assert_eq!(r.status, 403, "delete {i}: {}\n{}", show(&r), bed.diagnostics());
    }
    (last_sent, wall_ms())
}

#[test]
#[ignore = "needs Envoy and the release .wasm (make envoy wasm): run with -- --ignored"]
fn a_probing_agent_is_quarantined_on_both_workers_for_its_seconds_while_others_continue() {
    let text = read_envoy("anomaly.yaml");
    let (denials, action, seconds) = probing(&text);
    assert_eq!((denials, action.as_str(), seconds), (5, "quarantine", 30));
    let dir = work_dir("anomaly-quarantine");
    let keys = DemoKeys::generate().unwrap();
    let tokens = DemoTokens::mint(&keys, demo::now(), 3600);
    let bed = Bed::start(&text, &dir, &keys);

    // 1. Both agents are allowed on both workers, on fresh connections.
    bed.on_both_workers(&tokens.trader, 2, "the trader before probing", |_, r| allowed(r));
    bed.on_both_workers(&tokens.research, 2, "the research agent before probing", |_, r| allowed(r));
    let mut trader = bed.connections(&tokens.trader);

    // 2. The trader deletes records on one connection, so on worker 0: 403 each, the 5th within the minute fires.
    room_in_this_minute(Duration::from_secs(25));
    let (last_sent, fired) = probe(&mut trader[0], &tokens.trader, denials, &bed);
    let fired_at = Instant::now();

    // 3. The worker that saw it refuses the trader at once (it reads the state it wrote), the other within one
    // tick: 401, the token revoked.
    let r = trader[0].get(&tokens.trader);
    assert!(revoked(&r), "worker 0 right after the signal: {}\n{}", show(&r), bed.diagnostics());
    let mut other_allowed = 0;
    loop {
        let r = trader[1].get(&tokens.trader);
        if revoked(&r) {
            break;
        }
        assert!(allowed(&r), "worker 1: {}\n{}", show(&r), bed.diagnostics());
        other_allowed += 1;
        assert!(
            fired_at.elapsed() <= TICK + MARGIN,
            "worker 1 still allowed the trader {:?} after the signal\n{}",
            fired_at.elapsed(),
            bed.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "worker 1 refused the trader {} ms after the signal ({other_allowed} allowed before its tick)",
        fired_at.elapsed().as_millis()
    );
    // The research agent is not quarantined: allowed on both workers.
    bed.on_both_workers(&tokens.research, 2, "the research agent during the quarantine", |_, r| allowed(r));

    // Envoy's log and stats say what happened: one probing signal, the quarantine, 2 refusals by revocation.
    let lines = bed.log_lines("anomaly probing of agent");
    assert_eq!(lines.len(), 1, "{lines:?}\n{}", bed.diagnostics());
    assert!(lines[0].contains(&format!("anomaly probing of agent \"{TRADER}\"")), "{}", lines[0]);
    assert!(lines[0].contains("5 denials within a minute (fires from 5)"), "{}", lines[0]);
    assert!(lines[0].contains("(agent quarantined on every worker for 30 s)"), "{}", lines[0]);
    assert!(!bed.envoy.log().contains(&format!("agent \"{RESEARCH}\"")), "{}", bed.diagnostics());
    let probing_stat = bed.stat_when("agent_iam.anomaly.probing", |v| v >= Some(1));
    assert_eq!(probing_stat, Some(1), "{}", bed.diagnostics());
    let refused = bed.stat_when("agent_iam.revocation.refused.agent", |v| v >= Some(2));
    assert_eq!(refused, Some(2), "{}", bed.diagnostics());
    let active = bed.envoy.stat("agent_iam.revocation.active.agent").unwrap();
    assert!(active >= Some(1), "active agent revocations during the quarantine: {active:?}\n{}", bed.diagnostics());

    // 4. Nothing from the trader for a while (its refusals would count towards probing again in another minute).
    // The quarantine runs from the plugin's second of the signal for 30 s: still refused 28 s after the last
    // delete was sent...
    sleep_until_wall(last_sent + (seconds - 2) * 1000);
    let r = trader[0].get(&tokens.trader);
    assert!(revoked(&r), "worker 0 {} s into the quarantine: {}\n{}", seconds - 2, show(&r), bed.diagnostics());
    // ...and allowed from 30 s after the second the signal was answered in, on both workers.
    let end = (fired / 1000 + seconds) * 1000;
    sleep_until_wall(end + 100);
    let mut waited = [None, None];
    for (worker, conn) in trader.iter_mut().enumerate() {
        let mut refusals = 0;
        loop {
            let r = conn.get(&tokens.trader);
            if allowed(&r) {
                waited[worker] = Some(wall_ms().saturating_sub(end));
                break;
            }
            assert!(revoked(&r), "worker {worker} after the quarantine: {}\n{}", show(&r), bed.diagnostics());
            refusals += 1;
            assert!(
                refusals < 4,
                "worker {worker} still refuses the trader 2 s after the quarantine\n{}",
                bed.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!("the trader allowed again {waited:?} ms after the quarantine's end (by worker)");
    bed.on_both_workers(&tokens.trader, 2, "the trader after the quarantine", |_, r| allowed(r));
    bed.on_both_workers(&tokens.research, 1, "the research agent after the quarantine", |_, r| allowed(r));
    eprintln!(
        "after the quarantine: probing {:?}, refused.agent {:?}, active.agent {:?}",
        bed.envoy.stat("agent_iam.anomaly.probing").unwrap(),
        bed.envoy.stat("agent_iam.revocation.refused.agent").unwrap(),
        bed.envoy.stat("agent_iam.revocation.active.agent").unwrap()
    );
    assert_eq!(bed.envoy.log_count("anomaly probing of agent"), 1, "{}", bed.diagnostics());
}

#[test]
#[ignore = "needs Envoy and the release .wasm (make envoy wasm): run with -- --ignored"]
fn a_deny_holds_a_probing_agent_only_on_the_worker_that_saw_it() {
    let text =
        demo::replace_once(&read_envoy("anomaly.yaml"), r#""action": "quarantine""#, r#""action": "deny""#).unwrap();
    let (denials, action, seconds) = probing(&text);
    assert_eq!((denials, action.as_str(), seconds), (5, "deny", 30));
    let dir = work_dir("anomaly-deny");
    let keys = DemoKeys::generate().unwrap();
    let tokens = DemoTokens::mint(&keys, demo::now(), 3600);
    let bed = Bed::start(&text, &dir, &keys);

    bed.on_both_workers(&tokens.trader, 2, "the trader before probing", |_, r| allowed(r));
    let mut trader = bed.connections(&tokens.trader);
    room_in_this_minute(Duration::from_secs(20));
    probe(&mut trader[0], &tokens.trader, denials, &bed);
    let fired_at = Instant::now();

    // Worker 0 holds the trader: 429 with Retry-After. Worker 1 still serves it, several ticks later.
    let r = trader[0].get(&tokens.trader);
    assert!(held(&r, seconds), "worker 0 right after the signal: {}\n{}", show(&r), bed.diagnostics());
    while fired_at.elapsed() < 4 * TICK + MARGIN {
        let r = trader[1].get(&tokens.trader);
        assert!(allowed(&r), "worker 1 {:?} after the signal: {}\n{}", fired_at.elapsed(), show(&r), bed.diagnostics());
        std::thread::sleep(Duration::from_millis(100));
    }
    // On fresh connections too: whichever connection, the worker decides.
    bed.on_both_workers(&tokens.trader, 2, "the trader held on worker 0 only", |worker, r| match worker {
        0 => held(r, seconds),
        _ => allowed(r),
    });
    bed.on_both_workers(&tokens.research, 2, "the research agent", |_, r| allowed(r));

    let lines = bed.log_lines("anomaly probing of agent");
    assert_eq!(lines.len(), 1, "{lines:?}\n{}", bed.diagnostics());
    assert!(lines[0].contains(&format!("anomaly probing of agent \"{TRADER}\"")), "{}", lines[0]);
    assert!(lines[0].contains("(agent held on this worker for 30 s)"), "{}", lines[0]);
    assert_eq!(bed.stat_when("agent_iam.anomaly.probing", |v| v >= Some(1)), Some(1), "{}", bed.diagnostics());
    assert!(bed.stat_when("agent_iam.denied.anomaly_hold", |v| v >= Some(3)) >= Some(3), "{}", bed.diagnostics());
    assert_eq!(bed.envoy.stat("agent_iam.revocation.refused.agent").unwrap().unwrap_or(0), 0);

    // The hold ends after its seconds: worker 0 serves the trader again.
    std::thread::sleep(
        (fired_at + Duration::from_secs(seconds) + Duration::from_millis(200))
            .saturating_duration_since(Instant::now()),
    );
    let r = trader[0].get(&tokens.trader);
    assert!(allowed(&r), "worker 0 after the hold: {}\n{}", show(&r), bed.diagnostics());
    bed.on_both_workers(&tokens.trader, 2, "the trader after the hold", |_, r| allowed(r));
}
