//! The reader behind [`super::Tape::parse`]: one loop over the bytes with an explicit stack of open containers
//! (no recursion: depth costs heap, not stack). The position and the innermost container are locals of the
//! loop rather than fields behind `&mut self`; the rarer steps (closing a container, the slow duplicate
//! check) go through [`Reader`].

use super::{Kind, Token};
use crate::json::JsonError;
use rustc_hash::FxHashSet;
use std::cell::Cell;

/// Member names of objects up to this size are compared pairwise; larger objects keep a set.
const PAIRWISE_NAMES: usize = 16;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = ONES * 0x80;

/// A member name, for the duplicate check: its span without quotes, and whether it has an escape.
#[derive(Clone, Copy)]
struct Name {
    start: u32,
    end: u32,
    escaped: bool,
}

/// What the innermost open container is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// No container: the document's top level.
    Top,
    Array,
    Object,
}

/// An open container (or the top level).
#[derive(Clone, Copy)]
struct Frame {
    level: Level,
    /// Its token.
    token: u32,
    /// Where its names start in the names stack.
    names: u32,
    /// One bit per hash of the names so far (a one-word Bloom filter): a name whose bit is clear is new, and
    /// needs no comparison with the others. Only for names without escapes.
    hashes: u64,
    /// A name so far has an escape: its bytes are not its name, so every name is compared.
    escapes: bool,
    /// It has more than [`PAIRWISE_NAMES`] names: they are in the set on top of the set stack instead.
    big: bool,
}

const TOP: Frame = Frame { level: Level::Top, token: 0, names: 0, hashes: 0, escapes: false, big: false };

/// A string read: where it ends (after its closing quote), whether it has an escape, and its first eight
/// bytes (fewer for a shorter string, the rest zero) for the name hash.
struct Scanned {
    end: usize,
    escaped: bool,
    head: u64,
}

/// The state besides the position and the innermost frame: what the rarer steps (opening and closing a
/// container, recording a name) need.
struct Reader<'b> {
    text: &'b [u8],
    tokens: Vec<Token>,
    /// Member names of the objects being read, outermost first: one stack for the whole document.
    names: Vec<Name>,
    /// The enclosing frames of the innermost one, outermost (the top level) first.
    stack: Vec<Frame>,
    /// The name sets of big objects being read, outermost first.
    sets: Vec<FxHashSet<String>>,
}

/// The buffers of the last read, kept for the next (a VM reads one body at a time): allocating them was a
/// twentieth of the decision on a `tools/call`.
#[derive(Default)]
struct Spare {
    tokens: Vec<Token>,
    names: Vec<Name>,
    stack: Vec<Frame>,
}

/// A buffer that grew past this many elements (a large list response) is let go rather than kept.
const KEPT_CAPACITY: usize = 4096;

thread_local! {
    static SPARE: Cell<Spare> = Cell::new(Spare::default());
}

/// Keeps `tokens` (of a tape that is done with them) for the next read.
pub(super) fn recycle(tokens: Vec<Token>) {
    SPARE.with(|spare| {
        let mut kept = spare.take();
        kept.tokens = emptied(tokens);
        spare.set(kept);
    });
}

/// `buffer` emptied to be kept, or a new one in place of one that grew too large to keep.
fn emptied<T>(mut buffer: Vec<T>) -> Vec<T> {
    if buffer.capacity() > KEPT_CAPACITY {
        return Vec::new();
    }
    buffer.clear();
    buffer
}

/// Reads `text` as one JSON value into its tokens; containers may nest `max_depth` deep.
pub(super) fn read(bytes: &[u8], max_depth: usize) -> Result<Vec<Token>, JsonError> {
    let spare = SPARE.with(Cell::take);
    let mut r = Reader { text: bytes, tokens: spare.tokens, names: spare.names, stack: spare.stack, sets: Vec::new() };
    // Sized for typical documents (a token per 6 bytes or so, a few dozen names and levels open): growing
    // these was a tenth of a call's reading.
    r.tokens.reserve(bytes.len() / 6 + 4);
    r.names.reserve(32);
    r.stack.reserve(16);
    let read = read_into(&mut r, max_depth);
    let Reader { tokens, names, stack, .. } = r;
    let (tokens, kept) = match read {
        // The tokens are the tape's until it is dropped.
        Ok(()) => (Ok(tokens), Vec::new()),
        Err(e) => (Err(e), emptied(tokens)),
    };
    SPARE.with(|spare| spare.set(Spare { tokens: kept, names: emptied(names), stack: emptied(stack) }));
    tokens
}

