//! `agent-iam`: what would the gateway decide? Runs the real plugin `.wasm` in the wasmtime host, exactly
//! as Envoy would, and prints the decision, the response and the explanation; runs policy test cases;
//! validates configurations and the manifests that embed them; mints test tokens; prints the JSON Schema
//! of the configuration; serves the policy playground.
//!
//! Exit status: 0 allowed / all passed / valid, 1 denied / a case failed / invalid, 2 error (bad arguments,
//! a configuration the plugin rejects in `check`, a missing file).

use agent_iam::policy::PolicyDocument;
use agent_iam::policy::cases::{self, CaseFile};
use agent_iam_cli::{Usage, audit, playground, schema, token, validate, wasm};
use agent_iam_host::{Host, LogLevel, Outcome};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Identity and access for AI agents at the API gateway: check requests against the real plugin, test
/// policies, validate configurations and manifests, mint test tokens.
#[derive(Parser)]
#[command(name = "agent-iam", version, propagate_version = true)]
#[command(after_help = "Exit status: 0 allowed / all passed / valid, 1 denied / a case failed / invalid, 2 error.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What would the gateway decide? Runs the real plugin .wasm in the wasmtime host, as Envoy would, and
    /// prints the decision, the response and the explanation (exit 0 allowed, 1 denied, 2 error).
    #[command(after_help = wasm::SEARCH_ORDER)]
    Check(Check),
    /// Runs policy test cases: each X.tests.json against the policy X.json beside it (exit 1 if a case fails).
    Test(TestArgs),
    /// Validates plugin configurations (JSON or YAML) and the manifests that embed one: Envoy configs (the
    /// Wasm filter's `configuration`), Istio WasmPlugins (`pluginConfig`), Envoy Gateway
    /// EnvoyExtensionPolicies (wasm `config`). Every error with its file and exact path (exit 0 valid, 1
    /// invalid).
    #[command(after_help = validate::YAML_NOTE)]
    Validate(validate::Args),
    /// Test tokens: generate a key, mint a token.
    #[command(subcommand)]
    Token(token::Command),
    /// Prints the JSON Schema of the plugin configuration, generated from the types that parse it.
    Schema(schema::Args),
    /// Audit logs: verify their hash chains and checkpoints, query their events.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Serves the policy playground on 127.0.0.1 and prints its URL: the engine in the browser (configuration,
    /// token or claims, request; the decision and its explanation; the policy tests), embedded in agent-iam
    /// when it was built after `make playground-build`.
    Playground(playground::Args),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff) to stdout: `agent-iam man > agent-iam.1`.
    Man,
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`agent-iam schema | head`) would panic; restore the
    // default, under which a Unix tool ends quietly when its reader goes away.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(c) => check(c),
        Command::Test(t) => test(t),
        Command::Validate(v) => validate::run(v),
        Command::Token(t) => token::run(t),
        Command::Schema(s) => schema::run(s),
        Command::Audit(a) => audit::run(a),
        Command::Playground(p) => playground::run(p),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "agent-iam", &mut std::io::stdout());
            Ok(true)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| true)
            .map_err(|e| Usage(e.to_string())),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Usage(message)) => {
            eprintln!("agent-iam: {message}");
            ExitCode::from(2)
        }
    }
}

/// Options of `check`.
#[derive(clap::Args)]
struct Check {
    /// The plugin configuration (JSON), as in Envoy's `configuration` or Istio's `pluginConfig`.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The token (a JWT), or @FILE to read it from a file.
    #[arg(long, value_name = "JWT|@FILE")]
    token: Option<String>,
    /// The request method.
    #[arg(long)]
    method: String,
    /// The request path (with query).
    #[arg(long)]
    path: String,
    /// The request's authority (`:authority`, the Host header).
    #[arg(long, value_name = "AUTHORITY")]
    host: Option<String>,
    /// A request header, name:value (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The VM clock, RFC 3339 (default: now), e.g. 2026-11-23T10:00:00-05:00.
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// The request body, or @FILE: on an MCP endpoint, the JSON-RPC message the decision reads.
    #[arg(long, value_name = "BODY|@FILE")]
    body: Option<String>,
    /// The mutual-TLS peer certificate's URI SAN (a SPIFFE ID).
    #[arg(long, value_name = "URI")]
    peer_uri_san: Option<String>,
    /// The mutual-TLS peer certificate's SHA-256 digest, hex.
    #[arg(long = "peer-certificate-sha256", value_name = "HEX")]
    peer_digest: Option<String>,
    /// The plugin .wasm to run (see below for the default).
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
}

