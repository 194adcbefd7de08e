//! The exit-engine worker: the single owner of every position's risk state, a thin loop around
//! the exit core it gets in its [`ExitEngineHandles`].
//!
//! The loop `select!`s over the stop signal, order outcomes from the router (drained first
//! when several messages are ready, so a fill frees a position before the next tick is
//! judged), commands (entries, kill switch, halt, resume, account checks, reloads), position
//! ticks from the tick reader, and a timeout that drives the timed rules (`on_clock`) at least
//! every [`CLOCK_STEP`] and at once when the next timed event is due. Before a tick received
//! at or after that instant the timed rules run first, and before a periodic clock step the
//! ticks already received are evaluated first: the order replay uses.
//!
//! Every decision follows one protocol (see `outbox`): the core call and the recording of its
//! effects in the outbox happen under one lock; then the failpoint
//! `exit_engine.after_decision` (when an exit was decided); then the effects are carried out
//! in order (`effects.rs`) and popped one by one. A respawned worker first carries out what
//! its predecessor left in the outbox and re-subscribes the open positions, so a panic loses
//! no risk state and starts no exit twice.
//!
//! A position opened on an instrument the reader was not yet forwarding gets its first prices
//! from the tick cache ("catch-up") until its ticks arrive through the channel.
//!
//! In live mode after a (re)start, the broker's startup reconciliation runs in the background
//! (`broker_sync.rs`): the rules run from the first tick, but exit orders decided before the
//! broker's books are read and every order in flight settled are held (every decision's events
//! pass through `ExitCore::hold_new_exits`) and sent, first, once the books confirm their
//! positions; entries asked for meanwhile are refused. It also applies what later
//! reconciliation rounds read.

mod broker_sync;
mod commands;
mod effects;
mod guard_report;
mod late_alarm;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, Sender, TryRecvError, select};
use parking_lot::Mutex;

use crate::domain::{Clock, InstrumentKey, Tick, Timestamp};
use crate::exec::core::{CoreEvent, ExitCore};
use crate::exec::messages::{EngineCommand, OrderEvent, PnlWake, RouterOrder};
use crate::exec::metrics::EngineMetrics;
use crate::exec::outbox::Outbox;
use crate::exec::paper_gateway::PaperCash;
use crate::exec::positions::{PositionIds, PositionSubscriptions};
use crate::exec::seams::{EventSink, Reconciler};
use crate::feed::TickCache;
use crate::instruments::SharedInstruments;
use crate::risk::trading_state::TradingView;
use crate::runtime::spin::Waiting;
use crate::runtime::{Worker, WorkerCtx, failpoint};

/// The timed rules run at least this often.
pub const CLOCK_STEP: Duration = Duration::from_millis(100);

/// The failpoint between a decision and its hand-off.
pub const AFTER_DECISION: &str = "exit_engine.after_decision";

/// What the exit engine works with, built once by the engine and cloned into each spawn. It
/// alone gets the exit core to change; the outbox, the subscriptions and the channel ends
/// outlive the worker, so a respawned one picks up where its predecessor stopped.
#[derive(Clone)]
pub struct ExitEngineHandles {
    pub clock: Arc<dyn Clock>,
    /// Read for the answers to commands; the exit core changes it through its own cell.
    pub trading: TradingView,
    /// The exit core: this worker is its only writer.
    pub core: Arc<Mutex<ExitCore>>,
    pub outbox: Outbox,
    /// Read for the catch-up of new positions and an entry's reference price.
    pub cache: TickCache,
    pub subscriptions: PositionSubscriptions,
    /// The paper wallet's cash, read for an entry's available cash (paper mode).
    pub paper_cash: Option<PaperCash>,
    pub reconciler: Arc<dyn Reconciler>,
    pub sink: Arc<dyn EventSink>,
    pub ids: Arc<PositionIds>,
    pub m: EngineMetrics,
    pub instruments: SharedInstruments,
    /// `broker.startup_reconcile_alert`.
    pub startup_reconcile_alert: Duration,
    pub router_to_exit_engine_rx: Receiver<OrderEvent>,
    pub commands_to_exit_engine_rx: Receiver<EngineCommand>,
    pub ticks_to_exit_engine_rx: Receiver<Tick>,
    pub exits_to_router_tx: Sender<RouterOrder>,
    pub entries_to_router_tx: Sender<RouterOrder>,
    pub exit_engine_to_pnl_tx: Sender<PnlWake>,
}

