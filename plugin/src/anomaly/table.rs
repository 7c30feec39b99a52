//! The tracked agents: slots in a vector, an index by name, and a doubly linked list through the slots in
//! order of last sight, so that finding, touching and evicting an agent are all O(1).

use super::agent::Agent;
use std::collections::HashMap;
use std::rc::Rc;

/// No slot: the end of the list.
const NIL: u32 = u32::MAX;

/// One agent and its neighbours in the list (more recently seen: `prev`; less: `next`).
#[derive(Debug)]
pub(super) struct Slot {
    agent: Agent,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
pub(super) struct Table {
    /// Agent name → slot; keyed by the default (randomly keyed) hasher.
    index: HashMap<Rc<str>, u32>,
    slots: Vec<Slot>,
    /// The most and the least recently seen slots.
    head: u32,
    tail: u32,
    capacity: usize,
}

impl Table {
    /// An empty table of at most `capacity` agents (1 ≤ capacity < `u32::MAX`, as `Detector::new` clamps).
    pub(super) fn new(capacity: usize) -> Table {
        Table { index: HashMap::new(), slots: Vec::new(), head: NIL, tail: NIL, capacity }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The agent, without touching it.
    pub(super) fn get(&self, name: &str) -> Option<&Agent> {
        let &at = self.index.get(name)?;
        self.slots.get(at as usize).map(|s| &s.agent)
    }

    /// Takes a slot out of the list.
    fn unlink(&mut self, at: u32) {
        let Some(slot) = self.slots.get(at as usize) else { return };
        let (prev, next) = (slot.prev, slot.next);
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    /// Puts an unlinked slot at the head of the list.
    fn push_front(&mut self, at: u32) {
        let old = self.head;
        if let Some(slot) = self.slots.get_mut(at as usize) {
            slot.prev = NIL;
            slot.next = old;
        }
        match self.slots.get_mut(old as usize) {
            Some(h) => h.prev = at,
            None => self.tail = at,
        }
        self.head = at;
    }

    /// The agent called `name`, now the most recently seen: found, or created (replacing the least recently
    /// seen agent when the table is full).
    pub(super) fn touch(&mut self, name: &str, now_ms: u64) -> &mut Agent {
        let at = match self.index.get(name) {
            Some(&at) => {
                if at != self.head {
                    self.unlink(at);
                    self.push_front(at);
                }
                at
            }
            None => self.insert(name, now_ms),
        };
        // `at` is a valid slot: taken from the index or just made. The fallback keeps the type total.
        let last = self.slots.len().saturating_sub(1);
        let at = if (at as usize) < self.slots.len() { at as usize } else { last };
        &mut self.slots[at].agent
    }

    fn insert(&mut self, name: &str, now_ms: u64) -> u32 {
        let name: Rc<str> = Rc::from(name);
        if self.slots.len() >= self.capacity && self.tail != NIL {
            let at = self.tail;
            self.unlink(at);
            if let Some(slot) = self.slots.get_mut(at as usize) {
                self.index.remove(&slot.agent.name);
                slot.agent.reset(name.clone(), now_ms);
            }
            self.index.insert(name, at);
            self.push_front(at);
            return at;
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by doubling, but never past the capacity: the slots are the bulk of the memory.
            let extra = self.slots.len().max(16).min(self.capacity - self.slots.len());
            self.slots.reserve_exact(extra);
        }
        let at = self.slots.len() as u32;
        self.slots.push(Slot { agent: Agent::new(name.clone(), now_ms), prev: NIL, next: NIL });
        self.index.insert(name, at);
        self.push_front(at);
        at
    }
}
