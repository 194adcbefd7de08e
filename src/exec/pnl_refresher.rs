//! The PnL refresher: marks open positions to market and publishes the account's day as one
//! immutable snapshot that `/health`, `/metrics`, `/v1/pnl`, `/v1/positions` (and later the
//! Redis mirror) read without touching the exit core.
//!
//! Cadence: every `pnl.refresh` while positions are open, at once when the exit engine wakes
//! it (a position opened or closed, the trading state changed), and rarely when idle. Each
//! refresh takes one short lock of the core. It also applies the account rule on its cadence
//! (risk spec §4: "on every tick and on the PnL refresher's cadence"): when the day's PnL has
//! reached the daily loss limit and something is left to do (trading not yet halted, or a
//! position still active), it asks the exit engine for an account check — the core itself
//! flattens and halts, so there is one owner.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::RwLock;

use crate::domain::{Clock, Paise, Timestamp};
use crate::exec::core::{CoreSnapshot, CoreView};
use crate::exec::messages::{EngineCommand, PnlWake};
use crate::exec::metrics::EngineMetrics;
use crate::exec::paper_gateway::PaperCash;
use crate::exec::seams::{EngineEvent, EventSink};
use crate::risk::{Lifecycle, TradingState};
use crate::runtime::{Worker, WorkerCtx};

/// Refresh period while no position is open.
pub const IDLE_REFRESH: Duration = Duration::from_secs(30);

/// One published view of positions and the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PnlSnapshot {
    /// Increases with every publication.
    pub version: u64,
    pub core: CoreSnapshot,
    /// The paper wallet's cash, in paper mode.
    pub paper_cash: Option<Paise>,
}

impl PnlSnapshot {
    /// Takes a snapshot now: one short lock of the core, one of the wallet.
    pub fn take(h: &PnlHandles, version: u64) -> PnlSnapshot {
        let (now, mono) = (h.clock.now(), h.clock.mono());
        let core = h.core.read().snapshot(now, mono);
        let paper_cash = h.paper_cash.as_ref().map(PaperCash::cash);
        PnlSnapshot { version, core, paper_cash }
    }

    pub fn at(&self) -> Timestamp {
        self.core.at
    }

    /// Whether the account rule has something left to do: the day's PnL is at or below the
    /// daily loss limit and trading is not halted yet, or a position is still active.
    pub fn daily_loss_needs_action(&self) -> bool {
        let a = &self.core.account;
        if a.max_daily_loss.0 <= 0 || a.day_pnl > -a.max_daily_loss {
            return false;
        }
        let active =
            self.core.positions.iter().any(|p| matches!(p.lifecycle, Lifecycle::Active { .. }));
        self.core.trading.state != TradingState::Halted || active
    }
}

/// The published snapshot; cheap to clone, readers never wait on the refresher.
#[derive(Debug, Clone)]
pub struct PnlBoard(Arc<RwLock<Arc<PnlSnapshot>>>);

impl PnlBoard {
    pub fn new(initial: PnlSnapshot) -> PnlBoard {
        PnlBoard(Arc::new(RwLock::new(Arc::new(initial))))
    }

    pub fn get(&self) -> Arc<PnlSnapshot> {
        self.0.read().clone()
    }

    pub fn publish(&self, snapshot: Arc<PnlSnapshot>) {
        *self.0.write() = snapshot;
    }
}

/// What the PnL refresher works with (and what a snapshot is taken from): the exit core to
/// read, never to change; the board it publishes on; the command channel for the account
/// check. Built once by the engine and cloned into each spawn.
#[derive(Clone)]
pub struct PnlHandles {
    pub clock: Arc<dyn Clock>,
    pub core: CoreView,
    /// The paper wallet's cash (paper mode).
    pub paper_cash: Option<PaperCash>,
    pub pnl: PnlBoard,
    pub sink: Arc<dyn EventSink>,
    pub m: EngineMetrics,
    /// `pnl.refresh`.
    pub refresh: Duration,
    pub commands_to_exit_engine_tx: Sender<EngineCommand>,
    pub exit_engine_to_pnl_rx: Receiver<PnlWake>,
}

pub struct PnlRefresher {
    h: PnlHandles,
    next: Instant,
}

impl PnlRefresher {
    pub fn new(h: PnlHandles) -> PnlRefresher {
        PnlRefresher { h, next: Instant::now() }
    }

    /// Publishes a fresh snapshot, updates the gauges, applies the account rule.
    pub fn refresh(&mut self) {
        let s = &self.h;
        let version = s.pnl.get().version + 1;
        let snap = Arc::new(PnlSnapshot::take(s, version));
        let a = &snap.core.account;
        s.m.positions_open.set(i64::from(a.open_positions));
        s.m.day_pnl.set(a.day_pnl.0);
        s.m.realised_gross.set(a.realised_gross.0);
        s.m.realised_net.set(a.realised_net.0);
        s.m.charges.set(a.charges.0);
        s.m.unrealised_gross.set(a.unrealised_gross.0);
        s.m.trading_state.set(snap.core.trading.state.name());
        s.m.max_daily_loss.set(a.max_daily_loss.0);
        if let Some(cash) = snap.paper_cash {
            s.m.paper_cash.set(cash.0);
        }
        s.pnl.publish(snap.clone());
        s.sink.record(&EngineEvent::PnlPublished(snap.clone()));
        if snap.daily_loss_needs_action() {
            log::info!(target: "pnl", "day PnL {} reached the daily loss limit of -{}: asking the exit engine for an account check", a.day_pnl, a.max_daily_loss);
            let _ = s.commands_to_exit_engine_tx.try_send(EngineCommand::CheckAccount);
        }
        let period = if snap.core.positions.is_empty() { IDLE_REFRESH } else { s.refresh };
        self.next = Instant::now() + period;
    }
}

impl Worker for PnlRefresher {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let wake = self.h.exit_engine_to_pnl_rx.clone();
        loop {
            ctx.beat();
            if ctx.should_stop() {
                break;
            }
            let now = Instant::now();
            if now >= self.next {
                self.refresh();
                continue;
            }
            let timeout = (self.next - now).min(ctx.beat_every());
            select! {
                recv(ctx.stopped()) -> _ => {}
                recv(wake) -> _ => self.refresh(),
                default(timeout) => {}
            }
        }
        Ok(())
    }
}
