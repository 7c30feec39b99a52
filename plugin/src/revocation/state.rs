//! The revocation state every worker VM of a gateway shares, kept in proxy-wasm shared data.
//!
//! One key holds the whole state as JSON: the revocations learnt from security events (SSF poll or push),
//! the last good revocation list, the event ids already applied (so a replayed event changes nothing), and
//! what the poller owes the transmitter (acknowledgements and errors). A second, small key holds the
//! state's version, so that a VM learns whether anything changed by reading a few bytes on its tick.
//!
//! Every change is a read, a modification and a compare-and-swap write of the read version: a writer that
//! lost the race reads again and reapplies its change, so no update is lost however many workers write at
//! once. A state that cannot be read back (written by something else) is never overwritten: the change is
//! refused, and the VMs keep what they last read.

use super::selector::Selector;
use serde::{Deserialize, Serialize};

pub use crate::shared_data::{SharedStore, StoreError};

/// A revocation with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// What is revoked.
    pub selector: Selector,
    /// Where it came from: `ssf:<jti>` or `push:<jti>`.
    pub source: String,
}

/// An event id already applied, remembered until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    /// The event's `jti`.
    pub jti: String,
    /// When it may be forgotten (seconds): after that, the event is too old to be accepted again.
    pub until: i64,
}

/// The last good revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListState {
    /// The list's `iat`: an older list never replaces a newer one.
    pub issued_at: i64,
    /// When it was fetched (seconds): its age decides staleness.
    pub fetched_at: i64,
    /// Its revocations.
    pub selectors: Vec<Selector>,
}

/// An event the poller could not apply, reported in the next poll's `setErrs` (RFC 8936 §2.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetError {
    /// The event's `jti` (the key the transmitter sent it under).
    pub jti: String,
    /// The RFC 8935 error code.
    pub err: String,
    /// A description.
    pub description: String,
}

/// What the poller owes the transmitter and when it last succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollState {
    /// When a poll last got a valid answer (seconds).
    #[serde(default)]
    pub last_success: Option<i64>,
    /// Event ids to acknowledge in the next poll.
    #[serde(default)]
    pub ack: Vec<String>,
    /// Events to report as failed in the next poll.
    #[serde(default)]
    pub errors: Vec<SetError>,
}

/// The shared state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedState {
    /// Incremented by every write.
    pub version: u64,
    /// Revocations from security events.
    #[serde(default)]
    pub entries: Vec<Entry>,
    /// Security events already applied.
    #[serde(default)]
    pub seen: Vec<Seen>,
    /// The last good revocation list.
    #[serde(default)]
    pub list: Option<ListState>,
    /// The poller's state.
    #[serde(default)]
    pub poll: PollState,
}

/// Caps on the shared state, so that a flood of events cannot grow it without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most revocations from events.
    pub max_entries: usize,
    /// Most remembered event ids.
    pub max_seen: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_entries: 100_000, max_seen: 100_000 }
    }
}

/// Most acknowledgements and errors kept for the next poll.
const MAX_OWED: usize = 10_000;