/// The reading itself, into `r`.
fn read_into(r: &mut Reader<'_>, max_depth: usize) -> Result<(), JsonError> {
    let bytes = r.text;
    let mut cur = TOP;
    let mut pos = skip_ws(bytes, 0);
    // Each turn reads one value at `pos` (after whitespace), then the separators and closing brackets after
    // it, up to the start of the next value.
    'value: loop {
        let start = pos;
        match bytes.get(pos).copied().ok_or(JsonError::Syntax)? {
            b'"' => {
                let s = string(bytes, pos + 1)?;
                pos = s.end;
                push(&mut r.tokens, Kind::String, start, pos, s.escaped);
            }
            b'0'..=b'9' | b'-' => {
                pos = number(bytes, pos)?;
                push(&mut r.tokens, Kind::Number, start, pos, false);
            }
            open @ (b'{' | b'[') => {
                if r.stack.len() >= max_depth {
                    return Err(JsonError::TooDeep);
                }
                let (kind, level, close) =
                    if open == b'{' { (Kind::Object, Level::Object, b'}') } else { (Kind::Array, Level::Array, b']') };
                r.stack.push(cur);
                cur = Frame { level, token: r.tokens.len() as u32, names: r.names.len() as u32, ..TOP };
                // Its span's end and `next` are set when it closes.
                push(&mut r.tokens, kind, pos, pos, false);
                pos = skip_ws(bytes, pos + 1);
                if bytes.get(pos) == Some(&close) {
                    pos += 1;
                    r.close(&mut cur, pos);
                } else {
                    if level == Level::Object {
                        pos = r.member_name(&mut cur, pos)?;
                    }
                    continue 'value;
                }
            }
            b't' => pos = literal(&mut r.tokens, bytes, pos, b"true", Kind::Bool)?,
            b'f' => pos = literal(&mut r.tokens, bytes, pos, b"false", Kind::Bool)?,
            b'n' => pos = literal(&mut r.tokens, bytes, pos, b"null", Kind::Null)?,
            _ => return Err(JsonError::Syntax),
        }
        // After a value: a separator leads to the next value; a closing bracket ends its container, after
        // which the same holds one level up.
        loop {
            pos = skip_ws(bytes, pos);
            match (bytes.get(pos).copied(), cur.level) {
                (Some(b','), Level::Object) => {
                    pos = r.member_name(&mut cur, skip_ws(bytes, pos + 1))?;
                    continue 'value;
                }
                (Some(b','), Level::Array) => {
                    pos = skip_ws(bytes, pos + 1);
                    continue 'value;
                }
                (Some(b'}'), Level::Object) | (Some(b']'), Level::Array) => {
                    pos += 1;
                    r.close(&mut cur, pos);
                }
                (None, Level::Top) => return Ok(()),
                _ => return Err(JsonError::Syntax),
            }
        }
    }
}

/// Appends a token whose `next` is the one after it (containers set theirs when they close).
#[inline(always)]
fn push(tokens: &mut Vec<Token>, kind: Kind, start: usize, end: usize, escaped: bool) {
    let next = tokens.len() as u32 + 1;
    tokens.push(Token { kind, start: start as u32, end: end as u32, next, escaped });
}

/// `true`, `false` or `null` at `pos`: the position after it.
#[inline(always)]
fn literal(tokens: &mut Vec<Token>, bytes: &[u8], pos: usize, word: &[u8], kind: Kind) -> Result<usize, JsonError> {
    let end = pos + word.len();
    if bytes.get(pos..end) != Some(word) {
        return Err(JsonError::Syntax);
    }
    push(tokens, kind, pos, end, false);
    Ok(end)
}

