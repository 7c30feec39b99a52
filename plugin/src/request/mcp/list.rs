//! MCP list responses (`tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`) filtered per
//! caller: the entries the caller may not use are removed, so that a list never advertises what policy would
//! refuse (and, with `denial: unknown`, never tells a caller that a tool it cannot call exists).
//!
//! The message is read with the same strictness as a token (the rules of [`crate::json::parse_value`]:
//! duplicate member names, bad UTF-8 and deep nesting refused), because the client reads it too: two readers
//! that disagree on which of two `"tools"` members counts would let an upstream smuggle a hidden entry past
//! the filter. The reader ([`crate::json::tape`]) applies those rules in one pass without building a `Value`,
//! which for a 100-tool list would cost several times the parse.
//!
//! The rewrite is a splice of the original bytes, not a re-serialisation: this crate's serde_json has no
//! `preserve_order`, so a `Value` written back would sort every object's members, turn integers past 64 bits
//! into floats and drop the upstream's formatting. Cutting the removed entries out of the text keeps every
//! other byte as the upstream sent it (member order, `nextCursor`, `_meta`, unknown fields, numbers).

use crate::json::JsonError;
use crate::json::tape::{Kind as JsonKind, Tape};
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
    let tape = Tape::parse(message, MAX_DEPTH)?;
    let root = tape.root();
    if root.kind() != JsonKind::Object {
        return Err(ListError::NotAnObject);
    }
    let result = match root.get("result") {
        Some(r) if r.kind() == JsonKind::Object => r,
        Some(_) => return Err(ListError::NotAnObject),
        None if root.get("error").is_some() || root.get("method").is_some() => return Ok(Filtered::Unchanged),
        None => return Err(ListError::MissingArray),
    };
    let array = result.get(kind.array_key()).filter(|a| a.kind() == JsonKind::Array).ok_or(ListError::MissingArray)?;
    // One entry without a key fails the whole message, before `keep` hears of any.
    let mut entries = Vec::new();
    for entry in array.items() {
        let name = entry.get(kind.entry_key()).and_then(|n| n.as_str()).ok_or(ListError::EntryWithoutKey)?;
        entries.push((entry.span(), name));
    }
    let kept: Vec<bool> = entries.iter().map(|(_, name)| keep(name)).collect();
    let remove = kept.contains(&false);
    let scope = result.get(CACHE_SCOPE);
    let mark = private && scope.and_then(|s| s.as_str()).as_deref() != Some("private");
    if !remove && !mark {
        return Ok(Filtered::Unchanged);
    }
    // Edits as (range replaced, replacement), applied in order of position; everything else is kept byte for
    // byte.
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    if remove {
        let array = array.span();
        let mut inner = Vec::with_capacity(array.len());
        for ((span, _), _) in entries.into_iter().zip(&kept).filter(|(_, keep)| **keep) {
            if !inner.is_empty() {
                inner.push(b',');
            }
            inner.extend_from_slice(message.get(span).ok_or(ListError::Syntax)?);
        }
        // Between the brackets: the upstream's own whitespace around entries goes with them.
        edits.push((array.start + 1..array.end.saturating_sub(1), inner));
    }
    if mark {
        match scope {
            Some(value) => edits.push((value.span(), CACHE_SCOPE_PRIVATE.as_bytes().to_vec())),
            // First in `result`, which is not empty (it holds the array), so a comma always follows.
            None => {
                let at = result.span().start + 1;
                edits.push((at..at, format!("\"{CACHE_SCOPE}\":{CACHE_SCOPE_PRIVATE},").into_bytes()));
            }
        }
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(message.len() + 32);
    let mut from = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(message.get(from..range.start).ok_or(ListError::Syntax)?);
        out.extend_from_slice(&replacement);
        from = range.end;
    }
    out.extend_from_slice(message.get(from..).ok_or(ListError::Syntax)?);
    Ok(Filtered::Rewritten(out))
}

#[cfg(test)]
mod tests;
