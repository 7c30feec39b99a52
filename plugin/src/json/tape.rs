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
            pos: 0,
            tokens: Vec::with_capacity(text.len() / 8),
            names: Vec::new(),
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

    /// The value, built (for the few values a caller needs).
    pub fn to_value(&self) -> Option<Value> {
        serde_json::from_str(self.raw()).ok()
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
        self.members().find(|(n, _)| n == name).map(|(_, v)| v)
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

/// The reader: recursive descent over bytes, bounded by the depth cap (so by the stack it may use).
struct Reader<'b> {
    text: &'b str,
    bytes: &'b [u8],
    pos: usize,
    tokens: Vec<Token>,
    /// Member-name tokens of the objects being read, outermost first: one buffer for the whole document.
    names: Vec<usize>,
}

/// Member names of objects up to this size are compared pairwise; larger objects keep a set.
const PAIRWISE_NAMES: usize = 16;

/// The member names of one object so far, to refuse a repeat: token indices in the reader's shared stack
/// (from `base`), and a set once the object grows past [`PAIRWISE_NAMES`].
struct Names {
    base: usize,
    set: Option<rustc_hash::FxHashSet<String>>,
}

impl<'b> Reader<'b> {
    fn document(&mut self, max_depth: usize) -> Result<(), JsonError> {
        self.ws();
        self.value(1, max_depth)?;
        self.ws();
        if self.pos != self.bytes.len() {
            return Err(JsonError::Syntax);
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn push(&mut self, kind: Kind, start: usize, escaped: bool) -> usize {
        let index = self.tokens.len();
        let next = index as u32 + 1;
        self.tokens.push(Token { kind, start: start as u32, end: self.pos as u32, next, escaped });
        index
    }

    /// A value at container depth `depth` (the top level is 1 when it is a container).
    fn value(&mut self, depth: usize, max_depth: usize) -> Result<(), JsonError> {
        let start = self.pos;
        match self.peek().ok_or(JsonError::Syntax)? {
            b'{' => self.object(depth, max_depth),
            b'[' => self.array(depth, max_depth),
            b'"' => {
                let escaped = self.string()?;
                self.push(Kind::String, start, escaped);
                Ok(())
            }
            b't' => self.literal(b"true", Kind::Bool),
            b'f' => self.literal(b"false", Kind::Bool),
            b'n' => self.literal(b"null", Kind::Null),
            b'-' | b'0'..=b'9' => {
                self.number()?;
                self.push(Kind::Number, start, false);
                Ok(())
            }
            _ => Err(JsonError::Syntax),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<(), JsonError> {
        let start = self.pos;
        if self.bytes.get(start..start + word.len()) != Some(word) {
            return Err(JsonError::Syntax);
        }
        self.pos += word.len();
        self.push(kind, start, false);
        Ok(())
    }

    /// Opens a container token; its span and `next` are set when it closes.
    fn open(&mut self, kind: Kind, depth: usize, max_depth: usize) -> Result<usize, JsonError> {
        if depth > max_depth {
            return Err(JsonError::TooDeep);
        }
        let start = self.pos;
        self.pos += 1;
        Ok(self.push(kind, start, false))
    }

    fn close(&mut self, index: usize) {
        let (end, next) = (self.pos as u32, self.tokens.len() as u32);
        if let Some(t) = self.tokens.get_mut(index) {
            t.end = end;
            t.next = next;
        }
    }

    fn object(&mut self, depth: usize, max_depth: usize) -> Result<(), JsonError> {
        let index = self.open(Kind::Object, depth, max_depth)?;
        let mut names = Names { base: self.names.len(), set: None };
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.close(index);
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(JsonError::Syntax);
            }
            let start = self.pos;
            let escaped = self.string()?;
            let name = self.push(Kind::String, start, escaped);
            // Checked as each name arrives, as serde_json reads (so a repeat is reported before an error in
            // its value).
            self.insert_name(&mut names, name)?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(JsonError::Syntax);
            }
            self.pos += 1;
            self.ws();
            self.value(depth + 1, max_depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(JsonError::Syntax),
            }
        }
        self.close(index);
        self.names.truncate(names.base);
        Ok(())
    }

    /// Records a member name of the object `names` describes; a repeat (compared decoded: `"a"` and
    /// `"\u0061"` are one name) is refused.
    fn insert_name(&mut self, names: &mut Names, token: usize) -> Result<(), JsonError> {
        if let Some(set) = &mut names.set {
            return if set.insert(self.name(token).into_owned()) { Ok(()) } else { Err(JsonError::DuplicateMember) };
        }
        let seen = self.names.get(names.base..).unwrap_or_default();
        if seen.iter().any(|&t| self.same_name(t, token)) {
            return Err(JsonError::DuplicateMember);
        }
        if seen.len() >= PAIRWISE_NAMES {
            let mut set: rustc_hash::FxHashSet<String> = seen.iter().map(|&t| self.name(t).into_owned()).collect();
            set.insert(self.name(token).into_owned());
            names.set = Some(set);
        } else {
            self.names.push(token);
        }
        Ok(())
    }

    /// Whether two member-name tokens are the same name: by their bytes when neither has an escape (most
    /// names), decoded otherwise.
    fn same_name(&self, a: usize, b: usize) -> bool {
        let (Some(x), Some(y)) = (self.tokens.get(a), self.tokens.get(b)) else { return false };
        if !x.escaped && !y.escaped {
            return x.end - x.start == y.end - y.start
                && self.bytes.get(x.start as usize..x.end as usize)
                    == self.bytes.get(y.start as usize..y.end as usize);
        }
        self.name(a) == self.name(b)
    }

    fn array(&mut self, depth: usize, max_depth: usize) -> Result<(), JsonError> {
        let index = self.open(Kind::Array, depth, max_depth)?;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.close(index);
            return Ok(());
        }
        loop {
            self.ws();
            self.value(depth + 1, max_depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(JsonError::Syntax),
            }
        }
        self.close(index);
        Ok(())
    }

