//! DPoP (RFC 9449) end to end with real components: the release `.wasm` in real Envoy with two workers
//! (`--concurrency 2`) on `envoy/dpop.yaml`, and a real DPoP client from PyPI, requests-oauth2client
//! (`tests/dpop/client.py`, installed by `make dpop-tools`), in front of the test bed's echo upstream.
//!
//! One Envoy serves every test of this binary, with two listeners generated from `envoy/dpop.yaml` (its own plugin
//! configuration each, in a VM of its own):
//!
//! - `gateway`: the example without nonces, its origin `https://api.trading.example` (proofs name it whatever address
//!   the client connects to), plus a second issuer with `dpop: allowed` (so both challenges are offered) and
//!   `forward.credential` off. Fresh proofs are allowed on both workers and the proof is not forwarded; a proof
//!   replayed on a connection the *other* worker accepted is refused 401 `invalid_dpop_proof` (the replay cache in
//!   Envoy's shared data); a bound token presented as `Bearer` is refused `invalid_token` on both workers.
//! - `nonce`: the example as shipped (`dpop.nonce`, the workers' shared random secret), its origin the loopback
//!   address the Python client connects to, which its library puts in `htu`, plus the same `allowed` issuer (so
//!   answers challenge both schemes, the one the request used first). A proof without a nonce is answered
//!   401 `use_dpop_nonce` with a `DPoP-Nonce` by each worker, and each worker's nonce is accepted by the other;
//!   requests-oauth2client's `DPoPToken` gets its 401, retries by itself with the nonce and gets 200, which Envoy's
//!   own counters and access log confirm (one refusal for the missing nonce, then the allowed requests).
//!
//! Which worker served a request is read from Envoy's per-worker listener stats ([`Envoy::served_by`]), so the tests
//! that send requests take turns (one lock). They need Envoy, the `.wasm` and the client's packages
//! (`make envoy wasm dpop-tools`), so they are `#[ignore]`d for a plain `cargo test` and run with `-- --ignored`;
//! the check of the generated configuration needs none of them and always runs.

