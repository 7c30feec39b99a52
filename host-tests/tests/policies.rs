//! The example policies in `policies/` compile, and the demo gateway runs exactly the trading policy.

use agent_iam::policy::{Policy, PolicyDocument};
use serde_json::Value;

fn root() -> std::path::PathBuf {
    agent_iam_host::workspace_root()
}

#[test]
fn every_example_policy_compiles() {
    let mut compiled = 0;
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: PolicyDocument = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let policy = Policy::compile(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!policy.is_empty(), "{}", path.display());
            compiled += 1;
        }
    }
    assert!(compiled >= 1);
}

#[test]
fn demo_gateway_runs_the_trading_policy() {
    let yaml = std::fs::read_to_string(agent_iam_host::demo::template_path()).unwrap();
    // The plugin configuration is the block scalar after `value: |`, indented deeper than that line.
    let start = yaml.find("value: |").expect("plugin configuration in envoy/demo.yaml");
    let indent = yaml[..start].rsplit('\n').next().map_or(0, str::len) + 2;
    let config: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.len() > indent && l[..indent].trim().is_empty())
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    let config: Value = serde_json::from_str(&config).unwrap();
    let trading: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("policies/trading.json")).unwrap()).unwrap();
    assert_eq!(config["policy"], trading);
}
