//! Property tests: the verifier and the parsers in front of it never panic on hostile input, forged or
//! altered tokens are never accepted, and the canonical forms (base64url, request paths) are canonical.
//!
//! Case counts are kept modest so `cargo test` stays fast; the fuzz targets in `fuzz/` go further.

use super::claims::Claims;
use super::*;
use crate::mint::SigningKey;
use crate::{b64, config, json, request};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "trading-api";

/// Every test's case count (RSA properties use fewer).
const CASES: u32 = 256;
const RSA_CASES: u32 = 64;

struct Keys {
    es: SigningKey,
    ed: SigningKey,
    rs: SigningKey,
    verifier: Verifier,
}

/// One key per algorithm and a verifier trusting them, built once per test binary (RSA keygen is slow). The
/// verifier comes from a configuration document, the way the gateway builds it.
static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let es = SigningKey::from_seed(Algorithm::ES256, [0x11; 32]).unwrap();
    let ed = SigningKey::from_seed(Algorithm::EdDSA, [0x22; 32]).unwrap();
    let rs = SigningKey::from_seed(Algorithm::RS256, [0x33; 32]).unwrap();
    let doc = json!({
        "issuers": [{"issuer": ISS, "audiences": [AUD], "algorithms": ["ES256", "EdDSA", "RS256"],
                     "jwks": {"keys": [es.public_jwk(Some("es")), ed.public_jwk(Some("ed")), rs.public_jwk(Some("rs"))]}}],
        "policy": {"rules": [{"id": "r", "effect": "allow", "agents": ["*"]}]}
    });
    let engine = config::parse(doc.to_string().as_bytes()).unwrap();
    let verifier = engine.verifier().clone();
    Keys { es, ed, rs, verifier }
});

fn verify(token: &[u8]) -> Result<VerifiedToken, TokenError> {
    KEYS.verifier.verify(token, NOW, &PureRust)
}

fn valid_claims() -> Value {
    json!({"iss": ISS, "sub": "spiffe://trading.example/agent/trader", "aud": AUD, "exp": NOW + 300, "iat": NOW})
}

// ---- strategies ----

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (NOW - 1000..NOW + 1000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        ".{0,16}".prop_map(Value::String),
        prop::sample::select(vec![
            ISS,
            AUD,
            "es",
            "ed",
            "rs",
            "ES256",
            "EdDSA",
            "RS256",
            "JWT",
            "spiffe://a.example/x"
        ])
        .prop_map(Value::from),
    ];
    nested(leaf, 4, 48, 6)
}

/// `leaf` values in arrays and objects (with [`member_name`] names) up to `depth` deep, about `size` values in
/// all, and fewer than `width` items in each.
fn nested(
    leaf: impl Strategy<Value = Value> + 'static,
    depth: u32,
    size: u32,
    width: u32,
) -> impl Strategy<Value = Value> {
    let items = 0..width as usize;
    leaf.prop_recursive(depth, size, width, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), items.clone()).prop_map(Value::Array),
            prop::collection::btree_map(member_name(), inner, items.clone())
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Member names: the ones the verifier looks at, and anything else.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "alg",
            "kid",
            "typ",
            "jku",
            "jwk",
            "x5u",
            "x5c",
            "zip",
            "crit",
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "act",
            "may_act",
            "scope",
            "client_id",
            "jti",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{0,8}",
    ]
}

/// A JOSE header: a usable `alg` and `kid` most of the time, plus arbitrary members.
fn header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        4 => prop::sample::select(vec!["ES256", "EdDSA", "RS256", "HS256", "PS256", "ES384", "none"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let kid = prop_oneof![
        Just(None),
        prop::sample::select(vec!["es", "ed", "rs", "zz"]).prop_map(|k| Some(Value::from(k))),
        json_value().prop_map(Some),
    ];
    let extra = prop::collection::btree_map(member_name(), json_value(), 0..3);
    (prop::option::weighted(0.95, alg), kid, extra).prop_map(|(alg, kid, extra)| {
        let mut h: Map<String, Value> = extra.into_iter().collect();
        if let Some(alg) = alg {
            h.insert("alg".into(), alg);
        }
        if let Some(kid) = kid {
            h.insert("kid".into(), kid);
        }
        Value::Object(h)
    })
}

/// Claims: mostly shaped like a real token of the configured issuer, with arbitrary changes and additions.
fn payload() -> impl Strategy<Value = Value> {
    let extra = prop::collection::btree_map(member_name(), json_value(), 0..4);
    prop_oneof![
        3 => extra.prop_map(|extra| {
            let mut c = valid_claims();
            if let Some(obj) = c.as_object_mut() {
                obj.extend(extra);
            }
            c
        }),
        1 => json_value(),
    ]
}

/// A signature: arbitrary bytes, sometimes of an algorithm's exact length.
fn signature() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(any::<u8>(), 64),
        prop::collection::vec(any::<u8>(), 256),
    ]
}

