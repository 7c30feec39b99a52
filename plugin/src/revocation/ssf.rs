//! Security events (SSF 1.0, CAEP 1.0) turned into revocations.
//!
//! A Security Event Token is first verified as a signed statement ([`crate::token::statement`]: `typ`
//! `secevent+jwt`, the transmitter's keys, `iss`, `aud`, `iat`); [`SecurityEvent::from_statement`] then applies
//! the SSF profile, and [`revocations`] decides what the event does. Replays are not refused here: the shared
//! state remembers applied event ids (`jti`) and applies each once.
//!
//! **The SSF profile** (SSF §4.1): `jti` required, 1 to 256 visible ASCII characters; `sub` must not be present
//! (the subject is in `sub_id`); `exp` must not be present; `events` an object with exactly one member, whose
//! value is an object; the subject is the top-level `sub_id` (an RFC 9493 subject identifier, an object with
//! `format`), or, for legacy CAEP events without one, the event's own `subject` member; `txn` optional, a
//! string; `toe` optional, a NumericDate. Anything else is refused with `invalid_request`.
//!
//! **Events.** CAEP event types are `https://schemas.openid.net/secevent/caep/event-type/<name>`, SSF ones
//! `https://schemas.openid.net/secevent/ssf/event-type/<name>`:
//!
//! | event | outcome |
//! |---|---|
//! | CAEP `session-revoked` | revoke |
//! | CAEP `credential-change`, `change_type` `revoke` or `delete` | revoke |
//! | CAEP `credential-change`, `change_type` `create` or `update` | ignored: informational |
//! | CAEP `credential-change` without a non-empty string `credential_type`, or with a `change_type` other than those four | refused (`invalid_request`) |
//! | CAEP `token-claims-change` | revoke (fail closed: the token must be issued again); refused unless `claims` is an object |
//! | SSF `verification`, `stream-updated` | ignored (the state or status is logged) |
//! | any other event type | ignored |
//!
//! An event never widens access: the only outcome besides ignoring or refusing it is revoking.
//!
//! **Cut-off and end.** The cut-off is the event's `event_timestamp` (a NumericDate; one later than now plus
//! the clock skew is refused with `invalid_request`), or the SET's `iat` without one. Every selector revokes the
//! tokens issued before the cut-off (`issued_before`), and ends at cut-off + [`Mapping::lifetime`] + the clock
//! skew (`expires`): by then every token issued before the cut-off has expired, however long it was allowed to
//! live and however the clocks differ. An event whose revocations would already have ended is ignored.
//!
//! **Subjects** (RFC 9493 and SSF §3), the subject of a revoking event:
//!
//! | format | selector |
//! |---|---|
//! | `iss_sub` `{iss, sub}` | `{subject: sub, issuer: iss}` and/or `{agent: sub, issuer: iss}`, as [`Mapping::iss_sub`] says (default both) |
//! | `jwt_id` `{iss, jti}` | `{jti, issuer: iss}` |
//! | `uri` `{uri}`, a SPIFFE ID | `{agent: uri}` (no issuer) |
//! | `uri` `{uri}`, any other URI | ignored |
//! | `opaque` `{id}` | `{agent}`, `{subject}`, `{client_id}` or `{jti}` `= id`, as [`Mapping::opaque`] says; ignored when it says nothing |
//! | `complex` | one selector with the facts of all its members (every fact must match): `user` mapped as its own format would be with a single fact (`iss_sub` gives the subject fact), `application` of format `opaque` gives `client_id`; a complex subject with any other member (`session`, `device`, `tenant`, `group`, `org_unit`, ...), a member of another format, or members that contradict each other, is ignored whole, never turned into a broader selector |
//! | `email`, `phone_number`, `account`, `did`, `aliases`, `ip-addresses`, `saml_assertion_id`, any other | ignored: subject format not supported |
//!
//! Agent selectors look where [`Mapping::scope`] says (the whole delegation chain by default). A subject that
//! is malformed (no or an empty `format`, a member missing, empty or of the wrong type, a value a selector cannot
//! hold) is refused with `invalid_request`; a revoking event without a subject too.

use super::document::excerpt;
use super::selector::{Facts, Kind, Scope, Selector};
use crate::token::spiffe::SpiffeId;
use crate::token::statement::Statement;
use serde_json::{Map, Value};
use std::fmt;

/// The prefix of CAEP event types.
pub const CAEP_EVENT: &str = "https://schemas.openid.net/secevent/caep/event-type/";
/// The prefix of SSF event types.
pub const SSF_EVENT: &str = "https://schemas.openid.net/secevent/ssf/event-type/";
/// Longest accepted `jti`, bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// Largest NumericDate accepted, as for tokens.
const MAX_NUMERIC_DATE: i64 = 1 << 40;

