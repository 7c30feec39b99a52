//! Signature algorithms and the crypto backends that check them.
//!
//! Verification reaches the core through [`CryptoBackend`] so the filter can pick Envoy's BoringSSL (through a
//! foreign function) where the host has it, and the portable [`PureRust`] backend elsewhere. Both must accept
//! exactly the same inputs.

use std::fmt;
use zeroize::Zeroizing;

/// A validated verification key: a public key from a JWKS, or an explicitly configured HMAC secret.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// P-256 (ES256).
    P256(p256::ecdsa::VerifyingKey),
    /// P-384 (ES384).
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519 (EdDSA).
    Ed25519(ed25519_compact::PublicKey),
    /// RSA, bound to one of RS256/384/512 or PS256/384/512.
    Rsa(RsaKey),
    /// A shared secret, bound to one of HS256/384/512. Never loaded from a JWKS.
    Hmac(HmacKey),
}

/// A JWS signature algorithm this build can verify (RFC 7518 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256; signature is raw `R || S`, 64 bytes.
    ES256,
    /// ECDSA on P-384 with SHA-384; signature is raw `R || S`, 96 bytes.
    ES384,
    /// Ed25519 (RFC 8037); signature 64 bytes.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256; signature exactly the modulus length.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, salt length 32 (RFC 7518 §3.5).
    PS256,
    /// RSASSA-PSS with SHA-384, MGF1 with SHA-384, salt length 48.
    PS384,
    /// RSASSA-PSS with SHA-512, MGF1 with SHA-512, salt length 64.
    PS512,
    /// HMAC with SHA-256; only with an explicitly configured secret of at least 32 bytes.
    HS256,
    /// HMAC with SHA-384; secret of at least 48 bytes.
    HS384,
    /// HMAC with SHA-512; secret of at least 64 bytes.
    HS512,
}

/// The family an algorithm belongs to, which decides the kind of key it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// ECDSA (ES*): an `EC` key on the matching curve.
    Ecdsa,
    /// EdDSA: an `OKP` key.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 (RS*): an `RSA` key.
    RsaPkcs1,
    /// RSASSA-PSS (PS*): an `RSA` key.
    RsaPss,
    /// HMAC (HS*): a configured shared secret, never a key from a JWKS.
    Hmac,
}

impl Algorithm {
    /// Every algorithm, for documentation and error messages.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The exact, case-sensitive JWS name (RFC 7515 §4.1.1: `alg` values are case-sensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWS name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// The algorithm's family.
    pub fn family(self) -> Family {
        match self {
            Algorithm::ES256 | Algorithm::ES384 => Family::Ecdsa,
            Algorithm::EdDSA => Family::EdDsa,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Family::RsaPkcs1,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => Family::RsaPss,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        }
    }

    /// Whether this is an HMAC algorithm (a shared secret, not a public key).
    pub fn is_hmac(self) -> bool {
        self.family() == Family::Hmac
    }

