//! Minting tokens: signing keys and JWT signing for tests, benchmarks and the demo tools.
//!
//! Native builds only; the gateway never signs anything, so none of this is in the `.wasm`.

use crate::b64;
use crate::token::Algorithm;
use crate::token::crypto::{Family, HmacKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Digest;
use zeroize::Zeroizing;

/// Modulus size of RSA keys made by [`SigningKey::from_seed`].
pub const RSA_SEED_BITS: usize = 2048;

/// A private key (or shared secret) that can sign JWTs.
#[derive(Clone)]
pub enum SigningKey {
    /// P-256 for ES256.
    Es256(p256::ecdsa::SigningKey),
    /// P-384 for ES384.
    Es384(p384::ecdsa::SigningKey),
    /// Ed25519 for EdDSA.
    Ed25519(ed25519_compact::KeyPair),
    /// RSA for one of RS256/384/512 or PS256/384/512.
    Rsa {
        /// The algorithm it signs with.
        alg: Algorithm,
        /// The private key.
        key: Box<rsa::RsaPrivateKey>,
    },
    /// A shared secret for one of HS256/384/512.
    Hmac {
        /// The verification side, bound to the algorithm.
        key: HmacKey,
        /// The secret bytes, for writing into a test configuration.
        secret: Zeroizing<Vec<u8>>,
    },
}

impl SigningKey {
    /// A key for `alg` derived from 32 seed bytes (random bytes make a random key). `None` only for the
    /// negligible set of seeds that are not a valid EC scalar.
    ///
    /// ES384 uses the seed as a 384-bit scalar with 16 leading zero bytes; HS256 uses the seed as the secret,
    /// HS384/HS512 the first 48/64 bytes of SHA-512(seed). RS*/PS* generate a [`RSA_SEED_BITS`]-bit key from a
    /// SHA-256 counter-mode stream of the seed: deterministic, but slow (tens to hundreds of milliseconds
    /// optimised, more in debug builds) — tests should make one per binary and share it.
    pub fn from_seed(alg: Algorithm, seed: [u8; 32]) -> Option<SigningKey> {
        match alg {
            Algorithm::ES256 => p256::ecdsa::SigningKey::from_slice(&seed).ok().map(SigningKey::Es256),
            Algorithm::ES384 => {
                let mut scalar = [0u8; 48];
                scalar[16..].copy_from_slice(&seed);
                p384::ecdsa::SigningKey::from_slice(&scalar).ok().map(SigningKey::Es384)
            }
            Algorithm::EdDSA => {
                Some(SigningKey::Ed25519(ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed))))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let key = rsa::RsaPrivateKey::new(&mut SeedStream::new(&seed), RSA_SEED_BITS).ok()?;
                SigningKey::rsa(alg, key)
            }
            Algorithm::HS256 => SigningKey::hmac(alg, &seed),
            Algorithm::HS384 | Algorithm::HS512 => {
                let wide = Zeroizing::new(sha2::Sha512::digest(seed).to_vec());
                SigningKey::hmac(alg, &wide[..alg.hash_len()?])
            }
        }
    }

    /// An RSA signing key for one RS*/PS* algorithm. `None` if `alg` is not RS* or PS*.
    pub fn rsa(alg: Algorithm, key: rsa::RsaPrivateKey) -> Option<SigningKey> {
        match alg.family() {
            Family::RsaPkcs1 | Family::RsaPss => Some(SigningKey::Rsa { alg, key: Box::new(key) }),
            _ => None,
        }
    }

    /// An HMAC key for one HS* algorithm. `None` if `alg` is not HS* or the secret is shorter than the hash
    /// (the gateway refuses such secrets; use [`HmacKey::new`] directly to see why).
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Option<SigningKey> {
        let key = HmacKey::new(alg, secret).ok()?;
        Some(SigningKey::Hmac { key, secret: Zeroizing::new(secret.to_vec()) })
    }

    /// The same RSA private key, signing with another RS*/PS* algorithm (for algorithm-confusion tests and
    /// to avoid generating a key per algorithm). `None` for other keys or algorithms.
    pub fn with_rsa_alg(&self, alg: Algorithm) -> Option<SigningKey> {
        match self {
            SigningKey::Rsa { key, .. } => SigningKey::rsa(alg, (**key).clone()),
            _ => None,
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        match self {
            SigningKey::Es256(_) => Algorithm::ES256,
            SigningKey::Es384(_) => Algorithm::ES384,
            SigningKey::Ed25519(_) => Algorithm::EdDSA,
            SigningKey::Rsa { alg, .. } => *alg,
            SigningKey::Hmac { key, .. } => key.alg(),
        }
    }

    /// The verification side of an HMAC key (what an issuer is configured with). `None` for other keys.
    pub fn hmac_key(&self) -> Option<&HmacKey> {
        match self {
            SigningKey::Hmac { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The raw shared secret of an HMAC key. `None` for other keys.
    pub fn hmac_secret(&self) -> Option<&[u8]> {
        match self {
            SigningKey::Hmac { secret, .. } => Some(secret),
            _ => None,
        }
    }

    /// The public half as a JWK (with `alg` and `use`, and `kid` if given). A shared secret has no public
    /// half: for HMAC keys this is `null` (configure [`SigningKey::hmac_key`] instead).
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            SigningKey::Es256(sk) => {
                let point = sk.verifying_key().to_sec1_point(false);
                let x = point.x().map(|x| b64::encode(x)).unwrap_or_default();
                let y = point.y().map(|y| b64::encode(y)).unwrap_or_default();
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
            }
            SigningKey::Es384(sk) => {
                let point = sk.verifying_key().to_sec1_point(false);
                let x = point.x().map(|x| b64::encode(x)).unwrap_or_default();
                let y = point.y().map(|y| b64::encode(y)).unwrap_or_default();
                json!({"kty": "EC", "crv": "P-384", "x": x, "y": y})
            }
            SigningKey::Ed25519(kp) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(&kp.pk[..])})
            }
            SigningKey::Rsa { key, .. } => json!({
                "kty": "RSA",
                "n": b64::encode(&key.n().to_bytes_be()),
                "e": b64::encode(&key.e().to_bytes_be()),
            }),
            SigningKey::Hmac { .. } => return Value::Null,
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("alg".into(), self.alg().name().into());
            obj.insert("use".into(), "sig".into());
            if let Some(kid) = kid {
                obj.insert("kid".into(), kid.into());
            }
        }
        jwk
    }

    /// Signs `message` (raw `R || S` for ES256/ES384, modulus-length for RSA, the full tag for HMAC).
    ///
    /// PSS salts come from a SHA-256 stream of the message and the modulus: deterministic, which keeps
    /// this module free of an OS random source (the verifier does not care where a salt came from).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Es256(sk) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = sk.sign(message);
                sig.to_bytes().to_vec()
            }
            SigningKey::Es384(sk) => {
                use p384::ecdsa::signature::Signer;
                let sig: p384::ecdsa::Signature = sk.sign(message);
                sig.to_bytes().to_vec()
            }
            SigningKey::Ed25519(kp) => kp.sk.sign(message, None).to_vec(),
            SigningKey::Rsa { alg, key } => rsa_sign(*alg, key, message).unwrap_or_default(),
            SigningKey::Hmac { key, .. } => key.tag(key.alg(), message).unwrap_or_default(),
        }
    }

    /// A compact JWS of `claims` with `alg`, `typ: JWT` and `kid` (if given) in the header.
    pub fn sign_jwt(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": self.alg().name(), "typ": "JWT"});
        if let (Some(kid), Some(h)) = (kid, header.as_object_mut()) {
            h.insert("kid".into(), kid.into());
        }
        self.sign_jwt_with_header(&header, claims)
    }

    /// A compact JWS with exactly this header (for tests of hostile headers).
    pub fn sign_jwt_with_header(&self, header: &Value, claims: &Value) -> String {
        let input =
            format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64::encode(&sig))
    }
}

