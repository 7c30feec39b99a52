//! The audit part of the demo: the hospital scenario through `envoy/audit.yaml`, rendered with the hospital
//! policy (`policies/hospital.json`, read at run time) under the issuer `https://idp.hospital.example` with the
//! demo's generated keys, `"audit": {"events": "all"}` with signed checkpoints, and only the file access logger
//! (to `target/demo/audit/audit.ndjson`; the OpenTelemetry logger and its collector cluster are left out). The
//! demo then answers "who accessed patient 42's record in the last 7 days?" with `agent-iam audit query` on the
//! file Envoy wrote, and checks its chains with `agent-iam audit verify`.

use crate::demo::{self, DemoKeys, ED25519_KID, ES256_KID, Ports, Step, StepResult, step};
use crate::otlp;
use crate::testbed::{self, EchoUpstream, Envoy};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hospital's identity provider.
pub const ISSUER: &str = "https://idp.hospital.example";
/// The audience of the hospital's tokens (the EHR API).
pub const AUDIENCE: &str = "ehr-api";
/// The host the requests are sent to.
pub const HOST: &str = "ehr.hospital.example";
/// The radiology agent.
pub const RADIOLOGY: &str = "spiffe://hospital.example/agent/radiology";
/// The billing agent.
pub const BILLING: &str = "spiffe://hospital.example/agent/billing";
/// The clinical scribe agent.
pub const SCRIBE: &str = "spiffe://hospital.example/agent/scribe";
/// A research agent.
pub const RESEARCH: &str = "spiffe://research.hospital.example/agent/cohort-builder";
/// The clinician the radiology agent acts for.
pub const DR_GREY: &str = "user:dr-grey@hospital.example";
/// The `kid` of the checkpoint key (`audit.checkpoint.key_id`), as `agent-iam audit verify --key` names it.
pub const CHECKPOINT_KID: &str = "demo";
/// The patient the question is about.
pub const PATIENT: &str = "42";

/// The work files of the audit gateway, relative to the workspace root (so the commands printed can be pasted).
pub const WORK_DIR: &str = "target/demo/audit";
/// The audit log Envoy writes.
pub const AUDIT_FILE: &str = "target/demo/audit/audit.ndjson";
/// The checkpoint key, base64url (what `agent-iam audit verify --key` reads).
pub const KEY_FILE: &str = "target/demo/audit/audit-key.txt";

/// The hospital's tokens, minted with the demo keys.
pub struct HospitalTokens {
    /// The radiology agent acting for Dr. Grey (RFC 8693 `act`), patient 42, purpose treatment.
    pub radiology: String,
    /// The billing agent: role `billing` (Keycloak's `realm_access.roles`), purpose payment.
    pub billing: String,
    /// A research agent under an IRB protocol.
    pub research: String,
    /// The scribe (agent 2.4.0) for patient 42, purpose treatment, scope `records:write`.
    pub scribe: String,
}

impl HospitalTokens {
    /// Mints the tokens; `now` in seconds since the epoch, valid for `ttl` seconds.
    pub fn mint(keys: &DemoKeys, now: i64, ttl: i64) -> HospitalTokens {
        let claims = |sub: &str, extra: Value| {
            let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl});
            if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
                c.extend(extra);
            }
            c
        };
        let es256 = |c: &Value| keys.es256.sign_jwt(Some(ES256_KID), c);
        let eddsa = |c: &Value| keys.ed25519.sign_jwt(Some(ED25519_KID), c);
        HospitalTokens {
            radiology: es256(&claims(
                DR_GREY,
                json!({"act": {"sub": RADIOLOGY}, "purpose": "treatment", "patient_id": PATIENT}),
            )),
            billing: eddsa(&claims(BILLING, json!({"purpose": "payment", "realm_access": {"roles": ["billing"]}}))),
            research: eddsa(&claims(RESEARCH, json!({"irb_protocol": "IRB-2026-114"}))),
            scribe: es256(&claims(
                SCRIBE,
                json!({"purpose": "treatment", "patient_id": PATIENT, "scope": "records:write",
                       "agent": {"version": "2.4.0"}}),
            )),
        }
    }
}

