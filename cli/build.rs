//! Embeds the plugin `.wasm` into `agent-iam`, so that an installed binary (`cargo install --path cli`) runs
//! `check` from any directory. The file is `$AGENT_IAM_EMBED_WASM` if set, else the repository's release build
//! `target/wasm32-wasip1/release/agent_iam.wasm` (`make wasm`). If it does not exist, nothing is embedded and
//! `check` needs `--wasm` or `$AGENT_IAM_WASM`.
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-env-changed=AGENT_IAM_EMBED_WASM");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let source = match std::env::var_os("AGENT_IAM_EMBED_WASM") {
        Some(p) => PathBuf::from(p),
        None => manifest.join("../target/wasm32-wasip1/release/agent_iam.wasm"),
    };
    println!("cargo::rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("agent_iam.wasm");
    let bytes = std::fs::read(&source).unwrap_or_default();
    std::fs::write(&out, bytes).expect("writing OUT_DIR/agent_iam.wasm");
    let source = std::fs::canonicalize(&source).unwrap_or(source);
    println!("cargo::rustc-env=AGENT_IAM_EMBEDDED_FROM={}", source.display());
}
