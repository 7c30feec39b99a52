//! The tape against `json::parse_value`, on edge cases and arbitrary input.

use super::*;
use proptest::prelude::*;

fn agrees(text: &str) {
    let ours = Tape::parse(text.as_bytes(), 8).map(|_| ());
    let reference = crate::json::parse_value(text.as_bytes(), 8).map(|_| ());
    assert_eq!(ours.is_ok(), reference.is_ok(), "{text:?}: tape {ours:?}, parse_value {reference:?}");
}

#[test]
fn accepts_and_refuses_what_parse_value_does() {
    for text in [
        "{}",
        "[]",
        "1",
        "-0",
        "0.5",
        "1e5",
        "-1.5E-3",
        "1e400",
        "-1e400",
        "1e-400",
        "01",
        "1.",
        ".5",
        "+1",
        "-",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999",
        "1E+2",
        r#""\u0061""#,
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        r#""\ude00""#,
        r#""\ud83dx""#,
        r#""\ud83d\u0061""#,
        "\"\\x\"",
        "\"a\tb\"",
        "\"\u{7f}\"",
        r#"{"a":1,"a":2}"#,
        r#"{"a":1,"\u0061":2}"#,
        r#"{"a":{"b":1,"b":1}}"#,
        r#"[{"a":1},{"a":1}]"#,
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\"}",
        "{1:2}",
        "true",
        "tru",
        "nul",
        "null x",
        " \t\n\r{} ",
        "\u{feff}{}",
        "[[[[[[[[1]]]]]]]]",
        "[[[[[[[[[1]]]]]]]]]",
        r#"{"a":[{"b":{"c":[1]}}]}"#,
        r#""\/\b\f\n\r\t\"\\""#,
        "\"\u{e9}\"",
        "[1 2]",
        "{\"a\" 1}",
        "\"unterminated",
        "[\"a\",\"a\"]",
    ] {
        agrees(text);
    }
    let many: String = format!("{{{}}}", (0..40).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(","));
    agrees(&many);
    let repeated = format!("{{{},\"k3\":0}}", (0..40).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(","));
    agrees(&repeated);
    assert_eq!(Tape::parse(br#"{"a":1,"a":2}"#, 8).err(), Some(JsonError::DuplicateMember));
    // A repeat near the end of the text (where fewer than eight bytes follow the name) is still one.
    for name in ["ab", "abcdefg", "abcdefgh", "abcdefghi"] {
        let text = format!(r#"{{"{name}":1,"{name}":2}}"#);
        assert_eq!(Tape::parse(text.as_bytes(), 8).err(), Some(JsonError::DuplicateMember), "{text}");
        let text = format!(r#"{{"{name}":1,"x":[],"{name}":{{}}}}"#);
        assert_eq!(Tape::parse(text.as_bytes(), 8).err(), Some(JsonError::DuplicateMember), "{text}");
    }
    assert_eq!(Tape::parse(b"[[[1]]]", 2).err(), Some(JsonError::TooDeep));
}

#[test]
fn nodes_give_members_items_spans_and_values() {
    let text = br#" {"a": "x\n", "b": [1, {"c": null}], "d": -2.5} "#;
    let tape = Tape::parse(text, 8).unwrap();
    let root = tape.root();
    assert_eq!(root.kind(), Kind::Object);
    let names: Vec<String> = root.members().map(|(n, _)| n.into_owned()).collect();
    assert_eq!(names, ["a", "b", "d"]);
    assert_eq!(root.get("a").unwrap().as_str().as_deref(), Some("x\n"));
    let b = root.get("b").unwrap();
    assert_eq!(b.raw(), r#"[1, {"c": null}]"#);
    let items: Vec<Kind> = b.items().map(|n| n.kind()).collect();
    assert_eq!(items, [Kind::Number, Kind::Object]);
    assert_eq!(root.get("d").unwrap().to_value(), Some(serde_json::json!(-2.5)));
    assert!(root.get("e").is_none());
    assert_eq!(&text[root.span()], &text[1..text.len() - 1]);
}

proptest! {
    #[test]
    fn agrees_with_parse_value_on_arbitrary_text(text in "[ \\[\\]{}\",:0-9a-z\\\\.eE+-]{0,40}") {
        agrees(&text);
    }

    #[test]
    fn repeated_names_are_found_wherever_they_stand(
        names in proptest::collection::vec("[a-c]{0,10}", 1..24),
        repeat in any::<proptest::sample::Index>(),
        tail in "[ ]{0,3}",
    ) {
        let mut members: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("\"{n}{i}\":{i}")).collect();
        let again = names.len() - 1 - repeat.index(names.len());
        members.push(format!("\"{}{again}\":0", names[again]));
        let text = format!("{{{}}}{tail}", members.join(","));
        prop_assert_eq!(Tape::parse(text.as_bytes(), 8).err(), Some(JsonError::DuplicateMember), "{}", text);
    }

    #[test]
    fn agrees_with_parse_value_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let ours = Tape::parse(&bytes, 8).is_ok();
        prop_assert_eq!(ours, crate::json::parse_value(&bytes, 8).is_ok());
    }

    #[test]
    fn values_and_members_read_as_serde_json_reads_them(value in arbitrary_json(3)) {
        let text = value.to_string();
        // serde_json's own reading of the text (its float parsing need not give back the generated value).
        let value: Value = serde_json::from_str(&text).unwrap();
        let tape = Tape::parse(text.as_bytes(), 8).unwrap();
        let root = tape.root();
        prop_assert_eq!(root.to_value(), Some(value.clone()));
        if let Value::Object(map) = &value {
            for (name, member) in map {
                let read = root.get(name).and_then(|n| n.to_value());
                prop_assert_eq!(read.as_ref(), Some(member));
            }
            prop_assert!(root.get("absent-name").is_none() || map.contains_key("absent-name"));
        }
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them(text in "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?") {
        let tape = Tape::parse(text.as_bytes(), 8);
        let reference: Result<Value, _> = serde_json::from_str(&text);
        match (tape, reference) {
            (Ok(tape), Ok(v)) => prop_assert_eq!(tape.root().to_value(), Some(v)),
            (Err(_), Err(_)) => {}
            (t, r) => prop_assert!(false, "{text}: tape {:?}, serde_json {:?}", t.map(|_| ()), r),
        }
    }

    #[test]
    fn agrees_on_generated_documents(value in arbitrary_json(4)) {
        let text = value.to_string();
        agrees(&text);
        prop_assert!(Tape::parse(text.as_bytes(), 8).is_ok());
    }
}

fn arbitrary_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-c\u{e9}\\\\\"]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Documents that exercise the reader's fast paths: names that end within, at and past the first eight
/// bytes, escapes and surrogates, numbers at the edges of the `f64` range, nesting at the cap, whitespace of
/// all four kinds.
const EDGES: &[&str] = &[
    r#"{"abcdefg":1,"abcdefgh":2,"abcdefghi":3,"abcdefg":4}"#,
    r#"{"abcdefgh":1,"abcdefghi":2,"abcdefgh":3}"#,
    r#"{"abcdefghij":1,"abcdefghik":2}"#,
    r#"{"abcdefghij":1,"abcdefghij":2}"#,
    r#"{"a\"b":1,"a\u0022b":2}"#,
    r#"{"\u00e9":1,"é":2}"#,
    r#"{"x":{"y":1},"y":{"x":1,"y":2,"x":3}}"#,
    r#"["\ud800\udc00","\udbff\udfff"]"#,
    r#"["\ud800\ud800"]"#,
    r#"["\ud800\\udc00"]"#,
    r#"["\u12"]"#,
    r#"["\uD83D\uDE00","\uZZZZ"]"#,
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "-1.7976931348623157e308",
    "2e308",
    "5e-324",
    "1e-400",
    "0e999999999",
    "-0.0e-0",
    "1E400",
    "[1e1,1E+1,1e-1,1.0e1]",
    "[1.e1]",
    "[1e]",
    "[1e+]",
    "[-]",
    "[00]",
    "[-01]",
    "[[[[[[[[]]]]]]]]",
    "[[[[[[[[[]]]]]]]]]",
    r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}"#,
    r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}"#,
    " \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\ntrue \t\r\n] \t\r\n} \t\r\n",
    "{\"a\"\u{b}:1}",
    "[1,\u{c}2]",
    "\"tab\there\"",
    "\"12345678\u{1f}\"",
    "\"1234567\\\"\"",
    "\"123456789012345\\\\\"",
];

#[test]
fn agrees_on_edges() {
    for text in EDGES {
        agrees(text);
    }
}

#[test]
fn agrees_on_every_truncation_and_every_byte_removed() {
    for text in EDGES.iter().copied().chain([r#"{"a":[1,{"b":"c\u00e9\n"}],"d":-1.5e3,"e":null,"f":false}"#]) {
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let ours = Tape::parse(&bytes[..cut], 8).is_ok();
            assert_eq!(ours, crate::json::parse_value(&bytes[..cut], 8).is_ok(), "{:?}", &bytes[..cut]);
            let mut removed = bytes.to_vec();
            if cut < removed.len() {
                removed.remove(cut);
                let ours = Tape::parse(&removed, 8).is_ok();
                assert_eq!(ours, crate::json::parse_value(&removed, 8).is_ok(), "{removed:?}");
            }
        }
    }
}

/// Whether the string `"{ascii}{inner}"` is one the reader accepts, against what `str::from_utf8` accepts (and
/// JSON: no quote, backslash or control character).
fn string_agrees_with_str(ascii: &[u8], inner: &[u8]) {
    let mut doc = vec![b'"'];
    doc.extend_from_slice(ascii);
    doc.extend_from_slice(inner);
    doc.push(b'"');
    let expected = std::str::from_utf8(inner).is_ok() && inner.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
    assert_eq!(Tape::parse(&doc, 8).is_ok(), expected, "{doc:02x?}");
}

/// The reader's UTF-8 check is what lets the tape hand out its text as `str`: every sequence of one and two
/// bytes from 0x80, three-byte ones with every second byte and the third around each boundary, four-byte ones
/// with every second byte and the others around each boundary, each at the start of a string's first word, in
/// it, across its end and in the words after it.
#[test]
fn strings_hold_exactly_the_utf8_that_str_accepts() {
    const EDGES: [u8; 12] = [0x00, 0x22, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF];
    for lead in 0x80..=0xFFu8 {
        string_agrees_with_str(b"", &[lead]);
        for second in 0..=0xFFu8 {
            string_agrees_with_str(b"", &[lead, second]);
            for third in EDGES {
                string_agrees_with_str(b"", &[lead, second, third]);
                if lead >= 0xF0 {
                    for fourth in EDGES {
                        string_agrees_with_str(b"", &[lead, second, third, fourth]);
                    }
                }
            }
        }
    }
    let samples: [&[u8]; 10] = [
        "é".as_bytes(),
        "€".as_bytes(),
        "😀".as_bytes(),
        b"\xC3",
        b"\xE2\x82",
        b"\xF0\x9F\x98",
        b"\xED\xA0\x80",
        b"\xC0\xAF",
        b"\xF4\x90\x80\x80",
        b"\xE2\x82\xACx\xFF",
    ];
    for ascii in 0..20 {
        let ascii = &b"abcdefghijklmnopqrst"[..ascii];
        for sample in samples {
            string_agrees_with_str(ascii, sample);
            string_agrees_with_str(ascii, &[sample, b"tail of some length"].concat());
        }
    }
}

proptest! {
    #[test]
    fn repeated_names_are_found_in_nested_objects_and_large_ones(
        names in proptest::collection::vec("[a-c\\\\\"]{0,12}", 1..40),
        repeat in any::<proptest::sample::Index>(),
        escape in any::<bool>(),
    ) {
        // Names of all lengths (around the eight bytes the hash reads), some escaped, in an object nested in
        // an array and an object; the repeat spelled with a `\u` escape or not.
        let name = |n: &str, i: usize| format!("{}{i}", n.replace('\\', "\\\\").replace('"', "\\\""));
        let mut members: Vec<String> =
            names.iter().enumerate().map(|(i, n)| format!("\"{}\":[{i}]", name(n, i))).collect();
        let again = repeat.index(names.len());
        let repeated = name(&names[again], again);
        let repeated = match repeated.find(|c: char| c.is_ascii_digit()) {
            Some(at) if escape => format!(r"{}\u{:04x}{}", &repeated[..at], repeated.as_bytes()[at], &repeated[at + 1..]),
            _ => repeated,
        };
        members.push(format!("\"{repeated}\":{{}}"));
        let text = format!("[{{\"x\":{{{}}}}}]", members.join(","));
        prop_assert_eq!(Tape::parse(text.as_bytes(), 8).err(), Some(JsonError::DuplicateMember), "{}", text);
        agrees(&text);
    }

    #[test]
    fn agrees_on_json_like_text_with_escapes_and_whitespace(
        text in "[ \\t\\r\\n\\[\\]{}\",:0-9a-fuE+.\\\\-]{0,48}",
    ) {
        agrees(&text);
    }
}
