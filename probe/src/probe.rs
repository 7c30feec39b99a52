//! The callbacks and the batteries of calls they run. See the crate docs for the flow and the line format.

use std::cell::{Cell, RefCell};
use std::ptr::{null, without_provenance_mut};

use crate::sys;
use crate::text;

// ---------------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------------

/// What a host leaves in an out-pointer it did not write.
const SENTINEL_PTR: usize = 0xFFFF_FFF0;
const SENTINEL_U32: u32 = 0xDEAD_BEEF;
const SENTINEL_U64: u64 = u64::MAX;
/// Ids, tokens and contexts nobody has.
const BAD_TOKEN: u32 = 0x7FFF_FFF0;

/// proxy-wasm stream types for continue/close.
const REQUEST: u32 = 0;
const RESPONSE: u32 = 1;

thread_local! {
    static VM: Cell<u32> = const { Cell::new(0) };
    static ROOT: Cell<u32> = const { Cell::new(0) };
    static CTX: Cell<u32> = const { Cell::new(0) };
    static KIND: Cell<&'static str> = const { Cell::new("") };
    static PHASE: Cell<&'static str> = const { Cell::new("") };
    static KINDS: RefCell<Vec<(u32, &'static str)>> = const { RefCell::new(Vec::new()) };
    static MAIN_CTX: Cell<u32> = const { Cell::new(0) };
    static CALLOUT_TOKEN: Cell<u32> = const { Cell::new(0) };
    static CALLOUT_DONE: Cell<bool> = const { Cell::new(false) };
    static QUEUE: Cell<u32> = const { Cell::new(0) };
    static TICKED: Cell<bool> = const { Cell::new(false) };
}

fn kind_of(ctx: u32) -> &'static str {
    KINDS.with(|k| match k.try_borrow() {
        Ok(k) => k.iter().find(|(c, _)| *c == ctx).map_or("unknown", |(_, kind)| kind),
        Err(_) => "unknown",
    })
}

fn set_kind(ctx: u32, kind: &'static str) {
    KINDS.with(|k| {
        if let Ok(mut k) = k.try_borrow_mut() {
            k.retain(|(c, _)| *c != ctx);
            k.push((ctx, kind));
        }
    });
}

fn forget_kind(ctx: u32) {
    KINDS.with(|k| {
        if let Ok(mut k) = k.try_borrow_mut() {
            k.retain(|(c, _)| *c != ctx);
        }
    });
}

/// The kind of request, from its path.
fn classify(path: &[u8]) -> &'static str {
    if path.starts_with(b"/probe/main") {
        "main"
    } else if path.starts_with(b"/probe/plain") {
        "plain"
    } else if path.starts_with(b"/probe/local") {
        "local"
    } else if path.starts_with(b"/probe/close") {
        "close"
    } else {
        "other"
    }
}

/// This VM's number among the VMs sharing the plugin's shared data (1, 2, ...), taken once with a CAS loop on a
/// shared counter. Keys, queue and metric names carry it, so VMs never see each other's state.
fn vm() -> u32 {
    let n = VM.with(Cell::get);
    if n != 0 {
        return n;
    }
    let key = b"probe.vms";
    for _ in 0..64 {
        let mut out = Out::new();
        let mut cas = 0u32;
        // SAFETY: all pointers are to live locals; the host writes the out-parameters.
        let st = unsafe { sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut out.ptr, &mut out.len, &mut cas) };
        let current = match (st, out.take()) {
            (0, Some(v)) => v.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes),
            _ => 0,
        };
        let next = current.saturating_add(1);
        let value = next.to_le_bytes();
        let cas = if st == 0 { cas } else { 0 };
        // SAFETY: pointers to live locals.
        let st = unsafe { sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
        if st == 0 {
            VM.with(|v| v.set(next));
            return next;
        }
    }
    VM.with(|v| v.set(999));
    999
}

fn root() -> u32 {
    ROOT.with(Cell::get)
}

fn ctx() -> u32 {
    CTX.with(Cell::get)
}

/// Start a phase: the context the calls are about, the request kind ("" for root phases) and the phase name.
fn enter(ctx: u32, kind: &'static str, phase: &'static str) {
    let _ = vm();
    CTX.with(|c| c.set(ctx));
    KIND.with(|k| k.set(kind));
    PHASE.with(|p| p.set(phase));
}

