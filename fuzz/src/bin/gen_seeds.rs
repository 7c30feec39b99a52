//! Writes the fixture key set, the genuine tokens and the seed corpora, deterministically:
//! `cargo run --release --manifest-path fuzz/Cargo.toml --bin gen_seeds` (plain build, no instrumentation).

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_fuzz::{AUD, ISS, NOW, POLICY};
use serde_json::{Value, json};
use std::fs;
use std::path::Path;

fn write(dir: &Path, name: &str, contents: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), contents).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let es = SigningKey::from_seed(Algorithm::ES256, [0x11; 32]).unwrap();
    let ed = SigningKey::from_seed(Algorithm::EdDSA, [0x22; 32]).unwrap();
    let rs = SigningKey::from_seed(Algorithm::RS256, [0x33; 32]).unwrap();
    let jwks = json!({"keys": [es.public_jwk(Some("es")), ed.public_jwk(Some("ed")), rs.public_jwk(Some("rs"))]});
    write(&root.join("seeds"), "jwks.json", format!("{jwks}\n").as_bytes());

    let claims = json!({"iss": ISS, "sub": "spiffe://trading.example/agent/trader", "aud": AUD,
                        "exp": NOW + 3600, "iat": NOW - 60});
    let mut delegated = claims.clone();
    delegated["sub"] = "user:alice".into();
    delegated["act"] = json!({"sub": "spiffe://trading.example/agent/orchestrator",
                              "act": {"sub": "spiffe://trading.example/agent/trader"}});
    delegated["aud"] = json!([AUD, "other"]);
    // Near misses too: expired, and a foreign issuer.
    let mut expired = claims.clone();
    expired["exp"] = (NOW - 3600).into();
    expired["iat"] = (NOW - 7200).into();
    let mut foreign = claims.clone();
    foreign["iss"] = "https://evil.example".into();
    let tokens = [
        ("es256.jwt", es.sign_jwt(Some("es"), &claims)),
        ("eddsa.jwt", ed.sign_jwt(Some("ed"), &claims)),
        ("rs256.jwt", rs.sign_jwt(Some("rs"), &claims)),
        ("es256_no_kid.jwt", es.sign_jwt(None, &claims)),
        ("eddsa_delegated.jwt", ed.sign_jwt(Some("ed"), &delegated)),
        ("es256_expired.jwt", es.sign_jwt(Some("es"), &expired)),
        ("es256_foreign_issuer.jwt", es.sign_jwt(Some("es"), &foreign)),
    ];
    // Every token these keys signed, so the target can tell a genuine token from a forgery.
    let list: String = tokens.iter().map(|(_, t)| format!("{t}\n")).collect();
    write(&root.join("seeds"), "tokens.txt", list.as_bytes());

    let corpus = root.join("corpus");
    for (name, t) in &tokens {
        write(&corpus.join("token_verify"), name, t.as_bytes());
    }

    let jwks_dir = corpus.join("jwks_load");
    write(&jwks_dir, "fixture.json", jwks.to_string().as_bytes());
    for (name, key) in [("ec.json", &es), ("okp.json", &ed), ("rsa.json", &rs)] {
        write(&jwks_dir, name, json!({"keys": [key.public_jwk(Some("k"))]}).to_string().as_bytes());
    }
    let p384 = SigningKey::from_seed(Algorithm::ES384, [0x44; 32]).unwrap();
    let mut enc = es.public_jwk(None);
    enc["use"] = "enc".into();
    write(&jwks_dir, "p384_enc.json", json!({"keys": [p384.public_jwk(Some("p")), enc]}).to_string().as_bytes());

    let config_dir = corpus.join("config_parse");
    write(&config_dir, "fixture.json", agent_iam_fuzz::config_json().as_bytes());
    let policy: Value = serde_json::from_str(POLICY).unwrap();
    let full = json!({
        "realm": "trading", "max_token_bytes": 4096, "crypto_backend": "pure-rust", "token_cache_size": 16,
        "issuers": [{"issuer": ISS, "audiences": [AUD, "b"], "algorithms": ["ES256", "ES384"],
                     "jwks": {"keys": [es.public_jwk(Some("es")), p384.public_jwk(Some("p"))]},
                     "clock_skew_seconds": 10, "max_lifetime_seconds": 7200, "max_delegation_depth": 2}],
        "policy": policy,
    });
    write(&config_dir, "full.json", full.to_string().as_bytes());

    let path_dir = corpus.join("canonical_path");
    for (i, p) in ["/orders/1?x=1", "//a/./b/../c/", "/%2e%2E/admin", "/a%20b/%3a/%7Euser", "/..", "/a/b/..?q#f"]
        .iter()
        .enumerate()
    {
        write(&path_dir, &format!("p{i}"), p.as_bytes());
    }
    // Continuous revocation: security event tokens and revocation lists the fixture keys signed.
    let event = |jti: &str, sub_id: Value, kind: &str, payload: Value| {
        json!({"iss": agent_iam_fuzz::TRANSMITTER, "aud": agent_iam_fuzz::RECEIVER, "iat": NOW - 10, "jti": jti,
               "sub_id": sub_id,
               "events": {(format!("https://schemas.openid.net/secevent/caep/event-type/{kind}")): payload}})
    };
    let set_header = |kid: &str, alg: &str| json!({"alg": alg, "typ": "secevent+jwt", "kid": kid});
    let list_header = json!({"alg": "ES256", "typ": "revocation-list+jwt", "kid": "es"});
    let statements = [
        ("set_session_revoked.jwt", es.sign_jwt_with_header(&set_header("es", "ES256"), &event("e1",
            json!({"format": "uri", "uri": "spiffe://trading.example/agent/trader"}), "session-revoked",
            json!({"event_timestamp": NOW - 20})))),
        ("set_complex.jwt", ed.sign_jwt_with_header(&set_header("ed", "EdDSA"), &event("e2",
            json!({"format": "complex", "user": {"format": "iss_sub", "iss": ISS, "sub": "user:alice"},
                   "application": {"format": "opaque", "id": "desk"}}), "credential-change",
            json!({"credential_type": "fido2-roaming", "change_type": "revoke"})))),
        ("set_claims_change.jwt", rs.sign_jwt_with_header(&set_header("rs", "RS256"), &event("e3",
            json!({"format": "jwt_id", "iss": ISS, "jti": "t-1"}), "token-claims-change",
            json!({"claims": {"role": "reader"}})))),
        ("list.jwt", es.sign_jwt_with_header(&list_header, &json!({"iss": agent_iam_fuzz::LIST_ISSUER,
            "iat": NOW - 5, "revocations": [{"agent": "spiffe://trading.example/agent/rogue"},
            {"jti": "t-2", "issuer": ISS}, {"issuer": ISS, "issued_before": NOW - 100, "expires": "2030-01-01T00:00:00Z"}]}))),
    ];
    let list: String = statements.iter().map(|(_, t)| format!("{t}\n")).collect();
    write(&root.join("seeds"), "statements.txt", list.as_bytes());
    let dir = corpus.join("revocation_inputs");
    for (name, t) in &statements {
        write(&dir, name, t.as_bytes());
    }
    let unsigned = json!({"iss": "local", "iat": NOW, "revocations": [{"subject": "user:bob", "client_id": "x"}]});
    write(&dir, "unsigned_list.json", unsigned.to_string().as_bytes());
    let state = json!({"version": 3, "entries": [{"selector": {"agent": "spiffe://a.example/x", "issued_before": NOW,
        "expires": NOW + 60}, "source": "ssf:e1"}], "seen": [{"jti": "e1", "until": NOW + 100}],
        "list": {"issued_at": NOW, "fetched_at": NOW, "selectors": [{"jti": "j"}]},
        "poll": {"last_success": NOW, "ack": ["e1"], "errors": [{"jti": "e9", "err": "invalid_key", "description": "x"}]}});
    write(&dir, "state.json", state.to_string().as_bytes());
    println!("seeds written under {}", root.display());
}
