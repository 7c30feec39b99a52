use super::*;
use crate::request::mcp::list::{Filtered, ListKind, filter_response};
use proptest::prelude::*;

/// Feeds `chunks` (the last with `end`), returning the output and the data of every event `rewrite` was asked
/// about, or the first error.
fn feed(chunks: &[&[u8]], max: usize, rewrite: &mut Rewrite<'_>) -> Result<(Vec<u8>, Vec<Vec<u8>>), SseError> {
    let mut rewriter = SseRewriter::new(max);
    let (mut out, mut seen) = (Vec::new(), Vec::new());
    for (i, chunk) in chunks.iter().enumerate() {
        let mut each = |data: &[u8]| {
            seen.push(data.to_vec());
            rewrite(data)
        };
        out.extend(rewriter.push(chunk, i + 1 == chunks.len(), &mut each)?);
    }
    Ok((out, seen))
}

/// A rewrite that is a plain function.
type Plain = fn(&[u8]) -> Result<Option<Vec<u8>>, ListError>;

/// Keeps every event as it is.
fn keep_all(_: &[u8]) -> Result<Option<Vec<u8>>, ListError> {
    Ok(None)
}

/// Replaces data `x` by `X`, keeps the rest, refuses `bad`.
fn upper_x(data: &[u8]) -> Result<Option<Vec<u8>>, ListError> {
    match data {
        b"x" => Ok(Some(b"X".to_vec())),
        b"bad" => Err(ListError::Syntax),
        _ => Ok(None),
    }
}

fn one(stream: &[u8], rewrite: &mut Rewrite<'_>) -> (Vec<u8>, Vec<Vec<u8>>) {
    feed(&[stream], 1 << 20, rewrite).expect("stream")
}

/// Every split of `stream` into two chunks, and byte by byte, against the stream in one chunk.
fn same_at_every_split(stream: &[u8], max: usize, rewrite: Plain) {
    let whole = feed(&[stream], max, &mut { rewrite });
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(
            feed(&[a, b], max, &mut { rewrite }),
            whole,
            "split at {at} of {:?}",
            String::from_utf8_lossy(stream)
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).chain([&b""[..]]).collect();
    assert_eq!(feed(&bytes, max, &mut { rewrite }), whole, "byte by byte");
}

#[test]
fn unchanged_events_pass_byte_for_byte() {
    for stream in [
        &b"event: message\ndata: {\"a\":1}\n\n"[..],
        b"id: 7\r\ndata: a\r\n\r\n",
        b"data: a\r\rdata: b\r\r",
        b": comment\n\n: another\r\n\r\n",
        b"\n\n\r\n\r",
        b"retry: 10\nid:\ndata\n\n",
        b"",
    ] {
        assert_eq!(one(stream, &mut keep_all).0, stream, "{:?}", String::from_utf8_lossy(stream));
    }
}

#[test]
fn data_lines_are_joined_and_one_space_is_removed() {
    let (_, seen) = one(b"data: a\ndata:b\ndata:  c\ndata\ndata:\n\n", &mut keep_all);
    assert_eq!(seen, [b"a\nb\n c\n\n".to_vec()]);
    // Only a colon ends the field name; the rest of the line is the value, colons included.
    let (_, seen) = one(b"data: {\"k\":\"v\"}\r\n\r\n", &mut keep_all);
    assert_eq!(seen, [b"{\"k\":\"v\"}".to_vec()]);
    // Other fields are not data.
    let (_, seen) = one(b"event: data\nid: data: x\ndatas: y\nDATA: z\ndata: w\n\n", &mut keep_all);
    assert_eq!(seen, [b"w".to_vec()]);
}

#[test]
fn events_without_data_are_not_offered_to_the_rewrite() {
    // Comments, a priming event (`id:` and an empty `data:`), stray blank lines.
    let stream = b": keep-alive\n\nid: 1\ndata:\n\nid: 2\ndata: \n\n\n\n";
    let (out, seen) = one(stream, &mut |_| Err(ListError::Syntax));
    assert_eq!(out, stream);
    assert!(seen.is_empty());
}

