//! Virtual-time tests: simulated days of deterministic pseudo-random (Poisson) traffic.

use super::*;

mod rate;
mod signals;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// A Monday at 00:00 UTC, so that clock minutes and hours fall where a reader expects.
const T0: u64 = 1_767_571_200_000;

/// SplitMix64: deterministic and good enough for arrival times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// An allowed request of `agent` acting for itself, with no names.
fn obs(agent: &str) -> Observation<'_> {
    Observation { agent, subject: agent, depth: 0, allowed: true, rule: None, labels: &[], tool: None }
}

/// Settings with only the rate signal.
fn rate_only() -> Settings {
    Settings { first_use: None, probing: None, delegation: None, ..Settings::default() }
}

/// Poisson arrivals of `agent` from `start` to `end` (ms) at `per_hour(t)` requests an hour (at most
/// `max_per_hour`), by thinning; every signal with its time. Returns the signals and the time of the last
/// request.
fn traffic(
    d: &mut Detector,
    rng: &mut Rng,
    agent: &str,
    (start, end): (u64, u64),
    max_per_hour: f64,
    per_hour: impl Fn(u64) -> f64,
) -> (Vec<(u64, Signal)>, u64) {
    let mut out = Vec::new();
    let mut t = start as f64;
    let mut last = start;
    let mean_gap = HOUR as f64 / max_per_hour;
    loop {
        t += -rng.unit().ln() * mean_gap;
        let now = t as u64;
        if now >= end {
            return (out, last);
        }
        if rng.unit() * max_per_hour > per_hour(now) {
            continue;
        }
        last = now;
        for s in d.observe(&obs(agent), now) {
            out.push((now, s));
        }
    }
}

/// Steady Poisson traffic at `per_hour`.
fn steady(d: &mut Detector, rng: &mut Rng, agent: &str, span: (u64, u64), per_hour: f64) -> Vec<(u64, Signal)> {
    traffic(d, rng, agent, span, per_hour, |_| per_hour).0
}

#[test]
fn labels_are_the_documented_names() {
    let all =
        [SignalKind::Rate, SignalKind::FirstUse, SignalKind::Probing, SignalKind::DelegationDepth, SignalKind::FanOut];
    let labels: Vec<&str> = all.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["rate", "first_use", "probing", "delegation_depth", "fan_out"]);
}