/// A context id as the probe prints it: `root`, `main` (the callout's stream) or the number.
fn context_name(id: u32) -> String {
    if id == root() {
        "root".to_string()
    } else if id != 0 && id == MAIN_CTX.with(Cell::get) {
        "main".to_string()
    } else {
        id.to_string()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------------------

fn emit(call: &str, args: &str, status: &str, value: &str) {
    let kind = KIND.with(Cell::get);
    let phase = PHASE.with(Cell::get);
    let line = if kind.is_empty() {
        format!("probe|{}|{phase}|{call}|{args}|{status}|{value}", vm())
    } else {
        format!("probe|{}|{kind}.{phase}|{call}|{args}|{status}|{value}", vm())
    };
    // SAFETY: a live string.
    unsafe { sys::proxy_log(2, line.as_ptr(), line.len()) };
}

fn st(s: u32) -> String {
    text::status(s)
}

fn errno(e: u32) -> String {
    format!("errno={e}")
}

fn u32_out(v: u32) -> String {
    if v == SENTINEL_U32 { "unwritten".to_string() } else { v.to_string() }
}

fn nonzero(v: u32) -> String {
    match v {
        SENTINEL_U32 => "unwritten".to_string(),
        0 => "0".to_string(),
        _ => "nonzero".to_string(),
    }
}

/// An out-pointer pair (data pointer, size) the host may write.
struct Out {
    ptr: *mut u8,
    len: usize,
}

impl Out {
    fn new() -> Out {
        Out { ptr: without_provenance_mut(SENTINEL_PTR), len: 0 }
    }

    /// `None` when the host did not write the pointer. Host allocations are leaked (the probe runs once).
    fn take(&self) -> Option<Vec<u8>> {
        if self.ptr.addr() == SENTINEL_PTR {
            return None;
        }
        if self.ptr.is_null() || self.len == 0 {
            return Some(Vec::new());
        }
        // SAFETY: the host allocated `len` bytes at `ptr` through proxy_on_memory_allocate and filled them.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec())
    }
}

fn render(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "unwritten".to_string(),
        Some(v) => text::bytes(v),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// One call each
// ---------------------------------------------------------------------------------------------------------------

fn log_level() {
    let mut level = SENTINEL_U32;
    // SAFETY: pointer to a live local.
    let s = unsafe { sys::proxy_get_log_level(&mut level) };
    emit("get_log_level", "-", &st(s), &u32_out(level));
}

fn current_time() {
    let mut t = SENTINEL_U64;
    // SAFETY: pointer to a live local.
    let s = unsafe { sys::proxy_get_current_time_nanoseconds(&mut t) };
    let v = if t == SENTINEL_U64 { "unwritten".to_string() } else { text::time(t) };
    emit("get_current_time_nanoseconds", "-", &st(s), &v);
}

fn tick_period(ms: u32) {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_set_tick_period_milliseconds(ms) };
    emit("set_tick_period_milliseconds", &format!("period={ms}"), &st(s), "-");
}

fn max_label(m: usize) -> String {
    if m == usize::MAX { "max".to_string() } else { m.to_string() }
}

fn get_buffer(t: u32, start: usize, max: usize) -> Option<Vec<u8>> {
    let mut o = Out::new();
    // SAFETY: pointers to live locals.
    let s = unsafe { sys::proxy_get_buffer_bytes(t, start, max, &mut o.ptr, &mut o.len) };
    let v = o.take();
    emit("get_buffer_bytes", &format!("buffer={t},start={start},max={}", max_label(max)), &st(s), &render(&v));
    v
}

fn buffer_status(t: u32) {
    let mut len = usize::MAX;
    let mut flags = SENTINEL_U32;
    // SAFETY: pointers to live locals.
    let s = unsafe { sys::proxy_get_buffer_status(t, &mut len, &mut flags) };
    let len = if len == usize::MAX { "unwritten".to_string() } else { len.to_string() };
    emit("get_buffer_status", &format!("buffer={t}"), &st(s), &format!("length={len},flags={}", u32_out(flags)));
}

fn set_buffer(t: u32, start: usize, size: usize, data: &[u8]) {
    // SAFETY: a live slice.
    let s = unsafe { sys::proxy_set_buffer_bytes(t, start, size, data.as_ptr(), data.len()) };
    emit(
        "set_buffer_bytes",
        &format!("buffer={t},start={start},size={},data={}", max_label(size), text::bytes(data)),
        &st(s),
        "-",
    );
}

fn map_value(t: u32, key: &str) -> Option<Vec<u8>> {
    let mut o = Out::new();
    // SAFETY: a live string and pointers to live locals.
    let s = unsafe { sys::proxy_get_header_map_value(t, key.as_ptr(), key.len(), &mut o.ptr, &mut o.len) };
    let v = o.take();
    let shown = match &v {
        None => "unwritten".to_string(),
        Some(v) => text::header_value(key.as_bytes(), v),
    };
    emit("get_header_map_value", &format!("map={t},key={key}"), &st(s), &shown);
    if s == 0 { v } else { None }
}

/// Silent read of a request header (to learn the request kind).
fn quiet_map_value(t: u32, key: &str) -> Option<Vec<u8>> {
    let mut o = Out::new();
    // SAFETY: a live string and pointers to live locals.
    let s = unsafe { sys::proxy_get_header_map_value(t, key.as_ptr(), key.len(), &mut o.ptr, &mut o.len) };
    if s == 0 { o.take() } else { None }
}

fn map_pairs(t: u32) -> Option<Vec<u8>> {
    let mut o = Out::new();
    // SAFETY: pointers to live locals.
    let s = unsafe { sys::proxy_get_header_map_pairs(t, &mut o.ptr, &mut o.len) };
    let v = o.take();
    let shown = match &v {
        None => "unwritten".to_string(),
        Some(v) => text::pairs(v),
    };
    emit("get_header_map_pairs", &format!("map={t}"), &st(s), &shown);
    if s == 0 { v } else { None }
}

fn map_size(t: u32) {
    let mut size = usize::MAX;
    // SAFETY: pointer to a live local.
    let s = unsafe { sys::proxy_get_header_map_size(t, &mut size) };
    let v = if size == usize::MAX { "unwritten".to_string() } else { size.to_string() };
    emit("get_header_map_size", &format!("map={t}"), &st(s), &v);
}

fn map_add(t: u32, key: &str, value: &str) {
    // SAFETY: live strings.
    let s = unsafe { sys::proxy_add_header_map_value(t, key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
    emit("add_header_map_value", &format!("map={t},key={key},value={value}"), &st(s), "-");
}

fn map_replace(t: u32, key: &str, value: &str) {
    // SAFETY: live strings.
    let s = unsafe { sys::proxy_replace_header_map_value(t, key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
    emit("replace_header_map_value", &format!("map={t},key={key},value={value}"), &st(s), "-");
}

fn map_remove(t: u32, key: &str) {
    // SAFETY: a live string.
    let s = unsafe { sys::proxy_remove_header_map_value(t, key.as_ptr(), key.len()) };
    emit("remove_header_map_value", &format!("map={t},key={key}"), &st(s), "-");
}

fn set_pairs(t: u32, pairs: &[u8], label: &str) {
    // SAFETY: a live slice.
    let s = unsafe { sys::proxy_set_header_map_pairs(t, pairs.as_ptr(), pairs.len()) };
    emit("set_header_map_pairs", &format!("map={t},pairs={label}"), &st(s), "-");
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    let raw = path.join("\0");
    let shown_path = path.join(".");
    let mut o = Out::new();
    // SAFETY: a live string and pointers to live locals.
    let s = unsafe { sys::proxy_get_property(raw.as_ptr(), raw.len(), &mut o.ptr, &mut o.len) };
    let v = o.take();
    let shown = match &v {
        None => "unwritten".to_string(),
        Some(v) => text::property(&shown_path, v),
    };
    emit("get_property", &format!("path={shown_path}"), &st(s), &shown);
    if s == 0 { v } else { None }
}

fn quiet_property(path: &str) -> Option<Vec<u8>> {
    let mut o = Out::new();
    // SAFETY: a live string and pointers to live locals.
    let s = unsafe { sys::proxy_get_property(path.as_ptr(), path.len(), &mut o.ptr, &mut o.len) };
    if s == 0 { o.take() } else { None }
}

fn set_property(path: &[&str], value: &str) {
    let raw = path.join("\0");
    // SAFETY: live strings.
    let s = unsafe { sys::proxy_set_property(raw.as_ptr(), raw.len(), value.as_ptr(), value.len()) };
    emit("set_property", &format!("path={},value={value}", path.join(".")), &st(s), "-");
}

/// `(status, cas)`; cas `None` when unwritten.
fn get_shared(key: &str, label: &str) -> (u32, Option<u32>) {
    let mut o = Out::new();
    let mut cas = SENTINEL_U32;
    // SAFETY: a live string and pointers to live locals.
    let s = unsafe { sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut o.ptr, &mut o.len, &mut cas) };
    let v = o.take();
    emit("get_shared_data", label, &st(s), &format!("{},cas={}", render(&v), nonzero(cas)));
    (s, if cas == SENTINEL_U32 { None } else { Some(cas) })
}

fn set_shared(key: &str, value: &str, cas: u32, label: &str) {
    // SAFETY: live strings.
    let s = unsafe { sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    emit("set_shared_data", &format!("{label},value={}", text::bytes(value.as_bytes())), &st(s), "-");
}

fn register_queue(name: &str, label: &str) -> u32 {
    let mut token = SENTINEL_U32;
    // SAFETY: a live string and a pointer to a live local.
    let s = unsafe { sys::proxy_register_shared_queue(name.as_ptr(), name.len(), &mut token) };
    emit("register_shared_queue", label, &st(s), &format!("token={}", nonzero(token)));
    if s == 0 { token } else { 0 }
}

fn resolve_queue(vm_id: &str, name: &str, label: &str, expected: u32) {
    let mut token = SENTINEL_U32;
    // SAFETY: live strings and a pointer to a live local.
    let s =
        unsafe { sys::proxy_resolve_shared_queue(vm_id.as_ptr(), vm_id.len(), name.as_ptr(), name.len(), &mut token) };
    let shown = match token {
        SENTINEL_U32 => "unwritten".to_string(),
        t if t == expected && t != 0 => "registered".to_string(),
        t => nonzero(t),
    };
    emit("resolve_shared_queue", label, &st(s), &format!("token={shown}"));
}

fn enqueue(token: u32, label: &str, value: &str) {
    // SAFETY: a live string.
    let s = unsafe { sys::proxy_enqueue_shared_queue(token, value.as_ptr(), value.len()) };
    emit("enqueue_shared_queue", &format!("{label},value={value}"), &st(s), "-");
}

fn dequeue(token: u32, label: &str) {
    let mut o = Out::new();
    // SAFETY: pointers to live locals.
    let s = unsafe { sys::proxy_dequeue_shared_queue(token, &mut o.ptr, &mut o.len) };
    emit("dequeue_shared_queue", label, &st(s), &render(&o.take()));
}

fn define_metric(kind: u32, name: &str, label: &str) -> u32 {
    let mut id = SENTINEL_U32;
    // SAFETY: a live string and a pointer to a live local.
    let s = unsafe { sys::proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    let shown = if id == SENTINEL_U32 { "unwritten".to_string() } else { format!("id&3={}", id & 3) };
    emit("define_metric", &format!("type={kind},{label}"), &st(s), &shown);
    if s == 0 { id } else { 0 }
}

fn increment_metric(id: u32, label: &str, offset: i64) {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_increment_metric(id, offset) };
    emit("increment_metric", &format!("{label},offset={offset}"), &st(s), "-");
}

fn record_metric(id: u32, label: &str, value: u64) {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_record_metric(id, value) };
    emit("record_metric", &format!("{label},value={value}"), &st(s), "-");
}

fn get_metric(id: u32, label: &str) {
    let mut v = SENTINEL_U64;
    // SAFETY: a pointer to a live local.
    let s = unsafe { sys::proxy_get_metric(id, &mut v) };
    let shown = if v == SENTINEL_U64 { "unwritten".to_string() } else { v.to_string() };
    emit("get_metric", label, &st(s), &shown);
}

fn http_call(cluster: &str, headers: &[(&[u8], &[u8])], body: &[u8], label: &str) -> u32 {
    let h = if headers.is_empty() { Vec::new() } else { text::serialize_pairs(headers) };
    let mut token = SENTINEL_U32;
    // SAFETY: live strings and slices, a pointer to a live local.
    let s = unsafe {
        sys::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            h.as_ptr(),
            h.len(),
            body.as_ptr(),
            body.len(),
            null(),
            0,
            5000,
            &mut token,
        )
    };
    emit("http_call", &format!("cluster={cluster},{label}"), &st(s), &format!("token={}", nonzero(token)));
    if s == 0 { token } else { 0 }
}

fn foreign(name: &str, args: &[u8], label: &str) {
    let mut o = Out::new();
    // SAFETY: live string and slice, pointers to live locals.
    let s = unsafe {
        sys::proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), &mut o.ptr, &mut o.len)
    };
    emit("call_foreign_function", &format!("name={name},{label}"), &st(s), &render(&o.take()));
}

fn set_effective(id: u32, label: &str) {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_set_effective_context(id) };
    emit("set_effective_context", &format!("context={label}"), &st(s), "-");
}

/// gRPC to a cluster that does not exist (a real call would need a gRPC upstream), and the stream calls on
/// tokens nobody has (even and odd: Envoy tells calls from streams by the token's parity).
fn grpc() {
    let (service, name, method) = ("no_such_cluster", "probe.Service", "Call");
    let mut token = SENTINEL_U32;
    // SAFETY: live strings, an empty slice, a pointer to a live local.
    let s = unsafe {
        sys::proxy_grpc_call(
            service.as_ptr(),
            service.len(),
            name.as_ptr(),
            name.len(),
            method.as_ptr(),
            method.len(),
            null(),
            0,
            b"x".as_ptr(),
            1,
            1000,
            &mut token,
        )
    };
    emit("grpc_call", "cluster=no_such_cluster", &st(s), &format!("token={}", nonzero(token)));
    let mut token = SENTINEL_U32;
    // SAFETY: live strings, a pointer to a live local.
    let s = unsafe {
        sys::proxy_grpc_stream(
            service.as_ptr(),
            service.len(),
            name.as_ptr(),
            name.len(),
            method.as_ptr(),
            method.len(),
            null(),
            0,
            &mut token,
        )
    };
    emit("grpc_stream", "cluster=no_such_cluster", &st(s), &format!("token={}", nonzero(token)));
    for (token, label) in [(BAD_TOKEN, "token=unknown-even"), (BAD_TOKEN | 1, "token=unknown-odd")] {
        // SAFETY: a live string.
        let s = unsafe { sys::proxy_grpc_send(token, b"x".as_ptr(), 1, 0) };
        emit("grpc_send", label, &st(s), "-");
        // SAFETY: no pointers.
        let s = unsafe { sys::proxy_grpc_cancel(token) };
        emit("grpc_cancel", label, &st(s), "-");
        // SAFETY: no pointers.
        let s = unsafe { sys::proxy_grpc_close(token) };
        emit("grpc_close", label, &st(s), "-");
    }
}

fn continue_stream(t: u32) {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_continue_stream(t) };
    emit("continue_stream", &format!("stream={t}"), &st(s), "-");
}

