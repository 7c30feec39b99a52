//! Continuous revocation through the real `.wasm` in the wasmtime host: revocations written in the
//! configuration, security events polled from an SSF transmitter (RFC 8936) and pushed to the plugin
//! (RFC 8935), a signed revocation list fetched through a cluster; the state shared by two VMs (two Envoy
//! workers), cached tokens refused, hostile inputs that never replace good state, and a stale list that
//! fails closed.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Callout, Host, Outcome, Vm};

use agent_iam_tests::HOST;
use serde_json::{Value, json};

const NOW: u64 = 1_900_000_000;
const ISSUER: &str = "https://idp.example";
const TRANSMITTER: &str = "https://ssf.idp.example";
const AUDIENCE: &str = "https://gw.example";
const ROGUE: &str = "spiffe://example.org/agent/rogue";
const GOOD: &str = "spiffe://example.org/agent/good";
const PUSH_SECRET: &str = "Bearer push-secret-0123456789";

static TOKENS: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [1; 32]).unwrap());
static SSF: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [2; 32]).unwrap());
static LISTS: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [3; 32]).unwrap());
static STRANGER: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [4; 32]).unwrap());

fn config(revocation: Value) -> Value {
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [TOKENS.public_jwk(Some("t"))]}}],
        "policy": {"rules": [{"id": "any-agent", "effect": "allow", "agents": ["*"]}]},
        "revocation": revocation
    })
}

fn receiver(poll: bool, push: bool) -> Value {
    let mut ssf = json!({
        "issuer": TRANSMITTER, "audiences": [AUDIENCE], "algorithms": ["ES256"],
        "jwks": {"keys": [SSF.public_jwk(Some("s"))]}
    });
    if poll {
        ssf["poll"] = json!({"cluster": "ssf", "path": "/poll", "authority": "ssf.idp.example",
                             "interval_ms": 1000, "max_events": 10, "authorization": "Bearer poll-token"});
    }
    if push {
        ssf["push"] = json!({"path": "/ssf/events", "authorization": PUSH_SECRET});
    }
    json!({"ssf": ssf})
}

/// A VM whose revocation state lives under `key`: VMs of one test share it (as Envoy's workers do), tests
/// running at once in this process do not.
fn start(key: &str, revocation: Value) -> Vm {
    start_on(&HOST, key, revocation)
}

