//! The playground's API natively: the same functions the page calls, on the repository's examples and on
//! hand-made documents, tokens and requests.

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_playground::{decide, decode_token, examples, run_tests, validate};
use serde_json::{Value, json};

fn parsed(text: String) -> Value {
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_example_validates_and_passes_its_own_tests() {
    let all = parsed(examples());
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["trading", "hospital", "logistics", "delegation", "mcp", "demo"]);
    for e in all.as_array().unwrap() {
        let policy = e["policy"].as_str().unwrap();
        let v = parsed(validate(policy, "auto"));
        assert_eq!(v["ok"], true, "{}: {v}", e["name"]);
        assert_eq!(v["kind"], "policy");
        let t = parsed(run_tests(policy, "json", e["tests"].as_str().unwrap()));
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["failed"], 0, "{}: {t}", e["name"]);
        assert!(t["passed"].as_u64().unwrap() > 0);
        // The first case, decided in claims mode, is what the case expects.
        let input = json!({"config": policy, "mode": "claims", "claims": e["claims"], "request": e["request"]});
        let d = parsed(decide(&input.to_string()));
        assert_eq!(d["ok"], true, "{d}");
        let cases: Value = serde_json::from_str(e["tests"].as_str().unwrap()).unwrap();
        let expect = &cases["cases"][0]["expect"];
        assert_eq!(d["decision"], expect["decision"], "{}: {d}", e["name"]);
        if let Some(rule) = expect.get("rule") {
            assert_eq!(&d["rule"], rule);
        }
        assert!(d["explanation"]["candidates"].is_array());
    }
}

#[test]
fn a_request_refused_before_policy_is_named_as_the_gateway_names_it() {
    let input = json!({"config": "{\"rules\": []}", "mode": "claims", "claims": {"sub": "a"},
                       "request": {"method": "GET", "path": "/quotes/..%2Fadmin", "time": 0}});
    let d = parsed(decide(&input.to_string()));
    assert_eq!((d["decision"].clone(), d["status"].clone()), (json!("invalid_request"), json!(400)), "{d}");
    assert_eq!(d["reason"], "ambiguous_path", "the label agent_iam.<reason> the gateway answers with: {d}");
    assert!(d["explanation"]["detail"].as_str().unwrap().contains("ambiguous"), "{d}");
}

#[test]
fn errors_are_given_with_their_path_in_json_and_yaml() {
    let bad = r#"{"rules": [{"id": "r", "effect": "perhaps", "agents": ["*"]}]}"#;
    let v = parsed(validate(bad, "json"));
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["path"], "rules[0].effect", "{v}");
    let config = "issuers:\n  - issuer: https://idp.example\n    audiences: [api]\n    algorithms: [ES256]\npolicy:\n  rules: []\n";
    let v = parsed(validate(config, "yaml"));
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["path"], "issuers[0].jwks", "{v}");
    let dup = r#"{"rules": [], "rules": []}"#;
    assert!(parsed(validate(dup, "json"))["errors"][0]["message"].as_str().unwrap().contains("duplicate"));
    // Through decide, the path names where in the input.
    let input = json!({"config": bad, "mode": "claims", "claims": {"sub": "a"},
                       "request": {"method": "GET", "path": "/", "time": 0}});
    assert_eq!(parsed(decide(&input.to_string()))["errors"][0]["path"], "config.rules[0].effect");
    let input = json!({"config": "{\"rules\": []}", "mode": "claims", "claims": {"sub": "a"},
                       "request": {"method": "GET", "path": "/"}});
    assert_eq!(parsed(decide(&input.to_string()))["errors"][0]["path"], "request.time");
}

fn configuration(key: &SigningKey) -> String {
    json!({
        "realm": "playground",
        "issuers": [{"issuer": "https://idp.example", "audiences": ["api"], "algorithms": ["ES256"],
                     "jwks": {"keys": [key.public_jwk(Some("k1"))]}}],
        "policy": {"rules": [
            {"id": "read", "effect": "allow", "agents": ["spiffe://example/agent/a"], "methods": ["GET"], "paths": ["/items/**"]}
        ]}
    })
    .to_string()
}

