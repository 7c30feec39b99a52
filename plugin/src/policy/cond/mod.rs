//! Conditions: compiled from the document's JSON into a compact form, evaluated per request to one of
//! three answers. `Unknown` is "cannot be evaluated" (a missing claim, a header sent twice, a value of the
//! wrong type): it never lets an allow rule match and always lets a deny rule apply.

use super::PolicyError;
use super::mcp::{Selector, UriTemplate};
use super::number;
use super::path::{Segments, Template};
use super::pattern::{HostPattern, IdPattern};
use super::time::TimeWindow;
use crate::percent::{self, Plus};
use crate::request::{Request, trim_ows, valid_header_name};
use crate::token::VerifiedToken;
use rustc_hash::FxHashSet;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

mod explain;

/// A three-valued answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Cannot be evaluated: an attribute is missing, ambiguous or of the wrong type.
    Unknown,
}

impl Truth {
    fn from_bool(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    /// Kleene conjunction: false wins, then unknown.
    pub fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::Unknown, _) | (_, Truth::Unknown) => Truth::Unknown,
            _ => Truth::True,
        }
    }
}

/// What a condition reads from while it is evaluated.
pub(crate) struct Ctx<'a> {
    pub token: &'a VerifiedToken,
    pub request: &'a Request<'a>,
    pub segments: &'a Segments<'a>,
    /// The template that matched, for path parameters; `None` when the rule has no paths.
    pub template: Option<&'a Template>,
    pub lists: &'a [FxHashSet<Box<str>>],
    pub labels: &'a dyn Fn() -> u64,
    /// What a condition on a call's arguments or resource parameters answers when the message is
    /// hypothetical (a list being filtered): `True` while allow rules are evaluated, `False` for deny rules, so
    /// an entry is listed when some call of it could be allowed.
    pub assume: Truth,
}

/// One compiled condition with the document path it came from (for explanations).
#[derive(Debug, Clone)]
pub(crate) struct Cond {
    pub at: Box<str>,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Issuers(Vec<Box<str>>),
    Subjects(Vec<IdPattern>),
    Roles {
        claim: ClaimPath,
        any_of: Vec<Box<str>>,
    },
    Scopes(Vec<Box<str>>),
    Hosts(Vec<HostPattern>),
    Routes(Vec<Box<str>>),
    /// The matched Envoy route's tag is one of these.
    RouteTags(Vec<Box<str>>),
    /// Bit mask of route labels; the request must carry one of them.
    Labels(u64),
    Attr {
        source: Source,
        test: Vec<Op>,
    },
    Time(Vec<TimeWindow>),
    Delegated(bool),
    MaxDepth(usize),
    Actors(Vec<IdPattern>),
    AnyActor(Vec<IdPattern>),
    Origin(Vec<IdPattern>),
    MayAct,
    ActorIsPeer,
    CertificateBound,
    /// The MCP message is one of those the rule's `mcp` selects.
    Mcp(Selector),
}

/// Where an attribute comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Claim(ClaimPath),
    Header(Box<str>),
    Query(Box<str>),
    Path(Box<str>),
    /// An MCP tool or prompt argument.
    Argument(ClaimPath),
    /// A parameter of the rule's resource templates, from the URI of a `resources/read`.
    Resource(Box<str>, Vec<UriTemplate>),
}

impl Source {
    /// Whether it reads a call's arguments or resource (absent from a hypothetical message).
    fn of_call(&self) -> bool {
        matches!(self, Source::Argument(_) | Source::Resource(..))
    }
}

/// A claim's place in the token: object keys from the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimPath(Vec<Box<str>>);

impl ClaimPath {
    /// `a.b.c`, or an RFC 6901 JSON pointer `/a/b` for names containing dots.
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        let keys: Vec<Box<str>> = if let Some(pointer) = text.strip_prefix('/') {
            let mut keys = Vec::new();
            for token in pointer.split('/') {
                if token.contains('~') && !valid_pointer_escapes(token) {
                    return Err(format!("bad JSON pointer escape in \"{token}\" (use ~0 for '~' and ~1 for '/')"));
                }
                keys.push(token.replace("~1", "/").replace("~0", "~").into());
            }
            keys
        } else {
            text.split('.').map(Box::from).collect()
        };
        if keys.iter().any(|k| k.is_empty()) {
            return Err("claim name has an empty part (write a.b.c, or a JSON pointer starting with '/')".into());
        }
        Ok(ClaimPath(keys))
    }

    /// The top-level name.
    pub fn first(&self) -> &str {
        self.0.first().map_or("", |k| k)
    }

    fn lookup<'v>(&self, claims: &'v Map<String, Value>) -> Option<&'v Value> {
        let (first, rest) = self.0.split_first()?;
        let mut at = claims.get(&**first)?;
        for key in rest {
            at = at.as_object()?.get(&**key)?;
        }
        (!at.is_null()).then_some(at)
    }
}

