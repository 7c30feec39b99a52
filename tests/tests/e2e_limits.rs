//! Limits per agent end to end: the release `.wasm` in real Envoy with two workers (`--concurrency 2`), the issuer's
//! keys served by a real JWKS endpoint ([`JwksServer`]) and an echo upstream, from the test bed.
//!
//! - `envoy/ratelimit-local.yaml`: Envoy's own `local_ratelimit` filter after the plugin, keyed on the verified agent
//!   the plugin forwards (`x-agent-iam-agent`). The trader gets exactly its bucket, then Envoy's 429 on both
//!   workers (one bucket per process), acting for Alice too; the research agent is not affected; a client sending a
//!   forged `x-agent-iam-agent` with the trader's token is still counted as the trader.
//! - `envoy/limits.yaml`: the plugin's own `policy.limits` (20 requests an hour per agent), counted in shared data
//!   across both workers: exactly 20 allowed, served by both workers, then 429 with `Retry-After`,
//!   `RateLimit-Policy` and `RateLimit`, while another agent is allowed.
//! - `envoy/ratelimit-global.yaml` (Envoy's global `ratelimit` filter and the ratelimit service) is not run: it is
//!   validated with every other configuration (`tests/tests/e2e.rs::every_envoy_config_validates`), and its shape
//!   is checked here.
//!
//! Which worker served a request is read from Envoy's per-worker listener stats ([`Envoy::served_by`]). The
//! end-to-end tests need Envoy and the `.wasm` (`make envoy wasm`), so they are `#[ignore]`d for a plain
//! `cargo test` and run with `-- --ignored`; the checks of the configurations need neither and always run.

use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, Ports, RESEARCH, TRADER};
use agent_iam_tests::testbed::{self, EchoUpstream, Envoy, HttpResponse, JwksServer};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn work_dir(test: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("target/e2e").join(test)
}

fn read_envoy(name: &str) -> String {
    std::fs::read_to_string(agent_iam_host::workspace_root().join("envoy").join(name)).unwrap()
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

/// The HTTP filters of the (only) listener's connection manager.
fn http_filters(config: &Value) -> Vec<Value> {
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"].as_array().unwrap().clone()
}

fn filter_names(config: &Value) -> Vec<String> {
    http_filters(config).iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
}

fn filter<'a>(filters: &'a [Value], name: &str) -> &'a Value {
    &filters.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no {name} filter"))["typed_config"]
}

/// The route's `rate_limits` of the (only) route.
fn route(config: &Value) -> Value {
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"].clone()
}

