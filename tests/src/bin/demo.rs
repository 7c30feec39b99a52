//! `agent-iam-demo`: the gateway demo behind `make demo` and `make up`.
//!
//! - `agent-iam-demo run`: start five gateways (Envoy with the plugin) on free loopback ports: `envoy/demo.yaml`,
//!   the same in dry-run mode, `envoy/remote-jwks.yaml` with a JWKS endpoint the demo controls (each before its
//!   own echo upstream), `envoy/mcp.yaml` before the MCP test server (`tests/mcp/server.py`, the official
//!   MCP Python SDK, `make mcp-tools`), and `envoy/audit.yaml` with the hospital policy and the audit trail on
//!   (before an echo upstream). Replay the trading scenario on the first, the would-be denials on the
//!   second, a key rotation and a JWKS outage on the third, agents driving the SDK's client on the fourth
//!   (tools listed per agent, an allowed call, refused ones), the hospital scenario on the fifth, then ask the
//!   audit log who accessed patient 42's record (`agent-iam audit query`, built by `make demo`) and verify its
//!   chains (`agent-iam audit verify`); print each request and decision, stop everything; exit 0 only if every
//!   decision was the expected one and both commands succeeded.
//! - `agent-iam-demo up`: start the same gateway on the ports in `envoy/demo.yaml` (10000, upstream 10001,
//!   admin 9901), write demo tokens to `target/demo/tokens/`, print how to call it, run until interrupted.

use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, Gateway, Ports, RemoteKeysGateway};
use agent_iam_tests::hospital::{self, AuditGateway, HospitalTokens};
use agent_iam_tests::mcp::{self, McpGateway, McpTokens};
use agent_iam_tests::testbed::JwksServer;
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::time::Duration;

/// The agent-iam gateway demo in real Envoy (`make demo`, `make up`).
#[derive(Parser)]
#[command(name = "agent-iam-demo", version)]
struct Cli {
    /// What to do; `run` if omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the scenarios on five gateways on free ports, print each decision, stop; exit 0 only if every
    /// decision was the expected one.
    Run,
    /// Start the demo gateway on the ports of envoy/demo.yaml (10000, admin 9901), write demo tokens to
    /// target/demo/tokens/, run until interrupted.
    Up,
}