    /// Output length of the algorithm's hash in bytes (the HMAC tag length, the PSS salt length, the
    /// minimum HMAC secret length). `None` for EdDSA, which has no separate hash parameter.
    pub fn hash_len(self) -> Option<usize> {
        match self {
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::PS256 | Algorithm::HS256 => Some(32),
            Algorithm::ES384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::HS384 => Some(48),
            Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 => Some(64),
            Algorithm::EdDSA => None,
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

/// The portable backend: RustCrypto's `p256`, `p384`, `rsa` and `hmac`, and `ed25519-compact`, all strict.
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
            (Algorithm::ES384, PublicKey::P384(key)) => {
                use p384::ecdsa::signature::Verifier;
                // Exactly 96 bytes, r and s in [1, n - 1], as for P-256.
                match p384::ecdsa::Signature::from_slice(signature) {
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
            (_, PublicKey::Rsa(key)) => key.verify(alg, message, signature),
            (_, PublicKey::Hmac(key)) => key.verify(alg, message, signature),
            _ => false,
        }
    }
}

/// An RSA public key bound to one RS*/PS* algorithm, validated at load: modulus of
/// [`RsaKey::MIN_BITS`]..=[`RsaKey::MAX_BITS`] bits, odd exponent in `3..2^32`.
#[derive(Clone, Debug)]
pub struct RsaKey {
    verifier: RsaVerifier,
    /// Modulus length in bytes: the only accepted signature length.
    len: usize,
}

/// The typed verifying key for the one algorithm; these check `signature < n` and, for PSS, fix the salt
/// length to the hash length and MGF1 to the same hash.
#[derive(Clone, Debug)]
enum RsaVerifier {
    Rs256(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    Rs384(rsa::pkcs1v15::VerifyingKey<sha2::Sha384>),
    Rs512(rsa::pkcs1v15::VerifyingKey<sha2::Sha512>),
    Ps256(rsa::pss::VerifyingKey<sha2::Sha256>),
    Ps384(rsa::pss::VerifyingKey<sha2::Sha384>),
    Ps512(rsa::pss::VerifyingKey<sha2::Sha512>),
}

/// Why an RSA key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaKeyError {
    /// The algorithm is not an RS*/PS* algorithm.
    NotRsa,
    /// Modulus shorter than [`RsaKey::MIN_BITS`] (or zero, or with leading zero octets).
    ModulusTooSmall,
    /// Modulus longer than [`RsaKey::MAX_BITS`].
    ModulusTooLarge,
    /// Modulus with a leading zero octet (RFC 7518 §6.3.1.1 wants the minimal encoding).
    ModulusNotMinimal,
    /// Exponent even, below 3, above 2^32 - 1, not minimal, or not smaller than the modulus.
    BadExponent,
    /// The modulus is even (cannot be a product of two odd primes).
    BadModulus,
}

impl fmt::Display for RsaKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RsaKeyError::NotRsa => f.write_str("algorithm is not an RSA signature algorithm"),
            RsaKeyError::ModulusTooSmall => {
                write!(f, "RSA modulus must be at least {} bits", RsaKey::MIN_BITS)
            }
            RsaKeyError::ModulusTooLarge => write!(f, "RSA modulus must be at most {} bits", RsaKey::MAX_BITS),
            RsaKeyError::ModulusNotMinimal => f.write_str("RSA modulus has a leading zero octet"),
            RsaKeyError::BadExponent => {
                f.write_str("RSA exponent must be odd, at least 3 and at most 2^32 - 1, without leading zero octets")
            }
            RsaKeyError::BadModulus => f.write_str("RSA modulus is not odd"),
        }
    }
}

impl std::error::Error for RsaKeyError {}

impl RsaKey {
    /// Smallest accepted modulus, bits (RFC 7518 §3.3 requires 2048).
    pub const MIN_BITS: usize = 2048;
    /// Largest accepted modulus, bits: bounds the CPU a key set can make each verification cost.
    pub const MAX_BITS: usize = 8192;

