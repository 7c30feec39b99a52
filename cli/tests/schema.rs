//! `agent-iam schema`: every shipped configuration (examples/, and the configurations embedded in deploy/ and
//! envoy/) validates against the JSON Schema generated from the plugin's configuration types; a broken one
//! does not.

use agent_iam_cli::validate::configurations;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn printed_schema() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-iam")).arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema, agent_iam_cli::schema::schema());
    schema
}

fn embedded_configs() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["examples", "deploy/istio", "deploy/envoy-gateway", "envoy", "envoy/reload"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let ext = p.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            if ext == "json" || ext == "yaml" {
                files.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for f in &files {
        // Envoy configs without the plugin (reload.yaml's bootstrap) have nothing to check.
        let Ok(found) = configurations(Path::new(f)) else { continue };
        for e in found {
            out.push((format!("{} {}", f.display(), e.location), serde_json::from_slice(&e.json).unwrap()));
        }
    }
    out
}

#[test]
fn every_shipped_configuration_validates_against_the_schema() {
    let schema = printed_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let configs = embedded_configs();
    assert!(configs.len() >= 10, "{}", configs.len());
    for (name, config) in &configs {
        let errors: Vec<String> =
            validator.iter_errors(config).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn the_schema_refuses_unknown_fields_wrong_types_and_missing_members() {
    let validator = jsonschema::validator_for(&agent_iam_cli::schema::schema()).unwrap();
    let good: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/trading.json")).unwrap()).unwrap();
    assert!(validator.is_valid(&good));
    let mut unknown = good.clone();
    unknown["issuers"][0]["audience"] = json!(["x"]);
    assert!(!validator.is_valid(&unknown));
    let mut wrong_type = good.clone();
    wrong_type["max_token_bytes"] = json!("8192");
    assert!(!validator.is_valid(&wrong_type));
    let mut effect = good.clone();
    effect["policy"]["rules"][0]["effect"] = json!("permit");
    assert!(!validator.is_valid(&effect));
    let mut missing = good;
    missing.as_object_mut().unwrap().remove("policy");
    assert!(!validator.is_valid(&missing));
}
