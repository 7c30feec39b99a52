//! Revocation selectors: which verified tokens a revocation refuses.
//!
//! A selector names one or more facts of a token (its `jti`, its agent, its subject, the agent's SPIFFE
//! trust domain, its `client_id`, its issuer); a token is revoked when **every** fact the selector names
//! matches it (a complex SSF subject, `user` and `application`, becomes one selector with two facts), and,
//! when the selector has a cut-off, the token was issued before it. A token without `iat` cannot show that
//! it was issued after a cut-off, so a cut-off revokes it too. An issuer alone is a selector only with a
//! cut-off ("tokens of this issuer issued before T no longer count"): revoking an issuer for good is a
//! configuration change, not a revocation.
//!
//! `agent` and `trust_domain` compare with the current actor (the agent presenting the token) or, with
//! `in: chain` (the default), with every party of the delegation chain: the subject and every actor. A
//! compromised agent is then cut off also where it acts through another agent.

use crate::token::VerifiedToken;
use crate::token::spiffe::{SpiffeId, TrustDomain};
use serde::{Deserialize, Serialize};

/// Longest value a selector may name, bytes (a SPIFFE ID is at most 2048).
pub const MAX_VALUE_BYTES: usize = 2048;

/// The fact a selector is filed under: its most specific one. Also the label of refusals and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One token, by `jti`.
    Jti,
    /// An agent, by its ID (a SPIFFE ID or another `sub`).
    Agent,
    /// A `client_id`.
    ClientId,
    /// A subject (`sub`, the root of the delegation chain).
    Subject,
    /// Every agent of a SPIFFE trust domain.
    TrustDomain,
    /// Every token of an issuer issued before a cut-off.
    Issuer,
}

impl Kind {
    /// Every kind, most specific first.
    pub const ALL: [Kind; 6] = [Kind::Jti, Kind::Agent, Kind::ClientId, Kind::Subject, Kind::TrustDomain, Kind::Issuer];

    /// The stable name: configuration key, metric label, log and audit reason.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Agent => "agent",
            Kind::ClientId => "client_id",
            Kind::Subject => "subject",
            Kind::TrustDomain => "trust_domain",
            Kind::Issuer => "issuer",
        }
    }
}

/// Where `agent` and `trust_domain` look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The subject and every actor of the delegation chain.
    #[default]
    Chain,
    /// The current actor only (the agent presenting the token).
    Current,
}

/// One revocation: the facts a token must all match, a cut-off, and when the revocation ends. Built only by
/// [`Selector::validated`], so every selector names at least one fact and its values are well formed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust_domain: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<Box<str>>,
    #[serde(default, rename = "in")]
    scope: Scope,
    /// Only tokens issued before this time (seconds since the epoch) are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_before: Option<i64>,
    /// The revocation ends at this time (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<i64>,
}

/// The facts of a selector, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `jti`.
    pub jti: Option<String>,
    /// The agent's ID.
    pub agent: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// A SPIFFE trust domain name.
    pub trust_domain: Option<String>,
    /// The token's issuer (as the configuration names it).
    pub issuer: Option<String>,
    /// Where `agent` and `trust_domain` look.
    pub scope: Scope,
    /// The cut-off.
    pub issued_before: Option<i64>,
    /// The end.
    pub expires: Option<i64>,
}

/// Why facts are not a selector: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// The field (`jti`, `trust_domain`, ...), or empty for the selector as a whole.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl SelectorError {
    fn new(field: &'static str, message: impl Into<String>) -> SelectorError {
        SelectorError { field, message: message.into() }
    }
}

impl std::fmt::Display for SelectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

/// The rules every value a selector names follows: non-empty, at most [`MAX_VALUE_BYTES`], no control
/// characters.
fn check_value(field: &'static str, v: &str) -> Result<(), SelectorError> {
    if v.is_empty() {
        Err(SelectorError::new(field, "must not be empty"))
    } else if v.len() > MAX_VALUE_BYTES {
        Err(SelectorError::new(field, format!("must be at most {MAX_VALUE_BYTES} bytes")))
    } else if v.chars().any(char::is_control) {
        Err(SelectorError::new(field, "must not contain control characters"))
    } else {
        Ok(())
    }
}

fn value(field: &'static str, v: Option<String>) -> Result<Option<Box<str>>, SelectorError> {
    match v {
        None => Ok(None),
        Some(v) => check_value(field, &v).map(|()| Some(v.into_boxed_str())),
    }
}

