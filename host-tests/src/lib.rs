//! agent-iam-host: run the agent-iam `.wasm` as Envoy would, without Envoy.
//!
//! - [`host`]: a proxy-wasm ABI 0.2.1 host on wasmtime (the Envoy emulator).
pub mod host;
