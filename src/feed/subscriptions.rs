//! The instruments the engine tracks on the feed: the instruments of open positions
//! (reference-counted, since two positions may share one) plus the configured watchlist.
//!
//! Whoever opens and closes positions updates it; the tick reader polls [`SubscriptionSet::version`]
//! (one atomic load per socket read) and, when it moved, takes a [`Tracked`] snapshot and
//! subscribes the additions and unsubscribes the removals. The set is created once, outside
//! the reader, so a respawned reader restores every subscription from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::domain::InstrumentKey;

#[derive(Default, Debug)]
struct State {
    watchlist: BTreeSet<InstrumentKey>,
    positions: BTreeMap<InstrumentKey, usize>,
}

#[derive(Default, Debug)]
struct Inner {
    state: Mutex<State>,
    version: AtomicU64,
}

/// Shared tracked set; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct SubscriptionSet(Arc<Inner>);

/// A consistent copy of the tracked set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracked {
    pub version: u64,
    /// Instruments with at least one open position.
    pub positions: BTreeSet<InstrumentKey>,
    pub watchlist: BTreeSet<InstrumentKey>,
}

impl Tracked {
    /// Every tracked instrument, positions first (they must never be the ones left out), then
    /// the rest of the watchlist, each group in key order; cut at `limit`. Returns the list and
    /// how many instruments did not fit.
    pub fn desired(&self, limit: usize) -> (Vec<InstrumentKey>, usize) {
        let all: Vec<InstrumentKey> = self
            .positions
            .iter()
            .chain(self.watchlist.iter().filter(|k| !self.positions.contains(k)))
            .copied()
            .collect();
        let overflow = all.len().saturating_sub(limit);
        let mut all = all;
        all.truncate(limit);
        (all, overflow)
    }

    pub fn is_position(&self, key: &InstrumentKey) -> bool {
        self.positions.contains(key)
    }
}

impl SubscriptionSet {
    pub fn new() -> SubscriptionSet {
        SubscriptionSet::default()
    }

    pub fn with_watchlist(keys: impl IntoIterator<Item = InstrumentKey>) -> SubscriptionSet {
        let set = SubscriptionSet::new();
        set.set_watchlist(keys);
        set
    }

    fn update(&self, f: impl FnOnce(&mut State) -> bool) -> bool {
        let mut state = self.0.state.lock();
        let changed = f(&mut state);
        if changed {
            // Bumped under the lock, so a snapshot's version always matches its contents.
            self.0.version.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// Replaces the watchlist.
    pub fn set_watchlist(&self, keys: impl IntoIterator<Item = InstrumentKey>) {
        let new: BTreeSet<InstrumentKey> = keys.into_iter().collect();
        self.update(|s| {
            let changed = s.watchlist != new;
            s.watchlist = new;
            changed
        });
    }

    /// Adds one instrument to the watchlist; `false` if it was there already.
    pub fn watch(&self, key: InstrumentKey) -> bool {
        self.update(|s| s.watchlist.insert(key))
    }

    /// Removes one instrument from the watchlist; `false` if it was not there.
    pub fn unwatch(&self, key: InstrumentKey) -> bool {
        self.update(|s| s.watchlist.remove(&key))
    }

    /// A position on `key` opened: its ticks become lossless and it is subscribed.
    pub fn position_opened(&self, key: InstrumentKey) {
        self.update(|s| {
            let n = s.positions.entry(key).or_insert(0);
            *n += 1;
            *n == 1
        });
    }

    /// A position on `key` closed; the instrument stays tracked while another position or the
    /// watchlist holds it.
    pub fn position_closed(&self, key: InstrumentKey) {
        self.update(|s| match s.positions.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                s.positions.remove(&key);
                true
            }
            None => false,
        });
    }

    pub fn is_position(&self, key: InstrumentKey) -> bool {
        self.0.state.lock().positions.contains_key(&key)
    }

    /// Changes whenever the tracked instruments change. One atomic load.
    pub fn version(&self) -> u64 {
        self.0.version.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Tracked {
        let s = self.0.state.lock();
        Tracked {
            version: self.0.version.load(Ordering::Acquire),
            positions: s.positions.keys().copied().collect(),
            watchlist: s.watchlist.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    fn k(id: u32) -> InstrumentKey {
        InstrumentKey::new(Segment::NseFno, id)
    }

    #[test]
    fn version_moves_only_when_the_tracked_set_changes() {
        let set = SubscriptionSet::with_watchlist([k(1), k(2)]);
        let v0 = set.version();
        assert!(!set.watch(k(1)));
        set.set_watchlist([k(2), k(1)]);
        assert_eq!(set.version(), v0);
        assert!(set.watch(k(3)));
        assert!(set.version() > v0);
    }

    #[test]
    fn positions_are_reference_counted() {
        let set = SubscriptionSet::new();
        set.position_opened(k(7));
        set.position_opened(k(7));
        let v = set.version();
        set.position_closed(k(7));
        assert!(set.is_position(k(7)), "one position still open");
        assert_eq!(set.version(), v);
        set.position_closed(k(7));
        assert!(!set.is_position(k(7)));
        assert!(set.version() > v);
        set.position_closed(k(7));
    }

    #[test]
    fn desired_puts_positions_first_and_cuts_at_the_limit() {
        let set = SubscriptionSet::with_watchlist([k(1), k(2), k(3), k(9)]);
        set.position_opened(k(9));
        set.position_opened(k(5));
        let snap = set.snapshot();
        assert_eq!(snap.desired(10), (vec![k(5), k(9), k(1), k(2), k(3)], 0));
        assert_eq!(snap.desired(3), (vec![k(5), k(9), k(1)], 2));
        assert!(snap.is_position(&k(9)) && !snap.is_position(&k(1)));
    }
}
