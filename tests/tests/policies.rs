//! The policies in `policies/`: each compiles without warnings, each has a sibling `X.tests.json` whose cases
//! all pass, the demo gateway runs exactly `policies/demo.json`, and the examples in `docs/policy.md` are
//! valid (and its error and warning messages are the ones the compiler gives).

use agent_iam::policy::cases::{self, CaseFile};
use agent_iam::policy::{Policy, PolicyDocument};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    agent_iam_host::workspace_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `policies/*.json` without the `*.tests.json`, sorted.
fn policy_files() -> Vec<PathBuf> {
    let dir = root().join("policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !name(p).ends_with(".tests.json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no policies in {}", dir.display());
    files
}

fn name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `X.json` → `X.tests.json`.
fn tests_file(policy: &Path) -> PathBuf {
    policy.with_extension("tests.json")
}

fn compile(path: &Path) -> Result<Policy, String> {
    let doc: PolicyDocument =
        serde_json::from_str(&read(path)).map_err(|e| format!("{}: not a policy document: {e}", name(path)))?;
    Policy::compile(&doc).map_err(|e| format!("{}: {e}", name(path)))
}

#[test]
fn every_policy_compiles() {
    let errors: Vec<String> = policy_files().iter().filter_map(|p| compile(p).err()).collect();
    assert!(errors.is_empty(), "policies that do not compile:\n  {}", errors.join("\n  "));
}

#[test]
fn shipped_policies_have_no_warnings() {
    let mut warnings = Vec::new();
    for path in policy_files() {
        if let Ok(policy) = compile(&path) {
            warnings.extend(policy.warnings().iter().map(|w| format!("{}: {w}", name(&path))));
        }
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    assert!(warnings.is_empty(), "compile warnings:\n  {}", warnings.join("\n  "));
}

#[test]
fn every_policy_has_a_tests_file_and_every_tests_file_a_policy() {
    let policies = policy_files();
    let mut problems: Vec<String> = policies
        .iter()
        .filter(|p| !tests_file(p).is_file())
        .map(|p| format!("{} has no {}", name(p), name(&tests_file(p))))
        .collect();
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let file = name(&path);
        if let Some(stem) = file.strip_suffix(".tests.json")
            && !policies.iter().any(|p| name(p) == format!("{stem}.json"))
        {
            problems.push(format!("{file} tests no policy ({stem}.json is missing)"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_policy_case_passes() {
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for path in policy_files() {
        let tests = tests_file(&path);
        if !tests.is_file() {
            continue; // reported by every_policy_has_a_tests_file_and_every_tests_file_a_policy
        }
        let policy = match compile(&path) {
            Ok(p) => p,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let file: CaseFile = match serde_json::from_str(&read(&tests)) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{}: not a test-case file: {e}", name(&tests)));
                continue;
            }
        };
        let results = match cases::run(&policy, &file) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e}", name(&tests)));
                continue;
            }
        };
        if results.is_empty() {
            failures.push(format!("{}: no cases", name(&tests)));
        }
        let mut names = std::collections::HashSet::new();
        for r in &results {
            if !names.insert(&r.name) {
                failures.push(format!("{}: case name \"{}\" appears twice", name(&tests), r.name));
            }
            if !r.passed {
                failures.push(format!("{}: \"{}\": {}", name(&tests), r.name, r.detail));
            }
        }
        counts.push(format!("{}: {} cases", name(&tests), results.len()));
    }
    println!("{}", counts.join("\n"));
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn demo_gateway_runs_the_demo_policy() {
    let yaml = read(&agent_iam_tests::demo::template_path());
    let config = agent_iam_tests::demo::plugin_config_in(&yaml).unwrap();
    let demo: Value = serde_json::from_str(&read(&root().join("policies/demo.json"))).unwrap();
    assert_eq!(config["policy"], demo);
}

/// A fenced block of `docs/policy.md`: the info string (`json`, `json compile-error`, ...), the text, and
/// the line it starts on.
struct Block {
    info: String,
    text: String,
    line: usize,
}

fn doc_blocks() -> Vec<Block> {
    let text = read(&root().join("docs/policy.md"));
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => open = Some(Block { info: info.trim().to_owned(), text: String::new(), line: i + 1 }),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "docs/policy.md: unclosed code block");
    blocks
}

/// A policy document from a docs example: a whole document (with `rules`) or one rule (with `effect`).
fn doc_example(value: &Value) -> Option<Value> {
    if value.get("rules").is_some() {
        Some(value.clone())
    } else if value.get("effect").is_some() {
        Some(serde_json::json!({"rules": [value]}))
    } else {
        None
    }
}

/// The error the gateway gives for a policy (as in its log, without the `policy.` prefix): unlike a plain
/// `serde_json` parse, unknown fields come with their path.
fn gateway_error(policy: &Value) -> Option<String> {
    let config = serde_json::json!({
        "issuers": [{
            "issuer": "https://idp.example", "audiences": ["api"], "algorithms": ["ES256"],
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k",
                               "x": "8HpFOIR2t_bK0h7x15g_rnxvg4W7b_k7d5_5a0DDJLQ",
                               "y": "fgx6ts-MmE-tDPpiBmZsbQhbxLVKiclZ3PG4bNm7wXY"}]}
        }],
        "policy": policy
    });
    agent_iam::config::parse(config.to_string().as_bytes()).err().map(|e| {
        let e = e.to_string();
        e.strip_prefix("policy.").map_or(e.clone(), str::to_owned)
    })
}

