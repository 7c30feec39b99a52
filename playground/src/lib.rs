//! agent-iam in the browser: the gateway's own Rust core (configuration validation with exact error paths,
//! token verification, policy evaluation and its explanation, MCP messages, the policy test runner) exported
//! through wasm-bindgen for the playground page (`playground/web/`). Nothing here speaks proxy-wasm.
//!
//! Every function takes and returns JSON text, so the page needs no generated types: `document` reads what
//! the user typed (JSON or YAML, a policy alone or a whole configuration), `decide` answers a request in
//! claims mode (policy only, the signature not checked) or token mode (the gateway's whole decision),
//! `cases` runs `*.tests.json` files, `examples` are the repository's policies.

mod cases;
mod decide;
mod document;
mod examples;

use wasm_bindgen::prelude::wasm_bindgen;

/// The preloaded examples: `[{name, title, description, policy, tests, request, claims}]`.
#[wasm_bindgen]
pub fn examples() -> String {
    examples::all().to_string()
}

/// Validates a configuration or a policy (`format`: `json`, `yaml` or `auto`): `{ok, kind, summary}` or
/// `{ok: false, errors: [{path, message}]}`.
#[wasm_bindgen]
pub fn validate(text: &str, format: &str) -> String {
    document::validate(text, format).to_string()
}

/// Decides one request (see [`decide::decide`] for the input): the decision, the status, the answer or what
/// is forwarded, and the explanation rule by rule.
#[wasm_bindgen]
pub fn decide(input: &str) -> String {
    decide::decide(input).to_string()
}

/// Runs a `*.tests.json` file against a policy or configuration: `{ok, passed, failed, results}`.
#[wasm_bindgen]
pub fn run_tests(text: &str, format: &str, tests: &str) -> String {
    cases::run(text, format, tests).to_string()
}

/// The document converted to `json` (pretty) or `yaml`: `{ok, text}` or `{ok: false, errors}`.
#[wasm_bindgen]
pub fn convert(text: &str, to: &str) -> String {
    document::convert(text, to).to_string()
}

/// A token's header and claims, decoded for display and not verified: `{header, claims, error}`.
#[wasm_bindgen]
pub fn decode_token(token: &str) -> String {
    decide::decode_token(token).to_string()
}
