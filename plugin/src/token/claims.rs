//! Registered-claim checks (RFC 7519 §4.1) with exact types: a claim of the wrong type is an error, never
//! "absent" (CVE-2026-25537 class).

use super::error::TokenError;
use crate::json::{self, JsonError};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::ops::Range;

/// Largest NumericDate accepted. Far beyond any real token, small enough that adding a skew never overflows.
const MAX_NUMERIC_DATE: i64 = 1 << 40;

/// A token's claims: its payload, a strict JSON object.
///
/// A payload of the usual shape (see [`json::scan_object`]) is checked in full but kept as text, with the
/// position of each [`Registered`] claim: verification reads those straight from it, and the map that
/// everything else reads (policy conditions, other claims by name, the test tools) is parsed once, the first
/// time something asks for it. Building that map for every token was most of what an HS256 verification spent
/// around its HMAC. Any other payload is parsed into the map at once, by the same strict rules.
#[derive(Debug, Clone, Default)]
pub struct Claims(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// Read by [`json::scan_object`]: the text, where each registered claim's value is, and the map once built.
    Scanned {
        text: Box<str>,
        registered: [Span; REGISTERED],
        map: OnceCell<Map<String, Value>>,
    },
    Parsed(Map<String, Value>),
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Parsed(Map::new())
    }
}

impl Claims {
    /// Reads a decoded payload: one JSON object, no repeated names, nested at most `max_depth` deep.
    pub fn parse(payload: Vec<u8>, max_depth: usize) -> Result<Claims, JsonError> {
        let bytes = match String::from_utf8(payload) {
            Ok(text) => {
                let mut registered = [Span::ABSENT; REGISTERED];
                // Offsets fit in 32 bits when the text does (tokens are capped far below that).
                let fits = u32::try_from(text.len()).is_ok();
                let plain = fits
                    && json::scan_object(&text, max_depth, |name, value| {
                        if let Some(slot) = slot(name).and_then(|i| registered.get_mut(i)) {
                            *slot = Span::of(value);
                        }
                    });
                if plain {
                    let text = text.into_boxed_str();
                    return Ok(Claims(Repr::Scanned { text, registered, map: OnceCell::new() }));
                }
                text.into_bytes()
            }
            Err(not_utf8) => not_utf8.into_bytes(),
        };
        json::parse_object(&bytes, max_depth).map(Claims::from_map)
    }

    /// Claims already parsed (policy test cases, tools).
    pub fn from_map(map: Map<String, Value>) -> Claims {
        Claims(Repr::Parsed(map))
    }

    /// The top-level claim `name`.
    pub fn get(&self, name: &str) -> Option<Claim<'_>> {
        match &self.0 {
            Repr::Scanned { text, registered, .. } => match slot(name) {
                Some(i) => registered.get(i)?.in_text(text).map(Claim::text),
                // Any other claim comes from the map: built once, however many names are asked for.
                None => self.map().get(name).map(Claim::value),
            },
            Repr::Parsed(map) => map.get(name).map(Claim::value),
        }
    }

    /// Every claim as a map, parsed on first use.
    pub fn map(&self) -> &Map<String, Value> {
        match &self.0 {
            // The text passed the scanner, whose rules are the plain reader's, so this parse cannot fail; were
            // it to, no claim would be present, and conditions on claims fail closed.
            Repr::Scanned { text, map, .. } => {
                map.get_or_init(|| json::parse_object(text.as_bytes(), usize::MAX).unwrap_or_default())
            }
            Repr::Parsed(map) => map,
        }
    }

    /// Whether the map has been built (a parsed payload, or one whose map something asked for).
    pub fn is_map_built(&self) -> bool {
        match &self.0 {
            Repr::Scanned { map, .. } => map.get().is_some(),
            Repr::Parsed(_) => true,
        }
    }

    /// The claims verification reads.
    pub fn registered(&self) -> Registered<'_> {
        match &self.0 {
            Repr::Scanned { text, registered, .. } => {
                Registered::from_slots(registered.map(|at| at.in_text(text).map(Claim::text)))
            }
            Repr::Parsed(map) => Registered::of(map),
        }
    }
}

