//! agent-iam-bench: the benchmarks' shared code.
//!
//! - [`measure`]: the timing harness (calibrated batches, warm-up, medians).
//! - [`exports`]: the plugin's bench exports in wasmtime, and what the MCP and audit benchmarks share on them.
//! - [`envoy`]: what the real-Envoy benchmarks share (pinning, Envoy's CPU time, wrk).
//! - [`hostcalls`]: the modules that price one proxy-wasm crossing in real Envoy.
//! - [`loadgen`]: the HTTP/1.1 load generator of `make bench-envoy` and `agent-iam-loadgen`.
//! - [`mcp`]: the MCP workload (configuration F's policy, a `tools/call`, a `tools/list` response).
//! - [`wasi`]: the plugin's bench exports run in plain wasmtime (WASI stubbed).
//!
//! The binaries: `agent-iam-bench` (token path), `agent-iam-host-bench` (per request in the host),
//! `agent-iam-policy-bench` (policy evaluation beside Cedar and Rego, feature `compare`),
//! `agent-iam-mcp-bench` (the MCP path, natively and in the `.wasm`), `agent-iam-audit-bench` (one audit
//! event, natively and in the `.wasm`),
//! `agent-iam-envoy-bench` (real Envoy beside `jwt_authn` + `rbac`) and `agent-iam-loadgen`.
pub mod envoy;
pub mod exports;
pub mod hostcalls;
pub mod loadgen;
pub mod mcp;
pub mod measure;
pub mod wasi;