impl ExitEngineHandles {
    /// Asks the PnL refresher for a fresh snapshot (coalesced: one pending wake is enough).
    pub fn wake_pnl(&self) {
        let _ = self.exit_engine_to_pnl_tx.try_send(PnlWake);
    }
}

pub struct ExitEngine {
    h: Arc<ExitEngineHandles>,
    /// Position instruments not yet seen on the tick channel since this worker started or
    /// the position opened: polled from the tick cache until they are.
    catching_up: BTreeSet<InstrumentKey>,
    /// When the core's next timed rule comes due.
    next_due: Option<Timestamp>,
    /// The latest instant the timed rules ran for. A due instant not after it is not due
    /// again (a timed exit that could not start must not spin the loop).
    clock_at: Timestamp,
    last_clock_step: Instant,
    /// The startup reconciliation, until it succeeds (live mode).
    startup: Option<broker_sync::StartupSync>,
    guard_report: guard_report::GuardReport,
    /// Asleep on its channels (the default) or spinning on them (`[host] busy_poll`).
    waiting: Waiting,
}

impl ExitEngine {
    pub fn new(h: ExitEngineHandles) -> ExitEngine {
        ExitEngine {
            h: Arc::new(h),
            catching_up: BTreeSet::new(),
            next_due: None,
            clock_at: Timestamp(i64::MIN),
            // The first loop runs the timed rules at once.
            last_clock_step: Instant::now().checked_sub(CLOCK_STEP).unwrap_or_else(Instant::now),
            startup: None,
            guard_report: guard_report::GuardReport::default(),
            waiting: Waiting::Sleep,
        }
    }

    /// Spins on its inputs instead of sleeping (`[host] busy_poll`).
    pub fn waiting(mut self, waiting: Waiting) -> ExitEngine {
        self.waiting = waiting;
        self
    }

