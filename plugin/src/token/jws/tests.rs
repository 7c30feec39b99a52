use super::header::{Header, HeaderVisitor};
use super::*;
use serde::de::Deserializer;

const PAYLOAD: &[u8] = br#"{"iss":"https://issuer.example","sub":"agent","aud":"api","exp":1900000000}"#;

fn token(header: &[u8], payload: &[u8]) -> String {
    format!("{}.{}.{}", b64::encode(header), b64::encode(payload), b64::encode(b"signature"))
}

/// `parse` (and `parse_in`) give exactly the reference's answer for this header and payload.
fn assert_as_reference(header: &[u8], payload: &[u8]) -> Result<ReferenceJws<'static>, TokenError> {
    let token = token(header, payload);
    let want = reference_parse(token.as_bytes());
    let got = parse(token.as_bytes());
    let shown = String::from_utf8_lossy(header);
    assert_eq!(got.as_ref().map(Jws::as_reference).map_err(|e| *e), want, "header {shown}");
    let mut buf = DecodeBuf::new();
    let got_in = parse_in(token.as_bytes(), &mut buf);
    assert_eq!(got_in.as_ref().map(Jws::as_reference).map_err(|e| *e), want, "header {shown}");
    want.map(|r| ReferenceJws { signing_input: &[], payload_b64: &[], ..r })
}

fn header_error(header: &[u8]) -> TokenError {
    assert_as_reference(header, PAYLOAD).map(|_| ()).unwrap_err()
}

const NOT_AN_OBJECT: TokenError = TokenError::Malformed("header is not a JSON object");

