//! Tamper evidence: each VM's events form a hash chain, sealed by signed checkpoints.
//!
//! Every event ends with `"unmapped":{…,"chain":{"id":…,"seq":…,"prev":…}}}`: the chain's id (one per VM and
//! configuration), the event's position in it (0, 1, 2, … with no gap), and the base64url BLAKE3 hash of the
//! previous event's exact line (null at 0). A chain that follows another in the same VM (a new configuration)
//! names it at seq 0 in `previous_chain` (its id, last seq and last line's hash). With a key configured, every
//! `every_events` events or `every_seconds` seconds (and at seq 0) an event is a checkpoint: its chain object
//! ends with `"kid"` (when the key has an id) and `"mac"`, the base64url HMAC-SHA256 under the key of the line
//! without `,"mac":"…"`, which is the line's very end. Editing, deleting or reordering an event breaks the
//! link of the next; re-hashing the links after an edit needs no key, but the next checkpoint's MAC then fails;
//! truncating a chain before its last checkpoint loses that checkpoint's predecessors' links.
//! `agent-iam audit verify` checks all of it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key checkpoints are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointKey {
    /// At least 32 bytes.
    pub key: Vec<u8>,
    /// Written as `kid`, for verifiers holding several keys.
    pub key_id: Option<String>,
    /// A checkpoint at least every this many events …
    pub every_events: u64,
    /// … and at the first event after this many seconds since the last one.
    pub every_seconds: u64,
}

/// Where a chain that ended stopped: what the next one names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its id.
    pub id: String,
    /// Its last event's seq.
    pub seq: u64,
    /// Its last event's hash (BLAKE3 of the line).
    pub hash: [u8; 32],
}

/// One VM's chain of events.
#[derive(Debug)]
pub struct Chain {
    id: String,
    /// The id escaped as in a JSON string, once.
    id_escaped: String,
    /// The next event's position.
    seq: u64,
    /// The hash of the last event written.
    prev: Option<[u8; 32]>,
    /// The chain this one follows, named at seq 0.
    previous: Option<Link>,
    since_checkpoint: u64,
    last_checkpoint_ms: u64,
    /// The hash states after the stable beginnings of recent events (see [`Chain::hash_line`]).
    prefixes: Vec<Prefix>,
    /// The slot the next new beginning replaces once all are taken.
    next_slot: usize,
}

/// How many stable beginnings a chain keeps: the agents busy on one worker at once.
const PREFIXES: usize = 8;

/// An event's stable beginning and the BLAKE3 state after hashing it.
#[derive(Debug)]
struct Prefix {
    text: Box<[u8]>,
    state: blake3::Hasher,
}

impl Chain {
    /// A new chain with the id `id`, following `previous` when known.
    pub fn new(id: String, previous: Option<Link>) -> Chain {
        let mut id_escaped = String::new();
        super::json::contents(&mut id_escaped, &id);
        Chain {
            id,
            id_escaped,
            seq: 0,
            prev: None,
            previous,
            since_checkpoint: 0,
            last_checkpoint_ms: 0,
            prefixes: Vec::new(),
            next_slot: 0,
        }
    }

    /// Appends the next event's id, `"<id>.<seq>"` (`metadata.uid`), as a JSON string.
    pub(super) fn write_uid(&self, out: &mut String) {
        out.push('"');
        out.push_str(&self.id_escaped);
        out.push('.');
        super::json::uint(out, self.seq);
        out.push('"');
    }

    /// The chain's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event's position.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Where this chain is now (for the next chain to name), `None` before its first event.
    pub fn link(&self) -> Option<Link> {
        let hash = self.prev?;
        Some(Link { id: self.id.clone(), seq: self.seq.checked_sub(1)?, hash })
    }

