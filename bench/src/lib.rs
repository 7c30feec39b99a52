//! agent-iam-bench: the benchmarks' shared code.
//!
//! - [`measure`]: the timing harness (calibrated batches, warm-up, medians).
//! - [`loadgen`]: the HTTP/1.1 load generator of `make bench-envoy` and `agent-iam-loadgen`.
//!
//! The binaries: `agent-iam-bench` (token path), `agent-iam-host-bench` (per request in the host),
//! `agent-iam-policy-bench` (policy evaluation beside Cedar and Rego, feature `compare`),
//! `agent-iam-envoy-bench` (real Envoy beside `jwt_authn` + `rbac`) and `agent-iam-loadgen`.
pub mod loadgen;
pub mod measure;