/// The demo policy.
fn demo_policy() -> Value {
    let text = std::fs::read_to_string(agent_iam_host::workspace_root().join("policies/demo.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The trader's token bucket in envoy/ratelimit-local.yaml: its size.
fn trader_bucket(config: &Value) -> u64 {
    let filters = http_filters(config);
    let local = filter(&filters, "envoy.filters.http.local_ratelimit");
    let trader = local["descriptors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["entries"] == json!([{"key": "agent", "value": TRADER}]))
        .expect("a descriptor for the trader");
    trader["token_bucket"]["max_tokens"].as_u64().unwrap()
}

/// envoy/ratelimit-local.yaml: the plugin (remote keys, the demo policy), then Envoy's local rate limit keyed on
/// the verified agent, per process, with a bucket for each demo agent and a default one, then the router.
#[test]
fn ratelimit_local_config_counts_per_verified_agent_after_the_plugin() {
    let text = read_envoy("ratelimit-local.yaml");
    let config = yaml(&text);
    assert_eq!(filter_names(&config), ["agent-iam", "envoy.filters.http.local_ratelimit", "envoy.filters.http.router"]);
    let plugin = demo::plugin_config_in(&text).unwrap();
    assert_eq!(plugin["policy"], demo_policy());
    assert_eq!(plugin["issuers"][0]["remote_jwks"]["cluster"], "idp");
    let filters = http_filters(&config);
    let local = filter(&filters, "envoy.filters.http.local_ratelimit");
    assert_eq!(
        local["rate_limits"],
        json!([{"actions": [{"request_headers": {"header_name": "x-agent-iam-agent", "descriptor_key": "agent"}}]}])
    );
    assert_eq!(local["local_rate_limit_per_downstream_connection"], false);
    assert_eq!(local["enable_x_ratelimit_headers"], "DRAFT_VERSION_03");
    for enabled in ["filter_enabled", "filter_enforced"] {
        assert_eq!(local[enabled]["default_value"], json!({"numerator": 100, "denominator": "HUNDRED"}), "{enabled}");
    }
    assert!(local["token_bucket"]["max_tokens"].as_u64().is_some(), "a default bucket");
    let agents: Vec<&Value> =
        local["descriptors"].as_array().unwrap().iter().map(|d| &d["entries"][0]["value"]).collect();
    assert_eq!(agents, [TRADER, RESEARCH]);
    assert!(trader_bucket(&config) < 50, "the trader's bucket is small enough for the tests to empty it");
    // The comment says why the header can be trusted.
    assert!(text.contains("removes every client-sent\n# x-agent-iam-* header"));
}

/// envoy/ratelimit-global.yaml: the plugin, then Envoy's global rate limit filter on the `ratelimit` cluster
/// (gRPC), with descriptors for the verified agent and subject; the service's configuration in a comment.
#[test]
fn ratelimit_global_config_asks_the_service_per_verified_agent_after_the_plugin() {
    let text = read_envoy("ratelimit-global.yaml");
    let config = yaml(&text);
    assert_eq!(filter_names(&config), ["agent-iam", "envoy.filters.http.ratelimit", "envoy.filters.http.router"]);
    assert_eq!(demo::plugin_config_in(&text).unwrap()["policy"], demo_policy());
    let filters = http_filters(&config);
    let global = filter(&filters, "envoy.filters.http.ratelimit");
    assert_eq!(global["domain"], "agent-iam");
    assert_eq!(global["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"], "ratelimit");
    assert_eq!(global["rate_limit_service"]["transport_api_version"], "V3");
    assert_eq!(global["enable_x_ratelimit_headers"], "DRAFT_VERSION_03");
    assert_eq!(
        route(&config)["rate_limits"],
        json!([
            {"actions": [{"request_headers": {"header_name": "x-agent-iam-agent", "descriptor_key": "agent"}}]},
            {"actions": [{"request_headers": {"header_name": "x-agent-iam-subject", "descriptor_key": "subject"}}]}
        ])
    );
    let clusters = config["static_resources"]["clusters"].as_array().unwrap();
    let ratelimit = clusters.iter().find(|c| c["name"] == "ratelimit").expect("a ratelimit cluster");
    let options =
        &ratelimit["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(options["explicit_http_config"]["http2_protocol_options"].is_object(), "gRPC needs HTTP/2");

    // The ratelimit service's configuration, commented out, is YAML with the same domain and keys.
    let service: String = text
        .lines()
        .skip_while(|l| *l != "#   domain: agent-iam")
        .take_while(|l| l.starts_with("#   "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let service = yaml(&service);
    assert_eq!(service["domain"], "agent-iam");
    let keys: Vec<&str> =
        service["descriptors"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["agent", "agent", "subject"]);
    assert_eq!(service["descriptors"][1]["value"], TRADER);
}

/// The `limits` of envoy/limits.yaml's policy, which is the demo policy otherwise.
#[test]
fn limits_config_is_the_demo_policy_with_a_limit_per_agent() {
    let text = read_envoy("limits.yaml");
    assert_eq!(filter_names(&yaml(&text)), ["agent-iam", "envoy.filters.http.router"]);
    let plugin = demo::plugin_config_in(&text).unwrap();
    let mut policy = plugin["policy"].clone();
    let limits = policy.as_object_mut().unwrap().remove("limits").expect("limits");
    assert_eq!(policy, demo_policy());
    assert_eq!(
        limits,
        json!([{"id": "per-agent", "description": "Each agent: 20 allowed requests an hour.", "per": ["agent"],
                "requests": 20, "window": "1h"}])
    );
}

/// A gateway under test: the JWKS endpoint, the echo upstream and Envoy with two workers on `config` (a file of
/// `envoy/`).
struct Bed {
    envoy: Envoy,
    _jwks: JwksServer,
    _upstream: EchoUpstream,
    ports: Ports,
}

impl Bed {
    fn start(config: &str, dir: &std::path::Path, keys: &DemoKeys) -> Bed {
        let wasm = agent_iam_host::plugin_wasm_path();
        assert!(wasm.exists(), "{} not found (run `make wasm`)", wasm.display());
        let jwks = JwksServer::start(0, &keys.jwks()).unwrap();
        let upstream = EchoUpstream::start(0).unwrap();
        let ports = Ports { jwks: jwks.port(), upstream: upstream.port(), ..Ports::free().unwrap() };
        let rendered = demo::render_ports(&read_envoy(config), ports, &wasm).unwrap();
        for port in [Ports::DEFAULT.listener, Ports::DEFAULT.upstream, Ports::DEFAULT.admin, Ports::DEFAULT.jwks] {
            assert!(!rendered.contains(&format!("port_value: {port} ")), "port {port} not substituted");
        }
        let envoy = Envoy::start_with_workers(&testbed::envoy_binary(), &rendered, ports.admin, dir, 2).unwrap();
        Bed { envoy, _jwks: jwks, _upstream: upstream, ports }
    }

    /// `GET /quotes/AAPL` with `token` and `headers` on a fresh connection, and the worker that served it.
    fn get(&self, token: &str, headers: &[(&str, &str)]) -> (usize, HttpResponse) {
        let auth = format!("Bearer {token}");
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.envoy
            .served_by(self.ports.listener, || {
                testbed::http_request(self.ports.listener, "GET", "/quotes/AAPL", &all, b"")
            })
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.envoy.log_tail(30)))
    }

    /// The lines of Envoy's access log (stdout, which Envoy writes out every 10 s) that contain `needle`, once
    /// there are `n` of them or after 15 s.
    fn access_log(&self, needle: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<String> = self
                .envoy
                .log()
                .lines()
                .filter(|l| l.starts_with("access: ") && l.contains(needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn diagnostics(&self) -> String {
        format!("Envoy log:\n{}", self.envoy.log_tail(40))
    }
}

/// What the upstream saw as `x-agent-iam-agent`: every value.
fn agents_seen(r: &HttpResponse) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .map(|h| h.iter().filter(|p| p[0] == "x-agent-iam-agent").map(|p| p[1].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Envoy's local rate limit refused it: 429 from the filter (the header the configuration adds, nothing left in the
/// bucket, Envoy's body), not from the plugin (no `RateLimit-Policy`).
fn locally_limited(r: &HttpResponse) -> bool {
    r.status == 429
        && r.header("x-local-rate-limit") == Some("agent")
        && r.header("x-ratelimit-remaining") == Some("0")
        && r.header("ratelimit-policy").is_none()
        && r.body == b"local_rate_limited"
}

#[test]
#[ignore = "needs Envoy and the release .wasm (make envoy wasm): run with -- --ignored"]
fn envoy_local_ratelimit_counts_each_verified_agent_on_both_workers() {
    let dir = work_dir("limits-local");
    let keys = DemoKeys::generate().unwrap();
    let tokens = DemoTokens::mint(&keys, demo::now(), 3600);
    let bucket = trader_bucket(&yaml(&read_envoy("ratelimit-local.yaml")));
    let bed = Bed::start("ratelimit-local.yaml", &dir, &keys);

    // The trader's bucket: every other request forges the research agent's identity header (as sent, in another
    // case, with `_` for `-`); the plugin drops it and the upstream sees the trader, once. All are counted as the
    // trader's.
    let forged: [&[(&str, &str)]; 3] = [
        &[("x-agent-iam-agent", RESEARCH)],
        &[("X-Agent-IAM-Agent", RESEARCH)],
        &[("x_agent_iam_agent", RESEARCH), ("x-agent-iam-subject", RESEARCH)],
    ];
    let mut served = [0usize; 2];
    for i in 0..bucket {
        let headers: &[(&str, &str)] = if i % 2 == 1 { forged[(i as usize / 2) % forged.len()] } else { &[] };
        let (worker, r) = bed.get(&tokens.trader, headers);
        assert_eq!(r.status, 200, "trader request {} of {bucket}: {:?}\n{}", i + 1, r, bed.diagnostics());
        assert_eq!(agents_seen(&r), [TRADER], "request {}: the upstream saw {:?}", i + 1, agents_seen(&r));
        assert_eq!(r.header("x-ratelimit-limit"), Some(bucket.to_string().as_str()), "{:?}", r.headers);
        assert_eq!(r.header("x-ratelimit-remaining"), Some((bucket - 1 - i).to_string().as_str()), "{:?}", r.headers);
        served[worker] += 1;
    }
    eprintln!("the trader's {bucket} allowed requests were served by the workers {served:?}");

    // Empty: refused by Envoy's filter on both workers, with or without a forged header, and acting for Alice (the
    // agent is still the trader). Never once more allowed.
    let mut refused = [0usize; 2];
    for i in 0..200 {
        let headers: &[(&str, &str)] = if i % 2 == 1 { forged[i % forged.len()] } else { &[] };
        let token = if i % 3 == 2 { &tokens.delegated } else { &tokens.trader };
        let (worker, r) = bed.get(token, headers);
        assert!(
            locally_limited(&r),
            "trader request {} after its bucket of {bucket}: {} {:?} {}\n{}",
            i + 1,
            r.status,
            r.headers,
            String::from_utf8_lossy(&r.body),
            bed.diagnostics()
        );
        refused[worker] += 1;
        if refused.iter().all(|&n| n >= 3) {
            break;
        }
    }
    assert!(refused.iter().all(|&n| n >= 3), "the trader's refusals were served by the workers {refused:?}: not both");

    // The research agent has a bucket of its own: allowed, on both workers, seen as itself.
    let mut research = [0usize; 2];
    for _ in 0..200 {
        let (worker, r) = bed.get(&tokens.research, &[]);
        assert_eq!(r.status, 200, "the research agent: {r:?}\n{}", bed.diagnostics());
        assert_eq!(agents_seen(&r), [RESEARCH]);
        research[worker] += 1;
        if research.iter().all(|&n| n >= 2) && research.iter().sum::<usize>() as u64 > bucket {
            break;
        }
    }
    assert!(research.iter().all(|&n| n >= 2), "the research agent was served by the workers {research:?}");

    // Envoy counted the filter's refusals, and its access log says the filter refused them, each about the trader
    // (the agent the plugin forwarded).
    let refusals = refused.iter().sum::<usize>();
    let stat = bed.envoy.stat("agent_rate_limit.http_local_rate_limit.rate_limited").unwrap();
    assert_eq!(stat, Some(refusals as u64), "{:?}", bed.envoy.stats("local_rate_limit"));
    let lines = bed.access_log(" 429 local_rate_limited ", refusals);
    assert_eq!(lines.len(), refusals, "{}", bed.diagnostics());
    assert!(lines.iter().all(|l| l.ends_with(&format!("agent={TRADER}"))), "{}", lines.join("\n"));
}

#[test]
#[ignore = "needs Envoy and the release .wasm (make envoy wasm): run with -- --ignored"]
fn the_plugins_limit_holds_exactly_across_both_workers() {
    let dir = work_dir("limits-plugin");
    let keys = DemoKeys::generate().unwrap();
    let tokens = DemoTokens::mint(&keys, demo::now(), 3600);
    let text = read_envoy("limits.yaml");
    let limit = &demo::plugin_config_in(&text).unwrap()["policy"]["limits"][0];
    let (id, requests) = (limit["id"].as_str().unwrap().to_owned(), limit["requests"].as_u64().unwrap());
    assert_eq!((id.as_str(), requests, &limit["window"]), ("per-agent", 20, &json!("1h")));
    let window = 3600u64;
    let bed = Bed::start("limits.yaml", &dir, &keys);

    // The trader, on fresh connections: exactly `requests` allowed, then every request refused, on both workers.
    let mut allowed = [0usize; 2];
    let mut refused = [0usize; 2];
    let mut seen = Vec::new();
    for i in 0..300 {
        let token = if i % 4 == 3 { &tokens.delegated } else { &tokens.trader };
        let (worker, r) = bed.get(token, &[]);
        seen.push(format!("{:>3} worker {worker}: {}", i + 1, r.status));
        if (i as u64) < requests {
            assert_eq!(
                r.status,
                200,
                "request {} of {requests}: {r:?}\n{}\n{}",
                i + 1,
                seen.join("\n"),
                bed.diagnostics()
            );
            allowed[worker] += 1;
            continue;
        }
        assert_eq!(
            r.status,
            429,
            "request {} after {requests}: {r:?}\n{}\n{}",
            i + 1,
            seen.join("\n"),
            bed.diagnostics()
        );
        let retry_after: u64 = r.header("retry-after").expect("retry-after").parse().unwrap();
        // All `requests` were taken at once: the next is allowed one emission interval (window / requests) after
        // the first, less the time since.
        assert!((1..=window / requests).contains(&retry_after), "retry-after: {retry_after}");
        assert_eq!(r.header("ratelimit-policy"), Some(format!("\"{id}\";q={requests};w={window}").as_str()));
        assert_eq!(r.header("ratelimit"), Some(format!("\"{id}\";r=0;t={retry_after}").as_str()));
        let body = r.json();
        assert_eq!(body["error"], "rate_limited", "{body}");
        assert_eq!(
            body["error_description"],
            format!("limit \"{id}\" exceeded: {requests} requests per {window} s"),
            "{body}"
        );
        refused[worker] += 1;
        if refused.iter().all(|&n| n >= 3) {
            break;
        }
    }
    eprintln!("allowed by the workers {allowed:?}, refused by {refused:?}");
    assert!(
        allowed.iter().all(|&n| n >= 1),
        "the {requests} allowed requests were all served by one worker: {allowed:?}"
    );
    assert!(refused.iter().all(|&n| n >= 3), "the refusals were served by the workers {refused:?}: not both");

    // Another agent counts on its own: allowed on both workers.
    let mut research = [0usize; 2];
    for _ in 0..100 {
        let (worker, r) = bed.get(&tokens.research, &[]);
        assert_eq!(r.status, 200, "the research agent: {r:?}\n{}", bed.diagnostics());
        assert_eq!(agents_seen(&r), [RESEARCH]);
        research[worker] += 1;
        if research.iter().all(|&n| n >= 1) && research.iter().sum::<usize>() >= 5 {
            break;
        }
    }
    assert!(research.iter().all(|&n| n >= 1), "the research agent was served by the workers {research:?}");
    assert!(research.iter().sum::<usize>() as u64 <= requests);

    // The refusals are the plugin's: counted under its denial reason, and named in Envoy's access log.
    let refusals = refused.iter().sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(5);
    // The plugin hands its counts to Envoy at most once a second.
    while bed.envoy.stat("agent_iam.denied.rate_limited").unwrap() != Some(refusals as u64) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        bed.envoy.stat("agent_iam.denied.rate_limited").unwrap(),
        Some(refusals as u64),
        "{:?}",
        bed.envoy.stats("agent_iam.denied")
    );
    let lines = bed.access_log(" 429 agent_iam.rate_limited", refusals);
    assert_eq!(lines.len(), refusals, "{}", bed.diagnostics());
}
