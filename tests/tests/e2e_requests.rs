//! Requests that a gateway and a common upstream could read differently, in real Envoy over HTTP/1.1 and
//! HTTP/2 (cleartext, prior knowledge): path parameters, method overrides, numbers, header whitespace and
//! method spelling over HTTP/2, host names with empty labels, credentials under encoded parameter names,
//! headers Envoy joins, and strict percent-decoding. Each class is refused, or decided and forwarded as it was
//! decided; the echo upstream reports exactly what it received.
//!
//! Two gateways, started once for the whole binary (one test function, since Envoy stops with the thread
//! that started it): the demo's defaults with Envoy's path normalisation, and one with the documented
//! options (`path_parameters: keep`, `method_override: evaluate`) and no normalisation in Envoy.
//!
//! Needs Envoy and the release `.wasm`: run by `make e2e`.

use agent_iam_tests::demo::{self, DemoKeys, DemoTokens, Gateway, Ports};
use agent_iam_tests::h2;
use agent_iam_tests::testbed::{self, HttpResponse};
use serde_json::{Value, json};

const EXTRA_RULES: &str = r#""rules": [
  {"id": "own-account", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/accounts/{acct}"],
   "when": {"path": {"acct": {"equals": {"claim": "account_id"}}}}},
  {"id": "sanctions", "effect": "deny", "agents": ["*"], "when": {"headers": {"x-country": {"exists": true, "in": ["KP", "IR"]}}}},
  {"id": "no-bad-bot", "effect": "deny", "agents": ["*"], "when": {"headers": {"user-agent": {"exists": true, "equals": "badbot/1.0"}}}},
  {"id": "no-admin-host", "effect": "deny", "agents": ["*"], "hosts": ["admin.test.example", "*.admin.test.example"]},
  {"id": "small-reports", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/reports"],
   "when": {"query": {"limit": {"lte": 100}}}},
  {"id": "patient-records", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/patients/{p}/records/{year}"]},
  {"id": "records-2026-sealed", "effect": "deny", "agents": ["*"], "paths": ["/patients/{p}/records/2026"]},"#;

/// The demo configuration with the rules above, a query token source, and credentials kept from the upstream;
/// `options` is inserted at the top level of the plugin configuration.
fn config(options: &str, envoy_normalises: bool) -> impl FnOnce(String) -> String {
    let options = options.to_owned();
    move |config: String| {
        let mut out = config
            // One line: the configuration is a YAML block scalar, whose indentation a line break would end.
            .replacen(r#""rules": ["#, &EXTRA_RULES.replace('\n', " "), 1)
            .replacen(
                r#""forward": {"filter_state": true},"#,
                &format!(
                    r#""forward": {{"filter_state": true, "credential": false}}, "token_sources": [{{"header": "authorization", "prefix": "Bearer "}}, {{"query": "access_token"}}], {options}"#
                ),
                1,
            );
        if !envoy_normalises {
            out = out.replacen("normalize_path: true", "normalize_path: false", 1).replacen(
                "merge_slashes: true",
                "merge_slashes: false",
                1,
            );
        }
        assert!(out.contains("own-account") && out.contains(r#""query": "access_token""#), "the demo config changed");
        out
    }
}

struct Client<'a> {
    port: u16,
    bearer: &'a str,
}

/// What a response says, whichever protocol carried it: the status, the denial reason (from the body's
/// description) or, for an allow, the method and path the upstream received.
#[derive(Debug)]
struct Seen {
    status: u16,
    body: Value,
}

impl Seen {
    fn upstream_method(&self) -> &str {
        self.body["method"].as_str().unwrap_or_default()
    }
    fn upstream_path(&self) -> &str {
        self.body["path"].as_str().unwrap_or_default()
    }
    fn upstream_header(&self, name: &str) -> Vec<&str> {
        self.body["headers"]
            .as_array()
            .map(|h| h.iter().filter(|p| p[0] == name).filter_map(|p| p[1].as_str()).collect())
            .unwrap_or_default()
    }
    fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or_default()
    }
}

impl From<HttpResponse> for Seen {
    fn from(r: HttpResponse) -> Seen {
        Seen { status: r.status, body: r.json() }
    }
}

impl From<h2::H2Response> for Seen {
    fn from(r: h2::H2Response) -> Seen {
        Seen { status: r.status, body: r.json() }
    }
}

impl Client<'_> {
    fn h1(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> Seen {
        self.h1_to("api.trading.example", method, path, extra)
    }

    fn h1_to(&self, host: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> Seen {
        let mut headers = vec![("authorization", self.bearer)];
        headers.extend_from_slice(extra);
        let body: &[u8] = if method.eq_ignore_ascii_case("POST") { b"{}" } else { b"" };
        testbed::http_request_to(self.port, host, method, path, &headers, body).unwrap().into()
    }

    fn h2(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> Seen {
        self.h2_to("api.trading.example", method, path, extra)
    }

    fn h2_to(&self, authority: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> Seen {
        let mut fields = vec![
            (":method", method),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
            ("authorization", self.bearer),
        ];
        fields.extend_from_slice(extra);
        h2::request(self.port, &fields, b"").unwrap().into()
    }
}

#[track_caller]
fn refused(seen: &Seen, status: u16, description: &str, what: &str) {
    assert_eq!(seen.status, status, "{what}: {seen:?}");
    assert!(seen.description().contains(description), "{what}: {seen:?}");
}

#[track_caller]
fn denied_by(seen: &Seen, rule: &str, what: &str) {
    assert_eq!(seen.status, 403, "{what}: {seen:?}");
    assert_eq!(seen.body["rule"], rule, "{what}: {seen:?}");
}

#[test]
#[ignore = "needs Envoy and the release .wasm: run `make e2e`"]
fn requests_read_two_ways_are_refused_or_decided_as_forwarded_in_real_envoy() {
    let keys = DemoKeys::generate().unwrap();
    let now = demo::now();
    let tokens = DemoTokens::mint(&keys, now, 600);
    let work = |name: &str| agent_iam_host::workspace_root().join("target/e2e").join(name);
    let strict =
        Gateway::start_with(&keys, Ports::free().unwrap(), &work("requests-defaults"), config("", true)).unwrap();
    let lenient = Gateway::start_with(
        &keys,
        Ports::free().unwrap(),
        &work("requests-options"),
        config(r#""request": {"path_parameters": "keep", "method_override": "evaluate"},"#, false),
    )
    .unwrap();
    let bearer = format!("Bearer {}", tokens.trader);
    let log = |g: &Gateway| g.envoy.log_tail(20);

    // ---- Defaults (Envoy normalises paths) ----
    let c = Client { port: strict.ports.listener, bearer: &bearer };

    // 1. Path parameters in any segment: refused.
    for path in ["/admin;x=1/users", "/admin;/users", "/admin;jsessionid=0123", "/patients/42/records;x=1/2026"] {
        refused(&c.h1("GET", path, &[]), 400, "path parameters", path);
        refused(&c.h2("GET", path, &[]), 400, "path parameters", path);
    }
    let seen = c.h1("GET", "/patients/42/records/2025", &[]);
    assert_eq!(seen.status, 200, "{seen:?}");
    denied_by(&c.h1("GET", "/patients/42/records/2026", &[]), "records-2026-sealed", "sanity");

    // 2. Method overrides: refused in every spelling.
    for (name, value) in
        [("x-http-method-override", "DELETE"), ("x-method-override", "DELETE"), ("x-http-method", "PUT")]
    {
        refused(&c.h1("POST", "/orders", &[(name, value)]), 400, "method override", name);
        refused(&c.h2("POST", "/orders", &[(name, value)]), 400, "method override", name);
    }
    refused(&c.h1("POST", "/orders", &[("X_HTTP_Method_Override", "DELETE")]), 400, "method override", "underscores");
    for path in ["/orders?_method=DELETE", "/orders?%5Fmethod=DELETE", "/orders?_%6Dethod=delete"] {
        refused(&c.h1("POST", path, &[]), 400, "method override", path);
    }
    assert_eq!(c.h1("POST", "/orders?symbol=ACME", &[]).status, 200, "{}", log(&strict));

    // 3. Numbers compare exactly: 2^53 and 2^53 + 1 are one f64.
    let mut claims =
        json!({"iss": demo::ISSUER, "aud": demo::AUDIENCE, "sub": demo::TRADER, "iat": now, "exp": now + 600});
    claims["account_id"] = json!(9_007_199_254_740_993u64);
    let account = format!("Bearer {}", keys.es256.sign_jwt(Some(demo::ES256_KID), &claims));
    let a = Client { port: c.port, bearer: &account };
    assert_eq!(a.h1("GET", "/accounts/9007199254740992", &[]).status, 403);
    assert_eq!(a.h1("GET", "/accounts/9007199254740993", &[]).status, 200, "{}", log(&strict));
    assert_eq!(a.h1("GET", "/accounts/9007199254740993.0", &[]).status, 200);
    assert_eq!(a.h1("GET", "/accounts/9.007199254740993e15", &[]).status, 403);

    // 4. Whitespace around header values (kept by Envoy over HTTP/2), and the method's spelling over HTTP/2.
    for value in [" KP", "KP ", "\tKP", "KP\t"] {
        denied_by(&c.h2("POST", "/orders", &[("x-country", value)]), "sanctions", &format!("h2 {value:?}"));
        denied_by(&c.h1("POST", "/orders", &[("x-country", value)]), "sanctions", &format!("h1 {value:?}"));
    }
    let seen = c.h2("post", "/orders", &[]);
    assert_eq!((seen.status, seen.upstream_method()), (200, "POST"), "{seen:?}");

    // 5. Host names with empty labels, and forms of IPv4 other software reads as another address.
    for host in ["admin.test.example..", ".admin.test.example", "x..admin.test.example", "127.1"] {
        refused(&c.h1_to(host, "POST", "/orders", &[]), 400, "host is malformed", host);
        refused(&c.h2_to(host, "POST", "/orders", &[]), 400, "host is malformed", host);
    }
    denied_by(&c.h1_to("admin.test.example.", "POST", "/orders", &[]), "no-admin-host", "trailing dot");
    denied_by(&c.h2_to("API.ADMIN.test.example", "POST", "/orders", &[]), "no-admin-host", "upper case");

    // 6. A credential under an encoded parameter name is a credential: two of them are a 400, and the only
    //    one is found and not forwarded.
    let other = DemoTokens::mint(&keys, now, 300).research;
    refused(&c.h1("POST", &format!("/orders?access%5Ftoken={other}"), &[]), 400, "more than one credential", "two");
    let path = format!("/orders?x=1&access%5Ftoken={}&y=2", tokens.trader);
    let seen: Seen = testbed::http_request(c.port, "POST", &path, &[], b"{}").unwrap().into();
    assert_eq!((seen.status, seen.upstream_path()), (200, "/orders?x=1&y=2"), "{seen:?}");

    // 7. Headers Envoy joins into one comma-separated value: a deny rule fires on any element.
    let joined = c.h1("POST", "/orders", &[("user-agent", "curl/8.0"), ("user-agent", "badbot/1.0")]);
    denied_by(&joined, "no-bad-bot", "two user-agent headers");
    let joined = c.h2("POST", "/orders", &[("user-agent", "curl/8.0"), ("user-agent", "badbot/1.0")]);
    denied_by(&joined, "no-bad-bot", "two user-agent fields");
    denied_by(&c.h1("POST", "/orders", &[("x-country", "US, KP")]), "sanctions", "a list in one header");

    // 8. One strict percent-decoder: a sign in an escape is not hex, wherever it is.
    for path in ["/reports?%+41ccess_token=x&limit=5", "/reports?limit=5&%-1=x", "/reports?limit=5&a%4="] {
        refused(&c.h1("GET", path, &[]), 400, "malformed parameter name", path);
    }
    assert_eq!(c.h1("GET", "/reports?limit=100", &[]).status, 200, "{}", log(&strict));
    for path in ["/reports?limit=101", "/reports?limit=1e1", "/reports?limit=%+31", "/reports?limit=0100"] {
        assert_eq!(c.h1("GET", path, &[]).status, 403, "{path}");
    }

    // ---- Options (`keep`, `evaluate`), Envoy without path normalisation ----
    let c = Client { port: lenient.ports.listener, bearer: &bearer };
    for path in ["/admin;x=1/users", "/admin;/users", "/admin;jsessionid=0123"] {
        denied_by(&c.h1("GET", path, &[]), "no-admin", path);
        denied_by(&c.h2("GET", path, &[]), "no-admin", path);
    }
    denied_by(&c.h1("GET", "/patients/42/records;x=1/2026", &[]), "records-2026-sealed", "a template");
    let seen = c.h1("POST", "/orders;v=2/7", &[]);
    assert_eq!((seen.status, seen.upstream_path()), (200, "/orders;v=2/7"), "{seen:?} {}", log(&lenient));
    let seen = c.h2("post", "//orders;v=2/./8", &[]);
    assert_eq!((seen.status, seen.upstream_method(), seen.upstream_path()), (200, "POST", "/orders;v=2/8"), "{seen:?}");
    // The trader may POST orders, not DELETE them: through POST with an override neither.
    assert_eq!(c.h1("POST", "/orders/7", &[("x-http-method-override", "DELETE")]).status, 403);
    assert_eq!(c.h2("POST", "/orders/7?_method=DELETE", &[]).status, 403);
    let seen = c.h1("POST", "/orders/7", &[("x-http-method-override", "POST")]);
    assert_eq!((seen.status, seen.upstream_header("x-http-method-override")), (200, vec!["POST"]), "{seen:?}");
}
