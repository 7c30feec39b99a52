//! The plugin configuration: one JSON document (Envoy's `configuration` string, Istio's `pluginConfig`),
//! validated completely before anything uses it. Any problem rejects the whole document with the exact path
//! and reason, so Envoy keeps serving the last good configuration.

use crate::engine::{CryptoPreference, Engine, Mode, Settings, TokenSource};
use crate::policy::{Policy, PolicyDocument};
use crate::request::{MethodOverride, PathParameters};
use crate::token::delegation::MAX_DEPTH as MAX_DELEGATION_DEPTH;
use crate::token::{self, Verifier};
use serde::Deserialize;
mod anomaly;
mod audit;
mod dpop;
mod issuers;
mod mcp;
mod revocation;
pub use anomaly::{AnomalyDocument, SignalDocument};
pub use audit::{AuditDocument, CheckpointDocument};
pub use dpop::{DpopDocument, DpopRouteDocument, NonceDocument};
pub use issuers::{HmacSecretDocument, IssuerDocument, JwtAuthnDocument, RemoteJwksDocument};
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
    /// DPoP (RFC 9449) proofs, for the issuers whose `dpop` is `allowed` or `required`.
    #[serde(default)]
    pub dpop: Option<DpopDocument>,
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
        mcp_hold_headers: doc.mcp.as_ref().is_some_and(|m| m.hold_headers),
        audit: doc.audit.as_ref().map(audit::settings).transpose()?,
        revocations,
        revocation_sources,
        anomaly,
        dpop: None,
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
    let issuers = issuers::issuers(&doc.issuers)?;
    let policy = Policy::compile(&doc.policy).map_err(|e| err(format!("policy.{}", e.path), e.message))?;
    let mut settings = settings(doc, crypto)?;
    if let Some(dpop) = dpop::settings(doc.dpop.as_ref(), &issuers, &settings.token_sources)? {
        dpop::advertise(&mut settings.mcp, &issuers, &dpop);
        settings.dpop = Some(std::rc::Rc::new(dpop));
    }
    Ok(Engine::new(Verifier::new(issuers, doc.max_token_bytes), policy, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::SigningKey;
    use crate::token::Algorithm;
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
