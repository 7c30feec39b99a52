//! Local replies with response-code details. The SDK's `send_http_response` always passes empty details,
//! which leaves Envoy's `%RESPONSE_CODE_DETAILS%` access-log field blank for every denial; operators need it
//! to tell an expired token from a policy denial without reading bodies. So this calls the ABI directly.

use super::sys::proxy_send_local_response;
use proxy_wasm::types::Status;

/// Sends a local reply; Envoy applies it when the current callback returns. `false` if the host refused.
pub fn send<N: AsRef<[u8]>, V: AsRef<[u8]>>(status: u32, details: &str, headers: &[(N, V)], body: &[u8]) -> bool {
    let headers = crate::header_map::serialize(headers);
    // SAFETY: every pointer/length pair describes a live buffer owned by this frame for the whole call; the
    // host copies what it needs before returning. -1 means "not a gRPC reply".
    let status = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    matches!(status, Status::Ok)
}
