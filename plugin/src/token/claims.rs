//! Registered-claim checks (RFC 7519 §4.1) with exact types: a claim of the wrong type is an error, never
//! "absent" (CVE-2026-25537 class).

use super::error::TokenError;
use serde_json::{Map, Value};

/// Largest NumericDate accepted. Far beyond any real token, small enough that adding a skew never overflows.
const MAX_NUMERIC_DATE: i64 = 1 << 40;

/// The registered claims verification reads, found in one pass over the claims rather than one lookup each.
#[derive(Debug, Default, Clone, Copy)]
pub struct Registered<'a> {
    /// `iss`.
    pub iss: Option<&'a Value>,
    /// `sub`.
    pub sub: Option<&'a Value>,
    /// `aud`.
    pub aud: Option<&'a Value>,
    /// `exp`.
    pub exp: Option<&'a Value>,
    /// `nbf`.
    pub nbf: Option<&'a Value>,
    /// `iat`.
    pub iat: Option<&'a Value>,
    /// `jti`.
    pub jti: Option<&'a Value>,
    /// `act` (RFC 8693).
    pub act: Option<&'a Value>,
    /// `may_act` (RFC 8693).
    pub may_act: Option<&'a Value>,
}

impl<'a> Registered<'a> {
    /// Finds them in `claims`.
    pub fn of(claims: &'a Map<String, Value>) -> Registered<'a> {
        let mut found = Registered::default();
        for (name, value) in claims {
            let slot = match name.as_str() {
                "iss" => &mut found.iss,
                "sub" => &mut found.sub,
                "aud" => &mut found.aud,
                "exp" => &mut found.exp,
                "nbf" => &mut found.nbf,
                "iat" => &mut found.iat,
                "jti" => &mut found.jti,
                "act" => &mut found.act,
                "may_act" => &mut found.may_act,
                _ => continue,
            };
            *slot = Some(value);
        }
        found
    }

    /// Time rules: `exp` required and rejected at `now >= exp + skew`; `nbf` honoured; `iat` not in the future
    /// beyond skew; optional maximum lifetime (`exp - iat`, or `exp - now` without `iat`). Returns `exp`.
    pub fn check_times(&self, now: i64, skew: i64, max_lifetime: Option<i64>) -> Result<i64, TokenError> {
        let exp = numeric_date(self.exp, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let nbf = numeric_date(self.nbf, "nbf")?;
        let iat = numeric_date(self.iat, "iat")?;
        if now >= exp + skew {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now + skew) {
            return Err(TokenError::NotYetValid);
        }
        if iat.is_some_and(|iat| iat > now + skew) {
            return Err(TokenError::IssuedInFuture);
        }
        if let Some(max) = max_lifetime
            && exp - iat.unwrap_or(now) > max
        {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(exp)
    }

    /// `aud` must be a non-empty string or a non-empty array of strings containing one of `accepted`.
    ///
    /// A token without `aud` is refused: every agent-iam issuer names its audiences, and a token minted for
    /// "anyone" must not be replayable at this API (CVE-2020-26160 class).
    pub fn check_audience(&self, accepted: &[String]) -> Result<(), TokenError> {
        let matches = |a: &str| accepted.iter().any(|ok| ok == a);
        match self.aud {
            None => Err(TokenError::MissingClaim("aud")),
            Some(Value::String(a)) if !a.is_empty() => {
                if matches(a) {
                    Ok(())
                } else {
                    Err(TokenError::WrongAudience)
                }
            }
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut found = false;
                for item in list {
                    match item {
                        Value::String(a) if !a.is_empty() => found |= matches(a),
                        _ => return Err(TokenError::InvalidClaim("aud")),
                    }
                }
                if found { Ok(()) } else { Err(TokenError::WrongAudience) }
            }
            Some(_) => Err(TokenError::InvalidClaim("aud")),
        }
    }
}

/// Reads a NumericDate claim `name`: a JSON number of seconds, integer or finite fraction (truncated), in
/// `0..=2^40`.
fn numeric_date(value: Option<&Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(TokenError::InvalidClaim(name));
    };
    let seconds = if let Some(i) = n.as_i64() {
        i
    } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && n.as_u64().is_none()) {
        if !(0.0..=MAX_NUMERIC_DATE as f64).contains(&f) {
            return Err(TokenError::InvalidClaim(name));
        }
        f as i64
    } else {
        return Err(TokenError::InvalidClaim(name));
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&seconds) {
        return Err(TokenError::InvalidClaim(name));
    }
    Ok(Some(seconds))
}

/// A required string claim.
pub fn required_string<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