    /// Picks up after a predecessor: its undone effects first, then the subscriptions of the
    /// open positions.
    fn start(&mut self) {
        let pending = self.h.outbox.len();
        if pending > 0 {
            let orders = self.h.outbox.pending_orders();
            log::warn!(target: "exit_engine", "resuming with {pending} effects decided before a restart, {} of them orders ({}): carrying them out first", orders.len(), orders.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "));
        }
        self.carry_out_pending();
        let open: Vec<_> = {
            let core = self.h.core.lock();
            self.next_due = core.next_timed_event();
            self.guard_report = guard_report::GuardReport::from_counts(core.price_guard_counts());
            core.positions().map(|p| (p.id.clone(), p.instrument)).collect()
        };
        for (id, instrument) in &open {
            self.h.subscriptions.subscribe(id, *instrument);
            self.catching_up.insert(*instrument);
        }
        let gone: Vec<_> = self
            .h
            .subscriptions
            .positions()
            .into_iter()
            .filter(|id| !open.iter().any(|(o, _)| o == id))
            .collect();
        for id in gone {
            self.h.subscriptions.unsubscribe(&id);
        }
    }

    /// Runs a core call and records its effects in the outbox under the same lock, then
    /// carries them out. Returns how many exits it decided.
    fn decide(&mut self, f: impl FnOnce(&mut ExitCore) -> Vec<CoreEvent>) -> usize {
        self.decide_with(|core| (f(core), ())).0
    }

    /// [`ExitEngine::decide`] for a call that also returns a value.
    fn decide_with<R>(
        &mut self,
        f: impl FnOnce(&mut ExitCore) -> (Vec<CoreEvent>, R),
    ) -> (usize, R) {
        let decided = Instant::now();
        let (exits, value) = {
            let mut core = self.h.core.lock();
            let (mut events, value) = f(&mut core);
            // Exit orders decided before the broker's books are reconciled wait in the core.
            core.hold_new_exits(&mut events);
            self.h.m.exits_held.set(core.held_exits().len() as i64);
            self.next_due = core.next_timed_event();
            self.h.m.exits_blocked.set(core.exits_blocked() as i64);
            let exits = events.iter().filter(|e| matches!(e, CoreEvent::ExitIntent(_))).count();
            if !events.is_empty() {
                self.h.outbox.push_events(events, decided);
            }
            (exits, value)
        };
        if exits > 0 {
            failpoint::hit(AFTER_DECISION);
        }
        self.carry_out_pending();
        (exits, value)
    }

    /// Whether a timed rule is due at `t`.
    fn is_due(&self, t: Timestamp) -> bool {
        self.next_due.is_some_and(|d| d > self.clock_at && t >= d)
    }

    /// A tick of a position instrument: the timed rules first when one is due by the tick's
    /// time, then the per-tick and account rules.
    fn on_tick(&mut self, tick: Tick, via_channel: bool) {
        if via_channel {
            self.catching_up.remove(&tick.instrument);
        }
        self.h.m.ticks_evaluated.inc();
        let due = self.is_due(tick.received_at);
        if due {
            self.clock_at = self.clock_at.max(tick.received_at);
        }
        let (_, counts) = self.decide_with(|core| {
            let mut events = if due {
                core.on_clock_at(tick.received_at, tick.received_mono)
            } else {
                Vec::new()
            };
            events.extend(core.on_tick(&tick));
            (events, core.price_guard_counts())
        });
        self.guard_report.observe(counts, &tick, &self.h.m);
    }

    /// The periodic step: ticks already received first, then the timed rules at `now`, then
    /// the catch-up of new positions.
    fn clock_step(&mut self) {
        let waiting = self.h.ticks_to_exit_engine_rx.len();
        for _ in 0..waiting {
            match self.h.ticks_to_exit_engine_rx.try_recv() {
                Ok(tick) => self.on_tick(tick, true),
                Err(_) => break,
            }
        }
        let (now, mono) = (self.h.clock.now(), self.h.clock.mono());
        self.clock_at = self.clock_at.max(now);
        self.decide(|core| core.on_clock_at(now, mono));
        self.catch_up();
        self.last_clock_step = Instant::now();
    }

    /// Evaluates the tick cache's price of each instrument still catching up, when it is newer
    /// than what the core has seen.
    fn catch_up(&mut self) {
        if self.catching_up.is_empty() {
            return;
        }
        for instrument in self.catching_up.clone() {
            let (held, last) = {
                let core = self.h.core.lock();
                (core.positions().any(|p| p.instrument == instrument), core.last_tick(&instrument))
            };
            if !held {
                self.catching_up.remove(&instrument);
                continue;
            }
            let Some(tick) = self.h.cache.tick(instrument) else { continue };
            if last.is_none_or(|(_, at)| tick.received_at != at) {
                self.on_tick(tick, false);
            }
        }
    }
}

impl Worker for ExitEngine {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        crate::runtime::hops::mark_thread(crate::runtime::hops::HotThread::ExitEngine);
        self.start();
        // Live mode: the broker's books are reconciled in the background; exits held until then.
        self.begin_startup_sync(ctx);
        let events = self.h.router_to_exit_engine_rx.clone();
        let commands = self.h.commands_to_exit_engine_rx.clone();
        let ticks = self.h.ticks_to_exit_engine_rx.clone();
        loop {
            ctx.beat();
            if ctx.should_stop() {
                break;
            }
            // Order outcomes first: a fill settles a position before the next tick is judged.
            while let Ok(event) = events.try_recv() {
                self.on_order_event(event);
            }
            self.startup_upkeep(ctx);
            let since = self.last_clock_step.elapsed();
            let due = self.is_due(self.h.clock.now());
            if since >= CLOCK_STEP || due {
                self.clock_step();
                continue;
            }
            let startup = self.startup_answers();
            if self.waiting.spins() {
                // Busy polling: every input once, without blocking; ticks before commands.
                let mut idle = true;
                match startup.try_recv() {
                    Ok(answer) => {
                        idle = false;
                        self.on_startup_answer(Ok(answer))?;
                    }
                    Err(TryRecvError::Disconnected) => {
                        idle = false;
                        self.on_startup_answer(Err(RecvError))?;
                    }
                    Err(TryRecvError::Empty) => {}
                }
                if let Ok(tick) = ticks.try_recv() {
                    idle = false;
                    self.on_tick(tick, true);
                }
                if let Ok(command) = commands.try_recv() {
                    idle = false;
                    self.on_command(command);
                }
                if idle {
                    self.waiting.pause();
                }
                continue;
            }
            let timeout = (CLOCK_STEP - since).min(ctx.beat_every());
            select! {
                recv(ctx.stopped()) -> _ => {}
                recv(startup) -> answer => self.on_startup_answer(answer)?,
                recv(events) -> event => {
                    if let Ok(event) = event {
                        self.on_order_event(event);
                    }
                }
                recv(commands) -> command => {
                    if let Ok(command) = command {
                        self.on_command(command);
                    }
                }
                recv(ticks) -> tick => {
                    if let Ok(tick) = tick {
                        self.on_tick(tick, true);
                    }
                }
                default(timeout) => {}
            }
        }
        self.end_startup_sync();
        Ok(())
    }
}
