//! The proxy-wasm glue, and the only code that talks to proxy-wasm: it reads the request headers, asks the
//! [`Engine`] for a verdict and applies it. No decisions are made here.

use crate::config;
use crate::engine::{Engine, Verdict};
use crate::token::PureRust;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { engine: None }));
}}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: a host that cannot log must not stop the request path.
    let _ = hostcalls::log(level, message);
}

/// One per plugin per worker. Holds the last good configuration.
struct Root {
    engine: Option<Rc<Engine>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(engine) => {
                let issuers = engine.verifier().issuers().len();
                self.engine = Some(Rc::new(engine));
                log(LogLevel::Info, &format!("agent-iam: configuration accepted ({issuers} issuer(s))"));
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
        Some(Box::new(Request { engine: self.engine.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per HTTP stream.
struct Request {
    engine: Option<Rc<Engine>>,
}

impl Context for Request {}

impl Request {
    fn fail_closed(&self, why: &str) -> Action {
        log(LogLevel::Error, &format!("agent-iam: {why}; denying"));
        let body = br#"{"error":"temporarily_unavailable","error_description":"authorization is unavailable"}"#;
        self.send_http_response(503, vec![("content-type", "application/json")], Some(body));
        Action::Pause
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(engine) = self.engine.clone() else {
            return self.fail_closed("no configuration");
        };
        let Ok(now) = self.get_current_time().duration_since(UNIX_EPOCH) else {
            return self.fail_closed("clock before the epoch");
        };
        let Ok(now) = i64::try_from(now.as_secs()) else {
            return self.fail_closed("clock out of range");
        };
        // The byte variant: the String one unwraps UTF-8 and would trap on an obs-text header value.
        let headers = self.get_http_request_headers_bytes();
        match engine.decide(&headers, now, &PureRust) {
            Verdict::Allow { remove, set, .. } => {
                for name in &remove {
                    self.set_http_request_header(name, None);
                }
                for (name, value) in &set {
                    self.set_http_request_header(name, Some(value));
                }
                Action::Continue
            }
            Verdict::Deny(denial) => {
                log(LogLevel::Debug, &format!("agent-iam: {} {}", denial.status, denial.details));
                let headers: Vec<(&str, &str)> = denial.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.send_http_response(u32::from(denial.status), headers, Some(denial.body.as_bytes()));
                Action::Pause
            }
        }
    }
}
