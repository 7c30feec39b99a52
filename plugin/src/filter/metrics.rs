//! Envoy stats through proxy-wasm metrics (`/stats`, Prometheus output), defined on first use and cached by
//! name per VM. Envoy shares a metric by name across the VMs of a plugin, so counters add up over workers.
//!
//! Counter increments are kept in the VM and handed to Envoy at most once a second (on the first request of
//! a new second, and on the root context's tick), not three host calls per request: in Envoy every call
//! between V8 and C++ costs about as much as the plugin's whole decision. Counters therefore lag by up to
//! a second, less than Envoy's own stats flush interval.
//!
//! Names (Envoy adds its custom-stat prefix):
//! - `agent_iam.decision.allow`, `agent_iam.decision.deny`, `agent_iam.decision.dry_run_deny`
//! - `agent_iam.rule.<rule id>.allow` / `.deny`: decisions by the deciding rule
//! - `agent_iam.denied.<reason>`: every denial by reason (`expired`, `bad_signature`, `no_rule_allows`, ...)
//! - `agent_iam.token_cache.hit` / `.miss`
//! - `agent_iam.mcp.<method>.allow` / `.deny`: MCP decisions by JSON-RPC method (`tools_call`, `tools_list`, ...,
//!   `notification`, `response`, `session` (a session's GET stream or DELETE), `other`)
//! - `agent_iam.jwks.fetch.ok` / `agent_iam.jwks.fetch.<failure>`; gauge `agent_iam.jwks.issuer_<n>.age_seconds`
//! - `agent_iam.revocation.refused.<kind>`: requests refused by a revocation, by its kind (`jti`, `agent`,
//!   `client_id`, `subject`, `trust_domain`, `issuer`); gauges `agent_iam.revocation.active.<kind>` (live
//!   revocations in force), `agent_iam.revocation.list.age_seconds`, `agent_iam.revocation.ssf.last_poll_timestamp_seconds`
//!   (the time of the last good poll, seconds since the epoch); `agent_iam.revocation.list.ok` / `.refused` /
//!   `.no_response`, `agent_iam.revocation.ssf.poll.ok` / `.failed` / `.no_response`,
//!   `agent_iam.revocation.ssf.set.accepted` / `.refused`
//! - gauge `agent_iam.vm.memory_bytes`: the linear memory of the plugin's VMs, summed (each VM adds what it
//!   grew by since it last reported, on its tick, and takes its share back when Envoy ends it). A VM's memory
//!   never shrinks, so this is the peak: what the token cache and the configuration cost in Envoy's RSS.

use super::host::{self, MetricType};
use crate::request::mcp::{Kind, McpRequest};
use rustc_hash::FxHashMap;

/// Tick period when nothing else needs ticks: counters reach the host at least this often.
pub const FLUSH_MS: u64 = 1000;

/// The counters every decision touches, kept by position rather than looked up by name on every request.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    Allow,
    Deny,
    DryRunDeny,
    CacheHit,
    CacheMiss,
}

impl Counter {
    const ALL: usize = 5;

    fn name(self) -> &'static str {
        match self {
            Counter::Allow => "agent_iam.decision.allow",
            Counter::Deny => "agent_iam.decision.deny",
            Counter::DryRunDeny => "agent_iam.decision.dry_run_deny",
            Counter::CacheHit => "agent_iam.token_cache.hit",
            Counter::CacheMiss => "agent_iam.token_cache.miss",
        }
    }
}

/// Metric ids of this VM: the per-decision counters by position, others by name, per-rule ids by rule id, so a
/// decision formats no name.
#[derive(Default)]
pub struct Metrics {
    /// `None` until first used; `Some(None)` when the host refused to define it.
    counters: [Option<Option<u32>>; Counter::ALL],
    /// `agent_iam.denied.<reason>` by reason: a few dozen reasons at most, searched linearly, so that a
    /// denial formats no name.
    denied: Vec<(&'static str, Option<u32>)>,
    ids: FxHashMap<String, u32>,
    rule_allow: FxHashMap<String, Option<u32>>,
    rule_deny: FxHashMap<String, Option<u32>>,
    /// Counter increments not yet given to the host: (metric id, amount). A handful of distinct ids per
    /// second, so a vector searched linearly.
    pending: Vec<(u32, u64)>,
    /// The second (host clock) of the last flush.
    flushed_second: u64,
    /// This VM's linear memory as last added to `agent_iam.vm.memory_bytes`.
    memory_reported: u64,
}

impl Metrics {
    fn id(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        let id = host::define_metric(kind, name).ok()?;
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }

