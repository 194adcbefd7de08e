//! The exit core's side of a live broker: what reconciliation and order resolution may change.
//!
//! - [`ExitCore::on_exit_absent`]: an exit order proved never to have reached the broker is a
//!   rejection that re-fires at once: the trigger still stands, so the next attempt (a new
//!   correlation id) starts with the same reason and trigger price;
//! - [`ExitCore::adopt`]: a broker position the engine did not know, under risk management from
//!   now on (`Origin::Adopted`);
//! - [`ExitCore::close_at_broker`]: a position the broker reports flat is closed locally with
//!   reason `closed_at_broker`; no order is involved (its lifecycle passes through `Exiting`
//!   under an id that is never sent, so the usual bookkeeping of a closed trade applies);
//! - [`ExitCore::local_view`]: the positions and pending entries as reconciliation compares them.

use crate::broker::reconcile::{InFlight, LocalPosition, LocalView};
use crate::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId, Qty,
    Side, Timestamp, Txn,
};
use crate::risk::position::{Lifecycle, LifecycleEvent, Origin, Outcome};

use super::{
    AlertLevel, CoreError, CoreEvent, ExitCore, NewPosition, PendingEntry, PositionChange, Trigger,
    alert, position_event, trigger_exit,
};

impl ExitCore {
    /// Entry orders placed and not yet answered.
    pub fn pending_entries(&self) -> impl Iterator<Item = &PendingEntry> {
        self.pending.values()
    }

    /// The positions and pending entries, as reconciliation compares them.
    pub fn local_view(&self) -> LocalView {
        LocalView {
            positions: self
                .positions()
                .map(|p| LocalPosition {
                    id: p.id.clone(),
                    instrument: p.instrument,
                    side: p.side,
                    open: p.open_quantity(),
                    // A held exit was never sent: its position is still open at the broker.
                    exiting: matches!(p.lifecycle, Lifecycle::Exiting(_))
                        && !self.exit_is_held(&p.lifecycle),
                    last_price: p.last_price,
                })
                .collect(),
            pending_entries: self.pending.values().map(|e| e.instrument).collect(),
            orders_in_flight: self.orders_in_flight(),
        }
    }

    /// The exit orders of `Exiting` positions (held ones excepted: never sent; and those this
    /// run handed to the router, which places and settles them) and the pending entry orders,
    /// as placed, with what of them was applied already.
    pub fn orders_in_flight(&self) -> Vec<InFlight> {
        let exits = self.positions().filter_map(|p| match &p.lifecycle {
            Lifecycle::Exiting(x)
                if !self.held.contains(&x.correlation_id)
                    && !self.held.handed_over(&x.correlation_id) =>
            {
                Some(InFlight {
                    filled: x.filled,
                    turnover: x.turnover,
                    intent: OrderIntent {
                        correlation_id: x.correlation_id.clone(),
                        position_id: p.id.clone(),
                        instrument: p.instrument,
                        txn: Txn::closing(p.side),
                        // What was open when the exit started: this order's fills so far included.
                        quantity: Qty(p.open_quantity().0 + x.filled.0),
                        purpose: OrderPurpose::Exit(x.reason),
                        reference_price: x.trigger_price,
                        price_is_stale: x.price_was_stale,
                        created_at: x.triggered_at,
                        limit_price: None,
                    },
                })
            }
            _ => None,
        });
        let entries = self.pending.values().map(|e| InFlight {
            filled: Qty(0),
            turnover: Paise::ZERO,
            intent: OrderIntent {
                correlation_id: e.correlation_id.clone(),
                position_id: e.position_id.clone(),
                instrument: e.instrument,
                txn: Txn::opening(e.side),
                quantity: e.quantity,
                purpose: OrderPurpose::Entry,
                reference_price: e.reference_price,
                price_is_stale: false,
                created_at: e.placed_at,
                limit_price: e.limit_price,
            },
        });
        exits.chain(entries).collect()
    }

