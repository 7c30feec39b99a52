//! The revocations in force, indexed for the request path.
//!
//! Each selector is filed under its most specific fact (`jti`, then agent, `client_id`, subject, trust
//! domain, issuer), in one hash map per fact and scope, keyed by the value's [`fact_hash`]. A check looks up
//! each of the token's facts in the maps that hold anything (at most one lookup per distinct party of the
//! delegation chain for the chain-wide maps) and confirms a hit against the whole selector: its cost depends
//! on the token, not on how many selectors there are. The token's hashes were computed with its facts, once
//! per token ([`TokenFacts::of`]), so a check hashes nothing: each lookup is a probe for a 64-bit key.
//!
//! Every set has a generation, unique in the VM: a token found clean under one generation stays clean while
//! that set is in force (selectors only ever end, they never start, inside one set), so the engine checks a
//! cached token again only when the set changes.

use super::selector::{Kind, Scope, Selector, TokenFacts, fact_hash};
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

fn next_generation() -> u64 {
    GENERATION.with(|g| {
        let next = g.get().wrapping_add(1).max(1);
        g.set(next);
        next
    })
}

/// The hasher of a map keyed by [`fact_hash`]es: the key is already a hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    /// Not reached: only `u64` keys are hashed.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// Selectors (their positions) by the [`fact_hash`] of the value they are filed under; values whose hashes
/// collide share a list, each selector confirmed by [`Selector::matches`].
type Map = HashMap<u64, Vec<u32>, BuildHasherDefault<Prehashed>>;

/// The maps a selector can be filed in: one per fact, two (current actor, whole chain) for agent and
/// trust domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Jti,
    AgentCurrent,
    AgentChain,
    ClientId,
    Subject,
    DomainCurrent,
    DomainChain,
    Issuer,
}

const SLOTS: usize = 8;

impl Slot {
    fn of(selector: &Selector) -> Slot {
        match (selector.kind(), selector.scope()) {
            (Kind::Jti, _) => Slot::Jti,
            (Kind::Agent, Scope::Current) => Slot::AgentCurrent,
            (Kind::Agent, Scope::Chain) => Slot::AgentChain,
            (Kind::ClientId, _) => Slot::ClientId,
            (Kind::Subject, _) => Slot::Subject,
            (Kind::TrustDomain, Scope::Current) => Slot::DomainCurrent,
            (Kind::TrustDomain, Scope::Chain) => Slot::DomainChain,
            (Kind::Issuer, _) => Slot::Issuer,
        }
    }
}

/// Issuers whose tokens are refused because the revocation list that covers them is stale and configured
/// to fail closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Closed {
    /// None.
    #[default]
    None,
    /// Every issuer.
    All,
    /// These issuers.
    Issuers(Vec<Box<str>>),
}

impl Closed {
    /// Whether tokens of `issuer` are refused.
    pub fn covers(&self, issuer: &str) -> bool {
        match self {
            Closed::None => false,
            Closed::All => true,
            Closed::Issuers(list) => list.iter().any(|i| &**i == issuer),
        }
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A selector of this kind revokes it.
    Revoked(Kind),
    /// The revocation list covering its issuer is stale (and configured to fail closed).
    Stale,
}

/// A set of revocations, indexed.
#[derive(Debug)]
pub struct RevocationSet {
    selectors: Vec<Selector>,
    maps: [Map; SLOTS],
    /// Which maps hold anything: a check skips the others without hashing.
    used: [bool; SLOTS],
    closed: Closed,
    generation: u64,
}

impl Default for RevocationSet {
    fn default() -> RevocationSet {
        RevocationSet::new(Vec::new(), Closed::None)
    }
}

impl RevocationSet {
    /// Indexes `selectors` (duplicates are kept once), with `closed` issuers refused outright.
    pub fn new(selectors: Vec<Selector>, closed: Closed) -> RevocationSet {
        let mut maps: [Map; SLOTS] = Default::default();
        let mut kept: Vec<Selector> = Vec::with_capacity(selectors.len());
        let mut seen = rustc_hash::FxHashSet::default();
        for selector in selectors {
            if !seen.insert(selector.clone()) {
                continue;
            }
            let Ok(at) = u32::try_from(kept.len()) else { break };
            maps[Slot::of(&selector) as usize].entry(fact_hash(selector.key())).or_default().push(at);
            kept.push(selector);
        }
        let used = std::array::from_fn(|i| !maps[i].is_empty());
        RevocationSet { selectors: kept, maps, used, closed, generation: next_generation() }
    }

