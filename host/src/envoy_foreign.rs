//! Envoy's foreign functions that agent-iam calls, implemented natively so the host behaves like Envoy 1.40:
//!
//! - `verify_signature` (Envoy `source/extensions/common/wasm/foreign.cc`): parses `VerifySignatureArguments`,
//!   imports the DER SubjectPublicKeyInfo and runs a digest-based verification, answering
//!   `VerifySignatureResult`. Like BoringSSL's `EVP_DigestVerify` with a digest, it does ECDSA over DER
//!   signatures and RSA PKCS#1 v1.5; it cannot do Ed25519 or PSS (Envoy answers "Failed to initialize
//!   digest verify."). This emulation covers what agent-iam sends (P-256/SHA-256, P-384/SHA-384, RSA with
//!   SHA-256/384/512); anything else answers "not verified", which the plugin's start-up self-test detects.
//! - `clear_route_cache`: accepted, nothing to clear here.

use super::Status;
use agent_iam::token::host_crypto::{
    P256_SPKI_PREFIX, P384_SPKI_PREFIX, decode_args, ecdsa_raw_from_der, encode_result,
};
use rsa::pkcs8::DecodePublicKey;

/// Envoy's `verify_signature`.
pub fn verify_signature(arguments: &[u8]) -> Result<Vec<u8>, Status> {
    let args = decode_args(arguments).ok_or(Status::BadArgument)?;
    let has_der = !args.public_key.is_empty();
    let has_pem = !args.public_key_pem.is_empty();
    if has_der == has_pem {
        // Neither or both key forms: Envoy's importPublicKey returns null.
        return Err(Status::BadArgument);
    }
    let hash = args.hash_function.to_ascii_lowercase();
    if !["sha1", "sha224", "sha256", "sha384", "sha512"].contains(&hash.as_str()) {
        return Ok(encode_result(false, &format!("{} is not supported.", args.hash_function)));
    }
    let verified = if let Some(point) = args.public_key.strip_prefix(&P256_SPKI_PREFIX[..]) {
        let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else { return Ok(not_initialized()) };
        use p256::ecdsa::signature::Verifier;
        hash == "sha256"
            && ecdsa_raw_from_der(&args.signature, 32)
                .and_then(|raw| p256::ecdsa::Signature::from_slice(&raw).ok())
                .is_some_and(|sig| key.verify(&args.text, &sig).is_ok())
    } else if let Some(point) = args.public_key.strip_prefix(&P384_SPKI_PREFIX[..]) {
        let Ok(key) = p384::ecdsa::VerifyingKey::from_sec1_bytes(point) else { return Ok(not_initialized()) };
        use p384::ecdsa::signature::Verifier;
        hash == "sha384"
            && ecdsa_raw_from_der(&args.signature, 48)
                .and_then(|raw| p384::ecdsa::Signature::from_slice(&raw).ok())
                .is_some_and(|sig| key.verify(&args.text, &sig).is_ok())
    } else if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(&args.public_key) {
        use sha2::Digest;
        let (scheme, digest) = match hash.as_str() {
            "sha256" => (rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), sha2::Sha256::digest(&args.text).to_vec()),
            "sha384" => (rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), sha2::Sha384::digest(&args.text).to_vec()),
            "sha512" => (rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), sha2::Sha512::digest(&args.text).to_vec()),
            _ => return Ok(encode_result(false, "Failed to verify digest. Error code: 0")),
        };
        key.verify(scheme, &digest, &args.signature).is_ok()
    } else {
        return Ok(not_initialized());
    };
    Ok(encode_result(verified, if verified { "" } else { "Failed to verify digest. Error code: 0" }))
}

fn not_initialized() -> Vec<u8> {
    encode_result(false, "Failed to initialize digest verify.")
}

/// Envoy's `clear_route_cache`.
pub fn clear_route_cache(_arguments: &[u8]) -> Result<Vec<u8>, Status> {
    Ok(Vec::new())
}
