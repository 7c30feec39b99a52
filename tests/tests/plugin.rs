//! The real agent-iam `.wasm`, run by the proxy-wasm host the way Envoy runs it: every test sends
//! requests through the plugin and checks what Envoy would see at the boundary (the local reply, or
//! the request headers forwarded upstream).
//!
//! Build the plugin first: `cargo build -p agent-iam --target wasm32-wasip1 --release`.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::b64;
use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Host, LogLevel, Outcome, RequestBuilder, Vm};
use agent_iam_tests::HOST;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fixture: one compiled plugin, one trust configuration, keys and tokens.
// ---------------------------------------------------------------------------------------------

/// The VM clock, fixed: every token time below is relative to it.
const NOW: u64 = 1_900_000_000;
/// Default token expiry.
const EXP: u64 = NOW + 600;
/// The issuer's tolerated clock skew.
const SKEW: u64 = 30;

const REALM: &str = "trading-api";
const ISSUER: &str = "https://issuer.trading.example";
const AUDIENCE: &str = "orders-api";
const REQUEST_ID: &str = "req-7f3a";

const TRADER: &str = "spiffe://trading.example/agent/trader";
const READER: &str = "spiffe://trading.example/agent/reader";
const ADMIN: &str = "spiffe://trading.example/agent/admin";
const ALICE: &str = "user:alice@trading.example";

/// The issuer's ES256 key (kid `es`).
static ES256: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::ES256, 1));
/// The issuer's EdDSA key (kid `ed`).
static EDDSA: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::EdDSA, 2));

fn key(alg: Algorithm, seed: u8) -> SigningKey {
    SigningKey::from_seed(alg, [seed; 32]).expect("valid seed")
}

/// One issuer with both keys, and the trading policy:
/// - `trader-orders`: the trader may GET and POST under `/orders`;
/// - `agents-read-quotes`: any trading agent may GET under `/quotes`;
/// - `admin-everything`: the admin agent may do anything;
/// - `no-admin-console`: nobody reaches `/admin` (deny overrides allow).
fn config() -> Value {
    json!({
        "realm": REALM,
        "issuers": [{
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "algorithms": ["ES256", "EdDSA"],
            "clock_skew_seconds": SKEW,
            "jwks": {"keys": [ES256.public_jwk(Some("es")), EDDSA.public_jwk(Some("ed"))]}
        }],
        "policy": {"rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["GET", "POST"],
             "paths": ["/orders/**"]},
            {"id": "agents-read-quotes", "effect": "allow", "agents": ["spiffe://trading.example/agent/*"],
             "methods": ["GET"], "paths": ["/quotes/**"]},
            {"id": "admin-everything", "effect": "allow", "agents": [ADMIN]},
            {"id": "no-admin-console", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}
        ]}
    })
}

/// A VM (an Envoy worker) configured with `config`, its clock at [`NOW`].
fn start(config: &Value) -> Vm {
    HOST.vm()
        .plugin_config(config.to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("the plugin did not start: {e:#}"))
}

/// A VM with the standard [`config`].
fn gateway() -> Vm {
    start(&config())
}

/// Claims of a valid token for `sub`.
fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": NOW - 60, "exp": EXP})
}

/// An ES256 token signed by the issuer.
fn es256(claims: &Value) -> String {
    ES256.sign_jwt(Some("es"), claims)
}

/// An EdDSA token signed by the issuer.
fn eddsa(claims: &Value) -> String {
    EDDSA.sign_jwt(Some("ed"), claims)
}

/// A request as a client sends it to the gateway (with an `x-request-id` set by the edge).
fn request(vm: &mut Vm) -> RequestBuilder<'_> {
    vm.request().authority("api.trading.example").header("x-request-id", REQUEST_ID)
}

trait Bearer {
    fn bearer(self, token: &str) -> Self;
}

impl Bearer for RequestBuilder<'_> {
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }
}

