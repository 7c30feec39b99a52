//! First use, probing, delegation depth and fan-out.

use super::*;

fn only(f: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings { rate: None, first_use: None, probing: None, delegation: None, ..Settings::default() };
    f(&mut s);
    s
}

/// `observe` once and return the kinds and details of what fired.
fn fire(d: &mut Detector, o: &Observation<'_>, now: u64) -> Vec<(SignalKind, String)> {
    d.observe(o, now).into_iter().map(|s| (s.kind, s.detail)).collect()
}

#[test]
fn first_use_fires_once_per_new_name_and_only_after_learning() {
    let mut d = Detector::new(only(|s| s.first_use = Some(FirstUseSettings::default())));
    let read = Observation { labels: &["orders", "public"], rule: Some("read-orders"), tool: Some("read"), ..obs("a") };
    // During learning: names are learned, nothing fires, new ones included.
    for h in 0..24 {
        assert!(fire(&mut d, &read, T0 + h * HOUR).is_empty());
    }
    let write = Observation { labels: &["orders"], rule: Some("write-orders"), tool: Some("write"), ..obs("a") };
    assert!(fire(&mut d, &write, T0 + 23 * HOUR).is_empty(), "still learning");
    // A denied request teaches nothing and fires nothing.
    let denied = Observation { allowed: false, labels: &["admin"], rule: Some("deny-admin"), ..obs("a") };
    assert!(fire(&mut d, &denied, T0 + 23 * HOUR).is_empty());

    let after = T0 + DAY;
    assert!(fire(&mut d, &read, after).is_empty());
    assert!(fire(&mut d, &write, after).is_empty());
    assert!(fire(&mut d, &denied, after).is_empty(), "denied: not a use");
    // The admin label, used now, is new (its denied attempt during learning taught nothing).
    let admin = Observation { labels: &["orders", "admin"], rule: Some("read-orders"), ..obs("a") };
    let s = fire(&mut d, &admin, after + 1);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, SignalKind::FirstUse);
    assert_eq!(s[0].1, "first use of route label \"admin\", never used during its learning period");
    assert!(fire(&mut d, &admin, after + 2).is_empty(), "remembered");
    // The same name as another kind is another name; two new names are two signals.
    let both = Observation { labels: &[], rule: Some("read"), tool: Some("orders"), ..obs("a") };
    let s = fire(&mut d, &both, after + 3);
    let details: Vec<&str> = s.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        details,
        [
            "first use of rule \"read\", never used during its learning period",
            "first use of tool \"orders\", never used during its learning period"
        ]
    );
    // Another agent has its own names and its own learning period.
    let b = |tool| Observation { tool: Some(tool), ..obs("b") };
    assert!(fire(&mut d, &b("read"), T0 + 12 * HOUR).is_empty());
    assert!(fire(&mut d, &b("write"), T0 + 35 * HOUR).is_empty(), "b is still learning");
    assert!(fire(&mut d, &b("read"), T0 + 36 * HOUR).is_empty());
    assert_eq!(fire(&mut d, &b("delete"), T0 + 36 * HOUR).len(), 1);
}

