//! One table of absolute deadlines for every SIP timer (RFC 3261 §17, Table 4).
//!
//! Each owner arms at most one timer per [`TimerKind`]; re-arming replaces the
//! old deadline. `next()` is the minimum over the table, which is what
//! `Endpoint::poll_timeout` reports to the driver.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct TimerTable<K: Clone + Eq + Hash + Ord> {
    by_deadline: BTreeMap<(Instant, u64), K>,
    by_kind: HashMap<K, (Instant, u64)>,
    seq: u64,
}

impl<K: Clone + Eq + Hash + Ord> TimerTable<K> {
    pub(crate) fn new() -> Self {
        TimerTable {
            by_deadline: BTreeMap::new(),
            by_kind: HashMap::new(),
            seq: 0,
        }
    }

    pub(crate) fn set(&mut self, kind: K, at: Instant) {
        self.cancel(&kind);
        // The sequence number keeps timers with equal deadlines in arming order.
        self.seq += 1;
        self.by_deadline.insert((at, self.seq), kind.clone());
        self.by_kind.insert(kind, (at, self.seq));
    }

    pub(crate) fn cancel(&mut self, kind: &K) {
        if let Some(slot) = self.by_kind.remove(kind) {
            self.by_deadline.remove(&slot);
        }
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.by_deadline.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`, with its deadline.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, Instant)> {
        let (&(at, seq), _) = self.by_deadline.iter().next()?;
        if at > now {
            return None;
        }
        let kind = self.by_deadline.remove(&(at, seq))?;
        self.by_kind.remove(&kind);
        Some((kind, at))
    }
}
