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
    assert!(err.contains("check needs --config"), "{err}");
    let (code, _, err) = agent_iam(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("usage:"), "{err}");
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