/// The position of the first byte at or after `pos` that is not whitespace (the length at the end). Compact
/// documents have none between tokens: one comparison answers for them.
#[inline(always)]
fn skip_ws(bytes: &[u8], pos: usize) -> usize {
    match bytes.get(pos) {
        Some(&b) if b > b' ' => pos,
        _ => skip_ws_run(bytes, pos),
    }
}

fn skip_ws_run(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

impl Reader<'_> {
    /// Closes the innermost container, whose closing bracket ends before `end`: the enclosing frame becomes
    /// the innermost.
    fn close(&mut self, cur: &mut Frame, end: usize) {
        let next = self.tokens.len() as u32;
        if let Some(t) = self.tokens.get_mut(cur.token as usize) {
            t.end = end as u32;
            t.next = next;
        }
        self.names.truncate(cur.names as usize);
        if cur.big {
            self.sets.pop();
        }
        *cur = self.stack.pop().unwrap_or(TOP);
    }

    /// A member name at `pos` (after whitespace), recorded and checked against the object's other names, and
    /// its colon: the position of the member's value (after whitespace). Checked as each name arrives, as
    /// serde_json reads, so a repeat is reported before an error in its value.
    #[inline(always)]
    fn member_name(&mut self, cur: &mut Frame, pos: usize) -> Result<usize, JsonError> {
        let bytes = self.text;
        if bytes.get(pos) != Some(&b'"') {
            return Err(JsonError::Syntax);
        }
        let s = string(bytes, pos + 1)?;
        push(&mut self.tokens, Kind::String, pos, s.end, s.escaped);
        let name = Name { start: pos as u32 + 1, end: s.end as u32 - 1, escaped: s.escaped };
        // The common case: a name without escapes whose hash bit is new, in an object of few names.
        let bit = 1u64 << name_hash(s.head, name.end - name.start);
        let surely_new = !name.escaped && !cur.escapes && cur.hashes & bit == 0;
        cur.hashes |= bit;
        cur.escapes |= name.escaped;
        if surely_new && !cur.big && self.names.len().saturating_sub(cur.names as usize) < PAIRWISE_NAMES {
            self.names.push(name);
        } else {
            self.insert_name(cur, name)?;
        }
        // Compact documents put the colon right after the name and the value right after the colon.
        let colon = skip_ws(bytes, s.end);
        if bytes.get(colon) != Some(&b':') {
            return Err(JsonError::Syntax);
        }
        Ok(skip_ws(bytes, colon + 1))
    }

    /// Records a member name of the innermost object the slow way: compared with every name so far, or
    /// looked up in the object's set; a repeat (compared decoded: `"a"` and `"\u0061"` are one name) is
    /// refused.
    #[inline(never)]
    fn insert_name(&mut self, cur: &mut Frame, name: Name) -> Result<(), JsonError> {
        let text = self.text;
        if cur.big {
            let set = self.sets.last_mut().ok_or(JsonError::Syntax)?;
            return if set.insert(decode_name(text, name).into_owned()) {
                Ok(())
            } else {
                Err(JsonError::DuplicateMember)
            };
        }
        let seen = self.names.get(cur.names as usize..).unwrap_or_default();
        if seen.iter().any(|&other| same_name(text, other, name)) {
            return Err(JsonError::DuplicateMember);
        }
        if seen.len() >= PAIRWISE_NAMES {
            let mut set: FxHashSet<String> = seen.iter().map(|&n| decode_name(text, n).into_owned()).collect();
            set.insert(decode_name(text, name).into_owned());
            self.sets.push(set);
            self.names.truncate(cur.names as usize);
            cur.big = true;
        } else {
            self.names.push(name);
        }
        Ok(())
    }
}