fn close_stream(t: u32) {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_close_stream(t) };
    emit("close_stream", &format!("stream={t}"), &st(s), "-");
}

fn done() {
    // SAFETY: no pointers.
    let s = unsafe { sys::proxy_done() };
    emit("done", "-", &st(s), "-");
}

fn get_status() {
    let mut code = SENTINEL_U32;
    let mut o = Out::new();
    // SAFETY: pointers to live locals.
    let s = unsafe { sys::proxy_get_status(&mut code, &mut o.ptr, &mut o.len) };
    emit("get_status", "-", &st(s), &format!("code={},message={}", u32_out(code), render(&o.take())));
}

fn log_at(level: u32) {
    let msg = "probe: a log line at a level the comparison ignores";
    // SAFETY: a live string.
    let s = unsafe { sys::proxy_log(level, msg.as_ptr(), msg.len()) };
    emit("log", &format!("level={level}"), &st(s), "-");
}

// ---------------------------------------------------------------------------------------------------------------
// Batteries
// ---------------------------------------------------------------------------------------------------------------

/// Per-VM, per-phase prefix for shared data keys, queue and metric names.
fn scope() -> String {
    let kind = KIND.with(Cell::get);
    let phase = PHASE.with(Cell::get);
    if kind.is_empty() { format!("probe.{}.{phase}", vm()) } else { format!("probe.{}.{kind}.{phase}", vm()) }
}