#[test]
fn a_rewritten_event_keeps_id_event_and_retry_and_gets_one_data_line() {
    let stream = b"id: 42\r\n: a comment\r\nevent: message\r\ndata: x\r\nunknown: f\r\nretry: 5000\r\n\r\ndata: y\n\n";
    let (out, seen) = one(stream, &mut upper_x);
    assert_eq!(seen, [b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(out, b"id: 42\nevent: message\ndata: X\nretry: 5000\n\ndata: y\n\n");
    // Multi-line data replaced at the first data line.
    let (out, _) = one(b"data: {\ndata: \"a\":1\nid: 3\ndata: }\n\n", &mut |_| Ok(Some(b"{\"a\":2}".to_vec())));
    assert_eq!(out, b"data: {\"a\":2}\nid: 3\n\n");
    // New data with line feeds takes one line each; a CR cannot be written at all.
    let (out, _) = one(b"data: x\n\n", &mut |_| Ok(Some(b"a\nb".to_vec())));
    assert_eq!(out, b"data: a\ndata: b\n\n");
    assert_eq!(feed(&[b"data: x\n\n"], 100, &mut |_| Ok(Some(b"a\rb".to_vec()))), Err(SseError::Unrepresentable));
}

#[test]
fn an_incomplete_event_is_carried_never_emitted_half() {
    let mut rewriter = SseRewriter::new(1000);
    let mut rewrite = upper_x;
    assert_eq!(rewriter.push(b"data: a\n\nid: 1\nda", false, &mut rewrite), Ok(b"data: a\n\n".to_vec()));
    assert_eq!(rewriter.push(b"ta: x\n", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"\n", false, &mut rewrite), Ok(b"id: 1\ndata: X\n\n".to_vec()));
    assert_eq!(rewriter.push(b"", true, &mut rewrite), Ok(Vec::new()));
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let mut rewriter = SseRewriter::new(1000);
    let mut seen = Vec::new();
    let mut rewrite = |data: &[u8]| {
        seen.push(data.to_vec());
        Ok(None)
    };
    // Were the CR a line end of its own, the LF would be a blank line and end the event before `data: b`.
    assert_eq!(rewriter.push(b"data: a\r", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"\ndata: b\r", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"\n\r", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"\n", false, &mut rewrite), Ok(b"data: a\r\ndata: b\r\n\r\n".to_vec()));
    // A CR followed by something else was a line end after all.
    assert_eq!(rewriter.push(b"data: c\r", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"\r", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"d", false, &mut rewrite), Ok(b"data: c\r\r".to_vec()));
    // At the end of the stream a last CR is a line end.
    assert_eq!(rewriter.push(b"ata: e\r", false, &mut rewrite), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"\r", true, &mut rewrite), Ok(b"data: e\r\r".to_vec()));
    assert_eq!(seen, [b"a\nb".to_vec(), b"c".to_vec(), b"e".to_vec()]);
    same_at_every_split(b"data: a\r\ndata: x\r\n\r\ndata: x\r\rdata: x\n\r\n", 1000, upper_x);
}

#[test]
fn a_bom_opens_the_stream_once() {
    let stream = b"\xEF\xBB\xBFdata: x\n\n";
    let (out, seen) = one(stream, &mut upper_x);
    assert_eq!(seen, [b"x".to_vec()]);
    assert_eq!(out, b"\xEF\xBB\xBFdata: X\n\n");
    same_at_every_split(stream, 1000, upper_x);
    // Only at the start, only once: a second BOM is part of the field name.
    let (_, seen) = one(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n", &mut keep_all);
    assert_eq!(seen, [b"y".to_vec()]);
    // Something that only starts like a BOM is stream bytes, and a stream that is only part of one ends so.
    for stream in [&b"\xEFdata: x\n\n"[..], b"\xEF\xBB", b"\xEF", b"\xEF\xBB\xBF"] {
        assert_eq!(one(stream, &mut keep_all).0, stream);
        same_at_every_split(stream, 1000, upper_x);
    }
}

#[test]
fn the_last_event_without_its_blank_line_is_processed_at_the_end() {
    // Rewritten, still without the blank line (a conforming client discards it, as it would the upstream's).
    assert_eq!(one(b"data: y\n\nid: 1\ndata: x", &mut upper_x).0, b"data: y\n\nid: 1\ndata: X\n");
    assert_eq!(one(b"data: x\n", &mut upper_x).0, b"data: X\n");
    assert_eq!(one(b"data: y\r", &mut upper_x).0, b"data: y\r");
    assert_eq!(feed(&[b"data: ok\n\ndata: bad"], 100, &mut upper_x), Err(SseError::Rewrite(ListError::Syntax)));
}

#[test]
fn events_longer_than_the_cap_fail_the_stream() {
    let event = b"data: 0123456789\n\n"; // 18 bytes
    assert!(feed(&[event], 18, &mut keep_all).is_ok());
    assert_eq!(feed(&[event], 17, &mut keep_all), Err(SseError::EventTooLarge));
    // Carried: refused as soon as the carry passes the cap, before the event ends.
    let mut rewriter = SseRewriter::new(10);
    assert_eq!(rewriter.push(b"data: 0123", false, &mut keep_all), Ok(Vec::new()));
    assert_eq!(rewriter.push(b"4", false, &mut keep_all), Err(SseError::EventTooLarge));
    // And every call after a failure fails too.
    assert_eq!(rewriter.push(b"\n\n", true, &mut keep_all), Err(SseError::EventTooLarge));
    // The cap is per event: many small events are fine.
    let many = b"data: a\n\n".repeat(100);
    assert_eq!(feed(&[&many], 9, &mut keep_all).map(|(out, _)| out), Ok(many.clone()));
    same_at_every_split(b"data: a\n\ndata: 0123456789\n\n", 12, keep_all);
}

#[test]
fn a_refused_event_fails_the_stream() {
    let mut rewriter = SseRewriter::new(100);
    assert_eq!(
        rewriter.push(b"data: a\n\ndata: bad\n\n", false, &mut upper_x),
        Err(SseError::Rewrite(ListError::Syntax))
    );
    assert_eq!(rewriter.push(b"data: a\n\n", true, &mut upper_x), Err(SseError::Rewrite(ListError::Syntax)));
    for e in [SseError::EventTooLarge, SseError::Unrepresentable, SseError::Rewrite(ListError::EntryWithoutKey)] {
        assert!(!e.to_string().is_empty() && !e.label().is_empty());
    }
}

#[test]
fn a_tools_list_response_streamed_is_filtered() {
    let stream = concat!(
        ": ping\n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
        "id: ev-2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"}],\"nextCursor\":\"n\"}}\n\n",
    );
    let mut rewrite = |data: &[u8]| match filter_response(data, ListKind::Tools, true, &mut |name| name == "b")? {
        Filtered::Unchanged => Ok(None),
        Filtered::Rewritten(new) => Ok(Some(new)),
    };
    let mut rewriter = SseRewriter::new(1 << 16);
    let out = rewriter.push(stream.as_bytes(), true, &mut rewrite).expect("stream");
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        concat!(
            ": ping\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
            "id: ev-2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"cacheScope\":\"private\",\"tools\":[{\"name\":\"b\"}],\"nextCursor\":\"n\"}}\n\n",
        )
    );
    // A response the filter cannot read fails the stream rather than passing.
    let mut rewriter = SseRewriter::new(1 << 16);
    let bad = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"title\":\"no name\"}]}}\n\n";
    assert_eq!(rewriter.push(bad, true, &mut rewrite), Err(SseError::Rewrite(ListError::EntryWithoutKey)));
}

