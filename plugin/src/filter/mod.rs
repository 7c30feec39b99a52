//! The proxy-wasm glue, and the only code that talks to proxy-wasm: it reads the request headers, asks the
//! [`Engine`] for a verdict and applies it. No decisions are made here.

use crate::config;
use crate::engine::{CryptoPreference, Engine, Verdict};
use crate::policy::Peer;
use crate::token::host_crypto::{self, HostCallError, HostCrypto, SignatureHost};
use crate::token::{Algorithm, CryptoBackend, PureRust};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

mod local_reply;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { engine: None, crypto: Rc::new(PureRust), host_crypto: None }));
}}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: a host that cannot log must not stop the request path.
    let _ = hostcalls::log(level, message);
}

/// A property as text; absent, unreadable or not UTF-8 is `None` (a rule needing it cannot be evaluated).
fn property_text(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

/// Envoy's `verify_signature` foreign function (BoringSSL).
struct EnvoyForeign;

impl SignatureHost for EnvoyForeign {
    fn verify_signature(&self, args: &[u8]) -> Result<Vec<u8>, HostCallError> {
        match hostcalls::call_foreign_function(host_crypto::FOREIGN_FUNCTION, Some(args)) {
            Ok(result) => Ok(result.unwrap_or_default()),
            Err(_) => Err(HostCallError),
        }
    }
}

/// One per plugin per worker. Holds the last good configuration and the signature backend for it.
struct Root {
    engine: Option<Rc<Engine>>,
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
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // The SDK's trait helpers unwrap host statuses; the hostcalls return them, so nothing here can trap.
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log(LogLevel::Error, &format!("agent-iam: cannot read the plugin configuration: {status:?}"));
                return false;
            }
        };
        match config::parse(&bytes) {
            Ok(engine) => {
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
                self.engine = Some(Rc::new(engine));
                log(LogLevel::Info, &summary);
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject this configuration and keep the last good one.
                log(LogLevel::Error, &format!("agent-iam: configuration rejected: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request { engine: self.engine.clone(), crypto: self.crypto.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per HTTP stream.
struct Request {
    engine: Option<Rc<Engine>>,
    crypto: Rc<dyn CryptoBackend>,
}

impl Context for Request {}

impl Request {
    fn fail_closed(&self, why: &str) -> Action {
        log(LogLevel::Error, &format!("agent-iam: {why}; denying"));
        let body = br#"{"error":"temporarily_unavailable","error_description":"authorization is unavailable"}"#;
        local_reply::send(503, "agent_iam.unavailable", &[("content-type", "application/json")], body);
        Action::Pause
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(engine) = self.engine.clone() else {
            return self.fail_closed("no configuration");
        };
        // The SDK's trait helpers unwrap host statuses (a trap); the hostcalls below return them, and any
        // failure denies with a logged reason instead.
        let Ok(now) = hostcalls::get_current_time() else {
            return self.fail_closed("the host clock is unavailable");
        };
        let Some(now) = now.duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok()) else {
            return self.fail_closed("the host clock is out of range");
        };
        // The byte variant: the String one unwraps UTF-8 and would trap on an obs-text header value.
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            return self.fail_closed("the request headers are unavailable");
        };
        // The peer certificate only when a rule binds to it: two property reads otherwise saved.
        let (uri_san, digest) = if engine.policy().needs().peer {
            (
                property_text(&["connection", "uri_san_peer_certificate"]),
                property_text(&["connection", "sha256_peer_certificate_digest"]),
            )
        } else {
            (None, None)
        };
        let peer = Peer { uri_san: uri_san.as_deref(), certificate_sha256: digest.as_deref() };
        match engine.decide_with_peer(&headers, peer, now, self.crypto.as_ref()) {
            Verdict::Allow { remove, set, canonical_path, .. } => {
                if hostcalls::get_log_level().is_ok_and(|l| l as u32 <= LogLevel::Trace as u32) {
                    log(
                        LogLevel::Trace,
                        &format!("agent-iam: explain {}", engine.explain(&headers, peer, now, self.crypto.as_ref())),
                    );
                }
                let mut edits =
                    remove.iter().map(|name| hostcalls::remove_map_value(MapType::HttpRequestHeaders, name));
                if edits.any(|r| r.is_err()) {
                    return self.fail_closed("a client-sent identity header could not be removed");
                }
                for (name, value) in &set {
                    if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_err() {
                        return self.fail_closed("an identity header could not be set");
                    }
                }
                if let Some(path) = canonical_path {
                    // Forward what was authorised. Envoy chose the route on the old path: recompute it.
                    if hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(&path)).is_err() {
                        return self.fail_closed("the canonical path could not be set");
                    }
                    let _ = hostcalls::call_foreign_function("clear_route_cache", None);
                }
                Action::Continue
            }
            Verdict::Deny(denial) => {
                log(LogLevel::Debug, &format!("agent-iam: {} {}", denial.status, denial.details));
                // Why, rule by rule: only when an operator turned debug logging on, as it re-evaluates
                // every rule (`--component-log-level wasm:debug`).
                if hostcalls::get_log_level().is_ok_and(|l| l as u32 <= LogLevel::Debug as u32) {
                    log(
                        LogLevel::Debug,
                        &format!("agent-iam: explain {}", engine.explain(&headers, peer, now, self.crypto.as_ref())),
                    );
                }
                let headers: Vec<(&str, &str)> = denial.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                local_reply::send(u32::from(denial.status), &denial.details, &headers, denial.body.as_bytes());
                Action::Pause
            }
        }
    }
}
