//! The live reconciler: reads Dhan's books (positions and the order book, twice, the second
//! read a fresh confirmation of the first) and hands them to the exit engine, which compares
//! them with the positions it owns (`broker::reconcile::plan`) and applies the adjustments.
//! Reads that fail or cannot be parsed hand nothing over: nothing changes.
//!
//! At startup (called by the exit engine before its first order) it first settles every
//! order the recovered state has in flight (exits of `Exiting` positions, pending entries) by
//! correlation id: found ones are tracked (their fills follow), provably absent ones are
//! handed over as such (an exit then starts its next attempt under a new id). The resolve
//! window counts from the order journal's record of the placement; an id the journal never
//! recorded was never sent, so one clean lookup and book scan prove it absent. If any of this
//! fails, trading does not start: the `reconciliation` health component says why and the exit
//! engine tries again.
//!
//! On the heartbeat's cadence (the heartbeat's call only wakes the `reconciler` worker, so the
//! heartbeat never waits on Dhan) the instruments our own orders moved since the first read
//! began (from the order book) and those the order desk is busy with are marked, so a read
//! that raced one of our fills is never taken for a change made elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

use crate::broker::journal::{OrderJournal, Sent};
use crate::broker::model::ProductType;
use crate::broker::order_updates::RecentUpdates;
use crate::broker::reconcile::{Adjustment, BrokerBook, BrokerCheck, InFlight, LocalView};
use crate::broker::resolve::{Resolution, ResolverConfig, resolve_placement_with};
use crate::broker::rest::DhanClient;
use crate::domain::money::{div_round_half_away, sum_trades};
use crate::domain::{Clock, CorrelationId, OrderId, OrderIntent, Paise, PositionId, Qty};
use crate::exec::messages::EngineCommand;
use crate::exec::order_book::{Event, OrderBookHandle, Report, Seen};
use crate::exec::pnl_refresher::PnlSnapshot;
use crate::exec::seams::Reconciler;
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::risk::correlation;
use crate::runtime::{Worker, WorkerCtx};

use super::LiveMetrics;
use super::desk::DeskHandle;
use super::gateway::slices_of;
use super::report::Reporter;
use super::valued;
use crate::instruments::SharedInstruments;

/// The health-board component.
pub const HEALTH_COMPONENT: &str = "reconciliation";

/// Failpoints (`runtime::failpoint`) of the crash tests: a restart settling an order it found
/// at Dhan, before tracking it; a reconciliation round between its reads and the hand-over.
pub const FP_SETTLING: &str = "startup.settling";
pub const FP_RECONCILING: &str = "reconcile.read";

pub struct LiveReconciler {
    /// To re-derive the children of a sliced exit in flight.
    instruments: Option<SharedInstruments>,
    pub client: DhanClient,
    pub product: ProductType,
    pub orders: OrderBookHandle,
    pub desk: DeskHandle,
    pub reporter: Reporter,
    pub recent: RecentUpdates,
    pub journal: Arc<OrderJournal>,
    pub resolver: ResolverConfig,
    pub commands: Sender<EngineCommand>,
    pub health: HealthBoard,
    pub clock: Arc<dyn Clock>,
    pub m: LiveMetrics,
    started: AtomicBool,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    /// Our entry orders valued at their trades so far: correlation id → (filled, value).
    entry_values: parking_lot::Mutex<BTreeMap<String, (Qty, Paise)>>,
    /// The journaled exits of pending entries, as the first startup attempt found them: a
    /// later attempt (after a failed read) sees those entries filled, no longer pending.
    journaled_exits: parking_lot::Mutex<Option<Vec<Adjustment>>>,
}

