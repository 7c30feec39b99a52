//! Continuous revocation with real components: `envoy/revocation.yaml` (the demo gateway with a Shared Signals
//! receiver polling a transmitter, RFC 8936) rendered for a test, the SSF transmitter of `tests/ssf/transmitter.py`
//! (CAEP events as Security Event Tokens signed RS256 by jwcrypto, installed by `make ssf-tools`) with its control
//! API. Used by `tests/tests/e2e_revocation.rs`, which runs Envoy with several workers
//! ([`testbed::Envoy::start_with_workers`], which also tells which worker served a connection).
//!
//! Everything binds 127.0.0.1 only; the transmitter is stopped when its guard is dropped, and gets a signal if the
//! thread that started it ends first, like the processes of [`testbed`].

use crate::demo::{self, Ports};
use crate::python::{PythonProcess, Stop, Venv};
use crate::testbed;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The transmitter's port written in `envoy/revocation.yaml` (cluster `ssf_transmitter`), as `port_value: 10003 `.
pub const TEMPLATE_TRANSMITTER_PORT: u16 = 10003;
/// The transmitter's JWKS written in `envoy/revocation.yaml` (`revocation.ssf.jwks`): an RSA public key whose
/// private half was discarded, which every test replaces with its transmitter's keys.
pub const PLACEHOLDER_SSF_JWKS: &str = r#"{"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "placeholder-ssf", "n": "rewDg3qa4VU-LySQxvrok8qMh6FECTcF34DmNf0CcCE3jyh80YnoBiNGWjsax9N7IzIBdkWNh2AYuJKK_O_DGI5GYIAgvTZbjSxmRHKoGsaMZ5AMmVeF4ihoQbCSOPOP5vl8YTJokYf3JOQY-tJA56u29_k2CBGBis5ZshLNQDgAoM8q9Uy9AWSCERq0jyYOS5JkWEcqtZOYVcik3ezHNHhDlOeWLda0r1o1mcpdrC7_fHfjOzi5JKWr7Pf0XrXqIZvUOS2w4UzKa807ExtvkTyf_M0S-_soEkxe_o-QmwDBMgCB2sJUDK4cBU_rZ4VA7mohfS5F7FlCpVVkmVpejw", "e": "AQAB"}]}"#;
/// The poll's `authorization` header written in `envoy/revocation.yaml`, which every test replaces.
pub const TEMPLATE_AUTHORIZATION: &str = "Bearer placeholder-poll-secret";
/// The transmitter's issuer (`revocation.ssf.issuer`): every event's `iss`.
pub const ISSUER: &str = "https://ssf.trading.example";
/// The receiver's audience (`revocation.ssf.audiences`): every event's `aud`.
pub const AUDIENCE: &str = "https://gw.trading.example";
/// The poll endpoint's path (`revocation.ssf.poll.path`).
pub const POLL_PATH: &str = "/ssf/poll";
/// Milliseconds between polls (`revocation.ssf.poll.interval_ms`).
pub const POLL_INTERVAL_MS: u64 = 1000;
/// How often each worker reads the shared revocation state, milliseconds (the plugin's tick).
pub const TICK_MS: u64 = 250;
/// CAEP `session-revoked`.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// The revocation template shipped in the repository: `envoy/revocation.yaml`.
pub fn template_path() -> PathBuf {
    agent_iam_host::workspace_root().join("envoy/revocation.yaml")
}

/// `envoy/revocation.yaml` (`template`) as a test runs it: rendered like `envoy/demo.yaml`
/// ([`demo::render_config`]: the issuer's JWKS, these ports, the absolute `.wasm` path), polling the transmitter
/// on 127.0.0.1:`transmitter_port` with `authorization`, and verifying its events with `transmitter_jwks`. Each
/// placeholder must occur once.
pub fn render_revocation_config(
    template: &str,
    jwks: &Value,
    ports: Ports,
    wasm: &Path,
    transmitter_port: u16,
    transmitter_jwks: &Value,
    authorization: &str,
) -> Result<String> {
    let out = demo::render_config(template, jwks, ports, wasm).context("envoy/revocation.yaml")?;
    let out = demo::replace_once(
        &out,
        &format!("port_value: {TEMPLATE_TRANSMITTER_PORT} "),
        &format!("port_value: {transmitter_port} "),
    )
    .context("envoy/revocation.yaml: the transmitter's port")?;
    let out = demo::replace_once(&out, PLACEHOLDER_SSF_JWKS, &transmitter_jwks.to_string())
        .context("envoy/revocation.yaml: the transmitter's keys")?;
    let authorization = serde_json::to_string(authorization)?;
    demo::replace_once(&out, &format!("\"{TEMPLATE_AUTHORIZATION}\""), &authorization)
        .context("envoy/revocation.yaml: the poll's authorization")
}

