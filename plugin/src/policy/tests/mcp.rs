//! MCP rules: methods, tools, resources and prompts selected; arguments and resource parameters in
//! conditions, bound to claims; lifecycle defaults; lists filtered through hypothetical calls.

use super::*;
use crate::request::mcp::{Kind, McpRequest};

fn call(method: &str, name: Option<&str>, uri: Option<&str>, arguments: Value) -> McpRequest {
    McpRequest {
        revision: None,
        kind: Kind::Request { id: json!(1) },
        method: method.into(),
        name: name.map(Into::into),
        uri: uri.map(Into::into),
        arguments: arguments.as_object().cloned().unwrap_or_default(),
    }
}

fn tool(name: &str, arguments: Value) -> Req {
    mcp_req(call("tools/call", Some(name), None, arguments))
}

fn mcp_req(c: McpRequest) -> Req {
    let mut r = req("POST", "/mcp");
    r.mcp = Some(c);
    r
}

fn listing(mut r: Req) -> Req {
    r.hypothetical = true;
    r
}

fn trading() -> Policy {
    policy(json!({"rules": [
        {"id": "list", "effect": "allow", "agents": ["*"], "mcp": {"methods": ["tools/list", "prompts/list", "resources/*list"]}},
        {"id": "quotes", "effect": "allow", "agents": [TRADER], "mcp": {"tools": ["get_quote", "search_*"]}},
        {"id": "orders", "effect": "allow", "agents": [TRADER], "mcp": {"tools": ["place_order"]},
         "when": {"arguments": {"account_id": {"equals": {"claim": "account_id"}}, "amount": {"lte": {"claim": "max_amount"}}}}},
        {"id": "no-big-orders", "effect": "deny", "agents": ["*"], "mcp": {"tools": ["place_order"]},
         "when": {"arguments": {"amount": {"gt": 1000000}}}},
        {"id": "positions", "effect": "allow", "agents": [TRADER], "mcp": {"resources": ["trading://accounts/{account}/positions"]},
         "when": {"resource": {"account": {"equals": {"claim": "account_id"}}}}},
        {"id": "prompts", "effect": "allow", "agents": [TRADER], "mcp": {"prompts": ["summarise_*"]}}
    ]}))
    .unwrap()
}

fn trader() -> VerifiedToken {
    token(json!({"sub": TRADER, "iss": "https://issuer.example", "account_id": "acct-7", "max_amount": 5000}))
}

#[test]
fn tools_are_selected_by_name_and_glob() {
    let (p, t) = (trading(), trader());
    assert_eq!(decide(&p, &t, &tool("get_quote", json!({"symbol": "ACME"}))), "allowed by \"quotes\"");
    assert_eq!(decide(&p, &t, &tool("search_quotes", json!({}))), "allowed by \"quotes\"");
    assert_eq!(decide(&p, &t, &tool("delete_account", json!({}))), "no rule allows");
    assert_eq!(decide(&p, &t, &tool("get_quotes", json!({}))), "no rule allows");
    // Another agent is not the trader.
    assert_eq!(decide(&p, &agent("spiffe://trading.example/agent/x"), &tool("get_quote", json!({}))), "no rule allows");
    // A rule with `mcp` never matches a request that is not an MCP message.
    assert_eq!(decide(&p, &t, &req("POST", "/mcp")), "no rule allows");
    // The method must be the tool's: a prompts/get named like a tool is not a tool call.
    assert_eq!(decide(&p, &t, &mcp_req(call("prompts/get", Some("get_quote"), None, json!({})))), "no rule allows");
}

#[test]
fn arguments_are_bound_to_claims() {
    let (p, t) = (trading(), trader());
    let order = |args: Value| tool("place_order", args);
    assert_eq!(decide(&p, &t, &order(json!({"account_id": "acct-7", "amount": 100}))), "allowed by \"orders\"");
    assert_eq!(decide(&p, &t, &order(json!({"account_id": "acct-7", "amount": 5000}))), "allowed by \"orders\"");
    assert_eq!(decide(&p, &t, &order(json!({"account_id": "acct-7", "amount": 5001}))), "no rule allows");
    assert_eq!(decide(&p, &t, &order(json!({"account_id": "acct-8", "amount": 1}))), "no rule allows");
    // Missing or ill-typed arguments cannot be evaluated: never allowed, and a deny rule reading them applies.
    let missing = order(json!({"account_id": "acct-7"}));
    assert_eq!(decide(&p, &t, &missing), "denied by \"no-big-orders\"");
    assert_eq!(decide(&p, &t, &order(json!({"account_id": "acct-7", "amount": "5"}))), "denied by \"no-big-orders\"");
    assert_eq!(decide(&p, &t, &order(json!({"account_id": ["acct-7"], "amount": 5}))), "no rule allows");
    // A deny on an argument applies whatever allows.
    assert_eq!(
        decide(&p, &t, &order(json!({"account_id": "acct-7", "amount": 2000000}))),
        "denied by \"no-big-orders\""
    );
    // Exact numbers: 2^53 + 1 is more than 2^53.
    let p = policy(json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["t"]},
        "when": {"arguments": {"n": {"lte": {"claim": "max"}}}}}]}))
    .unwrap();
    let t = token(json!({"sub": TRADER, "iss": "https://issuer.example", "max": 9007199254740992u64}));
    assert_eq!(decide(&p, &t, &tool("t", json!({"n": 9007199254740992u64}))), "allowed by \"r\"");
    assert_eq!(decide(&p, &t, &tool("t", json!({"n": 9007199254740993u64}))), "no rule allows");
}

