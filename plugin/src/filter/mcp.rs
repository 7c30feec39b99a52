//! MCP in the filter: the body of a POST to an MCP endpoint read for the decision, and list responses
//! filtered for the caller as they stream.
//!
//! By default Envoy turns a plugin's StopIteration on request headers into "stop everything" (proxy-wasm-cpp-host
//! converts it to StopAllIterationAndWatermark), so a plugin never sees a body while the headers wait. The
//! headers of an MCP POST therefore go on at once with the verified identity (everything that does not depend
//! on the body), the body is buffered here (StopIterationAndBuffer) until it ends, and only then decided: a
//! refused call is answered locally and its body never reaches the upstream, which saw headers and then a
//! reset. With `mcp.hold_headers` (for Envoy's `allow_on_headers_stop_iteration`, 1.35 and later) the headers
//! wait too: the body comes while they do, and the first body callback that continues lets both go on, so a
//! refused call never reaches the upstream at all. Response bodies are rewritten in place: a JSON answer
//! whole, an event stream event by event.

use super::host::{self, BufferType, LogLevel, MapType};
use super::{Properties, Shared, audit, count_denial, log, logging_at, now_ms, reply};
use crate::engine::{AwaitBody, Body, Denial, Engine, Verdict};
use crate::request::mcp::McpRequest;
use crate::request::mcp::list::{Filtered, ListError};
use crate::request::mcp::sse::SseRewriter;
use crate::token::CryptoBackend;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// `proxy_on_*_body` answers: go on, or keep buffering.
pub(super) const DATA_CONTINUE: u32 = 0;
pub(super) const DATA_BUFFER: u32 = 1;
/// Largest JSON list response buffered for filtering; more is replaced by an error (Envoy's own buffer limit
/// is usually lower).
const MAX_LIST_RESPONSE: usize = 8 << 20;
/// Largest event of a streamed list response.
const MAX_EVENT: usize = 1 << 20;

thread_local! {
    /// The streams with MCP work left after their request headers, by context id. Most streams have none, and
    /// their later callbacks return after one look at an empty map (a per-stream cell cost every stream an
    /// allocation and its response callbacks a lookup of the whole request).
    static STREAMS: RefCell<FxHashMap<u32, Phase>> = RefCell::new(FxHashMap::default());
}

/// Sets the phase of a stream.
pub(super) fn set_phase(context_id: u32, phase: Phase) {
    STREAMS.with(|s| s.borrow_mut().insert(context_id, phase));
}

/// Takes the phase of a stream out (it has none left unless put back).
fn take_phase(context_id: u32) -> Option<Phase> {
    STREAMS.with(|s| if s.borrow().is_empty() { None } else { s.borrow_mut().remove(&context_id) })
}

/// Whether a stream has MCP work left (the body and response callbacks of every other stream return at once).
pub(super) fn has_phase(context_id: u32) -> bool {
    STREAMS.with(|s| {
        let s = s.borrow();
        !s.is_empty() && s.contains_key(&context_id)
    })
}

/// The stream ended: forget its phase.
pub(super) fn forget(context_id: u32) {
    let _ = take_phase(context_id);
}

/// Where an HTTP stream with MCP work is, for the callbacks after its request headers.
pub(super) enum Phase {
    /// An MCP POST whose headers went on: its body is being buffered for the decision.
    AwaitingBody(Box<Pending>),
    /// An allowed list call: its response is filtered for the caller.
    Listing(Box<Listing>),
    /// A security event pushed to the SSF push endpoint (RFC 8935): buffered, then verified and answered.
    SecurityEvent { max_bytes: usize },
    /// Held for a key set (see [`super::outcome::HeldBody`]): its body, if the host hands it over meanwhile, is
    /// kept back with the headers.
    HeldForKeys,
}

/// What deciding on the body needs of the request: its headers as they arrived (Envoy has forwarded its
/// own, edited, by then) and what Envoy said of the connection.
pub(super) struct Pending {
    /// What the decision on the body takes from the one at the headers.
    pub wait: AwaitBody,
    /// The engine that decided at the headers: the decision on the body takes the token it verified only from
    /// that same engine (a new configuration decides afresh).
    pub engine: Weak<Engine>,
    pub headers: Vec<u8>,
    pub properties: Properties,
    /// Whether the headers wait for this decision (`mcp.hold_headers`): they can still be edited.
    pub headers_held: bool,
}

/// An allowed list call and how its response is being rewritten.
pub(super) struct Listing {
    headers: Vec<u8>,
    properties: Properties,
    call: Rc<McpRequest>,
    mode: Mode,
}

