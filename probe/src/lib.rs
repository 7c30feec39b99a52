//! # agent-iam-probe: every proxy-wasm host function, in every phase
//!
//! A proxy-wasm (ABI 0.2.1) module with no purpose but to call each host function of the ABI in each callback
//! where it can be called, with good and bad arguments, and log what came back: one `proxy_log` line at info
//! level per call,
//!
//! ```text
//! probe|<vm>|<phase>|<call>|<arguments>|<status>|<value>
//! ```
//!
//! `<vm>` numbers the VMs sharing one plugin (Envoy starts a configuration canary, a main-thread VM and one VM
//! per worker); `<phase>` is the callback (`vm_start`, `tick`, `main.request_body`, ...: stream phases are
//! prefixed with the kind of request, from its path: `main`, `plain`, `local`, `close`, or `unknown` where the
//! path cannot be read yet); `<status>` is the proxy-wasm status by name (`errno=<n>` for WASI calls);
//! `<value>` is what the call returned, normalised where it legitimately differs between runs (request ids,
//! times, ports, CAS values, tokens, metric ids) and `-` when nothing is returned (`unwritten` when the host
//! left the guest's out-pointer untouched).
//!
//! `tests/tests/probe.rs` runs it in the wasmtime host and in real Envoy and compares the lines.
//!
//! The flow the lines come from:
//!
//! - root: `root_create`, `vm_start` (sets a 100 ms tick), `configure` (registers a shared queue), the first
//!   `tick` (then stops ticking), `queue_ready` (after `main.request_headers` enqueued one item),
//!   `call_response` (the callout `main.request_headers` made to the `callout` cluster: root battery, then
//!   `set_effective_context` to the stream, a stream battery as `main.call_response`, then
//!   `proxy_continue_stream`);
//! - `/probe/main` (POST with a body): the request headers pause for the callout, the body is buffered;
//! - `/probe/plain` (POST with a body): nothing pauses;
//! - `/probe/local` (GET): `proxy_send_local_response(403)` from the request headers, then more calls;
//! - `/probe/close` (GET): `proxy_close_stream(request)` from the request headers, then more calls (Envoy
//!   resets the stream when the callback returns).
//!
//! Nothing is shared between phases except what the flow needs: shared data keys, queue names and metric names
//! are per VM and per phase, so the lines do not depend on the order in which independent callbacks (the tick,
//! the queue) interleave with the requests. The module never panics: no unwrap, no indexing, no panicking
//! arithmetic; a host that answers something odd gets it logged.
//!
//! A native build (for `cargo test --workspace`) is an empty library; the module is the wasm32 build.

#![cfg_attr(
    target_arch = "wasm32",
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]

#[cfg(target_arch = "wasm32")]
mod probe;
#[cfg(target_arch = "wasm32")]
mod sys;
#[cfg(target_arch = "wasm32")]
mod text;
