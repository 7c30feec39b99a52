//! Requests that a gateway and a common upstream could read differently: each is refused by default, or
//! decided and forwarded exactly as it was decided (path parameters, method overrides, method spelling,
//! credentials under encoded parameter names, host names).

use super::*;

fn allowed(v: Verdict) -> (Vec<String>, Option<String>, Option<String>) {
    match v {
        Verdict::Allow { remove, canonical_path, canonical_method, dry_run: None, .. } => {
            (remove, canonical_path, canonical_method)
        }
        other => panic!("expected an allow, got {other:?}"),
    }
}

fn reason(v: Verdict) -> &'static str {
    denial(v).reason
}

#[test]
fn path_parameters_are_refused_by_default() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    for path in ["/orders/admin;x=1/users", "/orders/admin;/users", "/orders/admin;jsessionid=0123", "/orders;x/7"] {
        let d = denial(decide_on(&engine, &request("POST", path, Some(&auth))));
        assert_eq!((d.status, d.reason), (400, "path_parameters"), "{path}");
        assert_eq!(body(&d)["error_description"], "request path has path parameters (;)");
    }
    for path in ["/orders/admin%3Bx=1/users", "/orders/..;/admin", "/orders/;x/../admin"] {
        assert_eq!(reason(decide_on(&engine, &request("POST", path, Some(&auth)))), "ambiguous_path", "{path}");
    }
}

#[test]
fn path_parameters_stripped_or_kept_are_decided_without_them() {
    for (mode, forwarded) in [("strip", Some("/orders/7")), ("keep", None)] {
        let (key, engine) = engine_with(json!({"request": {"path_parameters": mode}}));
        let auth = format!("Bearer {}", trader_token(&key, json!({})));
        for path in ["/orders/admin;x=1/users", "/orders/admin;/users", "/orders/admin;jsessionid=0123"] {
            assert_eq!(
                reason(decide_on(&engine, &request("POST", path, Some(&auth)))),
                "denied_by_rule",
                "{mode} {path}"
            );
        }
        let (_, path, _) = allowed(decide_on(&engine, &request("POST", "/orders;v=2/7", Some(&auth))));
        assert_eq!(path.as_deref(), forwarded.map(|p| p.to_owned()).as_deref(), "{mode}");
        // Kept parameters are forwarded after canonicalisation, like the rest of the path.
        let (_, path, _) = allowed(decide_on(&engine, &request("POST", "//orders;v=2/./7?q=1", Some(&auth))));
        let want = if mode == "keep" { "/orders;v=2/7?q=1" } else { "/orders/7?q=1" };
        assert_eq!(path.as_deref(), Some(want), "{mode}");
    }
}

#[test]
fn method_overrides_are_refused_by_default_in_every_spelling() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x_http_method_override", "DELETE"),
        ("X-HTTP-Method-Override", "POST"),
        ("x-http-method-override", ""),
    ] {
        let mut h = request("POST", "/orders", Some(&auth));
        h.push((name, value));
        let d = denial(decide_on(&engine, &h));
        assert_eq!((d.status, d.reason), (400, "method_override"), "{name}: {value}");
    }
    for path in [
        "/orders?_method=DELETE",
        "/orders?a=1&_method=delete",
        "/orders?%5Fmethod=DELETE",
        "/orders?_%6Dethod=DELETE",
        "/orders?_method",
        "/orders?_HttpMethod=DELETE",
        "/orders?_METHOD=DELETE",
        "/orders?x-http-method-override=DELETE",
    ] {
        assert_eq!(reason(decide_on(&engine, &request("POST", path, Some(&auth)))), "method_override", "{path}");
    }
    // Names that are not `_method` however they decode, and a malformed name, which could be anything.
    assert!(matches!(
        decide_on(&engine, &request("POST", "/orders?_methods=1&method=DELETE", Some(&auth))),
        Verdict::Allow { .. }
    ));
    for path in ["/orders?_meth%G0d=DELETE", "/orders?%+5fmethod=DELETE", "/orders?a%=1"] {
        assert_eq!(reason(decide_on(&engine, &request("POST", path, Some(&auth)))), "invalid_query", "{path}");
    }
}

