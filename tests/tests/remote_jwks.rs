//! Remote key sets through the real `.wasm`: fetched through an Envoy cluster at start and on refresh,
//! requests held until the first set arrives (or answered 503), key rotation by unknown `kid`, outages that
//! keep the last good set, stale sets withdrawn, bad and oversized bodies, reloads that keep keys, and a
//! callout answered after the waiting stream ended.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Callout, Outcome, Vm};
use agent_iam_tests::HOST;
use serde_json::{Value, json};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://idp.example";
const AGENT: &str = "spiffe://example.org/agent/a";

static OLD: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [1; 32]).unwrap());
static NEW: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [2; 32]).unwrap());

fn config() -> Value {
    json!({
        "issuers": [{
            "issuer": ISSUER, "audiences": ["api"], "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "idp", "path": "/.well-known/jwks.json", "authority": "idp.example",
                            "min_refresh_seconds": 30, "refresh_seconds": 300, "max_refresh_seconds": 600,
                            "max_stale_seconds": 900, "unknown_kid_refetch_seconds": 60, "wait_timeout_ms": 2000,
                            "max_bytes": 4096}
        }],
        "policy": {"rules": [{"id": "any-agent", "effect": "allow", "agents": ["*"]}]}
    })
}

fn jwks(keys: &[(&SigningKey, &str)]) -> Vec<u8> {
    json!({"keys": keys.iter().map(|(k, kid)| k.public_jwk(Some(kid))).collect::<Vec<_>>()}).to_string().into_bytes()
}

fn token(key: &SigningKey, kid: &str) -> String {
    key.sign_jwt(Some(kid), &json!({"iss": ISSUER, "aud": "api", "sub": AGENT, "iat": NOW - 10, "exp": NOW + 86_400}))
}

