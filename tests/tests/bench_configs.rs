//! The Envoy configurations of `make bench-envoy` (`envoy/bench/*.yaml`, templates): each one, rendered as the
//! benchmark renders it (generated keys, free ports, the absolute `.wasm` path), passes `envoy --mode
//! validate`, which also runs the plugin's `on_configure`. That needs Envoy and the release `.wasm`, so it is
//! `#[ignore]`d for a plain `cargo test` and run by `make e2e`. The check that docs/migration.md quotes these
//! files verbatim needs neither and always runs.

use agent_iam_tests::demo::{self, DemoKeys, Ports};
use agent_iam_tests::testbed;
use std::path::PathBuf;

fn bench_dir() -> PathBuf {
    agent_iam_host::workspace_root().join("envoy/bench")
}

fn bench_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(bench_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The access log files in the templates, G's audit file and G0's control log (`agent-iam-envoy-bench` puts
/// each in its configuration's work directory), with the name each gets here.
const ACCESS_LOGS: [(&str, &str); 2] = [
    ("path: target/bench/envoy/G/audit.ndjson", "g-audit.ndjson"),
    ("path: target/bench/envoy/G0/access.ndjson", "g0-access.ndjson"),
];

#[test]
#[ignore = "needs Envoy and the release .wasm (make e2e)"]
fn every_bench_config_renders_and_validates() {
    let wasm = agent_iam_host::plugin_wasm_path();
    assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
    let keys = DemoKeys::generate().unwrap();
    let out = agent_iam_host::workspace_root().join("target/e2e/bench-configs");
    std::fs::create_dir_all(&out).unwrap();
    let files = bench_configs();
    assert!(files.len() >= 6, "not every benchmark configuration found in {}", bench_dir().display());
    assert!(
        files.iter().any(|f| f.ends_with("g-agent-iam-audit.yaml")),
        "configuration G (audit) not found in {}",
        bench_dir().display()
    );
    assert!(
        files.iter().any(|f| f.ends_with("h-agent-iam-limits.yaml")),
        "configuration H (limits and anomalies) not found in {}",
        bench_dir().display()
    );
    assert!(
        files.iter().any(|f| f.ends_with("c3-agent-iam-dpop.yaml")),
        "configuration C3 (DPoP) not found in {}",
        bench_dir().display()
    );
    for control in ["f0-mcp-post-control.yaml", "g0-access-log-control.yaml"] {
        assert!(files.iter().any(|f| f.ends_with(control)), "control {control} not found in {}", bench_dir().display());
    }
    let mut failures = Vec::new();
    for file in &files {
        let template = std::fs::read_to_string(file).unwrap();
        let ports =
            Ports { listener: testbed::free_port().unwrap(), admin: testbed::free_port().unwrap(), ..Ports::DEFAULT };
        // As `agent-iam-envoy-bench` renders it: keys, ports, `.wasm` path.
        let rendered = demo::render_bench_config(&template, &keys.jwks(), ports, &wasm).unwrap();
        // G's audit file and G0's log, as the benchmark puts them in a work directory: Envoy opens an access log
        // file even when it only validates, so its directory must exist.
        let rendered = match ACCESS_LOGS.iter().find(|(path, _)| rendered.contains(path)) {
            Some((path, name)) => {
                demo::replace_once(&rendered, path, &format!("path: {}", out.join(name).display())).unwrap()
            }
            None => rendered,
        };
        assert!(!rendered.contains("port_value: 10000 "), "{}: listener port not substituted", file.display());
        assert!(!rendered.contains("port_value: 9901 "), "{}: admin port not substituted", file.display());
        assert!(!rendered.contains(demo::PLACEHOLDER_JWKS), "{}: placeholder JWKS left", file.display());
        let path = out.join(file.file_name().unwrap());
        std::fs::write(&path, rendered).unwrap();
        if let Err(e) = testbed::validate_envoy_config(&testbed::envoy_binary(), &path) {
            failures.push(format!("{}: {e:#}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The fenced code blocks of a Markdown text that follow a `<!-- from envoy/bench/FILE -->` line: (file, block).
fn quoted_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut source: Option<String> = None;
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("<!-- from ") {
            source = rest.strip_suffix("-->").map(|s| s.trim().to_owned());
        } else if trimmed.starts_with("```") {
            let block: Vec<&str> = lines.by_ref().take_while(|l| !l.trim_start().starts_with("```")).collect();
            if let Some(file) = source.take() {
                out.push((file, block.join("\n")));
            }
        } else if !trimmed.is_empty() {
            source = None;
        }
    }
    out
}

/// Whether `block` is a run of consecutive lines of `file`, all indented the same amount more there.
fn is_excerpt(file: &str, block: &str) -> bool {
    let (file, block): (Vec<&str>, Vec<&str>) = (file.lines().collect(), block.lines().collect());
    let Some(first) = block.first() else { return false };
    (0..file.len()).any(|start| {
        let Some(indent) = file[start].strip_suffix(first).filter(|i| i.trim().is_empty()) else { return false };
        block.len() <= file.len() - start
            && block.iter().zip(&file[start..]).all(|(b, f)| {
                (b.is_empty() && f.trim().is_empty()) || f.strip_prefix(indent).is_some_and(|rest| rest == *b)
            })
    })
}

#[test]
fn migration_guide_quotes_the_bench_configs_verbatim() {
    let root = agent_iam_host::workspace_root();
    let guide = std::fs::read_to_string(root.join("docs/migration.md")).unwrap();
    let blocks = quoted_blocks(&guide);
    assert!(blocks.len() >= 2, "docs/migration.md should quote envoy/bench/ in `<!-- from ... -->` blocks");
    for (file, block) in blocks {
        assert!(file.starts_with("envoy/bench/"), "docs/migration.md quotes {file}, not a file of envoy/bench/");
        let text = std::fs::read_to_string(root.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(is_excerpt(&text, &block), "docs/migration.md: this block is not verbatim in {file}:\n{block}");
    }
}

#[test]
fn excerpts_may_be_dedented_but_not_changed() {
    let file = "a:\n  b:\n    c: 1\n\n    d: 2\n  e: 3\n";
    assert!(is_excerpt(file, "b:\n  c: 1\n\n  d: 2"));
    assert!(is_excerpt(file, "c: 1\n\nd: 2"));
    assert!(!is_excerpt(file, "c: 1\nd: 2"));
    assert!(!is_excerpt(file, "b:\n  c: 2"));
    assert!(!is_excerpt(file, "b:\n c: 1"));
}

/// B' (`jwt_authn` cached + `rbac`) and C (agent-iam) must do the same work for the comparison to be fair:
/// both forward the trading agent's request with the same identity headers. The benchmark answers from a
/// `direct_response` route; here the route goes to an echo upstream instead, to see what each forwards.
#[test]
#[ignore = "needs Envoy and the release .wasm (make e2e)"]
fn b_prime_and_c_forward_the_same_identity_headers() {
    let wasm = agent_iam_host::plugin_wasm_path();
    assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
    let keys = DemoKeys::generate().unwrap();
    let tokens = demo::DemoTokens::mint(&keys, demo::now(), 600);
    let echo = testbed::EchoUpstream::start(0).unwrap();
    let work = agent_iam_host::workspace_root().join("target/e2e/bench-identity");
    let mut forwarded = Vec::new();
    for file in ["b1-jwt-authn-cached-rbac.yaml", "c-agent-iam.yaml"] {
        let template = std::fs::read_to_string(bench_dir().join(file)).unwrap();
        let ports =
            Ports { listener: testbed::free_port().unwrap(), admin: testbed::free_port().unwrap(), ..Ports::DEFAULT };
        let rendered = demo::render_bench_config(&template, &keys.jwks(), ports, &wasm).unwrap();
        let to_echo = demo::replace_once(
            &rendered,
            r#"direct_response: { status: 200, body: { inline_string: "ok\n" } }"#,
            "route: { cluster: echo }",
        )
        .unwrap();
        let yaml = format!(
            "{to_echo}  clusters:\n  - name: echo\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: echo\n      \
             endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }} }}] }}]\n",
            echo.port()
        );
        let envoy = testbed::Envoy::start(&testbed::envoy_binary(), &yaml, ports.admin, &work.join(file)).unwrap();
        let bearer = format!("Bearer {}", tokens.trader);
        let r =
            testbed::http_request(ports.listener, "GET", "/quotes/ACME", &[("authorization", &bearer)], b"").unwrap();
        assert_eq!(r.status, 200, "{file}: {}", String::from_utf8_lossy(&r.body));
        let echoed = r.json();
        let identity: Vec<(String, String)> = echoed["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| Some((h[0].as_str()?.to_owned(), h[1].as_str()?.to_owned())))
            .filter(|(n, _)| n.starts_with("x-agent-iam-"))
            .collect();
        drop(envoy);
        forwarded.push((file, identity));
    }
    let sorted = |headers: &[(String, String)]| {
        let mut h = headers.to_vec();
        h.sort();
        h
    };
    let (b1, c) = (sorted(&forwarded[0].1), sorted(&forwarded[1].1));
    let names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-agent-iam-agent", "x-agent-iam-issuer", "x-agent-iam-rule", "x-agent-iam-subject"]);
    assert_eq!(b1, c, "B' forwards other identity headers than C");
}