/// [`start`] on a host of its own: Envoy shares a metric by name across every VM of a plugin, so a test that
/// reads a gauge must not share the host with the others.
fn start_on(host: &Host, key: &str, mut revocation: Value) -> Vm {
    revocation["state_key"] = json!(format!("agent_iam.revocation.{key}"));
    host.vm()
        .plugin_config(config(revocation).to_string())
        .clusters(["ssf", "lists"])
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn token(agent: &str, iat: u64) -> String {
    TOKENS.sign_jwt(Some("t"), &json!({"iss": ISSUER, "aud": "api", "sub": agent, "iat": iat, "exp": NOW + 3600}))
}

fn send(vm: &mut Vm, token: &str) -> Outcome {
    vm.request()
        .method("GET")
        .path("/x")
        .authority("api.example")
        .header("authorization", &format!("Bearer {token}"))
        .send()
}

fn allowed(vm: &mut Vm, token: &str) -> bool {
    let outcome = send(vm, token);
    match outcome.status() {
        None => true,
        Some(401) if outcome.body_json()["error_description"] == "token has been revoked" => false,
        other => panic!("neither allowed nor revoked: {other:?} {:?}\n{}", outcome.body_json(), vm.logs_text()),
    }
}

/// A security event token of the transmitter (or of `key`), with `typ: secevent+jwt`.
fn set_with(key: &SigningKey, jti: &str, sub_id: Value, event: &str, payload: Value) -> String {
    key.sign_jwt_with_header(
        &json!({"alg": "ES256", "typ": "secevent+jwt", "kid": "s"}),
        &json!({"iss": TRANSMITTER, "aud": AUDIENCE, "iat": NOW, "jti": jti, "sub_id": sub_id,
                "events": {(format!("https://schemas.openid.net/secevent/caep/event-type/{event}")): payload}}),
    )
}

fn session_revoked(jti: &str, agent: &str) -> String {
    set_with(&SSF, jti, json!({"format": "uri", "uri": agent}), "session-revoked", json!({"event_timestamp": NOW}))
}

fn push(vm: &mut Vm, authorization: &str, content_type: &str, body: &str) -> Outcome {
    vm.request()
        .method("POST")
        .path("/ssf/events")
        .authority("gw.example")
        .header("authorization", authorization)
        .header("content-type", content_type)
        .body(body)
        .send()
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

fn callouts_to(vm: &Vm, cluster: &str) -> Vec<Callout> {
    vm.pending_callouts().into_iter().filter(|c| c.cluster == cluster).collect()
}

fn only_poll(vm: &Vm) -> Callout {
    let polls = callouts_to(vm, "ssf");
    assert_eq!(polls.len(), 1, "expected one poll in flight: {polls:#?}\n{}", vm.logs_text());
    polls.into_iter().next().unwrap()
}

fn poll_body(c: &Callout) -> Value {
    serde_json::from_slice(&c.body).unwrap()
}

fn answer(vm: &mut Vm, c: &Callout, sets: &[(&str, &str)], more: bool) {
    let sets: serde_json::Map<String, Value> = sets.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let body = json!({"sets": sets, "moreAvailable": more}).to_string();
    vm.respond(c.token, 200, &[("content-type", "application/json")], body.as_bytes());
}

#[test]
fn inline_selectors_refuse_tokens_from_the_configuration() {
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut vm = start_on(
        &host,
        "inline",
        json!({"selectors": [
            {"agent": ROGUE},
            {"issuer": ISSUER, "issued_before": NOW - 100}
        ]}),
    );
    assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)));
    assert!(!allowed(&mut vm, &token(GOOD, NOW - 101)), "issued before the issuer's cut-off");
    assert!(allowed(&mut vm, &token(GOOD, NOW - 100)), "issued at the cut-off: counts again");
    assert!(vm.logs_text().contains("revoked by agent"), "{}", vm.logs_text());
    assert_eq!(vm.metric("agent_iam.revocation.active.agent"), Some(1), "{:?}", host.metrics());
    assert_eq!(vm.metric("agent_iam.revocation.active.issuer"), Some(1));
}

#[test]
fn a_polled_session_revoked_event_cuts_off_one_agent_on_every_worker_including_cached_tokens() {
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut first = start_on(&host, "polled", receiver(true, false));
    let mut second = start_on(&host, "polled", receiver(true, false));
    let (rogue, good) = (token(ROGUE, NOW - 10), token(GOOD, NOW - 10));
    for vm in [&mut first, &mut second] {
        assert!(allowed(vm, &rogue));
        assert!(allowed(vm, &good));
    }
    // One worker polls for the gateway.
    wait(&mut first, 300);
    wait(&mut second, 300);
    let (poller, other) = match (callouts_to(&first, "ssf").len(), callouts_to(&second, "ssf").len()) {
        (1, 0) => (&mut first, &mut second),
        (0, 1) => (&mut second, &mut first),
        counts => panic!("exactly one worker must poll: {counts:?}\n{}\n{}", first.logs_text(), second.logs_text()),
    };
    let poll = only_poll(poller);
    assert_eq!(poll.headers.iter().find(|(k, _)| k == ":method").unwrap().1, "POST");
    assert!(poll.headers.contains(&("authorization".into(), "Bearer poll-token".into())));
    let body = poll_body(&poll);
    assert_eq!(body["maxEvents"], 10);
    assert_eq!(body["returnImmediately"], true);
    answer(poller, &poll, &[("set-1", &session_revoked("set-1", ROGUE))], false);
    assert!(!allowed(poller, &rogue), "refused at once on the worker that polled, from its cache");
    assert!(allowed(poller, &good));
    // The other worker reads the shared state on its next tick.
    wait(other, 300);
    assert!(!allowed(other, &rogue), "{}", other.logs_text());
    assert!(allowed(other, &good));
    // The next poll acknowledges the event.
    wait(poller, 1100);
    let next = only_poll(poller);
    assert_eq!(poll_body(&next)["ack"], json!(["set-1"]));
    assert!(poll_body(&next).get("setErrs").is_none());
    answer(poller, &next, &[], false);
    // A token issued after the event's cut-off counts again.
    assert!(allowed(poller, &token(ROGUE, NOW + 5)));
    assert_eq!(poller.metric("agent_iam.revocation.active.agent"), Some(1));
    assert!(poller.logs_text().contains("revocation applied"), "{}", poller.logs_text());
}