    /// The decoded name of the member-name token `index`.
    fn name(&self, index: usize) -> Cow<'b, str> {
        let Some(t) = self.tokens.get(index) else { return Cow::Borrowed("") };
        // Spans start and end at quotes, so always on character boundaries.
        let raw = self.text.get(t.start as usize..t.end as usize).unwrap_or_default();
        if !t.escaped {
            return Cow::Borrowed(raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default());
        }
        serde_json::from_str::<String>(raw).map(Cow::Owned).unwrap_or_default()
    }

    /// A string whose `"` is next; whether it has escapes. Control characters are refused, escapes checked
    /// (a `\u` high surrogate must be followed by a `\u` low one, and a low one never stands alone).
    fn string(&mut self) -> Result<bool, JsonError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            // Runs of ordinary bytes (the text is UTF-8 already), eight at a time: strings are most of a
            // document's bytes. The classic zero-byte test on the word XORed with each stop byte, and a borrow
            // test for bytes below 0x20; the lowest flag is exact on a little-endian load.
            const ONES: u64 = 0x0101_0101_0101_0101;
            const HIGHS: u64 = ONES * 0x80;
            while let Some(word) = self.bytes.get(self.pos..).and_then(<[u8]>::first_chunk::<8>) {
                let x = u64::from_le_bytes(*word);
                let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
                let hit = ((quote.wrapping_sub(ONES) & !quote)
                    | (backslash.wrapping_sub(ONES) & !backslash)
                    | (x.wrapping_sub(ONES * 0x20) & !x))
                    & HIGHS;
                if hit != 0 {
                    self.pos += (hit.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            match self.peek().ok_or(JsonError::Syntax)? {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek().ok_or(JsonError::Syntax)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let unit = self.hex4()?;
                            if (0xDC00..0xE000).contains(&unit) {
                                return Err(JsonError::Syntax);
                            }
                            if (0xD800..0xDC00).contains(&unit) {
                                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(JsonError::Syntax);
                                }
                                self.pos += 1;
                                let low = self.hex4()?;
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

    /// `u` and four hex digits at the position (of the `u`): their value.
    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.bytes.get(self.pos + 1..self.pos + 5).ok_or(JsonError::Syntax)?;
        let mut unit = 0u32;
        for &d in digits {
            unit = unit * 16 + u32::from(crate::percent::hex_digit(d).ok_or(JsonError::Syntax)?);
        }
        self.pos += 5;
        Ok(unit)
    }

    /// A number (RFC 8259 grammar); one that does not fit an `f64` is refused, as serde_json refuses it.
    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::Syntax),
        }
        let mut plain_integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::Syntax);
            }
            self.digits();
            plain_integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::Syntax);
            }
            self.digits();
            plain_integer = false;
        }
        // Integers of up to 18 digits always fit. serde_json reads anything else that is not a 64-bit integer as
        // an f64 and refuses it when that is infinite (`1e400`): so does this.
        if !plain_integer || self.pos - start > 18 {
            let text = self.text.get(start..self.pos).unwrap_or_default();
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(JsonError::Syntax);
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests;
