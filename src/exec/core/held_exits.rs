//! Exits held while the broker's books are not reconciled (live mode, after a restart).
//!
//! The rules run on recovered positions from the first tick, before the startup
//! reconciliation with Dhan has succeeded; an exit they decide meanwhile starts as usual — the
//! position becomes `Exiting` under its deterministic correlation id (`X<attempt>-<id>`), so a
//! further trigger does nothing — but its order is *held* here instead of going to the router:
//! it is neither journaled nor sent. When a reconciliation succeeds, the exit engine releases
//! the held orders of positions whose instrument the broker's books confirm (both reads agree
//! with the engine's net quantity), first, in decision order, under the id decided at the
//! trigger. A position the broker reports flat is closed by reconciliation (`close_at_broker`),
//! its held exit withdrawn; one the books do not confirm stays held (and alerted) until a later
//! round confirms or closes it. Holding new exits ends with the first successful
//! reconciliation.
//!
//! - [`ExitCore::hold_exits`]: from now on, new exit orders are held;
//! - [`ExitCore::hold_new_exits`]: the exit engine passes every decision's events through it;
//!   it moves the exit intents out of them while holding;
//! - [`ExitCore::release_held_exits`]: ends the holding and hands back the confirmed orders;
//! - a held exit is not an order in flight: reconciliation sees its position as `Active`
//!   (`local_view`), and `close_at_broker` withdraws it.

use std::collections::HashSet;

use crate::domain::{
    CorrelationId, InstrumentKey, OrderIntent, OrderPurpose, PositionId, Timestamp,
};
use crate::risk::correlation;
use crate::risk::position::{Lifecycle, LifecycleEvent, Outcome};

use super::{AlertLevel, CoreError, CoreEvent, ExitCore, PositionChange, alert, position_event};

/// The held exit orders and whether new ones are held.
#[derive(Debug, Default)]
pub(super) struct HeldExits {
    holding: bool,
    /// In decision order.
    intents: Vec<OrderIntent>,
    /// Exits a previous run journaled ([`ExitCore::resume_journaled_exit`]): never held.
    sent_before: HashSet<CorrelationId>,
    /// Exits this run handed to the router (released from the hold, or decided once it
    /// ended): the router places and settles them, so a later startup round (an exit engine
    /// respawned before the first round was marked done) must not settle them too.
    handed_over: HashSet<CorrelationId>,
}

impl HeldExits {
    pub(super) fn contains(&self, cid: &CorrelationId) -> bool {
        self.intents.iter().any(|i| &i.correlation_id == cid)
    }

    /// Whether this run handed the exit to the router (see `handed_over`).
    pub(super) fn handed_over(&self, cid: &CorrelationId) -> bool {
        self.handed_over.contains(cid)
    }
}

impl ExitCore {
    /// From now on, exit orders decided are held until [`ExitCore::release_held_exits`].
    pub fn hold_exits(&mut self) {
        self.held.holding = true;
    }

    /// Whether new exit orders are being held.
    pub fn is_holding_exits(&self) -> bool {
        self.held.holding
    }

    /// The held exit orders, in decision order.
    pub fn held_exits(&self) -> &[OrderIntent] {
        &self.held.intents
    }

    /// While holding, moves every exit intent out of `events` into the held orders, each with
    /// a warning alert in its place.
    pub fn hold_new_exits(&mut self, events: &mut Vec<CoreEvent>) {
        if !self.held.holding {
            for e in events.iter() {
                if let CoreEvent::ExitIntent(i) = e
                    && !self.held.sent_before.contains(&i.correlation_id)
                {
                    self.held.handed_over.insert(i.correlation_id.clone());
                }
            }
            return;
        }
        if !events.iter().any(|e| matches!(e, CoreEvent::ExitIntent(_))) {
            return;
        }
        for event in std::mem::take(events) {
            match event {
                CoreEvent::ExitIntent(intent)
                    if !self.held.sent_before.contains(&intent.correlation_id) =>
                {
                    events.push(alert(
                        AlertLevel::Warning,
                        "exit_held",
                        format!(
                            "exit {} of position {} held: the broker's books are not reconciled yet; it is sent once they confirm the position",
                            intent.correlation_id, intent.position_id
                        ),
                        intent.created_at,
                    ));
                    self.held.intents.push(intent);
                }
                other => events.push(other),
            }
        }
    }

