//! The `env.proxy_*` host functions of proxy-wasm ABI 0.2.1, with Envoy's semantics
//! (proxy-wasm-cpp-host `exports.cc` + Envoy `source/extensions/common/wasm/context.cc`).
//!
//! A guest pointer outside linear memory traps (Envoy returns `InvalidMemoryAccess`, a status the
//! Rust SDK cannot decode); every other failure is a status the SDK's `Status` enum knows.

use wasmtime::error::Context as _;
use wasmtime::{Caller, Linker};
use wasmtime::{Result, bail, format_err as anyhow};

use super::Status;
use super::state::{
    CallResponse, Deferred, LocalReply, MetricKind, Pairs, ROOT_CONTEXT, SharedQueue, VM_CONTEXT, VmState, lock,
};
use super::{Callout, LogEntry, LogLevel};

type C<'a> = Caller<'a, VmState>;

const OK: i32 = Status::Ok as i32;
const NOT_FOUND: i32 = Status::NotFound as i32;
const BAD_ARGUMENT: i32 = Status::BadArgument as i32;
const SERIALIZATION_FAILURE: i32 = Status::SerializationFailure as i32;
const PARSE_FAILURE: i32 = Status::ParseFailure as i32;
const EMPTY: i32 = Status::Empty as i32;
const INTERNAL_FAILURE: i32 = Status::InternalFailure as i32;
/// proxy-wasm `Unimplemented` (the Rust SDK 0.2.5 cannot decode it; Envoy answers it all the same).
const UNIMPLEMENTED: i32 = 12;

// ---------------------------------------------------------------------------------------------
// Guest memory
// ---------------------------------------------------------------------------------------------

fn memory(c: &C<'_>) -> Result<wasmtime::Memory> {
    c.data().memory.ok_or_else(|| anyhow!("the module exports no `memory`"))
}

fn range(ptr: i32, len: i32) -> Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or_else(|| anyhow!("invalid memory access: {len} bytes at {start:#x}"))?;
    Ok(start..end)
}

/// Copy `len` bytes at `ptr` out of guest memory (trap if out of bounds).
pub(crate) fn read(c: &C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let r = range(ptr, len)?;
    let mem = memory(c)?;
    mem.data(c)
        .get(r.clone())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow!("invalid memory access: {} bytes at {:#x}", r.len(), r.start))
}

