//! Policy: which agent may do what, written by people as JSON ([`PolicyDocument`], documented with an
//! example per construct in `docs/policy.md`), compiled once into tables ([`Policy`]), evaluated per request.
//!
//! Semantics: deny overrides allow; anything no rule allows is denied; a rule that cannot be evaluated (a
//! missing claim, a header sent twice) never allows, and a deny rule that cannot be evaluated denies. Unknown
//! fields and operators are compile errors with the exact path, never "match everything".
//!
//! Tables: rules are indexed by the current actor's id (exact, each `/`-prefix, any) and then by a trie of
//! path templates, so a request only looks at rules whose agent and path can match; methods are bit masks;
//! conditions are compiled to [`cond::Cond`] and evaluated without allocating (percent-decoding aside).
//! [`Policy::explain`] re-evaluates every rule directly, without the index, and says why each did or did not
//! match; tests check that both always reach the same decision.

pub mod cases;
mod compile;
mod cond;
pub mod document;
mod eval;
pub mod limits;
pub mod mcp;
mod number;
pub mod path;
pub mod pattern;
pub mod time;

#[cfg(test)]
mod tests;

pub use cond::Truth;
pub use document::{
    DelegationDocument, Effect, LimitDocument, McpLifecycle, McpRuleDocument, MtlsDocument, PolicyDocument,
    RouteDocument, RuleDocument, RuleMode, WhenDocument,
};
pub use eval::Candidates;

use cond::Cond;
// The lookup tables hash with rustc's unkeyed Fx mix rather than SipHash: they are built once from the policy
// and only read per request, so a client can choose what to look up but never what is stored. Collisions it
// could aim for are limited to the keys the policy author wrote; there is no table to flood.
use path::{Segments, Template, Trie};
use pattern::IdPattern;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::Cell;
use std::fmt;

/// Most rules in one policy.
pub const MAX_RULES: usize = 100_000;
/// Most distinct route labels.
pub const MAX_LABELS: usize = 64;

/// A policy document that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// JSON path relative to the policy document, e.g. `rules[3].when.time.zone`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> PolicyError {
        PolicyError { path: path.to_owned(), message: message.into() }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Something legal but probably wrong: a rule that can never match or that another rule hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where, e.g. `rules[4]`.
    pub path: String,
    /// What.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The outcome of evaluating a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'p> {
    /// An allow rule matched and no deny rule applied. With several, the first in the document.
    Allow {
        /// The allowing rule.
        rule: &'p str,
    },
    /// A deny rule matched (or could not be evaluated). With several, the first in the document.
    Deny {
        /// The denying rule.
        rule: &'p str,
    },
    /// No rule allows this request.
    NoRuleAllows {
        /// A scope whose absence alone kept an allow rule from matching: reported in
        /// `WWW-Authenticate: ... error="insufficient_scope", scope="..."` (RFC 6750 §3.1).
        missing_scope: Option<&'p str>,
    },
}

/// How one rule fared, for [`Policy::explain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleResult {
    /// Agent, method and path match and every condition holds.
    Matched,
    /// Agent, method and path match, and a condition cannot be evaluated: a deny rule applies, an allow rule
    /// does not.
    Undetermined,
    /// Agent, method and path match, and a condition does not hold.
    ConditionsFailed,
    /// The agent, method or path does not match: the index never considers this rule.
    NotApplicable,
}

/// One rule in an explanation.
#[derive(Debug, Clone)]
pub struct RuleTrace<'p> {
    /// Rule id.
    pub id: &'p str,
    /// Its effect.
    pub effect: Effect,
    /// Its result.
    pub result: RuleResult,
    /// Why: the first reason it does not apply, or each condition that does not hold or cannot be evaluated.
    pub reasons: Vec<String>,
    /// A dry-run rule: reported, never part of the decision.
    pub dry_run: bool,
}

/// Why a request gets its decision.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    /// The decision, the same as [`Policy::evaluate`] gives.
    pub decision: Decision<'p>,
    /// The policy's version, if the document names one.
    pub policy_version: Option<&'p str>,
    /// The route labels of the request's path.
    pub labels: Vec<&'p str>,
    /// Every rule, in document order.
    pub rules: Vec<RuleTrace<'p>>,
}

impl Explanation<'_> {
    /// The rules the index considers (agent, method and path match).
    pub fn candidates(&self) -> impl Iterator<Item = &RuleTrace<'_>> {
        self.rules.iter().filter(|r| r.result != RuleResult::NotApplicable)
    }

    /// The candidates as JSON, for logs and tools: `{"id", "effect", "result", "reasons"}` each.
    pub fn candidates_json(&self) -> Vec<serde_json::Value> {
        self.candidates()
            .map(|t| {
                serde_json::json!({
                    "id": t.id,
                    "effect": if t.effect == Effect::Allow { "allow" } else { "deny" },
                    "result": match t.result {
                        RuleResult::Matched => "matched",
                        RuleResult::Undetermined => "undetermined",
                        RuleResult::ConditionsFailed => "conditions_failed",
                        RuleResult::NotApplicable => "not_applicable",
                    },
                    "reasons": t.reasons,
                })
            })
            .collect()
    }
}

/// What the policy reads from a request, so the filter fetches only that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Header names (lower case) conditions read.
    pub headers: Vec<String>,
    /// Whether any condition reads the peer certificate.
    pub peer: bool,
    /// Whether any rule selects Envoy routes by name.
    pub route: bool,
    /// Whether any rule selects Envoy routes by tag.
    pub route_tag: bool,
    /// Top-level names of the MCP arguments conditions read (only these are built from a message).
    pub arguments: Vec<String>,
}

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// Methods as a bit mask of the standard ones plus any extension methods.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MethodSet {
    mask: u16,
    others: Vec<Box<str>>,
}

