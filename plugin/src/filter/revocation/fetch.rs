//! Fetching for the gateway, by the worker that holds the lease: the revocation list (GET through its
//! cluster) and the SSF transmitter's poll endpoint (RFC 8936), and what their answers change.

use super::super::host::{self, BufferType, LogLevel, MapType};
use super::super::{Shared, log};
use super::{HostStore, Judged, hand_to, judge, sources_of, sync};
use crate::revocation::document::excerpt;
use crate::revocation::list;
use crate::revocation::sources::{Endpoint, Sources};
use crate::revocation::state::{self, SetError};
use crate::token::CryptoBackend;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

fn call(endpoint: &Endpoint, method: &str, extra: &[(&str, &str)], body: &[u8]) -> Result<u32, host::Status> {
    let mut headers =
        vec![(":method", method), (":path", endpoint.path.as_str()), (":authority", endpoint.authority.as_str())];
    headers.extend_from_slice(extra);
    host::http_call_with_body(&endpoint.cluster, &headers, body, Duration::from_millis(endpoint.timeout_ms))
}

pub(super) fn fetch_list(shared: &Rc<RefCell<Shared>>, sources: &Sources, now_ms: u64) {
    let Some(list) = &sources.list else { return };
    let result = call(&list.endpoint, "GET", &[("accept", "application/jwt, application/json")], &[]);
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    match result {
        Ok(token) => s.revocation.list.call = Some(token),
        Err(status) => {
            s.revocation.list.failed(now_ms, list.refresh as u64 * 1000);
            s.metrics.count("agent_iam.revocation.list.no_response", 1);
            log(
                LogLevel::Warn,
                &format!("agent-iam: revocation list: cannot call cluster \"{}\": {status:?}", list.endpoint.cluster),
            );
        }
    }
}

pub(super) fn poll(shared: &Rc<RefCell<Shared>>, sources: &Sources, now_ms: u64) {
    let Some(poll) = sources.ssf.as_ref().and_then(|r| r.poll.as_ref()) else { return };
    // What is owed to the transmitter is in the shared state: a new fetcher pays its predecessor's debts.
    let (ack, errors) = match state::read(&HostStore, &sources.state_key) {
        Ok((st, _)) => (st.poll.ack, st.poll.errors),
        Err(e) => {
            log(LogLevel::Error, &format!("agent-iam: ssf: not polling: {e}"));
            return;
        }
    };
    let mut set_errs = Map::new();
    for e in &errors {
        set_errs.insert(e.jti.clone(), json!({"err": e.err, "description": e.description}));
    }
    let mut body = json!({"maxEvents": poll.max_events, "returnImmediately": true});
    if !ack.is_empty() {
        body["ack"] = json!(ack);
    }
    if !set_errs.is_empty() {
        body["setErrs"] = Value::Object(set_errs);
    }
    let body = body.to_string();
    let mut headers = vec![("content-type", "application/json"), ("accept", "application/json")];
    if let Some(authorization) = &poll.authorization {
        headers.push(("authorization", authorization.as_str()));
    }
    let result = call(&poll.endpoint, "POST", &headers, body.as_bytes());
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    match result {
        Ok(token) => {
            let f = &mut s.revocation;
            f.poll.call = Some(token);
            f.sent_ack = ack;
            f.sent_errors = errors.into_iter().map(|e| e.jti).collect();
        }
        Err(status) => {
            s.revocation.poll.failed(now_ms, poll.interval_ms.max(30_000));
            s.metrics.count("agent_iam.revocation.ssf.poll.no_response", 1);
            log(
                LogLevel::Warn,
                &format!("agent-iam: ssf: cannot call cluster \"{}\": {status:?}", poll.endpoint.cluster),
            );
        }
    }
}

/// The answer to an HTTP call: whether it was one of revocation's.
pub fn on_response(
    shared: &Rc<RefCell<Shared>>,
    token: u32,
    body_size: usize,
    crypto: &dyn CryptoBackend,
    now_ms: u64,
) -> bool {
    let Some(engine) = shared.try_borrow().ok().and_then(|s| s.engine.clone()) else { return false };
    let Some(sources) = sources_of(&engine) else { return false };
    let (is_list, is_poll) = match shared.try_borrow() {
        Ok(s) => (s.revocation.list.call == Some(token), s.revocation.poll.call == Some(token)),
        Err(_) => return false,
    };
    if !is_list && !is_poll {
        return false;
    }
    let max = if is_list {
        sources.list.as_ref().map_or(0, |l| l.endpoint.max_bytes)
    } else {
        sources.ssf.as_ref().and_then(|r| r.poll.as_ref()).map_or(0, |p| p.endpoint.max_bytes)
    };
    let buffer = host::header_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let headers = crate::header_map::parse(&buffer).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(n, _)| *n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let body = match status {
        Some(200) if body_size <= max => {
            Ok(host::buffer(BufferType::HttpCallResponseBody, body_size).unwrap_or_default())
        }
        Some(200) => Err(format!("answer of {body_size} bytes is over the limit of {max}")),
        Some(other) => Err(format!("HTTP status {other}")),
        None => Err("no answer (cluster unavailable, reset or timeout)".to_owned()),
    };
    if is_list {
        on_list(shared, &sources, body, crypto, now_ms);
    } else {
        on_poll(shared, &sources, body, crypto, now_ms);
    }
    // Enforce at once on this worker what was just learnt; the others read it on their tick.
    hand_to(&engine, sync(&sources, (now_ms / 1000) as i64, false));
    true
}

