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
mod cond;
pub mod document;
pub(crate) mod fxhash;
mod number;
pub mod path;
pub mod pattern;
pub mod time;

#[cfg(test)]
mod tests;

pub use cond::Truth;
pub use document::{
    DelegationDocument, Effect, MtlsDocument, PolicyDocument, RouteDocument, RuleDocument, RuleMode, WhenDocument,
};

use crate::request::Request;
use crate::token::VerifiedToken;
use cond::{ClaimPath, Cond, Ctx, Kind, Scope, Source};
use fxhash::{FxHashMap, FxHashSet};
use path::{Entry, Segments, Template, Trie};
use pattern::{HostPattern, IdPattern};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;
use std::ops::ControlFlow;
use time::{TimeWindow, TimeWindowDocument};

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
    labels: Vec<Box<str>>,
    lists: Vec<FxHashSet<Box<str>>>,
    needs: Needs,
    warnings: Vec<Warning>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::compile(&PolicyDocument::default()).unwrap_or_else(|_| unreachable!("the empty policy compiles"))
    }
}

impl Policy {
    /// Compiles a document; the first error found, with its exact path.
    pub fn compile(doc: &PolicyDocument) -> Result<Policy, PolicyError> {
        Compiler::default().compile(doc)
    }

    /// Decides for a verified token and a canonical request.
    pub fn evaluate(&self, token: &VerifiedToken, request: &Request<'_>) -> Decision<'_> {
        let segments = Segments::new(request.path);
        let labels = Cell::new(None);
        let label_mask = || self.label_mask(&segments, &labels);
        let mut ctx =
            Ctx { token, request, segments: &segments, template: None, lists: &self.lists, labels: &label_mask };

        let mut deny: Option<u32> = None;
        let _ = self.has_deny.then(|| {
            self.for_each_index(token.agent(), &mut |index| {
                index.deny.walk::<()>(&segments, &mut |e| {
                    if deny.is_none_or(|d| e.rule < d) && self.rule_applies(e, &mut ctx) != Truth::False {
                        deny = Some(e.rule);
                    }
                    ControlFlow::Continue(())
                })
            })
        });
        if let Some(rule) = deny.and_then(|d| self.rules.get(d as usize)) {
            return Decision::Deny { rule: &rule.id };
        }
        let mut allow: Option<u32> = None;
        let _ = self.for_each_index(token.agent(), &mut |index| {
            index.allow.walk::<()>(&segments, &mut |e| {
                if allow.is_none_or(|a| e.rule < a) && self.rule_applies(e, &mut ctx) == Truth::True {
                    allow = Some(e.rule);
                }
                ControlFlow::Continue(())
            })
        });
        if let Some(rule) = allow.and_then(|a| self.rules.get(a as usize)) {
            return Decision::Allow { rule: &rule.id };
        }
        let mut scoped: Option<(u32, &str)> = None;
        let _ = self.for_each_index(token.agent(), &mut |index| {
            index.allow.walk::<()>(&segments, &mut |e| {
                if scoped.is_none_or(|(r, _)| e.rule < r)
                    && let Some(s) = self.only_missing_scope(e, &mut ctx)
                {
                    scoped = Some((e.rule, s));
                }
                ControlFlow::Continue(())
            })
        });
        Decision::NoRuleAllows { missing_scope: scoped.map(|(_, s)| s) }
    }

    /// The decision and why, rule by rule, evaluating every rule directly (no index): slower, and the
    /// reference the indexed [`Policy::evaluate`] is tested against.
    pub fn explain(&self, token: &VerifiedToken, request: &Request<'_>) -> Explanation<'_> {
        let segments = Segments::new(request.path);
        let labels = Cell::new(None);
        let label_mask = || self.label_mask(&segments, &labels);
        let mut ctx =
            Ctx { token, request, segments: &segments, template: None, lists: &self.lists, labels: &label_mask };
        let mut traces = Vec::with_capacity(self.rules.len());
        let mut missing_scope = None;
        for rule in &self.rules {
            let mut reasons = Vec::new();
            let result = match self.applicability(rule, token.agent(), request.method, &segments) {
                Err(why) => {
                    reasons.push(why);
                    RuleResult::NotApplicable
                }
                Ok(template) => {
                    ctx.template = template;
                    let mut truth = Truth::True;
                    for cond in &rule.conds {
                        let (t, why) = cond.explain(&ctx);
                        if t != Truth::True {
                            reasons.push(why);
                        }
                        truth = truth.and(t);
                    }
                    if rule.effect == Effect::Allow && !rule.dry_run && missing_scope.is_none() && truth == Truth::False
                    {
                        let mut others = Truth::True;
                        let mut scope = None;
                        for cond in &rule.conds {
                            match cond.missing_scope(&ctx) {
                                Some(s) if scope.is_none() => scope = Some(s),
                                Some(_) => {}
                                None => others = others.and(cond.eval(&ctx)),
                            }
                        }
                        if others == Truth::True {
                            missing_scope = scope;
                        }
                    }
                    match truth {
                        Truth::True => RuleResult::Matched,
                        Truth::Unknown => RuleResult::Undetermined,
                        Truth::False => RuleResult::ConditionsFailed,
                    }
                }
            };
            traces.push(RuleTrace { id: &rule.id, effect: rule.effect, result, reasons, dry_run: rule.dry_run });
        }
        let first = |effect: Effect, ok: &dyn Fn(RuleResult) -> bool| {
            traces.iter().find(|t| t.effect == effect && !t.dry_run && ok(t.result)).map(|t| t.id)
        };
        let decision =
            if let Some(rule) = first(Effect::Deny, &|r| matches!(r, RuleResult::Matched | RuleResult::Undetermined)) {
                Decision::Deny { rule }
            } else if let Some(rule) = first(Effect::Allow, &|r| r == RuleResult::Matched) {
                Decision::Allow { rule }
            } else {
                Decision::NoRuleAllows { missing_scope }
            };
        let mask = label_mask();
        let labels = self.labels.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, l)| &**l).collect();
        Explanation { decision, policy_version: self.version.as_deref(), labels, rules: traces }
    }

