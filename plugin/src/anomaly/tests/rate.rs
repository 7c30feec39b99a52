//! The rate signal over simulated days.

use super::*;

fn rate_signals(signals: &[(u64, Signal)]) -> Vec<u64> {
    signals.iter().filter(|(_, s)| s.kind == SignalKind::Rate).map(|(t, _)| *t).collect()
}

#[test]
fn the_baseline_learns_the_agents_rate() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(1);
    let s = steady(&mut d, &mut rng, "a", (T0, T0 + DAY), 100.0);
    assert!(s.is_empty(), "{s:?}");
    // 100 an hour is 1.67 a minute; after one day the mean weighs the last hours most, so Poisson noise
    // remains.
    let b = d.baseline_per_minute("a").unwrap();
    assert!((1.3..2.1).contains(&b), "after a day: {b}");
    let s = steady(&mut d, &mut rng, "a", (T0 + DAY, T0 + 3 * DAY), 100.0);
    assert!(s.is_empty(), "{s:?}");
    let b = d.baseline_per_minute("a").unwrap();
    assert!((1.4..1.95).contains(&b), "after three days: {b}");
    // A young baseline is bias-corrected: one hour at 600 an hour is already 10 a minute, not 10 × (1 − 2^−1/6).
    let mut d = Detector::new(rate_only());
    steady(&mut d, &mut rng, "b", (T0, T0 + HOUR), 600.0);
    let b = d.baseline_per_minute("b").unwrap();
    assert!((8.5..11.5).contains(&b), "after an hour: {b}");
}

/// The seed: 100 an hour for two days, then 10,000 an hour. Flagged within seconds, once per episode.
#[test]
fn the_seeds_spike_fires_within_a_minute_and_once_per_episode() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(2);
    let quiet = steady(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 100.0);
    assert!(quiet.is_empty(), "{quiet:?}");
    let before = d.baseline_per_minute("a").unwrap();

    // Two hours at 10,000 an hour, starting mid-minute.
    let spike = T0 + 2 * DAY + 17_000;
    let s = steady(&mut d, &mut rng, "a", (spike, spike + 2 * HOUR), 10_000.0);
    let fired = rate_signals(&s);
    assert_eq!(fired.len(), 1, "one signal for one episode: {s:?}");
    let latency = fired[0] - spike;
    assert!(latency < 30_000, "flagged {latency} ms after the spike started");
    let detail = &s[0].1.detail;
    assert!(detail.starts_with("rate ") && detail.contains("x its baseline"), "{detail}");
    // The episode's minutes did not teach the baseline.
    let during = d.baseline_per_minute("a").unwrap();
    assert!((during - before).abs() < 0.05 * before, "{before} → {during}");

    // Back to normal for a day: quiet; the episode closed and the baseline is the agent's again.
    let end = spike + 2 * HOUR;
    let s = steady(&mut d, &mut rng, "a", (end, end + DAY), 100.0);
    assert!(s.is_empty(), "{s:?}");
    // A second spike is a second episode.
    let again = end + DAY;
    let s = steady(&mut d, &mut rng, "a", (again, again + HOUR), 10_000.0);
    assert_eq!(rate_signals(&s).len(), 1, "{s:?}");
    assert!(rate_signals(&s)[0] - again < 30_000);
}

/// An episode ends after five calm minutes (below factor / 2 × baseline, or empty); a shorter dip or pause,
/// or a dip that stays above factor / 2 × baseline, keeps it open.
#[test]
fn an_episode_ends_after_five_calm_minutes() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(3);
    steady(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 100.0);
    let mut t = T0 + 2 * DAY;
    // (minutes, requests an hour, rate signals expected): 0 an hour is a pause.
    let phases: [(u64, f64, usize); 10] = [
        (10, 10_000.0, 1),
        (4, 100.0, 0), // four calm minutes: still the same episode
        (10, 10_000.0, 0),
        (3, 0.0, 0), // a pause of three minutes: the same
        (10, 10_000.0, 0),
        (10, 1_500.0, 0), // 15x the baseline: not calm
        (10, 10_000.0, 0),
        (6, 100.0, 0), // calm for five minutes: the episode is over
        (10, 10_000.0, 1),
        (30, 0.0, 0), // a pause of half an hour ends it too
    ];
    for (minutes, per_hour, expected) in phases {
        let end = t + minutes * MIN;
        if per_hour > 0.0 {
            let s = steady(&mut d, &mut rng, "a", (t, end), per_hour);
            assert_eq!(rate_signals(&s).len(), expected, "{minutes} min at {per_hour}/h: {s:?}");
        }
        t = end;
    }
    let s = steady(&mut d, &mut rng, "a", (t, t + 10 * MIN), 10_000.0);
    assert_eq!(rate_signals(&s).len(), 1, "{s:?}");
}

