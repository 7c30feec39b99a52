//! Arbitrary bytes as a JWKS: loading never panics, and a loaded set answers lookups.
#![no_main]

use agent_iam::token::{Algorithm, KeySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::from_bytes(data) {
        assert!(!set.is_empty());
        for alg in Algorithm::ALL {
            let _ = set.candidates(None, alg).count();
            let _ = set.candidates(Some("es"), alg).count();
        }
    }
});
