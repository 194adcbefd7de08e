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

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::ExitEngine;
use crate::broker::reconcile::{self, Adjustment, BrokerCheck, LocalView};
use crate::engine::seams::{EngineEvent, Reconciler};
use crate::exec::messages::{EngineCommand, EntryRefused};
use crate::runtime::WorkerCtx;

/// Pauses between failed startup attempts: from the first to the last, doubling.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// Runs [`Reconciler::startup`] on a scoped helper thread while this worker keeps beating: its
/// REST calls can each take up to the broker's request timeout, longer than the exit engine's
/// heartbeat limit, and the exit engine waiting for them is not stuck. A panic in the helper is
/// the exit engine's own (the scope re-raises it), so the supervisor restarts it as usual.
fn startup_beating(
    reconciler: &Arc<dyn Reconciler>,
    local: LocalView,
    ctx: &WorkerCtx,
) -> Result<Option<BrokerCheck>, String> {
    let stop = ctx.stop_signal().clone();
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name(format!("{}.startup", ctx.name()))
            .spawn_scoped(scope, move || {
                let _ = done_tx.send(reconciler.startup(&local, &|d| stop.sleep(d)));
            })
            .map_err(|e| format!("cannot start the startup reconciliation thread: {e}"))?;
        loop {
            ctx.beat();
            select! {
                recv(done_rx) -> result => {
                    // A dropped sender means the helper panicked: the scope re-raises it.
                    return result.unwrap_or_else(|_| Err("startup reconciliation panicked".into()));
                }
                default(ctx.beat_every()) => {}
            }
        }
    })
}

impl ExitEngine {
    /// Runs the startup reconciliation until it succeeds; `false` if the worker was stopped
    /// first. Meanwhile entries are refused and other commands wait for the start.
    pub(super) fn reconcile_before_trading(&mut self, ctx: &WorkerCtx) -> bool {
        let reconciler = self.shared.reconciler.clone();
        let mut pause = FIRST_RETRY;
        let mut deferred = Vec::new();
        loop {
            ctx.beat();
            // Outcomes queued by restart recovery (recorded fills) come first: what the broker
            // is asked about starts from them.
            while let Ok(event) = self.shared.channels.router_to_exit_engine_rx.try_recv() {
                self.on_order_event(event);
            }
            let local = self.shared.core.lock().local_view();
            match startup_beating(&reconciler, local, ctx) {
                Ok(None) => break,
                Ok(Some(check)) => {
                    self.on_broker_check(check, "startup");
                    reconciler.started();
                    log::info!(target: "exit_engine", "broker reconciled: trading starts");
                    break;
                }
                Err(why) => {
                    log::error!(target: "exit_engine", "startup reconciliation failed, trading does not start yet (retry in {pause:?}): {why}");
                    if !self.wait_refusing_entries(ctx, pause, &why, &mut deferred) {
                        return false;
                    }
                    pause = (pause * 2).min(LAST_RETRY);
                }
            }
        }
        for command in deferred {
            self.on_command(command);
        }
        true
    }

    /// Waits `pause` while answering entry requests with a refusal (an entry queued now would
    /// otherwise go out whenever trading starts, long after its caller gave up); keeps the
    /// other commands for the start. `false` if stopped.
    fn wait_refusing_entries(
        &mut self,
        ctx: &WorkerCtx,
        pause: Duration,
        why: &str,
        deferred: &mut Vec<EngineCommand>,
    ) -> bool {
        let until = Instant::now() + pause;
        let commands = self.shared.channels.commands_to_exit_engine_rx.clone();
        loop {
            ctx.beat();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            select! {
                recv(ctx.stopped()) -> _ => return false,
                recv(commands) -> command => match command {
                    Ok(EngineCommand::PlaceEntry { reply, .. }) => {
                        let refused = EntryRefused::new(
                            "trading_not_started",
                            format!("trading has not started: the broker's books are not reconciled ({why})"),
                        );
                        let _ = reply.send(Err(refused));
                    }
                    Ok(other) => deferred.push(other),
                    Err(_) => {}
                },
                default(left.min(ctx.beat_every())) => {}
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
