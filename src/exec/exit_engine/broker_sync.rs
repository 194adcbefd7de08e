//! The exit engine and the broker's books: the startup gate and the application of
//! reconciliation.
//!
//! Startup: before its first decision (and before it subscribes the positions' instruments),
//! the exit engine asks the broker's [`Reconciler`](crate::engine::seams::Reconciler) to read
//! the broker's books and settle every order in flight. Until that succeeds no rule is
//! evaluated and no order is placed; the reconciler's health component says why, and the
//! attempt is repeated with a growing pause. This is the one place the engine's startup order
//! is fixed: recovery (in `build`) → broker reconciliation and orders in flight settled (here)
//! → feed subscriptions (`start`) → rules.
//!
//! Reconciliation: what the reconciler read is compared with the positions held now
//! (`broker::reconcile::plan`), after the order outcomes already queued (the books were read
//! after them), and each adjustment goes through the usual decision protocol with a log line
//! and an audit record (`EngineEvent::Operator`, action `reconcile`). None places an order by
//! itself: an exit found absent starts its next attempt like any trigger would.

use std::time::Duration;

use super::ExitEngine;
use crate::broker::reconcile::{self, Adjustment, BrokerCheck};
use crate::engine::seams::EngineEvent;
use crate::runtime::WorkerCtx;

/// Pauses between failed startup attempts: from the first to the last, doubling.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

impl ExitEngine {
    /// Runs the startup reconciliation until it succeeds; `false` if the worker was stopped
    /// first.
    pub(super) fn reconcile_before_trading(&mut self, ctx: &WorkerCtx) -> bool {
        let reconciler = self.shared.reconciler.clone();
        let mut pause = FIRST_RETRY;
        loop {
            ctx.beat();
            let local = self.shared.core.lock().local_view();
            match reconciler.startup(&local, &|d| ctx.sleep(d)) {
                Ok(None) => return true,
                Ok(Some(check)) => {
                    self.on_broker_check(check, "startup");
                    reconciler.started();
                    log::info!(target: "exit_engine", "broker reconciled: trading starts");
                    return true;
                }
                Err(why) => {
                    log::error!(target: "exit_engine", "startup reconciliation failed, trading does not start yet (retry in {pause:?}): {why}");
                    if !ctx.sleep(pause) {
                        return false;
                    }
                    pause = (pause * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// Compares what the broker holds with the positions and applies the adjustments.
    pub(super) fn on_broker_check(&mut self, check: BrokerCheck, origin: &str) {
        // Outcomes queued before this command describe changes the books already show.
        while let Ok(event) = self.shared.channels.router_to_exit_engine_rx.try_recv() {
            self.on_order_event(event);
        }
        let plan = {
            let core = self.shared.core.lock();
            reconcile::plan(&check, &core.local_view())
        };
        for note in &plan.notes {
            log::warn!(target: "exit_engine", "reconciliation ({origin}): {note}");
        }
        for adjustment in plan.adjustments {
            self.adjust(adjustment, origin);
        }
    }

    fn adjust(&mut self, adjustment: Adjustment, origin: &str) {
        let s = self.shared.clone();
        let at = s.clock.now();
        let kind = adjustment.kind();
        let (detail, result) = match adjustment {
            Adjustment::Adopt { instrument, side, quantity, price, why } => {
                let id = s.ids.next();
                let detail = format!(
                    "adopted {side} {quantity} {instrument} at {price} as position {id}: {why}"
                );
                let r = self
                    .settle(|core| core.adopt(id.clone(), instrument, side, quantity, price, at));
                (detail, r)
            }
            Adjustment::CloseLocal { position, instrument, price, why } => {
                let detail =
                    format!("closed position {position} on {instrument} at {price}: {why}");
                let r = self.settle(|core| core.close_at_broker(&position, price, at, &why));
                (detail, r)
            }
            Adjustment::ExitAbsent { correlation_id, why } => {
                let detail =
                    format!("exit {correlation_id} never reached the broker ({why}): next attempt");
                let r = self.settle(|core| core.on_exit_absent(&correlation_id, &why, at));
                (detail, r)
            }
            Adjustment::EntryAbsent { correlation_id, why } => {
                let detail =
                    format!("entry {correlation_id} never reached the broker ({why}): rejected");
                let reason = format!("it never reached the broker ({why})");
                let r = self.settle(|core| core.on_entry_rejected(&correlation_id, &reason, at));
                (detail, r)
            }
        };
        match result {
            Ok(()) => {
                log::warn!(target: "exit_engine", "reconciliation ({origin}) {kind}: {detail}");
                s.sink.record(&EngineEvent::Operator {
                    action: "reconcile",
                    detail: format!("{origin} {kind}: {detail}"),
                    at,
                });
            }
            Err(e) => {
                log::error!(target: "exit_engine", "reconciliation ({origin}) {kind} not applied ({e}): {detail}")
            }
        }
    }
}
