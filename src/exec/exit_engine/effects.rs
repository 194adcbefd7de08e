//! Carrying out the exit engine's decided effects, oldest first: orders to the router, position
//! changes to the subscriptions and the PnL refresher, one log line per event that matters,
//! metrics, and every event to the persistence sink. An effect leaves the outbox only once it
//! is done.

use crossbeam_channel::TrySendError;

use super::ExitEngine;
use crate::exec::core::{AlertLevel, CoreEvent, PositionChange};
use crate::exec::messages::RouterOrder;
use crate::exec::outbox::{Effect, Pending};
use crate::exec::seams::EngineEvent;

impl ExitEngine {
    /// Carries out every effect in the outbox, popping each once done.
    pub(super) fn carry_out_pending(&mut self) {
        while let Some(pending) = self.h.outbox.front() {
            self.carry_out(pending);
            self.h.outbox.pop_front();
        }
        self.h.m.outbox.set(0);
    }

    fn carry_out(&mut self, pending: Pending) {
        let Pending { effect, decided } = pending;
        match effect {
            Effect::Entry(intent) => {
                // The entry is pending now: `/v1/pnl` counts it at once, not at the next idle
                // refresh (30 s while no position is open).
                self.h.wake_pnl();
                let order = RouterOrder { intent, decided };
                if let Err(TrySendError::Full(order)) = self.h.entries_to_router_tx.try_send(order)
                {
                    // The router is far behind: give the entry up rather than block exits.
                    let cid = order.intent.correlation_id;
                    let at = self.h.clock.now();
                    log::warn!(target: "exit_engine", "entry {cid} dropped: the router's entry queue is full");
                    let events = self
                        .h
                        .core
                        .lock()
                        .on_entry_rejected(&cid, "the router's entry queue is full", at)
                        .unwrap_or_default();
                    // Carried out after the current effect, by the loop that called us.
                    self.h.outbox.push_events(events, decided);
                }
            }
            Effect::Event(CoreEvent::ExitIntent(intent)) => {
                // The order goes to the router first and is recorded after: the recording
                // (the store ignores an intent; the router records the order it sends) is off
                // the path to the wire. A panic in between carries the effect out again, and
                // the router's ledger drops the repeat.
                crate::runtime::hops::stamp(crate::runtime::hops::Hop::Decided);
                let order = RouterOrder { intent: intent.clone(), decided };
                // The receiver lives as long as the engine: an unbounded send cannot fail.
                let _ = self.h.exits_to_router_tx.send(order);
                self.h.sink.record(&EngineEvent::Core(CoreEvent::ExitIntent(intent)));
            }
            Effect::Event(event) => {
                self.h.sink.record(&EngineEvent::Core(event.clone()));
                self.on_core_event(event, decided);
            }
        }
    }

    fn on_core_event(&mut self, event: CoreEvent, decided: std::time::Instant) {
        let s = self.h.clone();
        match event {
            CoreEvent::ExitIntent(intent) => {
                // Carried out by `carry_out` before this; kept for completeness.
                let _ = s.exits_to_router_tx.send(RouterOrder { intent, decided });
            }
            CoreEvent::Position(ev) => {
                let p = &ev.position;
                match &ev.change {
                    PositionChange::Opened => {
                        // A position on an instrument the reader already forwards needs no
                        // catch-up from the cache.
                        let forwarded = s.subscriptions.set().is_position(p.instrument);
                        s.subscriptions.subscribe(&p.id, p.instrument);
                        if !forwarded {
                            self.catching_up.insert(p.instrument);
                        }
                        s.wake_pnl();
                        log::info!(target: "exit_engine", "position {} opened: {} {} {} at {} ({})", p.id, p.side, p.quantity, p.instrument, p.entry_price, ev.at.to_ist_iso());
                    }
                    PositionChange::ExitStarted { reason, attempt } => {
                        let (price, cid) = match &p.lifecycle {
                            crate::risk::Lifecycle::Exiting(x) => {
                                (x.trigger_price, x.correlation_id.as_str())
                            }
                            _ => (p.last_price, ""),
                        };
                        log::info!(target: "exit_engine", "position {} exiting: {reason} at {price} (attempt {attempt}, order {cid})", p.id);
                    }
                    PositionChange::PartFilled { remaining } => {
                        log::info!(target: "exit_engine", "position {} exit part filled, {remaining} still open", p.id);
                    }
                    PositionChange::ExitRejected { attempt, why } => {
                        log::warn!(target: "exit_engine", "position {} exit attempt {attempt} rejected ({why}); active again, retried per the exit retry policy", p.id);
                    }
                    PositionChange::ExitBlocked { cause, why, retry_at } => {
                        s.wake_pnl();
                        log::error!(target: "exit_engine", "position {} exit blocked ({cause}: {why}); next try at {}", p.id, retry_at.to_ist_iso());
                    }
                    PositionChange::Exited => {
                        s.subscriptions.unsubscribe(&p.id);
                        s.wake_pnl();
                    }
                }
            }
            CoreEvent::TradeClosed(t) => {
                s.m.exits.with_label_values(&[t.reason.code()]).inc();
                log::info!(target: "exit_engine", "position {} closed {}: {} {} {} entered {} exited {} at {}; gross {} charges {} net {}", t.position_id, t.reason, t.side, t.quantity, t.instrument, t.entry_price, t.exit_price, t.exited_at.to_ist_iso(), t.gross, t.charges(), t.net);
            }
            CoreEvent::TradingState(change) => {
                s.m.trading_state.set(change.current.name());
                s.wake_pnl();
                log::warn!(target: "exit_engine", "trading {} -> {} ({}) at {}", change.prev, change.current, change.reason, change.at.to_ist_iso());
            }
            CoreEvent::SessionStarted { session, at } => {
                s.wake_pnl();
                log::info!(target: "exit_engine", "new trading session {session} at {}: day counters reset", at.to_ist_iso());
            }
            CoreEvent::Alert(a) => {
                s.m.alert(&a.code, a.level);
                if a.code == "entry_rejected" {
                    // An entry rejected or proved absent no longer counts as pending.
                    s.wake_pnl();
                }
                match a.level {
                    AlertLevel::Info => {
                        log::info!(target: "exit_engine", "[{}] {}", a.code, a.message)
                    }
                    AlertLevel::Warning => {
                        log::warn!(target: "exit_engine", "[{}] {}", a.code, a.message)
                    }
                    AlertLevel::Critical => {
                        log::error!(target: "exit_engine", "[{}] {}", a.code, a.message)
                    }
                }
            }
        }
    }
}
