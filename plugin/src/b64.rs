//! Strict base64url (RFC 4648 §5) without padding, as JWS requires (RFC 7515 §2).
//!
//! Strict means exactly one encoding per byte string: no padding, no `+`/`/`, no whitespace, and the unused
//! low bits of the last character must be zero. Anything looser lets an attacker mint many distinct tokens
//! for one signature (the CVE-2022-25898 class), which breaks caches keyed by token bytes.

/// Why a base64url string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B64Error {
    /// A byte outside `A-Z a-z 0-9 - _` (this includes `=`, `+`, `/` and whitespace).
    InvalidByte,
    /// A length of 4n+1 characters cannot encode whole bytes.
    InvalidLength,
    /// The last character carries bits that no encoder would set.
    NonCanonical,
}

const INVALID: u8 = 0xff;

static DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

const ENCODE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of the decoded form of `len` base64url characters, if `len` is a valid length.
pub fn decoded_len(len: usize) -> Option<usize> {
    match len % 4 {
        1 => None,
        r => Some(len / 4 * 3 + r.saturating_sub(1)),
    }
}

/// Decodes strict, unpadded base64url.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, B64Error> {
    let out_len = decoded_len(input.len()).ok_or(B64Error::InvalidLength)?;
    let mut out = Vec::with_capacity(out_len);
    let mut chunks = input.chunks_exact(4);
    for chunk in &mut chunks {
        let mut n: u32 = 0;
        for &c in chunk {
            n = (n << 6) | sextet(c)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    match rest.len() {
        0 => {}
        2 => {
            let n = (sextet(rest[0])? << 6) | sextet(rest[1])?;
            if n & 0xf != 0 {
                return Err(B64Error::NonCanonical);
            }
            out.push((n >> 4) as u8);
        }
        3 => {
            let n = (sextet(rest[0])? << 12) | (sextet(rest[1])? << 6) | sextet(rest[2])?;
            if n & 0x3 != 0 {
                return Err(B64Error::NonCanonical);
            }
            out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
        }
        _ => return Err(B64Error::InvalidLength),
    }
    Ok(out)
}

fn sextet(c: u8) -> Result<u32, B64Error> {
    match DECODE[c as usize] {
        INVALID => Err(B64Error::InvalidByte),
        v => Ok(u32::from(v)),
    }
}

/// Encodes as unpadded base64url (used for tests, tools and `x5t#S256` comparisons).
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ENCODE[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(encode(&data).as_bytes()), Ok(data));
        }
    }

    #[test]
    fn known_vectors() {
        // RFC 4648 §10 vectors, unpadded, in the URL alphabet.
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode(b"-_8"), Ok(vec![0xfb, 0xff]));
    }

    #[test]
    fn rejects_padding_standard_alphabet_and_whitespace() {
        assert_eq!(decode(b"Zm8="), Err(B64Error::InvalidByte));
        assert_eq!(decode(b"+/8"), Err(B64Error::InvalidByte));
        assert_eq!(decode(b"Zm9v Ym"), Err(B64Error::InvalidByte));
        assert_eq!(decode(b"Zm9vYmFy\n"), Err(B64Error::InvalidLength));
    }

    #[test]
    fn rejects_non_zero_trailing_bits() {
        // "Zm8" is canonical for "fo"; "Zm9" decodes to the same bytes with a stray low bit.
        assert_eq!(decode(b"Zm9"), Err(B64Error::NonCanonical));
        assert_eq!(decode(b"Zh"), Err(B64Error::NonCanonical));
    }

    #[test]
    fn rejects_impossible_length() {
        assert_eq!(decode(b"Z"), Err(B64Error::InvalidLength));
        assert_eq!(decode(b"Zm9vY"), Err(B64Error::InvalidLength));
    }
}
