//! Running the plugin's bench exports in plain wasmtime (not the proxy-wasm host): the few WASI calls Rust's
//! std makes at start-up, stubbed; three proxy-wasm host calls answered as the wasmtime host answers them
//! (`proxy_call_foreign_function` for `verify_signature`, `proxy_get_shared_data`, `proxy_set_shared_data`:
//! the DPoP benchmark's exports check signatures and keep their replay cache through them, as the filter
//! does in Envoy); every other proxy-wasm host call traps (the bench exports never reach one). Shared by
//! `agent-iam-policy-bench` and, through [`crate::exports`], the other benchmarks of the bench exports.

use agent_iam::token::host_crypto;
use anyhow::{Context, Result, anyhow};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    proxy_calls(&mut linker)?;
    linker.define_unknown_imports_as_traps(module).map_err(wasm_error)?;
    Ok(linker)
}

const PROXY: &str = "env";
/// proxy-wasm statuses.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const CAS_MISMATCH: i32 = 8;

fn read(c: &mut Caller<'_, ()>, at: i32, len: i32) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    memory(c)?.read(&*c, at as u32 as usize, &mut bytes).ok()?;
    Some(bytes)
}

/// `bytes` copied into memory the module allocates (`proxy_on_memory_allocate`, as Envoy and the wasmtime host
/// do), its address and length written at `ptr_ptr` and `size_ptr`; empty: (null, 0).
fn copy_out(c: &mut Caller<'_, ()>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> wasmtime::Result<i32> {
    let at = if bytes.is_empty() {
        0
    } else {
        let alloc = c
            .get_export("proxy_on_memory_allocate")
            .and_then(|e| e.into_func())
            .ok_or_else(|| wasmtime::Error::msg("the module exports no proxy_on_memory_allocate"))?
            .typed::<u32, u32>(&*c)?;
        let at = alloc.call(&mut *c, bytes.len() as u32)?;
        if at == 0 || put(c, at as i32, bytes) != 0 {
            wasmtime::bail!("proxy_on_memory_allocate gave no room for {} bytes", bytes.len());
        }
        at
    };
    if put(c, ptr_ptr, &at.to_le_bytes()) != 0 || put(c, size_ptr, &(bytes.len() as u32).to_le_bytes()) != 0 {
        wasmtime::bail!("bad out-parameters");
    }
    Ok(OK)
}

/// Shared data as proxy-wasm-cpp-host keeps it: a value and a CAS token per key, every write a fresh non-zero
/// token, a write with a stale non-zero token refused, a key never written written whatever the token.
#[derive(Default)]
struct SharedData {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

/// The foreign function of the DPoP benchmark's instant host (`plugin/src/bench_exports/dpop.rs`): it reads
/// `verify_signature`'s arguments and answers "verified" without checking anything, so that the module's side
/// of a host signature check can be timed without the host's cryptography. Only this linker has it.
pub const INSTANT_FUNCTION: &str = "agent_iam_bench_verified";

/// The proxy-wasm host calls the bench exports may make, answered as the wasmtime host (`host/`) answers them
/// (and [`INSTANT_FUNCTION`]); shared data is the instance's own.
fn proxy_calls(linker: &mut Linker<()>) -> Result<()> {
    linker
        .func_wrap(
            PROXY,
            "proxy_call_foreign_function",
            |mut c: Caller<'_, ()>, np: i32, ns: i32, ap: i32, asz: i32, ptr_ptr: i32, size_ptr: i32| {
                let (Some(name), Some(args)) = (read(&mut c, np, ns), read(&mut c, ap, asz)) else {
                    return Ok(BAD_ARGUMENT);
                };
                let result = match name.as_slice() {
                    n if n == host_crypto::FOREIGN_FUNCTION.as_bytes() => {
                        agent_iam_host::envoy_foreign::verify_signature(&args).map_err(|status| status as i32)
                    }
                    // The DPoP benchmark's instant host: the arguments read, "verified" answered, nothing checked.
                    n if n == INSTANT_FUNCTION.as_bytes() => match host_crypto::decode_args(&args) {
                        Some(_) => Ok(host_crypto::encode_result(true, "")),
                        None => Err(BAD_ARGUMENT),
                    },
                    _ => Err(NOT_FOUND),
                };
                match result {
                    Ok(result) => copy_out(&mut c, &result, ptr_ptr, size_ptr),
                    Err(status) => Ok(status),
                }
            },
        )
        .map_err(wasm_error)?;
    let shared = Arc::new(Mutex::new(SharedData { map: HashMap::new(), next_cas: 1 }));
    let data = shared.clone();
    linker
        .func_wrap(
            PROXY,
            "proxy_get_shared_data",
            move |mut c: Caller<'_, ()>, kp: i32, ks: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32| {
                let Some(key) = read(&mut c, kp, ks).and_then(|k| String::from_utf8(k).ok()) else {
                    return Ok(BAD_ARGUMENT);
                };
                let found =
                    data.lock().map_err(|_| wasmtime::Error::msg("shared data poisoned"))?.map.get(&key).cloned();
                let Some((value, cas)) = found else { return Ok(NOT_FOUND) };
                copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
                if put(&mut c, cas_ptr, &cas.to_le_bytes()) != 0 {
                    wasmtime::bail!("bad out-parameter");
                }
                Ok(OK)
            },
        )
        .map_err(wasm_error)?;
    linker
        .func_wrap(
            PROXY,
            "proxy_set_shared_data",
            move |mut c: Caller<'_, ()>, kp: i32, ks: i32, vp: i32, vs: i32, cas: i32| -> wasmtime::Result<i32> {
                let (Some(key), Some(value)) =
                    (read(&mut c, kp, ks).and_then(|k| String::from_utf8(k).ok()), read(&mut c, vp, vs))
                else {
                    return Ok(BAD_ARGUMENT);
                };
                let mut data = shared.lock().map_err(|_| wasmtime::Error::msg("shared data poisoned"))?;
                let next = data.next_cas;
                data.next_cas = data.next_cas.wrapping_add(1).max(1);
                match data.map.get_mut(&key) {
                    Some(entry) if cas != 0 && cas as u32 != entry.1 => return Ok(CAS_MISMATCH),
                    Some(entry) => *entry = (value, next),
                    None => {
                        data.map.insert(key, (value, next));
                    }
                }
                Ok(OK)
            },
        )
        .map_err(wasm_error)?;
    Ok(())
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