    /// The dry-run rules that would have applied to this request: an allow rule that matches, a deny rule
    /// that matches or cannot be evaluated. Empty (and free) when the policy has none.
    pub fn dry_run_hits(&self, token: &VerifiedToken, request: &Request<'_>) -> Vec<(&str, Effect)> {
        if self.dry_run.is_empty() {
            return Vec::new();
        }
        let segments = Segments::new(request.path);
        let labels = Cell::new(None);
        let label_mask = || self.label_mask(&segments, &labels);
        let mut ctx =
            Ctx { token, request, segments: &segments, template: None, lists: &self.lists, labels: &label_mask };
        let mut hits = Vec::new();
        for &i in &self.dry_run {
            let Some(rule) = self.rules.get(i as usize) else { continue };
            let Ok(template) = self.applicability(rule, token.agent(), request.method, &segments) else { continue };
            ctx.template = template;
            let truth = rule.conds.iter().fold(Truth::True, |acc, c| acc.and(c.eval(&ctx)));
            if truth == Truth::True || (rule.effect == Effect::Deny && truth == Truth::Unknown) {
                hits.push((&*rule.id, rule.effect));
            }
        }
        hits
    }

    /// Whether any rule is in dry-run mode.
    pub fn has_dry_run_rules(&self) -> bool {
        !self.dry_run.is_empty()
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

    fn for_each_index(&self, agent: &str, f: &mut impl FnMut(&Index) -> ControlFlow<()>) -> ControlFlow<()> {
        if let Some(index) = self.by_exact.get(agent).and_then(|&i| self.indexes.get(i as usize)) {
            f(index)?;
        }
        if !self.by_prefix.is_empty() {
            for (i, b) in agent.bytes().enumerate().take(self.longest_prefix) {
                if b == b'/'
                    && i + 1 < agent.len()
                    && let Some(index) =
                        agent.get(..=i).and_then(|p| self.by_prefix.get(p)).and_then(|&x| self.indexes.get(x as usize))
                {
                    f(index)?;
                }
            }
        }
        if let Some(index) = self.any.and_then(|i| self.indexes.get(i as usize)) {
            f(index)?;
        }
        ControlFlow::Continue(())
    }

    fn label_mask(&self, segments: &Segments<'_>, cache: &Cell<Option<u64>>) -> u64 {
        if let Some(mask) = cache.get() {
            return mask;
        }
        let mut mask = 0u64;
        let _ = self.routes.walk::<()>(segments, &mut |e| {
            mask |= self.route_masks.get(e.rule as usize).copied().unwrap_or(0);
            ControlFlow::Continue(())
        });
        cache.set(Some(mask));
        mask
    }

    /// A candidate from the index (agent and path match): method, then conditions in Kleene logic (an allow
    /// needs `True`; a deny applies unless `False`). Stops at the first `False`.
    fn rule_applies<'p: 'c, 'c>(&'p self, e: Entry, ctx: &mut Ctx<'c>) -> Truth {
        let Some(rule) = self.rules.get(e.rule as usize) else { return Truth::False };
        if rule.methods.as_ref().is_some_and(|m| !m.contains(ctx.request.method)) {
            return Truth::False;
        }
        ctx.template = self.templates.get(e.template as usize);
        let mut truth = Truth::True;
        for cond in &rule.conds {
            truth = truth.and(cond.eval(ctx));
            if truth == Truth::False || (truth == Truth::Unknown && rule.effect == Effect::Allow) {
                break;
            }
        }
        truth
    }

