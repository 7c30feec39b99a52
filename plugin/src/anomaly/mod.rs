//! Anomaly detection per agent: notice an agent that stops behaving like itself.
//!
//! Pure and per VM: the filter keeps one [`Detector`] per worker, calls [`Detector::observe`] once per decided
//! request with the verified agent, and acts on the [`Signal`]s it returns (logs, metrics, a denial or a
//! quarantine). Time is passed in (`now_ms`, milliseconds since the epoch), so the tests run many simulated
//! days in virtual time. Only the thresholds are configured; what is normal is learned from each agent's own
//! traffic.
//!
//! # Learning
//!
//! Each agent has a learning period of `learning_seconds` (default one day) from the first request this
//! detector sees from it. During it only [`SignalKind::Probing`] can fire (a burst of denials needs no
//! baseline); the other signals learn. With `learning_mode` every signal is still produced, but its action is
//! always [`Action::Record`]: observe only. Only verified agents may be observed: each name creates state.
//!
//! # Signals
//!
//! - **Rate** (`rate`): every request, allowed or denied, counts. The detector keeps the count of the
//!   current clock minute and of the previous one; the short-term rate is the count over the last 60
//!   seconds, estimated as the current minute's count plus the previous minute's weighted by the part of it
//!   still inside the window (exact for a steady rate). At each minute boundary the finished minute is folded
//!   into the agent's baseline: an exponentially weighted mean of its per-minute counts with a half-life of
//!   [`HALF_LIFE_MINUTES`] (6 hours), bias-corrected so that a young baseline is not pulled towards zero.
//!   Minutes without requests count as zeros, folded in closed form (one power, never a loop over the missed
//!   minutes). The signal fires when the learning period is over, the baseline holds at least one finished
//!   minute, the short-term rate is at least `min_per_minute` (default 10) and more than `factor` (default 10)
//!   times the baseline. One signal per episode: the episode ends after 5 consecutive clock minutes each
//!   below `factor / 2` times the baseline (minutes without requests count), so that a rate hovering near
//!   the threshold, whose noise crosses it both ways, does not signal again and again; the minutes of an
//!   episode are not folded into the baseline, so a burst cannot teach the baseline that it is normal.
//!
//!   Why a 6-hour half-life: an exponential mean with time constant τ = 6 h / ln 2 = 8.7 h follows a daily
//!   sinusoid with its amplitude divided by √(1 + (2πτ / 24 h)²) ≈ 2.5, so for a rhythm of ±50 % the baseline
//!   moves by only ±20 % around the mean and the rate never exceeds 1.5 / 0.8 ≈ 1.9 times the baseline, far
//!   below a factor of 10. A spike teaches it nothing (its minutes are not folded), and even if it were folded
//!   a 100x spike would need hours to move the baseline by 10x. A shorter half-life follows the daily rhythm
//!   more closely but forgets a quiet night faster; a longer one takes days to follow a legitimate change.
//!
//!   Detection time: the seed's agent at 100 requests an hour (a baseline of 1.7 a minute) that jumps to
//!   10,000 an hour (2.8 a second) passes both `min_per_minute` (10) and 10 times its baseline (17) after
//!   about 17 requests, about 6 seconds; in general a rate above both thresholds is flagged within the minute
//!   it starts (at most 60 seconds after it starts, the time for the window to fill).
//!
//!   A slow ramp is learned, not flagged: for a rate growing exponentially at g per hour the mean lags it by
//!   a factor 1 + gτ, so only growth faster than (factor − 1) / τ (1.04 per hour, about 2.8x an hour, for a
//!   factor of 10) fires; a rate that doubles every day never does. A sustained new level is one episode: it
//!   fires once, the baseline does not learn it, and the rate signal stays quiet for that agent until its
//!   rate has stayed below `factor / 2` times the baseline for 5 minutes (the action, a denial or a
//!   quarantine, is how the operator stops it).
//!
//!   Long idle gaps: the zeros of a gap decay the baseline, but by at most a factor `2 / factor` (0.2 for a
//!   factor of 10; reached after 14 hours of silence): an agent that comes back after a week at its usual
//!   rate is compared with a baseline at least a fifth of the one it left with, so it fires only above twice
//!   its old rate, and the seed's 100x spike on a dormant credential is still flagged. Without the floor a
//!   week of zeros would leave a baseline of 2⁻²⁸ of the old one and every return would look like a spike.
//!   Nightly pauses shorter than 14 hours decay the baseline as zeros normally do.
//! - **First use** (`first_use`): during the learning period the detector remembers each name an agent used
//!   in an allowed request: its route labels, the rule that allowed it and its MCP tool (a 64-bit keyed hash
//!   per name, at most `max_seen`, default 256, per agent). After it, a name never seen fires once and is then
//!   remembered. Denied requests are not counted (they change nothing; probing watches them). An agent that
//!   used more than `max_seen` names during learning is too varied for this signal: it stops learning new
//!   names and first use stays off for it; after learning, the signal turns off for an agent once its set is
//!   full (a name that cannot be remembered would fire on every request).
//! - **Probing** (`probing`): `denials_per_minute` (default 20) denials of one agent within one clock minute
//!   fire, during learning too; at most one signal per agent per minute. A burst split across a minute
//!   boundary can reach twice the threshold less two without firing; a sustained one fires within its second
//!   minute.
//! - **Delegation depth** (`delegation`): after learning, a request whose delegation chain (the `act`
//!   actors) is deeper than any the agent presented during learning fires once per new maximum.
//! - **Fan-out** (`delegation`): after learning, more than `fan_out_per_hour` (default 50) distinct subjects
//!   (the root of the chain, whom the agent acts for) within one clock hour fire once per hour; at most
//!   `fan_out_per_hour + 1` subject hashes are held.
//!
//! # State
//!
//! At most `max_agents` (default 10,000) agents are tracked; a new agent beyond it replaces the least recently
//! seen one (an intrusive list through the slots: O(1) per request, no scan), which starts over as new. The
//! memory per agent is at most [`Settings::memory_per_agent_bytes`]: with the defaults 2,842 bytes on a
//! 64-bit build (less in the 32-bit `.wasm`) when its first-use and fan-out sets are full
//! ([`Detector::memory_per_agent_bytes`]); otherwise about 280 bytes plus 8 per name remembered and 8 per
//! subject of the current hour, each set rounded up to a power of two. 10,000 agents take at most 28 MB per
//! worker, about 4.5 MB when each has used ten names and acts for a few subjects an hour. Names and subjects
//! hash with a key drawn at random per detector, so which of them share a hash cannot be chosen by a client.
//! The common request (a known agent, nothing fires) allocates nothing: only a new agent, a signal, or a set
//! growing to a new power of two does.
//!
//! Beside `policy`, `audit` and `revocation`; it imports nothing from the crate.