/// Noise near the threshold: a rate that hovers between 5 and 10 times the baseline, crossing 10x now and
/// then, fires once, not at every crossing.
#[test]
fn a_rate_hovering_near_the_threshold_fires_once() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(13);
    steady(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 100.0);
    let b = d.baseline_per_minute("a").unwrap() * 60.0;
    let s = steady(&mut d, &mut rng, "a", (T0 + 2 * DAY, T0 + 2 * DAY + 2 * HOUR), 8.0 * b);
    assert_eq!(rate_signals(&s).len(), 1, "{s:?}");
}

/// ±50 % over the day, for a week: never a signal, at the seed's volume and at a volume where
/// `min_per_minute` does not protect (100 a minute).
#[test]
fn a_daily_rhythm_of_fifty_percent_never_fires_over_a_week() {
    for (mean, seed) in [(100.0, 4), (6000.0, 5)] {
        let mut d = Detector::new(rate_only());
        let mut rng = Rng(seed);
        let rhythm = |t: u64| {
            let phase = (t - T0) as f64 / DAY as f64 * std::f64::consts::TAU;
            mean * (1.0 + 0.5 * phase.sin())
        };
        let (s, _) = traffic(&mut d, &mut rng, "a", (T0, T0 + 7 * DAY), 1.5 * mean, rhythm);
        assert!(s.is_empty(), "at {mean}/h: {s:?}");
        // The baseline follows the rhythm only damped: within ±30 % of the mean at any hour of day 7.
        let mut lo = f64::MAX;
        let mut hi = 0.0f64;
        for h in 0..24 {
            let t = T0 + 7 * DAY + h * HOUR;
            let (s, _) = traffic(&mut d, &mut rng, "a", (t, t + HOUR), 1.5 * mean, rhythm);
            assert!(s.is_empty());
            let b = d.baseline_per_minute("a").unwrap() * 60.0;
            lo = lo.min(b);
            hi = hi.max(b);
        }
        assert!(lo > 0.7 * mean && hi < 1.3 * mean, "baseline between {lo} and {hi} an hour for {mean}");
    }
}

/// A slow ramp is learned (documented: growth slower than about 2.8x an hour); a fast one fires.
#[test]
fn a_slow_ramp_is_learned_and_a_fast_one_fires() {
    // 100 → 10,000 an hour over five days after two days of learning: ×2.5 a day.
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(6);
    steady(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 100.0);
    let start = T0 + 2 * DAY;
    let ramp = |t: u64| 100.0 * 100f64.powf((t - start) as f64 / (5 * DAY) as f64);
    let (s, _) = traffic(&mut d, &mut rng, "a", (start, start + 5 * DAY), 10_000.0, ramp);
    assert!(s.is_empty(), "{s:?}");
    let b = d.baseline_per_minute("a").unwrap() * 60.0;
    assert!((6_000.0..10_000.0).contains(&b), "the baseline followed: {b}/h");

    // 100 → 10,000 an hour within one hour: fires, once.
    let mut d = Detector::new(rate_only());
    steady(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 100.0);
    let fast = |t: u64| 100.0 * 100f64.powf(((t - start) as f64 / HOUR as f64).min(1.0));
    let (s, _) = traffic(&mut d, &mut rng, "a", (start, start + 2 * HOUR), 10_000.0, fast);
    assert_eq!(rate_signals(&s).len(), 1, "{s:?}");
}

