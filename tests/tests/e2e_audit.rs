//! The audit trail end to end with real components: the release `.wasm` in real Envoy on `envoy/audit.yaml`
//! (the demo gateway with `"audit": {"events": "all"}`), whose own access loggers ship the plugin's OCSF event
//! of every decision, the filter state object `wasm.agent_iam.audit`, verbatim: as NDJSON to a file
//! (`envoy.access_loggers.file`) and as the body of an OTLP log record over gRPC
//! (`envoy.access_loggers.open_telemetry`) to `tests/otlp/receiver.py`. Requests the plugin answers itself
//! (401, 403) are logged like the ones it lets through; a request Envoy refuses before the plugin sees it
//! leaves no line.
//!
//! The end-to-end tests need Envoy, the `.wasm` and the receiver's packages (`make envoy wasm otlp-tools`), so
//! they are `#[ignore]`d for a plain `cargo test` and run with `-- --ignored`. The check of the configuration
//! itself needs none of them and always runs.

use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, Ports};
use agent_iam_tests::otlp::{self, AUDIT_FORMAT, LOG_NAME, OtlpReceiver};
use agent_iam_tests::testbed::{self, EchoUpstream, Envoy};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn work_dir(test: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("target/e2e").join(test)
}

fn template() -> String {
    std::fs::read_to_string(otlp::template_path()).unwrap()
}

/// The access loggers of the HTTP connection manager in an Envoy config (`access_log`), by name.
fn access_loggers(yaml: &str) -> Vec<(String, Value)> {
    let config: Value = serde_norway::from_str(yaml).unwrap();
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["access_log"]
        .as_array()
        .expect("envoy/audit.yaml: access_log on the HTTP connection manager")
        .iter()
        .map(|l| (l["name"].as_str().unwrap_or_default().to_owned(), l.clone()))
        .collect()
}

