//! agent-iam-host: run the agent-iam `.wasm` as Envoy would, without Envoy.
//!
//! - [`host`]: a proxy-wasm ABI 0.2.1 host on wasmtime (the Envoy emulator).
//! - [`testbed`]: real processes on loopback for end-to-end runs: an echo upstream, Envoy, an HTTP client.
//! - [`h2`]: a raw HTTP/2 client that sends header blocks exactly as given, for attack tests.
//! - [`vectors`]: signature edge cases shared by the host and Envoy tests.
//! - [`demo`]: demo keys, tokens and the scripted gateway scenario shared by `make demo` and the tests.
//! - [`measure`]: the benchmarks' timing harness.
pub mod demo;
pub mod h2;
pub mod host;
pub mod loadgen;
pub mod measure;
pub mod pki;
pub mod testbed;
pub mod vectors;

use std::path::PathBuf;

/// The workspace root (where `Cargo.toml`, `envoy/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The plugin `.wasm` the tests and tools run: `$AGENT_IAM_WASM` if set, else the release build in
/// `target/wasm32-wasip1/release/agent_iam.wasm` (built by `make wasm`).
pub fn plugin_wasm_path() -> PathBuf {
    match std::env::var_os("AGENT_IAM_WASM") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/wasm32-wasip1/release/agent_iam.wasm"),
    }
}