#[test]
fn settings_out_of_range_are_reported_and_clamped() {
    assert_eq!(Settings::default().check(), Ok(()));
    let bad = |f: fn(&mut Settings)| {
        let mut s = Settings::default();
        f(&mut s);
        s
    };
    type Case = (fn(&mut Settings), &'static str);
    let cases: [Case; 7] = [
        (|s| s.max_agents = 0, "max_agents"),
        (|s| s.rate = Some(RateSettings { factor: f64::NAN, ..Default::default() }), "rate.factor"),
        (|s| s.rate = Some(RateSettings { factor: 0.5, ..Default::default() }), "rate.factor"),
        (|s| s.rate = Some(RateSettings { min_per_minute: f64::INFINITY, ..Default::default() }), "rate.min_per"),
        (|s| s.first_use = Some(FirstUseSettings { max_seen: 0, ..Default::default() }), "first_use.max_seen"),
        (|s| s.probing = Some(ProbingSettings { denials_per_minute: 0, ..Default::default() }), "probing."),
        (|s| s.delegation = Some(DelegationSettings { fan_out_per_hour: u32::MAX, ..Default::default() }), "deleg"),
    ];
    for (f, name) in cases {
        let s = bad(f);
        let err = s.check().unwrap_err();
        assert!(err.starts_with(name), "{err}");
        // Clamped: the detector works and never sees a NaN.
        let mut d = Detector::new(s);
        for i in 0..3000u64 {
            d.observe(&Observation { allowed: i % 2 == 0, ..obs("a") }, T0 + i * 1000);
        }
        let b = d.baseline_per_minute("a").unwrap();
        assert!(b.is_finite() && b >= 0.0, "{b}");
        let r = d.settings().rate.unwrap();
        assert!(r.factor >= 1.0 && r.factor.is_finite() && r.min_per_minute.is_finite());
        assert!(d.settings().max_agents >= 1);
    }
}

#[test]
fn memory_per_agent_is_the_documented_figure() {
    // The module documentation and docs quote this figure (for a 64-bit build); the test keeps them honest.
    assert_eq!(Detector::memory_per_agent_bytes(), 2842);
    let small = Settings { first_use: None, delegation: None, ..Settings::default() };
    assert!(small.memory_per_agent_bytes() < 400, "{}", small.memory_per_agent_bytes());
}

#[test]
fn learning_mode_turns_every_action_into_record() {
    let deny = Action::Deny { seconds: 60 };
    let quarantine = Action::Quarantine { seconds: 600 };
    let settings = |learning_mode| Settings {
        learning_seconds: 0,
        learning_mode,
        rate: Some(RateSettings { action: quarantine, ..Default::default() }),
        first_use: Some(FirstUseSettings { action: deny, ..Default::default() }),
        probing: Some(ProbingSettings { denials_per_minute: 3, action: deny }),
        delegation: Some(DelegationSettings { fan_out_per_hour: 2, action: quarantine }),
        ..Settings::default()
    };
    for learning_mode in [false, true] {
        let mut d = Detector::new(settings(learning_mode));
        let mut all = Vec::new();
        // One quiet minute for a baseline, then everything at once.
        d.observe(&obs("a"), T0);
        let t = T0 + MIN;
        for i in 0..30u64 {
            let subject = format!("user-{i}");
            let o = Observation {
                subject: &subject,
                depth: (i / 10) as usize,
                allowed: i % 3 != 0,
                tool: Some(if i < 15 { "read" } else { "write" }),
                ..obs("a")
            };
            all.extend(d.observe(&o, t + i * 100));
        }
        let mut fired: Vec<SignalKind> = all.iter().map(|s| s.kind).collect();
        fired.dedup();
        for kind in [
            SignalKind::Rate,
            SignalKind::FirstUse,
            SignalKind::Probing,
            SignalKind::DelegationDepth,
            SignalKind::FanOut,
        ] {
            assert!(fired.contains(&kind), "{kind:?} did not fire: {fired:?}");
        }
        for s in &all {
            let expected = match (learning_mode, s.kind) {
                (true, _) => Action::Record,
                (false, SignalKind::Rate | SignalKind::DelegationDepth | SignalKind::FanOut) => quarantine,
                (false, _) => deny,
            };
            assert_eq!(s.action, expected, "{s:?}");
            assert_eq!(s.agent, "a");
        }
    }
}

/// A reference LRU (a vector, most recent last) against the table, over many random agents.
#[test]
fn eviction_keeps_the_most_recently_seen_agents() {
    let mut d = Detector::new(Settings { max_agents: 3, ..Settings::default() });
    for (i, a) in ["a", "b", "c", "a"].iter().enumerate() {
        d.observe(&obs(a), T0 + i as u64);
    }
    d.observe(&obs("d"), T0 + 10);
    assert_eq!(d.tracked(), 3);
    assert!(d.baseline_per_minute("b").is_none(), "b was the least recently seen");
    for a in ["a", "c", "d"] {
        assert!(d.baseline_per_minute(a).is_some(), "{a}");
    }

    let cap = 50;
    let mut d = Detector::new(Settings { max_agents: cap, ..Settings::default() });
    let mut model: Vec<String> = Vec::new();
    let mut rng = Rng(7);
    for i in 0..20_000u64 {
        // Skewed: a few agents are hot, most are seen rarely.
        let n = if rng.next().is_multiple_of(2) { rng.next() % 20 } else { rng.next() % 500 };
        let name = format!("agent-{n}");
        d.observe(&Observation { allowed: i % 5 != 0, ..obs(&name) }, T0 + i * 50);
        model.retain(|m| *m != name);
        model.push(name);
        if model.len() > cap {
            model.remove(0);
        }
        assert!(d.tracked() <= cap);
        if i % 997 == 0 {
            for m in &model {
                assert!(d.baseline_per_minute(m).is_some(), "{m} should be tracked at step {i}");
            }
        }
    }
    assert_eq!(d.tracked(), cap);
    for m in &model {
        assert!(d.baseline_per_minute(m).is_some());
    }
}

#[test]
fn an_evicted_agent_starts_over_in_learning() {
    let mut d = Detector::new(Settings { max_agents: 1, learning_seconds: 3600, ..Settings::default() });
    d.observe(&Observation { tool: Some("read"), ..obs("a") }, T0);
    // After a's learning, b takes its slot; a comes back new: learning again, so no first use fires.
    d.observe(&obs("b"), T0 + 2 * HOUR);
    assert_eq!(d.tracked(), 1);
    let s = d.observe(&Observation { tool: Some("write"), ..obs("a") }, T0 + 2 * HOUR + 1);
    assert!(s.is_empty(), "{s:?}");
    let s = d.observe(&Observation { tool: Some("delete"), ..obs("a") }, T0 + 4 * HOUR);
    assert_eq!(s.len(), 1);
    assert!(s[0].detail.contains("tool \"delete\""), "{}", s[0].detail);
}

/// Not a test of correctness: the cost of `observe` on the common path (`cargo test --release ... --ignored
/// --nocapture`).
#[test]
#[ignore]
fn timing_of_the_common_path() {
    let names: Vec<String> = (0..1000).map(|i| format!("spiffe://example.org/agent/{i}")).collect();
    let mut d = Detector::new(Settings { learning_seconds: 0, ..Settings::default() });
    let labels = ["orders"];
    let run = |d: &mut Detector, n: u64, t0: u64| {
        let start = std::time::Instant::now();
        let mut fired = 0;
        for i in 0..n {
            let a = &names[(i % 1000) as usize];
            let o = Observation {
                agent: a,
                subject: "user-1",
                depth: 1,
                allowed: true,
                rule: Some("read-orders"),
                labels: &labels,
                tool: None,
            };
            fired += d.observe(&o, t0 + i).len();
        }
        (start.elapsed().as_nanos() as f64 / n as f64, fired)
    };
    run(&mut d, 100_000, T0);
    let (ns, fired) = run(&mut d, 2_000_000, T0 + 200_000);
    println!("observe: {ns:.0} ns per request (1000 agents, all signals on, {fired} signals)");
}