    /// Appends the chain member to `event` (built by [`super::event::write_open`], `unmapped` still open),
    /// closes it, and records it as the chain's last event: the line to write. `stable`: where the event's
    /// stable beginning ends (what [`super::event::write`] answers; 0 when unknown).
    pub fn seal(&mut self, mut event: String, stable: usize, now_ms: u64, key: Option<&CheckpointKey>) -> String {
        use super::json::uint;
        event.push_str(",\"chain\":{\"id\":\"");
        event.push_str(&self.id_escaped);
        event.push_str("\",\"seq\":");
        uint(&mut event, self.seq);
        match &self.prev {
            Some(prev) => {
                event.push_str(",\"prev\":\"");
                event.push_str(&b64_hash(prev));
                event.push('"');
            }
            None => event.push_str(",\"prev\":null"),
        }
        if self.seq == 0
            && let Some(p) = &self.previous
        {
            event.push_str(",\"previous_chain\":{\"id\":");
            super::json::string(&mut event, &p.id);
            event.push_str(",\"seq\":");
            uint(&mut event, p.seq);
            event.push_str(",\"hash\":\"");
            event.push_str(&b64_hash(&p.hash));
            event.push_str("\"}");
        }
        let checkpoint = key.filter(|k| {
            self.seq == 0
                || self.since_checkpoint + 1 >= k.every_events.max(1)
                || now_ms.saturating_sub(self.last_checkpoint_ms) >= k.every_seconds.saturating_mul(1000)
        });
        if let Some(k) = checkpoint {
            if let Some(kid) = &k.key_id {
                event.push_str(",\"kid\":");
                super::json::string(&mut event, kid);
            }
            // The MAC covers the line as it ends without it: `…"}}}` with the mac member removed.
            let mac = checkpoint_mac_parts(&k.key, &[event.as_bytes(), b"}}}"]);
            event.push_str(",\"mac\":\"");
            event.push_str(&b64_hash(&mac));
            event.push_str("\"}}}");
            self.since_checkpoint = 0;
            self.last_checkpoint_ms = now_ms;
        } else {
            event.push_str("}}}");
            self.since_checkpoint += 1;
        }
        self.prev = Some(self.hash_line(event.as_bytes(), stable));
        self.seq += 1;
        event
    }

    /// [`line_hash`] of `line`, resumed from the state after its first `stable` bytes when a recent event began
    /// with exactly those bytes. BLAKE3 is most of an event's cost in the .wasm (about 35 instructions a byte),
    /// and an agent's successive events share their first 700 to 1,000 bytes (the class, outcome, actor,
    /// deciding rule and product: [`super::event::write`] puts them first), so that part is hashed once per
    /// agent and decision rather than once per event. The bytes are compared whole: a hit is exact.
    fn hash_line(&mut self, line: &[u8], stable: usize) -> [u8; 32] {
        let (Some(head), Some(rest)) = (line.get(..stable), line.get(stable..)) else { return line_hash(line) };
        if head.is_empty() {
            return line_hash(line);
        }
        let mut hasher = match self.prefixes.iter().find(|p| *p.text == *head) {
            Some(p) => p.state.clone(),
            None => {
                let mut state = blake3::Hasher::new();
                state.update(head);
                let prefix = Prefix { text: head.into(), state: state.clone() };
                if self.prefixes.len() < PREFIXES {
                    self.prefixes.push(prefix);
                } else if let Some(slot) = self.prefixes.get_mut(self.next_slot) {
                    *slot = prefix;
                    self.next_slot = (self.next_slot + 1) % PREFIXES;
                }
                state
            }
        };
        hasher.update(rest);
        *hasher.finalize().as_bytes()
    }
}

/// A 32-byte hash or MAC in base64url without padding (43 characters), as [`crate::b64::encode`] writes it,
/// on the stack.
pub(super) fn b64_hash(hash: &[u8; 32]) -> B64Hash {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = [0u8; 43];
    let sextet = |n: u32, shift: u32| ALPHABET[((n >> shift) & 0x3f) as usize];
    let (triples, last) = hash.as_chunks::<3>();
    for (chars, t) in text.chunks_exact_mut(4).zip(triples) {
        let n = (u32::from(t[0]) << 16) | (u32::from(t[1]) << 8) | u32::from(t[2]);
        chars.copy_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
    }
    // 32 = 10 × 3 + 2: the last two bytes are three characters.
    if let [a, b] = *last {
        let n = (u32::from(a) << 16) | (u32::from(b) << 8);
        text[40..].copy_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6)]);
    }
    B64Hash(text)
}

/// [`b64_hash`]'s text.
pub(super) struct B64Hash([u8; 43]);

impl std::ops::Deref for B64Hash {
    type Target = str;
    fn deref(&self) -> &str {
        // Only alphabet characters: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The hash that links an event to the next: BLAKE3 of its line. Measured in the .wasm on a 1.9 KB event,
/// SHA-256 (the `sha2` crate, no SIMD in WebAssembly) was 150k of the event's 192k instructions, BLAKE3 71k;
/// every event pays it. Checkpoints, one in many, keep the conventional HMAC-SHA256.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    *blake3::hash(line).as_bytes()
}

/// HMAC-SHA256 of `sealed` under `key`.
pub fn checkpoint_mac(key: &[u8], sealed: &[u8]) -> [u8; 32] {
    checkpoint_mac_parts(key, &[sealed])
}

/// HMAC-SHA256 of `parts` one after the other under `key`.
fn checkpoint_mac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}
