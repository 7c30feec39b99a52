//! The OCSF 1.8.0 validator (`agent_iam_tests::ocsf`): the vendored example events pass, and each kind of
//! mistake an audit event can make is caught at the right path.

use std::path::Path;

use agent_iam_tests::ocsf::{self, Requirement, validate};
use serde_json::{Value, json};

fn example(name: &str) -> Value {
    let path = Path::new(ocsf::EXAMPLES_DIR).join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn allowed() -> Value {
    example("ocsf-api-activity-allowed.json")
}

/// The problems of the allowed example after `change`.
fn mutated(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut event = allowed();
    change(&mut event);
    validate(&event)
}

fn remove(event: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    event.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key).unwrap();
}

/// Exactly one problem, at `path`, whose message contains `words`.
#[track_caller]
fn assert_only(problems: &[String], path: &str, words: &str) {
    assert_eq!(problems.len(), 1, "expected one problem at {path}, got {problems:#?}");
    assert_has(problems, path, words);
}

/// A problem at `path` (exactly) whose message contains `words`.
#[track_caller]
fn assert_has(problems: &[String], path: &str, words: &str) {
    let found = problems
        .iter()
        .any(|p| p.strip_prefix(path).and_then(|m| m.strip_prefix(": ")).is_some_and(|m| m.contains(words)));
    assert!(found, "expected a problem at {path} containing {words:?}, got {problems:#?}");
}

#[test]
fn schema_compiles_the_two_classes() {
    let schema = ocsf::schema();
    assert_eq!(schema.version(), "1.8.0");
    let api = schema.class(6003).expect("API Activity");
    assert_eq!((api.name.as_str(), api.category_uid), ("api_activity", Some(6)));
    let auth = schema.class(3002).expect("Authentication");
    assert_eq!((auth.name.as_str(), auth.category_uid), ("authentication", Some(3)));
    // extends: api_activity's activity enum merges with base_event's (0, 99).
    let activities = api.attributes["activity_id"].enumeration.as_ref().unwrap();
    assert_eq!(activities.keys().map(String::as_str).collect::<Vec<_>>(), ["0", "1", "2", "3", "4", "99"]);
    // Profiles: `actor` is host-profile in base_event, but api_activity restates it without a profile.
    assert_eq!(api.attributes["actor"].profile, None);
    assert_eq!(api.attributes["actor"].requirement, Requirement::Required);
    assert_eq!(api.attributes["action_id"].profile.as_deref(), Some("security_control"));
    assert_eq!(api.attributes["cloud"].profile.as_deref(), Some("cloud"));
    assert_eq!(api.attributes["time_dt"].profile.as_deref(), Some("datetime"));
    // iam makes `src_endpoint` recommended and authentication keeps it so; authentication requires `user`.
    assert_eq!(auth.attributes["src_endpoint"].requirement, Requirement::Recommended);
    assert_eq!(auth.attributes["user"].requirement, Requirement::Required);
    // Objects: network_endpoint extends endpoint extends _entity, with its own constraint.
    let endpoint = schema.object("network_endpoint").unwrap();
    assert!(endpoint.attributes.contains_key("svc_name") && endpoint.attributes.contains_key("hostname"));
    assert!(
        matches!(&endpoint.constraints[..], [ocsf::Constraint::AtLeastOne(names)] if names.contains(&"svc_name".to_owned()))
    );
}