impl LiveReconciler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: DhanClient,
        product: ProductType,
        orders: OrderBookHandle,
        desk: DeskHandle,
        reporter: Reporter,
        recent: RecentUpdates,
        journal: Arc<OrderJournal>,
        resolver: ResolverConfig,
        commands: Sender<EngineCommand>,
        health: HealthBoard,
        clock: Arc<dyn Clock>,
        m: LiveMetrics,
    ) -> LiveReconciler {
        health.set(
            HEALTH_COMPONENT,
            ComponentHealth::new(
                Status::Degraded,
                "trading has not started: the broker's books are not reconciled yet",
            ),
        );
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        LiveReconciler {
            instruments: None,
            wake_tx,
            wake_rx,
            client,
            product,
            orders,
            desk,
            reporter,
            recent,
            journal,
            resolver,
            commands,
            health,
            clock,
            m,
            started: AtomicBool::new(false),
            entry_values: parking_lot::Mutex::new(BTreeMap::new()),
            journaled_exits: parking_lot::Mutex::new(None),
        }
    }

    /// Whether the startup reconciliation has been applied.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// One read of positions and the order book; `beat` between the calls.
    fn read_books(&self, beat: &dyn Fn()) -> Result<(BrokerBook, Vec<String>), String> {
        let positions = self.client.positions().map_err(|e| format!("reading positions: {e}"))?;
        beat();
        let orders = self.client.orders().map_err(|e| format!("reading the order book: {e}"))?;
        beat();
        Ok(BrokerBook::read(&positions, &orders, self.product))
    }

    /// Values our entry orders that executed at their own trades, so that a position adopted
    /// from one (its record lost) enters at the exact value of its fills. The trade book is
    /// read (`GET /trades`, one call) only when an entry order the order tracker does not
    /// follow (those are the engine's already, valued as they fill) shows a filled quantity
    /// not valued yet; a trade book that cannot be read, even after the retries of
    /// [`read_trades`], leaves the order book's averages.
    fn value_entries(&self, book: &mut BrokerBook) {
        let followed =
            |cid: &str| CorrelationId::new(cid).is_ok_and(|c| self.orders.is_tracked(&c));
        let unvalued: Vec<(String, OrderId, Qty)> = {
            let values = self.entry_values.lock();
            book.own_executions
                .iter()
                .filter(|e| e.parsed.role == correlation::OrderRole::Entry)
                .filter(|e| !followed(&e.correlation_id))
                .filter(|e| values.get(&e.correlation_id).is_none_or(|(q, _)| *q != e.filled))
                .map(|e| (e.correlation_id.clone(), e.order_id.clone(), e.filled))
                .collect()
        };
        // Read (and retried, see `read_trades`) without holding the values.
        let read = (!unvalued.is_empty()).then(|| valued::read_trades(|| self.client.trades()));
        let mut values = self.entry_values.lock();
        if let Some(read) = read {
            match read {
                Ok(trades) => {
                    for (cid, order_id, filled) in unvalued {
                        let mut by_id = BTreeMap::new();
                        for t in trades.iter().filter(|t| t.order_id == order_id) {
                            by_id.insert(
                                t.exchange_trade_id.clone(),
                                (t.traded_price, t.traded_quantity),
                            );
                        }
                        if let Some((q, v)) = sum_trades(by_id.into_values())
                            && q == filled
                        {
                            values.insert(cid, (q, v));
                        }
                    }
                }
                Err(e) => {
                    log::warn!(target: "broker", "reading the trade book to value our entry orders: {e}; their order-book averages stand")
                }
            }
        }
        book.value_at_trades(&values);
    }

    /// Two reads, the second after the first.
    fn read_twice(&self, beat: &dyn Fn()) -> Result<(BrokerBook, BrokerBook, Vec<String>), String> {
        let (first, notes) = self.read_books(beat)?;
        let (mut recheck, _) = self.read_books(beat)?;
        // Adoptions are priced from the second read.
        self.value_entries(&mut recheck);
        Ok((first, recheck, notes))
    }

    /// One reconciliation round: both reads, handed to the exit engine.
    pub fn round(&self, beat: &dyn Fn()) -> Result<(), String> {
        let marker = self.orders.seq();
        let (first, recheck, notes) = match self.read_twice(beat) {
            Ok(r) => r,
            Err(e) => {
                self.m.reconcile_rounds.with_label_values(&["failed"]).inc();
                self.health.set(
                    HEALTH_COMPONENT,
                    ComponentHealth::new(
                        Status::Degraded,
                        format!("the last reconciliation could not read the broker: {e}"),
                    ),
                );
                return Err(e);
            }
        };
        crate::runtime::failpoint::hit(FP_RECONCILING);
        let mut busy = self.orders.busy_since(marker);
        busy.extend(self.desk.instruments());
        let check = BrokerCheck { first, recheck, busy, settled: Vec::new(), notes };
        self.commands
            .try_send(EngineCommand::Reconcile(Box::new(check)))
            .map_err(|_| "the exit engine is not taking commands".to_string())?;
        self.m.reconcile_rounds.with_label_values(&["ok"]).inc();
        self.health.set(HEALTH_COMPONENT, ComponentHealth::ok());
        Ok(())
    }

    /// Re-derives sliced exits in flight at startup from this master.
    pub fn with_instruments(mut self, instruments: SharedInstruments) -> LiveReconciler {
        self.instruments = Some(instruments);
        self
    }

    /// Settles an order in flight (an exit, or an entry still pending) that was sent as child
    /// orders: each child the journal holds is settled by its own correlation id (found:
    /// tracked; provably absent: ended), and each child it does not hold was never sent and
    /// goes now, under its own id, through the order desk. The children's reports then end or
    /// fill the parent as usual: a sliced entry opens its position once every child has ended,
    /// at their fills' quantity and volume-weighted price.
    fn settle_sliced(
        &self,
        order: &InFlight,
        children: &[OrderIntent],
        pause: &dyn Fn(Duration) -> bool,
    ) -> Result<Option<Adjustment>, String> {
        let parent = &order.intent;
        let kind = if parent.purpose.is_exit() { "exit" } else { "entry" };
        let register =
            Event::RegisterSliced { parent: parent.clone(), children: children.to_vec() };
        if !self.orders.apply(register).is_applied() {
            return Ok(None);
        }
        let avg = if order.filled.0 > 0 {
            Paise(div_round_half_away(i128::from(order.turnover.0), i128::from(order.filled.0))
                as i64)
        } else {
            Paise::ZERO
        };
        let mut applied_left = order.filled;
        let mut missing = Vec::new();
        for child in children {
            let cid = &child.correlation_id;
            let Some(sent) = self.journal.lookup(cid) else {
                missing.push(child);
                continue;
            };
            let mut cfg = self.resolver;
            let elapsed = self.clock.now().millis_since(sent.at).max(0) as u64;
            cfg.window_ms = cfg.window_ms.saturating_sub(elapsed);
            match resolve_placement_with(&self.client, Some(&self.recent), cid.as_str(), cfg, pause)
            {
                Resolution::Found { order_id, status, .. } => {
                    crate::runtime::failpoint::hit(FP_SETTLING);
                    log::warn!(target: "broker", "startup: {kind} slice {cid} of {} is at the broker as order {order_id} ({status}): tracking it", parent.position_id);
                    let book = self.client.order(&order_id).ok().flatten();
                    let traded = book.as_ref().map_or(Qty(0), |o| o.filled_qty);
                    let applied = Qty(applied_left.0.min(traded.0));
                    applied_left = Qty(applied_left.0 - applied.0);
                    // What the recovered state applied of the child (the counts only grow:
                    // a fill the order-update stream reported since the children were
                    // registered is not dropped), its order id, then its state now, valued
                    // at its trades.
                    let events = [
                        Event::Applied {
                            child: cid.clone(),
                            parent_traded: order.filled,
                            child_traded: applied,
                            avg,
                        },
                        Event::Bind { correlation_id: cid.clone(), order_id },
                    ];
                    let mut reports: Vec<Report> = self
                        .orders
                        .apply_all(events)
                        .into_iter()
                        .flat_map(|o| o.reports())
                        .collect();
                    if let Some(o) = &book {
                        reports.extend(valued::observe(
                            &self.orders,
                            &self.client,
                            &Seen::from_order(o),
                        ));
                    }
                    for r in reports {
                        self.reporter.report(r);
                    }
                }
                Resolution::Absent => {
                    log::warn!(target: "broker", "startup: {kind} slice {cid} of {} is not at the broker", parent.position_id);
                    let finish = Event::Finish {
                        correlation_id: cid.clone(),
                        reason: "never reached the broker (startup settlement)".into(),
                    };
                    for r in self.orders.apply(finish).reports() {
                        self.reporter.report(r);
                    }
                }
                Resolution::Undetermined { reason } => {
                    return Err(format!(
                        "{kind} slice {cid} in flight could not be settled: {reason}"
                    ));
                }
            }
        }
        for child in missing {
            log::warn!(target: "broker", "startup: {kind} slice {} of {} was never sent: sending it now", child.correlation_id, parent.position_id);
            self.desk.retry(child, "not sent before the restart");
        }
        Ok(None)
    }

    /// Settles one order the recovered state has in flight.
    fn settle(
        &self,
        order: &InFlight,
        pause: &dyn Fn(Duration) -> bool,
    ) -> Result<Option<Adjustment>, String> {
        let intent = &order.intent;
        let cid = &intent.correlation_id;
        if let Some(children) = self.instruments.as_ref().and_then(|i| slices_of(i, intent)) {
            return self.settle_sliced(order, &children, pause);
        }
        let mut cfg = self.resolver;
        cfg.window_ms = match self.journal.lookup(cid) {
            Some(sent) => {
                let elapsed = self.clock.now().millis_since(sent.at).max(0) as u64;
                cfg.window_ms.saturating_sub(elapsed)
            }
            // Never written ahead, so never sent: one clean round proves it.
            None => 0,
        };
        match resolve_placement_with(&self.client, Some(&self.recent), cid.as_str(), cfg, pause) {
            Resolution::Found { order_id, status, .. } => {
                crate::runtime::failpoint::hit(FP_SETTLING);
                log::warn!(target: "broker", "startup: {cid} of {} is at the broker as order {order_id} ({status}): tracking it", intent.position_id);
                // Only what trades beyond the executions already applied is reported.
                let register = Event::Register {
                    intent: intent.clone(),
                    traded: order.filled,
                    value: order.turnover,
                };
                let bind = Event::Bind { correlation_id: cid.clone(), order_id: order_id.clone() };
                let bound = self.orders.apply_all([register, bind]);
                for r in bound.into_iter().flat_map(|o| o.reports()) {
                    self.reporter.report(r);
                }
                if let Ok(Some(o)) = self.client.order(&order_id) {
                    let seen = Seen::from_order(&o);
                    let reports = valued::observe(&self.orders, &self.client, &seen);
                    for r in reports {
                        if matches!(r, Report::Fill { .. }) {
                            self.m.fills.with_label_values(&["resolve"]).inc();
                        }
                        self.reporter.report(r);
                    }
                }
                Ok(None)
            }
            Resolution::Absent => {
                let why = "not at the broker (lookup and order book agree)".to_string();
                Ok(Some(if intent.purpose.is_exit() {
                    Adjustment::ExitAbsent { correlation_id: cid.clone(), why }
                } else {
                    Adjustment::EntryAbsent { correlation_id: cid.clone(), why }
                }))
            }
            Resolution::Undetermined { reason } => {
                Err(format!("order {cid} in flight could not be settled: {reason}"))
            }
        }
    }

    fn startup_check(
        &self,
        local: &LocalView,
        pause: &dyn Fn(Duration) -> bool,
    ) -> Result<BrokerCheck, String> {
        let journaled = self
            .journaled_exits
            .lock()
            .get_or_insert_with(|| journaled_exits_of_pending_entries(local, &self.journal.today()))
            .clone();
        let mut settled = Vec::new();
        for order in &local.orders_in_flight {
            let cid = &order.intent.correlation_id;
            if self.orders.is_tracked(cid) || self.desk.knows(cid) {
                continue; // settled by an earlier attempt of this run
            }
            settled.extend(self.settle(order, pause)?);
            if !pause(Duration::ZERO) {
                return Err("stopped".into());
            }
        }
        settled.extend(journaled);
        let beat = || {
            pause(Duration::ZERO);
        };
        let (first, recheck, notes) = self.read_twice(&beat)?;
        crate::runtime::failpoint::hit(FP_RECONCILING);
        let mut busy = self.orders.busy_since(u64::MAX);
        busy.extend(self.desk.instruments());
        Ok(BrokerCheck { first, recheck, busy, settled, notes })
    }
}

