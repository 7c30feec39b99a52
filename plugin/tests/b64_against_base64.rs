//! `agent_iam::b64` against the `base64` crate's strict URL-safe engine without padding (`URL_SAFE_NO_PAD`:
//! no padding accepted, trailing bits refused): both must encode alike and accept and refuse the same inputs.

use agent_iam::b64;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

fn agree(input: &[u8]) {
    let ours = b64::decode(input).ok();
    let theirs = URL_SAFE_NO_PAD.decode(input).ok();
    assert_eq!(ours, theirs, "decoding {:?}", String::from_utf8_lossy(input));
}

#[test]
fn edge_inputs() {
    let edges: &[&[u8]] = &[
        b"",
        b"A",
        b"AA",
        b"AB",
        b"AAA",
        b"AAB",
        b"AAAA",
        b"AAAAA",
        b"AA==",
        b"AAA=",
        b"A===",
        b"====",
        b"Zg",
        b"Zh",
        b"Zm8",
        b"Zm9",
        b"Zm9v",
        b"-_-_",
        b"+/+/",
        b"AA AA",
        b"AA\nAA",
        b" AAAA",
        b"AAAA ",
        b"AA.A",
        b"AA\0A",
        "AAé".as_bytes(),
        b"_w",
        b"_x",
        b"__8",
        b"__9",
        b"____",
    ];
    for input in edges {
        agree(input);
    }
}

/// Characters of the URL-safe alphabet, of the standard one, padding, and a few that belong to neither.
fn text() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9').chain(*b"-_").collect();
    let extra = b"+/=. \n\0\x7f\xff".to_vec();
    prop::collection::vec(
        prop_oneof![
            20 => prop::sample::select(alphabet),
            1 => prop::sample::select(extra),
        ],
        0..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn encodes_alike_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let ours = b64::encode(&bytes);
        prop_assert_eq!(&ours, &URL_SAFE_NO_PAD.encode(&bytes));
        prop_assert_eq!(b64::decode(ours.as_bytes()).ok(), Some(bytes));
    }

    #[test]
    fn decodes_alike(input in text()) {
        agree(&input);
    }

    #[test]
    fn decodes_alike_with_the_last_character_changed(bytes in prop::collection::vec(any::<u8>(), 1..40), last in 0u8..64) {
        // Every possible final character of a valid encoding: the trailing bits it leaves set or clear.
        let mut text = b64::encode(&bytes).into_bytes();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        if let Some(c) = text.last_mut() {
            *c = alphabet[usize::from(last)];
        }
        agree(&text);
    }
}