/// What a DPoP proof says (RFC 9449 §4.2), for [`SigningKey::dpop_proof`].
#[derive(Debug, Clone, Default)]
pub struct ProofClaims<'a> {
    /// `jti`: unique per proof.
    pub jti: &'a str,
    /// `htm`: the request's method.
    pub htm: &'a str,
    /// `htu`: the request's URI (query and fragment are ignored by the gateway).
    pub htu: &'a str,
    /// `iat`: seconds since the epoch.
    pub iat: i64,
    /// The access token the proof goes with (`ath` is its hash), if any.
    pub token: Option<&'a str>,
    /// `nonce`, if the server gave one.
    pub nonce: Option<&'a str>,
}

/// `ath`: base64url of the SHA-256 of an access token (RFC 9449 §4.2).
pub fn ath(token: &str) -> String {
    b64::encode(&sha2::Sha256::digest(token.as_bytes()))
}

impl SigningKey {
    /// The RFC 7638 thumbprint of the public key (what a bound token's `cnf.jkt` is).
    pub fn jkt(&self) -> Option<String> {
        let jwk = self.public_jwk(None);
        let set = crate::token::KeySet::from_value(&json!({"keys": [jwk]})).ok()?;
        crate::token::dpop::thumbprint::jkt(&set.iter().next()?.key)
    }