    /// An RSA key for `alg` from the big-endian modulus and exponent (the decoded JWK `n` and `e`).
    pub fn new(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<RsaKey, RsaKeyError> {
        if !matches!(alg.family(), Family::RsaPkcs1 | Family::RsaPss) {
            return Err(RsaKeyError::NotRsa);
        }
        if n.first() == Some(&0) {
            return Err(RsaKeyError::ModulusNotMinimal);
        }
        // Bits of the minimal encoding: whole bytes after the first, plus the first byte's significant bits.
        let bits = match n.first() {
            None => 0,
            Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        };
        if bits < RsaKey::MIN_BITS {
            return Err(RsaKeyError::ModulusTooSmall);
        }
        if bits > RsaKey::MAX_BITS {
            return Err(RsaKeyError::ModulusTooLarge);
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(RsaKeyError::BadModulus);
        }
        if e.is_empty() || e.len() > 4 || e[0] == 0 {
            return Err(RsaKeyError::BadExponent);
        }
        let exponent = e.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        if exponent < 3 || exponent & 1 == 0 {
            return Err(RsaKeyError::BadExponent);
        }
        let key = rsa::RsaPublicKey::new_with_max_size(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from(exponent),
            RsaKey::MAX_BITS,
        )
        .map_err(|_| RsaKeyError::BadExponent)?;
        let verifier = match alg {
            Algorithm::RS256 => RsaVerifier::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)),
            Algorithm::RS384 => RsaVerifier::Rs384(rsa::pkcs1v15::VerifyingKey::new(key)),
            Algorithm::RS512 => RsaVerifier::Rs512(rsa::pkcs1v15::VerifyingKey::new(key)),
            Algorithm::PS256 => RsaVerifier::Ps256(rsa::pss::VerifyingKey::new(key)),
            Algorithm::PS384 => RsaVerifier::Ps384(rsa::pss::VerifyingKey::new(key)),
            Algorithm::PS512 => RsaVerifier::Ps512(rsa::pss::VerifyingKey::new(key)),
            _ => return Err(RsaKeyError::NotRsa),
        };
        Ok(RsaKey { verifier, len: n.len() })
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        match self.verifier {
            RsaVerifier::Rs256(_) => Algorithm::RS256,
            RsaVerifier::Rs384(_) => Algorithm::RS384,
            RsaVerifier::Rs512(_) => Algorithm::RS512,
            RsaVerifier::Ps256(_) => Algorithm::PS256,
            RsaVerifier::Ps384(_) => Algorithm::PS384,
            RsaVerifier::Ps512(_) => Algorithm::PS512,
        }
    }

    /// The key itself (for a host backend that needs the modulus and exponent).
    pub fn public_key(&self) -> &rsa::RsaPublicKey {
        match &self.verifier {
            RsaVerifier::Rs256(k) => k.as_ref(),
            RsaVerifier::Rs384(k) => k.as_ref(),
            RsaVerifier::Rs512(k) => k.as_ref(),
            RsaVerifier::Ps256(k) => k.as_ref(),
            RsaVerifier::Ps384(k) => k.as_ref(),
            RsaVerifier::Ps512(k) => k.as_ref(),
        }
    }

    /// Modulus length in bytes, which is the only accepted signature length.
    pub fn modulus_len(&self) -> usize {
        self.len
    }

    /// Whether `signature` is a valid `alg` signature of `message`. `false` if `alg` is not this key's
    /// algorithm, if the signature is not exactly the modulus length, or if it is not smaller than the
    /// modulus. PSS uses MGF1 with the same hash and a salt exactly as long as the hash (RFC 7518 §3.5).
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use rsa::signature::Verifier;
        if alg != self.alg() || signature.len() != self.len {
            return false;
        }
        let pkcs1 = || rsa::pkcs1v15::Signature::try_from(signature);
        let pss = || rsa::pss::Signature::try_from(signature);
        let ok = match &self.verifier {
            RsaVerifier::Rs256(k) => pkcs1().map(|s| k.verify(message, &s)),
            RsaVerifier::Rs384(k) => pkcs1().map(|s| k.verify(message, &s)),
            RsaVerifier::Rs512(k) => pkcs1().map(|s| k.verify(message, &s)),
            RsaVerifier::Ps256(k) => pss().map(|s| k.verify(message, &s)),
            RsaVerifier::Ps384(k) => pss().map(|s| k.verify(message, &s)),
            RsaVerifier::Ps512(k) => pss().map(|s| k.verify(message, &s)),
        };
        matches!(ok, Ok(Ok(())))
    }
}

/// A shared HMAC secret bound to one HS* algorithm. Only ever built from an issuer's explicitly configured
/// secret, never from a JWKS (so no public key can be mistaken for it: the CVE-2016-10555 class).
///
/// The secret is wiped from memory when dropped and never printed by `Debug`.
#[derive(Clone)]
pub struct HmacKey {
    alg: Algorithm,
    secret: Zeroizing<Vec<u8>>,
}

