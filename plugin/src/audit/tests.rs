use super::*;
use crate::policy::cases::token_from_claims;
use serde_json::{Value, json};

fn settings(key: Option<&[u8]>) -> Settings {
    Settings {
        events: Events::All,
        claims: vec!["department".into()],
        checkpoint: key.map(|k| CheckpointKey {
            key: k.to_vec(),
            key_id: Some("k1".into()),
            every_events: 3,
            every_seconds: 3600,
        }),
        vendor: "Example Corp".into(),
    }
}

fn facts<'a>(token: Option<&'a crate::token::VerifiedToken>, outcome: Outcome<'a>) -> Facts<'a> {
    Facts {
        time_ms: 1_767_225_600_123,
        outcome,
        request: RequestFacts {
            method: "GET",
            path: "/patients/42/records",
            host: Some("api.example"),
            request_id: Some("req-1"),
            user_agent: Some("agent\n\"evil\""),
            source: Some("10.0.0.7:53122"),
            peer: None,
            route: None,
        },
        token,
        mcp: None,
        policy_version: Some("7"),
        labels: &["phi"],
        parameters: &[("patient_id", "42")],
        claims: &[],
        vendor: "Example Corp",
        node: Some("gw-1"),
        revoked_by: None,
        anomalies: &[],
    }
}

fn b64(bytes: &[u8]) -> String {
    crate::b64::encode(bytes)
}

#[test]
fn an_event_names_agent_subject_chain_rule_and_resources_on_one_line() {
    let token = token_from_claims(
        json!({"iss": "https://idp", "sub": "dr-house", "jti": "t-1", "client_id": "radiology",
               "department": "radiology", "act": {"sub": "spiffe://h/radiology", "act": {"sub": "spiffe://h/planner"}}})
        .as_object()
        .unwrap()
        .clone(),
    )
    .unwrap();
    let s = settings(None);
    let mut chain = Chain::new("c1".into(), None);
    let mut f = facts(Some(&token), Outcome::Allowed { rule: "records-read" });
    f.claims = &s.claims;
    let line = line(&s, &mut chain, &f);
    assert!(!line.contains('\n'));
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["class_uid"], 6003);
    assert_eq!(e["type_uid"], 600302);
    assert_eq!(e["actor"]["app_uid"], "spiffe://h/radiology");
    assert_eq!(e["actor"]["user"]["uid"], "dr-house");
    assert_eq!(e["actor"]["session"]["uid"], "t-1");
    assert_eq!(e["actor"]["app_name"], "radiology");
    assert_eq!(e["actor"]["idp"]["uid"], "https://idp");
    assert_eq!(e["unmapped"]["act_chain"], json!(["spiffe://h/radiology", "spiffe://h/planner"]));
    assert_eq!(e["unmapped"]["claims"], json!({"department": "radiology"}));
    assert_eq!(e["policy"], json!({"uid": "records-read", "version": "7"}));
    assert_eq!(e["resources"][0], json!({"uid": "42", "name": "patient_id", "type": "path_parameter", "role_id": 1}));
    assert_eq!(e["http_request"]["user_agent"], "agent\n\"evil\"");
    assert_eq!(e["http_request"]["url"]["path"], "/patients/42/records");
    assert_eq!(e["src_endpoint"], json!({"ip": "10.0.0.7", "port": 53122}));
    assert_eq!(e["metadata"]["uid"], "c1.0");
    assert_eq!(e["unmapped"]["chain"], json!({"id": "c1", "seq": 0, "prev": null}));
}

#[test]
fn a_dpop_bound_token_records_its_key_thumbprint() {
    let claims = |cnf: Value| {
        let token =
            token_from_claims(json!({"iss": "https://idp", "sub": "a", "cnf": cnf}).as_object().unwrap().clone());
        let token = token.unwrap();
        let mut chain = Chain::new("c".into(), None);
        let e: Value = serde_json::from_str(&line(
            &settings(None),
            &mut chain,
            &facts(Some(&token), Outcome::Allowed { rule: "r" }),
        ))
        .unwrap();
        e["unmapped"]["dpop_jkt"].clone()
    };
    assert_eq!(
        claims(json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    );
    assert_eq!(claims(json!({"x5t#S256": "abc"})), Value::Null, "bound to a certificate, not a key");
}

#[test]
fn refusals_map_to_denied_with_their_status() {
    let s = settings(None);
    let mut chain = Chain::new("c".into(), None);
    let line = line(&s, &mut chain, &facts(None, Outcome::Denied { status: 401, reason: "no_token", rule: None }));
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (e["status_id"].clone(), e["action_id"].clone(), e["disposition_id"].clone()),
        (json!(2), json!(2), json!(26))
    );
    assert_eq!(e["http_response"]["code"], 401);
    assert_eq!(e["status_detail"], "no_token");
    assert_eq!(e["actor"]["app_name"], "unverified");
    let dry = line_for(Outcome::DryRun { status: 403, reason: "no_rule_allows", rule: None });
    assert_eq!((dry["action_id"].clone(), dry["unmapped"]["dry_run"].clone()), (json!(3), json!(true)));
    assert!(!s.records(&Outcome::Allowed { rule: "r" }, true) || s.events == Events::All);
    let denials = Settings { events: Events::Denials, ..settings(None) };
    assert!(!denials.records(&Outcome::Allowed { rule: "r" }, true));
    assert!(denials.records(&Outcome::Denied { status: 403, reason: "x", rule: None }, true));
    assert!(!s.records(&Outcome::Allowed { rule: "health" }, false));
}

