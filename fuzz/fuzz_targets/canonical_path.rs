//! Arbitrary text as a request path: canonicalisation never panics and its output is canonical (starts with
//! `/`, no empty, `.` or `..` segments, and canonicalising it again changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        agent_iam_fuzz::check_canonical_path(raw);
    }
});
