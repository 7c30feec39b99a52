//! Python helpers run from the workspace's `.venv`: the MCP test server and client ([`crate::mcp`]) and the
//! OTLP/gRPC logs receiver ([`crate::otlp`]), each with its packages installed by a `make` target.
//!
//! A helper gets SIGKILL if the thread that started it ends first (like Envoy in [`testbed::Envoy`]); a
//! [`PythonProcess`] is also stopped when its guard is dropped.

use crate::testbed;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The Python of one set of helpers: `$<env_var>`, else `.venv/bin/python` in the workspace with the packages
/// `make <make_target>` installs (it leaves `.venv/.<make_target>` when done).
pub struct Venv {
    /// The variable naming another Python, e.g. `MCP_PYTHON`.
    pub env_var: &'static str,
    /// The `make` target that installs the packages, e.g. `mcp-tools`.
    pub make_target: &'static str,
    /// What it installs, with its verb, for the error when it is missing: `the MCP Python SDK is`.
    pub what: &'static str,
}

impl Venv {
    /// `$<env_var>`, else `.venv/bin/python` in the workspace.
    pub fn python(&self) -> PathBuf {
        match std::env::var_os(self.env_var) {
            Some(p) => PathBuf::from(p),
            None => agent_iam_host::workspace_root().join(".venv/bin/python"),
        }
    }

    /// Fails unless the Python exists and, without `$<env_var>`, `make <make_target>` has run.
    pub fn check(&self) -> Result<()> {
        let python = self.python();
        let stamp = agent_iam_host::workspace_root().join(format!(".venv/.{}", self.make_target));
        if !python.exists() || std::env::var_os(self.env_var).is_none() && !stamp.exists() {
            bail!("{} not installed in {} (run `make {}`)", self.what, python.display(), self.make_target);
        }
        Ok(())
    }

    /// `python script`, run in the workspace root with no stdin, getting SIGKILL if the thread that started it
    /// ends first; the caller adds the script's arguments and its stdout and stderr. Call [`Venv::check`]
    /// first.
    pub fn command(&self, script: &Path) -> Command {
        let mut command = Command::new(self.python());
        testbed::die_with_parent(&mut command, libc::SIGKILL);
        command.arg(script).current_dir(agent_iam_host::workspace_root()).stdin(Stdio::null());
        command
    }
}

/// How a [`PythonProcess`] is stopped on drop.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// SIGKILL.
    Kill,
    /// SIGTERM, then SIGKILL if it has not exited within the given time.
    Terminate(Duration),
}

/// A Python helper serving on a port it chose and printed, stopped on drop as its [`Stop`] says.
pub struct PythonProcess {
    child: Child,
    log_path: PathBuf,
    stop: Stop,
}

impl PythonProcess {
    /// Starts `command` (from [`Venv::command`], with the script's arguments), its stderr in `log_path`, and
    /// waits up to 30 s for its first line on stdout, from which `port` reads the port it listens on. `name`
    /// (`the MCP server`) and `ready` (what it prints first: `READY`) are for the errors.
    pub fn spawn(
        mut command: Command,
        log_path: &Path,
        stop: Stop,
        name: &str,
        ready: &str,
        port: impl FnOnce(&str) -> Option<u16>,
    ) -> Result<(PythonProcess, u16)> {
        let log = std::fs::File::create(log_path)?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", Path::new(command.get_program()).display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep reading so the helper never blocks on a full pipe.
            for _ in lines {}
        });
        let process = PythonProcess { child, log_path: log_path.to_owned(), stop };
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            _ => bail!("{name} did not print {ready} within 30 s:\n{}", process.log_tail(20)),
        };
        let port = port(&line).with_context(|| format!("unexpected first line from {name}: {line}"))?;
        Ok((process, port))
    }

    /// The last `n` lines of its log (stderr).
    pub fn log_tail(&self, n: usize) -> String {
        testbed::file_tail(&self.log_path, n)
    }
}

impl Drop for PythonProcess {
    fn drop(&mut self) {
        if let Stop::Terminate(grace) = self.stop {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: signals only the helper, our own child, which has not been waited for yet.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
