//! The `dpop` section (RFC 9449 proofs, for the issuers whose `dpop` is `allowed` or `required`): the gateway's
//! external origin, and per route another, that proofs' `htu` names; the accepted algorithms; the window a
//! proof's `iat` must fall in; the replay cache's size; server nonces. Also the MCP metadata's DPoP members.

use super::mcp::route_selector;
use super::{ConfigError, err};
use crate::engine::{DpopSettings, McpEndpoint, OriginRoute, TokenSource};
use crate::token::dpop::nonce::{MIN_SECRET_BYTES, NonceKey, NonceRules};
use crate::token::dpop::replay::{BUCKETS, MAX_SLOTS, ReplayCache};
use crate::token::dpop::{DEFAULT_ALGORITHMS, DpopMode, ProofRules, htu, is_proof_algorithm};
use crate::token::{Algorithm, Issuer};
use serde::Deserialize;
use serde_json::Value;

/// The `dpop` section as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DpopDocument {
    /// The gateway's external origin as clients address it, e.g. `https://api.example.com`: a proof's `htu`
    /// must be this origin and the request's path. Never taken from `Host` or `X-Forwarded-*`.
    pub origin: String,
    /// Other origins for some routes (by `paths`, `envoy_routes`, `envoy_route_tags`), first match wins.
    #[serde(default)]
    pub routes: Vec<DpopRouteDocument>,
    /// Algorithms proofs may be signed with (asymmetric only; default: ES256, ES384, EdDSA, PS256, PS384,
    /// PS512, RS256, RS384, RS512).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Oldest proof accepted, seconds after its `iat` (default 60).
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u32,
    /// How far in the future a proof's `iat` may be, seconds (default 5).
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u32,
    /// Live proofs the shared replay cache holds at least (default 65536, rounded up to a multiple of 4096);
    /// under more traffic than this, old proofs are refused early.
    #[serde(default = "default_replay_size")]
    pub replay_cache_size: usize,
    /// Server nonces (RFC 9449 §9): when present, every proof must carry a nonce the gateway issued.
    #[serde(default)]
    pub nonce: Option<NonceDocument>,
}

/// An origin for some routes, as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DpopRouteDocument {
    /// Path templates (as in policy rules).
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Envoy route names (`xds.route_name`).
    #[serde(default)]
    pub envoy_routes: Option<Vec<String>>,
    /// Envoy route tags (route metadata `filter_metadata.agent_iam.tag`).
    #[serde(default)]
    pub envoy_route_tags: Option<Vec<String>>,
    /// The origin of these routes.
    pub origin: String,
}

/// Server nonces as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NonceDocument {
    /// How long a nonce is accepted, seconds (default 300); a new one is issued every half of it.
    #[serde(default = "default_nonce_lifetime")]
    pub lifetime_seconds: u32,
    /// The secret nonces are made with, base64url, at least 32 bytes: give every replica of the gateway the
    /// same one. Without it, the workers of one Envoy share a random secret.
    #[serde(default)]
    pub secret: Option<String>,
}

fn default_max_age() -> u32 {
    60
}
fn default_skew() -> u32 {
    5
}
fn default_replay_size() -> usize {
    65_536
}
fn default_nonce_lifetime() -> u32 {
    300
}

/// Longest accepted proof age, seconds.
const MAX_AGE_SECONDS: u32 = 3600;
/// Longest accepted future skew, seconds.
const MAX_SKEW_SECONDS: u32 = 300;

