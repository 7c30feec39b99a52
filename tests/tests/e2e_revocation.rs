//! Continuous revocation end to end with real components: the release `.wasm` in real Envoy with two workers
//! (`--concurrency 2`) on `envoy/revocation.yaml` (the demo gateway with an SSF receiver), polling
//! `tests/ssf/transmitter.py` (RFC 8936; CAEP events signed RS256 by jwcrypto, never by the plugin's code) through
//! the `ssf_transmitter` cluster every second. Within one poll interval and one tick of a CAEP `session-revoked`
//! event for an agent, its requests are refused on both workers (its token already in both workers' caches
//! included) while another agent's continue; the transmitter sees the event acknowledged, and a wrongly signed
//! event reported in `setErrs`; while the transmitter is down the last state is kept. Which worker served a request
//! is read from Envoy's per-worker listener stats.
//!
//! The end-to-end tests need Envoy, the `.wasm` and the transmitter's packages (`make envoy wasm ssf-tools`), so
//! they are `#[ignore]`d for a plain `cargo test` and run with `-- --ignored`. The check of the configuration
//! itself needs none of them and always runs.

use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, ES256_KID, ISSUER, Ports, RESEARCH, TRADER};
use agent_iam_tests::ssf::{self, SESSION_REVOKED, Transmitter};
use agent_iam_tests::testbed::{self, EchoUpstream, Envoy, HttpResponse};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn work_dir(test: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("target/e2e").join(test)
}

fn template() -> String {
    std::fs::read_to_string(ssf::template_path()).unwrap()
}

/// The `ssf_transmitter` cluster's endpoint port in an Envoy config.
fn transmitter_port_in(yaml: &str) -> Value {
    let config: Value = serde_norway::from_str(yaml).unwrap();
    let clusters = config["static_resources"]["clusters"].as_array().unwrap();
    let cluster = clusters.iter().find(|c| c["name"] == "ssf_transmitter").expect("an ssf_transmitter cluster");
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"]
        .clone()
}

/// envoy/revocation.yaml is envoy/demo.yaml with an SSF receiver polling the `ssf_transmitter` cluster, and every
/// placeholder is there once and gone after rendering.
#[test]
fn revocation_config_is_the_demo_gateway_with_an_ssf_receiver() {
    let template = template();
    let demo_template = std::fs::read_to_string(demo::template_path()).unwrap();
    let mut config = demo::plugin_config_in(&template).unwrap();
    let receiver = config["revocation"]["ssf"].clone();
    assert_eq!(receiver["issuer"], ssf::ISSUER);
    assert_eq!(receiver["audiences"], json!([ssf::AUDIENCE]));
    assert_eq!(receiver["algorithms"], json!(["RS256"]));
    assert_eq!(receiver["jwks"], serde_json::from_str::<Value>(ssf::PLACEHOLDER_SSF_JWKS).unwrap());
    let poll = &receiver["poll"];
    assert_eq!(poll["cluster"], "ssf_transmitter");
    assert_eq!(poll["path"], ssf::POLL_PATH);
    assert_eq!(poll["interval_ms"], ssf::POLL_INTERVAL_MS);
    assert_eq!(poll["authorization"], ssf::TEMPLATE_AUTHORIZATION);
    config.as_object_mut().unwrap().remove("revocation");
    assert_eq!(
        config,
        demo::plugin_config_in(&demo_template).unwrap(),
        "envoy/revocation.yaml: the demo's configuration"
    );
    assert_eq!(transmitter_port_in(&template), ssf::TEMPLATE_TRANSMITTER_PORT);

    let keys = DemoKeys::generate().unwrap();
    let wasm = agent_iam_host::plugin_wasm_path();
    let transmitter_jwks = json!({"keys": [{"kty": "RSA", "kid": "t", "n": "AQAB", "e": "AQAB"}]});
    let rendered = ssf::render_revocation_config(
        &template,
        &keys.jwks(),
        Ports::free().unwrap(),
        &wasm,
        4998,
        &transmitter_jwks,
        "Bearer s3cr3t \"quoted\"",
    )
    .unwrap();
    assert!(!rendered.contains(demo::PLACEHOLDER_JWKS));
    assert!(!rendered.contains(ssf::PLACEHOLDER_SSF_JWKS));
    assert!(!rendered.contains(ssf::TEMPLATE_AUTHORIZATION));
    for port in [Ports::DEFAULT.listener, Ports::DEFAULT.upstream, Ports::DEFAULT.admin, ssf::TEMPLATE_TRANSMITTER_PORT]
    {
        assert!(!rendered.contains(&format!("port_value: {port} ")), "port {port} not substituted");
    }
    assert_eq!(transmitter_port_in(&rendered), 4998);
    let config = demo::plugin_config_in(&rendered).unwrap();
    assert_eq!(config["revocation"]["ssf"]["jwks"], transmitter_jwks);
    assert_eq!(config["revocation"]["ssf"]["poll"]["authorization"], "Bearer s3cr3t \"quoted\"");
    assert_eq!(config["issuers"][0]["jwks"], keys.jwks());
}

