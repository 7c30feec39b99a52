//! The `issuers` section: every trusted issuer, its keys (inline, fetched, HMAC secrets or Envoy's
//! `jwt_authn`), its profile and its rules, validated with exact paths into the verifier's [`Issuer`]s.

use super::{ConfigError, DEFAULT_CLOCK_SKEW_SECONDS, MAX_CLOCK_SKEW_SECONDS, MAX_DELEGATION_DEPTH, err};
use crate::token::crypto::HmacKey;
use crate::token::dpop::DpopMode;
use crate::token::remote::RemoteJwksConfig;
use crate::token::spiffe::TrustDomain;
use crate::token::{self, Algorithm, Issuer, KeySet, Profile};
use serde::Deserialize;
use std::fmt;

fn default_skew() -> u32 {
    DEFAULT_CLOCK_SKEW_SECONDS
}

/// One trusted issuer as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IssuerDocument {
    /// Exact `iss` value (optional for `jwt-svid` issuers, which are found by `trust_domain`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `jwt` (default), `jwt-svid`, `at+jwt` or `txn-token`.
    #[serde(default)]
    pub profile: Option<String>,
    /// SPIFFE trust domain (required for, and only for, `jwt-svid`).
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Allowed JWS algorithms.
    pub algorithms: Vec<String>,
    /// Inline JWKS (public keys).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Mutual-TLS binding of every token of this issuer.
    #[serde(default)]
    pub mtls: Option<crate::policy::MtlsDocument>,
    /// A JWKS fetched through an Envoy cluster, instead of `jwks`.
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwksDocument>,
    /// Shared secrets for HS256/384/512.
    #[serde(default)]
    pub hmac_secrets: Vec<HmacSecretDocument>,
    /// Envoy's `jwt_authn` filter verifies this issuer's signatures before the plugin runs.
    #[serde(default)]
    pub jwt_authn: Option<JwtAuthnDocument>,
    /// Claims every token must carry.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Revoked token ids (`jti` values).
    #[serde(default)]
    pub revoked_jti: Vec<String>,
    /// Tolerated clock difference, seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u32,
    /// Longest accepted `exp - iat`, seconds.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u32>,
    /// DPoP (RFC 9449): `off` (default: bearer tokens only), `allowed` (bound tokens with `Authorization: DPoP`
    /// and a proof, unbound ones as bearer) or `required` (bound tokens with proofs only).
    #[serde(default)]
    pub dpop: Option<String>,
    /// Most nested `act` actors a token may carry (RFC 8693 delegation).
    #[serde(default = "default_delegation_depth")]
    pub max_delegation_depth: usize,
}

/// Trust in Envoy's `jwt_authn` filter as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwtAuthnDocument {
    /// The provider's `forward_payload_header`.
    pub payload_header: String,
}

/// A remote JWKS as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksDocument {
    /// Envoy cluster to call.
    pub cluster: String,
    /// Path of the JWKS, e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// `:authority` of the call (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Call timeout, milliseconds.
    #[serde(default = "default_jwks_timeout_ms")]
    pub timeout_ms: u64,
    /// Refresh period when the response has no `Cache-Control: max-age`, seconds.
    #[serde(default = "default_jwks_refresh")]
    pub refresh_seconds: u32,
    /// Bounds applied to `max-age`, seconds; the minimum also caps the retry backoff.
    #[serde(default = "default_jwks_min_refresh")]
    pub min_refresh_seconds: u32,
    /// Upper bound of the refresh period, seconds.
    #[serde(default = "default_jwks_max_refresh")]
    pub max_refresh_seconds: u32,
    /// Least time between refetches triggered by tokens with an unknown `kid`, seconds.
    #[serde(default = "default_jwks_kid_refetch")]
    pub unknown_kid_refetch_seconds: u32,
    /// How long the last good key set may be used after it was fetched, seconds.
    #[serde(default = "default_jwks_max_stale")]
    pub max_stale_seconds: u32,
    /// Largest accepted response body, bytes.
    #[serde(default = "default_jwks_max_bytes")]
    pub max_bytes: usize,
    /// How long a request waits for a key set (before the first fetch, or while stale), milliseconds;
    /// then 503.
    #[serde(default = "default_jwks_wait_ms")]
    pub wait_timeout_ms: u64,
}

