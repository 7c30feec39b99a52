//! The gateway demo: demo keys and tokens, `envoy/demo.yaml` rendered with them, and a scripted scenario
//! from the trading use case; then the same policy in dry-run mode, and key rotation against
//! `envoy/remote-jwks.yaml` with a JWKS endpoint the demo controls. Used by `make demo`, `make up` and the
//! end-to-end tests, so the demo a new user sees is exactly what the tests check.

use crate::testbed::{self, EchoUpstream, Envoy, HttpResponse, JwksServer};
use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The JWKS `envoy/demo.yaml` ships with: one P-256 key nobody holds the private key of (see the comment in
/// the file for its derivation). Rendering replaces it with the generated demo keys.
pub const PLACEHOLDER_JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "placeholder", "x": "8HpFOIR2t_bK0h7x15g_rnxvg4W7b_k7d5_5a0DDJLQ", "y": "fgx6ts-MmE-tDPpiBmZsbQhbxLVKiclZ3PG4bNm7wXY"}]}"#;
/// The demo issuer, as configured in `envoy/demo.yaml`.
pub const ISSUER: &str = "https://idp.trading.example";
/// The demo audience.
pub const AUDIENCE: &str = "trading-api";
/// The trading agent.
pub const TRADER: &str = "spiffe://trading.example/agent/trader";
/// The research agent.
pub const RESEARCH: &str = "spiffe://trading.example/agent/research";
/// The human the trader acts for in the delegation step.
pub const ALICE: &str = "user:alice@trading.example";

/// The kid of the issuer's ES256 key.
pub const ES256_KID: &str = "demo-es256";
/// The kid of the issuer's Ed25519 key.
pub const ED25519_KID: &str = "demo-ed25519";
/// The kid of the ES256 key the issuer rotates to.
pub const ROTATED_KID: &str = "demo-es256-2";

/// Ports of one demo gateway.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Envoy's listener.
    pub listener: u16,
    /// The echo upstream.
    pub upstream: u16,
    /// Envoy's admin endpoint.
    pub admin: u16,
    /// The JWKS endpoint (`envoy/remote-jwks.yaml` and `envoy/reload.yaml` only).
    pub jwks: u16,
}

impl Ports {
    /// The ports written in `envoy/demo.yaml` (and the other configs in `envoy/`).
    pub const DEFAULT: Ports = Ports { listener: 10000, upstream: 10001, admin: 9901, jwks: 10002 };

    /// Free ports for Envoy and the JWKS endpoint ([`testbed::free_port`]), and `upstream: 0`: the echo
    /// upstream binds a port the OS chooses and keeps it ([`EchoUpstream::start`]`(0)`), and its port goes in
    /// before the configuration is rendered. A port chosen here for a server that binds it later could be taken
    /// in between.
    pub fn free() -> Result<Ports> {
        Ok(Ports {
            listener: testbed::free_port()?,
            upstream: 0,
            admin: testbed::free_port()?,
            jwks: testbed::free_port()?,
        })
    }

    /// `(port in the configs in envoy/, this port)` for every port.
    fn substitutions(&self) -> [(u16, u16); 4] {
        [
            (Ports::DEFAULT.listener, self.listener),
            (Ports::DEFAULT.upstream, self.upstream),
            (Ports::DEFAULT.admin, self.admin),
            (Ports::DEFAULT.jwks, self.jwks),
        ]
    }
}

/// 32 bytes from the OS's random source.
pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).context("reading /dev/urandom")?;
    Ok(seed)
}

fn random_key(alg: Algorithm) -> Result<SigningKey> {
    loop {
        if let Some(key) = SigningKey::from_seed(alg, random_seed()?) {
            return Ok(key);
        }
    }
}

/// Freshly generated demo keys: the issuer's ES256 and EdDSA keys, the ES256 key it rotates to, and an
/// attacker's key.
pub struct DemoKeys {
    /// The issuer's ES256 key, kid `demo-es256`.
    pub es256: SigningKey,
    /// The issuer's Ed25519 key, kid `demo-ed25519`.
    pub ed25519: SigningKey,
    /// The issuer's next ES256 key, kid `demo-es256-2` (published only after a rotation).
    pub rotated: SigningKey,
    /// A key the gateway does not trust, used to forge tokens.
    pub attacker: SigningKey,
}