mod agent;
mod rate;
mod table;
#[cfg(test)]
mod tests;

use agent::Agent;
use rate::Model;
use std::hash::{BuildHasher, RandomState};
use table::Table;

/// The half-life of the rate baseline, in minutes (6 hours): see the module documentation for why.
pub const HALF_LIFE_MINUTES: f64 = 360.0;

/// What to do about a signal. The detector only says; the filter applies it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Action {
    /// Log and count it.
    #[default]
    Record,
    /// Refuse the agent's requests on this worker for this many seconds.
    Deny {
        /// How long.
        seconds: u32,
    },
    /// Refuse the agent on every worker for this many seconds (a revocation of the agent).
    Quarantine {
        /// How long.
        seconds: u32,
    },
}

/// Which signal fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// A rate far above the agent's own baseline.
    Rate,
    /// A route label, rule or MCP tool the agent never used during its learning period.
    FirstUse,
    /// A burst of denials.
    Probing,
    /// A delegation chain deeper than any seen during learning.
    DelegationDepth,
    /// Too many distinct subjects within an hour.
    FanOut,
}

impl SignalKind {
    /// The name in logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            SignalKind::Rate => "rate",
            SignalKind::FirstUse => "first_use",
            SignalKind::Probing => "probing",
            SignalKind::DelegationDepth => "delegation_depth",
            SignalKind::FanOut => "fan_out",
        }
    }
}

/// The rate signal's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSettings {
    /// Fire above this many times the baseline (default 10; at least 1).
    pub factor: f64,
    /// ... and only from this many requests a minute (default 10; not negative).
    pub min_per_minute: f64,
    /// What to do.
    pub action: Action,
}

impl Default for RateSettings {
    fn default() -> RateSettings {
        RateSettings { factor: 10.0, min_per_minute: 10.0, action: Action::Record }
    }
}

/// The first-use signal's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstUseSettings {
    /// What to do.
    pub action: Action,
    /// Most names remembered per agent (default 256, at most [`MAX_SET`]).
    pub max_seen: usize,
}

impl Default for FirstUseSettings {
    fn default() -> FirstUseSettings {
        FirstUseSettings { action: Action::Record, max_seen: 256 }
    }
}

/// The probing signal's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbingSettings {
    /// Fire at this many denials within one clock minute (default 20; at least 1).
    pub denials_per_minute: u32,
    /// What to do.
    pub action: Action,
}

impl Default for ProbingSettings {
    fn default() -> ProbingSettings {
        ProbingSettings { denials_per_minute: 20, action: Action::Record }
    }
}