fn read_string(c: &C<'_>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

pub(crate) fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let r = range(ptr, bytes.len() as i32)?;
    let mem = memory(c)?;
    let dst = mem
        .data_mut(c)
        .get_mut(r.clone())
        .ok_or_else(|| anyhow!("invalid memory access: {} bytes at {:#x}", r.len(), r.start))?;
    dst.copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<()> {
    write(c, ptr, &v.to_le_bytes())
}

pub(crate) fn write_u64(c: &mut C<'_>, ptr: i32, v: u64) -> Result<()> {
    write(c, ptr, &v.to_le_bytes())
}

/// Allocate guest memory through `proxy_on_memory_allocate` (or `malloc`).
fn alloc(c: &mut C<'_>, size: usize) -> Result<u32> {
    let f = c
        .data()
        .alloc
        .clone()
        .ok_or_else(|| anyhow!("the module exports neither proxy_on_memory_allocate nor malloc"))?;
    let p = f.call(&mut *c, size as i32).context("proxy_on_memory_allocate")? as u32;
    if p == 0 {
        bail!("proxy_on_memory_allocate returned null for {size} bytes");
    }
    Ok(p)
}

/// Envoy's `copyToPointerSize`: empty values come back as (null, 0).
fn copy_out(c: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<()> {
    let p = if bytes.is_empty() {
        0
    } else {
        let p = alloc(c, bytes.len())?;
        write(c, p as i32, bytes)?;
        p
    };
    write_u32(c, ptr_ptr, p)?;
    write_u32(c, size_ptr, bytes.len() as u32)
}

// ---------------------------------------------------------------------------------------------
// Pairs (header map) serialization
// ---------------------------------------------------------------------------------------------

/// Serialize pairs: u32 count, (u32 key len, u32 value len) per pair, then `key\0value\0`...
pub fn serialize_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Deserialize pairs; malformed input gives `None` (Envoy's `toPairs` then yields no pairs).
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word =
        |at: usize| -> Option<usize> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize) };
    let n = word(0)?;
    let mut p = 4usize.checked_add(n.checked_mul(8)?)?;
    if p > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kl = word(4 + i * 8)?;
        let vl = word(8 + i * 8)?;
        let k = bytes.get(p..p.checked_add(kl)?)?.to_vec();
        p = p.checked_add(kl + 1)?;
        let v = bytes.get(p..p.checked_add(vl)?)?.to_vec();
        p = p.checked_add(vl + 1)?;
        if p > bytes.len() {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

fn to_header_pairs(bytes: &[u8]) -> Pairs {
    deserialize_pairs(bytes)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// Envoy's `addCopy`: pseudo-headers stay in front of regular headers.
pub(crate) fn header_add(map: &mut Pairs, key: &str, value: &str) {
    let key = key.to_ascii_lowercase();
    if key.starts_with(':') {
        let at = map.iter().take_while(|(k, _)| k.starts_with(':')).count();
        map.insert(at, (key, value.to_string()));
    } else {
        map.push((key, value.to_string()));
    }
}

/// Envoy's `setCopy`: the first entry is replaced in place, other entries of the name removed.
pub(crate) fn header_replace(map: &mut Pairs, key: &str, value: &str) {
    let key = key.to_ascii_lowercase();
    if let Some(i) = map.iter().position(|(k, _)| *k == key) {
        map[i].1 = value.to_string();
        let mut n = 0;
        map.retain(|(k, _)| {
            let keep = *k != key || n == 0;
            if *k == key {
                n += 1;
            }
            keep
        });
    } else {
        header_add(map, &key, value);
    }
}

// ---------------------------------------------------------------------------------------------
// Header maps and buffers of the effective context
// ---------------------------------------------------------------------------------------------

/// The readable map `t` of the effective context (Envoy's `getConstMap`); `None` = Envoy's null map. In
/// `proxy_on_log` the request and response headers are the access log's (always there).
fn map_get(s: &VmState, t: i32) -> Option<&Pairs> {
    match t {
        0 => s.stream().filter(|st| st.request_access || st.in_log).map(|st| &st.request_headers),
        2 => s.stream().filter(|st| st.response_access || st.in_log).map(|st| &st.response_headers),
        6 => s.call_response.as_ref().map(|r| &r.headers),
        _ => None, // trailers (never present here), gRPC metadata
    }
}

/// A read of map `t` found no map: Envoy answers NotFound in the access log phase, BadArgument elsewhere.
fn no_map(s: &VmState) -> i32 {
    if s.stream().is_some_and(|st| st.in_log) { NOT_FOUND } else { BAD_ARGUMENT }
}

/// The writable map `t` (Envoy's `getMap`: request/response headers, through the pointers only).
fn map_mut(s: &mut VmState, t: i32) -> Option<&mut Pairs> {
    match t {
        0 => s.stream_mut().filter(|st| st.request_access).map(|st| &mut st.request_headers),
        2 => s.stream_mut().filter(|st| st.response_access).map(|st| &mut st.response_headers),
        _ => None,
    }
}

const MAX_MAP_TYPE: i32 = 7;
const MAX_BUFFER_TYPE: i32 = 8;

/// Envoy's `getBuffer`: `None` = NotFound. A body is there only inside its body callback (empty elsewhere);
/// CallData (8) is the context's scratch buffer, i.e. the last buffer it read.
fn buffer_get(s: &mut VmState, t: i32) -> Option<Vec<u8>> {
    let ctx = s.effective;
    let bytes = match t {
        0 => s.stream().filter(|st| st.request_body_live).map(|st| st.request_body.clone()).unwrap_or_default(),
        1 => s.stream().filter(|st| st.response_body_live).map(|st| st.response_body.clone()).unwrap_or_default(),
        2 | 3 | 5 => Vec::new(),
        4 => s.call_response.as_ref()?.body.clone(),
        6 => s.vm_config.clone(),
        7 if s.plugin_config_access => s.plugin_config.clone(),
        8 => return Some(s.scratch.get(&ctx).cloned().unwrap_or_default()),
        _ => return None,
    };
    s.scratch.insert(ctx, bytes.clone());
    Some(bytes)
}

/// A context `proxy_set_effective_context` accepts: the VM context, the root or a live stream.
fn is_known_context(s: &VmState, id: u32) -> bool {
    id == VM_CONTEXT || id == ROOT_CONTEXT || s.streams.contains_key(&id)
}

/// Look a property up (raw path, NUL-separated segments), as Envoy's `getProperty` would for what this host
/// models: filter state written by the plugin (by its first segment, as Envoy's `wasm.<name>` lookup; a bytes
/// value has no fields, so a longer path finds nothing), properties given by the test (dot-joined), and the
/// request attributes Envoy reads from the request headers (only while the filter has them, or in on_log).
fn property(s: &VmState, raw: &[u8]) -> Option<Vec<u8>> {
    let path = property_path(raw);
    let mut segments = raw.split(|b| *b == 0);
    let first = String::from_utf8_lossy(segments.next().unwrap_or_default()).into_owned();
    let more = segments.next().is_some();
    if let Some(st) = s.stream() {
        if let Some(v) = st.filter_state.get(&first) {
            return if more { None } else { Some(v.clone()) };
        }
        if let Some(v) = st.properties.get(&path) {
            return Some(v.clone());
        }
        let headers = st.request_access || st.in_log;
        let header = |name: &str| {
            if !headers {
                return None;
            }
            st.request_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone().into_bytes())
        };
        match path.as_str() {
            "request.path" => return header(":path"),
            "request.url_path" => {
                return header(":path").map(|p| {
                    let end = p.iter().position(|b| *b == b'?').unwrap_or(p.len());
                    p[..end].to_vec()
                });
            }
            "request.host" => return header(":authority"),
            "request.method" => return header(":method"),
            "request.scheme" => return header(":scheme"),
            "request.id" => return header("x-request-id"),
            "request.time" => {
                let ns =
                    st.request_time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
                return Some(ns.to_le_bytes().to_vec());
            }
            "response.code" if !st.response_headers.is_empty() => {
                let code = st
                    .response_headers
                    .iter()
                    .find(|(k, _)| k == ":status")
                    .and_then(|(_, v)| v.parse::<i64>().ok())?;
                return Some(code.to_le_bytes().to_vec());
            }
            _ => {}
        }
    }
    s.vm_properties.get(&path).cloned()
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

/// Every (module, name) this host provides, for a clear error on unknown imports.
pub(crate) fn provided() -> &'static [&'static str] {
    &[
        "proxy_log",
        "proxy_get_log_level",
        "proxy_get_current_time_nanoseconds",
        "proxy_set_tick_period_milliseconds",
        "proxy_get_buffer_bytes",
        "proxy_set_buffer_bytes",
        "proxy_get_buffer_status",
        "proxy_get_header_map_pairs",
        "proxy_set_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_add_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_get_header_map_size",
        "proxy_get_property",
        "proxy_set_property",
        "proxy_send_local_response",
        "proxy_continue_stream",
        "proxy_close_stream",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_register_shared_queue",
        "proxy_resolve_shared_queue",
        "proxy_dequeue_shared_queue",
        "proxy_enqueue_shared_queue",
        "proxy_http_call",
        "proxy_grpc_call",
        "proxy_grpc_stream",
        "proxy_grpc_send",
        "proxy_grpc_cancel",
        "proxy_grpc_close",
        "proxy_get_status",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_get_metric",
        "proxy_set_effective_context",
        "proxy_done",
        "proxy_call_foreign_function",
    ]
}

/// Whether the test made this host call fail (fault injection, [`crate::Vm::fail_host_call`]).
fn failing(c: &C<'_>, name: &str) -> bool {
    c.data().failing.contains(&name)
}

pub(crate) fn link(l: &mut Linker<VmState>) -> Result<()> {
    const M: &str = "env";

    l.func_wrap(M, "proxy_log", |c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
        // proxy-wasm-cpp-host checks the level before reading the message.
        let Some(level) = LogLevel::from_u32(level as u32) else { return Ok(BAD_ARGUMENT) };
        let msg = read_string(&c, ptr, len)?;
        let mut c = c;
        c.data_mut().logs.push(LogEntry { level, message: msg });
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_get_log_level", |mut c: C<'_>, ptr: i32| -> Result<i32> {
        let level = c.data().log_level as u32;
        write_u32(&mut c, ptr, level)?;
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_get_current_time_nanoseconds", |mut c: C<'_>, ptr: i32| -> Result<i32> {
        if failing(&c, "proxy_get_current_time_nanoseconds") {
            return Ok(INTERNAL_FAILURE);
        }
        let now = c.data().now_nanos();
        write_u64(&mut c, ptr, now)?;
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_set_tick_period_milliseconds", |mut c: C<'_>, ms: i32| -> Result<i32> {
        c.data_mut().tick_period_ms = ms as u32;
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, len: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            if !(0..=MAX_BUFFER_TYPE).contains(&t) {
                return Ok(BAD_ARGUMENT);
            }
            let Some(buf) = buffer_get(c.data_mut(), t) else { return Ok(NOT_FOUND) };
            let (start, len) = (start as u32 as usize, len as u32 as usize);
            if start.checked_add(len).is_none() {
                return Ok(BAD_ARGUMENT);
            }
            let end = start.saturating_add(len).min(buf.len());
            let slice = if start >= buf.len() { &[][..] } else { &buf[start..end] };
            copy_out(&mut c, slice, ptr_ptr, size_ptr)?;
            Ok(OK)
        },
    )?;

    l.func_wrap(
        M,
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, len: i32, ptr: i32, size: i32| -> Result<i32> {
            if !(0..=MAX_BUFFER_TYPE).contains(&t) {
                return Ok(BAD_ARGUMENT);
            }
            if buffer_get(c.data_mut(), t).is_none() {
                return Ok(NOT_FOUND);
            }
            let data = read(&c, ptr, size)?;
            let (start, len) = (start as u32 as usize, len as u32 as usize);
            let Some(st) = c.data_mut().stream_mut() else { return Ok(BAD_ARGUMENT) };
            // Only a body inside its own callback is a live (writable) buffer; the rest are immutable.
            let buf = match t {
                0 if st.request_body_live => &mut st.request_body,
                1 if st.response_body_live => &mut st.response_body,
                _ => return Ok(BAD_ARGUMENT),
            };
            // Envoy's Buffer::copyFrom: at 0, drain `len` bytes then prepend; at or past the end, append.
            if start == 0 {
                buf.drain(..len.min(buf.len()));
                buf.splice(0..0, data);
            } else if start >= buf.len() {
                buf.extend_from_slice(&data);
            } else {
                return Ok(BAD_ARGUMENT);
            }
            Ok(OK)
        },
    )?;

    l.func_wrap(M, "proxy_get_buffer_status", |mut c: C<'_>, t: i32, len_ptr: i32, flags_ptr: i32| -> Result<i32> {
        if !(0..=MAX_BUFFER_TYPE).contains(&t) {
            return Ok(BAD_ARGUMENT);
        }
        let Some(buf) = buffer_get(c.data_mut(), t) else { return Ok(NOT_FOUND) };
        write_u32(&mut c, len_ptr, buf.len() as u32)?;
        write_u32(&mut c, flags_ptr, 0)?;
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_get_header_map_pairs", |mut c: C<'_>, t: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
        if failing(&c, "proxy_get_header_map_pairs") {
            return Ok(INTERNAL_FAILURE);
        }
        if !(0..=MAX_MAP_TYPE).contains(&t) {
            return Ok(BAD_ARGUMENT);
        }
        // Envoy: a missing map serializes as no pairs; zero pairs come back as (null, 0).
        let bytes = match map_get(c.data(), t) {
            Some(m) if !m.is_empty() => serialize_pairs(m),
            _ => Vec::new(),
        };
        copy_out(&mut c, &bytes, ptr_ptr, size_ptr)?;
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_set_header_map_pairs", |mut c: C<'_>, t: i32, ptr: i32, size: i32| -> Result<i32> {
        if !(0..=MAX_MAP_TYPE).contains(&t) {
            return Ok(BAD_ARGUMENT);
        }
        let pairs = to_header_pairs(&read(&c, ptr, size)?);
        let Some(map) = map_mut(c.data_mut(), t) else { return Ok(BAD_ARGUMENT) };
        map.clear();
        for (k, v) in &pairs {
            header_add(map, k, v);
        }
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, ks: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(BAD_ARGUMENT);
            }
            let key = read_string(&c, kp, ks)?.to_ascii_lowercase();
            let Some(map) = map_get(c.data(), t) else { return Ok(no_map(c.data())) };
            // Envoy returns the first value only.
            let Some(value) = map.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()) else {
                return Ok(NOT_FOUND);
            };
            copy_out(&mut c, value.as_bytes(), ptr_ptr, size_ptr)?;
            Ok(OK)
        },
    )?;

    l.func_wrap(
        M,
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, ks: i32, vp: i32, vs: i32| -> Result<i32> {
            if failing(&c, "proxy_replace_header_map_value") {
                return Ok(INTERNAL_FAILURE);
            }
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(BAD_ARGUMENT);
            }
            let key = read_string(&c, kp, ks)?;
            let value = read_string(&c, vp, vs)?;
            let Some(map) = map_mut(c.data_mut(), t) else { return Ok(BAD_ARGUMENT) };
            header_replace(map, &key, &value);
            Ok(OK)
        },
    )?;

    l.func_wrap(
        M,
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, ks: i32, vp: i32, vs: i32| -> Result<i32> {
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(BAD_ARGUMENT);
            }
            let key = read_string(&c, kp, ks)?;
            let value = read_string(&c, vp, vs)?;
            let Some(map) = map_mut(c.data_mut(), t) else { return Ok(BAD_ARGUMENT) };
            header_add(map, &key, &value);
            Ok(OK)
        },
    )?;

    l.func_wrap(M, "proxy_remove_header_map_value", |mut c: C<'_>, t: i32, kp: i32, ks: i32| -> Result<i32> {
        if failing(&c, "proxy_remove_header_map_value") {
            return Ok(INTERNAL_FAILURE);
        }
        if !(0..=MAX_MAP_TYPE).contains(&t) {
            return Ok(BAD_ARGUMENT);
        }
        let key = read_string(&c, kp, ks)?.to_ascii_lowercase();
        let Some(map) = map_mut(c.data_mut(), t) else { return Ok(BAD_ARGUMENT) };
        map.retain(|(k, _)| *k != key);
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_get_header_map_size", |mut c: C<'_>, t: i32, ptr: i32| -> Result<i32> {
        if !(0..=MAX_MAP_TYPE).contains(&t) {
            return Ok(BAD_ARGUMENT);
        }
        let Some(map) = map_mut(c.data_mut(), t) else { return Ok(BAD_ARGUMENT) };
        let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        write_u32(&mut c, ptr, size as u32)?;
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, ps: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let raw = read(&c, pp, ps)?;
            let Some(value) = property(c.data(), &raw) else { return Ok(NOT_FOUND) };
            copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
            Ok(OK)
        },
    )?;

    l.func_wrap(M, "proxy_set_property", |mut c: C<'_>, pp: i32, ps: i32, vp: i32, vs: i32| -> Result<i32> {
        let path = String::from_utf8_lossy(&read(&c, pp, ps)?).into_owned();
        let value = read(&c, vp, vs)?;
        // Envoy: no stream info (root context) -> NotFound.
        let Some(st) = c.data_mut().stream_mut() else { return Ok(NOT_FOUND) };
        st.filter_state.insert(path, value);
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_send_local_response",
        |mut c: C<'_>, status: i32, dp: i32, ds: i32, bp: i32, bs: i32, hp: i32, hs: i32, _grpc: i32| -> Result<i32> {
            // Envoy records the details with whitespace replaced (`StringUtil::replaceAllEmptySpace`).
            let details: String =
                read_string(&c, dp, ds)?.chars().map(|ch| if ch.is_ascii_whitespace() { '_' } else { ch }).collect();
            let body = read(&c, bp, bs)?;
            let headers = to_header_pairs(&read(&c, hp, hs)?);
            let s = c.data_mut();
            let ctx = s.effective;
            // Envoy: without decoder callbacks (root context) nothing happens, still Ok.
            if s.streams.contains_key(&ctx) {
                let reply = LocalReply { status: status as u32, details, body, headers };
                s.deferred.push(Deferred::LocalReply(ctx, reply));
            }
            Ok(OK)
        },
    )?;

    l.func_wrap(M, "proxy_continue_stream", |mut c: C<'_>, t: i32| -> Result<i32> {
        match t {
            0 | 1 => {}
            2 => return Ok(OK), // Downstream: only network filters have it
            3 => return Ok(UNIMPLEMENTED),
            _ => return Ok(BAD_ARGUMENT),
        }
        let s = c.data_mut();
        let ctx = s.effective;
        if let Some(st) = s.streams.get_mut(&ctx) {
            // Envoy drops its request headers/body pointers at once, for either direction.
            st.request_access = false;
            st.request_body_live = false;
            s.deferred.push(Deferred::Continue(ctx, t as u32));
        }
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_close_stream", |mut c: C<'_>, t: i32| -> Result<i32> {
        if !(0..=3).contains(&t) {
            return Ok(BAD_ARGUMENT);
        }
        let s = c.data_mut();
        let ctx = s.effective;
        if s.streams.contains_key(&ctx) {
            s.deferred.push(Deferred::Close(ctx, t as u32));
        }
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, ks: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32| -> Result<i32> {
            let key = read_string(&c, kp, ks)?;
            let found = lock(&c.data().shared.data).map.get(&key).cloned();
            let Some((value, cas)) = found else { return Ok(NOT_FOUND) };
            copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
            write_u32(&mut c, cas_ptr, cas)?;
            Ok(OK)
        },
    )?;

    l.func_wrap(M, "proxy_set_shared_data", |c: C<'_>, kp: i32, ks: i32, vp: i32, vs: i32, cas: i32| -> Result<i32> {
        let key = read_string(&c, kp, ks)?;
        let value = read(&c, vp, vs)?;
        let status = lock(&c.data().shared.data).set(key, value, cas as u32);
        Ok(status as i32)
    })?;

    l.func_wrap(M, "proxy_register_shared_queue", |mut c: C<'_>, np: i32, ns: i32, token_ptr: i32| -> Result<i32> {
        let name = read_string(&c, np, ns)?;
        // proxy-wasm-cpp-host: the root context of the calling context gets proxy_on_queue_ready.
        let owner = (c.data().vm_serial, ROOT_CONTEXT);
        let token = {
            let mut q = lock(&c.data().shared.queues);
            if let Some(t) = q.by_name.get(&name).copied() {
                if let Some(queue) = q.queues.get_mut(&t) {
                    queue.owner = owner;
                }
                t
            } else {
                q.next_token += 1;
                let t = q.next_token;
                q.by_name.insert(name, t);
                q.queues.insert(t, SharedQueue { items: Default::default(), owner });
                t
            }
        };
        write_u32(&mut c, token_ptr, token)?;
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vs: i32, np: i32, ns: i32, token_ptr: i32| -> Result<i32> {
            let vm_id = read_string(&c, vp, vs)?;
            let name = read_string(&c, np, ns)?;
            // All VMs of a host share one (empty) vm_id.
            if !vm_id.is_empty() {
                return Ok(NOT_FOUND);
            }
            let token = lock(&c.data().shared.queues).by_name.get(&name).copied();
            let Some(token) = token else { return Ok(NOT_FOUND) };
            write_u32(&mut c, token_ptr, token)?;
            Ok(OK)
        },
    )?;

    l.func_wrap(
        M,
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let item = {
                let mut q = lock(&c.data().shared.queues);
                let Some(queue) = q.queues.get_mut(&(token as u32)) else { return Ok(NOT_FOUND) };
                queue.items.pop_front()
            };
            let Some(item) = item else { return Ok(EMPTY) };
            copy_out(&mut c, &item, ptr_ptr, size_ptr)?;
            Ok(OK)
        },
    )?;

    l.func_wrap(M, "proxy_enqueue_shared_queue", |c: C<'_>, token: i32, vp: i32, vs: i32| -> Result<i32> {
        let value = read(&c, vp, vs)?;
        let mut q = lock(&c.data().shared.queues);
        let Some(queue) = q.queues.get_mut(&(token as u32)) else { return Ok(NOT_FOUND) };
        queue.items.push_back(value);
        Ok(OK)
    })?;

    l.func_wrap(
        M,
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         us: i32,
         hp: i32,
         hs: i32,
         bp: i32,
         bs: i32,
         tp: i32,
         ts: i32,
         timeout: i32,
         token_ptr: i32|
         -> Result<i32> {
            let cluster = read_string(&c, up, us)?;
            let headers = to_header_pairs(&read(&c, hp, hs)?);
            let body = read(&c, bp, bs)?;
            let trailers = to_header_pairs(&read(&c, tp, ts)?);
            // Envoy writes the token first to validate the pointer.
            write_u32(&mut c, token_ptr, 0)?;
            let s = c.data_mut();
            if timeout < 0 {
                return Ok(BAD_ARGUMENT);
            }
            if let Some(known) = &s.clusters
                && !known.contains(&cluster)
            {
                s.host_log(LogLevel::Debug, format!("proxy_http_call: unknown cluster {cluster:?}"));
                return Ok(BAD_ARGUMENT);
            }
            let has = |name: &str| headers.iter().any(|(k, _)| k == name);
            if !has(":path") || !has(":method") || !has(":authority") {
                s.host_log(LogLevel::Debug, "proxy_http_call: :path, :method and :authority are required".to_string());
                return Ok(BAD_ARGUMENT);
            }
            // Envoy's callout ids carry their type in the low two bits (HTTP calls: 0) and step by 4.
            let mut token = s.next_token.wrapping_add(CALLOUT_STEP) & !CALLOUT_TYPE_MASK;
            while token == 0 || s.callouts.contains_key(&token) {
                token = token.wrapping_add(CALLOUT_STEP);
            }
            s.next_token = token;
            let context_id = s.effective;
            s.callouts.insert(
                token,
                Callout {
                    token,
                    context_id,
                    cluster,
                    headers,
                    body,
                    trailers,
                    timeout: std::time::Duration::from_millis(timeout as u64),
                },
            );
            write_u32(&mut c, token_ptr, token)?;
            Ok(OK)
        },
    )?;

    // gRPC: calls are not modelled. To a cluster that does not exist Envoy answers ParseFailure (it first
    // tries the argument as a serialized GrpcService, then as a cluster name); to one that exists it would
    // start the call, which this host cannot, so it answers InternalFailure (and logs why).
    l.func_wrap(
        M,
        "proxy_grpc_call",
        |mut c: C<'_>,
         sp: i32,
         ss: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Result<i32> {
            let service = read_string(&c, sp, ss)?;
            Ok(grpc_unsupported(c.data_mut(), "proxy_grpc_call", &service))
        },
    )?;
    l.func_wrap(
        M,
        "proxy_grpc_stream",
        |mut c: C<'_>, sp: i32, ss: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
            let service = read_string(&c, sp, ss)?;
            Ok(grpc_unsupported(c.data_mut(), "proxy_grpc_stream", &service))
        },
    )?;
    // No gRPC call or stream ever exists here: a token of the right type is NotFound, another BadArgument.
    l.func_wrap(M, "proxy_grpc_send", |_: C<'_>, token: i32, _: i32, _: i32, _: i32| -> Result<i32> {
        Ok(if token as u32 & CALLOUT_TYPE_MASK == GRPC_STREAM { NOT_FOUND } else { BAD_ARGUMENT })
    })?;
    let cancel_or_close = |_: C<'_>, token: i32| -> Result<i32> {
        Ok(match token as u32 & CALLOUT_TYPE_MASK {
            GRPC_CALL | GRPC_STREAM => NOT_FOUND,
            _ => BAD_ARGUMENT,
        })
    };
    l.func_wrap(M, "proxy_grpc_cancel", cancel_or_close)?;
    l.func_wrap(M, "proxy_grpc_close", cancel_or_close)?;

    l.func_wrap(M, "proxy_get_status", |mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
        let (code, msg) = c.data().status.clone();
        write_u32(&mut c, code_ptr, code)?;
        copy_out(&mut c, msg.as_bytes(), ptr_ptr, size_ptr)?;
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_define_metric", |mut c: C<'_>, t: i32, np: i32, ns: i32, id_ptr: i32| -> Result<i32> {
        let name = read_string(&c, np, ns)?;
        let Some(kind) = MetricKind::from_u32(t as u32) else { return Ok(BAD_ARGUMENT) };
        let index = lock(&c.data().shared.metrics).index(&name, kind);
        let id = c.data_mut().metric_ids.define(kind, index);
        write_u32(&mut c, id_ptr, id)?;
        Ok(OK)
    })?;

    // Envoy's Context::incrementMetric/recordMetric/getMetric: the id's type bits choose the table.
    l.func_wrap(M, "proxy_increment_metric", |c: C<'_>, id: i32, offset: i64| -> Result<i32> {
        let id = id as u32;
        let kind = MetricKind::from_u32(id & 3);
        if !matches!(kind, Some(MetricKind::Counter | MetricKind::Gauge)) {
            return Ok(BAD_ARGUMENT);
        }
        let Some(index) = c.data().metric_ids.ids.get(&id).copied() else { return Ok(NOT_FOUND) };
        let mut m = lock(&c.data().shared.metrics);
        let Some(metric) = m.all.get_mut(index) else { return Ok(NOT_FOUND) };
        match metric.kind {
            MetricKind::Counter if offset > 0 => metric.value = metric.value.saturating_add(offset),
            MetricKind::Gauge => metric.value = metric.value.saturating_add(offset),
            _ => return Ok(BAD_ARGUMENT),
        }
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_record_metric", |c: C<'_>, id: i32, value: i64| -> Result<i32> {
        let Some(index) = c.data().metric_ids.ids.get(&(id as u32)).copied() else { return Ok(NOT_FOUND) };
        let mut m = lock(&c.data().shared.metrics);
        let Some(metric) = m.all.get_mut(index) else { return Ok(NOT_FOUND) };
        match metric.kind {
            MetricKind::Counter => metric.value = metric.value.saturating_add(value),
            MetricKind::Gauge => metric.value = value,
            MetricKind::Histogram => metric.samples.push(value as u64),
        }
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_get_metric", |mut c: C<'_>, id: i32, ptr: i32| -> Result<i32> {
        let id = id as u32;
        if !matches!(MetricKind::from_u32(id & 3), Some(MetricKind::Counter | MetricKind::Gauge)) {
            return Ok(BAD_ARGUMENT);
        }
        let Some(index) = c.data().metric_ids.ids.get(&id).copied() else { return Ok(NOT_FOUND) };
        let value = {
            let m = lock(&c.data().shared.metrics);
            let Some(metric) = m.all.get(index) else { return Ok(NOT_FOUND) };
            metric.value as u64
        };
        write_u64(&mut c, ptr, value)?;
        Ok(OK)
    })?;

    l.func_wrap(M, "proxy_set_effective_context", |mut c: C<'_>, id: i32| -> Result<i32> {
        let s = c.data_mut();
        if !is_known_context(s, id as u32) {
            return Ok(BAD_ARGUMENT);
        }
        s.effective = id as u32;
        Ok(OK)
    })?;

    // proxy-wasm-cpp-host: only a root context whose proxy_on_done returned false (at VM shutdown, which this
    // host does not model) is waiting for proxy_done; for every other context it is NotFound.
    l.func_wrap(M, "proxy_done", |_: C<'_>| -> Result<i32> { Ok(NOT_FOUND) })?;

    l.func_wrap(
        M,
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: i32, ns: i32, ap: i32, asz: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let name = read_string(&c, np, ns)?;
            let args = read(&c, ap, asz)?;
            let f = lock(&c.data().shared.foreign).get(&name).cloned();
            let Some(f) = f else { return Ok(NOT_FOUND) };
            let (result, status) = match f(&args) {
                Ok(result) => (result, OK),
                Err(status) => (
                    Vec::new(),
                    match status {
                        Status::NotFound | Status::BadArgument | Status::InternalFailure => status as i32,
                        _ => SERIALIZATION_FAILURE,
                    },
                ),
            };
            // proxy-wasm-cpp-host writes the results (null, 0 when there are none) whatever the status.
            if ptr_ptr != 0 {
                copy_out(&mut c, &result, ptr_ptr, size_ptr)?;
            } else if size_ptr != 0 {
                write_u32(&mut c, size_ptr, result.len() as u32)?;
            }
            Ok(status)
        },
    )?;

    Ok(())
}

