//! Envoy's foreign functions that agent-iam calls, implemented natively so the host behaves like Envoy 1.40:
//!
//! - `verify_signature` (Envoy `source/extensions/common/wasm/foreign.cc`): parses `VerifySignatureArguments`,
//!   imports the DER SubjectPublicKeyInfo and runs a digest-based verification, answering
//!   `VerifySignatureResult`. Like BoringSSL's `EVP_DigestVerify` with a digest, it does ECDSA over DER
//!   signatures; it cannot do Ed25519 or PSS (Envoy answers "Failed to initialize digest verify."). This
//!   emulation covers P-256 with SHA-256, the combination agent-iam sends; anything else answers "not
//!   verified", which is what the plugin's start-up self-test then detects.
//! - `clear_route_cache`: accepted, nothing to clear here.

use super::Status;
use agent_iam::token::host_crypto::{decode_args, ecdsa_raw_from_der, encode_result};

/// DER prefix of a P-256 SubjectPublicKeyInfo; the uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

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
    let key = args
        .public_key
        .strip_prefix(&P256_SPKI_PREFIX[..])
        .and_then(|point| p256::ecdsa::VerifyingKey::from_sec1_bytes(point).ok());
    let Some(key) = key else {
        return Ok(encode_result(false, "Failed to initialize digest verify."));
    };
    if hash != "sha256" {
        return Ok(encode_result(false, "Failed to verify digest. Error code: 0"));
    }
    use p256::ecdsa::signature::Verifier;
    let ok = ecdsa_raw_from_der(&args.signature, 32)
        .and_then(|raw| p256::ecdsa::Signature::from_slice(&raw).ok())
        .is_some_and(|sig| key.verify(&args.text, &sig).is_ok());
    Ok(encode_result(ok, if ok { "" } else { "Failed to verify digest. Error code: 0" }))
}

/// Envoy's `clear_route_cache`.
pub fn clear_route_cache(_arguments: &[u8]) -> Result<Vec<u8>, Status> {
    Ok(Vec::new())
}
