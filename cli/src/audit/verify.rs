//! `audit verify`: reads every event's `unmapped.chain`, checks each checkpoint's MAC as the line goes by
//! (the sealed bytes are the line itself, so lines are not kept), then checks each chain's sequence numbers
//! and links in seq order, and the link from a chain to the one it follows.

use super::VerifyArgs;
use super::lines::{Logs, Place, describe};
use super::report::{ChainReport, Follows, Report};
use crate::Usage;
use agent_iam::b64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};

pub const AFTER_HELP: &str = "A chain's events need not be contiguous: several Envoy workers write one file, so \
chains interleave. Events after a chain's last checkpoint are reported as not sealed (a warning, not a problem). \
Without --key, checkpoint MACs are not checked.";

/// Checkpoint keys from `--key`.
struct Keys {
    named: BTreeMap<String, Vec<u8>>,
    unnamed: Vec<Vec<u8>>,
}

impl Keys {
    fn load(args: &[String]) -> Result<Keys, Usage> {
        let mut keys = Keys { named: BTreeMap::new(), unnamed: Vec::new() };
        for arg in args {
            // KID=FILE; a path that itself contains '=' can be given as =PATH.
            let (kid, file) = match arg.split_once('=') {
                Some((kid, file)) => (Some(kid).filter(|k| !k.is_empty()), file),
                None => (None, arg.as_str()),
            };
            let text = std::fs::read_to_string(file).map_err(|e| Usage(format!("--key {file}: {e}")))?;
            let key = b64::decode(text.trim().as_bytes())
                .map_err(|e| Usage(format!("--key {file}: not base64url text ({e:?})")))?;
            if key.is_empty() {
                return Err(Usage(format!("--key {file}: the key is empty")));
            }
            match kid {
                Some(kid) => {
                    if keys.named.insert(kid.to_owned(), key).is_some() {
                        return Err(Usage(format!("--key: two keys for kid {kid}")));
                    }
                }
                None => keys.unnamed.push(key),
            }
        }
        Ok(keys)
    }

    fn is_empty(&self) -> bool {
        self.named.is_empty() && self.unnamed.is_empty()
    }

    /// The keys to try for a checkpoint with this `kid`. A single key serves every checkpoint, so that one
    /// `--key FILE` is enough whatever `kid` the plugin was configured with.
    fn for_kid(&self, kid: Option<&str>) -> Vec<&[u8]> {
        let all = || self.named.values().chain(&self.unnamed).map(Vec::as_slice);
        if all().count() == 1 {
            return all().collect();
        }
        match kid {
            Some(kid) => self.named.get(kid).map(Vec::as_slice).into_iter().collect(),
            None => self.unnamed.iter().map(Vec::as_slice).collect(),
        }
    }
}

/// What a checkpoint's MAC turned out to be.
enum Seal {
    Verified,
    Unchecked,
    Bad(Option<String>),
    NoKey(Option<String>),
    Malformed(String),
}

enum Prev {
    Null,
    Hash(String),
    /// Neither a string nor null (already reported).
    Bad,
}

struct PreviousChain {
    id: String,
    seq: u64,
    hash: String,
}

struct Event {
    place: Place,
    seq: u64,
    prev: Prev,
    /// base64url BLAKE3 hash of the line, as the next event's `prev` spells it.
    hash: String,
    seal: Option<Seal>,
    previous_chain: Option<PreviousChain>,
}

#[derive(Default)]
struct Chain {
    events: Vec<Event>,
    /// Problems found while reading single events (a malformed member of `chain`).
    problems: Vec<String>,
}

pub fn run(args: &VerifyArgs) -> Result<bool, Usage> {
    let keys = Keys::load(&args.keys)?;
    let logs = Logs::open(&args.files)?;
    let names = logs.names();
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut lines = 0u64;
    let skipped = logs.for_each(|place, bytes| {
        lines += 1;
        match read_event(place, bytes, &keys, &names) {
            Ok((id, event, event_problems)) => {
                let chain = chains.entry(id).or_default();
                chain.events.push(event);
                chain.problems.extend(event_problems);
            }
            Err(problem) => problems.push(format!("{}: {problem}", describe(place, &names))),
        }
    })?;
    let mut report =
        Report { chains: Vec::new(), problems, notes: Vec::new(), lines, skipped, macs_checked: !keys.is_empty() };
    for (id, chain) in &chains {
        let mut r = analyse(id, chain, &names, args.complete);
        r.problems.splice(0..0, chain.problems.iter().cloned());
        follow(&mut r, chain, &chains, &names, args.complete);
        report.chains.push(r);
    }
    if !report.macs_checked {
        report.notes.push("checkpoint MACs not checked: no --key given".into());
    }
    if skipped > 0 {
        report.notes.push(format!("{skipped} placeholder line(s) skipped (empty or \"-\")"));
    }
    let ok = report.ok();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).unwrap_or_default());
    } else {
        print!("{}", report.to_text());
    }
    Ok(ok)
}