fn valid_pointer_escapes(token: &str) -> bool {
    let b = token.as_bytes();
    b.iter().enumerate().all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// One operator of a test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Equals(Operand),
    NotEquals(Operand),
    In(Set),
    NotIn(Set),
    Contains(Operand),
    StartsWith(Box<str>),
    Exists(bool),
    Number(Ordering, bool, serde_json::Number),
    /// A numeric comparison with a referenced value: `{"lte": {"claim": "max_amount"}}`.
    Compare(Ordering, bool, Source),
    Version(Ordering, bool, Vec<u64>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(Value),
    Ref(Source),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Set {
    Values(Vec<Value>),
    List(usize, Box<str>),
}

pub(crate) const OPERATORS: &str = "equals, not_equals, in, not_in, contains, starts_with, exists, gt, gte, lt, lte, \
                                    version_gt, version_gte, version_lt, version_lte";

/// What compiling a test needs from the rest of the policy.
pub(crate) struct Scope<'a> {
    pub lists: &'a [(String, usize)],
    /// Parameters present in every template of the rule (`None`: the rule has no templates).
    pub path_params: Option<&'a [String]>,
    /// The rule's `mcp` selector, for references to arguments and resource parameters.
    pub mcp: Option<&'a Selector>,
}

impl Scope<'_> {
    /// Whether the rule can read `source`: path and resource parameters its templates capture, arguments of
    /// the messages it selects.
    pub fn check(&self, source: &Source, at: &str) -> Result<(), PolicyError> {
        self.check_source(source, at)
    }

    fn check_source(&self, source: &Source, at: &str) -> Result<(), PolicyError> {
        match source {
            Source::Path(name) => match self.path_params {
                Some(params) if params.iter().any(|p| **p == **name) => Ok(()),
                Some(_) => Err(PolicyError::new(
                    at,
                    format!("path parameter \"{name}\" is not captured by every path of this rule"),
                )),
                None => Err(PolicyError::new(
                    at,
                    format!("path parameter \"{name}\" needs `paths` (or `labels`) with {{{name}}} in every template"),
                )),
            },
            Source::Header(name) if !valid_header_name(name) => {
                Err(PolicyError::new(at, "header names are lower-case HTTP tokens"))
            }
            Source::Argument(_) if !self.mcp.is_some_and(Selector::has_arguments) => {
                Err(PolicyError::new(at, "arguments need `mcp.tools` or `mcp.prompts` in the rule"))
            }
            Source::Resource(name, templates) => {
                if templates.is_empty() {
                    Err(PolicyError::new(
                        at,
                        format!(
                            "resource parameter \"{name}\" needs `mcp.resources` with {{{name}}} in every template"
                        ),
                    ))
                } else if !templates.iter().all(|t| t.params().any(|p| p == &**name)) {
                    Err(PolicyError::new(
                        at,
                        format!("resource parameter \"{name}\" is not captured by every template of this rule"),
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Compiles `{"op": operand, ...}` found at `at`.
pub(crate) fn compile_test(ops: &Map<String, Value>, at: &str, scope: &Scope<'_>) -> Result<Vec<Op>, PolicyError> {
    if ops.is_empty() {
        return Err(PolicyError::new(at, format!("needs at least one operator ({OPERATORS})")));
    }
    let mut out = Vec::with_capacity(ops.len());
    for (name, arg) in ops {
        let here = format!("{at}.{name}");
        let op = match name.as_str() {
            "equals" => Op::Equals(operand(arg, &here, scope)?),
            "not_equals" => Op::NotEquals(operand(arg, &here, scope)?),
            "in" => Op::In(set(arg, &here, scope)?),
            "not_in" => Op::NotIn(set(arg, &here, scope)?),
            "contains" => Op::Contains(operand(arg, &here, scope)?),
            "starts_with" => match arg {
                Value::String(s) if !s.is_empty() => Op::StartsWith(s.as_str().into()),
                _ => return Err(PolicyError::new(&here, "must be a non-empty string")),
            },
            "exists" => match arg {
                Value::Bool(b) => Op::Exists(*b),
                _ => return Err(PolicyError::new(&here, "must be true or false")),
            },
            "gt" | "gte" | "lt" | "lte" => {
                let (ord, or_equal) = ordering(name);
                match arg {
                    Value::Number(n) => {
                        exact_literal(n, &here)?;
                        Op::Number(ord, or_equal, n.clone())
                    }
                    Value::Object(o) => {
                        let source = reference(o, &here, scope)?;
                        scope.check_source(&source, &here)?;
                        Op::Compare(ord, or_equal, source)
                    }
                    _ => return Err(PolicyError::new(&here, "must be a number or a reference {\"claim\": name}")),
                }
            }
            "version_gt" | "version_gte" | "version_lt" | "version_lte" => {
                let v = arg.as_str().and_then(parse_version).ok_or_else(|| {
                    PolicyError::new(&here, "must be a version string of numbers and dots, e.g. \"2.1.0\"")
                })?;
                let (ord, or_equal) = ordering(&name["version_".len()..]);
                Op::Version(ord, or_equal, v)
            }
            other => {
                return Err(PolicyError::new(
                    at,
                    format!("unknown operator \"{other}\" (expected one of: {OPERATORS})"),
                ));
            }
        };
        out.push(op);
    }
    Ok(out)
}

fn ordering(name: &str) -> (Ordering, bool) {
    match name {
        "gt" => (Ordering::Greater, false),
        "gte" => (Ordering::Greater, true),
        "lt" => (Ordering::Less, false),
        _ => (Ordering::Less, true),
    }
}

/// A number literal must be one a rule can compare exactly (see [`number`]).
fn exact_literal(n: &serde_json::Number, at: &str) -> Result<(), PolicyError> {
    if number::is_exact(n) {
        Ok(())
    } else {
        Err(PolicyError::new(
            at,
            "cannot be compared exactly: write an integer of at most 64 bits, or a number below 2^53 in magnitude",
        ))
    }
}

fn operand(arg: &Value, at: &str, scope: &Scope<'_>) -> Result<Operand, PolicyError> {
    match arg {
        Value::Number(n) => {
            exact_literal(n, at)?;
            Ok(Operand::Literal(arg.clone()))
        }
        Value::String(_) | Value::Bool(_) => Ok(Operand::Literal(arg.clone())),
        Value::Object(o) => {
            let source = reference(o, at, scope)?;
            scope.check_source(&source, at)?;
            Ok(Operand::Ref(source))
        }
        Value::Null | Value::Array(_) => Err(PolicyError::new(
            at,
            "must be a string, number, true/false, or a reference {\"claim\"|\"header\"|\"query\"|\"path\"|\"argument\"|\"resource\": name}",
        )),
    }
}

fn reference(o: &Map<String, Value>, at: &str, scope: &Scope<'_>) -> Result<Source, PolicyError> {
    let mut entries = o.iter();
    let (Some((kind, Value::String(name))), None) = (entries.next(), entries.next()) else {
        return Err(PolicyError::new(
            at,
            "a reference is one of {\"claim\": name}, {\"header\": name}, {\"query\": name}, {\"path\": name}, \
             {\"argument\": name}, {\"resource\": name}",
        ));
    };
    let here = format!("{at}.{kind}");
    match kind.as_str() {
        "claim" => Ok(Source::Claim(ClaimPath::parse(name).map_err(|m| PolicyError::new(&here, m))?)),
        "header" => Ok(Source::Header(name.to_ascii_lowercase().into())),
        "query" if !name.is_empty() => Ok(Source::Query(name.as_str().into())),
        "path" => Ok(Source::Path(name.as_str().into())),
        "argument" => Ok(Source::Argument(ClaimPath::parse(name).map_err(|m| PolicyError::new(&here, m))?)),
        "resource" => {
            Ok(Source::Resource(name.as_str().into(), scope.mcp.map(|m| m.templates().to_vec()).unwrap_or_default()))
        }
        _ => Err(PolicyError::new(
            at,
            format!("unknown reference \"{kind}\" (claim, header, query, path, argument or resource)"),
        )),
    }
}

fn set(arg: &Value, at: &str, scope: &Scope<'_>) -> Result<Set, PolicyError> {
    match arg {
        Value::Array(items) if items.is_empty() => Err(PolicyError::new(at, "must not be empty")),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Number(n) => exact_literal(n, &format!("{at}[{i}]"))?,
                    Value::String(_) | Value::Bool(_) => {}
                    _ => {
                        return Err(PolicyError::new(&format!("{at}[{i}]"), "must be a string, number or true/false"));
                    }
                }
            }
            Ok(Set::Values(items.clone()))
        }
        Value::Object(o) => match (o.get("list"), o.len()) {
            (Some(Value::String(name)), 1) => match scope.lists.iter().find(|(n, _)| n == name) {
                Some((_, index)) => Ok(Set::List(*index, name.as_str().into())),
                None => Err(PolicyError::new(&format!("{at}.list"), format!("unknown list \"{name}\""))),
            },
            _ => Err(PolicyError::new(at, "must be a list of values or {\"list\": name}")),
        },
        _ => Err(PolicyError::new(at, "must be a list of values or {\"list\": name}")),
    }
}

/// `2`, `2.1`, `v2.1.0`: up to 8 numeric components. Anything else (pre-release tags included) is not a
/// version this policy compares, so the test cannot be evaluated.
fn parse_version(text: &str) -> Option<Vec<u64>> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let mut out = Vec::new();
    for part in text.split('.') {
        if part.is_empty() || part.len() > 18 || !part.bytes().all(|b| b.is_ascii_digit()) || out.len() == 8 {
            return None;
        }
        out.push(part.parse().ok()?);
    }
    Some(out)
}

/// Compares a version in text with a compiled one, without allocating; missing components are 0.
fn compare_version(text: &str, want: &[u64]) -> Option<Ordering> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let mut parts = text.split('.');
    let mut i = 0;
    let mut result = Ordering::Equal;
    loop {
        let part = parts.next();
        if part.is_none() && i >= want.len() {
            return Some(result);
        }
        let have = match part {
            Some(p) if !p.is_empty() && p.len() <= 18 && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => 0,
        };
        if i >= 8 {
            return None;
        }
        if result == Ordering::Equal {
            result = have.cmp(want.get(i).unwrap_or(&0));
        }
        i += 1;
    }
}

/// An attribute's value.
#[derive(Debug)]
enum Attr<'a> {
    Json(&'a Value),
    Text(Cow<'a, str>),
}

/// Fetching an attribute.
enum Fetched<'a> {
    Value(Attr<'a>),
    /// A header value with commas: Envoy joins repeated `user-agent`, `x-forwarded-for`, `origin`, ... into
    /// one comma-separated value, and upstreams read such values as lists. `whole` is the value, `items` its
    /// non-empty elements (at least two), each without surrounding whitespace.
    List {
        whole: &'a str,
        items: Vec<&'a str>,
    },
    Missing,
    /// Sent more than once, not text, or a broken escape.
    Ambiguous(&'static str),
}

/// A header's value as a rule reads it: trimmed, and split into a list when it has commas.
fn header_value(value: &[u8]) -> Fetched<'_> {
    let Ok(text) = std::str::from_utf8(value) else { return Fetched::Ambiguous("not text") };
    // Control characters other than tab (a vertical tab or form feed, which HTTP/2 lets through) are
    // whitespace to some upstreams (Java's `String.trim`, Python's `str.strip`) and not to others.
    if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Fetched::Ambiguous("has control characters");
    }
    let whole = trim_ows(text);
    if !whole.contains(',') {
        return Fetched::Value(Attr::Text(Cow::Borrowed(whole)));
    }
    // RFC 9110 §5.6.1: empty list elements do not count.
    let items: Vec<&str> = whole.split(',').map(trim_ows).filter(|i| !i.is_empty()).collect();
    match items.as_slice() {
        [] => Fetched::Value(Attr::Text(Cow::Borrowed(""))),
        [one] => Fetched::Value(Attr::Text(Cow::Borrowed(one))),
        _ => Fetched::List { whole, items },
    }
}

fn fetch<'a>(source: &Source, ctx: &Ctx<'a>) -> Fetched<'a> {
    match source {
        Source::Claim(path) => {
            path.lookup(ctx.token.claims.map()).map_or(Fetched::Missing, |v| Fetched::Value(Attr::Json(v)))
        }
        Source::Header(name) => {
            let mut values = ctx.request.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
            match (values.next(), values.next()) {
                (None, _) => Fetched::Missing,
                (Some(_), Some(_)) => Fetched::Ambiguous("sent more than once"),
                (Some((_, v)), None) => header_value(v),
            }
        }
        Source::Query(name) => query_param(ctx.request.query, name),
        Source::Argument(path) => match ctx.request.mcp {
            Some(m) => path.lookup(&m.arguments).map_or(Fetched::Missing, |v| Fetched::Value(Attr::Json(v))),
            None => Fetched::Missing,
        },
        Source::Resource(name, templates) => {
            let uri = ctx.request.mcp.and_then(|m| m.uri.as_deref());
            match uri.and_then(|u| templates.iter().find_map(|t| t.param(u, name))) {
                None => Fetched::Missing,
                Some(raw) => match percent::decode(raw, Plus::Literal) {
                    Some(text) => Fetched::Value(Attr::Text(text)),
                    None => Fetched::Ambiguous("not UTF-8 after decoding"),
                },
            }
        }
        Source::Path(name) => {
            let segment = ctx.template.and_then(|t| t.param_index(name)).and_then(|i| ctx.segments.get(i));
            match segment {
                None => Fetched::Missing,
                Some(raw) => match percent::decode(raw, Plus::Literal) {
                    Some(text) => Fetched::Value(Attr::Text(text)),
                    None => Fetched::Ambiguous("not UTF-8 after decoding"),
                },
            }
        }
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Fetched<'a> {
    let Some(query) = query else { return Fetched::Missing };
    let mut found = None;
    for pair in percent::query_pairs(query) {
        let Some(key) = pair.decoded_name() else { return Fetched::Ambiguous("malformed query") };
        if key == name {
            if found.is_some() {
                return Fetched::Ambiguous("sent more than once");
            }
            found = Some(pair.value);
        }
    }
    match found {
        None => Fetched::Missing,
        Some(raw) => match percent::decode(raw, Plus::Space) {
            Some(v) => Fetched::Value(Attr::Text(v)),
            None => Fetched::Ambiguous("malformed query"),
        },
    }
}

fn attr_str<'x>(a: &'x Attr<'_>) -> Option<&'x str> {
    match a {
        Attr::Json(Value::String(s)) => Some(s),
        Attr::Json(_) => None,
        Attr::Text(t) => Some(t),
    }
}

/// Equality across JSON claims and request text: `None` when the two cannot be compared (an array or an
/// object, JSON values of different types, text that is not a number or a boolean where one is expected),
/// which makes the test "cannot be evaluated" rather than false — `not_equals "contractor"` must not hold
/// for `["contractor"]`.
fn attr_eq(a: &Attr<'_>, b: &Attr<'_>) -> Option<bool> {
    match (a, b) {
        (Attr::Json(x), Attr::Json(y)) => match (x, y) {
            (Value::Number(m), Value::Number(n)) => number::compare_json(m, n).map(Ordering::is_eq),
            (Value::String(m), Value::String(n)) => Some(m == n),
            (Value::Bool(m), Value::Bool(n)) => Some(m == n),
            _ => None,
        },
        (Attr::Text(t), Attr::Text(u)) => Some(t == u),
        (Attr::Json(j), Attr::Text(t)) | (Attr::Text(t), Attr::Json(j)) => match j {
            Value::String(s) => Some(s == t),
            Value::Number(n) => number::compare_text_json(t, n).map(Ordering::is_eq),
            Value::Bool(b) => match &**t {
                "true" => Some(*b),
                "false" => Some(!*b),
                _ => None,
            },
            _ => None,
        },
    }
}

/// Membership, three-valued: true if any element is equal, false if every comparison says unequal,
/// otherwise unknown.
fn any_equal<'v>(a: &Attr<'_>, values: impl Iterator<Item = &'v Value>) -> Option<bool> {
    let mut comparable = true;
    for v in values {
        match attr_eq(a, &Attr::Json(v)) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => comparable = false,
        }
    }
    comparable.then_some(false)
}