fn parse_header(h: &str) -> Result<(String, String), String> {
    let (name, v) = h.split_once(':').ok_or_else(|| format!("{h}: expected name:value"))?;
    Ok((name.trim().to_ascii_lowercase(), v.trim_start().to_owned()))
}

/// Options of `test`.
#[derive(clap::Args)]
struct TestArgs {
    /// Directories (every *.tests.json inside) or test files; default `policies` in the current directory.
    #[arg(value_name = "DIR|X.tests.json")]
    targets: Vec<PathBuf>,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
}

fn check(c: Check) -> Result<bool, Usage> {
    let config_path = &c.config;
    let config = std::fs::read(config_path).map_err(|e| Usage(format!("--config {}: {e}", config_path.display())))?;
    let (method, path) = (c.method.as_str(), c.path.as_str());
    let token = match c.token.as_deref() {
        Some(t) => Some(match t.strip_prefix('@') {
            Some(file) => {
                std::fs::read_to_string(file).map_err(|e| Usage(format!("--token @{file}: {e}")))?.trim().to_owned()
            }
            None => t.to_owned(),
        }),
        None => None,
    };
    let now = match &c.time {
        Some(t) => {
            let secs = cases::parse_time(t).map_err(|e| Usage(format!("--time: {e}")))?;
            UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).map_err(|_| Usage("--time before 1970".into()))?)
        }
        None => SystemTime::now(),
    };
    let (wasm, from) = wasm::load(c.wasm.as_deref()).map_err(Usage)?;
    let host = Host::from_bytes(&wasm).map_err(|e| Usage(format!("the plugin .wasm, {from}: {e:#}")))?;
    // Trace: the plugin then logs its explanation of every decision, allow and deny.
    let mut vm = host
        .vm()
        .plugin_config(&config)
        .time(now)
        .log_level(LogLevel::Trace)
        .start()
        .map_err(|e| Usage(format!("the plugin rejected the configuration: {e:#}")))?;
    let mut request = vm.request().method(method).path(path);
    if let Some(h) = &c.host {
        request = request.authority(h);
    }
    if let Some(t) = &token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    for (n, v) in &c.headers {
        request = request.header(n, v);
    }
    if let Some(body) = &c.body {
        let bytes = match body.strip_prefix('@') {
            Some(file) => std::fs::read(file).map_err(|e| Usage(format!("--body @{file}: {e}")))?,
            None => body.as_bytes().to_vec(),
        };
        request = request.body(bytes);
    }
    if let Some(san) = &c.peer_uri_san {
        request = request.property("connection.uri_san_peer_certificate", san.as_bytes());
    }
    if let Some(d) = &c.peer_digest {
        request = request.property("connection.sha256_peer_certificate_digest", d.as_bytes());
    }
    let outcome = request.send();
    if let Some(trap) = vm.trap() {
        return Err(Usage(format!("the plugin trapped: {trap}")));
    }
    let explanation: Option<Value> = vm
        .logs()
        .iter()
        .rev()
        .find_map(|l| l.message.strip_prefix("agent-iam: explain "))
        .and_then(|line| serde_json::from_str(line).ok());
    let allowed = outcome.is_allowed();
    if c.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&outcome, explanation.as_ref())).unwrap_or_default());
    } else {
        print_human(&outcome, explanation.as_ref());
    }
    Ok(allowed)
}

fn as_json(outcome: &Outcome, explanation: Option<&Value>) -> Value {
    let pairs = |h: &[(String, String)]| h.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>();
    match outcome {
        Outcome::Continued { request_headers, .. } => json!({
            "decision": "allow",
            "forwarded_headers": pairs(request_headers),
            "explanation": explanation,
        }),
        Outcome::LocalResponse { status, headers, body, details } => json!({
            "decision": "deny",
            "status": status,
            "details": details,
            "response_headers": pairs(headers),
            "body": String::from_utf8_lossy(body),
            "explanation": explanation,
        }),
        Outcome::Paused(_) => json!({"decision": "paused", "explanation": explanation}),
    }
}

