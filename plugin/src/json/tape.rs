//! A strict JSON document read in one pass into a flat tape of tokens with byte spans, for bodies where
//! building a [`serde_json::Value`] of everything costs far more than reading it: an MCP `tools/call`
//! (policy needs its method, name and a few arguments) and list responses (the filter needs each entry's name
//! and span). Measured in the .wasm: serde_json building a `Value` of a 1.8 KB call took about 80
//! instructions a byte, most of the MCP decision; this reader takes about 19 a byte on that call (about
//! 35,500 instructions; checking UTF-8 inside strings, the only place a byte from 0x80 may stand, rather than
//! over the whole text first saved 4,700 of them).
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
        if bytes.len() > u32::MAX as usize {
            return Err(JsonError::Syntax);
        }
        let tokens = reader::read(bytes, max_depth)?;
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the reader accepted `bytes`, so they are UTF-8: it refuses a byte from 0x80 anywhere but
        // inside a string, and inside one checks each such byte's sequence as `str::from_utf8` does (no
        // overlong form, no surrogate, nothing above U+10FFFF; tests compare the two on every one- and two-byte
        // sequence, three- and four-byte ones around each boundary, and arbitrary bytes). Checking the whole
        // text again first was a tenth of reading it.
        let text = unsafe { std::str::from_utf8_unchecked(bytes) };
        Ok(Tape { text, tokens })
    }

    /// The document's value.
    pub fn root(&self) -> Node<'_, 'a> {
        Node { tape: self, at: 0 }
    }

    /// The contents of the string token `t`, escapes decoded; `None` for other kinds.
    fn string_of(&self, t: Token) -> Option<Cow<'a, str>> {
        if t.kind != Kind::String {
            return None;
        }
        // Inside the quotes (the span's first and last bytes).
        let inner = self.text.get(t.start as usize + 1..(t.end as usize).checked_sub(1)?)?;
        if !t.escaped {
            return Some(Cow::Borrowed(inner));
        }
        let raw = self.text.get(t.start as usize..t.end as usize)?;
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    }
}

impl Drop for Tape<'_> {
    fn drop(&mut self) {
        reader::recycle(std::mem::take(&mut self.tokens));
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
        self.tape.string_of(self.token())
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
        let tokens = &self.tape.tokens;
        let name = *tokens.get(self.at)?;
        let value = Node { tape: self.tape, at: self.at + 1 };
        self.at = tokens.get(value.at)?.next as usize;
        Some((self.tape.string_of(name)?, value))
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

mod reader;

#[cfg(test)]
mod tests;