/// Characters from which base64url-looking segments are made, with the near misses (`=`, `+`, `/`, space).
const B64ISH: &str = "[A-Za-z0-9_=+/ -]{0,64}";

// ---- (a) the verifier never panics and never accepts what it was not given a valid signature for ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn verify_rejects_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(verify(&bytes).is_err());
    }

    #[test]
    fn verify_rejects_arbitrary_three_segment_strings(
        a in prop_oneof![Just("eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzIn0".to_owned()), B64ISH.prop_map(String::from)],
        b in B64ISH,
        c in B64ISH,
    ) {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(verify(token.as_bytes()).is_err(), "accepted {:?}", token);
    }

    #[test]
    fn verify_rejects_well_encoded_json_with_a_signature_it_did_not_make(
        h in header(),
        p in payload(),
        sig in signature(),
    ) {
        let token = format!(
            "{}.{}.{}",
            b64::encode(h.to_string().as_bytes()),
            b64::encode(p.to_string().as_bytes()),
            b64::encode(&sig)
        );
        let result = verify(token.as_bytes());
        prop_assert!(result.is_err(), "accepted {token}: {result:?}");
    }

    #[test]
    fn verify_rejects_signatures_moved_between_tokens(p in payload()) {
        // A real signature, but over other content.
        let genuine = KEYS.es.sign_jwt(Some("es"), &valid_claims());
        let (_, sig) = genuine.rsplit_once('.').unwrap();
        let forged = KEYS.es.sign_jwt(Some("es"), &p);
        let (input, _) = forged.rsplit_once('.').unwrap();
        let token = format!("{input}.{sig}");
        prop_assume!(token != genuine);
        prop_assert!(verify(token.as_bytes()).is_err(), "accepted {token}");
    }
}

// ---- (b) any single-byte change to a valid token is rejected ----

fn assert_single_byte_change_rejected(token: &str, at: Index, new: u8) -> Result<(), TestCaseError> {
    let mut bytes = token.as_bytes().to_vec();
    let i = at.index(bytes.len());
    prop_assume!(bytes[i] != new);
    bytes[i] = new;
    let result = verify(&bytes);
    prop_assert!(
        result.is_err(),
        "byte {i} changed to {new:#04x} still verified: {:?} -> {result:?}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(())
}

static ES_TOKEN: LazyLock<String> = LazyLock::new(|| KEYS.es.sign_jwt(Some("es"), &valid_claims()));
static ED_TOKEN: LazyLock<String> = LazyLock::new(|| KEYS.ed.sign_jwt(Some("ed"), &valid_claims()));
static RS_TOKEN: LazyLock<String> = LazyLock::new(|| KEYS.rs.sign_jwt(Some("rs"), &valid_claims()));

#[test]
fn the_unchanged_tokens_verify() {
    for token in [&*ES_TOKEN, &*ED_TOKEN, &*RS_TOKEN] {
        assert!(verify(token.as_bytes()).is_ok(), "{token}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn es256_single_byte_change_is_rejected(at in any::<Index>(), new in any::<u8>()) {
        assert_single_byte_change_rejected(&ES_TOKEN, at, new)?;
    }

    #[test]
    fn eddsa_single_byte_change_is_rejected(at in any::<Index>(), new in any::<u8>()) {
        assert_single_byte_change_rejected(&ED_TOKEN, at, new)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(RSA_CASES))]

    #[test]
    fn rs256_single_byte_change_is_rejected(at in any::<Index>(), new in any::<u8>()) {
        assert_single_byte_change_rejected(&RS_TOKEN, at, new)?;
    }
}

// ---- (c) base64url ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn b64_round_trips(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = b64::encode(&data);
        prop_assert_eq!(b64::decode(text.as_bytes()), Ok(data));
    }

    #[test]
    fn b64_decode_is_canonical(text in prop_oneof![B64ISH.prop_map(String::from), "[A-Za-z0-9_-]{0,64}", ".{0,32}"]) {
        if let Ok(bytes) = b64::decode(text.as_bytes()) {
            prop_assert_eq!(b64::encode(&bytes), text);
        }
    }

    #[test]
    fn b64_decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(decoded) = b64::decode(&bytes) {
            let again = b64::encode(&decoded);
            prop_assert_eq!(again.as_bytes(), &bytes[..]);
        }
    }
}

