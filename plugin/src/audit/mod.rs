//! The audit trail: one OCSF 1.8.0 event per decision ([`event`]), chained and sealed per VM ([`chain`]),
//! written by the filter as one Envoy filter-state value that Envoy's own access loggers ship (a file as
//! NDJSON, OpenTelemetry as OTLP log records). Building an event is pure: the filter gathers the facts.

pub mod chain;
pub mod event;
mod json;

pub use chain::{Chain, CheckpointKey, Link};
pub use event::{Facts, Outcome, RequestFacts};

/// The filter-state key of the event (Envoy: `wasm.agent_iam.audit`, read with
/// `%FILTER_STATE(wasm.agent_iam.audit:PLAIN)%`).
pub const FILTER_STATE_KEY: &str = "agent_iam.audit";

/// Which decisions are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// Every decision (rules with `audit: false` excepted).
    All,
    /// Refusals and dry-run refusals only.
    Denials,
}

/// The audit settings of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Which decisions are recorded.
    pub events: Events,
    /// Token claims recorded in each event (`unmapped.claims`), besides the identity.
    pub claims: Vec<String>,
    /// Signed checkpoints, when a key is configured.
    pub checkpoint: Option<CheckpointKey>,
    /// `metadata.product.vendor_name`.
    pub vendor: String,
}

impl Settings {
    /// Whether a decision is recorded: by the setting, then by the deciding rule's `audit` flag (`audited`).
    pub fn records(&self, outcome: &Outcome<'_>, audited: bool) -> bool {
        match (self.events, outcome) {
            (Events::Denials, Outcome::Allowed { .. }) => false,
            _ => audited,
        }
    }
}

/// The event line for `facts`, sealed into `chain`.
pub fn line(settings: &Settings, chain: &mut Chain, facts: &Facts<'_>) -> String {
    // Events are 1 to 2 KB: one allocation, no copy as it grows.
    let mut out = String::with_capacity(2048);
    let stable = event::write(facts, |out| chain.write_uid(out), &mut out);
    chain.seal(out, stable, facts.time_ms, settings.checkpoint.as_ref())
}

#[cfg(test)]
mod tests;