/// `method path` with `token`, through the plugin.
fn send(vm: &mut Vm, method: &str, path: &str, token: &str) -> Outcome {
    request(vm).method(method).path(path).bearer(token).send()
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// The request was forwarded with exactly one of each identity header, carrying the verified values.
#[track_caller]
fn assert_forwarded(o: &Outcome, agent: &str, subject: &str, rule: &str) {
    assert!(o.is_allowed(), "expected the request to be forwarded, got {o:#?}");
    for (name, want) in [
        ("x-agent-iam-agent", agent),
        ("x-agent-iam-subject", subject),
        ("x-agent-iam-issuer", ISSUER),
        ("x-agent-iam-rule", rule),
    ] {
        assert_eq!(o.header_all(name), [want], "forwarded {name} in {o:#?}");
    }
}

/// The request was answered locally with `status` and the JSON body `{error, error_description,
/// request_id}`; returns the body for further checks.
#[track_caller]
fn assert_denied(o: &Outcome, status: u16, error: &str, description: &str) -> Value {
    assert_eq!(o.status(), Some(status), "status in {o:#?}");
    assert_eq!(o.header("content-type"), Some("application/json"));
    let body = o.body_json();
    assert_eq!(body["error"], error, "body {body}");
    assert_eq!(body["error_description"], description, "body {body}");
    assert_eq!(body["request_id"], REQUEST_ID, "body {body}");
    body
}

/// 401 `invalid_token` with `description` in the body and (quotes made safe) in the challenge.
#[track_caller]
fn assert_invalid_token(o: &Outcome, description: &str) {
    assert_denied(o, 401, "invalid_token", description);
    assert_eq!(o.header("www-authenticate"), Some(challenge("invalid_token", description).as_str()));
}

/// 403 `insufficient_scope` because no rule allows the request.
#[track_caller]
fn assert_no_rule_allows(o: &Outcome) {
    let body = assert_denied(o, 403, "insufficient_scope", "no rule allows this request");
    assert_eq!(body.get("rule"), None, "no rule is named when none matched: {body}");
    assert_eq!(
        o.header("www-authenticate"),
        Some(challenge("insufficient_scope", "no rule allows this request").as_str())
    );
}

/// 400 `invalid_request` (no challenge: the credentials are not the problem).
#[track_caller]
fn assert_bad_request(o: &Outcome, description: &str) {
    assert_denied(o, 400, "invalid_request", description);
    assert_eq!(o.header("www-authenticate"), None, "a 400 carries no challenge");
}

/// The RFC 6750 challenge with error attributes (`"` in the description becomes `'`).
fn challenge(error: &str, description: &str) -> String {
    format!(r#"Bearer realm="{REALM}", error="{error}", error_description="{}""#, description.replace('"', "'"))
}

/// The last error the plugin logged.
fn last_error_log(vm: &Vm) -> String {
    vm.logs().iter().rev().find(|l| l.level == LogLevel::Error).map(|l| l.message.clone()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Allowed requests and forwarded identity
// ---------------------------------------------------------------------------------------------

#[test]
fn es256_token_is_forwarded_with_the_verified_identity() {
    let mut vm = gateway();
    let token = es256(&claims(TRADER));
    let o = send(&mut vm, "POST", "/orders/7", &token);
    assert_forwarded(&o, TRADER, TRADER, "trader-orders");
    assert_eq!(o.header("authorization"), Some(format!("Bearer {token}").as_str()), "credentials pass through");
    assert_eq!(o.header("x-request-id"), Some(REQUEST_ID));
    vm.assert_healthy();
}

#[test]
fn eddsa_token_is_forwarded_with_the_verified_identity() {
    let mut vm = gateway();
    let o = send(&mut vm, "GET", "/quotes/ACME", &eddsa(&claims(READER)));
    assert_forwarded(&o, READER, READER, "agents-read-quotes");
    vm.assert_healthy();
}

#[test]
fn client_sent_identity_headers_are_replaced_by_the_verified_ones() {
    let mut vm = gateway();
    let o = request(&mut vm)
        .method("POST")
        .path("/orders")
        .header("x-agent-iam-agent", ADMIN)
        .header("X-Agent-Iam-Subject", ADMIN)
        .header("x_agent_iam_agent", ADMIN)
        .header("X-AGENT-IAM-RULE", "admin-everything")
        .header("x-agent-iam-issuer", "https://evil.example")
        .header("x-agent-iam-agent", ADMIN)
        .header("x-agent-iam-extra", "smuggled")
        .bearer(&es256(&claims(TRADER)))
        .send();
    assert_forwarded(&o, TRADER, TRADER, "trader-orders");
    let Outcome::Continued { request_headers, .. } = &o else { unreachable!() };
    let mut identity: Vec<(&str, &str)> = request_headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-").starts_with("x-agent-iam-"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    identity.sort();
    assert_eq!(
        identity,
        [
            ("x-agent-iam-agent", TRADER),
            ("x-agent-iam-issuer", ISSUER),
            ("x-agent-iam-rule", "trader-orders"),
            ("x-agent-iam-subject", TRADER),
        ],
        "only the plugin's own identity headers are forwarded"
    );
    assert!(!request_headers.iter().any(|(_, v)| v == ADMIN || v == "smuggled"), "{request_headers:?}");
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Authentication: 401 and the challenge
// ---------------------------------------------------------------------------------------------

#[test]
fn no_token_gets_a_challenge_without_error_attributes() {
    let mut vm = gateway();
    let expected = format!(r#"Bearer realm="{REALM}""#);
    let missing = request(&mut vm).method("GET").path("/orders").send();
    let basic = request(&mut vm).method("GET").path("/orders").header("authorization", "Basic dHJhZGVyOnB3").send();
    let empty = request(&mut vm).method("GET").path("/orders").header("authorization", "Bearer ").send();
    for o in [&missing, &basic, &empty] {
        assert_denied(o, 401, "missing_token", "a bearer token is required");
        assert_eq!(o.header("www-authenticate"), Some(expected.as_str()));
    }
    vm.assert_healthy();
}

#[test]
fn request_id_is_echoed_only_when_it_is_safe() {
    let mut vm = gateway();
    let o = vm.request().path("/orders").header("x-request-id", "abc 123").send();
    assert_eq!(o.status(), Some(401));
    assert_eq!(o.body_json()["request_id"], "", "an id with a space is not echoed");
    let o = vm.request().path("/orders").header("x-request-id", &"a".repeat(129)).send();
    assert_eq!(o.body_json()["request_id"], "", "an over-long id is not echoed");
    vm.assert_healthy();
}

#[test]
fn forged_signature_is_rejected() {
    let mut vm = gateway();
    // Signed by an attacker's key under the issuer's kid.
    let forged = key(Algorithm::ES256, 9).sign_jwt(Some("es"), &claims(TRADER));
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &forged), "signature verification failed");

    // A genuine reader token with its payload swapped for the admin's.
    let genuine = es256(&claims(READER));
    let parts: Vec<&str> = genuine.split('.').collect();
    let payload = b64::encode(claims(ADMIN).to_string().as_bytes());
    let spliced = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &spliced), "signature verification failed");

    // An EdDSA signature presented under the ES256 key's kid.
    let mismatched = EDDSA.sign_jwt(Some("es"), &claims(TRADER));
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &mismatched), "no matching key for this token");
    vm.assert_healthy();
}

#[test]
fn expiry_is_exact_at_exp_plus_skew() {
    let mut vm = gateway();
    let token = es256(&claims(TRADER));
    let at = |vm: &mut Vm, t: u64| {
        vm.set_time(UNIX_EPOCH + Duration::from_secs(t));
        send(vm, "GET", "/orders", &token)
    };
    assert_forwarded(&at(&mut vm, EXP - 1), TRADER, TRADER, "trader-orders");
    assert_forwarded(&at(&mut vm, EXP + SKEW - 1), TRADER, TRADER, "trader-orders");
    assert_invalid_token(&at(&mut vm, EXP + SKEW), "token has expired");
    vm.assert_healthy();
}

