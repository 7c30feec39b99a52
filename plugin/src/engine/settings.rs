//! The response and forwarding settings of a configuration, as [`crate::config`] builds them.

use crate::request::{MethodOverride, PathParameters};

/// Which signature backend the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoPreference {
    /// Envoy's BoringSSL (the `verify_signature` foreign function) for every algorithm that passes the
    /// start-up self-test, pure Rust for the rest.
    Auto,
    /// Pure Rust inside the VM for everything.
    PureRust,
}

/// Where a request's token may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header (lower-case name), with an optional scheme prefix matched case-insensitively (`Bearer `).
    Header {
        /// Header name.
        name: String,
        /// Prefix before the token, including its separator.
        prefix: Option<String>,
    },
    /// A query parameter (only when configured: tokens in URLs end up in logs).
    Query {
        /// Parameter name.
        name: String,
    },
}

/// Enforce decisions, or only record them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deny what policy does not allow.
    Enforce,
    /// Evaluate and record everything, block nothing: a would-be denial is forwarded with
    /// [`DRY_RUN_HEADER`] and logged.
    DryRun,
}

/// Response and forwarding settings of a configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Realm of `WWW-Authenticate` challenges.
    pub realm: String,
    /// Signature backend preference.
    pub crypto: CryptoPreference,
    /// Verified tokens cached per worker.
    pub cache_capacity: usize,
    /// Where tokens come from; more than one credential in a request is a 400.
    pub token_sources: Vec<TokenSource>,
    /// Enforce or dry-run.
    pub mode: Mode,
    /// Status of a policy denial: 403, or 404 to hide what exists.
    pub policy_denial_status: u16,
    /// Whether a policy denial names the deciding rule in its body.
    pub expose_rule: bool,
    /// Whether the credential is forwarded upstream (removed when false).
    pub forward_credential: bool,
    /// Claims forwarded as `x-agent-iam-claim-<name>` headers: (claim, header name).
    pub forward_claims: Vec<(String, String)>,
    /// Whether the filter writes each decision and identity to Envoy filter state, for access logs and
    /// later filters.
    pub filter_state: bool,
    /// What segment parameters (`/admin;x=1`) mean.
    pub path_parameters: PathParameters,
    /// What a method override (`X-HTTP-Method-Override`, `_method`) does.
    pub method_override: MethodOverride,
    /// MCP endpoints: requests to them carry a JSON-RPC message in their body.
    pub mcp: Vec<super::McpEndpoint>,
    /// Whether the headers of an MCP request wait for the decision on its body (`mcp.hold_headers`, for hosts
    /// that hand a plugin the body while the headers wait): a refused call then never reaches the upstream.
    pub mcp_hold_headers: bool,
    /// The audit trail, when configured.
    pub audit: Option<crate::audit::Settings>,
    /// Revocations written in the configuration (`revocation.selectors`), checked with the shared ones.
    pub revocations: std::rc::Rc<crate::revocation::RevocationSet>,
    /// Where shared revocations come from (`revocation.list`, `revocation.ssf`), if anywhere.
    pub revocation_sources: Option<std::rc::Rc<crate::revocation::sources::Sources>>,
    /// Per-agent anomaly detection (`anomaly`), if configured.
    pub anomaly: Option<crate::anomaly::Settings>,
    /// DPoP proofs (`dpop`), when some issuer takes them.
    pub dpop: Option<std::rc::Rc<super::DpopSettings>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            realm: "agent-iam".into(),
            crypto: CryptoPreference::Auto,
            cache_capacity: crate::token::cache::DEFAULT_CAPACITY,
            token_sources: vec![TokenSource::Header { name: "authorization".into(), prefix: Some("Bearer ".into()) }],
            mode: Mode::Enforce,
            policy_denial_status: 403,
            expose_rule: true,
            forward_credential: true,
            forward_claims: Vec::new(),
            filter_state: false,
            path_parameters: PathParameters::default(),
            method_override: MethodOverride::default(),
            mcp: Vec::new(),
            mcp_hold_headers: false,
            audit: None,
            revocations: Default::default(),
            revocation_sources: None,
            anomaly: None,
            dpop: None,
        }
    }
}
