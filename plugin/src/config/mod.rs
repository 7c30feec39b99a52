//! The plugin configuration: one JSON document (Envoy's `configuration` string, Istio's `pluginConfig`),
//! validated completely before anything uses it. Any problem rejects the whole document with the exact path
//! and reason, so Envoy keeps serving the last good configuration.

use crate::engine::{CryptoPreference, Engine, Mode, Settings, TokenSource};
use crate::policy::{Policy, PolicyDocument};
use crate::request::{MethodOverride, PathParameters};
use crate::token::crypto::HmacKey;
use crate::token::delegation::MAX_DEPTH as MAX_DELEGATION_DEPTH;
use crate::token::remote::RemoteJwksConfig;
use crate::token::spiffe::TrustDomain;
use crate::token::{self, Algorithm, Issuer, KeySet, Profile, Verifier};
use serde::Deserialize;
mod anomaly;
mod audit;
mod mcp;
mod revocation;
pub use anomaly::{AnomalyDocument, SignalDocument};
pub use audit::{AuditDocument, CheckpointDocument};
pub use mcp::{McpDocument, McpEndpointDocument};
pub use revocation::{ListDocument, PollDocument, PushDocument, RevocationDocument, SsfDocument, SubjectsDocument};
use std::fmt;

/// Largest clock skew an issuer may tolerate, seconds.
pub const MAX_CLOCK_SKEW_SECONDS: u32 = 300;
/// Default tolerated clock skew, seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u32 = 30;

/// A configuration that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the problem, e.g. `issuers[0].jwks.keys[1].crv` (empty for the whole document).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), message: message.into() }
}

/// The configuration document as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// Realm in `WWW-Authenticate` challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Longest token accepted, bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Trusted token issuers.
    pub issuers: Vec<IssuerDocument>,
    /// `auto` (Envoy's BoringSSL where its self-test passes, pure Rust elsewhere) or `pure-rust`.
    #[serde(default = "default_crypto")]
    pub crypto_backend: String,
    /// Verified tokens kept per worker (0 disables the cache).
    #[serde(default = "default_cache_size")]
    pub token_cache_size: usize,
    /// The access policy.
    pub policy: PolicyDocument,
    /// Where tokens come from (default: `Authorization: Bearer`).
    #[serde(default)]
    pub token_sources: Option<Vec<TokenSourceDocument>>,
    /// `enforce` (default) or `dry_run`.
    #[serde(default)]
    pub mode: Option<String>,
    /// How policy denials look.
    #[serde(default)]
    pub denials: DenialsDocument,
    /// What is forwarded upstream on allow.
    #[serde(default)]
    pub forward: ForwardDocument,
    /// How requests that upstreams read in more than one way are handled.
    #[serde(default)]
    pub request: RequestDocument,
    /// MCP endpoints: routes whose POST bodies are JSON-RPC messages policy decides on.
    #[serde(default)]
    pub mcp: Option<McpDocument>,
    /// The audit trail: one OCSF event per decision in filter state, for Envoy's access loggers.
    #[serde(default)]
    pub audit: Option<AuditDocument>,
    /// Continuous revocation: revocations written here, a fetched revocation list, a Shared Signals receiver.
    #[serde(default)]
    pub revocation: Option<RevocationDocument>,
    /// Per-agent anomaly detection: signals learnt from each agent's own traffic, and what each does.
    #[serde(default)]
    pub anomaly: Option<AnomalyDocument>,
}

/// Request handling as written.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestDocument {
    /// `reject` (default), `strip` or `keep`: segment parameters (`/admin;x=1`).
    #[serde(default)]
    pub path_parameters: Option<String>,
    /// `reject` (default), `strip` or `evaluate`: `X-HTTP-Method-Override` and friends, `_method`.
    #[serde(default)]
    pub method_override: Option<String>,
}

/// One token source as written: exactly one of `header` and `query`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenSourceDocument {
    /// Header name.
    #[serde(default)]
    pub header: Option<String>,
    /// Scheme prefix before the token, e.g. `"Bearer "` (matched case-insensitively).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Query parameter name.
    #[serde(default)]
    pub query: Option<String>,
}

/// Policy denials as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DenialsDocument {
    /// 403 (default) or 404.
    #[serde(default = "default_policy_status")]
    pub policy_status: u16,
    /// Whether the body names the deciding rule.
    #[serde(default = "yes")]
    pub expose_rule: bool,
}

impl Default for DenialsDocument {
    fn default() -> Self {
        DenialsDocument { policy_status: 403, expose_rule: true }
    }
}