#[test]
fn ordinary_headers() {
    let r = assert_as_reference(br#"{"alg":"HS256","kid":"k","typ":"JWT"}"#, PAYLOAD).unwrap();
    assert_eq!((r.alg, r.kid.as_deref(), r.typ.as_deref()), (Algorithm::HS256, Some("k"), Some("JWT")));
    let r = assert_as_reference(br#"{"typ":"JWT","alg":"ES256"}"#, PAYLOAD).unwrap();
    assert_eq!((r.alg, r.kid, r.typ.as_deref()), (Algorithm::ES256, None, Some("JWT")));
    // RFC 7515 A.1 writes its header with CR LF and a space: the full parser's shape, the same answer.
    let r = assert_as_reference(b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}", PAYLOAD).unwrap();
    assert_eq!(r.typ.as_deref(), Some("JWT"));
    for header in [
        &br#"{ "alg":"HS256"}"#[..],
        br#"{"alg" :"HS256"}"#,
        br#"{"alg": "HS256"}"#,
        br#"{"alg":"HS256" }"#,
        br#" {"alg":"HS256"}"#,
        b"{\"alg\":\"HS256\"}\n",
        br#"{"alg":"HS256","cty":"JWT","x5t#S256":"abc","b64":true,"n":-1.5e3,"o":{"a":[1,{}]}}"#,
    ] {
        assert_eq!(assert_as_reference(header, PAYLOAD).unwrap().alg, Algorithm::HS256);
    }
}

#[test]
fn headers_that_are_not_one_object() {
    for header in [
        &b"{"[..],
        b"}",
        b"{}}",
        b"{}{}",
        b"[]",
        br#"["HS256"]"#,
        br#""HS256""#,
        b"1",
        b"null",
        br#"{"alg":"HS256""#,
        br#"{"alg":"HS256",}"#,
        br#"{"alg":"HS256"}x"#,
        br#"{"alg":"HS256"},"#,
        br#"{"alg":"HS256"}}"#,
        br#"{"alg":"HS256";"kid":"k"}"#,
        br#"{"alg""HS256"}"#,
        br#"{alg:"HS256"}"#,
        br#"{'alg':'HS256'}"#,
        b"\xef\xbb\xbf{\"alg\":\"HS256\"}",
        b"{\"alg\":\"HS256\",\"kid\":\"\xff\"}",
        b"{\"alg\":\"HS256\",\"kid\":\"a\x01b\"}",
        b"{\"alg\":\"HS256\",\"kid\":\"a\nb\"}",
        br#"{"alg":"HS256","kid":"\ud800"}"#,
        br#"{"alg":"HS256","kid":"\x"}"#,
        br#"{"alg":"HS256","x":1e400}"#,
        br#"{"alg":"HS256","x":01}"#,
        br#"{"alg":"HS256","x":tru}"#,
    ] {
        assert_eq!(header_error(header), NOT_AN_OBJECT, "{}", String::from_utf8_lossy(header));
    }
}

#[test]
fn repeated_names_at_any_depth() {
    for header in [
        &br#"{"alg":"HS256","alg":"HS256"}"#[..],
        br#"{"alg":"HS256","al\u0067":"HS256"}"#,
        br#"{"kid":"a","alg":"HS256","kid":"a"}"#,
        br#"{"typ":"JWT","alg":"HS256","typ":"JWT"}"#,
        br#"{"typ":1,"alg":"HS256","typ":"JWT"}"#,
        br#"{"alg":"HS256","x":"1","x":"1"}"#,
        br#"{"alg":"HS256","x":1,"x":2}"#,
        br#"{"alg":"HS256","\u0078":1,"x":2}"#,
        br#"{"alg":"HS256","x":{"y":1,"y":2}}"#,
        br#"{"alg":"HS256","x":[{"y":1,"y":2}]}"#,
        br#"{"alg":{"a":1,"a":2}}"#,
        br#"{"alg":"HS256","kid":[{"a":1,"a":2}]}"#,
        // A repeated forbidden member is a JSON error first.
        br#"{"alg":"HS256","jku":"a","jku":"b"}"#,
        br#"{"alg":"HS256","jku":"a","j\u006bu":"b"}"#,
        // More unread names than the plain reader tracks, and a repeat after them.
        br#"{"alg":"HS256","a":"1","b":"2","c":"3","d":"4","a":"5"}"#,
        br#"{"alg":"HS256","a":"1","b":"2","c":"3","d":"4","e":"5","e":"6"}"#,
    ] {
        assert_eq!(header_error(header), NOT_AN_OBJECT, "{}", String::from_utf8_lossy(header));
    }
    let many = br#"{"alg":"HS256","a":"1","b":"2","c":"3","d":"4","e":"5","f":"6"}"#;
    assert_eq!(assert_as_reference(many, PAYLOAD).unwrap().alg, Algorithm::HS256);
}

#[test]
fn nesting_is_capped_at_four() {
    assert!(assert_as_reference(br#"{"alg":"HS256","x":{"a":{"b":{"c":1}}}}"#, PAYLOAD).is_ok());
    assert!(assert_as_reference(br#"{"alg":"HS256","x":[[[]]]}"#, PAYLOAD).is_ok());
    assert_eq!(header_error(br#"{"alg":"HS256","x":{"a":{"b":{"c":{}}}}}"#), NOT_AN_OBJECT);
    assert_eq!(header_error(br#"{"alg":"HS256","x":[[[[]]]]}"#), NOT_AN_OBJECT);
    // The same cap through the members that are read.
    assert_eq!(header_error(br#"{"alg":[[["HS256"]]]}"#), TokenError::UnsupportedAlgorithm);
    assert_eq!(header_error(br#"{"alg":[[[["HS256"]]]]}"#), NOT_AN_OBJECT);
    assert_eq!(header_error(br#"{"alg":"HS256","kid":{"a":{"b":[]}}}"#), TokenError::UnknownKey);
    assert_eq!(header_error(br#"{"alg":"HS256","kid":{"a":{"b":[[]]}}}"#), NOT_AN_OBJECT);
    let deep = format!(r#"{{"alg":"HS256","x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(header_error(deep.as_bytes()), NOT_AN_OBJECT);
}

#[test]
fn forbidden_members_whatever_their_value_or_spelling() {
    for (i, name) in FORBIDDEN_HEADERS.iter().enumerate() {
        for value in ["\"x\"", "null", "[]", "{\"k\":1}", "true", "0"] {
            let header = format!(r#"{{"alg":"HS256","{name}":{value}}}"#);
            assert_eq!(header_error(header.as_bytes()), TokenError::ForbiddenHeader(name), "{header}");
        }
        // Found after unescaping, and before alg is even looked at.
        let escaped: String = name.chars().map(|c| format!("\\u{:04x}", u32::from(c))).collect();
        let header = format!(r#"{{"{escaped}":"x","alg":"none"}}"#);
        assert_eq!(header_error(header.as_bytes()), TokenError::ForbiddenHeader(name), "{header}");
        // With several, the first in FORBIDDEN_HEADERS' order is the one reported.
        let later: Vec<String> = FORBIDDEN_HEADERS[i..].iter().rev().map(|n| format!(r#""{n}":"x""#)).collect();
        let header = format!(r#"{{"alg":"HS256",{}}}"#, later.join(","));
        assert_eq!(header_error(header.as_bytes()), TokenError::ForbiddenHeader(name), "{header}");
    }
    // Near misses are ordinary members.
    for name in ["JKU", "jku ", "x5t", "crit2", "zi"] {
        let header = format!(r#"{{"alg":"HS256","{name}":"x"}}"#);
        assert!(assert_as_reference(header.as_bytes(), PAYLOAD).is_ok(), "{header}");
    }
}

#[test]
fn alg_kid_and_typ_types_and_bounds() {
    assert_eq!(header_error(b"{}"), TokenError::Malformed("header has no alg"));
    assert_eq!(header_error(br#"{"kid":"k"}"#), TokenError::Malformed("header has no alg"));
    for alg in ["7", "null", "true", "[\"HS256\"]", "{\"a\":1}", "\"none\"", "\"hs256\"", "\"\""] {
        let header = format!(r#"{{"alg":{alg}}}"#);
        assert_eq!(header_error(header.as_bytes()), TokenError::UnsupportedAlgorithm, "{header}");
    }
    let long = "a".repeat(MAX_KID_BYTES);
    let longer = "a".repeat(MAX_KID_BYTES + 1);
    for kid in ["\"\"", "7", "null", "[]", "{}", &format!("\"{longer}\"")] {
        let header = format!(r#"{{"alg":"HS256","kid":{kid}}}"#);
        assert_eq!(header_error(header.as_bytes()), TokenError::UnknownKey, "{header}");
    }
    let header = format!(r#"{{"alg":"HS256","kid":"{long}"}}"#);
    assert_eq!(assert_as_reference(header.as_bytes(), PAYLOAD).unwrap().kid, Some(long.clone()));
    for typ in ["7", "null", "false", "[\"JWT\"]", "{}"] {
        let header = format!(r#"{{"alg":"HS256","typ":{typ}}}"#);
        assert_eq!(header_error(header.as_bytes()), TokenError::Malformed("header typ is not a string"), "{header}");
    }
    // Escaped strings are unescaped (and so owned); unescaped non-ASCII and DEL are plain.
    let r = assert_as_reference(br#"{"alg":"HS\u0032\u00356","kid":"k\u0000\n","typ":"J\/T"}"#, PAYLOAD);
    let r = r.unwrap();
    assert_eq!((r.alg, r.kid.as_deref(), r.typ.as_deref()), (Algorithm::HS256, Some("k\0\n"), Some("J/T")));
    let r = assert_as_reference("{\"alg\":\"HS256\",\"kid\":\"ключ\x7f\"}".as_bytes(), PAYLOAD).unwrap();
    assert_eq!(r.kid.as_deref(), Some("ключ\x7f"));
    // The kid's length counts its bytes once unescaped.
    let escaped_long = format!(r#"{{"alg":"HS256","kid":"{}\u0061"}}"#, "a".repeat(MAX_KID_BYTES - 1));
    assert_eq!(assert_as_reference(escaped_long.as_bytes(), PAYLOAD).unwrap().kid, Some(long));
    let escaped_longer = format!(r#"{{"alg":"HS256","kid":"{}\u0061"}}"#, "a".repeat(MAX_KID_BYTES));
    assert_eq!(header_error(escaped_longer.as_bytes()), TokenError::UnknownKey);
}

#[test]
fn headers_too_large_for_the_stack_buffer() {
    let padding = "p".repeat(2 * HEADER_STACK_BYTES);
    let header = format!(r#"{{"alg":"HS256","x":"{padding}","kid":"k","typ":"JWT"}}"#);
    let r = assert_as_reference(header.as_bytes(), PAYLOAD).unwrap();
    assert_eq!((r.kid.as_deref(), r.typ.as_deref()), (Some("k"), Some("JWT")));
    let header = format!(r#"{{"alg":"HS256","x":"{padding}","x":1}}"#);
    assert_eq!(header_error(header.as_bytes()), NOT_AN_OBJECT);
    // Exactly at the boundary, and one byte over.
    for extra in [0, 1] {
        let fill = HEADER_STACK_BYTES + extra - r#"{"alg":"HS256","x":""}"#.len();
        let header = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "f".repeat(fill));
        assert_eq!(header.len(), HEADER_STACK_BYTES + extra);
        assert!(assert_as_reference(header.as_bytes(), PAYLOAD).is_ok());
    }
}

/// What [`recent`] would answer for this header now, as (alg, kid, typ).
fn recalled(header: &[u8]) -> Option<(Algorithm, Option<String>, Option<String>)> {
    let mut out = [0; HEADER_STACK_BYTES];
    let recalled = recent::recall(b64::encode(header).as_bytes(), &mut out)?;
    let h = recalled.view(&out).unwrap();
    Some((h.alg, h.kid.map(Cow::into_owned), h.typ.map(Cow::into_owned)))
}

#[test]
fn recently_accepted_headers_are_kept_and_recalled_only_for_their_bytes() {
    let ordinary = br#"{"alg":"HS256","kid":"k","typ":"JWT"}"#;
    let ours = Some((Algorithm::HS256, Some("k".to_owned()), Some("JWT".to_owned())));
    assert_as_reference(ordinary, PAYLOAD).unwrap();
    assert_eq!(recalled(ordinary), ours);
    // A byte apart, in the JSON or in its encoding, is another header.
    assert_eq!(recalled(br#"{"alg":"HS256","kid":"j","typ":"JWT"}"#), None);
    let mut encoded = b64::encode(ordinary).into_bytes();
    encoded[5] ^= 1;
    assert!(recent::recall(&encoded, &mut [0; HEADER_STACK_BYTES]).is_none());
    // Refused headers are not kept, and leave the last accepted one in place.
    let long_kid = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(MAX_KID_BYTES + 1));
    for refused in
        [&br#"{"alg":"none"}"#[..], br#"{"alg":"HS256","jku":"x"}"#, br#"{"alg":"HS256","kid":7}"#, long_kid.as_bytes()]
    {
        assert!(assert_as_reference(refused, PAYLOAD).is_err());
        assert_eq!(recalled(refused), None);
        assert_eq!(recalled(ordinary), ours);
    }
    // Accepted, but not kept: a kid that needed unescaping is not a slice of the header, and a header past
    // the kept length is read every time. Neither displaces the one kept.
    let escaped = br#"{"alg":"HS256","kid":"\u006b"}"#;
    let long = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "x".repeat(recent::MAX_BYTES));
    for unkept in [&escaped[..], long.as_bytes()] {
        assert!(assert_as_reference(unkept, PAYLOAD).is_ok());
        assert_eq!(recalled(unkept), None);
        assert_eq!(recalled(ordinary), ours);
    }
    // The longest kept header, and the next, both read as the reference reads them.
    let fill =
        |len: usize| format!(r#"{{"alg":"ES256","x":"{}"}}"#, "y".repeat(len - r#"{"alg":"ES256","x":""}"#.len()));
    assert!(assert_as_reference(fill(recent::MAX_BYTES).as_bytes(), PAYLOAD).is_ok());
    assert_eq!(recalled(fill(recent::MAX_BYTES).as_bytes()), Some((Algorithm::ES256, None, None)));
    assert!(assert_as_reference(fill(recent::MAX_BYTES + 1).as_bytes(), PAYLOAD).is_ok());
    assert_eq!(recalled(fill(recent::MAX_BYTES + 1).as_bytes()), None);
    // A few are kept; the oldest gives way.
    let kids: Vec<String> = (0..6).map(|i| format!(r#"{{"alg":"HS256","kid":"key-{i}"}}"#)).collect();
    for kid in &kids {
        assert!(assert_as_reference(kid.as_bytes(), PAYLOAD).is_ok());
    }
    let kept: Vec<bool> = kids.iter().map(|kid| recalled(kid.as_bytes()).is_some()).collect();
    assert_eq!(kept, [false, false, true, true, true, true]);
    assert_eq!(recalled(kids[5].as_bytes()), Some((Algorithm::HS256, Some("key-5".to_owned()), None)));
    // Each token read after every other one, and after itself, gives the reference's answer.
    let headers = [
        &ordinary[..],
        br#"{"alg":"ES256","kid":"k"}"#,
        br#"{"typ":"JWT","alg":"HS256"}"#,
        escaped,
        br#"{"alg":"none"}"#,
    ];
    for first in headers {
        for second in headers {
            for header in [first, second, first, first] {
                let _ = assert_as_reference(header, PAYLOAD);
            }
        }
    }
}

#[test]
fn payloads_kept_as_text_or_parsed_and_their_errors() {
    let header = br#"{"alg":"HS256"}"#;
    let many: Vec<String> = (0..70).map(|i| format!(r#""m{i}":{i}"#)).collect();
    let wide_nested: Vec<String> = (0..17).map(|i| format!(r#""n{i}":{i}"#)).collect();
    for (payload, scanned) in [
        (format!(r#"{{"sub":"{}"}}"#, "s".repeat(4096)), true),
        (format!("{{{}}}", many[..64].join(",")), true),
        (format!("{{{}}}", many.join(",")), false),
        (format!(r#"{{"x":{{{}}}}}"#, wide_nested[..16].join(",")), true),
        (format!(r#"{{"x":{{{}}}}}"#, wide_nested.join(",")), false),
        (r#"{"sub":"a\u0062"}"#.to_owned(), false),
        (r#"{"exp":1.5}"#.to_owned(), false),
    ] {
        assert_as_reference(header, payload.as_bytes()).unwrap();
        let claims = parse(token(header, payload.as_bytes()).as_bytes()).unwrap().claims;
        assert_eq!(claims.is_map_built(), !scanned, "{payload}");
    }
    let big_dup = format!(r#"{{"sub":"{}","sub":1}}"#, "s".repeat(4096));
    let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(40), "]".repeat(40));
    let late_dup = format!("{{{},\"m3\":1}}", many[..10].join(","));
    let nested_dup = format!(r#"{{"x":[{{{},"n1":1}}]}}"#, wide_nested[..5].join(","));
    for (payload, want) in [
        (&big_dup[..], "payload is not a JSON object"),
        (&late_dup, "payload is not a JSON object"),
        (&nested_dup, "payload is not a JSON object"),
        (&deep, "payload is nested too deeply"),
        ("[]", "payload is not a JSON object"),
        ("{\"a\":1} x", "payload is not a JSON object"),
    ] {
        let got = assert_as_reference(header, payload.as_bytes()).map(|_| ());
        assert_eq!(got, Err(TokenError::Malformed(want)), "{payload}");
    }
}

#[test]
fn signatures_on_and_off_the_stack() {
    let head = format!("{}.{}", b64::encode(br#"{"alg":"RS256"}"#), b64::encode(PAYLOAD));
    for len in [1, 64, SIGNATURE_STACK_BYTES - 1, SIGNATURE_STACK_BYTES, SIGNATURE_STACK_BYTES + 1, 2048] {
        let signature: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let token = format!("{head}.{}", b64::encode(&signature));
        let parsed = parse(token.as_bytes()).unwrap();
        assert_eq!(parsed.as_reference(), reference_parse(token.as_bytes()).unwrap());
        assert_eq!(&*parsed.signature, &signature[..], "{len}");
        let mut buf = DecodeBuf::new();
        assert_eq!(&*parse_in(token.as_bytes(), &mut buf).unwrap().signature, &signature[..], "{len}");
    }
}

#[test]
fn segments_and_encodings() {
    let valid = token(br#"{"alg":"HS256"}"#, PAYLOAD);
    let (h, rest) = valid.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    for bad in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.x.y"),
        format!(".{p}.{s}"),
        format!("{h}..{s}"),
        format!("{h}.{p}."),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}=.{s}"),
        format!("{h}.{p}.{s}="),
        format!("{h}.{p}x.{s}"),
        format!("{h}.{p}.{s}x"),
        format!("{h} .{p}.{s}"),
        "..".to_owned(),
        "...".to_owned(),
        // Dots between the outermost two are counted before any other fault is told.
        format!("{h}.{p}.x.{s}"),
        format!("!.{p}.{s}."),
        format!("{h}.{p}..{s}"),
        format!("{h}.x.{s}.."),
        format!("{h}.{p}.{s}.{s}"),
        "a.b.c.d".to_owned(),
        String::new(),
    ] {
        let want = reference_parse(bad.as_bytes());
        assert!(want.is_err(), "{bad}");
        assert_eq!(parse(bad.as_bytes()).map(|j| j.as_reference().alg), want.map(|r| r.alg), "{bad}");
    }
    // Dots found eight bytes at a time from either end: in every position of a word, in the bytes left
    // over at either end, and with dots in between.
    for len in 0..40 {
        for middle in ["b", "bb.b", "b.b.b", "."] {
            let middle = middle.repeat(len % 7 + 1);
            let token = format!("{}.{middle}.{}", "a".repeat(len), "c".repeat(len % 5 + 1));
            assert_eq!(outer_dots(token.as_bytes()), Ok((len, len + middle.len() + 1)), "{token}");
        }
        let token = format!("{}.{}", "a".repeat(len), "c".repeat(len % 9));
        assert_eq!(outer_dots(token.as_bytes()), Err(NOT_THREE), "{token}");
        assert_eq!(outer_dots(token.replace('.', "").as_bytes()), Err(NOT_THREE), "{token}");
    }
}

#[test]
fn the_plain_header_reader_agrees_with_the_full_one() {
    // Every header the plain reader accepts must read the same through serde_json.
    for header in [
        &br#"{}"#[..],
        br#"{"alg":"HS256"}"#,
        br#"{"alg":"HS256","kid":"k","typ":"JWT"}"#,
        br#"{"jku":"x","alg":"HS256"}"#,
        br#"{"x":"1","y":"2","z":"3","w":"4","alg":"none"}"#,
        "{\"alg\":\"ES256\",\"kid\":\"ключ\x7f\"}".as_bytes(),
        // Read by the JSON scanner since the header goes through it: other types, whitespace, more members,
        // nesting within the header's cap.
        br#"{"alg":1}"#,
        br#"{"alg":"HS256" }"#,
        br#"{"a":"1","b":"2","c":"3","d":"4","e":"5"}"#,
        br#"{"alg":"HS256","kid":["k"],"typ":{"t":"JWT"},"n":12,"x5c":null}"#,
        br#"{"alg":"HS256","a":{"b":{"c":[1]}}}"#,
    ] {
        let plain = Header::parse_plain(header).unwrap();
        let mut de = serde_json::Deserializer::from_slice(header);
        let full = (&mut de).deserialize_any(HeaderVisitor).unwrap();
        de.end().unwrap();
        assert_eq!(plain, full, "{}", String::from_utf8_lossy(header));
    }
    for declined in [
        &br#"{"alg":"HS256","alg":"HS256"}"#[..],
        br#"{"alg":"HS\u0032"}"#,
        br#"{"jku":"1","jku":"2"}"#,
        br#"{"alg":"HS256","x":{"a":1,"a":2}}"#,
        br#"{"alg":"HS256","n":1.5}"#,
        br#"{"alg":"HS256","a":{"b":{"c":{"d":{}}}}}"#,
    ] {
        assert_eq!(Header::parse_plain(declined), None, "{}", String::from_utf8_lossy(declined));
    }
}
