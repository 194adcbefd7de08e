//! The store sink: turns every [`EngineEvent`] into the store events that record it and
//! enqueues them on the write-behind queue. Called on the engine's threads (exit engine,
//! router, PnL refresher, API, feed reader); it only maps values and enqueues
//! ([`StoreHandle::record`] never blocks and never drops), under small locks held for a map
//! lookup.
//!
//! What is written when:
//! - every position change (opened, exit started, part filled, exit rejected, exited): the
//!   whole position with its risk state and lifecycle, at once;
//! - the per-tick part of the risk state (best price, HWM, ratchet stop, last price): a
//!   [`PositionMark`](crate::store::PositionMark) per published PnL snapshot (`pnl.refresh`,
//!   1 s by default) for each position whose risk state moved forward since it was last
//!   written. Ticks change the best price on most ticks of a trending market; writing each
//!   would multiply the writes for state a restart loses at most one refresh interval of
//!   (the throttle the field's usual practice recommends), and it adds nothing to the tick
//!   path: the refresher's snapshot is already taken. Risk state only ever moves one way (best
//!   price and HWM up, the ratchet tighter), so a mark that would move it back (an older
//!   snapshot racing a newer position change) is not written;
//! - orders when the router hands them over (`created`), then each status with its history;
//!   fills; closed trades; the day's account totals whenever a snapshot shows them changed
//!   (absolute values for the IST trading day); trading-state changes, with the day a halt is
//!   latched for, plus an audit line each; alerts, new sessions and operator actions as audit
//!   lines. [`StoreSink::audit`] records anything else (reconciliation adjustments).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::mapping::*;
use crate::domain::{CorrelationId, PositionId, Qty, Side, Timestamp};
use crate::engine::seams::{EngineEvent, EventSink};
use crate::exec::core::CoreEvent;
use crate::exec::order_book::OrderState;
use crate::exec::pnl_refresher::PnlSnapshot;
use crate::risk::position::{Lifecycle, Position};
use crate::risk::{RiskState, SessionClock, ratchet};
use crate::store::{Actor, AuditRecord, EventKind, StoreHandle};

/// The risk state last written for an open position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    side: Side,
    risk: RiskState,
}

/// The further of two risk states of one position: best price and HWM the more favourable,
/// the ratchet stop the tighter.
fn advance(side: Side, a: RiskState, b: RiskState) -> RiskState {
    let best_price = match side {
        Side::Long => a.best_price.max(b.best_price),
        Side::Short => a.best_price.min(b.best_price),
    };
    RiskState {
        best_price,
        hwm_pnl: a.hwm_pnl.max(b.hwm_pnl),
        ratchet_stop: ratchet::tighten(side, a.ratchet_stop, b.ratchet_stop),
    }
}

/// The day's figures last written.
type DayKey = (chrono::NaiveDate, i64, i64, u32);

/// See the module doc.
pub struct StoreSink {
    handle: StoreHandle,
    session: SessionClock,
    written: Mutex<HashMap<PositionId, Written>>,
    day: Mutex<Option<DayKey>>,
}

impl StoreSink {
    pub fn new(handle: StoreHandle, session: SessionClock) -> StoreSink {
        StoreSink { handle, session, written: Mutex::new(HashMap::new()), day: Mutex::new(None) }
    }

    /// Starts from the state recovery restored: marks are then written only when these
    /// positions' risk moves on.
    pub fn seed(&self, positions: &[Position]) {
        let mut w = self.written.lock();
        for p in positions {
            w.insert(p.id.clone(), Written { side: p.side, risk: p.risk });
        }
    }

    /// The queue's producer handle.
    pub fn handle(&self) -> &StoreHandle {
        &self.handle
    }

    /// Records an audit line (operator actions, reconciliation adjustments, lease events).
    pub fn audit(&self, actor: Actor, action: &str, detail: impl Into<String>, at: Timestamp) {
        self.handle.record(EventKind::Audit(AuditRecord {
            at,
            actor,
            action: action.to_string(),
            detail: detail.into(),
        }));
    }

    fn core(&self, event: &CoreEvent) {
        match event {
            CoreEvent::Position(ev) => {
                let p = &ev.position;
                {
                    let mut w = self.written.lock();
                    if matches!(p.lifecycle, Lifecycle::Exited(_)) {
                        w.remove(&p.id);
                    } else {
                        w.insert(p.id.clone(), Written { side: p.side, risk: p.risk });
                    }
                    // Recorded under the lock so that a mark cannot slip in between with an
                    // older view of the same position.
                    self.handle.record(EventKind::PositionUpsert(position_record(p, ev.at)));
                }
            }
            CoreEvent::TradeClosed(t) => {
                self.handle.record(EventKind::TradeClosed(closed_trade_record(t)));
            }
            CoreEvent::TradingState(change) => {
                self.handle
                    .record(EventKind::TradingState(trading_state_record(change, &self.session)));
                self.handle.record(EventKind::Audit(trading_state_audit(change)));
            }
            CoreEvent::SessionStarted { session, at } => {
                self.handle.record(EventKind::Audit(session_audit(*session, *at)));
            }
            CoreEvent::Alert(a) => {
                self.handle.record(EventKind::Audit(alert_audit(a)));
            }
            // The router records the order when it hands it to the broker.
            CoreEvent::ExitIntent(_) => {}
        }
    }

