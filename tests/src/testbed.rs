//! Real processes on loopback for end-to-end runs: an echo upstream, a JWKS endpoint whose answer can be
//! changed while it runs, Envoy, and a small HTTP/1.1 client.
//!
//! Everything binds 127.0.0.1 only. Every process started here is stopped when its guard is dropped, so a
//! failing test or an interrupted demo leaves nothing running.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago, for a process started later (Envoy) to bind.
///
/// Ports come from outside the OS's ephemeral range (`ip_local_port_range`), where the OS never hands out
/// ports itself: a port from `bind(0)` would be in that range, and while Envoy starts (seconds under load)
/// an outgoing connection of a parallel test could get it first. The larger room of the two, below the range
/// (from 10000) or above it, is used; machines differ (Linux's default leaves 20k ports below, some
/// distributions and containers start the range at 1024 and leave room only above it). Within this process
/// ports are handed out in turn from a random starting point, so parallel tests never get the same one; a
/// port some other process holds is skipped. A server this process binds itself takes its port with
/// [`bind_free_port`], which leaves no moment between the choice and the bind.
pub fn free_port() -> Result<u16> {
    static NEXT: std::sync::OnceLock<AtomicUsize> = std::sync::OnceLock::new();
    let (low, high) = room_outside_ephemeral_range();
    if high - low < 200 {
        // No room outside the ephemeral range: let the OS choose.
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        return Ok(listener.local_addr()?.port());
    }
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        AtomicUsize::new((nanos.subsec_nanos() as usize).wrapping_add(std::process::id() as usize * 7919))
    });
    for _ in 0..1000 {
        let port = low + next.fetch_add(1, Ordering::SeqCst) % (high - low);
        let port = u16::try_from(port).context("port out of range")?;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between {low} and {high}")
}

/// The larger of the two intervals of ports (`low..high`) outside the OS's ephemeral range.
fn room_outside_ephemeral_range() -> (usize, usize) {
    const LOWEST: usize = 10_000;
    const PAST_HIGHEST: usize = 65_536;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().map(|p| p.parse::<usize>().ok());
    let (first, last) = match (bounds.next().flatten(), bounds.next().flatten()) {
        (Some(first), Some(last)) if first <= last => (first, last),
        _ => (32_768, 60_999),
    };
    let below = (LOWEST, first.clamp(LOWEST, PAST_HIGHEST));
    let above = ((last + 1).clamp(LOWEST, PAST_HIGHEST), PAST_HIGHEST);
    if below.1 - below.0 >= above.1 - above.0 { below } else { above }
}

/// A listener on a [`free_port`], bound here and kept: another process (or a parallel test's outgoing
/// connection, where the OS chooses) cannot take the port between the choice and the bind. For servers this
/// process runs itself; ports for Envoy to bind come from [`free_port`].
pub fn bind_free_port() -> Result<TcpListener> {
    let mut refused = Vec::new();
    for _ in 0..20 {
        let port = free_port()?;
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return Ok(listener),
            Err(e) => refused.push(format!("{port}: {e}")),
        }
    }
    bail!("no port on 127.0.0.1 could be bound: {}", refused.join(", "))
}

/// The Envoy binary: `$ENVOY_BIN`, else `.venv/bin/envoy` in the workspace (installed by `make envoy`).
pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) => PathBuf::from(p),
        None => agent_iam_host::workspace_root().join(".venv/bin/envoy"),
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
        let Some(request) = read_request(&mut reader)? else { return Ok(()) };
        if let Ok(mut log) = log.lock() {
            log.push(request);
        }
        thread::sleep(delay);
        writer.write_all(response)?;
        writer.flush()?;
    }
}

/// A JWKS endpoint (an identity provider's key set) on 127.0.0.1 whose answer can be changed while it runs:
/// the body, the status, a `Cache-Control: max-age`, or no answer at all ([`JwksServer::go_down`]: the port
/// is closed and open connections are cut, so Envoy sees connection refused). Plain HTTP/1.1 with keep-alive,
/// like the echo upstream; every request is counted and recorded.
pub struct JwksServer {
    port: u16,
    state: Arc<JwksState>,
    /// The accept loop while the server is up, with its stop flag.
    accept: Mutex<Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>>,
}

struct JwksState {
    answer: Mutex<JwksAnswer>,
    up: AtomicBool,
    hits: AtomicUsize,
    received: Mutex<Vec<ReceivedRequest>>,
    /// Open connections, so that going down can cut them (Envoy keeps its connections to a cluster).
    connections: Mutex<Vec<TcpStream>>,
}

struct JwksAnswer {
    status: u16,
    body: Vec<u8>,
    max_age: Option<u32>,
}

