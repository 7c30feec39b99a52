//! Limits: how many requests an agent, or every agent acting for one subject, may make in a window,
//! optionally only on routes with some labels, for requests some rules allow, or for some MCP tools, and
//! counted separately per rule or per tool.
//!
//! Policy decides which limits apply to an allowed request and under which key it is counted; the engine
//! counts (across the gateway's workers, in shared data) and refuses with 429 over a limit. Limits count
//! allowed requests only: a refused request is already refused.

use super::document::{LimitDocument, RuleDocument};
use super::mcp::NamePattern;
use super::path::Segments;
use super::pattern::IdPattern;
use super::{Policy, PolicyError};
use crate::request::Request;
use crate::token::VerifiedToken;
use std::cell::Cell;

/// Most limits in one policy.
pub const MAX_LIMITS: usize = 256;
/// The longest window: a week.
pub const MAX_WINDOW_SECONDS: u64 = 7 * 86_400;

/// What a limit counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// The agent (current actor).
    Agent,
    /// The subject (root of the delegation chain).
    Subject,
    /// The allowing rule.
    Rule,
    /// The MCP tool.
    Tool,
}

/// A compiled limit.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Its id.
    pub id: Box<str>,
    per: Vec<Dimension>,
    agents: Vec<IdPattern>,
    /// Bit mask of the route labels, 0 when not restricted.
    labels: u64,
    rules: Vec<Box<str>>,
    tools: Vec<NamePattern>,
    /// Requests per window.
    pub requests: u64,
    /// The window, seconds.
    pub window_seconds: u64,
}

/// Parses `30s`, `10m`, `1h`, `1d`.
fn window(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Compiles the policy's limits; `labels` are the route labels in bit order, `rules` the policy's rules.
pub(super) fn compile(
    docs: &[LimitDocument],
    labels: &[Box<str>],
    rules: &[RuleDocument],
) -> Result<Vec<Limit>, PolicyError> {
    if docs.len() > MAX_LIMITS {
        return Err(PolicyError::new("limits", format!("more than {MAX_LIMITS} limits")));
    }
    let mut out: Vec<Limit> = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        let at = |f: &str| format!("limits[{i}].{f}");
        if d.id.is_empty()
            || d.id.len() > 64
            || !d.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(PolicyError::new(&at("id"), "use 1 to 64 letters, digits, '-', '_', '.', ':'"));
        }
        if out.iter().any(|l| *l.id == *d.id) {
            return Err(PolicyError::new(&at("id"), format!("duplicate limit id \"{}\"", d.id)));
        }
        let window_seconds = window(&d.window)
            .filter(|w| (1..=MAX_WINDOW_SECONDS).contains(w))
            .ok_or_else(|| PolicyError::new(&at("window"), "must be a number and s, m, h or d (1s to 7d)"))?;
        // The emission interval is counted in microseconds: at least one per request.
        if d.requests == 0 || d.requests > window_seconds.saturating_mul(1_000_000) {
            return Err(PolicyError::new(&at("requests"), "must be at least 1 and at most a million a second"));
        }
        let mut per = Vec::new();
        for (j, p) in d.per.as_deref().unwrap_or(&["agent".to_owned()]).iter().enumerate() {
            let dim = match p.as_str() {
                "agent" => Dimension::Agent,
                "subject" => Dimension::Subject,
                "rule" => Dimension::Rule,
                "tool" => Dimension::Tool,
                _ => {
                    return Err(PolicyError::new(
                        &format!("limits[{i}].per[{j}]"),
                        "must be \"agent\", \"subject\", \"rule\" or \"tool\"",
                    ));
                }
            };
            if per.contains(&dim) {
                return Err(PolicyError::new(&format!("limits[{i}].per[{j}]"), format!("\"{p}\" is listed twice")));
            }
            per.push(dim);
        }
        if per.is_empty() {
            return Err(PolicyError::new(&at("per"), "must name at least one of agent, subject, rule, tool"));
        }
        let agents = match &d.agents {
            None => Vec::new(),
            Some(list) if list.is_empty() => return Err(PolicyError::new(&at("agents"), "must not be empty")),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(j, a)| IdPattern::parse(a).map_err(|m| PolicyError::new(&format!("limits[{i}].agents[{j}]"), m)))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let mut mask = 0u64;
        for (j, label) in d.labels.iter().flatten().enumerate() {
            let bit = labels.iter().position(|l| **l == **label).ok_or_else(|| {
                PolicyError::new(&format!("limits[{i}].labels[{j}]"), format!("no route has the label \"{label}\""))
            })?;
            mask |= 1 << bit;
        }
        if d.labels.as_ref().is_some_and(Vec::is_empty) {
            return Err(PolicyError::new(&at("labels"), "must not be empty (leave it out instead)"));
        }
        let mut limit_rules: Vec<Box<str>> = Vec::new();
        for (j, rule) in d.rules.iter().flatten().enumerate() {
            if !rules.iter().any(|r| r.id == *rule) {
                return Err(PolicyError::new(&format!("limits[{i}].rules[{j}]"), format!("no rule \"{rule}\"")));
            }
            limit_rules.push(rule.as_str().into());
        }
        if d.rules.as_ref().is_some_and(Vec::is_empty) {
            return Err(PolicyError::new(&at("rules"), "must not be empty (leave it out instead)"));
        }
        let mut tools = Vec::new();
        for (j, tool) in d.tools.iter().flatten().enumerate() {
            tools.push(NamePattern::parse(tool).map_err(|m| PolicyError::new(&format!("limits[{i}].tools[{j}]"), m))?);
        }
        if d.tools.as_ref().is_some_and(Vec::is_empty) {
            return Err(PolicyError::new(&at("tools"), "must not be empty (leave it out instead)"));
        }
        out.push(Limit {
            id: d.id.as_str().into(),
            per,
            agents,
            labels: mask,
            rules: limit_rules,
            tools,
            requests: d.requests,
            window_seconds,
        });
    }
    Ok(out)
}

