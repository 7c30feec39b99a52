//! The proxy-wasm glue, and the only code that talks to proxy-wasm: it reads the request headers, asks the
//! [`Engine`] for a verdict and applies it; it fetches remote key sets and holds the requests that wait for
//! one. No decisions are made here.
//!
//! Envoy's callbacks arrive through [`abi`] and every call into Envoy goes through [`host`] (no proxy-wasm SDK:
//! why is in `abi`); a host call that fails denies with a logged reason, nothing traps.

use crate::config;
use crate::engine::{CryptoPreference, Denial, Engine, Mode, Verdict};
use crate::request::{Connection, Headers, Peer};
use crate::token::host_crypto::{self, HostCallError, HostCrypto, SignatureHost};
use crate::token::{Algorithm, CryptoBackend, PureRust};
use host::{BufferType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

mod abi;
mod anomaly;
mod apply;
mod audit;
mod dpop;
mod fast_memcmp;
mod host;
mod keys;
mod local_reply;
mod mcp;
mod metrics;
mod outcome;
mod revocation;
mod shared;

use apply::apply;
use keys::Remote;
use metrics::Counter;
use outcome::{audit_refused, count_denial, forward_unverified, record};

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: a host that cannot log must not stop the request path.
    let _ = host::log(level, message);
}

/// Whether the host logs at `level`. The host's level is asked at most once a second (`now_ms`: the request's
/// clock reading): an operator's change through Envoy's admin takes effect within a second, and requests
/// save a call between V8 and Envoy.
fn logging_at(level: LogLevel, now_ms: u64) -> bool {
    thread_local! {
        static LEVEL: std::cell::Cell<(u64, u32)> = const { std::cell::Cell::new((u64::MAX, 0)) };
    }
    let second = now_ms / 1000;
    let host_level = LEVEL.with(|cached| {
        let (asked, level) = cached.get();
        if asked == second {
            return level;
        }
        let level = host::log_level().unwrap_or(LogLevel::Critical as u32);
        cached.set((second, level));
        level
    });
    host_level <= level as u32
}

/// The host clock in milliseconds since the epoch.
fn now_ms() -> Option<u64> {
    host::current_time_ns().ok().map(|ns| ns / 1_000_000)
}

/// A property as text; absent, unreadable or not UTF-8 is `None` (a rule needing it cannot be evaluated).
fn property_text(path: &[&str]) -> Option<String> {
    host::property(path).ok().flatten().and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty())
}

/// The matched route's `agent_iam` tag (route `metadata.filter_metadata.agent_iam.tag`): `""` when the
/// route has none, `None` when Envoy cannot say (no route, an error, a tag that is not text).
fn route_tag() -> Option<String> {
    match host::property(&["xds", "route_metadata", "filter_metadata", "agent_iam", "tag"]) {
        Ok(None) => Some(String::new()),
        Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
        Err(_) => None,
    }
}

/// Envoy's `verify_signature` foreign function (BoringSSL).
struct EnvoyForeign;

impl SignatureHost for EnvoyForeign {
    fn verify_signature(&self, args: &[u8]) -> Result<Vec<u8>, HostCallError> {
        host::call_foreign_function(host_crypto::FOREIGN_FUNCTION, args).map_err(|_| HostCallError)
    }
}

/// State the root context shares with its requests (one VM is one thread, so `RefCell` suffices; no borrow
/// is held across a hostcall that can re-enter the plugin).
#[derive(Default)]
struct Shared {
    /// The engine of the last good configuration, with the current fetched keys.
    engine: Option<Rc<Engine>>,
    /// Issuers whose keys are fetched.
    remotes: Vec<Remote>,
    /// Requests held until their issuer's keys arrive.
    waiting: Vec<Waiter>,
    /// Stats.
    metrics: metrics::Metrics,
    /// The audit trail of the current configuration, when it has one.
    audit: Option<audit::Trail>,
    /// Fetching the revocation list and polling the SSF transmitter, when this worker holds the lease.
    revocation: revocation::Fetcher,
}

