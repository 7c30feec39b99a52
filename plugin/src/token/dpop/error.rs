//! Why a DPoP presentation was refused: one variant per check, each with the RFC 9449 error it is answered
//! with (§7.1, §9, §12.2), a description that never echoes the proof, and a metric label.

use std::fmt;

/// Every way a DPoP presentation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopError {
    /// `Authorization: DPoP` without a `DPoP` header.
    MissingProof,
    /// More than one `DPoP` header (RFC 9449 §4.3 check 1).
    RepeatedProof,
    /// The proof is larger than accepted, checked before anything is decoded.
    ProofTooLarge,
    /// Not a compact JWS with a JSON object header and payload, or a claim of the wrong type.
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is `none`, an HMAC, unknown, or not in the configured list.
    AlgorithmNotAllowed,
    /// A header member that would let the proof name its key another way or change its processing
    /// (`jku`, `x5u`, `x5c`, `kid`-less key references, `crit`, `zip`, `b64`).
    ForbiddenHeader(&'static str),
    /// `jwk` is missing, not a valid public key, or does not fit `alg`.
    BadKey,
    /// `jwk` carries private key material (RFC 9449 §4.3 check 7).
    PrivateKey,
    /// The signature does not verify with `jwk`.
    BadSignature,
    /// A required claim (`jti`, `htm`, `htu`, `iat`, `ath`) is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unusable value.
    InvalidClaim(&'static str),
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the request's URI at the configured origin (query and fragment ignored).
    WrongUri,
    /// `iat` is older than the accepted window.
    Stale,
    /// `iat` is further in the future than the tolerated skew.
    FromTheFuture,
    /// The proof's `jti` was seen before within the window, on some worker of this gateway.
    Replayed,
    /// The proof is older than its full replay-cache bucket can still prove unseen: the cache is smaller than
    /// the traffic (`dpop.replay_cache_size`).
    OlderThanReplayCache,
    /// `ath` is not the hash of the presented token.
    WrongTokenHash,
    /// The proof key's thumbprint is not the token's `cnf.jkt`.
    KeyMismatch,
    /// A token presented with `Authorization: DPoP` that is not bound to a key (no `cnf.jkt`).
    TokenNotBound,
    /// A token bound to a key (`cnf.jkt`) presented as `Bearer` (RFC 9449 §7.2).
    BoundTokenAsBearer,
    /// The issuer requires DPoP and the token came as `Bearer`.
    DpopRequired,
    /// The issuer does not take DPoP and the token came as `DPoP`.
    DpopNotAccepted,
    /// Nonces are required and the proof has none (§9).
    NonceMissing,
    /// The proof's nonce is not one this gateway issued, or no longer valid.
    NonceInvalid,
    /// The replay cache cannot be read or written, or the nonce key is not in place: no proof is accepted
    /// unchecked (503).
    Unavailable,
}

impl DpopError {
    /// The error code of the `DPoP` (or `Bearer`) challenge: `invalid_dpop_proof` for the proof itself,
    /// `invalid_token` for the token and its binding, `use_dpop_nonce` for nonces.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::KeyMismatch
            | DpopError::TokenNotBound
            | DpopError::BoundTokenAsBearer
            | DpopError::DpopRequired
            | DpopError::DpopNotAccepted => "invalid_token",
            DpopError::NonceMissing | DpopError::NonceInvalid => "use_dpop_nonce",
            DpopError::Unavailable => "temporarily_unavailable",
            _ => "invalid_dpop_proof",
        }
    }

    /// The HTTP status: 503 when the gateway cannot check, 401 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            DpopError::Unavailable => 503,
            _ => 401,
        }
    }

    /// Whether the answer carries a fresh `DPoP-Nonce`.
    pub fn wants_nonce(&self) -> bool {
        matches!(self, DpopError::NonceMissing | DpopError::NonceInvalid)
    }

    /// Stable label for metrics and audit events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DpopError::MissingProof => "dpop_missing_proof",
            DpopError::RepeatedProof => "dpop_repeated_proof",
            DpopError::ProofTooLarge => "dpop_proof_too_large",
            DpopError::Malformed(_) => "dpop_malformed",
            DpopError::WrongType => "dpop_wrong_typ",
            DpopError::AlgorithmNotAllowed => "dpop_alg_not_allowed",
            DpopError::ForbiddenHeader(_) => "dpop_forbidden_header",
            DpopError::BadKey => "dpop_bad_key",
            DpopError::PrivateKey => "dpop_private_key",
            DpopError::BadSignature => "dpop_bad_signature",
            DpopError::MissingClaim(_) => "dpop_missing_claim",
            DpopError::InvalidClaim(_) => "dpop_invalid_claim",
            DpopError::WrongMethod => "dpop_wrong_htm",
            DpopError::WrongUri => "dpop_wrong_htu",
            DpopError::Stale => "dpop_stale",
            DpopError::FromTheFuture => "dpop_iat_in_future",
            DpopError::Replayed => "dpop_replayed",
            DpopError::OlderThanReplayCache => "dpop_replay_cache_full",
            DpopError::WrongTokenHash => "dpop_wrong_ath",
            DpopError::KeyMismatch => "dpop_key_mismatch",
            DpopError::TokenNotBound => "dpop_token_not_bound",
            DpopError::BoundTokenAsBearer => "dpop_bound_token_as_bearer",
            DpopError::DpopRequired => "dpop_required",
            DpopError::DpopNotAccepted => "dpop_not_accepted",
            DpopError::NonceMissing => "dpop_nonce_missing",
            DpopError::NonceInvalid => "dpop_nonce_invalid",
            DpopError::Unavailable => "dpop_unavailable",
        }
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpopError::MissingProof => f.write_str("a DPoP proof is required with the DPoP scheme"),
            DpopError::RepeatedProof => f.write_str("exactly one DPoP header is allowed"),
            DpopError::ProofTooLarge => f.write_str("DPoP proof is larger than allowed"),
            DpopError::Malformed(what) => write!(f, "malformed DPoP proof: {what}"),
            DpopError::WrongType => f.write_str("DPoP proof typ must be dpop+jwt"),
            DpopError::AlgorithmNotAllowed => f.write_str("DPoP proof algorithm not allowed"),
            DpopError::ForbiddenHeader(name) => write!(f, "DPoP proof header member \"{name}\" is not accepted"),
            DpopError::BadKey => f.write_str("DPoP proof jwk is not a valid public key for its algorithm"),
            DpopError::PrivateKey => f.write_str("DPoP proof jwk contains private key material"),
            DpopError::BadSignature => f.write_str("DPoP proof signature verification failed"),
            DpopError::MissingClaim(name) => write!(f, "DPoP proof claim \"{name}\" is missing"),
            DpopError::InvalidClaim(name) => write!(f, "DPoP proof claim \"{name}\" is invalid"),
            DpopError::WrongMethod => f.write_str("DPoP proof htm does not match the request method"),
            DpopError::WrongUri => f.write_str("DPoP proof htu does not match the request URI"),
            DpopError::Stale => f.write_str("DPoP proof is too old"),
            DpopError::FromTheFuture => f.write_str("DPoP proof was issued in the future"),
            DpopError::Replayed => f.write_str("DPoP proof has already been used"),
            DpopError::OlderThanReplayCache => {
                f.write_str("DPoP proof is older than the replay cache can vouch for; send a fresh one")
            }
            DpopError::WrongTokenHash => f.write_str("DPoP proof ath does not match the access token"),
            DpopError::KeyMismatch => f.write_str("Invalid DPoP key binding"),
            DpopError::TokenNotBound => f.write_str("token is not bound to a DPoP key"),
            DpopError::BoundTokenAsBearer => f.write_str("a DPoP-bound token must be presented with the DPoP scheme"),
            DpopError::DpopRequired => f.write_str("this issuer's tokens must be presented with DPoP"),
            DpopError::DpopNotAccepted => f.write_str("this issuer's tokens are not accepted with DPoP"),
            DpopError::NonceMissing => f.write_str("a DPoP nonce is required"),
            DpopError::NonceInvalid => f.write_str("the DPoP nonce is invalid or expired"),
            DpopError::Unavailable => {
                f.write_str("DPoP proofs cannot be checked now (replay cache or nonce key unavailable)")
            }
        }
    }
}

impl std::error::Error for DpopError {}