enum Mode {
    /// Response headers not seen yet.
    Undecided,
    /// `application/json`: buffered whole, rewritten at its end.
    Json,
    /// `text/event-stream`: rewritten event by event.
    Events(Box<SseRewriter>),
    /// Compressed, or too large: the body is replaced by a JSON-RPC error, never passed on.
    Refused(&'static str),
    /// An event stream that failed: an error event was sent; the rest is dropped.
    Dropped,
    /// Anything else (an error status with a plain body): passed on.
    Pass,
}

/// The engine of the last good configuration.
fn engine(shared: &Rc<RefCell<Shared>>) -> Option<Rc<Engine>> {
    shared.try_borrow().ok().and_then(|s| s.engine.clone())
}

/// A JSON-RPC error in place of a list the plugin could not filter.
fn refusal_body(call: &McpRequest, why: &str) -> Vec<u8> {
    let id = call.id().cloned().unwrap_or(serde_json::Value::Null);
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
        "message": format!("agent-iam could not filter this list for the caller ({why})")}})
    .to_string()
    .into_bytes()
}

/// A chunk of a pushed security event: buffered to its end (or refused over the cap), then handled.
fn security_event_body(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    context_id: u32,
    size: usize,
    end: bool,
    max_bytes: usize,
) -> u32 {
    let now = now_ms().unwrap_or(0);
    if size > max_bytes {
        forget(context_id);
        super::revocation::on_push_body(shared, crypto, None, now);
        return DATA_BUFFER;
    }
    if !end {
        return DATA_BUFFER;
    }
    forget(context_id);
    match host::buffer(BufferType::HttpRequestBody, size) {
        Ok(bytes) => super::revocation::on_push_body(shared, crypto, Some(&bytes), now),
        Err(_) => {
            super::fail_closed("the request body is unavailable");
        }
    }
    DATA_BUFFER
}

/// A chunk of the request body of a stream waiting for its decision (`size`: what Envoy has buffered so
/// far, `end`: the body is complete).
pub(super) fn on_request_body(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    context_id: u32,
    size: usize,
    end: bool,
) -> u32 {
    let (waiting, pushed) = match STREAMS.with(|s| match s.borrow().get(&context_id) {
        Some(Phase::AwaitingBody(p)) => Some((Some(p.wait.max_bytes), None)),
        Some(Phase::SecurityEvent { max_bytes }) => Some((None, Some(*max_bytes))),
        Some(Phase::HeldForKeys) => None,
        _ => Some((None, None)),
    }) {
        Some(found) => found,
        None => {
            // Held for a key set: kept back with the headers, never let go unseen.
            super::body_while_held(shared, context_id, size, end);
            return DATA_BUFFER;
        }
    };
    if let Some(max_bytes) = pushed {
        return security_event_body(shared, crypto, context_id, size, end, max_bytes);
    }
    let Some(max_bytes) = waiting else { return DATA_CONTINUE };
    if size > max_bytes {
        return decide_body(shared, crypto, context_id, Body::TooLarge);
    }
    if !end {
        return DATA_BUFFER;
    }
    match host::buffer(BufferType::HttpRequestBody, size) {
        Ok(bytes) => decide_body(shared, crypto, context_id, Body::Complete(&bytes)),
        Err(_) => {
            super::fail_closed("the request body is unavailable");
            DATA_BUFFER
        }
    }
}