fn truth(b: Option<bool>) -> Truth {
    b.map_or(Truth::Unknown, Truth::from_bool)
}

/// The words of a space-separated claim (`scope`, roles), or of a header value when `json` is false (commas
/// separate too). The separators are ASCII, so the bytes are split rather than the characters: decoding each
/// character was most of a scope check.
fn words(s: &str, json: bool) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let separator = move |b: &u8| b.is_ascii_whitespace() || (!json && *b == b',');
    let mut at = 0;
    std::iter::from_fn(move || {
        at += bytes.get(at..)?.iter().take_while(|b| separator(b)).count();
        let len = bytes.get(at..)?.iter().take_while(|b| !separator(b)).count();
        let word = s.get(at..at + len).filter(|w| !w.is_empty())?;
        at += len;
        Some(word)
    })
}

fn resolve<'a, 'o>(operand: &'o Operand, ctx: &Ctx<'a>) -> Option<Attr<'o>>
where
    'a: 'o,
{
    match operand {
        Operand::Literal(v) => Some(Attr::Json(v)),
        // A list has no one value to compare with.
        Operand::Ref(source) => match fetch(source, ctx) {
            Fetched::Value(a) => Some(a),
            Fetched::List { .. } | Fetched::Missing | Fetched::Ambiguous(_) => None,
        },
    }
}