/// Where a claim's value is in the text: 32-bit offsets keep a verified token small, and no value is empty,
/// so an empty span means absent.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    const ABSENT: Span = Span { start: 0, end: 0 };

    /// `range` of a text whose length fits in 32 bits.
    fn of(range: Range<usize>) -> Span {
        let at = |i: usize| u32::try_from(i).unwrap_or(0);
        Span { start: at(range.start), end: at(range.end) }
    }

    /// The value's text; `None` when absent.
    fn in_text(self, text: &str) -> Option<&str> {
        text.get(self.start as usize..self.end as usize).filter(|value| !value.is_empty())
    }
}

/// One claim's value as verification reads it: still JSON text, or already parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim<'a>(Form<'a>);

/// Private, so that text always comes from [`json::scan_object`] and the readers below can rely on its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form<'a> {
    /// JSON text that [`json::scan_object`] passed: a string without escapes or control characters, an
    /// integer of at most 18 digits, a literal, or an array or object of those.
    Text(&'a str),
    /// A parsed value.
    Value(&'a Value),
}

impl<'a> Claim<'a> {
    fn text(text: &'a str) -> Claim<'a> {
        Claim(Form::Text(text))
    }

    fn value(value: &'a Value) -> Claim<'a> {
        Claim(Form::Value(value))
    }

    /// The string, if the claim is one.
    pub fn as_str(self) -> Option<&'a str> {
        match self.0 {
            // No escapes and no quote inside: the contents are the text between the quotes.
            Form::Text(text) => text.strip_prefix('"')?.strip_suffix('"'),
            Form::Value(value) => value.as_str(),
        }
    }

    /// Whether the claim is `null`.
    pub fn is_null(self) -> bool {
        match self.0 {
            Form::Text(text) => text == "null",
            Form::Value(value) => value.is_null(),
        }
    }

    /// The items, if the claim is an array.
    pub fn items(self) -> Option<Items<'a>> {
        match self.0 {
            Form::Text(text) if text.starts_with('[') => Some(Items(ItemsForm::Text(json::plain_items(text)))),
            Form::Value(Value::Array(items)) => Some(Items(ItemsForm::Value(items.iter()))),
            _ => None,
        }
    }

    /// The value, parsed if it is still text. Text that [`json::scan_object`] passed always parses; were it
    /// not to, the answer is `null`, which every reader of a structured claim refuses.
    pub fn to_value(self) -> Cow<'a, Value> {
        match self.0 {
            Form::Value(value) => Cow::Borrowed(value),
            Form::Text(text) => Cow::Owned(json::parse_value(text.as_bytes(), usize::MAX).unwrap_or(Value::Null)),
        }
    }

    /// A NumericDate: a JSON number of seconds, integer or finite fraction (truncated), in `0..=2^40`.
    pub fn numeric_date(self, name: &'static str) -> Result<i64, TokenError> {
        let seconds = match self.0 {
            // An integer of at most 18 digits (no overflow), or not a number.
            Form::Text(text) if text.starts_with(|c: char| c.is_ascii_digit()) => {
                text.bytes().fold(0i64, |n, d| n * 10 + i64::from(d.wrapping_sub(b'0')))
            }
            Form::Text(_) => return Err(TokenError::InvalidClaim(name)),
            Form::Value(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    i
                } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && n.as_u64().is_none()) {
                    if !(0.0..=MAX_NUMERIC_DATE as f64).contains(&f) {
                        return Err(TokenError::InvalidClaim(name));
                    }
                    f as i64
                } else {
                    return Err(TokenError::InvalidClaim(name));
                }
            }
            Form::Value(_) => return Err(TokenError::InvalidClaim(name)),
        };
        if !(0..=MAX_NUMERIC_DATE).contains(&seconds) {
            return Err(TokenError::InvalidClaim(name));
        }
        Ok(seconds)
    }
}

/// The items of an array [`Claim`].
pub struct Items<'a>(ItemsForm<'a>);

enum ItemsForm<'a> {
    Text(json::PlainItems<'a>),
    Value(std::slice::Iter<'a, Value>),
}

impl<'a> Iterator for Items<'a> {
    type Item = Claim<'a>;
    fn next(&mut self) -> Option<Claim<'a>> {
        match &mut self.0 {
            ItemsForm::Text(items) => items.next().map(Claim::text),
            ItemsForm::Value(items) => items.next().map(Claim::value),
        }
    }
}