impl SharedState {
    /// Reads a stored state.
    pub fn decode(bytes: &[u8]) -> Result<SharedState, StoreError> {
        let state: SharedState = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for (i, e) in state.entries.iter().enumerate() {
            e.selector.check().map_err(|why| StoreError::Corrupt(format!("entries[{i}]: {why}")))?;
        }
        if let Some(list) = &state.list {
            for (i, s) in list.selectors.iter().enumerate() {
                s.check().map_err(|why| StoreError::Corrupt(format!("list.selectors[{i}]: {why}")))?;
            }
        }
        Ok(state)
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Drops what has ended by `now`: revocations past their end, event ids past their window.
    pub fn prune(&mut self, now: i64) -> bool {
        let (entries, seen) = (self.entries.len(), self.seen.len());
        self.entries.retain(|e| e.selector.live(now));
        self.seen.retain(|s| now < s.until);
        let list = self.list.as_mut().map_or(0, |l| {
            let before = l.selectors.len();
            l.selectors.retain(|s| s.live(now));
            before - l.selectors.len()
        });
        entries != self.entries.len() || seen != self.seen.len() || list > 0
    }

    /// Whether the event `jti` was applied already.
    pub fn has_seen(&self, jti: &str) -> bool {
        self.seen.iter().any(|s| s.jti == jti)
    }

    /// Applies one security event: remembers its id until `until` and adds its revocations (none for an
    /// event that revokes nothing). Returns `false`, changing nothing, if it was applied before.
    pub fn apply_event(
        &mut self,
        jti: &str,
        until: i64,
        selectors: &[Selector],
        source: &str,
        limits: Limits,
    ) -> Result<bool, StoreError> {
        if self.has_seen(jti) {
            return Ok(false);
        }
        if self.seen.len() >= limits.max_seen {
            return Err(StoreError::Full("event ids"));
        }
        let new: Vec<&Selector> =
            selectors.iter().filter(|s| !self.entries.iter().any(|e| e.selector == **s)).collect();
        if self.entries.len() + new.len() > limits.max_entries {
            return Err(StoreError::Full("revocations"));
        }
        self.entries.extend(new.into_iter().map(|s| Entry { selector: s.clone(), source: source.to_owned() }));
        self.seen.push(Seen { jti: jti.to_owned(), until });
        Ok(true)
    }

    /// Installs a newer revocation list. An older or equally old one changes nothing (a replayed list
    /// cannot bring back what a newer one revoked); the same list fetched again only renews its age.
    pub fn install_list(&mut self, issued_at: i64, fetched_at: i64, selectors: Vec<Selector>) -> bool {
        match &mut self.list {
            Some(current) if current.issued_at > issued_at => false,
            Some(current) if current.issued_at == issued_at => {
                current.fetched_at = current.fetched_at.max(fetched_at);
                true
            }
            _ => {
                self.list = Some(ListState { issued_at, fetched_at, selectors });
                true
            }
        }
    }

    /// Queues an acknowledgement for the next poll.
    pub fn owe_ack(&mut self, jti: &str) {
        if !self.poll.ack.iter().any(|a| a == jti) && self.poll.ack.len() < MAX_OWED {
            self.poll.ack.push(jti.to_owned());
        }
    }

    /// Queues an error report for the next poll.
    pub fn owe_error(&mut self, error: SetError) {
        if !self.poll.errors.iter().any(|e| e.jti == error.jti) && self.poll.errors.len() < MAX_OWED {
            self.poll.errors.push(error);
        }
    }

    /// Every live revocation: the events' and the list's.
    pub fn selectors(&self, now: i64) -> Vec<Selector> {
        let list = self.list.iter().flat_map(|l| l.selectors.iter());
        self.entries.iter().map(|e| &e.selector).chain(list).filter(|s| s.live(now)).cloned().collect()
    }
}

/// The key of the version, beside the state's key.
pub fn version_key(key: &str) -> String {
    format!("{key}.version")
}

/// Most attempts at one change before giving up to contention.
const ATTEMPTS: usize = 16;

/// Reads the state (empty if never written).
pub fn read(store: &dyn SharedStore, key: &str) -> Result<(SharedState, u32), StoreError> {
    match store.get(key)? {
        None => Ok((SharedState::default(), 0)),
        Some((bytes, cas)) if bytes.is_empty() => Ok((SharedState::default(), cas)),
        Some((bytes, cas)) => Ok((SharedState::decode(&bytes)?, cas)),
    }
}

/// The stored version, without reading the state (0 if never written or unreadable).
pub fn read_version(store: &dyn SharedStore, key: &str) -> Result<u64, StoreError> {
    Ok(store.get(&version_key(key))?.and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.parse().ok()).unwrap_or(0))
}

/// Changes the state with `change`, which says whether it changed anything (and may refuse with an
/// error), by compare-and-swap: when another worker wrote in between, the state is read again and the
/// change made again on it. Returns the state as written (or as read, when nothing changed).
pub fn update(
    store: &dyn SharedStore,
    key: &str,
    mut change: impl FnMut(&mut SharedState) -> Result<bool, StoreError>,
) -> Result<SharedState, StoreError> {
    for _ in 0..ATTEMPTS {
        let (mut state, cas) = read(store, key)?;
        if !change(&mut state)? {
            return Ok(state);
        }
        state.version = state.version.wrapping_add(1);
        match store.set(key, &state.encode(), cas) {
            Ok(()) => {
                publish_version(store, key, state.version);
                return Ok(state);
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// Raises the version key to `version` (never lowers it: two writers may publish out of order).
fn publish_version(store: &dyn SharedStore, key: &str, version: u64) {
    let key = version_key(key);
    for _ in 0..ATTEMPTS {
        let Ok(current) = store.get(&key) else { return };
        let (stored, cas) = current
            .map(|(bytes, cas)| {
                (std::str::from_utf8(&bytes).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0), cas)
            })
            .unwrap_or((0, 0));
        if stored >= version {
            return;
        }
        match store.set(&key, version.to_string().as_bytes(), cas) {
            Err(StoreError::CasMismatch) => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests;
