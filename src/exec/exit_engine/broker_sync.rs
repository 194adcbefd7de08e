//! The exit engine and the broker's books: the startup reconciliation, run in the background,
//! and the application of reconciliation.
//!
//! Startup (live mode, while [`Reconciler::startup_pending`]): the worker subscribes the
//! positions and evaluates the rules from the first tick, and meanwhile asks the broker's
//! [`Reconciler`] on a helper thread to read the broker's books and settle every order in
//! flight (its REST calls may each outlast the exit engine's heartbeat limit; the worker keeps
//! beating). Until that succeeds, exit orders decided are held in the core
//! (`core::held_exits`: the position is `Exiting` under its correlation id, nothing is
//! journaled or sent), entries are refused (`trading_not_started`), a failed attempt is
//! repeated after a growing pause, and after `broker.startup_reconcile_alert_secs` a critical
//! alert (`startup_reconciliation_late`) is raised, repeated every minute while it lasts. When
//! it succeeds, its adjustments are applied and the held exits of the positions the books
//! confirm go to the router at once, before anything else; the others stay held until a later
//! round confirms (or closes) their positions.
//!
//! Reconciliation: what the reconciler read is compared with the positions held now
//! (`broker::reconcile::plan`), after the order outcomes already queued (the books were read
//! after them), and each adjustment goes through the usual decision protocol with a log line
//! and an audit record (`EngineEvent::Operator`, action `reconcile`). None places an order by
//! itself: an exit found absent starts its next attempt like any trigger would.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError};

use super::ExitEngine;
use super::late_alarm::{LateAlarm, REPEAT_EVERY};
use crate::broker::reconcile::{self, Adjustment, BrokerCheck, PriceSource};
use crate::exec::core::{Alert, AlertLevel, CoreEvent, NewPosition};
use crate::exec::messages::EntryRefused;
use crate::exec::seams::{EngineEvent, Reconciler};
use crate::risk::position::Origin;
use crate::runtime::WorkerCtx;

/// Pauses between failed startup attempts: from the first to the last, doubling.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

type Answer = Result<Option<BrokerCheck>, String>;

/// The startup reconciliation while it has not succeeded.
pub(super) struct StartupSync {
    /// The attempt running on the helper thread, and where its answer arrives.
    attempt: Option<(JoinHandle<()>, Receiver<Answer>)>,
    /// When the next attempt may start.
    retry_at: Instant,
    pause: Duration,
    alarm: LateAlarm,
    last_error: Option<String>,
}

impl StartupSync {
    fn new(alert_after: Duration) -> StartupSync {
        let now = Instant::now();
        StartupSync {
            attempt: None,
            retry_at: now,
            pause: FIRST_RETRY,
            alarm: LateAlarm::new(now, alert_after, REPEAT_EVERY),
            last_error: None,
        }
    }

    /// Waits for the helper thread, if one runs (it stops early once the worker is told to).
    fn join(&mut self) {
        if let Some((helper, _)) = self.attempt.take() {
            let _ = helper.join();
        }
    }
}

impl ExitEngine {
    /// Live mode after a (re)start: holds exit orders from now on and starts the first attempt
    /// of the startup reconciliation. Nothing to do when none is pending (paper trading, or an
    /// earlier run of this worker completed it).
    pub(super) fn begin_startup_sync(&mut self, ctx: &WorkerCtx) {
        if !self.h.reconciler.startup_pending() {
            return;
        }
        self.h.core.lock().hold_exits();
        log::warn!(target: "exit_engine", "the broker's books are not reconciled yet: rules run, exits decided meanwhile are held until the reconciliation confirms their positions, entries are refused");
        self.startup = Some(StartupSync::new(self.h.startup_reconcile_alert));
        self.start_startup_attempt(ctx);
    }

