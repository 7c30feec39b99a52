//! The policy playground in a real browser: `target/playground/` (`make playground-build`: the page and the engine
//! through wasm-bindgen) served on a free 127.0.0.1 port by a small static server here, loaded in Debian's headless
//! chromium and driven by Selenium (`tests/playground/test_playground.py`, with `make playground-tools`), and
//! compared with the `agent-iam` command:
//!
//! - every example's Tests tab passes and fails the cases `agent-iam test --json` does;
//! - requests `agent-iam check --json` decides (the trading policy in a whole configuration, a token it mints) get
//!   the same decision, status and rule in the page, in claims mode with the token's claims and in token mode with
//!   the token (there also the refusal's body and the identity headers forwarded);
//! - a configuration `agent-iam validate` refuses shows the path it names in `#config-error`;
//! - a shared link (the state in the URL fragment, compressed and plain) restores the state in a new page load;
//! - no page load logs a console error.
//!
//! Screenshots go to `target/playground-screenshots/`, with the script's whole report (`report.json`). The time from
//! the page's start to its first decision (`window.__firstDecisionMs`) is printed, not asserted.
//!
//! It needs the built playground, chromium, chromium-driver and Selenium, and runs `agent-iam check` (the plugin
//! `.wasm`, `make wasm`), so it is `#[ignore]`d for a plain `cargo test` and run by `make e2e`.

use agent_iam_tests::python::Venv;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Python with Selenium (`make playground-tools`).
const VENV: Venv = Venv { env_var: "PLAYGROUND_PYTHON", make_target: "playground-tools", what: "Selenium is" };

const ISSUER: &str = "https://idp.trading.example";
const AUDIENCE: &str = "trading-api";
const TRADER: &str = "spiffe://trading.example/agent/trader";
/// Monday 23 November 2026, 10:15 in New York: the trading session is open.
const MONDAY_MORNING: &str = "2026-11-23T10:15:00-05:00";
/// The same Monday, 16:30: closed.
const MONDAY_EVENING: &str = "2026-11-23T16:30:00-05:00";
/// MONDAY_MORNING in Unix seconds.
const MONDAY_MORNING_UNIX: i64 = 1_795_446_900;

fn root() -> PathBuf {
    agent_iam_host::workspace_root()
}

// ---------------------------------------------------------------------------------------------------------------
// The page, served as `make playground` serves it: the built files, GET only.

/// Serves `dir` on 127.0.0.1 from a thread, for as long as the test runs; returns the port.
fn serve(dir: PathBuf) -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = answer(&dir, stream);
            });
        }
    });
    Ok(port)
}

