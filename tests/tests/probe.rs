//! # Fidelity: the host against real Envoy, host function by host function
//!
//! The probe module (`probe/`, built by `make wasm` into `target/wasm32-wasip1/release/agent_iam_probe.wasm`)
//! calls every proxy-wasm host function in every callback, with good and bad arguments, and logs one line per
//! call: `probe|<vm>|<phase>|<call>|<arguments>|<status>|<value>`. The same requests go through it here:
//!
//! - `probe_runs_in_the_host` (plain `cargo test`): in our wasmtime host. Besides running every line, it checks
//!   [`ENVOY_FACTS`], lines seen in Envoy 1.40 that pin down the semantics the host had wrong before this test
//!   existed, so they stay right without Envoy at hand.
//! - `probe_lines_match_real_envoy` (`make e2e`): in Envoy 1.40 (a fixed upstream, and a second one for the
//!   `callout` cluster), then in the host, and the lines must be equal: phase by phase, in order, and the
//!   order of each stream's callbacks too. Timer- and dispatcher-driven root phases (`tick`, `queue_ready`,
//!   `call_response`) are compared within themselves but not placed against the streams. The lines are
//!   written to `target/probe-envoy.txt` and `target/probe-host.txt` for reading.
//!
//! Envoy runs the plugin in several VMs (a configuration canary, a main-thread VM, one per worker); only the
//! worker's lines (the VM that served the requests) are compared. The probe keeps VMs apart itself (per-VM
//! shared-data keys, queue and metric names).
//!
//! ## What the host was found doing differently, and now does as Envoy
//!
//! Statuses: `proxy_log` with a bad level (BadArgument, was a trap); `proxy_done` (NotFound: nothing waits
//! for it); `proxy_continue_stream` upstream (Unimplemented) and downstream (Ok); `proxy_set_effective_context`
//! to the VM context 0 (Ok); `proxy_get_metric` of an unknown id of type 3 (BadArgument); gRPC calls to an
//! unknown cluster (ParseFailure), and send/cancel/close by token type (BadArgument or NotFound). Values:
//! every `proxy_define_metric` gets a new id (per VM, per type); the GrpcReceiveBuffer (5) is an empty
//! buffer; the CallData buffer (8) is the context's scratch buffer, the last buffer it read; results of a
//! failed foreign function are written (null, 0); HTTP callout tokens count by 4. Phases: the stream context
//! is created before its request headers exist; the request headers go when `proxy_on_request_headers`
//! returns Continue or on `proxy_continue_stream`, the response headers when `proxy_on_response_headers`
//! returns Continue (a local reply keeps the request headers: the callback is made to stop); `proxy_on_log`
//! reads the access log's headers and absent maps answer NotFound there; request attributes
//! (`request.path`, ...) follow the request headers; bodies are readable and writable only in their
//! callbacks, arrive as HTTP/1.1 delivers them (data, then an empty end of stream; in one chunk after
//! stopped headers), and local replies go through `proxy_on_response_body`; `proxy_set_buffer_bytes` at 0
//! drains the given size and prepends; `proxy_set_property` keeps the raw path and a NUL-separated path
//! finds nothing (Envoy looks the first segment up).
//!
//! ## What the comparison leaves out, and why
//!
//! | Envoy behaviour | the host | why it is not compared |
//! |---|---|---|
//! | In the body callback that ends the stream, the first write access to the trailers creates them, and Envoy then calls `proxy_on_request_trailers` | has no trailers (absent maps) | it changes the message; the probe touches trailers everywhere but in the body callbacks |
//! | Changing the request headers after the route is fixed (response phases of a local reply, `proxy_on_log`, `proxy_on_done`) clears the route cache and logs an ENVOY_BUG | the change applies to headers nobody reads | Envoy reports it as a bug; the probe changes the request headers only before the response |
//! | `date`, `server`, `connection` (connection manager) and `x-envoy-expected-rq-timeout-ms` (router) are added after the filter chain, seen by `proxy_on_log` only | not added | Envoy configuration, not the ABI: the probe leaves them out of header lists |
//! | Per-request values: `x-request-id`, `x-envoy-upstream-service-time`, `request.time`, the client port, CAS values, queue tokens, metric ids, the clock | virtual or fixed values | normalised by the probe (`<uuid>`, `<ms>`, `<int64>`, `<port>`, `nonzero`, `id&3=`, `plausible`) |
//! | What Envoy hands the filter: `x-forwarded-proto`, `x-request-id`, `content-length`, the router's `x-envoy-upstream-service-time`, `request.protocol`, `connection.mtls`, `source.address`, `plugin_name`/`plugin_root_id`, the info log level | whatever the test gives | the host test gives exactly these ([`envoy_request`], [`response_headers`]) |
//! | `proxy_send_local_response` sets proxy-wasm-cpp-host's stop-next-iteration flag even in a root context, where there is nothing to answer | no effect | probed only from a stream (`/probe/local`): from the root the flag could stop an unrelated request |
//! | `wasi proc_exit` logs and returns | traps | not called: Rust and C guests trap right after it anyway |
//! | A gRPC call to a cluster that exists starts | InternalFailure | not modelled; the probe calls an unknown cluster |
//!
//! [`DOCUMENTED`] lists the differences that are Envoy's documented behaviour rather than host bugs, left out
//! of the comparison line by line: none at present.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_iam_host::{Host, LogLevel, Outcome, RequestBuilder};
use agent_iam_tests::testbed::{self, Envoy, FixedUpstream};

