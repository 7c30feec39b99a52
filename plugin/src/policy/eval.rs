//! Evaluation: a request and a verified token against the compiled rules, through the index
//! ([`Policy::evaluate`]), and rule by rule with the reason for each ([`Policy::explain`]).

use super::cond::Ctx;
use super::path::{Entry, Segments, Template};
use super::{
    Decision, Effect, Explanation, Index, MCP_LIFECYCLE_RULE, McpLifecycle, Policy, Rule, RuleResult, RuleTrace, Truth,
};
use crate::request::Request;
use crate::token::VerifiedToken;
use std::cell::Cell;
use std::ops::ControlFlow;

/// See [`Policy::candidates`].
pub struct Candidates<'r> {
    segments: Segments<'r>,
    labels: Cell<Option<u64>>,
    deny: Vec<Entry>,
    allow: Vec<Entry>,
}

impl Policy {
    /// Whether the request is allowed, without which rule decided or what scope is missing: the question a list
    /// filter asks of every entry. Stops at the first deny and the first allow found.
    pub fn allows(&self, token: &VerifiedToken, request: &Request<'_>) -> bool {
        let segments = Segments::new(request.path);
        let labels = Cell::new(None);
        let label_mask = || self.label_mask(&segments, &labels);
        let mut ctx = self.context(token, request, &segments, &label_mask);
        let denied = self.has_deny
            && self
                .for_each_index(token.agent(), &mut |index| {
                    index.deny.walk::<()>(&segments, &mut |e| {
                        if self.rule_applies(e, &mut ctx) != Truth::False {
                            return ControlFlow::Break(());
                        }
                        ControlFlow::Continue(())
                    })
                })
                .is_break();
        if denied {
            return false;
        }
        ctx.assume = Truth::True;
        let allowed = self
            .for_each_index(token.agent(), &mut |index| {
                index.allow.walk::<()>(&segments, &mut |e| {
                    if self.rule_applies(e, &mut ctx) == Truth::True {
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })
            })
            .is_break();
        allowed || self.lifecycle_allowed(request)
    }
    /// The candidate rules of a request (agent, path and method select them), found once for many requests that
    /// differ only in their MCP message: a list filter asks [`Policy::allows_among`] for each entry instead of
    /// walking the index a hundred times.
    pub fn candidates<'r>(&self, token: &VerifiedToken, request: &Request<'r>) -> Candidates<'r> {
        let segments = Segments::new(request.path);
        let (mut deny, mut allow) = (Vec::new(), Vec::new());
        let selected = |e: &Entry| {
            self.rules
                .get(e.rule as usize)
                .is_some_and(|r| r.methods.as_ref().is_none_or(|m| m.contains(request.method)))
        };
        let _ = self.for_each_index(token.agent(), &mut |index| {
            if self.has_deny {
                let _ = index.deny.walk::<()>(&segments, &mut |e| {
                    if selected(&e) {
                        deny.push(e);
                    }
                    ControlFlow::Continue(())
                });
            }
            index.allow.walk::<()>(&segments, &mut |e| {
                if selected(&e) {
                    allow.push(e);
                }
                ControlFlow::Continue(())
            })
        });
        Candidates { segments, labels: Cell::new(None), deny, allow }
    }

    /// [`Policy::allows`] for a request with the path, method and agent `candidates` were found for.
    pub fn allows_among(&self, candidates: &Candidates<'_>, token: &VerifiedToken, request: &Request<'_>) -> bool {
        let label_mask = || self.label_mask(&candidates.segments, &candidates.labels);
        let mut ctx = self.context(token, request, &candidates.segments, &label_mask);
        if candidates.deny.iter().any(|&e| self.rule_applies(e, &mut ctx) != Truth::False) {
            return false;
        }
        ctx.assume = Truth::True;
        candidates.allow.iter().any(|&e| self.rule_applies(e, &mut ctx) == Truth::True)
            || self.lifecycle_allowed(request)
    }

    /// Decides for a verified token and a canonical request.
    pub fn evaluate(&self, token: &VerifiedToken, request: &Request<'_>) -> Decision<'_> {
        let segments = Segments::new(request.path);
        let labels = Cell::new(None);
        let label_mask = || self.label_mask(&segments, &labels);
        let mut ctx = self.context(token, request, &segments, &label_mask);

        // Deny rules see a hypothetical message's call conditions as not holding (the context's start); allow
        // rules as holding.
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
        ctx.assume = Truth::True;
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
        if self.lifecycle_allowed(request) {
            return Decision::Allow { rule: MCP_LIFECYCLE_RULE };
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
        let mut ctx = self.context(token, request, &segments, &label_mask);
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
                    ctx.assume = if rule.effect == Effect::Allow { Truth::True } else { Truth::False };
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
            } else if self.lifecycle_allowed(request) {
                Decision::Allow { rule: MCP_LIFECYCLE_RULE }
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
        let mut ctx = self.context(token, request, &segments, &label_mask);
        let mut hits = Vec::new();
        for &i in &self.dry_run {
            let Some(rule) = self.rules.get(i as usize) else { continue };
            let Ok(template) = self.applicability(rule, token.agent(), request.method, &segments) else { continue };
            ctx.template = template;
            ctx.assume = if rule.effect == Effect::Allow { Truth::True } else { Truth::False };
            let truth = rule.conds.iter().fold(Truth::True, |acc, c| acc.and(c.eval(&ctx)));
            if truth == Truth::True || (rule.effect == Effect::Deny && truth == Truth::Unknown) {
                hits.push((&*rule.id, rule.effect));
            }
        }
        hits
    }

    /// What conditions read while this request is evaluated.
    fn context<'c>(
        &'c self,
        token: &'c VerifiedToken,
        request: &'c Request<'c>,
        segments: &'c Segments<'c>,
        labels: &'c dyn Fn() -> u64,
    ) -> Ctx<'c> {
        Ctx { token, request, segments, template: None, lists: &self.lists, labels, assume: Truth::False }
    }

    /// An MCP lifecycle message no rule allows, under `mcp_lifecycle: allow`.
    fn lifecycle_allowed(&self, request: &Request<'_>) -> bool {
        self.mcp_lifecycle == McpLifecycle::Allow && request.mcp.is_some_and(|m| m.is_lifecycle())
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

    pub(super) fn label_mask(&self, segments: &Segments<'_>, cache: &Cell<Option<u64>>) -> u64 {
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
        ctx.assume = Truth::True;
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