/// Why an HMAC secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    /// The algorithm is not HS256, HS384 or HS512.
    NotHmac,
    /// Shorter than the hash output (RFC 7518 §3.2); includes the empty secret.
    TooShort {
        /// Minimum length in bytes for the algorithm.
        min: usize,
        /// Length given.
        found: usize,
    },
    /// Longer than [`HmacKey::MAX_SECRET_BYTES`].
    TooLong,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::NotHmac => f.write_str("a shared secret can only be used with HS256, HS384 or HS512"),
            SecretError::TooShort { min, found } => {
                write!(f, "secret must be at least {min} bytes for this algorithm, found {found}")
            }
            SecretError::TooLong => write!(f, "secret must be at most {} bytes", HmacKey::MAX_SECRET_BYTES),
        }
    }
}

impl std::error::Error for SecretError {}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey").field("alg", &self.alg).field("secret", &"<redacted>").finish()
    }
}

impl HmacKey {
    /// Longest secret accepted, bytes; anything longer is a misconfiguration (a file pasted by mistake).
    pub const MAX_SECRET_BYTES: usize = 1024;

    /// An HMAC key for `alg` (HS256/384/512). The secret must be at least as long as the hash output
    /// (32/48/64 bytes, RFC 7518 §3.2); an empty or short secret is refused.
    pub fn new(alg: Algorithm, secret: &[u8]) -> Result<HmacKey, SecretError> {
        let min = match (alg.is_hmac(), alg.hash_len()) {
            (true, Some(min)) => min,
            _ => return Err(SecretError::NotHmac),
        };
        if secret.len() < min {
            return Err(SecretError::TooShort { min, found: secret.len() });
        }
        if secret.len() > HmacKey::MAX_SECRET_BYTES {
            return Err(SecretError::TooLong);
        }
        Ok(HmacKey { alg, secret: Zeroizing::new(secret.to_vec()) })
    }

    /// The one algorithm this secret verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The full-length tag of `message`, or `None` if `alg` is not this key's algorithm.
    pub fn tag(&self, alg: Algorithm, message: &[u8]) -> Option<Vec<u8>> {
        use hmac::Mac;
        if alg != self.alg {
            return None;
        }
        match alg {
            Algorithm::HS256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
                .ok()
                .map(|m| m.chain_update(message).finalize().into_bytes().to_vec()),
            Algorithm::HS384 => hmac::Hmac::<sha2::Sha384>::new_from_slice(&self.secret)
                .ok()
                .map(|m| m.chain_update(message).finalize().into_bytes().to_vec()),
            Algorithm::HS512 => hmac::Hmac::<sha2::Sha512>::new_from_slice(&self.secret)
                .ok()
                .map(|m| m.chain_update(message).finalize().into_bytes().to_vec()),
            _ => None,
        }
    }

    /// Whether `tag` is the full-length `alg` HMAC of `message`, compared in constant time. Truncated tags
    /// are refused.
    pub fn verify(&self, alg: Algorithm, message: &[u8], tag: &[u8]) -> bool {
        use hmac::Mac;
        if alg != self.alg {
            return false;
        }
        // verify_slice requires the exact output length and compares with `subtle` (constant time).
        match alg {
            Algorithm::HS256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
                .map(|m| m.chain_update(message).verify_slice(tag).is_ok())
                .unwrap_or(false),
            Algorithm::HS384 => hmac::Hmac::<sha2::Sha384>::new_from_slice(&self.secret)
                .map(|m| m.chain_update(message).verify_slice(tag).is_ok())
                .unwrap_or(false),
            Algorithm::HS512 => hmac::Hmac::<sha2::Sha512>::new_from_slice(&self.secret)
                .map(|m| m.chain_update(message).verify_slice(tag).is_ok())
                .unwrap_or(false),
            _ => false,
        }
    }
}