fn shared_data() {
    let k = format!("{}.k", scope());
    let missing = format!("{}.missing", scope());
    get_shared(&k, "key=fresh");
    set_shared(&k, "v1", 0, "key=fresh,cas=0");
    let (_, c1) = get_shared(&k, "key=written");
    let c1 = c1.unwrap_or(0);
    let stale = if c1 == 0x55AA { 0x55AB } else { 0x55AA };
    set_shared(&k, "v2", stale, "key=written,cas=stale");
    set_shared(&k, "v3", c1, "key=written,cas=current");
    let (_, c2) = get_shared(&k, "key=rewritten");
    let changed = match c2 {
        None => "unwritten",
        Some(c) if c == c1 => "same",
        Some(_) => "changed",
    };
    emit("get_shared_data", "cas-after-write", "-", changed);
    set_shared(&missing, "w", 12345, "key=missing,cas=nonzero");
    get_shared(&missing, "key=written-with-cas");
    set_shared(&k, "", 0, "key=written,cas=0");
    get_shared(&k, "key=emptied");
    get_shared("", "key=empty");
}

fn queues() {
    let name = format!("{}.q", scope());
    let token = register_queue(&name, "name=phase");
    register_queue(&name, "name=phase,again");
    resolve_queue("", &name, "vm_id=,name=phase", token);
    resolve_queue("probe_other_vm", &name, "vm_id=other,name=phase", token);
    resolve_queue("", &format!("{}.none", scope()), "vm_id=,name=missing", token);
    dequeue(token, "token=phase,empty");
    enqueue(BAD_TOKEN, "token=bad", "x");
    dequeue(BAD_TOKEN, "token=bad");
}

