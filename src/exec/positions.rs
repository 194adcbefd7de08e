//! Position ids and the positions' feed subscriptions: state of the exit engine that outlives
//! its panics (the engine creates both once and hands them to each spawn).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::domain::{InstrumentKey, PositionId, Timestamp};
use crate::feed::SubscriptionSet;

/// New position ids: `P<build instant in base 36>-<n>`, unique across restarts of the process
/// (as long as a restart takes longer than a millisecond) and short enough for the direct
/// correlation-id form (`N1-P…`, ≤ 25 characters).
#[derive(Debug)]
pub struct PositionIds {
    prefix: String,
    next: AtomicU64,
}

impl PositionIds {
    pub fn new(start: Timestamp) -> PositionIds {
        PositionIds {
            prefix: format!("P{}", base36(start.0.max(0) as u64)),
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> PositionId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        PositionId::new(format!("{}-{n}", self.prefix))
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// Which positions have their instrument subscribed, so that subscribing and unsubscribing
/// stay exactly-once per position across restarts of the exit engine. Cheap to clone.
#[derive(Clone)]
pub struct PositionSubscriptions {
    set: SubscriptionSet,
    held: Arc<Mutex<BTreeMap<PositionId, InstrumentKey>>>,
}

impl PositionSubscriptions {
    pub fn new(set: SubscriptionSet) -> PositionSubscriptions {
        PositionSubscriptions { set, held: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// The feed's subscription set these go into.
    pub fn set(&self) -> &SubscriptionSet {
        &self.set
    }

    /// Subscribes a position's instrument once, however often it is asked.
    pub fn subscribe(&self, id: &PositionId, instrument: InstrumentKey) -> bool {
        let mut held = self.held.lock();
        if held.contains_key(id) {
            return false;
        }
        held.insert(id.clone(), instrument);
        self.set.position_opened(instrument);
        true
    }

    /// Releases a position's subscription once, however often it is asked.
    pub fn unsubscribe(&self, id: &PositionId) -> bool {
        match self.held.lock().remove(id) {
            Some(instrument) => {
                self.set.position_closed(instrument);
                true
            }
            None => false,
        }
    }

    /// The positions subscribed now.
    pub fn positions(&self) -> Vec<PositionId> {
        self.held.lock().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_ids_are_short_distinct_and_fit_a_direct_correlation_id() {
        let ids = PositionIds::new(Timestamp(1_763_960_415_000));
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with('P') && a.as_str().ends_with("-1"), "{a}");
        let cid = crate::risk::correlation::exit_id(&a, 999_999).unwrap();
        assert!(cid.as_str().contains(a.as_str()), "{cid} uses the direct form");
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
