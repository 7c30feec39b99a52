//! SPIFFE IDs and trust domains, per the SPIFFE ID standard
//! (<https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md>, §2).
//!
//! Parse, don't validate: a [`SpiffeId`] or [`TrustDomain`] value exists only if its text passed every rule,
//! so code holding one never re-checks it. The rules, all strict:
//!
//! - scheme `spiffe`, lower case only, followed by `://` (§2.4 calls the scheme and trust domain
//!   case-insensitive, but SPIFFE implementations never issue upper case and an identity compared by string
//!   must have one spelling, so upper case is refused rather than folded);
//! - trust domain (§2.1): non-empty, at most 255 bytes, only `[a-z0-9.-_]`, no userinfo (`@`), no port (`:`),
//!   no percent-encoding;
//! - path (§2.2): optional; `/`-separated segments of `[A-Za-z0-9.-_]`, no empty segment, no `.` or `..`
//!   segment, no trailing `/`, no percent-encoding;
//! - no query (`?`) or fragment (`#`);
//! - at most 2048 bytes in all (§2.3), checked before anything else.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Longest accepted SPIFFE ID in bytes, scheme included (SPIFFE ID §2.3).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;

/// Longest accepted trust domain name in bytes (SPIFFE ID §2.3, after RFC 3986's host limit).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

const SCHEME_PREFIX: &str = "spiffe://";

/// Why a string is not a SPIFFE ID or trust domain. One variant per rule; positions are byte offsets into
/// the input, and offending bytes are shown escaped, so a message never carries control characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiffeIdError {
    /// The input is empty.
    Empty,
    /// The input is longer than the limit (2048 bytes for an ID).
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// The input does not start with `spiffe://` in any case.
    WrongScheme,
    /// The input starts with `spiffe://` in some other case, e.g. `SPIFFE://`.
    SchemeNotLowerCase,
    /// Nothing between `spiffe://` and the path.
    MissingTrustDomain,
    /// The trust domain is longer than 255 bytes.
    TrustDomainTooLong {
        /// Length of the trust domain in bytes.
        len: usize,
    },
    /// The trust domain contains an upper-case letter.
    TrustDomainNotLowerCase {
        /// Byte offset of the letter.
        at: usize,
    },
    /// The trust domain contains a byte outside `[a-z0-9.-_]` (and not one of the more specific cases).
    InvalidTrustDomainChar {
        /// The byte.
        byte: u8,
        /// Its byte offset.
        at: usize,
    },
    /// The authority carries userinfo (`@`).
    UserInfo,
    /// The authority carries a port (`:`).
    Port,
    /// Percent-encoding (`%`) anywhere.
    PercentEncoded {
        /// Byte offset of the `%`.
        at: usize,
    },
    /// A query component (`?`).
    Query,
    /// A fragment component (`#`).
    Fragment,
    /// An empty path segment (`//`).
    EmptySegment {
        /// Byte offset of the second `/`.
        at: usize,
    },
    /// A `.` or `..` path segment.
    DotSegment {
        /// Byte offset where the segment starts.
        at: usize,
    },
    /// The path ends with `/` (including a path that is only `/`).
    TrailingSlash,
    /// A path segment contains a byte outside `[A-Za-z0-9.-_]`.
    InvalidPathChar {
        /// The byte.
        byte: u8,
        /// Its byte offset.
        at: usize,
    },
    /// A trust domain was given with the `spiffe://` scheme where a bare name is expected.
    TrustDomainHasScheme,
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SpiffeIdError::Empty => f.write_str("SPIFFE ID is empty"),
            SpiffeIdError::TooLong { len, max } => {
                write!(f, "SPIFFE ID is {len} bytes long; the maximum is {max}")
            }
            SpiffeIdError::WrongScheme => f.write_str("SPIFFE ID must start with \"spiffe://\""),
            SpiffeIdError::SchemeNotLowerCase => f.write_str("SPIFFE ID scheme must be \"spiffe\" in lower case"),
            SpiffeIdError::MissingTrustDomain => f.write_str("SPIFFE ID has no trust domain"),
            SpiffeIdError::TrustDomainTooLong { len } => {
                write!(f, "trust domain is {len} bytes long; the maximum is {MAX_TRUST_DOMAIN_BYTES}")
            }
            SpiffeIdError::TrustDomainNotLowerCase { at } => {
                write!(f, "trust domain must be lower case (upper-case letter at byte {at})")
            }
            SpiffeIdError::InvalidTrustDomainChar { byte, at } => write!(
                f,
                "trust domain may contain only a-z, 0-9, '.', '-' and '_' (found '{}' at byte {at})",
                byte.escape_ascii()
            ),
            SpiffeIdError::UserInfo => f.write_str("SPIFFE ID must not contain userinfo ('@')"),
            SpiffeIdError::Port => f.write_str("SPIFFE ID must not contain a port (':')"),
            SpiffeIdError::PercentEncoded { at } => {
                write!(f, "SPIFFE ID must not contain percent-encoding ('%' at byte {at})")
            }
            SpiffeIdError::Query => f.write_str("SPIFFE ID must not contain a query ('?')"),
            SpiffeIdError::Fragment => f.write_str("SPIFFE ID must not contain a fragment ('#')"),
            SpiffeIdError::EmptySegment { at } => {
                write!(f, "SPIFFE ID path must not contain an empty segment ('//' at byte {at})")
            }
            SpiffeIdError::DotSegment { at } => {
                write!(f, "SPIFFE ID path must not contain a '.' or '..' segment (at byte {at})")
            }
            SpiffeIdError::TrailingSlash => f.write_str("SPIFFE ID path must not end with '/'"),
            SpiffeIdError::InvalidPathChar { byte, at } => write!(
                f,
                "SPIFFE ID path segments may contain only A-Z, a-z, 0-9, '.', '-' and '_' (found '{}' at byte {at})",
                byte.escape_ascii()
            ),
            SpiffeIdError::TrustDomainHasScheme => {
                f.write_str("trust domain must be a bare name, without the \"spiffe://\" prefix")
            }
        }
    }
}

