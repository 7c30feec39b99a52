//! An HTTP/1.1 load generator for the Envoy benchmark (`make bench-envoy`, `agent-iam-loadgen`): keep-alive
//! connections to 127.0.0.1, driven by one epoll loop on one thread (pin that thread to its own core).
//!
//! - **Open loop** ([`Plan::rate`] set): request `i` is due at `start + i / rate`, whatever happened before.
//!   Due requests go out in order on whichever connection is idle, and the latency of each is measured from
//!   its *intended* send time, not from when a connection was free to send it: a server that stalls is
//!   charged for every request that should have gone out meanwhile (no coordinated omission). Requests still
//!   unsent or unanswered when the run ends are counted as `incomplete`, with the time they had waited so far
//!   as their latency (a lower bound), so an overloaded server cannot hide its backlog. The pacing uses a
//!   `timerfd` with absolute deadlines and a 1 ns timer slack, so requests leave within microseconds of
//!   their due time while the generator keeps up.
//! - **Closed loop** (no rate): each connection sends its next request as soon as the previous answer
//!   arrived; latency from the actual send. The maximum throughput, where `wrk` is not installed.
//!
//! Requests are pre-built byte strings sent in turn (request `i` is `requests[i % len]`): one for a fixed
//! token, or one per token to send every request with a new token ([`Report::sent`] beyond the list's
//! length means some were sent twice). Responses must carry `content-length` (Envoy's local and direct
//! responses do); requests are never pipelined.

use anyhow::{Context, Result, bail, ensure};
use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// One run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Keep-alive connections, opened before the run starts.
    pub connections: usize,
    /// Requests per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// How long requests are sent (open loop: how long the schedule runs).
    pub duration: Duration,
    /// At most this many requests (then the run ends when they are answered, or at `duration`).
    pub limit: Option<u64>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plan's rate (open loop).
    pub rate: Option<f64>,
    /// Connections used.
    pub connections: usize,
    /// The measured window.
    pub elapsed: Duration,
    /// Requests sent (index of the next request): more than the request list's length means reuse.
    pub sent: u64,
    /// Responses received within the window.
    pub completed: u64,
    /// Open loop: requests due within the window but not answered in it (sent or not).
    pub incomplete: u64,
    /// Responses by status (0: the connection closed before an answer).
    pub statuses: BTreeMap<u16, u64>,
    /// Connections the server closed (each is reopened).
    pub reconnects: u64,
    /// Latencies in nanoseconds, sorted: every completed request, and (open loop) every incomplete one with
    /// what it had waited when the run ended.
    pub latency_ns: Vec<u64>,
}

impl Report {
    /// Completed responses per second.
    pub fn rps(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// Responses with a 2xx status.
    pub fn ok(&self) -> u64 {
        self.statuses.range(200..300).map(|(_, n)| n).sum()
    }

    /// Nearest-rank percentile (`q` in 0..=1) of the latencies, in microseconds (NaN without any).
    pub fn percentile_us(&self, q: f64) -> f64 {
        if self.latency_ns.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latency_ns.len() as f64).ceil() as usize).clamp(1, self.latency_ns.len());
        self.latency_ns[rank - 1] as f64 / 1000.0
    }

    /// The figures for a benchmark's JSON (microseconds to a tenth).
    pub fn json(&self) -> serde_json::Value {
        let tenth =
            |x: f64| if x.is_finite() { serde_json::json!((x * 10.0).round() / 10.0) } else { serde_json::Value::Null };
        let statuses: serde_json::Map<String, serde_json::Value> =
            self.statuses.iter().map(|(s, n)| (s.to_string(), (*n).into())).collect();
        serde_json::json!({
            "mode": if self.rate.is_some() { "open loop" } else { "closed loop" },
            "rate": self.rate.map(|r| r.round()),
            "connections": self.connections,
            "seconds": self.elapsed.as_secs_f64(),
            "rps": self.rps().round(),
            "completed": self.completed,
            "incomplete": self.incomplete,
            "statuses": statuses,
            "reconnects": self.reconnects,
            "p50_us": tenth(self.percentile_us(0.5)),
            "p90_us": tenth(self.percentile_us(0.9)),
            "p99_us": tenth(self.percentile_us(0.99)),
            "p999_us": tenth(self.percentile_us(0.999)),
            "max_us": tenth(self.percentile_us(1.0)),
        })
    }
}

