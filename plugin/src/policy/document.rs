//! The policy document as people write it (JSON; YAML where the host converts). Parsing is strict: an unknown
//! field anywhere is an error with its path. Conditions are kept as JSON here and compiled by
//! [`super::cond`], which knows the operators and reports a wrong one by its exact place.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A policy document.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Free text naming this version of the policy; reported with every decision (audit, explain).
    #[serde(default)]
    pub version: Option<String>,
    /// Where roles are read from: a claim name, dotted for nested claims (`realm_access.roles`). Default
    /// `roles`.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Named lists of strings, referred to as `{"in": {"list": "approved_symbols"}}`.
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<String>>,
    /// Labels attached to path templates (data classification such as `PHI`), selected by rules' `labels`.
    #[serde(default)]
    pub routes: Vec<RouteDocument>,
    /// MCP lifecycle messages (`initialize`, `ping`, `server/discover`, notifications, a client's responses):
    /// `allow` (default) lets any verified token send them unless a deny rule applies; `rules` governs them
    /// like every other message.
    #[serde(default)]
    pub mcp_lifecycle: Option<McpLifecycle>,
    /// The rules, evaluated together: order does not change the decision (deny overrides allow).
    pub rules: Vec<RuleDocument>,
    /// Limits on allowed requests per agent, per subject, per rule or tool, over windows of seconds to days,
    /// counted across the gateway's workers (429 over a limit).
    #[serde(default)]
    pub limits: Vec<LimitDocument>,
}

/// How MCP lifecycle messages are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum McpLifecycle {
    /// Allowed for any verified token unless a deny rule applies.
    Allow,
    /// Decided by the rules like any other message.
    Rules,
}

/// Which MCP messages a rule applies to (on MCP endpoints only; a rule with `mcp` never matches other
/// requests). At most one of `tools`, `resources`, `prompts`, each implying its method.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct McpRuleDocument {
    /// JSON-RPC methods, exact (`tools/list`) or with `*` for any run of characters (`notifications/*`).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Tools a `tools/call` may name, exact or with `*` (`search_*`).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Resource URI templates a `resources/read` may name: literal text, `{name}` for a run of characters
    /// without `/`, `?` or `#` (captured for `when.resource`), and a final `**` for any rest.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Prompts a `prompts/get` may name, exact or with `*`.
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
}

/// Labels for the requests a path template matches.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteDocument {
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// A path template (see [`RuleDocument::paths`]).
    pub path: String,
    /// Labels, e.g. `["PHI"]`.
    pub labels: Vec<String>,
}

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    /// Unique id, reported in decisions, responses and metrics.
    pub id: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// `allow` or `deny`.
    pub effect: Effect,
    /// `enforce` (default) or `dry_run`: a dry-run rule never changes a decision; when it would have, the
    /// gateway records it (logs, explain) — to trial a rule on live traffic.
    #[serde(default)]
    pub mode: Option<RuleMode>,

    /// Who, by the current actor's id: exact (`spiffe://td/agent/x`), a prefix ending in `/*`
    /// (`spiffe://td/*` is every agent of trust domain `td`), or `*` for any verified agent. Required, so that
    /// "everyone" is always written down.
    pub agents: Vec<String>,
    /// Token issuers (exact `iss`); absent means any configured issuer.
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
    /// The subject (`sub`: the human or service the agent acts for), with the same patterns as `agents`.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    /// Roles, any of which the token's roles claim must hold.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// OAuth scopes, all of which the token must hold (`scope`, space-separated, or `scp`, an array).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,

    /// Methods; absent means any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Path templates: literal segments, `{name}` for one segment captured as a path parameter, and a final
    /// `**` for any number of further segments (including none). Absent means any path.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Host names (`:authority` without port), exact or `*.example.com` for any sub-domain.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Envoy route names (`xds.route_name`): the rule applies only to requests Envoy routed through one of
    /// them, for when Envoy's routing should pick the policy.
    #[serde(default)]
    pub envoy_routes: Option<Vec<String>>,
    /// Envoy route tags: the matched route's metadata `filter_metadata.agent_iam.tag`, for selecting the
    /// policy by route without depending on route names.
    #[serde(default)]
    pub envoy_route_tags: Option<Vec<String>>,
    /// Route labels (from `routes`); the rule applies to requests whose path carries any of them.
    #[serde(default)]
    pub labels: Option<Vec<String>>,

    /// MCP messages: methods, tools, resources, prompts.
    #[serde(default)]
    pub mcp: Option<McpRuleDocument>,

    /// Conditions, all of which must hold.
    #[serde(default)]
    pub when: Option<WhenDocument>,

    /// Whether decisions by this rule are written to the audit trail (default true; with `audit.events: all`
    /// in the configuration). `false` for high-volume rules that need no record, such as health checks.
    #[serde(default)]
    pub audit: Option<bool>,
}

