//! The delegation chain of a verified token (RFC 8693 §4.1 `act`, §4.4 `may_act`).
//!
//! The top-level `sub` is the subject: who the token is about, often a human or the originating service.
//! The outermost `act` object is the current actor, the party presenting the token (the agent). An `act`
//! nested inside an actor is the actor before it; the most deeply nested is the first (originating) actor:
//!
//! ```json
//! {"sub": "user@example", "act": {"sub": "agent-c", "act": {"sub": "agent-b", "act": {"sub": "agent-a"}}}}
//! ```
//!
//! gives `actors() == [agent-c, agent-b, agent-a]`: index 0 is current, the last is the first actor.
//!
//! # What may grant access
//!
//! RFC 8693 §4.1: for access-control decisions a token consumer MUST consider only the token's top-level
//! claims and the current actor. Earlier (nested) actors are informational only. This module therefore
//! exposes earlier actors for audit, forwarding and for the opt-in *chain mode* of policy, which may use
//! them only to *narrow* access (limit depth, require every actor to be in allowed trust domains or IDs,
//! require `may_act` to name the current actor). No decision may ever grant access because of a nested
//! actor's identity alone; in plain mode they are not consulted at all.
//!
//! Likewise an actor's claims other than its identity (`sub`, `iss`) are informational (RFC 8693 §4.1);
//! they are kept, as strings, for policy conditions and audit. Non-string claims of an actor are not kept
//! (a condition on them is therefore "missing", which never allows). The nested `act` inside an actor is
//! the previous actor, never one of its claims.
//!
//! # Bounds
//!
//! Parsing is a loop, not recursion, and stops at the configured depth (default [`DEFAULT_MAX_DEPTH`]); each
//! actor, and `may_act`, is capped at [`MAX_ACTOR_CLAIMS`] members and [`MAX_ACTOR_BYTES`] bytes of kept
//! names and values. Every wrong shape is an error, never "no delegation": `act` or a nested `act` that is
//! not an object (including `null`), an actor without a non-empty string `sub`, an `iss` that is not a
//! non-empty string, depth over the cap, `may_act` that is not an object, that has a non-string or empty
//! member, or that names no identifying claim.
//!
//! # Forwarded header encoding
//!
//! [`DelegationChain::header_value`] renders the actors' `sub` values, current first, joined by `,` with no
//! spaces: `current,previous,...,first`. Within each entry every byte that is `,`, `%`, or outside the
//! visible ASCII range `0x21..=0x7E` (space, controls including CR, LF and NUL, DEL, and every byte of a
//! non-ASCII UTF-8 character) is written as `%XX` with upper-case hex. The value therefore contains only
//! visible ASCII, splitting on `,` gives exactly one entry per actor, and percent-decoding each entry gives
//! back the exact UTF-8 `sub` ([`decode_header_value`] does both). A token without `act` gives the empty
//! string; the filter then omits the header.

use super::claims::{Claim, Registered, required_string};
use super::error::TokenError;
use super::spiffe::{SpiffeId, SpiffeIdError};
use serde_json::{Map, Value};

/// Default cap on the number of actors (nested `act` objects) in a token.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// Largest configurable delegation depth; the JSON depth cap of tokens bounds it anyway.
pub const MAX_DEPTH: usize = 16;

/// Cap on the members of one actor object (not counting its nested `act`) and of `may_act`.
pub const MAX_ACTOR_CLAIMS: usize = 16;

/// Cap on the bytes of one actor's (or `may_act`'s) kept claim names and string values together.
pub const MAX_ACTOR_BYTES: usize = 4096;

/// One party in the chain: an `act` object's identity and its other string claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    sub: String,
    iss: Option<String>,
    claims: Vec<(String, String)>,
}

impl Actor {
    /// `sub`: the actor's identity (non-empty).
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// `iss`, when the actor object names the issuer of its identity.
    pub fn iss(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// The actor's other string claims (neither `sub`, `iss` nor `act`), by name. Informational only.
    pub fn claims(&self) -> &[(String, String)] {
        &self.claims
    }

    /// Any string claim of the actor by name, `sub` and `iss` included.
    pub fn claim(&self, name: &str) -> Option<&str> {
        match name {
            "sub" => Some(&self.sub),
            "iss" => self.iss.as_deref(),
            _ => self.claims.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()),
        }
    }