/// A request held for a key set.
struct Waiter {
    context_id: u32,
    /// Whether its stream has a body to come (an MCP endpoint decides on it).
    end_of_stream: bool,
    /// What came of that body while it waited.
    body: outcome::HeldBody,
    issuer: usize,
    /// When to give up, host milliseconds.
    deadline_ms: u64,
    on_timeout: Denial,
}

/// One per plugin per worker. Holds the last good configuration and the signature backend for it.
struct Root {
    context_id: u32,
    shared: Rc<RefCell<Shared>>,
    crypto: Rc<dyn CryptoBackend>,
    /// The host backend, self-tested once per VM on first use (the host does not change under us).
    host_crypto: Option<Rc<HostCrypto<EnvoyForeign>>>,
}

impl Root {
    fn choose_crypto(&mut self, preference: CryptoPreference) -> Rc<dyn CryptoBackend> {
        match preference {
            CryptoPreference::PureRust => {
                log(LogLevel::Info, "agent-iam: signatures verified in the VM (pure-rust) for every algorithm");
                Rc::new(PureRust)
            }
            CryptoPreference::Auto => {
                let host = self.host_crypto.get_or_insert_with(|| Rc::new(HostCrypto::detect(EnvoyForeign))).clone();
                let on_host: Vec<&str> = host.host_algorithms().iter().map(|a| a.name()).collect();
                let in_vm: Vec<&str> =
                    Algorithm::ALL.iter().filter(|a| !host.host_algorithms().contains(a)).map(|a| a.name()).collect();
                log(
                    LogLevel::Info,
                    &format!(
                        "agent-iam: signatures verified by Envoy host crypto for [{}], in the VM (pure-rust) for [{}]",
                        on_host.join(", "),
                        in_vm.join(", ")
                    ),
                );
                host
            }
        }
    }

    /// Decides again for every held request of `issuer` (all of them when `None`), now that keys changed.
    fn resume_waiting(&self, issuer: Option<usize>) {
        let resumed: Vec<Waiter> = {
            let mut shared = self.shared.borrow_mut();
            let (go, stay): (Vec<Waiter>, Vec<Waiter>) =
                shared.waiting.drain(..).partition(|w| issuer.is_none_or(|i| w.issuer == i));
            shared.waiting = stay;
            go
        };
        for w in resumed {
            mcp::forget(w.context_id);
            // A stream that ended meanwhile is gone: nothing to answer.
            if host::set_effective_context(w.context_id).is_ok() {
                let held = Held { deadline_ms: w.deadline_ms, body: w.body };
                decide_and_apply(&self.shared, self.crypto.as_ref(), w.context_id, Some(held), w.end_of_stream);
            }
        }
        let _ = host::set_effective_context(self.context_id);
    }

    /// Answers the held requests whose time is up.
    fn expire_waiting(&self, now_ms: u64) {
        let expired: Vec<Waiter> = {
            let mut shared = self.shared.borrow_mut();
            let (gone, stay): (Vec<Waiter>, Vec<Waiter>) =
                shared.waiting.drain(..).partition(|w| w.deadline_ms <= now_ms);
            shared.waiting = stay;
            gone
        };
        let dry_run = self
            .shared
            .try_borrow()
            .ok()
            .and_then(|s| s.engine.clone())
            .is_some_and(|e| e.settings().mode == Mode::DryRun);
        for w in expired {
            mcp::forget(w.context_id);
            if host::set_effective_context(w.context_id).is_err() {
                continue;
            }
            audit_refused(&self.shared, &w.on_timeout, dry_run);
            if let Ok(mut s) = self.shared.try_borrow_mut() {
                if dry_run {
                    s.metrics.count_decision(Counter::DryRunDeny, 1);
                } else {
                    count_denial(&mut s.metrics, &w.on_timeout);
                }
            }
            if dry_run {
                log(
                    LogLevel::Info,
                    "agent-iam: dry run: no key set in time; forwarding a request enforcement would answer 503",
                );
                forward_unverified(&format!("{} {}", w.on_timeout.status, w.on_timeout.reason), true);
            } else {
                log(LogLevel::Warn, &format!("agent-iam: no key set in time; answering {}", w.on_timeout.status));
                reply(&w.on_timeout);
            }
        }
        let _ = host::set_effective_context(self.context_id);
    }
}