// ---- (d) strict JSON ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn json_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256), depth in 0usize..40) {
        let _ = json::parse_value(&bytes, depth);
    }

    #[test]
    fn json_parse_never_panics_on_json_like_text(text in r#"[\[\]{}",:0-9a-z\\ .eE+\-]{0,128}"#, depth in 0usize..40) {
        let _ = json::parse_value(text.as_bytes(), depth);
    }

    #[test]
    fn json_parse_agrees_with_serde_json_on_what_it_writes(v in json_value()) {
        // Generated objects never repeat a name, so a strict parse with room to spare reads what serde_json reads.
        let text = v.to_string();
        let lenient: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(json::parse_value(text.as_bytes(), 64), Ok(lenient));
    }
}

// ---- (d') the fast readers answer as the full ones ----

/// A JOSE header written out member by member, so names may repeat; values are JSON (escaped as needed).
fn header_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => prop::sample::select(vec!["HS256", "ES256", "none", "JWT", "k", "", "x\"y", "é"]).prop_map(Value::from),
        1 => json_value(),
    ];
    prop::collection::vec((member_name(), value), 0..6).prop_map(|members| {
        let members: Vec<String> =
            members.iter().map(|(name, value)| format!("{}:{value}", Value::from(name.as_str()))).collect();
        format!("{{{}}}", members.join(","))
    })
}

/// `jws::parse` gives the reference parser's answer.
fn assert_parse_as_reference(token: &[u8]) -> Result<(), TestCaseError> {
    let want = jws::reference_parse(token);
    let got = jws::parse(token);
    prop_assert_eq!(
        got.as_ref().map(jws::Jws::as_reference).map_err(|e| *e),
        want,
        "{:?}",
        String::from_utf8_lossy(token)
    );
    Ok(())
}

/// Values inside the plain subset that the claims scanner keeps as text, with the characters that could
/// confuse splitting an array (commas, brackets, quotes' neighbours) inside strings.
fn plain_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..1 << 41).prop_map(Value::from),
        r"[a-z ,:\[\]{}]{0,8}".prop_map(Value::String),
        prop::sample::select(vec![ISS, AUD, "spiffe://trading.example/agent/a"]).prop_map(Value::from),
    ];
    nested(leaf, 3, 24, 4)
}

/// Claims of a real token's shape with plain additions: what the scanner keeps as text.
fn plain_payload() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(member_name(), plain_value(), 0..6).prop_map(|extra| {
        let mut c = valid_claims();
        if let Some(obj) = c.as_object_mut() {
            obj.extend(extra);
        }
        c
    })
}

