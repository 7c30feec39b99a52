//! The calls this plugin makes into the host (proxy-wasm ABI 0.2.1), and the only `unsafe` of the filter.
//!
//! The Rust SDK's `hostcalls` panic on any status they do not expect and copy every header into owned
//! strings; these return the status as an error and borrow where they can. Each function is one crossing.

use std::ptr::{null, null_mut};
use std::time::Duration;

/// A host status other than Ok (`proxy_status_t`), by its number: logged, never interpreted further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
/// `set_shared_data` with a CAS token that is no longer current.
pub const CAS_MISMATCH: u32 = 8;

fn check(status: u32) -> Result<(), Status> {
    if status == OK { Ok(()) } else { Err(Status(status)) }
}

/// Log levels, as the host numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// The header maps this plugin reads or writes, named as the ABI names them.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
#[allow(clippy::enum_variant_names)]
pub enum MapType {
    HttpRequestHeaders = 0,
    HttpResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
}

/// The buffers this plugin reads.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum BufferType {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

/// Metric kinds.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, value: *mut *mut u8, value_size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map: u32, pairs: *mut *mut u8, pairs_size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        data_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

/// Takes ownership of a buffer the host allocated through [`super::abi`]'s `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host got `data` from `proxy_on_memory_allocate(size)`, which hands out a leaked `Vec<u8>` of
    // exactly `size` bytes (capacity and length): ownership comes back here, once.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: a live buffer for the whole call; the host copies it.
    check(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

pub fn log_level() -> Result<u32, Status> {
    let mut level = 0u32;
    // SAFETY: the host writes one u32 into a valid out-parameter.
    check(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(level)
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

/// `N` bytes from the host's cryptographic random source (WASI `random_get`, which Envoy and the wasmtime host
/// both provide); `None` if the host refuses.
pub fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // SAFETY: the host writes at most `N` bytes into a buffer of `N` bytes.
    let errno = unsafe { random_get(out.as_mut_ptr(), N) };
    (errno == 0).then_some(out)
}

/// The host clock, nanoseconds since the epoch.
pub fn current_time_ns() -> Result<u64, Status> {
    let mut ns = 0u64;
    // SAFETY: the host writes one u64 into a valid out-parameter.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut ns) })?;
    Ok(ns)
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(u32::try_from(period.as_millis()).unwrap_or(u32::MAX)) })
}

/// A property by its path segments; `Ok(None)` when the host has no such property.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let joined = path.join("\0");
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: a live input buffer; the host writes a pointer and a length into valid out-parameters.
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(owned(data, size))),
        NOT_FOUND => Ok(None),
        other => Err(Status(other)),
    }
}

/// Writes a property (a filter state value under `wasm.`).
pub fn set_property(key: &str, value: &str) -> Result<(), Status> {
    // SAFETY: live input buffers for the whole call; the host copies them.
    check(unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

/// A header map, serialised as the host sends it ([`crate::header_map::parse`] reads it).
pub fn header_map(map: MapType) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer and a length into valid out-parameters.
    check(unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) })?;
    Ok(owned(data, size))
}

/// Sets a header, replacing any of that name.
pub fn set_header(map: MapType, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: live input buffers for the whole call; the host copies them.
    check(unsafe { proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: a live input buffer for the whole call.
    check(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// Up to `max` bytes of a buffer from its start (empty when the host has none).
pub fn buffer(buffer: BufferType, max: usize) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer and a length into valid out-parameters.
    let status = unsafe { proxy_get_buffer_bytes(buffer as u32, 0, max, &mut data, &mut size) };
    match status {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(Status(other)),
    }
}

/// Replaces the first `size` bytes of a body buffer (the chunk the current body callback was given) with
/// `data`.
pub fn set_buffer(buffer: BufferType, size: usize, data: &[u8]) -> Result<(), Status> {
    // SAFETY: a live input buffer for the whole call; the host copies it.
    check(unsafe { proxy_set_buffer_bytes(buffer as u32, 0, size, data.as_ptr(), data.len()) })
}

/// Sends a local reply with response-code details (for `%RESPONSE_CODE_DETAILS%`), applied when the current
/// callback returns. `headers` serialised by [`crate::header_map::serialize`].
pub fn send_local_response(status: u32, details: &str, headers: &[u8], body: &[u8]) -> Result<(), Status> {
    // SAFETY: live input buffers for the whole call; the host copies them. -1: not a gRPC reply.
    check(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Resumes the effective context's paused request.
pub fn resume_request() -> Result<(), Status> {
    // SAFETY: no pointers. 0: the request stream.
    check(unsafe { proxy_continue_stream(0) })
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// The value of a shared-data key (shared by every VM of the plugin's `vm_id` in the Envoy process) and its
/// CAS token; `None` if it was never set.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: a live key buffer; the host writes a pointer, a length and a u32 into valid out-parameters.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok(Some((owned(data, size), cas))),
        NOT_FOUND => Ok(None),
        other => Err(Status(other)),
    }
}

/// Sets a shared-data key if its CAS token is still `cas` (0: unconditionally); `Err(Status(CAS_MISMATCH))`
/// when another VM wrote it since.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: live input buffers for the whole call; the host copies them.
    check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

/// Starts an HTTP call through an Envoy cluster; the answer comes to `proxy_on_http_call_response` with the
/// returned token.
pub fn http_call(cluster: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<u32, Status> {
    http_call_with_body(cluster, headers, &[], timeout)
}

/// [`http_call`] with a request body.
pub fn http_call_with_body(
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = crate::header_map::serialize(headers);
    let trailers = crate::header_map::serialize::<&str, &str>(&[]);
    let mut token = 0u32;
    let body_ptr = if body.is_empty() { null() } else { body.as_ptr() };
    // SAFETY: live input buffers for the whole call (no body: null and 0); the host writes one u32.
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body_ptr,
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            &mut token,
        )
    })?;
    Ok(token)
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: a live input buffer; the host writes one u32.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

/// Calls a host foreign function (`args` may be empty); its result bytes.
pub fn call_foreign_function(name: &str, args: &[u8]) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: live input buffers; the host writes a pointer and a length into valid out-parameters.
    check(unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), &mut data, &mut size)
    })?;
    Ok(owned(data, size))
}
