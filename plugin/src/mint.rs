//! Minting tokens: signing keys and JWT signing for tests, benchmarks and the demo tools.
//!
//! Native builds only; the gateway never signs anything, so none of this is in the `.wasm`.

use crate::b64;
use crate::token::Algorithm;
use serde_json::{Value, json};

/// A private key that can sign JWTs.
#[derive(Clone)]
pub enum SigningKey {
    /// P-256 for ES256.
    Es256(p256::ecdsa::SigningKey),
    /// Ed25519 for EdDSA.
    Ed25519(ed25519_compact::KeyPair),
}

impl SigningKey {
    /// A key for `alg` derived from 32 seed bytes (random bytes make a random key). `None` only for the
    /// negligible set of seeds that are not a valid P-256 scalar.
    pub fn from_seed(alg: Algorithm, seed: [u8; 32]) -> Option<SigningKey> {
        match alg {
            Algorithm::ES256 => p256::ecdsa::SigningKey::from_slice(&seed).ok().map(SigningKey::Es256),
            Algorithm::EdDSA => {
                Some(SigningKey::Ed25519(ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed))))
            }
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        match self {
            SigningKey::Es256(_) => Algorithm::ES256,
            SigningKey::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    /// The public half as a JWK (with `alg` and `use`, and `kid` if given).
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            SigningKey::Es256(sk) => {
                let point = sk.verifying_key().to_sec1_point(false);
                let x = point.x().map(|x| b64::encode(x)).unwrap_or_default();
                let y = point.y().map(|y| b64::encode(y)).unwrap_or_default();
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
            }
            SigningKey::Ed25519(kp) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(&kp.pk[..])})
            }
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

    /// Signs `message` (raw `R || S` for ES256).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Es256(sk) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = sk.sign(message);
                sig.to_bytes().to_vec()
            }
            SigningKey::Ed25519(kp) => kp.sk.sign(message, None).to_vec(),
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
