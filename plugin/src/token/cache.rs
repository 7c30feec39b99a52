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

/// How many bytes at the end of a token choose its slot.
const SLOT_BYTES: usize = 32;

/// Default number of entries.
pub const DEFAULT_CAPACITY: usize = 4096;

struct Entry<V> {
    token: Box<[u8]>,
    verified: V,
    valid_until: i64,
}

/// A bounded map from token bytes to their verification result: by default the [`VerifiedToken`]; the engine
/// keeps it together with what it derives from it once per token.
pub struct TokenCache<V = Rc<VerifiedToken>> {
    // The slot is the key; a collision simply replaces the older entry (the exact comparison on lookup keeps
    // a colliding token from ever being answered with another token's identity).
    entries: HashMap<u64, Entry<V>, BuildHasherDefault<PassThrough>>,
    /// Random per cache: which tokens share a slot, and which entry a full cache drops, cannot be predicted.
    key: u64,
    capacity: usize,
    /// When expired entries were last swept out (seconds): at most once a second, since a sweep walks every
    /// entry and a full cache of live tokens would otherwise pay it on every new token.
    swept_at: i64,
    hits: u64,
    misses: u64,
}

impl<V> std::fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("len", &self.entries.len()).field("capacity", &self.capacity).finish()
    }
}

impl<V: Clone> TokenCache<V> {
    /// An empty cache holding at most `capacity` tokens (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache<V> {
        TokenCache {
            entries: HashMap::with_capacity_and_hasher(capacity.min(DEFAULT_CAPACITY), Default::default()),
            key: RandomState::new().hash_one(0u64),
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

    /// The slot of a token: its last [`SLOT_BYTES`] bytes mixed with the cache's random key. Every token that
    /// is ever stored verified, so those bytes end its signature: output of its issuer's key, which no client
    /// chooses, and different for any two tokens. A lookup of other bytes only reads. A cached request pays
    /// this on every request, so it reads a few words rather than hashing the whole signature.
    fn slot(&self, token: &[u8]) -> u64 {
        let tail = token.get(token.len().saturating_sub(SLOT_BYTES)..).unwrap_or(token);
        let mut h = self.key ^ (tail.len() as u64);
        for chunk in tail.chunks(8) {
            let mut word = [0u8; 8];
            if let Some(dst) = word.get_mut(..chunk.len()) {
                dst.copy_from_slice(chunk);
            }
            h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        }
        // MurmurHash3's finaliser: every input bit reaches the high bits the map's control bytes use.
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }

    /// The verification result for exactly these bytes, if cached and still valid at `now`.
    pub fn get(&mut self, token: &[u8], now: i64) -> Option<V> {
        let key = self.slot(token);
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
    pub fn insert(&mut self, token: &[u8], verified: V, now: i64, valid_until: i64) {
        if self.capacity == 0 || now >= valid_until {
            return;
        }
        let key = self.slot(token);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if self.swept_at != now {
                self.swept_at = now;
                self.entries.retain(|_, e| now < e.valid_until);
            }
            if self.entries.len() >= self.capacity {
                // Still full of live tokens: drop an arbitrary one (the slots are randomly keyed, so an
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

    fn verified(agent: &str) -> Rc<VerifiedToken> {
        let chain = super::super::DelegationChain::from_claims(
            &serde_json::json!({"sub": agent}).as_object().cloned().unwrap_or_default(),
            8,
        )
        .unwrap();
        Rc::new(VerifiedToken {
            issuer: "i".into(),
            chain,
            expires_at: 100,
            valid_until: 100,
            claims: Default::default(),
        })
    }

    #[test]
    fn answers_only_exact_bytes_until_expiry() {
        let mut c = TokenCache::new(8);
        c.insert(b"token-a", verified("a"), 10, 130);
        assert_eq!(c.get(b"token-a", 129).map(|v| v.agent().to_owned()), Some("a".into()));
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
    fn tokens_sharing_their_slot_bytes_are_still_told_apart() {
        let tail = "x".repeat(SLOT_BYTES);
        let (a, b) = (format!("aaaa.{tail}"), format!("bbbb.{tail}"));
        let mut c = TokenCache::new(8);
        c.insert(a.as_bytes(), verified("a"), 0, 100);
        assert!(c.get(b.as_bytes(), 1).is_none(), "same slot, other bytes: not answered");
        c.insert(b.as_bytes(), verified("b"), 0, 100);
        assert_eq!(c.get(b.as_bytes(), 1).map(|v| v.agent().to_owned()), Some("b".into()));
        // At worst one replaced the other; never is one answered with the other's identity.
        assert!(c.get(a.as_bytes(), 1).is_none_or(|v| v.agent() == "a"));
        // Shorter than the slot, empty, and differing only in the last byte.
        let short = [&b""[..], b"t", b"token-1", b"token-2"];
        for (i, t) in short.iter().enumerate() {
            c.insert(t, verified(&format!("agent-{i}")), 0, 100);
        }
        for (i, t) in short.iter().enumerate() {
            assert_eq!(c.get(t, 1).map(|v| v.agent().to_owned()), Some(format!("agent-{i}")));
        }
    }

    #[test]
    fn slots_spread_over_the_whole_word() {
        let c: TokenCache = TokenCache::new(8);
        let slots: Vec<u64> = (0..64u32).map(|i| c.slot(format!("sig-{i:032}").as_bytes())).collect();
        let distinct: std::collections::HashSet<_> = slots.iter().collect();
        assert_eq!(distinct.len(), slots.len());
        // The map takes its control bits from the top of the hash and its bucket from the bottom.
        let top: std::collections::HashSet<_> = slots.iter().map(|s| s >> 57).collect();
        let bottom: std::collections::HashSet<_> = slots.iter().map(|s| s & 0x7f).collect();
        assert!(top.len() > 32 && bottom.len() > 32, "{} {}", top.len(), bottom.len());
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