    /// Ends the holding of new exits and hands back, as exit intents in decision order, the
    /// held orders of positions on instruments `confirmed` by the broker's books; the others
    /// stay held, named in a critical alert.
    pub fn release_held_exits(
        &mut self,
        confirmed: impl Fn(InstrumentKey) -> bool,
        at: Timestamp,
    ) -> Vec<CoreEvent> {
        self.held.holding = false;
        let mut events = Vec::new();
        let mut still = Vec::new();
        for intent in std::mem::take(&mut self.held.intents) {
            let live = self.exits_in_flight.contains_key(&intent.correlation_id);
            if !live {
                // Its position moved on (closed or withdrawn): nothing to send.
                continue;
            }
            if confirmed(intent.instrument) {
                self.held.handed_over.insert(intent.correlation_id.clone());
                events.push(CoreEvent::ExitIntent(intent));
            } else {
                still.push(intent);
            }
        }
        if !still.is_empty() {
            let names: Vec<String> = still
                .iter()
                .map(|i| format!("{} of {} on {}", i.correlation_id, i.position_id, i.instrument))
                .collect();
            events.push(alert(
                AlertLevel::Critical,
                "exit_held_unconfirmed",
                format!(
                    "{} exits stay held: the broker's books do not confirm their positions ({}); an operator must look",
                    still.len(),
                    names.join(", ")
                ),
                at,
            ));
        }
        self.held.intents = still;
        events
    }

    /// Withdraws the held exit of position `id`, if it has one: the position is `Active`
    /// again (the attempt counted, as for a rejection). Used when reconciliation finds the
    /// position flat at the broker.
    pub(super) fn withdraw_held_exit(
        &mut self,
        id: &PositionId,
        why: &str,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let Some(index) = self.held.intents.iter().position(|i| &i.position_id == id) else {
            return Ok(Vec::new());
        };
        let intent = self.held.intents.remove(index);
        let cid = intent.correlation_id;
        let slot = self.exit_slot(&cid)?;
        let pos = self.slots[slot].as_mut().expect("an exit in flight points at a live slot");
        let why = format!("held exit {cid} withdrawn, never sent: {why}");
        let event = LifecycleEvent::Rejected { correlation_id: cid.clone(), why: why.clone(), at };
        let Outcome::Returned { attempts, .. } = pos.apply(event)? else {
            unreachable!("withdrawing a held exit returns the position to active")
        };
        self.exits_in_flight.remove(&cid);
        Ok(vec![position_event(PositionChange::ExitRejected { attempt: attempts, why }, at, pos)])
    }

