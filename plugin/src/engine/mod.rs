//! The decision: from a request's headers to allow (with the identity to forward) or a precise denial.
//!
//! This is the whole per-request path except reading from and writing to Envoy, which the filter does.
//! Here: reading the request, verifying its token (through the cache) and asking policy; the headers an allow
//! sets and removes are in `identity`, denials and their bodies in `response`, the settings in `settings`.

mod dpop;
mod identity;
pub mod limits;
mod mcp;
mod prepare;
mod response;
mod revocation;
mod routes;
mod settings;

pub use dpop::{DpopSettings, OriginRoute, Presentation, Recording, Scheme};
use identity::identity_headers_in;
pub use identity::{
    AGENT_HEADER, CHAIN_HEADER, CLAIM_HEADER_PREFIX, DRY_RUN_HEADER, HeaderValue, IDENTITY_HEADER_PREFIX,
    ISSUER_HEADER, RULE_HEADER, SUBJECT_HEADER, header_safe, is_identity_header,
};
pub use mcp::{Body, DEFAULT_BODY_CAP, FORBIDDEN_CODE, MAX_BODY_CAP, McpDenial, McpEndpoint, WELL_KNOWN, metadata};
use prepare::{Detached, Prepared, Pseudo, request_id};
pub use response::Denial;
pub use routes::RouteSelector;
pub use settings::{CryptoPreference, Mode, Settings, TokenSource};

use crate::policy::{Decision, Effect, Policy};
use crate::request::mcp::{McpRefusal, McpRequest};
use crate::request::{self, Connection, Headers, Request, RequestError};
use crate::revocation::{Kind, RevocationSet, TokenFacts};
use crate::token::cache::TokenCache;
use crate::token::dpop::nonce::NonceKey;
use crate::token::dpop::{DpopError, DpopMode, ProofKeys};
use crate::token::{CryptoBackend, KeySet, TokenError, VerifiedToken, Verifier};
use serde_json::json;
use std::cell::{Cell, OnceCell, RefCell};
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
        /// The MCP message of a request to an MCP endpoint.
        mcp: Option<Rc<McpRequest>>,
        /// Whether the response is a list to filter for this caller ([`Engine::filter_list`]).
        filter_list: bool,
        /// A POST to an MCP endpoint: nothing is decided yet. Forward the headers as above (Envoy sends them
        /// on before any filter sees the body), buffer the body up to `max_bytes`, and decide with
        /// [`Engine::decide_body`]; a denial then answers instead of the body going upstream.
        await_body: Option<AwaitBody>,
        /// The verified token (absent only in dry-run mode when it did not verify).
        verified: Option<Verified>,
        /// A fresh DPoP nonce for the upstream's response (RFC 9449 §8.2): the client's nonce is still accepted
        /// but from an earlier period, so it learns the next one before its own expires.
        dpop_nonce: Option<String>,
    },
    /// Not a decision: a document the plugin serves itself (RFC 9728 protected resource metadata).
    Answer(Denial),
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

/// A POST to an MCP endpoint allowed at its headers, its body still to be read: how much of it to read, and
/// what the decision on it takes from the decision at the headers (the request as canonicalised then, its token
/// as verified then, and how that was presented), so that [`Engine::decide_body`] does neither again.
#[derive(Debug, Clone)]
pub struct AwaitBody {
    /// The endpoint's cap on the body, bytes.
    pub max_bytes: usize,
    /// The request canonicalised around its verified token.
    prepared: Rc<Detached>,
    scheme: Scheme,
}

/// Two are equal when they wait on the same decision.
impl PartialEq for AwaitBody {
    fn eq(&self, other: &AwaitBody) -> bool {
        self.max_bytes == other.max_bytes && Rc::ptr_eq(&self.prepared, &other.prepared) && self.scheme == other.scheme
    }
}

