//! The explanation of a condition: what each test read and why it held, failed or could not be evaluated,
//! in words, for `agent-iam explain` and the dry-run report.

use super::*;

impl Cond {
    /// Evaluates and says why, for explanations: `when.claims.purpose: "billing" is not equal to "treatment"`.
    pub fn explain(&self, ctx: &Ctx<'_>) -> (Truth, String) {
        let truth = self.eval(ctx);
        let mut why = format!("{}: ", self.at);
        let token = ctx.token;
        let _ = match &self.kind {
            Kind::Issuers(list) => write!(why, "issuer {} {} {}", quoted(&token.issuer), in_word(truth), join(list)),
            Kind::Subjects(list) => {
                write!(why, "subject {} {} {}", quoted(token.subject()), match_word(truth), join(list))
            }
            Kind::Roles { claim, any_of } => match claim.lookup(token.claims.map()) {
                Some(v) => write!(why, "roles {} {} any of {}", short(v), holds_word(truth), join(any_of)),
                None => write!(why, "the token has no roles claim"),
            },
            Kind::Scopes(all) => match all.iter().find(|s| has_scope(token.claims.map(), s) != Some(true)) {
                Some(s) if has_scope(token.claims.map(), s).is_some() => write!(why, "missing scope {}", quoted(s)),
                Some(_) => write!(why, "the token has no scope claim"),
                None => write!(why, "all scopes {} present", join(all)),
            },
            Kind::Hosts(list) => match ctx.request.host {
                Some(h) => write!(why, "host {} {} {}", quoted(h), match_word(truth), join(list)),
                None => write!(why, "the request has no host"),
            },
            Kind::Routes(names) => match ctx.request.route {
                Some(route) => write!(why, "Envoy route {} {} {}", quoted(route), in_word(truth), join(names)),
                None => write!(why, "the Envoy route name is not known"),
            },
            Kind::RouteTags(tags) => match ctx.request.route_tag {
                Some("") => write!(why, "the Envoy route has no agent_iam tag"),
                Some(tag) => write!(why, "Envoy route tag {} {} {}", quoted(tag), in_word(truth), join(tags)),
                None => write!(why, "the Envoy route's tag is not known"),
            },
            Kind::Labels(_) => write!(
                why,
                "the path's labels {} the rule's",
                if truth == Truth::True { "include" } else { "do not include" }
            ),
            Kind::Attr { source, test } => {
                let fetched = fetch(source, ctx);
                match &fetched {
                    Fetched::Missing if truth == Truth::True => write!(why, "absent, as required"),
                    Fetched::Missing => write!(why, "missing"),
                    Fetched::Ambiguous(reason) => write!(why, "cannot be evaluated: {reason}"),
                    Fetched::List { whole, items } => {
                        let outcome = match truth {
                            Truth::True => "every element satisfies",
                            Truth::False => "no element satisfies",
                            Truth::Unknown => "cannot be evaluated: not every element gives the same answer to",
                        };
                        let a = Attr::Text(Cow::Borrowed(whole));
                        write!(
                            why,
                            "{} is a list of {} values; {outcome} {}",
                            short_attr(&a),
                            items.len(),
                            ops_text(test)
                        )
                    }
                    Fetched::Value(a) => {
                        let failing = test.iter().find(|op| eval_op(op, Some(a), ctx) != Truth::True);
                        match failing {
                            None => write!(why, "{} satisfies {}", short_attr(a), ops_text(test)),
                            Some(op) => {
                                let t = eval_op(op, Some(a), ctx);
                                let verb =
                                    if t == Truth::Unknown { "cannot be compared with" } else { "does not satisfy" };
                                write!(why, "{} {verb} {}", short_attr(a), op_text(op))
                            }
                        }
                    }
                }
            }
            Kind::Time(windows) => {
                let shown: Vec<String> = windows.iter().map(|w| w.to_string()).collect();
                let local = windows.first().map(|w| w.local_time(ctx.request.now)).unwrap_or_default();
                write!(
                    why,
                    "{local} is {} {}",
                    if truth == Truth::True { "inside" } else { "outside" },
                    shown.join(" or ")
                )
            }
            Kind::Delegated(want) => {
                write!(
                    why,
                    "token {} delegated (required: {want})",
                    if token.chain.depth() > 0 { "is" } else { "is not" }
                )
            }
            Kind::MaxDepth(max) => write!(why, "delegation depth {} (at most {max})", token.chain.depth()),
            Kind::Actors(patterns) => {
                match token.chain.actors().iter().find(|a| !patterns.iter().any(|p| p.matches(a.sub()))) {
                    Some(a) => write!(why, "actor {} does not match {}", quoted(a.sub()), join(patterns)),
                    None => write!(why, "every actor matches {}", join(patterns)),
                }
            }
            Kind::AnyActor(patterns) => {
                match token.chain.actors().iter().find(|a| patterns.iter().any(|p| p.matches(a.sub()))) {
                    Some(a) => write!(why, "actor {} matches {}", quoted(a.sub()), join(patterns)),
                    None => write!(why, "no actor matches {}", join(patterns)),
                }
            }
            Kind::Origin(patterns) => match token.chain.originating_actor() {
                Some(a) => {
                    write!(why, "originating actor {} {} {}", quoted(a.sub()), match_word(truth), join(patterns))
                }
                None => write!(why, "the token is not delegated"),
            },
            Kind::MayAct => write!(
                why,
                "{}",
                match truth {
                    Truth::True => "may_act names the current actor",
                    Truth::False => "may_act does not name the current actor",
                    Truth::Unknown => "the token has no may_act or no actor",
                }
            ),
            Kind::ActorIsPeer => match ctx.request.peer.uri_san {
                Some(san) => write!(
                    why,
                    "peer certificate URI SAN {} {} agent",
                    quoted(san),
                    if truth == Truth::True { "is the" } else { "is not the" }
                ),
                None => write!(why, "no peer certificate URI SAN (not mutual TLS?)"),
            },
            Kind::Mcp(selector) => write!(why, "{}", selector.explain(ctx.request.mcp)),
            Kind::CertificateBound => write!(
                why,
                "{}",
                match truth {
                    Truth::True => "cnf.x5t#S256 matches the peer certificate",
                    Truth::False => "cnf.x5t#S256 does not match the peer certificate",
                    Truth::Unknown => "no cnf.x5t#S256 in the token or no peer certificate",
                }
            ),
        };
        (truth, why)
    }
}