use agent_iam::mint::{self, ProofClaims, SigningKey};
use agent_iam::token::dpop::thumbprint;
use agent_iam::token::{Algorithm, KeySet};
use agent_iam_tests::demo::{self, AUDIENCE, DemoKeys, ES256_KID, ISSUER, RESEARCH, TRADER};
use agent_iam_tests::python::Venv;
use agent_iam_tests::testbed::{self, EchoUpstream, Envoy, HttpResponse};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The resource every test asks for (the demo policy lets the trading domain's agents read quotes).
const PATH: &str = "/quotes/AAPL";
/// The external origin `envoy/dpop.yaml` names, kept on the `gateway` listener.
const ORIGIN: &str = "https://api.trading.example";
/// The issuer the `gateway` listener adds, with `dpop: allowed`.
const PARTNER_ISSUER: &str = "https://partners.trading.example";
const PARTNER_KID: &str = "partner-es256";
/// The example's realm (which a challenge, when it names one, must name) and proof algorithms (challenges' `algs`).
const REALM: &str = "trading-api";
const ALGS: &str = "ES256 EdDSA PS256";

/// The Python with requests-oauth2client (`make dpop-tools`).
const VENV: Venv = Venv { env_var: "DPOP_PYTHON", make_target: "dpop-tools", what: "requests-oauth2client is" };

fn template() -> String {
    std::fs::read_to_string(agent_iam_host::workspace_root().join("envoy/dpop.yaml")).unwrap()
}

/// Ports of the gateway under test.
#[derive(Debug, Clone, Copy)]
struct Layout {
    admin: u16,
    upstream: u16,
    /// The listener without nonces.
    gateway: u16,
    /// The listener with nonces.
    nonce: u16,
}

impl Layout {
    /// Free ports for Envoy, around the echo upstream's (bound already, so nothing can take it meanwhile).
    fn free(upstream: &EchoUpstream) -> Result<Layout> {
        Ok(Layout {
            admin: testbed::free_port()?,
            upstream: upstream.port(),
            gateway: testbed::free_port()?,
            nonce: testbed::free_port()?,
        })
    }
}

/// `envoy/dpop.yaml` as the tests run it (JSON, which Envoy reads as YAML): these ports, the absolute `.wasm` path,
/// the issuer's generated keys, and two listeners made from the example's one (see the module's header).
fn render(template: &str, keys: &DemoKeys, layout: Layout, wasm: &Path) -> Result<Value> {
    let mut config: Value = serde_norway::from_str(template)?;
    config["admin"]["address"]["socket_address"]["port_value"] = json!(layout.admin);
    let upstream = config
        .pointer_mut("/static_resources/clusters/0/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address")
        .context("the upstream's address")?;
    upstream["socket_address"]["port_value"] = json!(layout.upstream);
    let listener = config.pointer("/static_resources/listeners/0").context("a listener")?.clone();
    let mut example = demo::plugin_config_in(template)?;
    example["issuers"][0]["jwks"] = keys.jwks();

    let mut plain = example.clone();
    plain["dpop"].as_object_mut().context("dpop")?.remove("nonce").context("dpop.nonce")?;
    plain["forward"]["credential"] = json!(false);
    let partner = json!({
        "issuer": PARTNER_ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["ES256"],
        "max_lifetime_seconds": 3600,
        "dpop": "allowed",
        "jwks": {"keys": [keys.rotated.public_jwk(Some(PARTNER_KID))]},
    });
    plain["issuers"].as_array_mut().context("issuers")?.push(partner.clone());
    // The partner, which takes bearer tokens too, makes every answer challenge both schemes: the client library
    // must still see its DPoP challenge (it comes first for a DPoP request).
    let mut with_nonces = example;
    with_nonces["dpop"]["origin"] = json!(format!("http://127.0.0.1:{}", layout.nonce));
    with_nonces["issuers"].as_array_mut().context("issuers")?.push(partner);

    config["static_resources"]["listeners"] = json!([
        listener_for(&listener, "gateway", layout.gateway, &plain, wasm)?,
        listener_for(&listener, "nonce", layout.nonce, &with_nonces, wasm)?,
    ]);
    Ok(config)
}

/// The example's listener as `name` on `port`, with `plugin` as the plugin's configuration in a VM of its own.
fn listener_for(template: &Value, name: &str, port: u16, plugin: &Value, wasm: &Path) -> Result<Value> {
    let mut listener = template.clone();
    listener["name"] = json!(name);
    listener["address"]["socket_address"]["port_value"] = json!(port);
    let hcm = listener.pointer_mut("/filter_chains/0/filters/0/typed_config").context("the connection manager")?;
    hcm["stat_prefix"] = json!(name);
    let format = hcm
        .pointer_mut("/access_log/0/typed_config/log_format/text_format_source/inline_string")
        .context("the access log's format")?;
    let line = format.as_str().context("the access log's format")?.replacen("access: ", &format!("access: {name} "), 1);
    *format = json!(line);
    let wasm_config = hcm.pointer_mut("/http_filters/0/typed_config/config").context("the Wasm filter")?;
    if wasm_config["vm_config"]["code"]["local"]["filename"] != "target/wasm32-wasip1/release/agent_iam.wasm" {
        bail!("the example loads another .wasm");
    }
    wasm_config["vm_config"]["code"]["local"]["filename"] = json!(wasm.display().to_string());
    wasm_config["vm_config"]["vm_id"] = json!(name);
    wasm_config["configuration"]["value"] = json!(plugin.to_string());
    Ok(listener)
}

/// The plugin configuration of the listener named `name` in a rendered config.
fn plugin_of(config: &Value, name: &str) -> Value {
    let listeners = config["static_resources"]["listeners"].as_array().unwrap();
    let listener = listeners.iter().find(|l| l["name"] == name).unwrap();
    let value = listener
        .pointer("/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value")
        .unwrap();
    serde_json::from_str(value.as_str().unwrap()).unwrap()
}

/// envoy/dpop.yaml: the demo policy, one issuer that requires DPoP, the `dpop` section with its origin and nonces;
/// the tests' configuration is made of it as the module's header says, with every port and the `.wasm` replaced.
#[test]
fn dpop_config_requires_dpop_with_nonces_and_the_test_config_is_made_of_it() {
    let text = template();
    let example = demo::plugin_config_in(&text).unwrap();
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(agent_iam_host::workspace_root().join("policies/demo.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(example["policy"], policy);
    assert_eq!(example["issuers"].as_array().unwrap().len(), 1);
    assert_eq!(example["issuers"][0]["issuer"], ISSUER);
    assert_eq!(example["issuers"][0]["dpop"], "required");
    assert_eq!(example["issuers"][0]["jwks"], serde_json::from_str::<Value>(demo::PLACEHOLDER_JWKS).unwrap());
    assert_eq!(
        example["dpop"],
        json!({"origin": ORIGIN, "algorithms": ["ES256", "EdDSA", "PS256"], "max_age_seconds": 60,
               "clock_skew_seconds": 5, "replay_cache_size": 65536, "nonce": {"lifetime_seconds": 300}})
    );

    let keys = DemoKeys::generate().unwrap();
    let layout = Layout { admin: 4001, upstream: 4002, gateway: 4003, nonce: 4004 };
    let config = render(&text, &keys, layout, Path::new("/abs/agent_iam.wasm")).unwrap();
    let rendered = config.to_string();
    for port in [9901, 10000, 10001] {
        assert!(!rendered.contains(&format!("\"port_value\":{port}")), "port {port} not substituted");
    }
    assert!(!rendered.contains("target/wasm32-wasip1"));
    assert!(!rendered.contains("placeholder"));
    let listeners = config["static_resources"]["listeners"].as_array().unwrap();
    let names: Vec<&Value> = listeners.iter().map(|l| &l["name"]).collect();
    assert_eq!(names, ["gateway", "nonce"]);
    let ports: Vec<&Value> = listeners.iter().map(|l| &l["address"]["socket_address"]["port_value"]).collect();
    assert_eq!(ports, [4003, 4004]);

    let plain = plugin_of(&config, "gateway");
    assert_eq!(plain["dpop"]["origin"], ORIGIN);
    assert!(plain["dpop"].get("nonce").is_none());
    assert_eq!(plain["forward"], json!({"filter_state": true, "credential": false}));
    let modes: Vec<(&Value, &Value)> =
        plain["issuers"].as_array().unwrap().iter().map(|i| (&i["issuer"], &i["dpop"])).collect();
    assert_eq!(modes, [(&json!(ISSUER), &json!("required")), (&json!(PARTNER_ISSUER), &json!("allowed"))]);
    assert_eq!(plain["issuers"][0]["jwks"], keys.jwks());

    let mut with_nonces = plugin_of(&config, "nonce");
    assert_eq!(with_nonces["dpop"]["origin"], "http://127.0.0.1:4004");
    with_nonces["dpop"]["origin"] = json!(ORIGIN);
    with_nonces["issuers"][0]["jwks"] = example["issuers"][0]["jwks"].clone();
    let partner = with_nonces["issuers"].as_array_mut().unwrap().pop().unwrap();
    assert_eq!(partner["dpop"], "allowed");
    assert_eq!(with_nonces, example, "the nonce listener runs the example as shipped, and the partner issuer");
}

// ---------------------------------------------------------------------------------------------------------
// The gateway every test of this binary shares.

/// One Envoy (two workers, two listeners) and the echo upstream, started once.
struct Gateway {
    envoy: Envoy,
    _upstream: EchoUpstream,
    layout: Layout,
    keys: DemoKeys,
    dir: PathBuf,
}

static GATEWAY: LazyLock<Result<Gateway, String>> = LazyLock::new(|| {
    let dir = agent_iam_host::workspace_root().join("target/e2e/dpop");
    let (tx, rx) = std::sync::mpsc::channel();
    // Envoy gets SIGTERM when the thread that started it ends: this one never does, so Envoy lives as long as the
    // test binary.
    std::thread::Builder::new()
        .name("dpop-gateway".into())
        .spawn(move || {
            let _ = tx.send(start(&dir).map_err(|e| format!("{e:#}")));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
});

fn start(dir: &Path) -> Result<Gateway> {
    let wasm = agent_iam_host::plugin_wasm_path();
    if !wasm.exists() {
        bail!("{} not found (run `make wasm`)", wasm.display());
    }
    let keys = DemoKeys::generate()?;
    let upstream = EchoUpstream::start(0)?;
    let layout = Layout::free(&upstream)?;
    let config = render(&template(), &keys, layout, &wasm)?;
    let envoy = Envoy::start_with_workers(
        &testbed::envoy_binary(),
        &serde_json::to_string_pretty(&config)?,
        layout.admin,
        dir,
        2,
    )?;
    Ok(Gateway { envoy, _upstream: upstream, layout, keys, dir: dir.to_owned() })
}

fn gateway() -> &'static Gateway {
    GATEWAY.as_ref().unwrap_or_else(|e| panic!("the DPoP gateway did not start: {e}"))
}

/// Tests take turns: which worker served a request is told by the listener's connection counts, and counters are
/// compared before and after.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh ES256 key (an agent's DPoP key).
fn random_key() -> SigningKey {
    loop {
        if let Some(key) = SigningKey::from_seed(Algorithm::ES256, demo::random_seed().unwrap()) {
            return key;
        }
    }
}

/// A `jti` never used before.
fn fresh_jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = demo::random_seed().unwrap();
    let hex: String = seed[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{}", N.fetch_add(1, Ordering::SeqCst))
}

/// A token for `sub` from the demo issuer, bound to the key with thumbprint `jkt` (none: unbound).
fn token(sub: &str, jkt: Option<&str>) -> String {
    let now = demo::now();
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 1800});
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({"jkt": jkt});
    }
    gateway().keys.es256.sign_jwt(Some(ES256_KID), &claims)
}

/// A token for `sub` from the partner issuer (`dpop: allowed`), bound to `jkt` if given.
fn partner_token(sub: &str, jkt: Option<&str>) -> String {
    let now = demo::now();
    let mut claims = json!({"iss": PARTNER_ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 1800});
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({"jkt": jkt});
    }
    gateway().keys.rotated.sign_jwt(Some(PARTNER_KID), &claims)
}