impl Selector {
    /// Checks facts and makes them a selector: at least one fact besides the issuer (or the issuer with a
    /// cut-off), values non-empty, free of control characters and at most [`MAX_VALUE_BYTES`], a trust
    /// domain a valid SPIFFE trust domain name, times positive and the cut-off before the end.
    pub fn validated(facts: Facts) -> Result<Selector, SelectorError> {
        let trust_domain = match value("trust_domain", facts.trust_domain)? {
            None => None,
            Some(td) => Some(
                TrustDomain::parse(&td)
                    .map_err(|e| SelectorError::new("trust_domain", format!("not a SPIFFE trust domain: {e}")))?
                    .as_str()
                    .into(),
            ),
        };
        let selector = Selector {
            jti: value("jti", facts.jti)?,
            agent: value("agent", facts.agent)?,
            client_id: value("client_id", facts.client_id)?,
            subject: value("subject", facts.subject)?,
            trust_domain,
            issuer: value("issuer", facts.issuer)?,
            scope: facts.scope,
            issued_before: facts.issued_before,
            expires: facts.expires,
        };
        selector.check()?;
        Ok(selector)
    }

    /// The rules [`Selector::validated`] states, also applied to selectors read back from shared data.
    pub fn check(&self) -> Result<(), SelectorError> {
        let names_a_fact = self.jti.is_some()
            || self.agent.is_some()
            || self.client_id.is_some()
            || self.subject.is_some()
            || self.trust_domain.is_some();
        let issuer_with_cut_off = self.issuer.is_some() && self.issued_before.is_some();
        if !(names_a_fact || issuer_with_cut_off) {
            return Err(SelectorError::new(
                "",
                "must name jti, agent, client_id, subject or trust_domain, or an issuer with issued_before",
            ));
        }
        for (field, v) in [
            ("jti", &self.jti),
            ("agent", &self.agent),
            ("client_id", &self.client_id),
            ("subject", &self.subject),
            ("issuer", &self.issuer),
        ] {
            if let Some(v) = v {
                check_value(field, v)?;
            }
        }
        if let Some(td) = &self.trust_domain
            && TrustDomain::parse(td).is_err()
        {
            return Err(SelectorError::new("trust_domain", "not a SPIFFE trust domain"));
        }
        if self.issued_before.is_some_and(|t| t <= 0) {
            return Err(SelectorError::new("issued_before", "must be after 1970"));
        }
        if self.expires.is_some_and(|t| t <= 0) {
            return Err(SelectorError::new("expires", "must be after 1970"));
        }
        if let (Some(cut), Some(end)) = (self.issued_before, self.expires)
            && end <= cut
        {
            return Err(SelectorError::new("expires", "must be later than issued_before"));
        }
        Ok(())
    }

    /// The most specific fact: what the selector is filed and reported under.
    pub fn kind(&self) -> Kind {
        if self.jti.is_some() {
            Kind::Jti
        } else if self.agent.is_some() {
            Kind::Agent
        } else if self.client_id.is_some() {
            Kind::ClientId
        } else if self.subject.is_some() {
            Kind::Subject
        } else if self.trust_domain.is_some() {
            Kind::TrustDomain
        } else {
            Kind::Issuer
        }
    }

    /// The value of the fact the selector is filed under.
    pub fn key(&self) -> &str {
        let v = match self.kind() {
            Kind::Jti => &self.jti,
            Kind::Agent => &self.agent,
            Kind::ClientId => &self.client_id,
            Kind::Subject => &self.subject,
            Kind::TrustDomain => &self.trust_domain,
            Kind::Issuer => &self.issuer,
        };
        v.as_deref().unwrap_or("")
    }

    /// Where `agent` and `trust_domain` look.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The cut-off, if any.
    pub fn issued_before(&self) -> Option<i64> {
        self.issued_before
    }

    /// When the revocation ends, if ever.
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }

    /// The same selector ending at `at` (the earlier of its own end and `at`).
    pub fn ending(mut self, at: i64) -> Selector {
        self.expires = Some(self.expires.map_or(at, |e| e.min(at)));
        self
    }

    /// Whether the selector still applies at `now`.
    pub fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|end| now < end)
    }

    /// Whether the selector revokes a token with these facts (at a time it is live).
    pub fn matches(&self, token: &TokenFacts) -> bool {
        let eq = |want: &Option<Box<str>>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        if !eq(&self.jti, token.jti())
            || !eq(&self.client_id, token.client_id())
            || !eq(&self.subject, Some(token.subject()))
            || !eq(&self.issuer, Some(token.issuer()))
        {
            return false;
        }
        if let Some(agent) = &self.agent {
            let found = match self.scope {
                Scope::Chain => token.parties().any(|p| p == &**agent),
                Scope::Current => token.agent() == &**agent,
            };
            if !found {
                return false;
            }
        }
        if let Some(td) = &self.trust_domain {
            let found = match self.scope {
                Scope::Chain => token.domains().any(|d| d == &**td),
                Scope::Current => token.agent_domain() == Some(&**td),
            };
            if !found {
                return false;
            }
        }
        match (self.issued_before, token.issued_at) {
            (None, _) => true,
            (Some(cut), Some(iat)) => iat < cut,
            // Without `iat` a token cannot show it was issued after the cut-off.
            (Some(_), None) => true,
        }
    }
}