#[test]
fn events_that_fail_verification_are_reported_and_revoke_nothing() {
    let mut vm = start("refused", receiver(true, false));
    wait(&mut vm, 300);
    let poll = only_poll(&vm);
    let wrong_key =
        set_with(&STRANGER, "bad-sig", json!({"format": "uri", "uri": ROGUE}), "session-revoked", json!({}));
    let plain_jwt = SSF.sign_jwt(
        Some("s"),
        &json!({"iss": TRANSMITTER, "aud": AUDIENCE, "iat": NOW, "jti": "plain",
        "sub_id": {"format": "uri", "uri": ROGUE},
        "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}}}),
    );
    let other_aud = SSF.sign_jwt_with_header(
        &json!({"alg": "ES256", "typ": "secevent+jwt", "kid": "s"}),
        &json!({"iss": TRANSMITTER, "aud": "https://elsewhere.example", "iat": NOW, "jti": "aud",
                "sub_id": {"format": "uri", "uri": ROGUE},
                "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}}}),
    );
    let mismatched = session_revoked("inner-id", ROGUE);
    answer(
        &mut vm,
        &poll,
        &[("bad-sig", &wrong_key), ("plain", &plain_jwt), ("aud", &other_aud), ("outer-id", &mismatched)],
        false,
    );
    assert!(allowed(&mut vm, &token(ROGUE, NOW - 10)), "{}", vm.logs_text());
    wait(&mut vm, 1100);
    let next = poll_body(&only_poll(&vm));
    let errs = next["setErrs"].as_object().unwrap_or_else(|| panic!("{next}"));
    assert_eq!(errs["bad-sig"]["err"], "invalid_key", "{next}");
    assert_eq!(errs["plain"]["err"], "invalid_request", "{next}");
    assert_eq!(errs["aud"]["err"], "invalid_audience", "{next}");
    assert_eq!(errs["outer-id"]["err"], "invalid_request", "{next}");
    assert!(next.get("ack").is_none(), "{next}");
}

#[test]
fn a_transmitter_outage_keeps_the_last_state_and_more_available_polls_again_at_once() {
    let mut vm = start("outage", receiver(true, false));
    wait(&mut vm, 300);
    let poll = only_poll(&vm);
    answer(&mut vm, &poll, &[("e1", &session_revoked("e1", ROGUE))], true);
    // moreAvailable: the next poll goes out on the next tick, not after the interval.
    wait(&mut vm, 300);
    let next = only_poll(&vm);
    vm.fail(next.token);
    for _ in 0..5 {
        wait(&mut vm, 2000);
        for c in callouts_to(&vm, "ssf") {
            vm.respond(c.token, 503, &[], b"down");
        }
    }
    assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)), "still revoked through the outage");
    assert!(allowed(&mut vm, &token(GOOD, NOW - 10)));
    assert!(vm.logs_text().contains("the last state is kept"), "{}", vm.logs_text());
}

#[test]
fn a_replayed_event_changes_nothing() {
    let mut vm = start("replayed", receiver(false, true));
    let event = session_revoked("once", ROGUE);
    let first = push(&mut vm, PUSH_SECRET, "application/secevent+jwt", &event);
    assert_eq!(first.status(), Some(202), "{:?}\n{}", first.body_json(), vm.logs_text());
    let version = || HOST.shared_data("agent_iam.revocation.replayed.version").map(|(v, _)| v);
    let before = version();
    assert!(before.is_some());
    let again = push(&mut vm, PUSH_SECRET, "application/secevent+jwt", &event);
    assert_eq!(again.status(), Some(202));
    assert_eq!(version(), before, "the state was not written again");
    assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)));
}