impl JwksServer {
    /// Starts on `port` (0 for a [`free_port`], which it can bind again after going down), answering 200
    /// with `keys` (a JWKS document) and no `Cache-Control`.
    pub fn start(port: u16, keys: &serde_json::Value) -> Result<JwksServer> {
        let listener = match port {
            0 => bind_free_port()?,
            port => TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?,
        };
        let port = listener.local_addr()?.port();
        let state = Arc::new(JwksState {
            answer: Mutex::new(JwksAnswer { status: 200, body: keys.to_string().into_bytes(), max_age: None }),
            up: AtomicBool::new(true),
            hits: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
        });
        let server = JwksServer { port, state, accept: Mutex::new(None) };
        server.accept_on(listener);
        Ok(server)
    }

    fn accept_on(&self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, state) = (stop.clone(), self.state.clone());
        let handle = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let (Ok(mut open), Ok(copy)) = (state.connections.lock(), conn.try_clone()) {
                    open.retain(|c| c.peer_addr().is_ok());
                    open.push(copy);
                }
                let state = state.clone();
                thread::spawn(move || {
                    let _ = serve_jwks(conn, &state);
                });
            }
            // The listener is dropped here: the port refuses connections until `come_back`.
        });
        self.state.up.store(true, Ordering::SeqCst);
        if let Ok(mut accept) = self.accept.lock() {
            *accept = Some((stop, handle));
        }
    }

    /// The port it listens on (kept across [`JwksServer::go_down`] and [`JwksServer::come_back`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `keys` (a JWKS document) from now on; the status stays what it was.
    pub fn set_keys(&self, keys: &serde_json::Value) {
        self.set_body(keys.to_string().into_bytes());
    }

    /// Serves these bytes as the body from now on (e.g. something that is not a JWKS).
    pub fn set_body(&self, body: Vec<u8>) {
        if let Ok(mut answer) = self.state.answer.lock() {
            answer.body = body;
        }
    }

    /// Answers with this status from now on (the body stays: a JWKS with 503 is still a failed fetch).
    pub fn set_status(&self, status: u16) {
        if let Ok(mut answer) = self.state.answer.lock() {
            answer.status = status;
        }
    }

    /// Sends `Cache-Control: max-age=<seconds>` from now on (`None`: no `Cache-Control`).
    pub fn set_max_age(&self, seconds: Option<u32>) {
        if let Ok(mut answer) = self.state.answer.lock() {
            answer.max_age = seconds;
        }
    }

    /// Stops answering: closes the port (connection refused) and cuts the open connections. Returns once
    /// nothing more will be answered.
    pub fn go_down(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        let accept = self.accept.lock().ok().and_then(|mut a| a.take());
        if let Some((stop, handle)) = accept {
            stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag and drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = handle.join();
        }
        if let Ok(mut open) = self.state.connections.lock() {
            for conn in open.drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Listens on the same port again after [`JwksServer::go_down`] (a no-op while up).
    pub fn come_back(&self) -> Result<()> {
        if self.is_up() {
            return Ok(());
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .with_context(|| format!("binding 127.0.0.1:{} again", self.port))?;
        self.accept_on(listener);
        Ok(())
    }

    /// Whether it listens.
    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::SeqCst)
    }

    /// Requests answered so far (any status).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were answered; whether they were within `timeout`.
    pub fn wait_for_hits(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.hits() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The requests answered so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.go_down();
    }
}

fn serve_jwks(conn: TcpStream, state: &JwksState) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let Some(request) = read_request(&mut reader)? else { return Ok(()) };
        // Down since this connection was accepted: close it without an answer.
        if !state.up.load(Ordering::SeqCst) {
            return Ok(());
        }
        let response = {
            let answer = state.answer.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut head = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                answer.status,
                if answer.status == 200 { "OK" } else { "Status" },
                answer.body.len()
            );
            if let Some(seconds) = answer.max_age {
                head.push_str(&format!("cache-control: max-age={seconds}\r\n"));
            }
            head.push_str("\r\n");
            let mut response = head.into_bytes();
            response.extend_from_slice(&answer.body);
            response
        };
        if let Ok(mut log) = state.received.lock() {
            log.push(request);
        }
        state.hits.fetch_add(1, Ordering::SeqCst);
        writer.write_all(&response)?;
        writer.flush()?;
    }
}

fn serve_echo(conn: TcpStream) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let Some(ReceivedRequest { method, path, headers, .. }) = read_request(&mut reader)? else { return Ok(()) };
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
/// The next request on a keep-alive connection (`None` when the client closed it).
fn read_request(reader: &mut impl BufRead) -> Result<Option<ReceivedRequest>> {
    let Some(head) = read_head(reader)? else { return Ok(None) };
    let mut lines = head.iter();
    let request_line = lines.next().cloned().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers = parse_headers(lines);
    let body = read_body(reader, &headers)?;
    Ok(Some(ReceivedRequest { method, path, headers, body }))
}

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
    http_request_to(port, "api.trading.example", method, path, headers, body)
}