/// The callbacks of a root context ([`abi`] dispatches them).
impl Root {
    fn new(context_id: u32) -> Root {
        Root {
            context_id,
            shared: Rc::new(RefCell::new(Shared::default())),
            crypto: Rc::new(PureRust),
            host_crypto: None,
        }
    }

    /// The plugin is being removed: its share of the memory gauge goes with it.
    fn on_delete(&mut self) {
        revocation::release(&self.shared, self.context_id);
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.metrics.withdraw_memory();
        }
    }

    fn on_http_call_response(&mut self, token_id: u32, body_size: usize) {
        let Some(now) = now_ms() else { return };
        if revocation::on_response(&self.shared, token_id, body_size, self.crypto.as_ref(), now) {
            return;
        }
        let changed = keys::on_response(&self.shared, token_id, now, body_size);
        if let Some(issuer) = changed {
            self.resume_waiting(Some(issuer));
        }
    }

    fn on_configure(&mut self) -> bool {
        let bytes = match host::buffer(BufferType::PluginConfiguration, usize::MAX) {
            Ok(bytes) => bytes,
            Err(status) => {
                log(LogLevel::Error, &format!("agent-iam: cannot read the plugin configuration: {status:?}"));
                return false;
            }
        };
        let engine = match config::parse(&bytes) {
            Ok(engine) => engine,
            Err(e) => {
                // Returning false makes Envoy reject this configuration and keep the last good one.
                log(LogLevel::Error, &format!("agent-iam: configuration rejected: {e}"));
                return false;
            }
        };
        let issuers = engine.verifier().issuers().len();
        let policy = engine.policy();
        for warning in policy.warnings() {
            log(LogLevel::Warn, &format!("agent-iam: policy warning: policy.{warning}"));
        }
        let summary = format!(
            "agent-iam: configuration accepted ({issuers} issuer(s), {} rule(s), policy version {})",
            policy.len(),
            policy.version().unwrap_or("unnamed")
        );
        self.crypto = self.choose_crypto(engine.crypto_preference());
        // A new configuration starts a new audit chain, which names the one before.
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            let next = audit::start_trail(s.audit.as_ref(), &engine);
            // Kept to be named by a later chain when this configuration has no audit.
            if next.is_some() || s.audit.is_none() {
                s.audit = next;
            }
        }
        let now = now_ms().unwrap_or(0);
        shared::install_limiter(&engine);
        shared::install_dpop(&engine);
        anomaly::install(&engine);
        let any_remote = keys::install(&self.shared, engine, now);
        let revoking = revocation::install(&self.shared, now);
        log(LogLevel::Info, &summary);
        // Ticks drive fetches, refreshes, the deadlines of held requests and the reading of shared revocations,
        // and hand counters to the host when requests stop coming.
        let period = Duration::from_millis(if any_remote || revoking { keys::TICK_MS } else { metrics::FLUSH_MS });
        let _ = host::set_tick_period(period);
        if any_remote {
            keys::fetch_due(&self.shared, now);
        }
        // Requests held under the previous configuration are decided under this one.
        self.resume_waiting(None);
        true
    }

    fn on_tick(&mut self) {
        let Some(now) = now_ms() else { return };
        if keys::on_tick(&self.shared, now) {
            self.resume_waiting(None);
        }
        self.expire_waiting(now);
        revocation::on_tick(&self.shared, self.context_id, now);
        if let Some(engine) = self.shared.try_borrow().ok().and_then(|s| s.engine.clone()) {
            shared::refresh_nonce_key(&engine);
        }
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.metrics.flush(now, true);
            s.metrics.report_memory();
        }
    }

    /// A new request of this plugin, decided with the configuration current when its headers arrive.
    fn request(&self, context_id: u32) -> Request {
        Request { context_id, shared: self.shared.clone(), crypto: self.crypto.clone() }
    }
}

/// One per HTTP stream.
#[derive(Clone)]
struct Request {
    context_id: u32,
    shared: Rc<RefCell<Shared>>,
    crypto: Rc<dyn CryptoBackend>,
}

