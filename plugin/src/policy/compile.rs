//! Compilation: a [`PolicyDocument`] checked and turned into rules, conditions and the index.

use super::cond;
use super::cond::{ClaimPath, Cond, Kind, Scope, Source};
use super::document::McpLifecycle;
use super::mcp::Selector;
use super::path::{Entry, Template, Trie};
use super::pattern::{HostPattern, IdPattern};
use super::time::{TimeWindow, TimeWindowDocument};
use super::{
    Effect, Index, MAX_LABELS, MAX_RULES, METHODS, MethodSet, Needs, Policy, PolicyDocument, PolicyError, Rule,
    RuleMode, Warning, WhenDocument,
};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Value};

impl Policy {
    /// Compiles a document; the first error found, with its exact path.
    pub fn compile(doc: &PolicyDocument) -> Result<Policy, PolicyError> {
        Compiler::default().compile(doc)
    }
}

/// Builds a [`Policy`].
#[derive(Default)]
struct Compiler {
    templates: Vec<Template>,
    template_ids: FxHashMap<Box<str>, u32>,
    warnings: Vec<Warning>,
    headers: Vec<String>,
    arguments: Vec<String>,
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
            let selector = match &r.mcp {
                Some(m) => {
                    let selector = Selector::compile(m, &at("mcp"))?;
                    // First: the cheapest test and the one that rules most candidates out (every MCP rule sits on
                    // the endpoint's path, so the index cannot tell them apart).
                    conds.insert(0, Cond { at: at("mcp").into(), kind: Kind::Mcp(selector.clone()) });
                    Some(selector)
                }
                None => None,
            };
            if let Some(when) = &r.when {
                let scope = Scope { lists: &list_names, path_params: params.as_deref(), mcp: selector.as_ref() };
                self.when(when, &at("when"), &scope, &mut conds)?;
            }
            let dry_run = r.mode == Some(RuleMode::DryRun);
            rules.push(Rule {
                id: r.id.as_str().into(),
                effect: r.effect,
                dry_run,
                agents,
                methods,
                templates,
                conds,
                audit: r.audit.unwrap_or(true),
            });
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
        let mut arguments = std::mem::take(&mut self.arguments);
        arguments.sort();
        arguments.dedup();
        let limits = super::limits::compile(&doc.limits, &labels, &doc.rules)?;
        Ok(Policy {
            version: doc.version.as_deref().map(Box::from),
            limits,
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
            route_templates: route_templates.iter().map(|(t, _)| *t).collect(),
            labels,
            lists,
            needs: Needs { headers, arguments, peer: self.peer, route: self.route, route_tag: self.route_tag },
            mcp_lifecycle: doc.mcp_lifecycle.unwrap_or(McpLifecycle::Allow),
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
        for (name, test) in &when.arguments {
            let here = format!("{at}.arguments.{name}");
            let source = Source::Argument(ClaimPath::parse(name).map_err(|m| PolicyError::new(&here, m))?);
            scope.check(&source, &here)?;
            self.attr(source, test, here, scope, conds)?;
        }
        for (name, test) in &when.resource {
            let here = format!("{at}.resource.{name}");
            let templates = scope.mcp.map(|m| m.templates().to_vec()).unwrap_or_default();
            let source = Source::Resource(name.as_str().into(), templates);
            scope.check(&source, &here)?;
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
        let mut read = |s: &Source| match s {
            Source::Header(h) => self.headers.push(h.to_string()),
            Source::Argument(path) => self.arguments.push(path.first().to_owned()),
            _ => {}
        };
        read(&source);
        for op in &ops {
            if let cond::Op::Equals(cond::Operand::Ref(s))
            | cond::Op::NotEquals(cond::Operand::Ref(s))
            | cond::Op::Contains(cond::Operand::Ref(s))
            | cond::Op::Compare(_, _, s) = op
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
