//! Policy semantics, compile errors, warnings, and the index against the direct (explain) evaluation.

use super::cases::{parse_time, token_from_claims};
use super::*;
use crate::request::{Peer, Request};
use crate::token::VerifiedToken;
use serde_json::Value;
use serde_json::json;

fn policy(v: Value) -> Result<Policy, PolicyError> {
    Policy::compile(&serde_json::from_value(v).unwrap())
}

fn err(v: Value) -> String {
    policy(v).unwrap_err().to_string()
}

fn token(claims: Value) -> VerifiedToken {
    token_from_claims(serde_json::from_value(claims).unwrap()).unwrap()
}

const TRADER: &str = "spiffe://trading.example/agent/trader";
/// Monday 2026-11-23 10:15 in New York.
const MARKET_OPEN: &str = "2026-11-23T10:15:00-05:00";

struct Req {
    method: &'static str,
    path: String,
    query: Option<String>,
    host: Option<&'static str>,
    headers: Vec<(&'static str, &'static [u8])>,
    now: i64,
    peer: (Option<&'static str>, Option<String>),
    route: Option<&'static str>,
    route_tag: Option<&'static str>,
    mcp: Option<crate::request::mcp::McpRequest>,
    hypothetical: bool,
}

fn req(method: &'static str, path_and_query: &str) -> Req {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    Req {
        method,
        path,
        query,
        host: None,
        headers: Vec::new(),
        now: parse_time(MARKET_OPEN).unwrap(),
        peer: (None, None),
        route: None,
        route_tag: None,
        mcp: None,
        hypothetical: false,
    }
}

impl Req {
    fn header(mut self, n: &'static str, v: &'static str) -> Req {
        self.headers.push((n, v.as_bytes()));
        self
    }
    fn at(mut self, time: &str) -> Req {
        self.now = parse_time(time).unwrap();
        self
    }
    fn route_tag(mut self, t: Option<&'static str>) -> Req {
        self.route_tag = t;
        self
    }
    fn route(mut self, r: &'static str) -> Req {
        self.route = Some(r);
        self
    }
    fn host(mut self, h: &'static str) -> Req {
        self.host = Some(h);
        self
    }
    fn peer(mut self, san: Option<&'static str>, digest: Option<String>) -> Req {
        self.peer = (san, digest);
        self
    }
    fn view(&self) -> Request<'_> {
        Request {
            method: self.method,
            path: &self.path,
            query: self.query.as_deref(),
            host: self.host,
            headers: &self.headers,
            now: self.now,
            peer: Peer { uri_san: self.peer.0, certificate_sha256: self.peer.1.as_deref() },
            route: self.route,
            route_tag: self.route_tag,
            mcp: self.mcp.as_ref(),
            hypothetical: self.hypothetical,
        }
    }
}

/// Evaluates through the index and directly, insists they agree, and returns the decision as text.
fn decide(p: &Policy, t: &VerifiedToken, r: &Req) -> String {
    let request = r.view();
    let fast = p.evaluate(t, &request);
    let slow = p.explain(t, &request);
    assert_eq!(fast, slow.decision, "index and explain disagree");
    assert_eq!(p.allows(t, &request), matches!(fast, Decision::Allow { .. }), "allows and evaluate disagree");
    cases::describe(&fast)
}

fn agent(id: &str) -> VerifiedToken {
    token(json!({"sub": id, "iss": "https://issuer.example"}))
}

