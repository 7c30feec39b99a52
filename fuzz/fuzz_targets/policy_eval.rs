//! Arbitrary request attributes and claims against a policy that uses every construct: evaluation never
//! panics, and the indexed evaluation always agrees with the direct one (explain).
//!
//! Input: lines `method`, `path?query`, `host`, a header value, an agent id, a JSON value for claims, and a
//! time offset in seconds; missing lines take defaults.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        agent_iam_fuzz::check_policy_eval(text);
    }
});
