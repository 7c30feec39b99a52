use super::*;

fn path(raw: &str) -> Result<String, RequestError> {
    canonical_path(raw).map(|(p, _)| p.into_owned())
}

#[test]
fn resolves_traversal_and_merges_slashes() {
    for (raw, want) in [
        ("/admin", "/admin"),
        ("//admin", "/admin"),
        ("/a/../admin", "/admin"),
        ("/%2e%2e/admin", "/admin"),
        ("/%2E%2e/admin", "/admin"),
        ("/./admin", "/admin"),
        ("/../../admin", "/admin"),
        ("/orders/", "/orders/"),
        ("/orders/.", "/orders/"),
        ("/a/b/..", "/a/"),
        ("/", "/"),
        ("/..", "/"),
        ("/%41pi/%7euser", "/Api/~user"),
        ("/a%20b/%3a", "/a%20b/%3A"),
    ] {
        assert_eq!(path(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn splits_the_query_off() {
    assert_eq!(canonical_path("/orders?symbol=ACME&x=1"), Ok(("/orders".into(), Some("symbol=ACME&x=1"))));
    assert_eq!(canonical_path("/orders?"), Ok(("/orders".into(), Some(""))));
}

#[test]
fn refuses_ambiguous_encodings() {
    for raw in [
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a\\b",
        "/a%00",
        "/a#frag",
        "/a%23b",
        "/a?x#y",
        "/orders/..;/admin",
        "/orders/..;x=1/admin",
        "/orders/.;/admin",
        "/orders/%2e%2e;/admin",
        "/..;",
        "/admin%3Bx=1/users",
        "/admin%3b/users",
        "/admin/;x=1/users",
        "/;/admin",
    ] {
        assert_eq!(path(raw), Err(RequestError::AmbiguousPath), "{raw}");
    }
    for raw in ["/a%zz", "/a%2", "/a b", "/a\u{e9}", "/a\tb", "/x?a b"] {
        assert_eq!(path(raw), Err(RequestError::InvalidPath), "{raw}");
    }
    for raw in ["", "*", "admin", "http://x/admin"] {
        assert_eq!(path(raw), Err(RequestError::MissingPath), "{raw}");
    }
}

fn with(raw: &str, mode: PathParameters) -> Result<(String, Option<String>), RequestError> {
    canonical_path_with(raw, mode).map(|c| (c.path.into_owned(), c.with_parameters))
}

#[test]
fn path_parameters_are_refused_by_default_in_any_segment() {
    for raw in [
        "/admin;x=1/users",
        "/admin;/users",
        "/admin;jsessionid=0123",
        "/patients/42/records;x=1/2026",
        "/a/...;x",
        "/items;v=2/7",
        "/%61dmin;x/users",
        "/admin;x=1/users?q=1",
        "//admin;x",
    ] {
        assert_eq!(path(raw), Err(RequestError::PathParameters), "{raw}");
        assert_eq!(with(raw, PathParameters::Reject), Err(RequestError::PathParameters), "{raw}");
    }
    // A semicolon in the query is not a path parameter.
    assert_eq!(path("/admin?a=1;b=2"), Ok("/admin".into()));
}

#[test]
fn path_parameters_stripped_are_decided_and_forwarded_without_them() {
    for (raw, want) in [
        ("/admin;x=1/users", "/admin/users"),
        ("/admin;/users", "/admin/users"),
        ("/admin;jsessionid=0123", "/admin"),
        ("/patients/42/records;x=1/2026", "/patients/42/records/2026"),
        ("/a;x/../admin;y", "/admin"),
        ("/a/b;c=d;e=f/", "/a/b/"),
    ] {
        assert_eq!(with(raw, PathParameters::Strip), Ok((want.into(), None)), "{raw}");
    }
}

#[test]
fn path_parameters_kept_are_decided_without_them_and_forwarded_with_them() {
    for (raw, decided, forwarded) in [
        ("/admin;x=1/users", "/admin/users", "/admin;x=1/users"),
        ("/a;v=1/../b;w=2/./c", "/b/c", "/b;w=2/c"),
        ("/items;v=2/%37", "/items/7", "/items;v=2/7"),
    ] {
        assert_eq!(with(raw, PathParameters::Keep), Ok((decided.into(), Some(forwarded.into()))), "{raw}");
    }
    assert_eq!(with("/plain/path", PathParameters::Keep), Ok(("/plain/path".into(), None)));
    // Dot segments and empty segments with parameters are refused whatever the mode.
    for mode in [PathParameters::Strip, PathParameters::Keep] {
        for raw in ["/a/..;x/admin", "/a/.;x", "/a/;x/../admin", "/a%3Bx"] {
            assert_eq!(with(raw, mode), Err(RequestError::AmbiguousPath), "{raw} {mode:?}");
        }
    }
}

#[test]
fn methods() {
    assert_eq!(canonical_method("post").as_deref(), Ok("POST"));
    assert_eq!(canonical_method("DeLeTe").as_deref(), Ok("DELETE"));
    assert_eq!(canonical_method("connect"), Err(RequestError::UnsupportedMethod));
    assert_eq!(canonical_method("GE T"), Err(RequestError::UnsupportedMethod));
    assert_eq!(canonical_method(""), Err(RequestError::MissingMethod));
}

#[test]
fn hosts() {
    assert_eq!(canonical_host("API.Example.COM.:8443").as_deref(), Ok("api.example.com"));
    assert_eq!(canonical_host("api.example.com").as_deref(), Ok("api.example.com"));
    assert_eq!(canonical_host("[::1]:80").as_deref(), Ok("[::1]"));
    assert_eq!(canonical_host("a:b:c"), Err(RequestError::InvalidHost));
    assert_eq!(canonical_host("evil.com/x"), Err(RequestError::InvalidHost));
    assert_eq!(canonical_host(""), Err(RequestError::InvalidHost));
    for (raw, want) in [
        ("a:b:80", Err(RequestError::InvalidHost)),
        ("host:", Err(RequestError::InvalidHost)),
        ("host:123456", Err(RequestError::InvalidHost)),
        ("host:8a", Err(RequestError::InvalidHost)),
        (":80", Err(RequestError::InvalidHost)),
        (".", Err(RequestError::InvalidHost)),
        (".:80", Err(RequestError::InvalidHost)),
        ("h\u{e9}st", Err(RequestError::InvalidHost)),
        ("h st", Err(RequestError::InvalidHost)),
        ("Host_1.internal:65535", Ok("host_1.internal")),
        ("x:0", Ok("x")),
        ("host:65536", Err(RequestError::InvalidHost)),
        // Empty labels, before, between or after.
        ("admin.test.example..", Err(RequestError::InvalidHost)),
        (".admin.test.example", Err(RequestError::InvalidHost)),
        ("admin..test.example", Err(RequestError::InvalidHost)),
        ("admin.test.example..:443", Err(RequestError::InvalidHost)),
        ("..", Err(RequestError::InvalidHost)),
        ("admin.test.example.", Ok("admin.test.example")),
        // Labels RFC 1123 forbids.
        ("-admin.example", Err(RequestError::InvalidHost)),
        ("admin-.example", Err(RequestError::InvalidHost)),
        ("a~b.example", Err(RequestError::InvalidHost)),
        ("a%41.example", Err(RequestError::InvalidHost)),
        ("a*b", Err(RequestError::InvalidHost)),
        ("x-1.a-b.example", Ok("x-1.a-b.example")),
        // Addresses: dotted-decimal IPv4 only; IPv6 in its one form.
        ("127.0.0.1", Ok("127.0.0.1")),
        ("10.0.0.1:8080", Ok("10.0.0.1")),
        ("127.1", Err(RequestError::InvalidHost)),
        ("2130706433", Err(RequestError::InvalidHost)),
        ("0x7f.0.0.1", Err(RequestError::InvalidHost)),
        ("127.0.0.0x1", Err(RequestError::InvalidHost)),
        ("0177.0.0.1", Err(RequestError::InvalidHost)),
        ("256.0.0.1", Err(RequestError::InvalidHost)),
        ("1.2.3.4.5", Err(RequestError::InvalidHost)),
        ("host.0x10", Err(RequestError::InvalidHost)),
        ("[0:0::1]:443", Ok("[::1]")),
        ("[::FFFF:127.0.0.1]", Ok("[::ffff:127.0.0.1]")),
        ("[evil.example]", Err(RequestError::InvalidHost)),
        ("[fe80::1%25eth0]", Err(RequestError::InvalidHost)),
        ("[v1.x]", Err(RequestError::InvalidHost)),
    ] {
        assert_eq!(canonical_host(raw).as_deref().map_err(|e| *e), want, "{raw:?}");
    }
}

#[test]
fn host_lengths() {
    let label = "a".repeat(63);
    assert!(canonical_host(&format!("{label}.example")).is_ok());
    assert_eq!(canonical_host(&format!("a{label}.example")), Err(RequestError::InvalidHost));
    let long = [label.as_str(); 4].join(".");
    assert_eq!(long.len(), 255);
    assert_eq!(canonical_host(&long), Err(RequestError::InvalidHost));
    assert!(canonical_host(&long[2..]).is_ok(), "253 bytes");
}

#[test]
fn method_override_headers_in_any_spelling() {
    for name in [
        "x-http-method-override",
        "X-HTTP-Method-Override",
        "x_http_method_override",
        "x-method-override",
        "x-http-method",
        "X_HTTP_METHOD",
    ] {
        assert!(is_method_override_header(name), "{name}");
    }
    for name in ["x-http-method-overrides", "x-http-methods", "method", "x-forwarded-method"] {
        assert!(!is_method_override_header(name), "{name}");
    }
    for name in ["_method", "_METHOD", "_HttpMethod", "X-HTTP-Method-Override", "x-http-method"] {
        assert!(is_method_override_parameter(name), "{name}");
    }
    for name in ["method", "_methods", "x_http_method", ""] {
        assert!(!is_method_override_parameter(name), "{name}");
    }
    for query in ["_method=x", "a=1&_METHOD=x", "x%5F=1", "a+b", "HttpMethod"] {
        assert!(may_carry_method_override(query), "{query}");
    }
    for query in ["", "a=1&b=2", "metho=d", "meth_od"] {
        assert!(!may_carry_method_override(query), "{query}");
    }
}

#[test]
fn query_and_fragment_are_found_wherever_they_are() {
    assert_eq!(canonical_path("/a?b?c").map(|(p, q)| (p.into_owned(), q)), Ok(("/a".into(), Some("b?c"))));
    assert_eq!(canonical_path("/a?").map(|(p, q)| (p.into_owned(), q)), Ok(("/a".into(), Some(""))));
    assert_eq!(canonical_path("?a"), Err(RequestError::MissingPath));
    for raw in ["/a#f", "/a?b#f", "/a?b=#", "#/a"] {
        let want = if raw.starts_with('#') { RequestError::MissingPath } else { RequestError::AmbiguousPath };
        assert_eq!(canonical_path(raw).map(|_| ()), Err(want), "{raw}");
    }
}
