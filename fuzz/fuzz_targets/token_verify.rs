//! Arbitrary bytes as a token: verification never panics, and only the genuinely signed tokens verify.
#![no_main]

use agent_iam::token::PureRust;
use agent_iam_fuzz::{NOW, is_genuine, verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = verifier().verify(data, NOW, &PureRust) {
        assert!(
            is_genuine(data),
            "a token that was never signed verified: {:?} -> {t:?}",
            String::from_utf8_lossy(data)
        );
    }
});
