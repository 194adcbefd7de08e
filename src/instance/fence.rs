//! What the order gate guards: the broker and the shared store.
//!
//! - [`GatedGateway`] wraps whatever gateway the broker factory built (paper or Dhan) and
//!   refuses to hand an order to it while the gate is shut: the order comes back rejected
//!   with the reason, and nothing leaves the process.
//! - [`FencedStore`] wraps each store connection the write-behind worker opens and refuses
//!   every batch while the gate is shut. A refused batch is not an outage: the writer sets it
//!   aside in the spill's `.rejected` file (kept for an operator, never replayed), so an
//!   instance that lost its lease cannot overwrite what the instance that took over writes,
//!   neither now nor later from a spill.
//!
//! This is fencing on our side of the wire: the gate closes a safety margin before the lease
//! can expire in Redis, so by the time another instance can hold the lease this one has stopped
//! sending and writing. The fencing token is recorded in the store's audit log when an
//! instance starts.

use std::sync::Arc;

use chrono::NaiveDate;

use super::gate::OrderGate;
use crate::domain::{CorrelationId, OrderIntent, Timestamp};
use crate::exec::router::{Gateway, Placement};
use crate::store::{
    ApplyOutcome, AuditEntry, ClosedTradeRecord, Connector, DailyPnlRecord, EventId, FillRecord,
    OrderWithHistory, PositionRecord, Recovery, Store, StoreError, StoreEvent, TradingStateRecord,
};

/// A gateway that asks the gate before every placement.
pub struct GatedGateway {
    inner: Arc<dyn Gateway>,
    gate: OrderGate,
}

impl GatedGateway {
    pub fn new(inner: Arc<dyn Gateway>, gate: OrderGate) -> GatedGateway {
        GatedGateway { inner, gate }
    }
}

impl Gateway for GatedGateway {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn place(&self, intent: &OrderIntent, now: Timestamp) -> Placement {
        match self.gate.refusal() {
            None => self.inner.place(intent, now),
            Some(why) => {
                log::error!(target: "instance", "order {} of {} not sent: {why}", intent.correlation_id, intent.position_id);
                Placement::Rejected { reason: format!("not sent: {why}") }
            }
        }
    }

    fn placements(&self, id: &CorrelationId) -> Option<u32> {
        self.inner.placements(id)
    }

    fn placers(&self) -> usize {
        self.inner.placers()
    }
}

/// A store connection that writes only while the gate is open.
pub struct FencedStore {
    inner: Box<dyn Store>,
    gate: OrderGate,
}

impl FencedStore {
    pub fn new(inner: Box<dyn Store>, gate: OrderGate) -> FencedStore {
        FencedStore { inner, gate }
    }
}

/// `connector`, with every connection it opens fenced by `gate`.
pub fn fenced(connector: Connector, gate: OrderGate) -> Connector {
    Arc::new(move || {
        connector().map(|s| Box::new(FencedStore::new(s, gate.clone())) as Box<dyn Store>)
    })
}

impl Store for FencedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn apply(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError> {
        match self.gate.refusal() {
            None => self.inner.apply(events),
            Some(why) => Err(StoreError::Rejected {
                backend: self.inner.backend(),
                doing: format!("writing {} events", events.len()),
                detail: format!(
                    "{why}; not written so as not to overwrite the active instance's state"
                ),
            }),
        }
    }

    fn load_recovery(&mut self, trading_day: NaiveDate) -> Result<Recovery, StoreError> {
        self.inner.load_recovery(trading_day)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.inner.ping()
    }

    fn last_event_id(&mut self) -> Result<Option<EventId>, StoreError> {
        self.inner.last_event_id()
    }

    fn schema_versions(&mut self) -> Result<Vec<i64>, StoreError> {
        self.inner.schema_versions()
    }

    fn positions(&mut self) -> Result<Vec<PositionRecord>, StoreError> {
        self.inner.positions()
    }

    fn orders(&mut self) -> Result<Vec<OrderWithHistory>, StoreError> {
        self.inner.orders()
    }

    fn fills(&mut self) -> Result<Vec<FillRecord>, StoreError> {
        self.inner.fills()
    }

    fn closed_trades(&mut self) -> Result<Vec<ClosedTradeRecord>, StoreError> {
        self.inner.closed_trades()
    }

    fn daily_pnl(&mut self) -> Result<Vec<DailyPnlRecord>, StoreError> {
        self.inner.daily_pnl()
    }

    fn trading_state(&mut self) -> Result<Option<TradingStateRecord>, StoreError> {
        self.inner.trading_state()
    }

    fn audit(&mut self) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ExitReason, InstrumentKey, OrderPurpose, Paise, PositionId, Qty, Segment, Txn,
    };
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Actor, AuditRecord, EventKind};

    struct Counting(parking_lot::Mutex<u32>);

    impl Gateway for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn place(&self, _: &OrderIntent, _: Timestamp) -> Placement {
            *self.0.lock() += 1;
            Placement::Unknown { detail: "test".into() }
        }
    }

    fn intent() -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new("X1-p1").unwrap(),
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
    fn a_shut_gate_keeps_orders_from_the_broker() {
        let inner = Arc::new(Counting(parking_lot::Mutex::new(0)));
        let gate = OrderGate::leased(4, u64::MAX);
        let g = GatedGateway::new(inner.clone(), gate.clone());
        assert!(matches!(g.place(&intent(), Timestamp(2)), Placement::Unknown { .. }));
        gate.close("lease lost to another instance");
        let Placement::Rejected { reason } = g.place(&intent(), Timestamp(3)) else {
            panic!("refused")
        };
        assert!(reason.contains("fencing token 4"), "{reason}");
        assert_eq!(*inner.0.lock(), 1, "only the first order reached the broker");
    }

    #[test]
    fn a_shut_gate_refuses_writes_as_rejected_data_not_as_an_outage() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let gate = OrderGate::leased(9, u64::MAX);
        let mut s = FencedStore::new(Box::new(store), gate.clone());
        let ev = |id| StoreEvent {
            id: EventId(id),
            at: Timestamp(1),
            kind: EventKind::Audit(AuditRecord {
                at: Timestamp(1),
                actor: Actor::Engine,
                action: "t".into(),
                detail: String::new(),
            }),
        };
        assert_eq!(s.apply(&[ev(1)]).unwrap().applied, 1);
        gate.close("lost");
        let err = s.apply(&[ev(2)]).unwrap_err();
        assert!(!err.is_unavailable(), "{err}");
        assert_eq!(s.audit().unwrap().len(), 1, "reads still work, nothing more was written");
    }
}
