//! MCP list responses (`tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`) filtered per
//! caller: the entries the caller may not use are removed, so that a list never advertises what policy would
//! refuse (and, with `denial: unknown`, never tells a caller that a tool it cannot call exists).
//!
//! The message is read with the same strictness as a token (the rules of [`crate::json::parse_value`]:
//! duplicate member names, bad UTF-8 and deep nesting refused), because the client reads it too: two readers
//! that disagree on which of two `"tools"` members counts would let an upstream smuggle a hidden entry past
//! the filter. The reader ([`read`]) applies those rules in one serde_json pass without building a `Value`,
//! which for a 100-tool list would cost several times the parse.
//!
//! The rewrite is a splice of the original bytes, not a re-serialisation: this crate's serde_json has no
//! `preserve_order`, so a `Value` written back would sort every object's members, turn integers past 64 bits
//! into floats and drop the upstream's formatting. Cutting the removed entries out of the text keeps every
//! other byte as the upstream sent it (member order, `nextCursor`, `_meta`, unknown fields, numbers).

use crate::json::JsonError;
use std::fmt;
use std::ops::Range;

/// Deepest nesting accepted in a list response (the message object is depth 1). A tool's `inputSchema` sits at
/// depth 5 and JSON Schemas nest a few levels more; 64 leaves room for any real schema while staying well
/// under serde_json's own recursion limit (128).
pub const MAX_DEPTH: usize = 64;

/// The `cacheScope` value of a result that only the caller's authorization context may reuse.
///
/// MCP 2026-07-28, `schema/2026-07-28/schema.ts`, `interface CacheableResult` (SEP-2549, required on the
/// results of `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`, `resources/read`):
/// `cacheScope: "public" | "private"`, where `"private"` means "The response MAY be cached and reused only
/// within the same authorization context. Caches MUST NOT be shared across authorization contexts". A
/// filtered list is specific to the caller, so a shared cache serving it to another caller would be wrong in
/// both directions (entries hidden from one, or shown to another).
const CACHE_SCOPE: &str = "cacheScope";
const CACHE_SCOPE_PRIVATE: &str = "\"private\"";

mod read;

/// Which list a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `resources/templates/list`: `result.resourceTemplates[].uriTemplate`.
    ResourceTemplates,
}

impl ListKind {
    /// The list a JSON-RPC method asks for, if it is one of the four.
    pub fn of_method(method: &str) -> Option<ListKind> {
        Some(match method {
            "tools/list" => ListKind::Tools,
            "prompts/list" => ListKind::Prompts,
            "resources/list" => ListKind::Resources,
            "resources/templates/list" => ListKind::ResourceTemplates,
            _ => return None,
        })
    }

    /// The JSON-RPC method that asks for this list.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The member of `result` that holds the entries.
    pub fn array_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member of each entry that names it (what policy matches).
    pub fn entry_key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// What [`filter_response`] made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Send the message as it is.
    Unchanged,
    /// Send these bytes instead.
    Rewritten(Vec<u8>),
}

/// Why a list response cannot be filtered. Every one means the caller must not see the upstream's message:
/// it is replaced as a whole (a message the filter cannot read may hold an entry the caller must not see).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    /// Not JSON, not UTF-8, or trailing data.
    Syntax,
    /// The same member name twice in one object.
    DuplicateMember,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The message, or its `result`, is not a JSON object.
    NotAnObject,
    /// A `result` without the list's array (or with something else than an array there), or a message that
    /// is neither a result, an error, a request nor a notification.
    MissingArray,
    /// An entry that is not an object, or whose key member is missing or not a string.
    EntryWithoutKey,
    /// The request the list answers no longer verifies (its token expired meanwhile): nothing is listed.
    Unverified,
    /// The message is larger than the caller buffers (for the caller's use: [`filter_response`] takes what it
    /// is given).
    TooLarge,
}

impl ListError {
    /// Stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ListError::Syntax => "syntax",
            ListError::Unverified => "unverified",
            ListError::DuplicateMember => "duplicate_member",
            ListError::TooDeep => "too_deep",
            ListError::NotAnObject => "not_an_object",
            ListError::MissingArray => "missing_array",
            ListError::EntryWithoutKey => "entry_without_key",
            ListError::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListError::Syntax => "list response is not valid UTF-8 JSON",
            ListError::DuplicateMember => "list response has a duplicate member name",
            ListError::TooDeep => "list response is nested too deeply",
            ListError::NotAnObject => "list response or its result is not a JSON object",
            ListError::MissingArray => "list response result has no array of entries",
            ListError::EntryWithoutKey => "list response has an entry without a string key",
            ListError::TooLarge => "list response is too large",
            ListError::Unverified => "the request the list answers no longer verifies",
        })
    }
}