fn main() {
    let result = match Cli::parse().command.unwrap_or(Command::Run) {
        Command::Run => run(),
        Command::Up => up(),
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
    let dir = work_dir();
    let main_steps = demo::scenario(&tokens);
    let dry_steps = demo::dry_run_scenario(&tokens);
    let (dry_first, rotation_first) = (main_steps.len() + 1, main_steps.len() + dry_steps.len() + 1);
    let mcp_tokens = McpTokens::mint(&keys, demo::now(), 600);
    let mcp_sessions = mcp::scenario(&mcp_tokens);
    let hospital_steps = hospital::scenario(&HospitalTokens::mint(&keys, demo::now(), 600));
    println!(
        "Starting five gateways (Envoy with the agent-iam plugin: four before an echo upstream, one before an MCP \
         server)...\n"
    );
    // The gateways start and run side by side (most of an Envoy start is compiling the .wasm); each section
    // is written to a buffer and printed in order. A gateway lives on the thread that started it: Envoy is
    // stopped when that thread ends.
    let sections: ([Result<Section>; 3], Result<McpSection>, Result<AuditSection>) = std::thread::scope(|s| {
        let main = s.spawn(|| {
            let gateway = Gateway::start(&keys, Ports::free()?, &dir)?;
            let mut out = Vec::new();
            writeln!(
                out,
                "agent-iam demo: Envoy with the agent-iam plugin on 127.0.0.1:{}, in front of an echo upstream.",
                gateway.ports.listener
            )?;
            writeln!(
                out,
                "Issuer {} (ES256 + EdDSA keys generated just now), policy from envoy/demo.yaml.\n",
                demo::ISSUER
            )?;
            let results = demo::run_scenario(gateway.ports.listener, &main_steps, &mut out)?;
            Ok((out, results))
        });
        let dry_run = s.spawn(|| {
            let gateway = Gateway::start_with(&keys, Ports::free()?, &dir.join("dry-run"), demo::dry_run)?;
            let mut out = Vec::new();
            writeln!(
                out,
                "Dry run: envoy/demo.yaml with \"mode\": \"dry_run\" on 127.0.0.1:{}. Nothing is refused; what \
                 enforcement\nwould answer reaches the upstream in x-agent-iam-dry-run.\n",
                gateway.ports.listener
            )?;
            let results = demo::run_steps(gateway.ports.listener, &dry_steps, dry_first, &mut out)?;
            Ok((out, results))
        });
        let rotation = s.spawn(|| {
            let jwks = JwksServer::start(0, &keys.jwks())?;
            let gateway = RemoteKeysGateway::start(jwks, Ports::free()?, &dir.join("rotation"), |c| c)?;
            let mut out = Vec::new();
            writeln!(
                out,
                "Key rotation: envoy/remote-jwks.yaml on 127.0.0.1:{} fetches the issuer's keys from a JWKS \
                 endpoint\non 127.0.0.1:{}, where the demo plays the identity provider.\n",
                gateway.ports.listener, gateway.ports.jwks
            )?;
            let results = demo::run_rotation(&gateway, &keys, &tokens, rotation_first, &mut out)?;
            Ok((out, results))
        });
        // The MCP gateway runs beside the others; its steps are printed last, numbered after theirs.
        let (keys, dir, mcp_sessions) = (&keys, &dir, &mcp_sessions);
        let mcp = s.spawn(move || -> Result<McpSection> {
            let gateway = McpGateway::start(keys, &dir.join("mcp"))?;
            let results = mcp::run_sessions(&gateway.url(), mcp::DEMO_PROTOCOL, mcp_sessions)?;
            Ok((gateway.ports.listener, results))
        });
        // So does the audit gateway; its steps come after the MCP ones, then the questions to its log.
        let hospital_steps = &hospital_steps;
        let audit = s.spawn(move || -> Result<AuditSection> {
            let gateway = AuditGateway::start(keys)?;
            let results = gateway.run(hospital_steps)?;
            let events = gateway.flush_events(hospital_steps.len(), Duration::from_secs(15))?;
            Ok((gateway.ports.listener, results, events.len()))
        });
        let panicked = "a demo gateway panicked";
        let sections =
            [main.join().expect(panicked), dry_run.join().expect(panicked), rotation.join().expect(panicked)];
        (sections, mcp.join().expect(panicked), audit.join().expect(panicked))
    });
    let (sections, mcp_section, audit_section) = sections;

    let mut out = std::io::stdout().lock();
    let mut results = Vec::new();
    let names = ["envoy/demo.yaml", "the dry-run gateway", "the key-rotation gateway"];
    for (i, (section, name)) in sections.into_iter().zip(names).enumerate() {
        let (text, section_results) = section.with_context(|| format!("{name} (log in target/demo/)"))?;
        if i > 0 {
            writeln!(out)?;
        }
        out.write_all(&text)?;
        results.extend(section_results);
    }
    let (mcp_port, mcp_results) = mcp_section.context("the MCP gateway (logs in target/demo/mcp/)")?;
    writeln!(
        out,
        "\nMCP: envoy/mcp.yaml on 127.0.0.1:{mcp_port} in front of an MCP server built on the official MCP Python \
         SDK\n(tests/mcp/server.py, tools get_quote, search_quotes, place_order, delete_account). Each agent runs \
         the\nSDK's own client (protocol {}); the plugin decides every JSON-RPC message on its body and filters\n\
         tools/list per caller.\n",
        mcp::DEMO_PROTOCOL
    )?;
    mcp::print_steps(&mcp_sessions, &mcp_results, results.len() + 1, &mut out)?;
    let (audit_port, audit_results, events) =
        audit_section.context("the audit gateway (log in target/demo/audit/envoy.log)")?;
    writeln!(
        out,
        "\nAudit: envoy/audit.yaml on 127.0.0.1:{audit_port} with the hospital policy (policies/hospital.json, issuer\n\
         {}) and \"audit\": {{\"events\": \"all\"}}, a signed checkpoint every 5 events (key id \"{}\").\n\
         Envoy's file access logger writes the plugin's OCSF event of every decision to {}.\n",
        hospital::ISSUER,
        hospital::CHECKPOINT_KID,
        hospital::AUDIT_FILE
    )?;
    hospital::print_steps(&hospital_steps, &audit_results, results.len() + mcp_results.len() + 1, &mut out)?;
    writeln!(out, "    -- {events} events in {}", hospital::AUDIT_FILE)?;
    results.extend(audit_results);
    let answered = hospital::answer(&mut out);
    let dry = results.iter().filter(|r| demo::dry_run_seen(&r.response).is_some()).count();
    let mcp_allowed = mcp_results.iter().filter(|r| r.allowed).count();
    let allowed = results.iter().filter(|r| r.response.status == 200).count() - dry + mcp_allowed;
    let denied = results.len() + mcp_results.len() - allowed - dry;
    let unexpected =
        results.iter().filter(|r| !r.as_expected).count() + mcp_results.iter().filter(|r| !r.as_expected).count();
    writeln!(out, "\n{allowed} allowed, {denied} denied, {dry} forwarded in dry run; the gateways are stopped.")?;
    if unexpected > 0 {
        bail!(
            "{unexpected} decision(s) differed from the expected ones (Envoy logs: target/demo/envoy.log, \
             target/demo/dry-run/envoy.log, target/demo/rotation/envoy.log, target/demo/mcp/envoy.log, \
             target/demo/audit/envoy.log)"
        );
    }
    answered.context("the audit log")
}

/// A section of the demo's printout, and its decisions.
type Section = (Vec<u8>, Vec<demo::StepResult>);
/// The MCP gateway's port, and what the client surfaced at each step.
type McpSection = (u16, Vec<mcp::McpStepResult>);
/// The audit gateway's port, its decisions, and how many events its log holds.
type AuditSection = (u16, Vec<demo::StepResult>, usize);

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
        "  cargo run -q -p agent-iam-cli --bin agent-iam -- check --config target/demo/plugin-config.json \\\n      \
         --token @target/demo/tokens/trader.jwt --method GET --path /admin/users"
    );
    println!("\nEnvoy log: target/demo/envoy.log. Press Ctrl-C to stop.");
    let mut gateway = gateway;
    while gateway.envoy.is_running() {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!("Envoy exited:\n{}", gateway.envoy.log_tail(20))
}
