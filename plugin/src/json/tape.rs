//! A strict JSON document read in one pass into a flat tape of tokens with byte spans, for bodies where
//! building a [`serde_json::Value`] of everything costs far more than reading it: an MCP `tools/call`
//! (policy needs its method, name and a few arguments) and list responses (the filter needs each entry's name
//! and span). Measured in the .wasm: serde_json building a `Value` of a 1.8 KB call took about 80
//! instructions a byte, most of the MCP decision.
//!
//! It accepts and refuses exactly what [`super::parse_value`] does (serde_json's grammar, duplicate member
//! names at any depth, nesting deeper than the cap, lone surrogates, numbers out of `f64` range): the tests
//! compare both on arbitrary documents. Values the caller wants are then read from their spans by serde_json,
//! which can no longer fail on them.

use super::JsonError;
use serde_json::Value;
use std::borrow::Cow;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An object; its members follow as (name, value) token pairs.
    Object,
    /// An array; its items follow.
    Array,
    /// A string (a member name is one too).
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

/// One value (or member name) of the document.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    /// Byte span of its JSON text (a string's includes its quotes).
    start: u32,
    end: u32,
    /// Index of the token after this value: after a container's last descendant.
    next: u32,
    /// A string with a backslash escape.
    escaped: bool,
}

/// A document read strictly, with its tokens.
#[derive(Debug)]
pub struct Tape<'a> {
    text: &'a str,
    tokens: Vec<Token>,
}

/// One value of a [`Tape`].
#[derive(Debug, Clone, Copy)]
pub struct Node<'t, 'a> {
    tape: &'t Tape<'a>,
    at: usize,
}

impl<'a> Tape<'a> {
    /// Reads `bytes` as one JSON value, strictly; containers may nest `max_depth` deep (the top level is 1).
    pub fn parse(bytes: &'a [u8], max_depth: usize) -> Result<Tape<'a>, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Syntax)?;
        if text.len() > u32::MAX as usize {
            return Err(JsonError::Syntax);
        }
        let mut reader = Reader {
            text,
            bytes: text.as_bytes(),
            // Sized for typical documents (a token per 6 bytes or so, a few dozen names and levels open):
            // growing these was a tenth of a call's reading.
            tokens: Vec::with_capacity(text.len() / 6 + 4),
            names: Vec::with_capacity(64),
            open: Vec::with_capacity(16),
        };
        reader.document(max_depth)?;
        Ok(Tape { text, tokens: reader.tokens })
    }

    /// The document's value.
    pub fn root(&self) -> Node<'_, 'a> {
        Node { tape: self, at: 0 }
    }
}

impl<'t, 'a> Node<'t, 'a> {
    fn token(&self) -> Token {
        // A node is only made for an index the tape has.
        self.tape.tokens.get(self.at).copied().unwrap_or(Token {
            kind: Kind::Null,
            start: 0,
            end: 0,
            next: self.at as u32 + 1,
            escaped: false,
        })
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        self.token().kind
    }

