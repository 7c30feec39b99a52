//! The gateway demo: demo keys and tokens, `envoy/demo.yaml` rendered with them, and a scripted scenario
//! from the trading use case. Used by `make demo`, `make up` and the end-to-end tests, so the demo a new
//! user sees is exactly what the tests check.

use crate::testbed::{self, EchoUpstream, Envoy, HttpResponse};
use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Ports of one demo gateway.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Envoy's listener.
    pub listener: u16,
    /// The echo upstream.
    pub upstream: u16,
    /// Envoy's admin endpoint.
    pub admin: u16,
}

impl Ports {
    /// The ports written in `envoy/demo.yaml`.
    pub const DEFAULT: Ports = Ports { listener: 10000, upstream: 10001, admin: 9901 };

    /// Free ports chosen by the OS.
    pub fn free() -> Result<Ports> {
        Ok(Ports { listener: testbed::free_port()?, upstream: testbed::free_port()?, admin: testbed::free_port()? })
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

/// Freshly generated demo keys: the issuer's ES256 and EdDSA keys, and an attacker's key.
pub struct DemoKeys {
    /// The issuer's ES256 key, kid `demo-es256`.
    pub es256: SigningKey,
    /// The issuer's Ed25519 key, kid `demo-ed25519`.
    pub ed25519: SigningKey,
    /// A key the gateway does not trust, used to forge tokens.
    pub attacker: SigningKey,
}

impl DemoKeys {
    /// New random keys.
    pub fn generate() -> Result<DemoKeys> {
        Ok(DemoKeys {
            es256: random_key(Algorithm::ES256)?,
            ed25519: random_key(Algorithm::EdDSA)?,
            attacker: random_key(Algorithm::ES256)?,
        })
    }

    /// The issuer's public JWKS.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.es256.public_jwk(Some("demo-es256")), self.ed25519.public_jwk(Some("demo-ed25519"))]})
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
            trader: keys.es256.sign_jwt(Some("demo-es256"), &claims(TRADER, now, now + ttl)),
            research: keys.ed25519.sign_jwt(Some("demo-ed25519"), &claims(RESEARCH, now, now + ttl)),
            delegated: keys.es256.sign_jwt(Some("demo-es256"), &delegated),
            forged: keys.attacker.sign_jwt(Some("demo-es256"), &claims(TRADER, now, now + ttl)),
            expired: keys.es256.sign_jwt(Some("demo-es256"), &claims(TRADER, now - 7200, now - 3600)),
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!("envoy/demo.yaml should contain `{from}` exactly once, found {n} times"),
    }
}

/// `envoy/demo.yaml` with the generated JWKS, the given ports and the absolute path of the `.wasm`.
pub fn render_config(template: &str, jwks: &Value, ports: Ports, wasm: &Path) -> Result<String> {
    let mut out = replace_once(template, PLACEHOLDER_JWKS, &jwks.to_string())?;
    for (from, to) in [
        (Ports::DEFAULT.listener, ports.listener),
        (Ports::DEFAULT.upstream, ports.upstream),
        (Ports::DEFAULT.admin, ports.admin),
    ] {
        out = replace_once(&out, &format!("port_value: {from} "), &format!("port_value: {to} "))?;
    }
    replace_once(
        &out,
        "filename: target/wasm32-wasip1/release/agent_iam.wasm",
        &format!("filename: {}", wasm.display()),
    )
}

/// The plugin configuration inside an `envoy/demo.yaml` (the JSON block scalar after `value: |`), with the
/// demo keys in place of the placeholder: what `agent-iam check --config` takes.
pub fn plugin_config(template: &str, jwks: &Value) -> Result<Value> {
    let yaml = replace_once(template, PLACEHOLDER_JWKS, &jwks.to_string())?;
    let start = yaml.find("value: |").context("no `value: |` plugin configuration in envoy/demo.yaml")?;
    let indent = yaml[..start].rsplit('\n').next().map_or(0, str::len) + 2;
    let block: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.len() > indent && l[..indent].trim().is_empty())
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    serde_json::from_str(&block).context("the plugin configuration in envoy/demo.yaml is not JSON")
}

/// The demo template shipped in the repository.
pub fn template_path() -> PathBuf {
    crate::workspace_root().join("envoy/demo.yaml")
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
        let wasm = crate::plugin_wasm_path();
        if !wasm.exists() {
            bail!("{} not found (run `make wasm`)", wasm.display());
        }
        let config = edit(render_config(&template, &keys.jwks(), ports, &wasm)?);
        let upstream = EchoUpstream::start(ports.upstream)?;
        let envoy = Envoy::start(&testbed::envoy_binary(), &config, ports.admin, work_dir)?;
        Ok(Gateway { envoy, upstream, ports })
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
}

/// The scripted scenario (trading use case: four allowed requests, five denied).
pub fn scenario(t: &DemoTokens) -> Vec<Step> {
    let step = |title, method, path, token: Option<(&'static str, &String)>, expect| Step {
        title,
        method,
        path,
        token: token.map(|(n, t)| (n, t.clone())),
        headers: vec![],
        expect,
    };
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

/// What one step produced.
pub struct StepResult {
    /// The response.
    pub response: HttpResponse,
    /// Whether the status was the expected one.
    pub as_expected: bool,
}

/// Runs the scenario against a gateway listening on `port`, printing each request and decision to `out`.
pub fn run_scenario(port: u16, steps: &[Step], out: &mut dyn Write) -> Result<Vec<StepResult>> {
    let mut results = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let mut headers: Vec<(&str, String)> = step.headers.clone();
        if let Some((_, token)) = &step.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let body: &[u8] = if step.method == "POST" { br#"{"symbol":"ACME","qty":10}"# } else { b"" };
        let response = testbed::http_request(port, step.method, step.path, &header_refs, body)
            .with_context(|| format!("step {}: {} {}", i + 1, step.method, step.path))?;
        let as_expected = response.status == step.expect;
        writeln!(out, "{:>2}. {}", i + 1, step.title)?;
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
        let echo = r.json();
        let seen = |name: &str| {
            echo["headers"]
                .as_array()
                .and_then(|h| h.iter().find(|p| p[0] == name))
                .and_then(|p| p[1].as_str())
                .unwrap_or("-")
                .to_owned()
        };
        format!(
            "200 allowed by rule \"{}\"; upstream saw agent={} subject={}",
            seen("x-agent-iam-rule"),
            seen("x-agent-iam-agent"),
            seen("x-agent-iam-subject")
        )
    } else {
        let body = r.json();
        let error = body["error"].as_str().unwrap_or("");
        let description = body["error_description"].as_str().unwrap_or("");
        format!("{} {error}: {description}", r.status)
    }
}