fn probe_wasm() -> PathBuf {
    agent_iam_host::workspace_root().join("target/wasm32-wasip1/release/agent_iam_probe.wasm")
}

const UPSTREAM_HEADERS: &[(&str, &str)] = &[("content-type", "text/plain"), ("x-upstream", "fixed")];
const UPSTREAM_BODY: &[u8] = b"from-server";
const CALLOUT_HEADERS: &[(&str, &str)] = &[("content-type", "text/plain"), ("x-callout", "yes")];
const CALLOUT_BODY: &[u8] = b"callout!";
const REQUEST_BODY: &[u8] = b"hello";

/// One probe line without its VM number: `(phase, call|args|status|value)`.
type Line = (String, String);

/// The probe lines of one VM: the one that served the requests.
fn probe_lines(log: impl Iterator<Item = String>) -> Vec<Line> {
    let mut by_vm: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for l in log {
        let Some(at) = l.find("probe|") else { continue };
        let mut parts = l[at..].splitn(4, '|');
        let (_, vm, phase, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(vm), Some(phase), Some(rest)) = (vm, phase, rest) else { continue };
        by_vm.entry(vm.to_string()).or_default().push((phase.to_string(), rest.to_string()));
    }
    let served: Vec<_> =
        by_vm.into_iter().filter(|(_, lines)| lines.iter().any(|(p, _)| p == "main.request_headers")).collect();
    assert_eq!(served.len(), 1, "exactly one VM should have served the requests");
    served.into_iter().next().map(|(_, l)| l).unwrap_or_default()
}

/// What Envoy's router adds to an upstream (or callout) response before the filters see it.
const ROUTER_HEADERS: &[(&str, &str)] = &[("x-envoy-upstream-service-time", "1")];

/// The request Envoy hands the filter for `testbed::http_request(port, method, path, &[], body)`: the
/// client's `host` as `:authority`, `:scheme` and `x-forwarded-proto` from the plain-text listener, a
/// generated `x-request-id`; and the connection-level properties the probe reads.
fn envoy_request<'a>(vm: &'a mut agent_iam_host::Vm, method: &str, path: &str, body: &[u8]) -> RequestBuilder<'a> {
    let mut r = vm.request().method(method).path(path).authority("api.trading.example").scheme("http");
    if !body.is_empty() {
        r = r.header("content-length", &body.len().to_string());
    }
    r.header("x-forwarded-proto", "http")
        .header("x-request-id", "00000000-0000-4000-8000-000000000000")
        .property("request.protocol", "HTTP/1.1")
        .property("connection.mtls", [0u8])
        .property("source.address", "127.0.0.1:40000")
        .body(body)
}