/// A fresh proof for `GET htu` with `token`, signed by `key`, carrying `nonce` if given.
fn proof(key: &SigningKey, htu: &str, token: &str, nonce: Option<&str>) -> String {
    let jti = fresh_jti();
    key.dpop_proof(&ProofClaims { jti: &jti, htm: "GET", htu, iat: demo::now(), token: Some(token), nonce })
}

impl Gateway {
    /// What proofs to `listener` name as `htu` for [`PATH`].
    fn htu(&self, listener: u16) -> String {
        if listener == self.layout.nonce {
            format!("http://127.0.0.1:{listener}{PATH}")
        } else {
            format!("{ORIGIN}{PATH}")
        }
    }

    /// `GET PATH` on a fresh connection to `listener` with `headers`, and the worker that served it.
    fn get(&self, listener: u16, headers: &[(&str, &str)]) -> (usize, HttpResponse) {
        self.envoy
            .served_by(listener, || testbed::http_request(listener, "GET", PATH, headers, b""))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.diagnostics()))
    }

    /// With `Authorization: DPoP <token>` and `DPoP: <proof>`.
    fn dpop(&self, listener: u16, token: &str, proof: &str) -> (usize, HttpResponse) {
        let authorization = format!("DPoP {token}");
        self.get(listener, &[("authorization", &authorization), ("dpop", proof)])
    }

    /// With `Authorization: Bearer <token>` and `extra` headers.
    fn bearer(&self, listener: u16, token: &str, extra: &[(&str, &str)]) -> (usize, HttpResponse) {
        let authorization = format!("Bearer {token}");
        let mut headers = vec![("authorization", authorization.as_str())];
        headers.extend_from_slice(extra);
        self.get(listener, &headers)
    }

    /// A counter (0 before it exists).
    fn counter(&self, name: &str) -> u64 {
        self.envoy.stat(name).unwrap().unwrap_or(0)
    }

    /// The plugin's counter `name` once it reads `expected` (it hands its counts to Envoy at most once a second),
    /// or what it reads after 5 s.
    fn plugin_counter(&self, name: &str, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.counter(name);
            if value == expected || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The lines of Envoy's access log (stdout, which Envoy writes out every 10 s) that contain `needle`, once there
    /// are `n` of them or after 15 s.
    fn access_log(&self, needle: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<String> = self
                .envoy
                .log()
                .lines()
                .filter(|l| l.starts_with("access: ") && l.contains(needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn diagnostics(&self) -> String {
        let stats = self.envoy.stats("agent_iam").unwrap_or_default();
        let stats: Vec<String> = stats.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        format!("stats:\n{}\nEnvoy log:\n{}", stats.join("\n"), self.envoy.log_tail(40))
    }
}

/// The `WWW-Authenticate` challenges of an answer, in order.
fn challenges(r: &HttpResponse) -> Vec<&str> {
    r.headers.iter().filter(|(n, _)| n == "www-authenticate").map(|(_, v)| v.as_str()).collect()
}

/// A challenge read: its scheme and its parameters (`name="value"`, as the plugin writes every one).
fn parse_challenge(challenge: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, mut rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("not name=\"value\": {challenge:?}"));
        let (value, after) = after.split_once('"').unwrap_or_else(|| panic!("an unterminated value: {challenge:?}"));
        assert!(
            params.insert(name.trim().to_owned(), value.to_owned()).is_none(),
            "a repeated parameter: {challenge:?}"
        );
        rest = after.strip_prefix(',').unwrap_or(after).trim_start();
    }
    (scheme.to_owned(), params)
}

/// Asserts that the answer's challenges are exactly one for each scheme of `expected`, in any order, each with exactly
/// the parameters given there, and `realm` (optional) the configured one.
fn assert_challenges(r: &HttpResponse, expected: &[(&str, &[(&str, &str)])]) {
    let found: BTreeMap<String, BTreeMap<String, String>> = challenges(r).into_iter().map(parse_challenge).collect();
    assert_eq!(found.len(), challenges(r).len(), "a scheme challenged twice: {}", dump(r));
    let schemes: Vec<&str> = found.keys().map(String::as_str).collect();
    let mut wanted: Vec<&str> = expected.iter().map(|(scheme, _)| *scheme).collect();
    wanted.sort_unstable();
    assert_eq!(schemes, wanted, "{}", dump(r));
    for (scheme, params) in expected {
        let mut got = found[*scheme].clone();
        if let Some(realm) = got.remove("realm") {
            assert_eq!(realm, REALM, "{}", dump(r));
        }
        let want: BTreeMap<String, String> = params.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        assert_eq!(got, want, "the {scheme} challenge: {}", dump(r));
    }
}

/// The body's `error`, and its `error_description`, which the challenge carrying the error repeats.
fn body_error(r: &HttpResponse) -> (String, String) {
    let body = r.json();
    let text = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("no {name}: {}", dump(r))).to_owned();
    (text("error"), text("error_description"))
}