    /// Its JSON text.
    pub fn raw(&self) -> &'a str {
        let t = self.token();
        self.tape.text.get(t.start as usize..t.end as usize).unwrap_or_default()
    }

    /// Its byte span in the document.
    pub fn span(&self) -> std::ops::Range<usize> {
        let t = self.token();
        t.start as usize..t.end as usize
    }

    /// A string's contents, escapes decoded; `None` for other kinds.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        let t = self.token();
        if t.kind != Kind::String {
            return None;
        }
        let raw = self.raw();
        let inner = raw.get(1..raw.len().checked_sub(1)?)?;
        if !t.escaped {
            return Some(Cow::Borrowed(inner));
        }
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    }

    /// The value, built (for the few values a caller needs). Strings and integers, what arguments policy
    /// compares mostly are, are built from their span directly.
    pub fn to_value(&self) -> Option<Value> {
        let t = self.token();
        match t.kind {
            Kind::String if !t.escaped => self.as_str().map(|s| Value::String(s.into_owned())),
            // serde_json reads `-0` as the float -0.0.
            Kind::Number if !self.raw().starts_with("-0") => {
                let raw = self.raw();
                raw.parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| raw.parse::<u64>().map(Value::from))
                    .ok()
                    .or_else(|| serde_json::from_str(raw).ok())
            }
            Kind::Bool => Some(Value::Bool(self.raw() == "true")),
            Kind::Null => Some(Value::Null),
            _ => serde_json::from_str(self.raw()).ok(),
        }
    }

    /// Whether this string token is `name`: compared by its bytes when it has no escape (no copy).
    fn is_name(&self, name: &str) -> bool {
        let t = self.token();
        if t.kind != Kind::String {
            return false;
        }
        if !t.escaped {
            let raw = self.raw().as_bytes();
            return raw.len() == name.len() + 2 && raw.get(1..raw.len() - 1) == Some(name.as_bytes());
        }
        self.as_str().is_some_and(|s| s == name)
    }

    /// An object's members in order (nothing for other kinds).
    pub fn members(&self) -> Members<'t, 'a> {
        let t = self.token();
        let (at, end) =
            if t.kind == Kind::Object { (self.at + 1, t.next as usize) } else { (self.at + 1, self.at + 1) };
        Members { tape: self.tape, at, end }
    }

    /// An array's items in order (nothing for other kinds).
    pub fn items(&self) -> Items<'t, 'a> {
        let t = self.token();
        let (at, end) = if t.kind == Kind::Array { (self.at + 1, t.next as usize) } else { (self.at + 1, self.at + 1) };
        Items { tape: self.tape, at, end }
    }

    /// The member `name` of an object.
    pub fn get(&self, name: &str) -> Option<Node<'t, 'a>> {
        let t = self.token();
        if t.kind != Kind::Object {
            return None;
        }
        let mut at = self.at + 1;
        while at < t.next as usize {
            let value = Node { tape: self.tape, at: at + 1 };
            if (Node { tape: self.tape, at }).is_name(name) {
                return Some(value);
            }
            at = value.token().next as usize;
        }
        None
    }
}

/// See [`Node::members`].
pub struct Members<'t, 'a> {
    tape: &'t Tape<'a>,
    at: usize,
    end: usize,
}

impl<'t, 'a> Iterator for Members<'t, 'a> {
    type Item = (Cow<'a, str>, Node<'t, 'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let name = Node { tape: self.tape, at: self.at };
        let value = Node { tape: self.tape, at: self.at + 1 };
        self.at = value.token().next as usize;
        Some((name.as_str()?, value))
    }
}

/// See [`Node::items`].
pub struct Items<'t, 'a> {
    tape: &'t Tape<'a>,
    at: usize,
    end: usize,
}

impl<'t, 'a> Iterator for Items<'t, 'a> {
    type Item = Node<'t, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let item = Node { tape: self.tape, at: self.at };
        self.at = item.token().next as usize;
        Some(item)
    }
}

/// The reader: one loop over the bytes with an explicit stack of open containers (no recursion: the position
/// stays in a register, and depth costs heap, not stack). Measured in the .wasm, the recursive descent it
/// replaced spent about 270 instructions on each array item and 450 on each object member; this reader
/// spends a small fraction of that.
struct Reader<'b> {
    text: &'b str,
    bytes: &'b [u8],
    tokens: Vec<Token>,
    /// Member names of the objects being read, outermost first: one stack for the whole document.
    names: Vec<Name>,
    /// The open containers, outermost first.
    open: Vec<Open>,
}

/// A member name, for the duplicate check: its span without quotes, and whether it has an escape.
#[derive(Clone, Copy)]
struct Name {
    start: u32,
    end: u32,
    escaped: bool,
}

/// An open container.
struct Open {
    /// Its token.
    token: usize,
    /// An object (else an array).
    object: bool,
    /// Where its names start in [`Reader::names`].
    names: usize,
    /// Its names decoded, once it has more than [`PAIRWISE_NAMES`].
    set: Option<rustc_hash::FxHashSet<String>>,
    /// One bit per hash of the names so far (a one-word Bloom filter): a name whose bit is clear is new, and
    /// needs no comparison with the others. Only for names without escapes.
    hashes: u64,
    /// A name so far has an escape: its bytes are not its name, so every name is compared.
    escapes: bool,
}