/// A fixed upstream's response as the filter sees it (after Envoy's codec and router).
fn response_headers(headers: &[(&'static str, &'static str)], body: &'static [u8]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    h.push(("content-length".into(), body.len().to_string()));
    h.extend(ROUTER_HEADERS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn host_lines() -> Vec<Line> {
    let host = Host::from_file(probe_wasm()).expect("the probe .wasm (run `make wasm`)");
    let mut vm = host
        .vm()
        .vm_config("probe-vm-config")
        .plugin_config("probe-config")
        .log_level(LogLevel::Info)
        .clusters(["upstream", "callout"])
        .property("plugin_name", "probe")
        .property("plugin_root_id", "probe")
        .start()
        .unwrap();
    vm.tick();
    let upstream = response_headers(UPSTREAM_HEADERS, UPSTREAM_BODY);
    let upstream: Vec<(&str, &str)> = upstream.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let main = envoy_request(&mut vm, "POST", "/probe/main", REQUEST_BODY)
        .upstream_response(200, &upstream)
        .upstream_body(UPSTREAM_BODY)
        .send();
    let Outcome::Paused(pending) = main else { panic!("{main:?}") };
    let callouts = vm.pending_callouts();
    assert_eq!(callouts.len(), 1, "{callouts:?}");
    let c = &callouts[0];
    assert_eq!(
        (c.cluster.as_str(), c.header(":method"), c.header(":path")),
        ("callout", Some("POST"), Some("/callout"))
    );
    assert_eq!(c.body, b"ping");
    vm.dispatch_queues();
    let callout = response_headers(CALLOUT_HEADERS, CALLOUT_BODY);
    let callout: Vec<(&str, &str)> = callout.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vm.respond(callouts[0].token, 200, &callout, CALLOUT_BODY);
    let main = vm.resume(pending);
    assert!(main.is_allowed(), "{main:?}");
    let plain = envoy_request(&mut vm, "POST", "/probe/plain", REQUEST_BODY)
        .upstream_response(200, &upstream)
        .upstream_body(UPSTREAM_BODY)
        .send();
    assert!(plain.is_allowed(), "{plain:?}");
    let local = envoy_request(&mut vm, "GET", "/probe/local", b"").send();
    assert_eq!(local.status(), Some(403), "{local:?}");
    // The local reply's body as edited in on_response_body.
    assert!(matches!(&local, Outcome::LocalResponse { body, .. } if body == b"zzNIED BY PROBE"), "{local:?}");
    let close = envoy_request(&mut vm, "GET", "/probe/close", b"").send();
    assert_eq!(close.status(), Some(0), "reset: {close:?}");
    // Not assert_healthy: the probe logs at critical level on purpose.
    assert!(vm.trap().is_none(), "{}", vm.logs_text());
    probe_lines(vm.logs().iter().filter(|l| l.level == LogLevel::Info).map(|l| l.message.clone()))
}

fn envoy_config(listener: u16, admin: u16, upstream: u16, callout: u16) -> String {
    let wasm = probe_wasm();
    let cluster = |name: &str, port: u16| {
        format!(
            r#"
  - name: {name}
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"#
        )
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: probe
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listener} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: probe
          route_config:
            name: probe
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: probe
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: probe
                root_id: probe
                failure_policy: FAIL_CLOSED
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                  configuration:
                    "@type": type.googleapis.com/google.protobuf.StringValue
                    value: probe-vm-config
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: probe-config
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{}{}
"#,
        cluster("upstream", upstream),
        cluster("callout", callout),
        wasm = wasm.display(),
    )
}

fn envoy_lines() -> Vec<Line> {
    let upstream = FixedUpstream::start(0, 200, UPSTREAM_HEADERS, UPSTREAM_BODY, Duration::ZERO).unwrap();
    // The callout answers late, so the main request's body has arrived (and waits) before the response.
    let callout = FixedUpstream::start(0, 200, CALLOUT_HEADERS, CALLOUT_BODY, Duration::from_millis(300)).unwrap();
    let (listener, admin) = (testbed::free_port().unwrap(), testbed::free_port().unwrap());
    let config = envoy_config(listener, admin, upstream.port(), callout.port());
    let dir = agent_iam_host::workspace_root().join("target/e2e/probe");
    let envoy = Envoy::start(&testbed::envoy_binary(), &config, admin, &dir).unwrap();
    let main = testbed::http_request(listener, "POST", "/probe/main", &[], REQUEST_BODY).unwrap();
    assert_eq!(main.status, 200, "{}", envoy.log_tail(40));
    let plain = testbed::http_request(listener, "POST", "/probe/plain", &[], REQUEST_BODY).unwrap();
    assert_eq!(plain.status, 200, "{}", envoy.log_tail(40));
    let local = testbed::http_request(listener, "GET", "/probe/local", &[], b"").unwrap();
    assert_eq!(local.status, 403, "{}", envoy.log_tail(40));
    // The response bodies as edited in on_response_body.
    assert_eq!((main.body.as_slice(), plain.body.as_slice()), (&b"zzOM-SERVER"[..], &b"zzOM-SERVER"[..]));
    assert_eq!(local.body, b"zzNIED BY PROBE");
    let close = testbed::http_request(listener, "GET", "/probe/close", &[], b"");
    assert!(close.is_err(), "the stream is reset: {close:?}");
    // Wait for the last stream to be deleted and the tick.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let log = envoy.log();
        if log.contains("|close.delete|") && log.contains("|tick|args|") && log.contains("|queue_ready|args|") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the probe sent on: the callout as made, and both bodies as edited in on_request_body.
    let calls = callout.received();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str(), calls[0].body.as_slice()),
        ("POST", "/callout", &b"ping"[..])
    );
    let bodies: Vec<Vec<u8>> = upstream.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, vec![b"zzLLO".to_vec(), b"zzLLO".to_vec()]);
    probe_lines(envoy.log().lines().map(str::to_string))
}

