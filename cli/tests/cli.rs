//! The `agent-iam` command: `check` runs the real `.wasm` and exits 0 allowed / 1 denied / 2 error;
//! `test` runs policy test cases.

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

const ISSUER: &str = "https://issuer.example";
const TRADER: &str = "spiffe://trading.example/agent/trader";
/// Monday 2030-03-18 10:00 in New York.
const MONDAY_MORNING_NY: i64 = 1_900_072_800;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agent-iam-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn key() -> SigningKey {
    SigningKey::from_seed(Algorithm::ES256, [3; 32]).unwrap()
}

fn config() -> Value {
    json!({
        "realm": "trading",
        "issuers": [{"issuer": ISSUER, "audiences": ["orders"], "algorithms": ["ES256"],
                     "jwks": {"keys": [key().public_jwk(Some("k"))]}}],
        "policy": {"version": "cli-1", "rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders"],
             "when": {"time": {"zone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"],
                               "from": "09:30", "to": "16:00"}}}
        ]}
    })
}

fn token() -> String {
    let claims = json!({"iss": ISSUER, "aud": "orders", "sub": TRADER, "iat": MONDAY_MORNING_NY - 60,
                        "exp": MONDAY_MORNING_NY + 86_400});
    key().sign_jwt(Some("k"), &claims)
}

fn agent_iam(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-iam")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn check(config: &Value, time: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = scratch("check");
    let path = dir.join(format!("config-{}.json", time.replace(':', "")));
    std::fs::write(&path, config.to_string()).unwrap();
    let token = token();
    let path = path.to_string_lossy().into_owned();
    let mut args =
        vec!["check", "--config", &path, "--token", &token, "--method", "POST", "--path", "/orders", "--time", time];
    args.extend_from_slice(extra);
    agent_iam(&args)
}

#[test]
fn check_allows_with_exit_0_and_names_the_rule() {
    let (code, out, err) = check(&config(), "2030-03-18T10:00:00-04:00", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ALLOW  by rule \"trader-orders\""), "{out}");
    assert!(out.contains(&format!("x-agent-iam-agent: {TRADER}")), "{out}");
    assert!(out.contains("+ trader-orders (allow): matched"), "{out}");
}