#[test]
#[ignore = "needs Envoy, the release .wasm and the SSF transmitter (make envoy wasm ssf-tools): run with -- --ignored"]
fn revocation_config_as_rendered_validates() {
    let wasm = agent_iam_host::plugin_wasm_path();
    assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
    let dir = work_dir("revocation-validate");
    let transmitter = Transmitter::start(&dir, "Bearer validate").unwrap();
    let keys = DemoKeys::generate().unwrap();
    let rendered = ssf::render_revocation_config(
        &template(),
        &keys.jwks(),
        Ports::free().unwrap(),
        &wasm,
        transmitter.port(),
        &transmitter.jwks().unwrap(),
        "Bearer validate",
    )
    .unwrap();
    let path = dir.join("revocation.yaml");
    std::fs::write(&path, rendered).unwrap();
    // Also runs the plugin's on_configure, which must accept the receiver with the transmitter's RSA key.
    testbed::validate_envoy_config(&testbed::envoy_binary(), &path).unwrap();
}

/// The gateway under test: the transmitter, the echo upstream and Envoy with two workers.
struct Bed {
    envoy: Envoy,
    transmitter: Transmitter,
    _upstream: EchoUpstream,
    ports: Ports,
}

impl Bed {
    fn start(dir: &std::path::Path, keys: &DemoKeys) -> Bed {
        let authorization =
            format!("Bearer {}", demo::random_seed().unwrap().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let transmitter = Transmitter::start(dir, &authorization).unwrap();
        let wasm = agent_iam_host::plugin_wasm_path();
        assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
        let upstream = EchoUpstream::start(0).unwrap();
        let ports = Ports { upstream: upstream.port(), ..Ports::free().unwrap() };
        let config = ssf::render_revocation_config(
            &template(),
            &keys.jwks(),
            ports,
            &wasm,
            transmitter.port(),
            &transmitter.jwks().unwrap(),
            &authorization,
        )
        .unwrap();
        let envoy = Envoy::start_with_workers(&testbed::envoy_binary(), &config, ports.admin, dir, 2).unwrap();
        Bed { envoy, transmitter, _upstream: upstream, ports }
    }

    /// `GET /quotes/AAPL` with `token` on a fresh connection, and the worker that served it.
    fn get(&self, token: &str) -> (usize, HttpResponse) {
        let auth = format!("Bearer {token}");
        self.envoy
            .served_by(self.ports.listener, || {
                testbed::http_request(self.ports.listener, "GET", "/quotes/AAPL", &[("authorization", &auth)], b"")
            })
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.envoy.log_tail(30)))
    }

    /// Sends `token` on fresh connections until each worker has served it `per_worker` times (at most 200
    /// requests), checking every answer with `check`.
    fn on_both_workers(&self, token: &str, per_worker: usize, what: &str, check: impl Fn(&HttpResponse) -> bool) {
        let mut served = [0usize; 2];
        for _ in 0..200 {
            let (worker, r) = self.get(token);
            assert!(
                check(&r),
                "{what}: worker {worker} answered {} {}\nwww-authenticate: {:?}\n{}",
                r.status,
                String::from_utf8_lossy(&r.body),
                r.header("www-authenticate"),
                self.diagnostics()
            );
            served[worker] += 1;
            if served.iter().all(|&n| n >= per_worker) {
                return;
            }
        }
        panic!("{what}: 200 fresh connections were served by the workers {served:?}: not both");
    }

    fn stat(&self, name: &str) -> Option<u64> {
        self.envoy.stat(name).unwrap()
    }

    fn diagnostics(&self) -> String {
        let stats = self.envoy.stats("agent_iam.revocation").unwrap_or_default();
        let stats: Vec<String> = stats.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        format!(
            "stats:\n{}\ntransmitter: {}\ntransmitter log:\n{}\nEnvoy log:\n{}",
            stats.join("\n"),
            self.transmitter.state().map(|s| s.to_string()).unwrap_or_else(|e| format!("{e:#}")),
            self.transmitter.log_tail(15),
            self.envoy.log_tail(40)
        )
    }
}

