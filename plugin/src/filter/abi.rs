//! The callbacks Envoy makes into the module (proxy-wasm ABI 0.2.1), dispatched to the plugin's root contexts
//! and requests.
//!
//! Written here rather than taken from the Rust SDK, whose dispatcher exports every callback of the ABI
//! (Envoy then calls the response, body and log callbacks of every request, about 50 ns each, for nothing),
//! keeps each context in a `Box<dyn>` behind a SipHash map, and panics on an unknown context id. This module
//! exports what the plugin uses: per request, `proxy_on_context_create`, `proxy_on_request_headers`,
//! `proxy_on_request_body`, `proxy_on_response_headers`, `proxy_on_response_body` (the three for MCP
//! endpoints: reading the JSON-RPC body and filtering list responses) and `proxy_on_delete`; and for the root
//! context configuration, ticks and HTTP call answers. A callback for a
//! context it does not know is answered as harmlessly as the ABI allows (a request fails closed with a 503).

use super::{Request, Root};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The plugin's root contexts (one per plugin configuration sharing this VM), by context id.
    static ROOTS: RefCell<Vec<(u32, Rc<RefCell<Root>>)>> = const { RefCell::new(Vec::new()) };
    /// Live requests by context id.
    static REQUESTS: RefCell<FxHashMap<u32, Request>> = RefCell::new(FxHashMap::default());
}

fn root(context_id: u32) -> Option<Rc<RefCell<Root>>> {
    ROOTS.with(|roots| roots.borrow().iter().find(|(id, _)| *id == context_id).map(|(_, r)| r.clone()))
}

/// Runs `f` on a root context, unless it is unknown or already in use further up the stack (a host call that
/// re-entered the module): then `otherwise`.
fn with_root<T>(context_id: u32, otherwise: T, f: impl FnOnce(&mut Root) -> T) -> T {
    match root(context_id) {
        Some(root) => match root.try_borrow_mut() {
            Ok(mut root) => f(&mut root),
            Err(_) => otherwise,
        },
        None => otherwise,
    }
}

#[cfg(target_os = "wasi")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// The WASI reactor's start: static constructors.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once by the host before any other export, as the WASI reactor ABI requires.
    unsafe {
        __wasm_call_ctors();
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills and hands back (header maps, properties, buffers): a leaked `Vec<u8>` of exactly
/// `size` bytes, which [`super::host`] takes back with `Vec::from_raw_parts`.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let buffer = vec![0u8; size].into_boxed_slice();
    Box::into_raw(buffer).cast::<u8>()
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        ROOTS.with(|roots| {
            let mut roots = roots.borrow_mut();
            if !roots.iter().any(|(id, _)| *id == context_id) {
                roots.push((context_id, Rc::new(RefCell::new(Root::new(context_id)))));
            }
        });
        return;
    }
    // A request of an unknown root gets no context: its headers are then refused (`proxy_on_request_headers`).
    if let Some(request) = with_root(root_context_id, None, |root| Some(root.request(context_id))) {
        REQUESTS.with(|requests| requests.borrow_mut().insert(context_id, request));
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(root_context_id: u32, _plugin_configuration_size: usize) -> bool {
    with_root(root_context_id, false, Root::on_configure)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    with_root(root_context_id, (), Root::on_tick);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_http_call_response(
    root_context_id: u32,
    token: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    with_root(root_context_id, (), |root| root.on_http_call_response(token, body_size));
}

/// The request's handles, copied out so that no borrow of the map is held while it is decided (deciding
/// calls the host, which may call back in).
fn request(context_id: u32) -> Option<Request> {
    REQUESTS.with(|requests| requests.borrow().get(&context_id).cloned())
}

/// 0: Continue, 1: StopIteration (the request was answered or is held).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _num_headers: usize, end_of_stream: bool) -> u32 {
    match request(context_id) {
        Some(request) => request.on_request_headers(end_of_stream) as u32,
        None => super::fail_closed("a request without a context") as u32,
    }
}

/// 0: Continue, 1: StopIterationAndBuffer (an MCP body is read whole before it is decided).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_body(context_id: u32, body_size: usize, end_of_stream: bool) -> u32 {
    if !super::mcp::has_phase(context_id) {
        return 0;
    }
    match request(context_id) {
        Some(request) => request.on_request_body(body_size, end_of_stream),
        None => super::fail_closed("a request without a context") as u32,
    }
}

/// 0: Continue (a list response being filtered changes its body, never its headers' pace).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _num_headers: usize, _end_of_stream: bool) -> u32 {
    // Most streams have no MCP work left and no DPoP nonce to hand out: answered without looking up the request.
    if super::dpop::pending(context_id) {
        super::dpop::on_response_headers(context_id);
    }
    if !super::mcp::has_phase(context_id) {
        return 0;
    }
    request(context_id).map_or(0, |r| r.on_response_headers())
}

/// 0: Continue, 1: StopIterationAndBuffer (a JSON list response is filtered whole).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_body(context_id: u32, body_size: usize, end_of_stream: bool) -> u32 {
    if !super::mcp::has_phase(context_id) {
        return 0;
    }
    request(context_id).map_or(0, |r| r.on_response_body(body_size, end_of_stream))
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let _ = super::dpop::forget(context_id);
    let request = REQUESTS.with(|requests| requests.borrow_mut().remove(&context_id));
    match request {
        Some(request) => request.on_delete(),
        None => {
            let removed = ROOTS.with(|roots| {
                let mut roots = roots.borrow_mut();
                let at = roots.iter().position(|(id, _)| *id == context_id)?;
                Some(roots.remove(at).1)
            });
            if let Some(root) = removed
                && let Ok(mut root) = root.try_borrow_mut()
            {
                root.on_delete();
            }
        }
    }
}
