//! The order ledger: every correlation id the router has accepted, the order behind it and what
//! became of it. It is the last guard of exactly-once: the router records an order here
//! (`sending`) *before* calling the broker and drops any order whose correlation id it already
//! knows, so an exit re-sent after an exit-engine restart never reaches the broker twice.
//!
//! Written by the router (and later by the live broker's order-update stream, which settles
//! accepted orders); read by the API, the heartbeat and tests. Settled orders are pruned after
//! a retention period, long after any re-send could come.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::domain::{CorrelationId, OrderId, OrderIntent, OrderPurpose, Paise, Qty, Timestamp};

/// Where an order stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderState {
    /// Recorded, handed to the broker, no answer yet.
    Sending,
    Accepted {
        order_id: OrderId,
    },
    /// Filled in full (`quantity` so far for a part-filled live order).
    Filled {
        order_id: OrderId,
        price: Paise,
        quantity: Qty,
    },
    Rejected {
        reason: String,
    },
    /// The broker's answer was lost; to be resolved by correlation id.
    Unknown {
        detail: String,
    },
}

impl OrderState {
    pub const fn name(&self) -> &'static str {
        match self {
            OrderState::Sending => "sending",
            OrderState::Accepted { .. } => "accepted",
            OrderState::Filled { .. } => "filled",
            OrderState::Rejected { .. } => "rejected",
            OrderState::Unknown { .. } => "unknown",
        }
    }

    /// Nothing more will happen to the order.
    pub const fn is_settled(&self) -> bool {
        matches!(self, OrderState::Filled { .. } | OrderState::Rejected { .. })
    }
}

/// One order in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub intent: OrderIntent,
    pub state: OrderState,
    pub sent_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Whether the router may send an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// First time this correlation id is seen: recorded as `sending`.
    New,
    /// Already known, in this state: do not send again.
    Duplicate(OrderState),
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct OrderLedger(Arc<Mutex<HashMap<CorrelationId, LedgerEntry>>>);

impl OrderLedger {
    pub fn new() -> OrderLedger {
        OrderLedger::default()
    }

    /// Records `intent` as `sending` unless its correlation id is already known.
    pub fn admit(&self, intent: &OrderIntent, at: Timestamp) -> Admission {
        let mut map = self.0.lock();
        if let Some(e) = map.get(&intent.correlation_id) {
            return Admission::Duplicate(e.state.clone());
        }
        map.insert(
            intent.correlation_id.clone(),
            LedgerEntry {
                intent: intent.clone(),
                state: OrderState::Sending,
                sent_at: at,
                updated_at: at,
            },
        );
        Admission::New
    }

    /// Records what became of an order; `false` if the id is unknown. A settled order never
    /// goes back to an open state: a live broker's fill can arrive before the placement's own
    /// answer is recorded.
    pub fn settle(&self, id: &CorrelationId, state: OrderState, at: Timestamp) -> bool {
        match self.0.lock().get_mut(id) {
            Some(e) if e.state.is_settled() && !state.is_settled() => true,
            Some(e) => {
                e.state = state;
                e.updated_at = at;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, id: &CorrelationId) -> Option<LedgerEntry> {
        self.0.lock().get(id).cloned()
    }

    /// Every order, oldest first (ties by correlation id).
    pub fn entries(&self) -> Vec<LedgerEntry> {
        let mut v: Vec<LedgerEntry> = self.0.lock().values().cloned().collect();
        v.sort_by(|a, b| {
            (a.sent_at, &a.intent.correlation_id).cmp(&(b.sent_at, &b.intent.correlation_id))
        });
        v
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Orders with this purpose kind (exits of any reason count as exits).
    pub fn count(&self, exits: bool) -> usize {
        self.0.lock().values().filter(|e| e.intent.purpose.is_exit() == exits).count()
    }

    /// Orders not yet settled.
    pub fn open_orders(&self) -> usize {
        self.0.lock().values().filter(|e| !e.state.is_settled()).count()
    }

    /// Drops settled orders last updated more than `keep_ms` before `now`. Returns how many.
    pub fn prune(&self, now: Timestamp, keep_ms: i64) -> usize {
        let mut map = self.0.lock();
        let before = map.len();
        map.retain(|_, e| !e.state.is_settled() || now.millis_since(e.updated_at) <= keep_ms);
        before - map.len()
    }
}

/// `entry` or `exit`, for logs and metric labels.
pub fn purpose_kind(p: OrderPurpose) -> &'static str {
    if p.is_exit() { "exit" } else { "entry" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExitReason, InstrumentKey, PositionId, Segment, Txn};

    fn intent(cid: &str) -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new(cid).unwrap(),
            position_id: PositionId::new("p1"),
            instrument: InstrumentKey::new(Segment::NseFno, 1),
            txn: Txn::Sell,
            quantity: Qty(75),
            purpose: OrderPurpose::Exit(ExitReason::StopLoss),
            reference_price: Paise(100),
            price_is_stale: false,
            created_at: Timestamp(1),
            limit_price: None,
        }
    }

    #[test]
    fn a_known_correlation_id_is_a_duplicate_whatever_its_state() {
        let l = OrderLedger::new();
        assert_eq!(l.admit(&intent("X1-p1"), Timestamp(1)), Admission::New);
        assert_eq!(
            l.admit(&intent("X1-p1"), Timestamp(2)),
            Admission::Duplicate(OrderState::Sending)
        );
        let filled = OrderState::Filled {
            order_id: OrderId("o1".into()),
            price: Paise(100),
            quantity: Qty(75),
        };
        assert!(l.settle(&intent("X1-p1").correlation_id, filled.clone(), Timestamp(3)));
        assert_eq!(l.admit(&intent("X1-p1"), Timestamp(4)), Admission::Duplicate(filled));
        assert_eq!(
            l.admit(&intent("X2-p1"), Timestamp(5)),
            Admission::New,
            "a new attempt is a new id"
        );
        assert!(!l.settle(
            &CorrelationId::new("X9-p1").unwrap(),
            OrderState::Sending,
            Timestamp(6)
        ));
        assert_eq!((l.len(), l.count(true), l.count(false), l.open_orders()), (2, 2, 0, 1));
    }

    #[test]
    fn prune_drops_only_settled_orders_past_the_retention() {
        let l = OrderLedger::new();
        l.admit(&intent("X1-a"), Timestamp(0));
        l.admit(&intent("X1-b"), Timestamp(0));
        l.settle(
            &intent("X1-a").correlation_id,
            OrderState::Rejected { reason: "no".into() },
            Timestamp(10),
        );
        assert_eq!(l.prune(Timestamp(110), 100), 0, "at the retention boundary it stays");
        assert_eq!(l.prune(Timestamp(111), 100), 1);
        assert_eq!(l.prune(Timestamp(10_000), 100), 0, "an order still sending is never pruned");
        assert!(l.get(&intent("X1-b").correlation_id).is_some());
    }
}