impl DemoKeys {
    /// New random keys.
    pub fn generate() -> Result<DemoKeys> {
        Ok(DemoKeys {
            es256: random_key(Algorithm::ES256)?,
            ed25519: random_key(Algorithm::EdDSA)?,
            rotated: random_key(Algorithm::ES256)?,
            attacker: random_key(Algorithm::ES256)?,
        })
    }

    /// The issuer's public JWKS.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.es256.public_jwk(Some(ES256_KID)), self.ed25519.public_jwk(Some(ED25519_KID))]})
    }

    /// The issuer's public JWKS after the rotation: the ES256 key replaced by the next one.
    pub fn rotated_jwks(&self) -> Value {
        json!({"keys": [self.rotated.public_jwk(Some(ROTATED_KID)), self.ed25519.public_jwk(Some(ED25519_KID))]})
    }
}

/// The demo's tokens, minted at `now`.
pub struct DemoTokens {
    /// The trading agent (ES256).
    pub trader: String,
    /// The research agent (EdDSA).
    pub research: String,
    /// The trader acting for Alice (RFC 8693 `act`).
    pub delegated: String,
    /// The trader's claims signed by the attacker's key under the issuer's `kid`.
    pub forged: String,
    /// The trader's token that expired an hour ago.
    pub expired: String,
    /// The trading agent, signed by the key the issuer rotates to (kid `demo-es256-2`).
    pub rotated: String,
}

fn claims(sub: &str, iat: i64, exp: i64) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": iat, "exp": exp})
}

impl DemoTokens {
    /// Mints every demo token; `now` in seconds since the epoch, valid for `ttl` seconds.
    pub fn mint(keys: &DemoKeys, now: i64, ttl: i64) -> DemoTokens {
        let mut delegated = claims(ALICE, now, now + ttl);
        delegated["act"] = json!({ "sub": TRADER });
        DemoTokens {
            trader: keys.es256.sign_jwt(Some(ES256_KID), &claims(TRADER, now, now + ttl)),
            research: keys.ed25519.sign_jwt(Some(ED25519_KID), &claims(RESEARCH, now, now + ttl)),
            delegated: keys.es256.sign_jwt(Some(ES256_KID), &delegated),
            forged: keys.attacker.sign_jwt(Some(ES256_KID), &claims(TRADER, now, now + ttl)),
            expired: keys.es256.sign_jwt(Some(ES256_KID), &claims(TRADER, now - 7200, now - 3600)),
            rotated: keys.rotated.sign_jwt(Some(ROTATED_KID), &claims(TRADER, now, now + ttl)),
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
pub fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!("the template should contain `{from}` exactly once, found {n} times"),
    }
}

/// A config from `envoy/` with these ports in place of the ones written there (each port it names must occur
/// once, as `port_value: N `) and the absolute path of the `.wasm` (if it names the `.wasm`).
pub fn render_ports(template: &str, ports: Ports, wasm: &Path) -> Result<String> {
    let mut out = template.to_owned();
    for (from, to) in ports.substitutions() {
        let (from, to) = (format!("port_value: {from} "), format!("port_value: {to} "));
        if out.contains(&from) {
            out = replace_once(&out, &from, &to)?;
        }
    }
    const WASM: &str = "filename: target/wasm32-wasip1/release/agent_iam.wasm";
    if out.contains(WASM) {
        out = replace_once(&out, WASM, &format!("filename: {}", wasm.display()))?;
    }
    Ok(out)
}

/// A `make bench-envoy` template (`envoy/bench/`) as the benchmark runs it: the generated JWKS where the
/// placeholder is, these ports, the absolute `.wasm` path, and for configuration E the empty filter module,
/// written to `target/bench/envoy/`.
pub fn render_bench_config(template: &str, jwks: &Value, ports: Ports, wasm: &Path) -> Result<String> {
    const EMPTY_FILTER: &str = "target/bench/envoy/empty-filter.wasm";
    let mut out = if template.contains(PLACEHOLDER_JWKS) {
        render_config(template, jwks, ports, wasm)?
    } else {
        render_ports(template, ports, wasm)?
    };
    let reference = format!("filename: {EMPTY_FILTER}");
    if out.contains(&reference) {
        let path = agent_iam_host::workspace_root().join(EMPTY_FILTER);
        crate::modules::write_empty_filter(&path)?;
        out = replace_once(&out, &reference, &format!("filename: {}", path.display()))?;
    }
    Ok(out)
}

/// `envoy/demo.yaml` with the generated JWKS, the given ports and the absolute path of the `.wasm`.
pub fn render_config(template: &str, jwks: &Value, ports: Ports, wasm: &Path) -> Result<String> {
    let out = replace_once(template, PLACEHOLDER_JWKS, &jwks.to_string())
        .context("envoy/demo.yaml should contain the placeholder JWKS once")?;
    render_ports(&out, ports, wasm)
}

/// The plugin configuration inside an Envoy config (the JSON block scalar after its only `value: |`).
pub fn plugin_config_in(yaml: &str) -> Result<Value> {
    let start = yaml.find("value: |").context("no `value: |` plugin configuration")?;
    if yaml[start + 1..].contains("value: |") {
        bail!("more than one `value: |` plugin configuration");
    }
    let indent = yaml[..start].rsplit('\n').next().map_or(0, str::len) + 2;
    let block: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.len() > indent && l[..indent].trim().is_empty())
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    serde_json::from_str(&block).context("the plugin configuration is not JSON")
}