#[test]
fn allow_deny_default_and_agent_patterns() {
    let p = policy(json!({"rules": [
        {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders", "/orders/**"]},
        {"id": "all-read-quotes", "effect": "allow", "agents": ["spiffe://trading.example/*"], "methods": ["get"], "paths": ["/quotes/**"]},
        {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}
    ]}))
    .unwrap();
    let t = agent(TRADER);
    assert_eq!(decide(&p, &t, &req("POST", "/orders")), "allowed by \"trader-orders\"");
    assert_eq!(decide(&p, &t, &req("POST", "/orders/7")), "allowed by \"trader-orders\"");
    assert_eq!(decide(&p, &t, &req("POST", "/orders-old")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("GET", "/orders")), "no rule allows");
    assert_eq!(decide(&p, &agent("spiffe://trading.example/agent/other"), &req("POST", "/orders")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("GET", "/quotes/ACME")), "allowed by \"all-read-quotes\"");
    assert_eq!(decide(&p, &agent("spiffe://trading.example.evil/x"), &req("GET", "/quotes")), "no rule allows");
    assert_eq!(decide(&p, &agent("spiffe://trading.example/"), &req("GET", "/quotes")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("GET", "/admin")), "denied by \"no-admin\"");
    assert_eq!(decide(&p, &t, &req("GET", "/admin/users")), "denied by \"no-admin\"");
}

#[test]
fn deny_overrides_allow_whatever_the_order() {
    for rules in [
        json!([{"id": "a", "effect": "allow", "agents": ["*"]}, {"id": "d", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}]),
        json!([{"id": "d", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}, {"id": "a", "effect": "allow", "agents": ["*"]}]),
    ] {
        let p = policy(json!({"rules": rules})).unwrap();
        assert_eq!(decide(&p, &agent(TRADER), &req("GET", "/admin/x")), "denied by \"d\"");
        assert_eq!(decide(&p, &agent(TRADER), &req("GET", "/x")), "allowed by \"a\"");
    }
}

#[test]
fn first_rule_in_the_document_decides_among_equals() {
    let p = policy(json!({"rules": [
        {"id": "second-by-index", "effect": "allow", "agents": ["*"], "paths": ["/x"]},
        {"id": "exact", "effect": "allow", "agents": [TRADER], "paths": ["/x"]}
    ]}))
    .unwrap();
    assert_eq!(decide(&p, &agent(TRADER), &req("GET", "/x")), "allowed by \"second-by-index\"");
}

#[test]
fn missing_attributes_never_allow_and_always_deny() {
    let p = policy(json!({"rules": [
        {"id": "finance", "effect": "allow", "agents": ["*"], "when": {"claims": {"department": {"equals": "finance"}}}},
        {"id": "no-contractors", "effect": "deny", "agents": ["*"], "paths": ["/ledger/**"],
         "when": {"claims": {"employment": {"equals": "contractor"}}}}
    ]}))
    .unwrap();
    let with = |claims: Value| {
        let mut c = json!({"sub": TRADER});
        c.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        token(c)
    };
    assert_eq!(
        decide(&p, &with(json!({"department": "finance", "employment": "staff"})), &req("GET", "/ledger/1")),
        "allowed by \"finance\""
    );
    // No department: the allow rule cannot be evaluated, so it does not allow.
    assert_eq!(decide(&p, &with(json!({"employment": "staff"})), &req("GET", "/x")), "no rule allows");
    // No employment claim: the deny rule cannot be evaluated, so it denies.
    assert_eq!(
        decide(&p, &with(json!({"department": "finance"})), &req("GET", "/ledger/1")),
        "denied by \"no-contractors\""
    );
    // A definite mismatch on one deny condition is not "cannot be evaluated".
    assert_eq!(
        decide(&p, &with(json!({"department": "finance", "employment": "staff"})), &req("GET", "/ledger/1")),
        "allowed by \"finance\""
    );
    // A header sent twice cannot be evaluated either.
    let p = policy(json!({"rules": [
        {"id": "a", "effect": "allow", "agents": ["*"], "when": {"headers": {"x-purpose": {"equals": "treatment"}}}}
    ]}))
    .unwrap();
    let t = agent(TRADER);
    assert_eq!(decide(&p, &t, &req("GET", "/").header("x-purpose", "treatment")), "allowed by \"a\"");
    assert_eq!(
        decide(&p, &t, &req("GET", "/").header("x-purpose", "treatment").header("x-purpose", "treatment")),
        "no rule allows"
    );
    assert_eq!(decide(&p, &t, &req("GET", "/").header("X-Purpose", "treatment")), "allowed by \"a\"");
}

#[test]
fn operators() {
    let p = |test: Value| {
        policy(json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "when": {"claims": {"c": test}}}]}))
            .unwrap()
    };
    let with = |c: Value| token(json!({"sub": TRADER, "c": c}));
    let r = req("GET", "/");
    let yes = |pol: &Policy, c: Value| decide(pol, &with(c), &r) == "allowed by \"r\"";
    let eq = p(json!({"equals": "x"}));
    assert!(yes(&eq, json!("x")) && !yes(&eq, json!("y")) && !yes(&eq, json!(["x"])));
    let ne = p(json!({"not_equals": "x"}));
    assert!(yes(&ne, json!("y")) && !yes(&ne, json!("x")));
    let num = p(json!({"equals": 2}));
    assert!(yes(&num, json!(2)) && yes(&num, json!(2.0)) && !yes(&num, json!("2")));
    let within = p(json!({"in": ["a", "b", 3]}));
    assert!(yes(&within, json!("b")) && yes(&within, json!(3)) && !yes(&within, json!("c")));
    let not_in = p(json!({"not_in": ["a"]}));
    assert!(yes(&not_in, json!("b")) && !yes(&not_in, json!("a")));
    let contains = p(json!({"contains": "trader"}));
    assert!(yes(&contains, json!(["viewer", "trader"])) && yes(&contains, json!("viewer trader")));
    assert!(!yes(&contains, json!("tradership")) && !yes(&contains, json!(["traders"])));
    let starts = p(json!({"starts_with": "eu-"}));
    assert!(yes(&starts, json!("eu-west")) && !yes(&starts, json!("us-east")));
    let range = p(json!({"gte": 1, "lt": 10}));
    assert!(yes(&range, json!(1)) && yes(&range, json!(9.5)) && !yes(&range, json!(10)) && !yes(&range, json!("5")));
    let version = p(json!({"version_gte": "2.1.0"}));
    assert!(yes(&version, json!("2.1.0")) && yes(&version, json!("2.10")) && yes(&version, json!("v3")));
    assert!(!yes(&version, json!("2.0.9")) && !yes(&version, json!("2.1.0-rc1")) && !yes(&version, json!(true)));
    let absent = p(json!({"exists": false}));
    assert!(decide(&absent, &token(json!({"sub": TRADER})), &r) == "allowed by \"r\"" && !yes(&absent, json!(1)));
}

#[test]
fn named_lists_query_and_time_window() {
    let p = policy(json!({
        "lists": {"approved_symbols": ["ACME", "GLOBEX"]},
        "rules": [{
            "id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders"],
            "when": {
                "query": {"symbol": {"in": {"list": "approved_symbols"}}},
                "time": {"zone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:30", "to": "16:00"}
            }
        }]
    }))
    .unwrap();
    let t = agent(TRADER);
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=ACME")), "allowed by \"trader-orders\"");
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=AC%4DE&qty=1")), "allowed by \"trader-orders\"");
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=EVIL")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=ACME&symbol=EVIL")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("POST", "/orders")), "no rule allows");
    // 16:00 is closed; Saturday is closed; in July (EDT) 09:35 New York is 13:35 UTC and open.
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=ACME").at("2026-11-23T16:00:00-05:00")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=ACME").at("2026-11-21T11:00:00-05:00")), "no rule allows");
    assert_eq!(
        decide(&p, &t, &req("POST", "/orders?symbol=ACME").at("2026-07-15T13:35:00Z")),
        "allowed by \"trader-orders\""
    );
    assert_eq!(decide(&p, &t, &req("POST", "/orders?symbol=ACME").at("2026-12-15T13:35:00Z")), "no rule allows");
}

#[test]
fn path_parameters_relationships_and_labels() {
    let p = policy(json!({
        "routes": [{"path": "/patients/{patient}/records/**", "labels": ["PHI"]}, {"path": "/patients/{patient}/billing", "labels": ["PII"]}],
        "rules": [
            {"id": "treatment-reads-phi", "effect": "allow", "agents": ["spiffe://hospital.example/agent/*"], "methods": ["GET"],
             "labels": ["PHI"],
             "when": {"claims": {"purpose": {"equals": "treatment"}}, "path": {"patient": {"equals": {"claim": "patient_id"}}}}},
            {"id": "billing", "effect": "allow", "agents": ["*"], "paths": ["/patients/{patient}/billing"], "labels": ["PII"],
             "roles": ["billing"]}
        ]
    }))
    .unwrap();
    let nurse = |purpose: &str, patient: Value| {
        token(json!({"sub": "spiffe://hospital.example/agent/radiology", "purpose": purpose, "patient_id": patient}))
    };
    assert_eq!(
        decide(&p, &nurse("treatment", json!("42")), &req("GET", "/patients/42/records/x")),
        "allowed by \"treatment-reads-phi\""
    );
    assert_eq!(
        decide(&p, &nurse("treatment", json!(42)), &req("GET", "/patients/42/records")),
        "allowed by \"treatment-reads-phi\""
    );
    assert_eq!(decide(&p, &nurse("treatment", json!("42")), &req("GET", "/patients/43/records")), "no rule allows");
    assert_eq!(decide(&p, &nurse("billing", json!("42")), &req("GET", "/patients/42/records")), "no rule allows");
    assert_eq!(decide(&p, &nurse("treatment", json!("42")), &req("GET", "/patients/42/notes")), "no rule allows");
    let clerk = |roles: Value| token(json!({"sub": "spiffe://hospital.example/agent/clerk", "roles": roles}));
    assert_eq!(decide(&p, &clerk(json!(["billing"])), &req("GET", "/patients/42/billing")), "allowed by \"billing\"");
    assert_eq!(
        decide(&p, &clerk(json!("viewer billing")), &req("GET", "/patients/42/billing")),
        "allowed by \"billing\""
    );
    assert_eq!(decide(&p, &clerk(json!(["viewer"])), &req("GET", "/patients/42/billing")), "no rule allows");
    assert_eq!(p.labels_of("/patients/1/records/a"), ["PHI"]);
    assert!(p.labels_of("/patients/1").is_empty());
    // What audit events record: the deciding rule's parameters (here through its labels' routes), or, when no
    // rule decided, the matching route's.
    assert_eq!(p.path_parameters(Some("treatment-reads-phi"), "/patients/42/records/x"), [("patient", "42")]);
    assert_eq!(p.path_parameters(Some("billing"), "/patients/7/billing"), [("patient", "7")]);
    assert_eq!(p.path_parameters(None, "/patients/43/records"), [("patient", "43")]);
    assert!(p.path_parameters(None, "/patients/43/notes").is_empty());
    assert!(p.path_parameters(Some("unknown"), "/orders/1").is_empty());
}

#[test]
fn delegation_conditions_narrow_only() {
    let p = policy(json!({"rules": [{
        "id": "orchestrated-payments", "effect": "allow", "agents": ["spiffe://corp.example/agent/*"], "paths": ["/payments/**"],
        "when": {
            "claims": {"department": {"equals": "finance"}},
            "delegation": {"delegated": true, "max_depth": 2, "actors": ["spiffe://corp.example/*"],
                           "origin": ["spiffe://corp.example/agent/orchestrator"], "may_act": true}
        }
    }]}))
    .unwrap();
    let chain = |act: Value, may_act: Value| {
        token(json!({"sub": "user:alice", "department": "finance", "act": act, "may_act": may_act}))
    };
    let orchestrated =
        json!({"sub": "spiffe://corp.example/agent/payer", "act": {"sub": "spiffe://corp.example/agent/orchestrator"}});
    let payer_ok = json!({"sub": "spiffe://corp.example/agent/payer"});
    let r = req("POST", "/payments/1");
    assert_eq!(decide(&p, &chain(orchestrated.clone(), payer_ok.clone()), &r), "allowed by \"orchestrated-payments\"");
    // may_act names someone else.
    assert_eq!(
        decide(&p, &chain(orchestrated.clone(), json!({"sub": "spiffe://corp.example/agent/x"})), &r),
        "no rule allows"
    );
    // Three actors: too deep.
    let deep = json!({"sub": "spiffe://corp.example/agent/payer", "act": {"sub": "spiffe://corp.example/agent/mid",
                      "act": {"sub": "spiffe://corp.example/agent/orchestrator"}}});
    assert_eq!(decide(&p, &chain(deep, payer_ok.clone()), &r), "no rule allows");
    // An actor from another trust domain in the chain.
    let foreign = json!({"sub": "spiffe://corp.example/agent/payer", "act": {"sub": "spiffe://vendor.example/agent/orchestrator"}});
    assert_eq!(decide(&p, &chain(foreign, payer_ok.clone()), &r), "no rule allows");
    // Not delegated at all.
    let direct = token(json!({"sub": "spiffe://corp.example/agent/payer", "department": "finance"}));
    assert_eq!(decide(&p, &direct, &r), "no rule allows");
    // A nested actor alone grants nothing: the current actor must match `agents`.
    let p2 = policy(
        json!({"rules": [{"id": "r", "effect": "allow", "agents": ["spiffe://corp.example/agent/orchestrator"]}]}),
    )
    .unwrap();
    assert_eq!(decide(&p2, &chain(orchestrated, payer_ok), &r), "no rule allows");
}

#[test]
fn mtls_binding() {
    let p = policy(json!({"rules": [
        {"id": "bound", "effect": "allow", "agents": ["*"], "when": {"mtls": {"actor_is_peer": true, "certificate_bound": true}}}
    ]}))
    .unwrap();
    assert!(p.needs().peer);
    let digest = [7u8; 32];
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let t = token(json!({"sub": TRADER, "cnf": {"x5t#S256": crate::b64::encode(&digest)}}));
    assert_eq!(decide(&p, &t, &req("GET", "/").peer(Some(TRADER), Some(hex.clone()))), "allowed by \"bound\"");
    assert_eq!(decide(&p, &t, &req("GET", "/").peer(Some("spiffe://x/y"), Some(hex.clone()))), "no rule allows");
    assert_eq!(decide(&p, &t, &req("GET", "/").peer(Some(TRADER), Some("00".repeat(32)))), "no rule allows");
    assert_eq!(decide(&p, &t, &req("GET", "/")), "no rule allows");
    assert_eq!(decide(&p, &agent(TRADER), &req("GET", "/").peer(Some(TRADER), Some(hex))), "no rule allows");
}

#[test]
fn who_filters_hosts_scopes() {
    let p = policy(json!({"rules": [
        {"id": "r", "effect": "allow", "agents": ["*"], "issuers": ["https://issuer.example"], "subjects": ["spiffe://trading.example/*"],
         "hosts": ["*.trading.example"], "scopes": ["orders:write", "orders:read"]}
    ]}))
    .unwrap();
    let t = |scope: &str, iss: &str| token(json!({"sub": TRADER, "iss": iss, "scope": scope}));
    let r = req("GET", "/").host("api.trading.example");
    assert_eq!(decide(&p, &t("orders:read orders:write", "https://issuer.example"), &r), "allowed by \"r\"");
    assert_eq!(
        decide(&p, &t("orders:read", "https://issuer.example"), &r),
        "no rule allows (missing scope \"orders:write\")"
    );
    assert_eq!(decide(&p, &t("orders:read orders:write", "https://other.example"), &r), "no rule allows");
    assert_eq!(
        decide(&p, &t("orders:read orders:write", "https://issuer.example"), &req("GET", "/").host("trading.example")),
        "no rule allows"
    );
    // A missing scope is reported only when nothing else stands in the way.
    assert_eq!(decide(&p, &t("orders:read", "https://other.example"), &r), "no rule allows");
    let scp = token(json!({"sub": TRADER, "iss": "https://issuer.example", "scp": ["orders:read", "orders:write"]}));
    assert_eq!(decide(&p, &scp, &r), "allowed by \"r\"");
}

#[test]
fn compile_errors_name_the_exact_place() {
    let base = |rule: Value| json!({"rules": [{"id": "ok", "effect": "allow", "agents": ["*"]}, rule]});
    let rule = |extra: Value| {
        let mut r = json!({"id": "r", "effect": "allow", "agents": ["*"]});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        base(r)
    };
    let cases: Vec<(Value, &str)> = vec![
        (base(json!({"id": "ok", "effect": "allow", "agents": ["*"]})), "rules[1].id: duplicate rule id \"ok\""),
        (base(json!({"id": "r", "effect": "allow", "agents": []})), "rules[1].agents: must name at least one agent"),
        (rule(json!({"agents": ["spiffe://x*"]})), "rules[1].agents[0]: '*' is only allowed"),
        (rule(json!({"methods": []})), "rules[1].methods: must not be empty"),
        (rule(json!({"methods": ["GET", "CONNECT"]})), "rules[1].methods[1]: not an HTTP method"),
        (rule(json!({"paths": ["/a", "/b/../c"]})), "rules[1].paths[1]: segment \"..\" is not canonical"),
        (rule(json!({"hosts": ["API.example"]})), "rules[1].hosts[0]: must be a lower-case host name"),
        (rule(json!({"labels": ["PHI"]})), "rules[1].labels[0]: unknown label \"PHI\""),
        (rule(json!({"scopes": ["a\"b"]})), "rules[1].scopes[0]: not a valid scope"),
        (
            rule(json!({"when": {"claims": {"dept": {"equal": "x"}}}})),
            "rules[1].when.claims.dept: unknown operator \"equal\"",
        ),
        (rule(json!({"when": {"claims": {"dept": {}}}})), "rules[1].when.claims.dept: needs at least one operator"),
        (rule(json!({"when": {"claims": {"n": {"gt": "5"}}}})), "rules[1].when.claims.n.gt: must be a number"),
        (
            rule(json!({"when": {"claims": {"v": {"version_gte": "2.x"}}}})),
            "rules[1].when.claims.v.version_gte: must be a version",
        ),
        (
            rule(json!({"when": {"query": {"s": {"in": {"list": "nope"}}}}})),
            "rules[1].when.query.s.in.list: unknown list \"nope\"",
        ),
        (rule(json!({"when": {"query": {"s": {"in": []}}}})), "rules[1].when.query.s.in: must not be empty"),
        (
            rule(json!({"when": {"claims": {"s": {"equals": {"cookie": "x"}}}}})),
            "rules[1].when.claims.s.equals: unknown reference \"cookie\"",
        ),
        (rule(json!({"when": {"claims": {"s": {"equals": null}}}})), "rules[1].when.claims.s.equals: must be a string"),
        (
            rule(json!({"when": {"path": {"patient": {"equals": "1"}}}})),
            "rules[1].when.path.patient: path parameter \"patient\" needs `paths`",
        ),
        (
            rule(json!({"paths": ["/p/{patient}", "/q"], "when": {"path": {"patient": {"exists": true}}}})),
            "rules[1].when.path.patient: path parameter \"patient\" is not captured by every path",
        ),
        (
            rule(json!({"paths": ["/p/{id}"], "when": {"claims": {"c": {"equals": {"path": "patient"}}}}})),
            "rules[1].when.claims.c.equals: path parameter \"patient\" is not captured",
        ),
        (
            rule(json!({"when": {"time": {"zone": "America/NewYork", "from": "09:30", "to": "16:00"}}})),
            "rules[1].when.time.zone: unknown time zone \"America/NewYork\"",
        ),
        (
            rule(
                json!({"when": {"time": [{"zone": "UTC", "from": "09:30", "to": "16:00"}, {"zone": "UTC", "from": "9", "to": "16:00"}]}}),
            ),
            "rules[1].when.time[1].from:",
        ),
        (
            rule(json!({"when": {"time": {"zone": "UTC", "from": "09:30", "to": "16:00", "tz": "x"}}})),
            "rules[1].when.time.tz: unknown field `tz`",
        ),
        (rule(json!({"when": {"delegation": {}}})), "rules[1].when.delegation: names no condition"),
        (rule(json!({"when": {"delegation": {"max_depth": 17}}})), "rules[1].when.delegation.max_depth: at most 16"),
        (rule(json!({"when": {"delegation": {"may_act": false}}})), "rules[1].when.delegation.may_act: only true"),
        (rule(json!({"when": {"mtls": {}}})), "rules[1].when.mtls: names no condition"),
        (
            rule(json!({"when": {"headers": {":path": {"exists": true}}}})),
            "rules[1].when.headers.:path: not a header name",
        ),
        (json!({"lists": {"l": []}, "rules": []}), "lists.l: must not be empty"),
        (json!({"lists": {"l": ["a", "a"]}, "rules": []}), "lists.l[1]: duplicate value \"a\""),
        (json!({"routes": [{"path": "/a/**", "labels": []}], "rules": []}), "routes[0].labels: must not be empty"),
        (json!({"routes": [{"path": "a", "labels": ["x"]}], "rules": []}), "routes[0].path: must start with '/'"),
        (json!({"roles_claim": "a..b", "rules": []}), "roles_claim: claim name has an empty part"),
    ];
    for (doc, want) in cases {
        let got = err(doc.clone());
        assert!(got.starts_with(want), "{doc}\n  got:  {got}\n  want: {want}");
    }
}

#[test]
fn unknown_fields_and_effects_are_errors() {
    let doc = json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "path": "/x"}]});
    assert!(serde_json::from_value::<PolicyDocument>(doc).is_err());
    let doc = json!({"rules": [{"id": "r", "effect": "permit", "agents": ["*"]}]});
    assert!(serde_json::from_value::<PolicyDocument>(doc).is_err());
    let doc = json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "when": {"claim": {}}}]});
    assert!(serde_json::from_value::<PolicyDocument>(doc).is_err());
}

#[test]
fn warnings_for_rules_that_never_match() {
    let p = policy(json!({
        "lists": {"unused": ["x"]},
        "rules": [
            {"id": "admin-reads", "effect": "allow", "agents": ["spiffe://t/agent/a"], "methods": ["GET"], "paths": ["/admin/users"]},
            {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]},
            {"id": "impossible", "effect": "allow", "agents": ["*"], "when": {"claims": {"n": {"gt": 5, "lt": 3}}}},
            {"id": "fine", "effect": "allow", "agents": ["*"], "paths": ["/public/**"]}
        ]
    }))
    .unwrap();
    let w: Vec<String> = p.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter().any(|w| w.starts_with("rules[0]: allow rule \"admin-reads\" never matches: deny rule \"no-admin\"")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.starts_with("rules[2].when.claims.n: no value can satisfy")), "{w:?}");
    assert!(w.iter().any(|w| w == "lists.unused: never used"), "{w:?}");
    assert_eq!(w.len(), 3, "{w:?}");
}

#[test]
fn explain_says_why() {
    let p = policy(json!({
        "version": "2026-11-22",
        "rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders"],
             "when": {"time": {"zone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:30", "to": "16:00"}}},
            {"id": "others", "effect": "allow", "agents": ["spiffe://other/*"]}
        ]
    }))
    .unwrap();
    let r = req("POST", "/orders").at("2026-11-23T17:05:00-05:00");
    let request = r.view();
    let e = p.explain(&agent(TRADER), &request);
    assert_eq!(e.decision, Decision::NoRuleAllows { missing_scope: None });
    assert_eq!(e.policy_version, Some("2026-11-22"));
    assert_eq!(e.rules[0].result, RuleResult::ConditionsFailed);
    assert_eq!(
        e.rules[0].reasons,
        ["rules[0].when.time: Mon 17:05 America/New_York is outside Mon-Fri 09:30-16:00 America/New_York"]
    );
    assert_eq!(e.rules[1].result, RuleResult::NotApplicable);
    assert!(e.rules[1].reasons[0].contains("does not match [\"spiffe://other/*\"]"), "{:?}", e.rules[1].reasons);
    assert_eq!(e.candidates().count(), 1);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (0..3u8).prop_map(|i| format!("spiffe://t/agent/{i}")),
            Just("spiffe://t/*".to_owned()),
            Just("spiffe://t/agent/*".to_owned()),
            Just("spiffe://u/*".to_owned()),
        ]
    }

    fn template() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/**".to_owned()),
            (0..3u8).prop_map(|i| format!("/s{i}")),
            (0..3u8).prop_map(|i| format!("/s{i}/**")),
            (0..3u8).prop_map(|i| format!("/s{i}/{{id}}")),
            Just("/{a}/x".to_owned()),
        ]
    }

    fn rule() -> impl Strategy<Value = Value> {
        (
            any::<bool>(),
            prop::collection::vec(pattern(), 1..3),
            prop::option::of(prop::sample::subsequence(vec!["GET", "POST", "DELETE"], 1..3)),
            prop::option::of(prop::collection::vec(template(), 1..3)),
            prop::option::of(prop_oneof![Just("finance"), Just("sales")]),
        )
            .prop_map(|(deny, agents, methods, paths, dept)| {
                let mut r = json!({"effect": if deny { "deny" } else { "allow" }, "agents": agents});
                if let Some(m) = methods {
                    r["methods"] = json!(m);
                }
                if let Some(p) = paths {
                    let mut p: Vec<String> = p;
                    p.sort();
                    p.dedup();
                    r["paths"] = json!(p);
                }
                if let Some(d) = dept {
                    r["when"] = json!({"claims": {"dept": {"equals": d}}});
                }
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The index never changes a decision: it agrees with evaluating every rule directly.
        #[test]
        fn index_agrees_with_direct_evaluation(
            rules in prop::collection::vec(rule(), 0..12),
            agent in prop_oneof![(0..4u8).prop_map(|i| format!("spiffe://t/agent/{i}")), Just("spiffe://u/x".to_owned()), Just("spiffe://v/x".to_owned())],
            method in prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
            path in prop_oneof![Just("/"), Just("/s0"), Just("/s1/7"), Just("/s2/7/8"), Just("/q/x"), Just("/s0/")],
            dept in prop::option::of(prop_oneof![Just("finance"), Just("sales")]),
        ) {
            let rules: Vec<Value> = rules.into_iter().enumerate().map(|(i, mut r)| { r["id"] = json!(format!("r{i}")); r }).collect();
            let p = policy(json!({"rules": rules})).unwrap();
            let mut claims = json!({"sub": agent});
            if let Some(d) = dept {
                claims["dept"] = json!(d);
            }
            let t = token(claims);
            let _ = decide(&p, &t, &req(method, path));
        }
    }
}

#[test]
fn values_of_another_type_cannot_be_evaluated_so_negations_fail_closed() {
    let p = policy(json!({
        "lists": {"blocked": ["1001"]},
        "rules": [
            {"id": "staff", "effect": "allow", "agents": ["*"], "paths": ["/a"],
             "when": {"claims": {"employment": {"not_equals": "contractor"}}}},
            {"id": "unblocked", "effect": "allow", "agents": ["*"], "paths": ["/b"],
             "when": {"claims": {"account": {"not_in": {"list": "blocked"}}}}},
            {"id": "open", "effect": "allow", "agents": ["*"], "paths": ["/c"]},
            {"id": "no-1001", "effect": "deny", "agents": ["*"], "paths": ["/c"], "when": {"claims": {"account": {"in": ["1001"]}}}}
        ]
    }))
    .unwrap();
    let with = |k: &str, v: Value| {
        let mut c = json!({"sub": TRADER});
        c[k] = v;
        token(c)
    };
    assert_eq!(decide(&p, &with("employment", json!("staff")), &req("GET", "/a")), "allowed by \"staff\"");
    assert_eq!(decide(&p, &with("employment", json!(["contractor"])), &req("GET", "/a")), "no rule allows");
    assert_eq!(decide(&p, &with("account", json!("2002")), &req("GET", "/b")), "allowed by \"unblocked\"");
    assert_eq!(decide(&p, &with("account", json!(1001)), &req("GET", "/b")), "no rule allows");
    assert_eq!(decide(&p, &with("account", json!(["1001"])), &req("GET", "/b")), "no rule allows");
    assert_eq!(decide(&p, &with("account", json!("2002")), &req("GET", "/c")), "allowed by \"open\"");
    assert_eq!(decide(&p, &with("account", json!(1001)), &req("GET", "/c")), "denied by \"no-1001\"");
}

#[test]
fn any_actor_catches_a_vendor_anywhere_in_the_chain_and_spares_plain_tokens() {
    let p = policy(json!({"rules": [
        {"id": "all", "effect": "allow", "agents": ["*"]},
        {"id": "no-vendor-in-chain", "effect": "deny", "agents": ["*"], "when": {"delegation": {"any_actor": ["spiffe://vendor.example/*"]}}}
    ]}))
    .unwrap();
    let plain = agent("spiffe://corp.example/agent/x");
    assert_eq!(decide(&p, &plain, &req("GET", "/")), "allowed by \"all\"");
    let via_vendor = token(json!({"sub": "user:bob", "act": {"sub": "spiffe://corp.example/agent/x",
                                  "act": {"sub": "spiffe://vendor.example/agent/y"}}}));
    assert_eq!(decide(&p, &via_vendor, &req("GET", "/")), "denied by \"no-vendor-in-chain\"");
}

#[test]
fn header_references_ignore_case_and_url_claim_names_warn() {
    let p = policy(json!({"rules": [
        {"id": "same-tenant", "effect": "allow", "agents": ["*"],
         "when": {"claims": {"tenant": {"equals": {"header": "X-Tenant"}}, "https://corp.example/dept": {"exists": true}}}}
    ]}))
    .unwrap();
    assert_eq!(p.needs().headers, ["x-tenant"]);
    let w: Vec<String> = p.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter().any(|w| w.starts_with("rules[0].when.claims.https://corp.example/dept: dots separate nested claims")),
        "{w:?}"
    );
}

#[test]
fn dry_run_rules_are_reported_never_applied() {
    let p = policy(json!({"rules": [
        {"id": "orders", "effect": "allow", "agents": [TRADER], "paths": ["/orders/**"]},
        {"id": "trial-no-deletes", "effect": "deny", "mode": "dry_run", "agents": ["*"], "methods": ["DELETE"]},
        {"id": "trial-quotes", "effect": "allow", "mode": "dry_run", "agents": ["*"], "paths": ["/quotes/**"]}
    ]}))
    .unwrap();
    assert!(p.has_dry_run_rules());
    let t = agent(TRADER);
    let hits = |method: &'static str, path: &str| {
        let r = req(method, path);
        let request = r.view();
        p.dry_run_hits(&t, &request).into_iter().map(|(id, _)| id.to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(decide(&p, &t, &req("DELETE", "/orders/1")), "allowed by \"orders\"");
    assert_eq!(hits("DELETE", "/orders/1"), ["trial-no-deletes"]);
    assert_eq!(decide(&p, &t, &req("GET", "/quotes/x")), "no rule allows");
    assert_eq!(hits("GET", "/quotes/x"), ["trial-quotes"]);
    assert!(hits("GET", "/orders/1").is_empty());
}

#[test]
fn envoy_route_names_select_rules() {
    let p = policy(json!({"rules": [
        {"id": "public-api", "effect": "allow", "agents": ["*"], "envoy_routes": ["public", "partner"]}
    ]}))
    .unwrap();
    assert!(p.needs().route);
    let t = agent(TRADER);
    assert_eq!(decide(&p, &t, &req("GET", "/x").route("public")), "allowed by \"public-api\"");
    assert_eq!(decide(&p, &t, &req("GET", "/x").route("internal")), "no rule allows");
    assert_eq!(decide(&p, &t, &req("GET", "/x")), "no rule allows");
}

#[test]
fn envoy_route_tags_select_rules_and_an_untagged_route_is_not_unknown() {
    let p = policy(json!({"rules": [
        {"id": "partners", "effect": "allow", "agents": ["*"], "envoy_route_tags": ["partner", "public"]},
        {"id": "no-writes-on-public", "effect": "deny", "agents": ["*"], "methods": ["POST"],
         "envoy_route_tags": ["public"]}
    ]}))
    .unwrap();
    assert!(p.needs().route_tag && !p.needs().route);
    let t = agent(TRADER);
    let on = |method: &'static str, tag: Option<&'static str>| decide(&p, &t, &req(method, "/x").route_tag(tag));
    assert_eq!(on("POST", Some("partner")), "allowed by \"partners\"");
    assert_eq!(on("GET", Some("public")), "allowed by \"partners\"");
    assert_eq!(on("POST", Some("public")), "denied by \"no-writes-on-public\"");
    assert_eq!(on("GET", Some("internal")), "no rule allows");
    // Untagged: neither rule applies. Unknown (Envoy could not say): the deny rule applies, the allow does not.
    assert_eq!(on("GET", Some("")), "no rule allows");
    assert_eq!(on("POST", None), "denied by \"no-writes-on-public\"");
    assert_eq!(on("GET", None), "no rule allows");
}

mod values;

mod mcp;

/// The tables' hash (rustc-hash's Fx) tells short keys apart.
#[test]
fn distinguishes_short_keys() {
    let mut m: FxHashMap<Box<str>, u32> = FxHashMap::default();
    for i in 0..10_000u32 {
        m.insert(format!("seg{i}").into(), i);
    }
    assert!((0..10_000u32).all(|i| m.get(format!("seg{i}").as_str()) == Some(&i)));
    assert_eq!(m.get(""), None);
}
