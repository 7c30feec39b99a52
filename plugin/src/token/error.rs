//! Why a token was refused: one variant per reason, never merged, each with an RFC 6750 description and a
//! metric label. Descriptions never echo token contents.

use std::fmt;

/// Every way a presented token can fail verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Larger than the configured cap; refused before any splitting or decoding.
    TooLarge,
    /// Not a compact JWS of three non-empty strict-base64url segments with JSON object header and payload.
    Malformed(&'static str),
    /// `alg` is `none`, unknown, or not a string.
    UnsupportedAlgorithm,
    /// `alg` is known but not in the issuer's allow-list.
    AlgorithmNotAllowed,
    /// A header member we refuse to honour (`jku`, `jwk`, `x5u`, `x5c`, `zip`, `crit`).
    ForbiddenHeader(&'static str),
    /// `iss` names no configured issuer.
    UnknownIssuer,
    /// No key of the issuer matches `kid` and `alg`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `now >= exp + skew`.
    Expired,
    /// `nbf` is later than `now + skew`.
    NotYetValid,
    /// `iat` is later than `now + skew`.
    IssuedInFuture,
    /// `exp - iat` exceeds the issuer's maximum lifetime.
    LifetimeTooLong,
    /// `aud` names none of the configured audiences.
    WrongAudience,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim is present with the wrong type or an invalid value (never treated as absent).
    InvalidClaim(&'static str),
    /// More nested `act` actors than the issuer allows.
    DelegationTooDeep,
    /// A claim the issuer's configuration requires is absent or null.
    MissingRequiredClaim,
    /// The token's `jti` is on the issuer's revocation list.
    Revoked,
    /// The token breaks a rule of its issuer's profile (JWT-SVID, `at+jwt`, transaction token).
    ProfileViolation(&'static str),
    /// The issuer's remote key set has not been fetched yet, or is older than allowed: the gateway's fault,
    /// not the token's (answered 503 if it does not arrive in time).
    KeysUnavailable,
    /// The issuer binds its tokens to the mutual-TLS connection, and this one does not match it (the peer's
    /// URI SAN is not the agent, or `cnf.x5t#S256` is not the peer certificate's digest).
    NotBound,
    /// The issuer relies on Envoy's `jwt_authn` for signatures, and this token's payload is not the one
    /// `jwt_authn` vouched for (no, or another, forwarded payload header).
    NotAttested,
}

impl TokenError {
    /// Stable label for metrics and audit events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed(_) => "malformed",
            TokenError::UnsupportedAlgorithm => "unsupported_alg",
            TokenError::AlgorithmNotAllowed => "alg_not_allowed",
            TokenError::ForbiddenHeader(_) => "forbidden_header",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "iat_in_future",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InvalidClaim(_) => "invalid_claim",
            TokenError::DelegationTooDeep => "delegation_too_deep",
            TokenError::ProfileViolation(_) => "profile_violation",
            TokenError::MissingRequiredClaim => "missing_required_claim",
            TokenError::Revoked => "revoked",
            TokenError::KeysUnavailable => "keys_unavailable",
            TokenError::NotBound => "not_bound",
            TokenError::NotAttested => "not_attested",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLarge => f.write_str("token is larger than allowed"),
            TokenError::Malformed(what) => write!(f, "malformed token: {what}"),
            TokenError::UnsupportedAlgorithm => f.write_str("unsupported signing algorithm"),
            TokenError::AlgorithmNotAllowed => f.write_str("signing algorithm not allowed for this issuer"),
            TokenError::ForbiddenHeader(name) => {
                write!(f, "token header member \"{name}\" is not accepted")
            }
            TokenError::UnknownIssuer => f.write_str("unknown issuer"),
            TokenError::UnknownKey => f.write_str("no matching key for this token"),
            TokenError::BadSignature => f.write_str("signature verification failed"),
            TokenError::Expired => f.write_str("token has expired"),
            TokenError::NotYetValid => f.write_str("token is not yet valid"),
            TokenError::IssuedInFuture => f.write_str("token was issued in the future"),
            TokenError::LifetimeTooLong => f.write_str("token lifetime exceeds the allowed maximum"),
            TokenError::WrongAudience => f.write_str("token audience not accepted"),
            TokenError::MissingClaim(name) => write!(f, "required claim \"{name}\" is missing"),
            TokenError::InvalidClaim(name) => write!(f, "claim \"{name}\" is invalid"),
            TokenError::DelegationTooDeep => f.write_str("delegation chain is longer than allowed"),
            TokenError::ProfileViolation(rule) => write!(f, "token profile violated: {rule}"),
            TokenError::MissingRequiredClaim => f.write_str("a claim required by the issuer is missing"),
            TokenError::Revoked => f.write_str("token has been revoked"),
            TokenError::KeysUnavailable => f.write_str("the issuer's keys are not available"),
            TokenError::NotBound => f.write_str("token is not bound to this connection"),
            TokenError::NotAttested => f.write_str("token was not verified by the gateway's jwt_authn filter"),
        }
    }
}

impl std::error::Error for TokenError {}