impl std::error::Error for SpiffeIdError {}

/// A SPIFFE trust domain name such as `trading.example`, validated (SPIFFE ID §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (`trading.example`, not `spiffe://trading.example`).
    pub fn parse(name: &str) -> Result<TrustDomain, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        if name.as_bytes().get(..SCHEME_PREFIX.len()).is_some_and(|b| b.eq_ignore_ascii_case(SCHEME_PREFIX.as_bytes()))
        {
            return Err(SpiffeIdError::TrustDomainHasScheme);
        }
        check_trust_domain(name, 0)?;
        Ok(TrustDomain(name.to_owned()))
    }

    /// The name, e.g. `trading.example`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own ID, `spiffe://<name>` (the ID of its signing authority, SPIFFE ID §3.1).
    pub fn id(&self) -> SpiffeId {
        SpiffeId { id: format!("{SCHEME_PREFIX}{}", self.0), trust_domain: self.clone() }
    }
}

/// A SPIFFE ID such as `spiffe://trading.example/agent/trader`, validated (SPIFFE ID §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct SpiffeId {
    /// The whole ID, exactly as parsed.
    id: String,
    /// The trust domain part of `id`.
    trust_domain: TrustDomain,
}

impl SpiffeId {
    /// Parses a SPIFFE ID, applying every rule of the module documentation.
    pub fn parse(id: &str) -> Result<SpiffeId, SpiffeIdError> {
        if id.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if id.len() > MAX_SPIFFE_ID_BYTES {
            return Err(SpiffeIdError::TooLong { len: id.len(), max: MAX_SPIFFE_ID_BYTES });
        }
        let Some(rest) = id.strip_prefix(SCHEME_PREFIX) else {
            return Err(
                // Compared as bytes: the first 9 bytes need not end on a character boundary.
                if id
                    .as_bytes()
                    .get(..SCHEME_PREFIX.len())
                    .is_some_and(|b| b.eq_ignore_ascii_case(SCHEME_PREFIX.as_bytes()))
                {
                    SpiffeIdError::SchemeNotLowerCase
                } else {
                    SpiffeIdError::WrongScheme
                },
            );
        };
        let base = SCHEME_PREFIX.len();
        let authority_len = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_len);
        check_trust_domain(authority, base)?;
        check_path(path, base + authority_len)?;
        Ok(SpiffeId { id: id.to_owned(), trust_domain: TrustDomain(authority.to_owned()) })
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path: empty, or `/` followed by one or more segments (never a trailing `/`).
    pub fn path(&self) -> &str {
        &self.id[SCHEME_PREFIX.len() + self.trust_domain.0.len()..]
    }