/// Member names of objects up to this size are compared pairwise; larger objects keep a set.
const PAIRWISE_NAMES: usize = 16;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = ONES * 0x80;

/// Whether a byte is JSON whitespace.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// The position of the first byte at or after `pos` that is not whitespace (the length at the end).
#[inline(always)]
fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = bytes.get(pos) {
        if !is_ws(b) {
            break;
        }
        pos += 1;
    }
    pos
}

impl<'b> Reader<'b> {
    fn document(&mut self, max_depth: usize) -> Result<(), JsonError> {
        let bytes = self.bytes;
        let mut pos = skip_ws(bytes, 0);
        // Each turn reads one value at `pos` (after whitespace), then the separators and closing brackets after
        // it, up to the start of the next value.
        loop {
            let start = pos;
            match bytes.get(pos).copied().ok_or(JsonError::Syntax)? {
                b'{' => {
                    self.open_container(Kind::Object, pos, max_depth)?;
                    pos = skip_ws(bytes, pos + 1);
                    if bytes.get(pos) == Some(&b'}') {
                        pos += 1;
                        self.close_container(pos);
                    } else {
                        pos = self.member_name(pos)?;
                        continue;
                    }
                }
                b'[' => {
                    self.open_container(Kind::Array, pos, max_depth)?;
                    pos = skip_ws(bytes, pos + 1);
                    if bytes.get(pos) == Some(&b']') {
                        pos += 1;
                        self.close_container(pos);
                    } else {
                        continue;
                    }
                }
                b'"' => {
                    let (end, escaped) = string(bytes, pos)?;
                    pos = end;
                    self.push(Kind::String, start, pos, escaped);
                }
                b't' => pos = self.literal(pos, b"true", Kind::Bool)?,
                b'f' => pos = self.literal(pos, b"false", Kind::Bool)?,
                b'n' => pos = self.literal(pos, b"null", Kind::Null)?,
                b'-' | b'0'..=b'9' => {
                    pos = number(self.text, bytes, pos)?;
                    self.push(Kind::Number, start, pos, false);
                }
                _ => return Err(JsonError::Syntax),
            }
            // After a value: a separator leads to the next value; a closing bracket ends its container, after
            // which the same holds one level up.
            loop {
                pos = skip_ws(bytes, pos);
                let Some(object) = self.open.last().map(|o| o.object) else {
                    return if pos == bytes.len() { Ok(()) } else { Err(JsonError::Syntax) };
                };
                match (bytes.get(pos).copied(), object) {
                    (Some(b','), true) => {
                        pos = self.member_name(skip_ws(bytes, pos + 1))?;
                        break;
                    }
                    (Some(b','), false) => {
                        pos = skip_ws(bytes, pos + 1);
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        pos += 1;
                        self.close_container(pos);
                    }
                    _ => return Err(JsonError::Syntax),
                }
            }
        }
    }

    #[inline(always)]
    fn push(&mut self, kind: Kind, start: usize, end: usize, escaped: bool) {
        let next = self.tokens.len() as u32 + 1;
        self.tokens.push(Token { kind, start: start as u32, end: end as u32, next, escaped });
    }

    fn literal(&mut self, pos: usize, word: &[u8], kind: Kind) -> Result<usize, JsonError> {
        let end = pos + word.len();
        if self.bytes.get(pos..end) != Some(word) {
            return Err(JsonError::Syntax);
        }
        self.push(kind, pos, end, false);
        Ok(end)
    }

    /// Opens a container whose bracket is at `pos`; its span and `next` are set when it closes.
    fn open_container(&mut self, kind: Kind, pos: usize, max_depth: usize) -> Result<(), JsonError> {
        if self.open.len() >= max_depth {
            return Err(JsonError::TooDeep);
        }
        let token = self.tokens.len();
        self.push(kind, pos, pos, false);
        self.open.push(Open {
            token,
            object: kind == Kind::Object,
            names: self.names.len(),
            set: None,
            hashes: 0,
            escapes: false,
        });
        Ok(())
    }