/// `GET path` with a `host` header and `headers`, as raw HTTP/1.1 (keep-alive).
pub fn get_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nhost: api.trading.example\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Nanoseconds on `CLOCK_MONOTONIC` (the clock `timerfd` deadlines are given in).
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 { Err(std::io::Error::last_os_error()).with_context(|| what.to_owned()) } else { Ok(ret) }
}

/// The token of the timer in epoll events (connections use their index).
const TIMER: u64 = u64::MAX;

struct Conn {
    stream: TcpStream,
    /// Bytes of a request not yet written (the socket was full).
    unsent: Vec<u8>,
    /// Bytes of the response read so far.
    received: Vec<u8>,
    /// The request in flight: when it was due (open loop) or sent (closed loop).
    busy: Option<u64>,
}

struct Poller {
    epoll: OwnedFd,
    timer: OwnedFd,
}

impl Poller {
    fn new() -> Result<Poller> {
        // SAFETY: plain syscalls; the returned descriptors are owned from here on.
        let epoll = unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC), "epoll_create1")?) };
        let timer = check(
            // SAFETY: as above.
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) },
            "timerfd_create",
        )?;
        // SAFETY: as above.
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        let poller = Poller { epoll, timer };
        poller.control(libc::EPOLL_CTL_ADD, poller.timer.as_raw_fd(), TIMER, false)?;
        Ok(poller)
    }

    fn control(&self, op: libc::c_int, fd: RawFd, token: u64, writable: bool) -> Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLRDHUP | if writable { libc::EPOLLOUT } else { 0 };
        let mut event = libc::epoll_event { events: events as u32, u64: token };
        // SAFETY: the event is a valid, initialised struct; the kernel copies it.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) }, "epoll_ctl")?;
        Ok(())
    }

    /// Wakes the loop at `deadline_ns` (absolute, `CLOCK_MONOTONIC`).
    fn arm(&self, deadline_ns: u64) -> Result<()> {
        let deadline_ns = deadline_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid itimerspec; the old value is not asked for.
        check(
            unsafe {
                libc::timerfd_settime(self.timer.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
            },
            "timerfd_settime",
        )?;
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event]) -> Result<usize> {
        loop {
            // SAFETY: the buffer is valid for `events.len()` entries.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(e).context("epoll_wait");
            }
        }
    }

    fn clear_timer(&self) {
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into the buffer; EAGAIN (nothing expired) is fine.
        unsafe { libc::read(self.timer.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
    }
}

fn connect(port: u16) -> Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// A complete response at the start of `buf`: its status and length.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        ensure!(buf.len() < 64 * 1024, "response head over 64 KiB");
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().context("bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not supported by the load generator");
            }
        }
    }
    let total = head_end + 4 + length.unwrap_or(0);
    Ok((buf.len() >= total).then_some((status, total)))
}

