//! Byte comparison a word at a time: the portable logic behind the .wasm's `memcmp` (see
//! `filter/fast_memcmp.rs`), kept here so that it is tested natively against the standard library.

/// `memcmp` semantics on two equally long slices: negative, zero or positive as `a` sorts before, equal to or
/// after `b` (unsigned bytes, first difference decides).
pub fn compare(a: &[u8], b: &[u8]) -> i32 {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (x, y) = (word(&a[i..i + 8]), word(&b[i..i + 8]));
        if x != y {
            // Big-endian words order like their bytes: the first differing byte decides.
            return if x < y { -1 } else { 1 };
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return i32::from(a[i]) - i32::from(b[i]);
        }
        i += 1;
    }
    0
}

/// Whether two secrets are equal, in time that depends on neither's content nor on where they differ: both
/// are hashed (SHA-256) and the digests compared without an early exit, so not even the length leaks.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    fixed_time_eq(&Sha256::digest(a), &Sha256::digest(b))
}

/// Whether two values whose length is public (digests, thumbprints, MAC tags) are equal, in time that depends on
/// their length only: every byte's difference is folded before the one comparison.
pub fn fixed_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_be_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::{compare, constant_time_eq};

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"Bearer s3cret", b"Bearer s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"Bearer s3cret", b"Bearer s3cre"));
        assert!(!constant_time_eq(b"Bearer s3cret", b"Bearer s3creT"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn agrees_with_the_standard_library_on_sign() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let a: Vec<u8> = (0..len).map(|_| (next() % 4) as u8 * 85).collect();
            let mut b = a.clone();
            if len > 0 && next() % 3 != 0 {
                let at = (next() as usize) % len;
                b[at] = (next() % 256) as u8;
            }
            let want = a.cmp(&b) as i32;
            assert_eq!(compare(&a, &b).signum(), want, "{a:?} {b:?}");
        }
        assert_eq!(compare(b"", b""), 0);
        assert!(compare(&[0xff; 9], &[0x00; 9]) > 0);
        assert!(compare(b"abcdefgh1", b"abcdefgh2") < 0);
    }
}