/// envoy/audit.yaml is envoy/demo.yaml with the plugin's audit events on, and its two access loggers print the
/// event verbatim (PLAIN), only for requests that have one.
#[test]
fn audit_config_is_the_demo_gateway_with_its_events_shipped_verbatim() {
    let audit = template();
    let demo_template = std::fs::read_to_string(demo::template_path()).unwrap();
    let mut config = demo::plugin_config_in(&audit).unwrap();
    assert_eq!(config["audit"], json!({"events": "all"}), "envoy/audit.yaml: the plugin's audit setting");
    config.as_object_mut().unwrap().remove("audit");
    assert_eq!(config, demo::plugin_config_in(&demo_template).unwrap(), "envoy/audit.yaml: the demo's configuration");

    let loggers = access_loggers(&audit);
    let names: Vec<&str> = loggers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["envoy.access_loggers.file", "envoy.access_loggers.open_telemetry"]);
    let has_event = json!({
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "'wasm.agent_iam.audit' in filter_state"
            }
        }
    });
    let (_, file) = &loggers[0];
    assert_eq!(file["filter"], has_event);
    assert_eq!(
        file["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
    );
    assert_eq!(file["typed_config"]["path"], otlp::TEMPLATE_AUDIT_PATH);
    assert_eq!(
        file["typed_config"]["log_format"],
        json!({"text_format_source": {"inline_string": format!("{AUDIT_FORMAT}\n")}}),
        "one event per line, verbatim"
    );
    let (_, otel) = &loggers[1];
    assert_eq!(otel["filter"], has_event);
    let otel = &otel["typed_config"];
    assert_eq!(
        otel["@type"],
        "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig"
    );
    assert_eq!(otel["log_name"], LOG_NAME);
    assert_eq!(otel["grpc_service"]["envoy_grpc"]["cluster_name"], "otlp_collector");
    assert_eq!(otel["body"], json!({"string_value": AUDIT_FORMAT}));
    let attributes = otel["attributes"]["values"].as_array().unwrap();
    assert!(
        attributes.contains(&json!({"key": "ocsf.class_uid", "value": {"string_value": "6003"}})),
        "{attributes:?}"
    );

    // Every placeholder is there exactly once (rendering checks), and none is left after rendering.
    let keys = DemoKeys::generate().unwrap();
    let wasm = agent_iam_host::plugin_wasm_path();
    let file = work_dir("audit-render").join("audit.ndjson");
    let rendered = otlp::render_audit_config(&audit, &keys.jwks(), Ports::free().unwrap(), &wasm, &file, 4999).unwrap();
    assert!(!rendered.contains(demo::PLACEHOLDER_JWKS));
    for port in [Ports::DEFAULT.listener, Ports::DEFAULT.upstream, Ports::DEFAULT.admin, otlp::TEMPLATE_OTLP_PORT] {
        assert!(!rendered.contains(&format!("port_value: {port} ")), "port {port} not substituted");
    }
    assert!(!rendered.contains(&format!("path: {}", otlp::TEMPLATE_AUDIT_PATH)));
    assert_eq!(access_loggers(&rendered)[0].1["typed_config"]["path"], file.display().to_string());
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run with -- --ignored (make e2e)"]
fn audit_config_as_rendered_validates() {
    let wasm = agent_iam_host::plugin_wasm_path();
    assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
    let dir = work_dir("audit-validate");
    std::fs::create_dir_all(&dir).unwrap();
    let keys = DemoKeys::generate().unwrap();
    let rendered = otlp::render_audit_config(
        &template(),
        &keys.jwks(),
        Ports::free().unwrap(),
        &wasm,
        &dir.join("audit.ndjson"),
        testbed::free_port().unwrap(),
    )
    .unwrap();
    let path = dir.join("audit.yaml");
    std::fs::write(&path, rendered).unwrap();
    // Also runs the plugin's on_configure, which must accept the audit setting.
    testbed::validate_envoy_config(&testbed::envoy_binary(), &path).unwrap();
}

/// Waits until Envoy has written at least `n` complete lines to `file` (asking it to write its buffer out every
/// 200 ms), and returns them; fails after `timeout`.
fn wait_for_lines(envoy: &Envoy, file: &std::path::Path, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        otlp::flush_access_logs(envoy.admin_port()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let lines = otlp::complete_lines(file);
        if lines.len() >= n || Instant::now() >= deadline {
            assert!(
                lines.len() >= n,
                "{} line(s) in {} within {timeout:?}, expected {n}:\n{}\n{}",
                lines.len(),
                file.display(),
                lines.join("\n"),
                envoy.log_tail(30)
            );
            return lines;
        }
    }
}

#[test]
#[ignore = "needs Envoy, the release .wasm and the OTLP receiver (make envoy wasm otlp-tools): run with -- --ignored"]
fn every_decision_is_one_ocsf_event_in_the_file_and_over_otlp() {
    let wasm = agent_iam_host::plugin_wasm_path();
    assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
    let dir = work_dir("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let audit_file = dir.join("audit.ndjson");
    let _ = std::fs::remove_file(&audit_file);
    let keys = DemoKeys::generate().unwrap();
    let tokens = DemoTokens::mint(&keys, demo::now(), 600);
    let receiver = OtlpReceiver::start_in(&dir).unwrap();
    let upstream = EchoUpstream::start(0).unwrap();
    let ports = Ports { upstream: upstream.port(), ..Ports::free().unwrap() };
    let config =
        otlp::render_audit_config(&template(), &keys.jwks(), ports, &wasm, &audit_file, receiver.port()).unwrap();
    let envoy = Envoy::start(&testbed::envoy_binary(), &config, ports.admin, &dir).unwrap();

    // (method, path, token, the status the policy of envoy/demo.yaml gives it)
    let requests: [(&str, &str, Option<&String>, u16); 4] = [
        ("POST", "/orders", Some(&tokens.trader), 200),     // trader-places-orders
        ("POST", "/orders", None, 401),                     // no token: the plugin answers
        ("GET", "/admin/users", Some(&tokens.trader), 403), // the deny rule no-admin
        ("POST", "/orders", Some(&tokens.research), 403),   // no rule allows
    ];
    let mut seen = Vec::new();
    for (method, path, token, expected) in requests {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = testbed::http_request(ports.listener, method, path, &headers, b"{}").unwrap();
        assert_eq!(r.status, expected, "{method} {path}: {}\n{}", String::from_utf8_lossy(&r.body), envoy.log_tail(30));
        seen.push(u64::from(r.status));
    }
    // Refused by Envoy's own path normalisation before any HTTP filter runs: no decision, so no event and no line.
    let r = testbed::http_request(ports.listener, "GET", "/quotes%2F..%2Fadmin", &[], b"").unwrap();
    assert_eq!(r.status, 400, "{}", envoy.log_tail(30));

    let n = requests.len();
    wait_for_lines(&envoy, &audit_file, n, Duration::from_secs(15));
    receiver.wait_for(n, Duration::from_secs(15)).unwrap();
    // Anything more (the 400, a second event for one request) would have been written by now.
    std::thread::sleep(Duration::from_millis(1500));
    otlp::flush_access_logs(envoy.admin_port()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let lines = otlp::complete_lines(&audit_file);
    let records = receiver.records();
    assert_eq!(lines.len(), n, "one line per decided request in {}:\n{}", audit_file.display(), lines.join("\n"));
    assert_eq!(records.len(), n, "one OTLP record per decided request:\n{records:#?}");

    // Each line one OCSF API Activity event for the status the client saw: the status the plugin answered, or,
    // for a forwarded request (the event is written at the decision, before the upstream answers), an allow.
    let mut codes = Vec::new();
    for line in &lines {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event.is_object(), "not a JSON object: {line}");
        assert_eq!(event["class_uid"], 6003, "{line}");
        let code = match event["unmapped"]["decision"].as_str() {
            Some("allow") => {
                assert!(event.get("http_response").is_none(), "{line}");
                assert_eq!((event["status_id"].as_u64(), event["action_id"].as_u64()), (Some(1), Some(1)), "{line}");
                200
            }
            _ => event["http_response"]["code"].as_u64().unwrap_or_else(|| panic!("no http_response.code: {line}")),
        };
        codes.push(code);
        let problems = agent_iam_tests::ocsf::validate(&event);
        assert!(problems.is_empty(), "not a valid OCSF 1.8.0 event: {problems:#?}\n{line}");
    }
    codes.sort_unstable();
    seen.sort_unstable();
    assert_eq!(codes, seen, "the events' http_response.code against the statuses the client saw");

    // Each OTLP record's body is one of the file's lines, byte for byte, each line sent once.
    let mut bodies: Vec<String> = records
        .iter()
        .map(|r| r["body"].as_str().unwrap_or_else(|| panic!("the body is not a string: {r}")).to_owned())
        .collect();
    for record in &records {
        assert_eq!(record["attributes"]["ocsf.class_uid"], "6003", "{record}");
        assert_eq!(record["log_name"], LOG_NAME, "{record}");
        // The final status travels beside the event (the access log knows it; the decision did not).
        let event: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        let status = record["attributes"]["http.response.status_code"].as_str().unwrap_or_default().to_owned();
        match event["http_response"]["code"].as_u64() {
            Some(code) => assert_eq!(status, code.to_string(), "{record}"),
            None => assert_eq!(status, "200", "{record}"),
        }
    }
    let mut file_lines = lines.clone();
    bodies.sort();
    file_lines.sort();
    assert_eq!(bodies, file_lines, "the OTLP bodies against the file's lines");
}