#[test]
fn pushed_events_are_authenticated_verified_and_answered_as_rfc_8935_says() {
    let mut vm = start("pushed", receiver(false, true));
    let mut other = start("pushed", receiver(false, true));
    let event = session_revoked("p1", ROGUE);
    let cases = [
        ("Bearer wrong-secret-0000000000", "application/secevent+jwt", event.as_str(), "authentication_failed"),
        (PUSH_SECRET, "application/json", event.as_str(), "invalid_request"),
        (PUSH_SECRET, "application/secevent+jwt", "not.a.jws", "invalid_request"),
    ];
    for (auth, ct, body, err) in cases {
        let o = push(&mut vm, auth, ct, body);
        assert_eq!(o.status(), Some(400), "{auth} {ct}: {:?}", o.body_json());
        assert_eq!(o.body_json()["err"], err, "{:?}", o.body_json());
    }
    let stranger = set_with(&STRANGER, "p0", json!({"format": "uri", "uri": ROGUE}), "session-revoked", json!({}));
    let o = push(&mut vm, PUSH_SECRET, "application/secevent+jwt", &stranger);
    assert_eq!((o.status(), o.body_json()["err"].clone()), (Some(400), json!("invalid_key")));
    let huge = "x".repeat(70_000);
    assert_eq!(push(&mut vm, PUSH_SECRET, "application/secevent+jwt", &huge).status(), Some(400));
    let get = vm.request().method("GET").path("/ssf/events").authority("gw.example").send();
    assert_eq!(get.status(), Some(405));
    assert!(allowed(&mut vm, &token(ROGUE, NOW - 10)), "nothing above revoked anything");

    let ok = push(&mut vm, PUSH_SECRET, "application/secevent+jwt; charset=utf-8", &event);
    assert_eq!(ok.status(), Some(202), "{:?}\n{}", ok.body_json(), vm.logs_text());
    assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)));
    wait(&mut other, 300);
    assert!(!allowed(&mut other, &token(ROGUE, NOW - 10)), "the other worker agrees");
    assert!(allowed(&mut other, &token(GOOD, NOW - 10)));
}

fn list_config(extra: Value) -> Value {
    let mut list = json!({"cluster": "lists", "path": "/revocations.jwt", "authority": "lists.example",
                          "refresh_seconds": 10, "max_stale_seconds": 30,
                          "issuer": "https://lists.example", "jwks": {"keys": [LISTS.public_jwk(Some("l"))]},
                          "algorithms": ["ES256"]});
    for (k, v) in extra.as_object().unwrap() {
        list[k] = v.clone();
    }
    json!({"list": list})
}

fn signed_list(key: &SigningKey, iat: u64, revocations: Value) -> String {
    key.sign_jwt_with_header(
        &json!({"alg": "ES256", "typ": "revocation-list+jwt", "kid": "l"}),
        &json!({"iss": "https://lists.example", "iat": iat, "revocations": revocations}),
    )
}

fn only_list_fetch(vm: &Vm) -> Callout {
    let fetches = callouts_to(vm, "lists");
    assert_eq!(fetches.len(), 1, "expected one list fetch: {fetches:#?}\n{}", vm.logs_text());
    fetches.into_iter().next().unwrap()
}

#[test]
fn a_signed_list_is_applied_and_bad_or_older_lists_never_replace_it() {
    let mut vm = start("list", list_config(json!({})));
    wait(&mut vm, 300);
    let fetch = only_list_fetch(&vm);
    let list = signed_list(&LISTS, NOW, json!([{"agent": ROGUE}]));
    vm.respond(fetch.token, 200, &[], list.as_bytes());
    assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)), "{}", vm.logs_text());
    // Every later answer is bad in its own way: the list in force stays.
    let bad: Vec<Vec<u8>> = vec![
        signed_list(&STRANGER, NOW + 5, json!([])).into_bytes(),
        json!({"iss": "https://lists.example", "iat": NOW + 5, "revocations": []}).to_string().into_bytes(),
        signed_list(&LISTS, NOW - 100, json!([])).into_bytes(),
        signed_list(&LISTS, NOW + 5, json!([{"agent": ""}])).into_bytes(),
        vec![b'x'; 2 << 20],
    ];
    for body in bad {
        wait(&mut vm, 10_500);
        let fetch = only_list_fetch(&vm);
        vm.respond(fetch.token, 200, &[], &body);
        assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)), "{}", vm.logs_text());
    }
    assert!(vm.logs_text().contains("the last good one is kept"), "{}", vm.logs_text());
    // A newer good list lifts the revocation.
    wait(&mut vm, 10_500);
    let fetch = only_list_fetch(&vm);
    vm.respond(fetch.token, 200, &[], signed_list(&LISTS, NOW + 60, json!([])).as_bytes());
    assert!(allowed(&mut vm, &token(ROGUE, NOW - 10)));
}