/// The latest exit a previous run journaled (not presumed) for each position whose entry was
/// in flight in the recovered state: the store never held the position open, so the journal
/// replay at restore could not put it `Exiting` (`engine::persist::journal_replay`); once the
/// entry's fills open it, it must exit under that order, not be compared as `Active`.
fn journaled_exits_of_pending_entries(local: &LocalView, journal: &[Sent]) -> Vec<Adjustment> {
    // Also the positions not exiting: an earlier round of this startup that failed later
    // (a read refused) may have opened one from its entry's fills already. The core resumes
    // only an attempt beyond the position's own, so a position the store recovered is left
    // as the journal replay at restore made it.
    let pending: BTreeSet<&PositionId> = local
        .orders_in_flight
        .iter()
        .filter(|o| !o.intent.purpose.is_exit())
        .map(|o| &o.intent.position_id)
        .chain(local.positions.iter().filter(|p| !p.exiting).map(|p| &p.id))
        .collect();
    let mut latest: BTreeMap<&PositionId, (u32, &Sent)> = BTreeMap::new();
    for s in journal.iter().filter(|s| s.previous_run && !s.presumed && s.intent.purpose.is_exit())
    {
        let i = &s.intent;
        let Some(parsed) = correlation::parse(i.correlation_id.as_str()) else { continue };
        if !pending.contains(&i.position_id) || !parsed.refers_to(&i.position_id) {
            continue;
        }
        if latest.get(&i.position_id).is_none_or(|(a, _)| *a < parsed.attempt) {
            latest.insert(&i.position_id, (parsed.attempt, s));
        }
    }
    latest
        .into_values()
        .map(|(_, s)| Adjustment::ExitJournaled {
            intent: Box::new(s.intent.clone()),
            why: "journaled by the previous run while its entry was in flight".into(),
        })
        .collect()
}