fn answer(dir: &Path, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let rel = path.strip_prefix('/').map(|p| if p.is_empty() { "index.html" } else { p });
    let file = rel
        .filter(|p| method == "GET" && !p.split('/').any(|s| s.is_empty() || s == "." || s == "..") && !p.contains('%'))
        .and_then(|p| std::fs::read(dir.join(p)).ok().map(|body| (p.to_owned(), body)));
    let (status, content_type, body) = match file {
        Some((name, body)) => ("200 OK", content_type(&name), body),
        None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The command the page must agree with.

/// `agent-iam`, built once by `cargo build -p agent-iam-cli` (`$CARGO`, the cargo running this test) so that it is
/// this tree's.
fn cli() -> Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "agent-iam-cli"])
                .current_dir(root())
                .status()
                .map_err(|e| format!("running cargo: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p agent-iam-cli: {status}"));
            }
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), |d| root().join(d));
            Ok(target.join("debug/agent-iam"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs `agent-iam args...` in the workspace root: the exit code and stdout; fails on exit 2 (an error).
fn agent_iam(args: &[&str]) -> Result<(i32, String)> {
    agent_iam_all(args).map(|(code, stdout, _)| (code, stdout))
}

/// [`agent_iam`] with stderr too.
fn agent_iam_all(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(cli()?).args(args).current_dir(root()).output().context("running agent-iam")?;
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if code != 0 && code != 1 {
        bail!("agent-iam {}: exit {code}\n{stdout}{stderr}", args.join(" "));
    }
    Ok((code, stdout, stderr))
}

/// For each policy with test cases: each case's name and whether `agent-iam test --json` passed it.
fn cli_test_results() -> Result<Value> {
    let mut examples = serde_json::Map::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("policies"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tests.json"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(".tests.json").to_owned();
        let rel = format!("policies/{name}.tests.json");
        let (_, out) = agent_iam(&["test", "--json", &rel])?;
        let report: Value =
            serde_json::from_str(&out).with_context(|| format!("agent-iam test --json {rel}: {out}"))?;
        let mut cases = serde_json::Map::new();
        for case in report["cases"].as_array().context("no cases")? {
            cases.insert(case["case"].as_str().context("a case without a name")?.to_owned(), case["passed"].clone());
        }
        examples.insert(name, Value::Object(cases));
    }
    Ok(Value::Object(examples))
}

/// The trading policy in a whole configuration with a fresh key, a token for the trader, and what `agent-iam check`
/// decides for a handful of requests.
fn cli_decisions(work: &Path) -> Result<Value> {
    let key = work.join("key.json");
    let jwks = work.join("jwks.json");
    let (k, p) = (key.to_string_lossy().into_owned(), jwks.to_string_lossy().into_owned());
    agent_iam(&["token", "keygen", "--alg", "ES256", "--kid", "playground", "--private", &k, "--jwks", &p])?;
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(&jwks)?)?;
    let policy: Value = serde_json::from_str(&std::fs::read_to_string(root().join("policies/trading.json"))?)?;
    let config = json!({
        "realm": "trading-api",
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["ES256"], "jwks": jwks}],
        "policy": policy,
    });
    let config_text = serde_json::to_string_pretty(&config)?;
    let config_path = work.join("config.json");
    std::fs::write(&config_path, &config_text)?;

    let iat = (MONDAY_MORNING_UNIX - 60).to_string();
    let exp = (MONDAY_MORNING_UNIX + 12 * 3600).to_string();
    let (_, token) = agent_iam(&[
        "token",
        "mint",
        "--key",
        &k,
        "--iss",
        ISSUER,
        "--aud",
        AUDIENCE,
        "--sub",
        TRADER,
        "--scope",
        "orders:write quotes:read",
        "--jti",
        "playground-1",
        "--iat",
        &iat,
        "--exp",
        &exp,
    ])?;
    let token = token.trim().to_owned();
    let payload = token.split('.').nth(1).context("a compact JWS")?;
    let claims: Value =
        serde_json::from_slice(&agent_iam::b64::decode(payload.as_bytes()).map_err(|e| anyhow::anyhow!("{e:?}"))?)?;
    let token_file = work.join("token.jwt");
    std::fs::write(&token_file, &token)?;
    let token_arg = format!("@{}", token_file.display());
    let config_arg = config_path.to_string_lossy().into_owned();

    let requests = [
        ("the trader orders an approved symbol", "POST", "/orders?symbol=ACME&qty=100", MONDAY_MORNING),
        ("a symbol not on the approved list", "POST", "/orders?symbol=EVIL&qty=100", MONDAY_MORNING),
        ("an order above 10,000 shares", "POST", "/orders?symbol=ACME&qty=20000", MONDAY_MORNING),
        ("after the close", "POST", "/orders?symbol=ACME&qty=100", MONDAY_EVENING),
        ("the trader reads a position", "GET", "/positions/acc-1", MONDAY_MORNING),
        ("a dot segment into the admin API", "GET", "/quotes/../admin/users", MONDAY_MORNING),
        ("an encoded slash", "GET", "/quotes/..%2Fadmin", MONDAY_MORNING),
    ];
    // One `agent-iam check` per request, two at a time (each compiles the plugin .wasm in wasmtime).
    let check = |(name, method, path, time): (&str, &str, &str, &str)| -> Result<Value> {
        let (_, out) = agent_iam(&[
            "check",
            "--config",
            &config_arg,
            "--token",
            &token_arg,
            "--method",
            method,
            "--path",
            path,
            "--time",
            time,
            "--json",
        ])?;
        let c: Value = serde_json::from_str(&out).with_context(|| format!("agent-iam check --json: {out}"))?;
        let status = c["status"].as_u64().unwrap_or(200);
        let decision = match (c["decision"].as_str(), status) {
            (Some("allow"), _) => "allow",
            (Some("deny"), 400) => "invalid_request",
            (Some("deny"), _) => "deny",
            (other, _) => bail!("agent-iam check decided {other:?} for {method} {path}: {out}"),
        };
        let rule = match &c["explanation"]["rule"] {
            Value::String(r) => Value::String(r.clone()),
            _ => Value::Null,
        };
        Ok(json!({
            "name": name,
            "request": {"method": method, "path": path, "time": time},
            "cli": {"decision": decision, "status": status, "rule": rule, "body": c["body"],
                    "response_headers": c["response_headers"], "forwarded_headers": c["forwarded_headers"]},
        }))
    };
    let mut decided = Vec::new();
    for pair in requests.chunks(2) {
        let answers: Vec<Result<Value>> = std::thread::scope(|scope| {
            let running: Vec<_> = pair.iter().map(|r| scope.spawn(|| check(*r))).collect();
            running.into_iter().map(|t| t.join().unwrap_or_else(|_| bail!("a check thread panicked"))).collect()
        });
        for answer in answers {
            decided.push(answer?);
        }
    }
    Ok(json!({"example": "trading", "config": config_text, "claims": claims, "token": token, "requests": decided}))
}