/// Pieces streams are made of: every kind of line end, field, comment, BOM and the data the rewrite treats
/// specially.
fn piece() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(vec![
        &b"\n"[..],
        b"\r",
        b"\r\n",
        b"data: x",
        b"data:x",
        b"data: y",
        b"data: bad",
        b"data",
        b"data:",
        b"id: 1",
        b"event: message",
        b"retry: 3",
        b": comment",
        b":",
        b"\xEF\xBB\xBF",
        b"\xEF",
        b"other: z",
        b"0123456789",
    ])
}

proptest! {
    /// Wherever a stream is cut into chunks, the output (or the failure) is that of the stream in one chunk.
    #[test]
    fn chunking_does_not_change_the_output(
        pieces in prop::collection::vec(piece(), 0..24),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        max in 8usize..64,
    ) {
        let stream: Vec<u8> = pieces.concat();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(&stream[from..cut]);
            from = cut;
        }
        chunks.push(&stream[from..]);
        let whole = feed(&[&stream], max, &mut upper_x);
        prop_assert_eq!(feed(&chunks, max, &mut upper_x), whole.clone());
        // With nothing rewritten, the stream passes byte for byte, however cut.
        if let Ok((out, _)) = feed(&chunks, max, &mut keep_all) {
            prop_assert_eq!(out, stream.clone());
        }
    }

    /// Arbitrary bytes, cut anywhere: never a panic, and the same answer as in one chunk.
    #[test]
    fn arbitrary_bytes_cut_anywhere(stream in prop::collection::vec(any::<u8>(), 0..200), cut in any::<prop::sample::Index>()) {
        let (a, b) = stream.split_at(cut.index(stream.len() + 1));
        prop_assert_eq!(feed(&[a, b], 64, &mut upper_x), feed(&[&stream], 64, &mut upper_x));
    }
}