impl Reconciler for LiveReconciler {
    /// Wakes the `reconciler` worker for a round; its outcome shows in the log, health
    /// (`reconciliation`) and `scalper_reconcile_rounds_total`.
    fn reconcile(&self, _engine: &PnlSnapshot) -> Result<Vec<String>, String> {
        if self.is_started() {
            let _ = self.wake_tx.try_send(());
        }
        Ok(Vec::new())
    }

    fn startup(
        &self,
        local: &LocalView,
        pause: &dyn Fn(Duration) -> bool,
    ) -> Result<Option<BrokerCheck>, String> {
        if self.is_started() {
            return Ok(None);
        }
        match self.startup_check(local, pause) {
            Ok(check) => Ok(Some(check)),
            Err(e) => {
                self.m.reconcile_rounds.with_label_values(&["failed"]).inc();
                self.health.set(
                    HEALTH_COMPONENT,
                    ComponentHealth::new(Status::Degraded, format!("trading has not started: {e}")),
                );
                Err(e)
            }
        }
    }

    fn startup_pending(&self) -> bool {
        !self.is_started()
    }

    fn started(&self) {
        self.started.store(true, Ordering::Release);
        self.m.reconcile_rounds.with_label_values(&["ok"]).inc();
        self.health.set(HEALTH_COMPONENT, ComponentHealth::ok());
    }
}