#[test]
fn token_for_another_audience_is_rejected() {
    let mut vm = gateway();
    let mut c = claims(TRADER);
    c["aud"] = json!(["billing-api", "payments-api"]);
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &es256(&c)), "token audience not accepted");
    vm.assert_healthy();
}

#[test]
fn token_from_an_unknown_issuer_is_rejected() {
    let mut vm = gateway();
    let mut c = claims(TRADER);
    c["iss"] = json!("https://issuer.evil.example");
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &es256(&c)), "unknown issuer");
    vm.assert_healthy();
}

#[test]
fn alg_none_is_rejected() {
    let mut vm = gateway();
    let header = json!({"alg": "none", "typ": "JWT"});
    let signed = ES256.sign_jwt_with_header(&header, &claims(TRADER));
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &signed), "unsupported signing algorithm");

    // The classic form: an empty signature segment.
    let (input, _) = signed.rsplit_once('.').expect("three segments");
    let unsigned = format!("{input}.");
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &unsigned), "malformed token: empty segment");
    vm.assert_healthy();
}

#[test]
fn jku_header_is_rejected() {
    let mut vm = gateway();
    let header = json!({"alg": "ES256", "kid": "es", "jku": "https://evil.example/jwks.json"});
    let token = ES256.sign_jwt_with_header(&header, &claims(TRADER));
    let o = send(&mut vm, "GET", "/orders", &token);
    assert_invalid_token(&o, r#"token header member "jku" is not accepted"#);
    assert_eq!(
        o.header("www-authenticate"),
        Some(
            r#"Bearer realm="trading-api", error="invalid_token", error_description="token header member 'jku' is not accepted""#
        )
    );
    vm.assert_healthy();
}

#[test]
fn oversized_token_is_rejected() {
    let mut vm = gateway();
    let mut c = claims(TRADER);
    c["padding"] = json!("x".repeat(9000));
    assert_invalid_token(&send(&mut vm, "GET", "/orders", &es256(&c)), "token is larger than allowed");
    vm.assert_healthy();
}

#[test]
fn two_authorization_headers_are_a_bad_request() {
    let mut vm = gateway();
    let o = request(&mut vm)
        .method("GET")
        .path("/orders")
        .bearer(&es256(&claims(TRADER)))
        .bearer(&es256(&claims(ADMIN)))
        .send();
    assert_bad_request(&o, "more than one credential in the request");
    vm.assert_healthy();
}

/// The response code details Envoy records for a local reply (`%RESPONSE_CODE_DETAILS%`).
fn details(o: &Outcome) -> &str {
    match o {
        Outcome::LocalResponse { details, .. } => details,
        _ => "",
    }
}

#[test]
fn denials_carry_response_code_details() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    assert_eq!(details(&request(&mut vm).path("/orders").send()), "agent_iam.missing_token");
    assert_eq!(details(&send(&mut vm, "GET", "/accounts", &trader)), "agent_iam.no_rule_allows");
    assert_eq!(details(&send(&mut vm, "GET", "/admin", &trader)), "agent_iam.denied_by_rule");
    assert_eq!(details(&send(&mut vm, "GET", "/a%2Fb", &trader)), "agent_iam.ambiguous_path");
    vm.set_time(UNIX_EPOCH + Duration::from_secs(EXP + SKEW));
    assert_eq!(details(&send(&mut vm, "GET", "/orders", &trader)), "agent_iam.expired");
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Authorisation: 403 and the policy
// ---------------------------------------------------------------------------------------------

#[test]
fn other_path_method_or_agent_is_forbidden() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    let reader = es256(&claims(READER));
    assert_no_rule_allows(&send(&mut vm, "GET", "/accounts", &trader));
    assert_no_rule_allows(&send(&mut vm, "GET", "/orders-old", &trader)); // prefixes match whole segments
    assert_no_rule_allows(&send(&mut vm, "DELETE", "/orders/7", &trader));
    assert_no_rule_allows(&send(&mut vm, "POST", "/orders", &reader));
    assert_no_rule_allows(&send(&mut vm, "POST", "/quotes", &reader));
    vm.assert_healthy();
}

