//! Proxy-wasm shared data for the core ([`crate::shared_data::SharedStore`]), and the limiter that counts
//! requests in it with the host clock.

use super::host;
use crate::engine::Engine;
use crate::engine::limits::SharedLimiter;
use crate::shared_data::{SharedStore, StoreError};
use std::rc::Rc;

/// Shared data through the host.
pub(super) struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        host::shared_data(key).map_err(|s| StoreError::Host(format!("{s:?}")))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        match host::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(host::Status(host::CAS_MISMATCH)) => Err(StoreError::CasMismatch),
            Err(s) => Err(StoreError::Host(format!("{s:?}"))),
        }
    }
}

/// The host clock in microseconds.
fn now_us() -> Option<u64> {
    host::current_time_ns().ok().map(|ns| ns / 1000)
}

/// Gives an engine whose policy has limits the gateway's counter.
pub(super) fn install_limiter(engine: &Engine) {
    if !engine.policy().limits().is_empty() {
        engine.set_limiter(Rc::new(SharedLimiter { store: HostStore, clock: now_us }));
    }
}
