//! An incremental rewriter of Server-Sent Events streams, for MCP responses sent as `text/event-stream`.
//!
//! Parsing follows the WHATWG HTML "event stream" rules: lines end in CRLF, LF or CR; an event ends at a blank
//! line; a line starting with `:` is a comment; a field's value loses one space after the colon; `data` values
//! are joined with LF; one UTF-8 BOM may open the stream. The stream arrives in chunks cut anywhere, so an
//! incomplete event is carried to the next chunk and never emitted half: a client must never see a message
//! before the filter has judged all of it. The output does not depend on where the chunks were cut.

use super::list::ListError;
use std::fmt;

/// The UTF-8 byte order mark a stream may open with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a stream cannot be rewritten. The stream must then be cut: what follows may hold a message the
/// filter could not judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// An event (complete, or carried while incomplete) longer than the rewriter's cap.
    EventTooLarge,
    /// A replacement data containing a CR, which no SSE line can hold.
    Unrepresentable,
    /// The rewrite refused an event's data.
    Rewrite(ListError),
}

impl SseError {
    /// Stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            SseError::EventTooLarge => "event_too_large",
            SseError::Unrepresentable => "unrepresentable",
            SseError::Rewrite(e) => e.label(),
        }
    }
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::EventTooLarge => f.write_str("event stream has an event larger than allowed"),
            SseError::Unrepresentable => f.write_str("event stream rewrite produced data with a CR"),
            SseError::Rewrite(e) => write!(f, "event stream event refused: {e}"),
        }
    }
}

impl From<ListError> for SseError {
    fn from(e: ListError) -> SseError {
        SseError::Rewrite(e)
    }
}

/// The rewrite applied to each event's joined data: `Ok(None)` keeps the event as it was, `Ok(Some(data))`
/// replaces its data, `Err` fails the stream.
pub type Rewrite<'a> = dyn FnMut(&[u8]) -> Result<Option<Vec<u8>>, ListError> + 'a;

/// Rewrites one event stream, chunk by chunk.
#[derive(Debug, Clone)]
pub struct SseRewriter {
    /// The bytes of the incomplete event at the end of the last chunk (or of a possible BOM not yet whole).
    carry: Vec<u8>,
    /// In `carry`: where the first line not yet complete starts.
    line: usize,
    /// In `carry`: where the search for the next line end resumes (bytes before it hold none, except a CR
    /// waiting to see whether an LF follows).
    search: usize,
    /// Most bytes one event may have.
    max_event_bytes: usize,
    /// Whether the start of the stream (and so its BOM) has been decided.
    started: bool,
    /// The error the stream failed with: every later call answers it again.
    failed: Option<SseError>,
}

impl SseRewriter {
    /// A rewriter for one stream whose events are at most `max_event_bytes` long.
    pub fn new(max_event_bytes: usize) -> SseRewriter {
        SseRewriter { carry: Vec::new(), line: 0, search: 0, max_event_bytes, started: false, failed: None }
    }

    /// Feeds one chunk of the stream (`end`: the last). Returns the bytes to send downstream now: every
    /// complete event, each passed through `rewrite` (given the event's joined data). An incomplete event is
    /// carried over to the next call. At `end`, a final event without its blank line is processed as it
    /// stands (and, like the upstream's, sent without a blank line: a conforming client discards it).
    ///
    /// Events that need no change are emitted byte for byte as received, and so are events without data
    /// (comments, or a priming `id:` with an empty `data:`): they cannot hold a message, so `rewrite` is not
    /// asked about them. A rewritten event keeps its `id:`, `event:` and `retry:` lines and gets one `data:`
    /// line per line of the new data where the first `data:` line was; its comments and other fields are
    /// dropped, and its lines end in LF.
    ///
    /// After an error, every call returns that error: the stream must be cut.
    pub fn push(&mut self, chunk: &[u8], end: bool, rewrite: &mut Rewrite<'_>) -> Result<Vec<u8>, SseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let pushed = self.push_inner(chunk, end, rewrite);
        if let Err(e) = pushed {
            self.failed = Some(e);
            self.carry = Vec::new();
        }
        pushed
    }