#[test]
fn deny_rule_overrides_allow_and_is_named() {
    let mut vm = gateway();
    let admin = es256(&claims(ADMIN));
    let o = send(&mut vm, "GET", "/admin/users", &admin);
    let body = assert_denied(&o, 403, "insufficient_scope", r#"denied by rule "no-admin-console""#);
    assert_eq!(body["rule"], "no-admin-console");
    assert_eq!(
        o.header("www-authenticate"),
        Some(
            r#"Bearer realm="trading-api", error="insufficient_scope", error_description="denied by rule 'no-admin-console'""#
        )
    );
    // The same agent elsewhere is allowed by its own rule.
    assert_forwarded(&send(&mut vm, "DELETE", "/orders/7", &admin), ADMIN, ADMIN, "admin-everything");
    vm.assert_healthy();
}

#[test]
fn delegation_is_authorised_as_the_actor() {
    let mut vm = gateway();
    let mut c = claims(ALICE);
    c["act"] = json!({"sub": TRADER});
    assert_forwarded(&send(&mut vm, "POST", "/orders", &es256(&c)), TRADER, ALICE, "trader-orders");
    // Alice herself is no agent the policy knows.
    assert_no_rule_allows(&send(&mut vm, "POST", "/orders", &es256(&claims(ALICE))));
    vm.assert_healthy();
}

#[test]
fn a_nested_earlier_actor_grants_nothing() {
    let mut vm = gateway();
    let mut c = claims(ALICE);
    c["act"] = json!({"sub": READER, "act": {"sub": ADMIN}});
    let token = es256(&c);
    // The admin would be allowed; the current actor, the reader, is not.
    assert_no_rule_allows(&send(&mut vm, "DELETE", "/orders/7", &token));
    assert_forwarded(&send(&mut vm, "GET", "/quotes", &token), READER, ALICE, "agents-read-quotes");
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Request canonicalisation
// ---------------------------------------------------------------------------------------------

#[test]
fn equivalent_paths_are_judged_as_the_canonical_one() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    for path in ["//orders", "/x/../orders", "/%2e%2e/orders", "/./orders/7", "/%6Frders", "/orders?next=/admin"] {
        let o = send(&mut vm, "POST", path, &trader);
        assert!(o.is_allowed(), "{path}: {o:#?}");
        assert_forwarded(&o, TRADER, TRADER, "trader-orders");
    }
    // The same spellings cannot reach what the canonical path forbids.
    let admin = es256(&claims(ADMIN));
    for path in ["//admin", "/orders/../admin", "/%2e%2e/admin/users", "/%61dmin", "/admin?x=/orders"] {
        let o = send(&mut vm, "GET", path, &admin);
        assert_eq!(o.body_json()["rule"], "no-admin-console", "{path}: {o:#?}");
        assert_eq!(o.status(), Some(403), "{path}");
    }
    let reader = es256(&claims(READER));
    assert_no_rule_allows(&send(&mut vm, "GET", "/quotes/../orders", &reader));
    vm.assert_healthy();
}

#[test]
fn ambiguous_paths_are_a_bad_request() {
    let mut vm = gateway();
    let admin = es256(&claims(ADMIN));
    for path in ["/orders%2F7", "/orders%2f7", "/orders%5C7", "/orders\\7", "/orders%00", "/orders#frag", "/a%23b"] {
        let o = send(&mut vm, "GET", path, &admin);
        assert_bad_request(&o, "request path contains an ambiguous encoding");
    }
    assert_bad_request(&send(&mut vm, "GET", "/orders%zz", &admin), "request path is malformed");
    assert_bad_request(&send(&mut vm, "GET", "*", &admin), "request has no origin-form path");
    vm.assert_healthy();
}

#[test]
fn methods_are_compared_upper_cased_and_connect_is_refused() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    assert_forwarded(&send(&mut vm, "post", "/orders", &trader), TRADER, TRADER, "trader-orders");
    assert_no_rule_allows(&send(&mut vm, "delete", "/orders/7", &trader));
    let admin = es256(&claims(ADMIN));
    for method in ["CONNECT", "connect", "GE T"] {
        let o = send(&mut vm, method, "/orders", &admin);
        assert_bad_request(&o, "request method is not supported");
    }
    vm.assert_healthy();
}

/// The request classes a gateway and an upstream could read two ways (issue 15), through the real `.wasm`:
/// refused by default, and what is forwarded is what was decided on.
#[test]
fn requests_read_two_ways_are_refused_or_forwarded_as_decided() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    for path in ["/admin;x=1/users", "/orders;jsessionid=1", "/orders/7;v=2"] {
        assert_bad_request(&send(&mut vm, "GET", path, &trader), "request path has path parameters (;)");
    }
    for (name, value) in [("x-http-method-override", "DELETE"), ("X_Method_Override", "DELETE")] {
        let o = request(&mut vm).method("POST").path("/orders").bearer(&trader).header(name, value).send();
        assert_bad_request(&o, "request carries a method override");
    }
    assert_bad_request(
        &send(&mut vm, "POST", "/orders?%5Fmethod=DELETE", &trader),
        "request carries a method override",
    );
    for host in ["admin.trading.example..", ".admin.trading.example", "127.1"] {
        let o = vm
            .request()
            .authority(host)
            .header("x-request-id", REQUEST_ID)
            .method("POST")
            .path("/orders")
            .bearer(&trader)
            .send();
        assert_bad_request(&o, "request host is malformed");
    }
    // The method forwarded is the one decided on, whatever the client's spelling.
    let o = send(&mut vm, "post", "/orders", &trader);
    assert_forwarded(&o, TRADER, TRADER, "trader-orders");
    assert_eq!(o.header(":method"), Some("POST"), "{o:#?}");
    vm.assert_healthy();

    // With the options: decided on the path without its parameters, forwarded with them.
    let mut options = config();
    options["request"] = json!({"path_parameters": "keep", "method_override": "evaluate"});
    let mut vm = start(&options);
    let admin = es256(&claims(ADMIN));
    let o = send(&mut vm, "GET", "/admin;x=1/users", &admin);
    assert_eq!((o.status(), o.body_json()["rule"].as_str()), (Some(403), Some("no-admin-console")), "{o:#?}");
    let o = send(&mut vm, "POST", "//orders;v=2/./7", &trader);
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header(":path"), Some("/orders;v=2/7"));
    let o = request(&mut vm)
        .method("POST")
        .path("/orders/7")
        .bearer(&trader)
        .header("x-http-method-override", "DELETE")
        .send();
    assert_no_rule_allows(&o);
    vm.assert_healthy();
}

// Skipped: "a header value with non-UTF-8 bytes does not trap". The host's RequestBuilder::header
// takes `&str` (and stores `String`s), so a request with obs-text bytes cannot be built here.

// ---------------------------------------------------------------------------------------------
// Configuration: start and hot reload
// ---------------------------------------------------------------------------------------------