/// Decides an MCP request on its body and carries the verdict out: the body goes on, or a refusal is
/// answered in its place.
pub(super) fn decide_body(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    context_id: u32,
    body: Body<'_>,
) -> u32 {
    let pending = match take_phase(context_id) {
        Some(Phase::AwaitingBody(pending)) => pending,
        Some(other) => {
            set_phase(context_id, other);
            return DATA_CONTINUE;
        }
        None => return DATA_CONTINUE,
    };
    let Some(engine) = engine(shared) else {
        super::fail_closed("no configuration");
        return DATA_BUFFER;
    };
    let Some(now_ms) = now_ms() else {
        super::fail_closed("the host clock is unavailable");
        return DATA_BUFFER;
    };
    let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let headers = match crate::header_map::parse(&pending.headers) {
        Ok(h) => h,
        Err(_) => {
            super::fail_closed("the request headers cannot be read again");
            return DATA_BUFFER;
        }
    };
    let conn = pending.properties.connection();
    let (hits, misses) = engine.cache_stats();
    let same_engine = pending.engine.upgrade().is_some_and(|e| Rc::ptr_eq(&e, &engine));
    let verdict = if same_engine {
        engine.decide_body(&pending.wait, &headers, conn, body, now, crypto)
    } else {
        engine.decide_with_body(&headers, conn, body, now, crypto)
    };
    let verdict = super::anomaly::screen(shared, &engine, &headers, verdict, now_ms);
    super::record(shared, &engine, &verdict, hits, misses, now_ms);
    audit::verdict_event(shared, &audit::Context { engine: &engine, headers: &headers, conn, now_ms }, &verdict);
    if engine.policy().has_dry_run_rules() {
        for (rule, effect) in engine.dry_run_rules(&headers, conn, body, now, crypto) {
            let effect = if effect == crate::policy::Effect::Allow { "allow" } else { "deny" };
            log(LogLevel::Info, &format!("agent-iam: dry-run rule \"{rule}\" would {effect} this MCP request"));
        }
    }
    let explain = |level: LogLevel| {
        if logging_at(level, now_ms) {
            log(level, &format!("agent-iam: explain {}", engine.explain_with_body(&headers, conn, body, now, crypto)));
        }
    };
    let filter_state = engine.settings().filter_state;
    match verdict {
        Verdict::Allow { rule, set, dry_run: None, mcp, filter_list, .. } => {
            explain(LogLevel::Trace);
            if filter_state {
                audit::allowed(&rule, &set, mcp.as_deref());
            }
            if let (true, Some(call)) = (filter_list, mcp) {
                set_phase(
                    context_id,
                    Phase::Listing(Box::new(Listing {
                        headers: pending.headers,
                        properties: pending.properties,
                        call,
                        mode: Mode::Undecided,
                    })),
                );
            }
            DATA_CONTINUE
        }
        Verdict::Allow { dry_run: Some(would), set, .. } => {
            // Headers that went on cannot be marked; the log and filter state say it.
            if pending.headers_held
                && let Some((name, mark)) = set.iter().find(|(n, _)| *n == crate::engine::DRY_RUN_HEADER)
            {
                let _ = host::set_header(MapType::HttpRequestHeaders, name, mark);
            }
            log(
                LogLevel::Info,
                &format!(
                    "agent-iam: dry run: forwarding an MCP request enforcement would answer {} ({})",
                    would.status, would.details
                ),
            );
            explain(LogLevel::Debug);
            if filter_state {
                audit::refused(&would, true);
            }
            DATA_CONTINUE
        }
        Verdict::Deny(denial) | Verdict::Answer(denial) => {
            if logging_at(LogLevel::Debug, now_ms) {
                log(LogLevel::Debug, &format!("agent-iam: {} {}", denial.status, denial.details));
            }
            explain(LogLevel::Debug);
            if filter_state {
                audit::refused(&denial, false);
            }
            reply(&denial);
            DATA_BUFFER
        }
        // The token verified when the headers came: its keys went away since (a new configuration). Refused.
        Verdict::WaitForKeys { on_timeout: denial, .. } | Verdict::UnknownKey { denial, .. } => {
            // Refused here, not by a verdict the audit saw: recorded as the refusal it is.
            audit::verdict_event(
                shared,
                &audit::Context { engine: &engine, headers: &headers, conn, now_ms },
                &Verdict::Deny(denial.clone()),
            );
            refuse_now(shared, &denial);
            DATA_BUFFER
        }
    }
}

fn refuse_now(shared: &Rc<RefCell<Shared>>, denial: &Denial) {
    if let Ok(mut s) = shared.try_borrow_mut() {
        count_denial(&mut s.metrics, denial);
    }
    reply(denial);
}

/// The response headers of a stream: a list being filtered chooses how, by content type and encoding.
pub(super) fn on_response_headers(context_id: u32) -> u32 {
    match take_phase(context_id) {
        Some(Phase::Listing(mut listing)) => {
            choose_mode(&mut listing);
            set_phase(context_id, Phase::Listing(listing));
        }
        Some(other) => set_phase(context_id, other),
        None => {}
    }
    0
}

fn choose_mode(listing: &mut Listing) {
    let headers = host::header_map(MapType::HttpResponseHeaders).unwrap_or_default();
    let headers = crate::header_map::parse(&headers).unwrap_or_default();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let encoding = value("content-encoding");
    let media = value("content-type").unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim().to_owned();
    listing.mode = if encoding.as_deref().is_some_and(|e| e != "identity") {
        // The upstream compressed although the plugin asked it not to: nothing of it can be read, so nothing
        // of it is passed on.
        Mode::Refused("the upstream compressed it")
    } else if media == "application/json" {
        Mode::Json
    } else if media == "text/event-stream" {
        Mode::Events(Box::new(SseRewriter::new(MAX_EVENT)))
    } else {
        Mode::Pass
    };
    if !matches!(listing.mode, Mode::Pass) {
        // The body changes size.
        let _ = host::remove_header(MapType::HttpResponseHeaders, "content-length");
    }
    if matches!(listing.mode, Mode::Refused(_)) {
        let _ = host::remove_header(MapType::HttpResponseHeaders, "content-encoding");
        let _ = host::set_header(MapType::HttpResponseHeaders, "content-type", "application/json");
    }
}

