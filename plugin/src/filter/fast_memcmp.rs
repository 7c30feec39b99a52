//! `memcmp` and `bcmp` for the .wasm, eight bytes at a time.
//!
//! Every slice and string comparison (`==` on `[u8]`/`str`, hash-map key checks, `Ord`) ends in `memcmp`, and
//! the one wasi-libc links in compares a byte per loop turn. On a cached request that was a fifth of all
//! instructions (the exact comparison of a ~400-byte token alone cost about 4,900). Defining the symbols here
//! keeps the linker from pulling wasi-libc's (a cdylib exports `no_mangle` symbols, so the module also
//! lists `memcmp` and `bcmp` among its exports, which hosts ignore); the logic is [`crate::bytes::compare`],
//! tested natively.

/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes (the C contract).
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    // SAFETY: the caller guarantees both regions are readable for `n` bytes.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, n), std::slice::from_raw_parts(b, n)) };
    crate::bytes::compare(a, b)
}

/// # Safety
/// As [`memcmp`]; only zero or non-zero is meaningful.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
