//! The core's modules form layers in the direction data flows, and this test keeps them so:
//!
//! request < token < policy < engine < config < filter
//!
//! A module may import its own layer and the layers below it, never one above. `b64`, `json`, `bytes` and
//! `percent` (and `shared_data`, a trait) are leaves: every layer may use them, and they use only each other. Test code (`#[cfg(test)]`
//! modules, inline or in their own files) is exempt: a test may build a whole engine from a configuration.
//!
//! Within a layer, sibling modules (`token/crypto.rs`, `token/jwk.rs`) must not import each other in a cycle.
//!
//! The scan reads `crate::...` and `super::...` paths in every non-comment line of `plugin/src`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layer of each top-level module; `None` for a leaf.
fn layer(top: &str) -> Option<Option<usize>> {
    Some(match top {
        "b64" | "json" | "bytes" | "percent" | "shared_data" => None,
        // The proxy's header buffer read into `request::Headers`.
        "request" | "header_map" => Some(0),
        // `mint` signs tokens for tests and tools (never in the .wasm).
        "token" | "mint" => Some(1),
        // The audit event and its chain read requests and tokens; the engine holds its settings. Revocation
        // reads verified tokens; the engine checks them.
        "policy" | "audit" | "revocation" | "anomaly" => Some(2),
        "engine" => Some(3),
        "config" => Some(4),
        "filter" | "bench_exports" => Some(5),
        _ => return None,
    })
}

const NAMES: [&str; 6] = ["request", "token", "policy", "engine", "config", "filter"];

/// One source file: its module path (`["token", "crypto"]`) and its non-test, non-comment lines.
struct Source {
    module: Vec<String>,
    file: PathBuf,
    lines: Vec<(usize, String)>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `token/crypto.rs` → `["token", "crypto"]`; `policy/mod.rs` → `["policy"]`; `lib.rs` → `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The directory a module's child files live in: `policy/` for `policy/mod.rs`, `engine/` for `engine.rs`.
fn child_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap();
    match file.file_stem().unwrap().to_str().unwrap() {
        "mod" | "lib" => parent.to_path_buf(),
        stem => parent.join(stem),
    }
}

/// Reads every file, dropping test modules: files declared by `#[cfg(test)] mod x;` (and everything under
/// them), and an inline `#[cfg(test)] mod x { ... }` to the end of its file.
fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut test_roots: BTreeSet<PathBuf> = BTreeSet::new();
    let mut out = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let raw: Vec<&str> = text.lines().collect();
        let mut lines = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let line = raw[i].trim();
            if line == "#[cfg(test)]" {
                let next = raw.get(i + 1).map_or("", |l| l.trim());
                if let Some(name) = next.strip_prefix("mod ").and_then(|n| n.strip_suffix(';')) {
                    let dir = child_dir(file);
                    test_roots.insert(dir.join(format!("{name}.rs")));
                    test_roots.insert(dir.join(name));
                    i += 2;
                    continue;
                }
                if next.starts_with("mod ") && next.ends_with('{') {
                    break;
                }
            }
            if !line.starts_with("//") {
                lines.push((i + 1, raw[i].to_string()));
            }
            i += 1;
        }
        out.push(Source { module: module_of(file), file: file.clone(), lines });
    }
    out.retain(|s| !test_roots.iter().any(|root| s.file.starts_with(root)));
    assert!(out.len() > 20, "the scan found only {} files under {}", out.len(), src_dir().display());
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The module paths a line names after `crate::` (with `crate::{a, b::c}` read as `a` and `b::c`), each as
/// its first two segments.
fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let segs: Vec<String> =
                    item.trim().split("::").take(2).map(|s| ident_at(s.trim()).to_string()).collect();
                if !segs[0].is_empty() {
                    out.push(segs);
                }
            }
        } else {
            let first = ident_at(after);
            let second = after[first.len()..].strip_prefix("::").map(ident_at).unwrap_or("");
            out.push([first, second].iter().filter(|s| !s.is_empty()).map(|s| s.to_string()).collect());
        }
        rest = after;
    }
    out
}

#[test]
fn no_layer_imports_a_higher_one() {
    let mut violations = Vec::new();
    for src in sources() {
        let Some(top) = src.module.first() else { continue };
        let Some(own) = layer(top) else {
            panic!("{}: module `{top}` has no layer in tests/layers.rs", src.file.display())
        };
        for (n, line) in &src.lines {
            for path in crate_paths(line) {
                let Some(used) = layer(&path[0]) else { continue };
                let allowed = match (own, used) {
                    (_, None) => true,
                    (None, Some(_)) => false,
                    (Some(own), Some(used)) => used <= own,
                };
                if !allowed {
                    let name = |l: Option<usize>| l.map_or("a leaf", |l| NAMES[l]);
                    violations.push(format!(
                        "{}:{n}: `{top}` ({}) imports `{}` ({}): {}",
                        src.file.display(),
                        name(own),
                        path[0],
                        name(used),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layer order:\n{}", violations.join("\n"));
}

#[test]
fn sibling_modules_import_each_other_without_cycles() {
    let sources = sources();
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    // Edges between sibling modules: `token::crypto` → `token::jwk` when crypto names `super::jwk` or
    // `crate::token::jwk`.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for src in &sources {
        if src.module.len() < 2 {
            continue;
        }
        let parent = &src.module[..src.module.len() - 1];
        for (_, line) in &src.lines {
            let mut named: Vec<String> = Vec::new();
            let mut rest = line.as_str();
            while let Some(at) = rest.find("super::") {
                let after = &rest[at + "super::".len()..];
                if let Some(group) = after.strip_prefix('{') {
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    named.extend(inner.split(',').map(|i| ident_at(i.trim()).to_string()));
                } else {
                    named.push(ident_at(after).to_string());
                }
                rest = after;
            }
            if parent.len() == 1 {
                for path in crate_paths(line) {
                    if path.len() == 2 && path[0] == parent[0] {
                        named.push(path[1].clone());
                    }
                }
            }
            for name in named {
                let mut sibling = parent.to_vec();
                sibling.push(name);
                if sibling != src.module && modules.contains(&sibling) {
                    edges.entry(src.module.clone()).or_default().insert(sibling);
                }
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, bool>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let from = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node.clone(), false);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new()) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("sibling modules import each other in a cycle: {}", names.join(" -> "));
        }
    }
}

/// The scanner itself: a higher import in a line is caught, grouped imports included.
#[test]
fn the_scan_reads_grouped_and_nested_paths() {
    assert_eq!(crate_paths("use crate::{b64, json};"), vec![vec!["b64".to_string()], vec!["json".to_string()]]);
    assert_eq!(
        crate_paths("    let x = crate::config::parse(b);"),
        vec![vec!["config".to_string(), "parse".to_string()]]
    );
    assert_eq!(layer("config"), Some(Some(4)));
    assert!(layer("engine").unwrap() > layer("policy").unwrap());
}