    /// The exit order `correlation_id` provably never reached the broker: the position starts
    /// its next attempt at once, with the same reason and trigger price.
    pub fn on_exit_absent(
        &mut self,
        correlation_id: &CorrelationId,
        why: &str,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let slot = self.exit_slot(correlation_id)?;
        let pos = self.slots[slot].as_mut().expect("an exit in flight points at a live slot");
        let Lifecycle::Exiting(x) = &pos.lifecycle else {
            unreachable!("an exit in flight belongs to an exiting position")
        };
        let trigger =
            Trigger { reason: x.reason, price: x.trigger_price, at, stale: x.price_was_stale };
        let event = LifecycleEvent::Rejected {
            correlation_id: correlation_id.clone(),
            why: why.to_string(),
            at,
        };
        let Outcome::Returned { attempts, .. } = pos.apply(event)? else {
            unreachable!("a rejection of an exit in flight returns the position to active")
        };
        self.exits_in_flight.remove(correlation_id);
        let mut events = vec![
            position_event(
                PositionChange::ExitRejected { attempt: attempts, why: why.to_string() },
                at,
                pos,
            ),
            alert(
                AlertLevel::Warning,
                "exit_absent",
                format!(
                    "exit {correlation_id} of position {} never reached the broker ({why}); placing attempt {}",
                    pos.id,
                    attempts + 1
                ),
                at,
            ),
        ];
        trigger_exit(pos, slot, trigger, &mut self.exits_in_flight, &mut self.retries, &mut events);
        Ok(events)
    }

    /// Takes a broker position the engine did not know under management.
    pub fn adopt(
        &mut self,
        id: PositionId,
        instrument: InstrumentKey,
        side: Side,
        quantity: Qty,
        price: Paise,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let new = NewPosition { id, instrument, side, quantity, entry_price: price, opened_at: at };
        self.open_position(new, Origin::Adopted)
    }

    /// Takes a broker position that no order of ours explains under management, at the
    /// broker's average price, marked as such (`Origin::AdoptedAtBrokerAverage`) and alerted:
    /// the broker's average is the day's for the contract, not this position's.
    pub fn adopt_at_broker_average(
        &mut self,
        new: NewPosition,
        why: &str,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let (id, at, price) = (new.id.clone(), new.opened_at, new.entry_price);
        let mut events = self.open_position(new, Origin::AdoptedAtBrokerAverage)?;
        events.push(alert(
            AlertLevel::Warning,
            "adopted_at_broker_average",
            format!("position {id} adopted at the broker's average price {price}, not its own fills: {why}"),
            at,
        ));
        Ok(events)
    }

