//! The exit engine's inputs other than ticks: order outcomes from the router and commands from
//! the API, the PnL refresher, the heartbeat, demo entries and reloads. Each becomes one core
//! call under the decision protocol of the worker.

use std::time::Instant;

use super::ExitEngine;
use crate::domain::OrderPurpose;
use crate::domain::{Paise, Timestamp, Txn};
use crate::exec::core::{CoreError, CoreEvent};
use crate::exec::messages::{
    EngineCommand, EntryAccepted, EntryOrder, EntryRefused, ExitStarted, FlattenReport, OrderEvent,
    refusal_code,
};
use crate::exec::outbox::Effect;
use crate::exec::paper_gateway::PaperCash;
use crate::instruments::limits as exchange;
use crate::risk::Lifecycle;
use crate::risk::entry::{EntryRefusal, EntryRequest};

impl ExitEngine {
    pub(super) fn on_order_event(&mut self, event: OrderEvent) {
        let cid = event.correlation_id().clone();
        let settled: Result<(), CoreError> = match event {
            OrderEvent::Filled { purpose, fill } => {
                let f = fill;
                self.settle(|core| match purpose {
                    OrderPurpose::Entry => core.on_entry_filled_at_value(
                        &f.correlation_id,
                        f.price,
                        f.quantity,
                        f.value(),
                        f.at,
                    ),
                    OrderPurpose::Exit(_) => core.on_exit_filled_at_value(
                        &f.correlation_id,
                        f.price,
                        f.quantity,
                        f.value(),
                        f.at,
                    ),
                })
            }
            OrderEvent::Rejected { correlation_id, purpose, reason, at } => {
                self.settle(|core| match purpose {
                    OrderPurpose::Entry => core.on_entry_rejected(&correlation_id, &reason, at),
                    OrderPurpose::Exit(_) => core.on_exit_rejected(&correlation_id, &reason, at),
                })
            }
            OrderEvent::Accepted { order_id, .. } => {
                log::debug!(target: "exit_engine", "order {cid} accepted as {order_id}");
                Ok(())
            }
            OrderEvent::Unknown { detail, .. } => {
                log::warn!(target: "exit_engine", "order {cid}: outcome unknown ({detail}); its position waits for the broker's answer");
                Ok(())
            }
            OrderEvent::Absent { correlation_id, purpose, detail, at } => {
                self.settle(|core| match purpose {
                    OrderPurpose::Entry => core.on_entry_rejected(
                        &correlation_id,
                        &format!("it never reached the broker ({detail})"),
                        at,
                    ),
                    OrderPurpose::Exit(_) => core.on_exit_absent(&correlation_id, &detail, at),
                })
            }
        };
        if let Err(e) = settled {
            // A second report of an order already settled (a duplicate from the broker's
            // stream) lands here; so would a report for an order this engine never placed.
            log::warn!(target: "exit_engine", "order report for {cid} not applied: {e}");
        }
    }

    /// A core call that can fail, under the decision protocol; the error is returned.
    pub(super) fn settle(
        &mut self,
        f: impl FnOnce(&mut crate::exec::core::ExitCore) -> Result<Vec<CoreEvent>, CoreError>,
    ) -> Result<(), CoreError> {
        let (_, result) = self.decide_with(|core| match f(core) {
            Ok(events) => (events, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        });
        result
    }

    pub(super) fn on_command(&mut self, command: EngineCommand) {
        let now = self.h.clock.now();
        log::debug!(target: "exit_engine", "command {}", command.name());
        match command {
            EngineCommand::PlaceEntry { order, reply } => {
                let answer = match self.entry_refused_before_start() {
                    Some(refused) => Err(refused),
                    None => self.place_entry(&order),
                };
                let _ = reply.send(answer);
            }
            EngineCommand::Flatten { reply } => {
                let already = self
                    .h
                    .core
                    .lock()
                    .positions()
                    .filter(|p| matches!(p.lifecycle, Lifecycle::Exiting(_)))
                    .count();
                let (_, exits) = self.decide_with(|core| {
                    let events = core.flatten(now);
                    let exits = events
                        .iter()
                        .filter_map(|e| match e {
                            CoreEvent::ExitIntent(i) => Some(ExitStarted {
                                position_id: i.position_id.clone(),
                                correlation_id: i.correlation_id.clone(),
                                price: i.reference_price,
                            }),
                            _ => None,
                        })
                        .collect();
                    (events, exits)
                });
                let report = FlattenReport {
                    exits,
                    already_exiting: already,
                    trading: self.h.trading.status(),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(report);
                }
            }
            EngineCommand::Halt { reply } => {
                self.decide(|core| core.operator_halt(now));
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(self.h.trading.status()));
                }
            }
            EngineCommand::Resume { reply } => {
                let result = self.settle(|core| core.resume(now));
                let answer = result.map(|_| self.h.trading.status()).map_err(|e| e.to_string());
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            EngineCommand::CheckAccount => {
                self.decide(|core| core.check_account(now));
            }
            EngineCommand::Reload { risk, limits } => {
                let changed = self.h.core.lock().set_params(risk, limits);
                if changed {
                    log::info!(target: "exit_engine", "risk and limits reloaded: they apply from the next tick");
                } else {
                    log::info!(target: "exit_engine", "reload: risk and limits unchanged");
                }
            }
            EngineCommand::FallbackPrices(ticks) => {
                for tick in ticks {
                    self.on_tick(tick, false);
                }
            }
            EngineCommand::Reconcile(check) => self.on_broker_check(*check, "heartbeat"),
            EngineCommand::RetryExit { id, reply } => {
                let (_, answer) = self.decide_with(|core| match core.retry_exit(&id, now) {
                    Ok(events) => {
                        let started = events.iter().find_map(|e| match e {
                            CoreEvent::ExitIntent(i) => Some(ExitStarted {
                                position_id: i.position_id.clone(),
                                correlation_id: i.correlation_id.clone(),
                                price: i.reference_price,
                            }),
                            _ => None,
                        });
                        let answer =
                            started.ok_or(crate::exec::core::RetryExitError::NotRetryable {
                                id: id.clone(),
                                state: "active",
                            });
                        (events, answer)
                    }
                    Err(e) => (Vec::new(), Err(e)),
                });
                let _ = reply.send(answer);
            }
            EngineCommand::Prune => {
                let pruned = self.h.core.lock().prune(now);
                log::debug!(target: "exit_engine", "pruned {} prices and {} cooldowns", pruned.prices, pruned.cooldowns);
            }
        }
    }

