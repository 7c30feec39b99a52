//! The `anomaly` section: which per-agent anomaly signals are watched, their thresholds and what each does.

use super::{ConfigError, err};
use crate::anomaly::{Action, DelegationSettings, FirstUseSettings, ProbingSettings, RateSettings, Settings};
use serde::Deserialize;

/// Anomaly detection as written. Every signal is on (recording) unless turned off with `"enabled": false`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AnomalyDocument {
    /// Each agent's learning period from the first request a worker sees from it, seconds (default 86400).
    #[serde(default)]
    pub learning_seconds: Option<u64>,
    /// Observe only: every signal is logged and counted, no action is taken.
    #[serde(default)]
    pub learning_mode: bool,
    /// Most agents tracked per worker (default 10000); the least recently seen is dropped.
    #[serde(default)]
    pub max_agents: Option<usize>,
    /// A rate far above the agent's own baseline.
    #[serde(default)]
    pub rate: Option<SignalDocument>,
    /// A route label, rule or MCP tool the agent never used while learning.
    #[serde(default)]
    pub first_use: Option<SignalDocument>,
    /// A burst of denials.
    #[serde(default)]
    pub probing: Option<SignalDocument>,
    /// A deeper delegation chain than learnt, or acting for too many subjects in an hour.
    #[serde(default)]
    pub delegation: Option<SignalDocument>,
}

/// One signal as written: its threshold(s) and its action.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SignalDocument {
    /// `false` turns the signal off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `record` (default: log and count), `deny` (the agent's requests on the worker that saw it are refused
    /// with 429 for `seconds`), `quarantine` (the agent is revoked on every worker for `seconds`).
    #[serde(default)]
    pub action: Option<String>,
    /// How long a `deny` or `quarantine` lasts (default 600).
    #[serde(default)]
    pub seconds: Option<u32>,
    /// `rate`: fire above this many times the baseline (default 10).
    #[serde(default)]
    pub factor: Option<f64>,
    /// `rate`: and only from this many requests a minute (default 10).
    #[serde(default)]
    pub min_per_minute: Option<f64>,
    /// `first_use`: most names remembered per agent (default 256).
    #[serde(default)]
    pub max_seen: Option<usize>,
    /// `probing`: denials within one minute that fire (default 20).
    #[serde(default)]
    pub denials_per_minute: Option<u32>,
    /// `delegation`: distinct subjects within one hour that fire (default 50).
    #[serde(default)]
    pub fan_out_per_hour: Option<u32>,
}

fn action(d: &SignalDocument, at: &str) -> Result<Action, ConfigError> {
    let seconds = d.seconds.unwrap_or(600);
    if !(1..=7 * 86_400).contains(&seconds) {
        return Err(err(format!("{at}.seconds"), "must be from 1 to 604800"));
    }
    match d.action.as_deref() {
        None | Some("record") => Ok(Action::Record),
        Some("deny") => Ok(Action::Deny { seconds }),
        Some("quarantine") => Ok(Action::Quarantine { seconds }),
        Some(_) => Err(err(format!("{at}.action"), "must be \"record\", \"deny\" or \"quarantine\"")),
    }
}

/// Which fields a signal may carry besides `enabled`, `action` and `seconds`.
fn only(d: &SignalDocument, at: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    let present = [
        ("factor", d.factor.is_some()),
        ("min_per_minute", d.min_per_minute.is_some()),
        ("max_seen", d.max_seen.is_some()),
        ("denials_per_minute", d.denials_per_minute.is_some()),
        ("fan_out_per_hour", d.fan_out_per_hour.is_some()),
    ];
    match present.iter().find(|(name, set)| *set && !allowed.contains(name)) {
        Some((name, _)) => Err(err(format!("{at}.{name}"), "does not apply to this signal")),
        None => Ok(()),
    }
}

/// Validated anomaly settings.
pub fn settings(doc: &AnomalyDocument) -> Result<Settings, ConfigError> {
    let defaults = Settings::default();
    let on = |d: &Option<SignalDocument>| d.as_ref().is_none_or(|d| d.enabled != Some(false));
    let empty = SignalDocument::default();
    let rate = match &doc.rate {
        _ if !on(&doc.rate) => None,
        d => {
            let d = d.as_ref().unwrap_or(&empty);
            only(d, "anomaly.rate", &["factor", "min_per_minute"])?;
            let r = RateSettings::default();
            Some(RateSettings {
                factor: d.factor.unwrap_or(r.factor),
                min_per_minute: d.min_per_minute.unwrap_or(r.min_per_minute),
                action: action(d, "anomaly.rate")?,
            })
        }
    };
    let first_use = match &doc.first_use {
        _ if !on(&doc.first_use) => None,
        d => {
            let d = d.as_ref().unwrap_or(&empty);
            only(d, "anomaly.first_use", &["max_seen"])?;
            let f = FirstUseSettings::default();
            Some(FirstUseSettings {
                max_seen: d.max_seen.unwrap_or(f.max_seen),
                action: action(d, "anomaly.first_use")?,
            })
        }
    };
    let probing = match &doc.probing {
        _ if !on(&doc.probing) => None,
        d => {
            let d = d.as_ref().unwrap_or(&empty);
            only(d, "anomaly.probing", &["denials_per_minute"])?;
            let p = ProbingSettings::default();
            Some(ProbingSettings {
                denials_per_minute: d.denials_per_minute.unwrap_or(p.denials_per_minute),
                action: action(d, "anomaly.probing")?,
            })
        }
    };
    let delegation = match &doc.delegation {
        _ if !on(&doc.delegation) => None,
        d => {
            let d = d.as_ref().unwrap_or(&empty);
            only(d, "anomaly.delegation", &["fan_out_per_hour"])?;
            let g = DelegationSettings::default();
            Some(DelegationSettings {
                fan_out_per_hour: d.fan_out_per_hour.unwrap_or(g.fan_out_per_hour),
                action: action(d, "anomaly.delegation")?,
            })
        }
    };
    let learning_seconds = doc.learning_seconds.unwrap_or(defaults.learning_seconds);
    if learning_seconds > 90 * 86_400 {
        return Err(err("anomaly.learning_seconds", "must be at most 7776000 (90 days)"));
    }
    let settings = Settings {
        learning_seconds,
        learning_mode: doc.learning_mode,
        max_agents: doc.max_agents.unwrap_or(defaults.max_agents),
        rate,
        first_use,
        probing,
        delegation,
    };
    if let Err(why) = settings.check() {
        // `check` names the setting first ("rate.factor must be ...").
        let (name, rest) = why.split_once(' ').unwrap_or((why.as_str(), ""));
        return Err(err(format!("anomaly.{name}"), rest.to_owned()));
    }
    if settings.max_agents > 1_000_000 {
        return Err(err("anomaly.max_agents", "must be at most 1000000"));
    }
    Ok(settings)
}

/// Whether any signal quarantines (then the revocation state is shared and read by every worker).
pub fn quarantines(settings: &Settings) -> bool {
    let q = |a: Action| matches!(a, Action::Quarantine { .. });
    settings.rate.is_some_and(|s| q(s.action))
        || settings.first_use.is_some_and(|s| q(s.action))
        || settings.probing.is_some_and(|s| q(s.action))
        || settings.delegation.is_some_and(|s| q(s.action))
}
