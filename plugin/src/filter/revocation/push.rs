//! Pushed security events (RFC 8935): a POST to the configured path, authenticated by its `authorization`
//! header, answered 202 once the event is applied, or 400 with the RFC's error codes.

use super::super::host::LogLevel;
use super::super::host::{self, MapType};
use super::super::{Applied, Shared, log, reply};
use super::{HostStore, Judged, hand_to, judge, sources_of, sync};
use crate::engine::{Denial, Engine};
use crate::request::Headers;
use crate::revocation::state;
use crate::token::CryptoBackend;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;

/// A pushed event's headers (RFC 8935): refused at once when they cannot be right, otherwise the body is
/// awaited. `None` when the request is not for the push endpoint.
pub fn push_headers(engine: &Engine, headers: &Headers<'_>, context_id: u32, end_of_stream: bool) -> Option<Applied> {
    // Every request passes here: borrowed, not cloned.
    let push = engine.settings().revocation_sources.as_deref()?.push()?;
    let one = |name: &str| crate::request::single_value(headers, name);
    let path = one(":path")?;
    let path = path.split(|b| *b == b'?').next().unwrap_or(path);
    if path != push.path.as_bytes() {
        return None;
    }
    let answer = |status: u16, err: &str, description: &str| {
        push_reply(status, err, description);
        Some(Applied::Stopped)
    };
    if one(":method") != Some(b"POST".as_slice()) {
        return answer(405, "invalid_request", "security events are pushed with POST");
    }
    let authorized =
        one("authorization").is_some_and(|v| crate::bytes::constant_time_eq(v, push.authorization.as_bytes()));
    if !authorized {
        return answer(400, "authentication_failed", "missing or wrong authorization");
    }
    let content_type = one("content-type").and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/secevent+jwt") {
        return answer(400, "invalid_request", "content-type must be application/secevent+jwt");
    }
    if end_of_stream {
        return answer(400, "invalid_request", "no security event in the request");
    }
    // The upstream sees this request's headers (Envoy sends them on before any filter sees the body; the
    // route of the push path must lead somewhere), never its credential or its body: the plugin answers.
    if host::remove_header(MapType::HttpRequestHeaders, "authorization").is_err() {
        return answer(503, "temporarily_unavailable", "the request could not be handled");
    }
    super::super::mcp::set_phase(context_id, super::super::mcp::Phase::SecurityEvent { max_bytes: push.max_bytes });
    Some(Applied::Continue)
}

fn push_reply(status: u16, err: &str, description: &str) {
    let body = if status == 202 { String::new() } else { json!({"err": err, "description": description}).to_string() };
    let details =
        if status == 202 { "agent_iam.ssf_push_accepted".to_owned() } else { format!("agent_iam.ssf_push_{err}") };
    let headers: Vec<(&'static str, String)> =
        if status == 202 { Vec::new() } else { vec![("content-type", "application/json".to_owned())] };
    reply(&Denial {
        status,
        headers,
        body,
        details,
        reason: "ssf_push",
        rule: None,
        mcp: None,
        verified: None,
        revoked_by: None,
    });
}

/// The body of a pushed event, complete (or over the cap: `None`): verified, applied, answered.
pub fn on_push_body(shared: &Rc<RefCell<Shared>>, crypto: &dyn CryptoBackend, body: Option<&[u8]>, now_ms: u64) {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else {
        return push_reply(503, "temporarily_unavailable", "no configuration");
    };
    let Some(sources) = sources_of(&engine) else {
        return push_reply(503, "temporarily_unavailable", "no receiver configured");
    };
    let Some(body) = body else { return push_reply(400, "invalid_request", "the event is larger than allowed") };
    let now = (now_ms / 1000) as i64;
    let text = String::from_utf8_lossy(body);
    let judged = judge(&sources, None, &Value::String(text.trim().to_owned()), crypto, now, "push");
    let limits = sources.limits;
    match judged {
        Judged::Refuse(e) => {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.metrics.count("agent_iam.revocation.ssf.set.refused", 1);
            }
            log(LogLevel::Warn, &format!("agent-iam: ssf push: event refused: {} ({})", e.err, e.description));
            push_reply(400, &e.err, &e.description);
        }
        Judged::Apply { jti, until, selectors, note } => {
            let written = state::update(&HostStore, &sources.state_key, |st| {
                st.apply_event(&jti, until, &selectors, &format!("push:{jti}"), limits)
            });
            match written {
                Ok(_) => {
                    if let Ok(mut s) = shared.try_borrow_mut() {
                        s.metrics.count("agent_iam.revocation.ssf.set.accepted", 1);
                    }
                    log(LogLevel::Warn, &format!("agent-iam: {note}"));
                    hand_to(&engine, sync(&sources, now, false));
                    push_reply(202, "", "");
                }
                Err(e) => {
                    log(LogLevel::Error, &format!("agent-iam: ssf push: event not applied: {e}"));
                    push_reply(503, "temporarily_unavailable", "the event could not be recorded; send it again");
                }
            }
        }
    }
}