    /// The exchange's rules for an entry (spec dhan-v2 §8.2) from the instrument master, and the
    /// per-order maxima of `[limits]`. An instrument the master does not know passes unchecked,
    /// except with a limit price, which needs its tick and band (`price_band_unknown`).
    /// Returns the limit price to place: on the tick toward the passive side, inside the band.
    fn exchange_check(
        &self,
        order: &EntryOrder,
        now: Timestamp,
    ) -> Result<Option<Paise>, EntryRefused> {
        let s = &self.h;
        let table = s.instruments.load();
        let Some(inst) = table.get(order.instrument) else {
            return match order.limit_price {
                None => Ok(None),
                Some(_) => Err(EntryRefused::new(
                    exchange::LimitError::BandUnknown.code(),
                    format!("{}: {}", order.instrument, exchange::LimitError::BandUnknown),
                )),
            };
        };
        let refused = |e: exchange::LimitError| {
            EntryRefused::new(e.code(), format!("{} ({}): {e}", inst.symbol, inst.key))
        };
        let limit = match order.limit_price {
            None => None,
            Some(p) => {
                Some(exchange::limit_price(inst, p, Txn::opening(order.side)).map_err(refused)?)
            }
        };
        let (square_off, max_lots, max_value) = {
            let core = s.core.lock();
            let limits = core.limits();
            (
                core.session_clock().params().square_off_time.to_naive(),
                limits.max_lots_per_order,
                limits.max_order_value,
            )
        };
        let reference = s.cache.tick(order.instrument).map(|t| t.ltp);
        exchange::check_entry(
            inst,
            order.quantity,
            reference,
            now.ist_date(),
            square_off,
            max_lots,
            max_value,
        )
        .map_err(refused)?;
        Ok(limit)
    }

    /// Checks an entry against the core (with the tick cache's price and the paper wallet's
    /// cash) and, if accepted, queues its order for the router.
    fn place_entry(&mut self, order: &EntryOrder) -> Result<EntryAccepted, EntryRefused> {
        let s = self.h.clone();
        let now = s.clock.now();
        let limit_price = match self.exchange_check(order, now) {
            Ok(limit) => limit,
            Err(refused) => {
                s.m.entries.with_label_values(&[refused.code]).inc();
                log::info!(target: "exit_engine", "entry {} {} {} refused ({}): {}", order.side, order.quantity, s.instruments.load().label(order.instrument), order.source.name(), refused.message);
                self.carry_out_pending();
                return Err(refused);
            }
        };
        let cash = s.paper_cash.as_ref().map(PaperCash::cash);
        let request = EntryRequest {
            position_id: s.ids.next(),
            instrument: order.instrument,
            side: order.side,
            quantity: order.quantity,
            available_cash: cash,
        };
        let decided = Instant::now();
        let result = {
            let mut core = s.core.lock();
            if let Some(tick) = s.cache.tick(order.instrument) {
                core.note_price(&tick);
            }
            let result = core.begin_entry_at(&request, now, limit_price);
            if let Ok(intent) = &result {
                s.outbox.push(Effect::Entry(intent.clone()), decided);
            }
            result
        };
        let answer = match result {
            Ok(intent) => {
                s.m.entries.with_label_values(&["accepted"]).inc();
                log::info!(target: "exit_engine", "entry {} for position {}: {} {} {} ({}) at about {} ({})", intent.correlation_id, intent.position_id, order.side, order.quantity, order.instrument, s.instruments.load().label(order.instrument), intent.reference_price, order.source.name());
                Ok(EntryAccepted {
                    position_id: intent.position_id,
                    correlation_id: intent.correlation_id,
                    reference_price: intent.reference_price,
                })
            }
            Err(refusal) => {
                s.m.entries.with_label_values(&[refusal_code(&refusal)]).inc();
                let mut refused = EntryRefused::from_refusal(&refusal);
                if let EntryRefusal::NoPrice { instrument } = refusal
                    && s.subscriptions.set().watch(instrument)
                {
                    // Subscribe it, so that a retry finds a price.
                    refused.message.push_str("; subscribed it now, retry once it has a price");
                }
                log::info!(target: "exit_engine", "entry {} {} {} refused ({}): {}", order.side, order.quantity, order.instrument, order.source.name(), refused.message);
                Err(refused)
            }
        };
        self.carry_out_pending();
        answer
    }
}