    /// Closes the innermost container, whose closing bracket ends before `end`.
    fn close_container(&mut self, end: usize) {
        let Some(open) = self.open.pop() else { return };
        let next = self.tokens.len() as u32;
        if let Some(t) = self.tokens.get_mut(open.token) {
            t.end = end as u32;
            t.next = next;
        }
        self.names.truncate(open.names);
    }

    /// A member name at `pos` (after whitespace), recorded and checked against the object's other names, and
    /// its colon: the position of the member's value (after whitespace). Checked as each name arrives, as
    /// serde_json reads, so a repeat is reported before an error in its value.
    fn member_name(&mut self, pos: usize) -> Result<usize, JsonError> {
        if self.bytes.get(pos) != Some(&b'"') {
            return Err(JsonError::Syntax);
        }
        let (end, escaped) = string(self.bytes, pos)?;
        self.push(Kind::String, pos, end, escaped);
        self.insert_name(Name { start: pos as u32 + 1, end: end as u32 - 1, escaped })?;
        let colon = skip_ws(self.bytes, end);
        if self.bytes.get(colon) != Some(&b':') {
            return Err(JsonError::Syntax);
        }
        Ok(skip_ws(self.bytes, colon + 1))
    }

    /// Records a member name of the innermost object; a repeat (compared decoded: `"a"` and `"\u0061"` are
    /// one name) is refused.
    fn insert_name(&mut self, name: Name) -> Result<(), JsonError> {
        let Some(open) = self.open.last_mut() else { return Err(JsonError::Syntax) };
        if let Some(set) = &mut open.set {
            let decoded = decode_name(self.text, name).into_owned();
            return if set.insert(decoded) { Ok(()) } else { Err(JsonError::DuplicateMember) };
        }
        let bit = 1u64 << name_hash(self.bytes, name);
        let surely_new = !name.escaped && !open.escapes && open.hashes & bit == 0;
        open.hashes |= bit;
        open.escapes |= name.escaped;
        let seen = self.names.get(open.names..).unwrap_or_default();
        if !surely_new && seen.iter().any(|&other| same_name(self.text, other, name)) {
            return Err(JsonError::DuplicateMember);
        }
        if seen.len() >= PAIRWISE_NAMES {
            let mut set: rustc_hash::FxHashSet<String> =
                seen.iter().map(|&n| decode_name(self.text, n).into_owned()).collect();
            set.insert(decode_name(self.text, name).into_owned());
            open.set = Some(set);
        } else {
            self.names.push(name);
        }
        Ok(())
    }
}