/// A whole configuration `agent-iam validate` refuses, and the path it names.
fn cli_invalid(work: &Path, check: &Value) -> Result<Value> {
    let mut config: Value = serde_json::from_str(check["config"].as_str().context("config")?)?;
    config["policy"]["rules"][3]["effect"] = "permit".into();
    let text = serde_json::to_string_pretty(&config)?;
    let file = work.join("invalid.json");
    std::fs::write(&file, &text)?;
    let (code, stdout, stderr) = agent_iam_all(&["validate", &file.to_string_lossy()])?;
    let out = format!("{stdout}{stderr}");
    let path = "policy.rules[3].effect";
    if code != 1 || !out.contains(path) {
        bail!("agent-iam validate should refuse {} at {path}: exit {code}\n{out}", file.display());
    }
    Ok(json!({"config": text, "path": path, "value": "\"permit\""}))
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the built playground, chromium and Selenium: run `make e2e` (make playground-build playground-tools)"]
fn the_playground_in_chromium_agrees_with_the_cli() {
    let started = Instant::now();
    let site = root().join("target/playground");
    assert!(
        site.join("index.html").is_file() && site.join("pkg/agent_iam_playground_bg.wasm").is_file(),
        "{} is not built: run `make playground-build`",
        site.display()
    );
    VENV.check().unwrap();
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(Path::new(binary).exists(), "{binary} missing: run `make playground-tools`");
    }

    let work = std::env::temp_dir().join(format!("agent-iam-playground-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let check = cli_decisions(&work).unwrap();
    let spec = json!({
        "examples": cli_test_results().unwrap(),
        "invalid": cli_invalid(&work, &check).unwrap(),
        "check": check,
    });
    let spec_path = work.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();

    let shots = root().join("target/playground-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let port = serve(site).unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let cli_seconds = started.elapsed().as_secs_f64();

    let browser_started = Instant::now();
    let out = VENV
        .command(&root().join("tests/playground/test_playground.py"))
        .args(["--url", &url, "--spec"])
        .arg(&spec_path)
        .arg("--screenshots")
        .arg(&shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report from the script ({}):\n{stdout}\n{stderr}", out.status));
    std::fs::write(shots.join("report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    assert!(out.status.success() && report.get("error").is_none(), "{report:#}\n{stderr}");

    let checks = report["checks"].as_array().expect("checks");
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
    println!(
        "playground in chromium: {} checks, {} failed; first decision shown {} ms after the page's start; \
         {:.1} s in the browser, {cli_seconds:.1} s for the CLI's answers; screenshots in {}",
        checks.len(),
        failed.len(),
        report["first_decision_ms"].as_f64().map_or("?".into(), |ms| format!("{ms:.0}")),
        browser_started.elapsed().as_secs_f64(),
        shots.display()
    );
    for (name, e) in report["examples"].as_object().into_iter().flatten() {
        println!("  {name}: {} of {} cases pass, as agent-iam test says", e["passed"], e["cases"]);
    }
    assert!(failed.is_empty(), "failed checks:\n{}", serde_json::to_string_pretty(&failed).unwrap());
    // Every part ran: every example's cases, every request in both modes, the error path, both links, the console.
    let ran =
        |prefix: &str| checks.iter().filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix))).count();
    let examples = spec["examples"].as_object().map_or(0, serde_json::Map::len);
    let requests = spec["check"]["requests"].as_array().map_or(0, Vec::len);
    assert!(examples >= 6 && ran("example ") == examples, "{report:#}");
    assert!(ran("claims mode: ") == requests && ran("token mode: ") >= 2 * requests, "{report:#}");
    for prefix in
        ["an invalid configuration shows", "a shared link (compressed)", "a shared link (plain)", "no console"]
    {
        assert!(ran(prefix) > 0, "no check {prefix}...: {report:#}");
    }
    for shot in ["01-loaded.png", "03-claims-mode.png", "04-token-mode.png", "05-invalid-configuration.png"] {
        assert!(shots.join(shot).is_file(), "{shot} missing");
    }
    let _ = std::fs::remove_dir_all(&work);
}
