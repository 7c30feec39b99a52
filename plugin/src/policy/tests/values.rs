//! How rules read values the request carries: numbers compared exactly, header values trimmed, and header
//! values that are lists (Envoy joins repeated headers with commas) read element by element.

use super::*;

fn account_rule() -> Policy {
    policy(json!({"rules": [
        {"id": "own-account", "effect": "allow", "agents": ["*"], "paths": ["/accounts/{acct}"],
         "when": {"path": {"acct": {"equals": {"claim": "account_id"}}}}},
        {"id": "vip", "effect": "deny", "agents": ["*"], "paths": ["/accounts/{acct}"],
         "when": {"path": {"acct": {"in": [9_007_199_254_740_993u64, 4_611_686_018_427_388_417u64]}}}}
    ]}))
    .unwrap()
}

fn with_account(id: Value) -> VerifiedToken {
    token(json!({"sub": TRADER, "iss": "https://issuer.example", "account_id": id}))
}

#[test]
fn path_numbers_compare_with_claims_exactly() {
    let p = account_rule();
    // One f64 apart from nothing: 2^53 and 2^53 + 1.
    let t = with_account(json!(9_007_199_254_740_993u64));
    assert_eq!(decide(&p, &t, &req("GET", "/accounts/9007199254740992")), "no rule allows");
    let t = with_account(json!(9_007_199_254_740_992u64));
    assert_eq!(decide(&p, &t, &req("GET", "/accounts/9007199254740992")), "allowed by \"own-account\"");
    assert_eq!(decide(&p, &t, &req("GET", "/accounts/9007199254740993")), "denied by \"vip\"");
    // Near 2^62 about a thousand neighbours share one f64; none of them is this account.
    let base = 4_611_686_018_427_387_904u64 + 100;
    let t = with_account(json!(base));
    for neighbour in [base - 100, base - 1, base + 1, base + 100] {
        assert_eq!(decide(&p, &t, &req("GET", &format!("/accounts/{neighbour}"))), "no rule allows", "{neighbour}");
    }
    assert_eq!(decide(&p, &t, &req("GET", &format!("/accounts/{base}"))), "allowed by \"own-account\"");
    // The deny list matches only its exact members.
    assert_eq!(decide(&p, &with_account(json!(1)), &req("GET", "/accounts/4611686018427388416")), "no rule allows");
    assert_eq!(
        decide(&p, &with_account(json!(4_611_686_018_427_388_417u64)), &req("GET", "/accounts/4611686018427388417")),
        "denied by \"vip\""
    );
}

#[test]
fn numbers_that_cannot_be_compared_exactly_never_allow() {
    let p = account_rule();
    // Beyond 64 bits the claim reaches policy as a rounded f64: it cannot be compared, so it allows nothing.
    let t = token(serde_json::from_str(r#"{"sub": "a", "iss": "i", "account_id": 18446744073709551617}"#).unwrap());
    for path in ["/accounts/18446744073709551616", "/accounts/18446744073709551617"] {
        assert_eq!(decide(&p, &t, &req("GET", path)), "no rule allows", "{path}");
    }
    // Text other upstreams read differently is not a number: the allow rule cannot match it, and the deny
    // rule on numbers cannot be evaluated on it, so it applies.
    let t = with_account(json!(100));
    for path in ["/accounts/1e2", "/accounts/0100", "/accounts/+100", "/accounts/100%20", "/accounts/0x64"] {
        assert_eq!(decide(&p, &t, &req("GET", path)), "denied by \"vip\"", "{path}");
    }
    assert_eq!(decide(&p, &t, &req("GET", "/accounts/100")), "allowed by \"own-account\"");
    // A deny rule on a value that cannot be compared denies.
    let deny = policy(json!({"rules": [
        {"id": "all", "effect": "allow", "agents": ["*"]},
        {"id": "big-orders", "effect": "deny", "agents": ["*"], "when": {"query": {"qty": {"gt": 1000}}}}
    ]}))
    .unwrap();
    assert_eq!(decide(&deny, &t, &req("GET", "/o?qty=1000")), "allowed by \"all\"");
    assert_eq!(decide(&deny, &t, &req("GET", "/o?qty=1000.000000000000000001")), "denied by \"big-orders\"");
    assert_eq!(decide(&deny, &t, &req("GET", "/o?qty=1e9")), "denied by \"big-orders\"");
    assert_eq!(decide(&deny, &t, &req("GET", "/o?qty=99999999999999999999999")), "denied by \"big-orders\"");
}

#[test]
fn number_literals_must_be_exact() {
    for (rule_when, at) in [
        (json!({"claims": {"n": {"equals": 1e20}}}), "rules[0].when.claims.n.equals"),
        (json!({"claims": {"n": {"in": [1, 18446744073709551616.0]}}}), "rules[0].when.claims.n.in[1]"),
        (json!({"claims": {"n": {"gte": 9007199254740992.0}}}), "rules[0].when.claims.n.gte"),
    ] {
        let e = err(json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "when": rule_when}]}));
        assert!(e.starts_with(at) && e.contains("cannot be compared exactly"), "{e}");
    }
    assert!(
        policy(json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"],
        "when": {"claims": {"n": {"equals": u64::MAX, "gte": -9_223_372_036_854_775_808i64, "lt": 2.5}}}}]}))
        .is_ok()
    );
}