impl MethodSet {
    fn contains(&self, method: &str) -> bool {
        match METHODS.iter().position(|m| *m == method) {
            Some(i) => self.mask & (1 << i) != 0,
            None => self.others.iter().any(|m| **m == *method),
        }
    }

    fn covers(&self, other: &MethodSet) -> bool {
        other.mask & !self.mask == 0 && other.others.iter().all(|m| self.others.contains(m))
    }

    fn names(&self) -> Vec<&str> {
        let mut out: Vec<&str> =
            METHODS.iter().enumerate().filter(|(i, _)| self.mask & (1 << i) != 0).map(|(_, m)| *m).collect();
        out.extend(self.others.iter().map(|m| &**m));
        out
    }
}

#[derive(Debug, Clone)]
struct Rule {
    id: Box<str>,
    effect: Effect,
    dry_run: bool,
    agents: Vec<IdPattern>,
    /// `None`: any method.
    methods: Option<MethodSet>,
    /// Indices into [`Policy::templates`]; empty: any path.
    templates: Vec<u32>,
    conds: Vec<Cond>,
    /// Whether its decisions are audited.
    audit: bool,
}

#[derive(Debug, Clone, Default)]
struct Index {
    allow: Trie,
    deny: Trie,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    version: Option<Box<str>>,
    rules: Vec<Rule>,
    templates: Vec<Template>,
    /// The template rules without paths sit at: `/**`.
    any_path: u32,
    by_exact: FxHashMap<Box<str>, u32>,
    by_prefix: FxHashMap<Box<str>, u32>,
    longest_prefix: usize,
    any: Option<u32>,
    indexes: Vec<Index>,
    /// Dry-run rules, evaluated directly (they are few: rules on trial).
    dry_run: Vec<u32>,
    /// Whether any enforced deny rule exists (else the deny walk is skipped).
    has_deny: bool,
    /// Route templates; entry `rule` is the route's index in `route_masks`.
    routes: Trie,
    route_masks: Vec<u64>,
    /// The templates of `routes`, in document order (audit events read their path parameters).
    route_templates: Vec<u32>,
    labels: Vec<Box<str>>,
    lists: Vec<FxHashSet<Box<str>>>,
    needs: Needs,
    /// What MCP lifecycle messages no rule allows get.
    mcp_lifecycle: McpLifecycle,
    warnings: Vec<Warning>,
    /// Limits on allowed requests.
    limits: Vec<limits::Limit>,
}

/// The rule id reported when an MCP lifecycle message is allowed by the policy's default
/// (`mcp_lifecycle: allow`) rather than by a rule.
pub const MCP_LIFECYCLE_RULE: &str = "mcp-lifecycle";

impl Default for Policy {
    fn default() -> Self {
        Policy::compile(&PolicyDocument::default()).unwrap_or_else(|_| unreachable!("the empty policy compiles"))
    }
}

impl Policy {
    /// Whether any rule is in dry-run mode.
    pub fn has_dry_run_rules(&self) -> bool {
        !self.dry_run.is_empty()
    }

    /// The rule with this id.
    fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.id == id)
    }

    /// Whether decisions by the rule `id` are written to the audit trail (`audit: false` on a rule says not).
    /// Decisions no rule made (no rule allows, the request or token refused) always are.
    pub fn audits(&self, id: Option<&str>) -> bool {
        id.and_then(|id| self.rule(id)).is_none_or(|r| r.audit)
    }

    /// The path parameters of a canonical path (for audit events: `/patients/{patient}/**` on
    /// `/patients/42/records` gives `patient` = `42`): each `{name}` of the first template of the deciding
    /// rule `id` that matches the path, or, when no rule decided or its templates have none, of the first
    /// `routes` entry that matches (so a refused attempt on patient 42 names patient 42 too).
    pub fn path_parameters<'a>(&self, id: Option<&str>, path: &'a str) -> Vec<(&str, &'a str)> {
        let segments = path::Segments::new(path);
        let rule_templates = id.and_then(|id| self.rule(id)).map(|r| r.templates.as_slice()).unwrap_or_default();
        let first = |templates: &[u32]| {
            templates
                .iter()
                .filter_map(|&t| self.templates.get(t as usize))
                .find(|t| t.matches(&segments))
                .map(|t| t.parameters(&segments))
                .filter(|p| !p.is_empty())
        };
        first(rule_templates).or_else(|| first(&self.route_templates)).unwrap_or_default()
    }

    /// The route labels of a canonical path (for audit events).
    pub fn labels_of(&self, path: &str) -> Vec<&str> {
        let mask = self.label_mask(&Segments::new(path), &Cell::new(None));
        self.labels.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, l)| &**l).collect()
    }

    /// The version the document names.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Warnings found while compiling.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// What conditions read from requests.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Approximate heap bytes of the index tables (tries and agent maps), for the benchmark.
    pub fn index_heap_bytes(&self) -> usize {
        let map_bytes = |m: &FxHashMap<Box<str>, u32>| {
            m.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1) + m.keys().map(|k| k.len()).sum::<usize>()
        };
        self.indexes.iter().map(|i| i.allow.heap_bytes() + i.deny.heap_bytes()).sum::<usize>()
            + self.indexes.capacity() * std::mem::size_of::<Index>()
            + map_bytes(&self.by_exact)
            + map_bytes(&self.by_prefix)
            + self.routes.heap_bytes()
    }
}
