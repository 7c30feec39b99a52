//! `agent-iam validate`: plugin configurations, and the manifests that embed one, checked with the plugin's
//! own `config::parse` (the code `on_configure` runs), every error with its file and exact path.

use crate::Usage;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How YAML is read, for `--help` and the README.
pub const YAML_NOTE: &str = "YAML is read as YAML 1.2 (the core schema). Kubernetes reads manifests as YAML 1.1 \
(sigs.k8s.io/yaml), where a plain y, n, yes, no, on, off (any case) is a boolean, 0755 an octal number and 1:30 \
a sexagesimal one: in a document with apiVersion and kind, validate refuses such unquoted scalars anywhere, with \
their line, so the manifest means the same to Kubernetes as to this check. Quote them (\"y\": ...).";

/// Options of `validate`.
#[derive(clap::Args)]
pub struct Args {
    /// Plugin configurations (JSON or YAML), Envoy configs, Istio WasmPlugins, Envoy Gateway
    /// EnvoyExtensionPolicies (several YAML documents per file are fine).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print nothing for valid files.
    #[arg(long, short)]
    quiet: bool,
}

/// One plugin configuration found in a file.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Where it is in the file: empty for a file that is a configuration, else e.g.
    /// `document 1 (WasmPlugin agent-iam) spec.pluginConfig`.
    pub location: String,
    /// The configuration as the plugin receives it (JSON bytes).
    pub json: Vec<u8>,
}

/// The plugin configurations in a file, or the problems that keep it from being read.
pub fn configurations(path: &Path) -> Result<Vec<Embedded>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![e.to_string()])?;
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let docs: Vec<Value> = if json {
        vec![serde_json::from_str(&text).map_err(|e| vec![format!("not valid JSON: {e}")])?]
    } else {
        serde_norway::Deserializer::from_str(&text)
            .map(Value::deserialize)
            .filter(|d| !matches!(d, Ok(Value::Null)))
            .collect::<Result<_, _>>()
            .map_err(|e| vec![format!("not valid YAML: {e}")])?
    };
    if !json && docs.iter().any(is_kubernetes) {
        let surprises = yaml11_surprises(&text);
        if !surprises.is_empty() {
            return Err(surprises);
        }
    }
    let many = docs.len() > 1;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let prefix = if many { format!("document {} ", i + 1) } else { String::new() };
        if is_kubernetes(doc) {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or("?");
            let here = format!("{prefix}({kind} {name}) ");
            match kind {
                "WasmPlugin" => match doc["spec"].get("pluginConfig") {
                    Some(c) => found.push(embedded(format!("{here}spec.pluginConfig"), c)),
                    None => {
                        problems.push(format!("{here}spec.pluginConfig: missing (agent-iam needs its configuration)"))
                    }
                },
                "EnvoyExtensionPolicy" => {
                    let wasm = doc["spec"]["wasm"].as_array().map(Vec::as_slice).unwrap_or_default();
                    if wasm.is_empty() {
                        problems.push(format!("{here}spec.wasm: no Wasm extension"));
                    }
                    for (j, w) in wasm.iter().enumerate() {
                        match w.get("config") {
                            Some(c) => found.push(embedded(format!("{here}spec.wasm[{j}].config"), c)),
                            None => problems.push(format!("{here}spec.wasm[{j}].config: missing")),
                        }
                    }
                }
                _ => {} // ServiceEntry, DestinationRule, ...: nothing of ours.
            }
        } else if doc.get("issuers").is_some() || doc.get("policy").is_some() {
            found.push(embedded(prefix.trim_end().to_owned(), doc));
        } else {
            let before = found.len() + problems.len();
            envoy_filters(doc, &mut String::new(), &prefix, &mut found, &mut problems);
            if found.len() + problems.len() == before {
                problems.push(format!(
                    "{prefix}no agent-iam configuration: not a plugin configuration (no issuers, no policy), no Envoy \
                     Wasm filter with root_id agent-iam, no WasmPlugin or EnvoyExtensionPolicy"
                ));
            }
        }
    }
    if problems.is_empty() { Ok(found) } else { Err(problems) }
}

