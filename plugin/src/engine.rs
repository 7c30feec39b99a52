//! The decision: from a request's headers to allow (with the identity to forward) or a precise denial.
//!
//! This is the whole per-request path except reading from and writing to Envoy, which the filter does.

use crate::policy::{Decision, Effect, Peer, Policy, Request, RuleResult};
use crate::request::{self, RequestError};
use crate::token::cache::TokenCache;
use crate::token::{CryptoBackend, KeySet, TokenError, VerifiedToken, Verifier};
use serde_json::json;
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
/// The delegation chain, current actor first (see [`crate::token::DelegationChain::header_value`]); only set
/// when the token carries `act`.
pub const CHAIN_HEADER: &str = "x-agent-iam-chain";

/// A request's headers as the proxy hands them over: names lower-case, values raw bytes, pseudo-headers
/// (`:method`, `:path`, `:authority`) included, repeated headers repeated.
pub type Headers = [(String, Vec<u8>)];

/// The gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the request after removing `remove` and setting `set`.
    Allow {
        /// Client-sent header names to remove (as they appear in the request).
        remove: Vec<String>,
        /// Headers to set, values already safe for a header.
        set: Vec<(&'static str, String)>,
        /// The allowing rule.
        rule: String,
        /// The canonical `:path` (with the raw query) to forward, when it differs from what the client sent,
        /// so the upstream sees exactly the path that was authorised.
        canonical_path: Option<String>,
    },
    /// Answer locally.
    Deny(Denial),
    /// The token's issuer has no usable fetched key set yet: hold the request until one arrives (then decide
    /// again), or answer `on_timeout` (503).
    WaitForKeys {
        /// Index of the issuer in the configuration.
        issuer: usize,
        /// The answer if no key set arrives in time.
        on_timeout: Denial,
    },
    /// The token names a key the issuer's fetched set lacks: the filter may refetch once (rate-limited) and
    /// decide again, or answer `denial` (401).
    UnknownKey {
        /// Index of the issuer in the configuration.
        issuer: usize,
        /// The answer without a refetch.
        denial: Denial,
    },
}

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 400, 401, 403, or 503 when the issuer's keys are unavailable.
    pub status: u16,
    /// Response headers (the challenge and the content type).
    pub headers: Vec<(&'static str, String)>,
    /// `{"error", "error_description", "request_id", "rule"?}`.
    pub body: String,
    /// Envoy response-code details: `agent_iam.<reason>`, no spaces.
    pub details: String,
    /// The metric/audit label of the reason.
    pub reason: &'static str,
}

/// Which signature backend the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoPreference {
    /// Envoy's BoringSSL (the `verify_signature` foreign function) for every algorithm that passes the
    /// start-up self-test, pure Rust for the rest.
    Auto,
    /// Pure Rust inside the VM for everything.
    PureRust,
}

/// A ready decision engine: verifier, policy, response settings and the verified-token cache, built by
/// [`crate::config::parse`]. One per configuration per VM; a new configuration gets a new engine, so the
/// cache never outlives the key set it was filled under.
#[derive(Debug)]
pub struct Engine {
    verifier: Verifier,
    policy: Rc<Policy>,
    realm: String,
    crypto: CryptoPreference,
    cache: RefCell<TokenCache>,
}

enum Failure {
    BadRequest(RequestError),
    TwoCredentials,
    NoToken,
    Token(TokenError),
    Forbidden {
        rule: Option<String>,
        missing_scope: Option<String>,
    },
    /// A fetched key set is missing (`KeysUnavailable`) or lacks the token's key (`UnknownKey`).
    RemoteKeys {
        issuer: usize,
        error: TokenError,
    },
}

impl Engine {
    /// Assembles an engine from validated parts.
    pub fn new(
        verifier: Verifier,
        policy: Policy,
        realm: String,
        crypto: CryptoPreference,
        cache_capacity: usize,
    ) -> Engine {
        Engine {
            verifier,
            policy: Rc::new(policy),
            realm,
            crypto,
            cache: RefCell::new(TokenCache::new(cache_capacity)),
        }
    }