#[test]
fn resources_capture_parameters_and_prompts_match() {
    let (p, t) = (trading(), trader());
    let read = |uri: &str| mcp_req(call("resources/read", None, Some(uri), json!({})));
    assert_eq!(decide(&p, &t, &read("trading://accounts/acct-7/positions")), "allowed by \"positions\"");
    assert_eq!(decide(&p, &t, &read("trading://accounts/acct-8/positions")), "no rule allows");
    assert_eq!(decide(&p, &t, &read("trading://accounts/acct-7/positions/x")), "no rule allows");
    // Percent-decoded before comparison, as path parameters are.
    assert_eq!(decide(&p, &t, &read("trading://accounts/acct%2D7/positions")), "allowed by \"positions\"");
    let prompt = |name: &str| mcp_req(call("prompts/get", Some(name), None, json!({})));
    assert_eq!(decide(&p, &t, &prompt("summarise_portfolio")), "allowed by \"prompts\"");
    assert_eq!(decide(&p, &t, &prompt("admin_report")), "no rule allows");
    // Methods with globs.
    let list = |m: &str| mcp_req(call(m, None, None, json!({})));
    assert_eq!(decide(&p, &t, &list("tools/list")), "allowed by \"list\"");
    assert_eq!(decide(&p, &t, &list("resources/templates/list")), "allowed by \"list\"");
    assert_eq!(decide(&p, &t, &list("completion/complete")), "no rule allows");
}

#[test]
fn lifecycle_messages_follow_the_documented_default() {
    let p = trading();
    let t = agent("spiffe://elsewhere.example/agent/x");
    let notification =
        McpRequest { kind: Kind::Notification, ..call("notifications/initialized", None, None, json!({})) };
    for m in [call("initialize", None, None, json!({})), call("ping", None, None, json!({})), notification.clone()] {
        assert_eq!(decide(&p, &t, &mcp_req(m)), format!("allowed by \"{MCP_LIFECYCLE_RULE}\""));
    }
    // A deny rule still applies to them.
    let p = policy(json!({"rules": [{"id": "no-x", "effect": "deny", "agents": ["spiffe://elsewhere.example/*"]}]}))
        .unwrap();
    assert_eq!(decide(&p, &t, &mcp_req(call("initialize", None, None, json!({})))), "denied by \"no-x\"");
    // Under `mcp_lifecycle: rules` they need a rule like everything else.
    let p = policy(json!({"mcp_lifecycle": "rules", "rules": [{"id": "r", "effect": "allow", "agents": ["*"], "mcp": {"methods": ["initialize"]}}]}))
        .unwrap();
    assert_eq!(decide(&p, &t, &mcp_req(call("initialize", None, None, json!({})))), "allowed by \"r\"");
    assert_eq!(decide(&p, &t, &mcp_req(notification)), "no rule allows");
    // Not lifecycle: a tool call.
    let p = trading();
    assert_eq!(decide(&p, &t, &tool("get_quote", json!({}))), "no rule allows");
}

#[test]
fn a_hypothetical_call_lists_what_some_call_could_use() {
    let (p, t) = (trading(), trader());
    // place_order is allowed for some arguments, so it is listed; the deny on large amounts does not hide it.
    assert_eq!(decide(&p, &t, &listing(tool("place_order", json!({})))), "allowed by \"orders\"");
    assert_eq!(decide(&p, &t, &listing(tool("get_quote", json!({})))), "allowed by \"quotes\"");
    assert_eq!(decide(&p, &t, &listing(tool("delete_account", json!({})))), "no rule allows");
    // A template is listed when its variables could take an allowed value.
    let template = mcp_req(call("resources/read", None, Some("trading://accounts/{account_id}/positions"), json!({})));
    assert_eq!(decide(&p, &t, &listing(template)), "allowed by \"positions\"");
    // A deny rule without argument conditions hides the tool.
    let p = policy(json!({"rules": [
        {"id": "all", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["*"]}},
        {"id": "no-delete", "effect": "deny", "agents": ["*"], "mcp": {"tools": ["delete_*"]}}
    ]}))
    .unwrap();
    assert_eq!(decide(&p, &t, &listing(tool("delete_account", json!({})))), "denied by \"no-delete\"");
    assert_eq!(decide(&p, &t, &listing(tool("get_quote", json!({})))), "allowed by \"all\"");
}