fn in_set(a: &Attr<'_>, set: &Set, ctx: &Ctx<'_>) -> Option<bool> {
    match set {
        Set::Values(values) => any_equal(a, values.iter()),
        // Named lists hold strings: anything but a string or text cannot be compared with them.
        Set::List(index, _) => attr_str(a).map(|s| ctx.lists.get(*index).is_some_and(|l| l.contains(s))),
    }
}

fn eval_op(op: &Op, value: Option<&Attr<'_>>, ctx: &Ctx<'_>) -> Truth {
    if let Op::Exists(want) = op {
        return Truth::from_bool(value.is_some() == *want);
    }
    let Some(a) = value else { return Truth::Unknown };
    match op {
        Op::Equals(o) => resolve(o, ctx).map_or(Truth::Unknown, |b| truth(attr_eq(a, &b))),
        Op::NotEquals(o) => resolve(o, ctx).map_or(Truth::Unknown, |b| truth(attr_eq(a, &b).map(|e| !e))),
        Op::In(set) => truth(in_set(a, set, ctx)),
        Op::NotIn(set) => truth(in_set(a, set, ctx).map(|e| !e)),
        Op::Contains(o) => {
            let Some(needle) = resolve(o, ctx) else { return Truth::Unknown };
            match a {
                Attr::Json(Value::Array(items)) => truth(any_equal(&needle, items.iter())),
                Attr::Json(Value::String(s)) => match attr_str(&needle) {
                    Some(n) => Truth::from_bool(words(s, true).any(|w| w == n)),
                    None => Truth::Unknown,
                },
                Attr::Text(t) => match attr_str(&needle) {
                    Some(n) => Truth::from_bool(words(t, false).any(|w| w == n)),
                    None => Truth::Unknown,
                },
                Attr::Json(_) => Truth::Unknown,
            }
        }
        Op::StartsWith(prefix) => match attr_str(a) {
            Some(s) => Truth::from_bool(s.starts_with(&**prefix)),
            None => Truth::Unknown,
        },
        Op::Number(ord, or_equal, n) => {
            let have = match a {
                Attr::Json(Value::Number(x)) => number::compare_json(x, n),
                Attr::Json(_) => None,
                Attr::Text(t) => number::compare_text_json(t, n),
            };
            match have {
                Some(o) => Truth::from_bool(o == *ord || (*or_equal && o == Ordering::Equal)),
                None => Truth::Unknown,
            }
        }
        Op::Compare(ord, or_equal, source) => {
            let Fetched::Value(b) = fetch(source, ctx) else { return Truth::Unknown };
            match compare_numbers(a, &b) {
                Some(o) => Truth::from_bool(o == *ord || (*or_equal && o == Ordering::Equal)),
                None => Truth::Unknown,
            }
        }
        Op::Version(ord, or_equal, v) => {
            let number_text;
            let text = match a {
                Attr::Json(Value::Number(n)) => {
                    number_text = n.to_string();
                    Some(number_text.as_str())
                }
                other => attr_str(other),
            };
            match text.and_then(|t| compare_version(t, v)) {
                Some(o) => Truth::from_bool(o == *ord || (*or_equal && o == Ordering::Equal)),
                None => Truth::Unknown,
            }
        }
        Op::Exists(_) => Truth::Unknown,
    }
}