fn line_for(outcome: Outcome<'_>) -> Value {
    let mut chain = Chain::new("c".into(), None);
    serde_json::from_str(&line(&settings(None), &mut chain, &facts(None, outcome))).unwrap()
}

#[test]
fn events_chain_by_hash_and_checkpoints_seal_them() {
    let key = [7u8; 32];
    let s = settings(Some(&key));
    let mut chain = Chain::new("c".into(), None);
    let lines: Vec<String> =
        (0..7).map(|_| line(&s, &mut chain, &facts(None, Outcome::Allowed { rule: "r" }))).collect();
    let mut checkpoints = 0;
    for (i, l) in lines.iter().enumerate() {
        let e: Value = serde_json::from_str(l).unwrap();
        let c = &e["unmapped"]["chain"];
        assert_eq!(c["seq"], i as u64);
        if i == 0 {
            assert_eq!(c["prev"], Value::Null);
        } else {
            assert_eq!(c["prev"], b64(blake3::hash(lines[i - 1].as_bytes()).as_bytes()));
        }
        if let Some(mac) = c["mac"].as_str() {
            checkpoints += 1;
            assert_eq!(c["kid"], "k1");
            let member = format!(",\"mac\":\"{mac}\"");
            assert!(l.ends_with(&format!("{member}}}}}}}")));
            let sealed = l.replace(&member, "");
            assert_eq!(mac, b64(&chain::checkpoint_mac(&key, sealed.as_bytes())));
            assert_ne!(mac, b64(&chain::checkpoint_mac(&[8u8; 32], sealed.as_bytes())));
        }
    }
    // seq 0, then every third event.
    assert_eq!(checkpoints, 3);
    // The next chain names this one's end.
    let link = chain.link().unwrap();
    assert_eq!((link.seq, link.hash), (6, *blake3::hash(lines[6].as_bytes()).as_bytes()));
    let mut next = Chain::new("d".into(), Some(link));
    let first: Value =
        serde_json::from_str(&line(&s, &mut next, &facts(None, Outcome::Allowed { rule: "r" }))).unwrap();
    assert_eq!(first["unmapped"]["chain"]["previous_chain"]["id"], "c");
    assert_eq!(first["unmapped"]["chain"]["previous_chain"]["seq"], 6);
}

#[test]
fn hashes_are_written_as_b64_writes_them() {
    for seed in 0u8..=255 {
        let hash: [u8; 32] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add((i as u8).wrapping_mul(73)));
        assert_eq!(&*chain::b64_hash(&hash), b64(&hash));
    }
}

#[test]
fn type_uid_is_600300_plus_the_activity() {
    let mut seen = Vec::new();
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let mut chain = Chain::new("c".into(), None);
        let f = Facts {
            request: RequestFacts { method, ..facts(None, Outcome::Allowed { rule: "r" }).request },
            ..facts(None, Outcome::Allowed { rule: "r" })
        };
        let e: Value = serde_json::from_str(&line(&settings(None), &mut chain, &f)).unwrap();
        let activity = e["activity_id"].as_u64().unwrap();
        assert_eq!(e["type_uid"], 600_300 + activity, "{method}");
        seen.push((activity, e["activity_name"].as_str().unwrap().to_owned()));
    }
    let names: Vec<_> = seen.iter().map(|(id, name)| format!("{id} {name}")).collect();
    assert_eq!(names, ["2 Read", "2 Read", "1 Create", "3 Update", "3 Update", "4 Delete", "99 Other"]);
}

/// Every link is BLAKE3 of the whole previous line, whether the chain resumed the hash from a stable beginning it
/// kept or hashed the line afresh: one agent again and again, many agents in turn (more than the chain keeps),
/// outcomes and rules that change the beginning, and a beginning that is another's with more after it.
#[test]
fn links_are_the_hash_of_the_whole_line_however_the_hash_was_resumed() {
    let tokens: Vec<crate::token::VerifiedToken> = (0..12)
        .map(|i| {
            token_from_claims(
                json!({"iss": "https://idp", "sub": format!("agent-{i}"), "jti": format!("t-{}", i % 3)})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap()
        })
        .collect();
    for key in [None, Some(&[7u8; 32][..])] {
        let s = settings(key);
        let mut chain = Chain::new("c1".into(), None);
        let mut previous: Option<String> = None;
        for n in 0..200usize {
            let token = &tokens[(n * 7 + n / 13) % tokens.len()];
            let outcome = match n % 5 {
                0 => Outcome::Denied { status: 403, reason: "denied_by_rule", rule: Some("no-phi") },
                1 => Outcome::Allowed { rule: "records-read-and-more" },
                _ => Outcome::Allowed { rule: "records-read" },
            };
            let mut f = facts(Some(token), outcome);
            let path = format!("/patients/{n}/records");
            f.request.path = &path;
            f.time_ms += n as u64;
            let line = line(&s, &mut chain, &f);
            let e: Value = serde_json::from_str(&line).unwrap();
            let want = previous.as_deref().map(|p| Value::String(b64(&chain::line_hash(p.as_bytes()))));
            assert_eq!(e["unmapped"]["chain"]["prev"], want.unwrap_or(Value::Null), "event {n}");
            previous = Some(line);
        }
        let last = previous.unwrap();
        assert_eq!(chain.link().unwrap().hash, chain::line_hash(last.as_bytes()));
    }
}