fn metrics() {
    let n = format!("{}.m", scope()).replace('.', "_");
    let c = define_metric(0, &format!("{n}_c"), "name=counter");
    let g = define_metric(1, &format!("{n}_g"), "name=gauge");
    let h = define_metric(2, &format!("{n}_h"), "name=histogram");
    define_metric(3, &format!("{n}_x"), "name=bad_type");
    let mut again = SENTINEL_U32;
    let name = format!("{n}_c");
    // SAFETY: a live string and a pointer to a live local.
    let s = unsafe { sys::proxy_define_metric(0, name.as_ptr(), name.len(), &mut again) };
    let same = match again {
        SENTINEL_U32 => "unwritten",
        a if a == c => "same-id",
        _ => "new-id",
    };
    emit("define_metric", "type=0,name=counter,again", &st(s), same);
    increment_metric(c, "counter", 1);
    increment_metric(c, "counter", 0);
    increment_metric(c, "counter", -1);
    get_metric(c, "counter");
    record_metric(c, "counter", 5);
    get_metric(c, "counter");
    increment_metric(g, "gauge", 5);
    increment_metric(g, "gauge", -2);
    get_metric(g, "gauge");
    record_metric(g, "gauge", 7);
    get_metric(g, "gauge");
    increment_metric(h, "histogram", 1);
    record_metric(h, "histogram", 9);
    get_metric(h, "histogram");
    for kind in 0..4u32 {
        let id = BAD_TOKEN | kind;
        let label = format!("unknown-id&3={kind}");
        get_metric(id, &label);
        increment_metric(id, &label, 1);
        record_metric(id, &label, 1);
    }
}

const CALL_HEADERS: [(&[u8], &[u8]); 3] = [(b":method", b"GET"), (b":path", b"/x"), (b":authority", b"probe")];

fn bad_http_calls() {
    http_call("no_such_cluster", &CALL_HEADERS, b"", "headers=complete");
    http_call("callout", &[(b":method", b"GET")], b"", "headers=method-only");
    http_call("callout", &[], b"", "headers=none");
}

fn foreign_functions(clear_route_cache: bool) {
    foreign("probe_no_such_function", b"", "args=empty");
    foreign("verify_signature", b"", "args=empty");
    foreign("verify_signature", b"\x0a\xff\xff\xff", "args=garbage");
    if clear_route_cache {
        foreign("clear_route_cache", b"", "args=empty");
    }
}