#[test]
fn check_denies_with_exit_1_and_explains() {
    let (code, out, err) = check(&config(), "2030-03-18T17:00:00-04:00", &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("DENY   403 (agent_iam.no_rule_allows)"), "{out}");
    assert!(out.contains("explanation (policy version cli-1; 1 candidate rule(s), 0 not applicable"), "{out}");
    assert!(
        out.contains("rules[0].when.time: Mon 17:00 America/New_York is outside Mon-Fri 09:30-16:00 America/New_York"),
        "{out}"
    );

    let (code, out, _) = check(&config(), "2030-03-18T17:00:00-04:00", &["--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["status"], 403);
    assert_eq!(v["explanation"]["candidates"][0]["result"], "conditions_failed");
}

#[test]
fn check_reports_errors_with_exit_2() {
    let mut bad = config();
    bad["policy"]["rules"][0]["when"]["time"]["zone"] = json!("America/NewYork");
    let (code, _, err) = check(&bad, "2030-03-18T10:00:00-04:00", &[]);
    assert_eq!(code, 2);
    assert!(err.contains(r#"policy.rules[0].when.time.zone: unknown time zone "America/NewYork""#), "{err}");
    let (code, _, err) = agent_iam(&["check", "--method", "GET"]);
    assert_eq!(code, 2);
    assert!(err.contains("--config <FILE>"), "{err}");
    let (code, _, err) = agent_iam(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("Usage:"), "{err}");
}

#[test]
fn test_runs_policy_cases_and_fails_on_a_wrong_expectation() {
    let dir = scratch("cases");
    std::fs::write(dir.join("p.json"), config()["policy"].to_string()).unwrap();
    let mut cases = json!({
        "time": "2030-03-18T10:00:00-04:00",
        "cases": [
            {"name": "trader orders in market hours", "token": {"sub": TRADER},
             "request": {"method": "POST", "path": "/orders"}, "expect": {"decision": "allow", "rule": "trader-orders"}},
            {"name": "closed at five", "token": {"sub": TRADER},
             "request": {"method": "POST", "path": "/orders", "time": "2030-03-18T17:00:00-04:00"}, "expect": {"decision": "deny"}}
        ]
    });
    std::fs::write(dir.join("p.tests.json"), cases.to_string()).unwrap();
    let (code, out, err) = agent_iam(&["test", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");

    cases["cases"][1]["expect"]["decision"] = json!("allow");
    std::fs::write(dir.join("p.tests.json"), cases.to_string()).unwrap();
    let (code, out, _) = agent_iam(&["test", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL closed at five: no rule allows; expected allow"), "{out}");
    assert!(out.contains("rules[0].when.time: Mon 17:00"), "{out}");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn repo_file(rel: &str) -> String {
    repo().join(rel).to_string_lossy().into_owned()
}

#[test]
fn help_lists_every_subcommand() {
    let (code, out, _) = agent_iam(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["check", "test", "validate", "token", "schema", "completions", "man"] {
        assert!(out.contains(&format!("\n  {sub} ")), "{sub} missing from\n{out}");
    }
}

#[test]
fn test_passes_on_the_shipped_policies_from_another_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-iam"))
        .args(["test", &repo_file("policies")])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// Every shipped file that embeds a plugin configuration.
fn shipped_configurations() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["examples", "deploy/istio", "deploy/envoy-gateway", "envoy"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.ends_with(".json") || name.ends_with(".yaml")) {
                continue;
            }
            if dir != "envoy" || std::fs::read_to_string(&p).unwrap().contains("root_id: agent-iam") {
                files.push(p.to_string_lossy().into_owned());
            }
        }
    }
    files.push(repo_file("envoy/reload/listeners.yaml"));
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    files
}

#[test]
fn validate_accepts_every_shipped_configuration_and_manifest() {
    let files = shipped_configurations();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = agent_iam(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.contains(": valid (")).count(), files.len(), "{out}");
}

#[test]
fn validate_refuses_a_broken_configuration_with_the_path_of_the_problem() {
    let dir = scratch("validate");
    // A whole configuration, in YAML.
    let mut bad = config();
    bad["issuers"][0]["jwks"]["keys"][0]["crv"] = json!("P-384");
    let yaml = dir.join("bad.yaml");
    std::fs::write(&yaml, serde_json::to_string(&bad).unwrap()).unwrap();
    let (code, _, err) = agent_iam(&["validate", yaml.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with(&format!("{}: issuers[0].jwks", yaml.display())), "{err}");

    // Embedded in an Istio WasmPlugin: the manifest's path, then the configuration's.
    let text = std::fs::read_to_string(repo().join("deploy/istio/wasmplugin.yaml")).unwrap();
    let broken = text.replacen("audiences:", "audiencez:", 1);
    assert_ne!(broken, text);
    let wasm_plugin = dir.join("wasmplugin.yaml");
    std::fs::write(&wasm_plugin, broken).unwrap();
    let (code, _, err) = agent_iam(&["validate", wasm_plugin.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(WasmPlugin agent-iam) spec.pluginConfig: issuers[0]"), "{err}");
    assert!(err.contains("unknown field `audiencez`"), "{err}");

    // Embedded in an Envoy config's StringValue.
    let text = std::fs::read_to_string(repo().join("envoy/demo.yaml")).unwrap();
    let envoy = dir.join("envoy.yaml");
    std::fs::write(&envoy, text.replacen("\"ES256\", \"EdDSA\"", "\"ES256\", \"none\"", 1)).unwrap();
    let (code, _, err) = agent_iam(&["validate", envoy.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "http_filters[0].typed_config.config.configuration.value: issuers[0].algorithms[1]: unsupported algorithm"
        ),
        "{err}"
    );

    // Kubernetes reads YAML 1.1: an unquoted `y` key of a JWK is the boolean true there.
    let text = std::fs::read_to_string(repo().join("deploy/envoy-gateway/envoyextensionpolicy.yaml")).unwrap();
    let yaml11 = dir.join("eep.yaml");
    std::fs::write(&yaml11, text.replacen("\"y\":", "y:", 1)).unwrap();
    let (code, _, err) = agent_iam(&["validate", yaml11.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(": unquoted y is a boolean in YAML 1.1"), "{err}");
}

#[test]
fn the_examples_carry_the_shipped_policies_verbatim() {
    for (example, policy) in [("trading", "demo"), ("hospital", "hospital"), ("delegation", "delegation")] {
        let read = |rel: String| -> Value {
            serde_json::from_str(&std::fs::read_to_string(repo().join(rel)).unwrap()).unwrap()
        };
        assert_eq!(
            read(format!("examples/{example}.json"))["policy"],
            read(format!("policies/{policy}.json")),
            "{example}"
        );
    }
}

#[test]
fn a_minted_token_verifies_in_check() {
    let dir = scratch("mint");
    let (code, keys, err) = agent_iam(&["token", "keygen", "--alg", "ES256", "--kid", "k1"]);
    assert_eq!(code, 0, "{err}");
    let keys: Value = serde_json::from_str(&keys).unwrap();
    let key_file = dir.join("key.json");
    std::fs::write(&key_file, keys["private_jwk"].to_string()).unwrap();
    let mut config = config();
    config["issuers"][0]["jwks"] = keys["jwks"].clone();
    config["issuers"][0]["max_delegation_depth"] = json!(2);
    config["policy"]["rules"][0]["when"] = json!({"delegation": {"delegated": true, "origin": ["spiffe://trading.example/agent/planner"], "may_act": true}});
    let config_file = dir.join("config.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let (code, token, err) = agent_iam(&[
        "token",
        "mint",
        "--key",
        key_file.to_str().unwrap(),
        "--iss",
        ISSUER,
        "--aud",
        "orders",
        "--sub",
        "user:alice",
        "--act",
        TRADER,
        "--act",
        "spiffe://trading.example/agent/planner",
        "--may-act",
        TRADER,
        "--cnf-x5t",
        "abc",
        "--claim",
        "tier=3",
    ]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim();
    let claims: Value =
        serde_json::from_slice(&agent_iam::b64::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["act"], json!({"sub": TRADER, "act": {"sub": "spiffe://trading.example/agent/planner"}}));
    assert_eq!(claims["may_act"], json!({"sub": TRADER}));
    assert_eq!(claims["cnf"], json!({"x5t#S256": "abc"}));
    assert_eq!(claims["tier"], 3);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    let config_file = config_file.to_string_lossy().into_owned();
    let args = ["check", "--config", &config_file, "--token", token, "--method", "POST", "--path", "/orders"];
    let (code, out, err) = agent_iam(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("x-agent-iam-subject: user:alice"), "{out}");

    // The README walkthrough: a shipped example and its key, from another directory.
    let (code, token, err) = agent_iam(&[
        "token",
        "mint",
        "--key",
        &repo_file("examples/keys/trading.jwk.json"),
        "--iss",
        "https://idp.trading.example",
        "--aud",
        "trading-api",
        "--sub",
        "spiffe://trading.example/agent/trader",
    ]);
    assert_eq!(code, 0, "{err}");
    let example = repo_file("examples/trading.json");
    let (code, out, err) = agent_iam(&[
        "check",
        "--config",
        &example,
        "--token",
        token.trim(),
        "--method",
        "GET",
        "--path",
        "/admin/users",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("deciding rule: no-admin"), "{out}");
}
