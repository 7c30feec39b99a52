//! The Envoy host crypto backend through the real `.wasm`: chosen by the start-up self-test, never trusted
//! blindly, and deciding exactly as the pure-Rust backend does.

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Host, Vm};
use agent_iam_tests::vectors::es256_vectors;
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://issuer.example";

fn host() -> Host {
    Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_seed(Algorithm::ES256, [7; 32]).unwrap()
}

fn config(backend: &str) -> Value {
    json!({
        "crypto_backend": backend,
        "issuers": [{"issuer": ISSUER, "audiences": ["api"], "algorithms": ["ES256", "EdDSA"],
                     "jwks": {"keys": [key().public_jwk(Some("k"))]}}],
        "policy": {"rules": [{"id": "any", "effect": "allow", "agents": ["*"]}]}
    })
}

fn start(host: &Host, backend: &str) -> Vm {
    host.vm().plugin_config(config(backend).to_string()).time(UNIX_EPOCH + Duration::from_secs(NOW)).start().unwrap()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": "spiffe://a.example/agent", "exp": NOW + 600})
}

/// 200 for a forwarded request, else the local reply's status.
fn decision(o: agent_iam_host::Outcome) -> u16 {
    if o.is_allowed() { 200 } else { o.status().unwrap_or(0) }
}

fn backend_line(vm: &Vm) -> String {
    vm.logs().iter().map(|l| l.message.clone()).find(|m| m.contains("signatures verified")).unwrap_or_default()
}

#[test]
fn es256_goes_to_the_host_when_its_self_test_passes() {
    let host = host();
    let vm = start(&host, "auto");
    assert!(
        backend_line(&vm).contains("Envoy host crypto for [ES256, ES384, RS256, RS384, RS512]"),
        "{}",
        vm.logs_text()
    );
    vm.assert_healthy();
}

#[test]
fn a_host_without_verify_signature_keeps_everything_in_the_vm() {
    let host = host();
    host.unregister_foreign_function("verify_signature");
    let mut vm = start(&host, "auto");
    assert!(backend_line(&vm).contains("host crypto for []"), "{}", vm.logs_text());
    let ok = vm.request().header("authorization", &format!("Bearer {}", key().sign_jwt(Some("k"), &claims()))).send();
    assert!(ok.is_allowed());
    vm.assert_healthy();
}

#[test]
fn a_host_that_accepts_everything_is_not_trusted() {
    let host = host();
    host.register_foreign_function("verify_signature", |_| Ok(vec![0x08, 0x01]));
    let mut vm = start(&host, "auto");
    assert!(backend_line(&vm).contains("host crypto for []"), "{}", vm.logs_text());
    let forged = SigningKey::from_seed(Algorithm::ES256, [8; 32]).unwrap().sign_jwt(Some("k"), &claims());
    let o = vm.request().header("authorization", &format!("Bearer {forged}")).send();
    assert_eq!(o.status(), Some(401));
    vm.assert_healthy();
}

#[test]
fn host_and_pure_backends_decide_alike_on_every_edge_case() {
    let host = host();
    let mut on_host = start(&host, "auto");
    let mut pure = start(&host, "pure-rust");
    assert!(backend_line(&pure).contains("pure-rust) for every algorithm"), "{}", pure.logs_text());
    for v in es256_vectors(&key(), "k", &claims()) {
        let auth = format!("Bearer {}", v.token);
        let a = decision(on_host.request().header("authorization", &auth).send());
        let b = decision(pure.request().header("authorization", &auth).send());
        assert_eq!(a, b, "{}: host {a}, pure {b}", v.name);
        assert_eq!(a, if v.valid { 200 } else { 401 }, "{}", v.name);
    }
    on_host.assert_healthy();
    pure.assert_healthy();
}
