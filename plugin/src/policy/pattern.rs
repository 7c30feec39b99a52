//! Identity and host patterns: exact, prefix on a `/` boundary, any.

use std::fmt;

/// An agent (or subject, or actor) pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdPattern {
    /// `*`: any verified identity.
    Any,
    /// An exact id.
    Exact(Box<str>),
    /// `spiffe://td/agents/*`, stored with its trailing `/`, so a match is always on a segment boundary and
    /// never the prefix itself: `spiffe://td/*` is every workload of trust domain `td`, not `spiffe://td`.
    Prefix(Box<str>),
}

const STAR_RULE: &str = "'*' is only allowed alone or as a final path segment (\"spiffe://example.org/agents/*\")";

impl IdPattern {
    /// Parses `*`, `<prefix>/*` or an exact id of visible ASCII.
    pub fn parse(text: &str) -> Result<IdPattern, String> {
        if text == "*" {
            return Ok(IdPattern::Any);
        }
        if text.is_empty() || text.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err("must be a non-empty id of visible ASCII characters".into());
        }
        match text.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') && !prefix.contains('*') && prefix.len() > 1 => {
                Ok(IdPattern::Prefix(prefix.into()))
            }
            Some(_) => Err(STAR_RULE.into()),
            None if text.contains('*') => Err(STAR_RULE.into()),
            None => Ok(IdPattern::Exact(text.into())),
        }
    }

    /// Whether `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            IdPattern::Any => true,
            IdPattern::Exact(e) => **e == *id,
            IdPattern::Prefix(p) => id.len() > p.len() && id.starts_with(&**p),
        }
    }

    /// Whether every id this pattern matches is also matched by `other`.
    pub fn covered_by(&self, other: &IdPattern) -> bool {
        match (self, other) {
            (_, IdPattern::Any) => true,
            (IdPattern::Any, _) => false,
            (IdPattern::Exact(a), b) => b.matches(a),
            (IdPattern::Prefix(a), IdPattern::Prefix(b)) => a.starts_with(&**b),
            (IdPattern::Prefix(_), IdPattern::Exact(_)) => false,
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdPattern::Any => f.write_str("*"),
            IdPattern::Exact(e) => f.write_str(e),
            IdPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// A host pattern: `api.example.com`, or `*.example.com` for any name under `example.com` (not itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exact, lower case.
    Exact(Box<str>),
    /// `.example.com`: the suffix with its dot.
    Suffix(Box<str>),
}

impl HostPattern {
    /// Parses a host name as canonical requests carry it (lower case, no port, no trailing dot).
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let (suffix, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        match crate::request::canonical_host(name) {
            Ok(c) if c == name && !name.contains(':') => Ok(if suffix {
                HostPattern::Suffix(format!(".{name}").into())
            } else {
                HostPattern::Exact(name.into())
            }),
            _ => Err(
                "must be a lower-case host name without port or trailing dot, or \"*.\" and one (\"*.example.com\")"
                    .into(),
            ),
        }
    }

    /// Whether a canonical host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(e) => **e == *host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(&**s),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(e) => f.write_str(e),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_patterns() {
        let p = |s| IdPattern::parse(s).unwrap();
        assert!(p("*").matches("anything"));
        assert!(p("spiffe://t/a").matches("spiffe://t/a"));
        assert!(!p("spiffe://t/a").matches("spiffe://t/ab"));
        assert!(p("spiffe://t/*").matches("spiffe://t/a/b"));
        assert!(!p("spiffe://t/*").matches("spiffe://t/"));
        assert!(!p("spiffe://t/*").matches("spiffe://t"));
        assert!(!p("spiffe://t/*").matches("spiffe://t.evil/a"));
        for bad in ["", "spiffe://t*", "spiffe://*/a", "a b", "/*", "spiffe://t/**"] {
            assert!(IdPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(p("spiffe://t/a/b").covered_by(&p("spiffe://t/*")));
        assert!(p("spiffe://t/a/*").covered_by(&p("spiffe://t/*")));
        assert!(!p("spiffe://t/*").covered_by(&p("spiffe://t/a/*")));
        assert!(!p("*").covered_by(&p("spiffe://t/*")));
        assert_eq!(p("spiffe://t/*").to_string(), "spiffe://t/*");
    }

    #[test]
    fn host_patterns() {
        let p = |s| HostPattern::parse(s).unwrap();
        assert!(p("api.example.com").matches("api.example.com"));
        assert!(p("*.example.com").matches("api.example.com"));
        assert!(p("*.example.com").matches("a.b.example.com"));
        assert!(!p("*.example.com").matches("example.com"));
        assert!(!p("*.example.com").matches("evilexample.com"));
        for bad in ["API.example.com", "api.example.com:443", "api.example.com.", "*", "*.", "a/b", ""] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
    /// Patterns are compared as text, never as regular expressions: metacharacters are literals, and what
    /// they would match as a regex does not match.
    #[test]
    fn regex_metacharacters_are_literals() {
        let id = |s| IdPattern::parse(s).unwrap();
        for (pattern, literal, as_regex) in [
            ("spiffe://t/a.b", "spiffe://t/a.b", "spiffe://t/aXb"),
            ("spiffe://t/a+", "spiffe://t/a+", "spiffe://t/aaa"),
            ("spiffe://t/(a|b)", "spiffe://t/(a|b)", "spiffe://t/a"),
            ("spiffe://t/[ab]?", "spiffe://t/[ab]?", "spiffe://t/a"),
            ("spiffe://t/^a$", "spiffe://t/^a$", "spiffe://t/a"),
            ("spiffe://t/a{2}", "spiffe://t/a{2}", "spiffe://t/aa"),
        ] {
            let p = id(pattern);
            assert!(p.matches(literal), "{pattern}");
            assert!(!p.matches(as_regex), "{pattern} must not match {as_regex}");
        }
        let host = HostPattern::parse("a.example.com").unwrap();
        assert!(!host.matches("aXexample.com"));
        // A `*` is a wildcard only where the language says so: `.*` is refused, not read as a regex.
        assert!(IdPattern::parse("spiffe://t/.*").is_err());
        assert!(!id("spiffe://t/*").matches("spiffe://tX/a"));
    }
}
