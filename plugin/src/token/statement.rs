//! Signed statements that are not access tokens: Security Event Tokens (RFC 8417) and the revocation lists an
//! operator publishes. They are read by the same strict machinery as tokens, never by a second parser: the
//! compact JWS and its JOSE header by [`jws::parse_in`] (strict base64url, strict JSON without repeated names,
//! no `jku`/`jwk`/`x5u`/`x5c`/`zip`/`crit`, no `alg: none`), the key by [`KeySet::candidates`] (one key, one
//! algorithm: an HS* statement finds a key only where a shared secret was configured explicitly), the
//! signature by the [`CryptoBackend`].
//!
//! Order: the size cap before any parsing; `typ` (explicit typing, RFC 8725 §3.11, so that a token cannot be
//! replayed as an event or a list and the reverse); the algorithm against the allow-list; the signature; then
//! the claims, none believed before the signature: `iss` required and equal, `aud` (a string or an array)
//! naming one of the accepted audiences when any are configured, `iat` required, not later than now plus the
//! skew and not older than the maximum age, `exp` (lists may carry one) not passed, `nbf` honoured.
//!
//! Every refusal maps to an RFC 8935 §2.4 error code ([`StatementError::code`]), and no description echoes a
//! byte of the statement.

use super::claims::{Claim, Claims};
use super::crypto::{Algorithm, CryptoBackend};
use super::error::TokenError;
use super::jwk::KeySet;
use super::jws;
use serde_json::{Map, Value};
use std::fmt;

/// The JOSE `typ` of a Security Event Token (RFC 8417 §2.3).
pub const SET_TYP: &str = "secevent+jwt";

/// How a kind of signed statement is verified.
#[derive(Debug, Clone)]
pub struct StatementVerifier {
    /// The exact `iss` every statement must carry.
    pub issuer: String,
    /// Accepted `aud` values: a statement must name one of them. Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Allowed algorithms. Never taken from the statement.
    pub algorithms: Vec<Algorithm>,
    /// The signer's keys.
    pub keys: KeySet,
    /// The JOSE `typ` required, e.g. [`SET_TYP`]: compared case-insensitively, with or without an
    /// `application/` prefix (RFC 7515 §4.1.9).
    pub typ: &'static str,
    /// Tolerated clock difference, seconds.
    pub clock_skew: i64,
    /// Oldest accepted statement: `iat` must be at least `now - max_age`.
    pub max_age: i64,
    /// Longest accepted statement, bytes, checked before anything else.
    pub max_bytes: usize,
}

/// A statement that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Every claim.
    pub claims: Map<String, Value>,
    /// `iat`, seconds since the epoch.
    pub issued_at: i64,
    /// `jti`, if present (a string; what a kind of statement requires of it is the reader's to check).
    pub jti: Option<String>,
}

