//! One request decided, in either of two modes:
//!
//! - **claims** (marked as such on the page): the token's claims are taken as verified, the signature and the
//!   token rules are not checked; the request is canonicalised and policy evaluated exactly as the gateway and
//!   `agent-iam test` do. For exploring policy.
//! - **token**: the gateway's whole decision from a whole configuration: the token verified against the
//!   configuration's keys (pure-Rust crypto), revocations written in it, DPoP, MCP bodies, limits (counted
//!   in memory for this one request), and the answer or what is forwarded.
//!
//! Input: `{"config", "format", "mode", "claims" | "token", "request": {"method", "path", "host", "headers",
//! "time", "peer", "envoy_route", "envoy_route_tag", "mcp"}}`; `time` is RFC 3339 text or seconds.

use crate::document::{self, Loaded, Problem, prefixed};
use agent_iam::engine::limits::SharedLimiter;
use agent_iam::engine::{Body, Verdict};
use agent_iam::policy::Decision;
use agent_iam::policy::cases::{self, CaseRequest, Evaluated};
use agent_iam::request::{Connection, Peer};
use agent_iam::shared_data::MemoryStore;
use agent_iam::token::PureRust;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::rc::Rc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    config: String,
    #[serde(default)]
    format: Option<String>,
    mode: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    request: Value,
}

/// `decide()`.
pub fn decide(input: &str) -> Value {
    match run(input) {
        Ok(answer) => answer,
        Err(problem) => problem.answer(),
    }
}

fn run(input: &str) -> Result<Value, Problem> {
    let input: Input = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(input))
        .map_err(|e| Problem::new(format!("input.{}", e.path()), e.into_inner().to_string()))?;
    let loaded = document::load(&input.config, input.format.as_deref().unwrap_or("auto"))
        .map_err(|p| Problem::new(prefixed("config", &p.path), p.message))?;
    let (request, now) = request_of(input.request)?;
    match input.mode.as_str() {
        "claims" => {
            let claims = input.claims.ok_or_else(|| Problem::new("claims", "claims mode needs the token's claims"))?;
            claims_mode(&loaded, claims, &request, now)
        }
        "token" => {
            let token = input.token.filter(|t| !t.trim().is_empty());
            token_mode(&loaded, token.as_deref().map(str::trim), &request, now)
        }
        other => Err(Problem::new("mode", format!("unknown mode \"{other}\" (claims or token)"))),
    }
}

/// The request as a policy test case reads it, and its time in seconds.
fn request_of(mut value: Value) -> Result<(CaseRequest, i64), Problem> {
    let Some(object) = value.as_object_mut() else { return Err(Problem::new("request", "must be an object")) };
    let now = match object.remove("time") {
        None | Some(Value::Null) => return Err(Problem::new("request.time", "is required (RFC 3339 or seconds)")),
        Some(Value::String(text)) => cases::parse_time(&text).map_err(|m| Problem::new("request.time", m))?,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| Problem::new("request.time", "must be whole seconds"))?,
        Some(_) => return Err(Problem::new("request.time", "must be RFC 3339 text or seconds")),
    };
    // Empty fields the page sends for "not given".
    object.retain(|_, v| !v.is_null() && *v != Value::String(String::new()));
    let request: CaseRequest = serde_path_to_error::deserialize(value)
        .map_err(|e| Problem::new(prefixed("request", &e.path().to_string()), e.into_inner().to_string()))?;
    Ok((request, now))
}

/// Policy alone, for claims taken as verified.
fn claims_mode(loaded: &Loaded, claims: Map<String, Value>, request: &CaseRequest, now: i64) -> Result<Value, Problem> {
    let token = cases::token_from_claims(claims.clone()).map_err(|m| Problem::new("claims", m))?;
    let policy = loaded.policy();
    let denial_status = match loaded {
        Loaded::Configuration(engine) => engine.settings().policy_denial_status,
        Loaded::Policy(_) => 403,
    };
    let evaluated = cases::evaluate(policy, &token, request, now, "request", |decision, explanation| {
        let (verdict, status, reason, rule, scope) = match decision {
            Decision::Allow { rule } => ("allow", 200, "allowed", Some(rule), None),
            Decision::Deny { rule } => ("deny", denial_status, "denied_by_rule", Some(rule), None),
            Decision::NoRuleAllows { missing_scope } => ("deny", denial_status, "no_rule_allows", None, missing_scope),
        };
        json!({
            "ok": true,
            "mode": "claims",
            "decision": verdict,
            "status": status,
            "reason": reason,
            "rule": rule,
            "missing_scope": scope,
            "explanation": {
                "decision": verdict,
                "reason": reason,
                "rule": rule,
                "missing_scope": scope,
                "agent": token.agent(),
                "subject": token.subject(),
                "chain": token.chain.actors().iter().map(|a| a.sub()).collect::<Vec<_>>(),
                "policy_version": explanation.policy_version,
                "labels": explanation.labels,
                "candidates": explanation.candidates_json(),
                "not_applicable": explanation.rules.len() - explanation.candidates().count(),
            },
            "token": {"header": null, "claims": claims},
        })
    })
    .map_err(|e| Problem::new(e.path, e.message))?;
    Ok(match evaluated {
        Evaluated::Decided(answer) => answer,
        Evaluated::InvalidRequest { label, detail } => json!({
            "ok": true, "mode": "claims", "decision": "invalid_request", "status": 400,
            "reason": label, "rule": null, "explanation": {"decision": "invalid_request", "reason": label, "detail": detail},
            "token": {"header": null, "claims": claims},
        }),
    })
}

