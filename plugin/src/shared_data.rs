//! Proxy-wasm shared data as the core sees it: a key-value store every worker VM of a plugin shares within
//! one Envoy process, with a compare-and-swap token per key. The filter implements it with the host's
//! `get_shared_data` / `set_shared_data`; tests use an in-memory store. Revocation state and limit counters
//! live in it.

/// Shared data, as the filter reaches it: proxy-wasm `get_shared_data` / `set_shared_data` with a CAS token.
pub trait SharedStore {
    /// The value of `key` and its CAS token, `None` if the key was never written.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's CAS token is still `cas` (0: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// Why shared data was not read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Another writer changed the key since it was read.
    CasMismatch,
    /// The host refused the call.
    Host(String),
    /// The stored state is not one this plugin wrote.
    Corrupt(String),
    /// Every attempt lost the race (the change was not made).
    Contended,
    /// The change would grow the state past its cap.
    Full(&'static str),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => f.write_str("changed by another worker"),
            StoreError::Host(why) => write!(f, "shared data unavailable: {why}"),
            StoreError::Corrupt(why) => write!(f, "shared state unreadable: {why}"),
            StoreError::Contended => f.write_str("too many concurrent writers"),
            StoreError::Full(what) => write!(f, "shared state full ({what})"),
        }
    }
}

/// Shared data in memory, with Envoy's semantics (a CAS token per key, bumped by every write; a write with a
/// stale token fails; a key never written is written whatever the token): for tests, benchmarks and tools
/// that run the core without a host.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    next_cas: std::cell::Cell<u32>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.data.try_borrow().map_err(|_| StoreError::Host("busy".into()))?.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut data = self.data.try_borrow_mut().map_err(|_| StoreError::Host("busy".into()))?;
        if let Some((_, current)) = data.get(key)
            && cas != 0
            && cas != *current
        {
            return Err(StoreError::CasMismatch);
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        data.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}