/// The hash a revocation set files a fact's value under and looks it up by: fixed (the same in every VM and
/// for every set, so a token's facts are hashed once, when they are extracted, and never on a check), 64 bits
/// on every target. Two values with the same hash only cost a comparison: a set confirms every selector it
/// finds against the whole token ([`Selector::matches`]).
pub(super) fn fact_hash(text: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = text.as_bytes();
    let mut h = (bytes.len() as u64) ^ 0x243f_6a88_85a3_08d3;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = chunk.try_into().map_or(0, u64::from_le_bytes);
        h = (h ^ word).wrapping_mul(K).rotate_left(31);
    }
    let tail = chunks.remainder().iter().enumerate().fold(0u64, |t, (i, &b)| t | u64::from(b) << (8 * i));
    h = (h ^ tail).wrapping_mul(K);
    // MurmurHash3's finaliser: every bit of the state reaches the low bits (the bucket) and the top ones.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The [`fact_hash`]es of a token's facts, computed with them: what a revocation set looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FactHashes {
    pub(super) issuer: u64,
    pub(super) jti: Option<u64>,
    pub(super) client_id: Option<u64>,
    pub(super) subject: u64,
    pub(super) agent: u64,
    /// Every party's, each value once.
    pub(super) parties: Vec<u64>,
    pub(super) agent_domain: Option<u64>,
    /// Every trust domain's, each once.
    pub(super) domains: Vec<u64>,
}

/// What revocation reads of a verified token, extracted once when the token is admitted (and cached with
/// it), so a check compares strings it already holds and looks up hashes it already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    issuer: Box<str>,
    jti: Option<Box<str>>,
    client_id: Option<Box<str>>,
    issued_at: Option<i64>,
    /// The subject first, then every actor from the first (originating) to the current one; never empty,
    /// the last is the agent.
    parties: Vec<Box<str>>,
    /// The SPIFFE trust domain of each party, where it is a SPIFFE ID.
    domains: Vec<Option<Box<str>>>,
    hashes: FactHashes,
}

impl TokenFacts {
    /// The facts of a verified token.
    pub fn of(token: &VerifiedToken) -> TokenFacts {
        let registered = token.claims.registered();
        let text = |c: Option<crate::token::claims::Claim<'_>>| c.and_then(|c| c.as_str()).map(Box::from);
        let mut parties: Vec<Box<str>> = Vec::with_capacity(1 + token.chain.depth());
        parties.push(token.subject().into());
        parties.extend(token.chain.actors().iter().rev().map(|a| Box::from(a.sub())));
        let domains: Vec<Option<Box<str>>> =
            parties.iter().map(|p| SpiffeId::parse(p).ok().map(|id| id.trust_domain().as_str().into())).collect();
        let issuer: Box<str> = (*token.issuer).into();
        let jti = text(registered.jti);
        let client_id = text(registered.client_id);
        let unique = |values: &mut dyn Iterator<Item = &str>| {
            let mut hashes: Vec<u64> = Vec::new();
            for h in values.map(fact_hash) {
                if !hashes.contains(&h) {
                    hashes.push(h);
                }
            }
            hashes
        };
        let hashes = FactHashes {
            issuer: fact_hash(&issuer),
            jti: jti.as_deref().map(fact_hash),
            client_id: client_id.as_deref().map(fact_hash),
            subject: fact_hash(parties.first().map_or("", |p| p)),
            agent: fact_hash(parties.last().map_or("", |p| p)),
            parties: unique(&mut parties.iter().map(|p| &**p)),
            agent_domain: domains.last().and_then(|d| d.as_deref()).map(fact_hash),
            domains: unique(&mut domains.iter().filter_map(|d| d.as_deref())),
        };
        TokenFacts {
            issuer,
            jti,
            client_id,
            // Verification already refused a malformed `iat`.
            issued_at: registered.iat.and_then(|c| c.numeric_date("iat").ok()),
            parties,
            domains,
            hashes,
        }
    }

    /// The hashes a revocation set looks up.
    pub(super) fn hashes(&self) -> &FactHashes {
        &self.hashes
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// `client_id`.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// `sub`.
    pub fn subject(&self) -> &str {
        self.parties.first().map_or("", |p| p)
    }

    /// The agent presenting the token.
    pub fn agent(&self) -> &str {
        self.parties.last().map_or("", |p| p)
    }

    /// Every party: the subject, then the actors from the first to the current one.
    pub fn parties(&self) -> impl Iterator<Item = &str> {
        self.parties.iter().map(|p| &**p)
    }

    /// The agent's trust domain, if it is a SPIFFE ID.
    pub fn agent_domain(&self) -> Option<&str> {
        self.domains.last().and_then(|d| d.as_deref())
    }

    /// The trust domain of every party that is a SPIFFE ID.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().filter_map(|d| d.as_deref())
    }
}