#[test]
fn rejected_reload_keeps_the_last_good_configuration() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    let mut bad_alg = config();
    bad_alg["issuers"][0]["algorithms"] = json!(["ES256", "none"]);
    let mut bad_rule = config();
    bad_rule["policy"]["rules"][1]["when"] =
        json!({"time": {"zone": "America/NewYork", "from": "09:30", "to": "16:00"}});
    let mut bad_key = config();
    bad_key["issuers"][0]["jwks"]["keys"][1]["crv"] = json!("X448");
    for (doc, expected) in [
        (bad_alg.to_string(), r#"issuers[0].algorithms[1]: unsupported algorithm "none""#),
        (bad_rule.to_string(), r#"policy.rules[1].when.time.zone: unknown time zone "America/NewYork""#),
        (bad_key.to_string(), "issuers[0].jwks.keys[1].crv"),
        ("{".to_owned(), "configuration is not valid JSON"),
    ] {
        assert!(!vm.configure(doc.as_bytes()), "accepted: {doc}");
        let log = last_error_log(&vm);
        assert!(log.starts_with(&format!("agent-iam: configuration rejected: {expected}")), "{log}");
        // The old configuration keeps deciding.
        assert_forwarded(&send(&mut vm, "POST", "/orders", &trader), TRADER, TRADER, "trader-orders");
        assert_no_rule_allows(&send(&mut vm, "DELETE", "/orders", &trader));
    }
    vm.assert_healthy();
}

#[test]
fn accepted_reload_takes_effect() {
    let mut vm = gateway();
    let trader = es256(&claims(TRADER));
    assert_forwarded(&send(&mut vm, "POST", "/orders", &trader), TRADER, TRADER, "trader-orders");

    // The trader is reduced to reading orders, and a new realm is announced.
    let mut next = config();
    next["realm"] = json!("trading-api-v2");
    next["policy"]["rules"][0] = json!(
        {"id": "trader-reads-orders", "effect": "allow", "agents": [TRADER], "methods": ["GET"], "paths": ["/orders/**"]}
    );
    assert!(vm.configure(next.to_string().as_bytes()), "rejected: {}", vm.logs_text());
    assert!(vm.logs_text().contains("agent-iam: configuration accepted (1 issuer(s), "), "{}", vm.logs_text());

    let o = send(&mut vm, "POST", "/orders", &trader);
    assert_eq!(o.status(), Some(403));
    assert_eq!(o.body_json()["error_description"], "no rule allows this request");
    assert_eq!(
        o.header("www-authenticate"),
        Some(
            r#"Bearer realm="trading-api-v2", error="insufficient_scope", error_description="no rule allows this request""#
        )
    );
    assert_forwarded(&send(&mut vm, "GET", "/orders", &trader), TRADER, TRADER, "trader-reads-orders");
    vm.assert_healthy();
}

#[test]
fn invalid_configuration_fails_the_start() {
    let mut doc = config();
    doc["issuers"][0]["algorithms"] = json!(["ES256", "none"]);
    let e = HOST
        .vm()
        .plugin_config(doc.to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .err()
        .expect("an invalid configuration must not start");
    let message = format!("{e:#}");
    assert!(message.contains(r#"issuers[0].algorithms[1]: unsupported algorithm "none""#), "{message}");

    let e = HOST.vm().start().err().expect("no configuration must not start");
    assert!(format!("{e:#}").contains("configuration rejected: configuration is not valid JSON"), "{e:#}");
}

// ---------------------------------------------------------------------------------------------
// Policy conditions through the plugin boundary: what the request carries reaches the policy.
// ---------------------------------------------------------------------------------------------

/// A policy with a time window, a query-parameter list, a header condition, a host and a scope.
fn conditional_config() -> Value {
    let mut c = config();
    c["policy"] = json!({
        "version": "conditions-1",
        "lists": {"approved_symbols": ["ACME", "GLOBEX"]},
        "rules": [
            {"id": "market-hours-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders"],
             "hosts": ["api.trading.example"], "scopes": ["orders:write"],
             "when": {"query": {"symbol": {"in": {"list": "approved_symbols"}}},
                      "headers": {"x-desk": {"equals": "equities"}},
                      "time": {"zone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:30", "to": "16:00"}}},
            {"id": "never", "effect": "allow", "agents": ["*"], "when": {"claims": {"n": {"gt": 5, "lt": 3}}}}
        ]
    });
    c
}

/// 2030-03-18T14:00:00Z: a Monday, 10:00 in New York (EDT).
const MONDAY_MORNING_NY: u64 = 1_900_072_800;

/// A VM with [`conditional_config`], its clock `after` seconds past [`MONDAY_MORNING_NY`].
fn market(after: u64, level: LogLevel) -> Vm {
    HOST.vm()
        .plugin_config(conditional_config().to_string())
        .time(UNIX_EPOCH + Duration::from_secs(MONDAY_MORNING_NY + after))
        .log_level(level)
        .start()
        .unwrap()
}

/// A trader token with `scope`, issued at `iat` and valid until `exp`.
fn scoped_token(scope: &str, iat: u64, exp: u64) -> String {
    let mut c = claims(TRADER);
    c["iat"] = json!(iat);
    c["exp"] = json!(exp);
    c["scope"] = json!(scope);
    es256(&c)
}

fn order(vm: &mut Vm, token: &str, query: &str) -> Outcome {
    request(vm).method("POST").path(&format!("/orders?{query}")).header("x-desk", "equities").bearer(token).send()
}

#[test]
fn conditions_see_query_headers_host_scopes_and_the_vm_clock() {
    let mut vm = market(0, LogLevel::Trace);
    let token = scoped_token("orders:read orders:write", MONDAY_MORNING_NY - 60, MONDAY_MORNING_NY + 12 * 3600);
    let o = order(&mut vm, &token, "symbol=ACME");
    assert_forwarded(&o, TRADER, TRADER, "market-hours-orders");
    assert_no_rule_allows(&order(&mut vm, &token, "symbol=EVIL"));
    assert_no_rule_allows(&order(&mut vm, &token, "symbol=ACME&symbol=GLOBEX"));
    let o = request(&mut vm).method("POST").path("/orders?symbol=ACME").bearer(&token).send();
    assert_no_rule_allows(&o);
    let o = vm
        .request()
        .authority("other.trading.example")
        .header("x-request-id", REQUEST_ID)
        .method("POST")
        .path("/orders?symbol=ACME")
        .header("x-desk", "equities")
        .bearer(&token)
        .send();
    assert_no_rule_allows(&o);

    // Six hours later the market is closed: the same token and request are refused.
    vm.advance_clock(Duration::from_secs(6 * 3600));
    assert_no_rule_allows(&order(&mut vm, &token, "symbol=ACME"));
}

#[test]
fn a_missing_scope_is_named_in_the_challenge() {
    let mut vm = market(0, LogLevel::Trace);
    let token = scoped_token("orders:read", MONDAY_MORNING_NY - 60, MONDAY_MORNING_NY + 3600);
    let o = order(&mut vm, &token, "symbol=ACME");
    assert_eq!(o.status(), Some(403));
    let challenge = o.header("www-authenticate").unwrap_or_default();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"the token lacks scope \
             'orders:write'\", scope=\"orders:write\""
        )
    );
}

#[test]
fn debug_logging_explains_denials_and_warnings_are_logged() {
    let mut vm = market(8 * 3600, LogLevel::Debug);
    let logs = vm.logs_text();
    assert!(logs.contains("agent-iam: policy warning: policy.rules[1].when.claims.n: no value can satisfy"), "{logs}");
    assert!(logs.contains("2 rule(s), policy version conditions-1"), "{logs}");
    let token = scoped_token("orders:write", MONDAY_MORNING_NY, MONDAY_MORNING_NY + 9 * 3600);
    assert_no_rule_allows(&order(&mut vm, &token, "symbol=ACME"));
    let line = vm
        .logs()
        .iter()
        .rev()
        .find_map(|l| l.message.strip_prefix("agent-iam: explain "))
        .unwrap_or_else(|| panic!("no explanation in {}", vm.logs_text()))
        .to_owned();
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["reason"], "no_rule_allows");
    assert_eq!(e["policy_version"], "conditions-1");
    assert_eq!(e["candidates"][0]["id"], "market-hours-orders");
    assert_eq!(e["candidates"][0]["result"], "conditions_failed");
    assert_eq!(
        e["candidates"][0]["reasons"],
        json!(["rules[0].when.time: Mon 18:00 America/New_York is outside Mon-Fri 09:30-16:00 America/New_York"])
    );

    // At info level (Envoy's default) no explanation is computed.
    let mut quiet = market(8 * 3600, LogLevel::Info);
    assert_no_rule_allows(&order(&mut quiet, &token, "symbol=ACME"));
    assert!(!quiet.logs_text().contains("agent-iam: explain"), "{}", quiet.logs_text());
}

