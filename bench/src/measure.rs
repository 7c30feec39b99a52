//! Timing for the benchmarks: per figure, calibrate a batch size so one batch takes about `sample`, run a
//! discarded warm-up, then take `samples` batches and report the median, p10 and p90 of the nanoseconds per
//! operation. Figures are only compared within one run; targets are reported, never asserted.

use std::time::{Duration, Instant};

/// How long to measure each figure.
#[derive(Debug, Clone, Copy)]
pub struct Harness {
    /// Warm-up before sampling, discarded.
    pub warmup: Duration,
    /// Target duration of one sample (batch).
    pub sample: Duration,
    /// Number of samples.
    pub samples: usize,
}

/// The distribution of one figure: nanoseconds per operation.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median ns per operation.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Operations per timed batch.
    pub batch: u64,
    /// Samples taken.
    pub samples: usize,
}

impl Harness {
    /// Times `op` on `state`; `between` runs after every batch, untimed (housekeeping such as draining logs).
    pub fn run<S>(&self, state: &mut S, op: impl FnMut(&mut S), between: impl FnMut(&mut S)) -> Stats {
        self.run_with(state, op, between, |state, run_batch| run_batch(state))
    }

    /// Like [`Harness::run`], but each sample is how far `clock` advanced per operation, not the wall time of
    /// the batch: for a cost only the system under test can see, such as the time spent inside a Wasm module.
    pub fn run_clocked<S>(
        &self,
        state: &mut S,
        op: impl FnMut(&mut S),
        between: impl FnMut(&mut S),
        mut clock: impl FnMut(&S) -> Duration,
    ) -> Stats {
        self.run_with(state, op, between, |state, run_batch| {
            let before = clock(state);
            run_batch(state);
            clock(state).saturating_sub(before).as_nanos() as f64
        })
    }

    /// Calibration, warm-up and samples; `measure` runs one batch (the closure it is given, which answers the
    /// batch's wall time) and says what the batch cost in total, in ns.
    fn run_with<S>(
        &self,
        state: &mut S,
        mut op: impl FnMut(&mut S),
        mut between: impl FnMut(&mut S),
        mut measure: impl FnMut(&mut S, &mut dyn FnMut(&mut S) -> f64) -> f64,
    ) -> Stats {
        let batch = self.calibrate(&mut || op(state));
        between(state);
        // Warm-up, discarded: caches, branch predictors, the allocator's free lists, CPU frequency.
        let warm = Instant::now();
        while warm.elapsed() < self.warmup {
            sample(&mut || op(state), batch);
            between(state);
        }
        let per_op_ns = (0..self.samples)
            .map(|_| {
                let total = measure(state, &mut |state| sample(&mut || op(state), batch) * batch as f64);
                between(state);
                total / batch as f64
            })
            .collect();
        Stats::of(per_op_ns, batch)
    }

    /// Times `op` with no state to look after.
    pub fn time(&self, mut op: impl FnMut()) -> Stats {
        self.run(&mut (), |_| op(), |_| {})
    }

    /// Times `a` and `b` in alternating samples (A B A B ...), so that a change in the machine's load during
    /// the run hits both alike and their ratio stays meaningful.
    pub fn pair(&self, mut a: impl FnMut(), mut b: impl FnMut()) -> (Stats, Stats) {
        let (batch_a, batch_b) = (self.calibrate(&mut a), self.calibrate(&mut b));
        let warm = Instant::now();
        while warm.elapsed() < self.warmup {
            sample(&mut a, batch_a);
            sample(&mut b, batch_b);
        }
        let (mut xs, mut ys) = (Vec::with_capacity(self.samples), Vec::with_capacity(self.samples));
        for _ in 0..self.samples {
            xs.push(sample(&mut a, batch_a));
            ys.push(sample(&mut b, batch_b));
        }
        (Stats::of(xs, batch_a), Stats::of(ys, batch_b))
    }

    /// Times each of `ops` (one operation each), sampled in turn (A B C A B C ...). `min_batch` keeps a
    /// batch from covering fewer operations than one cycle of a request mix, so that a slow operation's
    /// median is still a median over the mix; after five rounds, sampling stops once `budget` is spent.
    pub fn group(&self, ops: &mut [&mut dyn FnMut()], min_batch: u64, budget: Duration) -> Vec<Stats> {
        let batches: Vec<u64> = ops.iter_mut().map(|op| self.calibrate(*op).max(min_batch)).collect();
        let warm = Instant::now();
        while warm.elapsed() < self.warmup {
            for (op, &batch) in ops.iter_mut().zip(&batches) {
                sample(*op, batch);
            }
        }
        let mut per_op = vec![Vec::with_capacity(self.samples); ops.len()];
        let started = Instant::now();
        for round in 0..self.samples {
            if round >= 5 && started.elapsed() > budget {
                break;
            }
            for ((op, &batch), xs) in ops.iter_mut().zip(&batches).zip(per_op.iter_mut()) {
                xs.push(sample(*op, batch));
            }
        }
        per_op.into_iter().zip(batches).map(|(xs, batch)| Stats::of(xs, batch)).collect()
    }

    /// A batch size that takes about one sample period: single operations for half a period estimate the
    /// cost (this also starts the warm-up).
    pub fn calibrate(&self, op: &mut dyn FnMut()) -> u64 {
        let start = Instant::now();
        let mut calls = 0u64;
        while calls < 3 || start.elapsed() < self.sample / 2 {
            op();
            calls += 1;
        }
        let per_op = start.elapsed().as_secs_f64() / calls as f64;
        ((self.sample.as_secs_f64() / per_op).round() as u64).max(1)
    }
}

/// Nanoseconds per operation over one batch.
pub fn sample(op: &mut dyn FnMut(), batch: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        op();
    }
    t.elapsed().as_nanos() as f64 / batch as f64
}

impl Stats {
    /// The distribution for a benchmark's JSON (ns to a tenth), with what the figure measures.
    pub fn json(&self, what: &str) -> serde_json::Value {
        let tenth = |x: f64| (x * 10.0).round() / 10.0;
        serde_json::json!({
            "median": tenth(self.median),
            "p10": tenth(self.p10),
            "p90": tenth(self.p90),
            "batch": self.batch,
            "samples": self.samples,
            "what": what,
        })
    }

    pub fn of(mut per_op_ns: Vec<f64>, batch: u64) -> Stats {
        per_op_ns.sort_by(f64::total_cmp);
        Stats {
            median: percentile(&per_op_ns, 0.5),
            p10: percentile(&per_op_ns, 0.1),
            p90: percentile(&per_op_ns, 0.9),
            batch,
            samples: per_op_ns.len(),
        }
    }
}

/// Nearest-rank percentile of sorted values, linearly interpolated between neighbours.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The machine a benchmark ran on, for its JSON: CPU, cores, OS, compiler, build, load at the end.
pub fn machine() -> serde_json::Value {
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "rustc": rustc,
        "build": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "loadavg_at_end": load_average(),
    })
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages: other work on the machine inflates every figure.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