/// What the upstream received as header `name`: every value.
fn upstream_saw(r: &HttpResponse, name: &str) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .map(|h| h.iter().filter(|p| p[0] == name).map(|p| p[1].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

fn dump(r: &HttpResponse) -> String {
    format!("{} {:?} {}", r.status, r.headers, String::from_utf8_lossy(&r.body))
}

/// A 401 for a DPoP presentation to the `gateway` listener: `error` in the body and on the `DPoP` challenge (which
/// names the algorithms), and the `Bearer` challenge the partner issuer brings, without an error.
fn assert_dpop_refused(r: &HttpResponse, error: &str) {
    assert_eq!(r.status, 401, "{}", dump(r));
    let (code, description) = body_error(r);
    assert_eq!(code, error, "{}", dump(r));
    assert_challenges(
        r,
        &[("Bearer", &[]), ("DPoP", &[("error", error), ("error_description", &description), ("algs", ALGS)])],
    );
}

// ---------------------------------------------------------------------------------------------------------

/// (a) A fresh proof per request is allowed on both workers, for the issuer that requires DPoP and for the one that
/// allows it; the upstream sees the verified agent, and neither the token nor the proof (`forward.credential` off).
/// An unbound token of the issuer that allows DPoP is still taken as `Bearer`.
#[test]
#[ignore = "needs Envoy, the release .wasm and requests-oauth2client (make envoy wasm dpop-tools): run with -- --ignored"]
fn fresh_proofs_are_allowed_on_both_workers() {
    let g = gateway();
    let _turn = turn();
    let key = random_key();
    let jkt = key.jkt().unwrap();
    let trader = token(TRADER, Some(&jkt));
    let partner = partner_token(RESEARCH, Some(&jkt));
    let htu = g.htu(g.layout.gateway);
    let mut served = [0usize; 2];
    for i in 0..200 {
        let (token, agent) = if i % 3 == 2 { (&partner, RESEARCH) } else { (&trader, TRADER) };
        let (worker, r) = g.dpop(g.layout.gateway, token, &proof(&key, &htu, token, None));
        assert_eq!(r.status, 200, "request {} (worker {worker}): {}\n{}", i + 1, dump(&r), g.diagnostics());
        assert_eq!(upstream_saw(&r, "x-agent-iam-agent"), [agent], "{}", dump(&r));
        assert!(upstream_saw(&r, "authorization").is_empty(), "the token was forwarded: {}", dump(&r));
        assert!(upstream_saw(&r, "dpop").is_empty(), "the proof was forwarded: {}", dump(&r));
        served[worker] += 1;
        if served.iter().all(|&n| n >= 3) {
            break;
        }
    }
    assert!(served.iter().all(|&n| n >= 3), "200 fresh connections were served by the workers {served:?}");

    let (_, r) = g.bearer(g.layout.gateway, &partner_token(RESEARCH, None), &[]);
    assert_eq!(r.status, 200, "an unbound token of the issuer that allows DPoP, as Bearer: {}", dump(&r));
    assert_eq!(upstream_saw(&r, "x-agent-iam-agent"), [RESEARCH]);
}

/// (b) A proof accepted by one worker and sent again on a connection the other worker accepted is refused there:
/// 401, `WWW-Authenticate: DPoP ... error="invalid_dpop_proof"`, counted as `dpop_replayed`. Replays to the worker
/// that accepted it are refused the same way.
#[test]
#[ignore = "needs Envoy, the release .wasm and requests-oauth2client (make envoy wasm dpop-tools): run with -- --ignored"]
fn a_proof_replayed_on_the_other_worker_is_refused() {
    let g = gateway();
    let _turn = turn();
    let key = random_key();
    let trader = token(TRADER, Some(&key.jkt().unwrap()));
    let replayed_before = g.counter("agent_iam.denied.dpop_replayed");
    let captured = proof(&key, &g.htu(g.layout.gateway), &trader, None);
    let (first, r) = g.dpop(g.layout.gateway, &trader, &captured);
    assert_eq!(r.status, 200, "the proof's first use: {}\n{}", dump(&r), g.diagnostics());

    let mut refused = [0usize; 2];
    for _ in 0..200 {
        let (worker, r) = g.dpop(g.layout.gateway, &trader, &captured);
        assert_dpop_refused(&r, "invalid_dpop_proof");
        refused[worker] += 1;
        if worker != first {
            break;
        }
    }
    let other = 1 - first;
    eprintln!("the proof was accepted by worker {first}; replays refused by the workers {refused:?}");
    assert!(refused[other] >= 1, "no replay reached worker {other}: refused by the workers {refused:?}");
    let refusals = refused.iter().sum::<usize>() as u64;
    assert_eq!(
        g.plugin_counter("agent_iam.denied.dpop_replayed", replayed_before + refusals),
        replayed_before + refusals,
        "{}",
        g.diagnostics()
    );

    // The same token with a fresh proof is still allowed: only the proof was spent.
    let (_, r) = g.dpop(g.layout.gateway, &trader, &proof(&key, &g.htu(g.layout.gateway), &trader, None));
    assert_eq!(r.status, 200, "{}", dump(&r));
}

/// (c) A token bound with `cnf.jkt` presented as `Bearer` is refused `invalid_token` on both workers, with a valid
/// proof beside it or not, and whether its issuer requires DPoP or only allows it (RFC 9449 §7.2); the error is on
/// the `Bearer` challenge, the scheme used. An unbound token of the issuer that requires DPoP is refused too.
#[test]
#[ignore = "needs Envoy, the release .wasm and requests-oauth2client (make envoy wasm dpop-tools): run with -- --ignored"]
fn a_bound_token_presented_as_bearer_is_refused() {
    let g = gateway();
    let _turn = turn();
    let key = random_key();
    let jkt = key.jkt().unwrap();
    let htu = g.htu(g.layout.gateway);
    let before = g.counter("agent_iam.denied.dpop_bound_token_as_bearer");
    let mut refused = [0usize; 2];
    for i in 0..200 {
        let bound = if i % 2 == 0 { token(TRADER, Some(&jkt)) } else { partner_token(RESEARCH, Some(&jkt)) };
        let valid_proof = proof(&key, &htu, &bound, None);
        let extra: &[(&str, &str)] = if i % 4 < 2 { &[] } else { &[("dpop", valid_proof.as_str())] };
        let (worker, r) = g.bearer(g.layout.gateway, &bound, extra);
        assert_eq!(r.status, 401, "{}", dump(&r));
        let (error, description) = body_error(&r);
        assert_eq!(error, "invalid_token", "{}", dump(&r));
        assert_challenges(
            &r,
            &[
                ("Bearer", &[("error", "invalid_token"), ("error_description", &description)]),
                ("DPoP", &[("algs", ALGS)]),
            ],
        );
        refused[worker] += 1;
        if refused.iter().all(|&n| n >= 2) && i >= 3 {
            break;
        }
    }
    assert!(refused.iter().all(|&n| n >= 2), "the refusals were served by the workers {refused:?}");
    let refusals = refused.iter().sum::<usize>() as u64;
    assert_eq!(
        g.plugin_counter("agent_iam.denied.dpop_bound_token_as_bearer", before + refusals),
        before + refusals,
        "{}",
        g.diagnostics()
    );

    let required = g.counter("agent_iam.denied.dpop_required");
    let (_, r) = g.bearer(g.layout.gateway, &token(TRADER, None), &[]);
    assert_eq!(r.status, 401, "{}", dump(&r));
    let (error, description) = body_error(&r);
    assert_eq!(error, "invalid_token", "{}", dump(&r));
    assert_challenges(
        &r,
        &[("Bearer", &[("error", "invalid_token"), ("error_description", &description)]), ("DPoP", &[("algs", ALGS)])],
    );
    assert_eq!(g.plugin_counter("agent_iam.denied.dpop_required", required + 1), required + 1, "{}", g.diagnostics());
}

/// (d) Nonces: a proof without one is answered 401 `use_dpop_nonce` with a `DPoP-Nonce` (and `Cache-Control:
/// no-store`) by each worker, the `DPoP` challenge first, with the error, then the partner's `Bearer`; a fresh proof with
/// either worker's nonce is allowed on both workers; a nonce the gateway never issued is answered like a missing one.
#[test]
#[ignore = "needs Envoy, the release .wasm and requests-oauth2client (make envoy wasm dpop-tools): run with -- --ignored"]
fn the_nonce_one_worker_issues_is_accepted_by_both() {
    let g = gateway();
    let _turn = turn();
    let listener = g.layout.nonce;
    let htu = g.htu(listener);
    let key = random_key();
    let trader = token(TRADER, Some(&key.jkt().unwrap()));
    let use_nonce = |r: &HttpResponse| -> String {
        assert_eq!(r.status, 401, "{}", dump(r));
        let (error, description) = body_error(r);
        assert_eq!(error, "use_dpop_nonce", "{}", dump(r));
        assert_challenges(
            r,
            &[
                ("DPoP", &[("error", "use_dpop_nonce"), ("error_description", &description), ("algs", ALGS)]),
                ("Bearer", &[]),
            ],
        );
        assert!(challenges(r)[0].starts_with("DPoP "), "the scheme used is challenged first: {}", dump(r));
        assert_eq!(r.header("cache-control"), Some("no-store"), "{}", dump(r));
        let nonce = r.header("dpop-nonce").unwrap_or_else(|| panic!("no DPoP-Nonce: {}", dump(r)));
        assert!(!nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        nonce.to_owned()
    };

    // Each worker answers a proof without a nonce with the nonce to use.
    let missing = g.counter("agent_iam.denied.dpop_nonce_missing");
    let invalid = g.counter("agent_iam.denied.dpop_nonce_invalid");
    let mut asked = 0;
    let mut issued: [Option<String>; 2] = [None, None];
    for _ in 0..200 {
        let (worker, r) = g.dpop(listener, &trader, &proof(&key, &htu, &trader, None));
        issued[worker] = Some(use_nonce(&r));
        asked += 1;
        if issued.iter().all(Option::is_some) {
            break;
        }
    }
    let issued: Vec<String> = issued
        .into_iter()
        .enumerate()
        .map(|(w, n)| n.unwrap_or_else(|| panic!("worker {w} served none of 200 fresh connections")))
        .collect();

    // Each worker's nonce is accepted by the other worker (and by itself, on the way).
    for (from, nonce) in issued.iter().enumerate() {
        let mut allowed = [0usize; 2];
        for _ in 0..200 {
            let (worker, r) = g.dpop(listener, &trader, &proof(&key, &htu, &trader, Some(nonce)));
            assert_eq!(
                r.status,
                200,
                "worker {worker} with worker {from}'s nonce {nonce}: {}\n{}",
                dump(&r),
                g.diagnostics()
            );
            assert_eq!(upstream_saw(&r, "x-agent-iam-agent"), [TRADER]);
            allowed[worker] += 1;
            if allowed[1 - from] >= 1 {
                break;
            }
        }
        assert!(allowed[1 - from] >= 1, "worker {from}'s nonce never reached the other worker: {allowed:?}");
    }

    // A nonce this gateway never issued: a fresh one in the answer.
    let forged = "AQAAAABpVQKA3vu0n5YwFZ2f3yHBW_jeLQ";
    let (_, r) = g.dpop(listener, &trader, &proof(&key, &htu, &trader, Some(forged)));
    let fresh = use_nonce(&r);
    assert_ne!(fresh, forged);
    let (_, r) = g.dpop(listener, &trader, &proof(&key, &htu, &trader, Some(&fresh)));
    assert_eq!(r.status, 200, "{}", dump(&r));
    assert_eq!(g.plugin_counter("agent_iam.denied.dpop_nonce_missing", missing + asked), missing + asked);
    assert_eq!(g.plugin_counter("agent_iam.denied.dpop_nonce_invalid", invalid + 1), invalid + 1);
}

/// What `tests/dpop/client.py keygen` printed.
struct ClientKey {
    path: PathBuf,
    jkt: String,
    public_jwk: Value,
}

fn run_python(args: &[&str], token: Option<&str>) -> Value {
    VENV.check().unwrap();
    let mut command = VENV.command(&agent_iam_host::workspace_root().join("tests/dpop/client.py"));
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // The token goes through the environment, not the command line.
    command.env_remove("DPOP_ACCESS_TOKEN");
    if let Some(token) = token {
        command.env("DPOP_ACCESS_TOKEN", token);
    }
    let out = command.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "client.py {args:?} exited with {}:\n{stdout}\n{stderr}", out.status);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client.py {args:?}: {e}:\n{stdout}\n{stderr}"))
}

fn keygen(dir: &Path) -> ClientKey {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("client-key.json");
    let _ = std::fs::remove_file(&path);
    let printed = run_python(&["keygen", "--key", path.to_str().unwrap(), "--alg", "ES256"], None);
    ClientKey { path, jkt: printed["jkt"].as_str().unwrap().to_owned(), public_jwk: printed["public_jwk"].clone() }
}

/// requests-oauth2client, a DPoP client from PyPI, through Envoy: its own key (`DPoPKey.generate`), whose
/// thumbprint (the library's) the test binds the token to, and its own proofs (`DPoPToken` as the requests auth
/// handler). The first request has no nonce: the gateway answers 401 `use_dpop_nonce` with a `DPoP-Nonce`, the
/// library retries by itself with a new proof carrying it and gets 200; the next requests carry the nonce at once.
/// Not taken on the client's word: Envoy's counters for the listener and the plugin's `dpop_nonce_missing`, and
/// Envoy's access log (the client's user agent on every line), show one refusal then only allowed requests.
#[test]
#[ignore = "needs Envoy, the release .wasm and requests-oauth2client (make envoy wasm dpop-tools): run with -- --ignored"]
fn requests_oauth2client_gets_through_after_its_own_nonce_retry() {
    let g = gateway();
    let _turn = turn();
    let key = keygen(&g.dir.join("client"));

    // The library's thumbprint is the plugin's, computed from the public key it printed.
    let set = KeySet::from_value(&json!({"keys": [key.public_jwk]})).unwrap();
    let ours = thumbprint::jkt(&set.iter().next().unwrap().key).unwrap();
    assert_eq!(ours, key.jkt, "{}", key.public_jwk);

    let trader = token(TRADER, Some(&key.jkt));
    let url = format!("http://127.0.0.1:{}{PATH}", g.layout.nonce);
    let user_agent = format!("agent-iam-e2e-dpop/{}", fresh_jti());
    let calls = 3;
    let counters = ["http.nonce.downstream_rq_2xx", "http.nonce.downstream_rq_4xx"];
    let before: Vec<u64> = counters.iter().map(|c| g.counter(c)).collect();
    let nonce_missing = g.counter("agent_iam.denied.dpop_nonce_missing");

    let run = run_python(
        &[
            "call",
            "--key",
            key.path.to_str().unwrap(),
            "--url",
            &url,
            "--calls",
            &calls.to_string(),
            "--user-agent",
            &user_agent,
        ],
        Some(&trader),
    );
    let report = serde_json::to_string_pretty(&run).unwrap();
    assert_eq!(run["jkt"], key.jkt.as_str());

    // What the library's caller got: 200 each time, from the upstream, as the trader; the example forwards the
    // credential, and the proof with it.
    let got: Vec<Option<u64>> = run["calls"].as_array().unwrap().iter().map(|c| c["status"].as_u64()).collect();
    assert_eq!(got, vec![Some(200); calls], "{report}");
    for call in run["calls"].as_array().unwrap() {
        let seen = |name: &str| -> Vec<&str> {
            let headers = call["body"]["headers"].as_array().unwrap();
            headers.iter().filter(|h| h[0] == name).map(|h| h[1].as_str().unwrap()).collect()
        };
        assert_eq!(seen("x-agent-iam-agent"), [TRADER], "{report}");
        assert_eq!(seen("authorization"), [format!("DPoP {trader}")], "{report}");
        assert_eq!(seen("dpop").len(), 1, "{report}");
    }

    // On the wire (the client's transport): one 401 use_dpop_nonce, the library's retry with the nonce, then the
    // other calls with it at once; every proof fresh, for this URL and this token.
    let exchanges = run["exchanges"].as_array().unwrap();
    let statuses: Vec<Option<u64>> = exchanges.iter().map(|e| e["status"].as_u64()).collect();
    let mut expected = vec![Some(401)];
    expected.extend(vec![Some(200); calls]);
    assert_eq!(statuses, expected, "{report}");
    let refusal = &exchanges[0];
    let nonce = refusal["dpop_nonce"].as_str().unwrap_or_else(|| panic!("no DPoP-Nonce\n{report}"));
    let (scheme, params) = parse_challenge(refusal["www_authenticate"].as_str().unwrap());
    assert_eq!(
        (scheme.as_str(), params.get("error").map(String::as_str)),
        ("DPoP", Some("use_dpop_nonce")),
        "{report}"
    );
    assert_eq!(refusal["proof"]["nonce"], Value::Null, "{report}");
    assert!(exchanges[1..].iter().all(|e| e["proof"]["nonce"] == nonce), "{report}");
    assert_eq!(run["rs_nonce"], nonce, "{report}");
    let ath = mint::ath(&trader);
    let mut jtis: Vec<&str> = Vec::new();
    for e in exchanges {
        assert_eq!(e["proof"]["htm"], "GET", "{report}");
        assert_eq!(e["proof"]["htu"], url.as_str(), "{report}");
        assert_eq!(e["proof"]["ath"], ath.as_str(), "{report}");
        jtis.push(e["proof"]["jti"].as_str().unwrap());
    }
    jtis.sort_unstable();
    jtis.dedup();
    assert_eq!(jtis.len(), exchanges.len(), "a proof was reused: {report}");

    // Envoy's side: the listener answered exactly one 4xx and `calls` 2xx, the plugin counted one missing nonce,
    // and its access log has the client's requests in order: the refusal, then the allowed ones.
    let after: Vec<u64> = counters.iter().map(|c| g.counter(c)).collect();
    assert_eq!(after[0] - before[0], calls as u64, "{counters:?}: {before:?} -> {after:?}");
    assert_eq!(after[1] - before[1], 1, "{counters:?}: {before:?} -> {after:?}");
    assert_eq!(
        g.plugin_counter("agent_iam.denied.dpop_nonce_missing", nonce_missing + 1),
        nonce_missing + 1,
        "{}",
        g.diagnostics()
    );
    let lines = g.access_log(&user_agent, calls + 1);
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|l| {
            let rest = l.strip_prefix(&format!("access: nonce GET {PATH} ")).unwrap_or_else(|| panic!("{l}"));
            rest.split(" agent=").next().unwrap()
        })
        .collect();
    let mut expected = vec!["401 agent_iam.dpop_nonce_missing"];
    expected.extend(vec!["200 via_upstream"; calls]);
    assert_eq!(outcomes, expected, "{}\n{report}", lines.join("\n"));
}
