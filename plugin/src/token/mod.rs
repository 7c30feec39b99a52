//! Agent token verification: decide, for any bytes a client sends, whether they are a valid token of a
//! trusted issuer for this audience, and who the agent is.
//!
//! Order matters: the size cap comes before any parsing; the issuer is chosen by `iss` before a key is;
//! the signature is checked before any claim is believed.

pub mod cache;
pub mod claims;
pub mod crypto;
pub mod delegation;
pub mod dpop;
pub mod error;
pub mod host_crypto;
pub mod jwk;
pub mod jws;
pub mod profile;
pub mod remote;
pub mod spiffe;
pub mod statement;

pub use crypto::{Algorithm, CryptoBackend, PublicKey, PureRust};
pub use delegation::DelegationChain;
pub use error::TokenError;
pub use jwk::KeySet;
pub use profile::Profile;
use spiffe::{SpiffeId, TrustDomain};

use claims::{Claim, Claims};
use std::sync::Arc;

/// Default cap on a token's length in bytes, checked before anything else (CVE-2025-30204).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A trusted token issuer, validated.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The exact `iss` value. For a JWT-SVID issuer without one, `iss` is not checked and the trust domain's
    /// SPIFFE ID (`spiffe://<trust domain>`) stands for the issuer in decisions and headers.
    pub issuer: Arc<str>,
    /// Whether tokens must carry `iss` equal to [`Issuer::issuer`] (always, except JWT-SVID issuers
    /// configured by trust domain alone).
    pub iss_required: bool,
    /// The profile its tokens follow.
    pub profile: Profile,
    /// The SPIFFE trust domain (JWT-SVID issuers): keys are chosen by the trust domain of `sub`.
    pub trust_domain: Option<TrustDomain>,
    /// Claims every token must carry (any value but null).
    pub required_claims: Vec<String>,
    /// Revoked token ids (`jti`), sorted for binary search. Changing the list means a new configuration, and
    /// so a new engine with an empty token cache: a revoked token is never answered from the cache.
    pub revoked_jti: Vec<String>,
    /// Accepted `aud` values; at least one.
    pub audiences: Vec<String>,
    /// Allowed algorithms; at least one. Never taken from the token.
    pub algorithms: Vec<Algorithm>,
    /// The issuer's keys (for a remote key set: the last good one, empty before the first fetch).
    pub keys: KeySet,
    /// Where the keys come from when they are fetched, not configured inline.
    pub remote: Option<remote::RemoteJwksConfig>,
    /// Mutual-TLS binding every token of this issuer must satisfy.
    pub binding: Binding,
    /// Whether its tokens come with DPoP proofs (RFC 9449): never, either way, or always.
    pub dpop: dpop::DpopMode,
    /// Tolerated clock difference, seconds.
    pub clock_skew: i64,
    /// Longest accepted `exp - iat`, seconds.
    pub max_lifetime: Option<i64>,
    /// Most `act` actors a token may carry.
    pub max_delegation_depth: usize,
    /// The header in which Envoy's `jwt_authn` filter, configured before this plugin, forwards the payload of
    /// the token it verified (`forward_payload_header`). A token whose payload segment equals that header's
    /// single value is believed without checking its signature again; every other check still applies.
    pub jwt_authn_payload_header: Option<String>,
}

/// How an issuer's tokens are bound to the mutual-TLS connection they arrive on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binding {
    /// The agent (current actor, or `sub`) must equal the peer certificate's URI SAN.
    pub actor_is_peer: bool,
    /// `cnf.x5t#S256` must equal the peer certificate's SHA-256 digest (RFC 8705).
    pub certificate_bound: bool,
}

impl Binding {
    /// Whether any binding is required.
    pub fn any(&self) -> bool {
        self.actor_is_peer || self.certificate_bound
    }