/// A chunk of the response body of a stream (`size`: the chunk, or what Envoy buffered so far).
pub(super) fn on_response_body(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    context_id: u32,
    size: usize,
    end: bool,
) -> u32 {
    match take_phase(context_id) {
        Some(Phase::Listing(mut listing)) => {
            let answer = filter_chunk(shared, crypto, &mut listing, size, end);
            set_phase(context_id, Phase::Listing(listing));
            answer
        }
        Some(other) => {
            set_phase(context_id, other);
            DATA_CONTINUE
        }
        None => DATA_CONTINUE,
    }
}

/// A chunk of a list response being filtered.
fn filter_chunk(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    listing: &mut Listing,
    size: usize,
    end: bool,
) -> u32 {
    let Listing { headers, properties, call, mode } = listing;
    match mode {
        Mode::Undecided | Mode::Pass => DATA_CONTINUE,
        Mode::Dropped => {
            let _ = host::set_buffer(BufferType::HttpResponseBody, size, b"");
            DATA_CONTINUE
        }
        Mode::Refused(why) => {
            if !end {
                return DATA_BUFFER;
            }
            let _ = host::set_buffer(BufferType::HttpResponseBody, size, &refusal_body(call, why));
            DATA_CONTINUE
        }
        Mode::Json => {
            if size > MAX_LIST_RESPONSE {
                *mode = Mode::Refused("the response is too large");
                let _ = host::set_buffer(BufferType::HttpResponseBody, size, b"");
                return DATA_BUFFER;
            }
            if !end {
                return DATA_BUFFER;
            }
            let Ok(body) = host::buffer(BufferType::HttpResponseBody, size) else {
                let _ = host::set_buffer(BufferType::HttpResponseBody, size, &refusal_body(call, "unreadable"));
                return DATA_CONTINUE;
            };
            let result = filter_message(shared, crypto, headers, properties, call, &body);
            let replacement = match result {
                Ok(Filtered::Unchanged) => None,
                Ok(Filtered::Rewritten(bytes)) => Some(bytes),
                Err(e) => {
                    log(LogLevel::Warn, &format!("agent-iam: MCP list response refused: {e}"));
                    Some(refusal_body(call, e.label()))
                }
            };
            if let Some(bytes) = replacement {
                let _ = host::set_buffer(BufferType::HttpResponseBody, size, &bytes);
            }
            DATA_CONTINUE
        }
        Mode::Events(rewriter) => {
            let chunk = host::buffer(BufferType::HttpResponseBody, size).unwrap_or_default();
            let mut rewrite = |data: &[u8]| match filter_message(shared, crypto, headers, properties, call, data)? {
                Filtered::Unchanged => Ok(None),
                Filtered::Rewritten(bytes) => Ok(Some(bytes)),
            };
            match rewriter.push(&chunk, end, &mut rewrite) {
                Ok(out) if out == chunk => {}
                Ok(out) => {
                    let _ = host::set_buffer(BufferType::HttpResponseBody, size, &out);
                }
                Err(e) => {
                    log(LogLevel::Warn, &format!("agent-iam: MCP list event stream refused: {e}"));
                    let mut event = b"event: message\ndata: ".to_vec();
                    event.extend_from_slice(&refusal_body(call, e.label()));
                    event.extend_from_slice(b"\n\n");
                    let _ = host::set_buffer(BufferType::HttpResponseBody, size, &event);
                    // Whatever else the stream carries is dropped.
                    *mode = Mode::Dropped;
                }
            }
            DATA_CONTINUE
        }
    }
}

/// One list message filtered by the current engine for the request as it arrived.
fn filter_message(
    shared: &Rc<RefCell<Shared>>,
    crypto: &dyn CryptoBackend,
    headers: &[u8],
    properties: &Properties,
    call: &McpRequest,
    message: &[u8],
) -> Result<Filtered, ListError> {
    let engine = engine(shared).ok_or(ListError::Unverified)?;
    let now = now_ms().and_then(|ms| i64::try_from(ms / 1000).ok()).ok_or(ListError::Unverified)?;
    let headers = crate::header_map::parse(headers).map_err(|_| ListError::Unverified)?;
    engine.filter_list_response(&headers, properties.connection(), now, crypto, call, message)
}