/// The plugin configuration inside an `envoy/demo.yaml` (the JSON block scalar after `value: |`), with the
/// demo keys in place of the placeholder: what `agent-iam check --config` takes.
pub fn plugin_config(template: &str, jwks: &Value) -> Result<Value> {
    let yaml = replace_once(template, PLACEHOLDER_JWKS, &jwks.to_string())?;
    plugin_config_in(&yaml).context("envoy/demo.yaml")
}

/// The demo template shipped in the repository.
pub fn template_path() -> PathBuf {
    agent_iam_host::workspace_root().join("envoy/demo.yaml")
}

/// The remote-keys template: `envoy/remote-jwks.yaml`.
pub fn remote_template_path() -> PathBuf {
    agent_iam_host::workspace_root().join("envoy/remote-jwks.yaml")
}

/// A rendered config with the plugin in dry-run mode (`"mode": "dry_run"` after the realm): nothing is
/// refused, what enforcement would have answered is forwarded in `x-agent-iam-dry-run`.
pub fn dry_run(config: String) -> String {
    config.replacen(r#""realm": "trading-api","#, r#""realm": "trading-api", "mode": "dry_run","#, 1)
}

/// A running demo gateway: echo upstream plus Envoy with the plugin, stopped on drop.
pub struct Gateway {
    /// Envoy (stopped first on drop).
    pub envoy: Envoy,
    /// The echo upstream.
    pub upstream: EchoUpstream,
    /// The ports in use.
    pub ports: Ports,
}

impl Gateway {
    /// Starts the demo gateway with these keys and ports; files go to `work_dir`.
    pub fn start(keys: &DemoKeys, ports: Ports, work_dir: &Path) -> Result<Gateway> {
        Gateway::start_with(keys, ports, work_dir, |config| config)
    }

    /// Like [`Gateway::start`], with `edit` applied to the rendered Envoy config first.
    pub fn start_with(
        keys: &DemoKeys,
        ports: Ports,
        work_dir: &Path,
        edit: impl FnOnce(String) -> String,
    ) -> Result<Gateway> {
        let template = std::fs::read_to_string(template_path()).context("reading envoy/demo.yaml")?;
        let wasm = agent_iam_host::plugin_wasm_path();
        if !wasm.exists() {
            bail!("{} not found (run `make wasm`)", wasm.display());
        }
        let upstream = EchoUpstream::start(ports.upstream)?;
        let ports = Ports { upstream: upstream.port(), ..ports };
        let config = edit(render_config(&template, &keys.jwks(), ports, &wasm)?);
        let envoy = Envoy::start(&testbed::envoy_binary(), &config, ports.admin, work_dir)?;
        Ok(Gateway { envoy, upstream, ports })
    }
}

/// A running gateway that fetches the issuer's keys (`envoy/remote-jwks.yaml`): echo upstream, the JWKS
/// endpoint and Envoy, stopped on drop.
pub struct RemoteKeysGateway {
    /// Envoy (stopped first on drop).
    pub envoy: Envoy,
    /// The issuer's JWKS endpoint.
    pub jwks: JwksServer,
    /// The echo upstream.
    pub upstream: EchoUpstream,
    /// The ports in use (`jwks` is the JWKS server's).
    pub ports: Ports,
}

impl RemoteKeysGateway {
    /// Starts Envoy with `envoy/remote-jwks.yaml` (after `edit`) in front of a new echo upstream, fetching
    /// keys from `jwks` (set up as it should answer at start); files go to `work_dir`.
    pub fn start(
        jwks: JwksServer,
        ports: Ports,
        work_dir: &Path,
        edit: impl FnOnce(String) -> String,
    ) -> Result<RemoteKeysGateway> {
        let ports = Ports { jwks: jwks.port(), ..ports };
        let template = std::fs::read_to_string(remote_template_path()).context("reading envoy/remote-jwks.yaml")?;
        let wasm = agent_iam_host::plugin_wasm_path();
        if !wasm.exists() {
            bail!("{} not found (run `make wasm`)", wasm.display());
        }
        let upstream = EchoUpstream::start(ports.upstream)?;
        let ports = Ports { upstream: upstream.port(), ..ports };
        let config = edit(render_ports(&template, ports, &wasm)?);
        let envoy = Envoy::start(&testbed::envoy_binary(), &config, ports.admin, work_dir)?;
        Ok(RemoteKeysGateway { envoy, jwks, upstream, ports })
    }
}

/// How many lines of Envoy's log contain `needle`.
pub fn log_count(envoy: &Envoy, needle: &str) -> usize {
    envoy.log().lines().filter(|l| l.contains(needle)).count()
}

/// Waits until at least `n` lines of Envoy's log contain `needle`; whether they did within `timeout`.
pub fn wait_for_log(envoy: &Envoy, needle: &str, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if log_count(envoy, needle) >= n {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request of the scenario and what the gateway must answer.
pub struct Step {
    /// What the step shows.
    pub title: &'static str,
    /// Method.
    pub method: &'static str,
    /// Path, sent as is.
    pub path: &'static str,
    /// The token to send, with a note for the printout.
    pub token: Option<(&'static str, String)>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Expected status.
    pub expect: u16,
    /// The `x-agent-iam-dry-run` value the upstream must see (dry-run mode), e.g. `403 no_rule_allows`;
    /// `None`: it must see none.
    pub expect_dry_run: Option<&'static str>,
}

/// A [`Step`] with no extra headers that must not be marked dry run.
pub fn step(
    title: &'static str,
    method: &'static str,
    path: &'static str,
    token: Option<(&'static str, &String)>,
    expect: u16,
) -> Step {
    Step {
        title,
        method,
        path,
        token: token.map(|(n, t)| (n, t.clone())),
        headers: vec![],
        expect,
        expect_dry_run: None,
    }
}

/// The scripted scenario (trading use case: four allowed requests, five denied).
pub fn scenario(t: &DemoTokens) -> Vec<Step> {
    let mut spoof = step(
        "Research agent sends a spoofed identity header",
        "GET",
        "/quotes/ACME",
        Some(("research agent, EdDSA", &t.research)),
        200,
    );
    spoof.headers.push(("x-agent-iam-agent", "spiffe://trading.example/agent/admin".into()));
    vec![
        step("Trading agent places an order", "POST", "/orders", Some(("trading agent, ES256", &t.trader)), 200),
        step("Research agent reads a quote", "GET", "/quotes/ACME", Some(("research agent, EdDSA", &t.research)), 200),
        step(
            "Trading agent acts for Alice (RFC 8693 act)",
            "POST",
            "/orders",
            Some(("Alice via trader", &t.delegated)),
            200,
        ),
        spoof,
        step(
            "Research agent tries to place an order",
            "POST",
            "/orders",
            Some(("research agent, EdDSA", &t.research)),
            403,
        ),
        step(
            "Trading agent walks to the admin API",
            "GET",
            "/quotes/../admin/users",
            Some(("trading agent, ES256", &t.trader)),
            403,
        ),
        step("Forged token: trader's claims, attacker's key", "POST", "/orders", Some(("forged", &t.forged)), 401),
        step("Expired token", "POST", "/orders", Some(("expired an hour ago", &t.expired)), 401),
        step("No token at all", "POST", "/orders", None, 401),
    ]
}

/// The same policy in dry-run mode (a gateway started with [`dry_run`]): every request goes through; what
/// enforcement would have answered reaches the upstream in `x-agent-iam-dry-run`.
pub fn dry_run_scenario(t: &DemoTokens) -> Vec<Step> {
    let mut research = step(
        "Research agent tries to place an order",
        "POST",
        "/orders",
        Some(("research agent, EdDSA", &t.research)),
        200,
    );
    research.expect_dry_run = Some("403 no_rule_allows");
    let mut admin = step(
        "Trading agent walks to the admin API",
        "GET",
        "/quotes/../admin/users",
        Some(("trading agent, ES256", &t.trader)),
        200,
    );
    admin.expect_dry_run = Some("403 denied_by_rule");
    let mut forged =
        step("Forged token: trader's claims, attacker's key", "POST", "/orders", Some(("forged", &t.forged)), 200);
    forged.expect_dry_run = Some("401 bad_signature");
    vec![
        research,
        admin,
        forged,
        step("Trading agent places an order", "POST", "/orders", Some(("trading agent, ES256", &t.trader)), 200),
    ]
}

/// What one step produced.
pub struct StepResult {
    /// The response.
    pub response: HttpResponse,
    /// Whether the status (and the dry-run mark the upstream saw) was the expected one.
    pub as_expected: bool,
}

/// The `x-agent-iam-dry-run` value the upstream saw (in the echo of an allowed request).
pub fn dry_run_seen(r: &HttpResponse) -> Option<String> {
    upstream_saw(r, "x-agent-iam-dry-run")
}

/// The first value of a request header the echo upstream received.
pub fn upstream_saw(r: &HttpResponse, name: &str) -> Option<String> {
    if r.status != 200 {
        return None;
    }
    r.json()["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|p| p[0] == name))
        .and_then(|p| p[1].as_str())
        .map(str::to_owned)
}

/// Runs the scenario against a gateway listening on `port`, printing each request and decision to `out`.
pub fn run_scenario(port: u16, steps: &[Step], out: &mut dyn Write) -> Result<Vec<StepResult>> {
    run_steps(port, steps, 1, out)
}

/// Like [`run_scenario`], numbering the steps from `first`.
pub fn run_steps(port: u16, steps: &[Step], first: usize, out: &mut dyn Write) -> Result<Vec<StepResult>> {
    let mut results = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let mut headers: Vec<(&str, String)> = step.headers.clone();
        if let Some((_, token)) = &step.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let body: &[u8] = if step.method == "POST" { br#"{"symbol":"ACME","qty":10}"# } else { b"" };
        let number = first + i;
        let response = testbed::http_request(port, step.method, step.path, &header_refs, body)
            .with_context(|| format!("step {number}: {} {}", step.method, step.path))?;
        let as_expected = response.status == step.expect && dry_run_seen(&response).as_deref() == step.expect_dry_run;
        writeln!(out, "{number:>2}. {}", step.title)?;
        let who = step.token.as_ref().map(|(note, _)| format!("  [token: {note}]")).unwrap_or_default();
        let extra: String = step.headers.iter().map(|(n, v)| format!("  [{n}: {v}]")).collect();
        writeln!(out, "    {} {}{who}{extra}", step.method, step.path)?;
        writeln!(out, "    => {}{}", describe(&response), if as_expected { "" } else { "   <-- UNEXPECTED" })?;
        results.push(StepResult { response, as_expected });
    }
    Ok(results)
}

/// One line: the decision and its reason, or what the upstream saw.
pub fn describe(r: &HttpResponse) -> String {
    if r.status == 200 {
        let seen = |name: &str| upstream_saw(r, name).unwrap_or_else(|| "-".to_owned());
        match dry_run_seen(r) {
            Some(would) => format!(
                "200 forwarded in dry run; upstream saw x-agent-iam-dry-run: {would}, agent={} subject={}",
                seen("x-agent-iam-agent"),
                seen("x-agent-iam-subject")
            ),
            None => format!(
                "200 allowed by rule \"{}\"; upstream saw agent={} subject={}",
                seen("x-agent-iam-rule"),
                seen("x-agent-iam-agent"),
                seen("x-agent-iam-subject")
            ),
        }
    } else {
        let body = r.json();
        let error = body["error"].as_str().unwrap_or("");
        let description = body["error_description"].as_str().unwrap_or("");
        format!("{} {error}: {description}", r.status)
    }
}

/// Key rotation against a [`RemoteKeysGateway`] whose JWKS endpoint serves [`DemoKeys::jwks`]: a token of the
/// key fetched at start; the issuer rotates to [`ROTATED_KID`] and a token of the new key passes on its first
/// request (the gateway refetches on the unknown kid); the retired key's token is refused; the JWKS endpoint
/// goes down, a refresh fails, and the new key's token still passes on the last good set. Steps are numbered
/// from `first`; narration and decisions go to `out`.
pub fn run_rotation(
    gateway: &RemoteKeysGateway,
    keys: &DemoKeys,
    t: &DemoTokens,
    first: usize,
    out: &mut dyn Write,
) -> Result<Vec<StepResult>> {
    let port = gateway.ports.listener;
    let order = |title, token: (&'static str, &String), expect| step(title, "POST", "/orders", Some(token), expect);
    let mut results = Vec::new();
    // Envoy is ready before its workers' first fetch is answered; a request meanwhile would be held.
    if !gateway.jwks.wait_for_hits(1, Duration::from_secs(10)) {
        bail!("the gateway did not fetch the key set within 10 s:\n{}", gateway.envoy.log_tail(20));
    }
    let steps = [order(
        "Trading agent places an order (key demo-es256, fetched when Envoy started)",
        ("trading agent, key demo-es256", &t.trader),
        200,
    )];
    results.extend(run_steps(port, &steps, first, out)?);

    // From now on the endpoint also asks for a refresh every second, so the outage below is seen.
    gateway.jwks.set_max_age(Some(1));
    gateway.jwks.set_keys(&keys.rotated_jwks());
    writeln!(out, "    -- the issuer rotates: its JWKS now holds {ROTATED_KID} instead of {ES256_KID}")?;
    let steps = [
        order(
            "New key, first request: held while the gateway refetches the JWKS",
            ("trading agent, key demo-es256-2", &t.rotated),
            200,
        ),
        order("The retired key", ("trading agent, key demo-es256", &t.trader), 401),
    ];
    results.extend(run_steps(port, &steps, first + results.len(), out)?);

    // The worker (the Envoy thread) that fetched the new set on the unknown kid; Envoy's main thread has a
    // copy of the plugin that fetches too, but serves no requests.
    let worker = gateway
        .envoy
        .log()
        .lines()
        .find(|l| l.contains(&format!("fetched: 2 key(s) [{ROTATED_KID}")))
        .and_then(|l| l.split('[').nth(2))
        .and_then(|t| t.split(']').next())
        .map(|t| format!("[{t}]"))
        .context("no fetch of the rotated key set in Envoy's log")?;
    let kept = format!("{worker}[warning][wasm]");
    let failed_refreshes =
        || gateway.envoy.log().lines().filter(|l| l.contains(&kept) && l.contains("keeping the last good set")).count();
    let failures = failed_refreshes();
    gateway.jwks.go_down();
    writeln!(out, "    -- the JWKS endpoint goes down (connection refused)")?;
    // The worker's next refresh (within a second or two) fails; the plugin says so in Envoy's log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed_refreshes() == failures && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if failed_refreshes() == failures {
        bail!("no failed refresh within 10 s of the JWKS outage:\n{}", gateway.envoy.log_tail(20));
    }
    let steps = [order(
        "New key, JWKS endpoint down: a refresh failed, the last good set is kept",
        ("trading agent, key demo-es256-2", &t.rotated),
        200,
    )];
    results.extend(run_steps(port, &steps, first + results.len(), out)?);
    Ok(results)
}