/// Forwarding as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ForwardDocument {
    /// Forward the credential (the `Authorization` header or configured source) upstream.
    #[serde(default = "yes")]
    pub credential: bool,
    /// Top-level claims forwarded as `x-agent-iam-claim-<name>`.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Write the decision and the verified identity to Envoy filter state (`wasm.agent_iam.*`).
    #[serde(default)]
    pub filter_state: bool,
}

impl Default for ForwardDocument {
    fn default() -> Self {
        ForwardDocument { credential: true, claims: Vec::new(), filter_state: false }
    }
}

fn default_policy_status() -> u16 {
    403
}

fn yes() -> bool {
    true
}

fn settings(doc: &ConfigDocument, crypto: CryptoPreference) -> Result<Settings, ConfigError> {
    let token_sources = match &doc.token_sources {
        None => Settings::default().token_sources,
        Some(list) if list.is_empty() => {
            return Err(err("token_sources", "must not be empty (leave it out for Authorization: Bearer)"));
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, src) in list.iter().enumerate() {
                let at = |f: &str| format!("token_sources[{i}]{f}");
                let source = match (&src.header, &src.query, &src.prefix) {
                    (Some(h), None, prefix) => {
                        let name = h.to_ascii_lowercase();
                        if !crate::request::valid_header_name(&name)
                            || name.starts_with(crate::engine::IDENTITY_HEADER_PREFIX)
                        {
                            return Err(err(
                                at(".header"),
                                "must be a header name, and not one of the x-agent-iam-* headers the plugin sets",
                            ));
                        }
                        if let Some(p) = prefix
                            && (p.is_empty() || !p.bytes().all(|b| (0x20..0x7f).contains(&b)))
                        {
                            return Err(err(at(".prefix"), "must be non-empty printable ASCII, e.g. \"Bearer \""));
                        }
                        TokenSource::Header { name, prefix: prefix.clone() }
                    }
                    (None, Some(q), None)
                        if !q.is_empty() && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
                    {
                        TokenSource::Query { name: q.clone() }
                    }
                    (None, Some(_), None) => {
                        return Err(err(at(".query"), "must be a parameter name of letters, digits, '-', '_', '.'"));
                    }
                    (None, Some(_), Some(_)) => return Err(err(at(".prefix"), "applies only to header sources")),
                    _ => return Err(err(at(""), "give exactly one of header and query")),
                };
                if out.contains(&source) {
                    return Err(err(at(""), "duplicate token source"));
                }
                out.push(source);
            }
            out
        }
    };
    let mode = match doc.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("dry_run") => Mode::DryRun,
        Some(other) => {
            return Err(err("mode", format!("unknown mode \"{other}\" (expected \"enforce\" or \"dry_run\")")));
        }
    };
    let path_parameters = match doc.request.path_parameters.as_deref() {
        None | Some("reject") => PathParameters::Reject,
        Some("strip") => PathParameters::Strip,
        Some("keep") => PathParameters::Keep,
        Some(other) => {
            return Err(err(
                "request.path_parameters",
                format!("unknown value \"{other}\" (expected \"reject\", \"strip\" or \"keep\")"),
            ));
        }
    };
    let method_override = match doc.request.method_override.as_deref() {
        None | Some("reject") => MethodOverride::Reject,
        Some("strip") => MethodOverride::Strip,
        Some("evaluate") => MethodOverride::Evaluate,
        Some(other) => {
            return Err(err(
                "request.method_override",
                format!("unknown value \"{other}\" (expected \"reject\", \"strip\" or \"evaluate\")"),
            ));
        }
    };
    if !matches!(doc.denials.policy_status, 403 | 404) {
        return Err(err("denials.policy_status", "must be 403 or 404"));
    }
    let mut forward_claims: Vec<(String, String)> = Vec::new();
    for (i, claim) in doc.forward.claims.iter().enumerate() {
        if claim.is_empty()
            || claim.len() > 64
            || !claim.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(err(
                format!("forward.claims[{i}]"),
                "must be a top-level claim name of letters, digits, '-', '_'",
            ));
        }
        let header = format!("{}{}", crate::engine::CLAIM_HEADER_PREFIX, claim.to_ascii_lowercase().replace('_', "-"));
        if forward_claims.iter().any(|(_, h)| *h == header) {
            return Err(err(format!("forward.claims[{i}]"), format!("duplicate forwarded header \"{header}\"")));
        }
        forward_claims.push((claim.clone(), header));
    }
    let (revocations, mut revocation_sources) = match &doc.revocation {
        Some(r) => revocation::settings(r)?,
        None => Default::default(),
    };
    let anomaly = doc.anomaly.as_ref().map(anomaly::settings).transpose()?;
    if anomaly.as_ref().is_some_and(anomaly::quarantines) && revocation_sources.is_none() {
        // A quarantine is a revocation every worker must read, even without other sources.
        revocation_sources = Some(std::rc::Rc::new(revocation::shared_only(doc.revocation.as_ref())));
    }
    Ok(Settings {
        realm: doc.realm.clone(),
        crypto,
        cache_capacity: doc.token_cache_size,
        token_sources,
        mode,
        policy_denial_status: doc.denials.policy_status,
        expose_rule: doc.denials.expose_rule,
        forward_credential: doc.forward.credential,
        forward_claims,
        filter_state: doc.forward.filter_state,
        path_parameters,
        method_override,
        mcp: match &doc.mcp {
            Some(m) => mcp::endpoints(m)?,
            None => Vec::new(),
        },
        audit: doc.audit.as_ref().map(audit::settings).transpose()?,
        revocations,
        revocation_sources,
        anomaly,
    })
}