/// A limit that applies to a request, and the key its count is kept under.
#[derive(Debug, Clone)]
pub struct Applicable<'p> {
    /// The limit.
    pub limit: &'p Limit,
    /// What is counted together: the values of the limit's dimensions, each length-prefixed so that no two
    /// different tuples share a key.
    pub key: String,
}

/// `n` in decimal into `buf`: the digits (no sign, no leading zeros; `0` for zero), without `core::fmt`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    // u64::MAX has 20 digits: the buffer never runs out.
    let mut at = buf.len();
    while let Some(i) = at.checked_sub(1) {
        buf[i] = b'0' + (n % 10) as u8;
        at = i;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Appends `n` in decimal to `out`, as `out.push_str(&n.to_string())` does, without `core::fmt` or an
/// allocation of its own.
pub fn push_decimal(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    for &digit in decimal(n, &mut buf) {
        out.push(char::from(digit));
    }
}

impl Policy {
    /// The policy's limits.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The limits that apply to a request `rule` allowed, with their keys; empty (and free) without limits.
    pub fn limits_for<'p>(&'p self, token: &VerifiedToken, request: &Request<'_>, rule: &str) -> Vec<Applicable<'p>> {
        if self.limits.is_empty() {
            return Vec::new();
        }
        // The path is split only if a limit names labels.
        let mut segments: Option<Segments<'_>> = None;
        let labels = Cell::new(None);
        let tool = request.mcp.filter(|m| m.method == "tools/call").and_then(|m| m.target());
        let mut out = Vec::new();
        for limit in &self.limits {
            if !limit.agents.is_empty() && !limit.agents.iter().any(|p| p.matches(token.agent())) {
                continue;
            }
            if limit.labels != 0 {
                let segments = segments.get_or_insert_with(|| Segments::new(request.path));
                if self.label_mask(segments, &labels) & limit.labels == 0 {
                    continue;
                }
            }
            if !limit.rules.is_empty() && !limit.rules.iter().any(|r| **r == *rule) {
                continue;
            }
            if !limit.tools.is_empty() && !tool.is_some_and(|t| limit.tools.iter().any(|p| p.matches(t))) {
                continue;
            }
            if limit.per.contains(&Dimension::Tool) && tool.is_none() {
                // Counted per tool, and this request calls none.
                continue;
            }
            let value = |dim: &Dimension| match dim {
                Dimension::Agent => token.agent(),
                Dimension::Subject => token.subject(),
                Dimension::Rule => rule,
                Dimension::Tool => tool.unwrap_or(""),
            };
            // Each value's length (at most 20 digits), ':', the value: allocated once.
            let mut key = String::with_capacity(limit.per.iter().map(|d| value(d).len() + 21).sum());
            for dim in &limit.per {
                let value = value(dim);
                push_decimal(&mut key, value.len() as u64);
                key.push(':');
                key.push_str(value);
            }
            out.push(Applicable { limit, key });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{decimal, push_decimal};

    #[test]
    fn decimal_is_to_string() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let samples = [0, 1, 9, 10, 99, 100, 86_400_000_000, 1_900_000_000_000_037, u64::MAX - 1, u64::MAX];
        for n in samples.into_iter().chain((0..1000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        })) {
            let mut buf = [0u8; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
            let mut out = String::from("k");
            push_decimal(&mut out, n);
            assert_eq!(out, format!("k{n}"));
        }
    }
}