/// The hospital scenario: four requests allowed, four refused.
pub fn scenario(t: &HospitalTokens) -> Vec<Step> {
    let radiology = "radiology agent for dr-grey, patient 42";
    vec![
        step(
            "Radiology agent, acting for Dr. Grey, reads patient 42's record",
            "GET",
            "/patients/42/records/2026-11-20",
            Some((radiology, &t.radiology)),
            200,
        ),
        step("... and patient 42's imaging", "GET", "/patients/42/imaging/ct/7", Some((radiology, &t.radiology)), 200),
        step(
            "... and tries patient 43's record with its token for patient 42",
            "GET",
            "/patients/43/records",
            Some((radiology, &t.radiology)),
            403,
        ),
        step(
            "Billing agent reads patient 42's insurance",
            "GET",
            "/patients/42/insurance/policy",
            Some(("billing agent, role billing", &t.billing)),
            200,
        ),
        step(
            "Billing agent tries patient 42's records",
            "GET",
            "/patients/42/records",
            Some(("billing agent, role billing", &t.billing)),
            403,
        ),
        step(
            "Research agent tries patient 42's record",
            "GET",
            "/patients/42/records",
            Some(("research agent, IRB-2026-114", &t.research)),
            403,
        ),
        step("No token at all", "GET", "/patients/42/records", None, 401),
        step(
            "Scribe agent adds a note to patient 42's records",
            "POST",
            "/patients/42/records",
            Some(("scribe 2.4.0, patient 42, records:write", &t.scribe)),
            200,
        ),
    ]
}

/// The plugin configuration of the audit gateway: issuer [`ISSUER`] with `jwks`, `policy` (the document of
/// `policies/hospital.json`), every decision audited, a checkpoint every 5 events under `checkpoint_key`
/// (base64url) named [`CHECKPOINT_KID`].
pub fn plugin_config(jwks: &Value, policy: Value, checkpoint_key: &str) -> Value {
    json!({
        "realm": AUDIENCE,
        "forward": {"filter_state": true},
        "audit": {
            "events": "all",
            "checkpoint": {"key": checkpoint_key, "key_id": CHECKPOINT_KID, "every_events": 5}
        },
        "issuers": [{
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "algorithms": ["ES256", "EdDSA"],
            "max_lifetime_seconds": 3600,
            "jwks": jwks
        }],
        "policy": policy
    })
}

/// The number of leading spaces of a line.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `yaml` without the list item whose first line is `item` (trimmed, e.g. `- name: otlp_collector`, which must
/// occur once) and the comment lines just before it at its indentation: up to the next line indented as much as
/// the item or less.
fn remove_item(yaml: &str, item: &str) -> Result<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim() == item).collect();
    let &[start] = starts.as_slice() else {
        bail!("envoy/audit.yaml should contain `{item}` once, found {} times", starts.len());
    };
    let depth = indent(lines[start]);
    let mut first = start;
    while first > 0 && lines[first - 1].trim_start().starts_with('#') && indent(lines[first - 1]) == depth {
        first -= 1;
    }
    let end = (start + 1..lines.len())
        .find(|&i| !lines[i].trim().is_empty() && indent(lines[i]) <= depth)
        .unwrap_or(lines.len());
    let kept: Vec<&str> = lines[..first].iter().chain(&lines[end..]).copied().collect();
    Ok(kept.join("\n") + "\n")
}

/// `yaml` with the plugin configuration (the JSON block scalar after its only `value: |`, as
/// [`demo::plugin_config_in`] reads it) replaced by `config`.
fn replace_plugin_config(yaml: &str, config: &Value) -> Result<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim_end().ends_with("value: |")).collect();
    let &[start] = starts.as_slice() else {
        bail!("envoy/audit.yaml should have one `value: |` plugin configuration, found {}", starts.len());
    };
    let depth = indent(lines[start]) + 2;
    let end = (start + 1..lines.len())
        .find(|&i| !lines[i].trim().is_empty() && indent(lines[i]) < depth)
        .unwrap_or(lines.len());
    let pad = " ".repeat(depth);
    let block = serde_json::to_string_pretty(config)?;
    let block: Vec<String> = block.lines().map(|l| format!("{pad}{l}")).collect();
    let mut out: Vec<String> = lines[..=start].iter().map(|l| l.to_string()).collect();
    out.extend(block);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// `envoy/audit.yaml` (`template`) for the audit gateway: these ports, the absolute `.wasm` path, `config` as
