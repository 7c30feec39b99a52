//! Server-provided nonces (RFC 9449 §8, §9), stateless so that every worker (and, with a configured secret,
//! every replica) accepts what any of them issued: a nonce is the start of the period it was issued in and an
//! HMAC-SHA256 of it under the gateway's secret, base64url (`1*NQCHAR`, §8.1). All workers issue the same
//! nonce within a period, a new one each period, and accept one while it is younger than its lifetime. The
//! nonce carries a server-managed time, which §11.1 counts as freshness.

use crate::b64;
use crate::bytes::fixed_time_eq;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of the MAC kept in a nonce: 128 bits, beyond guessing.
const TAG_BYTES: usize = 16;
/// A nonce's decoded length: version, period start (8 bytes), tag.
const NONCE_BYTES: usize = 1 + 8 + TAG_BYTES;
/// The format's version byte, so that a later format is told apart.
const VERSION: u8 = 1;
/// Least secret length, bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The key nonces are made and checked with.
#[derive(Clone)]
pub struct NonceKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// A key from a secret of at least [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Option<NonceKey> {
        (secret.len() >= MIN_SECRET_BYTES).then(|| NonceKey(Zeroizing::new(secret.to_vec())))
    }

    fn tag(&self, period_start: i64) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(&[VERSION]);
        mac.update(&period_start.to_be_bytes());
        Some(mac.finalize().into_bytes().into())
    }
}

/// How nonces are issued and accepted (`dpop.nonce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceRules {
    /// How long a nonce is accepted after the start of the period it was issued in, seconds.
    pub lifetime: i64,
}

impl NonceRules {
    /// A new nonce is issued every half lifetime, so a client that just got one can use it for at least that.
    pub fn period(&self) -> i64 {
        (self.lifetime / 2).max(1)
    }

    /// The nonce issued at `now`.
    pub fn issue(&self, key: &NonceKey, now: i64) -> Option<String> {
        let start = now - now.rem_euclid(self.period());
        let tag = key.tag(start)?;
        let mut raw = [0u8; NONCE_BYTES];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&start.to_be_bytes());
        raw[9..].copy_from_slice(&tag[..TAG_BYTES]);
        Some(b64::encode(&raw))
    }

    /// Whether `nonce` was issued by this gateway (under `key`) and is still accepted at `now`. A nonce from
    /// a period that has not started is refused as forged.
    pub fn accepts(&self, key: &NonceKey, nonce: &str, now: i64) -> bool {
        let mut raw = [0u8; NONCE_BYTES];
        if nonce.len() != b64::encode(&raw).len() {
            return false;
        }
        let Ok(decoded) = b64::decode_into(nonce.as_bytes(), &mut raw) else { return false };
        if decoded.len() != NONCE_BYTES || decoded[0] != VERSION {
            return false;
        }
        let mut start = [0u8; 8];
        start.copy_from_slice(&raw[1..9]);
        let start = i64::from_be_bytes(start);
        if start > now || now - start > self.lifetime || start.rem_euclid(self.period()) != 0 {
            return false;
        }
        let Some(tag) = key.tag(start) else { return false };
        fixed_time_eq(&raw[9..], &tag[..TAG_BYTES])
    }
}