    /// Whether this ID belongs to `trust_domain` (exact name comparison).
    pub fn is_in(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain == *trust_domain
    }

    /// Whether the path equals `prefix` or lies under it, on a segment boundary: `/agent` matches `/agent`
    /// and `/agent/x` but not `/agents`. A trailing `/` on `prefix` is ignored, so an empty prefix or `/`
    /// matches every path, including the empty one. A prefix without a leading `/` matches nothing but the
    /// empty prefix case above. Comparison is case-sensitive, as paths are (SPIFFE ID §2.4).
    pub fn has_path_prefix(&self, prefix: &str) -> bool {
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let path = self.path();
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Whether this ID is `parent` or lies under it: same trust domain and
    /// [`has_path_prefix`](Self::has_path_prefix)`(parent.path())`.
    pub fn is_under(&self, parent: &SpiffeId) -> bool {
        self.is_in(&parent.trust_domain) && self.has_path_prefix(parent.path())
    }
}

/// Checks a trust domain name; `base` is its byte offset in the input, for error positions.
fn check_trust_domain(name: &str, base: usize) -> Result<(), SpiffeIdError> {
    for (i, &b) in name.as_bytes().iter().enumerate() {
        let at = base + i;
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {}
            b'A'..=b'Z' => return Err(SpiffeIdError::TrustDomainNotLowerCase { at }),
            b'@' => return Err(SpiffeIdError::UserInfo),
            b':' => return Err(SpiffeIdError::Port),
            b'%' => return Err(SpiffeIdError::PercentEncoded { at }),
            b'?' => return Err(SpiffeIdError::Query),
            b'#' => return Err(SpiffeIdError::Fragment),
            _ => return Err(SpiffeIdError::InvalidTrustDomainChar { byte: b, at }),
        }
    }
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(SpiffeIdError::TrustDomainTooLong { len: name.len() });
    }
    Ok(())
}