/// The Python with the transmitter's packages.
const VENV: Venv = Venv { env_var: "SSF_PYTHON", make_target: "ssf-tools", what: "the SSF transmitter's packages are" };

/// The Python with the transmitter's packages: `$SSF_PYTHON`, else `.venv/bin/python` in the workspace
/// (`make ssf-tools`).
pub fn python() -> PathBuf {
    VENV.python()
}

/// An RFC 9493 subject naming an agent by its SPIFFE ID: `{"format": "uri", "uri": ...}`.
pub fn agent_subject(spiffe_id: &str) -> Value {
    json!({"format": "uri", "uri": spiffe_id})
}

/// `tests/ssf/transmitter.py`: an SSF transmitter on 127.0.0.1 serving RFC 8936 polls of the SETs the test
/// enqueues through its control API. Stopped on drop.
pub struct Transmitter {
    process: PythonProcess,
    port: u16,
}

impl Transmitter {
    /// Starts the transmitter on a free port with issuer [`ISSUER`], audience [`AUDIENCE`] and poll path
    /// [`POLL_PATH`], answering only polls that carry exactly `authorization`; its stderr in
    /// `work_dir/transmitter.log` (created if missing). Returns once it listens.
    pub fn start(work_dir: &Path, authorization: &str) -> Result<Transmitter> {
        VENV.check()?;
        std::fs::create_dir_all(work_dir)?;
        let log_path = work_dir.join("transmitter.log");
        let mut command = VENV.command(&agent_iam_host::workspace_root().join("tests/ssf/transmitter.py"));
        command.args(["--port", "0", "--issuer", ISSUER, "--audience", AUDIENCE, "--poll-path", POLL_PATH]);
        command.args(["--authorization", authorization, "--hang-seconds", "5"]);
        let (process, port) = PythonProcess::spawn(
            command,
            &log_path,
            Stop::Kill,
            "the SSF transmitter",
            "`listening <port>`",
            |line| line.strip_prefix("listening ").and_then(|p| p.trim().parse().ok()),
        )?;
        Ok(Transmitter { process, port })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let headers: &[(&str, &str)] = if method == "POST" { &[("content-type", "application/json")] } else { &[] };
        let r = testbed::http_request(self.port, method, path, headers, body.as_bytes())?;
        if r.status != 200 {
            bail!("{method} {path} answered {}: {}", r.status, String::from_utf8_lossy(&r.body));
        }
        serde_json::from_slice(&r.body).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// Its public keys (the JWKS it signs with), for the receiver's configuration.
    pub fn jwks(&self) -> Result<Value> {
        self.control("GET", "/control/jwks", None)
    }

    /// Enqueues one SET as `POST /control/events` describes it (see the script's header: `sub_id`, `event_type`,
    /// `event`, `event_timestamp`, `iat`, `signer`, ...); its `jti`.
    pub fn enqueue(&self, event: &Value) -> Result<String> {
        let answer = self.control("POST", "/control/events", Some(event))?;
        answer["jti"].as_str().map(str::to_owned).context("no jti in the transmitter's answer")
    }

    /// Enqueues a CAEP `session-revoked` event for the agent `spiffe_id`, its `event_timestamp` now; its `jti`.
    pub fn revoke_agent(&self, spiffe_id: &str) -> Result<String> {
        self.enqueue(&json!({"sub_id": agent_subject(spiffe_id), "event_type": SESSION_REVOKED}))
    }

    /// What it saw: `polls`, `polls_failed`, `unauthorized`, `pending`, `acked`, `set_errs`, `delivered`,
    /// `unknown_acks`, `outage`, `last_poll`.
    pub fn state(&self) -> Result<Value> {
        self.control("GET", "/control/state", None)
    }

    /// Polls answered normally (`None`), with 503 (`"503"`), by closing the connection (`"reset"`) or not at all
    /// (`"hang"`, 5 s).
    pub fn set_outage(&self, mode: Option<&str>) -> Result<()> {
        self.control("POST", "/control/outage", Some(&json!({ "mode": mode }))).map(|_| ())
    }

    /// Waits until `done` holds of its state; the state, or an error with the last one after `timeout`.
    pub fn wait_for_state(&self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state()?;
            if done(&state) {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                bail!("the transmitter's state within {timeout:?}: {state}\n{}", self.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` lines of its log (stderr).
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }
}
