//! The audit trail through the real `.wasm` in the wasmtime host (issue 19): one OCSF event per decision in
//! the filter-state key Envoy's access loggers read, chained per VM, sealed by checkpoints, a new chain per
//! configuration naming the one before; rules with `audit: false` and `events: denials` leave nothing.

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::Vm;
use agent_iam_tests::HOST;
use serde_json::{Value, json};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [3; 32]).unwrap());

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://idp.hospital.example";
const RADIOLOGY: &str = "spiffe://hospital.example/agent/radiology";
const CHECKPOINT_KEY: [u8; 32] = [9; 32];

fn config(audit: Value) -> Value {
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["records"], "algorithms": ["ES256"],
                     "jwks": {"keys": [KEY.public_jwk(Some("k"))]}}],
        "policy": {"version": "12", "routes": [{"path": "/patients/**", "labels": ["PHI"]}], "rules": [
            {"id": "radiology-reads-records", "effect": "allow", "agents": [RADIOLOGY], "methods": ["GET"],
             "paths": ["/patients/{patient_id}/records/**"]},
            {"id": "health", "effect": "allow", "agents": ["*"], "paths": ["/healthz"], "audit": false}
        ]},
        "audit": audit
    })
}

fn start(config: &Value) -> Vm {
    HOST.vm().plugin_config(config.to_string()).time(UNIX_EPOCH + Duration::from_secs(NOW)).start().unwrap()
}

fn token() -> String {
    KEY.sign_jwt(
        Some("k"),
        &json!({"iss": ISSUER, "aud": "records", "sub": "dr-grey", "jti": "tok-1", "iat": NOW - 10, "exp": NOW + 600,
                "act": {"sub": RADIOLOGY}}),
    )
}

/// Sends a request and returns the audit event line it left, if any.
fn send(vm: &mut Vm, path: &str, bearer: Option<&str>) -> (u16, Option<String>) {
    let mut r =
        vm.request().method("GET").path(path).authority("Records.Hospital.Example.:8443").header("x-request-id", "r-1");
    if let Some(t) = bearer {
        r = r.header("authorization", &format!("Bearer {t}"));
    }
    let outcome = r.send();
    let status = outcome.status().unwrap_or(200);
    let line = vm.last_filter_state().get("agent_iam.audit").map(|v| String::from_utf8(v.clone()).unwrap());
    if let Some(line) = &line {
        // Every event the plugin writes is a valid OCSF 1.8.0 event.
        let problems = agent_iam_tests::ocsf::validate(&serde_json::from_str(line).unwrap());
        assert!(problems.is_empty(), "{line}\n{problems:#?}");
    }
    (status, line)
}

fn chain(line: &str) -> Value {
    serde_json::from_str::<Value>(line).unwrap()["unmapped"]["chain"].clone()
}

#[test]
fn every_decision_leaves_one_chained_event_naming_agent_subject_and_patient() {
    let mut vm = start(&config(json!({"events": "all"})));
    let (status, allowed) = send(&mut vm, "/patients/42/records/xray?access_token=secret", Some(&token()));
    assert_eq!(status, 200);
    let allowed = allowed.expect("an event for the allowed request");
    assert!(!allowed.contains("secret"), "the query is never recorded: {allowed}");
    let e: Value = serde_json::from_str(&allowed).unwrap();
    assert_eq!(e["class_uid"], 6003);
    assert_eq!(e["actor"]["app_uid"], RADIOLOGY);
    assert_eq!(e["actor"]["user"]["uid"], "dr-grey");
    assert_eq!(e["actor"]["session"]["uid"], "tok-1");
    assert_eq!(e["policy"]["uid"], "radiology-reads-records");
    assert_eq!(e["policy"]["version"], "12");
    assert_eq!(
        e["http_request"]["url"],
        json!({"path": "/patients/42/records/xray", "hostname": "records.hospital.example"})
    );
    let resources = e["resources"].as_array().unwrap();
    assert!(resources.contains(&json!({"uid": "42", "name": "patient_id", "type": "path_parameter", "role_id": 1})));
    assert!(resources.iter().any(|r| r["type"] == "route_label" && r["uid"] == "PHI"));
    assert_eq!(e["unmapped"]["act_chain"], json!([RADIOLOGY]));

    let (status, denied) = send(&mut vm, "/patients/42/records/xray", None);
    assert_eq!(status, 401);
    let denied = denied.expect("an event for the refusal");
    let d: Value = serde_json::from_str(&denied).unwrap();
    assert_eq!((d["action_id"].clone(), d["http_response"]["code"].clone()), (json!(2), json!(401)));
    let (first, second) = (chain(&allowed), chain(&denied));
    assert_eq!(first["id"], second["id"]);
    assert_eq!((first["seq"].clone(), second["seq"].clone()), (json!(0), json!(1)));
    assert_eq!(second["prev"], agent_iam::b64::encode(blake3::hash(allowed.as_bytes()).as_bytes()));
}