    fn push_inner(&mut self, chunk: &[u8], end: bool, rewrite: &mut Rewrite<'_>) -> Result<Vec<u8>, SseError> {
        let mut out = Vec::new();
        let mut carry = std::mem::take(&mut self.carry);
        // Most chunks hold whole events: read them in place, and copy only an incomplete event's bytes.
        let carried = !carry.is_empty();
        let buf: &[u8] = if carried {
            carry.extend_from_slice(chunk);
            &carry
        } else {
            chunk
        };

        let mut start = 0;
        if !self.started {
            if !end && buf.len() < BOM.len() && BOM.starts_with(buf) {
                self.carry = buf.to_vec();
                return Ok(out);
            }
            self.started = true;
            if buf.starts_with(BOM) {
                // Sent on as it came; the client strips it as the first byte of its own stream.
                out.extend_from_slice(BOM);
                start = BOM.len();
            }
        }

        let (mut event, mut line, mut search) = (start, start + self.line, start + self.search);
        loop {
            let Some(found) = buf.get(search..).and_then(|rest| rest.iter().position(|&b| b == b'\n' || b == b'\r'))
            else {
                search = buf.len();
                break;
            };
            let eol = search + found;
            let next = match (buf.get(eol), buf.get(eol + 1)) {
                (Some(b'\r'), Some(b'\n')) => eol + 2,
                // A CR last in the chunk may be the first half of a CRLF: judged when the next byte comes
                // (otherwise its LF would read as a blank line and end the event early).
                (Some(b'\r'), None) if !end => {
                    search = eol;
                    break;
                }
                _ => eol + 1,
            };
            if eol == line {
                emit(buf.get(event..next).unwrap_or_default(), true, self.max_event_bytes, &mut out, rewrite)?;
                event = next;
            }
            line = next;
            search = next;
        }

        if end {
            let rest = buf.get(event..).unwrap_or_default();
            if !rest.is_empty() {
                emit(rest, false, self.max_event_bytes, &mut out, rewrite)?;
            }
            // The stream is over: whatever comes next is another stream.
            *self = SseRewriter::new(self.max_event_bytes);
            return Ok(out);
        }
        let rest_len = buf.len().saturating_sub(event);
        if rest_len > self.max_event_bytes {
            return Err(SseError::EventTooLarge);
        }
        self.line = line.saturating_sub(event);
        self.search = search.saturating_sub(event);
        self.carry = if carried {
            carry.drain(..event.min(carry.len()));
            carry
        } else {
            chunk.get(event..).unwrap_or_default().to_vec()
        };
        Ok(out)
    }
}

/// Writes one event to `out`: as it came, or with its data rewritten. `terminated`: whether it ended with its
/// blank line (the last event of a stream may not).
fn emit(
    event: &[u8],
    terminated: bool,
    max_event_bytes: usize,
    out: &mut Vec<u8>,
    rewrite: &mut Rewrite<'_>,
) -> Result<(), SseError> {
    if event.len() > max_event_bytes {
        return Err(SseError::EventTooLarge);
    }
    let mut data = Vec::new();
    let mut first = true;
    for (name, value) in lines(event).filter_map(field) {
        if name == b"data" {
            if !first {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            first = false;
        }
    }
    let replaced = if data.is_empty() { None } else { rewrite(&data)? };
    let Some(new) = replaced else {
        out.extend_from_slice(event);
        return Ok(());
    };
    if new.contains(&b'\r') {
        return Err(SseError::Unrepresentable);
    }
    let mut data_written = false;
    for line in lines(event) {
        match field(line) {
            Some((b"data", _)) if !data_written => {
                for part in new.split(|&b| b == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(part);
                    out.push(b'\n');
                }
                data_written = true;
            }
            Some((b"id" | b"event" | b"retry", _)) => {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            _ => {}
        }
    }
    if terminated {
        out.push(b'\n');
    }
    Ok(())
}

/// The lines of an event, without their ends (CRLF, LF or CR). Called on an event whose line ends are all
/// known, so a CR ends a line whatever follows it.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, after) = match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => (rest, &[][..]),
            Some(i) => {
                let len = if rest.get(i..i + 2) == Some(b"\r\n") { 2 } else { 1 };
                (rest.get(..i).unwrap_or_default(), rest.get(i + len..).unwrap_or_default())
            }
        };
        rest = after;
        Some(line)
    })
}

/// A line's field name and value (one space after the colon removed), or `None` for a comment. A line
/// without a colon is a field with an empty value.
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.first() == Some(&b':') {
        return None;
    }
    Some(match line.iter().position(|&b| b == b':') {
        None => (line, &[][..]),
        Some(colon) => {
            let value = line.get(colon + 1..).unwrap_or_default();
            (line.get(..colon).unwrap_or_default(), value.strip_prefix(b" ").unwrap_or(value))
        }
    })
}

#[cfg(test)]
mod tests;