    /// The set's generation: unique in the VM, never 0.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The selectors.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// How many selectors of each kind are live at `now`, in [`Kind::ALL`] order.
    pub fn counts(&self, now: i64) -> [usize; 6] {
        let mut counts = [0; 6];
        for s in self.selectors.iter().filter(|s| s.live(now)) {
            if let Some(i) = Kind::ALL.iter().position(|k| *k == s.kind()) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Which issuers are refused outright.
    pub fn closed(&self) -> &Closed {
        &self.closed
    }

    /// Whether nothing is revoked and nothing closed.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty() && self.closed == Closed::None
    }

    /// Whether a token with these facts is refused at `now`, and why.
    pub fn check(&self, token: &TokenFacts, now: i64) -> Option<Refusal> {
        if self.closed.covers(token.issuer()) {
            return Some(Refusal::Stale);
        }
        if self.selectors.is_empty() {
            return None;
        }
        let hit = |slot: Slot, key: Option<u64>| -> Option<Kind> {
            if !self.used[slot as usize] {
                return None;
            }
            let found = self.maps[slot as usize].get(&key?)?;
            found
                .iter()
                .filter_map(|&i| self.selectors.get(i as usize))
                .find(|s| s.live(now) && s.matches(token))
                .map(Selector::kind)
        };
        let h = token.hashes();
        let kind = hit(Slot::Jti, h.jti)
            .or_else(|| hit(Slot::AgentCurrent, Some(h.agent)))
            .or_else(|| h.parties.iter().find_map(|&p| hit(Slot::AgentChain, Some(p))))
            .or_else(|| hit(Slot::ClientId, h.client_id))
            .or_else(|| hit(Slot::Subject, Some(h.subject)))
            .or_else(|| hit(Slot::DomainCurrent, h.agent_domain))
            .or_else(|| h.domains.iter().find_map(|&d| hit(Slot::DomainChain, Some(d))))
            .or_else(|| hit(Slot::Issuer, Some(h.issuer)))?;
        Some(Refusal::Revoked(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::selector::Facts;
    use crate::token::VerifiedToken;
    use crate::token::claims::Claims;
    use crate::token::delegation::{DEFAULT_MAX_DEPTH, DelegationChain};
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    const NOW: i64 = 1_900_000_000;

    fn facts(claims: Value) -> TokenFacts {
        let Value::Object(map) = claims else { unreachable!("claims are an object") };
        let chain = DelegationChain::from_claims(&map, DEFAULT_MAX_DEPTH).expect("chain");
        let issuer = map.get("iss").and_then(Value::as_str).unwrap_or_default().into();
        TokenFacts::of(&VerifiedToken {
            issuer,
            chain,
            expires_at: NOW + 3600,
            valid_until: NOW + 3600,
            claims: Claims::from_map(map),
        })
    }

    #[test]
    fn fact_hashes_differ_where_the_padding_of_the_last_word_would_hide_a_difference() {
        let values = ["", "\0", "a", "a\0", "abcdefgh", "abcdefgh\0", "abcdefg", "abcdefghi"];
        for (i, a) in values.iter().enumerate() {
            for b in &values[i + 1..] {
                assert_ne!(fact_hash(a), fact_hash(b), "{a:?} and {b:?}");
            }
        }
        assert_eq!(
            fact_hash("spiffe://trading.example/agent/trader"),
            fact_hash("spiffe://trading.example/agent/trader")
        );
    }

    #[test]
    fn a_value_in_the_chain_is_looked_up_once_and_found_wherever_it_stands() {
        let agent = "spiffe://a.example/agent/x";
        let token = facts(json!({"iss": "i", "sub": agent, "act": {"sub": "spiffe://a.example/agent/y",
                                 "act": {"sub": agent}}}));
        assert_eq!(token.hashes().parties.len(), 2);
        assert_eq!(token.hashes().domains.len(), 1);
        let revoke = |facts: Facts| {
            RevocationSet::new(vec![Selector::validated(facts).expect("selector")], Closed::None).check(&token, NOW)
        };
        let agent_facts = Facts { agent: Some(agent.into()), ..Facts::default() };
        assert_eq!(revoke(agent_facts.clone()), Some(Refusal::Revoked(Kind::Agent)));
        assert_eq!(revoke(Facts { scope: Scope::Current, ..agent_facts }), None);
        let domain = Facts { trust_domain: Some("a.example".into()), scope: Scope::Current, ..Facts::default() };
        assert_eq!(revoke(domain), Some(Refusal::Revoked(Kind::TrustDomain)));
    }

    fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        proptest::sample::select(pool)
    }

    const AGENTS: &[&str] = &[
        "spiffe://a.example/agent/x",
        "spiffe://a.example/agent/y",
        "spiffe://b.example/agent/x",
        "user:alice",
        "user:bob",
    ];
    const DOMAINS: &[&str] = &["a.example", "b.example", "c.example"];
    const VALUES: &[&str] = &["v1", "v2", "v3"];
    const ISSUERS: &[&str] = &["https://i1.example", "https://i2.example"];

    fn selector_facts() -> impl Strategy<Value = Facts> {
        (
            (proptest::option::weighted(0.3, pick(VALUES)), proptest::option::weighted(0.4, pick(AGENTS))),
            (proptest::option::weighted(0.3, pick(VALUES)), proptest::option::weighted(0.3, pick(AGENTS))),
            (proptest::option::weighted(0.3, pick(DOMAINS)), proptest::option::weighted(0.3, pick(ISSUERS))),
            (
                any::<bool>(),
                proptest::option::of(NOW - 100..NOW + 100),
                proptest::option::weighted(0.3, NOW - 50..NOW + 50),
            ),
        )
            .prop_map(
                |((jti, agent), (client_id, subject), (trust_domain, issuer), (current, cut, expires))| Facts {
                    jti: jti.map(Into::into),
                    agent: agent.map(Into::into),
                    client_id: client_id.map(Into::into),
                    subject: subject.map(Into::into),
                    trust_domain: trust_domain.map(Into::into),
                    issuer: issuer.map(Into::into),
                    scope: if current { Scope::Current } else { Scope::Chain },
                    issued_before: cut,
                    expires: expires.map(|e| e.max(cut.unwrap_or(0) + 1)),
                },
            )
    }

    fn token_claims() -> impl Strategy<Value = Value> {
        (
            pick(ISSUERS),
            pick(AGENTS),
            proptest::collection::vec(pick(AGENTS), 0..3),
            proptest::option::of(pick(VALUES)),
            proptest::option::of(pick(VALUES)),
            proptest::option::of(NOW - 100..NOW + 100),
        )
            .prop_map(|(iss, sub, actors, jti, client_id, iat)| {
                let mut claims = Map::new();
                claims.insert("iss".into(), iss.into());
                claims.insert("sub".into(), sub.into());
                // The first actor is the innermost `act`.
                let act = actors.iter().fold(None, |inner: Option<Value>, actor| {
                    let mut act = json!({"sub": actor});
                    if let Some(inner) = inner {
                        act["act"] = inner;
                    }
                    Some(act)
                });
                if let Some(act) = act {
                    claims.insert("act".into(), act);
                }
                if let Some(jti) = jti {
                    claims.insert("jti".into(), jti.into());
                }
                if let Some(client_id) = client_id {
                    claims.insert("client_id".into(), client_id.into());
                }
                if let Some(iat) = iat {
                    claims.insert("iat".into(), iat.into());
                }
                Value::Object(claims)
            })
    }

    proptest! {
        /// The index refuses exactly the tokens some live selector matches, and names the kind of one of them.
        #[test]
        fn the_index_agrees_with_every_selector_compared_in_turn(
            facts_list in proptest::collection::vec(selector_facts(), 0..24),
            claims in token_claims(),
        ) {
            let selectors: Vec<Selector> = facts_list.into_iter().filter_map(|f| Selector::validated(f).ok()).collect();
            let token = facts(claims);
            let set = RevocationSet::new(selectors.clone(), Closed::None);
            let matching: Vec<Kind> =
                selectors.iter().filter(|s| s.live(NOW) && s.matches(&token)).map(Selector::kind).collect();
            match set.check(&token, NOW) {
                None => prop_assert!(matching.is_empty(), "missed {matching:?}"),
                Some(Refusal::Revoked(kind)) => prop_assert!(matching.contains(&kind), "{kind:?} not in {matching:?}"),
                Some(Refusal::Stale) => prop_assert!(false, "stale without a closed issuer"),
            }
        }
    }
}