    /// Adds `by` to a counter. Metrics are best effort: a host that refuses them must not stop a request.
    pub fn count(&mut self, name: &str, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, name) {
            self.add(id, by);
        }
    }

    /// Counts an MCP decision by method (`agent_iam.mcp.<method>.allow` / `.deny`): the methods of the protocol
    /// by name (`/` as `_`), anything else as `other`, so a client cannot make up metric names.
    pub fn count_mcp(&mut self, call: &McpRequest, allow: bool) {
        let method = call.method.as_str();
        const KNOWN: [&str; 16] = [
            "initialize",
            "ping",
            "server/discover",
            "tools/list",
            "tools/call",
            "prompts/list",
            "prompts/get",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "completion/complete",
            "logging/setLevel",
            "subscriptions/listen",
            "notifications/initialized",
        ];
        let label = if call.kind == Kind::Session {
            "session".to_owned()
        } else if method.is_empty() {
            "response".to_owned()
        } else if KNOWN.contains(&method) {
            method.replace('/', "_")
        } else if method.starts_with("notifications/") {
            "notification".to_owned()
        } else {
            "other".to_owned()
        };
        let name = format!("agent_iam.mcp.{label}.{}", if allow { "allow" } else { "deny" });
        self.count(&name, 1);
    }

    /// Adds `by` to one of the per-decision counters.
    pub fn count_decision(&mut self, counter: Counter, by: u64) {
        if by == 0 {
            return;
        }
        let Some(slot) = self.counters.get_mut(counter as usize) else { return };
        let id = *slot.get_or_insert_with(|| host::define_metric(MetricType::Counter, counter.name()).ok());
        if let Some(id) = id {
            self.add(id, by);
        }
    }

    /// Counts a denial by its reason (`agent_iam.denied.<reason>`).
    pub fn count_denied(&mut self, reason: &'static str) {
        let id = match self.denied.iter().find(|(r, _)| *r == reason) {
            Some((_, id)) => *id,
            None => {
                let id = host::define_metric(MetricType::Counter, &format!("agent_iam.denied.{reason}")).ok();
                self.denied.push((reason, id));
                id
            }
        };
        if let Some(id) = id {
            self.add(id, 1);
        }
    }

    fn add(&mut self, id: u32, by: u64) {
        match self.pending.iter_mut().find(|(pending, _)| *pending == id) {
            Some((_, n)) => *n = n.saturating_add(by),
            None => self.pending.push((id, by)),
        }
    }

    /// Hands the pending increments to the host if the second changed since the last flush (`now_ms`: host
    /// clock), or always with `force`.
    pub fn flush(&mut self, now_ms: u64, force: bool) {
        let second = now_ms / 1000;
        if !force && second == self.flushed_second {
            return;
        }
        self.flushed_second = second;
        for (id, by) in self.pending.drain(..) {
            let _ = host::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    /// Counts a decision by its deciding rule (`agent_iam.rule.<id>.allow` or `.deny`).
    pub fn count_rule(&mut self, rule: &str, allow: bool) {
        let map = if allow { &mut self.rule_allow } else { &mut self.rule_deny };
        let id = match map.get(rule) {
            Some(id) => *id,
            None => {
                let name = format!("agent_iam.rule.{rule}.{}", if allow { "allow" } else { "deny" });
                let id = host::define_metric(MetricType::Counter, &name).ok();
                map.insert(rule.to_owned(), id);
                id
            }
        };
        if let Some(id) = id {
            self.add(id, 1);
        }
    }

    /// Adds to `agent_iam.vm.memory_bytes` what this VM's linear memory grew by since the last report.
    pub fn report_memory(&mut self) {
        let bytes = (core::arch::wasm32::memory_size(0) as u64).saturating_mul(64 * 1024);
        self.move_memory_gauge(bytes);
    }

    /// Takes this VM's share out of `agent_iam.vm.memory_bytes` (the VM is ending).
    pub fn withdraw_memory(&mut self) {
        self.move_memory_gauge(0);
    }

    fn move_memory_gauge(&mut self, bytes: u64) {
        if bytes == self.memory_reported {
            return;
        }
        let delta = i64::try_from(bytes).unwrap_or(i64::MAX) - i64::try_from(self.memory_reported).unwrap_or(i64::MAX);
        if let Some(id) = self.id(MetricType::Gauge, "agent_iam.vm.memory_bytes")
            && host::increment_metric(id, delta).is_ok()
        {
            self.memory_reported = bytes;
        }
    }

    /// Sets a gauge.
    pub fn gauge(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = host::record_metric(id, value);
        }
    }
}