/// The registered claims verification reads (and the two profile claims), found in one pass over the
/// claims rather than one lookup each.
#[derive(Debug, Default, Clone, Copy)]
pub struct Registered<'a> {
    /// `iss`.
    pub iss: Option<Claim<'a>>,
    /// `sub`.
    pub sub: Option<Claim<'a>>,
    /// `aud`.
    pub aud: Option<Claim<'a>>,
    /// `exp`.
    pub exp: Option<Claim<'a>>,
    /// `nbf`.
    pub nbf: Option<Claim<'a>>,
    /// `iat`.
    pub iat: Option<Claim<'a>>,
    /// `jti`.
    pub jti: Option<Claim<'a>>,
    /// `act` (RFC 8693).
    pub act: Option<Claim<'a>>,
    /// `may_act` (RFC 8693).
    pub may_act: Option<Claim<'a>>,
    /// `client_id` (RFC 9068 access tokens).
    pub client_id: Option<Claim<'a>>,
    /// `txn` (transaction tokens).
    pub txn: Option<Claim<'a>>,
    /// `cnf` (RFC 7800): the key (`jkt`, RFC 9449) or certificate (`x5t#S256`, RFC 8705) the token is bound to.
    pub cnf: Option<Claim<'a>>,
}

/// How many claims [`Registered`] holds.
const REGISTERED: usize = 12;

/// Where claim `name` goes in [`Registered::from_slots`]. Three-byte names, most of them, are compared as one
/// integer: this runs for every member of every payload.
fn slot(name: &str) -> Option<usize> {
    const fn three(name: &[u8; 3]) -> u32 {
        u32::from_le_bytes([name[0], name[1], name[2], 0])
    }
    Some(match name.as_bytes() {
        &[a, b, c] => match u32::from_le_bytes([a, b, c, 0]) {
            x if x == three(b"iss") => 0,
            x if x == three(b"sub") => 1,
            x if x == three(b"aud") => 2,
            x if x == three(b"exp") => 3,
            x if x == three(b"nbf") => 4,
            x if x == three(b"iat") => 5,
            x if x == three(b"jti") => 6,
            x if x == three(b"act") => 7,
            x if x == three(b"txn") => 10,
            x if x == three(b"cnf") => 11,
            _ => return None,
        },
        b"may_act" => 8,
        b"client_id" => 9,
        _ => return None,
    })
}