/// The delegation signals' settings (depth and fan-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelegationSettings {
    /// Fire above this many distinct subjects an agent acts for within one clock hour (default 50, at most
    /// [`MAX_SET`] − 1).
    pub fan_out_per_hour: u32,
    /// What to do.
    pub action: Action,
}

impl Default for DelegationSettings {
    fn default() -> DelegationSettings {
        DelegationSettings { fan_out_per_hour: 50, action: Action::Record }
    }
}

/// The largest per-agent set of hashes (`max_seen`, `fan_out_per_hour + 1`): it bounds memory per agent.
pub const MAX_SET: usize = 65_536;

/// What the detector watches; `None` turns a signal off. The default turns every signal on with
/// [`Action::Record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Per-agent learning period from first sight (default 86,400: a day).
    pub learning_seconds: u64,
    /// Observe only: every action is [`Action::Record`].
    pub learning_mode: bool,
    /// Most agents tracked (default 10,000; at least 1); the least recently seen is dropped.
    pub max_agents: usize,
    /// A rate far above the agent's baseline.
    pub rate: Option<RateSettings>,
    /// A name never used during learning.
    pub first_use: Option<FirstUseSettings>,
    /// A burst of denials.
    pub probing: Option<ProbingSettings>,
    /// Delegation depth and fan-out.
    pub delegation: Option<DelegationSettings>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            learning_seconds: 86_400,
            learning_mode: false,
            max_agents: 10_000,
            rate: Some(RateSettings::default()),
            first_use: Some(FirstUseSettings::default()),
            probing: Some(ProbingSettings::default()),
            delegation: Some(DelegationSettings::default()),
        }
    }
}

impl Settings {
    /// The first setting out of range, with its name, for the configuration's error. [`Detector::new`]
    /// clamps such values instead, so that no setting can make a division or a comparison meaningless.
    pub fn check(&self) -> Result<(), String> {
        if self.max_agents == 0 {
            return Err("max_agents must be at least 1".into());
        }
        if let Some(r) = &self.rate {
            if !(r.factor.is_finite() && r.factor >= 1.0) {
                return Err("rate.factor must be a number of at least 1".into());
            }
            if !(r.min_per_minute.is_finite() && r.min_per_minute >= 0.0) {
                return Err("rate.min_per_minute must be a number of at least 0".into());
            }
        }
        if let Some(f) = &self.first_use
            && !(1..=MAX_SET).contains(&f.max_seen)
        {
            return Err(format!("first_use.max_seen must be between 1 and {MAX_SET}"));
        }
        if let Some(p) = &self.probing
            && p.denials_per_minute == 0
        {
            return Err("probing.denials_per_minute must be at least 1".into());
        }
        if let Some(d) = &self.delegation
            && d.fan_out_per_hour as usize >= MAX_SET
        {
            return Err(format!("delegation.fan_out_per_hour must be below {MAX_SET}"));
        }
        Ok(())
    }

    /// The most memory one tracked agent takes with these settings, in bytes: its slot, its entry in the
    /// index (counted twice for the index's spare capacity), its name (64 bytes assumed), and its first-use
    /// and fan-out sets when full (vectors of 8-byte hashes, rounded up to a power of two as they grow).
    pub fn memory_per_agent_bytes(&self) -> usize {
        const NAME: usize = 16 + 64;
        let slot = std::mem::size_of::<table::Slot>();
        let index = 2 * (std::mem::size_of::<(std::rc::Rc<str>, u32)>() + 1);
        let seen = self.first_use.map_or(0, |f| f.max_seen.clamp(1, MAX_SET).next_power_of_two() * 8);
        let subjects =
            self.delegation.map_or(0, |d| (d.fan_out_per_hour as usize + 1).min(MAX_SET).next_power_of_two() * 8);
        slot + index + NAME + seen + subjects
    }
}

/// One decided request, as the detector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The verified agent.
    pub agent: &'a str,
    /// The subject the agent acts for (the root of the delegation chain; the agent itself without one).
    pub subject: &'a str,
    /// Actors in the delegation chain (0 without one).
    pub depth: usize,
    /// Whether the request was allowed.
    pub allowed: bool,
    /// The rule that decided (for first use, only an allowing rule counts).
    pub rule: Option<&'a str>,
    /// The route's labels.
    pub labels: &'a [&'a str],
    /// The MCP tool called, if any.
    pub tool: Option<&'a str>,
}

/// A signal that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Which.
    pub kind: SignalKind,
    /// The agent.
    pub agent: String,
    /// Human text for the log; names a client chose are quoted, escaped and cut to 64 characters.
    pub detail: String,
    /// What to do ([`Action::Record`] in learning mode).
    pub action: Action,
}

