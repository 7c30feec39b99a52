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
use std::fmt::Write;

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
    /// The next event's position.
    seq: u64,
    /// The hash of the last event written.
    prev: Option<[u8; 32]>,
    /// The chain this one follows, named at seq 0.
    previous: Option<Link>,
    since_checkpoint: u64,
    last_checkpoint_ms: u64,
}

impl Chain {
    /// A new chain with the id `id`, following `previous` when known.
    pub fn new(id: String, previous: Option<Link>) -> Chain {
        Chain { id, seq: 0, prev: None, previous, since_checkpoint: 0, last_checkpoint_ms: 0 }
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
    /// closes it, and records it as the chain's last event: the line to write.
    pub fn seal(&mut self, mut event: String, now_ms: u64, key: Option<&CheckpointKey>) -> String {
        event.push_str(",\"chain\":{\"id\":");
        super::json::string(&mut event, &self.id);
        let _ = write!(event, ",\"seq\":{}", self.seq);
        match &self.prev {
            Some(prev) => {
                event.push_str(",\"prev\":\"");
                event.push_str(&crate::b64::encode(prev));
                event.push('"');
            }
            None => event.push_str(",\"prev\":null"),
        }
        if self.seq == 0
            && let Some(p) = &self.previous
        {
            event.push_str(",\"previous_chain\":{\"id\":");
            super::json::string(&mut event, &p.id);
            let _ = write!(event, ",\"seq\":{},\"hash\":\"{}\"}}", p.seq, crate::b64::encode(&p.hash));
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
            let sealed = format!("{event}}}}}}}");
            let mac = checkpoint_mac(&k.key, sealed.as_bytes());
            event.push_str(",\"mac\":\"");
            event.push_str(&crate::b64::encode(&mac));
            event.push_str("\"}}}");
            self.since_checkpoint = 0;
            self.last_checkpoint_ms = now_ms;
        } else {
            event.push_str("}}}");
            self.since_checkpoint += 1;
        }
        self.prev = Some(line_hash(event.as_bytes()));
        self.seq += 1;
        event
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
    // HMAC takes keys of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(sealed);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}