/// A hash of a name's bytes in 0..64: its length and first eight bytes, multiplied and folded. Names of one
/// object differ in one or the other almost always.
fn name_hash(bytes: &[u8], name: Name) -> u32 {
    let (start, len) = (name.start as usize, (name.end - name.start) as usize);
    let head = match bytes.get(start..start + 8).and_then(<[u8]>::first_chunk::<8>) {
        // Bytes past the name (its quote, and what follows) are masked off.
        Some(word) if len < 8 => u64::from_le_bytes(*word) & ((1u64 << (8 * len)) - 1),
        Some(word) => u64::from_le_bytes(*word),
        // Near the end of the text: the same value, byte by byte.
        None => bytes
            .get(start..start + len.min(8))
            .unwrap_or_default()
            .iter()
            .enumerate()
            .fold(0, |h, (i, &b)| h | u64::from(b) << (8 * i)),
    };
    ((head ^ (len as u64).rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as u32
}

/// Whether two member names are the same: by their bytes when neither has an escape (most names), decoded
/// otherwise.
fn same_name(text: &str, a: Name, b: Name) -> bool {
    if !a.escaped && !b.escaped {
        return a.end - a.start == b.end - b.start
            && text.as_bytes().get(a.start as usize..a.end as usize)
                == text.as_bytes().get(b.start as usize..b.end as usize);
    }
    decode_name(text, a) == decode_name(text, b)
}

/// A member name decoded.
fn decode_name(text: &str, name: Name) -> Cow<'_, str> {
    // The span is inside the quotes, which are ASCII: always on character boundaries.
    let inner = text.get(name.start as usize..name.end as usize).unwrap_or_default();
    if !name.escaped {
        return Cow::Borrowed(inner);
    }
    let quoted = text.get(name.start as usize - 1..name.end as usize + 1).unwrap_or_default();
    serde_json::from_str::<String>(quoted).map(Cow::Owned).unwrap_or_default()
}

/// A string whose `"` is at `pos`: the position after its closing quote, and whether it has escapes. Control
/// characters are refused, escapes checked (a `\u` high surrogate must be followed by a `\u` low one, and a
/// low one never stands alone). Bytes from 0x80 are not looked at: the text is valid UTF-8 already.
#[inline(always)]
fn string(bytes: &[u8], pos: usize) -> Result<(usize, bool), JsonError> {
    let mut pos = pos + 1;
    let mut escaped = false;
    loop {
        // Runs of ordinary bytes eight at a time: strings are most of a document's bytes. The classic
        // zero-byte test on the word XORed with each stop byte, and a borrow test for bytes below 0x20; the
        // lowest flag is exact on a little-endian load.
        let (words, _) = bytes.get(pos..).unwrap_or_default().as_chunks::<8>();
        let mut stop = None;
        for word in words {
            let x = u64::from_le_bytes(*word);
            let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
            let hit = ((quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (x.wrapping_sub(ONES * 0x20) & !x))
                & HIGHS;
            if hit != 0 {
                stop = Some(pos + (hit.trailing_zeros() / 8) as usize);
                break;
            }
            pos += 8;
        }
        if let Some(at) = stop {
            pos = at;
        } else {
            while let Some(&b) = bytes.get(pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                pos += 1;
            }
        }
        match bytes.get(pos).copied().ok_or(JsonError::Syntax)? {
            b'"' => return Ok((pos + 1, escaped)),
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

/// `u` and four hex digits at `pos` (of the `u`): their value.
fn hex4(bytes: &[u8], pos: usize) -> Result<u32, JsonError> {
    let Some([b'u', digits @ ..]) = bytes.get(pos..pos + 5) else { return Err(JsonError::Syntax) };
    let mut unit = 0u32;
    for &d in digits {
        unit = unit * 16 + u32::from(crate::percent::hex_digit(d).ok_or(JsonError::Syntax)?);
    }
    Ok(unit)
}

/// A number at `pos` (RFC 8259 grammar): the position after it. One that does not fit an `f64` is refused, as
/// serde_json refuses it.
#[inline(always)]
fn number(text: &str, bytes: &[u8], pos: usize) -> Result<usize, JsonError> {
    let digits = |mut at: usize| {
        while let Some(b'0'..=b'9') = bytes.get(at) {
            at += 1;
        }
        at
    };
    let start = pos;
    let mut pos = if bytes.get(pos) == Some(&b'-') { pos + 1 } else { pos };
    pos = match bytes.get(pos) {
        Some(b'0') => pos + 1,
        Some(b'1'..=b'9') => digits(pos + 1),
        _ => return Err(JsonError::Syntax),
    };
    let integer_digits = pos - start;
    if bytes.get(pos) == Some(&b'.') {
        if !matches!(bytes.get(pos + 1), Some(b'0'..=b'9')) {
            return Err(JsonError::Syntax);
        }
        pos = digits(pos + 1);
    }
    let mut exponent = false;
    if let Some(b'e' | b'E') = bytes.get(pos) {
        pos += 1;
        if let Some(b'+' | b'-') = bytes.get(pos) {
            pos += 1;
        }
        if !matches!(bytes.get(pos), Some(b'0'..=b'9')) {
            return Err(JsonError::Syntax);
        }
        pos = digits(pos);
        exponent = true;
    }
    // serde_json reads what is not a 64-bit integer as an f64 and refuses it when that is infinite (`1e400`).
    // Without an exponent, a number whose integer part (sign included) has at most 300 characters is below
    // 1e300: finite, so only the others are converted.
    if exponent || integer_digits > 300 {
        let text = text.get(start..pos).unwrap_or_default();
        if !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(JsonError::Syntax);
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests;