/// The chain id, the event, and problems with its `chain` that do not keep it out of its chain. `Err`: the
/// line cannot be placed in any chain.
fn read_event(
    place: Place,
    bytes: &[u8],
    keys: &Keys,
    names: &[String],
) -> Result<(String, Event, Vec<String>), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| "not a JSON object".to_owned())?;
    let event = value.as_object().ok_or("not a JSON object")?;
    let chain = event
        .get("unmapped")
        .and_then(|u| u.get("chain"))
        .and_then(Value::as_object)
        .ok_or("malformed chain: no unmapped.chain object")?;
    let id = chain.get("id").and_then(Value::as_str).ok_or("malformed chain: id is not a string")?;
    let seq = chain.get("seq").and_then(Value::as_u64).ok_or("malformed chain: seq is not an integer >= 0")?;
    let at = format!("seq {seq} ({})", describe(place, names));
    let mut problems = Vec::new();
    let prev = match chain.get("prev") {
        Some(Value::Null) => Prev::Null,
        Some(Value::String(h)) => Prev::Hash(h.clone()),
        _ => {
            problems.push(format!("malformed chain at {at}: prev is neither a string nor null"));
            Prev::Bad
        }
    };
    let previous_chain = match chain.get("previous_chain") {
        None => None,
        Some(pc) => match read_previous_chain(pc) {
            Some(_) if seq != 0 => {
                problems.push(format!("malformed chain at {at}: previous_chain is only allowed at seq 0"));
                None
            }
            Some(pc) => Some(pc),
            None => {
                problems.push(format!("malformed chain at {at}: previous_chain is not {{id, seq, hash}}"));
                None
            }
        },
    };
    let seal = match (chain.get("kid"), chain.get("mac")) {
        (None, None) => None,
        (_, None) => Some(Seal::Malformed("a kid without a mac".into())),
        (Some(kid), Some(_)) if !kid.is_string() => Some(Seal::Malformed("kid is not a string".into())),
        (kid, Some(mac)) => Some(check_mac(bytes, kid.and_then(Value::as_str), mac, keys)),
    };
    let hash = b64::encode(&agent_iam::audit::chain::line_hash(bytes));
    Ok((id.to_owned(), Event { place, seq, prev, hash, seal, previous_chain }, problems))
}

fn read_previous_chain(pc: &Value) -> Option<PreviousChain> {
    Some(PreviousChain {
        id: pc.get("id")?.as_str()?.to_owned(),
        seq: pc.get("seq")?.as_u64()?,
        hash: pc.get("hash")?.as_str()?.to_owned(),
    })
}

fn check_mac(bytes: &[u8], kid: Option<&str>, mac: &Value, keys: &Keys) -> Seal {
    let Some(mac) = mac.as_str() else {
        return Seal::Malformed("mac is not a string".into());
    };
    // The producer seals the line without `,"mac":"…"`, the last member of chain, unmapped and the event;
    // anything else after it would be bytes the MAC does not cover.
    let member = format!(",\"mac\":\"{mac}\"");
    let tail = format!("{member}}}}}}}");
    let Some(head) = bytes.strip_suffix(tail.as_bytes()) else {
        return Seal::Malformed("mac is not the last member of chain, unmapped and the event".into());
    };
    let Some(mac_bytes) = b64::decode(mac.as_bytes()).ok().filter(|m| m.len() == 32) else {
        return Seal::Malformed("mac is not 43 base64url characters (HMAC-SHA256)".into());
    };
    if keys.is_empty() {
        return Seal::Unchecked;
    }
    let candidates = keys.for_kid(kid);
    if candidates.is_empty() {
        return Seal::NoKey(kid.map(str::to_owned));
    }
    let verifies = |key: &[u8]| {
        let Ok(mut hmac) = Hmac::<Sha256>::new_from_slice(key) else { return false };
        hmac.update(head);
        hmac.update(b"}}}");
        // verify_slice compares in constant time: a verifier must not leak how much of a forged MAC is right.
        hmac.verify_slice(&mac_bytes).is_ok()
    };
    if candidates.into_iter().any(verifies) { Seal::Verified } else { Seal::Bad(kid.map(str::to_owned)) }
}