impl Request {
    fn on_request_headers(&self, end_of_stream: bool) -> Applied {
        decide_and_apply(&self.shared, self.crypto.as_ref(), self.context_id, None, end_of_stream)
    }

    fn on_request_body(&self, size: usize, end_of_stream: bool) -> u32 {
        mcp::on_request_body(&self.shared, self.crypto.as_ref(), self.context_id, size, end_of_stream)
    }

    fn on_response_headers(&self) -> u32 {
        mcp::on_response_headers(self.context_id)
    }

    fn on_response_body(&self, size: usize, end_of_stream: bool) -> u32 {
        mcp::on_response_body(&self.shared, self.crypto.as_ref(), self.context_id, size, end_of_stream)
    }

    fn on_delete(&self) {
        // The stream is over (answered, reset, or the client left while held): forget it.
        if let Ok(mut shared) = self.shared.try_borrow_mut() {
            shared.waiting.retain(|w| w.context_id != self.context_id);
        }
        mcp::forget(self.context_id);
    }
}

/// A body chunk of a request held for a key set (only a host that hands a plugin the body while the headers
/// wait sends one): noted with its waiter, and once complete copied for the decision that follows, since the
/// host will not hand it to the plugin again. The caller keeps the chunk back with the headers.
fn body_while_held(shared: &Rc<RefCell<Shared>>, context_id: u32, size: usize, end: bool) {
    use outcome::HeldBody;
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    let cap = s.engine.as_ref().map_or(0, |e| e.settings().mcp.iter().map(|m| m.max_body_bytes).max().unwrap_or(0));
    let Some(waiter) = s.waiting.iter_mut().find(|w| w.context_id == context_id) else { return };
    waiter.body = match () {
        _ if size > cap => HeldBody::TooLarge,
        _ if !end => HeldBody::Partial,
        _ => host::buffer(BufferType::HttpRequestBody, size).map_or(HeldBody::Unreadable, HeldBody::Complete),
    };
}

/// What happened to a request, as `proxy_on_request_headers` answers it.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
enum Applied {
    /// Forwarded (or resumed) upstream: Continue.
    Continue = 0,
    /// Answered locally, or held for a key set: StopIteration.
    Stopped = 1,
}

fn fail_closed(why: &str) -> Applied {
    log(LogLevel::Error, &format!("agent-iam: {why}; denying"));
    let body = br#"{"error":"temporarily_unavailable","error_description":"authorization is unavailable"}"#;
    local_reply::send(503, "agent_iam.unavailable", &[("content-type", "application/json")], body);
    Applied::Stopped
}

fn reply(denial: &Denial) {
    local_reply::send(u32::from(denial.status), &denial.details, &denial.headers, denial.body.as_bytes());
}

/// Decides for the request of the effective context and applies the verdict. `held_until` is set when a
/// held request is decided again (from the root context): it then keeps its original deadline, and is
/// resumed rather than continued. In four steps: read (headers, then the connection's [`Properties`]),
/// decide ([`Engine::decide_with`]), record (metrics, filter state, dry-run rules), [`apply`].
fn decide_and_apply(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    context_id: u32,
    held: Option<Held>,
    end_of_stream: bool,
) -> Applied {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else {
        return fail_closed("no configuration");
    };
    let Some(now_ms) = now_ms() else {
        return fail_closed("the host clock is unavailable");
    };
    let Ok(now) = i64::try_from(now_ms / 1000) else {
        return fail_closed("the host clock is out of range");
    };
    let Ok(buffer) = host::header_map(MapType::HttpRequestHeaders) else {
        return fail_closed("the request headers are unavailable");
    };
    let headers = match crate::header_map::parse(&buffer) {
        Ok(headers) => headers,
        Err(e) => return fail_closed(&format!("the request headers cannot be read ({e:?})")),
    };
    if held.is_none()
        && let Some(applied) = revocation::push_headers(&engine, &headers, context_id, end_of_stream)
    {
        return applied;
    }
    let properties = Properties::read(&engine);
    let decided = Decided {
        engine: &engine,
        raw_headers: &buffer,
        headers: &headers,
        properties: &properties,
        conn: properties.connection(),
        now_ms,
        now,
        crypto,
    };
    let (hits_before, misses_before) = engine.cache_stats();
    let verdict = engine.decide_with(&headers, decided.conn, now, crypto);
    let verdict = anomaly::screen(shared, &engine, &headers, verdict, now_ms);
    record(shared, &engine, &verdict, hits_before, misses_before, now_ms);
    audit::verdict_event(
        shared,
        &audit::Context { engine: &engine, headers: &headers, conn: decided.conn, now_ms },
        &verdict,
    );
    audit_and_dry_run_rules(&decided, &verdict);
    apply(shared, &decided, verdict, context_id, held, end_of_stream)
}

