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
    println!("seeds written under {}", root.display());
}
