//! Policy tests: a file of cases next to each policy (`trading.json` → `trading.tests.json`), each a request
//! and the claims of an already-verified token with the decision expected. The runner canonicalises the
//! request exactly as the gateway does, evaluates, and cross-checks the indexed evaluation against
//! [`Policy::explain`].

use super::{Decision, Explanation, Policy, PolicyError, RuleResult};
use crate::request::mcp::{Arguments, Revision};
use crate::request::{self, RequestError};
use crate::request::{Peer, Request};
use crate::token::claims::Claims;
use crate::token::{DelegationChain, VerifiedToken};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

/// A test-case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Default request time (RFC 3339, e.g. `2026-11-23T10:15:00-05:00`) for cases without one.
    #[serde(default)]
    pub time: Option<String>,
    /// Claims merged under every case's `token` (a case's own claims win): typically `iss`, `aud`, `exp`.
    #[serde(default)]
    pub token_defaults: Map<String, Value>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it shows, in a few words.
    pub name: String,
    /// The verified token's claims (`sub`, `act`, `may_act`, any others); no signature, no checks.
    pub token: Map<String, Value>,
    /// The request.
    pub request: CaseRequest,
    /// The expected decision.
    pub expect: Expect,
}

/// A request in a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// Method as sent.
    pub method: String,
    /// Path with query, as sent (canonicalised by the runner like by the gateway).
    pub path: String,
    /// `:authority`.
    #[serde(default)]
    pub host: Option<String>,
    /// Headers; an array value sends the header once per element.
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// RFC 3339 time; defaults to the file's `time`.
    #[serde(default)]
    pub time: Option<String>,
    /// Mutual-TLS peer.
    #[serde(default)]
    pub peer: Option<CasePeer>,
    /// The Envoy route name the request matched (`xds.route_name`).
    #[serde(default)]
    pub envoy_route: Option<String>,
    /// The matched route's tag (metadata `filter_metadata.agent_iam.tag`); absent: an untagged route.
    #[serde(default)]
    pub envoy_route_tag: Option<String>,
    /// The JSON-RPC message of a POST to an MCP endpoint (a JSON object, or a string for the body's exact
    /// text). The request is decided as at an endpoint accepting every revision: the message is read and,
    /// with `MCP-Protocol-Version: 2026-07-28`, checked against the `Mcp-*` headers, as the gateway does.
    #[serde(default)]
    pub mcp: Option<Value>,
}

impl CaseRequest {
    /// Its headers as a request carries them: lower-case names, a list sent once per element. `at` is the
    /// request's JSON path, for errors.
    pub fn header_pairs(&self, at: &str) -> Result<Vec<(String, Vec<u8>)>, PolicyError> {
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let values: Vec<&str> = match value {
                Value::String(s) => vec![s],
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    items.iter().filter_map(Value::as_str).collect()
                }
                _ => {
                    let path = format!("{at}.headers.{name}");
                    return Err(PolicyError::new(&path, "must be a string or a list of strings"));
                }
            };
            headers.extend(values.into_iter().map(|v| (name.to_ascii_lowercase(), v.as_bytes().to_vec())));
        }
        Ok(headers)
    }
}

/// The mutual-TLS peer in a case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePeer {
    /// URI SAN of the peer certificate.
    #[serde(default)]
    pub uri_san: Option<String>,
    /// Hex SHA-256 of the peer certificate.
    #[serde(default)]
    pub certificate_sha256: Option<String>,
}

/// The expected result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny`, or `invalid_request` (the gateway answers 400 before policy).
    pub decision: ExpectedDecision,
    /// The deciding rule (for a deny: the deny rule; leave it out when no rule allows).
    #[serde(default)]
    pub rule: Option<String>,
    /// For a deny where no rule allows: the scope reported missing.
    #[serde(default)]
    pub missing_scope: Option<String>,
}

/// Expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedDecision {
    /// Allowed.
    Allow,
    /// Denied by policy.
    Deny,
    /// Refused as malformed (400).
    InvalidRequest,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Whether the decision was as expected.
    pub passed: bool,
    /// What happened, and on failure the explanation of the candidate rules.
    pub detail: String,
}

/// Runs every case. A malformed case (bad time, bad `act`) is an error with its path, not a failure.
pub fn run(policy: &Policy, file: &CaseFile) -> Result<Vec<CaseResult>, PolicyError> {
    file.cases.iter().enumerate().map(|(i, case)| run_case(policy, file, case, &format!("cases[{i}]"))).collect()
}

/// Parses RFC 3339 into seconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    jiff::Timestamp::from_str(text).map(|t| t.as_second()).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// The verified token a case describes.
pub fn token_from_claims(claims: Map<String, Value>) -> Result<VerifiedToken, String> {
    let chain =
        DelegationChain::from_claims(&claims, crate::token::delegation::MAX_DEPTH).map_err(|e| e.to_string())?;
    let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default().to_owned();
    let expires_at = claims.get("exp").and_then(Value::as_i64).unwrap_or(i64::MAX);
    Ok(VerifiedToken {
        issuer: issuer.into(),
        chain,
        expires_at,
        valid_until: expires_at,
        claims: Claims::from_map(claims),
    })
}

