use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Filters `message` keeping the names `keep` lists; answers the new text (the original when unchanged).
fn run(message: &str, kind: ListKind, private: bool, keep: &[&str]) -> Result<(Filtered, String), ListError> {
    let filtered = filter_response(message.as_bytes(), kind, private, &mut |name| keep.contains(&name))?;
    let text = match &filtered {
        Filtered::Unchanged => message.to_owned(),
        Filtered::Rewritten(bytes) => String::from_utf8(bytes.clone()).expect("UTF-8 output"),
    };
    Ok((filtered, text))
}

fn rewritten(message: &str, kind: ListKind, private: bool, keep: &[&str]) -> String {
    match run(message, kind, private, keep) {
        Ok((Filtered::Rewritten(_), text)) => text,
        other => panic!("expected a rewrite of {message}, got {other:?}"),
    }
}

fn unchanged(message: &str, kind: ListKind, private: bool, keep: &[&str]) {
    assert_eq!(run(message, kind, private, keep).map(|(f, _)| f), Ok(Filtered::Unchanged), "{message}");
}

fn error(message: &[u8], kind: ListKind) -> ListError {
    match filter_response(message, kind, true, &mut |_| true) {
        Err(e) => e,
        Ok(f) => panic!("expected an error for {}, got {f:?}", String::from_utf8_lossy(message)),
    }
}

/// A tools/list response with `n` tools `tool_0`... as an upstream would write it: descriptions with escapes,
/// schemas, annotations, a cursor, `_meta` and the 2026-07-28 cache fields.
fn tools_response(n: usize) -> String {
    let tools: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "name": format!("tool_{i}"),
                "title": format!("Tool {i}"),
                "description": format!("Does thing {i}.\nUse it \"carefully\" \\ with unicode: é ✓ {i}"),
                "inputSchema": {"type": "object", "properties": {
                    "account_id": {"type": "string", "description": "the account"},
                    "amount": {"type": "number", "minimum": 0, "maximum": 1_000_000},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}}},
                    "required": ["account_id"]},
                "annotations": {"readOnlyHint": i % 2 == 0, "openWorldHint": false},
            })
        })
        .collect();
    let tools = serde_json::to_string(&tools).expect("serialise");
    format!(
        r#"{{"jsonrpc":"2.0","id":"list-1","result":{{"resultType":"complete","tools":{tools},"nextCursor":"c2","ttlMs":60000,"cacheScope":"public","_meta":{{"x.example/k":[1,2.5,-3e2]}},"zz_unknown":18446744073709551616123}}}}"#
    )
}

#[test]
fn kinds_map_methods_to_their_array_and_key() {
    for (method, kind, array, key) in [
        ("tools/list", ListKind::Tools, "tools", "name"),
        ("prompts/list", ListKind::Prompts, "prompts", "name"),
        ("resources/list", ListKind::Resources, "resources", "uri"),
        ("resources/templates/list", ListKind::ResourceTemplates, "resourceTemplates", "uriTemplate"),
    ] {
        assert_eq!(ListKind::of_method(method), Some(kind));
        assert_eq!(kind.method(), method);
        assert_eq!(kind.array_key(), array);
        assert_eq!(kind.entry_key(), key);
    }
    for other in ["tools/call", "tools/list/", "Tools/list", "", "resources/read", "resources/templates"] {
        assert_eq!(ListKind::of_method(other), None, "{other}");
    }
}