/// RFC 8705: the token's `cnf.x5t#S256` (base64url SHA-256) against Envoy's hex digest of the peer
/// certificate. `None` when the token has no thumbprint or the digest is not hex.
pub fn certificate_bound(claims: &Map<String, Value>, peer_hex: &str) -> Option<bool> {
    let thumbprint = claims.get("cnf")?.as_object()?.get("x5t#S256")?.as_str()?;
    let decoded = crate::b64::decode(thumbprint.as_bytes()).ok()?;
    if decoded.len() != 32 || peer_hex.len() != 64 {
        return Some(false);
    }
    let mut peer = [0u8; 32];
    for (i, pair) in peer_hex.as_bytes().chunks_exact(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        peer[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(peer[..] == decoded[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_times(c: &Map<String, Value>, now: i64, skew: i64, max: Option<i64>) -> Result<i64, TokenError> {
        Registered::of(c).check_times(now, skew, max)
    }

    fn check_audience(c: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
        Registered::of(c).check_audience(accepted)
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn exp_boundaries_are_exact() {
        let c = claims(json!({"exp": 1000}));
        assert_eq!(check_times(&c, 999, 0, None), Ok(1000));
        assert_eq!(check_times(&c, 1000, 0, None), Err(TokenError::Expired));
        assert_eq!(check_times(&c, 1029, 30, None), Ok(1000));
        assert_eq!(check_times(&c, 1030, 30, None), Err(TokenError::Expired));
    }

    #[test]
    fn exp_of_wrong_type_or_range_is_invalid_not_absent() {
        for bad in [json!("1000"), json!(-1), json!(1e300), json!(u64::MAX), json!(null), json!([1])] {
            let c = claims(json!({ "exp": bad }));
            assert_eq!(check_times(&c, 0, 0, None), Err(TokenError::InvalidClaim("exp")), "{bad}");
        }
        assert_eq!(check_times(&claims(json!({})), 0, 0, None), Err(TokenError::MissingClaim("exp")));
        assert_eq!(check_times(&claims(json!({"exp": 0})), 0, 0, None), Err(TokenError::Expired));
        assert_eq!(check_times(&claims(json!({"exp": 1000.9})), 999, 0, None), Ok(1000));
    }

    #[test]
    fn nbf_and_iat_in_the_future() {
        let c = claims(json!({"exp": 5000, "nbf": 2000}));
        assert_eq!(check_times(&c, 1969, 30, None), Err(TokenError::NotYetValid));
        assert_eq!(check_times(&c, 1970, 30, None), Ok(5000));
        let c = claims(json!({"exp": 5000, "nbf": (1i64 << 40)}));
        assert_eq!(check_times(&c, 1970, 30, None), Err(TokenError::NotYetValid));
        let c = claims(json!({"exp": 5000, "iat": 2000}));
        assert_eq!(check_times(&c, 1900, 30, None), Err(TokenError::IssuedInFuture));
    }

    #[test]
    fn maximum_lifetime() {
        let c = claims(json!({"exp": 4600, "iat": 1000}));
        assert_eq!(check_times(&c, 1000, 0, Some(3600)), Ok(4600));
        let c = claims(json!({"exp": 4601, "iat": 1000}));
        assert_eq!(check_times(&c, 1000, 0, Some(3600)), Err(TokenError::LifetimeTooLong));
    }

    #[test]
    fn registered_claims_are_found_in_one_pass() {
        let c = claims(json!({
            "iss": "i", "sub": "s", "aud": ["a"], "exp": 3, "nbf": 1, "iat": 2, "jti": "j",
            "act": {"sub": "x"}, "may_act": {"sub": "y"}, "scope": "read", "Sub": "not sub", "sub ": 0,
        }));
        let r = Registered::of(&c);
        for (name, found) in [
            ("iss", r.iss),
            ("sub", r.sub),
            ("aud", r.aud),
            ("exp", r.exp),
            ("nbf", r.nbf),
            ("iat", r.iat),
            ("jti", r.jti),
            ("act", r.act),
            ("may_act", r.may_act),
        ] {
            assert_eq!(found, c.get(name), "{name}");
        }
        let empty = Map::new();
        let none = Registered::of(&empty);
        assert!(none.iss.is_none() && none.sub.is_none() && none.exp.is_none() && none.may_act.is_none());
        assert_eq!(Registered::of(&c).check_times(2, 0, None), check_times(&c, 2, 0, None));
        assert_eq!(Registered::of(&c).check_audience(&["a".to_owned()]), Ok(()));
    }

    #[test]
    fn audience_rules() {
        let ok = vec!["api".to_owned()];
        assert_eq!(check_audience(&claims(json!({"aud": "api"})), &ok), Ok(()));
        assert_eq!(check_audience(&claims(json!({"aud": ["x", "api"]})), &ok), Ok(()));
        assert_eq!(check_audience(&claims(json!({"aud": "x"})), &ok), Err(TokenError::WrongAudience));
        assert_eq!(check_audience(&claims(json!({})), &ok), Err(TokenError::MissingClaim("aud")));
        for bad in [json!(""), json!([]), json!(["api", 1]), json!(7), json!([""])] {
            assert_eq!(check_audience(&claims(json!({ "aud": bad })), &ok), Err(TokenError::InvalidClaim("aud")));
        }
    }
}