/// The gateway's whole decision.
fn token_mode(loaded: &Loaded, token: Option<&str>, request: &CaseRequest, now: i64) -> Result<Value, Problem> {
    let Loaded::Configuration(engine) = loaded else {
        return Err(Problem::new(
            "config",
            "token mode needs a whole configuration (issuers and their keys); explore a policy alone in claims mode",
        ));
    };
    // State the gateway keeps between requests (replays, limit counters) starts empty for each decision.
    engine.set_shared_store(Rc::new(MemoryStore::default()));
    let micros = u64::try_from(now).unwrap_or(0).saturating_mul(1_000_000);
    engine.set_limiter(Rc::new(SharedLimiter { store: MemoryStore::default(), clock: move || Some(micros) }));

    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), request.method.clone().into_bytes()),
        (":path".into(), request.path.clone().into_bytes()),
    ];
    if let Some(host) = &request.host {
        headers.push((":authority".into(), host.clone().into_bytes()));
    }
    headers.extend(request.header_pairs("request").map_err(|e| Problem::new(e.path, e.message))?);
    if let Some(token) = token
        && !headers.iter().any(|(n, _)| n == "authorization")
    {
        headers.push(("authorization".into(), format!("Bearer {token}").into_bytes()));
    }
    let borrowed: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let peer = request.peer.clone().unwrap_or_default();
    let conn = Connection {
        peer: Peer { uri_san: peer.uri_san.as_deref(), certificate_sha256: peer.certificate_sha256.as_deref() },
        route: request.envoy_route.as_deref(),
        route_tag: Some(request.envoy_route_tag.as_deref().unwrap_or("")),
    };
    let body_text = request.mcp.as_ref().map(|m| match m {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    let mut verdict = engine.decide_with(&borrowed, conn, now, &PureRust);
    let mut body = Body::Absent;
    if let Verdict::Allow { await_body: Some(wait), .. } = &verdict {
        // The gateway reads an MCP endpoint's body before it decides.
        let bytes = body_text.as_deref().unwrap_or("").as_bytes();
        body = if bytes.len() > wait.max_bytes { Body::TooLarge } else { Body::Complete(bytes) };
        verdict = engine.decide_body(wait, &borrowed, conn, body, now, &PureRust);
    }
    let explanation: Value =
        serde_json::from_str(&engine.explain_with_body(&borrowed, conn, body, now, &PureRust)).unwrap_or(Value::Null);
    let decoded = token.map(decode_token).unwrap_or(Value::Null);
    let mut answer = match verdict {
        Verdict::Allow { remove, set, rule, canonical_path, canonical_method, dry_run, .. } => {
            let set: Vec<(&str, String)> = set.iter().map(|(n, v)| (*n, v.to_string())).collect();
            json!({
                "decision": "allow",
                "status": 200,
                "reason": if dry_run.is_some() { "dry_run" } else { "allowed" },
                "rule": if rule.is_empty() { None } else { Some(rule.to_string()) },
                "forwarded": {"set": set, "remove": remove, "path": canonical_path, "method": canonical_method},
                "dry_run": dry_run.map(|d| json!({"status": d.status, "reason": d.reason, "rule": d.rule})),
            })
        }
        Verdict::Deny(d) | Verdict::Answer(d) => {
            let decision = match d.status {
                200 => "answer",
                400 | 413 => "invalid_request",
                _ => "deny",
            };
            json!({
                "decision": decision,
                "status": d.status,
                "reason": d.reason,
                "rule": d.rule,
                "response": {"headers": d.headers, "body": d.body},
            })
        }
        Verdict::WaitForKeys { .. } | Verdict::UnknownKey { .. } => {
            return Err(Problem::new(
                "config",
                "the token's issuer fetches its keys (remote_jwks), which the playground cannot: put them inline (jwks)",
            ));
        }
    };
    answer["ok"] = true.into();
    answer["mode"] = "token".into();
    answer["explanation"] = explanation;
    answer["token"] = decoded;
    Ok(answer)
}

/// `decode_token()`: the header and payload of a compact JWS, decoded, nothing verified.
pub fn decode_token(token: &str) -> Value {
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("DPoP ")).unwrap_or(token);
    let segment = |s: Option<&str>| -> Result<Value, String> {
        let bytes = agent_iam::b64::decode(s.unwrap_or("").as_bytes()).map_err(|_| "not base64url".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    let mut parts = token.split('.');
    let (header, claims) = (segment(parts.next()), segment(parts.next()));
    let error = match (&header, &claims, parts.next(), parts.next()) {
        (_, _, None, _) | (_, _, _, Some(_)) => Some("not three segments".to_owned()),
        (Err(e), _, _, _) => Some(format!("header: {e}")),
        (_, Err(e), _, _) => Some(format!("payload: {e}")),
        _ => None,
    };
    json!({"header": header.ok(), "claims": claims.ok(), "error": error})
}
