//! The replay cache (RFC 9449 §11.1): every accepted proof is remembered, by a hash of its `jti` and the URI
//! it was for, until it would be refused as too old anyway; a proof seen before is refused, on whichever
//! worker it comes back. It lives in proxy-wasm shared data, which every worker of an Envoy process sees.
//!
//! Bounded: a fixed number of keys ([`BUCKETS`]), whatever the configured size, and in each at most as many
//! entries as the size gives a bucket, so neither the number of keys nor the size of a value grows with
//! traffic (shared data has no delete). A proof's bucket depends on the proof alone, never on the configured
//! size: a new size (or a worker still on the old configuration) looks where the proof was recorded. Each
//! update is read, change, compare-and-swap, retried on a lost race. When a bucket is full of live entries,
//! the one with the oldest `iat` makes room, and the bucket's watermark rises past it: a proof older than the
//! watermark can no longer be proved unseen, so it is refused. The cache therefore never forgets a proof it
//! would still accept; under more traffic than it was sized for (or after it was made smaller) it refuses old
//! proofs early instead (clients make a fresh one).
//!
//! The one gap is the first write of a bucket: proxy-wasm cannot compare-and-swap a key that does not exist
//! yet, so two workers creating the same bucket at the same instant may both believe they wrote first. An
//! empty bucket is created first and every entry is then written by compare-and-swap, which narrows this to
//! the creation of the empty value.

use crate::shared_data::{SharedStore, StoreError};

/// Buckets: shared-data keys, the same for every configured size.
pub const BUCKETS: usize = 4096;
/// Most entries a bucket may hold (the capacity is at most `BUCKETS * MAX_SLOTS` proofs; a bucket's value is
/// then 8 KiB, copied on every proof).
pub const MAX_SLOTS: usize = 256;
/// How many times an update is tried against concurrent writers before it gives up.
const ATTEMPTS: usize = 8;
/// Shared-data keys: this prefix and the bucket number.
const PREFIX: &str = "agent-iam.dpop.replay.";
/// The format's version byte (3: ids by BLAKE3). A bucket of another version is started again with its
/// watermark at the time, so nothing an older plugin recorded can be accepted again.
const VERSION: u8 = 3;
/// One entry: id (16 bytes), `iat`, expiry (8 bytes each).
const ENTRY_BYTES: usize = 32;
/// Version, watermark, count (16 bits).
const HEADER_BYTES: usize = 1 + 8 + 2;

/// A proof's identity in the cache: the first 128 bits of BLAKE3 over the normalised URI and the `jti`.
pub type ProofId = [u8; 16];

/// The identity of the proof with this `jti` for this (normalised) URI. BLAKE3 rather than SHA-256: one
/// compression instead of two blocks of 64 rounds for these short inputs (measured: SHA-256 was a seventh of
/// a proof's instructions in the .wasm); 128 bits keep honest ids apart, and a client choosing its `jti` to
/// collide with another proof's id can only have its own proof refused.
pub fn proof_id(htu: &str, jti: &str) -> ProofId {
    let mut hash = blake3::Hasher::new();
    hash.update(htu.as_bytes());
    hash.update(&[0]);
    hash.update(jti.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.finalize().as_bytes()[..16]);
    id
}

/// Why a proof was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before.
    Replayed,
    /// Older than what its full bucket can still prove unseen (the cache is smaller than the traffic).
    TooOld,
    /// Shared data failed, or every attempt lost the race: nothing was recorded.
    Unavailable(StoreError),
}

/// The cache's shape: how many entries a bucket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCache {
    slots: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: ProofId,
    iat: i64,
    expires: i64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Proofs issued before this second are refused: the cache may have forgotten one of them.
    watermark: i64,
    entries: Vec<Entry>,
}

impl ReplayCache {
    /// A cache for at least `proofs` live proofs (rounded up to whole entries per bucket, at most
    /// `BUCKETS * MAX_SLOTS`).
    pub fn with_capacity(proofs: usize) -> ReplayCache {
        ReplayCache { slots: proofs.div_ceil(BUCKETS).clamp(1, MAX_SLOTS) }
    }

    /// How many live proofs it holds at most.
    pub fn capacity(&self) -> usize {
        BUCKETS * self.slots
    }

    /// Records a proof issued at `iat`, to be remembered until `expires`; refuses it if it was seen.
    pub fn record(
        &self,
        store: &dyn SharedStore,
        id: &ProofId,
        iat: i64,
        expires: i64,
        now: i64,
    ) -> Result<(), Refusal> {
        let index = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) as usize % BUCKETS;
        let key = format!("{PREFIX}{index}");
        for _ in 0..ATTEMPTS {
            let (mut bucket, cas) = match store.get(&key).map_err(Refusal::Unavailable)? {
                Some((bytes, cas)) => match Bucket::decode(&bytes) {
                    Some(bucket) => (bucket, cas),
                    // Not a bucket this version wrote: start again, forgetting nothing that could be accepted.
                    None => (Bucket { watermark: now, entries: Vec::new() }, cas),
                },
                None => {
                    // Created empty first, so that the entry itself is written by compare-and-swap.
                    store.set(&key, &Bucket::default().encode(), 0).map_err(Refusal::Unavailable)?;
                    continue;
                }
            };
            bucket.entries.retain(|e| e.expires >= now);
            if bucket.entries.iter().any(|e| e.id == *id) {
                return Err(Refusal::Replayed);
            }
            // Room for one more (more than one to go only after the cache was made smaller).
            while bucket.entries.len() >= self.slots
                && let Some(oldest) = bucket.entries.iter().enumerate().min_by_key(|(_, e)| e.iat).map(|(i, _)| i)
            {
                let evicted = bucket.entries.swap_remove(oldest);
                bucket.watermark = bucket.watermark.max(evicted.iat.saturating_add(1));
            }
            if iat < bucket.watermark {
                return Err(Refusal::TooOld);
            }
            bucket.entries.push(Entry { id: *id, iat, expires });
            match store.set(&key, &bucket.encode(), cas) {
                Ok(()) => return Ok(()),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(Refusal::Unavailable(e)),
            }
        }
        Err(Refusal::Unavailable(StoreError::Contended))
    }
}

impl Bucket {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&self.watermark.to_be_bytes());
        out.extend_from_slice(&u16::try_from(self.entries.len()).unwrap_or(u16::MAX).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id);
            out.extend_from_slice(&e.iat.to_be_bytes());
            out.extend_from_slice(&e.expires.to_be_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Bucket> {
        let (&version, rest) = bytes.split_first()?;
        let (watermark, rest) = rest.split_first_chunk::<8>()?;
        let (count, rest) = rest.split_first_chunk::<2>()?;
        let count = usize::from(u16::from_be_bytes(*count));
        if version != VERSION || count > MAX_SLOTS || rest.len() != count * ENTRY_BYTES {
            return None;
        }
        let entries = rest
            .as_chunks::<ENTRY_BYTES>()
            .0
            .iter()
            .map(|chunk| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&chunk[..16]);
                let mut iat = [0u8; 8];
                iat.copy_from_slice(&chunk[16..24]);
                let mut expires = [0u8; 8];
                expires.copy_from_slice(&chunk[24..]);
                Entry { id, iat: i64::from_be_bytes(iat), expires: i64::from_be_bytes(expires) }
            })
            .collect();
        Some(Bucket { watermark: i64::from_be_bytes(*watermark), entries })
    }
}