/// Whatever form `text`'s claims are kept in, they read as serde_json's map of them does: the map itself,
/// every claim verification reads and every check it makes on them.
fn assert_claims_read_alike(text: &[u8]) -> Result<(), TestCaseError> {
    let parsed = json::parse_object_with_serde(text, 32);
    let claims = Claims::parse(text.to_vec(), 32);
    prop_assert_eq!(claims.as_ref().map(|c| c.map().clone()).map_err(Clone::clone), parsed.clone());
    let (Ok(parsed), Ok(_)) = (parsed, &claims) else { return Ok(()) };
    // A fresh copy, so the one under test has not built its map yet.
    let kept = Claims::parse(text.to_vec(), 32).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let reference = Claims::from_map(parsed);
    let (r, want) = (kept.registered(), reference.registered());
    let fields = |r: &claims::Registered<'_>| {
        [r.iss, r.sub, r.aud, r.exp, r.nbf, r.iat, r.jti, r.act, r.may_act, r.client_id, r.txn]
            .map(|c| c.map(|c| (c.to_value().into_owned(), c.as_str().map(str::to_owned), c.is_null())))
    };
    prop_assert_eq!(fields(&r), fields(&want));
    for now in [NOW - 400, NOW, NOW + 400] {
        prop_assert_eq!(r.check_times(now, 30, Some(600)), want.check_times(now, 30, Some(600)));
    }
    for accepted in [vec![AUD.to_owned()], vec!["a".to_owned(), ISS.to_owned()]] {
        prop_assert_eq!(r.check_audience(&accepted), want.check_audience(&accepted));
    }
    prop_assert_eq!(
        DelegationChain::from_registered(&r, 4).map(|c| (c.depth(), c.header_value())),
        DelegationChain::from_registered(&want, 4).map(|c| (c.depth(), c.header_value()))
    );
    for profile in [Profile::Jwt, Profile::AtJwt, Profile::TxnToken] {
        prop_assert_eq!(profile.check(Some("at+jwt"), &r, None), profile.check(Some("at+jwt"), &want, None));
    }
    for name in ["scope", "sub", "absent", ""] {
        let read = |c: &Claims| c.get(name).map(|c| (c.to_value().into_owned(), c.is_null()));
        prop_assert_eq!(read(&kept), read(&reference));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn json_plain_reader_agrees_with_serde_json(v in json_value(), depth in 0usize..8, pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        prop_assert_eq!(json::parse_object(text.as_bytes(), depth), json::parse_object_with_serde(text.as_bytes(), depth));
    }

    #[test]
    fn json_plain_reader_agrees_with_serde_json_after_a_byte_change(
        v in prop::collection::btree_map(member_name(), json_value(), 0..6),
        at in any::<Index>(),
        new in prop::sample::select(b"{}[]\",:0123456789-+.eEtrufalsn \\\n\x01\x7f\xc3\xff".to_vec()),
    ) {
        let mut text = Value::Object(v.into_iter().collect()).to_string().into_bytes();
        let i = at.index(text.len());
        text[i] = new;
        prop_assert_eq!(json::parse_object(&text, 32), json::parse_object_with_serde(&text, 32));
    }

    #[test]
    fn json_plain_reader_agrees_with_serde_json_on_json_like_text(
        text in r#"\{[\[\]{}",:0-9a-z\\ .eE+\-]{0,64}"#,
        depth in 0usize..6,
    ) {
        prop_assert_eq!(json::parse_object(text.as_bytes(), depth), json::parse_object_with_serde(text.as_bytes(), depth));
    }

    #[test]
    fn claims_kept_as_text_read_as_the_parsed_map(v in plain_payload(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        let claims = Claims::parse(text.clone().into_bytes(), 32).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!claims.is_map_built(), "not kept as text: {}", text);
        assert_claims_read_alike(text.as_bytes())?;
    }

    #[test]
    fn claims_of_any_shape_read_as_the_parsed_map(v in payload(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        assert_claims_read_alike(text.as_bytes())?;
    }

    #[test]
    fn claims_kept_as_text_read_as_the_parsed_map_after_a_byte_change(
        v in plain_payload(),
        at in any::<Index>(),
        new in prop::sample::select(b"{}[]\",:0123456789-+.eEtrufalsn \\\n\x01\x7f\xc3\xff".to_vec()),
    ) {
        let mut text = v.to_string().into_bytes();
        let i = at.index(text.len());
        text[i] = new;
        assert_claims_read_alike(&text)?;
    }

    #[test]
    fn jws_parse_agrees_with_the_reference(h in prop_oneof![header().prop_map(|h| h.to_string()), header_text()], p in payload(), sig in signature()) {
        let token = format!("{}.{}.{}", b64::encode(h.as_bytes()), b64::encode(p.to_string().as_bytes()), b64::encode(&sig));
        assert_parse_as_reference(token.as_bytes())?;
    }

    #[test]
    fn jws_parse_agrees_with_the_reference_after_a_byte_change(
        h in prop_oneof![header().prop_map(|h| h.to_string()), header_text()],
        p in payload(),
        which in 0usize..3,
        at in any::<Index>(),
        new in any::<u8>(),
    ) {
        let (mut h, mut p) = (h.into_bytes(), p.to_string().into_bytes());
        let mut token = String::new();
        if which < 2 {
            // A change to the JSON itself, still well encoded.
            let text = if which == 0 { &mut h } else { &mut p };
            let i = at.index(text.len());
            text[i] = new;
        }
        token.push_str(&format!("{}.{}.{}", b64::encode(&h), b64::encode(&p), b64::encode(b"sig")));
        let mut token = token.into_bytes();
        if which == 2 {
            let i = at.index(token.len());
            token[i] = new;
        }
        assert_parse_as_reference(&token)?;
    }

    #[test]
    fn jws_parse_recalls_a_header_only_for_the_same_bytes(
        a in prop_oneof![header().prop_map(|h| h.to_string()), header_text()],
        b in prop_oneof![header().prop_map(|h| h.to_string()), header_text()],
        p in payload(),
        at in any::<Index>(),
        new in any::<u8>(),
    ) {
        // The parser keeps the last accepted header: warm it with `a`, then ask about `b`, about `a` changed in
        // one byte of its JSON or of its encoding, and about `a` again between each.
        let payload = b64::encode(p.to_string().as_bytes());
        let token = |header: &[u8]| format!("{}.{payload}.{}", b64::encode(header), b64::encode(b"sig")).into_bytes();
        let mut changed_json = a.clone().into_bytes();
        let i = at.index(changed_json.len());
        changed_json[i] = new;
        let mut changed_encoding = token(a.as_bytes());
        let i = at.index(b64::encode(a.as_bytes()).len());
        changed_encoding[i] = new;
        for t in [token(a.as_bytes()), token(b.as_bytes()), token(a.as_bytes()), token(&changed_json), token(a.as_bytes()), changed_encoding, token(a.as_bytes())] {
            assert_parse_as_reference(&t)?;
        }
    }

    #[test]
    fn jws_parse_agrees_with_the_reference_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        assert_parse_as_reference(&bytes)?;
    }
}

