//! DPoP (RFC 9449) through the real `.wasm` in the wasmtime host, as Envoy runs it: one hostile proof per
//! failing check, each answered with its status, the exact `WWW-Authenticate` challenges (the error on the
//! scheme the request used, `algs` on the `DPoP` one) and its reason (Envoy's response-code details and the
//! `agent_iam.denied.*` metric); schemes against issuer modes; a replay refused on a second VM sharing the
//! host's shared data (a second Envoy worker); nonces asked for, retried and accepted on the other VM (the
//! secret shared through shared data); delegation bound to the current actor's key; the MCP metadata; the
//! proof forwarded or removed with the credential; configuration errors with their paths.
//!
//! Build the plugin first: `cargo build -p agent-iam --target wasm32-wasip1 --release` (or `make wasm`).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::b64;
use agent_iam::mint::{ProofClaims, SigningKey, ath, proof_payload};
use agent_iam::token::Algorithm;
use agent_iam_host::{Host, LogLevel, Outcome, RequestBuilder, Vm};
use agent_iam_tests::HOST;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// The VM clock at start: token and proof times are relative to it.
const NOW: u64 = 1_900_000_000;
const REALM: &str = "orders-api";
/// The gateway's external origin, as configured (`dpop.origin`).
const ORIGIN: &str = "https://api.example.com";
/// What Envoy sees in `:authority`: not the external origin, which proofs name.
const AUTHORITY: &str = "gateway.internal:8080";
/// The proofs' usual target.
const PATH: &str = "/orders/1";
const REQUEST_ID: &str = "req-dpop-1";
/// `dpop.algorithms`, as the challenges name them.
const ALGS: &str = "ES256 EdDSA";

/// `dpop: allowed`.
const ALLOWED: &str = "https://idp.example";
/// `dpop: required`.
const REQUIRED: &str = "https://bound.idp.example";
/// `dpop` left out (off).
const LEGACY: &str = "https://legacy.idp.example";
const AUDIENCE: &str = "orders";

const AGENT: &str = "spiffe://example.org/agent/trader";
const EARLIER_AGENT: &str = "spiffe://example.org/agent/planner";
const ALICE: &str = "user:alice@example.org";

/// The issuers' token key (every issuer has it, as kid `k`).
static ISSUER_KEY: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::ES256, 1));
/// The agent's DPoP key.
static HOLDER: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::ES256, 21));
/// Another agent's DPoP key, an EdDSA one.
static HOLDER_ED: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::EdDSA, 22));
/// A key that holds no token: a thief with a copied token.
static THIEF: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::ES256, 23));
/// The key of an earlier actor of a delegation chain.
static EARLIER: LazyLock<SigningKey> = LazyLock::new(|| key(Algorithm::ES256, 24));

fn key(alg: Algorithm, seed: u8) -> SigningKey {
    SigningKey::from_seed(alg, [seed; 32]).expect("valid seed")
}

fn issuer(iss: &str, dpop: Option<&str>) -> Value {
    let mut doc = json!({"issuer": iss, "audiences": [AUDIENCE], "algorithms": ["ES256"],
                         "jwks": {"keys": [ISSUER_KEY.public_jwk(Some("k"))]}});
    if let Some(mode) = dpop {
        doc["dpop"] = json!(mode);
    }
    doc
}

/// Three issuers (DPoP allowed, required, off), proofs at [`ORIGIN`] signed with ES256 or EdDSA, within 60 s
/// and 5 s of skew; the agent may read and write orders, nobody reaches `/admin`.
fn config() -> Value {
    json!({
        "realm": REALM,
        "issuers": [issuer(ALLOWED, Some("allowed")), issuer(REQUIRED, Some("required")), issuer(LEGACY, None)],
        "dpop": {"origin": ORIGIN, "algorithms": ["ES256", "EdDSA"], "max_age_seconds": 60, "clock_skew_seconds": 5},
        "policy": {"rules": [
            {"id": "orders", "effect": "allow", "agents": [AGENT], "methods": ["GET", "POST"], "paths": ["/orders/**"]},
            {"id": "no-admin", "effect": "deny", "agents": ["*"], "paths": ["/admin/**"]}
        ]}
    })
}

/// A VM (an Envoy worker) of [`HOST`]: VMs of one host share its shared data, so the replay cache.
fn start(config: &Value) -> Vm {
    start_on(&HOST, config)
}

fn start_on(host: &Host, config: &Value) -> Vm {
    let vm = host
        .vm()
        .plugin_config(config.to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .unwrap_or_else(|e| panic!("the plugin did not start: {e:#}"));
    vm.assert_healthy();
    vm
}

/// The RFC 7638 thumbprint of a key, computed here from its public members (not with the plugin's code).
fn thumbprint(key: &SigningKey) -> String {
    let jwk = key.public_jwk(None);
    let m = |name: &str| jwk[name].as_str().unwrap().to_owned();
    let canonical = match m("kty").as_str() {
        "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, m("crv"), m("x"), m("y")),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv"), m("x")),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e"), m("n")),
        other => panic!("no thumbprint for {other}"),
    };
    b64::encode(&Sha256::digest(canonical.as_bytes()))
}