    /// Starts an attempt on a helper thread with the positions and orders in flight as they
    /// are now (after the order outcomes already queued: restart recovery's recorded fills).
    fn start_startup_attempt(&mut self, ctx: &WorkerCtx) {
        while let Ok(event) = self.h.router_to_exit_engine_rx.try_recv() {
            self.on_order_event(event);
        }
        let Some(sync) = self.startup.as_mut() else { return };
        let local = self.h.core.lock().local_view();
        let reconciler: Arc<dyn Reconciler> = self.h.reconciler.clone();
        let stop = ctx.stop_signal().clone();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let spawned =
            std::thread::Builder::new().name(format!("{}.startup", ctx.name())).spawn(move || {
                let _ = done_tx.send(reconciler.startup(&local, &|d| stop.sleep(d)));
            });
        match spawned {
            Ok(helper) => sync.attempt = Some((helper, done_rx)),
            Err(e) => {
                let why = format!("cannot start the startup reconciliation thread: {e}");
                log::error!(target: "exit_engine", "{why}");
                sync.last_error = Some(why);
                sync.retry_at = Instant::now() + sync.pause;
            }
        }
    }

    /// Where the running attempt's answer arrives (never, when none runs).
    pub(super) fn startup_answers(&self) -> Receiver<Answer> {
        match self.startup.as_ref().and_then(|s| s.attempt.as_ref()) {
            Some((_, answers)) => answers.clone(),
            None => crossbeam_channel::never(),
        }
    }

    /// On every loop: the next attempt when its pause is over, the alert when it is due.
    pub(super) fn startup_upkeep(&mut self, ctx: &WorkerCtx) {
        let Some(sync) = self.startup.as_mut() else { return };
        let now = Instant::now();
        let waited = sync.alarm.due(now);
        let retry = sync.attempt.is_none() && now >= sync.retry_at;
        if let Some(waited) = waited {
            let why = sync
                .last_error
                .clone()
                .unwrap_or_else(|| "the first attempt is still running".into());
            self.alert_startup_late(waited, &why);
        }
        if retry {
            self.start_startup_attempt(ctx);
        }
    }

    /// The critical alert of a startup reconciliation that has not succeeded for `waited`.
    fn alert_startup_late(&mut self, waited: Duration, why: &str) {
        let at = self.h.clock.now();
        let held: Vec<String> = {
            let core = self.h.core.lock();
            core.held_exits()
                .iter()
                .map(|i| format!("{} of {}", i.correlation_id, i.position_id))
                .collect()
        };
        let message = format!(
            "the broker's books have not been reconciled {} s after the start ({why}): {} exits held{}, entries refused; still trying",
            waited.as_secs(),
            held.len(),
            if held.is_empty() { String::new() } else { format!(" ({})", held.join(", ")) },
        );
        let alert = Alert {
            level: AlertLevel::Critical,
            code: "startup_reconciliation_late".into(),
            message,
            at,
        };
        self.decide(|_| vec![CoreEvent::Alert(alert)]);
    }

    /// The answer of an attempt. `Err` when the helper thread panicked (the worker is
    /// restarted, as for a panic of its own).
    pub(super) fn on_startup_answer(
        &mut self,
        answer: Result<Answer, RecvError>,
    ) -> anyhow::Result<()> {
        let Some(sync) = self.startup.as_mut() else { return Ok(()) };
        sync.join();
        let answer = answer.map_err(|_| anyhow::anyhow!("the startup reconciliation panicked"))?;
        match answer {
            Ok(check) => {
                self.startup = None;
                match check {
                    Some(check) => self.on_broker_check(check, "startup"),
                    // Nothing to compare: held exits wait for a round that confirms them.
                    None => {
                        let now = self.h.clock.now();
                        self.decide(|core| core.release_held_exits(|_| false, now));
                    }
                }
                self.h.reconciler.started();
                log::info!(target: "exit_engine", "broker reconciled: trading starts");
            }
            Err(why) => {
                log::error!(target: "exit_engine", "startup reconciliation failed, trading does not start yet (retry in {:?}): {why}", sync.pause);
                sync.retry_at = Instant::now() + sync.pause;
                sync.pause = (sync.pause * 2).min(LAST_RETRY);
                sync.last_error = Some(why);
            }
        }
        Ok(())
    }