/// Why a statement was refused. Descriptions never echo its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementError {
    /// Longer than the cap; refused before any parsing.
    TooLarge,
    /// Not a compact JWS of three strict-base64url segments with a JSON object header and payload.
    Malformed(&'static str),
    /// A header member that is never honoured (`jku`, `jwk`, `x5u`, `x5c`, `zip`, `crit`).
    ForbiddenHeader(&'static str),
    /// `typ` absent or not the one required.
    WrongType,
    /// `alg` is `none`, unknown or not a string.
    UnsupportedAlgorithm,
    /// `alg` is known but not allowed.
    AlgorithmNotAllowed,
    /// No key is configured or fetched yet: the receiver's fault, worth retrying later.
    KeysUnavailable,
    /// No key matches `kid` and `alg` (a fetched key set may be out of date).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `iss` absent, not a string, or not the expected issuer.
    WrongIssuer,
    /// `aud` absent, malformed, or naming none of the accepted audiences.
    WrongAudience,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim is present with the wrong type or value.
    InvalidClaim(&'static str),
    /// `iat` is later than now plus the skew.
    IssuedInFuture,
    /// `iat` is older than the maximum age.
    TooOld,
    /// `exp` has passed.
    Expired,
    /// `nbf` is later than now plus the skew.
    NotYetValid,
}

impl StatementError {
    /// The RFC 8935 §2.4 error code: `invalid_request`, `invalid_key`, `invalid_issuer` or `invalid_audience`.
    pub fn code(&self) -> &'static str {
        match self {
            StatementError::UnsupportedAlgorithm
            | StatementError::AlgorithmNotAllowed
            | StatementError::KeysUnavailable
            | StatementError::UnknownKey
            | StatementError::BadSignature => "invalid_key",
            StatementError::WrongIssuer => "invalid_issuer",
            StatementError::WrongAudience => "invalid_audience",
            StatementError::TooLarge
            | StatementError::Malformed(_)
            | StatementError::ForbiddenHeader(_)
            | StatementError::WrongType
            | StatementError::MissingClaim(_)
            | StatementError::InvalidClaim(_)
            | StatementError::IssuedInFuture
            | StatementError::TooOld
            | StatementError::Expired
            | StatementError::NotYetValid => "invalid_request",
        }
    }

    /// A stable label for metrics and logs, finer than [`StatementError::code`].
    pub fn label(&self) -> &'static str {
        match self {
            StatementError::TooLarge => "too_large",
            StatementError::Malformed(_) => "malformed",
            StatementError::ForbiddenHeader(_) => "forbidden_header",
            StatementError::WrongType => "wrong_typ",
            StatementError::UnsupportedAlgorithm => "unsupported_alg",
            StatementError::AlgorithmNotAllowed => "alg_not_allowed",
            StatementError::KeysUnavailable => "keys_unavailable",
            StatementError::UnknownKey => "unknown_key",
            StatementError::BadSignature => "bad_signature",
            StatementError::WrongIssuer => "wrong_issuer",
            StatementError::WrongAudience => "wrong_audience",
            StatementError::MissingClaim(_) => "missing_claim",
            StatementError::InvalidClaim(_) => "invalid_claim",
            StatementError::IssuedInFuture => "iat_in_future",
            StatementError::TooOld => "too_old",
            StatementError::Expired => "expired",
            StatementError::NotYetValid => "not_yet_valid",
        }
    }

    /// What the strict JWS reader refused, in a statement's terms.
    fn of_token(e: TokenError) -> StatementError {
        match e {
            TokenError::Malformed(what) => StatementError::Malformed(what),
            TokenError::ForbiddenHeader(name) => StatementError::ForbiddenHeader(name),
            TokenError::UnsupportedAlgorithm => StatementError::UnsupportedAlgorithm,
            // A `kid` no key could have (empty, too long, not a string).
            TokenError::UnknownKey => StatementError::UnknownKey,
            _ => StatementError::Malformed("not a compact JWS"),
        }
    }
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatementError::TooLarge => f.write_str("statement is larger than allowed"),
            StatementError::Malformed(what) => write!(f, "malformed statement: {what}"),
            StatementError::ForbiddenHeader(name) => write!(f, "header member \"{name}\" is not accepted"),
            StatementError::WrongType => f.write_str("header typ is absent or not the one required"),
            StatementError::UnsupportedAlgorithm => f.write_str("unsupported signing algorithm"),
            StatementError::AlgorithmNotAllowed => f.write_str("signing algorithm not allowed"),
            StatementError::KeysUnavailable => f.write_str("the signer's keys are not available yet"),
            StatementError::UnknownKey => f.write_str("no matching key"),
            StatementError::BadSignature => f.write_str("signature verification failed"),
            StatementError::WrongIssuer => f.write_str("iss is absent or not the expected issuer"),
            StatementError::WrongAudience => f.write_str("aud does not name this receiver"),
            StatementError::MissingClaim(name) => write!(f, "required claim \"{name}\" is missing"),
            StatementError::InvalidClaim(name) => write!(f, "claim \"{name}\" is invalid"),
            StatementError::IssuedInFuture => f.write_str("iat is in the future"),
            StatementError::TooOld => f.write_str("iat is older than allowed"),
            StatementError::Expired => f.write_str("exp has passed"),
            StatementError::NotYetValid => f.write_str("nbf is in the future"),
        }
    }
}

