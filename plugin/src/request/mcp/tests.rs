//! Reading MCP messages: strict JSON, JSON-RPC shape, params per method, revisions, and the stateless
//! revision's mirrored headers.

use super::*;
use serde_json::json;

const ALL: &[Revision] = &Revision::ALL;

fn parse_with(body: &str, headers: &[(&str, &str)], accepted: &[Revision]) -> Result<McpRequest, McpError> {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    parse(body.as_bytes(), &headers, accepted, Arguments::All).map_err(|r| r.error)
}

fn legacy(body: &str) -> Result<McpRequest, McpError> {
    parse_with(body, &[], ALL)
}

/// A 2026-07-28 request with its mirrored headers.
fn modern(body: &str, mirrored: &[(&str, &str)]) -> Result<McpRequest, McpError> {
    let mut headers = vec![("mcp-protocol-version", "2026-07-28")];
    headers.extend_from_slice(mirrored);
    parse_with(body, &headers, ALL)
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Seattle, WA","days":3}}}"#;

#[test]
fn a_tool_call_is_read() {
    let m = legacy(CALL).unwrap();
    assert_eq!(m.kind, Kind::Request { id: json!(1) });
    assert_eq!(m.method, "tools/call");
    assert_eq!(m.name.as_deref(), Some("get_weather"));
    assert_eq!(m.arguments.get("days"), Some(&json!(3)));
    assert_eq!(m.revision, None);
    assert!(!m.is_lifecycle());
    let m = legacy(r#"{"jsonrpc":"2.0","id":"a-1","method":"resources/read","params":{"uri":"file:///r/1"}}"#).unwrap();
    assert_eq!((m.id(), m.uri.as_deref()), (Some(&json!("a-1")), Some("file:///r/1")));
    let m = legacy(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!((m.kind.clone(), m.is_lifecycle()), (Kind::Notification, true));
    let m = legacy(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#).unwrap();
    assert_eq!((m.kind.clone(), m.is_lifecycle()), (Kind::Response { id: json!(5) }, true));
}

#[test]
fn malformed_json_is_refused_by_class() {
    assert_eq!(legacy(""), Err(McpError::Parse));
    assert_eq!(legacy("{"), Err(McpError::Parse));
    assert_eq!(legacy(r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#), Err(McpError::Parse));
    assert_eq!(legacy(&format!("{}{}{}", "[".repeat(40), "1", "]".repeat(40))), Err(McpError::Batch));
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{}1{}}}}}"#,
        r#"{"a":"#.repeat(40),
        "}".repeat(40)
    );
    assert_eq!(legacy(&deep), Err(McpError::Parse));
    let mut invalid_utf8 = CALL.as_bytes().to_vec();
    invalid_utf8[60] = 0xff;
    assert_eq!(parse(&invalid_utf8, &[], ALL, Arguments::All).map_err(|r| r.error), Err(McpError::Parse));
    assert_eq!(legacy(&format!("{CALL} {{}}")), Err(McpError::Parse), "one message, nothing after it");
    assert_eq!(legacy(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), Err(McpError::Batch));
    assert_eq!(legacy(r#"  [ ]"#), Err(McpError::Batch));
    assert_eq!(legacy(r#""ping""#), Err(McpError::InvalidRequest));
}

#[test]
fn json_rpc_shape_is_strict() {
    for body in [
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":""}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["t"]}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
    ] {
        assert_eq!(legacy(body), Err(McpError::InvalidRequest), "{body}");
    }
    // A huge integer id is not one an answer can echo: refused rather than rounded.
    assert_eq!(legacy(r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#), Err(McpError::InvalidRequest));
    assert!(legacy(r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"}"#).is_ok());
}

#[test]
fn params_are_checked_per_method() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[1]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a/../b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a/%2e%2e/b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a%2Fb"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a\\b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a#b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x://a/."}}"#,
        // Found by fuzzing: a dot segment after the query's `?`, and a broken escape.
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:/?%a/../0"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///r?x=/../etc"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///r%2"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///r%zz"}}"#,
    ] {
        assert_eq!(legacy(body), Err(McpError::InvalidParams), "{body}");
    }
    let m = legacy(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":null}}"#).unwrap();
    assert!(m.arguments.is_empty());
}

#[test]
fn revisions_are_those_the_endpoint_accepts() {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let v = |value: &str| parse_with(ping, &[("mcp-protocol-version", value)], &[Revision::V2025_11_25]);
    assert_eq!(v("2025-11-25").unwrap().revision, Some(Revision::V2025_11_25));
    assert_eq!(v("2025-06-18"), Err(McpError::UnsupportedVersion));
    assert_eq!(v("2024-11-05"), Err(McpError::UnsupportedVersion));
    assert_eq!(v(" 2025-11-25 ").unwrap().revision, Some(Revision::V2025_11_25), "whitespace is not part of a value");
    // Absent: the session generation before initialize; refused where only the stateless one is accepted.
    assert!(parse_with(ping, &[], &[Revision::V2025_06_18]).is_ok());
    assert_eq!(parse_with(ping, &[], &[Revision::V2026_07_28]), Err(McpError::UnsupportedVersion));
    // Sent twice, it says nothing.
    let twice = [("mcp-protocol-version", "2025-11-25"), ("mcp-protocol-version", "2025-11-25")];
    assert_eq!(parse_with(ping, &twice, ALL), Err(McpError::HeaderMismatch));
}

#[test]
fn the_stateless_revision_checks_mirrored_headers_against_the_body() {
    let ok = [("mcp-method", "tools/call"), ("mcp-name", "get_weather")];
    assert_eq!(modern(CALL, &ok).unwrap().revision, Some(Revision::V2026_07_28));
    // Missing, different, repeated or extra headers.
    assert_eq!(modern(CALL, &[("mcp-name", "get_weather")]), Err(McpError::HeaderMismatch));
    assert_eq!(modern(CALL, &[("mcp-method", "tools/call")]), Err(McpError::HeaderMismatch));
    assert_eq!(
        modern(CALL, &[("mcp-method", "tools/list"), ("mcp-name", "get_weather")]),
        Err(McpError::HeaderMismatch)
    );
    assert_eq!(
        modern(CALL, &[("mcp-method", "tools/call"), ("mcp-name", "delete_all")]),
        Err(McpError::HeaderMismatch)
    );
    assert_eq!(
        modern(CALL, &[("mcp-method", "tools/call"), ("mcp-name", "get_weather"), ("mcp-name", "get_weather")]),
        Err(McpError::HeaderMismatch)
    );
    assert_eq!(
        modern(CALL, &[("mcp-method", "tools/call"), ("mcp-method", "tools/call"), ("mcp-name", "get_weather")]),
        Err(McpError::HeaderMismatch)
    );
    // Names that only begin like the mirrored ones are other headers.
    let lookalikes =
        [("mcp-method", "tools/call"), ("mcp-name", "get_weather"), ("mcp-names", "x"), ("mcp-methods", "y")];
    assert!(modern(CALL, &lookalikes).is_ok());
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert!(modern(list, &[("mcp-method", "tools/list")]).is_ok());
    assert_eq!(modern(list, &[("mcp-method", "tools/list"), ("mcp-name", "x")]), Err(McpError::HeaderMismatch));
    // The base64 form, for names that are not plain ASCII.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///Z%C3%BCrich"}}"#;
    assert!(modern(body, &[("mcp-method", "resources/read"), ("mcp-name", "file:///Z%C3%BCrich")]).is_ok());
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"Zürich"}}"#;
    assert!(modern(body, &[("mcp-method", "prompts/get"), ("mcp-name", "=?base64?WsO8cmljaA==?=")]).is_ok());
    assert_eq!(modern(body, &[("mcp-method", "prompts/get"), ("mcp-name", "Zrich")]), Err(McpError::HeaderMismatch));
    // Mcp-Param-* must equal the argument of that name (any case), as its header form.
    let with_param = [("mcp-method", "tools/call"), ("mcp-name", "get_weather"), ("mcp-param-days", "3")];
    assert!(modern(CALL, &with_param).is_ok());
    let wrong = [("mcp-method", "tools/call"), ("mcp-name", "get_weather"), ("mcp-param-days", "4")];
    assert_eq!(modern(CALL, &wrong), Err(McpError::HeaderMismatch));
    // A parameter header naming no argument comes from the tool's schema (`x-mcp-header`): left to the server.
    let unknown = [("mcp-method", "tools/call"), ("mcp-name", "get_weather"), ("mcp-param-region", "eu")];
    assert!(modern(CALL, &unknown).is_ok());
    // The body's own protocol version must agree too.
    let meta = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
    assert_eq!(modern(meta, &[("mcp-method", "tools/list")]), Err(McpError::HeaderMismatch));
    // Clients send no responses on the stateless revision.
    assert_eq!(modern(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#, &[]), Err(McpError::InvalidRequest));
}

#[test]
fn only_the_arguments_policy_reads_are_built() {
    let only = ["days".to_owned()];
    let m = parse(CALL.as_bytes(), &[], ALL, Arguments::Only(&only)).unwrap();
    assert_eq!(m.arguments.keys().collect::<Vec<_>>(), ["days"]);
    // ... and those a parameter header mirrors, to check them.
    let headers: [(&str, &[u8]); 4] = [
        ("mcp-protocol-version", b"2026-07-28"),
        ("mcp-method", b"tools/call"),
        ("mcp-name", b"get_weather"),
        ("mcp-param-location", b"Seattle, WA"),
    ];
    let m = parse(CALL.as_bytes(), &headers, ALL, Arguments::Only(&only)).unwrap();
    assert_eq!(m.arguments.keys().collect::<Vec<_>>(), ["days", "location"]);
    // The others are still read strictly: a duplicate among them refuses the message.
    let dup = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":{"a":1,"a":2}}}}"#;
    assert_eq!(parse(dup.as_bytes(), &[], ALL, Arguments::Only(&only)).map_err(|r| r.error), Err(McpError::Parse));
}

#[test]
fn legacy_requests_do_not_need_mirrored_headers() {
    // The session generation has no Mcp-Method; a stray one is not trusted either: the body decides.
    let headers = [("mcp-protocol-version", "2025-06-18"), ("mcp-method", "tools/list")];
    assert_eq!(parse_with(CALL, &headers, ALL).unwrap().method, "tools/call");
}

#[test]
fn a_refusal_keeps_the_id_when_it_could_be_read() {
    let body = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{}}"#;
    assert_eq!(
        parse(body, &[], ALL, Arguments::All),
        Err(McpRefusal { error: McpError::InvalidParams, id: Some(json!(5)) })
    );
    let body = br#"{"jsonrpc":"2.0","id":"c","method":"tools/list"}"#;
    let headers: [(&str, &[u8]); 2] = [("mcp-protocol-version", b"2026-07-28"), ("mcp-method", b"tools/call")];
    assert_eq!(
        parse(body, &headers, ALL, Arguments::All),
        Err(McpRefusal { error: McpError::HeaderMismatch, id: Some(json!("c")) })
    );
    let body = br#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#;
    assert_eq!(parse(body, &[], ALL, Arguments::All), Err(McpRefusal { error: McpError::InvalidRequest, id: None }));
}

#[test]
fn errors_map_to_json_rpc_codes_and_statuses() {
    assert_eq!((McpError::Parse.code(), McpError::Parse.status()), (-32700, 400));
    assert_eq!((McpError::HeaderMismatch.code(), McpError::HeaderMismatch.status()), (-32020, 400));
    assert_eq!((McpError::UnsupportedVersion.code(), McpError::UnsupportedVersion.status()), (-32022, 400));
    assert_eq!((McpError::InvalidParams.code(), McpError::TooLarge.status()), (-32602, 413));
    assert_eq!(McpError::MethodNotAllowed.status(), 405);
}