#[test]
fn mtls_binding_reads_the_peer_certificate_only_when_a_rule_needs_it() {
    let mut c = config();
    c["policy"] = json!({"rules": [
        {"id": "bound-trader", "effect": "allow", "agents": [TRADER], "when": {"mtls": {"actor_is_peer": true}}}
    ]});
    let mut vm = start(&c);
    let token = es256(&claims(TRADER));
    let o = request(&mut vm)
        .method("GET")
        .path("/orders")
        .bearer(&token)
        .property("connection.uri_san_peer_certificate", TRADER)
        .send();
    assert_forwarded(&o, TRADER, TRADER, "bound-trader");
    // Another workload's certificate presenting the trader's token (a stolen token) is refused.
    let o = request(&mut vm)
        .method("GET")
        .path("/orders")
        .bearer(&token)
        .property("connection.uri_san_peer_certificate", READER)
        .send();
    assert_no_rule_allows(&o);
    // No client certificate at all: cannot be evaluated, so no allow.
    assert_no_rule_allows(&send(&mut vm, "GET", "/orders", &token));
    vm.assert_healthy();
}

#[test]
fn dry_run_mode_forwards_and_records_what_enforcement_would_refuse() {
    let mut c = config();
    c["mode"] = json!("dry_run");
    let mut vm = start(&c);
    let o = send(&mut vm, "GET", "/admin/users", &es256(&claims(TRADER)));
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("403 denied_by_rule"));
    assert_eq!(o.header("x-agent-iam-agent"), Some(TRADER));
    let o = request(&mut vm).method("GET").path("/orders").header("x-agent-iam-agent", ADMIN).send();
    assert!(o.is_allowed());
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("401 missing_token"));
    assert_eq!(o.header("x-agent-iam-agent"), None, "a spoofed identity header never passes, even in dry run");
    let logs = vm.logs_text();
    assert!(
        logs.contains("dry run: forwarding a request enforcement would answer 403 (agent_iam.denied_by_rule)"),
        "{logs}"
    );
    vm.assert_healthy();
}

#[test]
fn dry_run_rules_are_logged_and_never_applied() {
    let mut c = config();
    c["policy"]["rules"].as_array_mut().unwrap().push(
        json!({"id": "trial-no-posts", "effect": "deny", "mode": "dry_run", "agents": ["*"], "methods": ["POST"]}),
    );
    let mut vm = start(&c);
    assert_forwarded(&send(&mut vm, "POST", "/orders", &es256(&claims(TRADER))), TRADER, TRADER, "trader-orders");
    assert!(
        vm.logs_text().contains(
            "dry-run rule \"trial-no-posts\" would deny this request (enforced: allowed by \"trader-orders\")"
        ),
        "{}",
        vm.logs_text()
    );
}

#[test]
fn forwarding_options_credential_and_claims() {
    let mut c = config();
    c["forward"] = json!({"credential": false, "claims": ["desk"]});
    c["denials"] = json!({"policy_status": 404});
    let mut vm = start(&c);
    let mut cl = claims(TRADER);
    cl["desk"] = json!("equities\r\nx-injected: 1");
    let o = send(&mut vm, "POST", "/orders", &es256(&cl));
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header("authorization"), None, "the credential stays at the gateway");
    assert_eq!(o.header("x-agent-iam-claim-desk"), Some("equities%0D%0Ax-injected: 1"));
    let o = send(&mut vm, "GET", "/admin/users", &es256(&claims(TRADER)));
    assert_eq!(o.status(), Some(404));
    assert_eq!(o.header("www-authenticate"), None);
}