/// Two values compared as exact numbers: JSON numbers, or request text in plain decimal against a JSON
/// number. Two texts are not compared (neither side says it is a number), nor anything else.
fn compare_numbers(a: &Attr<'_>, b: &Attr<'_>) -> Option<Ordering> {
    match (a, b) {
        (Attr::Json(Value::Number(x)), Attr::Json(Value::Number(y))) => number::compare_json(x, y),
        (Attr::Text(t), Attr::Json(Value::Number(y))) => number::compare_text_json(t, y),
        (Attr::Json(Value::Number(x)), Attr::Text(t)) => number::compare_text_json(t, x).map(Ordering::reverse),
        _ => None,
    }
}

/// Every operator of a test on one value, in Kleene logic. `whole` is the list an element came from:
/// `contains` reads the whole list (it looks for a word among them), every other operator the element.
fn eval_test(test: &[Op], value: Option<&Attr<'_>>, whole: Option<&Attr<'_>>, ctx: &Ctx<'_>) -> Truth {
    test.iter().fold(Truth::True, |acc, op| {
        if acc == Truth::False {
            return acc;
        }
        let read = match op {
            Op::Contains(_) => whole.or(value),
            _ => value,
        };
        acc.and(eval_op(op, read, ctx))
    })
}

/// A test on a list: it holds when it holds for every element and fails when it fails for every element.
/// Otherwise which element counts depends on who reads the list (first, last, any), so it cannot be
/// evaluated: a deny rule applies when any element matches, and an allow rule never matches a list that
/// only partly satisfies it.
fn eval_list(test: &[Op], whole: &str, items: &[&str], ctx: &Ctx<'_>) -> Truth {
    let whole = Attr::Text(Cow::Borrowed(whole));
    let (mut any_true, mut any_false) = (false, false);
    for item in items {
        match eval_test(test, Some(&Attr::Text(Cow::Borrowed(item))), Some(&whole), ctx) {
            Truth::True => any_true = true,
            Truth::False => any_false = true,
            Truth::Unknown => return Truth::Unknown,
        }
    }
    match (any_true, any_false) {
        (true, false) => Truth::True,
        (false, true) => Truth::False,
        _ => Truth::Unknown,
    }
}

