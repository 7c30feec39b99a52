//! Token profiles: the rules a kind of token adds on top of plain JWT verification.
//!
//! - `jwt`: no rules beyond the issuer's own (signature, issuer, audience, lifetime, required claims).
//! - `jwt-svid` (SPIFFE JWT-SVID): RS/ES/PS algorithms only (checked at configuration), `sub` a SPIFFE ID in
//!   the issuer's trust domain, `typ` if present `JWT` or `JOSE`. Keys are chosen by the trust domain of `sub`,
//!   and `iss` is optional, as the SPIFFE spec has it.
//! - `at+jwt` (RFC 9068 access tokens): `typ` must be `at+jwt` (or `application/at+jwt`), and `client_id`,
//!   `iat` and `jti` are required (`iss`, `exp`, `aud`, `sub` already are).
//! - `txn-token` (draft-ietf-oauth-transaction-tokens): `typ` must be `txntoken+jwt`, and `txn` and `iat` are
//!   required.
//!
//! Explicit typing (RFC 8725 §3.11) is what stops a token minted for one purpose being replayed as another.

use super::claims::{Claim, Registered, required_string};
use super::error::TokenError;
use super::spiffe::{SpiffeId, TrustDomain};

/// Which profile an issuer's tokens follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Plain JWT.
    Jwt,
    /// SPIFFE JWT-SVID.
    JwtSvid,
    /// RFC 9068 JWT access token.
    AtJwt,
    /// Transaction token.
    TxnToken,
}

impl Profile {
    /// The configuration name.
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "jwt" => Some(Profile::Jwt),
            "jwt-svid" => Some(Profile::JwtSvid),
            "at+jwt" => Some(Profile::AtJwt),
            "txn-token" => Some(Profile::TxnToken),
            _ => None,
        }
    }

    /// Checks `typ` and the profile's claims. `trust_domain` is the issuer's (jwt-svid only).
    pub fn check(
        self,
        typ: Option<&str>,
        claims: &Registered<'_>,
        trust_domain: Option<&TrustDomain>,
    ) -> Result<(), TokenError> {
        // Media type names are case-insensitive (RFC 7515 §4.1.9), and "application/" may be omitted.
        let typ = typ.map(without_application_prefix);
        let typ_is = |name: &str| typ.is_some_and(|t| t.eq_ignore_ascii_case(name));
        match self {
            Profile::Jwt => Ok(()),
            Profile::JwtSvid => {
                if typ.is_some() && !typ_is("jwt") && !typ_is("jose") {
                    return Err(TokenError::ProfileViolation("JWT-SVID typ must be JWT or JOSE"));
                }
                let sub = required_string(claims.sub, "sub")?;
                let id = SpiffeId::parse(sub).map_err(|_| TokenError::ProfileViolation("sub is not a SPIFFE ID"))?;
                match trust_domain {
                    Some(td) if id.is_in(td) => Ok(()),
                    _ => Err(TokenError::ProfileViolation("sub is not in the issuer's trust domain")),
                }
            }
            Profile::AtJwt => {
                if !typ_is("at+jwt") {
                    return Err(TokenError::ProfileViolation("typ must be at+jwt"));
                }
                required_string(claims.client_id, "client_id")?;
                required_string(claims.jti, "jti")?;
                require_present(claims.iat, "iat")
            }
            Profile::TxnToken => {
                if !typ_is("txntoken+jwt") {
                    return Err(TokenError::ProfileViolation("typ must be txntoken+jwt"));
                }
                required_string(claims.txn, "txn")?;
                require_present(claims.iat, "iat")
            }
        }
    }
}

/// `typ` without a leading "application/" in any case.
fn without_application_prefix(typ: &str) -> &str {
    const PREFIX: &str = "application/";
    match typ.get(..PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(PREFIX) => typ.get(PREFIX.len()..).unwrap_or(typ),
        _ => typ,
    }
}