#[test]
fn metrics_count_decisions_rules_reasons_and_cache_hits() {
    // Metrics are shared by every VM of a host, like Envoy's workers: this test gets a host of its own.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut vm =
        host.vm().plugin_config(config().to_string()).time(UNIX_EPOCH + Duration::from_secs(NOW)).start().unwrap();
    let trader = es256(&claims(TRADER));
    for _ in 0..3 {
        assert!(send(&mut vm, "POST", "/orders", &trader).is_allowed());
    }
    assert_eq!(send(&mut vm, "GET", "/admin/x", &trader).status(), Some(403));
    let mut expired = claims(TRADER);
    expired["exp"] = json!(NOW - 3600);
    expired["iat"] = json!(NOW - 7200);
    assert_eq!(send(&mut vm, "GET", "/orders", &es256(&expired)).status(), Some(401));
    // Counters reach the host at most once a second, or on the root tick: the first request of this second
    // handed over its own counts, the later ones wait.
    assert_eq!(vm.metric("agent_iam.decision.allow"), Some(1), "{:?}", host.metrics());
    assert_eq!(vm.tick_period(), Duration::from_secs(1), "inline keys: the tick only flushes counters");
    vm.tick();
    let m = |vm: &Vm, name: &str| vm.metric(name).unwrap_or_else(|| panic!("no metric {name}: {:?}", host.metrics()));
    assert_eq!(m(&vm, "agent_iam.decision.allow"), 3);
    assert_eq!(m(&vm, "agent_iam.rule.trader-orders.allow"), 3);
    assert_eq!(m(&vm, "agent_iam.decision.deny"), 2);
    assert_eq!(m(&vm, "agent_iam.denied.denied_by_rule"), 1);
    assert_eq!(m(&vm, "agent_iam.rule.no-admin-console.deny"), 1);
    assert_eq!(m(&vm, "agent_iam.denied.expired"), 1);
    assert_eq!(m(&vm, "agent_iam.token_cache.miss"), 2);
    assert_eq!(m(&vm, "agent_iam.token_cache.hit"), 3);
    // The VM's linear memory, reported on its tick; a second VM of the same plugin adds its own.
    assert_eq!(m(&vm, "agent_iam.vm.memory_bytes"), vm.memory_bytes() as i64);
    let mut second =
        host.vm().plugin_config(config().to_string()).time(UNIX_EPOCH + Duration::from_secs(NOW)).start().unwrap();
    second.tick();
    assert_eq!(m(&vm, "agent_iam.vm.memory_bytes"), (vm.memory_bytes() + second.memory_bytes()) as i64);
    // The first request of a later second hands over everything pending, its own decision included.
    vm.advance_clock(Duration::from_millis(1200));
    assert!(send(&mut vm, "POST", "/orders", &trader).is_allowed());
    assert_eq!(m(&vm, "agent_iam.decision.allow"), 4);
    assert_eq!(m(&vm, "agent_iam.token_cache.hit"), 4);
}

#[test]
fn envoy_route_names_and_issuer_mtls_binding_reach_the_plugin() {
    let mut c = config();
    c["issuers"][0]["mtls"] = json!({"actor_is_peer": true});
    c["policy"] =
        json!({"rules": [{"id": "public-route", "effect": "allow", "agents": ["*"], "envoy_routes": ["public"]}]});
    let mut vm = start(&c);
    let token = es256(&claims(TRADER));
    let on = |vm: &mut Vm, route: &str, san: &str| {
        request(vm)
            .method("GET")
            .path("/x")
            .bearer(&token)
            .property("xds.route_name", route)
            .property("connection.uri_san_peer_certificate", san)
            .send()
    };
    assert_forwarded(&on(&mut vm, "public", TRADER), TRADER, TRADER, "public-route");
    assert_no_rule_allows(&on(&mut vm, "internal", TRADER));
    let o = on(&mut vm, "public", READER);
    assert_eq!(o.status(), Some(401));
    assert_eq!(details(&o), "agent_iam.not_bound");
    vm.assert_healthy();
}

/// `envoy_route_tags`: the route's `metadata.filter_metadata.agent_iam.tag`, read only when a rule needs it.
#[test]
fn envoy_route_tags_reach_the_plugin() {
    let mut c = config();
    c["policy"] = json!({"rules": [
        {"id": "partner-routes", "effect": "allow", "agents": ["*"], "envoy_route_tags": ["partner"]},
        {"id": "read-only-routes", "effect": "deny", "agents": ["*"], "methods": ["POST"],
         "envoy_route_tags": ["read-only"]},
        {"id": "orders", "effect": "allow", "agents": [TRADER], "paths": ["/orders/**"]}
    ]});
    let mut vm = start(&c);
    let token = es256(&claims(TRADER));
    let on = |vm: &mut Vm, method: &str, path: &str, tag: Option<&str>| {
        let r = request(vm).method(method).path(path).bearer(&token);
        match tag {
            Some(tag) => r.property("xds.route_metadata.filter_metadata.agent_iam.tag", tag).send(),
            None => r.send(),
        }
    };
    assert_forwarded(&on(&mut vm, "GET", "/x", Some("partner")), TRADER, TRADER, "partner-routes");
    assert_no_rule_allows(&on(&mut vm, "GET", "/x", Some("internal")));
    assert_no_rule_allows(&on(&mut vm, "GET", "/x", None));
    // An untagged route is not a read-only one; a tagged one refuses writes.
    assert_forwarded(&on(&mut vm, "POST", "/orders/1", None), TRADER, TRADER, "orders");
    let o = on(&mut vm, "POST", "/orders/1", Some("read-only"));
    assert_eq!((o.status(), details(&o)), (Some(403), "agent_iam.denied_by_rule"));
    vm.assert_healthy();
}