fn start() -> Vm {
    HOST.vm()
        .plugin_config(config().to_string())
        .clusters(["idp"])
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn send(vm: &mut Vm, token: &str) -> Outcome {
    vm.request()
        .method("GET")
        .path("/x")
        .authority("api.example")
        .header("authorization", &format!("Bearer {token}"))
        .send()
}

fn only_callout(vm: &Vm) -> Callout {
    let callouts = vm.pending_callouts();
    assert_eq!(callouts.len(), 1, "expected one fetch in flight: {callouts:#?}\n{}", vm.logs_text());
    callouts.into_iter().next().unwrap()
}

/// Advances the clock by `ms` in ticks, as Envoy would.
fn wait(vm: &mut Vm, ms: u64) {
    let tick = vm.tick_period().as_millis() as u64;
    assert!(tick > 0, "the plugin set no tick period");
    for _ in 0..ms.div_ceil(tick) {
        vm.advance_clock(Duration::from_millis(tick));
        vm.tick();
    }
}

#[test]
fn fetched_at_start_through_the_cluster_and_held_requests_resume() {
    let mut vm = start();
    let c = only_callout(&vm);
    assert_eq!(c.cluster, "idp");
    assert_eq!(c.header(":method"), Some("GET"));
    assert_eq!(c.header(":path"), Some("/.well-known/jwks.json"));
    assert_eq!(c.header(":authority"), Some("idp.example"));
    assert_eq!(c.timeout, Duration::from_millis(2000));

    // A request before the key set: held, not failed.
    let Outcome::Paused(pending) = send(&mut vm, &token(&OLD, "old")) else { panic!("expected the request to wait") };
    vm.respond(
        c.token,
        200,
        &[("content-type", "application/json"), ("cache-control", "max-age=120")],
        &jwks(&[(&OLD, "old")]),
    );
    let o = vm.resume(pending);
    assert!(o.is_allowed(), "{o:#?}\n{}", vm.logs_text());
    assert_eq!(o.header("x-agent-iam-agent"), Some(AGENT));
    assert!(
        vm.logs_text().contains("agent-iam: key set of https://idp.example fetched: 1 key(s) [old]"),
        "{}",
        vm.logs_text()
    );
    // Shared by every VM of the host (like Envoy's workers), so other tests add to it too.
    assert!(vm.metric("agent_iam.jwks.fetch.ok").is_some_and(|n| n >= 1));
    // Later requests go straight through; no new fetch until max-age.
    assert!(send(&mut vm, &token(&OLD, "old")).is_allowed());
    wait(&mut vm, 119_000);
    assert!(vm.pending_callouts().is_empty());
    wait(&mut vm, 1_000);
    only_callout(&vm);
    vm.assert_healthy();
}

#[test]
fn jwks_down_at_start_answers_503_after_the_wait_and_retries_with_backoff() {
    let mut vm = start();
    let c = only_callout(&vm);
    let Outcome::Paused(pending) = send(&mut vm, &token(&OLD, "old")) else { panic!("expected the request to wait") };
    vm.respond(c.token, 503, &[], b"unavailable");
    assert!(
        vm.logs_text().contains("failed (bad_status): HTTP status 503; no usable key set yet"),
        "{}",
        vm.logs_text()
    );
    // Backoff: the retry comes one second later, and fails (reset) too.
    assert!(vm.pending_callouts().is_empty());
    wait(&mut vm, 1_000);
    let retry = only_callout(&vm);
    vm.fail(retry.token);
    assert!(matches!(vm.resume(pending.clone()), Outcome::Paused(_)));
    wait(&mut vm, 1_000);
    let o = vm.resume(pending);
    assert_eq!(o.status(), Some(503), "{o:#?}");
    assert_eq!(o.body_json()["error"], "temporarily_unavailable");
    let Outcome::LocalResponse { details, .. } = &o else { unreachable!() };
    assert_eq!(details, "agent_iam.keys_unavailable");
    vm.assert_healthy();
}

#[test]
fn key_rotation_refetches_once_for_an_unknown_kid() {
    let mut vm = start();
    let c = only_callout(&vm);
    vm.respond(c.token, 200, &[], &jwks(&[(&OLD, "old")]));
    assert!(send(&mut vm, &token(&OLD, "old")).is_allowed());

    // The issuer rotated: a token with the new kid is held while the set is fetched again.
    let o = send(&mut vm, &token(&NEW, "new"));
    let Outcome::Paused(pending) = o else { panic!("expected a refetch: {o:#?}") };
    // The root context fetches on its next tick.
    wait(&mut vm, 250);
    let refetch = only_callout(&vm);
    vm.respond(refetch.token, 200, &[], &jwks(&[(&OLD, "old"), (&NEW, "new")]));
    assert!(vm.resume(pending).is_allowed(), "{}", vm.logs_text());
    assert!(send(&mut vm, &token(&OLD, "old")).is_allowed());

    // A kid nobody publishes: one refetch per minute at most, then a plain 401.
    let stranger = SigningKey::from_seed(Algorithm::ES256, [9; 32]).unwrap();
    wait(&mut vm, 61_000);
    let Outcome::Paused(pending) = send(&mut vm, &token(&stranger, "nobody")) else { panic!("expected a refetch") };
    wait(&mut vm, 250);
    let refetch = only_callout(&vm);
    vm.respond(refetch.token, 200, &[], &jwks(&[(&OLD, "old"), (&NEW, "new")]));
    assert_eq!(vm.resume(pending).status(), Some(401));
    let o = send(&mut vm, &token(&stranger, "nobody"));
    assert_eq!(o.status(), Some(401), "within the refetch interval: no second fetch");
    assert!(vm.pending_callouts().is_empty());
    vm.assert_healthy();
}

#[test]
fn bad_bodies_keep_the_last_good_set_until_it_is_stale() {
    let mut vm = start();
    let c = only_callout(&vm);
    vm.respond(c.token, 200, &[("cache-control", "max-age=30")], &jwks(&[(&OLD, "old")]));
    for body in [
        b"{not json".to_vec(),
        br#"{"keys": []}"#.to_vec(),
        br#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#.to_vec(),
        vec![b' '; 5000],
    ] {
        wait(&mut vm, 30_000);
        let c = only_callout(&vm);
        vm.respond(c.token, 200, &[], &body);
        assert!(send(&mut vm, &token(&OLD, "old")).is_allowed(), "the last good set must be kept\n{}", vm.logs_text());
    }
    let logs = vm.logs_text();
    for label in ["invalid", "too_large"] {
        assert!(logs.contains(&format!("failed ({label})")), "{logs}");
    }
    assert!(logs.contains("keeping the last good set"), "{logs}");
    // The endpoint stays down: after max_stale_seconds (900 s) the set is withdrawn and requests get 503.
    for _ in 0..40 {
        wait(&mut vm, 30_000);
        for c in vm.pending_callouts() {
            vm.fail(c.token);
        }
    }
    assert!(vm.logs_text().contains("older than max_stale_seconds"), "{}", vm.logs_text());
    let Outcome::Paused(pending) = send(&mut vm, &token(&OLD, "old")) else { panic!("expected the request to wait") };
    wait(&mut vm, 2_000);
    for c in vm.pending_callouts() {
        vm.fail(c.token);
    }
    assert_eq!(vm.resume(pending).status(), Some(503));
    vm.assert_healthy();
}

#[test]
fn a_reload_keeps_fetched_keys_and_a_late_answer_for_a_gone_stream_is_harmless() {
    let mut vm = start();
    let c = only_callout(&vm);
    // The client gives up while held; the answer arrives afterwards.
    let Outcome::Paused(pending) = send(&mut vm, &token(&OLD, "old")) else { panic!("expected the request to wait") };
    let aborted = vm.abort(pending);
    assert_eq!(aborted.status(), Some(0));
    vm.respond(c.token, 200, &[], &jwks(&[(&OLD, "old")]));
    vm.assert_healthy();

    // Same remote settings, another policy: no refetch, keys still there.
    let mut reloaded = config();
    reloaded["policy"]["rules"][0]["id"] = json!("renamed");
    assert!(vm.configure(reloaded.to_string().as_bytes()));
    assert!(vm.pending_callouts().is_empty());
    let o = send(&mut vm, &token(&OLD, "old"));
    assert_eq!(o.header("x-agent-iam-rule"), Some("renamed"));

    // Other remote settings: a fresh fetch.
    reloaded["issuers"][0]["remote_jwks"]["path"] = json!("/v2/jwks");
    assert!(vm.configure(reloaded.to_string().as_bytes()));
    assert_eq!(only_callout(&vm).header(":path"), Some("/v2/jwks"));
    vm.assert_healthy();
}

#[test]
fn an_unknown_cluster_is_retried_and_remote_settings_are_validated() {
    let mut vm = HOST
        .vm()
        .plugin_config(config().to_string())
        .clusters(["other"])
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap();
    assert!(vm.pending_callouts().is_empty());
    assert!(
        vm.logs_text().contains("cannot fetch the key set of https://idp.example from cluster \"idp\""),
        "{}",
        vm.logs_text()
    );
    vm.assert_healthy();

    for (change, path) in [
        (json!({"jwks": {"keys": []}}), "issuers[0].remote_jwks: give either jwks or remote_jwks"),
        (json!({"remote_jwks": {"cluster": "idp", "path": "jwks"}}), "issuers[0].remote_jwks.path:"),
        (
            json!({"remote_jwks": {"cluster": "idp", "path": "/j", "max_stale_seconds": 10}}),
            "issuers[0].remote_jwks.max_stale_seconds:",
        ),
        (
            json!({"remote_jwks": {"cluster": "idp", "path": "/j", "refresh_seconds": 5}}),
            "issuers[0].remote_jwks.refresh_seconds:",
        ),
        (json!({"remote_jwks": {"cluster": "idp", "path": "/j", "surprise": 1}}), "issuers[0].remote_jwks.surprise"),
    ] {
        let mut c = config();
        for (k, v) in change.as_object().unwrap() {
            c["issuers"][0][k] = v.clone();
        }
        assert!(!vm.configure(c.to_string().as_bytes()), "{c}");
        let log =
            vm.logs().iter().rev().find(|l| l.message.contains("configuration rejected")).unwrap().message.clone();
        assert!(log.contains(path), "{log}");
    }
}

#[test]
fn dry_run_forwards_unknown_kids_and_missing_key_sets_marked() {
    let mut c = config();
    c["mode"] = json!("dry_run");
    let mut vm = HOST
        .vm()
        .plugin_config(c.to_string())
        .clusters(["idp"])
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    // No key set in time: forwarded, marked.
    let first = only_callout(&vm);
    let Outcome::Paused(pending) = send(&mut vm, &token(&OLD, "old")) else { panic!("expected the request to wait") };
    vm.respond(first.token, 503, &[], b"down");
    wait(&mut vm, 2_250);
    for c in vm.pending_callouts() {
        vm.respond(c.token, 200, &[], &jwks(&[(&OLD, "old")]));
    }
    let o = vm.resume(pending);
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("503 keys_unavailable"));
    // An unknown kid after its refetch: forwarded, marked, never a 401.
    assert!(send(&mut vm, &token(&OLD, "old")).is_allowed());
    let stranger = SigningKey::from_seed(Algorithm::ES256, [9; 32]).unwrap();
    let Outcome::Paused(pending) = send(&mut vm, &token(&stranger, "nobody")) else { panic!("expected a refetch") };
    wait(&mut vm, 250);
    let refetch = only_callout(&vm);
    vm.respond(refetch.token, 200, &[], &jwks(&[(&OLD, "old")]));
    let o = vm.resume(pending);
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("401 unknown_key"));
    // And at once when the refetch is rate-limited.
    let o = send(&mut vm, &token(&stranger, "nobody"));
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("401 unknown_key"));
    vm.assert_healthy();
}