fn roles_hold(value: &Value, any_of: &[Box<str>]) -> Truth {
    match value {
        Value::Array(items) => {
            Truth::from_bool(items.iter().any(|i| i.as_str().is_some_and(|r| any_of.iter().any(|w| **w == *r))))
        }
        Value::String(s) => Truth::from_bool(words(s, true).any(|r| any_of.iter().any(|w| **w == *r))),
        _ => Truth::Unknown,
    }
}

/// The token's scopes: `scope` (RFC 8693 / RFC 9068, space-separated) or `scp` (an array).
fn has_scope(claims: &Map<String, Value>, scope: &str) -> Option<bool> {
    // `scp` is only looked up when `scope` is not a string.
    if let Some(Value::String(s)) = claims.get("scope") {
        return Some(words(s, true).any(|w| w == scope));
    }
    match claims.get("scp") {
        Some(Value::Array(items)) => Some(items.iter().any(|i| i.as_str() == Some(scope))),
        Some(Value::String(s)) => Some(words(s, true).any(|w| w == scope)),
        _ => None,
    }
}

impl Cond {
    /// Evaluates the condition.
    pub fn eval(&self, ctx: &Ctx<'_>) -> Truth {
        if ctx.request.hypothetical && self.reads_call() {
            return ctx.assume;
        }
        let token = ctx.token;
        let chain = &token.chain;
        match &self.kind {
            Kind::Issuers(list) => Truth::from_bool(list.iter().any(|i| **i == *token.issuer)),
            Kind::Subjects(list) => Truth::from_bool(list.iter().any(|p| p.matches(token.subject()))),
            Kind::Roles { claim, any_of } => {
                claim.lookup(token.claims.map()).map_or(Truth::Unknown, |v| roles_hold(v, any_of))
            }
            Kind::Scopes(all) => all.iter().fold(Truth::True, |acc, s| {
                acc.and(has_scope(token.claims.map(), s).map_or(Truth::Unknown, Truth::from_bool))
            }),
            Kind::Hosts(list) => match ctx.request.host {
                Some(host) => Truth::from_bool(list.iter().any(|h| h.matches(host))),
                None => Truth::Unknown,
            },
            Kind::Labels(mask) => Truth::from_bool((ctx.labels)() & mask != 0),
            Kind::Routes(names) => match ctx.request.route {
                Some(route) => Truth::from_bool(names.iter().any(|n| **n == *route)),
                None => Truth::Unknown,
            },
            // An untagged route (`""`) is simply not one of them; only a tag Envoy could not report is unknown.
            Kind::RouteTags(tags) => match ctx.request.route_tag {
                Some(tag) => Truth::from_bool(tags.iter().any(|n| **n == *tag)),
                None => Truth::Unknown,
            },
            Kind::Attr { source, test } => match &fetch(source, ctx) {
                Fetched::Value(a) => eval_test(test, Some(a), None, ctx),
                Fetched::Missing => eval_test(test, None, None, ctx),
                Fetched::List { whole, items } => eval_list(test, whole, items, ctx),
                Fetched::Ambiguous(_) => Truth::Unknown,
            },
            Kind::Time(windows) => Truth::from_bool(windows.iter().any(|w| w.contains(ctx.request.now))),
            Kind::Delegated(want) => Truth::from_bool((chain.depth() > 0) == *want),
            Kind::MaxDepth(max) => Truth::from_bool(chain.depth() <= *max),
            Kind::Actors(patterns) => {
                Truth::from_bool(chain.actors().iter().all(|a| patterns.iter().any(|p| p.matches(a.sub()))))
            }
            Kind::AnyActor(patterns) => {
                Truth::from_bool(chain.actors().iter().any(|a| patterns.iter().any(|p| p.matches(a.sub()))))
            }
            Kind::Origin(patterns) => match chain.originating_actor() {
                Some(a) => Truth::from_bool(patterns.iter().any(|p| p.matches(a.sub()))),
                None => Truth::Unknown,
            },
            Kind::MayAct => match (chain.may_act(), chain.current_actor()) {
                (Some(may), Some(actor)) => Truth::from_bool(may.permits(actor)),
                _ => Truth::Unknown,
            },
            Kind::ActorIsPeer => match ctx.request.peer.uri_san {
                Some(san) => Truth::from_bool(san == token.agent()),
                None => Truth::Unknown,
            },
            Kind::CertificateBound => match ctx.request.peer.certificate_sha256 {
                Some(digest) => crate::token::claims::certificate_bound(&token.claims, digest)
                    .map_or(Truth::Unknown, Truth::from_bool),
                None => Truth::Unknown,
            },
            Kind::Mcp(selector) => Truth::from_bool(selector.matches(ctx.request.mcp)),
        }
    }