/// A hash of a name in 0..64 from its length and first eight bytes, multiplied and folded. Names of one
/// object differ in one or the other almost always.
#[inline(always)]
fn name_hash(head: u64, len: u32) -> u32 {
    ((head ^ u64::from(len).rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as u32
}

/// Whether two member names are the same: by their bytes when neither has an escape (most names), decoded
/// otherwise.
fn same_name(text: &[u8], a: Name, b: Name) -> bool {
    if !a.escaped && !b.escaped {
        return text.get(a.start as usize..a.end as usize) == text.get(b.start as usize..b.end as usize);
    }
    decode_name(text, a) == decode_name(text, b)
}

/// A member name decoded.
fn decode_name(text: &[u8], name: Name) -> std::borrow::Cow<'_, str> {
    // The reader has checked the name's bytes; the rare slow path checks them again rather than trusting that.
    let inner = text.get(name.start as usize..name.end as usize).unwrap_or_default();
    if !name.escaped {
        return std::borrow::Cow::Borrowed(std::str::from_utf8(inner).unwrap_or_default());
    }
    let quoted = text.get(name.start as usize - 1..name.end as usize + 1).unwrap_or_default();
    serde_json::from_slice::<String>(quoted).map(std::borrow::Cow::Owned).unwrap_or_default()
}

/// The bytes of `x` (a little-endian load) that end a run of ordinary (ASCII) string bytes: `"`, `\`,
/// controls below 0x20 and bytes from 0x80 (the start of a UTF-8 sequence, checked on its own), flagged by
/// their high bit. The classic zero-byte test on the word XORed with each stop byte, a borrow test for bytes
/// below 0x20 and the high bits themselves; only the lowest flag is exact (a borrow may flag a byte above a
/// real stop), which is the one used.
#[inline(always)]
fn stops(x: u64) -> u64 {
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | x.wrapping_sub(ONES * 0x20)
        | x)
        & HIGHS
}

/// A string whose contents start at `pos` (after its `"`). Control characters are refused, escapes checked (a
/// `\u` high surrogate must be followed by a `\u` low one, and a low one never stands alone), and bytes from
/// 0x80 checked as UTF-8 sequences: the only place a document may have them.
#[inline(always)]
fn string(bytes: &[u8], pos: usize) -> Result<Scanned, JsonError> {
    let first = pos;
    let mut pos = pos;
    // The first word, for the name hash and for the many strings that end within it.
    let head = match bytes.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
        Some(word) => {
            let x = u64::from_le_bytes(*word);
            let hit = stops(x);
            if hit != 0 {
                let at = hit.trailing_zeros() / 8;
                if bytes.get(pos + at as usize) == Some(&b'"') {
                    // Bytes past the closing quote masked off (`at` is below 8).
                    let head = x & ((1u64 << (8 * at)) - 1);
                    return Ok(Scanned { end: pos + at as usize + 1, escaped: false, head });
                }
                x
            } else {
                pos += 8;
                x
            }
        }
        // Near the end of the text: the same value, byte by byte.
        None => bytes
            .get(pos..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b != b'"')
            .enumerate()
            .fold(0, |h, (i, &b)| h | u64::from(b) << (8 * i)),
    };
    let (end, escaped) = string_rest(bytes, pos)?;
    // A string longer than the word keeps the whole word; a shorter one (which ended after an escape, or
    // near the end of the text) only its bytes.
    let len = end - 1 - first;
    let head = if len < 8 { head & ((1u64 << (8 * len)) - 1) } else { head };
    Ok(Scanned { end, escaped, head })
}

/// The rest of a string from `pos`: the position after its closing quote, and whether it has escapes.
/// Inlined: a third of a call's strings are longer than a word, and the call cost a fifth of their reading.
#[inline(always)]
fn string_rest(bytes: &[u8], mut pos: usize) -> Result<(usize, bool), JsonError> {
    let mut escaped = false;
    loop {
        // Runs of ordinary bytes eight at a time: strings are most of a document's bytes.
        while let Some(word) = bytes.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
            let hit = stops(u64::from_le_bytes(*word));
            if hit != 0 {
                pos += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            pos += 8;
        }
        // Fewer than eight bytes left, or a stop byte at or after `pos`.
        while let Some(&b) = bytes.get(pos) {
            if b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b) {
                break;
            }
            pos += 1;
        }
        match bytes.get(pos).copied().ok_or(JsonError::Syntax)? {
            b'"' => return Ok((pos + 1, escaped)),
            0x80.. => pos += utf8_sequence(bytes, pos).ok_or(JsonError::Syntax)?,
            b'\\' => {
                escaped = true;
                pos += 1;
                match bytes.get(pos).copied().ok_or(JsonError::Syntax)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => pos += 1,
                    b'u' => {
                        let unit = hex4(bytes, pos)?;
                        pos += 5;
                        if (0xDC00..0xE000).contains(&unit) {
                            return Err(JsonError::Syntax);
                        }
                        if (0xD800..0xDC00).contains(&unit) {
                            if bytes.get(pos) != Some(&b'\\') {
                                return Err(JsonError::Syntax);
                            }
                            let low = hex4(bytes, pos + 1)?;
                            pos += 6;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err(JsonError::Syntax);
                            }
                        }
                    }
                    _ => return Err(JsonError::Syntax),
                }
            }
            _ => return Err(JsonError::Syntax),
        }
    }
}