#[test]
fn vendored_examples_are_valid() {
    for name in ["ocsf-api-activity-allowed.json", "ocsf-api-activity-denied.json", "ocsf-authentication-failed.json"] {
        let problems = validate(&example(name));
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}

#[test]
fn required_attributes() {
    assert_only(&mutated(|e| remove(e, "/actor")), "$.actor", "required attribute is missing");
    assert_only(&mutated(|e| remove(e, "/api/operation")), "$.api.operation", "required attribute is missing");
    assert_only(&mutated(|e| remove(e, "/metadata/product")), "$.metadata.product", "required attribute is missing");
    assert_only(&mutated(|e| remove(e, "/src_endpoint")), "$.src_endpoint", "required attribute is missing");
    // null is absent.
    assert_only(&mutated(|e| e["time"] = Value::Null), "$.time", "required attribute is missing");
    // Recommended attributes may be left out.
    assert_eq!(mutated(|e| remove(e, "/http_response")), Vec::<String>::new());
}

#[test]
fn computed_fields() {
    let problems = mutated(|e| e["type_uid"] = json!(600303));
    assert_has(&problems, "$.type_uid", "class_uid * 100 + activity_id = 600302");
    // 600303 is Update, so the caption disagrees as well.
    assert_has(&problems, "$.type_name", "\"API Activity: Update\"");
    assert_eq!(problems.len(), 2, "{problems:#?}");

    let problems = mutated(|e| e["category_uid"] = json!(3));
    assert_has(&problems, "$.category_uid", "must be 6");

    assert_only(&mutated(|e| e["class_uid"] = json!(4242)), "$.class_uid", "unknown class 4242");
    assert_only(&mutated(|e| e["class_name"] = json!("Web Activity")), "$.class_name", "\"API Activity\"");
}

#[test]
fn unknown_attributes() {
    assert_only(&mutated(|e| e["colour"] = json!("red")), "$.colour", "unknown attribute: class api_activity");
    assert_only(&mutated(|e| e["actor"]["mood"] = json!(1)), "$.actor.mood", "unknown attribute: object actor");
    assert_only(&mutated(|e| e["actor"]["user"]["a b"] = json!(1)), "$.actor.user[\"a b\"]", "unknown attribute");
    // unmapped (object `object`) takes anything, at any depth.
    let problems = mutated(|e| {
        e["unmapped"] = json!({"act_chain": ["a", "b"], "x": {"y": [1, {"z": null}], "severity_id": "?"}, "a b": 1})
    });
    assert_eq!(problems, Vec::<String>::new());
    // So does a json_t attribute (resources[].data).
    assert_eq!(mutated(|e| e["resources"][0]["data"] = json!({"any": ["thing", 1]})), Vec::<String>::new());
}

#[test]
fn types() {
    assert_only(&mutated(|e| e["time"] = json!("2026-01-01T00:00:00Z")), "$.time", "expected timestamp_t (integer)");
    assert_only(&mutated(|e| e["time"] = json!(1.5)), "$.time", "expected timestamp_t");
    assert_only(&mutated(|e| e["severity_id"] = json!("1")), "$.severity_id", "expected integer_t (integer)");
    assert_only(&mutated(|e| e["is_alert"] = json!("false")), "$.is_alert", "expected boolean_t");
    assert_only(&mutated(|e| e["src_endpoint"]["port"] = json!(70000)), "$.src_endpoint.port", "outside the range");
    assert_only(&mutated(|e| e["src_endpoint"]["ip"] = json!("10.12.0.300")), "$.src_endpoint.ip", "IPv4 or IPv6");
    assert_eq!(mutated(|e| e["src_endpoint"]["ip"] = json!("fe80::1%eth0")), Vec::<String>::new());
    assert_only(&mutated(|e| e["actor"] = json!("alice")), "$.actor", "expected object actor, got string");
    assert_only(&mutated(|e| e["resources"] = json!({"uid": "x"})), "$.resources", "expected an array of object");
    assert_only(&mutated(|e| e["resources"] = json!([{"uid": "x"}, 7])), "$.resources[1]", "expected object");
    let problems = mutated(|e| e["metadata"]["profiles"] = json!(["security_control", 7]));
    assert_only(&problems, "$.metadata.profiles[1]", "expected string_t (string), got integer 7");
    // The datetime profile adds `<timestamp>_dt` (datetime_t, RFC 3339).
    let with_datetime = |value: Value| {
        mutated(|e| {
            e["metadata"]["profiles"] = json!(["security_control", "datetime"]);
            e["time_dt"] = value;
        })
    };
    assert_eq!(with_datetime(json!("2026-01-01T00:00:00.123Z")), Vec::<String>::new());
    assert_only(&with_datetime(json!("01/01/2026")), "$.time_dt", "RFC 3339");
}

#[test]
fn enums_and_captions() {
    assert_only(
        &mutated(|e| e["severity_id"] = json!(42)),
        "$.severity_id",
        "integer 42 is not a value of enum severity_id",
    );
    assert_only(
        &mutated(|e| e["severity"] = json!("Critical")),
        "$.severity",
        "caption of severity_id 1, \"Informational\"",
    );
    assert_only(&mutated(|e| e["resources"][0]["role_id"] = json!(9)), "$.resources[0].role_id", "not a value of enum");
    // activity_id 5 is no API activity; type_uid then follows it and is not reported twice.
    let problems = mutated(|e| {
        e["activity_id"] = json!(5);
        e["type_uid"] = json!(600305);
        remove(e, "/activity_name");
        remove(e, "/type_name");
    });
    assert_only(&problems, "$.activity_id", "not a value of enum activity_id");
    // 99 (Other) has the source's own caption: the denied example's activity_name "Invoke" is fine.
    assert!(validate(&example("ocsf-api-activity-denied.json")).is_empty());
}

#[test]
fn profiles() {
    // Without security_control, its attributes are not defined for the event.
    let problems = mutated(|e| remove(e, "/metadata/profiles"));
    assert_has(&problems, "$.action_id", "profile \"security_control\", which metadata.profiles does not list");
    for path in ["$.action", "$.disposition", "$.disposition_id", "$.is_alert", "$.policy"] {
        assert_has(&problems, path, "profile \"security_control\"");
    }
    assert_eq!(problems.len(), 6, "{problems:#?}");
    // ...but actor is api_activity's own attribute as well as the host profile's.
    assert!(mutated(|e| e["metadata"]["profiles"] = json!(["security_control"])).is_empty());
    // A listed profile brings its required attributes: cloud requires `cloud`.
    let problems = mutated(|e| e["metadata"]["profiles"] = json!(["security_control", "cloud"]));
    assert_only(&problems, "$.cloud", "required attribute is missing");
    assert_only(
        &mutated(|e| e["metadata"]["profiles"] = json!(["security_control", "nope"])),
        "$.metadata.profiles[1]",
        "unknown profile",
    );
}

#[test]
fn constraints() {
    let problems = mutated(|e| e["src_endpoint"] = json!({}));
    assert_only(&problems, "$.src_endpoint", "constraint at_least_one of object network_endpoint not met");
    assert_only(&mutated(|e| e["actor"] = json!({"idp": {"name": "x"}})), "$.actor", "at_least_one of object actor");
    assert_only(
        &mutated(|e| e["http_request"]["url"] = json!({"scheme": "https"})),
        "$.http_request.url",
        "at_least_one",
    );
    // A class constraint: authentication needs `service` or `dst_endpoint`.
    let mut auth = example("ocsf-authentication-failed.json");
    remove(&mut auth, "/service");
    assert_only(&validate(&auth), "$", "constraint at_least_one of class authentication not met");
}

#[test]
fn metadata_version() {
    assert_only(&mutated(|e| e["metadata"]["version"] = json!("1.9.0")), "$.metadata.version", "checks OCSF 1.8.0");
}

#[test]
fn malformed_events_give_problems_not_panics() {
    for event in [
        json!(null),
        json!([1, 2]),
        json!("event"),
        json!({}),
        json!({"class_uid": "6003"}),
        json!({"class_uid": 6003}),
        json!({"class_uid": 6003, "activity_id": i64::MAX, "type_uid": i64::MIN, "metadata": "x", "actor": []}),
        json!({"class_uid": 6003, "metadata": {"profiles": "security_control", "version": 1}, "severity_id": 1e300}),
        json!({"class_uid": u64::MAX}),
    ] {
        assert!(!validate(&event).is_empty(), "{event}");
    }
    // Deep nesting where the schema recurses (process.parent_process …) is cut off, not overflowed.
    let mut process = json!({"pid": 1});
    for _ in 0..200 {
        process = json!({"pid": 1, "parent_process": process});
    }
    let problems = mutated(|e| e["actor"]["process"] = process);
    assert_only(&problems, &format!("$.actor.process{}", ".parent_process".repeat(63)), "nested too deeply");
}
