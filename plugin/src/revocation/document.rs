//! One revocation as operators write it, in the configuration (`revocation.selectors`) and in a revocation
//! list (`revocations`):
//!
//! ```json
//! {"agent": "spiffe://corp.example/agent/reporter", "in": "current", "issued_before": "2026-03-01T12:00:00Z"}
//! ```
//!
//! `jti`, `agent`, `subject`, `trust_domain`, `client_id` and `issuer` name the facts a token must all match;
//! `in` is where `agent` and `trust_domain` look (`chain`, the default: the subject and every actor of the
//! delegation chain; `current`: the agent presenting the token); `issued_before` (the cut-off) and `expires`
//! (when the revocation ends) are each a NumericDate (seconds since 1970) or an RFC 3339 time. The rules a
//! selector must follow are [`Selector::validated`]'s.

use super::selector::{Facts, Scope, Selector, SelectorError};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Largest NumericDate accepted, as for tokens.
const MAX_NUMERIC_DATE: i64 = 1 << 40;

/// One revocation as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SelectorDocument {
    /// One token, by `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// An agent: its ID (a SPIFFE ID or another `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A subject (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Every agent of a SPIFFE trust domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// A `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The token's issuer, as the configuration names it. Alone, only with `issued_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where `agent` and `trust_domain` look: `chain` (default) or `current`.
    #[serde(default, rename = "in")]
    pub scope: Scope,
    /// Only tokens issued before this time are revoked (a token without `iat` is revoked too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<Time>,
    /// When the revocation ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

/// A time as written: seconds since 1970, or RFC 3339 text (`2026-03-01T12:00:00Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Time {
    /// A NumericDate.
    Seconds(i64),
    /// An RFC 3339 time.
    Text(String),
}

impl Time {
    /// Seconds since the epoch: from 1 to 2^40. `field` names the field in an error.
    pub fn seconds(&self, field: &'static str) -> Result<i64, SelectorError> {
        let seconds = match self {
            Time::Seconds(s) => *s,
            Time::Text(text) => jiff::Timestamp::from_str(text).map(|t| t.as_second()).map_err(|_| SelectorError {
                field,
                message: "must be seconds since 1970 or an RFC 3339 time (2026-03-01T12:00:00Z)".into(),
            })?,
        };
        if !(1..=MAX_NUMERIC_DATE).contains(&seconds) {
            return Err(SelectorError { field, message: "must be from 1970 to 2^40 seconds after it".into() });
        }
        Ok(seconds)
    }
}

impl SelectorDocument {
    /// The selector this document describes; an error names the field.
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        let issued_before = self.issued_before.as_ref().map(|t| t.seconds("issued_before")).transpose()?;
        let expires = self.expires.as_ref().map(|t| t.seconds("expires")).transpose()?;
        Selector::validated(Facts {
            jti: self.jti.clone(),
            agent: self.agent.clone(),
            client_id: self.client_id.clone(),
            subject: self.subject.clone(),
            trust_domain: self.trust_domain.clone(),
            issuer: self.issuer.clone(),
            scope: self.scope,
            issued_before,
            expires,
        })
    }
}

/// The selectors of `docs`, found at `at` (e.g. `revocation.selectors`); an error is the exact path of the
/// problem (`revocation.selectors[2].trust_domain`) and what is wrong there.
pub fn selectors(docs: &[SelectorDocument], at: &str) -> Result<Vec<Selector>, (String, String)> {
    docs.iter()
        .enumerate()
        .map(|(i, doc)| {
            doc.to_selector().map_err(|e| {
                let path = if e.field.is_empty() { format!("{at}[{i}]") } else { format!("{at}[{i}].{}", e.field) };
                (path, e.message)
            })
        })
        .collect()
}

/// At most 64 characters of `text`, with control and non-ASCII characters escaped: what a log line or an error
/// may quote of something it did not write.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text.chars().take(MAX).flat_map(char::escape_default).collect();
    if text.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: serde_json::Value) -> SelectorDocument {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn documents_become_selectors() {
        let d = doc(json!({"agent": "spiffe://a.example/x", "in": "current", "issued_before": "2026-03-01T12:00:00Z",
            "expires": 1_900_000_000}));
        let want = Selector::validated(Facts {
            agent: Some("spiffe://a.example/x".into()),
            scope: Scope::Current,
            issued_before: Some(1_772_366_400),
            expires: Some(1_900_000_000),
            ..Facts::default()
        })
        .unwrap();
        assert_eq!(d.to_selector().unwrap(), want);
        assert_eq!(doc(json!({"jti": "t"})).scope, Scope::Chain);
        let offset = doc(json!({"issuer": "i", "issued_before": "2026-03-01T13:00:00+01:00"}));
        assert_eq!(offset.to_selector().unwrap().issued_before(), Some(1_772_366_400));
        // Written back, read again: the same document.
        let again: SelectorDocument = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(again, d);
        assert_eq!(serde_json::to_value(doc(json!({"jti": "t"}))).unwrap(), json!({"jti": "t", "in": "chain"}));
    }

    #[test]
    fn the_shape_is_strict() {
        for bad in [
            json!({"jti": "t", "extra": 1}),
            json!({"jti": 1}),
            json!({"in": "everywhere", "jti": "t"}),
            json!({"jti": "t", "expires": 1.5}),
            json!({"jti": "t", "expires": true}),
            json!({"jti": "t", "expires": u64::MAX}),
            json!("jti"),
        ] {
            assert!(serde_json::from_value::<SelectorDocument>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_path() {
        let docs: Vec<SelectorDocument> = serde_json::from_value(json!([
            {"jti": "ok"},
            {"agent": "a", "expires": "tomorrow"},
            {"trust_domain": "Not A Domain"},
            {},
            {"subject": ""},
            {"issuer": "i"},
            {"jti": "t", "issued_before": 0},
            {"jti": "t", "issued_before": 20, "expires": 10},
            {"jti": "t", "expires": (1i64 << 40) + 1},
            {"client_id": "a\u{7}b"},
        ]))
        .unwrap();
        let at = |i: usize| selectors(&docs[i..=i], "revocation.selectors").map(|_| ()).unwrap_err();
        assert!(selectors(&docs[..1], "x").is_ok());
        assert_eq!(at(1).0, "revocation.selectors[0].expires");
        for (i, path) in [
            (2, "trust_domain"),
            (4, "subject"),
            (6, "issued_before"),
            (7, "expires"),
            (8, "expires"),
            (9, "client_id"),
        ] {
            assert_eq!(at(i).0, format!("revocation.selectors[0].{path}"), "{i}");
        }
        assert_eq!(at(3).0, "revocation.selectors[0]");
        assert_eq!(at(5).0, "revocation.selectors[0]");
        assert_eq!(selectors(&docs, "s").unwrap_err().0, "s[1].expires");
        assert_eq!(at(4).1, "must not be empty");
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("plain"), "plain");
        assert_eq!(excerpt("a\nb\u{1b}\"é"), "a\\nb\\u{1b}\\\"\\u{e9}");
        let long = "x".repeat(100);
        assert_eq!(excerpt(&long), format!("{}...", "x".repeat(64)));
    }
}