    fn snapshot(&self, snap: &PnlSnapshot) {
        let at = snap.at();
        {
            let mut w = self.written.lock();
            for v in &snap.core.positions {
                let Some(last) = w.get_mut(&v.id) else { continue };
                let next = advance(last.side, last.risk, v.risk);
                if next != last.risk {
                    last.risk = next;
                    let mut mark = position_mark(v, at);
                    mark.best_price = next.best_price;
                    mark.hwm_pnl = next.hwm_pnl;
                    mark.ratchet_stop = next.ratchet_stop;
                    self.handle.record(EventKind::PositionMark(mark));
                }
            }
        }
        if let Some(record) = daily_record(&snap.core.account, at) {
            let key =
                (record.trading_day, record.realised_net.0, record.charges.0, record.trade_count);
            let mut day = self.day.lock();
            if *day != Some(key) {
                *day = Some(key);
                self.handle.record(EventKind::DailyPnl(record));
            }
        }
    }

    fn order_state(&self, cid: &CorrelationId, state: &OrderState, ordered: Qty, at: Timestamp) {
        let change = order_status(cid, state, Some(ordered), at);
        self.handle.record(EventKind::OrderStatus(change));
    }
}

impl EventSink for StoreSink {
    fn record(&self, event: &EngineEvent) {
        match event {
            EngineEvent::Core(e) => self.core(e),
            EngineEvent::OrderSent { intent, at } => {
                self.handle.record(EventKind::OrderPlaced(order_placed(intent, *at)));
            }
            EngineEvent::OrderState { correlation_id, state, ordered, at } => {
                self.order_state(correlation_id, state, *ordered, *at)
            }
            EngineEvent::Fill { fill, .. } => {
                self.handle.record(EventKind::Fill(fill_record(fill)));
            }
            EngineEvent::Operator { action, detail, at } => {
                self.audit(Actor::Operator, action, detail.clone(), *at);
            }
            EngineEvent::PnlPublished(snap) => self.snapshot(snap),
        }
    }
}

/// Hands every event to several sinks in turn.
pub struct FanoutSink(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanoutSink {
    fn record(&self, event: &EngineEvent) {
        for s in &self.0 {
            s.record(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderId, Paise};
    use crate::store::{OrderStatus, queue};

    #[test]
    fn a_part_fill_of_an_order_sent_before_a_restart_is_recorded_part_traded() {
        // The sink keeps no copy of the orders: the quantity comes with the event, so an order
        // this run never sent (settled after a restart) tells a part fill from a full one.
        let (handle, inbox) = queue(16);
        let sink = StoreSink::new(handle, SessionClock::default());
        let cid = CorrelationId::new("X1-p1").unwrap();
        let filled = |q: i64| EngineEvent::OrderState {
            correlation_id: cid.clone(),
            state: OrderState::Filled {
                order_id: OrderId("9".into()),
                price: Paise(100),
                quantity: Qty(q),
            },
            ordered: Qty(75),
            at: Timestamp(1),
        };
        sink.record(&filled(25));
        sink.record(&filled(75));
        let mut out = Vec::new();
        inbox.take_ready(16, &mut out);
        let statuses: Vec<OrderStatus> = out
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::OrderStatus(c) => Some(c.status),
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [OrderStatus::PartTraded, OrderStatus::Traded]);
    }

    fn risk(best: i64, hwm: i64, stop: Option<i64>) -> RiskState {
        RiskState { best_price: Paise(best), hwm_pnl: Paise(hwm), ratchet_stop: stop.map(Paise) }
    }

    #[test]
    fn risk_state_only_moves_forward() {
        let cases = [
            // side, written, seen, result
            (Side::Long, risk(100, 10, None), risk(110, 20, Some(95)), risk(110, 20, Some(95))),
            (Side::Long, risk(110, 20, Some(95)), risk(105, 15, None), risk(110, 20, Some(95))),
            (Side::Long, risk(110, 20, Some(95)), risk(110, 20, Some(99)), risk(110, 20, Some(99))),
            (
                Side::Short,
                risk(100, 10, Some(105)),
                risk(90, 30, Some(102)),
                risk(90, 30, Some(102)),
            ),
            (
                Side::Short,
                risk(90, 30, Some(102)),
                risk(95, 20, Some(104)),
                risk(90, 30, Some(102)),
            ),
        ];
        for (side, a, b, want) in cases {
            assert_eq!(advance(side, a, b), want, "{side:?} {a:?} {b:?}");
        }
    }
}