// ---- (e) request paths ----

/// Paths made of the characters canonicalisation cares about.
const PATHISH: &str = r"/[/.%0-9a-fA-FzZ~_?#\\ \t\x00\x7f\u{e9}-]{0,40}";

fn check_canonical_path(raw: &str) -> Result<(), TestCaseError> {
    let Ok((path, query)) = request::canonical_path(raw) else { return Ok(()) };
    prop_assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    prop_assert!(!path.contains("//"), "{raw:?} -> {path:?}");
    prop_assert!(!path.contains('?') && !path.contains('#'), "{raw:?} -> {path:?}");
    for segment in path.split('/') {
        prop_assert!(segment != "." && segment != "..", "{raw:?} -> {path:?}");
    }
    if let Some(q) = query {
        prop_assert!(raw.ends_with(q), "{raw:?} -> query {q:?}");
    }
    let again = request::canonical_path(&path);
    prop_assert_eq!(again, Ok((path.clone(), None)), "{:?} is not a fixed point", raw);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn canonical_path_properties_on_path_like_text(raw in PATHISH) {
        check_canonical_path(&raw)?;
    }

    #[test]
    fn canonical_path_properties_on_any_text(raw in ".{0,40}") {
        check_canonical_path(&raw)?;
    }

    #[test]
    fn canonical_path_properties_on_segments(
        segments in prop::collection::vec(
            prop_oneof![Just(""), Just("."), Just(".."), Just("%2e"), Just("%2E%2e"), Just(".%2e"), Just("a"), Just("%41"), Just("%7e"), Just("%3a"), Just("%25")],
            0..8,
        ),
        trailing in any::<bool>(),
    ) {
        let mut raw = format!("/{}", segments.join("/"));
        if trailing {
            raw.push('/');
        }
        check_canonical_path(&raw)?;
        prop_assert!(request::canonical_path(&raw).is_ok(), "{raw:?}");
    }
}

// ---- (f) configuration ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn config_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = config::parse(&bytes);
    }

    #[test]
    fn config_parse_never_panics_on_json(v in json_value()) {
        let _ = config::parse(v.to_string().as_bytes());
    }

    #[test]
    fn config_parse_never_panics_on_a_valid_document_with_one_member_replaced(
        which in 0usize..10,
        replacement in json_value(),
    ) {
        let mut doc = json!({
            "issuers": [{"issuer": ISS, "audiences": [AUD], "algorithms": ["ES256"],
                         "jwks": {"keys": [KEYS.es.public_jwk(Some("es"))]}}],
            "policy": {"rules": [{"id": "r", "effect": "allow", "agents": ["*"]}]}
        });
        let slot = match which {
            0 => &mut doc["issuers"],
            1 => &mut doc["issuers"][0]["issuer"],
            2 => &mut doc["issuers"][0]["audiences"],
            3 => &mut doc["issuers"][0]["algorithms"],
            4 => &mut doc["issuers"][0]["jwks"],
            5 => &mut doc["issuers"][0]["jwks"]["keys"][0],
            6 => &mut doc["issuers"][0]["jwks"]["keys"][0]["x"],
            7 => &mut doc["policy"],
            8 => &mut doc["policy"]["rules"][0],
            _ => &mut doc["max_token_bytes"],
        };
        *slot = replacement;
        let _ = config::parse(doc.to_string().as_bytes());
    }
}