fn wasi() {
    let mut t = SENTINEL_U64;
    // SAFETY: pointer to a live local.
    let e = unsafe { sys::wasi_clock_time_get(0, 1, &mut t) };
    let shown = if t == SENTINEL_U64 { "unwritten".to_string() } else { text::time(t) };
    emit("wasi.clock_time_get", "clock=realtime", &errno(e), &shown);
    for (clock, label) in [(1u32, "clock=monotonic"), (2, "clock=process"), (9, "clock=bad")] {
        let mut t = SENTINEL_U64;
        // SAFETY: pointer to a live local.
        let e = unsafe { sys::wasi_clock_time_get(clock, 1, &mut t) };
        let shown = match t {
            SENTINEL_U64 => "unwritten",
            0 => "0",
            _ => "nonzero",
        };
        emit("wasi.clock_time_get", label, &errno(e), shown);
    }
    let mut buf = [0u8; 16];
    // SAFETY: a live buffer of the given length.
    let e = unsafe { sys::wasi_random_get(buf.as_mut_ptr(), buf.len()) };
    emit("wasi.random_get", "len=16", &errno(e), if buf.iter().any(|b| *b != 0) { "filled" } else { "zeros" });
    let (mut count, mut size) = (usize::MAX, usize::MAX);
    // SAFETY: pointers to live locals.
    let e = unsafe { sys::wasi_environ_sizes_get(&mut count, &mut size) };
    emit("wasi.environ_sizes_get", "-", &errno(e), &format!("count={count},size={size}"));
    let (mut count, mut size) = (usize::MAX, usize::MAX);
    // SAFETY: pointers to live locals.
    let e = unsafe { sys::wasi_args_sizes_get(&mut count, &mut size) };
    emit("wasi.args_sizes_get", "-", &errno(e), &format!("count={count},size={size}"));
    for fd in [1u32, 7] {
        let mut stat = [0xAAu8; 24];
        // SAFETY: a live 24-byte buffer (the size of a WASI fdstat).
        let e = unsafe { sys::wasi_fd_fdstat_get(fd, stat.as_mut_ptr()) };
        emit("wasi.fd_fdstat_get", &format!("fd={fd}"), &errno(e), &text::bytes(&stat));
    }
    // The text written to stdout is itself a probe line: the host logs it at info level.
    let kind = KIND.with(Cell::get);
    let phase = PHASE.with(Cell::get);
    let sep = if kind.is_empty() { "" } else { "." };
    let text = format!("probe|{}|{kind}{sep}{phase}|wasi.fd_write.text|fd=1|-|via-stdout\n", vm());
    for fd in [1u32, 3] {
        let iov = [text.as_ptr().addr() as u32, text.len() as u32];
        let mut written = usize::MAX;
        // SAFETY: one iovec pointing at a live string, a pointer to a live local.
        let e = unsafe { sys::wasi_fd_write(fd, iov.as_ptr(), 1, &mut written) };
        let shown = if written == usize::MAX { "unwritten".to_string() } else { written.to_string() };
        emit("wasi.fd_write", &format!("fd={fd}"), &errno(e), &format!("written={shown}"));
    }
}

/// Everything a root context can do, in any root phase. `continue`/`close` on the request and response are
/// only called when the current context really is the root (they would act on a stream otherwise).
fn root_battery() {
    log_level();
    current_time();
    for t in 0..=9u32 {
        get_buffer(t, 0, usize::MAX);
        buffer_status(t);
    }
    set_buffer(6, 0, 0, b"");
    set_buffer(7, 0, 0, b"");
    set_buffer(9, 0, 0, b"");
    for t in 0..=8u32 {
        let key = match t {
            0 => ":path",
            2 | 6 => ":status",
            _ => "x-probe",
        };
        map_value(t, key);
        map_pairs(t);
        map_size(t);
    }
    map_add(0, "x-probe-root", "1");
    map_replace(2, "x-probe-root", "1");
    map_remove(0, "x-probe-root");
    set_pairs(0, &text::serialize_pairs(&[(b"x-a", b"1")]), "one");
    for path in [
        &["plugin_name"][..],
        &["plugin_root_id"],
        &["plugin_vm_id"],
        &["request", "path"],
        &["response", "code"],
        &["probe_missing"],
    ] {
        property(path);
    }
    set_property(&["probe_root"], "r");
    shared_data();
    queues();
    metrics();
    bad_http_calls();
    foreign_functions(true);
    grpc();
    set_effective(ctx(), "self");
    // The VM context (0) is a valid effective context too: a few calls through it.
    set_effective(0, "0");
    property(&["plugin_name"]);
    property(&["plugin_root_id"]);
    get_buffer(6, 0, usize::MAX);
    set_effective(BAD_TOKEN, "unknown");
    set_effective(ctx(), "self");
    if ctx() == root() {
        for t in [REQUEST, RESPONSE, 2, 3, 9] {
            continue_stream(t);
        }
        for t in [REQUEST, RESPONSE, 2, 3, 9] {
            close_stream(t);
        }
    }
    get_status();
    done();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Create,
    RequestHeaders,
    RequestBody,
    CallResponse,
    ResponseHeaders,
    ResponseBody,
    Log,
    Done,
}

