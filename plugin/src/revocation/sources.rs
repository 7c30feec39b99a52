//! Where shared revocations come from, validated: a revocation list fetched through an Envoy cluster, and a
//! Shared Signals receiver (SSF 1.0) that polls a transmitter (RFC 8936) or takes pushed events (RFC 8935).

use super::set::Closed;
use super::ssf::Mapping;
use super::state::Limits;
use crate::token::statement::StatementVerifier;

/// The default shared-data key of the state.
pub const DEFAULT_STATE_KEY: &str = "agent_iam.revocation";

/// An HTTP endpoint reached through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The cluster.
    pub cluster: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Call timeout, milliseconds.
    pub timeout_ms: u64,
    /// Largest accepted response body, bytes.
    pub max_bytes: usize,
}

/// What a stale list means for the tokens it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// Keep applying the last good list (availability first).
    Keep,
    /// Refuse the covered issuers' tokens (503) until a fresh list arrives, and before the first one.
    Deny,
}

/// A revocation list fetched periodically.
#[derive(Debug, Clone)]
pub struct ListSource {
    /// Where.
    pub endpoint: Endpoint,
    /// Seconds between fetches (the first failure retries after 1 s, doubling up to this).
    pub refresh: i64,
    /// A list older than this (seconds since it was last fetched) is stale.
    pub max_stale: i64,
    /// What staleness means.
    pub on_stale: OnStale,
    /// The issuers a stale list closes (empty: every issuer).
    pub covers: Vec<String>,
    /// Who signs it; `None` only with `allow_unsigned`.
    pub verifier: Option<StatementVerifier>,
    /// Whether an unsigned list (plain JSON) is accepted.
    pub allow_unsigned: bool,
}

impl ListSource {
    /// Which issuers are refused at `now`, given when the last good list was fetched (seconds).
    pub fn closed(&self, fetched_at: Option<i64>, now: i64) -> Closed {
        let stale = fetched_at.is_none_or(|at| now - at > self.max_stale);
        match (self.on_stale, stale) {
            (OnStale::Deny, true) if self.covers.is_empty() => Closed::All,
            (OnStale::Deny, true) => Closed::Issuers(self.covers.iter().map(|i| i.as_str().into()).collect()),
            _ => Closed::None,
        }
    }
}

/// RFC 8936 polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// The transmitter's poll endpoint.
    pub endpoint: Endpoint,
    /// Milliseconds between polls (a poll answered with `moreAvailable` is followed at once).
    pub interval_ms: u64,
    /// `maxEvents` of each poll.
    pub max_events: u32,
    /// The `authorization` header value sent with each poll.
    pub authorization: Option<String>,
}

/// RFC 8935 push: the plugin answers POSTs on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The request path events are pushed to.
    pub path: String,
    /// The exact `authorization` header value a transmitter must send.
    pub authorization: String,
    /// Largest accepted event, bytes.
    pub max_bytes: usize,
}

/// A Shared Signals receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Verifies each event (transmitter issuer, audience, keys, algorithms, `typ` `secevent+jwt`).
    pub verifier: StatementVerifier,
    /// From events to revocations.
    pub mapping: Mapping,
    /// Polling, if configured.
    pub poll: Option<Poll>,
    /// Push, if configured.
    pub push: Option<Push>,
}

/// Every source of shared revocations of a configuration.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The shared-data key of the state (the workers of one gateway share it).
    pub state_key: String,
    /// Caps on the state.
    pub limits: Limits,
    /// A revocation list.
    pub list: Option<ListSource>,
    /// A Shared Signals receiver.
    pub ssf: Option<Receiver>,
}

impl Sources {
    /// Whether one worker must fetch or poll on behalf of all (a list, or SSF polling).
    pub fn needs_fetcher(&self) -> bool {
        self.list.is_some() || self.ssf.as_ref().is_some_and(|r| r.poll.is_some())
    }

    /// The push endpoint, if any.
    pub fn push(&self) -> Option<&Push> {
        self.ssf.as_ref().and_then(|r| r.push.as_ref())
    }

    /// Which issuers are refused at `now` because the list is stale.
    pub fn closed(&self, list_fetched_at: Option<i64>, now: i64) -> Closed {
        self.list.as_ref().map_or(Closed::None, |l| l.closed(list_fetched_at, now))
    }
}
