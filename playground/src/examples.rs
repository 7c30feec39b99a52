//! The repository's policies and their test cases, preloaded: each example is the policy, its
//! `*.tests.json`, and the first case's claims and request to start from.

use serde_json::{Value, json};

/// (name, title, policy, tests), compiled in from `policies/`.
const EXAMPLES: [(&str, &str, &str, &str); 6] = [
    (
        "trading",
        "Trading: orders in session hours, approved symbols",
        include_str!("../../policies/trading.json"),
        include_str!("../../policies/trading.tests.json"),
    ),
    (
        "hospital",
        "Hospital: patient records, labels and on-behalf-of",
        include_str!("../../policies/hospital.json"),
        include_str!("../../policies/hospital.tests.json"),
    ),
    (
        "logistics",
        "Logistics: vendors' agents in their own trust domains",
        include_str!("../../policies/logistics.json"),
        include_str!("../../policies/logistics.tests.json"),
    ),
    (
        "delegation",
        "Delegation: act chains, may_act, depth",
        include_str!("../../policies/delegation.json"),
        include_str!("../../policies/delegation.tests.json"),
    ),
    (
        "mcp",
        "MCP: tools, resources and prompts, arguments bound to claims",
        include_str!("../../policies/mcp.json"),
        include_str!("../../policies/mcp.tests.json"),
    ),
    (
        "demo",
        "Demo: the gateway demo's policy",
        include_str!("../../policies/demo.json"),
        include_str!("../../policies/demo.tests.json"),
    ),
];

/// Every example: `{name, title, description, policy, tests, claims, request}`.
pub fn all() -> Value {
    let examples: Vec<Value> = EXAMPLES
        .iter()
        .map(|(name, title, policy, tests)| {
            let cases: Value = serde_json::from_str(tests).unwrap_or(Value::Null);
            let first = &cases["cases"][0];
            // The first case's claims over the file's defaults, and its request with the file's time.
            let mut claims = cases["token_defaults"].as_object().cloned().unwrap_or_default();
            if let Some(own) = first["token"].as_object() {
                claims.extend(own.clone());
            }
            let mut request = first["request"].clone();
            if request.get("time").is_none() {
                request["time"] = cases["time"].clone();
            }
            json!({
                "name": name,
                "title": title,
                "description": cases["description"],
                "policy": policy,
                "tests": tests,
                "claims": claims,
                "request": request,
                "case": first["name"],
            })
        })
        .collect();
    Value::Array(examples)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_example_has_a_policy_tests_claims_and_a_request() {
        let all = super::all();
        for e in all.as_array().unwrap() {
            assert!(e["claims"]["sub"].is_string(), "{}", e["name"]);
            assert!(e["request"]["method"].is_string() && e["request"]["time"].is_string(), "{}", e["name"]);
        }
    }
}
