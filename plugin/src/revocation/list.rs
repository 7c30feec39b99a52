//! The revocation list an operator publishes for the gateway to fetch.
//!
//! The body is a compact JWS with `typ` `revocation-list+jwt`, signed by a key the configuration names, whose
//! claims are
//!
//! ```json
//! {"iss": "https://revocations.example", "iat": 1772366400, "exp": 1772452800,
//!  "revocations": [{"agent": "spiffe://corp.example/agent/reporter"}, {"jti": "8c1e", "issuer": "https://idp.example"}]}
//! ```
//!
//! verified as every signed statement is ([`StatementVerifier`]: size cap, strict JWS, `typ`, algorithm,
//! signature, `iss`, `aud` when configured, `iat` neither in the future nor older than the maximum age, `exp`
//! when present). Each entry of `revocations` is a [`SelectorDocument`]. Only where the configuration
//! explicitly allows unsigned lists may the body instead be the same claims as a plain JSON object (read by the
//! strict JSON reader: no repeated names), and the claim rules still apply.
//!
//! A list is accepted whole or refused whole, with the exact path of the problem (`revocations[3].agent: must
//! not be empty`): a bad list never replaces a good one. A list holds at most [`MAX_ENTRIES`] (100,000)
//! entries, and is at most [`MAX_LIST_BYTES`] long whatever the verifier allows.

use super::document::SelectorDocument;
use super::selector::Selector;
use crate::json::{self, JsonError};
use crate::token::CryptoBackend;
use crate::token::claims::Claims;
use crate::token::statement::{Statement, StatementError, StatementVerifier};
use serde_json::Value;
use std::fmt;

/// The JOSE `typ` of a signed revocation list.
pub const LIST_TYP: &str = "revocation-list+jwt";
/// Most entries a list may hold.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest list accepted, bytes, whatever the verifier allows.
pub const MAX_LIST_BYTES: usize = 32 << 20;
/// Deepest nesting of an unsigned list (the object, `revocations`, an entry, a value).
const MAX_UNSIGNED_DEPTH: usize = 8;
/// Tolerated clock difference for an unsigned list when no verifier gives one, seconds.
const UNSIGNED_CLOCK_SKEW: i64 = 30;

/// A verified list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// `iat`: which of two lists is newer.
    pub issued_at: i64,
    /// The revocations.
    pub selectors: Vec<Selector>,
}

/// Why a list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// Longer than [`MAX_LIST_BYTES`].
    TooLarge,
    /// A plain JSON list where unsigned lists are not allowed.
    Unsigned,
    /// A signed list, but no key is configured to verify it.
    NoVerifier,
    /// An unsigned list that is not one strict JSON object.
    Json(JsonError),
    /// The signed statement (or, unsigned, its claims) was refused.
    Statement(StatementError),
    /// A claim or an entry is wrong: where, and what.
    At {
        /// The exact path, e.g. `revocations[3].agent`.
        path: String,
        /// What is wrong there.
        message: String,
    },
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::TooLarge => write!(f, "revocation list is larger than {MAX_LIST_BYTES} bytes"),
            ListError::Unsigned => f.write_str("revocation list is not signed, and unsigned lists are not allowed"),
            ListError::NoVerifier => f.write_str("revocation list is signed, but no key is configured to verify it"),
            ListError::Json(e) => write!(f, "revocation list is {e}"),
            ListError::Statement(e) => write!(f, "revocation list refused: {e}"),
            ListError::At { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for ListError {}

fn at(path: impl Into<String>, message: impl Into<String>) -> ListError {
    ListError::At { path: path.into(), message: message.into() }
}

/// Reads and checks a list fetched at `now`. `verifier` checks a signed list (and the claims of an unsigned
/// one); `allow_unsigned` admits a plain JSON list.
pub fn parse(
    body: &[u8],
    verifier: Option<&StatementVerifier>,
    allow_unsigned: bool,
    now: i64,
    crypto: &dyn CryptoBackend,
) -> Result<List, ListError> {
    if body.len() > MAX_LIST_BYTES {
        return Err(ListError::TooLarge);
    }
    let body = body.trim_ascii();
    let statement = if body.starts_with(b"{") {
        if !allow_unsigned {
            return Err(ListError::Unsigned);
        }
        unsigned(body, verifier, now)?
    } else {
        let verifier = verifier.ok_or(ListError::NoVerifier)?;
        verifier.verify(body, now, crypto).map_err(ListError::Statement)?
    };
    let entries = match statement.claims.get("revocations") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(at("revocations", "must be an array")),
        None => return Err(at("revocations", "is required")),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(at("revocations", format!("has {} entries; at most {MAX_ENTRIES} are allowed", entries.len())));
    }
    let mut selectors = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        // serde would also read a struct from an array of its fields in order.
        if !entry.is_object() {
            return Err(at(format!("revocations[{i}]"), "must be an object"));
        }
        let doc: SelectorDocument = serde_path_to_error::deserialize(entry).map_err(|e| {
            let path = e.path().to_string();
            let path = if path.is_empty() || path == "." {
                format!("revocations[{i}]")
            } else {
                format!("revocations[{i}].{}", quoted(&path))
            };
            at(path, quoted(&e.inner().to_string()))
        })?;
        let selector = doc.to_selector().map_err(|e| {
            let path =
                if e.field.is_empty() { format!("revocations[{i}]") } else { format!("revocations[{i}].{}", e.field) };
            at(path, quoted(&e.message))
        })?;
        selectors.push(selector);
    }
    Ok(List { issued_at: statement.issued_at, selectors })
}

/// The claims of an unsigned list, checked by the rules a signed one's are.
fn unsigned(body: &[u8], verifier: Option<&StatementVerifier>, now: i64) -> Result<Statement, ListError> {
    if verifier.is_some_and(|v| body.len() > v.max_bytes) {
        return Err(ListError::Statement(StatementError::TooLarge));
    }
    let claims = Claims::from_map(json::parse_object(body, MAX_UNSIGNED_DEPTH).map_err(ListError::Json)?);
    let checked = match verifier {
        Some(verifier) => verifier.check_claims(&claims, now),
        None => {
            // No verifier: any issuer, any audience, any age; `iat` and `exp` still hold.
            let issuer = match claims.get("iss").and_then(|c| c.as_str()) {
                Some(iss) if !iss.is_empty() => iss.to_owned(),
                _ => return Err(ListError::Statement(StatementError::WrongIssuer)),
            };
            let rules = StatementVerifier {
                issuer,
                audiences: Vec::new(),
                algorithms: Vec::new(),
                keys: Default::default(),
                typ: LIST_TYP,
                clock_skew: UNSIGNED_CLOCK_SKEW,
                max_age: i64::MAX,
                max_bytes: MAX_LIST_BYTES,
            };
            rules.check_claims(&claims, now)
        }
    };
    checked.map_err(ListError::Statement)
}

/// At most 160 characters of a message that may quote the list, control characters escaped: fit for a log line.
fn quoted(text: &str) -> String {
    const MAX: usize = 160;
    let mut out = String::with_capacity(text.len().min(MAX));
    for c in text.chars().take(MAX) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests;