    /// The actor's `sub` as a SPIFFE ID, for actors that are workloads.
    pub fn spiffe_id(&self) -> Result<SpiffeId, SpiffeIdError> {
        SpiffeId::parse(&self.sub)
    }

    /// Reads one actor object; its nested `act`, if any, is left to the caller.
    fn from_object(object: &Map<String, Value>) -> Result<Actor, TokenError> {
        const ERR: TokenError = TokenError::InvalidClaim("act");
        let members = object.len() - usize::from(object.contains_key("act"));
        if members > MAX_ACTOR_CLAIMS {
            return Err(ERR);
        }
        let mut sub = None;
        let mut iss = None;
        let mut claims = Vec::new();
        let mut bytes = 0;
        for (name, value) in object {
            match (name.as_str(), value) {
                ("act", _) => continue,
                ("sub" | "iss", Value::String(s)) if !s.is_empty() => {
                    if name == "sub" {
                        sub = Some(s.clone());
                    } else {
                        iss = Some(s.clone());
                    }
                }
                ("sub" | "iss", _) => return Err(ERR),
                (_, Value::String(s)) => claims.push((name.clone(), s.clone())),
                // Informational, and not representable as a string: not kept (module documentation).
                _ => continue,
            }
            bytes += name.len() + value.as_str().map_or(0, str::len);
            if bytes > MAX_ACTOR_BYTES {
                return Err(ERR);
            }
        }
        let sub = sub.ok_or(ERR)?;
        Ok(Actor { sub, iss, claims })
    }
}

/// `may_act` (RFC 8693 §4.4): claims identifying the party that may act for the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MayAct {
    claims: Vec<(String, String)>,
}

impl MayAct {
    /// `may_act.sub`, if named.
    pub fn sub(&self) -> Option<&str> {
        self.claim("sub")
    }

    /// `may_act.iss`, if named.
    pub fn iss(&self) -> Option<&str> {
        self.claim("iss")
    }

    /// Every claim `may_act` names (at least one besides `iss`), by name.
    pub fn claims(&self) -> &[(String, String)] {
        &self.claims
    }

    /// One named claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether `actor` is the party `may_act` describes: every claim `may_act` names is present in the
    /// actor with exactly the same value. An actor lacking a named claim is not permitted.
    pub fn permits(&self, actor: &Actor) -> bool {
        self.claims.iter().all(|(name, value)| actor.claim(name) == Some(value.as_str()))
    }

    fn from_value(value: &Value) -> Result<MayAct, TokenError> {
        const ERR: TokenError = TokenError::InvalidClaim("may_act");
        let Value::Object(object) = value else {
            return Err(ERR);
        };
        if object.len() > MAX_ACTOR_CLAIMS {
            return Err(ERR);
        }
        let mut claims = Vec::with_capacity(object.len());
        let mut bytes = 0;
        for (name, value) in object {
            // Every member is compared in `permits`, so every member must be a usable string.
            let Value::String(s) = value else {
                return Err(ERR);
            };
            if s.is_empty() {
                return Err(ERR);
            }
            bytes += name.len() + s.len();
            if bytes > MAX_ACTOR_BYTES {
                return Err(ERR);
            }
            claims.push((name.clone(), s.clone()));
        }
        // `iss` only qualifies an identity; on its own it would permit every actor of that issuer.
        if !claims.iter().any(|(name, _)| name != "iss") {
            return Err(ERR);
        }
        Ok(MayAct { claims })
    }
}

/// The subject, the actors (current first) and `may_act` of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationChain {
    subject: String,
    actors: Vec<Actor>,
    may_act: Option<MayAct>,
}

impl DelegationChain {
    /// Reads the chain from a verified token's claims, allowing at most `max_depth` actors.
    pub fn from_claims(claims: &Map<String, Value>, max_depth: usize) -> Result<DelegationChain, TokenError> {
        DelegationChain::from_registered(&Registered::of(claims), max_depth)
    }

    /// [`DelegationChain::from_claims`] from the claims already found.
    pub fn from_registered(claims: &Registered<'_>, max_depth: usize) -> Result<DelegationChain, TokenError> {
        let subject = required_string(claims.sub, "sub")?.to_owned();
        let mut actors = Vec::new();
        // Kept as text until now, `act` and `may_act` are parsed here, and only when the token has them.
        let act = claims.act.map(Claim::to_value);
        let mut next = act.as_deref();
        while let Some(value) = next {
            let Value::Object(object) = value else {
                return Err(TokenError::InvalidClaim("act"));
            };
            if actors.len() >= max_depth {
                return Err(TokenError::DelegationTooDeep);
            }
            actors.push(Actor::from_object(object)?);
            next = object.get("act");
        }
        let may_act = claims.may_act.map(|m| MayAct::from_value(&m.to_value())).transpose()?;
        Ok(DelegationChain { subject, actors, may_act })
    }