/// A request decided again after it was held (from the root context).
struct Held {
    deadline_ms: u64,
    /// What came of its body meanwhile.
    body: outcome::HeldBody,
}

/// What Envoy knows of a request beyond its headers, read only when the policy needs it.
#[derive(Clone)]
struct Properties {
    uri_san: Option<String>,
    digest: Option<String>,
    route: Option<String>,
    route_tag: Option<String>,
}

impl Properties {
    fn read(engine: &Engine) -> Properties {
        // The peer certificate only when a rule binds to it: two property reads otherwise saved.
        let (uri_san, digest) = if engine.needs_peer() {
            (
                property_text(&["connection", "uri_san_peer_certificate"]),
                property_text(&["connection", "sha256_peer_certificate_digest"]),
            )
        } else {
            (None, None)
        };
        let route = if engine.policy().needs().route { property_text(&["xds", "route_name"]) } else { None };
        let route_tag = if engine.policy().needs().route_tag { route_tag() } else { None };
        Properties { uri_san, digest, route, route_tag }
    }

    fn connection(&self) -> Connection<'_> {
        Connection {
            peer: Peer { uri_san: self.uri_san.as_deref(), certificate_sha256: self.digest.as_deref() },
            route: self.route.as_deref(),
            route_tag: self.route_tag.as_deref(),
        }
    }
}

/// A request as it was decided: what applying, auditing and explaining its verdict read again.
struct Decided<'a> {
    engine: &'a Rc<Engine>,
    /// The headers as Envoy serialised them, kept when the decision waits for the body.
    raw_headers: &'a [u8],
    headers: &'a Headers<'a>,
    properties: &'a Properties,
    conn: Connection<'a>,
    now_ms: u64,
    now: i64,
    crypto: &'a dyn CryptoBackend,
}

/// Filter state (`forward.filter_state`) and the log lines of dry-run rules.
fn audit_and_dry_run_rules(decided: &Decided<'_>, verdict: &Verdict) {
    let &Decided { engine, headers, conn, now, crypto, .. } = decided;
    if engine.settings().filter_state {
        match verdict {
            // Recorded when the body is decided.
            Verdict::Allow { await_body: Some(_), .. } => {}
            Verdict::Allow { rule, set, dry_run: None, mcp, .. } => audit::allowed(rule, set, mcp.as_deref()),
            Verdict::Allow { dry_run: Some(d), .. } => audit::refused(d, true),
            Verdict::Deny(d) => audit::refused(d, false),
            // Recorded when they are finally decided or answered; a served document is no decision.
            Verdict::WaitForKeys { .. } | Verdict::UnknownKey { .. } | Verdict::Answer(_) => {}
        }
    }
    if engine.policy().has_dry_run_rules() {
        let enforced = match verdict {
            Verdict::Allow { rule, dry_run: None, .. } => format!("allowed by \"{rule}\""),
            Verdict::Allow { dry_run: Some(d), .. } | Verdict::Deny(d) | Verdict::Answer(d) => {
                format!("{} {}", d.status, d.reason)
            }
            Verdict::WaitForKeys { .. } | Verdict::UnknownKey { .. } => "pending keys".to_owned(),
        };
        for (rule, effect) in engine.dry_run_rules(headers, conn, crate::engine::Body::Absent, now, crypto) {
            let effect = if effect == crate::policy::Effect::Allow { "allow" } else { "deny" };
            log(
                LogLevel::Info,
                &format!("agent-iam: dry-run rule \"{rule}\" would {effect} this request (enforced: {enforced})"),
            );
        }
    }
}