    /// While the startup reconciliation has not succeeded, an entry is refused: one queued
    /// now would go out whenever trading starts, long after its caller gave up.
    pub(super) fn entry_refused_before_start(&self) -> Option<EntryRefused> {
        let sync = self.startup.as_ref()?;
        let why = sync.last_error.as_deref().unwrap_or("the first attempt is still running");
        Some(EntryRefused::new(
            "trading_not_started",
            format!("trading has not started: the broker's books are not reconciled ({why})"),
        ))
    }

    /// Waits for a running attempt's helper thread.
    pub(super) fn end_startup_sync(&mut self) {
        if let Some(sync) = self.startup.as_mut() {
            sync.join();
        }
    }

    /// After a reconciliation: the held exits of positions the books confirm go to the router.
    fn release_confirmed(&mut self, check: &BrokerCheck) {
        let (holding, held) = {
            let core = self.h.core.lock();
            (core.is_holding_exits(), core.held_exits().len())
        };
        if !holding && held == 0 {
            return;
        }
        let now = self.h.clock.now();
        let sent = self.decide(|core| {
            let confirmed = reconcile::confirmed(check, &core.local_view());
            core.release_held_exits(|k| confirmed.contains(&k), now)
        });
        if held > 0 {
            log::warn!(target: "exit_engine", "reconciled: {sent} of {held} held exits sent, confirmed by the broker's books");
        }
    }

    /// Compares what the broker holds with the positions and applies the adjustments.
    pub(super) fn on_broker_check(&mut self, check: BrokerCheck, origin: &str) {
        // Outcomes queued before this command describe changes the books already show.
        while let Ok(event) = self.h.router_to_exit_engine_rx.try_recv() {
            self.on_order_event(event);
        }
        // Journaled exits of positions opened from settled entries first: their positions are
        // exiting under their own orders when the books are compared.
        let mut check = check;
        let (journaled, settled): (Vec<Adjustment>, Vec<Adjustment>) =
            std::mem::take(&mut check.settled)
                .into_iter()
                .partition(|a| matches!(a, Adjustment::ExitJournaled { .. }));
        check.settled = settled;
        for adjustment in journaled {
            self.adjust(adjustment, origin);
        }
        let plan = {
            let core = self.h.core.lock();
            reconcile::plan(&check, &core.local_view())
        };
        for note in &plan.notes {
            log::warn!(target: "exit_engine", "reconciliation ({origin}): {note}");
        }
        for adjustment in plan.adjustments {
            self.adjust(adjustment, origin);
        }
        self.release_confirmed(&check);
    }

    fn adjust(&mut self, adjustment: Adjustment, origin: &str) {
        let s = self.h.clone();
        let at = s.clock.now();
        let kind = adjustment.kind();
        let (detail, result) = match adjustment {
            Adjustment::Adopt {
                instrument,
                side,
                quantity,
                price,
                value,
                source,
                position,
                why,
            } => {
                let id = position.clone().unwrap_or_else(|| s.ids.next());
                let detail = format!(
                    "adopted {side} {quantity} {instrument} at {price} as position {id}: {why}"
                );
                let new = NewPosition {
                    id,
                    instrument,
                    side,
                    quantity,
                    entry_price: price,
                    opened_at: at,
                };
                let r = self.settle(|core| match (source, position) {
                    // Our own entry, whose record was lost: it is the entry's position.
                    (PriceSource::OwnTrades, Some(_)) => {
                        core.open_position_at_value(new, Origin::Entry, value)
                    }
                    (PriceSource::OwnTrades, None) => {
                        core.open_position_at_value(new, Origin::Adopted, value)
                    }
                    (PriceSource::BrokerAverage, None | Some(_)) => {
                        core.adopt_at_broker_average(new, &why)
                    }
                });
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
            Adjustment::ExitJournaled { intent, why } => {
                let detail = format!(
                    "exit {} of {} resumed: {why}",
                    intent.correlation_id, intent.position_id
                );
                let r = self.settle(|core| core.resume_journaled_exit(&intent, at));
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

impl Drop for ExitEngine {
    /// A worker that ends (stopped, failed or panicked) leaves no attempt running behind it:
    /// its successor starts its own.
    fn drop(&mut self) {
        self.end_startup_sync();
    }
}