/// Every ```json block of `docs/policy.md` is JSON; each that is a policy (or a rule) compiles, each that is
/// a test-case file parses. A block marked ```json compile-error must fail, and a block marked ```json warning
/// must compile with warnings; the ```text block right after either holds the exact messages.
#[test]
fn docs_examples_are_valid() {
    let blocks = doc_blocks();
    let mut problems = Vec::new();
    let (mut policies, mut errors, mut warnings) = (0, 0, 0);
    for (i, block) in blocks.iter().enumerate() {
        let mut words = block.info.split_whitespace();
        if words.next() != Some("json") {
            continue;
        }
        let mark = words.next();
        let at = format!("docs/policy.md:{}", block.line);
        let value: Value = match serde_json::from_str(&block.text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{at}: not JSON: {e}"));
                continue;
            }
        };
        let expected_text = || match blocks.get(i + 1) {
            Some(next) if next.info == "text" => Some(next.text.trim_end().to_owned()),
            _ => None,
        };
        if value.get("cases").is_some() {
            match serde_json::from_value::<CaseFile>(value) {
                Err(e) => problems.push(format!("{at}: not a test-case file: {e}")),
                // "Cases for policies/X.json": run them against that policy.
                Ok(file) => {
                    let target = file.description.as_deref().and_then(|d| {
                        let start = d.find("policies/")?;
                        let end = start + d[start..].find(".json")? + ".json".len();
                        Some(d[start..end].to_owned())
                    });
                    let results = target.map(|t| {
                        let run =
                            compile(&root().join(&t)).and_then(|p| cases::run(&p, &file).map_err(|e| e.to_string()));
                        (t, run)
                    });
                    match results {
                        None => {}
                        Some((_, Err(e))) => problems.push(format!("{at}: {e}")),
                        Some((target, Ok(results))) => problems.extend(
                            results
                                .iter()
                                .filter(|r| !r.passed)
                                .map(|r| format!("{at}: case \"{}\" against {target}: {}", r.name, r.detail)),
                        ),
                    }
                }
            }
            continue;
        }
        let Some(doc) = doc_example(&value) else { continue };
        let compiled = serde_json::from_value::<PolicyDocument>(doc.clone())
            .map_err(|e| e.to_string())
            .and_then(|d| Policy::compile(&d).map_err(|e| e.to_string()))
            .map_err(|e| gateway_error(&doc).unwrap_or(e));
        match (mark, compiled) {
            (None, Ok(p)) if p.warnings().is_empty() => policies += 1,
            (None, Ok(p)) => {
                let w: Vec<String> = p.warnings().iter().map(|w| w.to_string()).collect();
                problems.push(format!(
                    "{at}: unexpected warnings (mark the block `json warning`):\n    {}",
                    w.join("\n    ")
                ));
            }
            (None, Err(e)) => problems.push(format!("{at}: does not compile (mark it `json compile-error`): {e}")),
            (Some("compile-error"), Err(e)) => {
                errors += 1;
                match expected_text() {
                    Some(want) if want == e => {}
                    Some(want) => {
                        problems.push(format!("{at}: the error is\n    {e}\n  but the text block says\n    {want}"))
                    }
                    None => problems.push(format!("{at}: follow it with a ```text block holding the error: {e}")),
                }
            }
            (Some("compile-error"), Ok(_)) => problems.push(format!("{at}: marked compile-error but compiles")),
            (Some("warning"), Ok(p)) if !p.warnings().is_empty() => {
                warnings += 1;
                let got: Vec<String> = p.warnings().iter().map(|w| w.to_string()).collect();
                let got = got.join("\n");
                match expected_text() {
                    Some(want) if want == got => {}
                    Some(want) => problems
                        .push(format!("{at}: the warnings are\n    {got}\n  but the text block says\n    {want}")),
                    None => problems.push(format!("{at}: follow it with a ```text block holding the warnings: {got}")),
                }
            }
            (Some("warning"), other) => problems.push(format!("{at}: marked warning but got {:?}", other.map(|_| ()))),
            (Some(m), _) => problems.push(format!("{at}: unknown mark `{m}` (compile-error or warning)")),
        }
    }
    println!("docs/policy.md: {policies} valid examples, {errors} compile errors, {warnings} with warnings");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(policies >= 10, "docs/policy.md has only {policies} policy examples");
}

/// The README's "Tokens and issuers" example is a configuration the plugin accepts, with no policy warnings.
#[test]
fn readme_issuers_example_is_a_valid_configuration() {
    let readme = read(&root().join("README.md"));
    let marker = "<!-- README example: compiled by tests/tests/policies.rs -->";
    let after = readme.split_once(marker).expect("the README example marker").1;
    let block = after.split_once("```json\n").and_then(|(_, b)| b.split_once("\n```")).expect("a json block").0;
    let engine = agent_iam::config::parse(block.as_bytes()).unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(engine.verifier().issuers().len(), 3);
    assert!(engine.policy().warnings().is_empty(), "{:?}", engine.policy().warnings());
}