impl Eq for AwaitBody {}

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
    /// The revocations shared by the gateway's workers, as this VM last read them ([`Engine::set_revocations`]).
    revocations: RefCell<Rc<RevocationSet>>,
    /// How limits are counted ([`Engine::set_limiter`]); none: a policy with limits refuses with 503.
    limiter: RefCell<Option<Rc<dyn limits::Limiter>>>,
    /// DPoP proof headers validated recently on this worker.
    proof_keys: ProofKeys,
    /// Where the DPoP replay cache lives ([`Engine::set_shared_store`]); none: DPoP presentations get 503.
    shared_store: dpop::StoreSlot,
    /// The DPoP nonce secret the filter installed, when the configuration has none ([`Engine::set_nonce_key`]).
    nonce_key: RefCell<Option<NonceKey>>,
}

/// A token that verified, with the identity headers an allow forwards for it: made once, when the token
/// verifies, and cached with it, so that a cached request escapes and formats nothing.
#[derive(Debug)]
struct Admitted {
    token: VerifiedToken,
    identity: Vec<(&'static str, HeaderValue)>,
    /// What revocation compares, extracted at the first check (never, when nothing can be revoked).
    facts: OnceCell<TokenFacts>,
    /// The generation of the shared revocation set this token was last found clean under (0: never). A set
    /// only loses revocations as time passes, so a clean token stays clean until the set is replaced.
    clean: Cell<u64>,
    /// Its issuer's DPoP mode.
    dpop: DpopMode,
    /// `cnf.jkt`: the thumbprint of the key the token is bound to (RFC 9449 §6.1), if any.
    bound_key: Option<Box<str>>,
    /// SHA-256 of the token's bytes, what a proof's `ath` must be; computed only for DPoP-bound tokens.
    token_sha256: Option<[u8; 32]>,
}

/// The verified token a decision was made for, shared with the token cache (audit events read its claims).
/// Two are equal when they are the same admission.
#[derive(Debug, Clone)]
pub struct Verified(Rc<Admitted>);

impl Verified {
    /// The token.
    pub fn token(&self) -> &VerifiedToken {
        &self.0.token
    }
}

impl PartialEq for Verified {
    fn eq(&self, other: &Verified) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Verified {}

enum Failure {
    BadRequest(RequestError),
    TwoCredentials,
    NoToken,
    Token(TokenError),
    /// Policy refused a verified token; `identity` is what an allow would have forwarded (dry-run mode).
    Forbidden {
        rule: Option<String>,
        missing_scope: Option<String>,
        admitted: Rc<Admitted>,
    },
    /// A fetched key set is missing (`KeysUnavailable`) or lacks the token's key (`UnknownKey`).
    RemoteKeys {
        issuer: usize,
        error: TokenError,
    },
    /// An MCP message refused before policy.
    Mcp(McpRefusal),
    /// A revocation refuses the token: a selector of this kind.
    Revoked {
        kind: Kind,
        admitted: Rc<Admitted>,
    },
    /// The revocation list covering the token's issuer is stale, and configured to fail closed.
    RevocationStale,
    /// A limit is exceeded.
    Limited {
        exceeded: limits::Exceeded,
        admitted: Rc<Admitted>,
    },
    /// Limits apply but cannot be counted.
    LimitsUnavailable,
    /// A DPoP presentation refused (RFC 9449), with a fresh nonce when the refusal asks for one.
    Dpop {
        error: DpopError,
        nonce: Option<String>,
    },
    /// The agent is held on this worker after an anomaly, for this many more seconds.
    Held {
        retry_after: u64,
        admitted: Rc<Admitted>,
    },
}

/// One evaluation of a request and what it learnt before its answer: how the credential was presented
/// (challenges name that scheme's error) and, at an MCP endpoint, the endpoint and the message.
#[derive(Default)]
struct Attempt<'e> {
    /// The request was decided before: this is the decision on its body, an explanation, or its dry-run
    /// rules. Its DPoP proof is checked again but not recorded again (it would be its own replay).
    again: bool,
    scheme: Scheme,
    /// A fresh DPoP nonce for the response, when the client's is from an earlier period.
    fresh_nonce: Option<String>,
    endpoint: Option<&'e McpEndpoint>,
    call: Option<Rc<McpRequest>>,
    /// A POST whose body has not been read: the endpoint's cap.
    await_body: Option<usize>,
}

impl Engine {
    /// Assembles an engine from validated parts.
    pub fn new(verifier: Verifier, policy: Policy, settings: Settings) -> Engine {
        let cache = RefCell::new(TokenCache::new(settings.cache_capacity));
        let binds_peer = verifier.issuers().iter().any(|i| i.binding.any());
        let revocations = RefCell::new(Rc::default());
        Engine {
            verifier,
            policy: Rc::new(policy),
            settings: Rc::new(settings),
            cache,
            binds_peer,
            revocations,
            limiter: RefCell::new(None),
            proof_keys: ProofKeys::default(),
            shared_store: Default::default(),
            nonce_key: RefCell::new(None),
        }
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
            revocations: RefCell::new(self.revocations.borrow().clone()),
            limiter: RefCell::new(self.limiter.borrow().clone()),
            proof_keys: ProofKeys::default(),
            shared_store: self.shared_store.clone(),
            nonce_key: RefCell::new(self.nonce_key.borrow().clone()),
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
    /// when the filter reads them. A POST to an MCP endpoint answers [`Verdict::NeedBody`]: decide again with
    /// [`Engine::decide_with_body`] once the body is read.
    pub fn decide_with(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Verdict {
        self.decide_with_body(headers, conn, Body::Absent, now, crypto)
    }

    /// Decides for one request and what was read of its body. With a body (read or too large) this is the
    /// second decision of a request whose headers were decided with [`Body::Absent`]: a DPoP proof is then
    /// checked again but not recorded again in the replay cache.
    pub fn decide_with_body(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        body: Body<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Verdict {
        let mut mcp = Attempt { again: !matches!(body, Body::Absent), ..Attempt::default() };
        let result = self.evaluate(headers, conn, body, now, crypto, &mut mcp);
        self.verdict_of(result, &mcp, headers)
    }

    /// Decides a POST to an MCP endpoint on its body, after [`Engine::decide_with`] answered `await_body` for
    /// the same headers: the request as canonicalised then and its token as verified then are taken as they are
    /// (the token checked against revocations again, which may have changed), the body read and policy asked.
    /// The same verdict as [`Engine::decide_with_body`] (the tests compare them) without looking the token up
    /// again; a token that expired meanwhile, or anything unexpected, is decided afresh.
    pub fn decide_body(
        &self,
        wait: &AwaitBody,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        body: Body<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Verdict {
        let afresh = || self.decide_with_body(headers, conn, body, now, crypto);
        let p = wait.prepared.prepared();
        // The token was verified at the headers; revocations may have changed since.
        if now >= p.verified.token.valid_until || self.check_revocation(&p.verified, now).is_err() {
            return afresh();
        }
        let Some(endpoint) = self.mcp_endpoint(&p.path, &conn) else { return afresh() };
        let mut mcp = Attempt { again: true, scheme: wait.scheme, endpoint: Some(endpoint), ..Attempt::default() };
        let view = p.view(headers, conn, now, None);
        let result = match self.mcp_message(endpoint, &p.method, &view, body) {
            Ok(mcp::Message::Call(call)) => {
                mcp.call = Some(call);
                self.conclude(&p, headers, conn, now, &mut mcp)
            }
            Ok(mcp::Message::None | mcp::Message::AwaitBody(_)) => return afresh(),
            Err(failure) => Err(failure),
        };
        self.verdict_of(result, &mcp, headers)
    }

    /// The verdict of an evaluation: its own, or the answer to its failure.
    fn verdict_of(&self, result: Result<Verdict, Failure>, mcp: &Attempt<'_>, headers: &Headers<'_>) -> Verdict {
        // The request id is only read for an answer the plugin writes itself.
        match result {
            Ok(verdict) => verdict,
            Err(Failure::RemoteKeys { issuer, error }) => {
                let denial = self.refusal(Failure::Token(error), mcp, request_id(headers));
                match error {
                    TokenError::KeysUnavailable => Verdict::WaitForKeys { issuer, on_timeout: denial },
                    _ => Verdict::UnknownKey { issuer, denial },
                }
            }
            Err(failure) if self.settings.mode == Mode::DryRun => {
                self.dry_run(headers, self.refusal(failure, mcp, request_id(headers)), mcp.call.clone())
            }
            Err(failure) => Verdict::Deny(self.refusal(failure, mcp, request_id(headers))),
        }
    }

    /// The answer to a failure, in the MCP endpoint's terms when the request was for one.
    fn refusal(&self, failure: Failure, mcp: &Attempt<'_>, request_id: String) -> Denial {
        let refused = match &failure {
            Failure::Mcp(refusal) => Some(refusal.clone()),
            _ => None,
        };
        let mut denial = self.denial(failure, mcp.scheme, request_id);
        if let Some(endpoint) = mcp.endpoint {
            denial = self.mcp_denial(endpoint, denial, mcp.call.as_deref(), refused);
        }
        denial.mcp = mcp.call.clone();
        denial
    }

    /// Dry-run mode: what enforcement would have refused is forwarded, without any client-sent identity
    /// header, with the verified identity when the token was valid, and marked with [`DRY_RUN_HEADER`].
    fn dry_run(&self, headers: &Headers<'_>, denial: Denial, mcp: Option<Rc<McpRequest>>) -> Verdict {
        let mut set = denial.identity().to_vec();
        set.push((DRY_RUN_HEADER, format!("{} {}", denial.status, denial.reason).into()));
        Verdict::Allow {
            remove: identity_headers_in(headers),
            set,
            rule: "".into(),
            canonical_path: None,
            canonical_method: None,
            verified: denial.verified.clone(),
            dry_run: Some(denial),
            mcp,
            filter_list: false,
            await_body: None,
            dpop_nonce: None,
        }
    }

    /// The dry-run rules that would have applied to this request, as `(rule id, effect)`; empty when the policy
    /// has none, or the request does not reach policy.
    pub fn dry_run_rules(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        body: Body<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Vec<(String, Effect)> {
        if !self.policy.has_dry_run_rules() {
            return Vec::new();
        }
        let mut mcp = Attempt { again: true, ..Attempt::default() };
        let Ok(p) = self.admit(headers, conn, body, now, crypto, &mut mcp) else { return Vec::new() };
        if mcp.await_body.is_some() {
            return Vec::new();
        }
        let view = p.view(headers, conn, now, mcp.call.as_deref());
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

    /// Why this request gets its decision, as one line of JSON for logs and tools (it records nothing: a DPoP
    /// proof decided on before is not taken for its own replay): the decision and, when
    /// policy decided, every candidate rule with its result and reasons (see [`Policy::explain`]).
    pub fn explain(&self, headers: &Headers<'_>, conn: Connection<'_>, now: i64, crypto: &dyn CryptoBackend) -> String {
        self.explain_with_body(headers, conn, Body::Absent, now, crypto)
    }

    /// [`Engine::explain`] for a request and its body.
    pub fn explain_with_body(
        &self,
        headers: &Headers<'_>,
        conn: Connection<'_>,
        body: Body<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> String {
        let mut mcp = Attempt { again: true, ..Attempt::default() };
        let p = match self.admit(headers, conn, body, now, crypto, &mut mcp) {
            Ok(_) if mcp.await_body.is_some() => {
                return json!({"decision": "pending", "reason": "mcp_body_not_read"}).to_string();
            }
            Ok(p) => p,
            Err(failure) => {
                let denial = self.refusal(failure, &mcp, String::new());
                return json!({"decision": "deny", "status": denial.status, "reason": denial.reason}).to_string();
            }
        };
        let view = p.view(headers, conn, now, mcp.call.as_deref());
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
        let candidates = e.candidates_json();
        let mut out = json!({
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
        });
        if let Some(call) = &mcp.call {
            out["mcp"] = json!({"method": call.method, "name": call.name, "uri": call.uri});
        }
        out.to_string()
    }

    /// Everything before policy: the request prepared and its token verified, bound to the mTLS peer when its
    /// issuer asks, and at an MCP endpoint the token's audience checked and the message read from the body.
    fn admit<'h>(
        &'h self,
        headers: &'h Headers<'h>,
        conn: Connection<'_>,
        body: Body<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
        mcp: &mut Attempt<'h>,
    ) -> Result<Prepared<'h>, Failure> {
        // The endpoint is known before the token is checked, so that its challenges name its metadata.
        if !self.settings.mcp.is_empty()
            && let Some(raw_path) = Pseudo::of(headers).path
            && let Ok(canonical) = request::canonical_path_with(raw_path, self.settings.path_parameters)
        {
            mcp.endpoint = self.mcp_endpoint(&canonical.path, &conn);
        }
        let p = self.prepare(headers, now, crypto, &mut mcp.scheme)?;
        if self.binds_peer
            && let Some(issuer) =
                self.verifier.issuers().iter().find(|i| i.issuer == p.verified.token.issuer && i.binding.any())
        {
            issuer
                .binding
                .check(&p.verified.token, conn.peer.uri_san, conn.peer.certificate_sha256)
                .map_err(Failure::Token)?;
        }
        let request =
            dpop::ProofRequest { scheme: mcp.scheme, method: p.raw_method, raw_path: p.raw_path, path: &p.path, conn };
        mcp.fresh_nonce = self.check_dpop(&p.verified, &request, headers, now, crypto, !mcp.again)?;
        if let Some(endpoint) = mcp.endpoint {
            self.mcp_audience(endpoint, &p.verified.token)?;
            let view = p.view(headers, conn, now, None);
            match self.mcp_message(endpoint, &p.method, &view, body)? {
                mcp::Message::None => {}
                mcp::Message::AwaitBody(max) => mcp.await_body = Some(max),
                mcp::Message::Call(call) => mcp.call = Some(call),
            }
        }
        Ok(p)
    }

    fn evaluate<'h>(
        &'h self,
        headers: &'h Headers<'h>,
        conn: Connection<'_>,
        body: Body<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
        mcp: &mut Attempt<'h>,
    ) -> Result<Verdict, Failure> {
        if !self.settings.mcp.is_empty() {
            let pseudo = Pseudo::of(headers);
            if let (Some(method), Some(path)) = (pseudo.method, pseudo.path)
                && let Some(answer) = self.discovery(method, path)
            {
                return Ok(Verdict::Answer(answer));
            }
        }
        let p = self.admit(headers, conn, body, now, crypto, mcp)?;
        self.conclude(&p, headers, conn, now, mcp)
    }

    /// Policy on an admitted request (or, at an MCP endpoint before its body is read, its headers forwarded).
    fn conclude<'h>(
        &'h self,
        p: &Prepared<'h>,
        headers: &'h Headers<'h>,
        conn: Connection<'_>,
        now: i64,
        mcp: &mut Attempt<'h>,
    ) -> Result<Verdict, Failure> {
        if mcp.await_body.is_some() {
            // The headers go on with the identity; the decision is made on the body.
            return Ok(self.forward(p, headers, None, mcp));
        }
        let admitted = &p.verified;
        let view = p.view(headers, conn, now, mcp.call.as_deref());
        let decision = match (self.policy.evaluate(&admitted.token, &view), p.method_override.as_deref()) {
            // Allowed under its own method: the override must be allowed too (a deny under either denies).
            (Decision::Allow { .. }, Some(method)) => {
                self.policy.evaluate(&admitted.token, &Request { method, ..view })
            }
            (decision, _) => decision,
        };
        match decision {
            Decision::Allow { rule } => {
                let method = p.method_override.as_deref().unwrap_or(&p.method);
                let limits = self.policy.limits_for(&admitted.token, &Request { method, ..view }, rule);
                self.check_limits(admitted, limits)?;
                Ok(self.forward(p, headers, Some(rule.into()), mcp))
            }
            Decision::Deny { rule } => {
                Err(Failure::Forbidden { rule: Some(rule.to_owned()), missing_scope: None, admitted: admitted.clone() })
            }
            Decision::NoRuleAllows { missing_scope } => Err(Failure::Forbidden {
                rule: None,
                missing_scope: missing_scope.map(str::to_owned),
                admitted: admitted.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
