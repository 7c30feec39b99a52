//! One agent's state and the signals other than rate: first use, probing, delegation depth, fan-out.

use super::quoted;
use super::rate::Rate;
use std::rc::Rc;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// What kind of name a first use is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKind {
    Label = 0,
    Rule = 1,
    Tool = 2,
}

impl NameKind {
    fn text(self) -> &'static str {
        match self {
            NameKind::Label => "route label",
            NameKind::Rule => "rule",
            NameKind::Tool => "tool",
        }
    }
}

/// First use for this agent: still learning names, watching for new ones, or off (its set is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    Open,
    Full,
}

/// Everything the detector keeps about one agent.
#[derive(Debug)]
pub(super) struct Agent {
    pub(super) name: Rc<str>,
    pub(super) first_seen_ms: u64,
    pub(super) rate: Rate,
    /// Denials within the clock minute `denial_minute`, and whether probing fired in it.
    denial_minute: u64,
    denials: u32,
    probing_fired: bool,
    /// The deepest delegation chain seen (during learning, then each new maximum that fired).
    max_depth: u32,
    /// Keyed hashes of the distinct subjects within the clock hour `fan_hour`, sorted; whether fan-out has
    /// been decided for the hour (fired, or exceeded during learning): then no more are added.
    fan_hour: u64,
    subjects: Vec<u64>,
    fan_done: bool,
    /// Keyed hashes of the names used (kind and name), sorted, and whether the set may still grow.
    seen: Vec<u64>,
    names: Names,
}

impl Agent {
    pub(super) fn new(name: Rc<str>, now_ms: u64) -> Agent {
        Agent {
            name,
            first_seen_ms: now_ms,
            rate: Rate::new(now_ms),
            denial_minute: now_ms / MINUTE_MS,
            denials: 0,
            probing_fired: false,
            max_depth: 0,
            fan_hour: now_ms / HOUR_MS,
            subjects: Vec::new(),
            fan_done: false,
            seen: Vec::new(),
            names: Names::Open,
        }
    }

    /// Starts over as a new agent in this slot, keeping the sets' allocations.
    pub(super) fn reset(&mut self, name: Rc<str>, now_ms: u64) {
        let mut subjects = std::mem::take(&mut self.subjects);
        let mut seen = std::mem::take(&mut self.seen);
        subjects.clear();
        seen.clear();
        *self = Agent { subjects, seen, ..Agent::new(name, now_ms) };
    }

    /// Counts a denial; the detail when this one reaches the threshold within its minute.
    pub(super) fn probing(&mut self, allowed: bool, now_ms: u64, threshold: u32) -> Option<String> {
        let minute = now_ms / MINUTE_MS;
        if minute != self.denial_minute {
            self.denial_minute = minute;
            self.denials = 0;
            self.probing_fired = false;
        }
        if allowed {
            return None;
        }
        self.denials = self.denials.saturating_add(1);
        if self.probing_fired || self.denials < threshold {
            return None;
        }
        self.probing_fired = true;
        Some(format!("{} denials within a minute (fires from {threshold})", self.denials))
    }

    /// Learns the depth, or after learning the detail when it is deeper than any seen.
    pub(super) fn depth(&mut self, depth: usize, learned: bool) -> Option<String> {
        let depth = u32::try_from(depth).unwrap_or(u32::MAX);
        if depth <= self.max_depth {
            return None;
        }
        let before = self.max_depth;
        self.max_depth = depth;
        learned.then(|| format!("delegation depth {depth}, deeper than any seen before ({before})"))
    }

    /// Adds a subject (its keyed hash) to the hour's; the detail when the agent exceeds `threshold` distinct
    /// subjects within the hour after learning.
    pub(super) fn fan_out(&mut self, subject: u64, now_ms: u64, threshold: u32, learned: bool) -> Option<String> {
        let hour = now_ms / HOUR_MS;
        if hour != self.fan_hour {
            self.fan_hour = hour;
            self.subjects.clear();
            self.fan_done = false;
        }
        if self.fan_done {
            return None;
        }
        let Err(at) = self.subjects.binary_search(&subject) else { return None };
        self.subjects.insert(at, subject);
        if self.subjects.len() <= threshold as usize {
            return None;
        }
        self.fan_done = true;
        learned.then(|| format!("acts for more than {threshold} distinct subjects within an hour"))
    }

    /// Whether first use has anything to do for this agent: learning, or watching with room to remember.
    pub(super) fn first_use_on(&self, learned: bool) -> bool {
        !learned || self.names == Names::Open
    }

    /// Learns a name, or after learning the detail when it was never used. `hash` is its keyed hash.
    pub(super) fn first_use(
        &mut self,
        kind: NameKind,
        name: &str,
        hash: u64,
        max_seen: usize,
        learned: bool,
    ) -> Option<String> {
        if self.names == Names::Full {
            return None;
        }
        let Err(at) = self.seen.binary_search(&hash) else { return None };
        if self.seen.len() >= max_seen {
            // Cannot remember it: during learning the agent is too varied; after it, this name fires but the
            // next would fire on every request. Either way first use is off for this agent from now on.
            self.names = Names::Full;
        } else {
            self.seen.insert(at, hash);
        }
        learned.then(|| format!("first use of {} {}, never used during its learning period", kind.text(), quoted(name)))
    }
}
