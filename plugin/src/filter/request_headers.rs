//! The request header map in one hostcall, without the SDK's copies.
//!
//! `hostcalls::get_map_bytes` copies every header into an owned `String` and `Vec` (about a fifth of a cached
//! request's instructions) and panics on a status it does not expect. This reads the host's buffer as it is;
//! [`crate::header_map::parse`] then borrows the pairs from it.

use super::sys::proxy_get_header_map_pairs;
use std::ptr::null_mut;

const HTTP_REQUEST_HEADERS: u32 = 0;
const STATUS_OK: u32 = 0;

/// The serialised request header map; `None` when the host refuses (e.g. outside a request phase).
pub fn read() -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a length into the two out-parameters, which are valid for writes.
    let status = unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
    if status != STATUS_OK {
        return None;
    }
    if data.is_null() || size == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the host allocated the buffer through the SDK's `proxy_on_memory_allocate`, which hands out a
    // leaked `Box<[u8]>` of exactly `size` bytes: ownership comes back to us here, once.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}
