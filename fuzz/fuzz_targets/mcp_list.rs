//! Arbitrary bytes as an MCP list response, whole (application/json) and as an event stream cut into chunks
//! (text/event-stream): never a panic; a rewritten response is JSON that the filter reads again unchanged
//! (nothing left to remove, already private); the stream's output does not depend on where it was cut.
#![no_main]

use agent_iam::request::mcp::list::{Filtered, ListError, ListKind, filter_response};
use agent_iam::request::mcp::sse::{SseError, SseRewriter};
use libfuzzer_sys::fuzz_target;

/// The filter the gateway would apply: drop every entry whose key has an odd length.
fn keep(name: &str) -> bool {
    name.len() % 2 == 0
}

fn rewrite(data: &[u8]) -> Result<Option<Vec<u8>>, ListError> {
    match filter_response(data, ListKind::Tools, true, &mut keep)? {
        Filtered::Unchanged => Ok(None),
        Filtered::Rewritten(new) => Ok(Some(new)),
    }
}

/// The stream fed in `chunks`: the concatenated output, or the error.
fn stream(chunks: &[&[u8]]) -> Result<Vec<u8>, SseError> {
    let mut rewriter = SseRewriter::new(4096);
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend(rewriter.push(chunk, i + 1 == chunks.len(), &mut rewrite)?);
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the list and where the stream is cut; the rest is the message or stream.
    let Some((&control, body)) = data.split_first() else { return };
    let kind = match control % 4 {
        0 => ListKind::Tools,
        1 => ListKind::Prompts,
        2 => ListKind::Resources,
        _ => ListKind::ResourceTemplates,
    };
    if let Ok(Filtered::Rewritten(out)) = filter_response(body, kind, true, &mut keep) {
        // Filtering is idempotent: what it wrote it reads, with nothing more to remove.
        match filter_response(&out, kind, true, &mut keep) {
            Ok(Filtered::Unchanged) => {}
            other => panic!("a rewritten response filtered again gave {other:?}"),
        }
    }

    let whole = stream(&[body]);
    let step = usize::from(control / 4) + 1;
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    let cut = stream(&chunks);
    assert_eq!(whole, cut, "the output depends on the chunking ({step}-byte chunks)");
    let (a, b) = body.split_at(body.len() / 2);
    assert_eq!(whole, stream(&[a, b]), "the output depends on the chunking (halves)");
});