fn default_realm() -> String {
    "agent-iam".to_owned()
}

fn default_max_token_bytes() -> usize {
    token::DEFAULT_MAX_TOKEN_BYTES
}

fn default_crypto() -> String {
    "auto".to_owned()
}

fn default_cache_size() -> usize {
    crate::token::cache::DEFAULT_CAPACITY
}

/// Largest token cache, entries per worker.
pub const MAX_TOKEN_CACHE_SIZE: usize = 1 << 20;

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

/// Parses and validates a configuration document into a ready [`Engine`].
pub fn parse(bytes: &[u8]) -> Result<Engine, ConfigError> {
    // Strict first (duplicate keys are as dangerous in config as in tokens), then typed with paths.
    let value =
        crate::json::parse_value(bytes, 64).map_err(|e| match serde_json::from_slice::<serde_json::Value>(bytes) {
            Err(syntax) => err("", format!("configuration is not valid JSON: {syntax}")),
            Ok(_) => err("", format!("configuration JSON has a {e}")),
        })?;
    if !value.is_object() {
        return Err(err("", "configuration must be a JSON object"));
    }
    let doc: ConfigDocument = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        err(if path == "." { String::new() } else { path }, e.into_inner().to_string())
    })?;
    build(&doc)
}

/// Validates a typed document into a ready [`Engine`].
pub fn build(doc: &ConfigDocument) -> Result<Engine, ConfigError> {
    if doc.realm.is_empty() || !doc.realm.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        return Err(err("realm", "must be non-empty printable ASCII without '\"' or '\\'"));
    }
    if !(256..=64 * 1024).contains(&doc.max_token_bytes) {
        return Err(err("max_token_bytes", "must be between 256 and 65536"));
    }
    let crypto = match doc.crypto_backend.as_str() {
        "auto" => CryptoPreference::Auto,
        "pure-rust" => CryptoPreference::PureRust,
        other => {
            return Err(err(
                "crypto_backend",
                format!("unknown backend \"{other}\" (expected \"auto\" or \"pure-rust\")"),
            ));
        }
    };
    if doc.token_cache_size > MAX_TOKEN_CACHE_SIZE {
        return Err(err("token_cache_size", format!("must be at most {MAX_TOKEN_CACHE_SIZE}")));
    }
    if doc.issuers.is_empty() {
        return Err(err("issuers", "at least one issuer is required"));
    }
    let mut issuers = Vec::with_capacity(doc.issuers.len());
    for (i, d) in doc.issuers.iter().enumerate() {
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
        issuers.push(Issuer {
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
    let policy = Policy::compile(&doc.policy).map_err(|e| err(format!("policy.{}", e.path), e.message))?;
    let settings = settings(doc, crypto)?;
    Ok(Engine::new(Verifier::new(issuers, doc.max_token_bytes), policy, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::SigningKey;
    use serde_json::{Value, json};

    fn valid() -> Value {
        let key = SigningKey::from_seed(Algorithm::ES256, [3; 32]).unwrap();
        json!({
            "issuers": [{"issuer": "https://issuer.example", "audiences": ["api"], "algorithms": ["ES256"],
                         "jwks": {"keys": [key.public_jwk(Some("k1"))]}}],
            "policy": {"rules": [{"id": "r", "effect": "allow", "agents": ["*"]}]}
        })
    }

    fn error_of(doc: &Value) -> String {
        parse(doc.to_string().as_bytes()).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn accepts_a_valid_document() {
        assert!(parse(valid().to_string().as_bytes()).is_ok());
    }

    #[test]
    fn errors_carry_exact_paths() {
        let mut d = valid();
        d["issuers"][0]["algorithms"] = json!(["ES256", "none"]);
        assert!(
            error_of(&d).starts_with("issuers[0].algorithms[1]: unsupported algorithm \"none\""),
            "{}",
            error_of(&d)
        );

        let mut d = valid();
        d["issuers"][0]["jwks"]["keys"][0]["crv"] = json!("P-521");
        assert!(error_of(&d).starts_with("issuers[0].jwks.keys[0].crv:"), "{}", error_of(&d));

        let mut d = valid();
        d["issuers"][0]["audience"] = json!("api");
        assert!(error_of(&d).starts_with("issuers[0].audience: unknown field `audience`"), "{}", error_of(&d));

        let mut d = valid();
        d["policy"]["rules"][0]["agents"] = json!([]);
        assert!(error_of(&d).starts_with("policy.rules[0].agents:"), "{}", error_of(&d));

        let mut d = valid();
        d["issuers"][0]["clock_skew_seconds"] = json!(-1);
        assert!(error_of(&d).starts_with("issuers[0].clock_skew_seconds:"), "{}", error_of(&d));

        let mut d = valid();
        d["issuers"] = json!([]);
        assert!(error_of(&d).starts_with("issuers: at least one"), "{}", error_of(&d));
    }

    #[test]
    fn profiles_trust_domains_and_secrets_are_validated() {
        let svid = |extra: Value| {
            let mut d = valid();
            d["issuers"][0] = json!({"profile": "jwt-svid", "trust_domain": "trading.example", "audiences": ["api"],
                                     "algorithms": ["ES256"], "jwks": d["issuers"][0]["jwks"].clone()});
            if let (Some(i), Some(extra)) = (d["issuers"][0].as_object_mut(), extra.as_object()) {
                for (k, v) in extra {
                    i.insert(k.clone(), v.clone());
                }
            }
            d
        };
        assert!(parse(svid(json!({})).to_string().as_bytes()).is_ok());
        assert!(
            error_of(&svid(json!({"algorithms": ["ES256", "EdDSA"]})))
                .starts_with("issuers[0].algorithms[1]: JWT-SVIDs")
        );
        // HMAC never: a JWT-SVID is verified with the trust domain's public keys, even if a secret is given.
        for alg in ["HS256", "HS384", "HS512"] {
            let e = error_of(&svid(json!({"algorithms": ["ES256", alg],
                "hmac_secrets": [{"alg": alg, "kid": "h", "secret": crate::b64::encode(&[7u8; 64])}]})));
            assert!(e.starts_with("issuers[0]."), "{alg}: {e}");
        }
        assert!(error_of(&svid(json!({"trust_domain": "Trading.Example"}))).starts_with("issuers[0].trust_domain:"));
        assert!(error_of(&svid(json!({"profile": "jwt"}))).starts_with("issuers[0].trust_domain: applies only"));
        assert!(error_of(&svid(json!({"profile": "oidc"}))).starts_with("issuers[0].profile: unknown profile"));

        let mut d = valid();
        d["issuers"][0]["algorithms"] = json!(["ES256", "HS256"]);
        assert!(error_of(&d).starts_with("issuers[0].algorithms[1]: HS256 needs a secret"), "{}", error_of(&d));
        d["issuers"][0]["hmac_secrets"] = json!([{"alg": "HS256", "kid": "h", "secret": "c2hvcnQ"}]);
        assert!(error_of(&d).starts_with("issuers[0].hmac_secrets[0].secret:"), "{}", error_of(&d));
        assert!(!error_of(&d).contains("c2hvcnQ"), "the secret must never be echoed");
        d["issuers"][0]["hmac_secrets"][0]["secret"] = json!(crate::b64::encode(&[7u8; 32]));
        assert!(parse(d.to_string().as_bytes()).is_ok(), "{}", error_of(&d));
        let extra = json!({"alg": "HS512", "secret": crate::b64::encode(&[7u8; 64])});
        d["issuers"][0]["hmac_secrets"].as_array_mut().unwrap().push(extra);
        assert!(error_of(&d).starts_with("issuers[0].hmac_secrets[1].alg: HS512 is not in"), "{}", error_of(&d));
    }

    #[test]
    fn rejects_non_json_duplicates_and_non_objects() {
        assert!(parse(b"{").unwrap_err().message.starts_with("configuration is not valid JSON"));
        assert!(parse(b"[]").unwrap_err().message.contains("must be a JSON object"));
        let dup = br#"{"realm":"a","realm":"b","issuers":[],"policy":{"rules":[]}}"#;
        assert!(parse(dup).unwrap_err().message.contains("duplicate member"));
    }
}
