//! DPoP nonces handed out on responses (RFC 9449 §8.2): when a request's proof carried an accepted nonce of an
//! earlier period, the upstream's response brings the current one in `DPoP-Nonce`, so the client moves to it
//! before its own expires instead of being refused with `use_dpop_nonce`.

use super::host::{self, MapType};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Streams whose response gets a nonce, by context id.
    static NONCES: RefCell<HashMap<u32, String>> = RefCell::new(HashMap::new());
}

/// The response of this stream is to carry `nonce`.
pub(super) fn remember(context_id: u32, nonce: String) {
    NONCES.with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            n.insert(context_id, nonce);
        }
    });
}

/// Whether this stream's response carries a nonce (the response callbacks are skipped for most streams).
pub(super) fn pending(context_id: u32) -> bool {
    NONCES.with(|n| n.try_borrow().is_ok_and(|n| !n.is_empty() && n.contains_key(&context_id)))
}

/// Adds the stream's nonce to its response headers, if it has one. A failure to add it changes nothing else:
/// the client is asked for the new nonce on its next request instead.
pub(super) fn on_response_headers(context_id: u32) {
    if let Some(nonce) = forget(context_id) {
        let _ = host::set_header(MapType::HttpResponseHeaders, "dpop-nonce", &nonce);
    }
}

/// The stream is over: drops its nonce, if it was not sent.
pub(super) fn forget(context_id: u32) -> Option<String> {
    NONCES.with(|n| n.try_borrow_mut().ok()?.remove(&context_id))
}