#[test]
fn candidates_found_once_decide_each_entry_as_allows_does() {
    let (p, t) = (trading(), trader());
    let deny_some = policy(json!({"rules": [
        {"id": "all", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["*"]}},
        {"id": "no-delete", "effect": "deny", "agents": ["*"], "mcp": {"tools": ["delete_*"]}},
        {"id": "get-only", "effect": "allow", "agents": ["*"], "methods": ["GET"], "mcp": {"tools": ["x"]}}
    ]}))
    .unwrap();
    for (p, who) in [(&p, &t), (&deny_some, &t), (&p, &agent("spiffe://trading.example/agent/x"))] {
        for method in ["tools/list", "resources/list"] {
            let listed = listing(mcp_req(call(method, None, None, json!({}))));
            let candidates = p.candidates(who, &listed.view());
            for name in ["get_quote", "search_x", "place_order", "delete_account", "x", "summarise_day", ""] {
                for (entry, uri) in [(Some(name), None), (None, Some("trading://accounts/acct-7/positions"))] {
                    let probe_method = if uri.is_some() { "resources/read" } else { "tools/call" };
                    let probe = listing(mcp_req(call(probe_method, entry, uri, json!({}))));
                    assert_eq!(
                        p.allows_among(&candidates, who, &probe.view()),
                        p.allows(who, &probe.view()),
                        "{method} {name} {uri:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn explanations_name_the_mcp_selector_and_arguments() {
    let (p, t) = (trading(), trader());
    let r = tool("place_order", json!({"account_id": "acct-8", "amount": 1}));
    let e = p.explain(&t, &r.view());
    let orders = e.rules.iter().find(|r| r.id == "orders").unwrap();
    assert_eq!(orders.result, RuleResult::ConditionsFailed);
    assert_eq!(
        orders.reasons,
        vec!["rules[2].when.arguments.account_id: \"acct-8\" does not satisfy equals claim account_id".to_owned()]
    );
    let quotes = e.rules.iter().find(|r| r.id == "quotes").unwrap();
    assert_eq!(
        quotes.reasons,
        vec!["rules[1].mcp: tools/call tool \"place_order\" is not one of [\"get_quote\", \"search_*\"]".to_owned()]
    );
}

#[test]
fn mcp_rules_are_checked_at_compile_time() {
    let rule = |extra: Value| {
        let mut r = json!({"id": "r", "effect": "allow", "agents": ["*"]});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        err(json!({"rules": [r]}))
    };
    assert_eq!(
        rule(json!({"mcp": {"tools": ["a"], "prompts": ["b"]}})),
        "rules[0].mcp: name one of methods, tools, resources, prompts (tools imply tools/call, resources \
         resources/read, prompts prompts/get)"
    );
    assert_eq!(rule(json!({"mcp": {}})), "rules[0].mcp: names nothing (methods, tools, resources or prompts)");
    assert_eq!(rule(json!({"mcp": {"tools": []}})), "rules[0].mcp.tools: must not be empty (leave it out instead)");
    assert_eq!(
        rule(json!({"mcp": {"tools": ["a**"]}})),
        "rules[0].mcp.tools[0]: '**' means nothing more than '*' here; write one"
    );
    assert_eq!(
        rule(json!({"mcp": {"resources": ["x://a/../b"]}})),
        "rules[0].mcp.resources[0]: no dot segments, backslashes or fragments: requests with them are refused"
    );
    assert_eq!(
        rule(json!({"when": {"arguments": {"a": {"equals": 1}}}})),
        "rules[0].when.arguments.a: arguments need `mcp.tools` or `mcp.prompts` in the rule"
    );
    assert_eq!(
        rule(json!({"mcp": {"methods": ["tools/call"]}, "when": {"arguments": {"a": {"equals": 1}}}})),
        "rules[0].when.arguments.a: arguments need `mcp.tools` or `mcp.prompts` in the rule"
    );
    assert_eq!(
        rule(json!({"mcp": {"resources": ["x://{a}", "x://b/{c}"]}, "when": {"resource": {"a": {"equals": "1"}}}})),
        "rules[0].when.resource.a: resource parameter \"a\" is not captured by every template of this rule"
    );
    assert_eq!(
        rule(json!({"mcp": {"tools": ["t"]}, "when": {"claims": {"x": {"equals": {"resource": "a"}}}}})),
        "rules[0].when.claims.x.equals: resource parameter \"a\" needs `mcp.resources` with {a} in every template"
    );
    assert_eq!(
        rule(json!({"mcp": {"tools": ["t"]}, "when": {"claims": {"x": {"gt": "5"}}}})),
        "rules[0].when.claims.x.gt: must be a number or a reference {\"claim\": name}"
    );
}
