//! Policy: which agent may do what. This first form says who (agent ids, exact or by prefix), which methods
//! and which path prefix; deny overrides allow, and anything no rule allows is denied.
//!
//! Documents are validated completely before use: an unknown field, an empty list or a pattern that could
//! silently match everything is an error with the exact path, never "match all".

use crate::request;
use serde::Deserialize;
use std::fmt;

/// A policy as people write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The rules, evaluated together (order does not matter: deny overrides allow).
    pub rules: Vec<RuleDocument>,
}

/// One rule as people write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    /// Unique id, reported in decisions, responses and metrics.
    pub id: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// `allow` or `deny`.
    pub effect: Effect,
    /// Agent ids: exact (`spiffe://td/agent/x`), a prefix ending in `/*` (`spiffe://td/*`), or `*` for any
    /// verified agent.
    pub agents: Vec<String>,
    /// Methods (any case in the document; compared upper-cased). Absent means any method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Path prefix on segment boundaries: `/orders` covers `/orders` and `/orders/7`, not `/orders-old`.
    /// Absent means any path.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants access unless a deny rule also matches.
    Allow,
    /// Refuses access, whatever else matches.
    Deny,
}

/// A policy document that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// JSON path relative to the policy document, e.g. `rules[3].agents[0]`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, Clone)]
enum AgentPattern {
    Any,
    Exact(String),
    /// Stored with its trailing `/`, so a match is always on a segment boundary.
    Prefix(String),
}