/// Nothing fires during learning, and below `min_per_minute` nothing fires however large the factor.
#[test]
fn learning_and_the_minimum_rate_hold_signals_back() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(8);
    steady(&mut d, &mut rng, "a", (T0, T0 + 12 * HOUR), 100.0);
    let s = steady(&mut d, &mut rng, "a", (T0 + 12 * HOUR, T0 + 13 * HOUR), 10_000.0);
    assert!(s.is_empty(), "still learning: {s:?}");

    // 6 an hour (0.1 a minute) to 120 an hour (2 a minute): 20x the baseline, but under 10 a minute.
    let mut d = Detector::new(rate_only());
    steady(&mut d, &mut rng, "b", (T0, T0 + 2 * DAY), 6.0);
    let b = d.baseline_per_minute("b").unwrap();
    assert!(2.0 > 10.0 * b, "the factor alone would fire: {b}");
    let s = steady(&mut d, &mut rng, "b", (T0 + 2 * DAY, T0 + 2 * DAY + 2 * HOUR), 120.0);
    assert!(s.is_empty(), "{s:?}");
}

/// A week of silence: folded in O(1); the baseline fell to a fifth (2 / factor), not to 2^−28, so the
/// agent's usual rate on return is quiet and a 100x spike on its dormant credential still fires.
#[test]
fn a_long_idle_gap_neither_alarms_at_the_usual_rate_nor_hides_a_spike() {
    for (back_per_hour, expected) in [(1200.0, 0), (120_000.0, 1)] {
        let mut d = Detector::new(rate_only());
        let mut rng = Rng(9);
        let (_, last) = traffic(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 1200.0, |_| 1200.0);
        let before = d.baseline_per_minute("a").unwrap();
        let back = last + 7 * DAY;
        let s = steady(&mut d, &mut rng, "a", (back, back + DAY), back_per_hour);
        assert_eq!(rate_signals(&s).len(), expected, "back at {back_per_hour}/h: {s:?}");
        if expected == 0 {
            let after = d.baseline_per_minute("a").unwrap();
            assert!((after - before).abs() < 0.5 * before, "relearned: {before} → {after}");
        }
    }
    // The floor itself: one request after the gap sees a baseline of 2 / factor of the one before.
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(10);
    let (_, last) = traffic(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 1200.0, |_| 1200.0);
    let before = d.baseline_per_minute("a").unwrap();
    d.observe(&obs("a"), last + 7 * DAY);
    let after = d.baseline_per_minute("a").unwrap();
    // The last minute before the gap is folded too, so allow for its noise.
    assert!((after / before - 0.2).abs() < 0.02, "{before} → {after}");
    // Any gap costs the same: a hundred years at once is one call, and leaves finite numbers.
    let t = last + 7 * DAY + 100 * 365 * DAY;
    assert!(d.observe(&obs("a"), t).is_empty());
    let b = d.baseline_per_minute("a").unwrap();
    assert!(b.is_finite() && b > 0.0, "{b}");
}

/// Quiet nights: eight hours of silence every night, 20 a minute by day, for a week: no signal (the
/// night decays the baseline to 0.4, above the 0.1 a factor of 10 needs).
#[test]
fn quiet_nights_do_not_alarm_in_the_morning() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(11);
    let day = |t: u64| if (t - T0) % DAY < 8 * HOUR { 0.0 } else { 1200.0 };
    let (s, _) = traffic(&mut d, &mut rng, "a", (T0, T0 + 7 * DAY), 1200.0, day);
    assert!(s.is_empty(), "{s:?}");
}

/// A clock that goes back counts into the current minute and breaks nothing.
#[test]
fn a_clock_going_back_is_harmless() {
    let mut d = Detector::new(rate_only());
    let mut rng = Rng(12);
    let (_, last) = traffic(&mut d, &mut rng, "a", (T0, T0 + 2 * DAY), 100.0, |_| 100.0);
    let b = d.baseline_per_minute("a").unwrap();
    for i in 0..5 {
        assert!(d.observe(&obs("a"), last - i * HOUR).is_empty());
    }
    assert_eq!(d.baseline_per_minute("a").unwrap(), b);
    assert!(d.observe(&obs("a"), 0).is_empty());
    let s = steady(&mut d, &mut rng, "a", (last + MIN, last + DAY), 100.0);
    assert!(s.is_empty(), "{s:?}");
}