fn default_jwks_timeout_ms() -> u64 {
    2000
}
fn default_jwks_refresh() -> u32 {
    300
}
fn default_jwks_min_refresh() -> u32 {
    30
}
fn default_jwks_max_refresh() -> u32 {
    3600
}
fn default_jwks_kid_refetch() -> u32 {
    30
}
fn default_jwks_max_stale() -> u32 {
    86_400
}
fn default_jwks_max_bytes() -> usize {
    64 * 1024
}
fn default_jwks_wait_ms() -> u64 {
    3000
}

fn remote_jwks(d: &RemoteJwksDocument, at: &str) -> Result<RemoteJwksConfig, ConfigError> {
    let here = |f: &str| format!("{at}.{f}");
    let token = |s: &str| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| (0x21..0x7f).contains(&b));
    if !token(&d.cluster) {
        return Err(err(here("cluster"), "must be an Envoy cluster name (visible ASCII)"));
    }
    if !d.path.starts_with('/') || !token(&d.path) {
        return Err(err(here("path"), "must be an origin-form path starting with '/'"));
    }
    let authority = d.authority.clone().unwrap_or_else(|| d.cluster.clone());
    if crate::request::canonical_host(&authority).is_err() {
        return Err(err(here("authority"), "must be a host name, optionally with a port"));
    }
    if !(1..=60_000).contains(&d.timeout_ms) {
        return Err(err(here("timeout_ms"), "must be between 1 and 60000"));
    }
    if d.min_refresh_seconds == 0 {
        return Err(err(here("min_refresh_seconds"), "must be at least 1"));
    }
    if d.max_refresh_seconds > 7 * 86_400 {
        return Err(err(here("max_refresh_seconds"), "must be at most 604800 (a week)"));
    }
    if !(d.min_refresh_seconds <= d.refresh_seconds && d.refresh_seconds <= d.max_refresh_seconds) {
        return Err(err(here("refresh_seconds"), "must lie between min_refresh_seconds and max_refresh_seconds"));
    }
    if d.max_stale_seconds < d.max_refresh_seconds {
        return Err(err(
            here("max_stale_seconds"),
            "must be at least max_refresh_seconds, or keys would go stale before their refresh",
        ));
    }
    if !(1024..=1024 * 1024).contains(&d.max_bytes) {
        return Err(err(here("max_bytes"), "must be between 1024 and 1048576"));
    }
    if d.wait_timeout_ms > 30_000 {
        return Err(err(here("wait_timeout_ms"), "must be at most 30000"));
    }
    Ok(RemoteJwksConfig {
        cluster: d.cluster.clone(),
        path: d.path.clone(),
        authority,
        timeout_ms: d.timeout_ms,
        refresh: i64::from(d.refresh_seconds),
        min_refresh: i64::from(d.min_refresh_seconds),
        max_refresh: i64::from(d.max_refresh_seconds),
        unknown_kid_interval: i64::from(d.unknown_kid_refetch_seconds),
        max_stale: i64::from(d.max_stale_seconds),
        max_bytes: d.max_bytes,
        wait_timeout_ms: d.wait_timeout_ms,
    })
}

/// A shared HMAC secret as written. The secret never appears in `Debug` output or errors.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HmacSecretDocument {
    /// `HS256`, `HS384` or `HS512`.
    pub alg: String,
    /// Key id tokens name it by, if any.
    #[serde(default)]
    pub kid: Option<String>,
    /// The secret, base64url without padding.
    pub secret: String,
}

impl fmt::Debug for HmacSecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSecretDocument").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn default_delegation_depth() -> usize {
    crate::token::delegation::DEFAULT_MAX_DEPTH
}

