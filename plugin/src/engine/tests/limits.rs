//! Limits: which apply, the keys they count under, GCRA exactness across workers sharing one store, the 429
//! with its headers, and limits that cannot be counted.

use super::*;
use crate::engine::limits::{Charge, Limiter, SharedLimiter, charge};
use crate::shared_data::{MemoryStore, SharedStore, StoreError};
use std::cell::Cell;

const US: u64 = 1_000_000;

/// A limiter on a store shared with others, at a time the test moves.
fn limiter(store: Rc<MemoryStore>, clock: Rc<Cell<u64>>) -> Rc<dyn Limiter> {
    Rc::new(SharedLimiter { store: Shared(store), clock: move || Some(clock.get()) })
}

#[derive(Debug)]
struct Shared(Rc<MemoryStore>);

impl SharedStore for Shared {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        self.0.set(key, value, cas)
    }
}

fn limited_engine(limits: Value) -> (SigningKey, Engine) {
    engine_with(json!({"policy": {
        "routes": [{"path": "/patients/**", "labels": ["PHI"]}],
        "rules": [
            {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "methods": ["POST"], "paths": ["/orders/**"]},
            {"id": "records", "effect": "allow", "agents": ["*"], "methods": ["GET"], "paths": ["/patients/**"]}
        ],
        "limits": limits
    }}))
}

fn status(v: &Verdict) -> u16 {
    match v {
        Verdict::Allow { dry_run: None, .. } => 200,
        Verdict::Allow { dry_run: Some(d), .. } | Verdict::Deny(d) => d.status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_limit_is_exact_across_two_workers_sharing_the_counter() {
    let (key, first) = limited_engine(json!([{"id": "per-agent", "requests": 100, "window": "1h"}]));
    let (_, second) = limited_engine(json!([{"id": "per-agent", "requests": 100, "window": "1h"}]));
    let store = Rc::new(MemoryStore::default());
    let clock = Rc::new(Cell::new(NOW as u64 * US));
    first.set_limiter(limiter(store.clone(), clock.clone()));
    second.set_limiter(limiter(store, clock.clone()));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let h = request("POST", "/orders", Some(&auth));
    let mut allowed = 0;
    for i in 0..150 {
        let engine = if i % 2 == 0 { &first } else { &second };
        if status(&decide_on(engine, &h)) == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 100, "exactly the limit, whichever worker served");
    let d = denial(decide_on(&first, &h));
    assert_eq!((d.status, d.reason), (429, "rate_limited"));
    assert_eq!(header(&d, "retry-after"), Some("36"), "one emission interval: 3600 s / 100");
    assert_eq!(header(&d, "ratelimit-policy"), Some("\"per-agent\";q=100;w=3600"));
    assert_eq!(header(&d, "ratelimit"), Some("\"per-agent\";r=0;t=36"));
    assert!(header(&d, "www-authenticate").is_none());
    assert_eq!(body(&d)["error"], "rate_limited");
    // After one interval, one more request.
    clock.set(clock.get() + 36 * US);
    assert_eq!(status(&decide_on(&second, &h)), 200);
    assert_eq!(status(&decide_on(&first, &h)), 429);
}

#[test]
fn gcra_never_lets_a_racing_worker_take_the_last_request() {
    #[derive(Debug, Default)]
    struct Racing {
        inner: MemoryStore,
        /// Before this many writes go through, another worker's charge lands first.
        races: Cell<u32>,
        limit: std::cell::RefCell<Option<crate::policy::limits::Limit>>,
    }
    impl SharedStore for Racing {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                let limit = self.limit.borrow().clone().unwrap();
                charge(&self.inner, &limit, "k", NOW as u64 * US).unwrap();
            }
            self.inner.set(key, value, cas)
        }
    }
    let (_, engine) = limited_engine(json!([{"id": "l", "requests": 3, "window": "1m"}]));
    let limit = engine.policy().limits()[0].clone();
    let store = Racing::default();
    *store.limit.borrow_mut() = Some(limit.clone());
    let now = NOW as u64 * US;
    assert!(matches!(charge(&store, &limit, "k", now), Ok(Charge::Allowed { remaining: 2, .. })));
    // Two other charges land while this one is between its read and its write: it reads again and gets none.
    store.races.set(2);
    assert_eq!(charge(&store, &limit, "k", now), Ok(Charge::Exceeded { retry_after: 20 }));
}