    /// The top-level `sub`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Every actor: index 0 is the current actor, the last is the first (originating) actor.
    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    /// The number of actors; 0 for a token without `act`.
    pub fn depth(&self) -> usize {
        self.actors.len()
    }

    /// The current actor (outermost `act`), the only one that may grant access (RFC 8693 §4.1).
    pub fn current_actor(&self) -> Option<&Actor> {
        self.actors.first()
    }

    /// The first actor (most deeply nested `act`). Informational: may only narrow access.
    pub fn originating_actor(&self) -> Option<&Actor> {
        self.actors.last()
    }

    /// The agent presenting the token: the current actor's `sub`, or the subject when there is no `act`.
    pub fn agent(&self) -> &str {
        self.current_actor().map_or(&self.subject, Actor::sub)
    }

    /// `may_act`, if the token carries it.
    pub fn may_act(&self) -> Option<&MayAct> {
        self.may_act.as_ref()
    }

    /// The chain for a forwarded header: `current,previous,...,first`, each `sub` percent-encoded as the
    /// module documentation specifies. Only visible ASCII; empty when there are no actors.
    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for (i, actor) in self.actors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            encode_entry(actor.sub(), &mut out);
        }
        out
    }
}

/// Appends `value` percent-encoded for the header: `,`, `%` and bytes outside `0x21..=0x7E` become `%XX`.
fn encode_entry(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b',' && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Decodes a [`DelegationChain::header_value`]: the actors' `sub` values, current first. `None` if the
/// value is not in that encoding (a byte outside visible ASCII, a bad `%` escape, an empty entry, or
/// entries that do not decode to UTF-8). The empty string decodes to no actors.
pub fn decode_header_value(value: &str) -> Option<Vec<String>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    value.split(',').map(decode_entry).collect()
}

