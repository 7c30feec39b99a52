use super::*;
use crate::revocation::selector::{Facts, Selector};
use std::cell::RefCell;
use std::collections::HashMap;

/// A write "from another worker", made between a read and a write.
type Interleave = Box<dyn FnMut(&Memory)>;

/// Shared data as Envoy keeps it: a CAS token per key, bumped on every write; `set` with a stale token fails.
#[derive(Default)]
struct Memory {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Called before every `set`: lets a test write "from another worker" in between.
    interleave: RefCell<Option<Interleave>>,
}

impl SharedStore for Memory {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.data.borrow().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let interleave = self.interleave.borrow_mut().take();
        if let Some(mut f) = interleave {
            f(self);
        }
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(StoreError::CasMismatch);
        }
        data.insert(key.to_owned(), (value.to_vec(), current + 1));
        Ok(())
    }
}

fn agent(id: &str) -> Selector {
    Selector::validated(Facts { agent: Some(id.into()), ..Facts::default() }).unwrap()
}

const KEY: &str = "agent_iam.revocation";

#[test]
fn an_event_is_applied_once_and_its_version_published() {
    let store = Memory::default();
    let s = update(&store, KEY, |st| {
        st.apply_event("set-1", 100, &[agent("spiffe://a.example/x")], "ssf:set-1", Limits::default())
    })
    .unwrap();
    assert_eq!(s.version, 1);
    assert_eq!(read_version(&store, KEY).unwrap(), 1);
    // The same event again (a replay, or the next poll before the ack reached the transmitter): no change.
    let again = update(&store, KEY, |st| {
        st.apply_event("set-1", 100, &[agent("spiffe://b.example/y")], "ssf:set-1", Limits::default())
    })
    .unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(again.selectors(0), vec![agent("spiffe://a.example/x")]);
}

#[test]
fn a_concurrent_writer_loses_nothing() {
    let store = Memory::default();
    update(&store, KEY, |st| st.apply_event("e0", 100, &[agent("spiffe://a.example/0")], "ssf:e0", Limits::default()))
        .unwrap();
    // Between this worker's read and its write, another worker applies its own event.
    *store.interleave.borrow_mut() = Some(Box::new(|m: &Memory| {
        update(m, KEY, |st| {
            st.apply_event("other", 100, &[agent("spiffe://a.example/other")], "push:other", Limits::default())
        })
        .unwrap();
    }));
    let mine = update(&store, KEY, |st| {
        st.apply_event("mine", 100, &[agent("spiffe://a.example/mine")], "ssf:mine", Limits::default())
    })
    .unwrap();
    assert_eq!(mine.version, 3);
    let (state, _) = read(&store, KEY).unwrap();
    let ids: Vec<_> = state.seen.iter().map(|s| s.jti.as_str()).collect();
    assert_eq!(ids, ["e0", "other", "mine"]);
    assert_eq!(state.selectors(0).len(), 3);
    assert_eq!(read_version(&store, KEY).unwrap(), 3);
}

#[test]
fn an_unreadable_state_is_never_overwritten() {
    let store = Memory::default();
    store.set(KEY, b"{not json", 0).unwrap();
    let r = update(&store, KEY, |st| st.apply_event("e", 1, &[], "ssf:e", Limits::default()));
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert_eq!(store.get(KEY).unwrap().unwrap().0, b"{not json");
    // A well-formed document with an invalid selector is just as unreadable.
    store.set(KEY, br#"{"version":3,"entries":[{"selector":{"agent":""},"source":"x"}]}"#, 0).unwrap();
    assert!(matches!(read(&store, KEY), Err(StoreError::Corrupt(_))));
}

#[test]
fn caps_refuse_rather_than_drop() {
    let store = Memory::default();
    let limits = Limits { max_entries: 2, max_seen: 10 };
    for (i, id) in ["spiffe://a.example/1", "spiffe://a.example/2"].iter().enumerate() {
        update(&store, KEY, |st| st.apply_event(&format!("e{i}"), 100, &[agent(id)], "ssf", limits)).unwrap();
    }
    let full = update(&store, KEY, |st| st.apply_event("e9", 100, &[agent("spiffe://a.example/3")], "ssf", limits));
    assert_eq!(full.unwrap_err(), StoreError::Full("revocations"));
    let (state, _) = read(&store, KEY).unwrap();
    assert_eq!(state.entries.len(), 2);
    assert!(!state.has_seen("e9"), "a refused event is not remembered, so it can be applied once there is room");
}

#[test]
fn an_older_list_never_replaces_a_newer_one() {
    let mut st = SharedState::default();
    assert!(st.install_list(200, 1000, vec![agent("spiffe://a.example/new")]));
    assert!(!st.install_list(100, 1100, vec![]), "a replayed older list is refused");
    assert_eq!(st.selectors(0), vec![agent("spiffe://a.example/new")]);
    assert!(st.install_list(200, 1200, vec![]), "the same list again renews its age only");
    assert_eq!(st.list.as_ref().unwrap().fetched_at, 1200);
    assert_eq!(st.selectors(0).len(), 1);
}

#[test]
fn pruning_drops_what_ended() {
    let mut st = SharedState::default();
    st.apply_event("a", 50, &[agent("spiffe://a.example/x").ending(40)], "ssf:a", Limits::default()).unwrap();
    st.apply_event("b", 500, &[agent("spiffe://a.example/y").ending(400)], "ssf:b", Limits::default()).unwrap();
    assert_eq!(st.selectors(39).len(), 2);
    assert_eq!(st.selectors(40).len(), 1);
    assert!(st.prune(60));
    assert_eq!(st.entries.len(), 1);
    assert_eq!(st.seen.len(), 1);
    assert!(!st.prune(60));
}

#[test]
fn the_state_reads_back_as_written() {
    let mut st = SharedState::default();
    st.apply_event("a", 50, &[agent("spiffe://a.example/x")], "ssf:a", Limits::default()).unwrap();
    st.install_list(7, 8, vec![agent("spiffe://a.example/y")]);
    st.owe_ack("a");
    st.owe_error(SetError { jti: "b".into(), err: "invalid_key".into(), description: "bad signature".into() });
    assert_eq!(SharedState::decode(&st.encode()).unwrap(), st);
}