fn require_present(claim: Option<Claim<'_>>, name: &'static str) -> Result<(), TokenError> {
    if claim.is_some() { Ok(()) } else { Err(TokenError::MissingClaim(name)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::claims::Claims;
    use serde_json::{Value, json};

    /// Claims as verification reads them: kept as text.
    fn c(v: Value) -> Claims {
        let claims = Claims::parse(v.to_string().into_bytes(), 32).unwrap();
        assert!(!claims.is_map_built());
        claims
    }

    #[test]
    fn jwt_svid_rules() {
        let td = TrustDomain::parse("trading.example").unwrap();
        let ok = c(json!({"sub": "spiffe://trading.example/agent/x"}));
        assert_eq!(Profile::JwtSvid.check(None, &ok.registered(), Some(&td)), Ok(()));
        assert_eq!(Profile::JwtSvid.check(Some("JWT"), &ok.registered(), Some(&td)), Ok(()));
        assert_eq!(Profile::JwtSvid.check(Some("jose"), &ok.registered(), Some(&td)), Ok(()));
        assert!(Profile::JwtSvid.check(Some("at+jwt"), &ok.registered(), Some(&td)).is_err());
        let other = c(json!({"sub": "spiffe://evil.example/agent/x"}));
        assert!(Profile::JwtSvid.check(None, &other.registered(), Some(&td)).is_err());
        let not_spiffe = c(json!({"sub": "agent-x"}));
        assert!(Profile::JwtSvid.check(None, &not_spiffe.registered(), Some(&td)).is_err());
        assert!(Profile::JwtSvid.check(None, &ok.registered(), None).is_err());
    }

    #[test]
    fn typ_is_compared_as_before_without_allocating() {
        // The rule as first written: lower-case the whole value, then drop one "application/" prefix.
        let reference = |typ: &str| {
            let t = typ.to_ascii_lowercase();
            t.strip_prefix("application/").map(str::to_owned).unwrap_or(t)
        };
        let td = TrustDomain::parse("trading.example").unwrap();
        let claims =
            c(json!({"sub": "spiffe://trading.example/a", "client_id": "c", "jti": "j", "txn": "t", "iat": 1}));
        for typ in [
            "jwt",
            "JWT",
            "jose",
            "JOSE",
            "at+jwt",
            "AT+JWT",
            "txntoken+jwt",
            "TxnToken+JWT",
            "application/jwt",
            "Application/JOSE",
            "APPLICATION/at+jwt",
            "application/txntoken+jwt",
            "application/",
            "application",
            "application/application/jwt",
            "applicatio/jwt",
            "xapplication/jwt",
            "jwt ",
            " jwt",
            "",
            "é",
            "applicatioñ/jwt",
            "application/jwtx",
            "jw",
            "ȷwt",
            "application/\u{212a}",
        ] {
            let stripped = reference(typ);
            for profile in [Profile::Jwt, Profile::JwtSvid, Profile::AtJwt, Profile::TxnToken] {
                let want = match (profile, stripped.as_str()) {
                    (Profile::Jwt, _) | (Profile::JwtSvid, "jwt" | "jose") => Ok(()),
                    (Profile::AtJwt, "at+jwt") | (Profile::TxnToken, "txntoken+jwt") => Ok(()),
                    (Profile::JwtSvid, _) => Err(TokenError::ProfileViolation("JWT-SVID typ must be JWT or JOSE")),
                    (Profile::AtJwt, _) => Err(TokenError::ProfileViolation("typ must be at+jwt")),
                    (Profile::TxnToken, _) => Err(TokenError::ProfileViolation("typ must be txntoken+jwt")),
                };
                assert_eq!(profile.check(Some(typ), &claims.registered(), Some(&td)), want, "{profile:?} {typ:?}");
            }
        }
    }

    #[test]
    fn at_jwt_and_txn_token_need_explicit_typing() {
        let at = c(json!({"client_id": "c", "jti": "j", "iat": 1}));
        assert_eq!(Profile::AtJwt.check(Some("at+jwt"), &at.registered(), None), Ok(()));
        assert_eq!(Profile::AtJwt.check(Some("application/AT+JWT"), &at.registered(), None), Ok(()));
        assert!(Profile::AtJwt.check(Some("JWT"), &at.registered(), None).is_err());
        assert!(Profile::AtJwt.check(None, &at.registered(), None).is_err());
        assert_eq!(
            Profile::AtJwt.check(Some("at+jwt"), &c(json!({"jti": "j", "iat": 1})).registered(), None),
            Err(TokenError::MissingClaim("client_id"))
        );
        let txn = c(json!({"txn": "t-1", "iat": 1}));
        assert_eq!(Profile::TxnToken.check(Some("txntoken+jwt"), &txn.registered(), None), Ok(()));
        assert!(Profile::TxnToken.check(Some("at+jwt"), &txn.registered(), None).is_err());
        assert_eq!(
            Profile::TxnToken.check(Some("txntoken+jwt"), &c(json!({"iat": 1})).registered(), None),
            Err(TokenError::MissingClaim("txn"))
        );
        assert_eq!(Profile::Jwt.check(Some("anything"), &c(json!({})).registered(), None), Ok(()));
    }
}