    /// The same configuration with a new key set for issuer `index` (fetched remotely; empty when none is
    /// usable). A new engine means a new, empty token cache: nothing verified under the old keys survives.
    pub fn with_keys(&self, index: usize, keys: KeySet) -> Engine {
        let capacity = self.cache.try_borrow().map(|c| c.capacity()).unwrap_or(0);
        Engine {
            verifier: self.verifier.with_keys(index, keys),
            policy: self.policy.clone(),
            realm: self.realm.clone(),
            crypto: self.crypto,
            cache: RefCell::new(TokenCache::new(capacity)),
        }
    }

    /// The configured signature backend preference.
    pub fn crypto_preference(&self) -> CryptoPreference {
        self.crypto
    }

    /// Token cache hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.try_borrow().map(|c| c.stats()).unwrap_or_default()
    }

    /// Verifies a token, answering from the cache when these exact bytes verified before and are still valid.
    fn verify(&self, token: &[u8], now: i64, crypto: &dyn CryptoBackend) -> Result<Rc<VerifiedToken>, TokenError> {
        if let Some(hit) = self.cache.try_borrow_mut().ok().and_then(|mut c| c.get(token, now)) {
            return Ok(hit);
        }
        let verified = Rc::new(self.verifier.verify(token, now, crypto)?);
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.insert(token, verified.clone(), now, verified.valid_until);
        }
        Ok(verified)
    }

    /// The compiled policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The token verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Decides for one request at `now` (seconds since the epoch).
    pub fn decide(&self, headers: &Headers, now: i64, crypto: &dyn CryptoBackend) -> Verdict {
        self.decide_with_peer(headers, Peer::default(), now, crypto)
    }

    /// Decides for one request on a connection with a (mutual-TLS) peer; see [`Policy::needs`] for when
    /// the filter reads the peer.
    pub fn decide_with_peer(&self, headers: &Headers, peer: Peer<'_>, now: i64, crypto: &dyn CryptoBackend) -> Verdict {
        let request_id = request_id(headers);
        match self.evaluate(headers, peer, now, crypto) {
            Ok(verdict) => verdict,
            Err(Failure::RemoteKeys { issuer, error }) => {
                let denial = self.denial(Failure::Token(error), request_id);
                match error {
                    TokenError::KeysUnavailable => Verdict::WaitForKeys { issuer, on_timeout: denial },
                    _ => Verdict::UnknownKey { issuer, denial },
                }
            }
            Err(failure) => Verdict::Deny(self.denial(failure, request_id)),
        }
    }

    /// Canonicalises the request and verifies its token: everything before policy.
    fn prepare<'h>(&self, headers: &'h Headers, now: i64, crypto: &dyn CryptoBackend) -> Result<Prepared<'h>, Failure> {
        let method = single_text(headers, ":method").ok_or(Failure::BadRequest(RequestError::MissingMethod))?;
        let method = request::canonical_method(method).map_err(Failure::BadRequest)?;
        let raw_path = single_text(headers, ":path").ok_or(Failure::BadRequest(RequestError::MissingPath))?;
        let (path, query) = request::canonical_path(raw_path).map_err(Failure::BadRequest)?;

        let mut credentials = headers.iter().filter(|(n, _)| n == "authorization");
        let token = match (credentials.next(), credentials.next()) {
            (None, _) => return Err(Failure::NoToken),
            (Some(_), Some(_)) => return Err(Failure::TwoCredentials),
            (Some((_, value)), None) => bearer_token(value).ok_or(Failure::NoToken)?,
        };
        let verified = self.verify(token, now, crypto).map_err(|error| match error {
            TokenError::KeysUnavailable | TokenError::UnknownKey => match self.verifier.remote_issuer_of(token) {
                Some(issuer) => Failure::RemoteKeys { issuer, error },
                None => Failure::Token(error),
            },
            _ => Failure::Token(error),
        })?;

        let host = match single_text(headers, ":authority") {
            Some(h) => Some(request::canonical_host(h).map_err(Failure::BadRequest)?),
            None => None,
        };
        Ok(Prepared { method, raw_path, path, query, host, verified })
    }

    /// Why this request gets its decision, as one line of JSON for logs and tools: the decision and, when
    /// policy decided, every candidate rule with its result and reasons (see [`Policy::explain`]).
    pub fn explain(&self, headers: &Headers, peer: Peer<'_>, now: i64, crypto: &dyn CryptoBackend) -> String {
        let p = match self.prepare(headers, now, crypto) {
            Ok(p) => p,
            Err(failure) => {
                let denial = self.denial(failure, String::new());
                return json!({"decision": "deny", "status": denial.status, "reason": denial.reason}).to_string();
            }
        };
        let view = p.view(headers, peer, now);
        let e = self.policy.explain(&p.verified, &view);
        let (decision, rule, reason, scope) = match e.decision {
            Decision::Allow { rule } => ("allow", Some(rule), "allowed", None),
            Decision::Deny { rule } => ("deny", Some(rule), "denied_by_rule", None),
            Decision::NoRuleAllows { missing_scope } => ("deny", None, "no_rule_allows", missing_scope),
        };
        let result = |r: RuleResult| match r {
            RuleResult::Matched => "matched",
            RuleResult::Undetermined => "undetermined",
            RuleResult::ConditionsFailed => "conditions_failed",
            RuleResult::NotApplicable => "not_applicable",
        };
        let candidates: Vec<serde_json::Value> = e
            .candidates()
            .map(|t| {
                json!({
                    "id": t.id,
                    "effect": if t.effect == Effect::Allow { "allow" } else { "deny" },
                    "result": result(t.result),
                    "reasons": t.reasons,
                })
            })
            .collect();
        json!({
            "decision": decision,
            "reason": reason,
            "rule": rule,
            "missing_scope": scope,
            "agent": p.verified.agent,
            "subject": p.verified.subject,
            "issuer": p.verified.issuer,
            "chain": p.verified.chain.actors().iter().map(|a| a.sub()).collect::<Vec<_>>(),
            "method": p.method,
            "path": p.path,
            "policy_version": e.policy_version,
            "labels": e.labels,
            "candidates": candidates,
            "not_applicable": e.rules.len() - e.candidates().count(),
        })
        .to_string()
    }

    fn evaluate(
        &self,
        headers: &Headers,
        peer: Peer<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Result<Verdict, Failure> {
        let p = self.prepare(headers, now, crypto)?;
        let (verified, path, query, raw_path) = (&p.verified, &p.path, p.query, p.raw_path);
        let view = p.view(headers, peer, now);
        match self.policy.evaluate(verified, &view) {
            Decision::Allow { rule } => {
                let remove = headers.iter().filter(|(n, _)| is_identity_header(n)).map(|(n, _)| n.clone()).fold(
                    Vec::new(),
                    |mut acc, n| {
                        if !acc.contains(&n) {
                            acc.push(n);
                        }
                        acc
                    },
                );
                let mut set = vec![
                    (AGENT_HEADER, header_safe(&verified.agent)),
                    (SUBJECT_HEADER, header_safe(&verified.subject)),
                    (ISSUER_HEADER, header_safe(&verified.issuer)),
                    (RULE_HEADER, rule.to_owned()),
                ];
                if verified.chain.depth() > 0 {
                    set.push((CHAIN_HEADER, verified.chain.header_value()));
                }
                let forwarded = match query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                };
                let canonical_path = (forwarded != raw_path).then_some(forwarded);
                Ok(Verdict::Allow { remove, set, rule: rule.to_owned(), canonical_path })
            }
            Decision::Deny { rule } => Err(Failure::Forbidden { rule: Some(rule.to_owned()), missing_scope: None }),
            Decision::NoRuleAllows { missing_scope } => {
                Err(Failure::Forbidden { rule: None, missing_scope: missing_scope.map(str::to_owned) })
            }
        }
    }

    fn denial(&self, failure: Failure, request_id: String) -> Denial {
        // Scope tokens were checked at compile time to be visible ASCII without quotes or backslashes.
        let scope = match &failure {
            Failure::Forbidden { missing_scope: Some(s), .. } => Some(s.clone()),
            _ => None,
        };
        let (status, error, description, reason, rule): (u16, Option<&str>, String, &'static str, Option<String>) =
            match failure {
                Failure::BadRequest(e) => (400, Some("invalid_request"), e.to_string(), e.label(), None),
                Failure::TwoCredentials => (
                    400,
                    Some("invalid_request"),
                    "more than one credential in the request".into(),
                    "multiple_credentials",
                    None,
                ),
                Failure::NoToken => (401, None, "a bearer token is required".into(), "missing_token", None),
                Failure::Token(TokenError::KeysUnavailable)
                | Failure::RemoteKeys { error: TokenError::KeysUnavailable, .. } => (
                    503,
                    Some("temporarily_unavailable"),
                    TokenError::KeysUnavailable.to_string(),
                    TokenError::KeysUnavailable.metric_label(),
                    None,
                ),
                Failure::Token(e) | Failure::RemoteKeys { error: e, .. } => {
                    (401, Some("invalid_token"), e.to_string(), e.metric_label(), None)
                }
                Failure::Forbidden { rule: Some(rule), .. } => (
                    403,
                    Some("insufficient_scope"),
                    format!("denied by rule \"{rule}\""),
                    "denied_by_rule",
                    Some(rule),
                ),
                Failure::Forbidden { rule: None, missing_scope: Some(s) } => {
                    (403, Some("insufficient_scope"), format!("the token lacks scope \"{s}\""), "no_rule_allows", None)
                }
                Failure::Forbidden { rule: None, missing_scope: None } => {
                    (403, Some("insufficient_scope"), "no rule allows this request".into(), "no_rule_allows", None)
                }
            };
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if status == 401 || status == 403 {
            // RFC 6750 §3: no error attributes when the request carried no token.
            let mut challenge = match error {
                Some(error) => format!(
                    "Bearer realm=\"{}\", error=\"{error}\", error_description=\"{}\"",
                    self.realm,
                    challenge_safe(&description)
                ),
                None => format!("Bearer realm=\"{}\"", self.realm),
            };
            if let Some(scope) = scope {
                challenge.push_str(&format!(", scope=\"{}\"", challenge_safe(&scope)));
            }
            headers.push(("www-authenticate", challenge));
        }
        let mut body = json!({
            "error": error.unwrap_or("missing_token"),
            "error_description": description,
            "request_id": request_id,
        });
        if let (Some(rule), Some(obj)) = (rule, body.as_object_mut()) {
            obj.insert("rule".into(), rule.into());
        }
        Denial { status, headers, body: body.to_string(), details: format!("agent_iam.{reason}"), reason }
    }
}

