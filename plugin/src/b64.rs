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

/// [`DECODE`] for each of the four places in a group, the sextet already shifted into position and an invalid
/// byte turned into a bit that no sextet reaches: a group is then four lookups and three ORs.
static PLACED: [[u32; 256]; 4] = {
    let mut t = [[0; 256]; 4];
    let mut c = 0;
    while c < 256 {
        let mut place = 0;
        while place < 4 {
            t[place][c] = match DECODE[c] {
                INVALID => PLACED_INVALID,
                v => (v as u32) << (18 - 6 * place),
            };
            place += 1;
        }
        c += 1;
    }
    t
};

const PLACED_INVALID: u32 = 1 << 31;

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
    let len = decoded_len(input.len()).ok_or(B64Error::InvalidLength)?;
    // Not `vec![0; len]`, which asks the allocator for zeroed memory: glibc's `calloc` cost more than zeroing
    // a payload here (about 1 % of an HS256 verification).
    #[allow(clippy::slow_vector_initialization)]
    let mut out = Vec::with_capacity(len);
    out.resize(len, 0);
    decode_into(input, &mut out)?;
    Ok(out)
}

/// [`decode`] into the front of `out`, which needs room for [`decoded_len`] bytes (less room is refused as
/// [`B64Error::InvalidLength`]); returns the decoded bytes.
pub fn decode_into<'o>(input: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], B64Error> {
    let out = decoded_len(input.len()).and_then(|len| out.get_mut(..len)).ok_or(B64Error::InvalidLength)?;
    // Every looked-up value is ORed in and tested once at the end: an invalid byte sets bits that no sextet
    // does. Any bad byte is InvalidByte wherever it is, so not stopping at the first one changes no answer.
    let [p0, p1, p2, p3] = &PLACED;
    let group =
        |[a, b, c, d]: [u8; 4]| p0[usize::from(a)] | p1[usize::from(b)] | p2[usize::from(c)] | p3[usize::from(d)];
    let mut groups = 0u32;
    // Two groups at a time, stored as one 8-byte write whose last two bytes the next write replaces; the last
    // group or two, lacking that slack, go through the loop after.
    let mut done = 0;
    for &[a, b, c, d, e, f, g, h] in input.as_chunks::<8>().0 {
        let Some(dst) = out.get_mut(done * 3..done * 3 + 8) else {
            break;
        };
        let (first, second) = (group([a, b, c, d]), group([e, f, g, h]));
        groups |= first | second;
        dst.copy_from_slice(&((u64::from(first) << 40) | (u64::from(second) << 16)).to_be_bytes());
        done += 2;
    }
    let (quads, rest) = input.as_chunks::<4>();
    let (triples, tail) = out.as_chunks_mut::<3>();
    let (quads, triples) = (quads.get(done..).unwrap_or_default(), triples.get_mut(done..).unwrap_or_default());
    for (&quad, triple) in quads.iter().zip(triples.iter_mut()) {
        let n = group(quad);
        groups |= n;
        *triple = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    }
    let mut seen = 0u8;
    let canonical = match (rest, tail) {
        ([], []) => true,
        (&[a, b], [x]) => {
            let (a, b) = (DECODE[usize::from(a)], DECODE[usize::from(b)]);
            seen |= a | b;
            *x = (a << 2) | (b >> 4);
            b & 0xf == 0
        }
        (&[a, b, c], [x, y]) => {
            let (a, b, c) = (DECODE[usize::from(a)], DECODE[usize::from(b)], DECODE[usize::from(c)]);
            seen |= a | b | c;
            let n = (u32::from(a) << 12) | (u32::from(b) << 6) | u32::from(c);
            *x = (n >> 10) as u8;
            *y = (n >> 2) as u8;
            c & 0x3 == 0
        }
        _ => return Err(B64Error::InvalidLength),
    };
    if groups & PLACED_INVALID != 0 || seen & !0x3f != 0 {
        return Err(B64Error::InvalidByte);
    }
    if !canonical {
        return Err(B64Error::NonCanonical);
    }
    Ok(out)
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

    /// The byte-at-a-time decoder this module used before the chunked one: the reference for its answers.
    fn reference(input: &[u8]) -> Result<Vec<u8>, B64Error> {
        let sextet = |c: u8| match DECODE[usize::from(c)] {
            INVALID => Err(B64Error::InvalidByte),
            v => Ok(u32::from(v)),
        };
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
        match *chunks.remainder() {
            [] => {}
            [a, b] => {
                let n = (sextet(a)? << 6) | sextet(b)?;
                if n & 0xf != 0 {
                    return Err(B64Error::NonCanonical);
                }
                out.push((n >> 4) as u8);
            }
            [a, b, c] => {
                let n = (sextet(a)? << 12) | (sextet(b)? << 6) | sextet(c)?;
                if n & 0x3 != 0 {
                    return Err(B64Error::NonCanonical);
                }
                out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
            }
            _ => return Err(B64Error::InvalidLength),
        }
        Ok(out)
    }

    #[test]
    fn an_invalid_byte_anywhere_is_invalid_byte() {
        let valid = encode(b"0123456789abcdefghijklmnopqrstuvwxyz");
        for len in (0..=valid.len()).filter(|len| len % 4 != 1) {
            let text = &valid.as_bytes()[..len];
            for at in 0..len {
                for bad in [b'=', b'+', b'/', b' ', b'\n', b'.', 0, 0x7f, 0x80, 0xff] {
                    let mut t = text.to_vec();
                    t[at] = bad;
                    assert_eq!(decode(&t), Err(B64Error::InvalidByte), "{len} {at} {bad:#x}");
                }
            }
        }
        // An invalid byte wins over a non-canonical last character, in whichever chunk it is.
        assert_eq!(decode(b"=AAAZm9"), Err(B64Error::InvalidByte));
        assert_eq!(decode(b"Zm9=Zm9"), Err(B64Error::InvalidByte));
        assert_eq!(decode(b"AAAAZ="), Err(B64Error::InvalidByte));
    }

    #[test]
    fn every_non_canonical_tail_is_refused() {
        for last in ENCODE {
            let two = [b'Z', *last];
            let three = [b'Z', b'm', *last];
            let sextet = DECODE[usize::from(*last)];
            let want2 =
                if sextet & 0xf == 0 { Ok(vec![(25 << 2) | (sextet >> 4)]) } else { Err(B64Error::NonCanonical) };
            assert_eq!(decode(&two), want2);
            assert_eq!(decode(&three).is_ok(), sextet & 0x3 == 0);
            for prefix in [&b""[..], b"AAAA", b"AAAAAAAA"] {
                assert_eq!(decode(&[prefix, &two[..]].concat()).is_ok(), sextet & 0xf == 0);
                assert_eq!(decode(&[prefix, &three[..]].concat()).is_ok(), sextet & 0x3 == 0);
            }
        }
    }

    #[test]
    fn lengths_4n_plus_1_are_refused_whatever_the_bytes() {
        for n in 0..6 {
            for fill in [b'A', b'=', 0xff] {
                assert_eq!(decode(&vec![fill; 4 * n + 1]), Err(B64Error::InvalidLength), "{n} {fill}");
            }
        }
    }

    #[test]
    fn decode_into_needs_room_and_writes_only_the_front() {
        let mut out = [0xaa; 8];
        assert_eq!(decode_into(b"Zm9vYmFy", &mut out).map(|d| d.to_vec()), Ok(b"foobar".to_vec()));
        assert_eq!(out[6..], [0xaa, 0xaa]);
        assert_eq!(decode_into(b"Zm9vYmFy", &mut [0; 5]), Err(B64Error::InvalidLength));
        assert_eq!(decode_into(b"Zm9vY", &mut out), Err(B64Error::InvalidLength));
        assert_eq!(decode_into(b"", &mut []).map(|d| d.len()), Ok(0));
    }

    #[test]
    fn agrees_with_the_reference_on_longer_strings() {
        // Long enough for the two-group loop, its hand-over to the one-group loop, and the tail; mostly valid
        // characters with the occasional bad one.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 0..120 {
            for _ in 0..50 {
                let text: Vec<u8> = (0..len)
                    .map(|_| match next() % 64 {
                        0 => b"=+/ .\x00\xff"[(next() % 7) as usize],
                        _ => ENCODE[(next() % 64) as usize],
                    })
                    .collect();
                assert_eq!(decode(&text), reference(&text), "{text:?}");
                let mut room = vec![0; len];
                assert_eq!(decode_into(&text, &mut room).map(<[u8]>::to_vec), reference(&text), "{text:?}");
            }
        }
    }

    #[test]
    fn agrees_with_the_reference_on_every_short_string() {
        // Every string of up to three characters over the alphabet and its near misses, then each of those
        // after a full chunk.
        let mut chars: Vec<u8> = ENCODE.to_vec();
        chars.extend_from_slice(b"=+/ .\x00\x80\xff");
        let mut inputs: Vec<Vec<u8>> = vec![vec![]];
        for &a in &chars {
            inputs.push(vec![a]);
            for &b in &chars {
                inputs.push(vec![a, b]);
                inputs.extend(chars.iter().map(|&c| vec![a, b, c]));
            }
        }
        for s in &inputs {
            assert_eq!(decode(s), reference(s), "{s:?}");
            let after = [&b"Zm9v"[..], s].concat();
            assert_eq!(decode(&after), reference(&after), "{after:?}");
        }
    }
}
