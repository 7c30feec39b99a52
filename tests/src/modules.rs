//! Reference proxy-wasm modules: the host's own cost (the benchmarks' baseline) and the floor of any Wasm
//! filter in Envoy (`make bench-envoy`, configuration E).

/// A module whose `proxy_on_request_headers` only answers Continue: the same request through it is the host's
/// own cost, to subtract from the plugin's.
pub const BASELINE_WAT: &str = r#"(module (memory (export "memory") 1)
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#;

/// A proxy-wasm module that Envoy accepts and whose every per-request callback returns at once: the floor of
/// any Wasm filter in Envoy (`make bench-envoy`, configuration E). It exports what a Rust SDK plugin exports
/// for HTTP streams (agent-iam exports fewer: `plugin/src/filter/abi.rs`), so Envoy makes the calls per
/// request it makes to a typical plugin.
pub const EMPTY_FILTER_WAT: &str = r#"(module (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

/// Writes [`EMPTY_FILTER_WAT`] as a binary module to `path`.
pub fn write_empty_filter(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = wat::parse_str(EMPTY_FILTER_WAT).context("EMPTY_FILTER_WAT")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