impl std::error::Error for StatementError {}

/// `typ` without a leading "application/" in any case (RFC 7515 §4.1.9).
fn without_application_prefix(typ: &str) -> &str {
    const PREFIX: &str = "application/";
    match typ.get(..PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(PREFIX) => typ.get(PREFIX.len()..).unwrap_or(typ),
        _ => typ,
    }
}

impl StatementVerifier {
    /// Verifies a compact JWS statement at `now` (seconds since the epoch).
    pub fn verify(&self, jws: &[u8], now: i64, crypto: &dyn CryptoBackend) -> Result<Statement, StatementError> {
        if jws.len() > self.max_bytes {
            return Err(StatementError::TooLarge);
        }
        let mut buf = jws::DecodeBuf::new();
        let parsed = jws::parse_in(jws, &mut buf).map_err(StatementError::of_token)?;
        let typ = parsed.typ.as_deref().map(without_application_prefix);
        let want = without_application_prefix(self.typ);
        if !typ.is_some_and(|t| t.eq_ignore_ascii_case(want)) {
            return Err(StatementError::WrongType);
        }
        if !self.algorithms.contains(&parsed.alg) {
            return Err(StatementError::AlgorithmNotAllowed);
        }
        if self.keys.is_empty() {
            return Err(StatementError::KeysUnavailable);
        }
        let mut candidates = self.keys.candidates(parsed.kid.as_deref(), parsed.alg).peekable();
        if candidates.peek().is_none() {
            return Err(StatementError::UnknownKey);
        }
        if !candidates.any(|k| crypto.verify(parsed.alg, &k.key, parsed.signing_input, &parsed.signature)) {
            return Err(StatementError::BadSignature);
        }
        self.check_claims(&parsed.claims, now)
    }

    /// The claim rules of [`StatementVerifier::verify`] alone, for claims whose origin the caller vouches for
    /// otherwise (an unsigned revocation list, where the configuration explicitly allows one).
    pub fn check_claims(&self, claims: &Claims, now: i64) -> Result<Statement, StatementError> {
        let registered = claims.registered();
        if registered.iss.and_then(Claim::as_str) != Some(self.issuer.as_str()) {
            return Err(StatementError::WrongIssuer);
        }
        if !self.audiences.is_empty() {
            registered.check_audience(&self.audiences).map_err(|_| StatementError::WrongAudience)?;
        }
        let date = |claim: Claim<'_>, name: &'static str| {
            claim.numeric_date(name).map_err(|_| StatementError::InvalidClaim(name))
        };
        let iat = date(registered.iat.ok_or(StatementError::MissingClaim("iat"))?, "iat")?;
        let exp = registered.exp.map(|c| date(c, "exp")).transpose()?;
        let nbf = registered.nbf.map(|c| date(c, "nbf")).transpose()?;
        let skew = self.clock_skew.max(0);
        if iat > now.saturating_add(skew) {
            return Err(StatementError::IssuedInFuture);
        }
        if iat < now.saturating_sub(self.max_age.max(0)) {
            return Err(StatementError::TooOld);
        }
        if exp.is_some_and(|exp| now >= exp.saturating_add(skew)) {
            return Err(StatementError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(StatementError::NotYetValid);
        }
        let jti = match registered.jti {
            None => None,
            Some(c) => Some(c.as_str().ok_or(StatementError::InvalidClaim("jti"))?.to_owned()),
        };
        Ok(Statement { claims: claims.map().clone(), issued_at: iat, jti })
    }
}

#[cfg(test)]
mod tests;