#[test]
fn a_hundred_tools_filtered_to_ten() {
    let message = tools_response(100);
    let allowed: Vec<String> = (0..100).step_by(10).map(|i| format!("tool_{i}")).collect();
    let mut asked = Vec::new();
    let filtered = filter_response(message.as_bytes(), ListKind::Tools, false, &mut |name| {
        asked.push(name.to_owned());
        allowed.iter().any(|a| a == name)
    });
    let Ok(Filtered::Rewritten(out)) = filtered else { panic!("{filtered:?}") };
    // Every entry asked about once, in order.
    assert_eq!(asked, (0..100).map(|i| format!("tool_{i}")).collect::<Vec<_>>());

    let before: Value = serde_json::from_str(&message).expect("input");
    let after: Value = serde_json::from_slice(&out).expect("output is JSON");
    let names: Vec<_> = after["result"]["tools"].as_array().expect("tools").iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, allowed.iter().map(|a| json!(a)).collect::<Vec<_>>());
    // The kept entries are the upstream's, whole.
    for (i, tool) in after["result"]["tools"].as_array().expect("tools").iter().enumerate() {
        assert_eq!(tool, &before["result"]["tools"][i * 10]);
    }
    // Everything else as it was, byte for byte: the text before and after the array is the upstream's.
    let text = String::from_utf8(out).expect("UTF-8");
    let (head, _) = message.split_once(r#""tools":["#).expect("head");
    let (_, tail) = message.rsplit_once(r#"}],"nextCursor""#).expect("tail");
    assert!(text.starts_with(&format!(r#"{head}"tools":["#)), "{text}");
    assert!(text.ends_with(&format!(r#"}}],"nextCursor"{tail}"#)), "{text}");
    assert!(text.contains(r#""zz_unknown":18446744073709551616123}"#), "big integers kept as written");
}

#[test]
fn nothing_removed_and_not_private_is_unchanged() {
    let message = tools_response(3);
    unchanged(&message, ListKind::Tools, false, &["tool_0", "tool_1", "tool_2"]);
    unchanged(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#, ListKind::Tools, false, &[]);
}

#[test]
fn private_sets_the_cache_scope() {
    // Replaced where it stands.
    assert_eq!(
        rewritten(
            r#"{"id":1,"result":{"tools":[{"name":"a"}],"ttlMs":5,"cacheScope":"public"}}"#,
            ListKind::Tools,
            true,
            &["a"]
        ),
        r#"{"id":1,"result":{"tools":[{"name":"a"}],"ttlMs":5,"cacheScope":"private"}}"#
    );
    // Any value, even one that is not a string.
    assert_eq!(
        rewritten(r#"{"id":1,"result":{"cacheScope" : 7 ,"tools":[]}}"#, ListKind::Tools, true, &[]),
        r#"{"id":1,"result":{"cacheScope" : "private" ,"tools":[]}}"#
    );
    // Added first when absent (revisions before 2026-07-28 have none; the caller decides when to ask).
    assert_eq!(
        rewritten(r#"{"id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#, ListKind::Tools, true, &["b"]),
        r#"{"id":1,"result":{"cacheScope":"private","tools":[{"name":"b"}]}}"#
    );
    // Already private, nothing removed: nothing to do.
    unchanged(r#"{"id":1,"result":{"tools":[{"name":"a"}],"cacheScope":"private"}}"#, ListKind::Tools, true, &["a"]);
    // Already private, one removed: only the entry goes.
    assert_eq!(
        rewritten(
            r#"{"id":1,"result":{"cacheScope":"private","tools":[{"name":"a"},{"name":"b"}]}}"#,
            ListKind::Tools,
            true,
            &["a"]
        ),
        r#"{"id":1,"result":{"cacheScope":"private","tools":[{"name":"a"}]}}"#
    );
    // An escaped spelling of the member is the member.
    assert_eq!(
        rewritten(r#"{"id":1,"result":{"tools":[],"cache\u0053cope":"public"}}"#, ListKind::Tools, true, &[]),
        r#"{"id":1,"result":{"tools":[],"cache\u0053cope":"private"}}"#
    );
}

#[test]
fn everything_else_keeps_its_order_and_bytes() {
    let message = r#"{ "result" : { "_meta" : {"b":1,"a":2}, "tools" : [ {"name":"x","z":1,"a":2} , {"name":"y"} ,{"name":"z"} ] , "nextCursor" : "n" } , "id" : 9 , "jsonrpc" : "2.0" }"#;
    assert_eq!(
        rewritten(message, ListKind::Tools, false, &["x", "z"]),
        r#"{ "result" : { "_meta" : {"b":1,"a":2}, "tools" : [{"name":"x","z":1,"a":2},{"name":"z"}] , "nextCursor" : "n" } , "id" : 9 , "jsonrpc" : "2.0" }"#
    );
    let pretty = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [\n      {\n        \"name\": \"a\"\n      },\n      {\n        \"name\": \"b\"\n      }\n    ]\n  }\n}\n";
    assert_eq!(
        rewritten(pretty, ListKind::Tools, false, &["b"]),
        "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [{\n        \"name\": \"b\"\n      }]\n  }\n}\n"
    );
    assert_eq!(
        rewritten(r#"{"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#, ListKind::Tools, false, &[]),
        r#"{"result":{"tools":[]}}"#
    );
}

#[test]
fn each_kind_filters_on_its_own_key() {
    assert_eq!(
        rewritten(r#"{"result":{"prompts":[{"name":"p1"},{"name":"p2"}]}}"#, ListKind::Prompts, false, &["p2"]),
        r#"{"result":{"prompts":[{"name":"p2"}]}}"#
    );
    assert_eq!(
        rewritten(
            r#"{"result":{"resources":[{"uri":"file:///a","name":"a"},{"uri":"file:///b","name":"b"}]}}"#,
            ListKind::Resources,
            false,
            &["file:///b"]
        ),
        r#"{"result":{"resources":[{"uri":"file:///b","name":"b"}]}}"#
    );
    assert_eq!(
        rewritten(
            r#"{"result":{"resourceTemplates":[{"uriTemplate":"ehr://p/{id}","name":"n"},{"uriTemplate":"x://{y}","name":"m"}]}}"#,
            ListKind::ResourceTemplates,
            false,
            &["ehr://p/{id}"]
        ),
        r#"{"result":{"resourceTemplates":[{"uriTemplate":"ehr://p/{id}","name":"n"}]}}"#
    );
    // A tools/list answer read as a prompts/list answer has no prompts.
    assert_eq!(error(br#"{"result":{"tools":[]}}"#, ListKind::Prompts), ListError::MissingArray);
    // Resources are named by their uri, not their name.
    assert_eq!(error(br#"{"result":{"resources":[{"name":"a"}]}}"#, ListKind::Resources), ListError::EntryWithoutKey);
}

#[test]
fn keep_is_asked_about_decoded_names_and_escaped_members_are_found() {
    let message = r#"{"res\u0075lt":{"t\u006fols":[{"na\u006de":"get\u005fquote"},{"name":"x\"y"}]}}"#;
    let mut asked = Vec::new();
    let filtered = filter_response(message.as_bytes(), ListKind::Tools, false, &mut |name| {
        asked.push(name.to_owned());
        name == "x\"y"
    });
    assert_eq!(asked, ["get_quote", "x\"y"]);
    assert_eq!(filtered, Ok(Filtered::Rewritten(br#"{"res\u0075lt":{"t\u006fols":[{"name":"x\"y"}]}}"#.to_vec())));
}

#[test]
fn entries_without_a_string_key_fail_the_whole_response() {
    for message in [
        r#"{"result":{"tools":[{"name":"a"},{"title":"no name"}]}}"#,
        r#"{"result":{"tools":[{"name":"a"},{"name":null}]}}"#,
        r#"{"result":{"tools":[{"name":1}]}}"#,
        r#"{"result":{"tools":[{"name":["a"]}]}}"#,
        r#"{"result":{"tools":["a"]}}"#,
        r#"{"result":{"tools":[null]}}"#,
        r#"{"result":{"tools":[[{"name":"a"}]]}}"#,
        r#"{"result":{"tools":[{"Name":"a"}]}}"#,
    ] {
        // Whatever keep would say: even when every named entry is kept.
        assert_eq!(error(message.as_bytes(), ListKind::Tools), ListError::EntryWithoutKey, "{message}");
        assert_eq!(
            filter_response(message.as_bytes(), ListKind::Tools, false, &mut |_| true),
            Err(ListError::EntryWithoutKey)
        );
    }
}

#[test]
fn duplicate_members_are_refused_at_any_depth() {
    for message in [
        r#"{"result":{"tools":[]},"result":{"tools":[{"name":"hidden"}]}}"#,
        r#"{"result":{"tools":[],"tools":[{"name":"hidden"}]}}"#,
        r#"{"result":{"tools":[{"name":"a","name":"hidden"}]}}"#,
        r#"{"result":{"tools":[{"name":"a","inputSchema":{"type":"object","type":"string"}}]}}"#,
        r#"{"result":{"tools":[],"t\u006fols":[]}}"#,
        r#"{"id":1,"id":2,"error":{"code":1,"message":"x"}}"#,
    ] {
        assert_eq!(error(message.as_bytes(), ListKind::Tools), ListError::DuplicateMember, "{message}");
    }
}

#[test]
fn error_responses_requests_and_notifications_pass_unchanged() {
    for message in [
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":5}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{}}"#,
    ] {
        unchanged(message, ListKind::Tools, true, &[]);
    }
    // A result is filtered whatever else the message carries.
    assert_eq!(
        rewritten(
            r#"{"id":1,"error":{"code":1,"message":"m"},"result":{"tools":[{"name":"a"}]}}"#,
            ListKind::Tools,
            false,
            &[]
        ),
        r#"{"id":1,"error":{"code":1,"message":"m"},"result":{"tools":[]}}"#
    );
}

#[test]
fn malformed_messages_are_refused() {
    for (message, expected) in [
        (&b""[..], ListError::Syntax),
        (b"{", ListError::Syntax),
        (b"not json", ListError::Syntax),
        (br#"{"result":{"tools":[]}} x"#, ListError::Syntax),
        (br#"{"result":{"tools":[]}}{}"#, ListError::Syntax),
        (b"{\"result\":{\"tools\":[{\"name\":\"\xff\"}]}}", ListError::Syntax),
        (b"\xef\xbb\xbf{\"result\":{\"tools\":[]}}", ListError::Syntax),
        (br#"{"result":{"tools":[{"name":"\ud800"}]}}"#, ListError::Syntax),
        (br#"[{"result":{"tools":[]}}]"#, ListError::NotAnObject),
        (b"1", ListError::NotAnObject),
        (br#"{"result":[]}"#, ListError::NotAnObject),
        (br#"{"result":null}"#, ListError::NotAnObject),
        (br#"{"result":{}}"#, ListError::MissingArray),
        (br#"{"result":{"tools":{"name":"a"}}}"#, ListError::MissingArray),
        (br#"{"result":{"tools":null}}"#, ListError::MissingArray),
        (br#"{"result":{"resultType":"input_required","inputRequests":{}}}"#, ListError::MissingArray),
        (br#"{"jsonrpc":"2.0","id":1}"#, ListError::MissingArray),
    ] {
        assert_eq!(error(message, ListKind::Tools), expected, "{}", String::from_utf8_lossy(message));
    }
    let deep =
        format!(r#"{{"result":{{"tools":[{{"name":"a","x":{}{}}}]}}}}"#, "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert_eq!(error(deep.as_bytes(), ListKind::Tools), ListError::TooDeep);
}

#[test]
fn errors_have_distinct_labels_and_messages() {
    let all = [
        ListError::Syntax,
        ListError::DuplicateMember,
        ListError::TooDeep,
        ListError::NotAnObject,
        ListError::MissingArray,
        ListError::EntryWithoutKey,
        ListError::TooLarge,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a.label(), b.label());
            assert_ne!(a.to_string(), b.to_string());
        }
    }
}

/// Release-build timing of the 100-tool filter (the gateway's per-response cost):
/// `cargo test --release -p agent-iam --lib request::mcp::list -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn timing_of_a_hundred_tool_list() {
    let message = tools_response(100);
    let rounds = 5000;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        let filtered = filter_response(message.as_bytes(), ListKind::Tools, true, &mut |name| name.ends_with('0'));
        assert!(matches!(filtered, Ok(Filtered::Rewritten(_))));
    }
    let each = start.elapsed() / rounds;
    println!("100-tool tools/list ({} bytes) filtered to 10: {each:?} each", message.len());
}

#[test]
fn objects_with_many_members_still_refuse_repeats() {
    // Past the inline names, into the tree: a repeat of an early name, of a late one, and none.
    let members = |n: usize| (0..n).map(|i| format!(r#""k{i}":{i}"#)).collect::<Vec<_>>().join(",");
    for n in [15, 16, 17, 40] {
        let ok = format!(r#"{{"result":{{"tools":[{{"name":"a",{}}}]}}}}"#, members(n));
        unchanged(&ok, ListKind::Tools, false, &["a"]);
        for repeat in ["k0", &format!("k{}", n - 1), "name"] {
            let bad = format!(r#"{{"result":{{"tools":[{{"name":"a",{},"{repeat}":1}}]}}}}"#, members(n));
            assert_eq!(error(bad.as_bytes(), ListKind::Tools), ListError::DuplicateMember, "{n} {repeat}");
        }
    }
}

/// What `json::parse_value` makes of a message, in the filter's terms: the reference the strict reader must
/// agree with.
fn reference(message: &[u8]) -> Result<(), ListError> {
    match crate::json::parse_value(message, MAX_DEPTH)? {
        serde_json::Value::Object(_) => Ok(()),
        _ => Err(ListError::NotAnObject),
    }
}

/// The strict reader's verdict in the same terms.
fn verdict(message: &[u8]) -> Result<(), ListError> {
    let tape = crate::json::tape::Tape::parse(message, MAX_DEPTH)?;
    if tape.root().kind() == crate::json::tape::Kind::Object { Ok(()) } else { Err(ListError::NotAnObject) }
}

#[test]
fn the_reader_agrees_with_parse_value_on_edge_cases() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    for text in [
        b"{}".to_vec(),
        b" {} ".to_vec(),
        br#"{"a":1,"a":2}"#.to_vec(),
        br#"{"a":1,"\u0061":2}"#.to_vec(),
        br#"{"a":[{"b":1,"b":1}]}"#.to_vec(),
        br#"{"a":"\ud800"}"#.to_vec(),
        br#"{"a":"\ud83d\ude00"}"#.to_vec(),
        b"{\"a\":\"\xff\"}".to_vec(),
        b"{\"\xff\":1}".to_vec(),
        b"{\"a\":\"\x01\"}".to_vec(),
        br#"{"a":1e400}"#.to_vec(),
        br#"{"a":-0.0e-5}"#.to_vec(),
        br#"{"a":01}"#.to_vec(),
        br#"{"a":1,}"#.to_vec(),
        br#"{"a":1} x"#.to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"".to_vec(),
        format!(r#"{{"a":{}}}"#, nested(MAX_DEPTH - 1)).into_bytes(),
        format!(r#"{{"a":{}}}"#, nested(MAX_DEPTH)).into_bytes(),
        format!(r#"{{"a":{}}}"#, nested(200)).into_bytes(),
        objects(MAX_DEPTH).into_bytes(),
        objects(MAX_DEPTH + 1).into_bytes(),
        nested(MAX_DEPTH).into_bytes(),
        nested(MAX_DEPTH + 1).into_bytes(),
        // The depth error comes before a later duplicate, and a duplicate before a later depth error.
        format!(r#"{{"a":{},"a":1}}"#, nested(MAX_DEPTH)).into_bytes(),
        format!(r#"{{"a":1,"a":{}}}"#, nested(MAX_DEPTH)).into_bytes(),
    ] {
        assert_eq!(verdict(&text), reference(&text), "{}", String::from_utf8_lossy(&text));
    }
}

proptest! {
    /// On arbitrary JSON-like text (valid or not), the strict reader accepts and refuses exactly what
    /// `parse_value` does, for the same reason.
    #[test]
    fn the_reader_agrees_with_parse_value(text in r#"[{}\[\],:" a-c0-9.eE+\-\\u]{0,40}"#) {
        prop_assert_eq!(verdict(text.as_bytes()), reference(text.as_bytes()));
    }

    /// The same on documents that are valid but for a few mutations (duplicated members, nesting).
    #[test]
    fn the_reader_agrees_with_parse_value_on_near_documents(
        keys in proptest::collection::vec("[ab]", 0..6),
        depth in 0..70usize,
    ) {
        let members: Vec<String> = keys.iter().map(|k| format!(r#""{k}":{}"#, "[".repeat(depth) + &"]".repeat(depth))).collect();
        let text = format!("{{{}}}", members.join(","));
        prop_assert_eq!(verdict(text.as_bytes()), reference(text.as_bytes()));
    }
}

proptest! {
    /// Any list, any formatting, any choice of entries: the output is the input's JSON with exactly the kept
    /// entries, in order, and nothing else changed.
    #[test]
    fn filtering_keeps_exactly_the_chosen_entries(
        names in proptest::collection::vec("[a-z_\"\\\\é\u{1F600}\n]{0,6}", 0..12),
        keep_mask in proptest::collection::vec(any::<bool>(), 12),
        pretty in any::<bool>(),
        private in any::<bool>(),
    ) {
        let tools: Vec<_> = names.iter().enumerate().map(|(i, n)| json!({"name": n, "i": i})).collect();
        let message = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "nextCursor": "c"}});
        let text = if pretty { serde_json::to_string_pretty(&message) } else { serde_json::to_string(&message) };
        let text = text.expect("serialise");
        let mut index = 0;
        let filtered = filter_response(text.as_bytes(), ListKind::Tools, private, &mut |_| {
            index += 1;
            keep_mask[index - 1]
        });
        let out = match filtered.expect("filters") {
            Filtered::Unchanged => text.clone().into_bytes(),
            Filtered::Rewritten(out) => out,
        };
        let mut expected = message.clone();
        let kept: Vec<_> = tools.iter().zip(&keep_mask).filter(|(_, k)| **k).map(|(t, _)| t.clone()).collect();
        expected["result"]["tools"] = Value::Array(kept);
        if private {
            expected["result"]["cacheScope"] = json!("private");
        }
        let after: Value = serde_json::from_slice(&out).expect("output is JSON");
        prop_assert_eq!(after, expected);
    }
}
