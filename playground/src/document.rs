//! What the user typed: JSON or YAML, a policy alone (`rules` at the top) or a whole gateway configuration
//! (`issuers`, `policy`, ...), read with the gateway's own strictness and refused with exact paths.

use agent_iam::config::{self, ConfigError};
use agent_iam::engine::Engine;
use agent_iam::policy::{Policy, PolicyDocument};
use serde_json::{Value, json};

/// A document that passed validation.
pub enum Loaded {
    /// A policy alone.
    Policy(Box<Policy>),
    /// A whole configuration: the engine the gateway would run.
    Configuration(Box<Engine>),
}

impl Loaded {
    /// The policy, either way.
    pub fn policy(&self) -> &Policy {
        match self {
            Loaded::Policy(p) => p,
            Loaded::Configuration(e) => e.policy(),
        }
    }
}

/// A refusal: where, and what is wrong there.
#[derive(Debug)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into() }
    }

    /// `{ok: false, errors: [{path, message}]}`.
    pub fn answer(&self) -> Value {
        json!({"ok": false, "errors": [{"path": self.path, "message": self.message}]})
    }
}

impl From<ConfigError> for Problem {
    fn from(e: ConfigError) -> Problem {
        Problem::new(e.path, e.message)
    }
}

/// `path` under `root` (`config.rules[0]`); `root` alone for the whole document (an empty path, or serde's
/// `.`).
pub fn prefixed(root: &str, path: &str) -> String {
    if path.is_empty() || path == "." { root.to_owned() } else { format!("{root}.{path}") }
}

/// The text as JSON: JSON read strictly (duplicate members, depth), YAML through YAML 1.2 (as Istio hands a
/// `pluginConfig` over); `auto` takes JSON when the text starts with `{`.
pub fn parse(text: &str, format: &str) -> Result<Value, Problem> {
    let yaml = match format {
        "json" => false,
        "yaml" => true,
        "auto" | "" => !text.trim_start().starts_with('{'),
        other => return Err(Problem::new("", format!("unknown format \"{other}\" (json, yaml or auto)"))),
    };
    if yaml {
        let value: Value =
            serde_norway::from_str(text).map_err(|e| Problem::new("", format!("not valid YAML: {e}")))?;
        // Read again strictly, as the gateway reads the JSON Istio makes of it.
        agent_iam::json::parse_value(value.to_string().as_bytes(), 64)
            .map_err(|e| Problem::new("", format!("the document has a {e}")))
    } else {
        agent_iam::json::parse_value(text.as_bytes(), 64).map_err(|e| match serde_json::from_str::<Value>(text) {
            Err(syntax) => Problem::new("", format!("not valid JSON: {syntax}")),
            Ok(_) => Problem::new("", format!("the JSON has a {e}")),
        })
    }
}

/// Reads and validates a document.
pub fn load(text: &str, format: &str) -> Result<Loaded, Problem> {
    let value = parse(text, format)?;
    let Some(object) = value.as_object() else { return Err(Problem::new("", "must be a JSON object")) };
    if object.contains_key("rules") && !object.contains_key("policy") {
        let doc: PolicyDocument = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            Problem::new(if path == "." { String::new() } else { path }, e.into_inner().to_string())
        })?;
        let policy = Policy::compile(&doc).map_err(|e| Problem::new(e.path, e.message))?;
        return Ok(Loaded::Policy(Box::new(policy)));
    }
    Ok(Loaded::Configuration(Box::new(config::parse(value.to_string().as_bytes())?)))
}

/// `convert()`: the document (JSON or YAML) written as pretty JSON or as YAML, read as strictly as [`parse`].
pub fn convert(text: &str, to: &str) -> Value {
    let value = match parse(text, "auto") {
        Ok(value) => value,
        Err(problem) => return problem.answer(),
    };
    let written = match to {
        "json" => serde_json::to_string_pretty(&value).map_err(|e| e.to_string()),
        "yaml" => serde_norway::to_string(&value).map_err(|e| e.to_string()),
        other => Err(format!("unknown format \"{other}\" (json or yaml)")),
    };
    match written {
        Ok(text) => json!({"ok": true, "text": text}),
        Err(message) => Problem::new("", message).answer(),
    }
}

/// `validate()`: what kind of document it is and a summary, or its first error with the path.
pub fn validate(text: &str, format: &str) -> Value {
    match load(text, format) {
        Err(problem) => problem.answer(),
        Ok(loaded) => {
            let policy = loaded.policy();
            let warnings: Vec<String> = policy.warnings().iter().map(ToString::to_string).collect();
            let mut summary = json!({"rules": policy.len(), "version": policy.version(), "warnings": warnings});
            let kind = match &loaded {
                Loaded::Policy(_) => "policy",
                Loaded::Configuration(engine) => {
                    summary["issuers"] = engine.verifier().issuers().len().into();
                    "configuration"
                }
            };
            json!({"ok": true, "kind": kind, "summary": summary})
        }
    }
}