/// A verified SET that follows the SSF profile.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    /// `jti`: what the state de-duplicates by, and what acknowledgements name.
    pub jti: String,
    /// `iss`.
    pub issuer: String,
    /// `iat`.
    pub issued_at: i64,
    /// The event type URI.
    pub event_type: String,
    /// The event's payload.
    pub event: Map<String, Value>,
    /// The subject: `sub_id`, or the event's `subject`.
    pub subject: Option<Map<String, Value>>,
    /// `txn`.
    pub txn: Option<String>,
    /// `toe`.
    pub toe: Option<i64>,
}

/// A SET that breaks the SSF profile: always RFC 8935 `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsfError(&'static str);

impl SsfError {
    /// The RFC 8935 error code.
    pub fn code(&self) -> &'static str {
        "invalid_request"
    }

    /// What is wrong (never the SET's contents).
    pub fn description(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for SsfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SsfError {}

/// A NumericDate: a JSON number of seconds, integer or finite fraction (truncated), in `0..=2^40`.
fn numeric_date(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    let seconds = match n.as_i64() {
        Some(i) => i,
        None => {
            let f = n.as_f64().filter(|f| f.is_finite() && (0.0..=MAX_NUMERIC_DATE as f64).contains(f))?;
            f as i64
        }
    };
    (0..=MAX_NUMERIC_DATE).contains(&seconds).then_some(seconds)
}

impl SecurityEvent {
    /// Applies the SSF profile to a verified statement.
    pub fn from_statement(statement: Statement) -> Result<SecurityEvent, SsfError> {
        let Statement { mut claims, issued_at, jti } = statement;
        let jti = jti.ok_or(SsfError("jti is required"))?;
        if jti.is_empty() || jti.len() > MAX_JTI_BYTES || !jti.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SsfError("jti must be 1 to 256 visible ASCII characters"));
        }
        if claims.contains_key("sub") {
            return Err(SsfError("sub must not be present: the subject is in sub_id"));
        }
        if claims.contains_key("exp") {
            return Err(SsfError("exp must not be present"));
        }
        let issuer = match claims.get("iss") {
            Some(Value::String(iss)) => iss.clone(),
            _ => return Err(SsfError("iss must be a string")),
        };
        let events = match claims.remove("events") {
            Some(Value::Object(events)) => events,
            Some(_) => return Err(SsfError("events must be an object")),
            None => return Err(SsfError("events is required")),
        };
        if events.len() != 1 {
            return Err(SsfError("events must hold exactly one event"));
        }
        let Some((event_type, event)) = events.into_iter().next() else {
            return Err(SsfError("events must hold exactly one event"));
        };
        let Value::Object(event) = event else {
            return Err(SsfError("the event must be an object"));
        };
        if event_type.is_empty() {
            return Err(SsfError("the event type must not be empty"));
        }
        let subject = match claims.remove("sub_id") {
            Some(Value::Object(subject)) => Some(subject),
            Some(_) => return Err(SsfError("sub_id must be an object")),
            None => match event.get("subject") {
                Some(Value::Object(subject)) => Some(subject.clone()),
                Some(_) => return Err(SsfError("the event's subject must be an object")),
                None => None,
            },
        };
        let txn = match claims.get("txn") {
            None => None,
            Some(Value::String(txn)) => Some(txn.clone()),
            Some(_) => return Err(SsfError("txn must be a string")),
        };
        let toe = match claims.get("toe") {
            None => None,
            Some(toe) => Some(numeric_date(toe).ok_or(SsfError("toe must be a NumericDate"))?),
        };
        Ok(SecurityEvent { jti, issuer, issued_at, event_type, event, subject, txn, toe })
    }
}

/// Which selectors an `iss_sub` subject becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IssSubAs {
    /// `{subject: sub, issuer: iss}`: tokens about that subject.
    Subject,
    /// `{agent: sub, issuer: iss}`: tokens that agent presents (or takes part in, per the scope).
    Agent,
    /// Both.
    #[default]
    Both,
}

/// How events become selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Which selectors an `iss_sub` subject becomes.
    pub iss_sub: IssSubAs,
    /// What an `opaque` id names: [`Kind::Agent`], [`Kind::Subject`], [`Kind::ClientId`] or [`Kind::Jti`]; `None`
    /// (or any other kind): opaque subjects are not mapped.
    pub opaque: Option<Kind>,
    /// Where agent selectors look.
    pub scope: Scope,
    /// The longest lifetime of an accepted token, seconds: a revocation ends at its cut-off plus this (and the
    /// clock skew).
    pub lifetime: i64,
    /// Tolerated clock difference, seconds.
    pub clock_skew: i64,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Apply these revocations.
    Revoke(Vec<Selector>),
    /// Nothing to do (why, for the log); the event is acknowledged.
    Ignore(String),
    /// The event is malformed: reported to the transmitter with this RFC 8935 code.
    Refuse {
        /// The RFC 8935 error code.
        err: &'static str,
        /// What is wrong.
        description: String,
    },
}

