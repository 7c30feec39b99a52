//! Local replies with response-code details. The SDK's `send_http_response` always passes empty details,
//! which leaves Envoy's `%RESPONSE_CODE_DETAILS%` access-log field blank for every denial; operators need it
//! to tell an expired token from a policy denial without reading bodies.

use super::host;

/// Sends a local reply; Envoy applies it when the current callback returns. `false` if the host refused.
pub fn send<N: AsRef<[u8]>, V: AsRef<[u8]>>(status: u32, details: &str, headers: &[(N, V)], body: &[u8]) -> bool {
    let headers = crate::header_map::serialize(headers);
    host::send_local_response(status, details, &headers, body).is_ok()
}