/// The `reconciler` worker: one round each time the heartbeat asks.
pub struct ReconcileWorker {
    reconciler: Arc<LiveReconciler>,
}

impl ReconcileWorker {
    pub fn new(reconciler: Arc<LiveReconciler>) -> ReconcileWorker {
        ReconcileWorker { reconciler }
    }
}

impl Worker for ReconcileWorker {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let wake = self.reconciler.wake_rx.clone();
        loop {
            ctx.beat();
            select! {
                recv(ctx.stopped()) -> _ => break,
                recv(wake) -> _ => {
                    if let Err(e) = self.reconciler.round(&|| ctx.beat()) {
                        log::warn!(target: "broker", "reconciliation could not run: {e}");
                    }
                }
                default(ctx.beat_every()) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::reconcile::LocalPosition;
    use crate::domain::{
        CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Qty, Segment,
        Timestamp, Txn,
    };

    const K: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

    fn intent(cid: &str, position: &str) -> OrderIntent {
        let purpose = if cid.starts_with('X') {
            OrderPurpose::Exit(ExitReason::StopLoss)
        } else {
            OrderPurpose::Entry
        };
        OrderIntent {
            correlation_id: CorrelationId::new(cid).unwrap(),
            position_id: PositionId::new(position),
            instrument: K,
            txn: Txn::Buy,
            quantity: Qty(75),
            purpose,
            reference_price: Paise(10_000),
            price_is_stale: false,
            created_at: Timestamp(0),
            limit_price: None,
        }
    }

    fn sent(cid: &str, position: &str, previous_run: bool, presumed: bool) -> Sent {
        Sent { at: Timestamp(0), intent: intent(cid, position), previous_run, presumed }
    }

    #[test]
    fn only_the_latest_previous_run_exit_of_a_position_whose_entry_is_in_flight_resumes() {
        let position = |id: &str, exiting: bool| LocalPosition {
            id: PositionId::new(id),
            instrument: K,
            side: crate::domain::Side::Long,
            open: Qty(75),
            exiting,
            last_price: Paise(10_000),
        };
        let local = LocalView {
            // p3 was opened from its entry's fills by an earlier round of this startup that
            // failed afterwards; p4 is exiting already.
            positions: vec![position("p3", false), position("p4", true)],
            pending_entries: BTreeSet::from([K]),
            orders_in_flight: vec![InFlight {
                intent: intent("N1-p1", "p1"),
                filled: Qty(0),
                turnover: Paise::ZERO,
            }],
        };
        let journal = [
            sent("N1-p1", "p1", true, false),
            sent("X1-p1", "p1", true, false),
            sent("X2-p1", "p1", true, false),
            // Presumed by a standby, or written by this run: not the previous run's sends.
            sent("X3-p1", "p1", true, true),
            sent("X4-p1", "p1", false, false),
            // Its entry is not in flight: the journal replay at restore handled it.
            sent("X1-p2", "p2", true, false),
            sent("X1-p3", "p3", true, false),
            sent("X1-p4", "p4", true, false),
        ];
        let resumed: Vec<String> = journaled_exits_of_pending_entries(&local, &journal)
            .into_iter()
            .map(|a| match a {
                Adjustment::ExitJournaled { intent, .. } => intent.correlation_id.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(resumed, ["X2-p1", "X1-p3"]);
    }
}
