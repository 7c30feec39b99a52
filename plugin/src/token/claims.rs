//! Registered-claim checks (RFC 7519 §4.1) with exact types: a claim of the wrong type is an error, never
//! "absent" (CVE-2026-25537 class).

use super::error::TokenError;
use serde_json::{Map, Value};

/// Largest NumericDate accepted. Far beyond any real token, small enough that adding a skew never overflows.
const MAX_NUMERIC_DATE: i64 = 1 << 40;

/// Reads a NumericDate claim: a JSON number of seconds, integer or finite fraction (truncated), in
/// `0..=2^40`.
pub fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    let Some(value) = claims.get(name) else {
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

/// Time rules: `exp` required and rejected at `now >= exp + skew`; `nbf` honoured; `iat` not in the future
/// beyond skew; optional maximum lifetime (`exp - iat`, or `exp - now` without `iat`). Returns `exp`.
pub fn check_times(
    claims: &Map<String, Value>,
    now: i64,
    skew: i64,
    max_lifetime: Option<i64>,
) -> Result<i64, TokenError> {
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
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
pub fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    let matches = |a: &str| accepted.iter().any(|ok| ok == a);
    match claims.get("aud") {
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