/// the plugin configuration, the file access logger writing to `audit_file`, and no OpenTelemetry logger nor
/// collector cluster.
pub fn render_config(template: &str, config: &Value, ports: Ports, wasm: &Path, audit_file: &Path) -> Result<String> {
    let out = demo::render_ports(template, ports, wasm).context("envoy/audit.yaml")?;
    let out = demo::replace_once(
        &out,
        &format!("path: {}", otlp::TEMPLATE_AUDIT_PATH),
        &format!("path: {}", audit_file.display()),
    )
    .context("envoy/audit.yaml: the audit file's path")?;
    let out = remove_item(&out, "- name: envoy.access_loggers.open_telemetry")?;
    let out = remove_item(&out, "- name: otlp_collector")?;
    let otlp_port = format!("port_value: {} ", otlp::TEMPLATE_OTLP_PORT);
    let live = |l: &&str| !l.trim_start().starts_with('#');
    if out.lines().filter(live).any(|l| l.contains("otlp_collector") || l.contains(&otlp_port)) {
        bail!("envoy/audit.yaml: the OTLP collector is still named after removing its logger and cluster");
    }
    let out = replace_plugin_config(&out, config)?;
    let rendered = demo::plugin_config_in(&out).context("the rendered audit config")?;
    if &rendered != config {
        bail!("the rendered audit config does not hold the hospital plugin configuration");
    }
    Ok(out)
}

/// A running audit gateway: echo upstream plus Envoy on the rendered `envoy/audit.yaml`, stopped on drop.
pub struct AuditGateway {
    /// Envoy (stopped first on drop).
    pub envoy: Envoy,
    /// The echo upstream.
    pub upstream: EchoUpstream,
    /// The ports in use.
    pub ports: Ports,
}