impl<'a> Registered<'a> {
    /// Finds them in a parsed map.
    pub fn of(claims: &'a Map<String, Value>) -> Registered<'a> {
        let mut slots = [None; REGISTERED];
        for (name, value) in claims {
            if let Some(found) = slot(name).and_then(|i| slots.get_mut(i)) {
                *found = Some(Claim::value(value));
            }
        }
        Registered::from_slots(slots)
    }

    /// From the claims in [`slot`] order.
    fn from_slots(slots: [Option<Claim<'a>>; REGISTERED]) -> Registered<'a> {
        let [iss, sub, aud, exp, nbf, iat, jti, act, may_act, client_id, txn, cnf] = slots;
        Registered { iss, sub, aud, exp, nbf, iat, jti, act, may_act, client_id, txn, cnf }
    }

    /// Time rules: `exp` required and rejected at `now >= exp + skew`; `nbf` honoured; `iat` not in the future
    /// beyond skew; optional maximum lifetime (`exp - iat`, or `exp - now` without `iat`). Returns `exp`.
    pub fn check_times(&self, now: i64, skew: i64, max_lifetime: Option<i64>) -> Result<i64, TokenError> {
        let exp = self.exp.ok_or(TokenError::MissingClaim("exp"))?.numeric_date("exp")?;
        let nbf = self.nbf.map(|nbf| nbf.numeric_date("nbf")).transpose()?;
        let iat = self.iat.map(|iat| iat.numeric_date("iat")).transpose()?;
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
        let aud = self.aud.ok_or(TokenError::MissingClaim("aud"))?;
        if let Some(a) = aud.as_str() {
            return match a {
                "" => Err(TokenError::InvalidClaim("aud")),
                a if matches(a) => Ok(()),
                _ => Err(TokenError::WrongAudience),
            };
        }
        let (mut any, mut found) = (false, false);
        for item in aud.items().ok_or(TokenError::InvalidClaim("aud"))? {
            match item.as_str() {
                Some(a) if !a.is_empty() => found |= matches(a),
                _ => return Err(TokenError::InvalidClaim("aud")),
            }
            any = true;
        }
        match (any, found) {
            (false, _) => Err(TokenError::InvalidClaim("aud")),
            (true, true) => Ok(()),
            (true, false) => Err(TokenError::WrongAudience),
        }
    }
}

/// A required string claim, `name`, found as `claim`.
pub fn required_string<'a>(claim: Option<Claim<'a>>, name: &'static str) -> Result<&'a str, TokenError> {
    match claim.map(Claim::as_str) {
        None => Err(TokenError::MissingClaim(name)),
        Some(Some(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

/// RFC 8705: the token's `cnf.x5t#S256` (base64url SHA-256) against Envoy's hex digest of the peer
/// certificate. `None` when the token has no thumbprint or the digest is not hex.
pub fn certificate_bound(claims: &Claims, peer_hex: &str) -> Option<bool> {
    let cnf = claims.get("cnf")?.to_value();
    let thumbprint = cnf.as_object()?.get("x5t#S256")?.as_str()?;
    let decoded = crate::b64::decode(thumbprint.as_bytes()).ok()?;
    if decoded.len() != 32 || peer_hex.len() != 64 {
        return Some(false);
    }
    let mut peer = [0u8; 32];
    crate::percent::decode_hex_into(peer_hex.as_bytes(), &mut peer)?;
    Some(peer[..] == decoded[..])
}

/// RFC 9449 §6.1: the token's `cnf.jkt`, the thumbprint of the key it is bound to. `Ok(None)` when the token
/// has no `cnf` or its `cnf` has no `jkt` (bound otherwise, or not at all); a `cnf` that is not an object, or a
/// `jkt` that is not a non-empty string, is an invalid claim, never "unbound".
pub fn bound_key(claims: &Claims) -> Result<Option<String>, TokenError> {
    let Some(cnf) = claims.get("cnf") else { return Ok(None) };
    let cnf = cnf.to_value();
    let cnf = cnf.as_object().ok_or(TokenError::InvalidClaim("cnf"))?;
    match cnf.get("jkt") {
        None => Ok(None),
        Some(Value::String(jkt)) if !jkt.is_empty() => Ok(Some(jkt.clone())),
        Some(_) => Err(TokenError::InvalidClaim("cnf")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The claims of `v` both ways a token can hold them: kept as text (when the scanner takes it) and parsed.
    fn both(v: &Value) -> [Claims; 2] {
        let map = v.as_object().cloned().unwrap_or_default();
        [Claims::parse(v.to_string().into_bytes(), 32).unwrap(), Claims::from_map(map)]
    }

    /// `check` on both forms, which must agree; the answer.
    fn agreed<T: PartialEq + std::fmt::Debug>(v: &Value, check: impl Fn(&Registered<'_>) -> T) -> T {
        let [text, map] = both(v);
        let answer = check(&text.registered());
        assert_eq!(answer, check(&map.registered()), "{v}");
        answer
    }

    fn check_times(v: Value, now: i64, skew: i64, max: Option<i64>) -> Result<i64, TokenError> {
        agreed(&v, |r| r.check_times(now, skew, max))
    }

    fn check_audience(v: Value, accepted: &[String]) -> Result<(), TokenError> {
        agreed(&v, |r| r.check_audience(accepted))
    }

    #[test]
    fn usual_payloads_stay_text_until_the_map_is_asked_for() {
        let v = json!({"iss": "i", "aud": ["a", "b"], "exp": 3, "act": {"sub": "x", "act": {"sub": "y"}}, "n": null});
        let [text, map] = both(&v);
        assert!(!text.is_map_built() && map.is_map_built());
        assert_eq!(text.get("aud"), Some(Claim::text(r#"["a","b"]"#)));
        assert_eq!(text.get("iss").and_then(Claim::as_str), Some("i"));
        assert_eq!(text.get("sub"), None);
        let _ = text.registered();
        assert!(!text.is_map_built(), "registered claims are read from the text");
        assert_eq!(text.get("missing"), None);
        assert!(text.is_map_built(), "any other name is looked up in the map");
        assert!(text.get("n").is_some_and(Claim::is_null));
        assert_eq!(text.map(), map.map());
        for unusual in [json!({"sub": "a\"b"}), json!({"exp": 1.5}), json!({"n": -1}), json!({"s": "\n"})] {
            let [claims, _] = both(&unusual);
            assert!(claims.is_map_built(), "{unusual}");
            assert_eq!(Value::Object(claims.map().clone()), unusual);
        }
    }

    #[test]
    fn claim_values_read_the_same_from_text_and_from_the_map() {
        let v = json!({
            "s": "str", "e": "", "i": 42, "z": 0, "t": true, "f": false, "n": null,
            "a": ["x", 1, [2, "y,]"], {"k": "v"}], "o": {"k": [1, {"j": "}"}]}, "ea": [],
        });
        let [text, map] = both(&v);
        for name in ["s", "e", "i", "z", "t", "f", "n", "a", "o", "ea", "absent"] {
            let (t, m) = (text.get(name), map.get(name));
            assert_eq!(t.is_some(), m.is_some(), "{name}");
            let (Some(t), Some(m)) = (t, m) else { continue };
            assert_eq!(t.as_str(), m.as_str(), "{name}");
            assert_eq!(t.is_null(), m.is_null(), "{name}");
            assert_eq!(t.to_value(), m.to_value(), "{name}");
            let items = |c: Claim<'_>| c.items().map(|i| i.map(|c| c.to_value().into_owned()).collect::<Vec<_>>());
            assert_eq!(items(t), items(m), "{name}");
        }
    }

    #[test]
    fn exp_boundaries_are_exact() {
        let c = || json!({"exp": 1000});
        assert_eq!(check_times(c(), 999, 0, None), Ok(1000));
        assert_eq!(check_times(c(), 1000, 0, None), Err(TokenError::Expired));
        assert_eq!(check_times(c(), 1029, 30, None), Ok(1000));
        assert_eq!(check_times(c(), 1030, 30, None), Err(TokenError::Expired));
    }

    #[test]
    fn exp_of_wrong_type_or_range_is_invalid_not_absent() {
        let too_big = json!((1i64 << 40) + 1);
        for bad in
            [json!("1000"), json!(-1), json!(1e300), json!(u64::MAX), json!(null), json!([1]), json!({}), too_big]
        {
            assert_eq!(check_times(json!({ "exp": bad }), 0, 0, None), Err(TokenError::InvalidClaim("exp")), "{bad}");
        }
        assert_eq!(check_times(json!({}), 0, 0, None), Err(TokenError::MissingClaim("exp")));
        assert_eq!(check_times(json!({"exp": 0}), 0, 0, None), Err(TokenError::Expired));
        assert_eq!(check_times(json!({"exp": 1000.9}), 999, 0, None), Ok(1000));
        assert_eq!(check_times(json!({"exp": (1i64 << 40)}), 999, 0, None), Ok(1 << 40));
    }

    #[test]
    fn nbf_and_iat_in_the_future() {
        let c = || json!({"exp": 5000, "nbf": 2000});
        assert_eq!(check_times(c(), 1969, 30, None), Err(TokenError::NotYetValid));
        assert_eq!(check_times(c(), 1970, 30, None), Ok(5000));
        let c = json!({"exp": 5000, "nbf": (1i64 << 40)});
        assert_eq!(check_times(c, 1970, 30, None), Err(TokenError::NotYetValid));
        let c = json!({"exp": 5000, "iat": 2000});
        assert_eq!(check_times(c, 1900, 30, None), Err(TokenError::IssuedInFuture));
        assert_eq!(check_times(json!({"exp": 5000, "iat": "1"}), 1900, 30, None), Err(TokenError::InvalidClaim("iat")));
        assert_eq!(
            check_times(json!({"exp": 5000, "nbf": true}), 1900, 30, None),
            Err(TokenError::InvalidClaim("nbf"))
        );
    }

    #[test]
    fn maximum_lifetime() {
        assert_eq!(check_times(json!({"exp": 4600, "iat": 1000}), 1000, 0, Some(3600)), Ok(4600));
        assert_eq!(
            check_times(json!({"exp": 4601, "iat": 1000}), 1000, 0, Some(3600)),
            Err(TokenError::LifetimeTooLong)
        );
        assert_eq!(check_times(json!({"exp": 4601}), 1000, 0, Some(3600)), Err(TokenError::LifetimeTooLong));
    }

    #[test]
    fn registered_claims_are_found_in_one_pass() {
        let v = json!({
            "iss": "i", "sub": "s", "aud": ["a"], "exp": 3, "nbf": 1, "iat": 2, "jti": "j",
            "act": {"sub": "x"}, "may_act": {"sub": "y"}, "client_id": "c", "txn": "t",
            "scope": "read", "Sub": "not sub", "sub ": 0,
        });
        for claims in both(&v) {
            let r = claims.registered();
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
                ("client_id", r.client_id),
                ("txn", r.txn),
            ] {
                assert_eq!(found.map(|c| c.to_value().into_owned()).as_ref(), v.get(name), "{name}");
            }
        }
        let none = Claims::default();
        let none = none.registered();
        assert!(none.iss.is_none() && none.sub.is_none() && none.exp.is_none() && none.may_act.is_none());
    }

    #[test]
    fn audience_rules() {
        let ok = vec!["api".to_owned()];
        assert_eq!(check_audience(json!({"aud": "api"}), &ok), Ok(()));
        assert_eq!(check_audience(json!({"aud": ["x", "api"]}), &ok), Ok(()));
        assert_eq!(check_audience(json!({"aud": ["api", "x"]}), &ok), Ok(()));
        assert_eq!(check_audience(json!({"aud": "x"}), &ok), Err(TokenError::WrongAudience));
        assert_eq!(check_audience(json!({"aud": ["x", "y,api"]}), &ok), Err(TokenError::WrongAudience));
        assert_eq!(check_audience(json!({}), &ok), Err(TokenError::MissingClaim("aud")));
        for bad in [
            json!(""),
            json!([]),
            json!(["api", 1]),
            json!(["api", ["api"]]),
            json!(["api", null]),
            json!(7),
            json!([""]),
            json!({"api": "api"}),
            json!(true),
        ] {
            assert_eq!(check_audience(json!({ "aud": bad }), &ok), Err(TokenError::InvalidClaim("aud")), "{bad}");
        }
    }

    #[test]
    fn required_strings() {
        for (v, want) in [
            (json!({"c": "x"}), Ok("x")),
            (json!({}), Err(TokenError::MissingClaim("c"))),
            (json!({"c": ""}), Err(TokenError::InvalidClaim("c"))),
            (json!({"c": 1}), Err(TokenError::InvalidClaim("c"))),
            (json!({"c": null}), Err(TokenError::InvalidClaim("c"))),
        ] {
            for claims in both(&v) {
                assert_eq!(required_string(claims.get("c"), "c"), want, "{v}");
            }
        }
    }

    #[test]
    fn certificate_binding_reads_cnf_either_way() {
        let digest = [7u8; 32];
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let v = json!({"cnf": {"x5t#S256": crate::b64::encode(&digest)}});
        for claims in both(&v) {
            assert_eq!(certificate_bound(&claims, &hex), Some(true));
            assert_eq!(certificate_bound(&claims, &"00".repeat(32)), Some(false));
        }
        for claims in both(&json!({"cnf": "x"})) {
            assert_eq!(certificate_bound(&claims, &hex), None);
        }
        // A digest that is not strictly hex is not a digest: a sign or a space in a pair used to read as one.
        for claims in both(&v) {
            for bad in [format!("+{}", &hex[1..]), format!("-{}", &hex[1..]), format!(" {}", &hex[1..])] {
                assert_eq!(certificate_bound(&claims, &bad), None, "{bad}");
            }
        }
    }
}