fn on_list(
    shared: &Rc<RefCell<Shared>>,
    sources: &Sources,
    body: Result<Vec<u8>, String>,
    crypto: &dyn CryptoBackend,
    now_ms: u64,
) {
    let Some(source) = &sources.list else { return };
    let now = (now_ms / 1000) as i64;
    let parsed = body.and_then(|b| {
        list::parse(&b, source.verifier.as_ref(), source.allow_unsigned, now, crypto).map_err(|e| e.to_string())
    });
    let outcome = parsed.and_then(|l| {
        let count = l.selectors.len();
        let mut older = false;
        state::update(&HostStore, &sources.state_key, |st| {
            let installed = st.install_list(l.issued_at, now, l.selectors.clone());
            older = !installed;
            Ok(installed)
        })
        .map_err(|e| e.to_string())?;
        if older {
            Err("older than the list in force (replayed or rolled back): refused".to_owned())
        } else {
            Ok((l.issued_at, count))
        }
    });
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    let refresh_ms = source.refresh as u64 * 1000;
    match outcome {
        Ok((issued_at, count)) => {
            s.revocation.list.succeeded(now_ms + refresh_ms);
            s.metrics.count("agent_iam.revocation.list.ok", 1);
            log(
                LogLevel::Info,
                &format!("agent-iam: revocation list (iat {issued_at}) applied: {count} revocation(s)"),
            );
        }
        Err(why) => {
            s.revocation.list.failed(now_ms, refresh_ms);
            s.metrics.count("agent_iam.revocation.list.refused", 1);
            log(LogLevel::Warn, &format!("agent-iam: revocation list not applied, the last good one is kept: {why}"));
        }
    }
}

fn on_poll(
    shared: &Rc<RefCell<Shared>>,
    sources: &Sources,
    body: Result<Vec<u8>, String>,
    crypto: &dyn CryptoBackend,
    now_ms: u64,
) {
    let Some(poll) = sources.ssf.as_ref().and_then(|r| r.poll.as_ref()) else { return };
    let now = (now_ms / 1000) as i64;
    let answer = body.and_then(|b| {
        let object = crate::json::parse_object(&b, 8).map_err(|e| format!("not a poll answer: {e}"))?;
        let sets = match object.get("sets") {
            Some(Value::Object(sets)) => sets.clone(),
            _ => return Err("not a poll answer: \"sets\" must be an object".to_owned()),
        };
        let more = match object.get("moreAvailable") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("not a poll answer: \"moreAvailable\" must be a boolean".to_owned()),
        };
        Ok((sets, more))
    });
    let (sent_ack, sent_errors) = match shared.try_borrow_mut() {
        Ok(mut s) => (std::mem::take(&mut s.revocation.sent_ack), std::mem::take(&mut s.revocation.sent_errors)),
        Err(_) => return,
    };
    let (sets, more) = match answer {
        Ok(a) => a,
        Err(why) => {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.revocation.poll.failed(now_ms, poll.interval_ms.max(30_000));
                s.metrics.count("agent_iam.revocation.ssf.poll.failed", 1);
            }
            log(LogLevel::Warn, &format!("agent-iam: ssf: poll failed, the last state is kept: {why}"));
            return;
        }
    };
    let judged: Vec<Judged> =
        sets.iter().map(|(key, set)| judge(sources, Some(key), set, crypto, now, "ssf")).collect();
    let limits = sources.limits;
    let mut notes: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut accepted = 0u64;
    let written = state::update(&HostStore, &sources.state_key, |st| {
        notes.clear();
        refused.clear();
        accepted = 0;
        st.poll.ack.retain(|a| !sent_ack.contains(a));
        st.poll.errors.retain(|e| !sent_errors.contains(&e.jti));
        for j in &judged {
            match j {
                Judged::Apply { jti, until, selectors, note } => {
                    match st.apply_event(jti, *until, selectors, &format!("ssf:{jti}"), limits) {
                        Ok(fresh) => {
                            st.owe_ack(jti);
                            if fresh {
                                accepted += 1;
                                notes.push(note.clone());
                            }
                        }
                        Err(e) => {
                            refused.push(format!("{jti}: {e}"));
                            st.owe_error(SetError {
                                jti: jti.clone(),
                                err: "invalid_request".into(),
                                description: e.to_string(),
                            });
                        }
                    }
                }
                Judged::Refuse(e) => {
                    refused.push(format!("{}: {} ({})", excerpt(&e.jti), e.err, e.description));
                    st.owe_error(e.clone());
                }
            }
        }
        st.poll.last_success = Some(now);
        Ok(true)
    });
    let Ok(mut s) = shared.try_borrow_mut() else { return };
    match written {
        Ok(_) => {
            let next = if more { now_ms } else { now_ms + poll.interval_ms };
            s.revocation.poll.succeeded(next);
            s.metrics.count("agent_iam.revocation.ssf.poll.ok", 1);
            s.metrics.count("agent_iam.revocation.ssf.set.accepted", accepted);
            s.metrics.count("agent_iam.revocation.ssf.set.refused", refused.len() as u64);
            drop(s);
            for note in &notes {
                log(LogLevel::Warn, &format!("agent-iam: {note}"));
            }
            for r in &refused {
                log(LogLevel::Warn, &format!("agent-iam: ssf: event refused: {r}"));
            }
        }
        Err(e) => {
            s.revocation.poll.failed(now_ms, poll.interval_ms.max(30_000));
            drop(s);
            log(LogLevel::Error, &format!("agent-iam: ssf: events not applied (will be delivered again): {e}"));
        }
    }
}
