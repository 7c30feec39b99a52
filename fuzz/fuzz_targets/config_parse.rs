//! Arbitrary bytes as the plugin configuration: parsing never panics, and an accepted configuration decides
//! requests (with a genuine token of the fixture issuer) without panicking.
#![no_main]

use agent_iam::token::PureRust;
use agent_iam_fuzz::{NOW, a_genuine_token, as_headers, request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(engine) = agent_iam::config::parse(data) {
        let token = a_genuine_token().as_bytes();
        for (method, path) in [("POST", "/orders/1"), ("GET", "/quotes?s=ACME"), ("DELETE", "/admin/../admin/x")] {
            let _ = engine.decide(&as_headers(&request(method, path, token)), NOW, &PureRust);
        }
    }
});