fn allowed(r: &HttpResponse) -> bool {
    r.status == 200
}

/// A 401 for a revoked token: `invalid_token`, "token has been revoked", in the body and the challenge.
fn revoked(r: &HttpResponse) -> bool {
    let body = r.json();
    let challenge = r.header("www-authenticate").unwrap_or("");
    r.status == 401
        && body["error"] == "invalid_token"
        && body["error_description"] == "token has been revoked"
        && challenge.contains("error=\"invalid_token\"")
        && challenge.contains("error_description=\"token has been revoked\"")
}

#[test]
#[ignore = "needs Envoy, the release .wasm and the SSF transmitter (make envoy wasm ssf-tools): run with -- --ignored"]
fn a_revoked_agent_is_refused_on_both_workers_within_one_poll_while_others_continue() {
    let dir = work_dir("revocation");
    let keys = DemoKeys::generate().unwrap();
    // Issued before the event: the revocation's cut-off is the event's time.
    let tokens = DemoTokens::mint(&keys, demo::now() - 10, 3600);
    let bed = Bed::start(&dir, &keys);

    // The plugin polls with the configured authorization, and nothing is pending.
    bed.transmitter.wait_for_state(Duration::from_secs(10), |s| s["polls"].as_u64() >= Some(2)).unwrap();
    let state = bed.transmitter.state().unwrap();
    assert_eq!(state["unauthorized"], 0, "{state}");
    assert_eq!(state["last_poll"]["returnImmediately"], true, "{state}");
    assert!(state["last_poll"]["maxEvents"].as_u64().is_some_and(|n| n >= 1), "{state}");

    // Both agents are allowed on both workers: their tokens are now in both workers' verified-token caches.
    bed.on_both_workers(&tokens.trader, 2, "the trader before the event", allowed);
    bed.on_both_workers(&tokens.delegated, 1, "the trader for Alice before the event", allowed);
    bed.on_both_workers(&tokens.research, 2, "the research agent before the event", allowed);
    assert_eq!(bed.stat("agent_iam.revocation.active.agent").unwrap_or(0), 0);

    // The identity provider ends the trader's sessions.
    let cut_off = demo::now();
    let event =
        json!({"sub_id": ssf::agent_subject(TRADER), "event_type": SESSION_REVOKED, "event_timestamp": cut_off});
    let sent = Instant::now();
    let jti = bed.transmitter.enqueue(&event).unwrap();

    // Within one poll interval and one tick (and a margin for a loaded machine), both workers refuse the trader's
    // token they had cached, and never allow it again.
    let margin = Duration::from_millis(750);
    let deadline = sent + Duration::from_millis(ssf::POLL_INTERVAL_MS + ssf::TICK_MS) + margin;
    let mut first_refusal: [Option<Duration>; 2] = [None, None];
    let mut seen = Vec::new();
    while first_refusal.iter().any(Option::is_none) {
        let (worker, r) = bed.get(&tokens.trader);
        let at = sent.elapsed();
        seen.push(format!("{:>5} ms worker {worker}: {}", at.as_millis(), r.status));
        if revoked(&r) {
            first_refusal[worker].get_or_insert(at);
        } else {
            assert!(
                allowed(&r),
                "the trader: {} {}\n{}",
                r.status,
                String::from_utf8_lossy(&r.body),
                bed.diagnostics()
            );
            assert!(
                first_refusal[worker].is_none(),
                "worker {worker} allowed the trader again after refusing it:\n{}\n{}",
                seen.join("\n"),
                bed.diagnostics()
            );
        }
        assert!(
            Instant::now() < deadline || first_refusal.iter().all(Option::is_some),
            "the trader not refused on both workers within {:?} of the event:\n{}\n{}",
            deadline - sent,
            seen.join("\n"),
            bed.diagnostics()
        );
    }
    eprintln!(
        "revoked on worker 0 after {:?}, on worker 1 after {:?} ({} requests)",
        first_refusal[0].unwrap(),
        first_refusal[1].unwrap(),
        seen.len()
    );

    // From now on: the trader refused on both workers (acting for Alice too), the research agent allowed.
    bed.on_both_workers(&tokens.trader, 5, "the revoked trader", revoked);
    bed.on_both_workers(&tokens.delegated, 2, "the revoked trader acting for Alice", revoked);
    bed.on_both_workers(&tokens.research, 5, "the research agent after the trader's revocation", allowed);

    // The transmitter saw the event acknowledged, once, by the next poll; nothing reported in error.
    let state = bed
        .transmitter
        .wait_for_state(Duration::from_secs(5), |s| s["acked"].as_array().is_some_and(|a| a.contains(&json!(jti))))
        .unwrap();
    assert_eq!(state["pending"], json!([]), "{state}");
    assert_eq!(state["set_errs"], json!({}), "{state}");
    assert_eq!(state["unknown_acks"], json!([]), "{state}");
    assert_eq!(state["unauthorized"], 0, "{state}");

    // Envoy's log names the revocation; the stats count it.
    assert!(
        bed.envoy.log().lines().any(|l| l.contains("revocation applied") && l.contains(&jti)),
        "no \"revocation applied\" line for {jti}:\n{}",
        bed.envoy.log_tail(40)
    );
    assert_eq!(bed.stat("agent_iam.revocation.active.agent"), Some(1), "{}", bed.diagnostics());
    assert!(bed.stat("agent_iam.revocation.ssf.set.accepted").is_some_and(|n| n >= 1), "{}", bed.diagnostics());

    // The cut-off: a token the trader gets after the event is accepted again.
    while demo::now() <= cut_off {
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = demo::now();
    let fresh = keys.es256.sign_jwt(
        Some(ES256_KID),
        &json!({"iss": ISSUER, "aud": demo::AUDIENCE, "sub": TRADER, "iat": now, "exp": now + 600}),
    );
    bed.on_both_workers(&fresh, 2, "the trader's token issued after the cut-off", allowed);
    bed.on_both_workers(&tokens.trader, 2, "the revoked trader, again", revoked);

    // A wrongly signed event (right kid, another key) for the research agent is refused and reported in setErrs;
    // it revokes nothing.
    let forged = bed
        .transmitter
        .enqueue(&json!({"sub_id": ssf::agent_subject(RESEARCH), "event_type": SESSION_REVOKED, "signer": "stranger"}))
        .unwrap();
    let state = bed
        .transmitter
        .wait_for_state(Duration::from_secs(5), |s| s["set_errs"].get(&forged).is_some())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", bed.diagnostics()));
    eprintln!("the forged event was reported as {}", state["set_errs"][&forged]);
    assert!(!state["acked"].as_array().unwrap().contains(&json!(forged)), "{state}");
    assert!(bed.stat("agent_iam.revocation.ssf.set.refused").is_some_and(|n| n >= 1), "{}", bed.diagnostics());
    bed.on_both_workers(&tokens.research, 3, "the research agent after a forged event", allowed);
    assert_eq!(bed.stat("agent_iam.revocation.active.agent"), Some(1), "{}", bed.diagnostics());

    // The transmitter goes down: first answering 503, then closing connections unanswered. The last state is kept.
    for mode in ["503", "reset"] {
        let failed = bed.transmitter.state().unwrap()["polls_failed"].as_u64().unwrap();
        bed.transmitter.set_outage(Some(mode)).unwrap();
        bed.transmitter
            .wait_for_state(Duration::from_secs(20), |s| s["polls_failed"].as_u64() >= Some(failed + 2))
            .unwrap_or_else(|e| panic!("polls during the outage ({mode}): {e:#}\n{}", bed.diagnostics()));
        bed.on_both_workers(&tokens.trader, 3, &format!("the revoked trader during an outage ({mode})"), revoked);
        bed.on_both_workers(&tokens.research, 3, &format!("the research agent during an outage ({mode})"), allowed);
        assert_eq!(bed.stat("agent_iam.revocation.active.agent"), Some(1), "{}", bed.diagnostics());
    }
    assert!(
        bed.envoy.log_count("poll failed, the last state is kept") >= 2,
        "no failed poll in Envoy's log:\n{}",
        bed.envoy.log_tail(40)
    );
    for (name, value) in bed.envoy.stats("agent_iam.revocation").unwrap() {
        eprintln!("{name}: {value}");
    }
}