    /// Checks a verified token against the peer (URI SAN, hex SHA-256 of the certificate).
    pub fn check(&self, token: &VerifiedToken, uri_san: Option<&str>, digest: Option<&str>) -> Result<(), TokenError> {
        if self.actor_is_peer && uri_san != Some(token.agent()) {
            return Err(TokenError::NotBound);
        }
        if self.certificate_bound && digest.and_then(|d| claims::certificate_bound(&token.claims, d)) != Some(true) {
            return Err(TokenError::NotBound);
        }
        Ok(())
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The issuer that vouched for it.
    pub issuer: Arc<str>,
    /// The subject, every actor, current first, and `may_act`.
    pub chain: DelegationChain,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// `exp + skew`: the first second at which this token is refused. Caches must not outlive it.
    pub valid_until: i64,
    /// Every claim, for policy conditions and forwarding (the map is built when first read).
    pub claims: Claims,
}

impl VerifiedToken {
    /// `sub`: the subject, who the token is about (a human or the originating service).
    pub fn subject(&self) -> &str {
        self.chain.subject()
    }

    /// The current actor: the outermost `act.sub` when the token carries delegation (RFC 8693 §4.1),
    /// otherwise the subject itself. This is the agent presenting the token.
    pub fn agent(&self) -> &str {
        self.chain.agent()
    }
}

/// Verifies tokens against a fixed set of issuers.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuers: Vec<Issuer>,
    max_token_bytes: usize,
}

impl Verifier {
    /// A verifier for these issuers (already validated: non-empty audiences and algorithms).
    pub fn new(issuers: Vec<Issuer>, max_token_bytes: usize) -> Verifier {
        Verifier { issuers, max_token_bytes }
    }

    /// The configured issuers.
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// The same verifier with new keys for issuer `index` (a fetched key set; empty when none is usable).
    pub fn with_keys(&self, index: usize, keys: KeySet) -> Verifier {
        let mut v = self.clone();
        if let Some(issuer) = v.issuers.get_mut(index) {
            issuer.keys = keys;
        }
        v
    }

    /// The index of the issuer a token claims to come from, if its keys are fetched remotely: to refetch on
    /// an unknown `kid`, or to wait for a first key set. Parses the token again (failure paths only).
    pub fn remote_issuer_of(&self, token: &[u8]) -> Option<usize> {
        if token.len() > self.max_token_bytes {
            return None;
        }
        let jws = jws::parse(token).ok()?;
        let issuer = self.select_issuer(&jws.claims.registered()).ok()?;
        let index = self.issuers.iter().position(|i| std::ptr::eq(i, issuer))?;
        issuer.remote.is_some().then_some(index)
    }

    /// The issuer whose keys may verify these (not yet verified) claims: by exact `iss` first; otherwise, for a
    /// SPIFFE `sub`, the JWT-SVID issuer of its trust domain. A present `iss` of the wrong type, or one that a
    /// trust-domain issuer does not expect, is refused rather than ignored.
    fn select_issuer(&self, claims: &claims::Registered<'_>) -> Result<&Issuer, TokenError> {
        let iss = match claims.iss.map(Claim::as_str) {
            None => None,
            Some(Some(s)) if !s.is_empty() => Some(s),
            Some(_) => return Err(TokenError::InvalidClaim("iss")),
        };
        if let Some(iss) = iss
            && let Some(issuer) = self.issuers.iter().find(|i| i.iss_required && *i.issuer == *iss)
        {
            return Ok(issuer);
        }
        let td = claims
            .sub
            .and_then(Claim::as_str)
            .and_then(|sub| SpiffeId::parse(sub).ok())
            .map(|id| id.trust_domain().clone());
        let by_domain = td.and_then(|td| {
            self.issuers.iter().find(|i| i.profile == Profile::JwtSvid && i.trust_domain.as_ref() == Some(&td))
        });
        match (by_domain, iss) {
            // Configured by trust domain alone: SPIFFE makes `iss` optional, so whatever it says is not checked.
            (Some(issuer), _) if !issuer.iss_required => Ok(issuer),
            (_, None) => Err(TokenError::MissingClaim("iss")),
            _ => Err(TokenError::UnknownIssuer),
        }
    }