/// A difference between Envoy and the host that is Envoy's documented behaviour rather than a host bug: in
/// the phases matching `phase` (`*` matches any text), lines whose `call|arguments|` start with `call` are
/// left out on both sides. An entry that no longer matches any line fails the test (remove it).
struct Documented {
    phase: &'static str,
    call: &'static str,
    why: &'static str,
}

/// None at present: every difference the probe found was a host bug, and is fixed (see the module docs).
const DOCUMENTED: &[Documented] = &[];

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.len() >= head.len() && text.starts_with(head) && {
                let rest = &text[head.len()..];
                (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
            }
        }
    }
}

fn documented(phase: &str, rest: &str) -> Option<usize> {
    DOCUMENTED.iter().position(|d| glob(d.phase, phase) && rest.starts_with(d.call))
}

/// Lines seen in Envoy 1.40, each one a semantic the host once had wrong (`(phase, call|args|status|value)`).
const ENVOY_FACTS: &[(&str, &str)] = &[
    // The stream context is created before Envoy hands over the request headers.
    ("unknown.create", "get_header_map_value|map=0,key=:path|bad_argument|unwritten"),
    // A body that waited behind stopped headers comes in one chunk; the headers are gone by then.
    ("main.request_body", "args|-|-|body_size=5,end_of_stream=1"),
    ("main.request_body", "get_header_map_value|map=0,key=:path|bad_argument|unwritten"),
    // Otherwise as HTTP/1.1 delivers it: the data, then an empty end of stream.
    ("plain.request_body", "args|-|-|body_size=5,end_of_stream=0"),
    ("plain.request_body", "args|-|-|body_size=0,end_of_stream=1"),
    // Buffer edits: at 0, drain the given size and prepend.
    ("plain.request_body", "get_buffer_bytes|buffer=0,start=0,max=max|ok|zzLLO"),
    // Stopped request headers stay readable from the callout response (through the effective context).
    ("main.call_response", "get_header_map_value|map=0,key=:path|ok|/probe/main"),
    // Request attributes follow the request headers; on_log reads the access log's, where absent maps are
    // NotFound.
    ("main.response_headers", "get_property|path=request.path|not_found|unwritten"),
    ("main.log", "get_property|path=request.path|ok|/probe/main"),
    ("main.log", "get_header_map_value|map=1,key=x-probe|not_found|unwritten"),
    // A local reply keeps the request headers and goes through on_response_body.
    ("local.response_headers", "get_header_map_value|map=0,key=:path|ok|/probe/local"),
    ("local.response_body", "args|-|-|body_size=15,end_of_stream=1"),
    // A NUL-separated property path is looked up by its first segment.
    ("main.request_headers", "get_property|path=probe.nested|not_found|unwritten"),
    // Statuses.
    ("vm_start", "log|level=6|bad_argument|-"),
    ("vm_start", "define_metric|type=0,name=counter,again|ok|new-id"),
    ("vm_start", "done|-|not_found|-"),
    ("vm_start", "continue_stream|stream=3|unimplemented|-"),
    ("vm_start", "set_effective_context|context=0|ok|-"),
    ("vm_start", "grpc_call|cluster=no_such_cluster|parse_failure|token=unwritten"),
    ("vm_start", "call_foreign_function|name=verify_signature,args=empty|bad_argument|\"\""),
    ("root_create", "get_buffer_bytes|buffer=8,start=0,max=max|ok|probe-config"),
    // proxy_close_stream resets the stream when the callback returns; on_log and on_done still run.
    ("close.log", "args|-|-|-"),
];

