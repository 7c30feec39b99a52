//! Proxy-wasm shared data for the core ([`crate::shared_data::SharedStore`]), and the limiter that counts
//! requests in it with the host clock.

use super::host;
use crate::engine::Engine;
use crate::engine::limits::SharedLimiter;
use crate::shared_data::{SharedStore, StoreError};
use crate::token::dpop::nonce::{MIN_SECRET_BYTES, NonceKey};
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

/// The shared-data key of the DPoP nonce secret the workers share when the configuration names none.
const NONCE_SECRET_KEY: &str = "agent-iam.dpop.nonce-secret";

/// Gives an engine that checks DPoP proofs its replay cache (shared data) and, when it makes nonces without a
/// configured secret, the secret the workers share.
pub(super) fn install_dpop(engine: &Engine) {
    if engine.checks_dpop() {
        engine.set_shared_store(Rc::new(HostStore));
    }
    refresh_nonce_key(engine);
}

/// Reads the workers' nonce secret, creating it on first use. Shared data cannot create a key only if it is
/// absent, so two workers starting together may both write one; the last write stays, and every worker reads
/// it again on each tick, so they agree within a tick (a nonce issued in between is answered with
/// `use_dpop_nonce` and a fresh one, which clients retry).
pub(super) fn refresh_nonce_key(engine: &Engine) {
    if !engine.needs_nonce_key() {
        return;
    }
    let secret = match host::shared_data(NONCE_SECRET_KEY) {
        Ok(Some((bytes, _))) if bytes.len() >= MIN_SECRET_BYTES => bytes,
        Ok(_) => {
            let Some(fresh) = host::random_bytes::<32>() else { return };
            if host::set_shared_data(NONCE_SECRET_KEY, &fresh, 0).is_err() {
                return;
            }
            match host::shared_data(NONCE_SECRET_KEY) {
                Ok(Some((bytes, _))) => bytes,
                _ => return,
            }
        }
        Err(_) => return,
    };
    if let Some(key) = NonceKey::new(&secret) {
        engine.set_nonce_key(key);
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
