//! The revocations in force, indexed for the request path.
//!
//! Each selector is filed under its most specific fact (`jti`, then agent, `client_id`, subject, trust
//! domain, issuer), in one hash map per fact and scope. A check looks up each of the token's facts in the
//! maps that hold anything (at most one lookup per party of the delegation chain for the chain-wide maps)
//! and confirms a hit against the whole selector: its cost depends on the token, not on how many selectors
//! there are.
//!
//! Every set has a generation, unique in the VM: a token found clean under one generation stays clean while
//! that set is in force (selectors only ever end, they never start, inside one set), so the engine checks a
//! cached token again only when the set changes.

use super::selector::{Kind, Scope, Selector, TokenFacts};
use rustc_hash::FxHashMap as HashMap;
use std::cell::Cell;

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
    maps: [HashMap<Box<str>, Vec<u32>>; SLOTS],
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
        let mut maps: [HashMap<Box<str>, Vec<u32>>; SLOTS] = Default::default();
        let mut kept: Vec<Selector> = Vec::with_capacity(selectors.len());
        let mut seen = rustc_hash::FxHashSet::default();
        for selector in selectors {
            if !seen.insert(selector.clone()) {
                continue;
            }
            let Ok(at) = u32::try_from(kept.len()) else { break };
            maps[Slot::of(&selector) as usize].entry(selector.key().into()).or_default().push(at);
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
        let hit = |slot: Slot, key: Option<&str>| -> Option<Kind> {
            if !self.used[slot as usize] {
                return None;
            }
            let found = self.maps[slot as usize].get(key?)?;
            found
                .iter()
                .filter_map(|&i| self.selectors.get(i as usize))
                .find(|s| s.live(now) && s.matches(token))
                .map(Selector::kind)
        };
        let kind = hit(Slot::Jti, token.jti())
            .or_else(|| hit(Slot::AgentCurrent, Some(token.agent())))
            .or_else(|| token.parties().find_map(|p| hit(Slot::AgentChain, Some(p))))
            .or_else(|| hit(Slot::ClientId, token.client_id()))
            .or_else(|| hit(Slot::Subject, Some(token.subject())))
            .or_else(|| hit(Slot::DomainCurrent, token.agent_domain()))
            .or_else(|| token.domains().find_map(|d| hit(Slot::DomainChain, Some(d))))
            .or_else(|| hit(Slot::Issuer, Some(token.issuer())))?;
        Some(Refusal::Revoked(kind))
    }
}
