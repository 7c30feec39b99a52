//! The raw proxy-wasm host imports the filter calls directly, bypassing the SDK, in one place. Each caller
//! says why the SDK's wrapper does not do (copies, panics on unexpected statuses, empty response details).

use proxy_wasm::types::Status;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    /// proxy-wasm ABI 0.2.1. `map_type` 0 is the request headers; the status is 0 on success.
    pub(super) fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;

    /// Writes a property (a filter state value under `wasm.`); the status is 0 on success.
    pub(super) fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;

    /// Sends a local reply with response-code details, applied when the current callback returns.
    pub(super) fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}