/// Validates the issuers.
pub(super) fn issuers(docs: &[IssuerDocument]) -> Result<Vec<Issuer>, ConfigError> {
    if docs.is_empty() {
        return Err(err("issuers", "at least one issuer is required"));
    }
    let mut issuers = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        let at = |field: &str| format!("issuers[{i}].{field}");
        let profile = match &d.profile {
            None => Profile::Jwt,
            Some(name) => Profile::from_name(name).ok_or_else(|| {
                err(at("profile"), format!("unknown profile \"{name}\" (expected jwt, jwt-svid, at+jwt or txn-token)"))
            })?,
        };
        let trust_domain = match (&d.trust_domain, profile) {
            (Some(td), Profile::JwtSvid) => {
                Some(TrustDomain::parse(td).map_err(|e| err(at("trust_domain"), e.to_string()))?)
            }
            (None, Profile::JwtSvid) => return Err(err(at("trust_domain"), "is required for the jwt-svid profile")),
            (Some(_), _) => return Err(err(at("trust_domain"), "applies only to the jwt-svid profile")),
            (None, _) => None,
        };
        let (name, iss_required) = match (&d.issuer, &trust_domain) {
            (Some(iss), _) if iss.is_empty() => return Err(err(at("issuer"), "must not be empty")),
            (Some(iss), _) => (iss.clone(), true),
            (None, Some(td)) => (td.id().as_str().to_owned(), false),
            (None, None) => return Err(err(at("issuer"), "is required (or a trust_domain for jwt-svid)")),
        };
        if issuers.iter().any(|prev: &Issuer| *prev.issuer == *name) {
            return Err(err(at("issuer"), format!("duplicate issuer \"{name}\"")));
        }
        if let Some(td) = &trust_domain
            && issuers.iter().any(|prev: &Issuer| prev.trust_domain.as_ref() == Some(td))
        {
            return Err(err(at("trust_domain"), format!("duplicate trust domain \"{}\"", td.as_str())));
        }
        if d.audiences.is_empty() || d.audiences.iter().any(String::is_empty) {
            return Err(err(at("audiences"), "must list at least one non-empty audience"));
        }
        if d.algorithms.is_empty() {
            return Err(err(at("algorithms"), "must list at least one algorithm"));
        }
        let mut algorithms = Vec::with_capacity(d.algorithms.len());
        for (j, name) in d.algorithms.iter().enumerate() {
            let path = format!("issuers[{i}].algorithms[{j}]");
            let alg = Algorithm::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                err(&path, format!("unsupported algorithm \"{name}\" (supported: {})", known.join(", ")))
            })?;
            if profile == Profile::JwtSvid && (alg.is_hmac() || alg == Algorithm::EdDSA) {
                return Err(err(&path, format!("JWT-SVIDs are signed with RS, ES or PS algorithms, not {name}")));
            }
            if alg.is_hmac() && !d.hmac_secrets.iter().any(|s| s.alg == *name) {
                return Err(err(&path, format!("{name} needs a secret in hmac_secrets")));
            }
            algorithms.push(alg);
        }
        let remote = match (&d.remote_jwks, &d.jwks) {
            (Some(_), Some(_)) => return Err(err(at("remote_jwks"), "give either jwks or remote_jwks, not both")),
            (Some(_), None) if !d.hmac_secrets.is_empty() => {
                return Err(err(at("remote_jwks"), "HMAC secrets cannot be combined with a fetched key set"));
            }
            (Some(r), None) => Some(remote_jwks(r, &at("remote_jwks"))?),
            (None, _) => None,
        };
        let mut keys = match &d.jwks {
            Some(jwks) => KeySet::from_value(jwks).map_err(|e| {
                err(if e.path.is_empty() { at("jwks") } else { format!("issuers[{i}].jwks.{}", e.path) }, e.message)
            })?,
            None if d.hmac_secrets.is_empty() && remote.is_none() && d.jwt_authn.is_none() => {
                return Err(err(at("jwks"), "is required (or remote_jwks, hmac_secrets or jwt_authn)"));
            }
            None => KeySet::default(),
        };
        for (j, secret) in d.hmac_secrets.iter().enumerate() {
            let at = |field: &str| format!("issuers[{i}].hmac_secrets[{j}].{field}");
            let alg = Algorithm::from_name(&secret.alg)
                .filter(|a| a.is_hmac())
                .ok_or_else(|| err(at("alg"), "must be HS256, HS384 or HS512"))?;
            if !algorithms.contains(&alg) {
                return Err(err(at("alg"), format!("{} is not in this issuer's algorithms", alg.name())));
            }
            let bytes = crate::b64::decode(secret.secret.as_bytes())
                .map_err(|_| err(at("secret"), "must be base64url without padding"))?;
            let key = HmacKey::new(alg, &bytes).map_err(|e| err(at("secret"), e.to_string()))?;
            keys.add_secret(secret.kid.as_deref(), key).map_err(|e| err(at(&e.path), e.message))?;
        }
        let jwt_authn_payload_header = match &d.jwt_authn {
            None => None,
            Some(j) => {
                let name = &j.payload_header;
                if !crate::request::valid_header_name(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(err(at("jwt_authn.payload_header"), "must be a lower-case HTTP header name"));
                }
                if crate::engine::is_identity_header(name) {
                    return Err(err(
                        at("jwt_authn.payload_header"),
                        format!("must not be a header the plugin sets ({}*)", crate::engine::IDENTITY_HEADER_PREFIX),
                    ));
                }
                Some(name.clone())
            }
        };
        if d.required_claims.iter().any(String::is_empty) {
            return Err(err(at("required_claims"), "claim names must not be empty"));
        }
        if d.clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
            return Err(err(at("clock_skew_seconds"), format!("must be at most {MAX_CLOCK_SKEW_SECONDS}")));
        }
        if d.max_delegation_depth > MAX_DELEGATION_DEPTH {
            return Err(err(at("max_delegation_depth"), format!("must be at most {MAX_DELEGATION_DEPTH}")));
        }
        if d.max_lifetime_seconds == Some(0) {
            return Err(err(at("max_lifetime_seconds"), "must be positive"));
        }
        let dpop = match d.dpop.as_deref() {
            None => DpopMode::Off,
            Some(name) => DpopMode::from_name(name).ok_or_else(|| {
                err(at("dpop"), format!("unknown value \"{name}\" (expected \"off\", \"allowed\" or \"required\")"))
            })?,
        };
        if dpop.accepts_dpop() && algorithms.iter().all(|a| a.is_hmac()) {
            // A bound token names its holder's key; one signed with a shared secret binds nothing it could not forge.
            return Err(err(at("dpop"), "DPoP needs an issuer that signs with a public key, not only HMAC secrets"));
        }
        issuers.push(Issuer {
            dpop,
            issuer: name.into(),
            iss_required,
            profile,
            trust_domain,
            required_claims: d.required_claims.clone(),
            revoked_jti: {
                let mut ids = d.revoked_jti.clone();
                ids.sort();
                ids.dedup();
                ids
            },
            audiences: d.audiences.clone(),
            algorithms,
            keys,
            clock_skew: i64::from(d.clock_skew_seconds),
            max_lifetime: d.max_lifetime_seconds.map(i64::from),
            max_delegation_depth: d.max_delegation_depth,
            jwt_authn_payload_header,
            remote,
            binding: match &d.mtls {
                None => token::Binding::default(),
                Some(m) => {
                    let binding = token::Binding {
                        actor_is_peer: m.actor_is_peer == Some(true),
                        certificate_bound: m.certificate_bound == Some(true),
                    };
                    if !binding.any() || m.actor_is_peer == Some(false) || m.certificate_bound == Some(false) {
                        return Err(err(
                            at("mtls"),
                            "set actor_is_peer and/or certificate_bound to true (false is meaningless)",
                        ));
                    }
                    binding
                }
            },
        });
    }
    Ok(issuers)
}