#[test]
fn method_overrides_stripped_are_never_forwarded() {
    let (key, engine) = engine_with(json!({"request": {"method_override": "strip"}}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let mut h = request("POST", "/orders?a=1&_method=DELETE&%5Fmethod=PUT&_HttpMethod=PATCH&b=2", Some(&auth));
    h.push(("x-http-method-override", "DELETE"));
    h.push(("X_Method_Override", "DELETE"));
    let (remove, path, _) = allowed(decide_on(&engine, &h));
    assert!(remove.contains(&"x-http-method-override".to_owned()) && remove.contains(&"X_Method_Override".to_owned()));
    assert_eq!(path.as_deref(), Some("/orders?a=1&b=2"));
}

#[test]
fn method_overrides_evaluated_must_be_allowed_under_both_methods() {
    let (key, engine) = engine_with(json!({"request": {"method_override": "evaluate"}}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let with = |path: &'static str, overrides: &[(&'static str, &'static str)]| {
        let mut h = request("POST", path, Some(&auth));
        h.extend_from_slice(overrides);
        decide_on(&engine, &h)
    };
    // The trader may POST under /orders, and nothing else: DELETE through POST is refused.
    assert_eq!(reason(with("/orders/7", &[("x-http-method-override", "DELETE")])), "no_rule_allows");
    assert_eq!(reason(with("/orders/7?_method=DELETE", &[])), "no_rule_allows");
    // An override of the same method is forwarded as it came.
    let (remove, path, _) = allowed(with("/orders/7", &[("x-http-method-override", "post")]));
    assert!(remove.is_empty() && path.is_none());
    // A deny under the request's own method denies whatever the override.
    assert_eq!(reason(with("/orders/admin/x", &[("x-http-method-override", "POST")])), "denied_by_rule");
    // Two different overrides, or one that is no method, cannot be evaluated.
    assert_eq!(reason(with("/orders/7?_method=PUT", &[("x-http-method-override", "POST")])), "method_override");
    assert_eq!(reason(with("/orders/7", &[("x-http-method-override", "DEL ETE")])), "method_override");
    assert_eq!(reason(with("/orders/7", &[("x-http-method-override", "CONNECT")])), "method_override");
}

#[test]
fn the_method_that_was_evaluated_is_the_one_forwarded() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let (_, _, method) = allowed(decide_on(&engine, &request("post", "/orders", Some(&auth))));
    assert_eq!(method.as_deref(), Some("POST"));
    let (_, _, method) = allowed(decide_on(&engine, &request("pOsT", "/orders", Some(&auth))));
    assert_eq!(method.as_deref(), Some("POST"));
    let (_, _, method) = allowed(decide_on(&engine, &request("POST", "/orders", Some(&auth))));
    assert_eq!(method, None);
}

#[test]
fn credentials_under_an_encoded_parameter_name_are_found_and_stripped() {
    let (key, engine) = engine_with(json!({
        "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}],
        "forward": {"credential": false}
    }));
    let t = trader_token(&key, json!({}));
    let other = trader_token(&key, json!({"jti": "other"}));
    let bearer = format!("Bearer {t}");
    for name in ["access%5Ftoken", "access%5ftoken", "%61ccess_token", "access_token"] {
        let path = format!("/orders?{name}={other}");
        let d = denial(decide_on(&engine, &request("POST", &path, Some(&bearer))));
        assert_eq!((d.status, d.reason), (400, "multiple_credentials"), "{name}");
        // Alone, it is the credential, and it is not forwarded.
        let path = format!("/orders?x=1&{name}={t}&y=2");
        let (_, forwarded, _) = allowed(decide_on(&engine, &request("POST", &path, None)));
        assert_eq!(forwarded.as_deref(), Some("/orders?x=1&y=2"), "{name}");
    }
    // A token whose value is percent-encoded reads as the upstream would decode it.
    let encoded = t.replace('.', "%2E");
    let (_, forwarded, _) =
        allowed(decide_on(&engine, &request("POST", &format!("/orders?access_token={encoded}"), None)));
    assert_eq!(forwarded.as_deref(), Some("/orders"));
    for bad in ["/orders?access_token=%+4", "/orders?access%+5Ftoken=x"] {
        assert_eq!(reason(decide_on(&engine, &request("POST", bad, Some(&bearer)))), "invalid_query", "{bad}");
    }
}

#[test]
fn host_names_with_empty_labels_are_invalid() {
    let (key, engine) = engine_with(json!({}));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    for host in ["admin.test.example..", ".admin.test.example", "admin..example", "127.1", "[evil.example]"] {
        let mut h = request("POST", "/orders", Some(&auth));
        h.retain(|(n, _)| *n != ":authority");
        h.push((":authority", host));
        let d = denial(decide_on(&engine, &h));
        assert_eq!((d.status, d.reason), (400, "invalid_host"), "{host}");
    }
}
