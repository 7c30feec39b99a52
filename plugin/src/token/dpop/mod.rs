//! DPoP (RFC 9449): sender-constrained tokens. A DPoP-bound token carries `cnf.jkt`, the RFC 7638 thumbprint
//! of a key its holder keeps; every request then brings a fresh proof (`DPoP` header), a JWS signed by that
//! key over the request's method and URI, the time, a unique `jti`, and the hash of the token (`ath`).
//!
//! Here, pure and per proof: the proof read and checked against the request it came with (`proof`), the key's
//! thumbprint (`thumbprint`), the target URI normalised for comparison (`htu`), server nonces (`nonce`), the
//! replay cache the workers share (`replay`), and every refusal with its RFC 9449 error (`error`). The engine
//! decides which requests need a proof and checks the binding to the token.

pub mod error;
pub mod htu;
pub mod nonce;
pub mod proof;
pub mod replay;
pub mod thumbprint;

pub use error::DpopError;
pub use proof::{CheckedProof, ProofKeys};

use super::crypto::{Algorithm, Family};

/// Whether an issuer's tokens are presented with DPoP (issuer `dpop`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DpopMode {
    /// Bearer only: a `DPoP` presentation is refused (the default).
    #[default]
    Off,
    /// Both: a token bound with `cnf.jkt` must come with `Authorization: DPoP` and a valid proof; an unbound one
    /// as `Bearer`.
    Allowed,
    /// Only DPoP-bound tokens with a valid proof.
    Required,
}

impl DpopMode {
    /// The configuration's spelling.
    pub fn from_name(name: &str) -> Option<DpopMode> {
        match name {
            "off" => Some(DpopMode::Off),
            "allowed" => Some(DpopMode::Allowed),
            "required" => Some(DpopMode::Required),
            _ => None,
        }
    }

    /// Whether tokens may come with `Authorization: DPoP`.
    pub fn accepts_dpop(self) -> bool {
        self != DpopMode::Off
    }

    /// Whether tokens may come with `Authorization: Bearer`.
    pub fn accepts_bearer(self) -> bool {
        self != DpopMode::Required
    }
}

/// Whether an algorithm may sign proofs at all: asymmetric only (RFC 9449 §4.2, §11.6); never an HMAC.
pub fn is_proof_algorithm(alg: Algorithm) -> bool {
    alg.family() != Family::Hmac
}

/// The algorithms proofs may use unless the configuration narrows them: every asymmetric one this build checks.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
];

/// How proofs are checked, from the configuration's `dpop` section.
#[derive(Debug, Clone)]
pub struct ProofRules {
    /// Algorithms a proof may be signed with (asymmetric, at least one), in the order challenges name them.
    pub algorithms: Vec<Algorithm>,
    /// Oldest accepted proof: `iat` at least `now - max_age`, seconds.
    pub max_age: i64,
    /// Tolerated clock difference for a proof from the future: `iat` at most `now + future_skew`, seconds.
    pub future_skew: i64,
}

impl ProofRules {
    /// The `algs` parameter of a `DPoP` challenge: the accepted algorithms, space-separated.
    pub fn algs(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.name()).collect();
        names.join(" ")
    }

    /// How long a proof's `jti` must be remembered after its `iat` to refuse every replay: the whole window
    /// a proof is accepted in.
    pub fn window(&self) -> i64 {
        self.max_age + self.future_skew
    }
}

impl Default for ProofRules {
    fn default() -> ProofRules {
        ProofRules { algorithms: DEFAULT_ALGORITHMS.to_vec(), max_age: 60, future_skew: 5 }
    }
}

#[cfg(test)]
mod tests;