#[test]
fn token_mode_verifies_the_token_and_gives_the_gateways_answer() {
    let key = SigningKey::from_seed(Algorithm::ES256, [4; 32]).unwrap();
    let config = configuration(&key);
    let token = key.sign_jwt(
        Some("k1"),
        &json!({"iss": "https://idp.example", "sub": "spiffe://example/agent/a", "aud": "api", "exp": 2_000_000_000}),
    );
    let request = |path: &str| json!({"method": "GET", "path": path, "host": "api.example", "time": 1_900_000_000});
    let input = json!({"config": config, "mode": "token", "token": token, "request": request("/items/./7")});
    let d = parsed(decide(&input.to_string()));
    assert_eq!(
        (d["decision"].clone(), d["status"].clone(), d["rule"].clone()),
        (json!("allow"), json!(200), json!("read")),
        "{d}"
    );
    assert_eq!(d["forwarded"]["path"], "/items/7");
    assert!(d["forwarded"]["set"].as_array().unwrap().iter().any(|h| h[0] == "x-agent-iam-agent"));
    assert_eq!(d["token"]["claims"]["sub"], "spiffe://example/agent/a");
    assert_eq!(d["explanation"]["decision"], "allow");
    // Policy refuses: the gateway's 403 with its body and challenge.
    let input = json!({"config": config, "mode": "token", "token": token, "request": request("/admin")});
    let d = parsed(decide(&input.to_string()));
    assert_eq!((d["decision"].clone(), d["status"].clone()), (json!("deny"), json!(403)), "{d}");
    assert!(d["response"]["body"].as_str().unwrap().contains("no rule allows"));
    // A forged token: 401 invalid_token.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let input = json!({"config": config, "mode": "token", "token": forged, "request": request("/items/7")});
    let d = parsed(decide(&input.to_string()));
    assert_eq!((d["status"].clone(), d["reason"].clone()), (json!(401), json!("bad_signature")), "{d}");
    let challenge = d["response"]["headers"].as_array().unwrap().iter().find(|h| h[0] == "www-authenticate").unwrap();
    assert!(challenge[1].as_str().unwrap().contains("invalid_token"));
    // Expired at the request's time.
    let input = json!({"config": config, "mode": "token", "token": token,
                       "request": {"method": "GET", "path": "/items/7", "time": "2040-01-01T00:00:00Z"}});
    assert_eq!(parsed(decide(&input.to_string()))["reason"], "expired");
    // A policy alone has no keys to verify with.
    let input = json!({"config": "{\"rules\": []}", "mode": "token", "token": token, "request": request("/")});
    assert_eq!(parsed(decide(&input.to_string()))["errors"][0]["path"], "config");
}

#[test]
fn documents_convert_between_json_and_yaml_exactly() {
    use agent_iam_playground::convert;
    for e in parsed(examples()).as_array().unwrap() {
        let policy = e["policy"].as_str().unwrap();
        let yaml = parsed(convert(policy, "yaml"));
        assert_eq!(yaml["ok"], true, "{yaml}");
        let back = parsed(convert(yaml["text"].as_str().unwrap(), "json"));
        let original: Value = serde_json::from_str(policy).unwrap();
        assert_eq!(serde_json::from_str::<Value>(back["text"].as_str().unwrap()).unwrap(), original, "{}", e["name"]);
    }
    // A JWK's `y` survives (YAML 1.1 would read a plain y as a boolean; YAML 1.2 and this converter do not).
    let yaml = parsed(convert(r#"{"jwk": {"y": "abc", "n": "y"}}"#, "yaml"));
    let back = parsed(convert(yaml["text"].as_str().unwrap(), "json"));
    assert_eq!(
        serde_json::from_str::<Value>(back["text"].as_str().unwrap()).unwrap(),
        json!({"jwk": {"y": "abc", "n": "y"}})
    );
    assert_eq!(parsed(convert("{\"a\": 1, \"a\": 2}", "yaml"))["ok"], false);
}

#[test]
fn a_token_is_decoded_for_display_without_being_verified() {
    let key = SigningKey::from_seed(Algorithm::ES256, [4; 32]).unwrap();
    let token = key.sign_jwt(Some("k1"), &json!({"sub": "a"}));
    let d = parsed(decode_token(&format!("Bearer {token}")));
    assert_eq!(d["header"]["kid"], "k1");
    assert_eq!(d["claims"]["sub"], "a");
    assert_eq!(d["error"], Value::Null);
    assert_eq!(parsed(decode_token("nonsense"))["error"], "not three segments");
}