#[test]
fn checkpoints_are_signed_and_a_new_configuration_starts_a_chain_naming_the_last() {
    let key = agent_iam::b64::encode(&CHECKPOINT_KEY);
    let audit = json!({"checkpoint": {"key": key, "key_id": "k1", "every_events": 2}});
    let mut vm = start(&config(audit.clone()));
    let lines: Vec<String> =
        (0..4).map(|_| send(&mut vm, "/patients/7/records/a", Some(&token())).1.unwrap()).collect();
    let macs: Vec<bool> = lines.iter().map(|l| chain(l).get("mac").is_some()).collect();
    assert_eq!(macs, [true, false, true, false], "seq 0, then every second event");
    for l in lines.iter().filter(|l| chain(l).get("mac").is_some()) {
        let mac = chain(l)["mac"].as_str().unwrap().to_owned();
        let sealed = l.replace(&format!(",\"mac\":\"{mac}\""), "");
        assert_eq!(
            mac,
            agent_iam::b64::encode(&agent_iam::audit::chain::checkpoint_mac(&CHECKPOINT_KEY, sealed.as_bytes()))
        );
    }
    let mut next = config(audit);
    next["policy"]["version"] = json!("13");
    assert!(vm.configure(next.to_string().as_bytes()));
    let first = send(&mut vm, "/patients/7/records/a", Some(&token())).1.unwrap();
    let c = chain(&first);
    assert_eq!(c["seq"], 0);
    assert_ne!(c["id"], chain(&lines[0])["id"]);
    assert_eq!(c["previous_chain"]["id"], chain(&lines[0])["id"]);
    assert_eq!(c["previous_chain"]["seq"], 3);
    assert_eq!(c["previous_chain"]["hash"], agent_iam::b64::encode(blake3::hash(lines[3].as_bytes()).as_bytes()));
}

#[test]
fn client_chosen_text_is_escaped_and_bounded() {
    let mut vm = start(&config(json!({})));
    let agent = format!("{}\u{e9}\"}}{{", "a".repeat(255));
    let o = vm.request().method("GET").path("/patients/42/records/a").header("user-agent", &agent).send();
    assert_eq!(o.status(), Some(401));
    let line = String::from_utf8(vm.last_filter_state().get("agent_iam.audit").unwrap().clone()).unwrap();
    let e: Value = serde_json::from_str(&line).unwrap();
    // Cut at 256 bytes, on a character boundary (the two-byte é does not fit whole).
    assert_eq!(e["http_request"]["user_agent"], "a".repeat(255));
    assert!(agent_iam_tests::ocsf::validate(&e).is_empty());
}

#[test]
fn unaudited_rules_and_denials_only_leave_no_event() {
    let mut vm = start(&config(json!({"events": "all"})));
    assert_eq!(send(&mut vm, "/healthz", Some(&token())), (200, None));
    let mut vm = start(&config(json!({"events": "denials"})));
    assert_eq!(send(&mut vm, "/patients/1/records/a", Some(&token())), (200, None));
    assert!(send(&mut vm, "/patients/1/records/a", None).1.is_some());
}

#[test]
fn a_bad_audit_configuration_is_refused_with_its_path() {
    for (audit, path) in [
        (json!({"events": "some"}), "audit.events"),
        (json!({"checkpoint": {"key": "c2hvcnQ"}}), "audit.checkpoint.key"),
        (json!({"claims": ["a b"]}), "audit.claims[0]"),
        (json!({"unknown": 1}), "audit"),
    ] {
        let err = agent_iam::config::parse(config(audit.clone()).to_string().as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{audit} accepted"));
        assert!(err.to_string().contains(path), "{audit}: {err}");
    }
}