/// [`http_request`] with this `Host` header, sent exactly as given.
pub fn http_request_to(
    port: u16,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut conn =
        TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
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

/// Makes the process `command` starts get `signal` when the *thread* that started it ends (`PR_SET_PDEATHSIG`
/// follows the thread), so that it does not outlive this process even when no destructor runs.
pub fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and affects only the child.
    unsafe {
        command.pre_exec(move || match libc::prctl(libc::PR_SET_PDEATHSIG, signal) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
}

/// The last `n` lines of the file at `path` (a log), none if it cannot be read.
pub fn file_tail(path: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running Envoy, stopped (and its exit awaited) on drop.
pub struct Envoy {
    child: Child,
    admin_port: u16,
    log_path: PathBuf,
    concurrency: usize,
}

impl Envoy {
    /// Starts `binary` with `config_yaml` (written to `work_dir/envoy.yaml`), one worker, logging to
    /// `work_dir/envoy.log`, and waits until the admin endpoint reports ready (or fails with the log tail).
    ///
    /// Envoy gets SIGTERM when the *thread* that started it ends (`PR_SET_PDEATHSIG` follows the thread), so
    /// start it on a thread that lives as long as it is used.
    pub fn start(binary: &Path, config_yaml: &str, admin_port: u16, work_dir: &Path) -> Result<Envoy> {
        Envoy::start_with_workers(binary, config_yaml, admin_port, work_dir, 1)
    }

    /// Like [`Envoy::start`], with `concurrency` worker threads (`--concurrency`); which worker served a request
    /// is told by [`Envoy::served_by`].
    pub fn start_with_workers(
        binary: &Path,
        config_yaml: &str,
        admin_port: u16,
        work_dir: &Path,
        concurrency: usize,
    ) -> Result<Envoy> {
        if !binary.exists() {
            bail!("Envoy not found at {} (run `make envoy`, or set ENVOY_BIN)", binary.display());
        }
        if concurrency == 0 {
            bail!("Envoy needs at least one worker");
        }
        std::fs::create_dir_all(work_dir)?;
        let config_path = work_dir.join("envoy.yaml");
        std::fs::write(&config_path, config_yaml)?;
        let log_path = work_dir.join("envoy.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary);
        // If this process dies without running destructors (SIGTERM, a crash), Envoy must not outlive it.
        die_with_parent(&mut command, libc::SIGTERM);
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &concurrency.to_string(), "--log-level", "info", "--disable-hot-restart"])
            .current_dir(agent_iam_host::workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut envoy = Envoy { child, admin_port, log_path, concurrency };
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
        file_tail(&self.log_path, n)
    }

    /// Envoy's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many lines of Envoy's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Its worker threads (`--concurrency`).
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Envoy's stats whose names match the regular expression `filter` (`/stats?filter=`), as `(name, value)`.
    pub fn stats(&self, filter: &str) -> Result<Vec<(String, String)>> {
        let r = http_request(self.admin_port, "GET", &format!("/stats?filter={filter}"), &[], b"")?;
        if r.status != 200 {
            bail!("GET /stats answered {}", r.status);
        }
        Ok(String::from_utf8_lossy(&r.body)
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// The value of the stat named `name`, or ending in `.name` (Envoy may prefix a plugin's metrics, e.g.
    /// `wasmcustom.`); `None` if there is none.
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let suffix = format!(".{name}");
        Ok(self
            .stats(name)?
            .into_iter()
            .find(|(n, _)| n == name || n.ends_with(&suffix))
            .and_then(|(_, v)| v.parse().ok()))
    }

    /// Connections each worker has accepted on the listener on 127.0.0.1:`listener_port`
    /// (`listener.<address>.worker_<i>.downstream_cx_total`), by worker.
    pub fn worker_connections(&self, listener_port: u16) -> Result<Vec<u64>> {
        let prefix = format!("listener.127.0.0.1_{listener_port}.worker_");
        let mut counts = vec![0; self.concurrency];
        for (name, value) in self.stats("worker_.*downstream_cx_total")? {
            let Some(rest) = name.strip_prefix(&prefix) else { continue };
            let Some((worker, "downstream_cx_total")) = rest.split_once('.') else { continue };
            let worker: usize = worker.parse().context("worker index")?;
            if let Some(c) = counts.get_mut(worker) {
                *c = value.parse().context("connection count")?;
            }
        }
        Ok(counts)
    }

    /// Sends one request on a fresh connection (`send`), and tells which worker accepted it: the one whose
    /// connection count on the listener moved. Call it from one thread, with nothing else connecting.
    pub fn served_by(
        &self,
        listener_port: u16,
        send: impl FnOnce() -> Result<HttpResponse>,
    ) -> Result<(usize, HttpResponse)> {
        let before = self.worker_connections(listener_port)?;
        let response = send()?;
        let after = self.worker_connections(listener_port)?;
        let moved: Vec<usize> = (0..self.concurrency).filter(|&i| after[i] != before[i]).collect();
        match moved[..] {
            [worker] => Ok((worker, response)),
            _ => bail!("cannot tell the worker: connections per worker went from {before:?} to {after:?}"),
        }
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
        .current_dir(agent_iam_host::workspace_root())
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
