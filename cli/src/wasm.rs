//! Which plugin `.wasm` `check` runs.

use std::path::{Path, PathBuf};

/// The `.wasm` embedded at build time (empty if there was none to embed).
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agent_iam.wasm"));

/// Where the embedded `.wasm` was read from when `agent-iam` was built.
pub const EMBEDDED_FROM: &str = env!("AGENT_IAM_EMBEDDED_FROM");

/// The search order, for `--help`, the README and error messages.
pub const SEARCH_ORDER: &str = "The plugin .wasm that check runs is, in this order: --wasm <file>; $AGENT_IAM_WASM; \
the .wasm embedded in agent-iam when it was built (the repository's target/wasm32-wasip1/release/agent_iam.wasm, \
or $AGENT_IAM_EMBED_WASM at build time: run `make wasm` before `cargo install --path cli`).";

/// The module bytes and a description of where they came from.
pub fn load(flag: Option<&Path>) -> Result<(Vec<u8>, String), String> {
    let from_file = |p: &Path, how: &str| {
        std::fs::read(p).map(|b| (b, format!("{} ({how})", p.display()))).map_err(|e| format!("{}: {e}", p.display()))
    };
    if let Some(p) = flag {
        return from_file(p, "--wasm");
    }
    if let Some(p) = std::env::var_os("AGENT_IAM_WASM") {
        return from_file(&PathBuf::from(p), "$AGENT_IAM_WASM");
    }
    if !EMBEDDED.is_empty() {
        return Ok((EMBEDDED.to_vec(), format!("embedded, built from {EMBEDDED_FROM}")));
    }
    Err(format!(
        "no plugin .wasm: none was embedded ({EMBEDDED_FROM} did not exist when agent-iam was built)\n{SEARCH_ORDER}"
    ))
}
