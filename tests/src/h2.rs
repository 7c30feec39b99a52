//! A minimal HTTP/2 client (cleartext, prior knowledge) for attack tests: it sends exactly the header block it
//! is given, pseudo-headers included, with no validation or normalisation, which is what a test of
//! `" KP"` or `:method get` over HTTP/2 needs and what full clients refuse to send.
//!
//! One request per connection. Every field goes out as an HPACK literal never indexed, without Huffman
//! coding. Of the response it reads the `:status` (from the static table or a literal, Huffman-coded
//! digits included) and the body; other response headers are not decoded.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A response over HTTP/2.
#[derive(Debug, Clone)]
pub struct H2Response {
    /// The `:status`.
    pub status: u16,
    /// The body (DATA frames of the stream).
    pub body: Vec<u8>,
}

impl H2Response {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends one request to 127.0.0.1:`port` over HTTP/2 with exactly these fields, in this order (pseudo-headers
/// first, as the caller gives them), and `body` if not empty.
pub fn request(port: u16, fields: &[(&str, &str)], body: &[u8]) -> Result<H2Response> {
    let mut conn =
        TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut block = Vec::new();
    for (name, value) in fields {
        // Literal header field never indexed, new name (RFC 7541 §6.2.3).
        block.push(0x10);
        string(&mut block, name.as_bytes());
        string(&mut block, value.as_bytes());
    }
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let headers_flags = if body.is_empty() { END_HEADERS | END_STREAM } else { END_HEADERS };
    frame(&mut out, HEADERS, headers_flags, 1, &block);
    if !body.is_empty() {
        frame(&mut out, DATA, END_STREAM, 1, body);
    }
    conn.write_all(&out)?;

    let mut status = None;
    let mut response_body = Vec::new();
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).context("the connection ended before the response did")?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload)?;
        match (kind, stream) {
            (SETTINGS, 0) if flags & ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                conn.write_all(&ack)?;
            }
            (PING, 0) if flags & ACK == 0 => {
                let mut pong = Vec::new();
                frame(&mut pong, PING, ACK, 0, &payload);
                conn.write_all(&pong)?;
            }
            (GOAWAY, 0) => bail!("GOAWAY before the response ended (error code {:?})", payload.get(4..8)),
            (RST_STREAM, 1) => bail!("the stream was reset (error code {payload:?})"),
            (HEADERS, 1) => {
                if status.is_none() {
                    status = Some(decode_status(unpadded(&payload, flags, true)?).context("no :status")?);
                }
                if flags & END_STREAM != 0 {
                    break;
                }
            }
            (DATA, 1) => {
                response_body.extend_from_slice(unpadded(&payload, flags, false)?);
                if flags & END_STREAM != 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    let _ = conn.shutdown(Shutdown::Both);
    Ok(H2Response { status: status.context("no HEADERS")?, body: response_body })
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal without Huffman coding.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, 7, 0, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, n: u32, flags: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn unpadded(payload: &[u8], flags: u8, headers: bool) -> Result<&[u8]> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*p.first().context("empty padded frame")?);
        p = &p[1..];
    }
    if headers && flags & PRIORITY != 0 {
        p = p.get(5..).context("short priority")?;
    }
    p.get(..p.len().checked_sub(pad).context("padding longer than the frame")?).context("bad padding")
}

/// `:status` from the first field of a response header block: indexed from the static table, or a literal
/// with the static `:status` name (entries 8 to 14), plain or Huffman-coded.
fn decode_status(block: &[u8]) -> Option<u16> {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return STATIC.get(usize::from(first & 0x7f).checked_sub(8)?).copied();
    }
    // Literal with incremental indexing (6-bit index) or without / never indexed (4-bit index).
    let index = if first & 0x40 != 0 { first & 0x3f } else { first & 0x0f };
    if !(8..=14).contains(&index) {
        return None;
    }
    let len_byte = *block.get(1)?;
    let len = usize::from(len_byte & 0x7f);
    let value = block.get(2..2 + len)?;
    let text = if len_byte & 0x80 != 0 { huffman_digits(value)? } else { String::from_utf8(value.to_vec()).ok()? };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of decimal digits (RFC 7541 Appendix B: `0`-`2` are 5 bits, `00000` to
/// `00010`; `3`-`9` are 6 bits, `011001` to `011111`); the padding is the most significant bits of EOS, all
/// ones.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let mut out = String::new();
    let mut at = 0;
    while at < bits.len() {
        let rest = &bits[at..];
        if rest.len() < 8 && rest.iter().all(|&b| b == 1) {
            break;
        }
        let read = |n: usize| rest.get(..n).map(|b| b.iter().fold(0u8, |acc, &bit| acc << 1 | bit));
        match read(5)? {
            code @ 0..=2 => {
                out.push(char::from(b'0' + code));
                at += 5;
            }
            _ => match read(6)? {
                code @ 0b011001..=0b011111 => {
                    out.push(char::from(b'3' + (code - 0b011001)));
                    at += 6;
                }
                _ => return None,
            },
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_in_every_encoding() {
        assert_eq!(decode_status(&[0x88]), Some(200));
        assert_eq!(decode_status(&[0x8c]), Some(400));
        assert_eq!(decode_status(&[0x48, 0x03, b'4', b'0', b'3']), Some(403));
        assert_eq!(decode_status(&[0x08, 0x03, b'4', b'0', b'1']), Some(401));
        // "403" Huffman-coded: 011010 00000 011001 + 111 padding.
        assert_eq!(decode_status(&[0x48, 0x83, 0b0110_1000, 0b0000_1100, 0b1111_1111]), Some(403));
        assert_eq!(decode_status(&[0x48, 0x82, 0b0110_1000, 0b0000_1111]), None, "\"40\" then a partial code");
    }

    #[test]
    fn integers_with_prefixes() {
        let mut out = Vec::new();
        integer(&mut out, 7, 0, 10);
        integer(&mut out, 5, 0, 1337);
        assert_eq!(out, [10, 31, 154, 10]);
    }
}