impl From<JsonError> for ListError {
    fn from(e: JsonError) -> ListError {
        match e {
            JsonError::Syntax => ListError::Syntax,
            JsonError::DuplicateMember => ListError::DuplicateMember,
            JsonError::TooDeep => ListError::TooDeep,
            JsonError::NotAnObject => ListError::NotAnObject,
        }
    }
}

/// Rewrites one JSON-RPC response message: removes the entries of `result.<array_key>` for which
/// `keep(entry[entry_key])` is false, and with `private` marks the result `cacheScope: "private"` (replacing
/// the upstream's value, or adding the member first in `result`).
///
/// A JSON-RPC error response (`error`, no `result`) passes unchanged, and so do requests and notifications
/// (`method`, no `result`), which an SSE stream may carry before the response: none of them holds entries.
/// A message with a `result` is filtered whatever else it has. Everything but the removed entries (and the
/// `cacheScope` value) is kept byte for byte. `Unchanged` when nothing is removed and the result needs no new
/// `cacheScope`. `keep` is asked about every entry, in order, before anything is written.
///
/// Fails closed: any entry without a string key is an error, never passed through.
pub fn filter_response(
    message: &[u8],
    kind: ListKind,
    private: bool,
    keep: &mut dyn FnMut(&str) -> bool,
) -> Result<Filtered, ListError> {
    let facts = read::read(message, kind)?;
    if !facts.object {
        return Err(ListError::NotAnObject);
    }
    match facts.result {
        Some(true) => {}
        Some(false) => return Err(ListError::NotAnObject),
        None if facts.error_or_method => return Ok(Filtered::Unchanged),
        None => return Err(ListError::MissingArray),
    }
    let entries = facts.entries.ok_or(ListError::MissingArray)?;
    // One entry without a key fails the whole message, before `keep` hears of any.
    let mut names = Vec::with_capacity(entries.len());
    for entry in &entries {
        names.push(entry.as_deref().ok_or(ListError::EntryWithoutKey)?);
    }
    let kept: Vec<bool> = names.into_iter().map(keep).collect();
    let remove = kept.contains(&false);
    let mark = private && !facts.private;
    if !remove && !mark {
        return Ok(Filtered::Unchanged);
    }
    // The document is valid JSON from here on: the scanner only needs to find the spans to cut. It cannot
    // fail on what the strict reader accepted; should it, the message is refused rather than passed.
    splice(message, kind, remove.then_some(&kept[..]), mark).ok_or(ListError::Syntax).map(Filtered::Rewritten)
}

/// The message with the entries `kept` says to drop cut out (when `kept` is given) and `cacheScope` set to
/// `"private"` (when `mark`). `message` must be JSON that [`read::read`] accepted.
fn splice(message: &[u8], kind: ListKind, kept: Option<&[bool]>, mark: bool) -> Option<Vec<u8>> {
    let doc = Scan { bytes: message };
    // One pass: the walk descends into `result` and its array instead of skipping them, so each byte is
    // looked at once.
    let (mut result, mut array, mut scope, mut entries) = (None, None, None, Vec::new());
    doc.members(doc.skip_ws(0), |name, start| {
        if !doc.name_is(name, "result") {
            return doc.value_end(start);
        }
        let end = doc.members(start, |name, start| {
            if doc.name_is(name.clone(), kind.array_key()) {
                let end = doc.elements(start, |at| {
                    let end = doc.value_end(at)?;
                    entries.push(at..end);
                    Some(end)
                })?;
                array = Some(start..end);
                return Some(end);
            }
            let end = doc.value_end(start)?;
            if doc.name_is(name, CACHE_SCOPE) {
                scope = Some(start..end);
            }
            Some(end)
        })?;
        result = Some(start..end);
        Some(end)
    })?;
    let (result, array) = (result?, array?);

    // Edits as (range replaced, replacement), applied in order of position.
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    if let Some(kept) = kept {
        if entries.len() != kept.len() {
            return None;
        }
        let mut inner = Vec::with_capacity(array.len());
        for (entry, _) in entries.into_iter().zip(kept).filter(|(_, keep)| **keep) {
            if !inner.is_empty() {
                inner.push(b',');
            }
            inner.extend_from_slice(message.get(entry)?);
        }
        // Between the brackets: the upstream's own whitespace around entries goes with them.
        edits.push((array.start + 1..array.end.checked_sub(1)?, inner));
    }
    if mark {
        match scope {
            Some(value) => edits.push((value, CACHE_SCOPE_PRIVATE.as_bytes().to_vec())),
            // First in `result`, which is not empty (it holds the array), so a comma always follows.
            None => {
                let at = result.start + 1;
                edits.push((at..at, format!("\"{CACHE_SCOPE}\":{CACHE_SCOPE_PRIVATE},").into_bytes()));
            }
        }
    }
    edits.sort_by_key(|(range, _)| range.start);

    let mut out = Vec::with_capacity(message.len() + 32);
    let mut from = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(message.get(from..range.start)?);
        out.extend_from_slice(&replacement);
        from = range.end;
    }
    out.extend_from_slice(message.get(from..)?);
    Some(out)
}

