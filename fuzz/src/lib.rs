//! Shared fixture of the fuzz targets: one trusted issuer with an ES256, an EdDSA and an RS256 key, the
//! tokens those keys genuinely signed, and a fixed clock.
//!
//! The key set and tokens are checked in (`seeds/`), written by `cargo run --release --bin gen_seeds` from
//! fixed seeds, so a target starts instantly (no RSA key generation) and its corpus stays valid.

use agent_iam::engine::{Engine, Headers};
use agent_iam::token::Verifier;

/// The fuzzers' clock: the seed tokens are valid at this instant (they expire an hour later).
pub const NOW: i64 = 1_800_000_000;
/// The trusted issuer.
pub const ISS: &str = "https://issuer.example";
/// The accepted audience.
pub const AUD: &str = "trading-api";

/// The issuer's public keys (kids `es`, `ed`, `rs`).
pub const JWKS: &str = include_str!("../seeds/jwks.json");
/// Tokens genuinely signed by those keys, one a line. No other token may ever verify.
pub const TOKENS: &str = include_str!("../seeds/tokens.txt");
/// The policy of the fixture configuration.
pub const POLICY: &str = r#"{"rules": [
  {"id": "trader-places-orders", "effect": "allow", "agents": ["spiffe://trading.example/agent/trader"],
   "methods": ["POST"], "paths": ["/orders/**"]},
  {"id": "agents-read-quotes", "effect": "allow", "agents": ["spiffe://trading.example/*"], "methods": ["GET"],
   "paths": ["/quotes/**"]},
  {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}
]}"#;

/// The fixture configuration document.
pub fn config_json() -> String {
    format!(
        r#"{{"issuers": [{{"issuer": "{ISS}", "audiences": ["{AUD}"], "algorithms": ["ES256", "EdDSA", "RS256"], "jwks": {JWKS}}}], "policy": {POLICY}}}"#
    )
}

/// The fixture engine (and so verifier), built once per thread (an engine holds a per-worker cache, so it is
/// not `Sync`; libFuzzer runs the target on one thread).
pub fn engine() -> &'static Engine {
    thread_local! {
        static ENGINE: &'static Engine = Box::leak(Box::new(match agent_iam::config::parse(config_json().as_bytes()) {
            Ok(engine) => engine,
            Err(e) => panic!("the fuzz fixture configuration is refused: {e}"),
        }));
    }
    ENGINE.with(|e| *e)
}

/// The fixture verifier.
pub fn verifier() -> &'static Verifier {
    engine().verifier()
}

/// Whether `token` is one of the genuinely signed tokens.
pub fn is_genuine(token: &[u8]) -> bool {
    TOKENS.lines().any(|t| t.as_bytes() == token)
}

/// The first genuine token (ES256, the trader agent).
pub fn a_genuine_token() -> &'static str {
    TOKENS.lines().next().unwrap_or_default()
}

/// A request carrying `token`, for `Engine::decide`.
pub fn request(method: &str, path: &str, token: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(token);
    vec![
        (":method".into(), method.as_bytes().to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        (":authority".into(), b"api.example".to_vec()),
        ("authorization".into(), bearer),
    ]
}

/// Asserts the canonical-path invariants for `raw` (used by the `canonical_path` target).
pub fn check_canonical_path(raw: &str) {
    let Ok((path, query)) = agent_iam::request::canonical_path(raw) else { return };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(!path.contains("//"), "{raw:?} -> {path:?}");
    assert!(!path.contains('?') && !path.contains('#'), "{raw:?} -> {path:?}");
    assert!(path.split('/').all(|s| s != "." && s != ".."), "{raw:?} -> {path:?}");
    if let Some(q) = query {
        assert!(raw.ends_with(q), "{raw:?} -> query {q:?}");
    }
    assert_eq!(agent_iam::request::canonical_path(&path), Ok((path.clone(), None)), "{raw:?} is not a fixed point");
}

/// Keeps `Headers` in the public signature checked (it is a slice type alias).
pub fn as_headers(h: &[(String, Vec<u8>)]) -> &Headers {
    h
}
