//! The decision: from a request's headers to allow (with the identity to forward) or a precise denial.
//!
//! This is the whole per-request path except reading from and writing to Envoy, which the filter does.
//! Here: reading the request, verifying its token (through the cache) and asking policy; the headers an allow
//! sets and removes are in `identity`, denials and their bodies in `response`, the settings in `settings`.

mod identity;
mod response;
mod settings;

pub use identity::{
    AGENT_HEADER, CHAIN_HEADER, CLAIM_HEADER_PREFIX, DRY_RUN_HEADER, HeaderValue, IDENTITY_HEADER_PREFIX,
    ISSUER_HEADER, RULE_HEADER, SUBJECT_HEADER, header_safe, is_identity_header,
};
use identity::{identity_headers_in, push_header_names};
pub use response::Denial;
pub use settings::{CryptoPreference, Mode, Settings, TokenSource};

use crate::percent::{self, Plus};
use crate::policy::{Decision, Effect, Policy, RuleResult};
use crate::request::{self, Connection, Headers, MethodOverride, Request, RequestError};
use crate::token::cache::TokenCache;
use crate::token::{CryptoBackend, KeySet, TokenError, VerifiedToken, Verifier};
use serde_json::json;
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// The gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the request after removing `remove` and setting `set`.
    Allow {
        /// Client-sent header names to remove (as they appear in the request).
        remove: Vec<String>,
        /// Headers to set, values already safe for a header.
        set: Vec<(&'static str, HeaderValue)>,
        /// The allowing rule.
        rule: Rc<str>,
        /// The canonical `:path` (with the raw query) to forward, when it differs from what the client sent,
        /// so the upstream sees exactly the path that was authorised.
        canonical_path: Option<String>,
        /// The canonical (upper-case) `:method` to forward, when the client sent another spelling
        /// (`get` over HTTP/2), so the upstream runs the method that was authorised.
        canonical_method: Option<String>,
        /// Dry-run mode: the denial enforcement would have sent (the request is forwarded anyway).
        dry_run: Option<Denial>,
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

/// A ready decision engine: verifier, policy, response settings and the verified-token cache, built by
/// [`crate::config::parse`]. One per configuration per VM; a new configuration gets a new engine, so the
/// cache never outlives the key set it was filled under.
#[derive(Debug)]
pub struct Engine {
    verifier: Verifier,
    policy: Rc<Policy>,
    settings: Rc<Settings>,
    cache: RefCell<TokenCache<Rc<Admitted>>>,
    /// Whether any issuer binds its tokens to the mTLS peer (decided once, not per request).
    binds_peer: bool,
}

/// A token that verified, with the identity headers an allow forwards for it: made once, when the token
/// verifies, and cached with it, so that a cached request escapes and formats nothing.
#[derive(Debug)]
struct Admitted {
    token: VerifiedToken,
    identity: Vec<(&'static str, HeaderValue)>,
}

enum Failure {
    BadRequest(RequestError),
    TwoCredentials,
    NoToken,
    Token(TokenError),
    /// Policy refused a verified token; `identity` is what an allow would have forwarded (dry-run mode).
    Forbidden {
        rule: Option<String>,
        missing_scope: Option<String>,
        identity: Vec<(&'static str, HeaderValue)>,
    },
    /// A fetched key set is missing (`KeysUnavailable`) or lacks the token's key (`UnknownKey`).
    RemoteKeys {
        issuer: usize,
        error: TokenError,
    },
}

impl Engine {
    /// Assembles an engine from validated parts.
    pub fn new(verifier: Verifier, policy: Policy, settings: Settings) -> Engine {
        let cache = RefCell::new(TokenCache::new(settings.cache_capacity));
        let binds_peer = verifier.issuers().iter().any(|i| i.binding.any());
        Engine { verifier, policy: Rc::new(policy), settings: Rc::new(settings), cache, binds_peer }
    }

    /// The response and forwarding settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The same configuration with a new key set for issuer `index` (fetched remotely; empty when none is
    /// usable). A new engine means a new, empty token cache: nothing verified under the old keys survives.
    pub fn with_keys(&self, index: usize, keys: KeySet) -> Engine {
        Engine {
            verifier: self.verifier.with_keys(index, keys),
            policy: self.policy.clone(),
            settings: self.settings.clone(),
            cache: RefCell::new(TokenCache::new(self.settings.cache_capacity)),
            binds_peer: self.binds_peer,
        }
    }

    /// The configured signature backend preference.
    pub fn crypto_preference(&self) -> CryptoPreference {
        self.settings.crypto
    }

    /// Token cache hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.try_borrow().map(|c| c.stats()).unwrap_or_default()
    }

    /// Verifies a token, answering from the cache when these exact bytes verified before and are still valid.
    fn verify(
        &self,
        token: &[u8],
        headers: &Headers<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Result<Rc<Admitted>, TokenError> {
        if let Some(hit) = self.cache.try_borrow_mut().ok().and_then(|mut c| c.get(token, now)) {
            return Ok(hit);
        }
        let single = |name: &str| single_value(headers, name);
        let verified = self.verifier.verify_with(token, now, crypto, &single)?;
        let valid_until = verified.valid_until;
        let admitted = Rc::new(Admitted { identity: self.identity(&verified), token: verified });
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.insert(token, admitted.clone(), now, valid_until);
        }
        Ok(admitted)
    }

    /// Whether decisions need the mutual-TLS peer (a rule or an issuer binds to it).
    pub fn needs_peer(&self) -> bool {
        self.binds_peer || self.policy.needs().peer
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
    pub fn decide(&self, headers: &Headers<'_>, now: i64, crypto: &dyn CryptoBackend) -> Verdict {
        self.decide_with(headers, Connection::default(), now, crypto)
    }

    /// Decides for one request with what Envoy knows of its connection and route; see [`Policy::needs`] for
    /// when the filter reads them.
    pub fn decide_with(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Verdict {
        // The request id is only read for an answer the plugin writes itself.
        match self.evaluate(headers, conn, now, crypto) {
            Ok(verdict) => verdict,
            Err(Failure::RemoteKeys { issuer, error }) => {
                let denial = self.denial(Failure::Token(error), request_id(headers));
                match error {
                    TokenError::KeysUnavailable => Verdict::WaitForKeys { issuer, on_timeout: denial },
                    _ => Verdict::UnknownKey { issuer, denial },
                }
            }
            Err(failure) if self.settings.mode == Mode::DryRun => self.dry_run(headers, failure, request_id(headers)),
            Err(failure) => Verdict::Deny(self.denial(failure, request_id(headers))),
        }
    }

    /// Dry-run mode: what enforcement would have refused is forwarded, without any client-sent identity
    /// header, with the verified identity when the token was valid, and marked with [`DRY_RUN_HEADER`].
    fn dry_run(&self, headers: &Headers<'_>, failure: Failure, request_id: String) -> Verdict {
        let denial = self.denial(failure, request_id);
        let mut set = denial.identity.clone();
        set.push((DRY_RUN_HEADER, format!("{} {}", denial.status, denial.reason).into()));
        Verdict::Allow {
            remove: identity_headers_in(headers),
            set,
            rule: "".into(),
            canonical_path: None,
            canonical_method: None,
            dry_run: Some(denial),
        }
    }

    /// The token of a request, from the configured sources: `Ok(None)` when there is none, an error when
    /// there is more than one. Query parameter names are compared decoded (`access%5Ftoken` is
    /// `access_token`), and a query token is decoded as the upstream would read it.
    fn credential<'h>(
        &self,
        headers: &'h Headers<'h>,
        query: Option<&'h str>,
    ) -> Result<Option<Cow<'h, [u8]>>, Failure> {
        let mut found: Option<Cow<'h, [u8]>> = None;
        let mut count = 0usize;
        for source in &self.settings.token_sources {
            match source {
                TokenSource::Header { name, prefix } => {
                    for &(_, value) in headers.iter().filter(|(n, _)| *n == name.as_str()) {
                        count += 1;
                        let token = match prefix {
                            Some(p) => value
                                .split_at_checked(p.len())
                                .filter(|(scheme, rest)| scheme.eq_ignore_ascii_case(p.as_bytes()) && !rest.is_empty())
                                .map(|(_, rest)| rest),
                            None => Some(value).filter(|v| !v.is_empty()),
                        };
                        if found.is_none() {
                            found = token.map(Cow::Borrowed);
                        }
                    }
                }
                TokenSource::Query { name } => {
                    for pair in percent::query_pairs(query.unwrap_or("")) {
                        let decoded = pair.decoded_name().ok_or(Failure::BadRequest(RequestError::InvalidQuery))?;
                        if decoded != name.as_str() {
                            continue;
                        }
                        count += 1;
                        let value = percent::decode(pair.value, Plus::Space)
                            .ok_or(Failure::BadRequest(RequestError::InvalidQuery))?;
                        if found.is_none() && !value.is_empty() {
                            found = Some(match value {
                                Cow::Borrowed(v) => Cow::Borrowed(v.as_bytes()),
                                Cow::Owned(v) => Cow::Owned(v.into_bytes()),
                            });
                        }
                    }
                }
            }
        }
        match count {
            0 | 1 => Ok(found),
            _ => Err(Failure::TwoCredentials),
        }
    }

    /// The method a request asks the upstream to run instead of its own, as `settings.method_override`
    /// says: refused, ignored (the filter strips it), or returned to be evaluated too. Every query parameter
    /// name must decode, so that no spelling of `_method` goes unseen.
    fn method_override(&self, headers: &Headers<'_>, query: Option<&str>) -> Result<Option<String>, Failure> {
        let refuse = || Failure::BadRequest(RequestError::MethodOverride);
        let mut values: Vec<Cow<'_, str>> = Vec::new();
        for &(name, value) in headers {
            if request::is_method_override_header(name) {
                values.push(Cow::Borrowed(std::str::from_utf8(value).map_err(|_| refuse())?));
            }
        }
        if let Some(query) = query.filter(|q| request::may_carry_method_override(q)) {
            for pair in percent::query_pairs(query) {
                let name = pair.decoded_name().ok_or(Failure::BadRequest(RequestError::InvalidQuery))?;
                if request::is_method_override_parameter(&name) {
                    values.push(
                        percent::decode(pair.value, Plus::Space)
                            .ok_or(Failure::BadRequest(RequestError::InvalidQuery))?,
                    );
                }
            }
        }
        if values.is_empty() {
            return Ok(None);
        }
        match self.settings.method_override {
            MethodOverride::Reject => Err(refuse()),
            MethodOverride::Strip => Ok(None),
            MethodOverride::Evaluate => {
                // One method, however many places name it; anything else cannot be evaluated.
                let mut wanted: Option<String> = None;
                for value in &values {
                    let method = request::canonical_method(request::trim_ows(value)).map_err(|_| refuse())?;
                    match &wanted {
                        Some(w) if **w != *method => return Err(refuse()),
                        Some(_) => {}
                        None => wanted = Some(method.into_owned()),
                    }
                }
                Ok(wanted)
            }
        }
    }

    /// Canonicalises the request and verifies its token: everything before policy.
    fn prepare<'h>(
        &self,
        headers: &'h Headers<'h>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Result<Prepared<'h>, Failure> {
        let pseudo = Pseudo::of(headers);
        let raw_method = pseudo.method.ok_or(Failure::BadRequest(RequestError::MissingMethod))?;
        let method = request::canonical_method(raw_method).map_err(Failure::BadRequest)?;
        let raw_path = pseudo.path.ok_or(Failure::BadRequest(RequestError::MissingPath))?;
        let canonical =
            request::canonical_path_with(raw_path, self.settings.path_parameters).map_err(Failure::BadRequest)?;
        let method_override = self.method_override(headers, canonical.query)?;

        let token = self.credential(headers, canonical.query)?.ok_or(Failure::NoToken)?;
        let verified = self.verify(&token, headers, now, crypto).map_err(|error| match error {
            TokenError::KeysUnavailable | TokenError::UnknownKey => match self.verifier.remote_issuer_of(&token) {
                Some(issuer) => Failure::RemoteKeys { issuer, error },
                None => Failure::Token(error),
            },
            _ => Failure::Token(error),
        })?;

        let host = match pseudo.authority {
            Some(h) => Some(request::canonical_host(h).map_err(Failure::BadRequest)?),
            None => None,
        };
        Ok(Prepared {
            method_changed: *method != *raw_method,
            method,
            method_override,
            raw_path,
            path: canonical.path,
            with_parameters: canonical.with_parameters,
            query: canonical.query,
            host,
            verified,
        })
    }

    /// The dry-run rules that would have applied to this request, as `(rule id, effect)`; empty when the policy
    /// has none, or the request does not reach policy.
    pub fn dry_run_rules(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Vec<(String, Effect)> {
        if !self.policy.has_dry_run_rules() {
            return Vec::new();
        }
        let Ok(p) = self.prepare(headers, now, crypto) else { return Vec::new() };
        let view = p.view(headers, conn, now);
        let mut hits = self.policy.dry_run_hits(&p.verified.token, &view);
        if let Some(method) = &p.method_override {
            let overridden = Request { method, ..view };
            for hit in self.policy.dry_run_hits(&p.verified.token, &overridden) {
                if !hits.contains(&hit) {
                    hits.push(hit);
                }
            }
        }
        hits.into_iter().map(|(id, effect)| (id.to_owned(), effect)).collect()
    }

    /// Why this request gets its decision, as one line of JSON for logs and tools: the decision and, when
    /// policy decided, every candidate rule with its result and reasons (see [`Policy::explain`]).
    pub fn explain(&self, headers: &Headers<'_>, conn: Connection<'_>, now: i64, crypto: &dyn CryptoBackend) -> String {
        let p = match self.prepare(headers, now, crypto) {
            Ok(p) => p,
            Err(failure) => {
                let denial = self.denial(failure, String::new());
                return json!({"decision": "deny", "status": denial.status, "reason": denial.reason}).to_string();
            }
        };
        let view = p.view(headers, conn, now);
        // With a method override under evaluation, the request's own method decides unless it is allowed;
        // then the override does.
        let overridden = p.method_override.as_deref().map(|method| Request { method, ..view });
        let e = match overridden {
            Some(o) if matches!(self.policy.evaluate(&p.verified.token, &view), Decision::Allow { .. }) => {
                self.policy.explain(&p.verified.token, &o)
            }
            _ => self.policy.explain(&p.verified.token, &view),
        };
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
            "agent": p.verified.token.agent(),
            "subject": p.verified.token.subject(),
            "issuer": &*p.verified.token.issuer,
            "chain": p.verified.token.chain.actors().iter().map(|a| a.sub()).collect::<Vec<_>>(),
            "method": p.method,
            "method_override": p.method_override,
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
        headers: &Headers<'_>,
        conn: Connection<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Result<Verdict, Failure> {
        let p = self.prepare(headers, now, crypto)?;
        if self.binds_peer
            && let Some(issuer) =
                self.verifier.issuers().iter().find(|i| i.issuer == p.verified.token.issuer && i.binding.any())
        {
            issuer
                .binding
                .check(&p.verified.token, conn.peer.uri_san, conn.peer.certificate_sha256)
                .map_err(Failure::Token)?;
        }
        let admitted = &p.verified;
        let view = p.view(headers, conn, now);
        let decision = match (self.policy.evaluate(&admitted.token, &view), p.method_override.as_deref()) {
            // Allowed under its own method: the override must be allowed too (a deny under either denies).
            (Decision::Allow { .. }, Some(method)) => {
                self.policy.evaluate(&admitted.token, &Request { method, ..view })
            }
            (decision, _) => decision,
        };
        match decision {
            Decision::Allow { rule } => {
                let mut remove = identity_headers_in(headers);
                let rule: Rc<str> = rule.into();
                let mut set = Vec::with_capacity(admitted.identity.len() + 1);
                set.extend(admitted.identity.iter().cloned());
                set.push((RULE_HEADER, rule.clone()));
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
                let credential_parameter = |name: &str| {
                    !self.settings.forward_credential
                        && self
                            .settings
                            .token_sources
                            .iter()
                            .any(|s| matches!(s, TokenSource::Query { name: q } if q == name))
                };
                let dropped = |name: &str| {
                    (strip_override && request::is_method_override_parameter(name)) || credential_parameter(name)
                };
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
                Ok(Verdict::Allow { remove, set, rule, canonical_path, canonical_method, dry_run: None })
            }
            Decision::Deny { rule } => Err(Failure::Forbidden {
                rule: Some(rule.to_owned()),
                missing_scope: None,
                identity: admitted.identity.clone(),
            }),
            Decision::NoRuleAllows { missing_scope } => Err(Failure::Forbidden {
                rule: None,
                missing_scope: missing_scope.map(str::to_owned),
                identity: admitted.identity.clone(),
            }),
        }
    }
}

/// A canonical request with a verified token.
struct Prepared<'h> {
    method: Cow<'h, str>,
    /// Whether the client spelled the method otherwise (`get`): the canonical one is forwarded.
    method_changed: bool,
    /// The method an override asks for, under `method_override: evaluate`.
    method_override: Option<String>,
    raw_path: &'h str,
    /// The path rules decide on.
    path: Cow<'h, str>,
    /// The path to forward instead, under `path_parameters: keep`.
    with_parameters: Option<String>,
    query: Option<&'h str>,
    host: Option<Cow<'h, str>>,
    verified: Rc<Admitted>,
}

impl<'h> Prepared<'h> {
    fn view<'a>(&'a self, headers: &'a Headers<'a>, conn: Connection<'a>, now: i64) -> Request<'a> {
        Request {
            method: &self.method,
            path: &self.path,
            query: self.query,
            host: self.host.as_deref(),
            headers,
            now,
            peer: conn.peer,
            route: conn.route,
            route_tag: conn.route_tag,
        }
    }
}

/// The pseudo-headers a decision reads, each only if it appears exactly once and is text: one pass over the
/// headers instead of one per name.
#[derive(Default)]
struct Pseudo<'h> {
    method: Option<&'h str>,
    path: Option<&'h str>,
    authority: Option<&'h str>,
}

impl<'h> Pseudo<'h> {
    fn of(headers: &'h Headers<'h>) -> Pseudo<'h> {
        let (mut method, mut path, mut authority) = (Seen::None, Seen::None, Seen::None);
        for &(name, value) in headers {
            let slot = match name {
                ":method" => &mut method,
                ":path" => &mut path,
                ":authority" => &mut authority,
                _ => continue,
            };
            *slot = match slot {
                Seen::None => Seen::Once(value),
                _ => Seen::Repeated,
            };
        }
        Pseudo { method: method.text(), path: path.text(), authority: authority.text() }
    }
}

#[derive(Clone, Copy)]
enum Seen<'h> {
    None,
    Once(&'h [u8]),
    Repeated,
}

impl<'h> Seen<'h> {
    fn text(self) -> Option<&'h str> {
        match self {
            Seen::Once(v) => std::str::from_utf8(v).ok(),
            Seen::None | Seen::Repeated => None,
        }
    }
}

/// The value of a header that must appear exactly once, as text.
fn single_text<'h>(headers: &'h Headers<'h>, name: &str) -> Option<&'h str> {
    single_value(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// The value of a header that must appear exactly once.
fn single_value<'h>(headers: &'h Headers<'h>, name: &str) -> Option<&'h [u8]> {
    let mut values = headers.iter().filter(|(n, _)| *n == name);
    match (values.next(), values.next()) {
        (Some(&(_, v)), None) => Some(v),
        _ => None,
    }
}

fn request_id(headers: &Headers<'_>) -> String {
    single_text(headers, "x-request-id")
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests;