/// Validates the section for these issuers: `None` when no issuer takes DPoP and the section is absent.
pub fn settings(
    doc: Option<&DpopDocument>,
    issuers: &[Issuer],
    token_sources: &[TokenSource],
) -> Result<Option<DpopSettings>, ConfigError> {
    let taking = issuers.iter().position(|i| i.dpop.accepts_dpop());
    let doc = match (doc, taking) {
        (None, None) => return Ok(None),
        (None, Some(i)) => {
            return Err(err(
                format!("issuers[{i}].dpop"),
                "needs the dpop section, with the gateway's external origin that proofs name",
            ));
        }
        (Some(_), None) => {
            return Err(err("dpop", "no issuer takes DPoP: set issuers[].dpop to \"allowed\" or \"required\""));
        }
        (Some(doc), Some(_)) => doc,
    };
    if !token_sources.iter().any(|s| matches!(s, TokenSource::Header { name, .. } if name == "authorization")) {
        return Err(err("dpop", "DPoP tokens come in the Authorization header: token_sources must include it"));
    }
    let origin = htu::normalise_origin(&doc.origin).map_err(|m| err("dpop.origin", m))?;
    let mut routes = Vec::with_capacity(doc.routes.len());
    for (i, r) in doc.routes.iter().enumerate() {
        let at = format!("dpop.routes[{i}]");
        let select = route_selector(&r.paths, &r.envoy_routes, &r.envoy_route_tags, &at, "the routes")?;
        let origin = htu::normalise_origin(&r.origin).map_err(|m| err(format!("{at}.origin"), m))?;
        routes.push(OriginRoute { select, origin });
    }
    let algorithms = match &doc.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) if list.is_empty() => {
            return Err(err("dpop.algorithms", "must not be empty (leave it out for all)"));
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, name) in list.iter().enumerate() {
                let alg = Algorithm::from_name(name).filter(|a| is_proof_algorithm(*a)).ok_or_else(|| {
                    err(
                        format!("dpop.algorithms[{i}]"),
                        format!("\"{name}\" is not an asymmetric JWS algorithm this gateway verifies (RFC 9449 §4.2)"),
                    )
                })?;
                if !out.contains(&alg) {
                    out.push(alg);
                }
            }
            out
        }
    };
    if !(1..=MAX_AGE_SECONDS).contains(&doc.max_age_seconds) {
        return Err(err("dpop.max_age_seconds", format!("must be between 1 and {MAX_AGE_SECONDS}")));
    }
    if doc.clock_skew_seconds > MAX_SKEW_SECONDS {
        return Err(err("dpop.clock_skew_seconds", format!("must be at most {MAX_SKEW_SECONDS}")));
    }
    let most = BUCKETS * MAX_SLOTS;
    if !(1..=most).contains(&doc.replay_cache_size) {
        return Err(err("dpop.replay_cache_size", format!("must be between 1 and {most}")));
    }
    let (nonce, nonce_secret) = match &doc.nonce {
        None => (None, None),
        Some(n) => {
            if !(2..=86_400).contains(&n.lifetime_seconds) {
                return Err(err("dpop.nonce.lifetime_seconds", "must be between 2 and 86400"));
            }
            let secret = match &n.secret {
                None => None,
                Some(text) => {
                    let bytes = crate::b64::decode(text.as_bytes())
                        .map_err(|_| err("dpop.nonce.secret", "must be base64url without padding"))?;
                    Some(NonceKey::new(&bytes).ok_or_else(|| {
                        err("dpop.nonce.secret", format!("must be at least {MIN_SECRET_BYTES} bytes"))
                    })?)
                }
            };
            (Some(NonceRules { lifetime: i64::from(n.lifetime_seconds) }), secret)
        }
    };
    Ok(Some(DpopSettings {
        rules: ProofRules {
            algorithms,
            max_age: i64::from(doc.max_age_seconds),
            future_skew: i64::from(doc.clock_skew_seconds),
        },
        origin,
        routes,
        replay: ReplayCache::with_capacity(doc.replay_cache_size),
        nonce,
        nonce_secret,
        bearer_accepted: issuers.iter().any(|i| i.dpop.accepts_bearer()),
    }))
}

/// RFC 9728 §2 for each MCP endpoint whose issuers take DPoP: `dpop_signing_alg_values_supported`, and
/// `dpop_bound_access_tokens_required` when every issuer whose tokens may name the endpoint requires DPoP.
/// An endpoint's issuers are those with its resource among their audiences (all issuers when none has).
pub fn advertise(endpoints: &mut [McpEndpoint], issuers: &[Issuer], dpop: &DpopSettings) {
    for endpoint in endpoints {
        let naming: Vec<&Issuer> = issuers.iter().filter(|i| i.audiences.contains(&endpoint.resource)).collect();
        let serving: Vec<&Issuer> = if naming.is_empty() { issuers.iter().collect() } else { naming };
        if !serving.iter().any(|i| i.dpop.accepts_dpop()) {
            continue;
        }
        let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(&endpoint.metadata) else { continue };
        let algs: Vec<&str> = dpop.rules.algorithms.iter().map(|a| a.name()).collect();
        doc.insert("dpop_signing_alg_values_supported".into(), algs.into());
        if serving.iter().all(|i| i.dpop == DpopMode::Required) {
            doc.insert("dpop_bound_access_tokens_required".into(), true.into());
            endpoint.dpop_only = true;
        }
        endpoint.metadata = Value::Object(doc).to_string();
    }
}