/// What a stream context can do, in a stream phase. Two kinds of change are left out where they would alter
/// Envoy's message or trip it up: the request headers are only changed before the response starts (Envoy
/// clears the route cache on a change, and reports an ENVOY_BUG once the route is fixed), and the trailers
/// are not touched in the body phases (in the chunk that ends the stream, Envoy creates trailers on first
/// write access, which changes the message).
fn stream_battery(p: Stream) {
    let phase = PHASE.with(Cell::get);
    let change_request =
        matches!(p, Stream::Create | Stream::RequestHeaders | Stream::RequestBody | Stream::CallResponse);
    let touch_trailers = !matches!(p, Stream::RequestBody | Stream::ResponseBody);
    log_level();
    current_time();
    // Header maps: every type, then changes to the request and response headers.
    for t in 0..=8u32 {
        let key = match t {
            0 => ":path",
            2 | 6 => ":status",
            _ => "x-probe",
        };
        map_value(t, key);
        if touch_trailers || !matches!(t, 1 | 3) {
            map_size(t);
        }
    }
    map_value(0, "x-missing");
    let mut request_pairs = None;
    let mut response_pairs = None;
    for t in 0..=8u32 {
        let v = map_pairs(t);
        match t {
            0 => request_pairs = v,
            2 => response_pairs = v,
            _ => {}
        }
    }
    let changed: &[u32] = if change_request { &[0, 2] } else { &[2] };
    for &t in changed {
        map_add(t, "x-probe-add", phase);
        map_add(t, "X-Probe-Upper", phase);
        map_replace(t, "x-probe-rep", phase);
        map_replace(t, "x-probe-rep", "again");
        map_remove(t, "x-probe-gone");
        map_remove(t, "X-PROBE-UPPER");
        map_value(t, "x-probe-add");
        map_value(t, "x-probe-rep");
    }
    map_add(6, "x-probe-add", phase);
    map_replace(6, "x-probe-rep", phase);
    map_remove(6, "x-probe-gone");
    map_add(8, "x-probe-add", phase);
    if touch_trailers {
        map_add(1, "x-probe-add", phase);
        map_add(3, "x-probe-add", phase);
        set_pairs(1, &text::serialize_pairs(&[(b"x-t", b"1")]), "one");
        set_pairs(3, &text::serialize_pairs(&[(b"x-t", b"1")]), "one");
    }
    // Round trips: the map written back as read (a no-op where the map exists).
    if let Some(pairs) = request_pairs.filter(|_| change_request) {
        set_pairs(0, &pairs, "as-read");
    }
    if let Some(pairs) = response_pairs {
        set_pairs(2, &pairs, "as-read");
    }
    set_pairs(8, &text::serialize_pairs(&[(b"x-a", b"1")]), "one");
    map_pairs(0);
    map_pairs(2);

    // Buffers.
    for t in [0u32, 1, 2, 4, 6, 7, 8, 9] {
        get_buffer(t, 0, usize::MAX);
        buffer_status(t);
    }
    match p {
        Stream::RequestBody => body_ops(0),
        Stream::ResponseBody => body_ops(1),
        _ => {
            set_buffer(0, 0, 0, b"");
            set_buffer(1, 0, 0, b"");
        }
    }
    set_buffer(4, 0, 0, b"");
    set_buffer(6, 0, 0, b"");

    // Properties, and filter state written through set_property.
    for path in [
        &["plugin_name"][..],
        &["plugin_root_id"],
        &["plugin_vm_id"],
        &["request", "path"],
        &["request", "url_path"],
        &["request", "host"],
        &["request", "method"],
        &["request", "scheme"],
        &["request", "protocol"],
        &["request", "id"],
        &["request", "time"],
        &["response", "code"],
        &["connection", "mtls"],
        &["connection", "uri_san_peer_certificate"],
        &["source", "address"],
        &["probe_missing"],
        &["probe_state"],
        &["probe", "nested"],
    ] {
        property(path);
    }
    set_property(&["probe_phase"], phase);
    property(&["probe_phase"]);
    if p == Stream::RequestHeaders {
        set_property(&["probe_state"], KIND.with(Cell::get));
        set_property(&["probe", "nested"], "n");
        property(&["probe_state"]);
        property(&["probe", "nested"]);
    }

    shared_data();
    queues();
    metrics();
    bad_http_calls();
    foreign_functions(matches!(p, Stream::Create | Stream::RequestHeaders | Stream::RequestBody));

    // Contexts and streams: nothing here may end or continue the stream.
    let me = ctx();
    set_effective(me, "self");
    set_effective(0, "0");
    set_effective(BAD_TOKEN, "unknown");
    set_effective(root(), "root");
    map_value(0, ":path");
    property(&["request", "path"]);
    set_effective(me, "self");
    map_value(0, ":path");
    for t in [2u32, 3, 9] {
        continue_stream(t);
    }
    close_stream(9);
    done();
}

/// Body buffer edits that keep its length (the headers already announced it): replace all with the same
/// length, replace the first two bytes, the edit Envoy refuses (in the middle), empty prepend and append.
/// Only on a chunk of three bytes or more: on an empty chunk the same calls would append.
fn body_ops(t: u32) {
    let Some(body) = get_buffer(t, 0, usize::MAX) else { return };
    if body.len() < 3 {
        return;
    }
    get_buffer(t, 1, 2);
    get_buffer(t, 3, usize::MAX);
    get_buffer(t, 0, 0);
    let upper = body.to_ascii_uppercase();
    set_buffer(t, 0, usize::MAX, &upper);
    get_buffer(t, 0, usize::MAX);
    set_buffer(t, 0, 0, b"");
    set_buffer(t, upper.len(), 0, b"");
    set_buffer(t, 1, 1, b"z");
    set_buffer(t, 0, 2, b"zz");
    get_buffer(t, 0, usize::MAX);
}

