//! Anomaly detection through the real `.wasm` in the wasmtime host, in virtual time (the host's clock): the
//! seed's agent that reads 100 records an hour and suddenly 10,000 is flagged within minutes; `deny` holds
//! it on the worker that saw it (429), `quarantine` revokes it on every worker until the quarantine ends;
//! probing; learning mode records only.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Outcome, Vm};
use agent_iam_tests::HOST;
use serde_json::{Value, json};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://idp.example";
const READER: &str = "spiffe://hospital.example/agent/reader";
const OTHER: &str = "spiffe://hospital.example/agent/billing";

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [9; 32]).unwrap());

fn config(anomaly: Value, key: &str) -> Value {
    json!({
        "audit": {},
        "issuers": [{"issuer": ISSUER, "audiences": ["records"], "algorithms": ["ES256"],
                     "jwks": {"keys": [KEY.public_jwk(Some("k"))]}}],
        "policy": {"rules": [
            {"id": "read-records", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/patients/**"]}
        ]},
        "revocation": {"state_key": format!("agent_iam.revocation.anomaly-{key}")},
        "anomaly": anomaly
    })
}

fn start(anomaly: Value, key: &str) -> Vm {
    HOST.vm()
        .plugin_config(config(anomaly, key).to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn token(agent: &str) -> String {
    KEY.sign_jwt(
        Some("k"),
        &json!({"iss": ISSUER, "aud": "records", "sub": agent, "iat": NOW, "exp": NOW + 30 * 86_400}),
    )
}

fn get(vm: &mut Vm, token: &str, path: &str) -> Outcome {
    vm.request()
        .method("GET")
        .path(path)
        .authority("records.example")
        .header("authorization", &format!("Bearer {token}"))
        .send()
}

/// `per_hour` evenly spaced reads for `hours`, moving every VM's clock together; returns whether each was
/// allowed, and stops at the first refusal when `stop` is set.
fn traffic(vms: &mut [&mut Vm], token: &str, per_hour: u64, seconds: u64, stop: bool) -> (u64, u64) {
    let step_ms = 3_600_000 / per_hour;
    let (mut allowed, mut sent) = (0, 0);
    let mut elapsed = 0;
    let mut i = 0usize;
    while elapsed < seconds * 1000 {
        let vm = &mut vms[i % vms.len()];
        let outcome = get(vm, token, &format!("/patients/{}", i % 97));
        sent += 1;
        match outcome.status() {
            None => allowed += 1,
            Some(_) if stop => return (allowed, sent),
            Some(_) => {}
        }
        for vm in vms.iter_mut() {
            vm.advance_clock(Duration::from_millis(step_ms));
        }
        elapsed += step_ms;
        i += 1;
    }
    (allowed, sent)
}

fn anomaly(action: &str) -> Value {
    json!({"learning_seconds": 3600,
           "rate": {"action": action, "seconds": 900},
           "first_use": {"enabled": false}, "delegation": {"enabled": false}})
}

#[test]
fn the_seeds_spike_is_flagged_within_minutes_and_held_on_the_worker_that_saw_it() {
    let mut vm = start(anomaly("deny"), "deny");
    let reader = token(READER);
    // Six hours at 100 reads an hour: learning, then normal.
    let (allowed, sent) = traffic(&mut [&mut vm], &reader, 100, 6 * 3600, false);
    assert_eq!(allowed, sent, "{}", vm.logs_text());
    assert!(!vm.logs_text().contains("anomaly rate"), "no alarm at the agent's own rate:\n{}", vm.logs_text());
    // 10,000 an hour: refused within a few minutes.
    let (allowed, sent) = traffic(&mut [&mut vm], &reader, 10_000, 600, true);
    assert!(sent < 10_000 * 3 / 60, "flagged after {sent} requests ({allowed} allowed): more than 3 minutes");
    let held = get(&mut vm, &reader, "/patients/1");
    assert_eq!(held.status(), Some(429), "{:?}", held.body_json());
    assert_eq!(held.body_json()["error"], "rate_limited");
    assert!(held.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() <= 900));
    assert!(vm.logs_text().contains("anomaly rate of agent"), "{}", vm.logs_text());
    // The refused request's audit event names the hold; the request that set the signal off named it.
    let line = String::from_utf8(vm.last_filter_state().get("agent_iam.audit").unwrap().clone()).unwrap();
    assert!(line.contains("\"reason\":\"anomaly_hold\""), "{line}");
    assert!(vm.metric("agent_iam.anomaly.rate").is_some_and(|n| n >= 1));
    // Another agent is not held.
    assert_eq!(get(&mut vm, &token(OTHER), "/patients/1").status(), None);
    // The hold ends.
    vm.advance_clock(Duration::from_secs(901));
    assert_eq!(get(&mut vm, &reader, "/patients/1").status(), None);
}

#[test]
fn a_quarantine_revokes_the_agent_on_every_worker_until_it_ends() {
    let mut first = start(anomaly("quarantine"), "quarantine");
    let mut second = start(anomaly("quarantine"), "quarantine");
    let reader = token(READER);
    let (allowed, sent) = traffic(&mut [&mut first, &mut second], &reader, 100, 4 * 3600, false);
    assert_eq!(allowed, sent);
    let (_, sent) = traffic(&mut [&mut first, &mut second], &reader, 10_000, 600, true);
    assert!(sent < 500, "quarantined after {sent} requests");
    // Both workers refuse it once the other has read the shared state (one tick).
    for vm in [&mut first, &mut second] {
        vm.advance_clock(Duration::from_millis(300));
        vm.tick();
    }
    for vm in [&mut first, &mut second] {
        let o = get(vm, &reader, "/patients/1");
        assert_eq!(o.status(), Some(401), "{}", vm.logs_text());
        assert_eq!(o.body_json()["error_description"], "token has been revoked");
        assert_eq!(get(vm, &token(OTHER), "/patients/1").status(), None);
    }
    // Its refusals while quarantined are the gateway's own doing: they set off nothing (no new quarantine).
    for _ in 0..30 {
        assert_eq!(get(&mut first, &reader, "/patients/1").status(), Some(401));
    }
    let quarantines = first.logs_text().matches("quarantined on every worker").count();
    assert_eq!(quarantines, 1, "{}", first.logs_text());
    assert!(!first.logs_text().contains("anomaly probing"), "refusals by the quarantine are no probing");
    // After the quarantine, the agent is served again (the revocation has no cut-off: its end is all).
    for vm in [&mut first, &mut second] {
        vm.advance_clock(Duration::from_secs(901));
        vm.tick();
    }
    assert_eq!(get(&mut first, &reader, "/patients/1").status(), None, "{}", first.logs_text());
    assert_eq!(get(&mut second, &reader, "/patients/1").status(), None);
}

#[test]
fn probing_is_flagged_during_learning_and_learning_mode_only_records() {
    let mut vm =
        start(json!({"learning_mode": true, "probing": {"denials_per_minute": 5, "action": "quarantine"}}), "probing");
    let reader = token(READER);
    for i in 0..6 {
        // Not allowed by any rule: a denial each.
        let o = vm
            .request()
            .method("DELETE")
            .path(&format!("/patients/{i}"))
            .authority("r")
            .header("authorization", &format!("Bearer {reader}"))
            .send();
        assert_eq!(o.status(), Some(403));
    }
    assert!(vm.logs_text().contains("anomaly probing of agent"), "{}", vm.logs_text());
    assert!(vm.logs_text().contains("(recorded)"), "learning mode only records: {}", vm.logs_text());
    vm.advance_clock(Duration::from_millis(300));
    vm.tick();
    assert_eq!(get(&mut vm, &reader, "/patients/1").status(), None, "not quarantined in learning mode");
}

#[test]
fn a_bad_anomaly_configuration_is_refused_with_its_path() {
    let mut vm = start(json!({}), "config");
    for (anomaly, path) in [
        (json!({"rate": {"factor": 0.5}}), "anomaly.rate.factor"),
        (json!({"rate": {"action": "block"}}), "anomaly.rate.action"),
        (json!({"probing": {"factor": 3}}), "anomaly.probing.factor"),
        (json!({"max_agents": 0}), "anomaly.max_agents"),
        (json!({"delegation": {"action": "deny", "seconds": 0}}), "anomaly.delegation.seconds"),
    ] {
        assert!(!vm.configure(config(anomaly.clone(), "config").to_string().as_bytes()), "{anomaly}");
        assert!(vm.logs_text().contains(path), "{path}: {}", vm.logs_text());
    }
}

#[test]
fn a_daily_rhythm_of_fifty_percent_over_three_simulated_days_never_alarms() {
    let mut vm = start(anomaly("deny"), "rhythm");
    let reader = token(READER);
    // 100 an hour on average, 150 at midday and 50 at midnight, for three days: an hour at a time.
    for hour in 0..72u64 {
        let phase = (hour % 24) as f64 / 24.0 * std::f64::consts::TAU;
        let per_hour = (100.0 - 50.0 * phase.cos()).round() as u64;
        let (allowed, sent) = traffic(&mut [&mut vm], &reader, per_hour, 3600, false);
        assert_eq!(allowed, sent, "hour {hour}");
    }
    assert!(!vm.logs_text().contains("anomaly rate"), "{}", vm.logs_text());
}

#[test]
fn a_rule_first_used_after_learning_is_signalled_once() {
    let doc = json!({"learning_seconds": 600, "rate": {"enabled": false}, "probing": {"enabled": false},
                     "delegation": {"enabled": false}, "first_use": {}});
    let mut cfg = config(doc, "first-use");
    cfg["policy"]["rules"].as_array_mut().unwrap().push(json!(
        {"id": "read-billing", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/billing/**"]}
    ));
    let mut vm = HOST.vm().plugin_config(cfg.to_string()).time(UNIX_EPOCH + Duration::from_secs(NOW)).start().unwrap();
    let reader = token(READER);
    assert_eq!(get(&mut vm, &reader, "/patients/1").status(), None);
    vm.advance_clock(Duration::from_secs(700));
    assert_eq!(get(&mut vm, &reader, "/patients/2").status(), None);
    assert!(!vm.logs_text().contains("anomaly first_use"), "{}", vm.logs_text());
    for _ in 0..3 {
        assert_eq!(get(&mut vm, &reader, "/billing/7").status(), None);
    }
    assert_eq!(vm.logs_text().matches("anomaly first_use").count(), 1, "{}", vm.logs_text());
}
