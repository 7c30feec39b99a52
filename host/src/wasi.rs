//! The WASI preview1 subset Envoy (proxy-wasm-cpp-host) provides, written by hand.
//!
//! Registered under both `wasi_snapshot_preview1` and `wasi_unstable`. Errors are WASI errnos,
//! exactly the ones Envoy returns (it returns success for `fd_close`/`fd_seek` after logging).

use wasmtime::{Caller, Linker};
use wasmtime::{Result, bail};

use super::LogEntry;
use super::LogLevel;
use super::abi::{read, write, write_u32, write_u64};
use super::state::VmState;

type C<'a> = Caller<'a, VmState>;

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const NOENT: i32 = 44;
const NOSYS: i32 = 52;
const NOTSUP: i32 = 58;

pub(crate) const MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

pub(crate) fn provided() -> &'static [&'static str] {
    &[
        "fd_write",
        "fd_read",
        "fd_close",
        "fd_seek",
        "fd_fdstat_get",
        "fd_fdstat_set_flags",
        "fd_filestat_get",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "path_open",
        "clock_time_get",
        "clock_res_get",
        "random_get",
        "environ_get",
        "environ_sizes_get",
        "args_get",
        "args_sizes_get",
        "proc_exit",
        "sched_yield",
    ]
}

fn fd_write(c: &mut C<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return BADF,
    };
    let mut text = Vec::new();
    for i in 0..iovs_len.max(0) {
        let Ok(iov) = read(c, iovs.wrapping_add(i * 8), 8) else { return FAULT };
        let buf = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        if len != 0 {
            let Ok(bytes) = read(c, buf, len) else { return FAULT };
            text.extend_from_slice(&bytes);
        }
    }
    let written = text.len();
    if written != 0 {
        if text.last() == Some(&b'\n') {
            text.pop();
        }
        let message = String::from_utf8_lossy(&text).into_owned();
        c.data_mut().logs.push(LogEntry { level, message });
    }
    if write_u32(c, nwritten, written as u32).is_err() {
        return FAULT;
    }
    SUCCESS
}

pub(crate) fn link(l: &mut Linker<VmState>) -> Result<()> {
    for m in MODULES {
        l.func_wrap(m, "fd_write", |mut c: C<'_>, fd: i32, iovs: i32, n: i32, out: i32| -> i32 {
            fd_write(&mut c, fd, iovs, n, out)
        })?;
        l.func_wrap(m, "fd_read", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> i32 { NOSYS })?;
        l.func_wrap(m, "fd_close", |mut c: C<'_>, _: i32| -> i32 {
            c.data_mut().host_log(LogLevel::Trace, "wasi fd_close");
            SUCCESS
        })?;
        l.func_wrap(m, "fd_seek", |mut c: C<'_>, _: i32, _: i64, _: i32, _: i32| -> i32 {
            c.data_mut().host_log(LogLevel::Trace, "wasi fd_seek");
            SUCCESS
        })?;
        l.func_wrap(m, "fd_fdstat_get", |mut c: C<'_>, fd: i32, out: i32| -> i32 {
            if fd != 1 && fd != 2 {
                return BADF;
            }
            let mut stat = [0u8; 24];
            stat[8..16].copy_from_slice(&64u64.to_le_bytes()); // fs_rights_base = FD_WRITE
            if write(&mut c, out, &stat).is_err() {
                return FAULT;
            }
            SUCCESS
        })?;
        l.func_wrap(m, "fd_fdstat_set_flags", |_: C<'_>, _: i32, _: i32| -> i32 { NOSYS })?;
        l.func_wrap(m, "fd_filestat_get", |_: C<'_>, _: i32, _: i32| -> i32 { BADF })?;
        l.func_wrap(m, "fd_prestat_get", |_: C<'_>, _: i32, _: i32| -> i32 { BADF })?;
        l.func_wrap(m, "fd_prestat_dir_name", |_: C<'_>, _: i32, _: i32, _: i32| -> i32 { NOSYS })?;
        l.func_wrap(
            m,
            "path_open",
            |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32, _: i32| -> i32 { NOENT },
        )?;
        l.func_wrap(m, "clock_time_get", |mut c: C<'_>, id: i32, _precision: i64, out: i32| -> i32 {
            let t = match id {
                0 => c.data().now_nanos(),
                1 => c.data().monotonic.as_nanos() as u64,
                _ => return NOTSUP,
            };
            if write_u64(&mut c, out, t).is_err() {
                return FAULT;
            }
            SUCCESS
        })?;
        l.func_wrap(m, "clock_res_get", |mut c: C<'_>, id: i32, out: i32| -> i32 {
            if id != 0 && id != 1 {
                return NOTSUP;
            }
            if write_u64(&mut c, out, 1).is_err() {
                return FAULT;
            }
            SUCCESS
        })?;
        l.func_wrap(m, "random_get", |mut c: C<'_>, buf: i32, len: i32| -> i32 {
            let len = len as u32 as usize;
            let mut bytes = Vec::with_capacity(len);
            while bytes.len() < len {
                let r = c.data_mut().next_random().to_le_bytes();
                let take = (len - bytes.len()).min(8);
                bytes.extend_from_slice(&r[..take]);
            }
            if write(&mut c, buf, &bytes).is_err() {
                return FAULT;
            }
            SUCCESS
        })?;
        // No environment variables and no arguments.
        l.func_wrap(m, "environ_get", |_: C<'_>, _: i32, _: i32| -> i32 { SUCCESS })?;
        l.func_wrap(m, "environ_sizes_get", |mut c: C<'_>, count: i32, size: i32| -> i32 {
            if write_u32(&mut c, count, 0).is_err() || write_u32(&mut c, size, 0).is_err() {
                return FAULT;
            }
            SUCCESS
        })?;
        l.func_wrap(m, "args_get", |_: C<'_>, _: i32, _: i32| -> i32 { SUCCESS })?;
        l.func_wrap(m, "args_sizes_get", |mut c: C<'_>, count: i32, size: i32| -> i32 {
            if write_u32(&mut c, count, 0).is_err() || write_u32(&mut c, size, 0).is_err() {
                return FAULT;
            }
            SUCCESS
        })?;
        l.func_wrap(m, "proc_exit", |_: C<'_>, code: i32| -> Result<()> {
            bail!("proc_exit({code}) called by the module")
        })?;
        l.func_wrap(m, "sched_yield", |_: C<'_>| -> i32 { SUCCESS })?;
    }
    Ok(())
}