/// `forward.filter_state`: every decision, and who it was about, in Envoy filter state for access logs
/// (`%FILTER_STATE(wasm.agent_iam.agent:PLAIN)%`); nothing written unless configured.
#[test]
fn decisions_and_identity_are_written_to_filter_state_when_configured() {
    let state = |vm: &Vm| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            vm.last_filter_state().iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
        v.sort();
        v
    };
    let pairs = |want: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        v.sort();
        v
    };
    let mut vm = gateway();
    assert!(send(&mut vm, "GET", "/orders/1", &es256(&claims(TRADER))).is_allowed());
    assert!(vm.last_filter_state().is_empty(), "off by default: {:?}", state(&vm));

    let mut c = config();
    c["forward"] = json!({"filter_state": true});
    let mut vm = start(&c);
    let mut delegated = claims(ALICE);
    delegated["act"] = json!({"sub": TRADER});
    assert!(send(&mut vm, "POST", "/orders", &es256(&delegated)).is_allowed());
    assert_eq!(
        state(&vm),
        pairs(&[
            ("agent_iam.decision", "allow"),
            ("agent_iam.reason", "allowed"),
            ("agent_iam.rule", "trader-orders"),
            ("agent_iam.agent", TRADER),
            ("agent_iam.subject", ALICE),
            ("agent_iam.issuer", ISSUER),
            ("agent_iam.chain", TRADER),
        ])
    );
    // A policy denial records who was refused, though the client learns nothing more than before.
    assert_eq!(send(&mut vm, "GET", "/admin/users", &es256(&claims(READER))).status(), Some(403));
    assert_eq!(
        state(&vm),
        pairs(&[
            ("agent_iam.decision", "deny"),
            ("agent_iam.reason", "denied_by_rule"),
            ("agent_iam.rule", "no-admin-console"),
            ("agent_iam.agent", READER),
            ("agent_iam.subject", READER),
            ("agent_iam.issuer", ISSUER),
        ])
    );
    // A token that does not verify names nobody.
    let mut expired = claims(TRADER);
    expired["exp"] = json!(NOW - 3600);
    expired["iat"] = json!(NOW - 4000);
    assert_eq!(send(&mut vm, "GET", "/orders/1", &es256(&expired)).status(), Some(401));
    assert_eq!(state(&vm), pairs(&[("agent_iam.decision", "deny"), ("agent_iam.reason", "expired")]));

    c["mode"] = json!("dry_run");
    let mut vm = start(&c);
    assert!(send(&mut vm, "GET", "/admin/users", &es256(&claims(READER))).is_allowed());
    assert_eq!(state(&vm)[0], ("agent_iam.agent".to_owned(), READER.to_owned()));
    assert!(state(&vm).contains(&("agent_iam.decision".to_owned(), "dry_run_deny".to_owned())), "{:?}", state(&vm));
    vm.assert_healthy();
}

/// The names a module exports.
fn export_names(wasm: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ExportSection(exports) = payload.unwrap() {
            names.extend(exports.into_iter().map(|e| e.unwrap().name.to_owned()));
        }
    }
    names
}

/// Envoy calls a proxy-wasm callback only if the module exports it, and every call costs Envoy CPU
/// (docs/performance.md): the plugin exports the callbacks it uses and no others (the Rust SDK exported all
/// of them, log and done callbacks included).
#[test]
fn the_module_exports_only_the_callbacks_it_uses() {
    let wasm = std::fs::read(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut callbacks: Vec<String> = export_names(&wasm).into_iter().filter(|n| n.starts_with("proxy_")).collect();
    callbacks.sort();
    assert_eq!(
        callbacks,
        [
            "proxy_abi_version_0_2_1",
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_delete",
            "proxy_on_http_call_response",
            "proxy_on_memory_allocate",
            // The three body and response callbacks serve MCP endpoints (the JSON-RPC body, list answers); no
            // log or done callback.
            "proxy_on_request_body",
            "proxy_on_request_headers",
            "proxy_on_response_body",
            "proxy_on_response_headers",
            "proxy_on_tick",
            "proxy_on_vm_start",
        ]
    );
}

/// A host call that Envoy refuses in the middle of a request (the clock, the header map, setting an identity
/// header, removing a client-sent one) denies that request with 503 `temporarily_unavailable` and a logged
/// reason: never a forward without the identity, never a trap. The next request, with the host well again,
/// is decided as usual.
#[test]
fn a_host_call_that_fails_answers_503_and_the_next_request_is_decided() {
    let trader = es256(&claims(TRADER));
    for (call, why) in [
        ("proxy_get_current_time_nanoseconds", "the host clock is unavailable"),
        ("proxy_get_header_map_pairs", "the request headers are unavailable"),
        ("proxy_replace_header_map_value", "an identity header could not be set"),
        ("proxy_remove_header_map_value", "a client-sent identity header could not be removed"),
    ] {
        let mut vm = start(&config());
        vm.fail_host_call(call);
        // A client-sent identity header, so that the plugin has one to remove.
        let o = request(&mut vm)
            .method("POST")
            .path("/orders")
            .bearer(&trader)
            .header("x-agent-iam-agent", "spiffe://trading.example/agent/forged")
            .send();
        assert_eq!(o.status(), Some(503), "{call}: {o:#?}");
        assert_eq!(o.body_json()["error"], "temporarily_unavailable", "{call}");
        assert!(vm.logs_text().contains(why), "{call}: no log saying {why:?}:\n{}", vm.logs_text());
        vm.restore_host_calls();
        assert!(send(&mut vm, "POST", "/orders", &trader).is_allowed(), "{call}");
    }
}