fn decode_entry(entry: &str) -> Option<String> {
    let bytes = entry.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            // The header writes upper-case hex only, so that each value has one spelling.
            if bytes.get(i + 1..i + 3)?.iter().any(u8::is_ascii_lowercase) {
                return None;
            }
            out.push(crate::percent::escape_at(bytes, i)?);
            i += 3;
        } else if (0x21..=0x7e).contains(&b) && b != b',' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(claims: Value) -> Result<DelegationChain, TokenError> {
        chain_with(claims, DEFAULT_MAX_DEPTH)
    }

    fn chain_with(claims: Value, max_depth: usize) -> Result<DelegationChain, TokenError> {
        let Value::Object(map) = claims else { panic!("claims must be an object") };
        DelegationChain::from_claims(&map, max_depth)
    }

    /// `{"sub": subject, "act": {"sub": subs[0], "act": {"sub": subs[1], ...}}}`.
    fn nested(subject: &str, subs: &[&str]) -> Value {
        let mut act: Option<Value> = None;
        for sub in subs.iter().rev() {
            let mut object = json!({ "sub": sub });
            if let Some(inner) = act.take() {
                object["act"] = inner;
            }
            act = Some(object);
        }
        let mut claims = json!({ "sub": subject });
        if let Some(act) = act {
            claims["act"] = act;
        }
        claims
    }

    const USER: &str = "user@example.com";
    const A: &str = "spiffe://trading.example/agent/planner";
    const B: &str = "spiffe://trading.example/agent/researcher";
    const C: &str = "spiffe://trading.example/agent/trader";

    #[test]
    fn plain_token_has_no_actors() {
        let chain = chain(json!({"sub": USER, "iss": "https://issuer.example"})).unwrap();
        assert_eq!(chain.subject(), USER);
        assert_eq!(chain.depth(), 0);
        assert!(chain.actors().is_empty());
        assert_eq!(chain.current_actor(), None);
        assert_eq!(chain.originating_actor(), None);
        assert_eq!(chain.agent(), USER);
        assert_eq!(chain.may_act(), None);
        assert_eq!(chain.header_value(), "");
        assert_eq!(decode_header_value(""), Some(vec![]));
    }

    #[test]
    fn one_actor() {
        let chain = chain(json!({"sub": USER, "act": {"sub": C}})).unwrap();
        assert_eq!(chain.depth(), 1);
        let current = chain.current_actor().unwrap();
        assert_eq!(current.sub(), C);
        assert_eq!(current.iss(), None);
        assert!(current.claims().is_empty());
        assert_eq!(chain.originating_actor(), Some(current));
        assert_eq!(chain.agent(), C);
        assert_eq!(chain.subject(), USER);
        assert_eq!(chain.header_value(), C);
        assert_eq!(current.spiffe_id().unwrap().path(), "/agent/trader");
    }

    #[test]
    fn three_nested_actors_current_first() {
        // C acts now, on behalf of B, which acted on behalf of A, the first actor.
        let chain = chain(nested(USER, &[C, B, A])).unwrap();
        assert_eq!(chain.depth(), 3);
        let subs: Vec<&str> = chain.actors().iter().map(Actor::sub).collect();
        assert_eq!(subs, [C, B, A]);
        assert_eq!(chain.current_actor().unwrap().sub(), C);
        assert_eq!(chain.originating_actor().unwrap().sub(), A);
        assert_eq!(chain.agent(), C);
        assert_eq!(chain.header_value(), format!("{C},{B},{A}"));
        assert_eq!(decode_header_value(&chain.header_value()).unwrap(), [C, B, A]);
    }

    #[test]
    fn depth_cap() {
        let subs: Vec<String> = (0..DEFAULT_MAX_DEPTH + 1).map(|i| format!("agent-{i}")).collect();
        let refs: Vec<&str> = subs.iter().map(String::as_str).collect();
        assert_eq!(chain(nested(USER, &refs[..DEFAULT_MAX_DEPTH])).unwrap().depth(), DEFAULT_MAX_DEPTH);
        assert_eq!(chain(nested(USER, &refs)), Err(TokenError::DelegationTooDeep));
        assert_eq!(chain_with(nested(USER, &[C, B, A]), 2), Err(TokenError::DelegationTooDeep));
        assert_eq!(chain_with(nested(USER, &[C, B]), 2).unwrap().depth(), 2);
        assert_eq!(chain_with(nested(USER, &[C]), 0), Err(TokenError::DelegationTooDeep));
        assert_eq!(chain_with(nested(USER, &[]), 0).unwrap().depth(), 0);
    }

    #[test]
    fn very_deep_act_stops_at_the_cap() {
        // Far deeper than the token parser allows (32 levels); parsing stops at the cap without recursing.
        let subs: Vec<String> = (0..1_000).map(|i| format!("a{i}")).collect();
        let refs: Vec<&str> = subs.iter().map(String::as_str).collect();
        assert_eq!(chain(nested(USER, &refs)), Err(TokenError::DelegationTooDeep));
        assert_eq!(chain_with(nested(USER, &refs), usize::MAX).unwrap().depth(), 1_000);
    }

    #[test]
    fn act_of_wrong_type() {
        for act in [json!("agent"), json!(["agent"]), json!([{"sub": C}]), json!(7), json!(true), Value::Null] {
            assert_eq!(chain(json!({"sub": USER, "act": act})), Err(TokenError::InvalidClaim("act")), "{act}");
        }
        for act in [json!("agent"), json!(1), Value::Null, json!([])] {
            let claims = json!({"sub": USER, "act": {"sub": C, "act": act}});
            assert_eq!(chain(claims), Err(TokenError::InvalidClaim("act")), "{act}");
        }
    }

    #[test]
    fn actor_sub_and_iss_shape() {
        for act in [
            json!({}),
            json!({"iss": "https://issuer.example"}),
            json!({"sub": ""}),
            json!({"sub": 7}),
            json!({"sub": null}),
            json!({"sub": ["a"]}),
            json!({"sub": C, "iss": ""}),
            json!({"sub": C, "iss": 1}),
        ] {
            assert_eq!(chain(json!({"sub": USER, "act": act})), Err(TokenError::InvalidClaim("act")), "{act}");
        }
        // A nested (earlier) actor without `sub` is as wrong as a current one.
        let claims = json!({"sub": USER, "act": {"sub": C, "act": {"sub": B, "act": {"client_id": "x"}}}});
        assert_eq!(chain(claims), Err(TokenError::InvalidClaim("act")));
    }

    #[test]
    fn subject_shape() {
        assert_eq!(chain(json!({"act": {"sub": C}})), Err(TokenError::MissingClaim("sub")));
        assert_eq!(chain(json!({"sub": ""})), Err(TokenError::InvalidClaim("sub")));
        assert_eq!(chain(json!({"sub": 1})), Err(TokenError::InvalidClaim("sub")));
        assert_eq!(chain(json!({"sub": {"sub": USER}})), Err(TokenError::InvalidClaim("sub")));
    }

    #[test]
    fn actor_with_extra_claims() {
        let claims = json!({"sub": USER, "act": {
            "sub": C,
            "iss": "https://issuer.example",
            "client_id": "trader-app",
            "department": "equities",
            "amr": ["mfa"],
            "level": 3,
            "act": {"sub": B, "department": "research"},
        }});
        let chain = chain(claims).unwrap();
        let current = chain.current_actor().unwrap();
        assert_eq!(current.sub(), C);
        assert_eq!(current.iss(), Some("https://issuer.example"));
        assert_eq!(
            current.claims(),
            [("client_id".to_owned(), "trader-app".to_owned()), ("department".to_owned(), "equities".to_owned())]
        );
        assert_eq!(current.claim("department"), Some("equities"));
        assert_eq!(current.claim("sub"), Some(C));
        assert_eq!(current.claim("iss"), Some("https://issuer.example"));
        assert_eq!(current.claim("amr"), None);
        assert_eq!(current.claim("level"), None);
        assert_eq!(current.claim("act"), None);
        let previous = chain.originating_actor().unwrap();
        assert_eq!(previous.sub(), B);
        assert_eq!(previous.claim("department"), Some("research"));
    }

    #[test]
    fn actor_size_caps() {
        let mut act = Map::new();
        act.insert("sub".into(), json!(C));
        for i in 1..MAX_ACTOR_CLAIMS {
            act.insert(format!("c{i}"), json!(i));
        }
        act.insert("act".into(), json!({"sub": B}));
        let ok = json!({"sub": USER, "act": Value::Object(act.clone())});
        assert_eq!(chain(ok).unwrap().depth(), 2);
        act.insert("one_more".into(), json!("x"));
        assert_eq!(chain(json!({"sub": USER, "act": Value::Object(act)})), Err(TokenError::InvalidClaim("act")));

        let big = "x".repeat(MAX_ACTOR_BYTES);
        assert_eq!(chain(json!({"sub": USER, "act": {"sub": big}})), Err(TokenError::InvalidClaim("act")));
        let fits = "x".repeat(MAX_ACTOR_BYTES - "sub".len());
        assert!(chain(json!({"sub": USER, "act": {"sub": fits}})).is_ok());
        let claims = json!({"sub": USER, "act": {"sub": C, "note": "y".repeat(MAX_ACTOR_BYTES)}});
        assert_eq!(chain(claims), Err(TokenError::InvalidClaim("act")));
    }

    #[test]
    fn may_act_permits_and_denies() {
        let claims = json!({"sub": USER, "may_act": {"sub": C}, "act": {"sub": C}});
        let chain1 = chain(claims).unwrap();
        let may_act = chain1.may_act().unwrap();
        assert_eq!(may_act.sub(), Some(C));
        assert_eq!(may_act.iss(), None);
        assert!(may_act.permits(chain1.current_actor().unwrap()));

        let claims = json!({"sub": USER, "may_act": {"sub": C}, "act": {"sub": B, "act": {"sub": C}}});
        let chain2 = chain(claims).unwrap();
        let may_act = chain2.may_act().unwrap();
        assert!(!may_act.permits(chain2.current_actor().unwrap()));
        // The first actor matching does not make the current one permitted.
        assert!(may_act.permits(chain2.originating_actor().unwrap()));

        // Every named claim must match; a missing one denies.
        let iss = "https://issuer.example";
        let claims = json!({"sub": USER, "may_act": {"sub": C, "iss": iss}, "act": {"sub": C}});
        let chain3 = chain(claims).unwrap();
        assert!(!chain3.may_act().unwrap().permits(chain3.current_actor().unwrap()));
        let claims = json!({"sub": USER, "may_act": {"sub": C, "iss": iss}, "act": {"sub": C, "iss": iss}});
        let chain4 = chain(claims).unwrap();
        assert!(chain4.may_act().unwrap().permits(chain4.current_actor().unwrap()));
        let claims = json!({"sub": USER, "may_act": {"sub": C, "iss": iss}, "act": {"sub": C, "iss": "https://x"}});
        let chain5 = chain(claims).unwrap();
        assert!(!chain5.may_act().unwrap().permits(chain5.current_actor().unwrap()));

        // Other identifying claims are compared too.
        let claims =
            json!({"sub": USER, "may_act": {"client_id": "trader-app"}, "act": {"sub": C, "client_id": "trader-app"}});
        let chain6 = chain(claims).unwrap();
        assert!(chain6.may_act().unwrap().permits(chain6.current_actor().unwrap()));
        // Exact, case-sensitive comparison.
        let claims = json!({"sub": USER, "may_act": {"sub": C.to_uppercase()}, "act": {"sub": C}});
        let chain7 = chain(claims).unwrap();
        assert!(!chain7.may_act().unwrap().permits(chain7.current_actor().unwrap()));
    }

    #[test]
    fn may_act_without_act() {
        let chain = chain(json!({"sub": USER, "may_act": {"sub": C}})).unwrap();
        assert_eq!(chain.depth(), 0);
        assert_eq!(chain.may_act().unwrap().claims(), [("sub".to_owned(), C.to_owned())]);
    }

    #[test]
    fn may_act_of_wrong_shape() {
        for may_act in [
            json!("agent"),
            json!([{"sub": C}]),
            json!(1),
            Value::Null,
            json!({}),
            json!({"iss": "https://issuer.example"}),
            json!({"sub": ""}),
            json!({"sub": 5}),
            json!({"sub": C, "act": {"sub": B}}),
            json!({"sub": C, "amr": ["mfa"]}),
            json!({"sub": "x".repeat(MAX_ACTOR_BYTES)}),
        ] {
            let claims = json!({"sub": USER, "may_act": may_act, "act": {"sub": C}});
            assert_eq!(chain(claims), Err(TokenError::InvalidClaim("may_act")), "{may_act}");
        }
        let mut many = Map::new();
        for i in 0..=MAX_ACTOR_CLAIMS {
            many.insert(format!("c{i}"), json!("v"));
        }
        let claims = json!({"sub": USER, "may_act": Value::Object(many)});
        assert_eq!(chain(claims), Err(TokenError::InvalidClaim("may_act")));
    }

    #[test]
    fn header_value_escapes_separators_and_controls() {
        let nasty = [
            "a,b",
            "100%",
            "line\r\nX-Injected: 1",
            "nul\0byte",
            "tab\there",
            "space here",
            "del\x7f",
            "ünïcode→",
            " ",
            "%2C",
        ];
        let chain = chain_with(nested(USER, &nasty), nasty.len()).unwrap();
        let header = chain.header_value();
        assert!(header.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{header:?}");
        assert!(!header.contains('\r') && !header.contains('\n') && !header.contains('\0'));
        assert_eq!(header.split(',').count(), nasty.len());
        assert_eq!(
            header,
            "a%2Cb,100%25,line%0D%0AX-Injected:%201,nul%00byte,tab%09here,space%20here,del%7F,\
             %C3%BCn%C3%AFcode%E2%86%92,%20,%252C"
        );
        assert_eq!(decode_header_value(&header).unwrap(), nasty);
    }

    #[test]
    fn header_value_never_carries_control_bytes() {
        // Every single byte value (as UTF-8 where needed), alone and surrounded, in every position.
        let mut subs: Vec<String> = (0u32..=0xff).filter_map(char::from_u32).map(|c| format!("x{c}y")).collect();
        subs.push("\u{2028}\u{feff}\u{10ffff}".into());
        for group in subs.chunks(DEFAULT_MAX_DEPTH) {
            let refs: Vec<&str> = group.iter().map(String::as_str).collect();
            let chain = chain(nested(USER, &refs)).unwrap();
            let header = chain.header_value();
            assert!(header.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{header:?}");
            assert_eq!(decode_header_value(&header).unwrap(), refs);
        }
    }

    #[test]
    fn decode_rejects_non_encoded_input() {
        for bad in [
            "a,", ",a", "a,,b", "a b", "a\r\nb", "%", "%2", "%zz", "%2c", "%FF", "\u{e9}", "%+4", "%-1", "% 1", "a%4",
            "%G0",
        ] {
            assert_eq!(decode_header_value(bad), None, "{bad:?}");
        }
        assert_eq!(decode_header_value("a%2Cb,c").unwrap(), ["a,b", "c"]);
    }
}