/// Whether a rule takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// It decides.
    Enforce,
    /// It is evaluated and recorded, never applied.
    DryRun,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants access unless a deny rule also matches.
    Allow,
    /// Refuses access, whatever else matches.
    Deny,
}

/// A rule's conditions. Each attribute maps to a test: an object of operators, all of which must hold, e.g.
/// `{"gte": 1, "lte": 100}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WhenDocument {
    /// Token claims by name, dotted for nested claims (`agent.version`), or a JSON pointer (`/https:~1~1x`)
    /// for names that contain dots.
    #[serde(default)]
    pub claims: BTreeMap<String, Map<String, Value>>,
    /// Request headers by name (case-insensitive). A header sent more than once cannot be evaluated.
    #[serde(default)]
    pub headers: BTreeMap<String, Map<String, Value>>,
    /// Query parameters by name, percent-decoded. A parameter sent more than once cannot be evaluated.
    #[serde(default)]
    pub query: BTreeMap<String, Map<String, Value>>,
    /// Path parameters captured by `{name}` in every one of the rule's path templates.
    #[serde(default)]
    pub path: BTreeMap<String, Map<String, Value>>,
    /// MCP tool or prompt arguments by name, dotted for nested members (`customer.id`) or a JSON pointer; the
    /// rule must name `mcp.tools` or `mcp.prompts`.
    #[serde(default)]
    pub arguments: BTreeMap<String, Map<String, Value>>,
    /// Parameters captured by `{name}` in every one of the rule's `mcp.resources` templates.
    #[serde(default)]
    pub resource: BTreeMap<String, Map<String, Value>>,
    /// Time windows ([`super::time::TimeWindowDocument`]): one, or a list the rule holds inside any of. Kept
    /// as JSON so that an error inside a list names its index.
    #[serde(default)]
    pub time: Option<Value>,
    /// Conditions on the delegation chain (RFC 8693 `act`, `may_act`).
    #[serde(default)]
    pub delegation: Option<DelegationDocument>,
    /// Binding of the token to the mutual-TLS connection.
    #[serde(default)]
    pub mtls: Option<MtlsDocument>,
}

/// Delegation conditions. They can only narrow what `agents` (the current actor) grants.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DelegationDocument {
    /// `true`: the token must carry `act`; `false`: it must not.
    #[serde(default)]
    pub delegated: Option<bool>,
    /// Most actors in the chain.
    #[serde(default)]
    pub max_depth: Option<usize>,
    /// Every actor in the chain (current and earlier) must match one of these patterns (true for a token
    /// without `act`: combine with `delegated: true` to require delegation).
    #[serde(default)]
    pub actors: Option<Vec<String>>,
    /// Some actor in the chain must match one of these patterns (false without `act`): for deny rules such as
    /// "no vendor agent anywhere in the chain".
    #[serde(default)]
    pub any_actor: Option<Vec<String>>,
    /// The first (originating) actor must match one of these patterns.
    #[serde(default)]
    pub origin: Option<Vec<String>>,
    /// `true`: the token's `may_act` must name the current actor.
    #[serde(default)]
    pub may_act: Option<bool>,
}

/// Mutual-TLS binding.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MtlsDocument {
    /// The current actor (or `sub` without `act`) must equal the peer certificate's URI SAN.
    #[serde(default)]
    pub actor_is_peer: Option<bool>,
    /// The token's `cnf.x5t#S256` must equal the peer certificate's SHA-256 digest (RFC 8705).
    #[serde(default)]
    pub certificate_bound: Option<bool>,
}

/// One limit as written.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitDocument {
    /// Unique id, named in the `RateLimit` headers, metrics and logs.
    pub id: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// What is counted together: any of `agent` (each agent on its own, the default), `subject` (every agent
    /// acting for one subject together: a limit on a person), `rule` (each allowing rule apart), `tool` (each
    /// MCP tool apart). `["agent", "tool"]` counts each agent's calls of each tool.
    #[serde(default)]
    pub per: Option<Vec<String>>,
    /// Only these agents (patterns as in rules); absent: every agent.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// Only requests to routes with one of these labels.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Only requests these rules allow.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    /// Only MCP `tools/call` requests of these tools (exact, or with `*`).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// How many requests in `window`.
    pub requests: u64,
    /// The window: seconds (`30s`), minutes (`10m`), hours (`1h`) or days (`1d`), at most a week.
    pub window: String,
}
