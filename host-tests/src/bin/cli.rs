//! `agent-iam`: what would the gateway decide? Runs the real plugin `.wasm` in the wasmtime host, exactly
//! as Envoy would, and prints the decision, the response and the explanation; and runs policy test cases.
//!
//! ```text
//! agent-iam check --config plugin-config.json --token <jwt> --method POST --path /orders
//!                 [--host api.example.com] [--header k:v ...] [--time 2026-11-23T10:00:00-05:00]
//!                 [--peer-uri-san spiffe://...] [--wasm agent_iam.wasm] [--json]
//! agent-iam test [policies/ | policy.tests.json ...] [--json]
//! ```
//!
//! Exit status: 0 allowed (all cases passed), 1 denied (a case failed), 2 error (bad arguments, a
//! configuration the plugin rejects, a missing file).

use agent_iam::policy::PolicyDocument;
use agent_iam::policy::cases::{self, CaseFile};
use agent_iam_host::host::{Host, LogLevel, Outcome};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage:
  agent-iam check --config <plugin-config.json> --token <jwt | @file> --method <M> --path <path>
                  [--host <authority>] [--header <name:value>]... [--time <RFC 3339>]
                  [--peer-uri-san <uri>] [--peer-certificate-sha256 <hex>] [--wasm <plugin.wasm>] [--json]
  agent-iam test [<policies dir | X.tests.json>...] [--json]

check runs the real plugin .wasm in the wasmtime host, as Envoy would, and prints the decision, the
response and the explanation. test runs policy test cases (default: policies/).
exit status: 0 allowed / all passed, 1 denied / a case failed, 2 error";

/// A usage or input error: exit status 2.
struct Usage(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(Usage(USAGE.to_owned())),
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
#[derive(Default)]
struct Check {
    config: Option<PathBuf>,
    token: Option<String>,
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    headers: Vec<(String, String)>,
    time: Option<String>,
    peer_uri_san: Option<String>,
    peer_digest: Option<String>,
    wasm: Option<PathBuf>,
    json: bool,
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, Usage> {
    *i += 1;
    args.get(*i).map(String::as_str).ok_or_else(|| Usage(format!("{flag} needs a value")))
}

fn parse_check(args: &[String]) -> Result<Check, Usage> {
    let mut c = Check::default();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        match flag {
            "--config" => c.config = Some(value(args, &mut i, flag)?.into()),
            "--token" => {
                let t = value(args, &mut i, flag)?;
                c.token = Some(match t.strip_prefix('@') {
                    Some(file) => std::fs::read_to_string(file)
                        .map_err(|e| Usage(format!("--token @{file}: {e}")))?
                        .trim()
                        .to_owned(),
                    None => t.to_owned(),
                });
            }
            "--method" => c.method = Some(value(args, &mut i, flag)?.to_owned()),
            "--path" => c.path = Some(value(args, &mut i, flag)?.to_owned()),
            "--host" => c.host = Some(value(args, &mut i, flag)?.to_owned()),
            "--header" => {
                let h = value(args, &mut i, flag)?;
                let (name, v) = h.split_once(':').ok_or_else(|| Usage(format!("--header {h}: expected name:value")))?;
                c.headers.push((name.trim().to_ascii_lowercase(), v.trim_start().to_owned()));
            }
            "--time" => c.time = Some(value(args, &mut i, flag)?.to_owned()),
            "--peer-uri-san" => c.peer_uri_san = Some(value(args, &mut i, flag)?.to_owned()),
            "--peer-certificate-sha256" => c.peer_digest = Some(value(args, &mut i, flag)?.to_owned()),
            "--wasm" => c.wasm = Some(value(args, &mut i, flag)?.into()),
            "--json" => c.json = true,
            other => return Err(Usage(format!("unknown option {other}\n{USAGE}"))),
        }
        i += 1;
    }
    Ok(c)
}

fn check(args: &[String]) -> Result<bool, Usage> {
    let c = parse_check(args)?;
    let config_path = c.config.as_ref().ok_or_else(|| Usage("check needs --config".into()))?;
    let config = std::fs::read(config_path).map_err(|e| Usage(format!("--config {}: {e}", config_path.display())))?;
    let method = c.method.as_deref().ok_or_else(|| Usage("check needs --method".into()))?;
    let path = c.path.as_deref().ok_or_else(|| Usage("check needs --path".into()))?;
    let now = match &c.time {
        Some(t) => {
            let secs = cases::parse_time(t).map_err(|e| Usage(format!("--time: {e}")))?;
            UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).map_err(|_| Usage("--time before 1970".into()))?)
        }
        None => SystemTime::now(),
    };
    let wasm = c.wasm.clone().unwrap_or_else(agent_iam_host::plugin_wasm_path);
    let host = Host::from_file(&wasm).map_err(|e| {
        Usage(format!("{e:#}\n(build the plugin with `make wasm`, or give --wasm <path to agent_iam.wasm>)"))
    })?;
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
    if let Some(t) = &c.token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    for (n, v) in &c.headers {
        request = request.header(n, v);
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
        Outcome::Continued { request_headers } => json!({
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
        Outcome::Continued { request_headers } => {
            let rule = outcome.header("x-agent-iam-rule").unwrap_or("?");
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
fn test_files(targets: &[&str]) -> Result<Vec<PathBuf>, Usage> {
    let mut files = Vec::new();
    for t in targets {
        let p = Path::new(t);
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| Usage(format!("{t}: {e}")))?;
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

fn test(args: &[String]) -> Result<bool, Usage> {
    let json_out = args.iter().any(|a| a == "--json");
    let mut targets: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--json").collect();
    if let Some(bad) = targets.iter().find(|a| a.starts_with("--")) {
        return Err(Usage(format!("unknown option {bad}\n{USAGE}")));
    }
    if targets.is_empty() {
        targets.push("policies");
    }
    let files = test_files(&targets)?;
    if files.is_empty() {
        return Err(Usage(format!("no *.tests.json in {}", targets.join(" "))));
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