fn refuse(description: impl Into<String>) -> Outcome {
    Outcome::Refuse { err: "invalid_request", description: description.into() }
}

/// What a subject maps to, short of refusing it.
enum Mapped {
    Selectors(Vec<Facts>),
    Ignore(String),
}

/// What an event's type asks for, short of refusing it.
enum Action {
    Revoke,
    Ignore(String),
}

/// What `event` does at `now`.
pub fn revocations(event: &SecurityEvent, mapping: &Mapping, now: i64) -> Outcome {
    match action(event) {
        Ok(Action::Revoke) => {}
        Ok(Action::Ignore(why)) => return Outcome::Ignore(why),
        Err(description) => return refuse(description),
    }
    let skew = mapping.clock_skew.max(0);
    let cut_off = match event.event.get("event_timestamp") {
        None => event.issued_at,
        Some(t) => match numeric_date(t) {
            None => return refuse("event_timestamp must be a NumericDate"),
            Some(t) if t > now.saturating_add(skew) => return refuse("event_timestamp is in the future"),
            Some(t) => t,
        },
    };
    let ends = cut_off.saturating_add(mapping.lifetime).saturating_add(skew);
    let Some(subject) = &event.subject else {
        return refuse("the event has no subject (sub_id)");
    };
    let facts = match map_subject(subject, mapping) {
        Ok(Mapped::Selectors(facts)) => facts,
        Ok(Mapped::Ignore(why)) => return Outcome::Ignore(why),
        Err(description) => return refuse(description),
    };
    if ends <= now {
        return Outcome::Ignore("every token issued before the event's cut-off has expired".into());
    }
    let mut selectors = Vec::with_capacity(facts.len());
    for facts in facts {
        let facts = Facts { issued_before: Some(cut_off), scope: mapping.scope, ..facts };
        match Selector::validated(facts) {
            Ok(selector) => selectors.push(selector.ending(ends)),
            Err(e) => return refuse(format!("subject: {e}")),
        }
    }
    Outcome::Revoke(selectors)
}

/// What the event's type asks for; `Err` for a malformed event.
fn action(event: &SecurityEvent) -> Result<Action, String> {
    if let Some(name) = event.event_type.strip_prefix(CAEP_EVENT) {
        match name {
            "session-revoked" => return Ok(Action::Revoke),
            "credential-change" => {
                match event.event.get("credential_type") {
                    Some(Value::String(t)) if !t.is_empty() => {}
                    _ => return Err("credential_type must be a non-empty string".into()),
                }
                return match event.event.get("change_type").and_then(Value::as_str) {
                    Some("revoke" | "delete") => Ok(Action::Revoke),
                    Some(change @ ("create" | "update")) => {
                        Ok(Action::Ignore(format!("credential-change {change}: informational")))
                    }
                    _ => Err("change_type must be create, revoke, update or delete".into()),
                };
            }
            "token-claims-change" => {
                return match event.event.get("claims") {
                    Some(Value::Object(_)) => Ok(Action::Revoke),
                    _ => Err("claims must be an object".into()),
                };
            }
            _ => {}
        }
    }
    let text = |name: &str| match event.event.get(name) {
        None => "none".to_owned(),
        Some(Value::String(s)) => excerpt(s),
        Some(_) => "not a string".to_owned(),
    };
    Ok(Action::Ignore(match event.event_type.strip_prefix(SSF_EVENT) {
        Some("verification") => format!("stream verification, state {}", text("state")),
        Some("stream-updated") => format!("stream updated, status {}", text("status")),
        _ => format!("event type not acted on: {}", excerpt(&event.event_type)),
    }))
}

/// A subject's `format`.
fn format(subject: &Map<String, Value>) -> Result<&str, String> {
    match subject.get("format") {
        Some(Value::String(f)) if !f.is_empty() => Ok(f),
        _ => Err("the subject's format must be a non-empty string".into()),
    }
}

/// A required, non-empty string member of a subject of a known `format`.
fn member<'a>(subject: &'a Map<String, Value>, format: &'static str, name: &'static str) -> Result<&'a str, String> {
    match subject.get(name) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v),
        _ => Err(format!("{format} subject: {name} must be a non-empty string")),
    }
}