/// The detector of one worker VM: every tracked agent's state.
pub struct Detector {
    settings: Settings,
    learning_ms: u64,
    model: Model,
    table: Table,
    /// The key names and subjects are hashed with: random per detector.
    keys: RandomState,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("tracked", &self.table.len()).field("settings", &self.settings).finish()
    }
}

impl Detector {
    /// A detector tracking nobody yet. Settings out of range (see [`Settings::check`]) are clamped.
    pub fn new(mut settings: Settings) -> Detector {
        settings.max_agents = settings.max_agents.clamp(1, u32::MAX as usize - 1);
        if let Some(r) = &mut settings.rate {
            r.factor = if r.factor.is_finite() { r.factor.max(1.0) } else { RateSettings::default().factor };
            r.min_per_minute = if r.min_per_minute.is_finite() { r.min_per_minute.max(0.0) } else { 0.0 };
        }
        if let Some(f) = &mut settings.first_use {
            f.max_seen = f.max_seen.clamp(1, MAX_SET);
        }
        if let Some(p) = &mut settings.probing {
            p.denials_per_minute = p.denials_per_minute.max(1);
        }
        if let Some(d) = &mut settings.delegation {
            d.fan_out_per_hour = d.fan_out_per_hour.min(MAX_SET as u32 - 1);
        }
        let model = Model::new(settings.rate.unwrap_or_default());
        Detector {
            learning_ms: settings.learning_seconds.saturating_mul(1000),
            model,
            table: Table::new(settings.max_agents),
            keys: RandomState::new(),
            settings,
        }
    }

    /// The settings in force (after clamping).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Records one decided request at `now_ms` and returns the signals it fires (usually none, without
    /// allocating).
    pub fn observe(&mut self, o: &Observation<'_>, now_ms: u64) -> Vec<Signal> {
        let mut out = Vec::new();
        let s = &self.settings;
        let agent = self.table.touch(o.agent, now_ms);
        let learned = now_ms.saturating_sub(agent.first_seen_ms) >= self.learning_ms;
        let act = |a: Action| if s.learning_mode { Action::Record } else { a };
        let mut emit = |agent: &Agent, kind: SignalKind, detail: String, action: Action| {
            out.push(Signal { kind, agent: agent.name.to_string(), detail, action: act(action) })
        };

        if let Some(r) = &s.rate
            && let Some(detail) = agent.rate.observe(now_ms, &self.model, learned)
        {
            emit(agent, SignalKind::Rate, detail, r.action);
        }
        if let Some(p) = &s.probing
            && let Some(detail) = agent.probing(o.allowed, now_ms, p.denials_per_minute)
        {
            emit(agent, SignalKind::Probing, detail, p.action);
        }
        if let Some(d) = &s.delegation {
            if let Some(detail) = agent.depth(o.depth, learned) {
                emit(agent, SignalKind::DelegationDepth, detail, d.action);
            }
            let subject = self.keys.hash_one(o.subject);
            if let Some(detail) = agent.fan_out(subject, now_ms, d.fan_out_per_hour, learned) {
                emit(agent, SignalKind::FanOut, detail, d.action);
            }
        }
        if let Some(f) = &s.first_use
            && o.allowed
            && agent.first_use_on(learned)
        {
            let names = o.labels.iter().map(|l| (agent::NameKind::Label, *l));
            let names = names.chain(o.rule.map(|r| (agent::NameKind::Rule, r)));
            for (kind, name) in names.chain(o.tool.map(|t| (agent::NameKind::Tool, t))) {
                let hash = self.keys.hash_one((kind as u8, name));
                if let Some(detail) = agent.first_use(kind, name, hash, f.max_seen, learned) {
                    emit(agent, SignalKind::FirstUse, detail, f.action);
                }
            }
        }
        out
    }

    /// How many agents are tracked.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// The agent's rate baseline in requests a minute, if it is tracked (for explanations and tests).
    pub fn baseline_per_minute(&self, agent: &str) -> Option<f64> {
        self.table.get(agent).map(|a| a.rate.baseline())
    }

    /// The most memory one tracked agent takes with the default settings, in bytes (see
    /// [`Settings::memory_per_agent_bytes`]).
    pub fn memory_per_agent_bytes() -> usize {
        Settings::default().memory_per_agent_bytes()
    }
}

/// A name a client chose, fit for a log line: quoted, escaped, at most 64 characters.
fn quoted(name: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::with_capacity(name.len().min(MAX) + 2);
    out.push('"');
    for c in name.chars().take(MAX) {
        out.extend(c.escape_debug());
    }
    out.push('"');
    if name.chars().nth(MAX).is_some() {
        out.push_str(" (cut)");
    }
    out
}