    /// A DPoP proof: header `typ: dpop+jwt`, `alg`, and the public key as `jwk` (without `alg`, `use`, `kid`).
    pub fn dpop_proof(&self, claims: &ProofClaims<'_>) -> String {
        let mut jwk = self.public_jwk(None);
        if let Some(obj) = jwk.as_object_mut() {
            obj.remove("use");
            obj.remove("alg");
        }
        let header = json!({"typ": "dpop+jwt", "alg": self.alg().name(), "jwk": jwk});
        self.sign_jwt_with_header(&header, &proof_payload(claims))
    }
}

/// The payload of a proof with these claims.
pub fn proof_payload(claims: &ProofClaims<'_>) -> Value {
    let mut payload = json!({"jti": claims.jti, "htm": claims.htm, "htu": claims.htu, "iat": claims.iat});
    if let Some(token) = claims.token {
        payload["ath"] = ath(token).into();
    }
    if let Some(nonce) = claims.nonce {
        payload["nonce"] = nonce.into();
    }
    payload
}

fn rsa_sign(alg: Algorithm, key: &rsa::RsaPrivateKey, message: &[u8]) -> Option<Vec<u8>> {
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    use sha2::{Sha256, Sha384, Sha512};
    let key = key.clone();
    let mut salt = SeedStream::new(&[&key.n().to_bytes_be()[..], message].concat());
    let sig = match alg {
        Algorithm::RS256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(key).try_sign(message).ok()?.to_vec(),
        Algorithm::RS384 => rsa::pkcs1v15::SigningKey::<Sha384>::new(key).try_sign(message).ok()?.to_vec(),
        Algorithm::RS512 => rsa::pkcs1v15::SigningKey::<Sha512>::new(key).try_sign(message).ok()?.to_vec(),
        Algorithm::PS256 => {
            rsa::pss::SigningKey::<Sha256>::new(key).try_sign_with_rng(&mut salt, message).ok()?.to_vec()
        }
        Algorithm::PS384 => {
            rsa::pss::SigningKey::<Sha384>::new(key).try_sign_with_rng(&mut salt, message).ok()?.to_vec()
        }
        Algorithm::PS512 => {
            rsa::pss::SigningKey::<Sha512>::new(key).try_sign_with_rng(&mut salt, message).ok()?.to_vec()
        }
        _ => return None,
    };
    Some(sig)
}

/// SHA-256 in counter mode over a seed: a deterministic byte stream for key generation from a seed and for
/// PSS salts. Not a general-purpose random generator; it is as unpredictable as its seed.
struct SeedStream {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeedStream {
    fn new(seed: &[u8]) -> SeedStream {
        SeedStream { seed: sha2::Sha256::digest(seed).into(), counter: 0, block: [0; 32], used: 32 }
    }
}

impl rsa::rand_core::RngCore for SeedStream {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                let mut h = sha2::Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for SeedStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{CryptoBackend, KeySet, PureRust};

    #[test]
    fn every_cheap_algorithm_signs_what_the_verifier_accepts() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let key = SigningKey::from_seed(alg, [3; 32]).unwrap();
            assert_eq!(key.alg(), alg);
            let set = KeySet::from_value(&json!({"keys": [key.public_jwk(Some("k"))]})).unwrap();
            let jwk = set.candidates(Some("k"), alg).next().unwrap();
            assert!(PureRust.verify(alg, &jwk.key, b"msg", &key.sign(b"msg")), "{alg:?}");
        }
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let key = SigningKey::from_seed(alg, [3; 32]).unwrap();
            assert_eq!(key.hmac_secret().unwrap().len(), alg.hash_len().unwrap());
            assert!(key.public_jwk(None).is_null());
            let set = KeySet::from_secret(None, key.hmac_key().unwrap().clone()).unwrap();
            let jwk = set.candidates(None, alg).next().unwrap();
            assert!(PureRust.verify(alg, &jwk.key, b"msg", &key.sign(b"msg")), "{alg:?}");
        }
    }

    #[test]
    fn seed_stream_is_deterministic() {
        use rsa::rand_core::RngCore;
        let (mut a, mut b) = (SeedStream::new(b"s"), SeedStream::new(b"s"));
        let (mut x, mut y) = ([0u8; 100], [0u8; 100]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y[..7]);
        b.fill_bytes(&mut y[7..]);
        assert_eq!(x, y);
        assert_ne!(x[..32], x[32..64]);
    }
}