#[cfg(test)]
#[path = "vectors.rs"]
mod vectors;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact_and_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
            assert_eq!(Algorithm::from_name(&alg.name().to_lowercase()), None, "{alg:?}");
        }
        for bad in ["none", "HS256 ", "rs256", "Ps256", "ES512", "RS1", "EDDSA", "ES256K", ""] {
            assert_eq!(Algorithm::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn hmac_secrets_must_be_at_least_the_hash_length() {
        for (alg, min) in [(Algorithm::HS256, 32), (Algorithm::HS384, 48), (Algorithm::HS512, 64)] {
            assert_eq!(HmacKey::new(alg, b"").unwrap_err(), SecretError::TooShort { min, found: 0 });
            assert_eq!(
                HmacKey::new(alg, &vec![7; min - 1]).unwrap_err(),
                SecretError::TooShort { min, found: min - 1 }
            );
            assert!(HmacKey::new(alg, &vec![7; min]).is_ok());
        }
        assert_eq!(HmacKey::new(Algorithm::RS256, &[7; 64]).unwrap_err(), SecretError::NotHmac);
        assert_eq!(HmacKey::new(Algorithm::HS256, &[7; 1025]).unwrap_err(), SecretError::TooLong);
        let key = HmacKey::new(Algorithm::HS256, &[0x42; 32]).unwrap();
        assert!(!format!("{key:?}").contains("42"), "Debug must not print the secret");
    }

    #[test]
    fn hmac_refuses_other_algorithms_and_truncated_tags() {
        let key = HmacKey::new(Algorithm::HS256, &[9; 64]).unwrap();
        let tag = key.tag(Algorithm::HS256, b"m").unwrap();
        assert!(key.verify(Algorithm::HS256, b"m", &tag));
        assert!(!key.verify(Algorithm::HS256, b"n", &tag));
        assert!(!key.verify(Algorithm::HS256, b"m", &tag[..31]));
        assert!(!key.verify(Algorithm::HS256, b"m", &[tag.as_slice(), &[0]].concat()));
        assert!(!key.verify(Algorithm::HS256, b"m", b""));
        assert!(!key.verify(Algorithm::HS512, b"m", &tag));
        assert_eq!(key.tag(Algorithm::HS384, b"m"), None);
    }

    #[test]
    fn rsa_key_limits() {
        let mut n = vec![0xff; 256];
        n[255] = 0xf1;
        assert!(RsaKey::new(Algorithm::RS256, &n, &[1, 0, 1]).is_ok());
        assert_eq!(RsaKey::new(Algorithm::HS256, &n, &[1, 0, 1]).unwrap_err(), RsaKeyError::NotRsa);
        assert_eq!(RsaKey::new(Algorithm::RS256, &n[1..], &[1, 0, 1]).unwrap_err(), RsaKeyError::ModulusTooSmall);
        assert_eq!(RsaKey::new(Algorithm::RS256, &[], &[1, 0, 1]).unwrap_err(), RsaKeyError::ModulusTooSmall);
        let small_top = [&[0x7f][..], &n[1..]].concat();
        assert_eq!(RsaKey::new(Algorithm::RS256, &small_top, &[1, 0, 1]).unwrap_err(), RsaKeyError::ModulusTooSmall);
        let zero_led = [&[0][..], &n].concat();
        assert_eq!(RsaKey::new(Algorithm::RS256, &zero_led, &[1, 0, 1]).unwrap_err(), RsaKeyError::ModulusNotMinimal);
        assert!(RsaKey::new(Algorithm::PS512, &vec![0xff; 1024], &[3]).is_ok());
        assert_eq!(RsaKey::new(Algorithm::RS256, &vec![0xff; 1025], &[3]).unwrap_err(), RsaKeyError::ModulusTooLarge);
        let mut even = n.clone();
        even[255] = 0xf0;
        assert_eq!(RsaKey::new(Algorithm::RS256, &even, &[3]).unwrap_err(), RsaKeyError::BadModulus);
        for e in [&[][..], &[1], &[2], &[4], &[0, 3], &[1, 0, 0, 0, 1], &[1, 0, 0]] {
            assert_eq!(RsaKey::new(Algorithm::RS256, &n, e).unwrap_err(), RsaKeyError::BadExponent, "{e:?}");
        }
        assert!(RsaKey::new(Algorithm::RS256, &n, &[0xff, 0xff, 0xff, 0xff]).is_ok());
    }
}