/// Runs `plan`, sending `requests` in turn; the calling thread runs the loop.
pub fn run(plan: &Plan, requests: &[Vec<u8>]) -> Result<Report> {
    ensure!(!requests.is_empty(), "no requests to send");
    ensure!(plan.connections > 0, "at least one connection");
    if let Some(rate) = plan.rate {
        ensure!(rate.is_finite() && rate > 0.0, "rate must be positive, not {rate}");
    }
    // Deadlines to the nanosecond rather than the default 50 µs of slack.
    // SAFETY: affects only the calling thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let poller = Poller::new()?;
    let mut conns = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let stream = connect(plan.port)?;
        poller.control(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), i as u64, false)?;
        conns.push(Conn { stream, unsent: Vec::new(), received: Vec::new(), busy: None });
    }
    let mut idle: VecDeque<usize> = (0..plan.connections).collect();
    let expected = plan.rate.map_or(1 << 16, |r| (r * plan.duration.as_secs_f64()) as usize + 16);
    let mut latency_ns: Vec<u64> = Vec::with_capacity(expected);
    let mut statuses = BTreeMap::new();
    let (mut completed, mut reconnects, mut next) = (0u64, 0u64, 0u64);
    let interval_ns = plan.rate.map(|r| 1e9 / r);
    let start = now_ns() + 1_000_000;
    let end = start + plan.duration.as_nanos() as u64;
    let due = |i: u64| interval_ns.map_or(0, |ns| start + (i as f64 * ns) as u64);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; plan.connections + 1];
    let mut scratch = vec![0u8; 64 * 1024];
    poller.arm(start)?;
    while now_ns() < start {
        poller.wait(&mut events)?;
    }
    poller.clear_timer();
    loop {
        let now = now_ns();
        if now >= end || plan.limit.is_some_and(|l| completed >= l) {
            break;
        }
        // Send what is due on idle connections, oldest first.
        while let Some(&c) = idle.front() {
            let intended = if interval_ns.is_some() { due(next) } else { now };
            if intended > now || plan.limit.is_some_and(|l| next >= l) {
                break;
            }
            idle.pop_front();
            let conn = &mut conns[c];
            let request = &requests[(next % requests.len() as u64) as usize];
            next += 1;
            conn.busy = Some(intended);
            let written = match conn.stream.write(request) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e).context("sending a request"),
            };
            if written < request.len() {
                conn.unsent = request[written..].to_vec();
                poller.control(libc::EPOLL_CTL_MOD, conn.stream.as_raw_fd(), c as u64, true)?;
            }
        }
        let wake = match (interval_ns, idle.is_empty()) {
            (Some(_), false) => due(next).min(end),
            _ => end,
        };
        poller.arm(wake)?;
        let n = poller.wait(&mut events)?;
        for event in &events[..n] {
            let (token, flags) = (event.u64, event.events);
            if token == TIMER {
                poller.clear_timer();
                continue;
            }
            let c = token as usize;
            let conn = &mut conns[c];
            if flags & libc::EPOLLOUT as u32 != 0 && !conn.unsent.is_empty() {
                match conn.stream.write(&conn.unsent) {
                    Ok(k) => {
                        conn.unsent.drain(..k);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("sending a request"),
                }
                if conn.unsent.is_empty() {
                    poller.control(libc::EPOLL_CTL_MOD, conn.stream.as_raw_fd(), token, false)?;
                }
            }
            let mut closed = false;
            loop {
                match conn.stream.read(&mut scratch) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(k) => conn.received.extend_from_slice(&scratch[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                        closed = true;
                        break;
                    }
                    Err(e) => return Err(e).context("reading a response"),
                }
            }
            if let Some((status, length)) = parse_response(&conn.received)? {
                ensure!(length == conn.received.len(), "the server answered more than was asked (pipelining?)");
                conn.received.clear();
                let intended = conn.busy.take().context("a response without a request")?;
                latency_ns.push(now_ns().saturating_sub(intended));
                *statuses.entry(status).or_insert(0) += 1;
                completed += 1;
                if !closed {
                    idle.push_back(c);
                }
            }
            if closed {
                if let Some(intended) = conn.busy.take() {
                    latency_ns.push(now_ns().saturating_sub(intended));
                    *statuses.entry(0).or_insert(0) += 1;
                    completed += 1;
                }
                reconnects += 1;
                let stream = connect(plan.port)?;
                poller.control(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), token, false)?;
                *conn = Conn { stream, unsent: Vec::new(), received: Vec::new(), busy: None };
                idle.push_back(c);
            }
        }
    }
    // Open loop: whatever was due in the window and not answered counts, with what it waited so far.
    let mut incomplete = 0;
    if interval_ns.is_some() {
        for conn in &conns {
            if let Some(intended) = conn.busy {
                latency_ns.push(end.saturating_sub(intended));
                incomplete += 1;
            }
        }
        let mut i = next;
        while due(i) < end {
            latency_ns.push(end - due(i));
            incomplete += 1;
            i += 1;
        }
    }
    latency_ns.sort_unstable();
    Ok(Report {
        rate: plan.rate,
        connections: plan.connections,
        elapsed: Duration::from_nanos(end - start),
        sent: next,
        completed,
        incomplete,
        statuses,
        reconnects,
        latency_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed_only_when_complete() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nserver: envoy\r\n\r\nok\n";
        assert_eq!(parse_response(r).unwrap(), Some((200, r.len())));
        assert_eq!(parse_response(&r[..r.len() - 1]).unwrap(), None);
        let unauthorized = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(unauthorized).unwrap(), Some((401, unauthorized.len())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let report = Report {
            rate: None,
            connections: 1,
            elapsed: Duration::from_secs(1),
            sent: 100,
            completed: 100,
            incomplete: 0,
            statuses: BTreeMap::new(),
            reconnects: 0,
            latency_ns: (1..=100).map(|i| i * 1000).collect(),
        };
        assert_eq!(report.percentile_us(0.5), 50.0);
        assert_eq!(report.percentile_us(0.99), 99.0);
        assert_eq!(report.percentile_us(1.0), 100.0);
    }
}
