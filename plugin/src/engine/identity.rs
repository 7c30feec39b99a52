//! The identity headers: the ones the plugin sets on an allowed request, and the client-sent ones it removes.

use super::prepare::{Detached, Prepared};
use super::{Attempt, AwaitBody, Engine, TokenSource, Verdict, Verified};
use crate::percent;
use crate::request::mcp::list::ListKind;
use crate::request::{self, Headers, MethodOverride};
use crate::token::VerifiedToken;
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// Every header the plugin sets starts with this prefix; every client-sent header that does (in any case,
/// with `_` for `-`) is removed before the plugin sets its own (CVE-2023-27487 class).
pub const IDENTITY_HEADER_PREFIX: &str = "x-agent-iam-";
/// The verified agent: the current actor.
pub const AGENT_HEADER: &str = "x-agent-iam-agent";
/// The verified subject (`sub`).
pub const SUBJECT_HEADER: &str = "x-agent-iam-subject";
/// The issuer that vouched for the token.
pub const ISSUER_HEADER: &str = "x-agent-iam-issuer";
/// The rule that allowed the request.
pub const RULE_HEADER: &str = "x-agent-iam-rule";
/// Set (instead of the identity headers) on a request forwarded in dry-run mode that enforcement would have
/// refused: `<status> <reason>`, e.g. `403 no_rule_allows`.
pub const DRY_RUN_HEADER: &str = "x-agent-iam-dry-run";
/// Prefix of the headers carrying selected claims (`forward_claims`).
pub const CLAIM_HEADER_PREFIX: &str = "x-agent-iam-claim-";
/// The delegation chain, current actor first (see [`crate::token::DelegationChain::header_value`]); only set
/// when the token carries `act`.
pub const CHAIN_HEADER: &str = "x-agent-iam-chain";

/// A header value the plugin sets: shared, since the identity of a cached token is escaped once and then set on
/// every request that presents it.
pub type HeaderValue = Rc<str>;

impl Engine {
    /// The identity headers for a verified token: agent, subject, issuer, chain, selected claims.
    pub(super) fn identity(&self, verified: &VerifiedToken) -> Vec<(&'static str, HeaderValue)> {
        let mut set = Vec::with_capacity(4 + self.settings.forward_claims.len());
        set.push((AGENT_HEADER, header_safe(verified.agent()).into()));
        set.push((SUBJECT_HEADER, header_safe(verified.subject()).into()));
        set.push((ISSUER_HEADER, header_safe(&verified.issuer).into()));
        if verified.chain.depth() > 0 {
            set.push((CHAIN_HEADER, verified.chain.header_value().into()));
        }
        for (claim, header) in &self.settings.forward_claims {
            let value = match verified.claims.get(claim) {
                None => continue,
                Some(found) if found.is_null() => continue,
                Some(found) => match found.as_str() {
                    Some(s) => header_safe(s).into(),
                    // Other values are forwarded as compact JSON, whatever spacing the token used.
                    None => header_safe(&found.to_value().to_string()).into(),
                },
            };
            // The header names were built from validated claim names at configuration time; leaking them
            // once per configuration keeps `set` free of per-request allocations of names.
            set.push((intern_header(header), value));
        }
        set
    }
}

/// Every client-sent identity header, each name once.
pub(super) fn identity_headers_in(headers: &Headers<'_>) -> Vec<String> {
    let mut out = Vec::new();
    push_header_names(&mut out, headers, is_identity_header);
    out
}

/// Adds to `out` the name of every header that `select` picks, as it appears in the request, each name once.
pub(super) fn push_header_names(out: &mut Vec<String>, headers: &Headers<'_>, select: impl Fn(&str) -> bool) {
    for &(n, _) in headers.iter().filter(|(n, _)| select(n)) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_owned());
        }
    }
}

/// `&'static str` for a configured claim header name, leaked once per distinct name for the life of the VM
/// (configurations are few; names are bounded by the configuration's size).
fn intern_header(name: &str) -> &'static str {
    thread_local! {
        static NAMES: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        match names.iter().find(|n| **n == name) {
            Some(n) => n,
            None => {
                let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
                names.push(leaked);
                leaked
            }
        }
    })
}

/// Whether a header name is one of the plugin's own (`x-agent-iam-*`, any case, `_` for `-`).
pub fn is_identity_header(name: &str) -> bool {
    name.len() >= IDENTITY_HEADER_PREFIX.len()
        && name.bytes().zip(IDENTITY_HEADER_PREFIX.bytes()).all(|(a, p)| {
            let a = a.to_ascii_lowercase();
            a == p || (a == b'_' && p == b'-')
        })
}