    /// The first missing scope of an allow candidate whose other conditions all hold.
    fn only_missing_scope<'p: 'c, 'c>(&'p self, e: Entry, ctx: &mut Ctx<'c>) -> Option<&'p str> {
        let rule = self.rules.get(e.rule as usize)?;
        if rule.methods.as_ref().is_some_and(|m| !m.contains(ctx.request.method)) {
            return None;
        }
        ctx.template = self.templates.get(e.template as usize);
        let mut scope = None;
        for cond in &rule.conds {
            match cond.missing_scope(ctx) {
                Some(s) => scope = scope.or(Some(s)),
                None if cond.eval(ctx) != Truth::True => return None,
                None => {}
            }
        }
        scope
    }

    /// Direct agent/method/path check for explanations: the matching template, or why not.
    fn applicability(
        &self,
        rule: &Rule,
        agent: &str,
        method: &str,
        segments: &Segments<'_>,
    ) -> Result<Option<&Template>, String> {
        if !rule.agents.iter().any(|p| p.matches(agent)) {
            let shown: Vec<String> = rule.agents.iter().take(8).map(|p| format!("\"{p}\"")).collect();
            return Err(format!("agent \"{agent}\" does not match [{}]", shown.join(", ")));
        }
        if let Some(methods) = &rule.methods
            && !methods.contains(method)
        {
            return Err(format!("method {method} is not in [{}]", methods.names().join(", ")));
        }
        if rule.templates.is_empty() {
            return Ok(self.templates.get(self.any_path as usize));
        }
        let matched =
            rule.templates.iter().filter_map(|&t| self.templates.get(t as usize)).find(|t| t.matches(segments));
        match matched {
            Some(t) => Ok(Some(t)),
            None => {
                let shown: Vec<String> = rule
                    .templates
                    .iter()
                    .take(8)
                    .filter_map(|&t| self.templates.get(t as usize))
                    .map(|t| format!("\"{t}\""))
                    .collect();
                Err(format!("path does not match [{}]", shown.join(", ")))
            }
        }
    }
}

/// Builds a [`Policy`].
#[derive(Default)]
struct Compiler {
    templates: Vec<Template>,
    template_ids: FxHashMap<Box<str>, u32>,
    warnings: Vec<Warning>,
    headers: Vec<String>,
    peer: bool,
    route: bool,
    route_tag: bool,
}

fn id_patterns(list: &[String], at: &str) -> Result<Vec<IdPattern>, PolicyError> {
    if list.is_empty() {
        return Err(PolicyError::new(at, "must not be empty"));
    }
    list.iter()
        .enumerate()
        .map(|(j, a)| IdPattern::parse(a).map_err(|m| PolicyError::new(&format!("{at}[{j}]"), m)))
        .collect()
}