    /// Closes an `Active` position the broker reports flat, at `price`, without any order; a
    /// held exit of it (never sent) is withdrawn first.
    pub fn close_at_broker(
        &mut self,
        id: &PositionId,
        price: Paise,
        at: Timestamp,
        why: &str,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let invalid = |why: String| CoreError::InvalidPosition { id: id.clone(), why };
        let slot = *self.by_id.get(id).ok_or_else(|| invalid("no such open position".into()))?;
        if price.0 <= 0 {
            return Err(invalid(format!("closing price {price} is not positive")));
        }
        let mut events = self.withdraw_held_exit(id, why, at)?;
        let pos = self.slots[slot].as_mut().expect("an indexed slot is live");
        if !pos.is_active() {
            return Err(invalid(format!("it is {}: its exit order decides", pos.lifecycle.name())));
        }
        let quantity = pos.open_quantity();
        let trigger =
            LifecycleEvent::Trigger { reason: ExitReason::ClosedAtBroker, price, at, stale: false };
        let Outcome::ExitStarted { correlation_id, .. } = pos.apply(trigger)? else {
            unreachable!("an active position starts an exit on a trigger")
        };
        self.exits_in_flight.insert(correlation_id.clone(), slot);
        events.extend(self.on_exit_filled(&correlation_id, price, quantity, at)?);
        events.push(alert(
            AlertLevel::Warning,
            "closed_at_broker",
            format!("position {id} closed locally at {price}: {why}"),
            at,
        ));
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::CoreParams;
    use super::*;
    use crate::domain::{Segment, Tick};
    use crate::risk::trading_state::TradingCell;

    const K: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
    const T0: Timestamp = Timestamp(1_763_958_600_000);

    fn core_with_long() -> ExitCore {
        let mut core = ExitCore::new(CoreParams::default(), TradingCell::active(T0));
        core.adopt(PositionId::new("p1"), K, Side::Long, Qty(75), Paise(10_000), T0).unwrap();
        core
    }

    fn stop(core: &mut ExitCore) -> CorrelationId {
        let tick = Tick::at(K, Paise(9_000), T0.plus_millis(10));
        let events = core.on_tick(&tick);
        events
            .iter()
            .find_map(|e| match e {
                CoreEvent::ExitIntent(i) => Some(i.correlation_id.clone()),
                _ => None,
            })
            .expect("the stop loss fires")
    }

    #[test]
    fn an_absent_exit_starts_the_next_attempt_at_once_with_its_reason_and_price() {
        let mut core = core_with_long();
        let first = stop(&mut core);
        assert_eq!(first.as_str(), "X1-p1");
        let events = core.on_exit_absent(&first, "not in the book", T0.plus_millis(20)).unwrap();
        let intent = events
            .iter()
            .find_map(|e| match e {
                CoreEvent::ExitIntent(i) => Some(i.clone()),
                _ => None,
            })
            .expect("a new exit order");
        assert_eq!(intent.correlation_id.as_str(), "X2-p1");
        assert_eq!(intent.purpose, OrderPurpose::Exit(ExitReason::StopLoss));
        assert_eq!((intent.reference_price, intent.quantity), (Paise(9_000), Qty(75)));
        assert!(core.on_exit_absent(&first, "again", T0).is_err(), "the first attempt is over");
        let p = core.position(&PositionId::new("p1")).unwrap();
        assert!(matches!(&p.lifecycle, Lifecycle::Exiting(x) if x.attempt == 2));
    }

    #[test]
    fn a_position_flat_at_the_broker_closes_locally_with_its_trade_and_no_order() {
        let mut core = core_with_long();
        let events = core
            .close_at_broker(&PositionId::new("p1"), Paise(10_500), T0.plus_millis(5), "flat")
            .unwrap();
        assert!(!events.iter().any(|e| matches!(e, CoreEvent::ExitIntent(_))), "never an order");
        let trade = events
            .iter()
            .find_map(|e| match e {
                CoreEvent::TradeClosed(t) => Some(t.clone()),
                _ => None,
            })
            .expect("a closed trade");
        assert_eq!(
            (trade.reason, trade.exit_price, trade.gross),
            (ExitReason::ClosedAtBroker, Paise(10_500), Paise(37_500))
        );
        assert!(core.position(&PositionId::new("p1")).is_none());
        assert_eq!(core.day().closed, 1);
    }

    #[test]
    fn only_an_active_position_can_be_closed_at_the_broker() {
        let mut core = core_with_long();
        stop(&mut core);
        let r = core.close_at_broker(&PositionId::new("p1"), Paise(10_500), T0, "flat");
        assert!(matches!(r, Err(CoreError::InvalidPosition { .. })), "{r:?}");
        let r = core.close_at_broker(&PositionId::new("nope"), Paise(10_500), T0, "flat");
        assert!(r.is_err());
    }

    #[test]
    fn the_local_view_shows_sides_quantities_and_exits_in_flight() {
        let mut core = core_with_long();
        core.adopt(PositionId::new("p2"), K, Side::Short, Qty(50), Paise(10_000), T0).unwrap();
        let v = core.local_view();
        assert_eq!(v.positions.len(), 2);
        assert!(v.positions.iter().all(|p| !p.exiting));
        stop(&mut core);
        let v = core.local_view();
        assert!(v.positions.iter().any(|p| p.exiting && p.id.as_str() == "p1"));
        assert_eq!(v.orders_in_flight.len(), 1);
        let x = &v.orders_in_flight[0];
        assert_eq!(x.intent.correlation_id.as_str(), "X1-p1");
        assert_eq!((x.intent.txn, x.intent.quantity, x.filled), (Txn::Sell, Qty(75), Qty(0)));
    }
}