/// Percent-encodes `%` and every byte outside visible ASCII and space, so CR, LF and NUL can never reach a
/// forwarded header (CVE-2023-27493) and the encoding is reversible.
pub fn header_safe(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Forwarding an allowed request.
impl Engine {
    /// Forwarding a request: the identity headers to set, client copies (and, as configured, the credential
    /// and method overrides) to remove, the canonical path and method. `rule`: the allowing rule, `None`
    /// when the decision waits for the body.
    pub(super) fn forward(
        &self,
        p: &Prepared<'_>,
        headers: &Headers<'_>,
        rule: Option<Rc<str>>,
        mcp: &Attempt<'_>,
    ) -> Verdict {
        let mut remove = identity_headers_in(headers);
        let admitted = &p.verified;
        let mut set = Vec::with_capacity(admitted.identity.len() + 1);
        set.extend(admitted.identity.iter().cloned());
        // The deciding rule is forwarded when the headers leave with the decision; at an MCP endpoint they
        // leave before the body is read, so the rule is recorded (filter state, logs) but not forwarded.
        if let Some(rule) = &rule {
            set.push((RULE_HEADER, rule.clone()));
        }
        let strip_override = self.settings.method_override == MethodOverride::Strip;
        if strip_override {
            push_header_names(&mut remove, headers, request::is_method_override_header);
        }
        if !self.settings.forward_credential {
            for source in &self.settings.token_sources {
                if let TokenSource::Header { name, .. } = source
                    && headers.iter().any(|(n, _)| *n == name.as_str())
                {
                    remove.push(name.clone());
                }
            }
        }
        // A DPoP proof is part of the credential (RFC 9449 §7.1): forwarded with it or removed with it.
        if !self.settings.forward_credential && self.settings.dpop.is_some() {
            push_header_names(&mut remove, headers, |n| n == "dpop");
        }
        let credential_parameter = |name: &str| {
            !self.settings.forward_credential
                && self.settings.token_sources.iter().any(|s| matches!(s, TokenSource::Query { name: q } if q == name))
        };
        let dropped =
            |name: &str| (strip_override && request::is_method_override_parameter(name)) || credential_parameter(name);
        // Every name decoded when the request was prepared, so none is kept for failing to decode.
        let query: Option<Cow<'_, str>> = match p.query {
            Some(q) if percent::query_pairs(q).any(|pair| pair.decoded_name().is_some_and(|n| dropped(&n))) => {
                Some(Cow::<str>::Owned(percent::query_without(q, dropped))).filter(|q| !q.is_empty())
            }
            other => other.map(Cow::Borrowed),
        };
        // Forward exactly the authorised path: rewritten only when canonicalisation or a removed
        // parameter changed it (no allocation in the common case).
        let (raw_path, path) = (p.raw_path, p.with_parameters.as_deref().unwrap_or(&p.path));
        let unchanged = match &query {
            Some(q) => {
                raw_path.len() == path.len() + 1 + q.len()
                    && raw_path.starts_with(path)
                    && raw_path.ends_with(&**q)
                    && raw_path.as_bytes()[path.len()] == b'?'
            }
            None => raw_path == path,
        };
        let canonical_path = (!unchanged).then(|| match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        });
        let canonical_method = p.method_changed.then(|| p.method.to_string());
        // A list filtered per caller must arrive uncompressed: the upstream is asked for identity
        // encoding (a compressed answer is refused by the filter, never passed on unfiltered).
        // The method is in the body, read after the headers left: every POST to an endpoint that filters lists
        // asks for identity encoding.
        if mcp.endpoint.is_some_and(|e| e.filter_lists) {
            push_header_names(&mut remove, headers, |n| n == "accept-encoding");
        }
        let filter_list = mcp.endpoint.is_some_and(|e| e.filter_lists)
            && mcp.call.as_ref().is_some_and(|c| ListKind::of_method(&c.method).is_some());
        Verdict::Allow {
            remove,
            set,
            rule: rule.unwrap_or_else(|| "".into()),
            canonical_path,
            canonical_method,
            dry_run: None,
            mcp: mcp.call.clone(),
            filter_list,
            dpop_nonce: mcp.fresh_nonce.clone(),
            await_body: mcp.await_body.map(|max_bytes| AwaitBody {
                max_bytes,
                prepared: Rc::new(Detached::of(p)),
                scheme: mcp.scheme,
            }),
            verified: Some(Verified(p.verified.clone())),
        }
    }
}
