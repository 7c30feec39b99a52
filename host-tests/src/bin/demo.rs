//! `agent-iam-demo`: the gateway demo behind `make demo` and `make up`.
//!
//! - `agent-iam-demo run`: start the echo upstream and Envoy with the plugin on free loopback ports, replay the
//!   trading scenario, print each request and decision, stop everything; exit 0 only if every decision was
//!   the expected one.
//! - `agent-iam-demo up`: start the same gateway on the ports in `envoy/demo.yaml` (10000, upstream 10001,
//!   admin 9901), write demo tokens to `target/demo/tokens/`, print how to call it, run until interrupted.

use agent_iam_host::demo::{self, DemoKeys, DemoTokens, Gateway, Ports};
use anyhow::{Result, bail};
use std::io::Write;

fn main() {
    let command = std::env::args().nth(1).unwrap_or_else(|| "run".into());
    let result = match command.as_str() {
        "run" => run(),
        "up" => up(),
        other => Err(anyhow::anyhow!("unknown command `{other}` (expected `run` or `up`)")),
    };
    if let Err(e) = result {
        eprintln!("agent-iam-demo: {e:#}");
        std::process::exit(1);
    }
}

fn work_dir() -> std::path::PathBuf {
    agent_iam_host::workspace_root().join("target/demo")
}

fn run() -> Result<()> {
    let keys = DemoKeys::generate()?;
    let tokens = DemoTokens::mint(&keys, demo::now(), 600);
    let gateway = Gateway::start(&keys, Ports::free()?, &work_dir())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "agent-iam demo: Envoy with the agent-iam plugin on 127.0.0.1:{}, in front of an echo upstream.",
        gateway.ports.listener
    )?;
    writeln!(out, "Issuer {} (ES256 + EdDSA keys generated just now), policy from envoy/demo.yaml.\n", demo::ISSUER)?;
    let steps = demo::scenario(&tokens);
    let results = demo::run_scenario(gateway.ports.listener, &steps, &mut out)?;
    let allowed = results.iter().filter(|r| r.response.status == 200).count();
    let unexpected = results.iter().filter(|r| !r.as_expected).count();
    writeln!(out, "\n{allowed} allowed, {} denied; Envoy and the upstream are stopped.", results.len() - allowed)?;
    drop(gateway);
    if unexpected > 0 {
        bail!("{unexpected} decision(s) differed from the expected ones (Envoy log: target/demo/envoy.log)");
    }
    Ok(())
}

fn up() -> Result<()> {
    let keys = DemoKeys::generate()?;
    let tokens = DemoTokens::mint(&keys, demo::now(), 3600);
    let dir = work_dir().join("tokens");
    std::fs::create_dir_all(&dir)?;
    for (name, token) in [
        ("trader", &tokens.trader),
        ("research", &tokens.research),
        ("delegated", &tokens.delegated),
        ("forged", &tokens.forged),
        ("expired", &tokens.expired),
    ] {
        std::fs::write(dir.join(format!("{name}.jwt")), token)?;
    }
    let template = std::fs::read_to_string(demo::template_path())?;
    let config = demo::plugin_config(&template, &keys.jwks())?;
    std::fs::write(work_dir().join("plugin-config.json"), serde_json::to_string_pretty(&config)?)?;
    let gateway = Gateway::start(&keys, Ports::DEFAULT, &work_dir())?;
    let port = gateway.ports.listener;
    println!(
        "agent-iam demo gateway is up on http://127.0.0.1:{port} (admin http://127.0.0.1:{}).",
        gateway.ports.admin
    );
    println!("Tokens (valid for an hour) are in target/demo/tokens/. Try:\n");
    println!(
        "  curl -i -X POST http://127.0.0.1:{port}/orders -H \"Authorization: Bearer $(cat target/demo/tokens/trader.jwt)\""
    );
    println!(
        "  curl -i http://127.0.0.1:{port}/quotes/ACME -H \"Authorization: Bearer $(cat target/demo/tokens/research.jwt)\""
    );
    println!(
        "  curl -i -X POST http://127.0.0.1:{port}/orders -H \"Authorization: Bearer $(cat target/demo/tokens/forged.jwt)\""
    );
    println!(
        "  curl -i http://127.0.0.1:{port}/admin/users -H \"Authorization: Bearer $(cat target/demo/tokens/trader.jwt)\""
    );
    println!("\nWithout Envoy, the same decision from the real .wasm in the wasmtime host, with its explanation:\n");
    println!(
        "  cargo run -q -p agent-iam-host --bin agent-iam -- check --config target/demo/plugin-config.json \\\n      \
         --token @target/demo/tokens/trader.jwt --method GET --path /admin/users"
    );
    println!("\nEnvoy log: target/demo/envoy.log. Press Ctrl-C to stop.");
    let mut gateway = gateway;
    while gateway.envoy.is_running() {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!("Envoy exited:\n{}", gateway.envoy.log_tail(20))
}
