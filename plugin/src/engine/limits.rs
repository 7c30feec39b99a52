//! Limits counted across the gateway's workers, by the generic cell rate algorithm (GCRA) over shared data.
//!
//! A limit of `N` requests per window `W` lets each key through at a steady `N/W`, with bursts of up to `N`:
//! in any stretch of time of length `W`, at most `N` requests of a key are allowed, exactly, whichever
//! worker serves them. One number per key holds the state, the theoretical arrival time (TAT) of the next
//! request in microseconds: a request is allowed when `TAT - now <= W - W/N`, and moves the TAT on by
//! `W/N`. Each charge is a read and a compare-and-swap write: two workers charging one key at once cannot
//! both take the last request (the loser reads again). The only rounding is the emission interval `W/N`,
//! counted in whole microseconds.
//!
//! One gap is proxy-wasm's: a key that does not exist yet is written whatever CAS token is given, so the
//! very first charges of a new key, made by two workers within the same few microseconds, can count once.
//! From its first write on a key is exact.

use super::{Admitted, Engine, Failure};
use crate::policy::limits::{Applicable, Limit, decimal};
use crate::shared_data::{SharedStore, StoreError};
use std::rc::Rc;

/// Counts requests against limits. The filter's counts in Envoy's shared data with the host clock; tests
/// count in memory with a clock they move.
pub trait Limiter: std::fmt::Debug {
    /// Charges one request to `key` of `limit`.
    fn charge(&self, key: &str, limit: &Limit) -> Result<Charge, StoreError>;
}

/// What a charge found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Counted.
    Allowed {
        /// Requests left now.
        remaining: u64,
        /// Seconds until the key is back to its full allowance.
        reset: u64,
    },
    /// Over the limit.
    Exceeded {
        /// Seconds until the next request of this key is allowed.
        retry_after: u64,
    },
}

/// The limiter of a gateway: GCRA counters in a shared store, at the time `clock` gives (microseconds since
/// the epoch; `None`: no clock, and nothing can be counted).
pub struct SharedLimiter<S, C> {
    /// Where the counters are.
    pub store: S,
    /// The time.
    pub clock: C,
}

impl<S, C> std::fmt::Debug for SharedLimiter<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLimiter")
    }
}

impl<S: SharedStore, C: Fn() -> Option<u64>> Limiter for SharedLimiter<S, C> {
    fn charge(&self, key: &str, limit: &Limit) -> Result<Charge, StoreError> {
        let now = (self.clock)().ok_or_else(|| StoreError::Host("the clock is unavailable".into()))?;
        charge(&self.store, limit, key, now)
    }
}

/// Most attempts at one charge before giving up to contention.
const ATTEMPTS: usize = 16;

/// The shared-data key of a limit's counter for `key`.
pub fn counter_key(limit: &Limit, key: &str) -> String {
    const PREFIX: &str = "agent_iam.limit.";
    let mut out = String::with_capacity(PREFIX.len() + limit.id.len() + 1 + key.len());
    out.push_str(PREFIX);
    out.push_str(&limit.id);
    out.push('.');
    out.push_str(key);
    out
}

/// One charge by GCRA at `now_us` (microseconds since the epoch) against the counter in `store`.
pub fn charge(store: &dyn SharedStore, limit: &Limit, key: &str, now_us: u64) -> Result<Charge, StoreError> {
    let window = limit.window_seconds.saturating_mul(1_000_000);
    let interval = (window / limit.requests.max(1)).max(1);
    let tolerance = window.saturating_sub(interval);
    let counter = counter_key(limit, key);
    for _ in 0..ATTEMPTS {
        let (stored, cas) = match store.get(&counter)? {
            Some((bytes, cas)) => {
                (std::str::from_utf8(&bytes).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0), cas)
            }
            None => (0, 0),
        };
        let tat = stored.max(now_us);
        if tat - now_us > tolerance {
            let wait = tat - tolerance - now_us;
            return Ok(Charge::Exceeded { retry_after: wait.div_ceil(1_000_000).max(1) });
        }
        let next = tat + interval;
        let mut digits = [0u8; 20];
        match store.set(&counter, decimal(next, &mut digits), cas) {
            Ok(()) => {
                let ahead = next - now_us;
                return Ok(Charge::Allowed {
                    remaining: window.saturating_sub(ahead) / interval,
                    reset: ahead.div_ceil(1_000_000),
                });
            }
            // The loser of a race on an existing counter reads again.
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// A limit a request went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit's id.
    pub id: Rc<str>,
    /// Its allowance and window.
    pub requests: u64,
    /// Seconds.
    pub window_seconds: u64,
    /// Seconds until the next request of this key is allowed.
    pub retry_after: u64,
}

impl Engine {
    /// The answer to a request of an agent held after an anomaly (`deny` action): 429 with `Retry-After`.
    pub fn held_denial(
        &self,
        verified: super::Verified,
        headers: &crate::request::Headers<'_>,
        retry_after: u64,
    ) -> super::Denial {
        let failure = Failure::Held { retry_after, admitted: verified.0 };
        self.denial(failure, super::Scheme::Bearer, super::prepare::request_id(headers))
    }

    /// Replaces how limits are counted (the filter's shared-data counter).
    pub fn set_limiter(&self, limiter: Rc<dyn Limiter>) {
        if let Ok(mut current) = self.limiter.try_borrow_mut() {
            *current = Some(limiter);
        }
    }

    /// Charges an allowed request to every limit that applies, in the order the policy lists them; the first
    /// exceeded refuses it (those charged before still count it). Without a limiter a policy with limits
    /// cannot be enforced: refused (503), never let through uncounted.
    pub(super) fn check_limits(&self, admitted: &Rc<Admitted>, applicable: Vec<Applicable<'_>>) -> Result<(), Failure> {
        if applicable.is_empty() {
            return Ok(());
        }
        let limiter = self.limiter.try_borrow().ok().and_then(|l| l.clone()).ok_or(Failure::LimitsUnavailable)?;
        for a in applicable {
            match limiter.charge(&a.key, a.limit) {
                Ok(Charge::Allowed { .. }) => {}
                Ok(Charge::Exceeded { retry_after }) => {
                    return Err(Failure::Limited {
                        exceeded: Exceeded {
                            id: Rc::from(&*a.limit.id),
                            requests: a.limit.requests,
                            window_seconds: a.limit.window_seconds,
                            retry_after,
                        },
                        admitted: admitted.clone(),
                    });
                }
                Err(_) => return Err(Failure::LimitsUnavailable),
            }
        }
        Ok(())
    }
}
