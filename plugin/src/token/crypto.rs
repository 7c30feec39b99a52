//! Signature algorithms and the crypto backends that check them.
//!
//! Verification reaches the core through [`CryptoBackend`] so the filter can pick Envoy's BoringSSL (through a
//! foreign function) where the host has it, and the portable [`PureRust`] backend elsewhere. Both must accept
//! exactly the same inputs.

use super::jwk::PublicKey;

/// A JWS signature algorithm this build can verify (RFC 7518 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256; signature is raw `R || S`, 64 bytes.
    ES256,
    /// Ed25519 (RFC 8037); signature 64 bytes.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, for documentation and error messages.
    pub const ALL: [Algorithm; 2] = [Algorithm::ES256, Algorithm::EdDSA];

    /// The exact, case-sensitive JWS name (RFC 7515 §4.1.1: `alg` values are case-sensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::ES256),
            "EdDSA" => Some(Algorithm::EdDSA),
            _ => None,
        }
    }

    /// The JWS name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

/// Checks one signature. Implementations must be total: any bytes in, `true` only for a valid signature.
pub trait CryptoBackend {
    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Whether `signature` is a valid `alg` signature of `message` by `key`. The key is already known to be
    /// usable with `alg` (the caller checks that); a mismatch must still return `false`, never panic.
    fn verify(&self, alg: Algorithm, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool;
}

/// The portable backend: RustCrypto's `p256` and `ed25519-compact`, both strict.
#[derive(Debug, Default, Clone, Copy)]
pub struct PureRust;

impl CryptoBackend for PureRust {
    fn name(&self) -> &'static str {
        "pure-rust"
    }

    fn verify(&self, alg: Algorithm, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        match (alg, key) {
            (Algorithm::ES256, PublicKey::P256(key)) => {
                use p256::ecdsa::signature::Verifier;
                // from_slice takes exactly 64 bytes and rejects r or s equal to 0 or >= n, which is what
                // defeats the "psychic signature" (CVE-2022-21449) class.
                match p256::ecdsa::Signature::from_slice(signature) {
                    Ok(sig) => key.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            (Algorithm::EdDSA, PublicKey::Ed25519(key)) => {
                // ed25519-compact rejects non-canonical S and small-order public keys.
                match ed25519_compact::Signature::from_slice(signature) {
                    Ok(sig) => key.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }
}