/// Callout ids (Envoy's `Wasm::CalloutType`): the type in the low two bits, each type counting by 4.
const CALLOUT_TYPE_MASK: u32 = 3;
const CALLOUT_STEP: u32 = 4;
const GRPC_CALL: u32 = 1;
const GRPC_STREAM: u32 = 2;

fn grpc_unsupported(s: &mut VmState, call: &str, service: &str) -> i32 {
    if s.clusters.as_ref().is_some_and(|known| !known.contains(service)) {
        s.host_log(LogLevel::Debug, format!("{call}: unknown cluster {service:?}"));
        return PARSE_FAILURE;
    }
    s.host_log(LogLevel::Warn, format!("{call} is not supported by this host"));
    INTERNAL_FAILURE
}

/// NUL-separated path segments -> dot-joined key.
fn property_path(raw: &[u8]) -> String {
    raw.split(|b| *b == 0).map(String::from_utf8_lossy).collect::<Vec<_>>().join(".")
}

/// Make the callout response visible (during `proxy_on_http_call_response` only).
pub(crate) fn set_call_response(s: &mut VmState, resp: Option<CallResponse>) {
    s.call_response = resp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![(":method", "GET"), ("x-a", ""), ("x-b", "1")];
        let bytes = serialize_pairs(&pairs);
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        let back = deserialize_pairs(&bytes).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], (b":method".to_vec(), b"GET".to_vec()));
        assert_eq!(back[1], (b"x-a".to_vec(), b"".to_vec()));
    }

    #[test]
    fn malformed_pairs_are_rejected() {
        assert!(deserialize_pairs(&[1, 0, 0, 0]).is_none());
        assert!(deserialize_pairs(&[1, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(deserialize_pairs(&[0xff, 0xff, 0xff, 0xff]).is_none());
        assert_eq!(deserialize_pairs(&[]).unwrap().len(), 0);
    }

    #[test]
    fn replace_and_add_follow_envoy() {
        let mut m: Pairs = vec![(":path".into(), "/".into()), ("a".into(), "1".into())];
        header_add(&mut m, "A", "2");
        header_add(&mut m, ":Method", "GET");
        assert_eq!(m[1], (":method".to_string(), "GET".to_string()));
        header_replace(&mut m, "a", "3");
        let a: Vec<_> = m.iter().filter(|(k, _)| k == "a").collect();
        assert_eq!(a, vec![&("a".to_string(), "3".to_string())]);
    }

    #[test]
    fn property_paths_join_with_dots() {
        assert_eq!(property_path(b"connection\0uri_san_peer_certificate"), "connection.uri_san_peer_certificate");
        assert_eq!(property_path(b"plugin_name"), "plugin_name");
    }
}
