//! Arbitrary bytes as the inputs of continuous revocation: a security event token (verified, read as an SSF
//! event, mapped to revocations), a revocation list (signed; unsigned where allowed), and the shared state
//! another worker wrote. Nothing panics, and only a genuinely signed event or list is ever accepted.
#![no_main]

use agent_iam::revocation::ssf::{self, IssSubAs, Mapping, SecurityEvent};
use agent_iam::revocation::state::SharedState;
use agent_iam::revocation::{Kind, Scope, list};
use agent_iam::token::PureRust;
use agent_iam_fuzz::{NOW, is_genuine_statement, statement_verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let events = statement_verifier("secevent+jwt");
    if let Ok(statement) = events.verify(data, NOW, &PureRust) {
        assert!(
            is_genuine_statement(data),
            "an event that was never signed verified: {:?}",
            String::from_utf8_lossy(data)
        );
        if let Ok(event) = SecurityEvent::from_statement(statement) {
            let mapping = Mapping {
                iss_sub: IssSubAs::Both,
                opaque: Some(Kind::Agent),
                scope: Scope::Chain,
                lifetime: 3600,
                clock_skew: 60,
            };
            let _ = ssf::revocations(&event, &mapping, NOW);
        }
    }
    let lists = statement_verifier("revocation-list+jwt");
    if list::parse(data, Some(&lists), false, NOW, &PureRust).is_ok() {
        assert!(
            is_genuine_statement(data),
            "a list that was never signed was accepted: {:?}",
            String::from_utf8_lossy(data)
        );
    }
    let _ = list::parse(data, None, true, NOW, &PureRust);
    if let Ok(state) = SharedState::decode(data) {
        // What was read back is what would be written again.
        assert_eq!(SharedState::decode(&state.encode()).ok(), Some(state));
    }
});
