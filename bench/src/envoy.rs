//! What the real-Envoy benchmarks share (`agent-iam-envoy-bench`, `agent-iam-envoy-hostcalls`): pinning and
//! scheduling, Envoy's CPU time from `/proc`, and `wrk`.

use anyhow::{Context, Result, ensure};
use std::collections::BTreeSet;
use std::process::Command;

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
    }
    // SAFETY: CPU_ISSET reads the set within its bounds.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// Envoy's CPUs and the load generator's: one each where there are two, else both share what there is.
pub fn split_cpus(cpus: &[usize]) -> (Vec<usize>, Vec<usize>) {
    match cpus {
        [a, b, ..] => (vec![*a], vec![*b]),
        _ => (cpus.to_vec(), cpus.to_vec()),
    }
}

/// Pins the calling thread (and what it starts from now on: threads, child processes) to `cpus`, as
/// `taskset -c` does.
pub fn pin(cpus: &[usize]) -> Result<()> {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within the set's bounds.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("sched_setaffinity({cpus:?})"));
    }
    Ok(())
}

/// Puts the calling thread (and what it starts from now on) under `SCHED_FIFO` at `priority`, or back to the
/// normal scheduler with `None`.
pub fn set_realtime(priority: Option<i32>) -> Result<()> {
    let (policy, param) = match priority {
        Some(p) => (libc::SCHED_FIFO, libc::sched_param { sched_priority: p }),
        None => (libc::SCHED_OTHER, libc::sched_param { sched_priority: 0 }),
    };
    // SAFETY: a valid sched_param; affects only the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_setscheduler");
    }
    Ok(())
}

/// Child processes of this process (of any of its threads).
pub fn children() -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// CPU time (user + system, all threads) of a process, in microseconds.
pub fn cpu_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks > 0.0).then(|| (utime + stime) * 1e6 / ticks)
}

/// Resident memory of a process (`VmRSS`), in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// `Cpus_allowed_list` of a process.
pub fn cpus_allowed(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_owned())
}

/// `wrk --version`'s first line, or `None` when wrk is not installed.
pub fn wrk_version() -> Option<String> {
    let out = Command::new("wrk").arg("--version").output().ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.lines().next().map(|l| l.trim().to_owned()).filter(|l| l.starts_with("wrk"))
}

/// wrk's summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkSummary {
    pub requests: u64,
    pub seconds: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

/// Reads wrk's summary from its output.
pub fn parse_wrk(out: &str) -> Result<WrkSummary> {
    let mut requests = None;
    let (mut non_2xx, mut socket_errors) = (0, 0);
    for line in out.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            let secs = rest.split(',').next().unwrap_or_default();
            let secs = match secs.strip_suffix("ms") {
                Some(ms) => ms.parse::<f64>().context("wrk duration")? / 1000.0,
                None => secs.trim_end_matches('s').parse::<f64>().context("wrk duration")?,
            };
            requests = Some((n.trim().parse::<u64>().context("wrk request count")?, secs));
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = n.trim().parse().context("wrk non-2xx count")?;
        } else if let Some(list) = line.strip_prefix("Socket errors:") {
            socket_errors = list.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum();
        }
    }
    let (requests, seconds) = requests.with_context(|| format!("no request count in wrk's output:\n{out}"))?;
    Ok(WrkSummary { requests, seconds, non_2xx, socket_errors })
}

/// Runs `wrk` (one thread) with these arguments and reads its summary; fails on socket errors.
pub fn run_wrk(args: &[String]) -> Result<(WrkSummary, String)> {
    let out = Command::new("wrk").args(args).output().context("running wrk")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "wrk failed: {text}");
    let summary = parse_wrk(&text)?;
    ensure!(summary.socket_errors == 0, "wrk reported {} socket errors:\n{text}", summary.socket_errors);
    Ok((summary, text))
}

/// The median of the finite values.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some(crate::measure::percentile(&xs, 0.5))
}

/// One decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summaries_are_read() {
        let out = "Running 5s test @ http://127.0.0.1:1/quotes\n  1 threads and 16 connections\n  \
                   131072 requests in 5.00s, 10.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  \
                   Non-2xx or 3xx responses: 7\nRequests/sec:  26214.40\n";
        let s = parse_wrk(out).expect("parsed");
        assert_eq!(s, WrkSummary { requests: 131_072, seconds: 5.0, non_2xx: 7, socket_errors: 3 });
        let ms = parse_wrk("  10 requests in 999.50ms, 1KB read\n").expect("parsed");
        assert!((ms.seconds - 0.9995).abs() < 1e-9);
        assert!(parse_wrk("nothing").is_err());
    }
}