fn in_word(t: Truth) -> &'static str {
    if t == Truth::True { "is in" } else { "is not in" }
}

fn match_word(t: Truth) -> &'static str {
    if t == Truth::True { "matches" } else { "does not match" }
}

fn holds_word(t: Truth) -> &'static str {
    if t == Truth::True { "include" } else { "do not include" }
}

fn quoted(s: &str) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:?}", truncate(s, 96));
    out
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(8).map(|i| format!("\"{i}\"")).collect();
    let more = if items.len() > 8 { format!(", ... ({} in all)", items.len()) } else { String::new() };
    format!("[{}{more}]", shown.join(", "))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 96 { format!("{}...", truncate(&s, 96)) } else { s }
}

fn short_attr(a: &Attr<'_>) -> String {
    match a {
        Attr::Json(v) => short(v),
        Attr::Text(t) => quoted(t),
    }
}

fn operand_text(o: &Operand) -> String {
    match o {
        Operand::Literal(v) => short(v),
        Operand::Ref(source) => source_text(source),
    }
}

fn source_text(s: &Source) -> String {
    match s {
        Source::Claim(p) => format!("claim {}", p.0.join(".")),
        Source::Header(h) => format!("header {h}"),
        Source::Query(q) => format!("query parameter {q}"),
        Source::Path(p) => format!("path parameter {p}"),
        Source::Argument(p) => format!("argument {}", p.0.join(".")),
        Source::Resource(p, _) => format!("resource parameter {p}"),
    }
}

fn set_text(s: &Set) -> String {
    match s {
        Set::Values(v) => short(&Value::Array(v.clone())),
        Set::List(_, name) => format!("list \"{name}\""),
    }
}

fn op_text(op: &Op) -> String {
    let cmp = |ord: &Ordering, eq: &bool| match (ord, eq) {
        (Ordering::Greater, false) => "gt",
        (Ordering::Greater, true) => "gte",
        (_, false) => "lt",
        (_, true) => "lte",
    };
    match op {
        Op::Equals(o) => format!("equals {}", operand_text(o)),
        Op::NotEquals(o) => format!("not_equals {}", operand_text(o)),
        Op::In(s) => format!("in {}", set_text(s)),
        Op::NotIn(s) => format!("not_in {}", set_text(s)),
        Op::Contains(o) => format!("contains {}", operand_text(o)),
        Op::StartsWith(p) => format!("starts_with {}", quoted(p)),
        Op::Exists(b) => format!("exists {b}"),
        Op::Number(o, e, n) => format!("{} {n}", cmp(o, e)),
        Op::Compare(o, e, s) => format!("{} {}", cmp(o, e), source_text(s)),
        Op::Version(o, e, v) => {
            let v: Vec<String> = v.iter().map(u64::to_string).collect();
            format!("version_{} {}", cmp(o, e), v.join("."))
        }
    }
}

fn ops_text(ops: &[Op]) -> String {
    ops.iter().map(op_text).collect::<Vec<_>>().join(" and ")
}