/// Checks a path (empty, or starting with `/`); `base` is its byte offset in the input.
fn check_path(path: &str, base: usize) -> Result<(), SpiffeIdError> {
    let bytes = path.as_bytes();
    // Characters first, so a query or fragment is reported as such wherever it sits.
    for (i, &b) in bytes.iter().enumerate() {
        let at = base + i;
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'/' => {}
            b'%' => return Err(SpiffeIdError::PercentEncoded { at }),
            b'?' => return Err(SpiffeIdError::Query),
            b'#' => return Err(SpiffeIdError::Fragment),
            _ => return Err(SpiffeIdError::InvalidPathChar { byte: b, at }),
        }
    }
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    // `path` starts with '/' (the authority ends at the first one); walk the segments after each '/'.
    let mut start = 1;
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err(SpiffeIdError::EmptySegment { at: base + start }),
            "." | ".." => return Err(SpiffeIdError::DotSegment { at: base + start }),
            _ => {}
        }
        start += segment.len() + 1;
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl AsRef<str> for TrustDomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = SpiffeIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SpiffeId::parse(&s)
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = SpiffeIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TrustDomain::parse(&s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_multibyte_character_across_the_scheme_boundary_is_an_error_not_a_panic() {
        // Found by the token_verify fuzz target.
        assert_eq!(SpiffeId::parse("spiffe:/\u{734}rading.example-!gent/trader"), Err(SpiffeIdError::WrongScheme));
        assert_eq!(SpiffeId::parse("SPIFFE:/\u{e9}"), Err(SpiffeIdError::WrongScheme));
        assert!(TrustDomain::parse("spiffe:/\u{734}x").is_err());
    }

    use super::*;

    fn err(id: &str) -> SpiffeIdError {
        SpiffeId::parse(id).unwrap_err()
    }

    #[test]
    fn spec_examples_parse() {
        for (id, td, path) in [
            ("spiffe://trust-domain-name/path", "trust-domain-name", "/path"),
            ("spiffe://staging.example.com/payments/mysql", "staging.example.com", "/payments/mysql"),
            ("spiffe://staging.example.com/payments/web-fe", "staging.example.com", "/payments/web-fe"),
            ("spiffe://k8s-west.example.com/ns/staging/sa/default", "k8s-west.example.com", "/ns/staging/sa/default"),
            (
                "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
                "example.com",
                "/9eebccd2-12bf-40a6-b262-65fe0487d453",
            ),
            ("spiffe://trust_domain_name.example.com", "trust_domain_name.example.com", ""),
            ("spiffe://192.168.0.1/x", "192.168.0.1", "/x"),
            ("spiffe://example.org/A.b-c_D/...x/..y/.z", "example.org", "/A.b-c_D/...x/..y/.z"),
        ] {
            let parsed = SpiffeId::parse(id).unwrap();
            assert_eq!(parsed.as_str(), id);
            assert_eq!(parsed.to_string(), id);
            assert_eq!(parsed.trust_domain().as_str(), td);
            assert_eq!(parsed.path(), path);
            assert_eq!(id.parse::<SpiffeId>().unwrap(), parsed);
        }
    }

    #[test]
    fn scheme() {
        assert_eq!(err(""), SpiffeIdError::Empty);
        assert_eq!(err("SPIFFE://example.org/a"), SpiffeIdError::SchemeNotLowerCase);
        assert_eq!(err("Spiffe://example.org/a"), SpiffeIdError::SchemeNotLowerCase);
        assert_eq!(err("https://example.org/a"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:/example.org/a"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:example.org"), SpiffeIdError::WrongScheme);
        assert_eq!(err("example.org/a"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe"), SpiffeIdError::WrongScheme);
        assert_eq!(err(" spiffe://example.org"), SpiffeIdError::WrongScheme);
    }

    #[test]
    fn trust_domain_rules() {
        assert_eq!(err("spiffe://"), SpiffeIdError::MissingTrustDomain);
        assert_eq!(err("spiffe:///path"), SpiffeIdError::MissingTrustDomain);
        assert_eq!(err("spiffe://Example.org/a"), SpiffeIdError::TrustDomainNotLowerCase { at: 9 });
        assert_eq!(err("spiffe://user@example.org/a"), SpiffeIdError::UserInfo);
        assert_eq!(err("spiffe://example.org:8443/a"), SpiffeIdError::Port);
        assert_eq!(err("spiffe://example.org:/a"), SpiffeIdError::Port);
        assert_eq!(err("spiffe://[::1]/a"), SpiffeIdError::InvalidTrustDomainChar { byte: b'[', at: 9 });
        assert_eq!(err("spiffe://exa%41mple.org"), SpiffeIdError::PercentEncoded { at: 12 });
        assert_eq!(err("spiffe://ex ample.org"), SpiffeIdError::InvalidTrustDomainChar { byte: b' ', at: 11 });
        assert_eq!(err("spiffe://exämple.org"), SpiffeIdError::InvalidTrustDomainChar { byte: 0xc3, at: 11 });
        assert_eq!(err("spiffe://example.org?x=1"), SpiffeIdError::Query);
        assert_eq!(err("spiffe://example.org#frag"), SpiffeIdError::Fragment);
        let long = format!("spiffe://{}", "a".repeat(256));
        assert_eq!(err(&long), SpiffeIdError::TrustDomainTooLong { len: 256 });
        assert!(SpiffeId::parse(&format!("spiffe://{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn path_rules() {
        assert_eq!(err("spiffe://example.org/"), SpiffeIdError::TrailingSlash);
        assert_eq!(err("spiffe://example.org/a/"), SpiffeIdError::TrailingSlash);
        assert_eq!(err("spiffe://example.org//a"), SpiffeIdError::EmptySegment { at: 21 });
        assert_eq!(err("spiffe://example.org/a//b"), SpiffeIdError::EmptySegment { at: 23 });
        assert_eq!(err("spiffe://example.org/."), SpiffeIdError::DotSegment { at: 21 });
        assert_eq!(err("spiffe://example.org/.."), SpiffeIdError::DotSegment { at: 21 });
        assert_eq!(err("spiffe://example.org/a/./b"), SpiffeIdError::DotSegment { at: 23 });
        assert_eq!(err("spiffe://example.org/a/../b"), SpiffeIdError::DotSegment { at: 23 });
        assert_eq!(err("spiffe://example.org/a%2Fb"), SpiffeIdError::PercentEncoded { at: 22 });
        assert_eq!(err("spiffe://example.org/a?b"), SpiffeIdError::Query);
        assert_eq!(err("spiffe://example.org/a#b"), SpiffeIdError::Fragment);
        assert_eq!(err("spiffe://example.org/a?b/"), SpiffeIdError::Query);
        assert_eq!(err("spiffe://example.org/a b"), SpiffeIdError::InvalidPathChar { byte: b' ', at: 22 });
        assert_eq!(err("spiffe://example.org/a\\b"), SpiffeIdError::InvalidPathChar { byte: b'\\', at: 22 });
        assert_eq!(err("spiffe://example.org/a:b"), SpiffeIdError::InvalidPathChar { byte: b':', at: 22 });
        assert_eq!(err("spiffe://example.org/a@b"), SpiffeIdError::InvalidPathChar { byte: b'@', at: 22 });
        assert_eq!(err("spiffe://example.org/ä"), SpiffeIdError::InvalidPathChar { byte: 0xc3, at: 21 });
        for control in ["\0", "\r", "\n", "\t", "\x7f"] {
            let id = format!("spiffe://example.org/a{control}b");
            assert!(matches!(err(&id), SpiffeIdError::InvalidPathChar { at: 22, .. }), "{id:?}");
        }
    }

    #[test]
    fn length_cap() {
        let prefix = "spiffe://example.org/";
        let max = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_BYTES - prefix.len()));
        assert_eq!(SpiffeId::parse(&max).unwrap().as_str().len(), MAX_SPIFFE_ID_BYTES);
        let over = format!("{max}a");
        assert_eq!(err(&over), SpiffeIdError::TooLong { len: 2049, max: MAX_SPIFFE_ID_BYTES });
        // The cap is checked first, whatever else is wrong.
        assert!(matches!(err(&"\0".repeat(5000)), SpiffeIdError::TooLong { .. }));
    }

    #[test]
    fn trust_domain_parse() {
        let td = TrustDomain::parse("trading.example").unwrap();
        assert_eq!(td.as_str(), "trading.example");
        assert_eq!(td.to_string(), "trading.example");
        assert_eq!(td.id().as_str(), "spiffe://trading.example");
        assert_eq!(td.id().path(), "");
        assert_eq!(TrustDomain::parse(""), Err(SpiffeIdError::MissingTrustDomain));
        assert_eq!(TrustDomain::parse("spiffe://trading.example"), Err(SpiffeIdError::TrustDomainHasScheme));
        assert_eq!(TrustDomain::parse("SPIFFE://trading.example"), Err(SpiffeIdError::TrustDomainHasScheme));
        assert_eq!(TrustDomain::parse("Trading.example"), Err(SpiffeIdError::TrustDomainNotLowerCase { at: 0 }));
        assert_eq!(
            TrustDomain::parse("trading.example/a"),
            Err(SpiffeIdError::InvalidTrustDomainChar { byte: b'/', at: 15 })
        );
        assert_eq!(TrustDomain::parse("trading.example:1"), Err(SpiffeIdError::Port));
        assert_eq!(TrustDomain::parse("u@trading.example"), Err(SpiffeIdError::UserInfo));
        assert_eq!(TrustDomain::parse(&"a".repeat(256)), Err(SpiffeIdError::TrustDomainTooLong { len: 256 }));
    }

    #[test]
    fn is_in_trust_domain() {
        let id = SpiffeId::parse("spiffe://trading.example/agent/trader").unwrap();
        assert!(id.is_in(&TrustDomain::parse("trading.example").unwrap()));
        assert!(!id.is_in(&TrustDomain::parse("example").unwrap()));
        assert!(!id.is_in(&TrustDomain::parse("evil-trading.example").unwrap()));
        assert!(!id.is_in(&TrustDomain::parse("trading.example.evil").unwrap()));
    }

    #[test]
    fn path_prefix_on_segment_boundary() {
        let id = SpiffeId::parse("spiffe://trading.example/agent/trader").unwrap();
        assert!(id.has_path_prefix("/agent"));
        assert!(id.has_path_prefix("/agent/"));
        assert!(id.has_path_prefix("/agent/trader"));
        assert!(id.has_path_prefix(""));
        assert!(id.has_path_prefix("/"));
        assert!(!id.has_path_prefix("/agent/trade"));
        assert!(!id.has_path_prefix("/agen"));
        assert!(!id.has_path_prefix("/Agent"));
        assert!(!id.has_path_prefix("/agent/trader/x"));
        assert!(!id.has_path_prefix("agent"));
        let agents = SpiffeId::parse("spiffe://trading.example/agents").unwrap();
        assert!(!agents.has_path_prefix("/agent"));
        let bare = SpiffeId::parse("spiffe://trading.example").unwrap();
        assert!(bare.has_path_prefix(""));
        assert!(!bare.has_path_prefix("/agent"));
    }

    #[test]
    fn is_under() {
        let parent = SpiffeId::parse("spiffe://trading.example/agent").unwrap();
        let child = SpiffeId::parse("spiffe://trading.example/agent/trader").unwrap();
        let other_td = SpiffeId::parse("spiffe://other.example/agent/trader").unwrap();
        let sibling = SpiffeId::parse("spiffe://trading.example/agents/x").unwrap();
        assert!(child.is_under(&parent));
        assert!(parent.is_under(&parent));
        assert!(!parent.is_under(&child));
        assert!(!other_td.is_under(&parent));
        assert!(!sibling.is_under(&parent));
        assert!(child.is_under(&TrustDomain::parse("trading.example").unwrap().id()));
    }

    #[test]
    fn display_says_what_is_wrong_without_raw_bytes() {
        assert_eq!(err("spiffe://example.org/a/").to_string(), "SPIFFE ID path must not end with '/'");
        assert_eq!(
            err("spiffe://example.org/a\nb").to_string(),
            "SPIFFE ID path segments may contain only A-Z, a-z, 0-9, '.', '-' and '_' (found '\\n' at byte 22)"
        );
        assert_eq!(err("spiffe://example.org:80").to_string(), "SPIFFE ID must not contain a port (':')");
        let every = [
            err(""),
            err(&"a".repeat(3000)),
            err("http://x"),
            err("SPIFFE://x"),
            err("spiffe://"),
            err(&format!("spiffe://{}", "a".repeat(300))),
            err("spiffe://A"),
            err("spiffe://\r"),
            err("spiffe://u@x"),
            err("spiffe://x:1"),
            err("spiffe://x/%00"),
            err("spiffe://x?"),
            err("spiffe://x#"),
            err("spiffe://x//a"),
            err("spiffe://x/.."),
            err("spiffe://x/a/"),
            err("spiffe://x/\0"),
            TrustDomain::parse("spiffe://x").unwrap_err(),
        ];
        for e in every {
            let text = e.to_string();
            assert!(!text.is_empty());
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
        }
    }

    #[test]
    fn serde_round_trip_and_rejection() {
        let id: SpiffeId = serde_json::from_str("\"spiffe://trading.example/agent\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"spiffe://trading.example/agent\"");
        let td: TrustDomain = serde_json::from_str("\"trading.example\"").unwrap();
        assert_eq!(serde_json::to_string(&td).unwrap(), "\"trading.example\"");
        let bad = serde_json::from_str::<SpiffeId>("\"spiffe://trading.example/agent/\"").unwrap_err();
        assert!(bad.to_string().contains("must not end with '/'"), "{bad}");
        assert!(serde_json::from_str::<TrustDomain>("\"Trading\"").is_err());
    }
}
