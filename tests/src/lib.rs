//! agent-iam-tests: the integration tests (`tests/`), the test bed they share and the demo.
//!
//! - [`testbed`]: real processes on loopback for end-to-end runs: an echo upstream, Envoy, an HTTP client.
//! - [`h2`]: a raw HTTP/2 client that sends header blocks exactly as given, for attack tests.
//! - [`vectors`]: signature edge cases shared by the host and Envoy tests.
//! - [`demo`]: demo keys, tokens and the scripted gateway scenario shared by `make demo` and the tests.
//! - [`mcp`]: the MCP test server and the MCP SDK's client behind `envoy/mcp.yaml` (the MCP part of the demo).
//! - [`hospital`]: the audit part of the demo: the hospital scenario through `envoy/audit.yaml`, then
//!   `agent-iam audit query` and `verify` on the log Envoy wrote.
//! - [`otlp`]: `envoy/audit.yaml` (the audit trail through Envoy's access loggers) and an OTLP/gRPC logs receiver.
//! - [`ssf`]: `envoy/revocation.yaml` (continuous revocation by CAEP events), an SSF transmitter serving RFC 8936
//!   polls, and Envoy with several workers.
//! - [`python`]: the Python helpers of [`mcp`], [`otlp`] and [`ssf`], run from the workspace's `.venv`.
//! - [`pki`]: a SPIFFE test PKI for the mutual-TLS tests and `envoy/sidecar-mtls.yaml`.
//! - [`modules`]: reference proxy-wasm modules (the benchmarks' baseline, an empty filter).
//! - [`ocsf`]: an OCSF 1.8.0 validator for the audit events, over the vendored schema sources.
//!
//! - [`HOST`]: the plugin's `.wasm`, compiled once per test binary for the host tests.
//!
//! The wasmtime host itself is the `agent-iam-host` crate.
pub mod demo;
pub mod h2;
pub mod hospital;
pub mod mcp;
pub mod modules;
pub mod ocsf;
pub mod otlp;
pub mod pki;
pub mod python;
pub mod ssf;
pub mod testbed;
pub mod vectors;

use agent_iam_host::Host;
use std::sync::LazyLock;

/// The plugin's release `.wasm` in the wasmtime host, compiled once per test binary: the host tests
/// (`tests/tests/`) make their VMs from it.
pub static HOST: LazyLock<Host> = LazyLock::new(|| {
    Host::from_file(agent_iam_host::plugin_wasm_path())
        .unwrap_or_else(|e| panic!("{e:#}\nbuild the plugin first: make wasm"))
});