// ---------------------------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------------------------

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    if parent_id == 0 {
        ROOT.with(|r| r.set(context_id));
        enter(context_id, "", "root_create");
        emit("args", "-", "-", &format!("context={context_id},parent=0"));
        root_battery();
        return;
    }
    let kind = quiet_property("request\0path").map_or("unknown", |p| classify(&p));
    set_kind(context_id, kind);
    enter(context_id, kind, "create");
    emit("args", "-", "-", &format!("context={context_id},parent={}", context_name(parent_id)));
    stream_battery(Stream::Create);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(context_id: u32, size: u32) -> u32 {
    enter(context_id, "", "vm_start");
    emit("args", "-", "-", &format!("context={},vm_configuration_size={size}", context_name(context_id)));
    for level in [0u32, 1, 5, 6, 100] {
        log_at(level);
    }
    wasi();
    root_battery();
    tick_period(100);
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(context_id: u32, size: u32) -> u32 {
    enter(context_id, "", "configure");
    emit("args", "-", "-", &format!("context={},plugin_configuration_size={size}", context_name(context_id)));
    let token = register_queue(&format!("probe.{}.queue", vm()), "name=main");
    QUEUE.with(|q| q.set(token));
    root_battery();
    tick_period(100);
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    if TICKED.with(|t| t.replace(true)) {
        // SAFETY: no pointers.
        unsafe { sys::proxy_set_tick_period_milliseconds(0) };
        return;
    }
    enter(context_id, "", "tick");
    emit("args", "-", "-", &format!("context={}", context_name(context_id)));
    root_battery();
    tick_period(0);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_queue_ready(context_id: u32, token: u32) {
    enter(context_id, "", "queue_ready");
    let which = if token == QUEUE.with(Cell::get) { "main" } else { "other" };
    emit("args", "-", "-", &format!("context={},queue={which}", context_name(context_id)));
    dequeue(token, "token=ready");
    dequeue(token, "token=ready,again");
    root_battery();
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_http_call_response(context_id: u32, token: u32, headers: u32, body: u32, trailers: u32) {
    enter(context_id, "", "call_response");
    let which = if token == CALLOUT_TOKEN.with(Cell::get) { "callout" } else { "other" };
    emit(
        "args",
        "-",
        "-",
        &format!(
            "context={},token={which},headers={headers},body_size={body},trailers={trailers}",
            context_name(context_id)
        ),
    );
    CALLOUT_DONE.with(|d| d.set(true));
    root_battery();
    let main = MAIN_CTX.with(Cell::get);
    set_effective(main, "main");
    enter(main, "main", "call_response");
    stream_battery(Stream::CallResponse);
    continue_stream(REQUEST);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32) -> u32 {
    let mut kind = kind_of(context_id);
    if kind == "unknown" {
        kind = quiet_map_value(0, ":path").map_or("unknown", |p| classify(&p));
        set_kind(context_id, kind);
    }
    enter(context_id, kind, "request_headers");
    emit("args", "-", "-", &format!("headers={headers},end_of_stream={end_of_stream}"));
    if kind == "close" {
        close_stream(REQUEST);
        stream_battery(Stream::RequestHeaders);
        // The reset comes when the callback returns.
        return 1;
    }
    if kind == "local" {
        let details = "probe_local";
        let body = "denied by probe";
        let h = text::serialize_pairs(&[(b"x-local", b"yes")]);
        // SAFETY: live strings and slices.
        let s = unsafe {
            sys::proxy_send_local_response(
                403,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                h.as_ptr(),
                h.len(),
                -1,
            )
        };
        emit("send_local_response", "status=403,headers=x-local", &st(s), "-");
    }
    stream_battery(Stream::RequestHeaders);
    if kind == "main" {
        wasi();
        MAIN_CTX.with(|m| m.set(context_id));
        let headers: [(&[u8], &[u8]); 4] =
            [(b":method", b"POST"), (b":path", b"/callout"), (b":authority", b"callout.local"), (b"x-probe", b"1")];
        let token = http_call("callout", &headers, b"ping", "headers=complete,real");
        CALLOUT_TOKEN.with(|t| t.set(token));
        enqueue(QUEUE.with(Cell::get), "token=main", "item");
        // Wait for the callout: its response continues the request.
        return 1;
    }
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_body(context_id: u32, size: u32, end_of_stream: u32) -> u32 {
    let kind = kind_of(context_id);
    enter(context_id, kind, "request_body");
    emit("args", "-", "-", &format!("body_size={size},end_of_stream={end_of_stream}"));
    stream_battery(Stream::RequestBody);
    // The main request's body waits (buffered) with its headers for the callout.
    if kind == "main" && !CALLOUT_DONE.with(Cell::get) { 1 } else { 0 }
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, trailers: u32) -> u32 {
    enter(context_id, kind_of(context_id), "request_trailers");
    emit("args", "-", "-", &format!("trailers={trailers}"));
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(context_id: u32, headers: u32, end_of_stream: u32) -> u32 {
    enter(context_id, kind_of(context_id), "response_headers");
    emit("args", "-", "-", &format!("headers={headers},end_of_stream={end_of_stream}"));
    stream_battery(Stream::ResponseHeaders);
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_body(context_id: u32, size: u32, end_of_stream: u32) -> u32 {
    enter(context_id, kind_of(context_id), "response_body");
    emit("args", "-", "-", &format!("body_size={size},end_of_stream={end_of_stream}"));
    stream_battery(Stream::ResponseBody);
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, trailers: u32) -> u32 {
    enter(context_id, kind_of(context_id), "response_trailers");
    emit("args", "-", "-", &format!("trailers={trailers}"));
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_log(context_id: u32) {
    enter(context_id, kind_of(context_id), "log");
    emit("args", "-", "-", "-");
    stream_battery(Stream::Log);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    if context_id == root() {
        enter(context_id, "", "root_done");
        emit("args", "-", "-", "-");
        return 1;
    }
    enter(context_id, kind_of(context_id), "done");
    emit("args", "-", "-", "-");
    stream_battery(Stream::Done);
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    if context_id == root() {
        enter(context_id, "", "root_delete");
    } else {
        enter(context_id, kind_of(context_id), "delete");
    }
    emit("args", "-", "-", "-");
    forget_kind(context_id);
}