fn assert_facts(lines: &[Line], who: &str) {
    let missing: Vec<String> = ENVOY_FACTS
        .iter()
        .filter(|(phase, rest)| !lines.iter().any(|(p, r)| p == phase && r == rest))
        .map(|(phase, rest)| format!("  {phase}|{rest}"))
        .collect();
    assert!(missing.is_empty(), "{who} lacks lines Envoy 1.40 gives:\n{}", missing.join("\n"));
}

fn group(lines: &[Line]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (phase, rest) in lines {
        m.entry(phase.clone()).or_default().push(rest.clone());
    }
    m
}

/// Differences of two line lists, as `-envoy` / `+host` lines (a plain LCS diff).
fn diff(envoy: &[String], host: &[String]) -> Vec<String> {
    let (n, m) = (envoy.len(), host.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if envoy[i] == host[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && envoy[i] == host[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("  - envoy {}", envoy[i]));
            i += 1;
        } else {
            out.push(format!("  + host  {}", host[j]));
            j += 1;
        }
    }
    out
}

/// The order of the streams' callbacks: the phases of the `args` lines of stream phases (`<kind>.<phase>`).
fn stream_sequence(lines: &[Line]) -> Vec<&str> {
    lines.iter().filter(|(p, r)| p.contains('.') && r.starts_with("args|")).map(|(p, _)| p.as_str()).collect()
}

fn compare(envoy: &[Line], host: &[Line]) -> Vec<String> {
    let mut used = vec![false; DOCUMENTED.len()];
    let mut keep = |lines: &[Line]| -> Vec<Line> {
        lines
            .iter()
            .filter(|(p, r)| match documented(p, r) {
                Some(i) => {
                    used[i] = true;
                    false
                }
                None => true,
            })
            .cloned()
            .collect()
    };
    let (envoy, host) = (keep(envoy), keep(host));
    let mut report: Vec<String> = DOCUMENTED
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(d, _)| format!("stale documented difference {}|{} ({}): no line matches", d.phase, d.call, d.why))
        .collect();
    let (es, hs) = (stream_sequence(&envoy), stream_sequence(&host));
    if es != hs {
        report.push("order of the stream callbacks:".to_string());
        let (es, hs): (Vec<String>, Vec<String>) =
            (es.iter().map(|s| s.to_string()).collect(), hs.iter().map(|s| s.to_string()).collect());
        report.extend(diff(&es, &hs));
    }
    let (e, h) = (group(&envoy), group(&host));
    let phases: std::collections::BTreeSet<&String> = e.keys().chain(h.keys()).collect();
    for phase in phases {
        let empty = Vec::new();
        let (el, hl) = (e.get(phase).unwrap_or(&empty), h.get(phase).unwrap_or(&empty));
        let d = diff(el, hl);
        if !d.is_empty() {
            report.push(format!("{phase}:"));
            report.extend(d);
        }
    }
    report
}

#[test]
fn probe_runs_in_the_host() {
    let lines = host_lines();
    let text: String = lines.iter().map(|(p, r)| format!("{p}|{r}\n")).collect();
    std::fs::write(agent_iam_host::workspace_root().join("target/probe-host.txt"), text).unwrap();
    assert_facts(&lines, "the host");
    for phase in ["root_create", "vm_start", "configure", "tick", "queue_ready", "call_response", "close.done"] {
        assert!(lines.iter().any(|(p, _)| p == phase), "no {phase} lines");
    }
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run `make e2e`"]
fn probe_lines_match_real_envoy() {
    let started = Instant::now();
    let envoy = envoy_lines();
    let text: String = envoy.iter().map(|(p, r)| format!("{p}|{r}\n")).collect();
    std::fs::write(agent_iam_host::workspace_root().join("target/probe-envoy.txt"), text).unwrap();
    assert_facts(&envoy, "Envoy");
    let host = host_lines();
    let report = compare(&envoy, &host);
    assert!(report.is_empty(), "host and Envoy differ (-envoy +host):\n{}", report.join("\n"));
    eprintln!("{} probe lines agree, in {:?}", envoy.len(), started.elapsed());
}