/// The length of the well-formed UTF-8 sequence at `pos` (whose first byte is from 0x80), per the Unicode
/// Standard's table 3-7: no overlong form, no surrogate, nothing above U+10FFFF; `None` when it is not one.
#[inline(never)]
fn utf8_sequence(bytes: &[u8], pos: usize) -> Option<usize> {
    let at = |i: usize| bytes.get(pos + i).copied().unwrap_or(0);
    let tail = |i: usize| at(i) & 0xC0 == 0x80;
    let (len, second) = match at(0) {
        0xC2..=0xDF => (2, 0x80..=0xBF),
        0xE0 => (3, 0xA0..=0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80..=0xBF),
        0xED => (3, 0x80..=0x9F),
        0xF0 => (4, 0x90..=0xBF),
        0xF1..=0xF3 => (4, 0x80..=0xBF),
        0xF4 => (4, 0x80..=0x8F),
        _ => return None,
    };
    (second.contains(&at(1)) && (2..len).all(tail)).then_some(len)
}

/// `u` and four hex digits at `pos` (of the `u`): their value.
fn hex4(bytes: &[u8], pos: usize) -> Result<u32, JsonError> {
    let Some([b'u', digits @ ..]) = bytes.get(pos..pos + 5) else { return Err(JsonError::Syntax) };
    let mut unit = 0u32;
    for &d in digits {
        unit = unit * 16 + u32::from(crate::percent::hex_digit(d).ok_or(JsonError::Syntax)?);
    }
    Ok(unit)
}

/// The position of the first byte at or after `at` that is not a digit.
#[inline(always)]
fn digits(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A number at `pos` (RFC 8259 grammar): the position after it. One that does not fit an `f64` is refused, as
/// serde_json refuses it.
#[inline(always)]
fn number(bytes: &[u8], pos: usize) -> Result<usize, JsonError> {
    let start = pos;
    let mut pos = if bytes.get(pos) == Some(&b'-') { pos + 1 } else { pos };
    pos = match bytes.get(pos) {
        Some(b'0') => pos + 1,
        Some(b'1'..=b'9') => digits(bytes, pos + 1),
        _ => return Err(JsonError::Syntax),
    };
    // serde_json reads what is not a 64-bit integer as an f64 and refuses it when that is infinite (`1e400`).
    // Without an exponent, a number whose integer part (sign included) has at most 300 characters is below
    // 1e300: finite, so only the others are converted.
    let mut convert = pos - start > 300;
    // Most numbers are integers: one look at the byte after the digits for a fraction or an exponent.
    if let Some(b'.' | b'e' | b'E') = bytes.get(pos) {
        if bytes.get(pos) == Some(&b'.') {
            if !matches!(bytes.get(pos + 1), Some(b'0'..=b'9')) {
                return Err(JsonError::Syntax);
            }
            pos = digits(bytes, pos + 1);
        }
        if let Some(b'e' | b'E') = bytes.get(pos) {
            pos += 1;
            if let Some(b'+' | b'-') = bytes.get(pos) {
                pos += 1;
            }
            if !matches!(bytes.get(pos), Some(b'0'..=b'9')) {
                return Err(JsonError::Syntax);
            }
            pos = digits(bytes, pos);
            convert = true;
        }
    }
    let finite = || {
        let digits = bytes.get(start..pos).and_then(|d| std::str::from_utf8(d).ok()).unwrap_or_default();
        digits.parse::<f64>().is_ok_and(f64::is_finite)
    };
    if convert && !finite() {
        return Err(JsonError::Syntax);
    }
    Ok(pos)
}