fn names(list: &[String], at: &str, what: &str, valid: fn(&str) -> bool) -> Result<Vec<Box<str>>, PolicyError> {
    if list.is_empty() {
        return Err(PolicyError::new(at, "must not be empty (leave it out instead)"));
    }
    let mut out: Vec<Box<str>> = Vec::with_capacity(list.len());
    for (j, s) in list.iter().enumerate() {
        if !valid(s) {
            return Err(PolicyError::new(&format!("{at}[{j}]"), format!("not a valid {what}")));
        }
        if out.iter().any(|o| **o == **s) {
            return Err(PolicyError::new(&format!("{at}[{j}]"), format!("duplicate {what} \"{s}\"")));
        }
        out.push(s.as_str().into());
    }
    Ok(out)
}

fn visible(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fn visible_no_quotes(s: &str) -> bool {
    visible(s) && !s.contains(['"', '\\'])
}

fn label_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

impl Compiler {
    fn template(&mut self, text: &str, at: &str) -> Result<u32, PolicyError> {
        if let Some(&id) = self.template_ids.get(text) {
            return Ok(id);
        }
        let template = Template::parse(text).map_err(|m| PolicyError::new(at, m))?;
        let id = self.templates.len() as u32;
        self.templates.push(template);
        self.template_ids.insert(text.into(), id);
        Ok(id)
    }

    fn compile(mut self, doc: &PolicyDocument) -> Result<Policy, PolicyError> {
        if let Some(v) = &doc.version
            && !(v.len() <= 128 && v.bytes().all(|b| (0x20..0x7f).contains(&b)) && !v.trim().is_empty())
        {
            return Err(PolicyError::new("version", "must be 1 to 128 visible ASCII characters"));
        }
        if doc.rules.len() > MAX_RULES {
            return Err(PolicyError::new("rules", format!("more than {MAX_RULES} rules")));
        }
        let roles_claim = ClaimPath::parse(doc.roles_claim.as_deref().unwrap_or("roles"))
            .map_err(|m| PolicyError::new("roles_claim", m))?;

        // Named lists.
        let mut list_names: Vec<(String, usize)> = Vec::new();
        let mut lists: Vec<FxHashSet<Box<str>>> = Vec::new();
        for (name, items) in &doc.lists {
            let at = format!("lists.{name}");
            if !label_name(name) {
                return Err(PolicyError::new(&at, "list names use letters, digits, '-', '_', '.', ':'"));
            }
            if items.is_empty() {
                return Err(PolicyError::new(&at, "must not be empty"));
            }
            let mut set = FxHashSet::default();
            for (j, item) in items.iter().enumerate() {
                if !set.insert(Box::<str>::from(item.as_str())) {
                    return Err(PolicyError::new(&format!("{at}[{j}]"), format!("duplicate value \"{item}\"")));
                }
            }
            list_names.push((name.clone(), lists.len()));
            lists.push(set);
        }

        // Routes and their labels.
        let mut labels: Vec<Box<str>> = Vec::new();
        let mut routes = Trie::default();
        let mut route_masks = Vec::with_capacity(doc.routes.len());
        let mut route_templates: Vec<(u32, u64)> = Vec::new();
        for (i, route) in doc.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            let t = self.template(&route.path, &format!("{at}.path"))?;
            if route.labels.is_empty() {
                return Err(PolicyError::new(&format!("{at}.labels"), "must not be empty"));
            }
            let mut mask = 0u64;
            for (j, label) in route.labels.iter().enumerate() {
                if !label_name(label) {
                    return Err(PolicyError::new(
                        &format!("{at}.labels[{j}]"),
                        "labels use letters, digits, '-', '_', '.', ':'",
                    ));
                }
                let bit = match labels.iter().position(|l| **l == **label) {
                    Some(b) => b,
                    None if labels.len() < MAX_LABELS => {
                        labels.push(label.as_str().into());
                        labels.len() - 1
                    }
                    None => {
                        return Err(PolicyError::new(
                            &format!("{at}.labels[{j}]"),
                            format!("more than {MAX_LABELS} labels"),
                        ));
                    }
                };
                mask |= 1 << bit;
            }
            routes.insert(&self.templates[t as usize], Entry { rule: route_masks.len() as u32, template: t });
            route_masks.push(mask);
            route_templates.push((t, mask));
        }

        let any_path = self.template("/**", "")?;
        let mut rules: Vec<Rule> = Vec::with_capacity(doc.rules.len());
        let mut rule_ids: FxHashSet<&str> = FxHashSet::default();
        for (i, r) in doc.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            if r.id.is_empty()
                || r.id.len() > 128
                || !r.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                return Err(PolicyError::new(&at("id"), "must be 1 to 128 letters, digits, '-', '_', '.', ':'"));
            }
            if !rule_ids.insert(&r.id) {
                return Err(PolicyError::new(&at("id"), format!("duplicate rule id \"{}\"", r.id)));
            }
            let agents = id_patterns(&r.agents, &at("agents")).map_err(|e| {
                if r.agents.is_empty() {
                    PolicyError::new(&at("agents"), "must name at least one agent (use \"*\" for any verified agent)")
                } else {
                    e
                }
            })?;
            let mut conds = Vec::new();
            if let Some(list) = &r.issuers {
                conds.push(Cond {
                    at: at("issuers").into(),
                    kind: Kind::Issuers(names(list, &at("issuers"), "issuer", visible)?),
                });
            }
            if let Some(list) = &r.subjects {
                conds.push(Cond {
                    at: at("subjects").into(),
                    kind: Kind::Subjects(id_patterns(list, &at("subjects"))?),
                });
            }
            if let Some(list) = &r.hosts {
                if list.is_empty() {
                    return Err(PolicyError::new(&at("hosts"), "must not be empty (leave it out for any host)"));
                }
                let hosts = list
                    .iter()
                    .enumerate()
                    .map(|(j, h)| {
                        HostPattern::parse(h).map_err(|m| PolicyError::new(&format!("{}[{j}]", at("hosts")), m))
                    })
                    .collect::<Result<_, _>>()?;
                conds.push(Cond { at: at("hosts").into(), kind: Kind::Hosts(hosts) });
            }
            if let Some(list) = &r.roles {
                let any_of = names(list, &at("roles"), "role", visible)?;
                conds.push(Cond { at: at("roles").into(), kind: Kind::Roles { claim: roles_claim.clone(), any_of } });
            }
            if let Some(list) = &r.envoy_routes {
                conds.push(Cond {
                    at: at("envoy_routes").into(),
                    kind: Kind::Routes(names(list, &at("envoy_routes"), "route name", visible)?),
                });
                self.route = true;
            }
            if let Some(list) = &r.envoy_route_tags {
                conds.push(Cond {
                    at: at("envoy_route_tags").into(),
                    kind: Kind::RouteTags(names(list, &at("envoy_route_tags"), "route tag", visible)?),
                });
                self.route_tag = true;
            }
            if let Some(list) = &r.scopes {
                conds.push(Cond {
                    at: at("scopes").into(),
                    kind: Kind::Scopes(names(list, &at("scopes"), "scope", visible_no_quotes)?),
                });
            }
            let methods = match &r.methods {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(PolicyError::new(
                        &at("methods"),
                        "must not be empty (leave it out to allow any method)",
                    ));
                }
                Some(list) => {
                    let mut set = MethodSet { mask: 0, others: Vec::new() };
                    for (j, m) in list.iter().enumerate() {
                        let m = crate::request::canonical_method(m).map_err(|_| {
                            PolicyError::new(
                                &format!("{}[{j}]", at("methods")),
                                "not an HTTP method (CONNECT is not supported)",
                            )
                        })?;
                        match METHODS.iter().position(|x| *x == m) {
                            Some(b) => set.mask |= 1 << b,
                            None if !set.others.iter().any(|o| **o == *m) => set.others.push(m.into()),
                            None => {}
                        }
                    }
                    Some(set)
                }
            };

            // Paths, or the templates of the labels' routes.
            let mut templates = Vec::new();
            if let Some(paths) = &r.paths {
                if paths.is_empty() {
                    return Err(PolicyError::new(&at("paths"), "must not be empty (leave it out for any path)"));
                }
                for (j, p) in paths.iter().enumerate() {
                    let t = self.template(p, &format!("{}[{j}]", at("paths")))?;
                    if !templates.contains(&t) {
                        templates.push(t);
                    }
                }
            }
            if let Some(list) = &r.labels {
                if list.is_empty() {
                    return Err(PolicyError::new(&at("labels"), "must not be empty (leave it out for any label)"));
                }
                let mut mask = 0u64;
                for (j, l) in list.iter().enumerate() {
                    match labels.iter().position(|x| **x == **l) {
                        Some(b) => mask |= 1 << b,
                        None => {
                            return Err(PolicyError::new(
                                &format!("{}[{j}]", at("labels")),
                                format!("unknown label \"{l}\": no entry of `routes` carries it"),
                            ));
                        }
                    }
                }
                if templates.is_empty() {
                    templates.extend(route_templates.iter().filter(|(_, m)| m & mask != 0).map(|(t, _)| *t));
                    templates.dedup();
                } else {
                    conds.push(Cond { at: at("labels").into(), kind: Kind::Labels(mask) });
                }
            }
            let params: Option<Vec<String>> = (!templates.is_empty()).then(|| {
                let first = &self.templates[templates[0] as usize];
                first
                    .params()
                    .filter(|p| templates.iter().all(|&t| self.templates[t as usize].param_index(p).is_some()))
                    .map(str::to_owned)
                    .collect()
            });
            if let Some(when) = &r.when {
                let scope = Scope { lists: &list_names, path_params: params.as_deref() };
                self.when(when, &at("when"), &scope, &mut conds)?;
            }
            let dry_run = r.mode == Some(RuleMode::DryRun);
            rules.push(Rule { id: r.id.as_str().into(), effect: r.effect, dry_run, agents, methods, templates, conds });
        }

        self.warn(&rules, doc);

        // Index: agent key -> (allow trie, deny trie).
        let mut by_exact: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let mut by_prefix: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let mut any = None;
        let mut indexes: Vec<Index> = Vec::new();
        let mut dry_run = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.dry_run {
                dry_run.push(i as u32);
                continue;
            }
            let mut seen: Vec<u32> = Vec::with_capacity(rule.agents.len());
            for agent in &rule.agents {
                let (map, key) = match agent {
                    IdPattern::Any => (None, ""),
                    IdPattern::Exact(e) => (Some(&mut by_exact), &**e),
                    IdPattern::Prefix(p) => (Some(&mut by_prefix), &**p),
                };
                let slot = match map {
                    None => *any.get_or_insert_with(|| {
                        indexes.push(Index::default());
                        indexes.len() as u32 - 1
                    }),
                    Some(map) => match map.get(key) {
                        Some(&s) => s,
                        None => {
                            indexes.push(Index::default());
                            let s = indexes.len() as u32 - 1;
                            map.insert(key.into(), s);
                            s
                        }
                    },
                };
                if seen.contains(&slot) {
                    continue;
                }
                seen.push(slot);
                let index = &mut indexes[slot as usize];
                let trie = if rule.effect == Effect::Allow { &mut index.allow } else { &mut index.deny };
                if rule.templates.is_empty() {
                    trie.insert(&self.templates[any_path as usize], Entry { rule: i as u32, template: any_path });
                } else {
                    for &t in &rule.templates {
                        trie.insert(&self.templates[t as usize], Entry { rule: i as u32, template: t });
                    }
                }
            }
        }
        let has_deny = rules.iter().any(|r| r.effect == Effect::Deny && !r.dry_run);
        let longest_prefix = by_prefix.keys().map(|k| k.len()).max().unwrap_or(0);
        let mut headers = std::mem::take(&mut self.headers);
        headers.sort();
        headers.dedup();
        Ok(Policy {
            version: doc.version.as_deref().map(Box::from),
            rules,
            templates: self.templates,
            any_path,
            by_exact,
            by_prefix,
            longest_prefix,
            any,
            has_deny,
            indexes,
            dry_run,
            routes,
            route_masks,
            labels,
            lists,
            needs: Needs { headers, peer: self.peer, route: self.route, route_tag: self.route_tag },
            warnings: self.warnings,
        })
    }

    fn when(
        &mut self,
        when: &WhenDocument,
        at: &str,
        scope: &Scope<'_>,
        conds: &mut Vec<Cond>,
    ) -> Result<(), PolicyError> {
        for (name, test) in &when.claims {
            let here = format!("{at}.claims.{name}");
            let path = ClaimPath::parse(name).map_err(|m| PolicyError::new(&here, m))?;
            if !name.starts_with('/') && name.contains("://") {
                self.warning(
                    &here,
                    "dots separate nested claims: for a claim whose name contains dots (a URL), write a JSON pointer \
                     such as \"/https:~1~1example.com~1roles\"",
                );
            }
            self.attr(Source::Claim(path), test, here, scope, conds)?;
        }
        for (name, test) in &when.headers {
            let here = format!("{at}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if !crate::request::valid_header_name(&lower) || lower.starts_with(':') {
                return Err(PolicyError::new(&here, "not a header name"));
            }
            self.attr(Source::Header(lower.into()), test, here, scope, conds)?;
        }
        for (name, test) in &when.query {
            let here = format!("{at}.query.{name}");
            if name.is_empty() {
                return Err(PolicyError::new(&here, "empty parameter name"));
            }
            self.attr(Source::Query(name.as_str().into()), test, here, scope, conds)?;
        }
        for (name, test) in &when.path {
            let here = format!("{at}.path.{name}");
            let source = Source::Path(name.as_str().into());
            scope_check(scope, &source, &here)?;
            self.attr(source, test, here, scope, conds)?;
        }
        if let Some(time) = &when.time {
            let here = format!("{at}.time");
            let windows = match time {
                Value::Array(items) if items.is_empty() => return Err(PolicyError::new(&here, "must not be empty")),
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(j, w)| time_window(w, &format!("{here}[{j}]")))
                    .collect::<Result<Vec<_>, _>>()?,
                other => vec![time_window(other, &here)?],
            };
            conds.push(Cond { at: here.into(), kind: Kind::Time(windows) });
        }
        if let Some(d) = &when.delegation {
            let here = format!("{at}.delegation");
            let before = conds.len();
            if let Some(b) = d.delegated {
                conds.push(Cond { at: format!("{here}.delegated").into(), kind: Kind::Delegated(b) });
            }
            if let Some(max) = d.max_depth {
                if max > crate::token::delegation::MAX_DEPTH {
                    return Err(PolicyError::new(
                        &format!("{here}.max_depth"),
                        format!("at most {} (the verifier's own cap)", crate::token::delegation::MAX_DEPTH),
                    ));
                }
                if max == 0 && d.delegated == Some(true) {
                    self.warning(&here, "delegated: true with max_depth: 0 can never match");
                }
                conds.push(Cond { at: format!("{here}.max_depth").into(), kind: Kind::MaxDepth(max) });
            }
            if let Some(list) = &d.actors {
                let p = id_patterns(list, &format!("{here}.actors"))?;
                conds.push(Cond { at: format!("{here}.actors").into(), kind: Kind::Actors(p) });
            }
            if let Some(list) = &d.any_actor {
                let p = id_patterns(list, &format!("{here}.any_actor"))?;
                conds.push(Cond { at: format!("{here}.any_actor").into(), kind: Kind::AnyActor(p) });
            }
            if let Some(list) = &d.origin {
                let p = id_patterns(list, &format!("{here}.origin"))?;
                conds.push(Cond { at: format!("{here}.origin").into(), kind: Kind::Origin(p) });
            }
            match d.may_act {
                Some(true) => conds.push(Cond { at: format!("{here}.may_act").into(), kind: Kind::MayAct }),
                Some(false) => {
                    return Err(PolicyError::new(&format!("{here}.may_act"), "only true is meaningful; leave it out"));
                }
                None => {}
            }
            if conds.len() == before {
                return Err(PolicyError::new(
                    &here,
                    "names no condition (delegated, max_depth, actors, any_actor, origin, may_act)",
                ));
            }
            if d.delegated == Some(false) && conds.len() - before > 1 {
                self.warning(&here, "delegated: false makes the other delegation conditions meaningless");
            }
        }
        if let Some(m) = &when.mtls {
            let here = format!("{at}.mtls");
            let before = conds.len();
            for (flag, name, kind) in [
                (m.actor_is_peer, "actor_is_peer", Kind::ActorIsPeer),
                (m.certificate_bound, "certificate_bound", Kind::CertificateBound),
            ] {
                match flag {
                    Some(true) => conds.push(Cond { at: format!("{here}.{name}").into(), kind }),
                    Some(false) => {
                        return Err(PolicyError::new(
                            &format!("{here}.{name}"),
                            "only true is meaningful; leave it out",
                        ));
                    }
                    None => {}
                }
            }
            if conds.len() == before {
                return Err(PolicyError::new(&here, "names no condition (actor_is_peer, certificate_bound)"));
            }
            self.peer = true;
        }
        Ok(())
    }

    fn attr(
        &mut self,
        source: Source,
        test: &Map<String, Value>,
        at: String,
        scope: &Scope<'_>,
        conds: &mut Vec<Cond>,
    ) -> Result<(), PolicyError> {
        let ops = cond::compile_test(test, &at, scope)?;
        if cond::contradictory(&ops) {
            self.warning(&at, "no value can satisfy these operators together: the rule never matches");
        }
        let mut read = |s: &Source| {
            if let Source::Header(h) = s {
                self.headers.push(h.to_string());
            }
        };
        read(&source);
        for op in &ops {
            if let cond::Op::Equals(cond::Operand::Ref(s))
            | cond::Op::NotEquals(cond::Operand::Ref(s))
            | cond::Op::Contains(cond::Operand::Ref(s)) = op
            {
                read(s);
            }
        }
        conds.push(Cond { at: at.into(), kind: Kind::Attr { source, test: ops } });
        Ok(())
    }

    fn warning(&mut self, at: &str, message: &str) {
        self.warnings.push(Warning { path: at.to_owned(), message: message.to_owned() });
    }

    /// Shadowed allow rules (an unconditional deny covers every request they match) and unused lists.
    fn warn(&mut self, rules: &[Rule], doc: &PolicyDocument) {
        let denies: Vec<(usize, &Rule)> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.effect == Effect::Deny && !r.dry_run && r.conds.is_empty())
            .collect();
        for (i, allow) in rules.iter().enumerate().filter(|(_, r)| r.effect == Effect::Allow && !r.dry_run) {
            let shadow = denies.iter().find(|(_, deny)| {
                allow.agents.iter().all(|a| deny.agents.iter().any(|d| a.covered_by(d)))
                    && match (&deny.methods, &allow.methods) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(d), Some(a)) => d.covers(a),
                    }
                    && (deny.templates.is_empty()
                        || !allow.templates.is_empty()
                            && allow.templates.iter().all(|&a| {
                                deny.templates
                                    .iter()
                                    .any(|&d| self.templates[a as usize].covered_by(&self.templates[d as usize]))
                            }))
            });
            if let Some((j, deny)) = shadow {
                self.warning(
                    &format!("rules[{i}]"),
                    &format!(
                        "allow rule \"{}\" never matches: deny rule \"{}\" (rules[{j}]) covers every request it allows",
                        allow.id, deny.id
                    ),
                );
            }
        }
        for name in doc.lists.keys() {
            let used = rules.iter().flat_map(|r| &r.conds).any(|c| match &c.kind {
                Kind::Attr { test, .. } => test.iter().any(|op| {
                    matches!(op, cond::Op::In(cond::Set::List(_, n)) | cond::Op::NotIn(cond::Set::List(_, n)) if **n == **name)
                }),
                _ => false,
            });
            if !used {
                self.warning(&format!("lists.{name}"), "never used");
            }
        }
    }
}

fn scope_check(scope: &Scope<'_>, source: &Source, at: &str) -> Result<(), PolicyError> {
    match (source, scope.path_params) {
        (Source::Path(name), Some(params)) if !params.iter().any(|p| **p == **name) => {
            Err(PolicyError::new(at, format!("path parameter \"{name}\" is not captured by every path of this rule")))
        }
        (Source::Path(name), None) => Err(PolicyError::new(
            at,
            format!("path parameter \"{name}\" needs `paths` (or `labels`) with {{{name}}} in every template"),
        )),
        _ => Ok(()),
    }
}

fn time_window(value: &Value, at: &str) -> Result<TimeWindow, PolicyError> {
    let doc: TimeWindowDocument = serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." { at.to_owned() } else { format!("{at}.{inner}") };
        PolicyError::new(&path, e.into_inner().to_string())
    })?;
    TimeWindow::compile(&doc).map_err(|(field, message)| PolicyError::new(&format!("{at}.{field}"), message))
}