    /// Verifies `token` at `now` (seconds since the epoch), checking every signature itself.
    pub fn verify(&self, token: &[u8], now: i64, crypto: &dyn CryptoBackend) -> Result<VerifiedToken, TokenError> {
        self.verify_with(token, now, crypto, &|_| None)
    }

    /// [`Verifier::verify`], where `header` gives the single value of a request header (`None` when absent or
    /// repeated): issuers that trust Envoy's `jwt_authn` read the payload it vouched for from there.
    pub fn verify_with<'h>(
        &self,
        token: &[u8],
        now: i64,
        crypto: &dyn CryptoBackend,
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let mut buf = jws::DecodeBuf::new();
        let jws = jws::parse_in(token, &mut buf)?;
        let registered = jws.claims.registered();
        let issuer = self.select_issuer(&registered)?;
        if !issuer.algorithms.contains(&jws.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let attested = issuer
            .jwt_authn_payload_header
            .as_deref()
            .and_then(header)
            .is_some_and(|forwarded| attests(forwarded, jws.payload_b64));
        if !attested {
            self.check_signature(issuer, &jws, crypto)?;
        }
        let expires_at = registered.check_times(now, issuer.clock_skew, issuer.max_lifetime)?;
        registered.check_audience(&issuer.audiences)?;
        issuer.profile.check(jws.typ.as_deref(), &registered, issuer.trust_domain.as_ref())?;
        if !issuer.revoked_jti.is_empty()
            && let Some(jti) = registered.jti.and_then(Claim::as_str)
            && issuer.revoked_jti.binary_search_by(|revoked| revoked.as_str().cmp(jti)).is_ok()
        {
            return Err(TokenError::Revoked);
        }
        for name in &issuer.required_claims {
            if jws.claims.get(name).is_none_or(Claim::is_null) {
                return Err(TokenError::MissingRequiredClaim);
            }
        }
        let chain = DelegationChain::from_registered(&registered, issuer.max_delegation_depth)?;
        Ok(VerifiedToken {
            issuer: issuer.issuer.clone(),
            chain,
            expires_at,
            valid_until: expires_at + issuer.clock_skew,
            claims: jws.claims,
        })
    }

    fn check_signature(
        &self,
        issuer: &Issuer,
        jws: &jws::Jws<'_, '_>,
        crypto: &dyn CryptoBackend,
    ) -> Result<(), TokenError> {
        if issuer.jwt_authn_payload_header.is_some() && issuer.keys.is_empty() && issuer.remote.is_none() {
            // No keys of its own: jwt_authn is the only way such a token can be verified.
            return Err(TokenError::NotAttested);
        }
        if issuer.remote.is_some() && issuer.keys.is_empty() {
            return Err(TokenError::KeysUnavailable);
        }
        let mut candidates = issuer.keys.candidates(jws.kid.as_deref(), jws.alg).peekable();
        if candidates.peek().is_none() {
            return Err(TokenError::UnknownKey);
        }
        if !candidates.any(|k| crypto.verify(jws.alg, &k.key, jws.signing_input, &jws.signature)) {
            return Err(TokenError::BadSignature);
        }
        Ok(())
    }
}

/// Whether `jwt_authn`'s forwarded payload header is this token's payload segment. `jwt_authn` forwards the
/// segment exactly as the client sent it, padded with `=` when `pad_forward_payload_header` is set.
fn attests(forwarded: &[u8], payload_b64: &[u8]) -> bool {
    let unpadded = forwarded.strip_suffix(b"==").or_else(|| forwarded.strip_suffix(b"=")).unwrap_or(forwarded);
    !payload_b64.is_empty() && unpadded == payload_b64
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
