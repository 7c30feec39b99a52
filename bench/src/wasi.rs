//! Running the plugin's bench exports in plain wasmtime (not the proxy-wasm host): the few WASI calls Rust's
//! std makes at start-up, stubbed; every proxy-wasm host call traps (the bench exports never reach one).
//! Shared by `agent-iam-policy-bench` and, through [`crate::exports`], `agent-iam-mcp-bench` and
//! `agent-iam-audit-bench`.

use anyhow::{Context, Result, anyhow};
use wasmtime::{Caller, Engine, Instance, Linker, Memory, Module, Store};

const WASI: &str = "wasi_snapshot_preview1";
const EFAULT: i32 = 21;

fn memory(c: &mut Caller<'_, ()>) -> Option<Memory> {
    c.get_export("memory").and_then(|e| e.into_memory())
}

fn put(c: &mut Caller<'_, ()>, at: i32, bytes: &[u8]) -> i32 {
    match memory(c).map(|m| m.write(&mut *c, at as u32 as usize, bytes)) {
        Some(Ok(())) => 0,
        _ => EFAULT,
    }
}

fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// A linker for `module`: stdout and stderr printed to stderr (prefixed `[wasm]`), deterministic random
/// bytes, the clock at `now` (seconds since the epoch), no environment or arguments, `proc_exit` an error.
pub fn linker(engine: &Engine, module: &Module, now: i64) -> Result<Linker<()>> {
    let mut linker: Linker<()> = Linker::new(engine);
    linker
        .func_wrap(WASI, "fd_write", |mut c: Caller<'_, ()>, fd: i32, iovs: i32, n: i32, written: i32| -> i32 {
            let Some(mem) = memory(&mut c) else { return EFAULT };
            let mut total = 0u32;
            for i in 0..n.max(0) {
                let mut iov = [0u8; 8];
                if mem.read(&c, (iovs + i * 8) as u32 as usize, &mut iov).is_err() {
                    return EFAULT;
                }
                let (buf, len) = (
                    u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]),
                    u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]),
                );
                let mut bytes = vec![0u8; len as usize];
                if mem.read(&c, buf as usize, &mut bytes).is_err() {
                    return EFAULT;
                }
                if fd == 1 || fd == 2 {
                    eprint!("[wasm] {}", String::from_utf8_lossy(&bytes));
                }
                total += len;
            }
            put(&mut c, written, &total.to_le_bytes())
        })
        .map_err(wasm_error)?;
    linker
        .func_wrap(WASI, "random_get", |mut c: Caller<'_, ()>, buf: i32, len: i32| -> i32 {
            let bytes: Vec<u8> = (0..len.max(0)).map(|i| (i as u8).wrapping_mul(151).wrapping_add(7)).collect();
            put(&mut c, buf, &bytes)
        })
        .map_err(wasm_error)?;
    let now_ns = u64::try_from(now).unwrap_or(0).saturating_mul(1_000_000_000);
    linker
        .func_wrap(WASI, "clock_time_get", move |mut c: Caller<'_, ()>, _id: i32, _precision: i64, out: i32| -> i32 {
            put(&mut c, out, &now_ns.to_le_bytes())
        })
        .map_err(wasm_error)?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker
            .func_wrap(WASI, name, |mut c: Caller<'_, ()>, count: i32, size: i32| -> i32 {
                put(&mut c, count, &0u32.to_le_bytes()).max(put(&mut c, size, &0u32.to_le_bytes()))
            })
            .map_err(wasm_error)?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: i32, _: i32| -> i32 { 0 }).map_err(wasm_error)?;
    }
    linker
        .func_wrap(WASI, "proc_exit", |code: i32| -> wasmtime::Result<()> {
            wasmtime::bail!("proc_exit({code}) called by the module")
        })
        .map_err(wasm_error)?;
    linker.define_unknown_imports_as_traps(module).map_err(wasm_error)?;
    Ok(linker)
}

/// An instance of `module` started as a WASI reactor (or command) is, with its memory.
pub fn start(linker: &Linker<()>, store: &mut Store<()>, module: &Module) -> Result<(Instance, Memory)> {
    let instance = linker.instantiate(&mut *store, module).map_err(wasm_error)?;
    for init in ["_initialize", "_start"] {
        if let Ok(f) = instance.get_typed_func::<(), ()>(&mut *store, init) {
            f.call(&mut *store, ()).map_err(|err| anyhow!("{init}: {err}"))?;
            break;
        }
    }
    let memory = instance.get_memory(&mut *store, "memory").context("the module exports no memory")?;
    Ok((instance, memory))
}