fn is_kubernetes(doc: &Value) -> bool {
    doc["apiVersion"].is_string() && doc["kind"].is_string()
}

fn embedded(location: String, config: &Value) -> Embedded {
    Embedded { location, json: serde_json::to_vec(config).unwrap_or_default() }
}

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// Every agent-iam Wasm filter below `v` (an Envoy bootstrap or a listener resource file): its
/// `config.configuration`, a StringValue holding the JSON. Another Wasm filter (another root_id) is not ours.
fn envoy_filters(v: &Value, at: &mut String, prefix: &str, found: &mut Vec<Embedded>, problems: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if o.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                let config = &v["config"];
                let file = config["vm_config"]["code"]["local"]["filename"].as_str().unwrap_or_default();
                let ours = config["root_id"] == "agent-iam" || file.ends_with("agent_iam.wasm");
                if ours {
                    let here = format!("{prefix}{at}.config.configuration");
                    let c = &config["configuration"];
                    match (c["@type"].as_str(), c["value"].as_str()) {
                        (Some(STRING_VALUE), Some(value)) => {
                            found.push(Embedded { location: format!("{here}.value"), json: value.as_bytes().to_vec() })
                        }
                        _ => problems.push(format!(
                            "{here}: must be a google.protobuf.StringValue whose value is the plugin configuration (JSON)"
                        )),
                    }
                }
                return;
            }
            for (k, child) in o {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(k);
                envoy_filters(child, at, prefix, found, problems);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                envoy_filters(child, at, prefix, found, problems);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// Plain (unquoted) scalars that YAML 1.1 (Kubernetes) reads differently from YAML 1.2, with their lines.
pub fn yaml11_surprises(text: &str) -> Vec<String> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::{Marker, TScalarStyle};
    struct Scan(Vec<String>);
    impl MarkedEventReceiver for Scan {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            if let Event::Scalar(value, TScalarStyle::Plain, ..) = ev
                && let Some(what) = yaml11_reading(&value)
            {
                self.0.push(format!(
                    "line {}, column {}: unquoted {value} is {what} in YAML 1.1, which Kubernetes reads: quote it",
                    mark.line(),
                    mark.col() + 1
                ));
            }
        }
    }
    let mut scan = Scan(Vec::new());
    if let Err(e) = Parser::new_from_str(text).load(&mut scan, true) {
        scan.0.push(format!("YAML: {e}"));
    }
    scan.0
}

/// What YAML 1.1 makes of a plain scalar that YAML 1.2's core schema reads as a string or another number.
fn yaml11_reading(s: &str) -> Option<&'static str> {
    const BOOLS: [&str; 16] =
        ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"];
    if BOOLS.contains(&s) {
        return Some("a boolean");
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Some("an octal number");
    }
    let mut parts = digits.split(':');
    let sexagesimal = digits.contains(':')
        && parts.next().is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()))
        && parts.all(|p| (1..=2).contains(&p.len()) && p.parse::<u8>().is_ok_and(|n| n < 60));
    if sexagesimal {
        return Some("a sexagesimal number");
    }
    None
}

/// Runs `validate`.
pub fn run(a: Args) -> Result<bool, Usage> {
    let mut ok = true;
    for file in &a.files {
        let name = file.display();
        match configurations(file) {
            Err(problems) => {
                ok = false;
                for p in problems {
                    eprintln!("{name}: {p}");
                }
            }
            Ok(found) => {
                let mut valid = true;
                for e in &found {
                    if let Err(err) = agent_iam::config::parse(&e.json) {
                        valid = false;
                        let at = if e.location.is_empty() { String::new() } else { format!("{}: ", e.location) };
                        eprintln!("{name}: {at}{err}");
                    }
                }
                ok &= valid;
                if valid && !a.quiet {
                    println!(
                        "{name}: valid ({} configuration{})",
                        found.len(),
                        if found.len() == 1 { "" } else { "s" }
                    );
                }
            }
        }
    }
    Ok(ok)
}
