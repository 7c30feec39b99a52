//! The audit trail's shipping with real components: `envoy/audit.yaml` (the demo gateway with the plugin's OCSF
//! audit events written by Envoy's own access loggers, to an NDJSON file and over OTLP/gRPC) rendered for a test,
//! and an OTLP/gRPC logs receiver, `tests/otlp/receiver.py` (grpcio and opentelemetry-proto, installed by
//! `make otlp-tools`), that writes every log record Envoy exports as one JSON line. Used by
//! `tests/tests/e2e_audit.rs`.
//!
//! Everything binds 127.0.0.1 only; the receiver is stopped when its guard is dropped (SIGTERM, then SIGKILL),
//! and gets SIGKILL if the thread that started it ends first, like the MCP server in [`crate::mcp`].

use crate::demo::{self, Ports};
use crate::python::{PythonProcess, Stop, Venv};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The OTLP collector's port written in `envoy/audit.yaml` (cluster `otlp_collector`), as `port_value: 4317 `.
pub const TEMPLATE_OTLP_PORT: u16 = 4317;
/// The audit file written in `envoy/audit.yaml` (the file access logger's `path`): valid as it stands, and a
/// path every test replaces with a file of its own.
pub const TEMPLATE_AUDIT_PATH: &str = "/dev/stdout";
/// The format both access loggers of `envoy/audit.yaml` print: the plugin's event, verbatim.
pub const AUDIT_FORMAT: &str = "%FILTER_STATE(wasm.agent_iam.audit:PLAIN)%";
/// The OpenTelemetry access logger's `log_name` in `envoy/audit.yaml`.
pub const LOG_NAME: &str = "agent-iam-audit";

/// The audit template shipped in the repository: `envoy/audit.yaml`.
pub fn template_path() -> PathBuf {
    agent_iam_host::workspace_root().join("envoy/audit.yaml")
}

/// `envoy/audit.yaml` (`template`) as a test runs it: rendered like `envoy/demo.yaml` ([`demo::render_config`]:
/// the generated JWKS, these ports, the absolute `.wasm` path), the file access logger writing to `audit_file`
/// and the OpenTelemetry access logger sending to 127.0.0.1:`otlp_port`. Each placeholder must occur once.
pub fn render_audit_config(
    template: &str,
    jwks: &Value,
    ports: Ports,
    wasm: &Path,
    audit_file: &Path,
    otlp_port: u16,
) -> Result<String> {
    let out = demo::render_config(template, jwks, ports, wasm).context("envoy/audit.yaml")?;
    let out =
        demo::replace_once(&out, &format!("port_value: {TEMPLATE_OTLP_PORT} "), &format!("port_value: {otlp_port} "))
            .context("envoy/audit.yaml: the OTLP collector's port")?;
    demo::replace_once(&out, &format!("path: {TEMPLATE_AUDIT_PATH}"), &format!("path: {}", audit_file.display()))
        .context("envoy/audit.yaml: the audit file's path")
}

/// The Python with the receiver's packages.
const VENV: Venv = Venv { env_var: "OTLP_PYTHON", make_target: "otlp-tools", what: "the OTLP receiver's packages are" };

/// The Python with the receiver's packages: `$OTLP_PYTHON`, else `.venv/bin/python` in the workspace
/// (`make otlp-tools`).
pub fn python() -> PathBuf {
    VENV.python()
}

/// The complete lines of a file written while it is read (a last line without its newline is left out), without
/// their newline; none if the file does not exist (yet).
pub fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop();
    }
    lines.into_iter().map(|l| l.trim_end_matches('\n').to_owned()).collect()
}

/// Makes Envoy write its buffered access log files now: `POST /reopen_logs` on its admin endpoint (`admin_port`).
/// Envoy's file access loggers otherwise write every `--file-flush-interval-msec` (10 s by default).
pub fn flush_access_logs(admin_port: u16) -> Result<()> {
    let r = crate::testbed::http_request(admin_port, "POST", "/reopen_logs", &[], b"")?;
    if r.status != 200 {
        bail!("POST /reopen_logs answered {}: {}", r.status, String::from_utf8_lossy(&r.body));
    }
    Ok(())
}

/// `tests/otlp/receiver.py`: an OTLP/gRPC logs receiver on 127.0.0.1 writing every log record it receives as one
/// JSON line (`body`, `attributes`, `log_name`, `scope`, `resource`, ...) to a file. Stopped on drop.
pub struct OtlpReceiver {
    process: PythonProcess,
    port: u16,
    out: PathBuf,
}

impl OtlpReceiver {
    /// Starts the receiver on a free port, its records in a new file under `target/e2e/otlp/`.
    pub fn start() -> Result<OtlpReceiver> {
        OtlpReceiver::start_in(&agent_iam_host::workspace_root().join("target/e2e/otlp"))
    }

    /// Starts the receiver on a free port with its files in `work_dir` (created if missing): the records in
    /// `otlp-<pid>-<n>.ndjson`, its stderr in `otlp-<pid>-<n>.log`. Returns once it listens.
    pub fn start_in(work_dir: &Path) -> Result<OtlpReceiver> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        VENV.check()?;
        std::fs::create_dir_all(work_dir)?;
        let name = format!("otlp-{}-{}", std::process::id(), STARTED.fetch_add(1, Ordering::SeqCst));
        let out = work_dir.join(format!("{name}.ndjson"));
        let log_path = work_dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&out);
        let mut command = VENV.command(&agent_iam_host::workspace_root().join("tests/otlp/receiver.py"));
        command.args(["--port", "0", "--out"]).arg(&out);
        // SIGTERM first on drop: the receiver finishes the calls under way and closes its file; SIGKILL if it
        // hangs.
        let stop = Stop::Terminate(Duration::from_secs(5));
        let (process, port) =
            PythonProcess::spawn(command, &log_path, stop, "the OTLP receiver", "`listening <port>`", |line| {
                line.strip_prefix("listening ").and_then(|p| p.trim().parse().ok())
            })?;
        Ok(OtlpReceiver { process, port, out })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file it writes the records to.
    pub fn out_path(&self) -> &Path {
        &self.out
    }

    /// The records received so far, oldest first (each a JSON object, see the receiver's header).
    pub fn records(&self) -> Vec<Value> {
        complete_lines(&self.out).iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits until at least `n` records were received: all of them, or an error with those received within
    /// `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records();
            if records.len() >= n {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                let got: Vec<String> = records.iter().map(Value::to_string).collect();
                bail!(
                    "{} OTLP log record(s) within {timeout:?}, expected {n}:\n{}\nreceiver log:\n{}",
                    records.len(),
                    got.join("\n"),
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` lines of its log (stderr).
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }
}