/// The formats whose subjects name no fact a token carries.
fn unsupported(format: &str) -> Mapped {
    Mapped::Ignore(format!("subject format not supported: {}", excerpt(format)))
}

fn map_subject(subject: &Map<String, Value>, mapping: &Mapping) -> Result<Mapped, String> {
    let format = format(subject)?;
    if format == "iss_sub" {
        let (iss, sub) = (member(subject, "iss_sub", "iss")?, member(subject, "iss_sub", "sub")?);
        let as_subject = Facts { subject: Some(sub.into()), issuer: Some(iss.into()), ..Facts::default() };
        let as_agent = Facts { agent: Some(sub.into()), issuer: Some(iss.into()), ..Facts::default() };
        return Ok(Mapped::Selectors(match mapping.iss_sub {
            IssSubAs::Subject => vec![as_subject],
            IssSubAs::Agent => vec![as_agent],
            IssSubAs::Both => vec![as_subject, as_agent],
        }));
    }
    if format == "complex" {
        return complex(subject, mapping);
    }
    Ok(match single(subject, format, mapping)? {
        Some(facts) => Mapped::Selectors(vec![facts]),
        None => unsupported(format),
    })
}

/// A simple subject other than `iss_sub` as one selector's facts; `None` when it names none (an unmapped
/// `opaque` id, a `uri` that is not a SPIFFE ID, an unsupported format).
fn single(subject: &Map<String, Value>, format: &str, mapping: &Mapping) -> Result<Option<Facts>, String> {
    let facts = match format {
        "jwt_id" => {
            let (iss, jti) = (member(subject, "jwt_id", "iss")?, member(subject, "jwt_id", "jti")?);
            Facts { jti: Some(jti.into()), issuer: Some(iss.into()), ..Facts::default() }
        }
        "uri" => {
            let uri = member(subject, "uri", "uri")?;
            if SpiffeId::parse(uri).is_err() {
                return Ok(None);
            }
            Facts { agent: Some(uri.into()), ..Facts::default() }
        }
        "opaque" => {
            let id = Some(member(subject, "opaque", "id")?.to_owned());
            match mapping.opaque {
                Some(Kind::Agent) => Facts { agent: id, ..Facts::default() },
                Some(Kind::Subject) => Facts { subject: id, ..Facts::default() },
                Some(Kind::ClientId) => Facts { client_id: id, ..Facts::default() },
                Some(Kind::Jti) => Facts { jti: id, ..Facts::default() },
                Some(Kind::TrustDomain | Kind::Issuer) | None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(facts))
}

/// Members of a complex subject (SSF §3.3) that name nothing a token carries: an event with one is ignored.
const UNEVALUATED: [&str; 5] = ["device", "session", "tenant", "org_unit", "group"];

fn complex(subject: &Map<String, Value>, mapping: &Mapping) -> Result<Mapped, String> {
    for name in subject.keys() {
        match name.as_str() {
            "format" | "user" | "application" => {}
            name if UNEVALUATED.contains(&name) => {
                return Ok(Mapped::Ignore(format!("complex subject: {name} cannot be evaluated")));
            }
            name => return Ok(Mapped::Ignore(format!("complex subject: member {} not supported", excerpt(name)))),
        }
    }
    let simple = |name: &'static str| match subject.get(name) {
        None => Ok(None),
        Some(Value::Object(member)) => Ok(Some((member, format(member)?))),
        Some(_) => Err(format!("complex subject: {name} must be an object")),
    };
    let (user, application) = (simple("user")?, simple("application")?);
    if user.is_none() && application.is_none() {
        return Err("complex subject: needs a user or an application".into());
    }
    let mut facts = Facts::default();
    if let Some((user, format)) = user {
        let found = if format == "iss_sub" {
            let (iss, sub) = (member(user, "iss_sub", "iss")?, member(user, "iss_sub", "sub")?);
            Some(Facts { subject: Some(sub.into()), issuer: Some(iss.into()), ..Facts::default() })
        } else {
            single(user, format, mapping)?
        };
        let Some(found) = found else {
            return Ok(Mapped::Ignore(format!("complex subject: user of format {} not mapped", excerpt(format))));
        };
        facts = found;
    }
    if let Some((application, format)) = application {
        if format != "opaque" {
            return Ok(Mapped::Ignore(format!(
                "complex subject: application of format {} not mapped",
                excerpt(format)
            )));
        }
        let id = member(application, "opaque", "id")?;
        match &facts.client_id {
            Some(client_id) if client_id != id => {
                return Ok(Mapped::Ignore("complex subject: members contradict each other".into()));
            }
            _ => facts.client_id = Some(id.into()),
        }
    }
    Ok(Mapped::Selectors(vec![facts]))
}

#[cfg(test)]
mod tests;