/// Finds member and element spans in a document already validated as JSON: it only tells strings from
/// structure, so it never has to judge syntax. Every access is checked; `None` means "not what a validated
/// document looks like".
struct Scan<'a> {
    bytes: &'a [u8],
}

impl Scan<'_> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    /// The first position at or after `at` that is not JSON whitespace.
    fn skip_ws(&self, mut at: usize) -> usize {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte(at) {
            at += 1;
        }
        at
    }

    /// Just past the string whose opening quote is at `at`.
    fn string_end(&self, at: usize) -> Option<usize> {
        let mut i = at + 1;
        loop {
            i += quote_or_backslash(self.bytes.get(i..)?)?;
            match self.byte(i)? {
                b'"' => return Some(i + 1),
                // A backslash escapes exactly the next byte (`\uXXXX` continues with plain hex digits).
                _ => i += 2,
            }
        }
    }

    /// Just past the value starting at `at`.
    fn value_end(&self, at: usize) -> Option<usize> {
        match self.byte(at)? {
            b'"' => self.string_end(at),
            b'{' | b'[' => {
                let (mut depth, mut i) = (0usize, at);
                loop {
                    match self.byte(i)? {
                        b'"' => {
                            i = self.string_end(i)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                return Some(i + 1);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            // A number or literal runs to the next delimiter.
            _ => {
                let rest = self.bytes.get(at..)?;
                let len = rest.iter().position(|b| matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'));
                Some(at + len.unwrap_or(rest.len()))
            }
        }
    }

    /// Walks the object whose `{` is at `open`: `member` is given the span of each name (quotes included)
    /// and where its value starts, and answers where the value ends. Answers where the object ends.
    fn members(&self, open: usize, mut member: impl FnMut(Range<usize>, usize) -> Option<usize>) -> Option<usize> {
        self.each(open, b'{', b'}', |i| {
            let name = i..self.string_end(i)?;
            let colon = self.skip_ws(name.end);
            (self.byte(colon)? == b':').then_some(())?;
            member(name, self.skip_ws(colon + 1))
        })
    }

    /// Walks the array whose `[` is at `open`: `element` is given where each element starts and answers where
    /// it ends. Answers where the array ends.
    fn elements(&self, open: usize, element: impl FnMut(usize) -> Option<usize>) -> Option<usize> {
        self.each(open, b'[', b']', element)
    }

    /// Walks a container from its `open` byte to its `close` byte: `item` reads the item starting at the
    /// given position and answers where it ends. Answers where the container ends (just past `close`).
    fn each(&self, open: usize, first: u8, close: u8, mut item: impl FnMut(usize) -> Option<usize>) -> Option<usize> {
        (self.byte(open)? == first).then_some(())?;
        let mut i = self.skip_ws(open + 1);
        if self.byte(i)? == close {
            return Some(i + 1);
        }
        loop {
            i = self.skip_ws(item(i)?);
            match self.byte(i)? {
                b',' => i = self.skip_ws(i + 1),
                b if b == close => return Some(i + 1),
                _ => return None,
            }
        }
    }

    /// Whether the member name spanning `name` (quotes included) is `expected`, escapes decoded.
    fn name_is(&self, name: Range<usize>, expected: &str) -> bool {
        let Some(quoted) = self.bytes.get(name) else {
            return false;
        };
        let raw = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
        if !raw.contains(&b'\\') {
            return raw == expected.as_bytes();
        }
        // Rare (`"res\u0075lt"`), and parse_value read it so: decode it the same way.
        serde_json::from_slice::<String>(quoted).is_ok_and(|decoded| decoded == expected)
    }
}

/// Where the first `"` or `\` of `bytes` is. Strings are most of a list's bytes, so eight at a time: the
/// classic zero-byte test on the word XORed with each stop byte, whose lowest flag is exact on a
/// little-endian load (a borrow only flags bytes above a real hit).
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    let mut done = 0;
    while let Some(word) = bytes.get(done..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*word);
        let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
        let hit = ((quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash)) & HIGHS;
        if hit != 0 {
            return Some(done + (hit.trailing_zeros() / 8) as usize);
        }
        done += 8;
    }
    let rest = bytes.get(done..)?;
    rest.iter().position(|&b| b == b'"' || b == b'\\').map(|at| done + at)
}

#[cfg(test)]
mod tests;
