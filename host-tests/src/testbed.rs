//! Real processes on loopback for end-to-end runs: an echo upstream, Envoy, and a small HTTP/1.1 client.
//!
//! Everything binds 127.0.0.1 only. Every process started here is stopped when its guard is dropped, so a
//! failing test or an interrupted demo leaves nothing running.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (the OS picks it, so two runs do not collide).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The Envoy binary: `$ENVOY_BIN`, else `.venv/bin/envoy` in the workspace (installed by `make envoy`).
pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) => PathBuf::from(p),
        None => crate::workspace_root().join(".venv/bin/envoy"),
    }
}

/// An HTTP upstream that answers every request with 200 and a JSON echo of what it received:
/// `{"method", "path", "headers": [[name, value], ...]}`. Handles keep-alive, as Envoy pools connections.
pub struct EchoUpstream {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl EchoUpstream {
    /// Starts on `port` (0 for any free port).
    pub fn start(port: u16) -> Result<EchoUpstream> {
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    thread::spawn(move || {
                        let _ = serve_echo(conn);
                    });
                }
            }
        });
        Ok(EchoUpstream { port, stop, accept: Some(accept) })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// A request as an upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Method.
    pub method: String,
    /// Path as sent.
    pub path: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// An HTTP upstream that answers every request with the same response, after an optional delay, and records
/// the requests it received. Handles keep-alive, as Envoy pools connections.
pub struct FixedUpstream {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
    received: Arc<std::sync::Mutex<Vec<ReceivedRequest>>>,
}

impl FixedUpstream {
    /// Starts on `port` (0 for any free port), answering `status` with `headers` (a `content-length` is added)
    /// and `body`, each answer `delay` after the request arrived.
    pub fn start(
        port: u16,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        delay: Duration,
    ) -> Result<FixedUpstream> {
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        let mut head = format!("HTTP/1.1 {status} X\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut response = head.into_bytes();
        response.extend_from_slice(body);
        let response = Arc::new(response);
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stopping, log) = (stop.clone(), received.clone());
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let (response, log) = (response.clone(), log.clone());
                    thread::spawn(move || {
                        let _ = serve_fixed(conn, &response, delay, &log);
                    });
                }
            }
        });
        Ok(FixedUpstream { port, stop, accept: Some(accept), received })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The requests received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FixedUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn serve_fixed(
    conn: TcpStream,
    response: &[u8],
    delay: Duration,
    log: &std::sync::Mutex<Vec<ReceivedRequest>>,
) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let Some(head) = read_head(&mut reader)? else { return Ok(()) };
        let mut lines = head.iter();
        let request_line = lines.next().cloned().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let headers = parse_headers(lines);
        let body = read_body(&mut reader, &headers)?;
        if let Ok(mut log) = log.lock() {
            log.push(ReceivedRequest { method, path, headers, body });
        }
        thread::sleep(delay);
        writer.write_all(response)?;
        writer.flush()?;
    }
}

fn serve_echo(conn: TcpStream) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let Some(head) = read_head(&mut reader)? else { return Ok(()) };
        let mut lines = head.iter();
        let request_line = lines.next().cloned().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let headers = parse_headers(lines);
        read_body(&mut reader, &headers)?;
        let echo = serde_json::json!({"method": method, "path": path, "headers": headers});
        let body = echo.to_string();
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        writer.flush()?;
    }
}

/// Reads the request or status line and the header lines; `None` at a clean end of stream.
fn read_head(reader: &mut impl BufRead) -> Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return if lines.is_empty() { Ok(None) } else { bail!("connection closed inside a message head") };
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
        if lines.len() > 200 {
            bail!("too many header lines");
        }
    }
}

fn parse_headers<'a>(lines: impl Iterator<Item = &'a String>) -> Vec<(String, String)> {
    lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect()
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Result<Vec<u8>> {
    if header(headers, "transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let len: usize = header(headers, "content-length").map(str::parse).transpose()?.unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` on a fresh connection and reads the whole response.
/// `path` is sent exactly as given (no client-side normalisation), which is what attack tests need.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut conn =
        TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: api.trading.example\r\nconnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let lines = read_head(&mut reader)?.context("no response")?;
    let status_line = lines.first().cloned().unwrap_or_default();
    let status: u16 = status_line.split(' ').nth(1).context("no status code")?.parse().context("bad status code")?;
    let headers = parse_headers(lines.iter().skip(1));
    let body = if header(&headers, "content-length").is_some() || header(&headers, "transfer-encoding").is_some() {
        read_body(&mut reader, &headers)?
    } else {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest)?;
        rest
    };
    let _ = conn.shutdown(Shutdown::Both);
    Ok(HttpResponse { status, headers, body })
}

/// A running Envoy, stopped (and its exit awaited) on drop.
pub struct Envoy {
    child: Child,
    admin_port: u16,
    log_path: PathBuf,
}

impl Envoy {
    /// Starts `binary` with `config_yaml` (written to `work_dir/envoy.yaml`), one worker, logging to
    /// `work_dir/envoy.log`, and waits until the admin endpoint reports ready (or fails with the log tail).
    pub fn start(binary: &Path, config_yaml: &str, admin_port: u16, work_dir: &Path) -> Result<Envoy> {
        if !binary.exists() {
            bail!("Envoy not found at {} (run `make envoy`, or set ENVOY_BIN)", binary.display());
        }
        std::fs::create_dir_all(work_dir)?;
        let config_path = work_dir.join("envoy.yaml");
        std::fs::write(&config_path, config_yaml)?;
        let log_path = work_dir.join("envoy.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary);
        // If this process dies without running destructors (SIGTERM, a crash), Envoy must not outlive it.
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and affects only the child.
        unsafe {
            command.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "1", "--log-level", "info", "--disable-hot-restart"])
            .current_dir(crate::workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut envoy = Envoy { child, admin_port, log_path };
        envoy.wait_ready(Duration::from_secs(60))?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("Envoy exited with {status} before it was ready:\n{}", self.log_tail(40));
            }
            if let Ok(r) = http_request(self.admin_port, "GET", "/ready", &[], b"")
                && r.status == 200
            {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!("Envoy was not ready within {timeout:?}:\n{}", self.log_tail(40))
    }

    /// The last `n` lines of Envoy's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Envoy's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Validates an Envoy config file with `envoy --mode validate` (run from the workspace root, as the configs'
/// relative `.wasm` path expects). Returns Envoy's output on failure.
pub fn validate_envoy_config(binary: &Path, config: &Path) -> Result<()> {
    let out = Command::new(binary)
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .current_dir(crate::workspace_root())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && text.contains(" OK") {
        Ok(())
    } else {
        bail!("{} is not a valid Envoy config:\n{text}", config.display())
    }
}
