//! agent-iam: identity and access for AI agents at the API gateway.
//!
//! Everything outside [`filter`] is plain Rust with no proxy-wasm calls, testable natively; the filter is
//! the thin glue that reads a request from Envoy, asks [`engine::Engine`] for a decision and applies it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod anomaly;
pub mod audit;
pub mod b64;
#[cfg(all(feature = "bench-exports", target_arch = "wasm32"))]
mod bench_exports;
pub mod bytes;
pub mod config;
pub mod engine;
pub mod header_map;
pub mod json;
#[cfg(not(target_arch = "wasm32"))]
pub mod mint;
pub mod percent;
pub mod policy;
pub mod request;
pub mod revocation;
pub mod shared_data;
pub mod token;

// The proxy-wasm glue is for WASI hosts (Envoy, the wasmtime host); the browser build (wasm32-unknown-unknown,
// the playground) has the core only, without the proxy-wasm imports and exports.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