#[test]
fn limits_count_per_agent_subject_rule_or_tool_and_only_where_they_apply() {
    let (key, engine) = limited_engine(json!([
        {"id": "alice", "per": ["subject"], "requests": 2, "window": "1d"},
        {"id": "phi", "labels": ["PHI"], "requests": 1, "window": "1h"}
    ]));
    engine.set_limiter(limiter(Rc::new(MemoryStore::default()), Rc::new(Cell::new(NOW as u64 * US))));
    let acting_for =
        |agent: &str| format!("Bearer {}", trader_token(&key, json!({"sub": "user:alice", "act": {"sub": agent}})));
    let (a, b) = (acting_for(TRADER), acting_for("spiffe://trading.example/agent/other"));
    // Every agent acting for alice counts against her limit.
    assert_eq!(status(&decide_on(&engine, &request("POST", "/orders", Some(&a)))), 200);
    assert_eq!(status(&decide_on(&engine, &request("GET", "/patients/1", Some(&b)))), 200);
    assert_eq!(status(&decide_on(&engine, &request("POST", "/orders", Some(&a)))), 429);
    // The PHI limit is per agent: the trader acting for itself has its own.
    let own = format!("Bearer {}", trader_token(&key, json!({})));
    assert_eq!(status(&decide_on(&engine, &request("GET", "/patients/2", Some(&own)))), 200);
    let d = denial(decide_on(&engine, &request("GET", "/patients/3", Some(&own))));
    assert_eq!(header(&d, "ratelimit-policy"), Some("\"phi\";q=1;w=3600"));
    // A refused request is not counted: a deny rule or no rule allowing comes first.
    assert_eq!(status(&decide_on(&engine, &request("DELETE", "/orders", Some(&own)))), 403);
}

#[test]
fn limits_that_cannot_be_counted_refuse_rather_than_let_through() {
    let (key, engine) = limited_engine(json!([{"id": "l", "requests": 5, "window": "1m"}]));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let d = denial(decide_on(&engine, &request("POST", "/orders", Some(&auth))));
    assert_eq!((d.status, d.reason), (503, "limits_unavailable"));
}

#[test]
fn over_a_limit_in_dry_run_is_forwarded_and_marked() {
    let (key, engine) = engine_with(json!({"mode": "dry_run", "policy": {"rules": [
        {"id": "trader-orders", "effect": "allow", "agents": [TRADER], "paths": ["/orders/**"]}],
        "limits": [{"id": "l", "requests": 1, "window": "1m"}]}}));
    engine.set_limiter(limiter(Rc::new(MemoryStore::default()), Rc::new(Cell::new(NOW as u64 * US))));
    let auth = format!("Bearer {}", trader_token(&key, json!({})));
    let h = request("POST", "/orders", Some(&auth));
    assert_eq!(status(&decide_on(&engine, &h)), 200);
    match decide_on(&engine, &h) {
        Verdict::Allow { dry_run: Some(d), .. } => assert_eq!((d.status, d.reason), (429, "rate_limited")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_limits_are_refused_with_their_path() {
    for (limits, path) in [
        (json!([{"id": "l", "requests": 0, "window": "1m"}]), "policy.limits[0].requests"),
        (json!([{"id": "l", "requests": 5, "window": "8d"}]), "policy.limits[0].window"),
        (json!([{"id": "l", "requests": 5, "window": "5 m"}]), "policy.limits[0].window"),
        (json!([{"id": "l", "requests": 5, "window": "1m", "per": ["agent", "agent"]}]), "policy.limits[0].per[1]"),
        (json!([{"id": "l", "requests": 5, "window": "1m", "per": ["ip"]}]), "policy.limits[0].per[0]"),
        (json!([{"id": "l", "requests": 5, "window": "1m", "rules": ["nope"]}]), "policy.limits[0].rules[0]"),
        (json!([{"id": "l", "requests": 5, "window": "1m", "labels": ["PII"]}]), "policy.limits[0].labels[0]"),
        (
            json!([{"id": "l", "requests": 5, "window": "1m"}, {"id": "l", "requests": 1, "window": "1s"}]),
            "policy.limits[1].id",
        ),
        (json!([{"id": "bad id", "requests": 5, "window": "1m"}]), "policy.limits[0].id"),
    ] {
        let doc = json!({
            "issuers": [{"issuer": "https://issuer.example", "audiences": ["a"], "algorithms": ["ES256"],
                         "jwks": {"keys": [SigningKey::from_seed(Algorithm::ES256, [5; 32]).unwrap().public_jwk(None)]}}],
            "policy": {"routes": [{"path": "/p/**", "labels": ["PHI"]}],
                       "rules": [{"id": "r", "effect": "allow", "agents": ["*"]}], "limits": limits}
        });
        let e = config::parse(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.path, path, "{e}");
    }
}