/// What a request of a case comes to: refused before policy, as the gateway answers 400 (with why), or
/// decided by policy.
pub enum Evaluated<R> {
    /// The request cannot be canonicalised, or its MCP message read: the gateway's reason label
    /// (`ambiguous_path`, `mcp_parse_error`, ...) and why.
    InvalidRequest {
        /// The reason's label, as the gateway's metrics and answers name it.
        label: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Policy's decision, handed to the caller with the explanation.
    Decided(R),
}

/// Evaluates one request against `policy` for `token` at `now`, canonicalised exactly as the gateway does;
/// `decided` receives the decision and the explanation. `at` is the JSON path of the request, for errors.
pub fn evaluate<R>(
    policy: &Policy,
    token: &VerifiedToken,
    r: &CaseRequest,
    now: i64,
    at: &str,
    decided: impl FnOnce(Decision<'_>, Explanation<'_>) -> R,
) -> Result<Evaluated<R>, PolicyError> {
    let headers = r.header_pairs(at)?;
    let peer = r.peer.clone().unwrap_or_default();
    let canonical = (|| -> Result<_, RequestError> {
        let method = request::canonical_method(&r.method)?;
        let (path, query) = request::canonical_path(&r.path)?;
        let host = r.host.as_deref().map(request::canonical_host).transpose()?;
        Ok((method, path, query.map(str::to_owned), host))
    })();
    let (method, path, query, host) = match canonical {
        Err(e) => return Ok(Evaluated::InvalidRequest { label: e.label(), detail: format!("invalid request: {e}") }),
        Ok(c) => c,
    };
    let borrowed: Vec<_> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let call = match &r.mcp {
        None => None,
        Some(message) => {
            let body = match message {
                Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            match crate::request::mcp::parse(&body, &borrowed, &Revision::ALL, Arguments::All) {
                Ok(call) => Some(call),
                Err(e) => {
                    let detail = format!("invalid MCP message: {} ({})", e.error, e.error.label());
                    return Ok(Evaluated::InvalidRequest { label: e.error.label(), detail });
                }
            }
        }
    };
    let request = Request {
        method: &method,
        path: &path,
        query: query.as_deref(),
        host: host.as_deref(),
        headers: &borrowed,
        now,
        peer: Peer { uri_san: peer.uri_san.as_deref(), certificate_sha256: peer.certificate_sha256.as_deref() },
        route: r.envoy_route.as_deref(),
        route_tag: Some(r.envoy_route_tag.as_deref().unwrap_or("")),
        mcp: call.as_ref(),
        hypothetical: false,
    };
    Ok(Evaluated::Decided(decided(policy.evaluate(token, &request), policy.explain(token, &request))))
}

fn run_case(policy: &Policy, file: &CaseFile, case: &Case, at: &str) -> Result<CaseResult, PolicyError> {
    let mut claims = file.token_defaults.clone();
    claims.extend(case.token.iter().map(|(k, v)| (k.clone(), v.clone())));
    let token = token_from_claims(claims).map_err(|m| PolicyError::new(&format!("{at}.token"), m))?;
    let r = &case.request;
    let time = r.time.as_ref().or(file.time.as_ref()).ok_or_else(|| {
        PolicyError::new(&format!("{at}.request.time"), "no time (set it here or as the file's `time`)")
    })?;
    let now = parse_time(time).map_err(|m| PolicyError::new(&format!("{at}.request.time"), m))?;
    let expect = &case.expect;
    let outcome = evaluate(policy, &token, r, now, &format!("{at}.request"), |decision, explanation| {
        let mut detail = describe(&decision);
        let reported_scope = match decision {
            Decision::NoRuleAllows { missing_scope } => missing_scope,
            _ => None,
        };
        let mut passed = match (expect.decision, decision) {
            (ExpectedDecision::Allow, Decision::Allow { rule }) => expect.rule.as_deref().is_none_or(|r| r == rule),
            (ExpectedDecision::Deny, Decision::Deny { rule }) => expect.rule.as_deref().is_none_or(|r| r == rule),
            (ExpectedDecision::Deny, Decision::NoRuleAllows { .. }) => expect.rule.is_none(),
            _ => false,
        } && expect.missing_scope.as_deref().is_none_or(|s| Some(s) == reported_scope);
        if explanation.decision != decision {
            passed = false;
            let _ = write!(
                detail,
                "; INTERNAL: the index decided {decision:?} but explain decided {:?}",
                explanation.decision
            );
        }
        if !passed {
            detail.push_str("; expected ");
            detail.push_str(match expect.decision {
                ExpectedDecision::Allow => "allow",
                ExpectedDecision::Deny => "deny",
                ExpectedDecision::InvalidRequest => "invalid_request",
            });
            if let Some(rule) = &expect.rule {
                let _ = write!(detail, " by \"{rule}\"");
            }
            for trace in explanation.rules.iter().filter(|t| t.result != RuleResult::NotApplicable) {
                let _ = write!(
                    detail,
                    "\n    {} ({:?}): {:?} {}",
                    trace.id,
                    trace.effect,
                    trace.result,
                    trace.reasons.join("; ")
                );
            }
        }
        (passed, detail)
    })?;
    let (passed, detail) = match outcome {
        Evaluated::InvalidRequest { detail, .. } => (expect.decision == ExpectedDecision::InvalidRequest, detail),
        Evaluated::Decided(result) => result,
    };
    Ok(CaseResult { name: case.name.clone(), passed, detail })
}

/// `allowed by "r"`, `denied by "r"`, `no rule allows (missing scope "s")`.
pub fn describe(decision: &Decision<'_>) -> String {
    match decision {
        Decision::Allow { rule } => format!("allowed by \"{rule}\""),
        Decision::Deny { rule } => format!("denied by \"{rule}\""),
        Decision::NoRuleAllows { missing_scope: Some(s) } => format!("no rule allows (missing scope \"{s}\")"),
        Decision::NoRuleAllows { missing_scope: None } => "no rule allows".to_owned(),
    }
}
