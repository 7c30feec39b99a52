//! The rate signal's state per agent: two minute counts, an exponentially weighted baseline, an episode flag.

use super::{HALF_LIFE_MINUTES, RateSettings};

const MINUTE_MS: u64 = 60_000;

/// The rate thresholds and the baseline's constants, computed once per detector.
#[derive(Debug, Clone, Copy)]
pub(super) struct Model {
    /// The weight a baseline keeps per minute: 2^(−1 / half-life).
    decay: f64,
    /// The least a gap of zeros may multiply the baseline by: 2 / factor (at most 1).
    gap_floor: f64,
    factor: f64,
    min_per_minute: f64,
}

impl Model {
    pub(super) fn new(r: RateSettings) -> Model {
        // `Detector::new` has clamped factor ≥ 1 and min_per_minute ≥ 0, both finite.
        Model {
            decay: (-1.0 / HALF_LIFE_MINUTES).exp2(),
            gap_floor: (2.0 / r.factor).min(1.0),
            factor: r.factor,
            min_per_minute: r.min_per_minute,
        }
    }
}

/// One agent's rate state: 40 bytes.
#[derive(Debug, Clone, Default)]
pub(super) struct Rate {
    /// The current clock minute (ms / 60,000) and its count so far.
    minute: u64,
    count: u32,
    /// The previous minute's count (0 unless it is the minute just before `minute`).
    prev: u32,
    /// The weighted sum of folded per-minute counts and the sum of their weights (1 − decayⁿ after n minutes):
    /// the baseline is `sum / weight`, bias-corrected for a young agent.
    sum: f64,
    weight: f64,
    /// An episode is open: a signal fired and the rate has not yet stayed below factor / 2 × baseline for
    /// [`CALM_MINUTES`]. Its minutes are not folded into the baseline.
    episode: bool,
    /// Consecutive finished minutes of the episode below factor / 2 × baseline.
    calm: u8,
}

/// Whole minutes below factor / 2 × baseline that end an episode.
pub(super) const CALM_MINUTES: u8 = 5;

impl Rate {
    /// A fresh state from the minute of `now_ms`.
    pub(super) fn new(now_ms: u64) -> Rate {
        Rate { minute: now_ms / MINUTE_MS, ..Rate::default() }
    }

    /// The baseline in requests a minute (0 before any minute has been folded).
    pub(super) fn baseline(&self) -> f64 {
        if self.weight > 0.0 { self.sum / self.weight } else { 0.0 }
    }

    /// Folds one finished minute with `count` requests.
    fn fold(&mut self, count: u32, m: &Model) {
        self.sum = m.decay * self.sum + (1.0 - m.decay) * f64::from(count);
        self.weight = m.decay * self.weight + (1.0 - m.decay);
    }

    /// Folds `minutes` minutes without requests in closed form, multiplying the baseline by at most
    /// `gap_floor` (see the module documentation).
    fn fold_zeros(&mut self, minutes: u64, m: &Model) {
        if minutes == 0 {
            return;
        }
        // 2^(−minutes / half-life); a float exponent, so a gap of years costs the same as one of a minute.
        let d = (-(minutes as f64) / HALF_LIFE_MINUTES).exp2();
        // Floor the decay of the baseline (sum / weight), not of the sum: with weight w, a decay d multiplies
        // the baseline by d w / (d w + 1 − d), which equals `gap_floor` f for d = f / (f + w (1 − f)).
        let (f, w) = (m.gap_floor, self.weight);
        let denominator = f + w * (1.0 - f);
        let floor = if denominator > 0.0 { f / denominator } else { 1.0 };
        let d = if d < floor { floor } else { d };
        self.sum *= d;
        self.weight = d * self.weight + (1.0 - d);
    }

    /// Moves to the minute of `now_ms`, folding what finished. A clock that goes back stays in the current
    /// minute.
    fn advance(&mut self, now_ms: u64, m: &Model) {
        let minute = now_ms / MINUTE_MS;
        if minute <= self.minute {
            return;
        }
        let elapsed = minute - self.minute;
        let empty = elapsed - 1;
        if self.episode {
            // The finished minute (not folded) and the empty ones after it count towards the calm that ends
            // the episode; the empty ones are folded once it has ended.
            let calm = f64::from(self.count) < m.factor / 2.0 * self.baseline();
            self.calm = if calm { self.calm.saturating_add(1) } else { 0 };
            self.calm = self.calm.saturating_add(u8::try_from(empty).unwrap_or(u8::MAX));
            if self.calm >= CALM_MINUTES {
                self.episode = false;
                self.fold_zeros(empty, m);
            }
        } else {
            self.fold(self.count, m);
            self.fold_zeros(empty, m);
        }
        self.prev = if elapsed == 1 { self.count } else { 0 };
        self.minute = minute;
        self.count = 0;
    }

    /// The requests over the last 60 seconds: the current minute's and the part of the previous minute's
    /// still inside the window.
    fn short_term(&self, now_ms: u64) -> f64 {
        let into = if now_ms / MINUTE_MS == self.minute { (now_ms % MINUTE_MS) as f64 / MINUTE_MS as f64 } else { 0.0 };
        f64::from(self.count) + f64::from(self.prev) * (1.0 - into)
    }

    /// Counts one request at `now_ms`; the signal's detail if it opens an episode.
    pub(super) fn observe(&mut self, now_ms: u64, m: &Model, learned: bool) -> Option<String> {
        self.advance(now_ms, m);
        self.count = self.count.saturating_add(1);
        let short = self.short_term(now_ms);
        let baseline = self.baseline();
        if self.episode {
            return None;
        }
        if !learned || self.weight <= 0.0 || short < m.min_per_minute || short <= m.factor * baseline {
            return None;
        }
        self.episode = true;
        self.calm = 0;
        Some(if baseline > 0.0 {
            format!(
                "rate {short:.0}/min is {:.0}x its baseline {baseline:.1}/min (fires above {}x and from {}/min)",
                short / baseline,
                m.factor,
                m.min_per_minute
            )
        } else {
            format!("rate {short:.0}/min over a baseline of 0/min (fires from {}/min)", m.min_per_minute)
        })
    }
}