impl AgentPattern {
    fn matches(&self, agent: &str) -> bool {
        match self {
            AgentPattern::Any => true,
            AgentPattern::Exact(id) => id == agent,
            AgentPattern::Prefix(prefix) => agent.starts_with(prefix.as_str()) && agent.len() > prefix.len(),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    effect: Effect,
    agents: Vec<AgentPattern>,
    methods: Option<Vec<String>>,
    path_prefix: Option<String>,
}

impl Rule {
    fn matches(&self, agent: &str, method: &str, path: &str) -> bool {
        self.agents.iter().any(|a| a.matches(agent))
            && self.methods.as_ref().is_none_or(|m| m.iter().any(|m| m == method))
            && self.path_prefix.as_deref().is_none_or(|p| path_covered(p, path))
    }
}

fn path_covered(prefix: &str, path: &str) -> bool {
    prefix == "/" || path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A validated policy, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// The outcome of evaluating a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDecision<'p> {
    /// An allow rule matched and no deny rule did.
    Allow {
        /// The allowing rule.
        rule: &'p str,
    },
    /// A deny rule matched.
    DenyByRule {
        /// The denying rule.
        rule: &'p str,
    },
    /// No rule allows this request.
    NoRuleAllows,
}

impl Policy {
    /// Validates a document.
    pub fn compile(doc: &PolicyDocument) -> Result<Policy, PolicyError> {
        let err = |path: String, message: &str| PolicyError { path, message: message.to_owned() };
        let mut rules: Vec<Rule> = Vec::with_capacity(doc.rules.len());
        for (i, r) in doc.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            if r.id.is_empty() || !r.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
                return Err(err(at("id"), "must be non-empty and use only letters, digits, '-', '_', '.', ':'"));
            }
            if rules.iter().any(|prev| prev.id == r.id) {
                return Err(err(at("id"), &format!("duplicate rule id \"{}\"", r.id)));
            }
            if r.agents.is_empty() {
                return Err(err(at("agents"), "must name at least one agent (use \"*\" for any verified agent)"));
            }
            let mut agents = Vec::with_capacity(r.agents.len());
            for (j, a) in r.agents.iter().enumerate() {
                agents.push(agent_pattern(a).map_err(|m| err(format!("rules[{i}].agents[{j}]"), m))?);
            }
            let methods = match &r.methods {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(err(at("methods"), "must not be empty (leave it out to allow any method)"));
                }
                Some(list) => {
                    let mut out = Vec::with_capacity(list.len());
                    for (j, m) in list.iter().enumerate() {
                        out.push(request::canonical_method(m).map_err(|_| {
                            err(format!("rules[{i}].methods[{j}]"), "not an HTTP method (CONNECT is not supported)")
                        })?);
                    }
                    Some(out)
                }
            };
            let path_prefix = match &r.path_prefix {
                None => None,
                Some(p) => match request::canonical_path(p) {
                    Ok((c, None)) if c == *p && (c == "/" || !c.ends_with('/')) => Some(c),
                    _ => {
                        return Err(err(
                            at("path_prefix"),
                            "must be a canonical path starting with '/', without a trailing '/', query, \
                             dot segments or ambiguous escapes",
                        ));
                    }
                },
            };
            rules.push(Rule { id: r.id.clone(), effect: r.effect, agents, methods, path_prefix });
        }
        Ok(Policy { rules })
    }

    /// Decides for an agent, a canonical method and a canonical path.
    pub fn evaluate(&self, agent: &str, method: &str, path: &str) -> PolicyDecision<'_> {
        let mut allowed_by = None;
        for rule in &self.rules {
            if rule.matches(agent, method, path) {
                match rule.effect {
                    Effect::Deny => return PolicyDecision::DenyByRule { rule: &rule.id },
                    Effect::Allow => allowed_by = allowed_by.or(Some(rule.id.as_str())),
                }
            }
        }
        match allowed_by {
            Some(rule) => PolicyDecision::Allow { rule },
            None => PolicyDecision::NoRuleAllows,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn agent_pattern(a: &str) -> Result<AgentPattern, &'static str> {
    if a == "*" {
        return Ok(AgentPattern::Any);
    }
    if a.is_empty() || a.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("must be a non-empty agent id of visible ASCII characters");
    }
    match a.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') && !prefix.contains('*') && prefix.len() > 1 => {
            Ok(AgentPattern::Prefix(prefix.to_owned()))
        }
        Some(_) => Err("'*' is only allowed alone or as a final path segment (\"spiffe://domain/agents/*\")"),
        None if a.contains('*') => {
            Err("'*' is only allowed alone or as a final path segment (\"spiffe://domain/agents/*\")")
        }
        None => Ok(AgentPattern::Exact(a.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: serde_json::Value) -> Result<Policy, PolicyError> {
        Policy::compile(&serde_json::from_value(v).unwrap())
    }

    const TRADER: &str = "spiffe://trading.example/agent/trader";

    fn trading() -> Policy {
        policy(json!({"rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "path_prefix": "/orders"},
            {"id": "all-read-quotes", "effect": "allow", "agents": ["spiffe://trading.example/*"], "methods": ["get"], "path_prefix": "/quotes"},
            {"id": "no-admin", "effect": "deny", "agents": ["*"], "path_prefix": "/admin"}
        ]}))
        .unwrap()
    }

    #[test]
    fn allow_deny_and_default() {
        let p = trading();
        assert_eq!(p.evaluate(TRADER, "POST", "/orders"), PolicyDecision::Allow { rule: "trader-orders" });
        assert_eq!(p.evaluate(TRADER, "POST", "/orders/7"), PolicyDecision::Allow { rule: "trader-orders" });
        assert_eq!(p.evaluate(TRADER, "POST", "/orders-old"), PolicyDecision::NoRuleAllows);
        assert_eq!(p.evaluate(TRADER, "GET", "/orders"), PolicyDecision::NoRuleAllows);
        assert_eq!(p.evaluate("spiffe://trading.example/agent/other", "POST", "/orders"), PolicyDecision::NoRuleAllows);
        assert_eq!(p.evaluate(TRADER, "GET", "/quotes/ACME"), PolicyDecision::Allow { rule: "all-read-quotes" });
        assert_eq!(p.evaluate("spiffe://trading.example.evil/x", "GET", "/quotes"), PolicyDecision::NoRuleAllows);
        assert_eq!(p.evaluate("spiffe://trading.example/", "GET", "/quotes"), PolicyDecision::NoRuleAllows);
    }

    #[test]
    fn deny_overrides_allow() {
        let p = policy(json!({"rules": [
            {"id": "everything", "effect": "allow", "agents": ["*"]},
            {"id": "no-admin", "effect": "deny", "agents": ["*"], "path_prefix": "/admin"}
        ]}))
        .unwrap();
        assert_eq!(p.evaluate(TRADER, "GET", "/admin/users"), PolicyDecision::DenyByRule { rule: "no-admin" });
        assert_eq!(p.evaluate(TRADER, "GET", "/x"), PolicyDecision::Allow { rule: "everything" });
    }

    #[test]
    fn errors_name_the_exact_place() {
        let e = |v| policy(v).unwrap_err().to_string();
        let base = |rule: serde_json::Value| json!({"rules": [{"id": "ok", "effect": "allow", "agents": ["*"]}, rule]});
        assert!(e(base(json!({"id": "ok", "effect": "allow", "agents": ["*"]}))).starts_with("rules[1].id: duplicate"));
        assert!(e(base(json!({"id": "r", "effect": "allow", "agents": []}))).starts_with("rules[1].agents:"));
        assert!(
            e(base(json!({"id": "r", "effect": "allow", "agents": ["spiffe://x*"]})))
                .starts_with("rules[1].agents[0]:")
        );
        assert!(
            e(base(json!({"id": "r", "effect": "allow", "agents": ["*"], "methods": []})))
                .starts_with("rules[1].methods:")
        );
        assert!(
            e(base(json!({"id": "r", "effect": "allow", "agents": ["*"], "methods": ["GET", "CONNECT"]})))
                .starts_with("rules[1].methods[1]:")
        );
        for bad in ["orders", "/orders/", "/a/../b", "/a%2Fb", "/a?x", "//a"] {
            assert!(
                e(base(json!({"id": "r", "effect": "allow", "agents": ["*"], "path_prefix": bad})))
                    .starts_with("rules[1].path_prefix:"),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_effects_are_errors() {
        let doc = json!({"rules": [{"id": "r", "effect": "allow", "agents": ["*"], "path": "/x"}]});
        assert!(serde_json::from_value::<PolicyDocument>(doc).is_err());
        let doc = json!({"rules": [{"id": "r", "effect": "permit", "agents": ["*"]}]});
        assert!(serde_json::from_value::<PolicyDocument>(doc).is_err());
    }
}