/// Sequence numbers, links and checkpoints of one chain.
fn analyse(id: &str, chain: &Chain, names: &[String], complete: bool) -> ChainReport {
    let events = &chain.events;
    let at = |e: &Event| describe(e.place, names);
    let mut r = ChainReport::new(id, events.len());
    // In stream order: a seq seen before is repeated; one below its predecessor came out of order (one chain
    // is one VM, one worker, so its lines are written in order). Only the step down is reported, so that two
    // files given in the wrong order make one problem per chain, not one per event.
    let mut first_at: HashMap<u64, usize> = HashMap::new();
    let mut before: Option<&Event> = None;
    let mut repeated = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(&j) = first_at.get(&e.seq) {
            repeated.push((&events[j], e));
            continue;
        }
        if let Some(b) = before.filter(|b| b.seq > e.seq) {
            r.problems.push(format!(
                "seq {} ({}) out of order: it comes after seq {} ({})",
                e.seq,
                at(e),
                b.seq,
                at(b)
            ));
        }
        first_at.insert(e.seq, i);
        before = Some(e);
    }
    // One message for all repeats: a file given twice repeats every event.
    if let Some((a, b)) = repeated.first() {
        let more =
            if repeated.len() > 1 { format!(" ({} repeated events in all)", repeated.len()) } else { String::new() };
        r.problems.push(format!("seq {} repeated: {} and {}{more}", b.seq, at(a), at(b)));
    }
    // Then in seq order, first occurrence of each seq.
    let mut order: Vec<&Event> = first_at.values().map(|&i| &events[i]).collect();
    order.sort_by_key(|e| e.seq);
    let (Some(first), Some(last)) = (order.first(), order.last()) else { return r };
    r.first_seq = Some(first.seq);
    r.last_seq = Some(last.seq);
    if first.seq != 0 {
        let head = if first.seq == 1 { "seq 0".to_owned() } else { format!("seq 0..{}", first.seq - 1) };
        if complete {
            r.problems.push(format!("the chain does not start at seq 0: its head ({head}) is missing"));
        } else {
            r.notes
                .push(format!("starts at seq {}: its head ({head}) is not in these files (rotated away?)", first.seq));
        }
    }
    let mut broken = Vec::new();
    for e in &order {
        match (&e.prev, e.seq) {
            (Prev::Hash(_), 0) => r.problems.push(format!("prev is not null at seq 0 ({})", at(e))),
            (Prev::Null, s) if s > 0 => r.problems.push(format!("prev is null at seq {s} ({})", at(e))),
            _ => {}
        }
    }
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.seq > a.seq + 1 {
            let missing = if b.seq == a.seq + 2 {
                format!("seq {}", a.seq + 1)
            } else {
                format!("seq {}..{}", a.seq + 1, b.seq - 1)
            };
            r.problems.push(format!("{missing} missing (between {} and {})", at(a), at(b)));
        } else if let Prev::Hash(h) = &b.prev
            && *h != a.hash
        {
            broken.push((a, b));
        }
    }
    r.broken_links = broken.len();
    if let Some((a, b)) = broken.first() {
        let more = if broken.len() > 1 { format!(" ({} broken links in all)", broken.len()) } else { String::new() };
        r.problems.push(format!(
            "broken link: the prev of seq {} ({}) is not the hash of seq {} ({}){more}",
            b.seq,
            at(b),
            a.seq,
            at(a)
        ));
    }
    for e in events {
        let Some(seal) = &e.seal else { continue };
        r.checkpoints += 1;
        r.last_checkpoint = r.last_checkpoint.max(Some(e.seq));
        let kid = |k: &Option<String>| k.as_ref().map_or(" (no kid)".to_owned(), |k| format!(" (kid {k})"));
        let cp = format!("checkpoint at seq {} ({})", e.seq, at(e));
        match seal {
            Seal::Verified => r.verified += 1,
            Seal::Unchecked => {}
            Seal::Bad(k) => r.problems.push(format!("{cp}: the MAC does not verify{}", kid(k))),
            Seal::NoKey(k) => r.problems.push(format!("{cp}: no key{}", kid(k))),
            Seal::Malformed(why) => r.problems.push(format!("{cp}: {why}")),
        }
    }
    r.unsealed = order.iter().filter(|e| r.last_checkpoint.is_none_or(|c| e.seq > c)).count();
    match r.last_checkpoint {
        _ if r.unsealed == 0 => {}
        Some(c) => r.warnings.push(format!("{} event(s) after the last checkpoint (seq {c}) not sealed", r.unsealed)),
        None => r.warnings.push(format!("no checkpoint: none of its {} event(s) is sealed", r.unsealed)),
    }
    r
}

/// Checks the `previous_chain` of the chain's seq 0 against the chain it names, when that one was read.
fn follow(r: &mut ChainReport, chain: &Chain, chains: &BTreeMap<String, Chain>, names: &[String], complete: bool) {
    let Some(pc) = chain.events.iter().find(|e| e.seq == 0).and_then(|e| e.previous_chain.as_ref()) else {
        return;
    };
    // Prefixed with "chain <id>: " in the lists, this reads "chain X: names Y ending at seq S, but ...".
    let named = format!("names {} ending at seq {}", pc.id, pc.seq);
    // The named chain's last event: its highest seq (first occurrence).
    let last = chains.get(&pc.id).and_then(|c| c.events.iter().rev().max_by_key(|e| e.seq));
    let linked = match last {
        None if complete => {
            r.problems.push(format!("{named}, which is not in these files"));
            None
        }
        None => {
            r.notes.push(format!("follows chain {} (not in these files)", pc.id));
            None
        }
        Some(last) if last.seq != pc.seq => {
            r.problems.push(format!(
                "{named}, but {}'s last event is seq {} ({})",
                pc.id,
                last.seq,
                describe(last.place, names)
            ));
            Some(false)
        }
        Some(last) if last.hash != pc.hash => {
            r.problems.push(format!(
                "{named}, but the hash of {}'s seq {} ({}) is not the one it names",
                pc.id,
                last.seq,
                describe(last.place, names)
            ));
            Some(false)
        }
        Some(_) => Some(true),
    };
    r.follows = Some(Follows { id: pc.id.clone(), seq: pc.seq, linked });
}