fn country_rules() -> Policy {
    policy(json!({
        "lists": {"sanctioned": ["KP", "IR"]},
        "rules": [
            {"id": "all", "effect": "allow", "agents": ["*"], "paths": ["/pay"]},
            {"id": "us-only", "effect": "allow", "agents": ["*"], "paths": ["/us"],
             "when": {"headers": {"x-country": {"equals": "US"}}}},
            {"id": "sanctions", "effect": "deny", "agents": ["*"],
             "when": {"headers": {"x-country": {"in": {"list": "sanctioned"}}}}},
            {"id": "no-ir", "effect": "deny", "agents": ["*"], "when": {"headers": {"x-country": {"equals": "IR"}}}}
        ]
    }))
    .unwrap()
}

/// The decision for `GET path` with this `x-country` value.
fn with_country(p: &Policy, t: &VerifiedToken, path: &str, value: &'static str) -> String {
    decide(p, t, &req("GET", path).header("x-country", value))
}

#[test]
fn header_values_are_read_without_surrounding_whitespace() {
    let (p, t) = (country_rules(), agent(TRADER));
    for value in [" KP", "KP ", "\tKP", "KP\t", " \t KP \t "] {
        assert_eq!(with_country(&p, &t, "/pay", value), "denied by \"sanctions\"", "{value:?}");
    }
    let p = policy(json!({"rules": [
        {"id": "all", "effect": "allow", "agents": ["*"]},
        {"id": "no-ir", "effect": "deny", "agents": ["*"], "when": {"headers": {"x-country": {"equals": "IR"}}}}
    ]}))
    .unwrap();
    for value in [" IR", "IR\t", "\t IR"] {
        assert_eq!(with_country(&p, &t, "/pay", value), "denied by \"no-ir\"", "{value:?}");
    }
    let p = country_rules();
    assert_eq!(with_country(&p, &t, "/us", " US\t"), "allowed by \"us-only\"");
    // Other control characters are whitespace to some upstreams only: such a value cannot be evaluated.
    for value in ["\u{b}KP", "KP\u{c}", "U\u{1}S"] {
        assert_eq!(with_country(&p, &t, "/pay", value), "denied by \"sanctions\"", "{value:?}");
        assert_eq!(with_country(&p, &t, "/us", value), "denied by \"sanctions\"", "{value:?}");
    }
}

