//! The proxy-wasm header map serialisation, read in place (and written, for local replies).
//!
//! `proxy_get_header_map_pairs` hands over one buffer: a little-endian `u32` count, then a `u32` name length
//! and a `u32` value length per pair, then each name and value followed by a NUL. The SDK copies every name
//! and value into its own `String`/`Vec` (and traps on a name that is not UTF-8); here the pairs borrow from
//! the buffer, which is the cheapest way to read a request on the hot path.

use crate::request::Header;

/// Why a header map buffer cannot be read; the request is refused, never decided on half its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The buffer ends before the lengths it announces, or a name or value lacks its NUL terminator.
    Truncated,
    /// A header name that is not UTF-8 (Envoy's codecs only pass tokens; anything else is not a header a
    /// rule or the identity stripping could be reasoned about).
    NameNotText,
}

/// Serialises header pairs in the same format, as the plugin hands them to the host (local replies).
pub fn serialize<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&(n.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// The pairs of a serialised header map, borrowing from `buf`. An empty buffer is an empty map.
pub fn parse(buf: &[u8]) -> Result<Vec<Header<'_>>, MapError> {
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, MapError> {
        let bytes = buf.get(at..at + 4).ok_or(MapError::Truncated)?;
        let mut le = [0u8; 4];
        le.copy_from_slice(bytes);
        usize::try_from(u32::from_le_bytes(le)).map_err(|_| MapError::Truncated)
    };
    let count = word(0)?;
    // Each pair takes at least 8 bytes of lengths and 2 NULs: a count the buffer cannot hold is refused before
    // anything is allocated for it.
    if count > buf.len() / 10 {
        return Err(MapError::Truncated);
    }
    let mut pairs = Vec::with_capacity(count);
    let mut data = 4 + 8 * count;
    for i in 0..count {
        let name_len = word(4 + 8 * i)?;
        let value_len = word(8 + 8 * i)?;
        let name = take(buf, &mut data, name_len)?;
        let value = take(buf, &mut data, value_len)?;
        let name = std::str::from_utf8(name).map_err(|_| MapError::NameNotText)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// `len` bytes at `*at` followed by a NUL; advances past the NUL.
fn take<'b>(buf: &'b [u8], at: &mut usize, len: usize) -> Result<&'b [u8], MapError> {
    let end = at.checked_add(len).ok_or(MapError::Truncated)?;
    let bytes = buf.get(*at..end).ok_or(MapError::Truncated)?;
    if buf.get(end) != Some(&0) {
        return Err(MapError::Truncated);
    }
    *at = end + 1;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`serialize`] with the test's byte-string literals coerced to slices.
    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        serialize(pairs)
    }

    #[test]
    fn reads_pairs_in_order_borrowing_the_buffer() {
        let buf = serialise(&[(b":method", b"GET"), (b"x-a", b""), (b"x-a", b"\xff obs-text"), (b"", b"v")]);
        let pairs = parse(&buf).unwrap();
        assert_eq!(
            pairs,
            vec![(":method", &b"GET"[..]), ("x-a", &b""[..]), ("x-a", &b"\xff obs-text"[..]), ("", &b"v"[..])]
        );
        assert!(buf.as_ptr_range().contains(&pairs[2].1.as_ptr()), "values are not copied");
        assert_eq!(parse(&[]).unwrap(), vec![]);
        assert_eq!(parse(&serialise(&[])).unwrap(), vec![]);
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let good = serialise(&[(b"a", b"bc"), (b"d", b"e")]);
        // Every proper prefix is truncated somewhere.
        for cut in 1..good.len() {
            assert_eq!(parse(&good[..cut]), Err(MapError::Truncated), "cut at {cut}");
        }
        // A missing NUL.
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(parse(&no_nul), Err(MapError::Truncated));
        // A count far beyond the buffer, and lengths that overflow.
        assert_eq!(parse(&u32::MAX.to_le_bytes()), Err(MapError::Truncated));
        let mut huge = serialise(&[(b"a", b"b")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge), Err(MapError::Truncated));
        assert_eq!(parse(&serialise(&[(b"\xc3\x28", b"v")])), Err(MapError::NameNotText));
    }

    #[test]
    fn never_panics_on_any_bytes() {
        let seed = serialise(&[(b":path", b"/a"), (b"authorization", b"Bearer x")]);
        for i in 0..seed.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut m = seed.clone();
                m[i] = b;
                let _ = parse(&m);
            }
        }
    }
}