    /// An exit order a previous run of the process journaled (so possibly sent) for a position
    /// this run opened only later, from its entry's fills settled at startup: the position
    /// starts that exit under the journaled id, reason and trigger price, and the order goes
    /// to the router at once, held or not (the gateway never sends a journaled id again: it
    /// settles it with Dhan by correlation id). Without this the startup reconciliation sees
    /// an `Active` position the broker reports flat (or netted by another position) and
    /// closes it `closed_at_broker`, or adopts the difference.
    ///
    /// The journaled attempt may be beyond this run's next one (the previous run's earlier
    /// attempts were rejected before the kill): the position resumes at the journaled attempt.
    /// A position already `Exiting` under that id with its order held is released the same
    /// way; one under another id, or with as many attempts or more, is left alone
    /// (`Ok(empty)`).
    pub fn resume_journaled_exit(
        &mut self,
        intent: &OrderIntent,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let id = &intent.position_id;
        let cid = &intent.correlation_id;
        let invalid = |why: String| CoreError::InvalidPosition { id: id.clone(), why };
        let OrderPurpose::Exit(reason) = intent.purpose else {
            return Err(invalid(format!("{cid} is not an exit")));
        };
        let slot = *self.by_id.get(id).ok_or_else(|| invalid("no such open position".into()))?;
        if let Some(i) = self.held.intents.iter().position(|h| &h.correlation_id == cid) {
            let held = self.held.intents.remove(i);
            self.held.sent_before.insert(cid.clone());
            return Ok(vec![CoreEvent::ExitIntent(held)]);
        }
        // The journaled attempt may be a later one than this run's next: the earlier attempts
        // were the previous run's (rejected or proved absent before the kill), and a position
        // opened from its entry's fills knows none of them. It resumes at the journaled one;
        // an earlier attempt this run's rules decided meanwhile was held, never sent, and
        // gives way.
        let journaled = correlation::parse(cid.as_str()).map_or(0, |p| p.attempt);
        let mut events = Vec::new();
        if let Some(Lifecycle::Exiting(x)) = self.slots[slot].as_ref().map(|p| &p.lifecycle)
            && self.held.contains(&x.correlation_id)
            && x.attempt < journaled
        {
            events =
                self.withdraw_held_exit(id, &format!("the previous run journaled {cid}"), at)?;
        }
        let pos = self.slots[slot].as_mut().expect("an indexed slot is live");
        let Lifecycle::Active { attempts, .. } = &mut pos.lifecycle else { return Ok(Vec::new()) };
        if journaled <= *attempts || correlation::exit_id(id, journaled).ok().as_ref() != Some(cid)
        {
            return Ok(Vec::new());
        }
        *attempts = journaled - 1;
        let trigger = LifecycleEvent::Trigger {
            reason,
            price: intent.reference_price,
            at: intent.created_at,
            stale: intent.price_is_stale,
        };
        let Outcome::ExitStarted { correlation_id, attempt } = pos.apply(trigger)? else {
            unreachable!("an active position starts an exit on a trigger")
        };
        self.exits_in_flight.insert(correlation_id.clone(), slot);
        self.held.sent_before.insert(correlation_id.clone());
        let resumed = OrderIntent {
            correlation_id,
            quantity: pos.open_quantity(),
            created_at: intent.created_at,
            ..intent.clone()
        };
        let change = PositionChange::ExitStarted { reason, attempt };
        events.extend([CoreEvent::ExitIntent(resumed), position_event(change, at, pos)]);
        Ok(events)
    }

    /// Whether the exit of an `Exiting` position is held (never sent).
    pub(super) fn exit_is_held(&self, lifecycle: &Lifecycle) -> bool {
        matches!(lifecycle, Lifecycle::Exiting(x) if self.held.contains(&x.correlation_id))
    }
}

#[cfg(test)]
mod tests {
    use super::super::CoreParams;
    use super::*;
    use crate::domain::{ExitReason, OrderPurpose, Paise, Qty, Segment, Side, Tick};
    use crate::risk::trading_state::TradingCell;