impl AuditGateway {
    /// Starts the gateway with the demo keys' JWKS on free ports, with a fresh checkpoint key written to
    /// [`KEY_FILE`] and an empty [`AUDIT_FILE`] (both under the workspace root).
    pub fn start(keys: &DemoKeys) -> Result<AuditGateway> {
        let root = agent_iam_host::workspace_root();
        let work_dir = root.join(WORK_DIR);
        std::fs::create_dir_all(&work_dir)?;
        let template = std::fs::read_to_string(otlp::template_path()).context("reading envoy/audit.yaml")?;
        let policy_path = root.join("policies/hospital.json");
        let policy: Value = serde_json::from_str(
            &std::fs::read_to_string(&policy_path).with_context(|| format!("reading {}", policy_path.display()))?,
        )
        .context("policies/hospital.json is not JSON")?;
        let wasm = agent_iam_host::plugin_wasm_path();
        if !wasm.exists() {
            bail!("{} not found (run `make wasm`)", wasm.display());
        }
        let key = agent_iam::b64::encode(&demo::random_seed()?);
        std::fs::write(root.join(KEY_FILE), format!("{key}\n"))?;
        // Envoy appends: a log of an earlier run (another key) would fail verification.
        let audit_file = root.join(AUDIT_FILE);
        match std::fs::remove_file(&audit_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let upstream = EchoUpstream::start(0)?;
        let ports = Ports { upstream: upstream.port(), ..Ports::free()? };
        let config = plugin_config(&keys.jwks(), policy, &key);
        let yaml = render_config(&template, &config, ports, &wasm, &audit_file)?;
        let envoy = Envoy::start(&testbed::envoy_binary(), &yaml, ports.admin, &work_dir)?;
        Ok(AuditGateway { envoy, upstream, ports })
    }

    /// Sends the steps; their responses, in order.
    pub fn run(&self, steps: &[Step]) -> Result<Vec<StepResult>> {
        let mut results = Vec::with_capacity(steps.len());
        for step in steps {
            let auth = step.token.as_ref().map(|(_, t)| format!("Bearer {t}"));
            let mut headers: Vec<(&str, &str)> = step.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            headers.extend(auth.iter().map(|a| ("authorization", a.as_str())));
            let body: &[u8] = if step.method == "POST" { br#"{"note":"MRI reviewed with patient"}"# } else { b"" };
            let response = testbed::http_request_to(self.ports.listener, HOST, step.method, step.path, &headers, body)
                .with_context(|| format!("{} {}", step.method, step.path))?;
            let as_expected = response.status == step.expect && demo::dry_run_seen(&response).is_none();
            results.push(StepResult { response, as_expected });
        }
        Ok(results)
    }

    /// Makes Envoy write the audit file until it has at least `n` lines (or `timeout` passed); its lines.
    pub fn flush_events(&self, n: usize, timeout: Duration) -> Result<Vec<String>> {
        let file = agent_iam_host::workspace_root().join(AUDIT_FILE);
        let deadline = Instant::now() + timeout;
        loop {
            otlp::flush_access_logs(self.ports.admin)?;
            std::thread::sleep(Duration::from_millis(200));
            let lines = otlp::complete_lines(&file);
            if lines.len() >= n {
                return Ok(lines);
            }
            if Instant::now() >= deadline {
                bail!("{} event(s) in {AUDIT_FILE} within {timeout:?}, expected {n}", lines.len());
            }
        }
    }
}

/// Prints the steps and their results, numbered from `first`, as the demo's other sections do.
pub fn print_steps(steps: &[Step], results: &[StepResult], first: usize, out: &mut dyn Write) -> Result<()> {
    for (i, (step, result)) in steps.iter().zip(results).enumerate() {
        writeln!(out, "{:>2}. {}", first + i, step.title)?;
        let who = step.token.as_ref().map(|(note, _)| format!("  [token: {note}]")).unwrap_or_default();
        writeln!(out, "    {} {}{who}", step.method, step.path)?;
        let mark = if result.as_expected { "" } else { "   <-- UNEXPECTED" };
        writeln!(out, "    => {}{mark}", demo::describe(&result.response))?;
    }
    Ok(())
}

/// The `agent-iam` command built by `cargo build -p agent-iam-cli`: `debug/agent-iam` in `$CARGO_TARGET_DIR`
/// (relative to the workspace root), else in the workspace's `target/`.
pub fn cli_binary() -> PathBuf {
    let root = agent_iam_host::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
    target.join("debug/agent-iam")
}

/// Runs `agent-iam` with `args` in the workspace root; its exit code (-1 if killed by a signal) and its output
/// (stdout, then stderr).
pub fn run_cli(args: &[&str]) -> Result<(i32, String)> {
    let binary = cli_binary();
    if !binary.exists() {
        bail!("{} not found (run `cargo build -p agent-iam-cli`; `make demo` does)", binary.display());
    }
    let output = Command::new(&binary)
        .args(args)
        .current_dir(agent_iam_host::workspace_root())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.code().unwrap_or(-1), text))
}

/// Answers the question with `agent-iam audit query`, then checks the chains with `agent-iam audit verify`,
/// printing each command and its output to `out`. Fails unless both exit 0.
pub fn answer(out: &mut dyn Write) -> Result<()> {
    let key = format!("{CHECKPOINT_KID}={KEY_FILE}");
    let commands: [(&str, Vec<&str>); 2] = [
        (
            "Who accessed patient 42's record in the last 7 days?",
            vec!["audit", "query", AUDIT_FILE, "--resource", PATIENT, "--since", "7d"],
        ),
        ("Is the log intact? Every chain, link and checkpoint:", vec!["audit", "verify", AUDIT_FILE, "--key", &key]),
    ];
    for (question, args) in commands {
        writeln!(out, "\n{question}\n\n$ agent-iam {}", args.join(" "))?;
        let (code, text) = run_cli(&args)?;
        out.write_all(text.as_bytes())?;
        if code != 0 {
            bail!("`agent-iam {}` exited with {code}, expected 0", args.join(" "));
        }
    }
    Ok(())
}