#[test]
fn a_name_from_the_client_is_quoted_escaped_and_cut() {
    let mut d = Detector::new(only(|s| {
        s.learning_seconds = 0;
        s.first_use = Some(FirstUseSettings::default())
    }));
    let nasty = format!("x\"\n\u{1b}[31m{}", "y".repeat(100));
    let s = fire(&mut d, &Observation { tool: Some(&nasty), ..obs("a") }, T0);
    assert_eq!(s.len(), 1);
    let detail = &s[0].1;
    assert!(detail.starts_with(r#"first use of tool "x\"\n\u{1b}[31myyy"#), "{detail}");
    assert!(!detail.contains('\n') && !detail.contains('\u{1b}'), "{detail}");
    assert!(detail.contains("\" (cut)"), "{detail}");
    assert!(detail.len() < 160, "{detail}");
}

#[test]
fn first_use_turns_off_for_an_agent_whose_names_overflow() {
    let settings = only(|s| {
        s.learning_seconds = 3600;
        s.first_use = Some(FirstUseSettings { max_seen: 4, ..Default::default() })
    });
    // Too varied during learning: five names for four places; afterwards nothing fires for it.
    let mut d = Detector::new(settings.clone());
    for (i, tool) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        assert!(fire(&mut d, &Observation { tool: Some(tool), ..obs("x") }, T0 + i as u64).is_empty());
    }
    assert!(fire(&mut d, &Observation { tool: Some("f"), ..obs("x") }, T0 + HOUR).is_empty());
    // Three names learned, one place left: after learning "d" fires and is remembered; "e" fills nothing
    // more (the set is full) but is new, so it fires, and from then on first use is off.
    let mut d = Detector::new(settings);
    for tool in ["a", "b", "c"] {
        fire(&mut d, &Observation { tool: Some(tool), ..obs("x") }, T0);
    }
    let t = T0 + HOUR;
    let fired =
        |d: &mut Detector, tool: &str, at: u64| fire(d, &Observation { tool: Some(tool), ..obs("x") }, at).len();
    assert_eq!(fired(&mut d, "d", t), 1);
    assert_eq!(fired(&mut d, "d", t + 1), 0);
    assert_eq!(fired(&mut d, "e", t + 2), 1);
    assert_eq!(fired(&mut d, "e", t + 3), 0);
    assert_eq!(fired(&mut d, "f", t + 4), 0, "off");
    assert_eq!(fired(&mut d, "a", t + 5), 0);
}

#[test]
fn probing_fires_at_the_threshold_once_a_minute_learning_or_not() {
    let mut d = Detector::new(only(|s| s.probing = Some(ProbingSettings::default())));
    let denied = Observation { allowed: false, ..obs("a") };
    // Brand new agent, still learning: 19 denials within a minute (and allowed requests between) is quiet.
    let t = T0 + 5 * MIN;
    for i in 0..19 {
        assert!(fire(&mut d, &denied, t + i * 3000).is_empty());
        assert!(fire(&mut d, &obs("a"), t + i * 3000 + 1).is_empty(), "allowed requests do not count");
    }
    // The 20th fires, once; more in the same minute do not.
    let s = fire(&mut d, &denied, t + 59_000);
    assert_eq!(s, [(SignalKind::Probing, "20 denials within a minute (fires from 20)".to_string())]);
    for i in 0..30 {
        assert!(fire(&mut d, &denied, t + 59_000 + i * 10).is_empty());
    }
    // The next minute starts over: 20 more fire again.
    let t = t + MIN;
    let n: usize = (0..20).map(|i| fire(&mut d, &denied, t + 1000 + i * 100).len()).sum();
    assert_eq!(n, 1);
    // 19 at the end of one minute and 19 at the start of the next: quiet (the documented clock minutes).
    let t = T0 + HOUR;
    let mut n = 0;
    for i in 0..19 {
        n += fire(&mut d, &denied, t - 1 - i * 100).len();
        n += fire(&mut d, &denied, t + i * 100).len();
    }
    assert_eq!(n, 0);
    // Another agent's denials are its own.
    assert!(fire(&mut d, &Observation { allowed: false, ..obs("b") }, t + 5000).is_empty());
}

#[test]
fn a_deeper_delegation_than_learned_fires_once_per_new_maximum() {
    let mut d = Detector::new(only(|s| s.delegation = Some(DelegationSettings::default())));
    let at = |depth| Observation { depth, subject: "alice", ..obs("a") };
    for (i, depth) in [0, 1, 1, 0].into_iter().enumerate() {
        assert!(fire(&mut d, &at(depth), T0 + i as u64 * HOUR).is_empty());
    }
    // During learning a deeper one is learned, not flagged.
    assert!(fire(&mut d, &at(2), T0 + 20 * HOUR).is_empty());
    let t = T0 + DAY;
    for depth in [0, 1, 2, 2] {
        assert!(fire(&mut d, &at(depth), t).is_empty());
    }
    let s = fire(&mut d, &at(3), t + 1);
    assert_eq!(s, [(SignalKind::DelegationDepth, "delegation depth 3, deeper than any seen before (2)".to_string())]);
    assert!(fire(&mut d, &at(3), t + 2).is_empty());
    assert!(fire(&mut d, &at(2), t + 3).is_empty());
    assert_eq!(fire(&mut d, &at(5), t + 4).len(), 1);
    assert_eq!(fire(&mut d, &at(usize::MAX), t + 5).len(), 1, "saturates, no overflow");
    assert!(fire(&mut d, &at(usize::MAX), t + 6).is_empty());
}

#[test]
fn fan_out_fires_once_an_hour_above_the_threshold_after_learning() {
    let mut d = Detector::new(only(|s| s.delegation = Some(DelegationSettings::default())));
    let subjects: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let on_behalf = |i: usize| Observation { subject: &subjects[i], depth: 1, ..obs("a") };
    // During learning, 100 subjects within an hour: quiet.
    let mut n = 0;
    for i in 0..100 {
        n += fire(&mut d, &on_behalf(i), T0 + HOUR + i as u64).len();
    }
    assert_eq!(n, 0);
    // After learning: 50 distinct subjects, each several times, within an hour: quiet.
    let t = T0 + 2 * DAY;
    for round in 0..3 {
        for i in 0..50 {
            assert!(fire(&mut d, &on_behalf(i), t + round * MIN + i as u64).is_empty());
        }
    }
    // The 51st fires, once for the hour.
    let s = fire(&mut d, &on_behalf(50), t + 10 * MIN);
    assert_eq!(s, [(SignalKind::FanOut, "acts for more than 50 distinct subjects within an hour".to_string())]);
    let mut n = 0;
    for i in 51..200 {
        n += fire(&mut d, &on_behalf(i), t + 11 * MIN + i as u64).len();
    }
    assert_eq!(n, 0);
    // The next clock hour counts afresh.
    let t = t + HOUR;
    let n: usize = (100..151).map(|i| fire(&mut d, &on_behalf(i), t + i as u64).len()).sum();
    assert_eq!(n, 1);
}