#[test]
fn a_list_value_denies_when_any_element_matches_and_allows_only_when_every_one_does() {
    let (p, t) = (country_rules(), agent(TRADER));
    // What Envoy makes of two `x-forwarded-for`-style headers, and what a client may send as one.
    for value in ["US,KP", "US, KP", "KP,US", "US,\tKP ,", " ,US,,KP"] {
        assert_eq!(with_country(&p, &t, "/pay", value), "denied by \"sanctions\"", "{value:?}");
        assert_eq!(with_country(&p, &t, "/us", value), "denied by \"sanctions\"", "{value:?}");
    }
    for value in ["US,CA", "US, US,CA"] {
        assert_eq!(with_country(&p, &t, "/us", value), "no rule allows", "{value:?}");
        assert_eq!(with_country(&p, &t, "/pay", value), "allowed by \"all\"", "{value:?}");
    }
    // Every element satisfies the allow rule; a list of one is its element.
    assert_eq!(with_country(&p, &t, "/us", "US, US"), "allowed by \"us-only\"");
    assert_eq!(with_country(&p, &t, "/us", "US,"), "allowed by \"us-only\"");
}

#[test]
fn a_header_sent_twice_cannot_be_evaluated_so_a_deny_rule_applies() {
    let (p, t) = (country_rules(), agent(TRADER));
    // Two separate fields (a header Envoy does not join): which one counts depends on the reader.
    let twice = req("GET", "/us").header("x-country", "US").header("x-country", "CA");
    assert_eq!(decide(&p, &t, &twice), "denied by \"sanctions\"");
    let twice = req("GET", "/pay").header("x-country", "US").header("X-Country", "US");
    assert_eq!(decide(&p, &t, &twice), "denied by \"sanctions\"");
}

#[test]
fn list_values_in_every_operator() {
    let p = policy(json!({"rules": [
        {"id": "browser", "effect": "allow", "agents": ["*"], "paths": ["/ua"],
         "when": {"headers": {"user-agent": {"starts_with": "agent/"}}}},
        {"id": "origin", "effect": "allow", "agents": ["*"], "paths": ["/o"],
         "when": {"headers": {"origin": {"not_in": ["https://evil.example"]}}}},
        {"id": "scoped", "effect": "allow", "agents": ["*"], "paths": ["/s"],
         "when": {"headers": {"x-scopes": {"contains": "read"}}}},
        {"id": "ref", "effect": "allow", "agents": ["*"], "paths": ["/r"],
         "when": {"query": {"who": {"equals": {"header": "x-who"}}}}}
    ]}))
    .unwrap();
    let t = agent(TRADER);
    let on = |path: &'static str, name: &'static str, value: &'static str| {
        decide(&p, &t, &req("GET", path).header(name, value))
    };
    assert_eq!(on("/ua", "user-agent", "agent/1.0"), "allowed by \"browser\"");
    assert_eq!(on("/ua", "user-agent", "agent/1.0,curl/8"), "no rule allows");
    assert_eq!(on("/ua", "user-agent", "agent/1.0, agent/2.0"), "allowed by \"browser\"");
    assert_eq!(on("/o", "origin", "https://ok.example,https://evil.example"), "no rule allows");
    assert_eq!(on("/o", "origin", "https://ok.example"), "allowed by \"origin\"");
    // `contains` looks for a word in the whole list, as it always did.
    assert_eq!(on("/s", "x-scopes", "write, read"), "allowed by \"scoped\"");
    // A reference to a list has no one value.
    assert_eq!(decide(&p, &t, &req("GET", "/r?who=a").header("x-who", "a")), "allowed by \"ref\"");
    assert_eq!(decide(&p, &t, &req("GET", "/r?who=a").header("x-who", "a,b")), "no rule allows");
}

#[test]
fn lists_are_explained() {
    let p = country_rules();
    let r = req("GET", "/us").header("x-country", "US, KP");
    let e = p.explain(&agent(TRADER), &r.view());
    let reasons: Vec<&String> = e.candidates().flat_map(|c| c.reasons.iter()).collect();
    assert!(reasons.iter().any(|r| r.contains("is a list of 2 values; cannot be evaluated")), "{reasons:#?}");
}