    /// Whether it reads a call's arguments or resource parameters, as its subject or as an operand.
    pub fn reads_call(&self) -> bool {
        let Kind::Attr { source, test } = &self.kind else { return false };
        source.of_call()
            || test.iter().any(|op| match op {
                Op::Equals(Operand::Ref(s))
                | Op::NotEquals(Operand::Ref(s))
                | Op::Contains(Operand::Ref(s))
                | Op::Compare(_, _, s) => s.of_call(),
                _ => false,
            })
    }

    /// The scope this condition finds missing, if it is a scope condition that fails only for that.
    pub fn missing_scope<'c>(&'c self, ctx: &Ctx<'_>) -> Option<&'c str> {
        match &self.kind {
            Kind::Scopes(all) => all.iter().find(|s| has_scope(ctx.token.claims.map(), s) == Some(false)).map(|s| &**s),
            _ => None,
        }
    }
}

/// Numeric bounds of a test that no value can satisfy (`gt 5` with `lt 3`): for the never-matches warning.
pub(crate) fn contradictory(test: &[Op]) -> bool {
    // The tightest lower and upper bound, each with whether it is strict; compared exactly, like values.
    let mut low: Option<(&serde_json::Number, bool)> = None;
    let mut high: Option<(&serde_json::Number, bool)> = None;
    let tighter =
        |bound: Option<(&serde_json::Number, bool)>, n: &serde_json::Number, strict: bool, want: Ordering| match bound
            .and_then(|(b, b_strict)| Some((number::compare_json(n, b)?, b_strict)))
        {
            None => bound.is_none(),
            Some((o, b_strict)) => o == want || (o.is_eq() && strict && !b_strict),
        };
    let mut must_exist = false;
    let mut must_not_exist = false;
    for op in test {
        match op {
            Op::Number(Ordering::Greater, eq, n) if tighter(low, n, !eq, Ordering::Greater) => low = Some((n, !eq)),
            Op::Number(Ordering::Less, eq, n) if tighter(high, n, !eq, Ordering::Less) => high = Some((n, !eq)),
            Op::Exists(true) => must_exist = true,
            Op::Exists(false) => must_not_exist = true,
            _ => {}
        }
    }
    let empty_range = match (low, high) {
        (Some((l, l_strict)), Some((h, h_strict))) => match number::compare_json(l, h) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => l_strict || h_strict,
            _ => false,
        },
        _ => false,
    };
    let others = test.iter().any(|op| !matches!(op, Op::Exists(_)));
    empty_range || (must_exist && must_not_exist) || (must_not_exist && others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_ascii_whitespace_and_in_headers_on_commas() {
        let w = |s, json| words(s, json).collect::<Vec<_>>();
        assert_eq!(w("  mcp:tools \t\n orders:write\r", true), ["mcp:tools", "orders:write"]);
        assert_eq!(w("a,b , c", false), ["a", "b", "c"]);
        assert_eq!(w("a,b", true), ["a,b"]);
        assert_eq!(w("\u{e9}t\u{e9} \u{a0}x", true), ["\u{e9}t\u{e9}", "\u{a0}x"], "only ASCII whitespace separates");
        assert!(w("", true).is_empty() && w(" \x0c ", true).is_empty() && w(",,", false).is_empty());
    }

    #[test]
    fn versions_compare_numerically() {
        let v = |s| parse_version(s).unwrap();
        assert_eq!(compare_version("2.1.0", &v("2.1.0")), Some(Ordering::Equal));
        assert_eq!(compare_version("2.1", &v("2.1.0")), Some(Ordering::Equal));
        assert_eq!(compare_version("2.10", &v("2.9")), Some(Ordering::Greater));
        assert_eq!(compare_version("v3", &v("2.9.9")), Some(Ordering::Greater));
        assert_eq!(compare_version("2.0.9", &v("2.1")), Some(Ordering::Less));
        assert_eq!(compare_version("2.1.0-beta", &v("2.1")), None);
        assert_eq!(compare_version("", &v("1")), None);
        assert_eq!(compare_version("1..2", &v("1")), None);
        assert_eq!(compare_version("1.2.3.4.5.6.7.8.9", &v("1")), None);
        assert!(parse_version("2.x").is_none());
    }

    #[test]
    fn query_parameters() {
        let q = |query: &str, name: &str| match query_param(Some(query), name) {
            Fetched::Value(Attr::Text(t)) => Ok(t.into_owned()),
            Fetched::Missing => Err("missing"),
            Fetched::Ambiguous(why) => Err(why),
            Fetched::Value(_) | Fetched::List { .. } => Err("json"),
        };
        assert_eq!(q("symbol=ACME&qty=5", "symbol"), Ok("ACME".into()));
        assert_eq!(q("a=1&symbol=AC%4DE", "symbol"), Ok("ACME".into()));
        assert_eq!(q("note=a+b", "note"), Ok("a b".into()));
        assert_eq!(q("sym%62ol=X", "symbol"), Ok("X".into()));
        assert_eq!(q("flag", "flag"), Ok(String::new()));
        assert_eq!(q("symbol=A&symbol=B", "symbol"), Err("sent more than once"));
        assert_eq!(q("symbol=%ZZ", "symbol"), Err("malformed query"));
        assert_eq!(q("other=1", "symbol"), Err("missing"));
    }

    #[test]
    fn claim_paths() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "agent": {"version": "2.1.0"}, "https://x.example/roles": ["a"], "n": null
        }))
        .unwrap();
        assert_eq!(ClaimPath::parse("agent.version").unwrap().lookup(&claims), Some(&Value::from("2.1.0")));
        assert!(ClaimPath::parse("/https:~1~1x.example~1roles").unwrap().lookup(&claims).is_some());
        assert_eq!(ClaimPath::parse("n").unwrap().lookup(&claims), None);
        assert_eq!(ClaimPath::parse("agent.version.x").unwrap().lookup(&claims), None);
        assert!(ClaimPath::parse("a..b").is_err());
        assert!(ClaimPath::parse("/a~2").is_err());
    }

    #[test]
    fn contradictions() {
        use Ordering::*;
        let n = |v: u64| serde_json::Number::from(v);
        assert!(contradictory(&[Op::Number(Greater, false, n(5)), Op::Number(Less, false, n(3))]));
        assert!(contradictory(&[Op::Number(Greater, false, n(5)), Op::Number(Less, true, n(5))]));
        assert!(!contradictory(&[Op::Number(Greater, true, n(5)), Op::Number(Less, true, n(5))]));
        // Exact: 2^53 + 1 and 2^53 are one f64 apart from nothing, but not equal.
        let (a, b) = (n(9_007_199_254_740_993), n(9_007_199_254_740_992));
        assert!(!contradictory(&[Op::Number(Greater, false, b.clone()), Op::Number(Less, true, a.clone())]));
        assert!(contradictory(&[Op::Number(Greater, false, a), Op::Number(Less, true, b)]));
        assert!(contradictory(&[
            Op::Number(Greater, true, n(1)),
            Op::Number(Greater, false, n(9)),
            Op::Number(Less, true, n(9))
        ]));
        assert!(contradictory(&[Op::Exists(false), Op::Equals(Operand::Literal(Value::from(1)))]));
        assert!(!contradictory(&[Op::Exists(false)]));
    }
}
