//! The verified-token cache: one per VM (per Envoy worker), so no locking.
//!
//! Keyed by the exact token bytes (a keyed hash finds the slot, an exact comparison confirms it), bounded,
//! and an entry is used only while `now < exp + skew`, the same bound verification applies. Only tokens that
//! passed every check are stored, so an attacker cannot fill the cache with garbage; the engine replaces the
//! whole cache whenever the configuration (and so the key set) changes.

use super::VerifiedToken;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

/// The map's keys are already outputs of the randomly keyed hash: hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); fold anything else rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What the keyed hash covers: the signature segment. It is what differs between any two tokens an issuer
/// signs, and a quarter of the bytes (a cached request hashes it every time); two tokens sharing it still
/// need the exact comparison to match, and at worst replace each other's entry.
fn hashed_part(token: &[u8]) -> &[u8] {
    match token.iter().rposition(|&b| b == b'.') {
        Some(dot) => &token[dot..],
        None => token,
    }
}

/// Default number of entries.
pub const DEFAULT_CAPACITY: usize = 4096;

struct Entry {
    token: Box<[u8]>,
    verified: Rc<VerifiedToken>,
    valid_until: i64,
}

/// A bounded map from token bytes to their verification result.
pub struct TokenCache {
    // The hash is the key; a collision simply replaces the older entry (the exact comparison on lookup keeps
    // a colliding token from ever being answered with another token's identity).
    entries: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
    hasher: RandomState,
    capacity: usize,
    /// When expired entries were last swept out (seconds): at most once a second, since a sweep walks every
    /// entry and a full cache of live tokens would otherwise pay it on every new token.
    swept_at: i64,
    hits: u64,
    misses: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("len", &self.entries.len()).field("capacity", &self.capacity).finish()
    }
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: HashMap::with_capacity_and_hasher(capacity.min(DEFAULT_CAPACITY), Default::default()),
            hasher: RandomState::new(),
            capacity,
            swept_at: i64::MIN,
            hits: 0,
            misses: 0,
        }
    }

    /// Most tokens held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The verified token for exactly these bytes, if cached and still valid at `now`.
    pub fn get(&mut self, token: &[u8], now: i64) -> Option<Rc<VerifiedToken>> {
        let key = self.hasher.hash_one(hashed_part(token));
        match self.entries.get(&key) {
            Some(e) if &*e.token == token && now < e.valid_until => {
                self.hits += 1;
                Some(e.verified.clone())
            }
            Some(e) if &*e.token == token => {
                self.entries.remove(&key);
                self.misses += 1;
                None
            }
            _ => {
                self.misses += 1;
                None
            }
        }
    }

    /// Stores a token that just verified; usable until `valid_until` (exclusive, seconds since the epoch).
    pub fn insert(&mut self, token: &[u8], verified: Rc<VerifiedToken>, now: i64, valid_until: i64) {
        if self.capacity == 0 || now >= valid_until {
            return;
        }
        let key = self.hasher.hash_one(hashed_part(token));
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if self.swept_at != now {
                self.swept_at = now;
                self.entries.retain(|_, e| now < e.valid_until);
            }
            if self.entries.len() >= self.capacity {
                // Still full of live tokens: drop an arbitrary one (the hasher is randomly keyed, so an
                // attacker cannot choose which).
                if let Some(&victim) = self.entries.keys().next() {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(key, Entry { token: token.into(), verified, valid_until });
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lookups answered from the cache and lookups that were not, since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn verified(agent: &str) -> Rc<VerifiedToken> {
        let chain = super::super::DelegationChain::from_claims(
            &serde_json::json!({"sub": agent}).as_object().cloned().unwrap_or_default(),
            8,
        )
        .unwrap();
        Rc::new(VerifiedToken {
            issuer: "i".into(),
            subject: agent.into(),
            agent: agent.into(),
            chain,
            expires_at: 100,
            valid_until: 100,
            claims: Map::new(),
        })
    }

    #[test]
    fn answers_only_exact_bytes_until_expiry() {
        let mut c = TokenCache::new(8);
        c.insert(b"token-a", verified("a"), 10, 130);
        assert_eq!(c.get(b"token-a", 129).map(|v| v.agent.clone()), Some("a".into()));
        assert!(c.get(b"token-A", 50).is_none());
        assert!(c.get(b"token-a ", 50).is_none());
        assert!(c.get(b"token-a", 130).is_none(), "valid_until is exclusive");
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        assert_eq!(c.stats(), (1, 3));
    }

    #[test]
    fn stays_bounded_and_prefers_dropping_expired_entries() {
        let mut c = TokenCache::new(4);
        for i in 0..4u8 {
            c.insert(&[b't', i], verified("x"), 0, if i == 0 { 5 } else { 1000 });
        }
        c.insert(b"new", verified("n"), 10, 1000);
        assert_eq!(c.len(), 4);
        assert!(c.get(&[b't', 0], 10).is_none());
        for i in 1..4u8 {
            assert!(c.get(&[b't', i], 10).is_some());
        }
        for i in 0..100u8 {
            c.insert(&[b'u', i], verified("y"), 10, 1000);
            assert!(c.len() <= 4);
        }
    }

    #[test]
    fn capacity_zero_disables_and_expired_tokens_are_not_stored() {
        let mut c = TokenCache::new(0);
        c.insert(b"t", verified("a"), 0, 100);
        assert!(c.get(b"t", 1).is_none());
        let mut c = TokenCache::new(4);
        c.insert(b"t", verified("a"), 100, 100);
        assert!(c.is_empty());
    }
}
