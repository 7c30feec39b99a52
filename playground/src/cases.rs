//! `*.tests.json` run in the page exactly as `agent-iam test` runs them: each case's claims taken as verified,
//! its request canonicalised and decided by the policy, the decision compared with what the case expects.

use crate::document::{self, Problem, prefixed};
use agent_iam::policy::cases::{self, CaseFile};
use serde_json::{Value, json};

/// `run_tests()`.
pub fn run(text: &str, format: &str, tests: &str) -> Value {
    let loaded = match document::load(text, format) {
        Ok(loaded) => loaded,
        Err(p) => return Problem::new(prefixed("config", &p.path), p.message).answer(),
    };
    let file: CaseFile = match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(tests)) {
        Ok(file) => file,
        Err(e) => return Problem::new(prefixed("tests", &e.path().to_string()), e.into_inner().to_string()).answer(),
    };
    match cases::run(loaded.policy(), &file) {
        Err(e) => Problem::new(prefixed("tests", &e.path), e.message).answer(),
        Ok(results) => {
            let passed = results.iter().filter(|r| r.passed).count();
            let results: Vec<Value> =
                results.iter().map(|r| json!({"name": r.name, "passed": r.passed, "detail": r.detail})).collect();
            json!({"ok": true, "passed": passed, "failed": results.len() - passed, "results": results})
        }
    }
}
