//! The one strict pass over a list response: serde_json's grammar with [`crate::json::parse_value`]'s rules
//! (duplicate member names and nesting deeper than [`MAX_DEPTH`] refused, UTF-8 checked in every string),
//! learning only what the filter needs (the shape of the message and `result`, each entry's key,
//! `cacheScope`) instead of building a [`serde_json::Value`] of the whole message: a tree of maps and strings
//! for a 100-tool list costs several times the parse itself.
//!
//! It must accept and refuse exactly what `parse_value` does, and classify refusals the same way: the tests
//! check it against `parse_value` on arbitrary documents.

use super::{ListError, ListKind, MAX_DEPTH};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// What the pass learned of a message.
#[derive(Debug, Default)]
pub(super) struct Facts<'de> {
    /// The message is an object.
    pub object: bool,
    /// The message has an `error` or a `method` member.
    pub error_or_method: bool,
    /// `Some(is_object)` when the message has a `result`.
    pub result: Option<bool>,
    /// When `result.<array_key>` is an array: each entry's key, `None` for an entry that is not an object or
    /// whose key is missing or not a string.
    pub entries: Option<Vec<Option<Cow<'de, str>>>>,
    /// `result.cacheScope` is `"private"`.
    pub private: bool,
    /// The key of the entry being read.
    name: Option<Cow<'de, str>>,
    /// The member names of the objects being read, outermost first: one buffer for the whole message, so
    /// that checking an object's names for repeats costs no allocation.
    names: Vec<Cow<'de, str>>,
}

/// Reads `message` strictly, learning its [`Facts`].
pub(super) fn read(message: &[u8], kind: ListKind) -> Result<Facts<'_>, ListError> {
    // UTF-8 checked once for the whole message, then read as text: serde_json checks nothing twice. The
    // same refusals as reading bytes, since outside strings any non-ASCII byte is a syntax error anyway.
    let text = std::str::from_utf8(message).map_err(|_| ListError::Syntax)?;
    let mut facts = Facts::default();
    let mut de = serde_json::Deserializer::from_str(text);
    Reader { facts: &mut facts, kind, role: Role::Message, depth: 0 }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| ListError::Syntax)?;
    Ok(facts)
}

const DUPLICATE: &str = "agent-iam: duplicate member";
const TOO_DEEP: &str = "agent-iam: too deep";

fn classify(e: serde_json::Error) -> ListError {
    let text = e.to_string();
    if text.starts_with(DUPLICATE) {
        ListError::DuplicateMember
    } else if text.starts_with(TOO_DEEP) {
        ListError::TooDeep
    } else {
        ListError::Syntax
    }
}

/// Where in the message a value sits: only the path to the entries' keys and `cacheScope` matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The message itself.
    Message,
    /// `result`.
    Result,
    /// `result.<array_key>`.
    Entries,
    /// One element of the entries.
    Entry,
    /// `<entry>.<entry_key>`.
    Name,
    /// `result.cacheScope`.
    Scope,
    /// Anything else: checked, not kept.
    Other,
}

/// Reads one value in `role`, `depth` containers deep.
struct Reader<'f, 'de> {
    facts: &'f mut Facts<'de>,
    kind: ListKind,
    role: Role,
    depth: usize,
}

impl<'de> Reader<'_, 'de> {
    /// The depth of this container's children, or the error if it is one level too many.
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(self.depth + 1)
    }

    fn string(self, value: Cow<'de, str>) {
        match self.role {
            Role::Name => self.facts.name = Some(value),
            Role::Scope => self.facts.private = value == "private",
            _ => {}
        }
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    // Scalars change nothing: a role's facts start as "not what was expected".
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.string(Cow::Borrowed(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        // Only a string with escapes comes here; only an entry's key needs its own copy.
        match self.role {
            Role::Name => self.facts.name = Some(Cow::Owned(v.to_owned())),
            Role::Scope => self.facts.private = v == "private",
            _ => {}
        }
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.string(Cow::Owned(v));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let Reader { facts, kind, role, .. } = self;
        if role != Role::Entries {
            while seq.next_element_seed(Reader { facts: &mut *facts, kind, role: Role::Other, depth })?.is_some() {}
            return Ok(());
        }
        let mut names = Vec::new();
        loop {
            facts.name = None;
            if seq.next_element_seed(Reader { facts: &mut *facts, kind, role: Role::Entry, depth })?.is_none() {
                break;
            }
            names.push(facts.name.take());
        }
        facts.entries = Some(names);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let Reader { facts, kind, role, .. } = self;
        match role {
            Role::Message => facts.object = true,
            Role::Result => facts.result = Some(true),
            _ => {}
        }
        let mut seen = Names::new(facts.names.len());
        while let Some(name) = map.next_key_seed(Key)? {
            let child = match (role, &*name) {
                (Role::Message, "result") => {
                    facts.result = Some(false);
                    Role::Result
                }
                (Role::Message, "error" | "method") => {
                    facts.error_or_method = true;
                    Role::Other
                }
                (Role::Result, n) if n == kind.array_key() => Role::Entries,
                (Role::Result, "cacheScope") => Role::Scope,
                (Role::Entry, n) if n == kind.entry_key() => Role::Name,
                _ => Role::Other,
            };
            if !seen.insert(&mut facts.names, name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(Reader { facts: &mut *facts, kind, role: child, depth })?;
        }
        facts.names.truncate(seen.base);
        Ok(())
    }
}

/// A member name, borrowed from the message unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// How many names an object may have before they move to a tree: compared one by one below, so that the
/// small objects a list is made of cost no allocation, and in a tree above, so that an object with many
/// members costs `n log n` rather than `n²` comparisons.
const LINEAR_NAMES: usize = 16;

/// The member names of one object so far, to refuse a repeat: the end of the shared buffer from `base`, then
/// a tree once there are many.
struct Names<'de> {
    base: usize,
    many: Option<BTreeSet<Cow<'de, str>>>,
}

impl<'de> Names<'de> {
    fn new(base: usize) -> Names<'de> {
        Names { base, many: None }
    }

    /// Adds `name`; false if it was already there.
    fn insert(&mut self, buffer: &mut Vec<Cow<'de, str>>, name: Cow<'de, str>) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(name);
        }
        let mine = buffer.get(self.base..).unwrap_or_default();
        if mine.contains(&name) {
            return false;
        }
        if mine.len() < LINEAR_NAMES {
            buffer.push(name);
        } else {
            let mut many: BTreeSet<_> = buffer.drain(self.base..).collect();
            many.insert(name);
            self.many = Some(many);
        }
        true
    }
}
