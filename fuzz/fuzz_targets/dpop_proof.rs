//! Arbitrary bytes as a DPoP proof (checked against RFC 9449's example resource request), as a proof's `htu`
//! and as a nonce. Nothing panics; the only proof ever accepted is the RFC's own, whose key signed it (a
//! changed signature, header or payload is refused); normalising a URI twice changes nothing more.
#![no_main]

use agent_iam::token::PureRust;
use agent_iam::token::dpop::nonce::{NonceKey, NonceRules};
use agent_iam::token::dpop::proof::{self, Expected, ProofKeys};
use agent_iam::token::dpop::{ProofRules, htu};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// RFC 9449 §7.1's proof (also the corpus seed), for `GET https://resource.example.org/protectedresource`.
const RFC_PROOF: &str = include_str!("../corpus/dpop_proof/rfc9449");
const RFC_TOKEN: &[u8] = b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const RFC_IAT: i64 = 1_562_262_618;

fuzz_target!(|data: &[u8]| {
    let token_sha256: [u8; 32] = Sha256::digest(RFC_TOKEN).into();
    let expected = Expected {
        method: "GET",
        htu: "https://resource.example.org/protectedresource",
        token_sha256: &token_sha256,
        now: RFC_IAT,
    };
    let keys = ProofKeys::default();
    if proof::check(data, &expected, &ProofRules::default(), &keys, &PureRust).is_ok() {
        let signed = |p: &[u8]| p.iter().rposition(|&b| b == b'.').map(|i| p[..i].to_vec());
        assert_eq!(
            signed(data),
            signed(RFC_PROOF.trim().as_bytes()),
            "a proof nobody signed was accepted: {:?}",
            String::from_utf8_lossy(data)
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(once) = htu::normalise(text) {
            assert_eq!(htu::normalise(&once).as_deref(), Some(once.as_str()), "{text:?}");
        }
        if let Some(key) = NonceKey::new(&[7; 32]) {
            let rules = NonceRules { lifetime: 300 };
            if rules.accepts(&key, text, RFC_IAT) {
                assert_eq!(rules.issue(&key, RFC_IAT).as_deref(), Some(text), "only the issued nonce is accepted");
            }
        }
    }
});