fn print_human(outcome: &Outcome, explanation: Option<&Value>) {
    match outcome {
        Outcome::Continued { request_headers, .. } => {
            // On an MCP endpoint the headers leave before the decision, without the rule: it is in the explanation.
            let rule = outcome
                .header("x-agent-iam-rule")
                .or_else(|| explanation.and_then(|e| e["rule"].as_str()))
                .unwrap_or("?");
            println!("ALLOW  by rule \"{rule}\"");
            println!("forwarded upstream with:");
            for (n, v) in request_headers.iter().filter(|(n, _)| n.starts_with("x-agent-iam-") || n == ":path") {
                println!("  {n}: {v}");
            }
        }
        Outcome::LocalResponse { status, headers, body, details } => {
            println!("DENY   {status} ({details})");
            for (n, v) in headers {
                println!("  {n}: {v}");
            }
            println!("  {}", String::from_utf8_lossy(body));
        }
        Outcome::Paused(_) => println!("PAUSED (the plugin is waiting, e.g. for its first key set)"),
    }
    let Some(e) = explanation else { return };
    let Some(candidates) = e["candidates"].as_array() else {
        return;
    };
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!();
    println!(
        "explanation (policy version {}; {} candidate rule(s), {} not applicable by agent, method or path):",
        e["policy_version"].as_str().unwrap_or("unnamed"),
        candidates.len(),
        e["not_applicable"]
    );
    println!("  agent {}  subject {}  issuer {}", s(&e["agent"]), s(&e["subject"]), s(&e["issuer"]));
    if let Some(chain) = e["chain"].as_array().filter(|c| !c.is_empty()) {
        let chain: Vec<String> = chain.iter().map(s).collect();
        println!("  delegation chain (current first): {}", chain.join(" <- "));
    }
    println!("  request {} {}", s(&e["method"]), s(&e["path"]));
    if let Some(labels) = e["labels"].as_array().filter(|l| !l.is_empty()) {
        let labels: Vec<String> = labels.iter().map(s).collect();
        println!("  route labels: {}", labels.join(", "));
    }
    for c in candidates {
        let mark = match c["result"].as_str() {
            Some("matched") => "+",
            Some("undetermined") => "?",
            _ => "-",
        };
        println!("  {mark} {} ({}): {}", s(&c["id"]), s(&c["effect"]), s(&c["result"]).replace('_', " "));
        for r in c["reasons"].as_array().into_iter().flatten() {
            println!("      {}", s(r));
        }
    }
    match (e["rule"].as_str(), e["missing_scope"].as_str()) {
        (Some(rule), _) => println!("  deciding rule: {rule}"),
        (None, Some(scope)) => println!("  no rule allows; the token lacks scope \"{scope}\""),
        (None, None) => println!("  no rule allows (default deny)"),
    }
}

/// The test files named by the arguments (directories: every `*.tests.json` inside).
fn test_files(targets: &[PathBuf]) -> Result<Vec<PathBuf>, Usage> {
    let mut files = Vec::new();
    for p in targets {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| Usage(format!("{}: {e}", p.display())))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".tests.json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.to_owned());
        }
    }
    Ok(files)
}

fn test(args: TestArgs) -> Result<bool, Usage> {
    let json_out = args.json;
    let mut targets = args.targets;
    if targets.is_empty() {
        targets.push(PathBuf::from("policies"));
    }
    let files = test_files(&targets)?;
    if files.is_empty() {
        let names: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
        return Err(Usage(format!("no *.tests.json in {}", names.join(" "))));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report = Vec::new();
    for file in &files {
        let name = file.to_string_lossy();
        let policy_path = PathBuf::from(name.trim_end_matches(".tests.json").to_owned() + ".json");
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Usage(format!("{}: {e}", p.display())));
        let doc: PolicyDocument =
            serde_json::from_str(&read(&policy_path)?).map_err(|e| Usage(format!("{}: {e}", policy_path.display())))?;
        let policy =
            agent_iam::policy::Policy::compile(&doc).map_err(|e| Usage(format!("{}: {e}", policy_path.display())))?;
        let cases: CaseFile =
            serde_json::from_str(&read(file)?).map_err(|e| Usage(format!("{}: {e}", file.display())))?;
        let results = cases::run(&policy, &cases).map_err(|e| Usage(format!("{}: {e}", file.display())))?;
        if !json_out {
            println!("{}  ({} cases)", file.display(), results.len());
            for w in policy.warnings() {
                println!("  warning: {w}");
            }
        }
        for r in &results {
            if r.passed {
                passed += 1;
            } else {
                failed += 1;
            }
            if json_out {
                report.push(json!({"file": file, "case": r.name, "passed": r.passed, "detail": r.detail}));
            } else {
                println!("  {} {}: {}", if r.passed { "ok  " } else { "FAIL" }, r.name, r.detail);
            }
        }
    }
    if json_out {
        let out = json!({"passed": passed, "failed": failed, "cases": report});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(failed == 0)
}