/// A canonical request with a verified token.
struct Prepared<'h> {
    method: String,
    raw_path: &'h str,
    path: String,
    query: Option<&'h str>,
    host: Option<String>,
    verified: Rc<VerifiedToken>,
}

impl<'h> Prepared<'h> {
    fn view<'a>(&'a self, headers: &'a Headers, peer: Peer<'a>, now: i64) -> Request<'a> {
        Request {
            method: &self.method,
            path: &self.path,
            query: self.query,
            host: self.host.as_deref(),
            headers,
            now,
            peer,
        }
    }
}

/// The value of a header that must appear exactly once, as text.
fn single_text<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    let mut values = headers.iter().filter(|(n, _)| n == name);
    match (values.next(), values.next()) {
        (Some((_, v)), None) => std::str::from_utf8(v).ok(),
        _ => None,
    }
}

/// `Bearer <token>` with a case-insensitive scheme and exactly one space (RFC 6750 §2.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

fn is_identity_header(name: &str) -> bool {
    name.len() >= IDENTITY_HEADER_PREFIX.len()
        && name.bytes().zip(IDENTITY_HEADER_PREFIX.bytes()).all(|(a, p)| {
            let a = a.to_ascii_lowercase();
            a == p || (a == b'_' && p == b'-')
        })
}

fn request_id(headers: &Headers) -> String {
    single_text(headers, "x-request-id")
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
        .to_owned()
}

/// Percent-encodes `%` and every byte outside visible ASCII and space, so CR, LF and NUL can never reach a
/// forwarded header (CVE-2023-27493) and the encoding is reversible.
pub fn header_safe(value: &str) -> String {
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

/// RFC 6750 §3: `error_description` may not contain `"` or `\`.
fn challenge_safe(description: &str) -> String {
    description.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect()
}

#[cfg(test)]
mod tests;