    const K: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
    const L: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);
    const T0: Timestamp = Timestamp(1_763_958_600_000);

    /// Long p1 on K and long p2 on L, both at 100.00 (stop loss at 90.00 by default), exits
    /// held.
    fn holding() -> ExitCore {
        let mut core = ExitCore::new(CoreParams::default(), TradingCell::active(T0));
        core.adopt(PositionId::new("p1"), K, Side::Long, Qty(75), Paise(10_000), T0).unwrap();
        core.adopt(PositionId::new("p2"), L, Side::Long, Qty(75), Paise(10_000), T0).unwrap();
        core.hold_exits();
        core
    }

    fn tick(core: &mut ExitCore, k: InstrumentKey, ltp: i64, ms: i64) -> Vec<CoreEvent> {
        let t = Tick { exchange_time: T0, ..Tick::at(k, Paise(ltp), T0.plus_millis(ms)) };
        let mut events = core.on_tick(&t);
        core.hold_new_exits(&mut events);
        events
    }

    fn intents(events: &[CoreEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                CoreEvent::ExitIntent(i) => Some(i.correlation_id.to_string()),
                _ => None,
            })
            .collect()
    }

    fn alerts(events: &[CoreEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                CoreEvent::Alert(a) => Some(a.code.clone()),
                _ => None,
            })
            .collect()
    }

    fn held(core: &ExitCore) -> Vec<String> {
        core.held_exits().iter().map(|i| i.correlation_id.to_string()).collect()
    }

    #[test]
    fn a_trigger_while_holding_starts_the_exit_but_holds_its_order_and_a_second_trigger_adds_none()
    {
        let mut core = holding();
        let events = tick(&mut core, K, 8_900, 10);
        assert!(intents(&events).is_empty(), "nothing for the router: {events:?}");
        assert_eq!(alerts(&events), ["exit_held"]);
        assert_eq!(held(&core), ["X1-p1"]);
        let p = core.position(&PositionId::new("p1")).unwrap();
        assert!(matches!(&p.lifecycle, Lifecycle::Exiting(x) if x.attempt == 1));
        // A lower price, then a recovery: no second intent, the held one keeps its trigger.
        assert!(
            tick(&mut core, K, 8_000, 20).iter().all(|e| !matches!(e, CoreEvent::ExitIntent(_)))
        );
        tick(&mut core, K, 10_100, 30);
        assert_eq!(held(&core), ["X1-p1"]);
        let x = &core.held_exits()[0];
        assert_eq!((x.reference_price, x.quantity), (Paise(8_900), Qty(75)));
        assert_eq!(x.purpose, OrderPurpose::Exit(ExitReason::StopLoss));
        // A held exit is not an order in flight, and its position is not exiting for
        // reconciliation.
        let view = core.local_view();
        assert!(view.orders_in_flight.is_empty(), "{view:?}");
        assert!(view.positions.iter().all(|p| !p.exiting));
    }

    #[test]
    fn release_sends_the_confirmed_in_decision_order_under_their_ids_and_keeps_the_rest() {
        // (confirmed instruments, sent, still held)
        let table: [(&[InstrumentKey], &[&str], &[&str]); 4] = [
            (&[K, L], &["X1-p2", "X1-p1"], &[]),
            (&[K], &["X1-p1"], &["X1-p2"]),
            (&[L], &["X1-p2"], &["X1-p1"]),
            (&[], &[], &["X1-p2", "X1-p1"]),
        ];
        for (confirmed, sent, kept) in table {
            let mut core = holding();
            tick(&mut core, L, 8_900, 10);
            tick(&mut core, K, 8_900, 20);
            let events = core.release_held_exits(|k| confirmed.contains(&k), T0.plus_millis(30));
            assert_eq!(intents(&events), sent, "confirmed {confirmed:?}");
            assert_eq!(held(&core), kept, "confirmed {confirmed:?}");
            let critical = alerts(&events).contains(&"exit_held_unconfirmed".to_string());
            assert_eq!(critical, !kept.is_empty(), "confirmed {confirmed:?}: {events:?}");
            assert!(!core.is_holding_exits(), "the first release ends the holding");
            // A later round that confirms everything sends the rest, once.
            let later = core.release_held_exits(|_| true, T0.plus_millis(40));
            assert_eq!(intents(&later), kept);
            assert!(core.held_exits().is_empty());
            assert!(intents(&core.release_held_exits(|_| true, T0.plus_millis(50))).is_empty());
        }
    }

    fn journaled(id: &str, attempt: u32) -> OrderIntent {
        let position = PositionId::new(id);
        OrderIntent {
            correlation_id: correlation::exit_id(&position, attempt).unwrap(),
            position_id: position,
            instrument: K,
            txn: crate::domain::Txn::Sell,
            quantity: Qty(75),
            purpose: OrderPurpose::Exit(ExitReason::StopLoss),
            reference_price: Paise(8_900),
            price_is_stale: false,
            created_at: T0,
            limit_price: None,
        }
    }

    #[test]
    fn a_journaled_exit_resumes_under_its_own_id_never_held_and_the_books_see_it_in_flight() {
        let mut core = holding();
        let mut events = core.resume_journaled_exit(&journaled("p1", 1), T0).unwrap();
        core.hold_new_exits(&mut events);
        assert_eq!(intents(&events), ["X1-p1"], "goes to the router while holding");
        assert!(core.held_exits().is_empty());
        let view = core.local_view();
        let p1 = view.positions.iter().find(|p| p.id.as_str() == "p1").unwrap();
        assert!(p1.exiting, "compared as an exit in flight, not as Active");
        // Its reason and trigger price are the journal's: a fill closes it as a stop loss.
        let cid = correlation::exit_id(&PositionId::new("p1"), 1).unwrap();
        let done = core.on_exit_filled(&cid, Paise(8_900), Qty(75), T0.plus_millis(5)).unwrap();
        let closed = done.iter().find_map(|e| match e {
            CoreEvent::TradeClosed(t) => Some((t.reason, t.exit_price, t.attempt)),
            _ => None,
        });
        assert_eq!(closed, Some((ExitReason::StopLoss, Paise(8_900), 1)));
    }

    #[test]
    fn a_journaled_exit_releases_the_same_held_exit_and_ignores_another_attempt_or_position() {
        let mut core = holding();
        assert_eq!(intents(&tick(&mut core, K, 8_900, 10)), Vec::<String>::new());
        assert_eq!(held(&core), ["X1-p1"]);
        let mut events = core.resume_journaled_exit(&journaled("p1", 1), T0).unwrap();
        core.hold_new_exits(&mut events);
        assert_eq!(intents(&events), ["X1-p1"]);
        assert!(core.held_exits().is_empty());
        // p2 is Active with no attempt (opened from its entry's fills after the restart): its
        // journaled X2 (the previous run's X1 was rejected before the kill) resumes it at
        // attempt 2; an Exiting position is left alone; p9 is not open.
        assert_eq!(
            intents(&core.resume_journaled_exit(&journaled("p2", 2), T0).unwrap()),
            ["X2-p2"]
        );
        let view = core.local_view();
        assert!(view.positions.iter().any(|p| p.id.as_str() == "p2" && p.exiting));
        assert!(core.resume_journaled_exit(&journaled("p2", 3), T0).unwrap().is_empty());
        assert!(core.resume_journaled_exit(&journaled("p9", 1), T0).is_err());
    }

    #[test]
    fn an_exit_this_run_released_or_decided_is_not_settled_again_by_a_later_startup_round() {
        // Found by the soak campaign: the exit engine panicked right after the first round
        // released X1; its successor carried X1 out and ran the startup round again, whose
        // lookup found X1 not yet at the broker, called it absent and sent X2: both traded.
        let mut core = holding();
        tick(&mut core, K, 8_900, 10);
        assert_eq!(intents(&core.release_held_exits(|_| true, T0.plus_millis(20))), ["X1-p1"]);
        assert!(core.orders_in_flight().is_empty(), "X1 is the router's to place and settle");
        // Decided once the holding ended: the router's too.
        assert_eq!(intents(&tick(&mut core, L, 8_900, 30)), ["X1-p2"]);
        assert!(core.orders_in_flight().is_empty());
        // Its position is still an exit in flight for the books.
        assert!(core.local_view().positions.iter().all(|p| p.exiting));
    }

    #[test]
    fn after_the_release_new_exits_go_out_at_once() {
        let mut core = holding();
        assert!(core.release_held_exits(|_| true, T0).is_empty());
        assert_eq!(intents(&tick(&mut core, K, 8_900, 10)), ["X1-p1"]);
        assert!(core.held_exits().is_empty());
    }

    #[test]
    fn a_position_flat_at_the_broker_is_closed_and_its_held_exit_dropped() {
        let mut core = holding();
        tick(&mut core, K, 8_900, 10);
        let events = core
            .close_at_broker(&PositionId::new("p1"), Paise(9_500), T0.plus_millis(20), "flat")
            .unwrap();
        assert!(intents(&events).is_empty(), "never an order: {events:?}");
        let trade = events
            .iter()
            .find_map(|e| match e {
                CoreEvent::TradeClosed(t) => Some(t.clone()),
                _ => None,
            })
            .expect("a closed trade");
        assert_eq!((trade.reason, trade.exit_price), (ExitReason::ClosedAtBroker, Paise(9_500)));
        assert!(core.held_exits().is_empty());
        assert!(intents(&core.release_held_exits(|_| true, T0.plus_millis(30))).is_empty());
    }

    #[test]
    fn without_holding_nothing_is_held() {
        let mut core = ExitCore::new(CoreParams::default(), TradingCell::active(T0));
        core.adopt(PositionId::new("p1"), K, Side::Long, Qty(75), Paise(10_000), T0).unwrap();
        assert_eq!(intents(&tick(&mut core, K, 8_900, 10)), ["X1-p1"]);
        assert!(core.held_exits().is_empty());
    }
}