/// A token of `iss` for [`AGENT`], with `extra` claims.
fn token(iss: &str, extra: Value) -> String {
    let mut claims = json!({"iss": iss, "aud": AUDIENCE, "sub": AGENT, "iat": NOW - 10, "exp": NOW + 3600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    ISSUER_KEY.sign_jwt(Some("k"), &claims)
}

/// A token of `iss` bound to `holder`'s key (`cnf.jkt`).
fn bound(iss: &str, holder: &SigningKey) -> String {
    token(iss, json!({"cnf": {"jkt": thumbprint(holder)}}))
}

/// A `jti` no other proof of this process has.
fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("jti-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The proof's JOSE header as a client library writes it.
fn header_of(key: &SigningKey) -> Value {
    let mut jwk = key.public_jwk(None);
    let obj = jwk.as_object_mut().unwrap();
    obj.remove("alg");
    obj.remove("use");
    json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": jwk})
}

/// The payload of a good proof for `GET` [`PATH`] with `token`, issued at `iat`.
fn payload_at(token: &str, iat: u64) -> Value {
    proof_payload(&ProofClaims {
        jti: &jti(),
        htm: "GET",
        htu: &format!("{ORIGIN}{PATH}"),
        iat: iat as i64,
        token: Some(token),
        nonce: None,
    })
}

fn payload(token: &str) -> Value {
    payload_at(token, NOW)
}

/// A proof by `key` for `method` `htu`, at `iat`, with `token`'s hash and `nonce`.
fn proof_for(key: &SigningKey, token: &str, method: &str, htu: &str, iat: u64, nonce: Option<&str>) -> String {
    key.dpop_proof(&ProofClaims { jti: &jti(), htm: method, htu, iat: iat as i64, token: Some(token), nonce })
}

/// A good proof by `key` for `GET` [`PATH`] now.
fn proof(key: &SigningKey, token: &str) -> String {
    proof_for(key, token, "GET", &format!("{ORIGIN}{PATH}"), NOW, None)
}

/// A compact JWS of exactly these header and payload texts, signed by `signer`.
fn signed_raw(signer: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
    format!("{input}.{}", b64::encode(&signer.sign(input.as_bytes())))
}

/// `method path` with `Authorization: <authorization>` and these `DPoP` headers.
fn request<'a>(vm: &'a mut Vm, method: &str, path: &str, authorization: &str, proofs: &[&str]) -> RequestBuilder<'a> {
    let mut r = vm
        .request()
        .method(method)
        .path(path)
        .authority(AUTHORITY)
        .header("x-request-id", REQUEST_ID)
        .header("authorization", authorization);
    for p in proofs {
        r = r.header("dpop", p);
    }
    r
}

/// `GET` [`PATH`] with `Authorization: DPoP <token>` and these proofs.
fn send_dpop(vm: &mut Vm, token: &str, proofs: &[&str]) -> Outcome {
    request(vm, "GET", PATH, &format!("DPoP {token}"), proofs).send()
}

/// `GET` [`PATH`] with `Authorization: Bearer <token>` and these proofs.
fn send_bearer(vm: &mut Vm, token: &str, proofs: &[&str]) -> Outcome {
    request(vm, "GET", PATH, &format!("Bearer {token}"), proofs).send()
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// `Bearer realm="..."`, with the error attributes when given.
fn bearer(error: Option<(&str, &str)>) -> String {
    match error {
        Some((code, description)) => {
            format!(r#"Bearer realm="{REALM}", error="{code}", error_description="{}""#, description.replace('"', "'"))
        }
        None => format!(r#"Bearer realm="{REALM}""#),
    }
}

/// `DPoP algs="..."` as RFC 9449 §7.1 writes it, the error attributes first when given.
fn dpop(error: Option<(&str, &str)>) -> String {
    match error {
        Some((code, description)) => {
            format!(r#"DPoP error="{code}", error_description="{}", algs="{ALGS}""#, description.replace('"', "'"))
        }
        None => format!(r#"DPoP algs="{ALGS}""#),
    }
}

/// Envoy's response-code details of a local reply.
fn details(o: &Outcome) -> &str {
    match o {
        Outcome::LocalResponse { details, .. } => details,
        _ => "",
    }
}

/// The request was forwarded as the agent's, under rule `orders`.
#[track_caller]
fn assert_allowed(o: &Outcome, vm: &Vm) {
    assert!(o.is_allowed(), "expected the request to be forwarded, got {o:#?}\n{}", vm.logs_text());
    assert_eq!(o.header_all("x-agent-iam-agent"), [AGENT], "{o:#?}");
    assert_eq!(o.header_all("x-agent-iam-rule"), ["orders"], "{o:#?}");
}

/// A local reply with `status`, reason `reason` (details `agent_iam.<reason>`), body `{error, error_description,
/// request_id}`, and exactly these `WWW-Authenticate` headers, in order.
#[track_caller]
fn assert_refused(o: &Outcome, status: u16, reason: &str, error: &str, description: &str, challenges: &[String]) {
    assert_eq!(o.status(), Some(status), "status of {o:#?}");
    assert_eq!(details(o), format!("agent_iam.{reason}"), "reason of {o:#?}");
    let body = o.body_json();
    assert_eq!(body["error"], error, "body {body}");
    assert_eq!(body["error_description"], description, "body {body}");
    assert_eq!(body["request_id"], REQUEST_ID, "body {body}");
    assert_eq!(o.header_all("www-authenticate"), challenges, "challenges of {o:#?}");
    if !challenges.is_empty() && challenges.iter().any(|c| c.starts_with("DPoP")) {
        assert_eq!(o.header("access-control-expose-headers"), Some("WWW-Authenticate, DPoP-Nonce"));
    }
}

/// A DPoP presentation refused under [`config`] (bearer tokens taken too): 401, the error on the `DPoP`
/// challenge, which comes first, a plain `Bearer` one after it, no nonce.
#[track_caller]
fn assert_dpop_refused(o: &Outcome, reason: &str, error: &str, description: &str) {
    assert_refused(o, 401, reason, error, description, &[dpop(Some((error, description))), bearer(None)]);
    assert_eq!(o.header("dpop-nonce"), None);
}

/// A Bearer presentation refused under [`config`]: the error on the `Bearer` challenge, a plain `DPoP` one.
#[track_caller]
fn assert_bearer_refused(o: &Outcome, reason: &str, error: &str, description: &str) {
    assert_refused(o, 401, reason, error, description, &[bearer(Some((error, description))), dpop(None)]);
}

fn last_error_log(vm: &Vm) -> String {
    vm.logs().iter().rev().find(|l| l.level == LogLevel::Error).map(|l| l.message.clone()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Accepted presentations
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bound_token_with_a_fresh_proof_is_forwarded_with_the_proof() {
    let mut vm = start(&config());
    for iss in [ALLOWED, REQUIRED] {
        let token = bound(iss, &HOLDER);
        let p = proof(&HOLDER, &token);
        let o = send_dpop(&mut vm, &token, &[&p]);
        assert_allowed(&o, &vm);
        // forward.credential defaults to true: the proof travels with the token.
        assert_eq!(o.header_all("authorization"), [format!("DPoP {token}")]);
        assert_eq!(o.header_all("dpop"), [p.as_str()]);
        assert_eq!(o.header("x-agent-iam-issuer"), Some(iss));
    }
    // An EdDSA key; the scheme name in any case (RFC 9110 §11.1); the token from the cache the second time.
    let token = bound(ALLOWED, &HOLDER_ED);
    for scheme in ["DPoP", "dpop", "DPOP"] {
        let p = proof(&HOLDER_ED, &token);
        let o = request(&mut vm, "GET", PATH, &format!("{scheme} {token}"), &[&p]).send();
        assert_allowed(&o, &vm);
    }
    assert_eq!(HOLDER.jkt().as_deref(), Some(thumbprint(&HOLDER).as_str()), "mint agrees with RFC 7638");
    vm.assert_healthy();
}

#[test]
fn htu_is_compared_normalised_without_query_or_fragment() {
    let mut vm = start(&config());
    let token = bound(ALLOWED, &HOLDER);
    for (path, htu) in [
        // Query and fragment are not part of htu (RFC 9449 §4.2), on either side.
        (PATH, format!("{ORIGIN}{PATH}?page=2")),
        (PATH, format!("{ORIGIN}{PATH}#top")),
        ("/orders/1?page=2&x=%20", format!("{ORIGIN}{PATH}")),
        ("/orders/1?page=2", format!("{ORIGIN}{PATH}?other=1")),
        // RFC 3986 §6.2.2 and §6.2.3: scheme and host case, the default port, unreserved characters encoded.
        (PATH, format!("HTTPS://API.Example.COM{PATH}")),
        (PATH, format!("https://api.example.com:443{PATH}")),
        (PATH, format!("{ORIGIN}/orders/%31")),
        (PATH, format!("{ORIGIN}/orders/./1")),
        (PATH, format!("{ORIGIN}/x/../orders/1")),
        ("/orders/%7euser", format!("{ORIGIN}/orders/~user")),
        ("/orders/~user", format!("{ORIGIN}/orders/%7Euser")),
    ] {
        let p = proof_for(&HOLDER, &token, "GET", &htu, NOW, None);
        let o = request(&mut vm, "GET", path, &format!("DPoP {token}"), &[&p]).send();
        assert!(o.is_allowed(), "{path} with htu {htu}: {o:#?}\n{}", vm.logs_text());
    }
    // POST: htm is the method as sent.
    let p = proof_for(&HOLDER, &token, "POST", &format!("{ORIGIN}/orders"), NOW, None);
    assert_allowed(&request(&mut vm, "POST", "/orders", &format!("DPoP {token}"), &[&p]).send(), &vm);
    vm.assert_healthy();
}

#[test]
fn jwk_members_a_client_library_may_add_are_accepted() {
    let mut vm = start(&config());
    let t = bound(ALLOWED, &HOLDER);
    for extra in [
        json!({"kid": "agent-key-1"}),
        json!({"alg": "ES256", "use": "sig"}),
        json!({"key_ops": ["verify"]}),
        json!({"ext": true}),
    ] {
        let mut header = header_of(&HOLDER);
        for (k, v) in extra.as_object().unwrap() {
            header["jwk"][k] = v.clone();
        }
        let o = send_dpop(&mut vm, &t, &[&HOLDER.sign_jwt_with_header(&header, &payload(&t))]);
        assert!(o.is_allowed(), "jwk with {extra}: {o:#?}");
    }
    // The thumbprint is of the key's required members only, so these proofs bind as the bare key does; but a
    // jwk whose own alg contradicts the header's is not a key for the proof.
    let mut header = header_of(&HOLDER);
    header["jwk"]["alg"] = json!("ES384");
    let o = send_dpop(&mut vm, &t, &[&HOLDER.sign_jwt_with_header(&header, &payload(&t))]);
    assert_dpop_refused(
        &o,
        "dpop_bad_key",
        "invalid_dpop_proof",
        "DPoP proof jwk is not a valid public key for its algorithm",
    );
    vm.assert_healthy();
}

#[test]
fn iat_is_accepted_exactly_within_max_age_and_skew() {
    let mut vm = start(&config());
    let token = bound(ALLOWED, &HOLDER);
    for iat in [NOW - 60, NOW + 5, NOW] {
        let p = proof_for(&HOLDER, &token, "GET", &format!("{ORIGIN}{PATH}"), iat, None);
        assert_allowed(&send_dpop(&mut vm, &token, &[&p]), &vm);
    }
    // A fractional NumericDate is read as its seconds.
    let mut claims = payload(&token);
    claims["iat"] = json!(NOW as f64 + 0.5);
    let p = HOLDER.sign_jwt_with_header(&header_of(&HOLDER), &claims);
    assert_allowed(&send_dpop(&mut vm, &token, &[&p]), &vm);
}

#[test]
fn a_token_without_cnf_is_a_bearer_token_where_bearer_is_taken() {
    let mut vm = start(&config());
    for iss in [ALLOWED, LEGACY] {
        let o = send_bearer(&mut vm, &token(iss, json!({})), &[]);
        assert_allowed(&o, &vm);
    }
    // A DPoP header beside a bearer token is not a credential: ignored, and forwarded as it came.
    let t = token(ALLOWED, json!({}));
    let o = send_bearer(&mut vm, &t, &["not-a-proof"]);
    assert_allowed(&o, &vm);
    assert_eq!(o.header_all("dpop"), ["not-a-proof"]);
    // A token bound otherwise (mTLS, RFC 8705) has no jkt: no DPoP binding.
    let mtls = token(ALLOWED, json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}));
    assert_allowed(&send_bearer(&mut vm, &mtls, &[]), &vm);
}

// ---------------------------------------------------------------------------------------------
// Hostile proofs: one per failing check
// ---------------------------------------------------------------------------------------------

/// One hostile proof: what it tries, the proof, and the refusal (reason, RFC 9449 error, description).
struct Hostile {
    what: &'static str,
    proof: String,
    reason: &'static str,
    error: &'static str,
    description: String,
}

fn hostile(what: &'static str, proof: String, reason: &'static str, description: &str) -> Hostile {
    Hostile { what, proof, reason, error: "invalid_dpop_proof", description: description.to_owned() }
}

/// A proof by [`HOLDER`] with the header changed by `header`.
fn with_header(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut header = header_of(&HOLDER);
    change(&mut header);
    HOLDER.sign_jwt_with_header(&header, &payload(token))
}

/// A proof by [`HOLDER`] with the payload changed by `change`.
fn with_claims(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = payload(token);
    change(&mut claims);
    HOLDER.sign_jwt_with_header(&header_of(&HOLDER), &claims)
}

fn hostile_proofs(token: &str) -> Vec<Hostile> {
    let other_token = bound(ALLOWED, &THIEF);
    let htu = |uri: &str| {
        let uri = uri.to_owned();
        with_claims(token, move |c| c["htu"] = json!(uri))
    };
    let private_d = b64::encode(&[21u8; 32]);
    let hmac = SigningKey::hmac(Algorithm::HS256, &[9; 32]).unwrap();
    let es384 = key(Algorithm::ES384, 25);
    let wrong_typ = "DPoP proof typ must be dpop+jwt";
    let bad_alg = "DPoP proof algorithm not allowed";
    let bad_key = "DPoP proof jwk is not a valid public key for its algorithm";
    let bad_signature = "DPoP proof signature verification failed";
    let wrong_htu = "DPoP proof htu does not match the request URI";
    let mut all = vec![
        // The header.
        hostile("typ JWT", with_header(token, |h| h["typ"] = json!("JWT")), "dpop_wrong_typ", wrong_typ),
        hostile(
            "no typ",
            with_header(token, |h| _ = h.as_object_mut().unwrap().remove("typ")),
            "dpop_wrong_typ",
            wrong_typ,
        ),
        hostile("typ in upper case", with_header(token, |h| h["typ"] = json!("DPOP+JWT")), "dpop_wrong_typ", wrong_typ),
        hostile("alg none, signed", with_header(token, |h| h["alg"] = json!("none")), "dpop_alg_not_allowed", bad_alg),
        hostile(
            "alg none, unsigned",
            {
                let p = with_header(token, |h| h["alg"] = json!("none"));
                format!("{}.", p.rsplit_once('.').unwrap().0)
            },
            "dpop_malformed",
            "malformed DPoP proof: empty segment",
        ),
        hostile(
            "HS256 with an oct key",
            hmac.sign_jwt_with_header(
                &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64::encode(&[9; 32])}}),
                &payload(token),
            ),
            "dpop_alg_not_allowed",
            bad_alg,
        ),
        hostile(
            "HS256 with the holder's public key as the secret's name",
            with_header(token, |h| h["alg"] = json!("HS256")),
            "dpop_alg_not_allowed",
            bad_alg,
        ),
        hostile(
            "ES384: asymmetric but not configured",
            es384.sign_jwt_with_header(&header_of(&es384), &payload(token)),
            "dpop_alg_not_allowed",
            bad_alg,
        ),
        hostile("an unknown alg", with_header(token, |h| h["alg"] = json!("ES256K")), "dpop_alg_not_allowed", bad_alg),
        hostile(
            "private key in jwk",
            with_header(token, |h| h["jwk"]["d"] = json!(private_d)),
            "dpop_private_key",
            "DPoP proof jwk contains private key material",
        ),
        hostile(
            "key/alg mismatch: EdDSA over a P-256 key",
            HOLDER_ED.sign_jwt_with_header(
                &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": header_of(&HOLDER)["jwk"]}),
                &payload(token),
            ),
            "dpop_bad_key",
            bad_key,
        ),
        hostile(
            "key/alg mismatch: ES256 over an Ed25519 key",
            with_header(token, |h| h["jwk"] = header_of(&HOLDER_ED)["jwk"].clone()),
            "dpop_bad_key",
            bad_key,
        ),
        hostile(
            "no jwk",
            with_header(token, |h| _ = h.as_object_mut().unwrap().remove("jwk")),
            "dpop_bad_key",
            bad_key,
        ),
        hostile(
            "a point off the curve",
            with_header(token, |h| {
                let y = h["jwk"]["y"].as_str().unwrap();
                let mut bytes = b64::decode(y.as_bytes()).unwrap();
                bytes[31] ^= 1;
                h["jwk"]["y"] = json!(b64::encode(&bytes));
            }),
            "dpop_bad_key",
            bad_key,
        ),
        hostile("jwk for encryption", with_header(token, |h| h["jwk"]["use"] = json!("enc")), "dpop_bad_key", bad_key),
        hostile(
            "a key named by jku",
            with_header(token, |h| h["jku"] = json!("https://evil.example/jwks")),
            "dpop_forbidden_header",
            "DPoP proof header member \"jku\" is not accepted",
        ),
        hostile(
            "a certificate chain",
            with_header(token, |h| h["x5c"] = json!(["MIIB"])),
            "dpop_forbidden_header",
            "DPoP proof header member \"x5c\" is not accepted",
        ),
        hostile(
            "crit",
            with_header(token, |h| h["crit"] = json!(["exp"])),
            "dpop_forbidden_header",
            "DPoP proof header member \"crit\" is not accepted",
        ),
        // The signature.
        hostile(
            "signed by another key than its jwk",
            THIEF.sign_jwt_with_header(&header_of(&HOLDER), &payload(token)),
            "dpop_bad_signature",
            bad_signature,
        ),
        hostile(
            "payload swapped after signing",
            {
                let good = proof(&HOLDER, token);
                let parts: Vec<&str> = good.split('.').collect();
                let mut claims = payload(token);
                claims["htu"] = json!(format!("{ORIGIN}/orders/2"));
                format!("{}.{}.{}", parts[0], b64::encode(claims.to_string().as_bytes()), parts[2])
            },
            "dpop_bad_signature",
            bad_signature,
        ),
        // The claims.
        hostile(
            "htm POST on a GET",
            with_claims(token, |c| c["htm"] = json!("POST")),
            "dpop_wrong_htm",
            "DPoP proof htm does not match the request method",
        ),
        hostile(
            "htm in lower case",
            with_claims(token, |c| c["htm"] = json!("get")),
            "dpop_wrong_htm",
            "DPoP proof htm does not match the request method",
        ),
        hostile("htu of another host", htu(&format!("https://evil.example.com{PATH}")), "dpop_wrong_htu", wrong_htu),
        hostile(
            "htu of the Host header, not the configured origin",
            htu(&format!("https://{AUTHORITY}{PATH}")),
            "dpop_wrong_htu",
            wrong_htu,
        ),
        hostile(
            "htu of another port",
            htu(&format!("https://api.example.com:8443{PATH}")),
            "dpop_wrong_htu",
            wrong_htu,
        ),
        hostile("htu of another scheme", htu(&format!("http://api.example.com{PATH}")), "dpop_wrong_htu", wrong_htu),
        hostile("htu in another path case", htu(&format!("{ORIGIN}/Orders/1")), "dpop_wrong_htu", wrong_htu),
        hostile("htu with a trailing slash", htu(&format!("{ORIGIN}/orders/1/")), "dpop_wrong_htu", wrong_htu),
        hostile("htu of another resource", htu(&format!("{ORIGIN}/orders/2")), "dpop_wrong_htu", wrong_htu),
        hostile("htu relative", htu(PATH), "dpop_invalid_claim", "DPoP proof claim \"htu\" is invalid"),
        hostile(
            "htu with user information",
            htu(&format!("https://user@api.example.com{PATH}")),
            "dpop_invalid_claim",
            "DPoP proof claim \"htu\" is invalid",
        ),
        hostile(
            "iat 61 s old",
            with_claims(token, |c| c["iat"] = json!(NOW - 61)),
            "dpop_stale",
            "DPoP proof is too old",
        ),
        hostile(
            "iat 6 s ahead",
            with_claims(token, |c| c["iat"] = json!(NOW + 6)),
            "dpop_iat_in_future",
            "DPoP proof was issued in the future",
        ),
        hostile(
            "iat as a string",
            with_claims(token, |c| c["iat"] = json!(NOW.to_string())),
            "dpop_invalid_claim",
            "DPoP proof claim \"iat\" is invalid",
        ),
        hostile(
            "no jti",
            with_claims(token, |c| _ = c.as_object_mut().unwrap().remove("jti")),
            "dpop_missing_claim",
            "DPoP proof claim \"jti\" is missing",
        ),
        hostile(
            "jti over 256 bytes",
            with_claims(token, |c| c["jti"] = json!("j".repeat(257))),
            "dpop_invalid_claim",
            "DPoP proof claim \"jti\" is invalid",
        ),
        hostile(
            "ath of another token",
            with_claims(token, |c| c["ath"] = json!(ath(&other_token))),
            "dpop_wrong_ath",
            "DPoP proof ath does not match the access token",
        ),
        hostile(
            "no ath",
            with_claims(token, |c| _ = c.as_object_mut().unwrap().remove("ath")),
            "dpop_missing_claim",
            "DPoP proof claim \"ath\" is missing",
        ),
        hostile(
            "a nonce that is not a string",
            with_claims(token, |c| c["nonce"] = json!(5)),
            "dpop_invalid_claim",
            "DPoP proof claim \"nonce\" is invalid",
        ),
        // The encoding.
        hostile(
            "two segments",
            {
                let p = proof(&HOLDER, token);
                p.rsplit_once('.').unwrap().0.to_owned()
            },
            "dpop_malformed",
            "malformed DPoP proof: not three segments",
        ),
        hostile(
            "a duplicate alg member",
            signed_raw(
                &HOLDER,
                &format!(r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":{}}}"#, header_of(&HOLDER)["jwk"]),
                &payload(token).to_string(),
            ),
            "dpop_malformed",
            "malformed DPoP proof: header is not a JSON object",
        ),
        hostile(
            "over 8 KiB",
            with_claims(token, |c| c["pad"] = json!("p".repeat(9000))),
            "dpop_proof_too_large",
            "DPoP proof is larger than allowed",
        ),
    ];
    // The binding: a well-made proof by a key the token is not bound to.
    all.push(Hostile {
        what: "signed by a thief's key",
        proof: THIEF.dpop_proof(&ProofClaims {
            jti: &jti(),
            htm: "GET",
            htu: &format!("{ORIGIN}{PATH}"),
            iat: NOW as i64,
            token: Some(token),
            nonce: None,
        }),
        reason: "dpop_key_mismatch",
        error: "invalid_token",
        description: "Invalid DPoP key binding".into(),
    });
    all
}

#[test]
fn every_hostile_proof_is_refused_with_its_error_challenge_and_reason() {
    let mut vm = start(&config());
    let token = bound(ALLOWED, &HOLDER);
    let proofs = hostile_proofs(&token);
    assert!(proofs.len() >= 25, "{} hostile proofs", proofs.len());
    for h in &proofs {
        let o = send_dpop(&mut vm, &token, &[&h.proof]);
        assert!(!o.is_allowed(), "{}: accepted\n{}", h.what, vm.logs_text());
        assert_eq!(
            (o.status(), details(&o)),
            (Some(401), format!("agent_iam.{}", h.reason).as_str()),
            "{}: {:?}",
            h.what,
            o.body_json()
        );
        assert_dpop_refused(&o, h.reason, h.error, &h.description);
    }
    // Nothing refused was recorded, and the token and a good proof still pass.
    assert_allowed(&send_dpop(&mut vm, &token, &[&proof(&HOLDER, &token)]), &vm);
    vm.assert_healthy();
}

#[test]
fn the_proof_header_must_be_there_exactly_once() {
    let mut vm = start(&config());
    let token = bound(ALLOWED, &HOLDER);
    let o = send_dpop(&mut vm, &token, &[]);
    assert_dpop_refused(
        &o,
        "dpop_missing_proof",
        "invalid_dpop_proof",
        "a DPoP proof is required with the DPoP scheme",
    );
    let (p1, p2) = (proof(&HOLDER, &token), proof(&HOLDER, &token));
    let o = send_dpop(&mut vm, &token, &[&p1, &p2]);
    assert_dpop_refused(&o, "dpop_repeated_proof", "invalid_dpop_proof", "exactly one DPoP header is allowed");
    // The same proof twice is two headers too.
    let o = send_dpop(&mut vm, &token, &[&p1, &p1]);
    assert_dpop_refused(&o, "dpop_repeated_proof", "invalid_dpop_proof", "exactly one DPoP header is allowed");
    // Neither was recorded: each passes alone.
    assert_allowed(&send_dpop(&mut vm, &token, &[&p1]), &vm);
    assert_allowed(&send_dpop(&mut vm, &token, &[&p2]), &vm);
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Schemes against issuer modes and bindings
// ---------------------------------------------------------------------------------------------

#[test]
fn schemes_against_issuer_modes_and_bindings() {
    let mut vm = start(&config());
    // RFC 9449 §7.2: a bound token presented as Bearer, whatever its issuer's mode.
    for iss in [ALLOWED, REQUIRED, LEGACY] {
        let o = send_bearer(&mut vm, &bound(iss, &HOLDER), &[]);
        assert_bearer_refused(
            &o,
            "dpop_bound_token_as_bearer",
            "invalid_token",
            "a DPoP-bound token must be presented with the DPoP scheme",
        );
    }
    // With its proof beside it, still Bearer: refused.
    let t = bound(ALLOWED, &HOLDER);
    let o = send_bearer(&mut vm, &t, &[&proof(&HOLDER, &t)]);
    assert_bearer_refused(
        &o,
        "dpop_bound_token_as_bearer",
        "invalid_token",
        "a DPoP-bound token must be presented with the DPoP scheme",
    );
    // An unbound token presented as DPoP, with a proof that would otherwise pass.
    let unbound = token(ALLOWED, json!({}));
    let o = send_dpop(&mut vm, &unbound, &[&proof(&HOLDER, &unbound)]);
    assert_dpop_refused(&o, "dpop_token_not_bound", "invalid_token", "token is not bound to a DPoP key");
    // A bearer token to an issuer that requires DPoP.
    let o = send_bearer(&mut vm, &token(REQUIRED, json!({})), &[]);
    assert_bearer_refused(&o, "dpop_required", "invalid_token", "this issuer's tokens must be presented with DPoP");
    // A DPoP presentation of an issuer whose dpop is off, bound and with a good proof.
    let legacy = bound(LEGACY, &HOLDER);
    let o = send_dpop(&mut vm, &legacy, &[&proof(&HOLDER, &legacy)]);
    assert_dpop_refused(&o, "dpop_not_accepted", "invalid_token", "this issuer's tokens are not accepted with DPoP");
    // A cnf that is not an object is an invalid token, never "unbound".
    let o = send_bearer(&mut vm, &token(ALLOWED, json!({"cnf": "jkt"})), &[]);
    assert_eq!((o.status(), o.body_json()["error"].as_str()), (Some(401), Some("invalid_token")), "{o:#?}");
    assert_eq!(o.header_all("www-authenticate")[1], dpop(None));
    // Two schemes at once: a bad request, whichever comes first.
    let o = vm
        .request()
        .path(PATH)
        .header("x-request-id", REQUEST_ID)
        .header("authorization", &format!("Bearer {unbound}"))
        .header("authorization", &format!("DPoP {t}"))
        .header("dpop", &proof(&HOLDER, &t))
        .send();
    assert_refused(&o, 400, "multiple_credentials", "invalid_request", "more than one credential in the request", &[]);
    vm.assert_healthy();
}

#[test]
fn an_invalid_token_presented_with_dpop_gets_its_error_on_the_dpop_challenge() {
    let mut vm = start(&config());
    let expired = token(ALLOWED, json!({"cnf": {"jkt": thumbprint(&HOLDER)}, "iat": NOW - 7200, "exp": NOW - 3600}));
    let o = send_dpop(&mut vm, &expired, &[&proof(&HOLDER, &expired)]);
    let description = o.body_json()["error_description"].as_str().unwrap_or_default().to_owned();
    assert_eq!(details(&o), "agent_iam.expired");
    assert_dpop_refused(&o, "expired", "invalid_token", &description);
    // A policy refusal of a good DPoP presentation: insufficient_scope on the DPoP challenge.
    let token = bound(ALLOWED, &HOLDER);
    let p = proof_for(&HOLDER, &token, "GET", &format!("{ORIGIN}/admin/users"), NOW, None);
    let o = request(&mut vm, "GET", "/admin/users", &format!("DPoP {token}"), &[&p]).send();
    let description = o.body_json()["error_description"].as_str().unwrap_or_default().to_owned();
    assert_refused(
        &o,
        403,
        "denied_by_rule",
        "insufficient_scope",
        &description,
        &[dpop(Some(("insufficient_scope", &description))), bearer(None)],
    );
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Challenges without a credential
// ---------------------------------------------------------------------------------------------

#[test]
fn without_a_credential_each_accepted_scheme_is_challenged_without_an_error() {
    let none = |vm: &mut Vm| vm.request().path(PATH).header("x-request-id", REQUEST_ID).send();
    // Issuers take both: Bearer and DPoP.
    let mut vm = start(&config());
    let o = none(&mut vm);
    assert_refused(
        &o,
        401,
        "missing_token",
        "missing_token",
        "an access token is required (Bearer or DPoP)",
        &[bearer(None), dpop(None)],
    );
    // An empty DPoP credential is none either.
    let o = request(&mut vm, "GET", PATH, "DPoP ", &[]).send();
    assert_refused(
        &o,
        401,
        "missing_token",
        "missing_token",
        "an access token is required (Bearer or DPoP)",
        &[bearer(None), dpop(None)],
    );

    // Every issuer requires DPoP: only the DPoP challenge.
    let mut only = config();
    only["issuers"] = json!([issuer(REQUIRED, Some("required"))]);
    let mut vm = start(&only);
    let o = none(&mut vm);
    assert_refused(&o, 401, "missing_token", "missing_token", "a DPoP-bound access token is required", &[dpop(None)]);
    // A bearer token there: the error on the Bearer challenge it tried, beside the DPoP one.
    let o = send_bearer(&mut vm, &token(REQUIRED, json!({})), &[]);
    assert_bearer_refused(&o, "dpop_required", "invalid_token", "this issuer's tokens must be presented with DPoP");
    // And a bad proof: the DPoP challenge only.
    let t = bound(REQUIRED, &HOLDER);
    let o = send_dpop(&mut vm, &t, &[&proof(&THIEF, &t)]);
    assert_refused(
        &o,
        401,
        "dpop_key_mismatch",
        "invalid_token",
        "Invalid DPoP key binding",
        &[dpop(Some(("invalid_token", "Invalid DPoP key binding")))],
    );
    vm.assert_healthy();
}

#[test]
fn without_any_issuer_taking_dpop_the_dpop_scheme_is_no_credential() {
    let mut plain = config();
    plain["issuers"] = json!([issuer(ALLOWED, None)]);
    plain.as_object_mut().unwrap().remove("dpop");
    let mut vm = start(&plain);
    let t = bound(ALLOWED, &HOLDER);
    let o = send_dpop(&mut vm, &t, &[&proof(&HOLDER, &t)]);
    assert_refused(&o, 401, "missing_token", "missing_token", "a bearer token is required", &[bearer(None)]);
    assert_eq!(o.header("access-control-expose-headers"), None, "no DPoP challenge, nothing to expose");
    // A bound token is still not a bearer token (RFC 9449 §7.2), DPoP configured or not.
    let o = send_bearer(&mut vm, &t, &[]);
    let description = "a DPoP-bound token must be presented with the DPoP scheme";
    assert_refused(
        &o,
        401,
        "dpop_bound_token_as_bearer",
        "invalid_token",
        description,
        &[bearer(Some(("invalid_token", description)))],
    );
    assert_allowed(&send_bearer(&mut vm, &token(ALLOWED, json!({})), &[]), &vm);
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Replays across workers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_proof_replayed_on_another_worker_is_refused() {
    // Two workers of a host of their own (its shared data is the replay cache): the clock moves on below, and
    // a bucket written later drops what has expired by then.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let (mut first, mut second) = (start_on(&host, &config()), start_on(&host, &config()));
    let token = bound(ALLOWED, &HOLDER);
    let p = proof(&HOLDER, &token);
    assert_allowed(&send_dpop(&mut first, &token, &[&p]), &first);
    // The other worker, which has never seen the token: the shared replay cache refuses the proof.
    let o = send_dpop(&mut second, &token, &[&p]);
    assert_dpop_refused(&o, "dpop_replayed", "invalid_dpop_proof", "DPoP proof has already been used");
    // And the first worker, from its token cache.
    let o = send_dpop(&mut first, &token, &[&p]);
    assert_dpop_refused(&o, "dpop_replayed", "invalid_dpop_proof", "DPoP proof has already been used");
    // A proof first seen on the second worker is refused on the first.
    let q = proof(&HOLDER, &token);
    assert_allowed(&send_dpop(&mut second, &token, &[&q]), &second);
    let o = send_dpop(&mut first, &token, &[&q]);
    assert_dpop_refused(&o, "dpop_replayed", "invalid_dpop_proof", "DPoP proof has already been used");
    // Once the window has passed, the proof is refused as too old anyway.
    for vm in [&mut first, &mut second] {
        vm.advance_clock(Duration::from_secs(66));
    }
    let o = send_dpop(&mut second, &token, &[&p]);
    assert_dpop_refused(&o, "dpop_stale", "invalid_dpop_proof", "DPoP proof is too old");
    // The workers go on accepting fresh proofs at the new time.
    let fresh = proof_for(&HOLDER, &token, "GET", &format!("{ORIGIN}{PATH}"), NOW + 66, None);
    assert_allowed(&send_dpop(&mut first, &token, &[&fresh]), &first);
    first.assert_healthy();
    second.assert_healthy();
}

#[test]
fn an_overfull_replay_cache_refuses_the_old_proofs_it_can_no_longer_prove_unseen() {
    // One entry per bucket (replay_cache_size 1, rounded up to one per each of the 4096 buckets), on a host of
    // its own. Proofs are made until two land in the same bucket: the second makes room by forgetting the first.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut c = config();
    c["dpop"]["replay_cache_size"] = json!(1);
    let mut vm = start_on(&host, &c);
    let t = bound(ALLOWED, &HOLDER);
    let at = |iat: u64, jti: &str| {
        HOLDER.dpop_proof(&ProofClaims {
            jti,
            htm: "GET",
            htu: &format!("{ORIGIN}{PATH}"),
            iat: iat as i64,
            token: Some(&t),
            nonce: None,
        })
    };
    let bucket = |jti: &str| {
        let id = agent_iam::token::dpop::replay::proof_id(&format!("{ORIGIN}{PATH}"), jti);
        u32::from_be_bytes([id[0], id[1], id[2], id[3]]) % 4096
    };
    let target = bucket("old-0");
    let crowd = (1..).map(|i| format!("new-{i}")).find(|j| bucket(j) == target).unwrap();
    let other = (1..).map(|i| format!("old-{i}")).find(|j| bucket(j) == target && *j != crowd).unwrap();
    let old = at(NOW - 30, "old-0");
    assert_allowed(&send_dpop(&mut vm, &t, &[&old]), &vm);
    // A newer live proof in the same full bucket makes room, and the bucket's watermark rises past the old one.
    assert_allowed(&send_dpop(&mut vm, &t, &[&at(NOW, &crowd)]), &vm);
    let full = "DPoP proof is older than the replay cache can vouch for; send a fresh one";
    // The forgotten proof is still refused, and so is a never-seen one as old: neither can be proved unseen.
    assert_dpop_refused(&send_dpop(&mut vm, &t, &[&old]), "dpop_replay_cache_full", "invalid_dpop_proof", full);
    assert_dpop_refused(
        &send_dpop(&mut vm, &t, &[&at(NOW - 30, &other)]),
        "dpop_replay_cache_full",
        "invalid_dpop_proof",
        full,
    );
    // The newer one is held, and a client's fresh proof passes.
    let used = "DPoP proof has already been used";
    assert_dpop_refused(&send_dpop(&mut vm, &t, &[&at(NOW, &crowd)]), "dpop_replayed", "invalid_dpop_proof", used);
    assert_allowed(&send_dpop(&mut vm, &t, &[&at(NOW, "fresh")]), &vm);
    let (value, _) = host.shared_data(&format!("agent-iam.dpop.replay.{target}")).expect("the bucket");
    assert_eq!(value.len(), 11 + 32, "bounded: version, watermark, count and one entry");
    vm.assert_healthy();
}

/// A proof's bucket depends on the proof alone, never on `dpop.replay_cache_size`: after a reload that changes
/// the size (or on a worker still on the other size during a rollout) a proof accepted under the old size is
/// still found.
#[test]

fn a_proof_accepted_before_the_replay_cache_is_resized_is_still_a_replay() {
    // A host of its own: the resized cache's one bucket is shared data that other tests' proofs also use.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut vm = start_on(&host, &config());
    let t = bound(ALLOWED, &HOLDER);
    let p = proof(&HOLDER, &t);
    assert_allowed(&send_dpop(&mut vm, &t, &[&p]), &vm);
    let mut resized = config();
    resized["dpop"]["replay_cache_size"] = json!(16);
    assert!(vm.configure(resized.to_string().as_bytes()), "{}", vm.logs_text());
    let o = send_dpop(&mut vm, &t, &[&p]);
    assert_dpop_refused(&o, "dpop_replayed", "invalid_dpop_proof", "DPoP proof has already been used");
    // A worker still on the old size and one on the new share the shared data: the same hole.
    let (mut old, mut new) = (start_on(&host, &config()), start_on(&host, &resized));
    let q = proof(&HOLDER, &t);
    assert_allowed(&send_dpop(&mut old, &t, &[&q]), &old);
    let o = send_dpop(&mut new, &t, &[&q]);
    assert_dpop_refused(&o, "dpop_replayed", "invalid_dpop_proof", "DPoP proof has already been used");
}

// ---------------------------------------------------------------------------------------------
// Nonces
// ---------------------------------------------------------------------------------------------

fn nonce_config(secret: Option<&str>) -> Value {
    let mut c = config();
    c["dpop"]["nonce"] = match secret {
        Some(s) => json!({"lifetime_seconds": 300, "secret": s}),
        None => json!({"lifetime_seconds": 300}),
    };
    c
}

/// `GET` [`PATH`] on `vm` with a new proof carrying `nonce`, issued at the VM's time.
fn with_nonce(vm: &mut Vm, token: &str, nonce: Option<&str>) -> Outcome {
    let now = vm.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let p = proof_for(&HOLDER, token, "GET", &format!("{ORIGIN}{PATH}"), now, nonce);
    send_dpop(vm, token, &[&p])
}

/// A refusal asking for a nonce: `use_dpop_nonce` on the DPoP challenge, `DPoP-Nonce`, not to be cached.
/// Returns the nonce.
#[track_caller]
fn assert_nonce_asked(o: &Outcome, reason: &str, description: &str) -> String {
    assert_refused(
        o,
        401,
        reason,
        "use_dpop_nonce",
        description,
        &[dpop(Some(("use_dpop_nonce", description))), bearer(None)],
    );
    assert_eq!(o.header("cache-control"), Some("no-store"));
    let nonce = o.header_all("dpop-nonce");
    assert_eq!(nonce.len(), 1, "{o:#?}");
    assert!(nonce[0].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{nonce:?}");
    nonce[0].to_owned()
}

#[test]
fn nonces_are_asked_for_and_accepted_on_every_worker_with_a_shared_secret() {
    // A host of its own: the nonce secret lives in its shared data.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut first = start_on(&host, &nonce_config(None));
    let (secret, _) = host.shared_data("agent-iam.dpop.nonce-secret").expect("the first worker made the secret");
    assert!(secret.len() >= 32, "{} bytes", secret.len());
    let mut second = start_on(&host, &nonce_config(None));
    assert_eq!(host.shared_data("agent-iam.dpop.nonce-secret").unwrap().0, secret, "the second worker kept it");
    let token = bound(ALLOWED, &HOLDER);

    // No nonce: asked for one.
    let nonce =
        assert_nonce_asked(&with_nonce(&mut first, &token, None), "dpop_nonce_missing", "a DPoP nonce is required");
    // The retry with it, on the other worker, passes; the same nonce serves further proofs.
    let o = with_nonce(&mut second, &token, Some(&nonce));
    assert_allowed(&o, &second);
    let Outcome::Continued { response: (_, headers, _), .. } = &o else { unreachable!() };
    assert!(!headers.iter().any(|(k, _)| k == "dpop-nonce"), "the current nonce needs no new one: {headers:?}");
    assert_allowed(&with_nonce(&mut first, &token, Some(&nonce)), &first);
    // Both workers issue the same nonce.
    let again =
        assert_nonce_asked(&with_nonce(&mut second, &token, None), "dpop_nonce_missing", "a DPoP nonce is required");
    assert_eq!(again, nonce);

    // Forged: a changed nonce, and one of another gateway (its own secret).
    let invalid = "the DPoP nonce is invalid or expired";
    let mut forged = nonce.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        assert_nonce_asked(&with_nonce(&mut first, &token, Some(&forged)), "dpop_nonce_invalid", invalid),
        nonce
    );
    assert_eq!(
        assert_nonce_asked(&with_nonce(&mut first, &token, Some("bm9uY2U")), "dpop_nonce_invalid", invalid),
        nonce
    );
    let mut elsewhere = start_on(&host, &nonce_config(Some(&b64::encode(&[7; 32]))));
    let foreign =
        assert_nonce_asked(&with_nonce(&mut elsewhere, &token, None), "dpop_nonce_missing", "a DPoP nonce is required");
    assert_ne!(foreign, nonce);
    assert_eq!(
        assert_nonce_asked(&with_nonce(&mut first, &token, Some(&foreign)), "dpop_nonce_invalid", invalid),
        nonce
    );
    assert_nonce_asked(&with_nonce(&mut elsewhere, &token, Some(&nonce)), "dpop_nonce_invalid", invalid);

    // A new period (half the lifetime): the old nonce still passes and the response brings the new one.
    for vm in [&mut first, &mut second] {
        vm.advance_clock(Duration::from_secs(160));
    }
    let o = with_nonce(&mut second, &token, Some(&nonce));
    assert_allowed(&o, &second);
    let Outcome::Continued { response: (_, headers, _), .. } = &o else { unreachable!() };
    let pushed: Vec<&str> = headers.iter().filter(|(k, _)| k == "dpop-nonce").map(|(_, v)| v.as_str()).collect();
    assert_eq!(pushed.len(), 1, "RFC 9449 §8.2: the next nonce on the response: {headers:?}");
    assert_ne!(pushed[0], nonce);
    let next = pushed[0].to_owned();
    assert_allowed(&with_nonce(&mut first, &token, Some(&next)), &first);

    // Stale: past its lifetime the old nonce is refused with the current one, which the other worker takes.
    for vm in [&mut first, &mut second] {
        vm.advance_clock(Duration::from_secs(150));
    }
    let current = assert_nonce_asked(&with_nonce(&mut first, &token, Some(&nonce)), "dpop_nonce_invalid", invalid);
    assert_ne!(current, nonce);
    assert_allowed(&with_nonce(&mut second, &token, Some(&current)), &second);
    first.assert_healthy();
    second.assert_healthy();
}

#[test]
fn replicas_with_one_configured_secret_accept_each_others_nonces() {
    // Two Envoy processes: two hosts, no shared data between them.
    let secret = b64::encode(&[42; 32]);
    let other_host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut first = start(&nonce_config(Some(&secret)));
    let mut second = start_on(&other_host, &nonce_config(Some(&secret)));
    assert_eq!(other_host.shared_data("agent-iam.dpop.nonce-secret"), None, "a configured secret is not shared data");
    let token = bound(ALLOWED, &HOLDER);
    let nonce =
        assert_nonce_asked(&with_nonce(&mut first, &token, None), "dpop_nonce_missing", "a DPoP nonce is required");
    assert_allowed(&with_nonce(&mut second, &token, Some(&nonce)), &second);
    first.assert_healthy();
    second.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Delegation
// ---------------------------------------------------------------------------------------------

#[test]
fn with_delegation_only_the_current_actors_key_presents_the_token() {
    let mut vm = start(&config());
    // Alice, through the planner (an earlier actor, with a cnf of its own), then the trader (the current actor);
    // the token binds the trader's key at its top level.
    let chain = token(
        ALLOWED,
        json!({"sub": ALICE, "cnf": {"jkt": thumbprint(&HOLDER)},
               "act": {"sub": AGENT, "act": {"sub": EARLIER_AGENT, "cnf": {"jkt": thumbprint(&EARLIER)}}}}),
    );
    let o = send_dpop(&mut vm, &chain, &[&proof(&HOLDER, &chain)]);
    assert_allowed(&o, &vm);
    assert_eq!(o.header("x-agent-iam-subject"), Some(ALICE));
    // The earlier actor's key, though an inner act names it.
    let o = send_dpop(&mut vm, &chain, &[&proof(&EARLIER, &chain)]);
    assert_dpop_refused(&o, "dpop_key_mismatch", "invalid_token", "Invalid DPoP key binding");
    // A cnf inside act binds nothing: the token is unbound, whoever's key signs.
    let inner_only = token(
        ALLOWED,
        json!({"sub": ALICE, "act": {"sub": AGENT, "cnf": {"jkt": thumbprint(&HOLDER)},
                                     "act": {"sub": EARLIER_AGENT, "cnf": {"jkt": thumbprint(&EARLIER)}}}}),
    );
    let o = send_dpop(&mut vm, &inner_only, &[&proof(&EARLIER, &inner_only)]);
    assert_dpop_refused(&o, "dpop_token_not_bound", "invalid_token", "token is not bound to a DPoP key");
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// MCP: metadata, a route's own origin, the body decided without a second replay check
// ---------------------------------------------------------------------------------------------

const MCP_ORIGIN: &str = "https://mcp.example.com";

fn mcp_config() -> Value {
    let aud = |iss: &str, mode: Option<&str>, resource: &str| {
        let mut i = issuer(iss, mode);
        i["audiences"] = json!([resource]);
        i
    };
    json!({
        "realm": REALM,
        "issuers": [
            aud(REQUIRED, Some("required"), "https://mcp.example.com/mcp"),
            aud(ALLOWED, Some("allowed"), "https://api.example.com/tools"),
            aud(LEGACY, None, "https://api.example.com/legacy")
        ],
        "dpop": {"origin": ORIGIN, "algorithms": ["ES256", "EdDSA"],
                 "routes": [{"paths": ["/mcp"], "origin": MCP_ORIGIN}]},
        "mcp": {"endpoints": [
            {"paths": ["/mcp"], "resource": "https://mcp.example.com/mcp", "authorization_servers": [REQUIRED]},
            {"paths": ["/tools"], "resource": "https://api.example.com/tools", "authorization_servers": [ALLOWED]},
            {"paths": ["/legacy"], "resource": "https://api.example.com/legacy", "authorization_servers": [LEGACY]}
        ]},
        "policy": {"rules": [{"id": "quotes", "effect": "allow", "agents": ["*"], "mcp": {"tools": ["get_quote"]}}]}
    })
}

fn metadata(vm: &mut Vm, path: &str) -> Value {
    let o = vm.request().method("GET").path(path).authority(AUTHORITY).send();
    assert_eq!(o.status(), Some(200), "{o:#?}");
    o.body_json()
}

#[test]
fn mcp_metadata_advertises_dpop_where_issuers_take_it() {
    let mut vm = start(&mcp_config());
    let required = metadata(&mut vm, "/.well-known/oauth-protected-resource/mcp");
    assert_eq!(required["resource"], "https://mcp.example.com/mcp");
    assert_eq!(required["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA"]));
    assert_eq!(required["dpop_bound_access_tokens_required"], json!(true));
    let allowed = metadata(&mut vm, "/.well-known/oauth-protected-resource/tools");
    assert_eq!(allowed["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA"]));
    assert_eq!(allowed.get("dpop_bound_access_tokens_required"), None, "{allowed}");
    let legacy = metadata(&mut vm, "/.well-known/oauth-protected-resource/legacy");
    assert_eq!(legacy.get("dpop_signing_alg_values_supported"), None, "{legacy}");
    assert_eq!(legacy.get("dpop_bound_access_tokens_required"), None, "{legacy}");
    vm.assert_healthy();
}

#[test]
fn an_mcp_call_with_dpop_is_checked_at_its_route_origin_and_decided_on_its_body_once() {
    let mut vm = start(&mcp_config());
    let t = token(REQUIRED, json!({"aud": "https://mcp.example.com/mcp", "cnf": {"jkt": thumbprint(&HOLDER)}}));
    let call = |vm: &mut Vm, proof: &str, tool: &str| {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
        vm.request()
            .method("POST")
            .path("/mcp")
            .authority(AUTHORITY)
            .header("x-request-id", REQUEST_ID)
            .header("authorization", &format!("DPoP {t}"))
            .header("dpop", proof)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
            .send()
    };
    // The route's origin: the request's headers and then its body are decided, the proof recorded once.
    let p = proof_for(&HOLDER, &t, "POST", &format!("{MCP_ORIGIN}/mcp"), NOW, None);
    let o = call(&mut vm, &p, "get_quote");
    assert!(o.is_allowed(), "{o:#?}\n{}", vm.logs_text());
    assert_eq!(o.header("dpop"), Some(p.as_str()));
    // The same proof again is a replay, answered in the endpoint's terms.
    let o = call(&mut vm, &p, "get_quote");
    let metadata_url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    let description = "DPoP proof has already been used";
    assert_eq!(o.status(), Some(401), "{o:#?}");
    assert_eq!(details(&o), "agent_iam.dpop_replayed");
    // Other issuers of the gateway take bearer tokens, but this endpoint's only issuer requires DPoP (its
    // metadata says so): its challenges offer DPoP alone.
    assert_eq!(
        o.header_all("www-authenticate"),
        [format!(
            r#"DPoP error="invalid_dpop_proof", error_description="{description}", algs="{ALGS}", resource_metadata="{metadata_url}""#
        )]
    );
    // The general origin is not this route's.
    let p = proof_for(&HOLDER, &t, "POST", &format!("{ORIGIN}/mcp"), NOW, None);
    let o = call(&mut vm, &p, "get_quote");
    assert_eq!(details(&o), "agent_iam.dpop_wrong_htu", "{o:#?}");
    // A tool policy refuses, after a good proof.
    let p = proof_for(&HOLDER, &t, "POST", &format!("{MCP_ORIGIN}/mcp"), NOW, None);
    let o = call(&mut vm, &p, "delete_account");
    assert_eq!(o.status(), Some(403), "{o:#?}");
    vm.assert_healthy();
}

/// The explanation debug logging writes, and dry-run rules, decide the request again: the proof is checked
/// again but not recorded a second time, so neither turns an allowed request into its own replay.
#[test]
fn explanations_and_dry_runs_never_make_a_proof_its_own_replay() {
    let mut c = config();
    c["policy"]["rules"].as_array_mut().unwrap().push(
        json!({"id": "trial-no-reads", "effect": "deny", "mode": "dry_run", "agents": ["*"], "methods": ["GET"]}),
    );
    // The host logs at trace level: every decision is explained.
    let mut vm = start(&c);
    let t = bound(ALLOWED, &HOLDER);
    let p = proof(&HOLDER, &t);
    assert_allowed(&send_dpop(&mut vm, &t, &[&p]), &vm);
    let logs = vm.logs_text();
    let explained = vm
        .logs()
        .iter()
        .rev()
        .find_map(|l| l.message.strip_prefix("agent-iam: explain "))
        .unwrap_or_else(|| panic!("no explanation in {logs}"));
    let e: Value = serde_json::from_str(explained).unwrap();
    assert_eq!((e["decision"].as_str(), e["reason"].as_str()), (Some("allow"), Some("allowed")), "{e}");
    assert!(logs.contains("dry-run rule \"trial-no-reads\" would deny this request"), "{logs}");
    // The proof was recorded once, by the decision.
    let o = send_dpop(&mut vm, &t, &[&p]);
    assert_dpop_refused(&o, "dpop_replayed", "invalid_dpop_proof", "DPoP proof has already been used");

    // Dry-run mode: what enforcement would refuse goes upstream, marked.
    let mut c = config();
    c["mode"] = json!("dry_run");
    let mut vm = start(&c);
    let p = proof(&HOLDER, &t);
    let o = send_dpop(&mut vm, &t, &[&p]);
    assert!(o.is_allowed() && o.header("x-agent-iam-dry-run").is_none(), "{o:#?}");
    let o = send_dpop(&mut vm, &t, &[&p]);
    assert!(o.is_allowed(), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("401 dpop_replayed"));
    let o = send_dpop(&mut vm, &t, &[&proof(&THIEF, &t)]);
    assert_eq!(o.header("x-agent-iam-dry-run"), Some("401 dpop_key_mismatch"));
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Forwarding, metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn the_proof_is_removed_upstream_with_the_credential() {
    let mut c = config();
    c["forward"] = json!({"credential": false});
    let mut vm = start(&c);
    let t = bound(ALLOWED, &HOLDER);
    let o = send_dpop(&mut vm, &t, &[&proof(&HOLDER, &t)]);
    assert_allowed(&o, &vm);
    assert_eq!(o.header("authorization"), None, "{o:#?}");
    assert_eq!(o.header("dpop"), None, "{o:#?}");
    // A bearer request's stray DPoP header goes too: it is part of no credential, but no proof leaves.
    let o = send_bearer(&mut vm, &token(ALLOWED, json!({})), &["stray"]);
    assert_allowed(&o, &vm);
    assert_eq!(o.header("dpop"), None, "{o:#?}");
    vm.assert_healthy();
}

#[test]
fn refusals_are_counted_under_their_reason() {
    // Metrics are shared by a host's VMs: a host of its own.
    let host = Host::from_file(agent_iam_host::plugin_wasm_path()).unwrap();
    let mut vm = start_on(&host, &config());
    let token = bound(ALLOWED, &HOLDER);
    let p = proof(&HOLDER, &token);
    assert_allowed(&send_dpop(&mut vm, &token, &[&p]), &vm);
    send_dpop(&mut vm, &token, &[&p]);
    send_dpop(&mut vm, &token, &[&p]);
    send_dpop(&mut vm, &token, &[&proof(&THIEF, &token)]);
    send_bearer(&mut vm, &token, &[]);
    send_dpop(&mut vm, &token, &[&with_claims(&token, |c| c["htu"] = json!("https://evil.example.com/orders/1"))]);
    vm.tick();
    let m = |name: &str| host.metric(name).unwrap_or_else(|| panic!("no metric {name}: {:?}", host.metrics()));
    assert_eq!(m("agent_iam.decision.allow"), 1);
    assert_eq!(m("agent_iam.decision.deny"), 5);
    assert_eq!(m("agent_iam.denied.dpop_replayed"), 2);
    assert_eq!(m("agent_iam.denied.dpop_key_mismatch"), 1);
    assert_eq!(m("agent_iam.denied.dpop_bound_token_as_bearer"), 1);
    assert_eq!(m("agent_iam.denied.dpop_wrong_htu"), 1);
    vm.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Configuration errors, with their paths
// ---------------------------------------------------------------------------------------------

#[test]
fn configuration_errors_name_their_path_and_the_last_good_configuration_keeps_deciding() {
    let mut vm = start(&config());
    let token = bound(ALLOWED, &HOLDER);
    let change = |f: &dyn Fn(&mut Value)| {
        let mut c = config();
        f(&mut c);
        c
    };
    let cases: Vec<(Value, &str)> = vec![
        (change(&|c| _ = c.as_object_mut().unwrap().remove("dpop")), "issuers[0].dpop: needs the dpop section"),
        (
            change(&|c| {
                c.as_object_mut().unwrap().remove("dpop");
                c["issuers"] = json!([issuer(LEGACY, None), issuer(REQUIRED, Some("required"))]);
            }),
            "issuers[1].dpop: needs the dpop section",
        ),
        (change(&|c| c["issuers"][0]["dpop"] = json!("yes")), r#"issuers[0].dpop: unknown value "yes""#),
        (change(&|c| c["issuers"] = json!([issuer(LEGACY, None)])), "dpop: no issuer takes DPoP"),
        (change(&|c| c["dpop"]["origin"] = json!("https://api.example.com/base")), "dpop.origin: "),
        (change(&|c| c["dpop"]["origin"] = json!("ftp://api.example.com")), "dpop.origin: "),
        (change(&|c| c["dpop"]["origin"] = json!("api.example.com")), "dpop.origin: "),
        (
            change(&|c| c["dpop"]["algorithms"] = json!(["HS256"])),
            r#"dpop.algorithms[0]: "HS256" is not an asymmetric"#,
        ),
        (change(&|c| c["dpop"]["algorithms"] = json!(["ES256", "none"])), r#"dpop.algorithms[1]: "none""#),
        (change(&|c| c["dpop"]["algorithms"] = json!([])), "dpop.algorithms: "),
        (
            change(&|c| c["dpop"]["nonce"] = json!({"secret": b64::encode(&[1; 31])})),
            "dpop.nonce.secret: must be at least 32 bytes",
        ),
        (change(&|c| c["dpop"]["nonce"] = json!({"secret": "not base64!"})), "dpop.nonce.secret: "),
        (change(&|c| c["dpop"]["max_age_seconds"] = json!(0)), "dpop.max_age_seconds: "),
        (change(&|c| c["dpop"]["routes"] = json!([{"origin": ORIGIN}])), "dpop.routes[0]: "),
        (
            change(&|c| c["dpop"]["routes"] = json!([{"paths": ["/mcp"], "origin": "mcp.example.com"}])),
            "dpop.routes[0].origin: ",
        ),
    ];
    for (doc, expected) in &cases {
        assert!(!vm.configure(doc.to_string().as_bytes()), "accepted: {doc}");
        let log = last_error_log(&vm);
        assert!(log.starts_with(&format!("agent-iam: configuration rejected: {expected}")), "{expected}\n{log}");
        // The last good configuration keeps deciding.
        assert_allowed(&send_dpop(&mut vm, &token, &[&proof(&HOLDER, &token)]), &vm);
    }
    // And one that fails the start.
    let e = HOST
        .vm()
        .plugin_config(change(&|c| _ = c.as_object_mut().unwrap().remove("dpop")).to_string())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
        .err()
        .expect("a dpop issuer without the section must not start");
    assert!(format!("{e:#}").contains("configuration rejected: issuers[0].dpop: "), "{e:#}");
    vm.assert_healthy();
}