#[test]
fn an_unsigned_list_only_where_allowed() {
    let mut vm = start("unsigned", json!({"list": {"cluster": "lists", "path": "/r.json", "allow_unsigned": true}}));
    wait(&mut vm, 300);
    let fetch = only_list_fetch(&vm);
    let body = json!({"iss": "local", "iat": NOW, "revocations": [{"jti": "j-1"}]}).to_string();
    vm.respond(fetch.token, 200, &[], body.as_bytes());
    let t =
        TOKENS.sign_jwt(Some("t"), &json!({"iss": ISSUER, "aud": "api", "sub": GOOD, "jti": "j-1", "exp": NOW + 60}));
    assert!(!allowed(&mut vm, &t), "{}", vm.logs_text());
}

#[test]
fn a_stale_list_fails_closed_when_configured_and_recovers() {
    let mut vm = start("stale", list_config(json!({"on_stale": "deny", "covers": [ISSUER]})));
    // Before the first list: refused with 503, not allowed.
    let o = send(&mut vm, &token(GOOD, NOW - 10));
    assert_eq!(o.status(), Some(503), "{:?}", o.body_json());
    wait(&mut vm, 300);
    let fetch = only_list_fetch(&vm);
    vm.respond(fetch.token, 200, &[], signed_list(&LISTS, NOW, json!([])).as_bytes());
    assert!(allowed(&mut vm, &token(GOOD, NOW - 10)));
    // The list source goes away: after max_stale the issuer's tokens are refused again.
    for _ in 0..8 {
        wait(&mut vm, 5000);
        for c in callouts_to(&vm, "lists") {
            vm.fail(c.token);
        }
    }
    let o = send(&mut vm, &token(GOOD, NOW - 10));
    assert_eq!(o.status(), Some(503), "{}", vm.logs_text());
    assert_eq!(o.body_json()["error"], "temporarily_unavailable");
}

#[test]
fn a_configuration_with_bad_revocation_settings_is_refused_with_its_path() {
    for (revocation, path) in [
        (json!({"selectors": [{"agent": ""}]}), "revocation.selectors[0].agent"),
        (json!({"selectors": [{"issuer": ISSUER}]}), "revocation.selectors[0]"),
        (json!({"list": {"cluster": "lists", "path": "/r"}}), "revocation.list.jwks"),
        (
            json!({"ssf": {"issuer": TRANSMITTER, "audiences": [AUDIENCE], "jwks": {"keys": []}, "poll": {"cluster": "ssf", "path": "/p"}}}),
            "revocation.ssf.jwks",
        ),
        (
            json!({"ssf": {"issuer": TRANSMITTER, "audiences": [AUDIENCE], "jwks": {"keys": [SSF.public_jwk(Some("s"))]}, "push": {"path": "/e", "authorization": "short"}}}),
            "revocation.ssf.push.authorization",
        ),
    ] {
        let mut vm = start("config", json!({}));
        assert!(!vm.configure(config(revocation.clone()).to_string().as_bytes()), "{revocation}");
        assert!(vm.logs_text().contains(path), "{path}: {}", vm.logs_text());
        assert!(allowed(&mut vm, &token(ROGUE, NOW)), "the last good configuration still serves");
    }
}

#[test]
fn a_refusal_by_a_revocation_is_audited_with_its_kind() {
    let mut doc = config(json!({"selectors": [{"agent": ROGUE}], "state_key": "agent_iam.revocation.audited"}));
    doc["audit"] = json!({});
    let mut vm = HOST
        .vm()
        .plugin_config(doc.to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!allowed(&mut vm, &token(ROGUE, NOW - 10)));
    let line = String::from_utf8(vm.last_filter_state().get("agent_iam.audit").unwrap().clone()).unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["unmapped"]["reason"], "revoked", "{line}");
    assert_eq!(event["unmapped"]["revoked_by"], "agent", "{line}");
    assert_eq!(event["actor"]["app_uid"], ROGUE, "{line}");
}
